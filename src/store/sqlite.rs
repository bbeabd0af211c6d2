//! The embedded SQLite store: zero setup, one file, one replica.
//!
//! SQLite allows one writer at a time. Every write transaction goes through a single writer
//! connection and starts with `BEGIN IMMEDIATE`, so writers queue in the pool instead of
//! failing with "database is locked"; reads use a separate pool of connections that WAL
//! lets run alongside the writer. The busy timeout covers other processes (such as
//! `incidentd migrate`) touching the same file.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, ConnectOptions, QueryBuilder, Sqlite};
use uuid::Uuid;

use super::rows::{
    self, API_KEY_COLUMNS, ApiKeyRow, AttemptRow, AuditRow, ComponentRow, DELIVERY_COLUMNS, DbId, DbTime, DeliveryRow,
    EVENT_COLUMNS, EventRow, INCIDENT_COLUMNS, IncidentRow, SUBSCRIPTION_COLUMNS, SUBSCRIPTION_SECRET_COLUMNS,
    SubscriptionRow, TimelineRow, like_pattern,
};
use super::{
    AttemptResult, AttemptsOf, ClaimedDelivery, EventFilter, IdempotencyClaim, IncidentFilter, Lease, NewDelivery,
    Notice, Store, Transaction,
};
use crate::domain::auth::{AuditFilter, IssuedKey};
use crate::domain::page::PageToken;
use crate::domain::subscription::SigningSecrets;
use crate::domain::{
    ApiKey, AuditEvent, Component, ComponentStatus, Delivery, DeliveryAttempt, DeliveryStatus, Error, Event, Incident,
    IncidentKey, IncidentRef, Result, Status, Subscription, TimelineEntry, Visibility,
};

/// Migrations, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a write waits for the file lock held by another process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct SqliteStore {
    writer: SqlitePool,
    readers: SqlitePool,
    /// Tasks waiting for a connection (see `PoolStats`).
    waiting: std::sync::atomic::AtomicI64,
    /// An in-memory database has one pool: `readers` is `writer`.
    one_pool: bool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file the URL names, e.g. `sqlite:incidentd.db`
    /// or `sqlite:///var/lib/incidentd/incidentd.db`.
    pub async fn connect(url: &str, max_readers: u32) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500));
        let path = options.get_filename().to_path_buf();
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if !in_memory && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        // Switching a new file to WAL takes a lock SQLite does not wait for: a process opening
        // the file at the same moment as another gets "database is locked" and tries again.
        let mut attempt = 1;
        let writer = loop {
            let opened = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .acquire_timeout(BUSY_TIMEOUT)
                .connect_with(options.clone())
                .await;
            match opened {
                Err(e) if attempt < 10 && is_locked(&e) => {
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                    attempt += 1;
                }
                other => break other?,
            }
        };
        let readers = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(max_readers.max(1))
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(options.pragma("query_only", "true"))
                .await?
        };
        tracing::info!(path = %path.display(), "using SQLite");
        Ok(Self { writer, readers, waiting: Default::default(), one_pool: in_memory })
    }
}

/// Maps a driver error: a locked database or a lost connection is `Unavailable`, everything
/// else `Internal`.
fn db_err(e: sqlx::Error) -> Error {
    match &e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => Error::Unavailable(e.to_string()),
        sqlx::Error::Database(_) if is_locked(&e) => Error::Unavailable(e.to_string()),
        _ => Error::Internal(e.to_string()),
    }
}

/// SQLITE_BUSY (5) or SQLITE_LOCKED (6), with their extended codes.
fn is_locked(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d)
        if d.code().and_then(|c| c.parse::<i32>().ok()).is_some_and(|c| matches!(c & 0xff, 5 | 6)))
}

/// `('investigating', 'identified', 'monitoring')`, from the domain's list of open statuses.
static OPEN_STATUSES: LazyLock<String> = LazyLock::new(|| {
    let list: Vec<String> = Status::OPEN.iter().map(|s| format!("'{s}'")).collect();
    format!("({})", list.join(", "))
});

