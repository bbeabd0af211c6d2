//! Customer subscribers, the keys the service keeps for itself, and the outbox of mails that
//! are no event's delivery.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::customer_mail::CustomerMailOutcome;
use crate::domain::page::PageToken;
use crate::domain::subscriber::SubscriberStatus;
use crate::domain::subscriber::{OutboundMail, Subscriber};
use crate::domain::subscriber_list::SubscriberFilter;
use crate::domain::{Event, Result};

/// A customer mail claimed for sending: the event (`None` when it is gone), its subscriber, and
/// which attempt this is.
#[derive(Debug, Clone)]
pub struct ClaimedCustomerMail {
    pub event: Option<std::sync::Arc<Event>>,
    pub subscriber: Subscriber,
    pub event_id: Uuid,
    pub attempts: i32,
}

/// The store's figures behind `SubscriberCounts`.
#[derive(Debug, Clone, Default)]
pub struct SubscriberFigures {
    pub by_status: Vec<(SubscriberStatus, i64)>,
    pub all_components: i64,
    pub chose: std::collections::HashMap<Uuid, i64>,
}

#[async_trait]
pub trait SubscriberStore {
    async fn get_subscriber(&self, id: Uuid) -> Result<Option<Subscriber>>;
    /// Subscribers newest first, after `after`, at most `limit`.
    async fn list_subscribers(
        &self,
        filter: &SubscriberFilter,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<Subscriber>>;
    /// How many subscribers have each status, how many confirmed ones hear about every
    /// component, and per component how many confirmed ones chose it.
    async fn subscriber_figures(&self) -> Result<SubscriberFigures>;
    /// Whether a queued mail is due at `now` (read outside a transaction).
    async fn mail_due(&self, now: DateTime<Utc>) -> Result<bool>;
    /// Whether a customer mail is due at `now` (read outside a transaction).
    async fn customer_mail_due(&self, now: DateTime<Utc>) -> Result<bool>;
    /// Takes up to `limit` customer mails due at `now` for an attempt (counted), leaving them alone
    /// for other workers until `lease_until`.
    async fn claim_customer_mails(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ClaimedCustomerMail>>;
    /// Writes what became of the attempts.
    async fn record_customer_mails(&self, outcomes: &[CustomerMailOutcome], now: DateTime<Utc>) -> Result<()>;
}

#[async_trait]
pub trait SubscriberTx {
    /// Reads a subscriber and locks it.
    async fn lock_subscriber(&mut self, id: Uuid) -> Result<Option<Subscriber>>;
    /// Reads the subscriber with this address (any case) and locks it.
    async fn lock_subscriber_by_email(&mut self, email: &str) -> Result<Option<Subscriber>>;
    /// Inserts a subscriber; false when another has the address already.
    async fn insert_subscriber(&mut self, subscriber: &Subscriber) -> Result<bool>;
    async fn update_subscriber(&mut self, subscriber: &Subscriber) -> Result<()>;
    /// Removes a subscriber and what is queued for it; false when there was none.
    async fn delete_subscriber(&mut self, id: Uuid) -> Result<bool>;
    /// The service's key `name`: the stored one, or `generated`, stored now, if none is.
    async fn service_key(&mut self, name: &str, generated: &[u8], now: DateTime<Utc>) -> Result<Vec<u8>>;
    async fn insert_mail(&mut self, mail: &OutboundMail) -> Result<()>;
    /// Takes the next pending mail due at `now` for an attempt (counted), leaving it alone for
    /// other workers until `lease_until`.
    async fn claim_mail(&mut self, now: DateTime<Utc>, lease_until: DateTime<Utc>) -> Result<Option<OutboundMail>>;
    async fn update_mail(&mut self, mail: &OutboundMail) -> Result<()>;
    /// Queues a customer mail of each of `events` for every confirmed subscriber who wants it
    /// (see `domain::customer_mail`), due at `now`; returns how many.
    async fn queue_customer_mails(&mut self, events: &[&Event], now: DateTime<Utc>) -> Result<u64>;
}
