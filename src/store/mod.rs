//! Persistence behind one trait, one implementation per backend (chosen by URL scheme).
//! The service owns transactions: it opens one per use case with [`Store::begin`], calls the
//! [`Transaction`] operations, and commits. Dropping a transaction rolls it back.

pub mod postgres;
pub mod rows;
pub mod sqlite;

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::auth::{AuditFilter, IssuedKey};
use crate::domain::page::PageToken;
use crate::domain::subscription::SigningSecrets;
use crate::domain::{
    ApiKey, AuditEvent, Component, ComponentStatus, Delivery, DeliveryAttempt, DeliveryStatus, Event, Incident,
    IncidentKey, IncidentRef, Result, Severity, Status, Subscription, TimelineEntry, Visibility,
};

/// The connection pool's state. `waiting` counts tasks waiting for a connection to start a
/// transaction or read an incident (the paths that matter under load).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub in_use: i64,
    pub idle: i64,
    pub waiting: i64,
    pub max: i64,
}

/// What `/metrics` reads from the database at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Open incidents counted by severity and status (only the combinations that exist).
    pub open_incidents: Vec<(Severity, Status, i64)>,
    /// Deliveries pending or being sent, for active and for paused subscriptions.
    pub pending_active: i64,
    pub pending_paused: i64,
    /// When the oldest pending delivery of an active subscription was created.
    pub oldest_pending: Option<DateTime<Utc>>,
    pub pool: PoolStats,
}

/// Counts a task as waiting for a connection while it lives.
pub(crate) struct Waiting<'a>(&'a std::sync::atomic::AtomicI64);

impl<'a> Waiting<'a> {
    pub(crate) fn enter(counter: &'a std::sync::atomic::AtomicI64) -> Self {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Waiting(counter)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Filters for listing incidents; every field narrows the result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncidentFilter {
    pub statuses: Vec<Status>,
    pub severities: Vec<Severity>,
    pub component_id: Option<Uuid>,
    pub open: Option<bool>,
    /// Case-folded words that must all occur in [`Incident::search_text`] (see
    /// [`crate::domain::incident::search_terms`]).
    pub terms: Vec<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
}

/// Which events to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Any of these types (all when empty).
    pub types: Vec<crate::domain::EventType>,
    /// Only events about this resource id.
    pub subject: Option<String>,
    /// Only events public subscribers receive.
    pub public_only: bool,
}

/// Something another process did that this one should react to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Events up to this seq were sequenced.
    Sequenced(i64),
}

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

/// Whose attempts to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptsOf {
    Delivery(Uuid),
    Subscription(Uuid),
}

/// What a claim on an idempotency key found.
#[derive(Debug, Clone, PartialEq)]
pub enum IdempotencyClaim {
    /// The key is new (or its earlier use expired): go ahead, then save the response.
    Claimed,
    /// The key was used before: its request hash and stored response.
    Existing { request_hash: Vec<u8>, response: serde_json::Value },
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Opens a transaction.
    async fn begin(&self) -> Result<Box<dyn Transaction>>;
    /// Applies pending migrations; safe when several processes start at once.
    async fn migrate(&self) -> anyhow::Result<()>;
    /// Checks that the database answers.
    async fn ping(&self) -> Result<()>;
    /// Figures for `/metrics`: open incidents, the delivery outbox, the pool.
    async fn observe(&self) -> Result<Observed>;
    /// Keeps the query planner's statistics current (SQLite has no autovacuum/autoanalyze;
    /// Postgres's own autovacuum does this, so it does nothing there). Cheap: run hourly.
    async fn refresh_statistics(&self) -> Result<()>;