static SELECT_INCIDENT_BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?1"));
static SELECT_INCIDENT_BY_REF: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE reference_number = ?1"));
/// The reference is bound last, after the written columns.
static INSERT_INCIDENT: LazyLock<String> = LazyLock::new(|| rows::insert_incident_sql('?', &["reference_number"]));
static UPDATE_INCIDENT: LazyLock<String> = LazyLock::new(|| rows::update_incident_sql('?'));
static INSERT_TIMELINE: LazyLock<String> = LazyLock::new(|| rows::insert_timeline_sql('?'));
static INSERT_COMPONENT: LazyLock<String> = LazyLock::new(|| rows::insert_component_sql('?'));
static UPDATE_COMPONENT: LazyLock<String> = LazyLock::new(|| rows::update_component_sql('?'));
static INSERT_API_KEY: LazyLock<String> = LazyLock::new(|| rows::insert_api_key_sql('?'));
static INSERT_EVENT: LazyLock<String> = LazyLock::new(|| rows::insert_event_sql('?'));
static SELECT_UNSEQUENCED: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq IS NULL ORDER BY id LIMIT ?1"));
static SELECT_SUBSCRIPTION: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = ?1"));
static LOCK_SUBSCRIPTION: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {SUBSCRIPTION_COLUMNS}, {SUBSCRIPTION_SECRET_COLUMNS} FROM subscriptions WHERE id = ?1")
});
static SELECT_ACTIVE_SUBSCRIPTIONS: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {SUBSCRIPTION_COLUMNS}, {SUBSCRIPTION_SECRET_COLUMNS} FROM subscriptions WHERE disabled_at IS NULL")
});
static INSERT_SUBSCRIPTION: LazyLock<String> = LazyLock::new(|| rows::insert_subscription_sql('?'));
static UPDATE_SUBSCRIPTION: LazyLock<String> = LazyLock::new(|| rows::update_subscription_sql('?'));
static DELETE_SUBSCRIPTION: LazyLock<String> = LazyLock::new(|| "DELETE FROM subscriptions WHERE id = ?1".to_string());
static SELECT_DELIVERY: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?1"));
static INSERT_ATTEMPT: LazyLock<String> = LazyLock::new(|| rows::insert_attempt_sql('?'));
/// Records the outcome, only while the worker still holds the lease.
static FINISH_ATTEMPT: LazyLock<String> = LazyLock::new(|| {
    "UPDATE deliveries SET status = ?3, attempts = attempts + 1, next_attempt_at = ?4, last_attempt_at = ?5, \
     last_status_code = ?6, last_error = ?7, \
     delivered_at = CASE WHEN ?3 = 'delivered' THEN ?5 ELSE delivered_at END, \
     lease_owner = NULL, lease_expires_at = NULL \
     WHERE id = ?1 AND lease_owner = ?2 AND status = 'sending'"
        .to_string()
});
static CANCEL_DELIVERIES: LazyLock<String> = LazyLock::new(|| {
    "UPDATE deliveries SET status = 'cancelled', next_attempt_at = NULL, lease_owner = NULL, lease_expires_at = NULL \
     WHERE subscription_id = ?1 AND status IN ('pending', 'sending')"
        .to_string()
});
static FAILED_DELIVERIES: LazyLock<String> = LazyLock::new(|| {
    "SELECT id FROM deliveries WHERE subscription_id = ?1 AND status = 'failed' ORDER BY created_at".to_string()
});
static CLAIM_DELIVERIES: LazyLock<String> = LazyLock::new(|| {
    // As on Postgres: due pending deliveries and expired leases, each through its own index.
    let sendable = "d.subscription_id NOT IN (SELECT value FROM json_each(?5)) AND d.subscription_id NOT IN \
                    (SELECT s.id FROM subscriptions s WHERE s.paused OR s.disabled_at IS NOT NULL)";
    format!(
        "UPDATE deliveries SET status = 'sending', lease_owner = ?1, lease_expires_at = ?3 WHERE id IN \
         (SELECT id FROM (SELECT d.id FROM deliveries d WHERE d.status = 'sending' AND d.lease_expires_at < ?2 \
                          AND {sendable} ORDER BY d.lease_expires_at LIMIT ?4) \
          UNION ALL \
          SELECT id FROM (SELECT d.id FROM deliveries d WHERE d.status = 'pending' AND d.next_attempt_at <= ?2 \
                          AND {sendable} ORDER BY d.next_attempt_at LIMIT ?4) \
          LIMIT ?4) RETURNING {DELIVERY_COLUMNS}"
    )
});
static SELECT_EVENTS_BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {EVENT_COLUMNS} FROM events WHERE id IN (SELECT value FROM json_each(?1))"));
static SELECT_SUBSCRIPTIONS_BY_ID: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {SUBSCRIPTION_COLUMNS}, {SUBSCRIPTION_SECRET_COLUMNS} FROM subscriptions \
         WHERE id IN (SELECT value FROM json_each(?1))"
    )
});
static INSERT_AUDIT: LazyLock<String> = LazyLock::new(|| rows::insert_audit_sql('?'));
static SELECT_API_KEY_BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = ?1"));
static REVOKE_API_KEY: LazyLock<String> = LazyLock::new(|| {
    format!("UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1 RETURNING {API_KEY_COLUMNS}")
});

/// Components with the statuses open incidents impose on each (`imposed`, a JSON array).
static SELECT_COMPONENTS: LazyLock<String> = LazyLock::new(|| {
    String::from(
        "SELECT c.id, c.name, c.description, c.group_name, c.position, c.status, c.created_at, c.updated_at, \
         c.version, (SELECT json_group_array(ic.status) FROM incident_components ic \
         WHERE ic.component_id = c.id AND ic.incident_open) AS imposed FROM components c",
    )
});
static SELECT_COMPONENT_BY_ID: LazyLock<String> = LazyLock::new(|| format!("{} WHERE c.id = ?1", *SELECT_COMPONENTS));
const COUNT_OPEN_INCIDENTS_FOR_COMPONENT: &str =
    "SELECT count(*) FROM incident_components WHERE component_id = ?1 AND incident_open";

