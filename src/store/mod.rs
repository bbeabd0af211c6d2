//! Persistence behind one trait, one implementation per backend (chosen by URL scheme).
//!
//! The service owns transactions: it opens one per use case with [`Store::begin`], calls the
//! [`Transaction`] operations, and commits. Dropping a transaction rolls it back.
//!
//! Both traits are made of one supertrait per feature (`IncidentStore` and `IncidentTx` in
//! `incidents.rs`, and so on), and each backend is a folder with one file per feature
//! (`postgres/incidents.rs`, `sqlite/incidents.rs`). What both backends run alike (row
//! types, conversions, statements) is written once, in `sql/<feature>.rs`. A new table is a
//! new file in each of the four places and one line in each trait list below.

mod access;
mod actions;
mod components;
mod events;
mod history;
mod idempotency;
mod incidents;
mod integrations;
mod links;
mod maintenance;
pub mod postgres;
mod postmortems;
mod retention;
mod secrets;
pub mod sql;
pub mod sqlite;
mod stats;
mod subscribers;
mod subscriptions;
pub mod transfer;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use access::{AccessStore, AccessTx};
pub use actions::{ActionStore, ActionTx};
pub use components::{ComponentStore, ComponentTx};
pub use events::{EventStore, EventTx, Notice};
pub use history::{HistoryStore, HistoryTx, Imposition};
pub use idempotency::{IdempotencyClaim, IdempotencyTx};
pub use incidents::{IncidentStore, IncidentTx};
pub use integrations::{AckCandidate, AlertsOf, IntegrationStore, IntegrationTx};
pub use links::{LinkStore, LinkTx, Moved};
pub use maintenance::{MaintenanceFilter, MaintenanceStore, MaintenanceTx};
pub use postmortems::{PostmortemStore, PostmortemTx};
pub use retention::{PrunedBatch, RetentionStore};
pub use secrets::{Resealed, SecretStore};
pub use stats::StatsStore;
pub use subscribers::{ClaimedCustomerMail, SubscriberFigures, SubscriberStore, SubscriberTx};
pub use subscriptions::{AttemptResult, ClaimedDelivery, Lease, NewDelivery, SubscriptionStore, SubscriptionTx};

use crate::domain::{Result, Severity, Status};
use crate::secrets::KeyRing;

/// The reads and process-wide operations of a backend: one supertrait per feature.
#[async_trait]
pub trait Store:
    IncidentStore
    + PostmortemStore
    + ActionStore
    + LinkStore
    + StatsStore
    + IntegrationStore
    + ComponentStore
    + MaintenanceStore
    + HistoryStore
    + AccessStore
    + SubscriberStore
    + SubscriptionStore
    + EventStore
    + RetentionStore
    + SecretStore
    + Send
    + Sync
    + 'static
{
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
}

/// The operations of one use case, inside one database transaction: one supertrait per
/// feature.
#[async_trait]
pub trait Transaction:
    IncidentTx
    + PostmortemTx
    + ActionTx
    + LinkTx
    + IntegrationTx
    + ComponentTx
    + MaintenanceTx
    + HistoryTx
    + AccessTx
    + SubscriberTx
    + SubscriptionTx
    + EventTx
    + IdempotencyTx
    + Send
{
    async fn commit(self: Box<Self>) -> Result<()>;
}

/// A shareable store.
pub type DynStore = Arc<dyn Store>;

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

/// The connection pool's limits.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// The longest a request waits for a connection before it fails with `Unavailable`
    /// (Postgres; SQLite's writers queue for its one write connection instead).
    pub acquire_timeout: std::time::Duration,
}

impl PoolSettings {
    /// The default acquire timeout: a database that does not answer fails requests within 2 s.
    pub const DEFAULT_ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

    pub fn new(max_connections: u32) -> Self {
        Self { max_connections, acquire_timeout: Self::DEFAULT_ACQUIRE_TIMEOUT }
    }
}

/// Connects to the store the URL's scheme names: `postgres://` / `postgresql://` or
/// `sqlite:`, storing secrets as given (no key: for what stores no secret, such as
/// migrations).
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<DynStore> {
    connect_with(url, PoolSettings::new(max_connections), Arc::new(KeyRing::unencrypted())).await
}

/// [`connect`] with the pool's limits spelled out, sealing stored secrets with `keys`.
pub async fn connect_with(url: &str, pool: PoolSettings, keys: Arc<KeyRing>) -> anyhow::Result<DynStore> {
    match url.split_once(':').map(|(scheme, _)| scheme) {
        Some("postgres" | "postgresql") => Ok(Arc::new(postgres::PgStore::connect(url, pool, keys).await?)),
        Some("sqlite") => Ok(Arc::new(sqlite::SqliteStore::connect(url, pool.max_connections, keys).await?)),
        _ => anyhow::bail!("unsupported database URL (expected postgres://… or sqlite:…): {}", redact_url(url)),
    }
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

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_redacted_and_nothing_else() {
        assert_eq!(redact_url("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite:incidentd.db"), "sqlite:incidentd.db");
    }
}
