//! Subscriptions and the delivery outbox: deliveries, their leases and attempts.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::page::PageToken;
use crate::domain::query::AttemptsOf;
use crate::domain::subscription::SigningSecrets;
use crate::domain::{Delivery, DeliveryAttempt, DeliveryStatus, Event, Result, Subscription};

/// A delivery claimed for sending, with what sending needs (shared with the other deliveries
/// of the same event or to the same subscription).
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub delivery: Delivery,
    pub event: Arc<Event>,
    pub subscription: Arc<Subscription>,
    pub secrets: Arc<SigningSecrets>,
}

/// A delivery fan-out creates: pending, or already claimed by the sequencing process, which
/// then sends it without claiming it from the table first.
#[derive(Debug, Clone, Copy)]
pub struct NewDelivery<'a> {
    pub id: Uuid,
    pub event: &'a Event,
    pub subscription_id: Uuid,
    pub claimed: bool,
}

/// Who holds the deliveries fan-out claims, and until when.
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    pub owner: &'a str,
    pub until: DateTime<Utc>,
}

/// The outcome of one attempt, to record.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    pub attempt: DeliveryAttempt,
    /// The worker that held the lease; the delivery is only updated while it still does.
    pub owner: String,
    /// `Pending` (retry at `next_attempt_at`), `Delivered` or `Failed` (dead-lettered).
    pub status: DeliveryStatus,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait SubscriptionStore {
    async fn get_subscription(&self, id: Uuid) -> Result<Option<Subscription>>;
    /// Subscriptions newest first.
    async fn list_subscriptions(&self, after: Option<&PageToken>, limit: u32) -> Result<Vec<Subscription>>;
    async fn get_delivery(&self, id: Uuid) -> Result<Option<Delivery>>;
    /// A subscription's deliveries newest first, optionally of one status.
    async fn list_deliveries(
        &self,
        subscription_id: Uuid,
        status: Option<DeliveryStatus>,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<Delivery>>;
    /// Attempts newest first.
    async fn list_attempts(
        &self,
        of: AttemptsOf,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<DeliveryAttempt>>;
    /// Claims up to `limit` deliveries that are due at `now` (or whose lease expired), for
    /// subscriptions neither paused, disabled nor in `exclude`, under a lease for `owner`
    /// until `lease_until`. Concurrent claimers never get the same delivery.
    async fn claim_deliveries(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        exclude: &[Uuid],
    ) -> Result<Vec<ClaimedDelivery>>;
    /// Extends the leases `owner` holds on these deliveries.
    async fn extend_leases(&self, owner: &str, ids: &[Uuid], until: DateTime<Utc>) -> Result<()>;
    /// Hands claimed deliveries back unattempted (due again at `at`).
    async fn release_deliveries(&self, owner: &str, ids: &[Uuid], at: DateTime<Utc>) -> Result<()>;
}

#[async_trait]
pub trait SubscriptionTx {
    async fn insert_subscription(&mut self, subscription: &Subscription, secrets: &SigningSecrets) -> Result<()>;
    async fn lock_subscription(&mut self, id: Uuid) -> Result<Option<(Subscription, SigningSecrets)>>;
    async fn update_subscription(&mut self, subscription: &Subscription, secrets: &SigningSecrets) -> Result<()>;
    async fn delete_subscription(&mut self, id: Uuid) -> Result<()>;
    /// Every subscription not disabled (paused ones too: their deliveries wait).
    async fn fanout_subscriptions(&mut self) -> Result<Vec<(Subscription, SigningSecrets)>>;
    /// Creates deliveries at `now`: pending ones due at once, claimed ones under `lease`.
    async fn insert_deliveries(
        &mut self,
        deliveries: &[NewDelivery<'_>],
        now: DateTime<Utc>,
        lease: Lease<'_>,
    ) -> Result<()>;
    /// Records attempts and, for each delivery whose lease its `owner` still holds, the
    /// delivery's new state. Returns how many deliveries it updated.
    async fn record_attempts(&mut self, results: &[AttemptResult]) -> Result<u64>;
    /// Ends the failing streak of these subscriptions (a delivery succeeded); leaves those
    /// without one untouched (and unlocked).
    async fn clear_failing(&mut self, subscription_ids: &[Uuid], now: DateTime<Utc>) -> Result<()>;
    /// Cancels a subscription's deliveries that are not yet done.
    async fn cancel_deliveries(&mut self, subscription_id: Uuid) -> Result<u64>;
    /// Makes these deliveries pending again, due at `now`, with a fresh retry schedule; only
    /// those not pending or being sent. Returns how many.
    async fn requeue_deliveries(&mut self, ids: &[Uuid], now: DateTime<Utc>) -> Result<u64>;
    /// The ids of a subscription's dead-lettered deliveries.
    async fn failed_delivery_ids(&mut self, subscription_id: Uuid) -> Result<Vec<Uuid>>;
}