    async fn get_incident(&self, key: IncidentKey) -> Result<Option<Incident>>;
    /// Incidents newest first (created_at, then id, descending), after `after`, at most `limit`.
    async fn list_incidents(
        &self,
        filter: &IncidentFilter,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<Incident>>;
    /// Timeline entries oldest first (created_at, then id), after `after`, at most `limit`.
    async fn list_timeline(
        &self,
        incident_id: Uuid,
        visibility: Option<Visibility>,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<TimelineEntry>>;

    async fn get_component(&self, id: Uuid) -> Result<Option<Component>>;
    /// Components in status-page order (group, position, name, id), after `after`, at most `limit`.
    async fn list_components(
        &self,
        group: Option<&str>,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<Component>>;

    /// Removes idempotency records created before `before`; returns how many.
    async fn purge_idempotency_keys(&self, before: DateTime<Utc>) -> Result<u64>;

    /// The key with this lookup id, with the hash of its secret.
    async fn find_api_key(&self, lookup: &str) -> Result<Option<(ApiKey, Vec<u8>)>>;
    async fn get_api_key(&self, id: Uuid) -> Result<Option<ApiKey>>;
    /// Keys newest first (created_at, then id, descending).
    async fn list_api_keys(&self, after: Option<&PageToken>, limit: u32) -> Result<Vec<ApiKey>>;
    /// Records when a key was last used.
    async fn touch_api_key(&self, id: Uuid, at: DateTime<Utc>) -> Result<()>;
    /// Notices from other processes sharing the database (Postgres LISTEN/NOTIFY); `None`
    /// where there are none (SQLite serves one process).
    async fn notifications(&self) -> Result<Option<tokio::sync::mpsc::Receiver<Notice>>>;

    /// Sequenced events after `after` (a seq), in commit order.
    async fn list_events(&self, after: i64, filter: &EventFilter, limit: u32) -> Result<Vec<Event>>;
    /// The highest seq given so far (0 before the first).
    async fn latest_event_seq(&self) -> Result<i64>;

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

    /// Audit events newest first (occurred_at, then id, descending).
    async fn list_audit_events(
        &self,
        filter: &AuditFilter,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>>;
}

/// The operations of one use case, inside one database transaction.
#[async_trait]
pub trait Transaction: Send {
    /// Claims `(scope, key)`. Waits for a concurrent transaction holding the same key, so
    /// concurrent duplicates see the first one's committed response. A record created before
    /// `expired_before` is replaced.
    async fn claim_idempotency_key(
        &mut self,
        scope: &str,
        key: &str,
        request_hash: &[u8],
        now: DateTime<Utc>,
        expired_before: DateTime<Utc>,
    ) -> Result<IdempotencyClaim>;
    /// Stores the response of a claimed key.
    async fn save_idempotent_response(&mut self, scope: &str, key: &str, response: &serde_json::Value) -> Result<()>;

    /// Inserts a new incident and returns the reference assigned to it.
    async fn insert_incident(&mut self, incident: &Incident) -> Result<IncidentRef>;
    /// Reads an incident and locks it until the transaction ends.
    async fn lock_incident(&mut self, key: IncidentKey) -> Result<Option<Incident>>;
    /// Writes back every mutable field of a locked incident. `components_changed` rewrites
    /// the affected-component index.
    async fn update_incident(&mut self, incident: &Incident, components_changed: bool) -> Result<()>;
    async fn delete_incident(&mut self, id: Uuid) -> Result<()>;
    /// Resolves incident keys to ids; `None` where no incident matches.
    async fn resolve_incident_ids(&mut self, keys: &[IncidentKey]) -> Result<Vec<Option<Uuid>>>;
    async fn insert_timeline_entry(&mut self, entry: &TimelineEntry) -> Result<()>;

    /// Which of `ids` name existing components.
    async fn existing_component_ids(&mut self, ids: &[Uuid]) -> Result<HashSet<Uuid>>;
    /// Inserts a component; a duplicate name is [`crate::domain::Error::AlreadyExists`].
    async fn insert_component(&mut self, component: &Component) -> Result<()>;
    /// Reads a component, locks it, and returns it with the statuses open incidents impose on it.
    async fn lock_component(&mut self, id: Uuid) -> Result<Option<(Component, Vec<ComponentStatus>)>>;
    async fn update_component(&mut self, component: &Component) -> Result<()>;
    async fn delete_component(&mut self, id: Uuid) -> Result<()>;

    async fn insert_api_key(&mut self, key: &IssuedKey) -> Result<()>;
    /// Marks a key revoked (once) and returns it; `None` if there is no such key.
    async fn revoke_api_key(&mut self, id: Uuid, at: DateTime<Utc>) -> Result<Option<ApiKey>>;
    /// How many keys exist, holding a lock that keeps others from adding one until the
    /// transaction ends (for the one-time bootstrap key).
    async fn count_api_keys_exclusively(&mut self) -> Result<i64>;
    async fn insert_audit_event(&mut self, event: &AuditEvent) -> Result<()>;

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

    /// Writes events, unsequenced: the caller wakes this process's sequencer after the commit.
    async fn insert_events(&mut self, events: &[Event]) -> Result<()>;
    /// Becomes the sequencer for the rest of this transaction; false when another process
    /// already is.
    async fn lead_sequencer(&mut self) -> Result<bool>;
    /// Committed events without a seq yet, oldest first.
    async fn unsequenced_events(&mut self, limit: u32) -> Result<Vec<Event>>;
    /// Gives the events consecutive seqs after the last one given, in this order; returns them.
    async fn assign_sequence(&mut self, ids: &[Uuid]) -> Result<Vec<i64>>;

    async fn commit(self: Box<Self>) -> Result<()>;
}

/// A shareable store.
pub type DynStore = Arc<dyn Store>;

/// Connects to the store the URL's scheme names: `postgres://` / `postgresql://` or
/// `sqlite:`.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<DynStore> {
    match url.split_once(':').map(|(scheme, _)| scheme) {
        Some("postgres" | "postgresql") => Ok(Arc::new(postgres::PgStore::connect(url, max_connections).await?)),
        Some("sqlite") => Ok(Arc::new(sqlite::SqliteStore::connect(url, max_connections).await?)),
        _ => anyhow::bail!("unsupported database URL (expected postgres://… or sqlite:…): {}", redact_url(url)),
    }
}

/// A duplicate component name is `AlreadyExists`; other errors map with `db_err`.
fn component_name_err(
    e: sqlx::Error,
    name: &str,
    db_err: fn(sqlx::Error) -> crate::domain::Error,
) -> crate::domain::Error {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            crate::domain::Error::AlreadyExists { resource: "component", field: "name", value: name.to_string() }
        }
        _ => db_err(e),
    }
}

/// Deleting a component an open incident affects is refused.
fn component_in_use(id: Uuid, open: i64) -> crate::domain::Error {
    crate::domain::Error::Conflict(format!(
        "component {id} is affected by {open} open incident(s); resolve them or remove the component from them first"
    ))
}

/// The URL with any password replaced, for logs and errors.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