/// A JSON array of strings, for `IN (SELECT value FROM json_each(?))`.
fn json_list<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    serde_json::Value::from(items.into_iter().map(|i| i.to_string()).collect::<Vec<_>>()).to_string()
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> anyhow::Result<()> {
        // SQLite has no advisory lock: processes starting together on one file may both find
        // a migration missing, and the second to apply it fails ("table already exists"). Each
        // migration commits with its record, so running again skips what the other applied.
        let mut attempt = 1;
        while let Err(e) = MIGRATOR.run(&self.writer).await {
            if attempt == 5 {
                return Err(e.into());
            }
            tracing::debug!(error = %e, "another process is migrating this database; trying again");
            tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            attempt += 1;
        }
        Ok(())
    }

    /// `PRAGMA optimize`, SQLite's recommended upkeep: it analyses the tables never analysed
    /// or grown a lot since (0x10002: every table, not only those this connection has read,
    /// which for the writer would leave out what only the readers query), sampling a bounded
    /// number of rows per index, so it takes milliseconds even on a large file. Without
    /// statistics SQLite plans by guesswork: the filtered incident list walked a whole
    /// severity and sorted it.
    async fn refresh_statistics(&self) -> Result<()> {
        let mut conn = self.writer.acquire().await.map_err(db_err)?;
        sqlx::query("PRAGMA analysis_limit = 1000").execute(&mut *conn).await.map_err(db_err)?;
        sqlx::query("PRAGMA optimize = 0x10002").execute(&mut *conn).await.map_err(db_err)?;
        Ok(())
    }

    async fn begin(&self) -> Result<Box<dyn Transaction>> {
        let waiting = super::Waiting::enter(&self.waiting);
        let tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
        drop(waiting);
        Ok(Box::new(SqliteTx { tx, _span: crate::telemetry::transaction_span("sqlite") }))
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.readers).await.map_err(db_err)?;
        Ok(())
    }

    async fn get_incident(&self, key: IncidentKey) -> Result<Option<Incident>> {
        let waiting = super::Waiting::enter(&self.waiting);
        let mut conn = self.readers.acquire().await.map_err(db_err)?;
        drop(waiting);
        select_incident(&mut *conn, key).await
    }

    async fn observe(&self) -> Result<super::Observed> {
        let open = sqlx::query_as(AssertSqlSafe(rows::OBSERVE_OPEN_SQL.as_str()))
            .fetch_all(&self.readers)
            .await
            .map_err(db_err)?;
        let outbox = sqlx::query_as(rows::OBSERVE_OUTBOX_SQL).fetch_one(&self.readers).await.map_err(db_err)?;
        // The writer and the readers together (one pool when the database is in memory).
        let pools: &[&SqlitePool] = if self.one_pool { &[&self.writer] } else { &[&self.writer, &self.readers] };
        let mut pool =
            super::PoolStats { waiting: self.waiting.load(std::sync::atomic::Ordering::Relaxed), ..Default::default() };
        for p in pools {
            let idle = p.num_idle() as i64;
            pool.idle += idle;
            pool.in_use += i64::from(p.size()) - idle;
            pool.max += i64::from(p.options().get_max_connections());
        }
        rows::observed(open, outbox, pool)
    }

    async fn list_incidents(
        &self,
        filter: &IncidentFilter,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<Incident>> {
        let mut q = QueryBuilder::<Sqlite>::new(format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE 1"));
        if !filter.statuses.is_empty() {
            q.push(" AND status IN (SELECT value FROM json_each(")
                .push_bind(json_list(filter.statuses.iter().map(|s| s.as_str())))
                .push("))");
        }
        if !filter.severities.is_empty() {
            q.push(" AND severity IN (SELECT value FROM json_each(")
                .push_bind(json_list(filter.severities.iter().map(|s| s.as_str())))
                .push("))");
        }
        match filter.open {
            Some(true) => q.push(format!(" AND status IN {}", *OPEN_STATUSES)),
            Some(false) => q.push(format!(" AND status NOT IN {}", *OPEN_STATUSES)),
            None => &mut q,
        };
        if let Some(c) = filter.component_id {
            q.push(" AND EXISTS (SELECT 1 FROM incident_components ic WHERE ic.incident_id = incidents.id AND ic.component_id = ")
                .push_bind(DbId(c))
                .push(")");
        }
        for term in &filter.terms {
            // The trigram index serves LIKE patterns; one with an ESCAPE clause is evaluated
            // row by row, with the same result.
            let pattern = like_pattern(term);
            let escape = if pattern.contains('\\') { r" ESCAPE '\'" } else { "" };
            q.push(" AND reference_number IN (SELECT rowid FROM incidents_fts WHERE search_text LIKE ")
                .push_bind(pattern)
                .push(escape)
                .push(")");
        }
        if let Some(t) = filter.created_after {
            q.push(" AND created_at > ").push_bind(DbTime(t));
        }
        if let Some(t) = filter.created_before {
            q.push(" AND created_at < ").push_bind(DbTime(t));
        }
        rows::push_newest_first(&mut q, "created_at", after, limit)?;
        let rows: Vec<IncidentRow> = q.build_query_as().fetch_all(&self.readers).await.map_err(db_err)?;
        rows.into_iter().map(Incident::try_from).collect()
    }

    async fn list_timeline(
        &self,
        incident_id: Uuid,
        visibility: Option<Visibility>,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<TimelineEntry>> {
        let rows: Vec<TimelineRow> = rows::timeline_query::<Sqlite>(incident_id, visibility, after, limit)?
            .build_query_as()
            .fetch_all(&self.readers)
            .await
            .map_err(db_err)?;
        rows.into_iter().map(TimelineEntry::try_from).collect()
    }

    async fn get_component(&self, id: Uuid) -> Result<Option<Component>> {
        select_component(&self.readers, id).await.map(|c| c.map(|(c, _)| c))
    }

    async fn list_components(
        &self,
        group: Option<&str>,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<Component>> {
        let rows: Vec<ComponentRow> = rows::components_query::<Sqlite>(&SELECT_COMPONENTS, group, after, limit)?
            .build_query_as()
            .fetch_all(&self.readers)
            .await
            .map_err(db_err)?;
        rows.into_iter().map(ComponentRow::into_component).collect()
    }

    async fn purge_idempotency_keys(&self, before: DateTime<Utc>) -> Result<u64> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?1")
            .bind(DbTime(before))
            .execute(&self.writer)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected())
    }

    async fn get_subscription(&self, id: Uuid) -> Result<Option<Subscription>> {
        let row: Option<SubscriptionRow> = sqlx::query_as(AssertSqlSafe(SELECT_SUBSCRIPTION.as_str()))
            .bind(DbId(id))
            .fetch_optional(&self.readers)
            .await
            .map_err(db_err)?;
        row.map(Subscription::try_from).transpose()
    }

    async fn list_subscriptions(&self, after: Option<&PageToken>, limit: u32) -> Result<Vec<Subscription>> {
        let rows: Vec<SubscriptionRow> = rows::subscriptions_query::<Sqlite>(after, limit)?
            .build_query_as()
            .fetch_all(&self.readers)
            .await
            .map_err(db_err)?;
        rows.into_iter().map(Subscription::try_from).collect()
    }

    async fn get_delivery(&self, id: Uuid) -> Result<Option<Delivery>> {
        let row: Option<DeliveryRow> = sqlx::query_as(AssertSqlSafe(SELECT_DELIVERY.as_str()))
            .bind(DbId(id))
            .fetch_optional(&self.readers)
            .await
            .map_err(db_err)?;
        row.map(Delivery::try_from).transpose()
    }

    async fn list_deliveries(
        &self,
        subscription_id: Uuid,
        status: Option<DeliveryStatus>,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        let rows: Vec<DeliveryRow> = rows::deliveries_query::<Sqlite>(subscription_id, status, after, limit)?
            .build_query_as()
            .fetch_all(&self.readers)
            .await
            .map_err(db_err)?;
        rows.into_iter().map(Delivery::try_from).collect()
    }

    async fn list_attempts(
        &self,
        of: AttemptsOf,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<DeliveryAttempt>> {
        let (column, id) = match of {
            AttemptsOf::Delivery(id) => ("delivery_id", id),
            AttemptsOf::Subscription(id) => ("subscription_id", id),
        };
        let rows: Vec<AttemptRow> = rows::attempts_query::<Sqlite>(column, id, after, limit)?
            .build_query_as()
            .fetch_all(&self.readers)
            .await
            .map_err(db_err)?;
        Ok(rows.into_iter().map(DeliveryAttempt::from).collect())
    }

    async fn claim_deliveries(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        exclude: &[Uuid],
    ) -> Result<Vec<ClaimedDelivery>> {
        // Inside the single write transaction nobody else claims at the same time.
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
        let rows: Vec<DeliveryRow> = sqlx::query_as(AssertSqlSafe(CLAIM_DELIVERIES.as_str()))
            .bind(owner)
            .bind(DbTime(now))
            .bind(DbTime(lease_until))
            .bind(i64::from(limit))
            .bind(json_list(exclude))
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
        let deliveries = rows.into_iter().map(Delivery::try_from).collect::<Result<Vec<_>>>()?;
        let events: Vec<EventRow> = sqlx::query_as(AssertSqlSafe(SELECT_EVENTS_BY_ID.as_str()))
            .bind(json_list(deliveries.iter().map(|d| d.event_id)))
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
        let subs = sqlx::query(AssertSqlSafe(SELECT_SUBSCRIPTIONS_BY_ID.as_str()))
            .bind(json_list(deliveries.iter().map(|d| d.subscription_id)))
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        rows::join_claims(deliveries, events, &subs)
    }

    async fn extend_leases(&self, owner: &str, ids: &[Uuid], until: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "UPDATE deliveries SET lease_expires_at = ?3 WHERE lease_owner = ?1 AND status = 'sending' \
             AND id IN (SELECT value FROM json_each(?2))",
        )
        .bind(owner)
        .bind(json_list(ids))
        .bind(DbTime(until))
        .execute(&self.writer)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn release_deliveries(&self, owner: &str, ids: &[Uuid], at: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = ?3, lease_owner = NULL, lease_expires_at = NULL \
             WHERE lease_owner = ?1 AND status = 'sending' AND id IN (SELECT value FROM json_each(?2))",
        )
        .bind(owner)
        .bind(json_list(ids))
        .bind(DbTime(at))
        .execute(&self.writer)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn find_api_key(&self, lookup: &str) -> Result<Option<(ApiKey, Vec<u8>)>> {
        let row: Option<(Vec<u8>, DbId)> = sqlx::query_as("SELECT secret_hash, id FROM api_keys WHERE lookup = ?1")
            .bind(lookup)
            .fetch_optional(&self.readers)
            .await
            .map_err(db_err)?;
        let Some((hash, id)) = row else { return Ok(None) };
        Ok(self.get_api_key(id.0).await?.map(|k| (k, hash)))
    }

    async fn get_api_key(&self, id: Uuid) -> Result<Option<ApiKey>> {
        let row: Option<ApiKeyRow> = sqlx::query_as(AssertSqlSafe(SELECT_API_KEY_BY_ID.as_str()))
            .bind(DbId(id))
            .fetch_optional(&self.readers)
            .await
            .map_err(db_err)?;
        row.map(ApiKey::try_from).transpose()
    }

    async fn list_api_keys(&self, after: Option<&PageToken>, limit: u32) -> Result<Vec<ApiKey>> {
        let rows: Vec<ApiKeyRow> = rows::api_keys_query::<Sqlite>(after, limit)?
            .build_query_as()
            .fetch_all(&self.readers)
            .await
            .map_err(db_err)?;
        rows.into_iter().map(ApiKey::try_from).collect()
    }

    async fn touch_api_key(&self, id: Uuid, at: DateTime<Utc>) -> Result<()> {
        sqlx::query("UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1")
            .bind(DbId(id))
            .bind(DbTime(at))
            .execute(&self.writer)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn list_events(&self, after: i64, filter: &EventFilter, limit: u32) -> Result<Vec<Event>> {
        let rows: Vec<EventRow> = rows::events_query::<Sqlite>(after, filter, limit)
            .build_query_as()
            .fetch_all(&self.readers)
            .await
            .map_err(db_err)?;
        rows.into_iter().map(Event::try_from).collect()
    }

    async fn notifications(&self) -> Result<Option<tokio::sync::mpsc::Receiver<Notice>>> {
        Ok(None)
    }

    async fn latest_event_seq(&self) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT value FROM counters WHERE name = 'event_seq'")
            .fetch_one(&self.readers)
            .await
            .map_err(db_err)?;
        Ok(n)
    }

    async fn list_audit_events(
        &self,
        filter: &AuditFilter,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>> {
        let rows: Vec<AuditRow> = rows::audit_events_query::<Sqlite>(filter, after, limit)?
            .build_query_as()
            .fetch_all(&self.readers)
            .await
            .map_err(db_err)?;
        Ok(rows.into_iter().map(AuditEvent::from).collect())
    }
}

async fn select_incident<'e, E: sqlx::SqliteExecutor<'e>>(db: E, key: IncidentKey) -> Result<Option<Incident>> {
    let row: Option<IncidentRow> = match key {
        IncidentKey::Id(id) => {
            sqlx::query_as(AssertSqlSafe(SELECT_INCIDENT_BY_ID.as_str())).bind(DbId(id)).fetch_optional(db).await
        }
        IncidentKey::Ref(r) => {
            sqlx::query_as(AssertSqlSafe(SELECT_INCIDENT_BY_REF.as_str())).bind(r.0).fetch_optional(db).await
        }
    }
    .map_err(db_err)?;
    row.map(Incident::try_from).transpose()
}

async fn select_component<'e, E: sqlx::SqliteExecutor<'e>>(
    db: E,
    id: Uuid,
) -> Result<Option<(Component, Vec<ComponentStatus>)>> {
    let row: Option<ComponentRow> = sqlx::query_as(AssertSqlSafe(SELECT_COMPONENT_BY_ID.as_str()))
        .bind(DbId(id))
        .fetch_optional(db)
        .await
        .map_err(db_err)?;
    row.map(ComponentRow::into_parts).transpose()
}

/// A write transaction. It holds the database's write lock from `BEGIN IMMEDIATE`, so its
/// reads are already serialized with every other writer: no row locks are needed.
struct SqliteTx {
    tx: sqlx::Transaction<'static, Sqlite>,
    /// Open from `begin` until commit or rollback (drop).
    _span: tracing::Span,
}

#[async_trait]
impl Transaction for SqliteTx {
    async fn claim_idempotency_key(
        &mut self,
        scope: &str,
        key: &str,
        request_hash: &[u8],
        now: DateTime<Utc>,
        expired_before: DateTime<Utc>,
    ) -> Result<IdempotencyClaim> {
        let claimed = sqlx::query(
            "INSERT INTO idempotency_keys (scope, key, request_hash, created_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (scope, key) DO UPDATE SET request_hash = excluded.request_hash, response = NULL, \
             created_at = excluded.created_at WHERE idempotency_keys.created_at < ?5",
        )
        .bind(scope)
        .bind(key)
        .bind(request_hash)
        .bind(DbTime(now))
        .bind(DbTime(expired_before))
        .execute(&mut *self.tx)
        .await
        .map_err(db_err)?;
        if claimed.rows_affected() == 1 {
            return Ok(IdempotencyClaim::Claimed);
        }
        let (request_hash, response): (Vec<u8>, Option<Json<serde_json::Value>>) =
            sqlx::query_as("SELECT request_hash, response FROM idempotency_keys WHERE scope = ?1 AND key = ?2")
                .bind(scope)
                .bind(key)
                .fetch_one(&mut *self.tx)
                .await
                .map_err(db_err)?;
        let Json(response) =
            response.ok_or_else(|| Error::Internal(format!("idempotency record {scope}/{key} has no response")))?;
        Ok(IdempotencyClaim::Existing { request_hash, response })
    }

    async fn save_idempotent_response(&mut self, scope: &str, key: &str, response: &serde_json::Value) -> Result<()> {
        sqlx::query("UPDATE idempotency_keys SET response = ?3 WHERE scope = ?1 AND key = ?2")
            .bind(scope)
            .bind(key)
            .bind(Json(response))
            .execute(&mut *self.tx)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn insert_incident(&mut self, incident: &Incident) -> Result<IncidentRef> {
        let (n,): (i64,) =
            sqlx::query_as("UPDATE counters SET value = value + 1 WHERE name = 'incident_reference' RETURNING value")
                .fetch_one(&mut *self.tx)
                .await
                .map_err(db_err)?;
        rows::bind_incident(sqlx::query(AssertSqlSafe(INSERT_INCIDENT.as_str())), incident)
            .bind(n)
            .execute(&mut *self.tx)
            .await
            .map_err(db_err)?;
        sync_components(&mut self.tx, incident, false).await?;
        Ok(IncidentRef(n))
    }

    async fn lock_incident(&mut self, key: IncidentKey) -> Result<Option<Incident>> {
        select_incident(&mut *self.tx, key).await
    }

    async fn update_incident(&mut self, incident: &Incident, components_changed: bool) -> Result<()> {
        rows::bind_incident(sqlx::query(AssertSqlSafe(UPDATE_INCIDENT.as_str())), incident)
            .execute(&mut *self.tx)
            .await
            .map_err(db_err)?;
        if components_changed {
            sync_components(&mut self.tx, incident, true).await?;
        } else {
            sqlx::query(
                "UPDATE incident_components SET incident_open = ?2 WHERE incident_id = ?1 AND incident_open <> ?2",
            )
            .bind(DbId(incident.id))
            .bind(incident.is_open())
            .execute(&mut *self.tx)
            .await
            .map_err(db_err)?;
        }
        Ok(())
    }

    async fn delete_incident(&mut self, id: Uuid) -> Result<()> {
        sqlx::query("DELETE FROM incidents WHERE id = ?1")
            .bind(DbId(id))
            .execute(&mut *self.tx)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn resolve_incident_ids(&mut self, keys: &[IncidentKey]) -> Result<Vec<Option<Uuid>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let ids = json_list(keys.iter().filter_map(|k| if let IncidentKey::Id(id) = k { Some(*id) } else { None }));
        let refs = json_list(keys.iter().filter_map(|k| if let IncidentKey::Ref(r) = k { Some(r.0) } else { None }));
        let found: Vec<(DbId, i64)> = sqlx::query_as(
            "SELECT id, reference_number FROM incidents WHERE id IN (SELECT value FROM json_each(?1)) \
             OR reference_number IN (SELECT CAST(value AS INTEGER) FROM json_each(?2))",
        )
        .bind(ids)
        .bind(refs)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(db_err)?;
        Ok(keys
            .iter()
            .map(|k| {
                found
                    .iter()
                    .find(|(id, n)| match k {
                        IncidentKey::Id(want) => id.0 == *want,
                        IncidentKey::Ref(r) => *n == r.0,
                    })
                    .map(|(id, _)| id.0)
            })
            .collect())
    }

    async fn insert_timeline_entry(&mut self, e: &TimelineEntry) -> Result<()> {
        rows::bind_timeline_entry(sqlx::query(AssertSqlSafe(INSERT_TIMELINE.as_str())), e)
            .execute(&mut *self.tx)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn existing_component_ids(&mut self, ids: &[Uuid]) -> Result<HashSet<Uuid>> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let found: Vec<(DbId,)> =
            sqlx::query_as("SELECT id FROM components WHERE id IN (SELECT value FROM json_each(?1))")
                .bind(json_list(ids))
                .fetch_all(&mut *self.tx)
                .await
                .map_err(db_err)?;
        Ok(found.into_iter().map(|(id,)| id.0).collect())
    }

    async fn insert_component(&mut self, c: &Component) -> Result<()> {
        rows::bind_component(sqlx::query(AssertSqlSafe(INSERT_COMPONENT.as_str())), c)
            .execute(&mut *self.tx)
            .await
            .map_err(|e| super::component_name_err(e, &c.name, db_err))?;
        Ok(())
    }

    async fn lock_component(&mut self, id: Uuid) -> Result<Option<(Component, Vec<ComponentStatus>)>> {
        select_component(&mut *self.tx, id).await
    }

    async fn update_component(&mut self, c: &Component) -> Result<()> {
        rows::bind_component(sqlx::query(AssertSqlSafe(UPDATE_COMPONENT.as_str())), c)
            .execute(&mut *self.tx)
            .await
            .map_err(|e| super::component_name_err(e, &c.name, db_err))?;
        Ok(())
    }

    async fn delete_component(&mut self, id: Uuid) -> Result<()> {
        let (open,): (i64,) = sqlx::query_as(COUNT_OPEN_INCIDENTS_FOR_COMPONENT)
            .bind(DbId(id))
            .fetch_one(&mut *self.tx)
            .await
            .map_err(db_err)?;
        if open > 0 {
            return Err(super::component_in_use(id, open));
        }
        sqlx::query("DELETE FROM components WHERE id = ?1")
            .bind(DbId(id))
            .execute(&mut *self.tx)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn insert_api_key(&mut self, key: &IssuedKey) -> Result<()> {
        rows::bind_api_key(sqlx::query(AssertSqlSafe(INSERT_API_KEY.as_str())), key)
            .execute(&mut *self.tx)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn revoke_api_key(&mut self, id: Uuid, at: DateTime<Utc>) -> Result<Option<ApiKey>> {
        let row: Option<ApiKeyRow> = sqlx::query_as(AssertSqlSafe(REVOKE_API_KEY.as_str()))
            .bind(DbId(id))
            .bind(DbTime(at))
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(db_err)?;
        row.map(ApiKey::try_from).transpose()
    }

    async fn count_api_keys_exclusively(&mut self) -> Result<i64> {
        // The write transaction already excludes every other writer.
        let (n,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM api_keys").fetch_one(&mut *self.tx).await.map_err(db_err)?;
        Ok(n)
    }

    async fn insert_audit_event(&mut self, event: &AuditEvent) -> Result<()> {
        rows::bind_audit_event(sqlx::query(AssertSqlSafe(INSERT_AUDIT.as_str())), event)
            .execute(&mut *self.tx)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn insert_subscription(&mut self, subscription: &Subscription, secrets: &SigningSecrets) -> Result<()> {
        rows::bind_subscription(sqlx::query(AssertSqlSafe(INSERT_SUBSCRIPTION.as_str())), subscription, secrets)
            .execute(&mut *self.tx)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn lock_subscription(&mut self, id: Uuid) -> Result<Option<(Subscription, SigningSecrets)>> {
        let row = sqlx::query(AssertSqlSafe(LOCK_SUBSCRIPTION.as_str()))
            .bind(DbId(id))
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(db_err)?;
        let Some(row) = row else { return Ok(None) };
        rows::subscription_with_secrets(&row).map(Some)
    }

    async fn update_subscription(&mut self, subscription: &Subscription, secrets: &SigningSecrets) -> Result<()> {
        rows::bind_subscription(sqlx::query(AssertSqlSafe(UPDATE_SUBSCRIPTION.as_str())), subscription, secrets)
            .execute(&mut *self.tx)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn delete_subscription(&mut self, id: Uuid) -> Result<()> {
        sqlx::query(AssertSqlSafe(DELETE_SUBSCRIPTION.as_str()))
            .bind(DbId(id))
            .execute(&mut *self.tx)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn fanout_subscriptions(&mut self) -> Result<Vec<(Subscription, SigningSecrets)>> {
        let rows = sqlx::query(AssertSqlSafe(SELECT_ACTIVE_SUBSCRIPTIONS.as_str()))
            .fetch_all(&mut *self.tx)
            .await
            .map_err(db_err)?;
        rows.iter().map(rows::subscription_with_secrets).collect()
    }

    async fn record_attempts(&mut self, results: &[AttemptResult]) -> Result<u64> {
        let mut updated = 0;
        for result in results {
            rows::bind_attempt(sqlx::query(AssertSqlSafe(INSERT_ATTEMPT.as_str())), &result.attempt)
                .execute(&mut *self.tx)
                .await
                .map_err(db_err)?;
            let a = &result.attempt;
            updated += sqlx::query(AssertSqlSafe(FINISH_ATTEMPT.as_str()))
                .bind(DbId(a.delivery_id))
                .bind(result.owner.as_str())
                .bind(result.status.as_str())
                .bind(result.next_attempt_at.map(DbTime))
                .bind(DbTime(a.attempted_at))
                .bind(a.status_code)
                .bind(a.error.as_deref())
                .execute(&mut *self.tx)
                .await
                .map_err(db_err)?
                .rows_affected();
        }
        Ok(updated)
    }

    async fn clear_failing(&mut self, subscription_ids: &[Uuid], now: DateTime<Utc>) -> Result<()> {
        if subscription_ids.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE subscriptions SET failing_since = NULL, version = version + 1, updated_at = ?2 \
             WHERE failing_since IS NOT NULL AND id IN (SELECT value FROM json_each(?1))",
        )
        .bind(json_list(subscription_ids))
        .bind(DbTime(now))
        .execute(&mut *self.tx)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn cancel_deliveries(&mut self, subscription_id: Uuid) -> Result<u64> {
        let done = sqlx::query(AssertSqlSafe(CANCEL_DELIVERIES.as_str()))
            .bind(DbId(subscription_id))
            .execute(&mut *self.tx)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected())
    }

    async fn failed_delivery_ids(&mut self, subscription_id: Uuid) -> Result<Vec<Uuid>> {
        let rows: Vec<(DbId,)> = sqlx::query_as(AssertSqlSafe(FAILED_DELIVERIES.as_str()))
            .bind(DbId(subscription_id))
            .fetch_all(&mut *self.tx)
            .await
            .map_err(db_err)?;
        Ok(rows.into_iter().map(|(id,)| id.0).collect())
    }

    async fn insert_deliveries(
        &mut self,
        deliveries: &[NewDelivery<'_>],
        now: DateTime<Utc>,
        lease: Lease<'_>,
    ) -> Result<()> {
        for chunk in deliveries.chunks(5000) {
            let rows: Vec<(String, String, String, &str, bool)> = chunk
                .iter()
                .map(|d| {
                    (
                        d.id.hyphenated().to_string(),
                        d.event.id.hyphenated().to_string(),
                        d.subscription_id.hyphenated().to_string(),
                        d.event.event_type.as_str(),
                        d.claimed,
                    )
                })
                .collect();
            sqlx::query(
                "INSERT INTO deliveries (id, event_id, subscription_id, event_type, status, next_attempt_at, created_at, \
                 lease_owner, lease_expires_at) \
                 SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), \
                 json_extract(value, '$[3]'), CASE WHEN json_extract(value, '$[4]') THEN 'sending' ELSE 'pending' END, \
                 ?2, ?2, CASE WHEN json_extract(value, '$[4]') THEN ?3 END, CASE WHEN json_extract(value, '$[4]') THEN ?4 END \
                 FROM json_each(?1)",
            )
            .bind(Json(&rows))
            .bind(DbTime(now))
            .bind(lease.owner)
            .bind(DbTime(lease.until))
            .execute(&mut *self.tx)
            .await
            .map_err(db_err)?;
        }
        Ok(())
    }

    async fn requeue_deliveries(&mut self, ids: &[Uuid], now: DateTime<Utc>) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?2, lease_owner = NULL, \
             lease_expires_at = NULL WHERE id IN (SELECT value FROM json_each(?1)) \
             AND status IN ('failed', 'cancelled', 'delivered')",
        )
        .bind(json_list(ids))
        .bind(DbTime(now))
        .execute(&mut *self.tx)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected())
    }

    async fn insert_events(&mut self, events: &[Event]) -> Result<()> {
        for e in events {
            rows::bind_event(sqlx::query(AssertSqlSafe(INSERT_EVENT.as_str())), e)
                .execute(&mut *self.tx)
                .await
                .map_err(db_err)?;
        }
        Ok(())
    }

    async fn lead_sequencer(&mut self) -> Result<bool> {
        // The write transaction already excludes every other writer.
        Ok(true)
    }

    async fn unsequenced_events(&mut self, limit: u32) -> Result<Vec<Event>> {
        let rows: Vec<EventRow> = sqlx::query_as(AssertSqlSafe(SELECT_UNSEQUENCED.as_str()))
            .bind(i64::from(limit))
            .fetch_all(&mut *self.tx)
            .await
            .map_err(db_err)?;
        rows.into_iter().map(Event::try_from).collect()
    }

    async fn assign_sequence(&mut self, ids: &[Uuid]) -> Result<Vec<i64>> {
        let n = ids.len() as i64;
        let (last,): (i64,) =
            sqlx::query_as("UPDATE counters SET value = value + ?1 WHERE name = 'event_seq' RETURNING value")
                .bind(n)
                .fetch_one(&mut *self.tx)
                .await
                .map_err(db_err)?;
        let seqs: Vec<i64> = (last - n + 1..=last).collect();
        let pairs: Vec<(String, i64)> =
            ids.iter().map(|id| id.hyphenated().to_string()).zip(seqs.iter().copied()).collect();
        sqlx::query(
            "UPDATE events SET seq = m.seq FROM (SELECT json_extract(value, '$[0]') AS id, \
             json_extract(value, '$[1]') AS seq FROM json_each(?1)) AS m WHERE events.id = m.id",
        )
        .bind(Json(&pairs))
        .execute(&mut *self.tx)
        .await
        .map_err(db_err)?;
        Ok(seqs)
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        self.tx.commit().await.map_err(db_err)
    }
}

/// Rewrites the incident's rows in `incident_components`.
async fn sync_components(
    tx: &mut sqlx::Transaction<'static, Sqlite>,
    incident: &Incident,
    clear_first: bool,
) -> Result<()> {
    if clear_first {
        sqlx::query("DELETE FROM incident_components WHERE incident_id = ?1")
            .bind(DbId(incident.id))
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
    }
    if incident.affected_components.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO incident_components (incident_id, component_id, status, incident_open) \
         SELECT ?1, json_extract(value, '$.component_id'), json_extract(value, '$.status'), ?3 FROM json_each(?2)",
    )
    .bind(DbId(incident.id))
    .bind(Json(&incident.affected_components))
    .bind(incident.is_open())
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}
