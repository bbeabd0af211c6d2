//! The Postgres store (sqlx, runtime-checked queries: building needs no database).

use std::collections::HashSet;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Postgres, QueryBuilder};
use uuid::Uuid;

use super::rows::{
    self, API_KEY_COLUMNS, ApiKeyRow, AttemptRow, AuditRow, ComponentRow, DELIVERY_COLUMNS, DbId, DeliveryRow,
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
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub struct PgStore {
    pool: PgPool,
    /// Tasks waiting for a connection (see `PoolStats`).
    waiting: std::sync::atomic::AtomicI64,
}

impl PgStore {
    /// Connects (creating the database if it does not exist yet and the role may create it).
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let options: PgConnectOptions = url.parse()?;
        let options = options.log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500));
        if !Postgres::database_exists(url).await.unwrap_or(true) {
            tracing::info!(database = options.get_database().unwrap_or_default(), "creating database");
            // Replicas starting together may race to create it: losing the race is fine.
            if let Err(e) = Postgres::create_database(url).await
                && !Postgres::database_exists(url).await.unwrap_or(false)
            {
                return Err(e.into());
            }
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            // sqlx pings every connection on acquire by default: a round trip per request on
            // top of the query (and the ping it makes on release). A connection used within
            // the last half second is known good; one idle for longer (it may have been cut
            // by a failover or a restart) is still checked first. A connection that fails
            // anyway is discarded when it is released.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for > TRUST_RECENTLY_USED {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options)
            .await?;
        Ok(Self { pool, waiting: Default::default() })
    }
}

/// How recently a pooled connection must have been used to be handed out without a ping.
const TRUST_RECENTLY_USED: Duration = Duration::from_millis(500);

/// Maps a driver error: connection trouble is `Unavailable`, everything else `Internal`.
fn db_err(e: sqlx::Error) -> Error {
    match &e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
            Error::Unavailable(e.to_string())
        }
        // Connection exceptions, shutdowns, resource exhaustion, and the refusals a server
        // gives at connect time (authentication, missing or closed database).
        sqlx::Error::Database(d)
            if d.code().is_some_and(|c| {
                ["08", "57P", "53", "28"].iter().any(|p| c.starts_with(p)) || c == "3D000" || c == "55000"
            }) =>
        {
            Error::Unavailable(e.to_string())
        }
        // A deadlock or serialization failure: the change collided with a concurrent one and
        // was rolled back whole; the caller may retry it.
        sqlx::Error::Database(d) if d.code().is_some_and(|c| c == "40P01" || c == "40001") => {
            Error::Conflict("the change collided with a concurrent change and was not applied; retry it".into())
        }
        _ => Error::Internal(e.to_string()),
    }
}

/// `('investigating', 'identified', 'monitoring')`, from the domain's list of open statuses.
static OPEN_STATUSES: LazyLock<String> = LazyLock::new(|| {
    let list: Vec<String> = Status::OPEN.iter().map(|s| format!("'{s}'")).collect();
    format!("({})", list.join(", "))
});

static SELECT_INCIDENT_BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1"));
static SELECT_INCIDENT_BY_REF: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE reference_number = $1"));
static LOCK_INCIDENT_BY_ID: LazyLock<String> = LazyLock::new(|| format!("{} FOR UPDATE", *SELECT_INCIDENT_BY_ID));
static LOCK_INCIDENT_BY_REF: LazyLock<String> = LazyLock::new(|| format!("{} FOR UPDATE", *SELECT_INCIDENT_BY_REF));
/// The reference comes from the column default (a sequence).
static INSERT_INCIDENT: LazyLock<String> =
    LazyLock::new(|| format!("{} RETURNING reference_number", rows::insert_incident_sql('$', &[])));
/// Updates the incident and, in the same statement, the open flag of its component rows.
static UPDATE_INCIDENT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH u AS ({} RETURNING status IN {open} AS open) \
         UPDATE incident_components ic SET incident_open = u.open FROM u \
         WHERE ic.incident_id = $1 AND ic.incident_open <> u.open",
        rows::update_incident_sql('$'),
        open = *OPEN_STATUSES
    )
});
static INSERT_COMPONENT: LazyLock<String> = LazyLock::new(|| rows::insert_component_sql('$'));
static UPDATE_COMPONENT: LazyLock<String> = LazyLock::new(|| rows::update_component_sql('$'));
static INSERT_API_KEY: LazyLock<String> = LazyLock::new(|| rows::insert_api_key_sql('$'));
static SELECT_UNSEQUENCED: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq IS NULL ORDER BY id LIMIT $1"));
/// The advisory lock the sequencer holds while it runs (one replica at a time).
const SEQUENCER_LOCK: i64 = 0x696e_6369_6465_6e01;
static SELECT_SUBSCRIPTION: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = $1"));
static LOCK_SUBSCRIPTION: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {SUBSCRIPTION_COLUMNS}, {SUBSCRIPTION_SECRET_COLUMNS} FROM subscriptions WHERE id = $1 FOR UPDATE")
});
static SELECT_ACTIVE_SUBSCRIPTIONS: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {SUBSCRIPTION_COLUMNS}, {SUBSCRIPTION_SECRET_COLUMNS} FROM subscriptions WHERE disabled_at IS NULL")
});
static INSERT_SUBSCRIPTION: LazyLock<String> = LazyLock::new(|| rows::insert_subscription_sql('$'));
static UPDATE_SUBSCRIPTION: LazyLock<String> = LazyLock::new(|| rows::update_subscription_sql('$'));
static DELETE_SUBSCRIPTION: LazyLock<String> = LazyLock::new(|| "DELETE FROM subscriptions WHERE id = $1".to_string());
static SELECT_DELIVERY: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = $1"));
static CANCEL_DELIVERIES: LazyLock<String> = LazyLock::new(|| {
    "UPDATE deliveries SET status = 'cancelled', next_attempt_at = NULL, lease_owner = NULL, lease_expires_at = NULL \
     WHERE subscription_id = $1 AND status IN ('pending', 'sending')"
        .to_string()
});
static FAILED_DELIVERIES: LazyLock<String> = LazyLock::new(|| {
    "SELECT id FROM deliveries WHERE subscription_id = $1 AND status = 'failed' ORDER BY created_at".to_string()
});
static CLAIM_DELIVERIES: LazyLock<String> = LazyLock::new(|| {
    // Two scans in index order (due pending deliveries, then expired leases) that filter on
    // the deliveries' own columns only: the paused and disabled subscriptions are looked up
    // once per claim, so no join can lead the planner away from the index however stale its
    // statistics (a queue table's always are).
    let returning: Vec<String> = DELIVERY_COLUMNS.split(',').map(|c| format!("d.{}", c.trim())).collect();
    let sendable = "NOT (d2.subscription_id = ANY($5)) AND NOT (d2.subscription_id = ANY(ARRAY(\
                    SELECT s.id FROM subscriptions s WHERE s.paused OR s.disabled_at IS NOT NULL)))";
    format!(
        "WITH due AS (SELECT d2.id FROM deliveries d2 WHERE d2.status = 'pending' AND d2.next_attempt_at <= $2 \
                      AND {sendable} ORDER BY d2.next_attempt_at LIMIT $4 FOR UPDATE OF d2 SKIP LOCKED), \
              expired AS (SELECT d2.id FROM deliveries d2 WHERE d2.status = 'sending' AND d2.lease_expires_at < $2 \
                      AND {sendable} ORDER BY d2.lease_expires_at LIMIT $4 FOR UPDATE OF d2 SKIP LOCKED) \
         UPDATE deliveries d SET status = 'sending', lease_owner = $1, lease_expires_at = $3 \
         FROM (SELECT id FROM expired UNION ALL SELECT id FROM due LIMIT $4) claim \
         WHERE d.id = claim.id RETURNING {}",
        returning.join(", ")
    )
});
static SELECT_EVENTS_BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = ANY($1)"));
static SELECT_SUBSCRIPTIONS_BY_ID: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {SUBSCRIPTION_COLUMNS}, {SUBSCRIPTION_SECRET_COLUMNS} FROM subscriptions WHERE id = ANY($1)")
});
static SELECT_API_KEY_BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = $1"));
static REVOKE_API_KEY: LazyLock<String> = LazyLock::new(|| {
    format!("UPDATE api_keys SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1 RETURNING {API_KEY_COLUMNS}")
});

/// Components with the statuses open incidents impose on each (`imposed`).
static SELECT_COMPONENTS: LazyLock<String> = LazyLock::new(|| {
    String::from(
        "SELECT c.id, c.name, c.description, c.group_name, c.position, c.status, c.created_at, c.updated_at, \
         c.version, ARRAY(SELECT ic.status FROM incident_components ic \
         WHERE ic.component_id = c.id AND ic.incident_open) AS imposed FROM components c",
    )
});
static SELECT_COMPONENT_BY_ID: LazyLock<String> = LazyLock::new(|| format!("{} WHERE c.id = $1", *SELECT_COMPONENTS));
static LOCK_COMPONENT_BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("{} WHERE c.id = $1 FOR NO KEY UPDATE OF c", *SELECT_COMPONENTS));
const COUNT_OPEN_INCIDENTS_FOR_COMPONENT: &str =
    "SELECT count(*) FROM incident_components WHERE component_id = $1 AND incident_open";

#[async_trait]
impl Store for PgStore {
    /// Applies pending migrations under the Postgres advisory lock sqlx takes.
    async fn migrate(&self) -> anyhow::Result<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn begin(&self) -> Result<Box<dyn Transaction>> {
        let waiting = super::Waiting::enter(&self.waiting);
        let tx = self.pool.begin().await.map_err(db_err)?;
        drop(waiting);
        Ok(Box::new(PgTx { tx, deferred: Vec::new(), _span: crate::telemetry::transaction_span("postgresql") }))
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db_err)?;
        Ok(())
    }

    async fn refresh_statistics(&self) -> Result<()> {
        Ok(())
    }

    async fn observe(&self) -> Result<super::Observed> {
        let open = sqlx::query_as(AssertSqlSafe(rows::OBSERVE_OPEN_SQL.as_str()))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        let outbox = sqlx::query_as(rows::OBSERVE_OUTBOX_SQL).fetch_one(&self.pool).await.map_err(db_err)?;
        let idle = self.pool.num_idle() as i64;
        let pool = super::PoolStats {
            in_use: i64::from(self.pool.size()) - idle,
            idle,
            waiting: self.waiting.load(std::sync::atomic::Ordering::Relaxed),
            max: i64::from(self.pool.options().get_max_connections()),
        };
        rows::observed(open, outbox, pool)
    }

    async fn get_incident(&self, key: IncidentKey) -> Result<Option<Incident>> {
        let waiting = super::Waiting::enter(&self.waiting);
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        drop(waiting);
        let row: Option<IncidentRow> = match key {
            IncidentKey::Id(id) => {
                sqlx::query_as(AssertSqlSafe(SELECT_INCIDENT_BY_ID.as_str())).bind(id).fetch_optional(&mut *conn).await
            }
            IncidentKey::Ref(r) => {
                sqlx::query_as(AssertSqlSafe(SELECT_INCIDENT_BY_REF.as_str()))
                    .bind(r.0)
                    .fetch_optional(&mut *conn)
                    .await
            }
        }
        .map_err(db_err)?;
        row.map(Incident::try_from).transpose()
    }

    async fn list_incidents(
        &self,
        filter: &IncidentFilter,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<Incident>> {
        let mut q = QueryBuilder::<Postgres>::new(format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE true"));
        if !filter.statuses.is_empty() {
            q.push(" AND status = ANY(")
                .push_bind(filter.statuses.iter().map(|s| s.as_str()).collect::<Vec<_>>())
                .push(")");
        }
        if !filter.severities.is_empty() {
            q.push(" AND severity = ANY(")
                .push_bind(filter.severities.iter().map(|s| s.as_str()).collect::<Vec<_>>())
                .push(")");
        }
        match filter.open {
            Some(true) => q.push(format!(" AND status IN {}", *OPEN_STATUSES)),
            Some(false) => q.push(format!(" AND status NOT IN {}", *OPEN_STATUSES)),
            None => &mut q,
        };
        if let Some(c) = filter.component_id {
            q.push(" AND EXISTS (SELECT 1 FROM incident_components ic WHERE ic.incident_id = incidents.id AND ic.component_id = ")
                .push_bind(c)
                .push(")");
        }
        for term in &filter.terms {
            q.push(" AND search_text LIKE ").push_bind(like_pattern(term)).push(r" ESCAPE '\'");
        }
        if let Some(t) = filter.created_after {
            q.push(" AND created_at > ").push_bind(t);
        }
        if let Some(t) = filter.created_before {
            q.push(" AND created_at < ").push_bind(t);
        }
        rows::push_newest_first(&mut q, "created_at", after, limit)?;
        let rows: Vec<IncidentRow> = q.build_query_as().fetch_all(&self.pool).await.map_err(db_err)?;
        rows.into_iter().map(Incident::try_from).collect()
    }

    async fn list_timeline(
        &self,
        incident_id: Uuid,
        visibility: Option<Visibility>,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<TimelineEntry>> {
        let rows: Vec<TimelineRow> = rows::timeline_query::<Postgres>(incident_id, visibility, after, limit)?
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.into_iter().map(TimelineEntry::try_from).collect()
    }

    async fn get_component(&self, id: Uuid) -> Result<Option<Component>> {
        let row: Option<ComponentRow> = sqlx::query_as(AssertSqlSafe(SELECT_COMPONENT_BY_ID.as_str()))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.map(ComponentRow::into_component).transpose()
    }

    async fn list_components(
        &self,
        group: Option<&str>,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<Component>> {
        let rows: Vec<ComponentRow> = rows::components_query::<Postgres>(&SELECT_COMPONENTS, group, after, limit)?
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.into_iter().map(ComponentRow::into_component).collect()
    }

    async fn purge_idempotency_keys(&self, before: DateTime<Utc>) -> Result<u64> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected())
    }

    async fn get_subscription(&self, id: Uuid) -> Result<Option<Subscription>> {
        let row: Option<SubscriptionRow> = sqlx::query_as(AssertSqlSafe(SELECT_SUBSCRIPTION.as_str()))
            .bind(DbId(id))
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.map(Subscription::try_from).transpose()
    }

    async fn list_subscriptions(&self, after: Option<&PageToken>, limit: u32) -> Result<Vec<Subscription>> {
        let rows: Vec<SubscriptionRow> = rows::subscriptions_query::<Postgres>(after, limit)?
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.into_iter().map(Subscription::try_from).collect()
    }

    async fn get_delivery(&self, id: Uuid) -> Result<Option<Delivery>> {
        let row: Option<DeliveryRow> = sqlx::query_as(AssertSqlSafe(SELECT_DELIVERY.as_str()))
            .bind(DbId(id))
            .fetch_optional(&self.pool)
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
        let rows: Vec<DeliveryRow> = rows::deliveries_query::<Postgres>(subscription_id, status, after, limit)?
            .build_query_as()
            .fetch_all(&self.pool)
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
        let rows: Vec<AttemptRow> = rows::attempts_query::<Postgres>(column, id, after, limit)?
            .build_query_as()
            .fetch_all(&self.pool)
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
        let rows: Vec<DeliveryRow> = sqlx::query_as(AssertSqlSafe(CLAIM_DELIVERIES.as_str()))
            .bind(owner)
            .bind(now)
            .bind(lease_until)
            .bind(i64::from(limit))
            .bind(exclude)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        let deliveries = rows.into_iter().map(Delivery::try_from).collect::<Result<Vec<_>>>()?;
        let event_ids: Vec<Uuid> = deliveries.iter().map(|d| d.event_id).collect();
        let subscription_ids: Vec<Uuid> = deliveries.iter().map(|d| d.subscription_id).collect();
        let events: Vec<EventRow> = sqlx::query_as(AssertSqlSafe(SELECT_EVENTS_BY_ID.as_str()))
            .bind(&event_ids)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        let subs = sqlx::query(AssertSqlSafe(SELECT_SUBSCRIPTIONS_BY_ID.as_str()))
            .bind(&subscription_ids)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows::join_claims(deliveries, events, &subs)
    }

    async fn extend_leases(&self, owner: &str, ids: &[Uuid], until: DateTime<Utc>) -> Result<()> {
        sqlx::query("UPDATE deliveries SET lease_expires_at = $3 WHERE lease_owner = $1 AND status = 'sending' AND id = ANY($2)")
            .bind(owner)
            .bind(ids)
            .bind(until)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn release_deliveries(&self, owner: &str, ids: &[Uuid], at: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = $3, lease_owner = NULL, lease_expires_at = NULL \
             WHERE lease_owner = $1 AND status = 'sending' AND id = ANY($2)",
        )
        .bind(owner)
        .bind(ids)
        .bind(at)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn find_api_key(&self, lookup: &str) -> Result<Option<(ApiKey, Vec<u8>)>> {
        let row: Option<(Vec<u8>, Uuid)> = sqlx::query_as("SELECT secret_hash, id FROM api_keys WHERE lookup = $1")
            .bind(lookup)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        let Some((hash, id)) = row else { return Ok(None) };
        Ok(self.get_api_key(id).await?.map(|k| (k, hash)))
    }

    async fn get_api_key(&self, id: Uuid) -> Result<Option<ApiKey>> {
        let row: Option<ApiKeyRow> = sqlx::query_as(AssertSqlSafe(SELECT_API_KEY_BY_ID.as_str()))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.map(ApiKey::try_from).transpose()
    }

    async fn list_api_keys(&self, after: Option<&PageToken>, limit: u32) -> Result<Vec<ApiKey>> {
        let rows: Vec<ApiKeyRow> = rows::api_keys_query::<Postgres>(after, limit)?
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.into_iter().map(ApiKey::try_from).collect()
    }

    async fn touch_api_key(&self, id: Uuid, at: DateTime<Utc>) -> Result<()> {
        sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1")
            .bind(id)
            .bind(at)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn list_events(&self, after: i64, filter: &EventFilter, limit: u32) -> Result<Vec<Event>> {
        let rows: Vec<EventRow> = rows::events_query::<Postgres>(after, filter, limit)
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.into_iter().map(Event::try_from).collect()
    }

    async fn notifications(&self) -> Result<Option<tokio::sync::mpsc::Receiver<Notice>>> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await.map_err(db_err)?;
        listener.listen("incidentd_sequenced").await.map_err(db_err)?;
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(async move {
            loop {
                // recv() reconnects after a lost connection; what was sent meanwhile is found
                // by polling.
                match listener.recv().await {
                    Ok(n) => {
                        if tx.send(Notice::Sequenced(n.payload().parse().unwrap_or(0))).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "listening for notifications failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(Some(rx))
    }

    async fn latest_event_seq(&self) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT value FROM counters WHERE name = 'event_seq'")
            .fetch_one(&self.pool)
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
        let rows: Vec<AuditRow> = rows::audit_events_query::<Postgres>(filter, after, limit)?
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(rows.into_iter().map(AuditEvent::from).collect())
    }
}

struct PgTx {
    tx: sqlx::Transaction<'static, Postgres>,
    /// Timeline entries, events and audit records not yet written: they go in one statement
    /// before the next one of this transaction (or the commit), saving a round trip each.
    deferred: Vec<Deferred>,
    /// Open from `begin` until commit or rollback (drop).
    _span: tracing::Span,
}

enum Deferred {
    Timeline(TimelineEntry),
    Event(Event),
    Audit(AuditEvent),
}

impl PgTx {
    /// Writes what was deferred. Every other statement of the transaction runs after this, so
    /// nothing can observe the delay.
    async fn flush(&mut self) -> Result<()> {
        if self.deferred.is_empty() {
            return Ok(());
        }
        let deferred = std::mem::take(&mut self.deferred);
        let shape: Vec<(&str, &str)> = deferred
            .iter()
            .map(|d| match d {
                Deferred::Timeline(_) => ("incident_updates", rows::TIMELINE_COLUMNS),
                Deferred::Event(_) => ("events", EVENT_COLUMNS),
                Deferred::Audit(_) => ("audit_events", rows::AUDIT_COLUMNS),
            })
            .collect();
        let sql = rows::insert_many_sql(&shape);
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for d in &deferred {
            q = match d {
                Deferred::Timeline(e) => rows::bind_timeline_entry(q, e),
                Deferred::Event(e) => rows::bind_event(q, e),
                Deferred::Audit(e) => rows::bind_audit_event(q, e),
            };
        }
        q.execute(&mut *self.tx).await.map_err(db_err)?;
        Ok(())
    }
}

#[async_trait]
impl Transaction for PgTx {
    async fn claim_idempotency_key(
        &mut self,
        scope: &str,
        key: &str,
        request_hash: &[u8],
        now: DateTime<Utc>,
        expired_before: DateTime<Utc>,
    ) -> Result<IdempotencyClaim> {
        self.flush().await?;
        // Waits on a concurrent holder of the key; an expired record is taken over.
        let claimed = sqlx::query(
            "INSERT INTO idempotency_keys (scope, key, request_hash, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (scope, key) DO UPDATE SET request_hash = EXCLUDED.request_hash, response = NULL, \
             created_at = EXCLUDED.created_at WHERE idempotency_keys.created_at < $5",
        )
        .bind(scope)
        .bind(key)
        .bind(request_hash)
        .bind(now)
        .bind(expired_before)
        .execute(&mut *self.tx)
        .await
        .map_err(db_err)?;
        if claimed.rows_affected() == 1 {
            return Ok(IdempotencyClaim::Claimed);
        }
        let (request_hash, response): (Vec<u8>, Option<serde_json::Value>) =
            sqlx::query_as("SELECT request_hash, response FROM idempotency_keys WHERE scope = $1 AND key = $2")
                .bind(scope)
                .bind(key)
                .fetch_one(&mut *self.tx)
                .await
                .map_err(db_err)?;
        let response =
            response.ok_or_else(|| Error::Internal(format!("idempotency record {scope}/{key} has no response")))?;
        Ok(IdempotencyClaim::Existing { request_hash, response })
    }

    async fn save_idempotent_response(&mut self, scope: &str, key: &str, response: &serde_json::Value) -> Result<()> {
        self.flush().await?;
        sqlx::query("UPDATE idempotency_keys SET response = $3 WHERE scope = $1 AND key = $2")
            .bind(scope)
            .bind(key)
            .bind(response)
            .execute(&mut *self.tx)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn insert_incident(&mut self, incident: &Incident) -> Result<IncidentRef> {
        self.flush().await?;
        let (n,): (i64,) = rows::bind_incident(sqlx::query(AssertSqlSafe(INSERT_INCIDENT.as_str())), incident)
            .try_map(|row: sqlx::postgres::PgRow| sqlx::FromRow::from_row(&row))
            .fetch_one(&mut *self.tx)
            .await
            .map_err(db_err)?;
        sync_components(&mut self.tx, incident, false).await?;
        Ok(IncidentRef(n))
    }

    async fn lock_incident(&mut self, key: IncidentKey) -> Result<Option<Incident>> {
        self.flush().await?;
        let row: Option<IncidentRow> = match key {
            IncidentKey::Id(id) => {
                sqlx::query_as(AssertSqlSafe(LOCK_INCIDENT_BY_ID.as_str())).bind(id).fetch_optional(&mut *self.tx).await
            }
            IncidentKey::Ref(r) => {
                sqlx::query_as(AssertSqlSafe(LOCK_INCIDENT_BY_REF.as_str()))
                    .bind(r.0)
                    .fetch_optional(&mut *self.tx)
                    .await
            }
        }
        .map_err(db_err)?;
        row.map(Incident::try_from).transpose()
    }

    async fn update_incident(&mut self, incident: &Incident, components_changed: bool) -> Result<()> {
        self.flush().await?;
        rows::bind_incident(sqlx::query(AssertSqlSafe(UPDATE_INCIDENT.as_str())), incident)
            .execute(&mut *self.tx)
            .await
            .map_err(db_err)?;
        if components_changed {
            sync_components(&mut self.tx, incident, true).await?;
        }
        Ok(())
    }

    async fn delete_incident(&mut self, id: Uuid) -> Result<()> {
        self.flush().await?;
        sqlx::query("DELETE FROM incidents WHERE id = $1").bind(id).execute(&mut *self.tx).await.map_err(db_err)?;
        Ok(())
    }

    async fn resolve_incident_ids(&mut self, keys: &[IncidentKey]) -> Result<Vec<Option<Uuid>>> {
        self.flush().await?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> =
            keys.iter().filter_map(|k| if let IncidentKey::Id(id) = k { Some(*id) } else { None }).collect();
        let refs: Vec<i64> =
            keys.iter().filter_map(|k| if let IncidentKey::Ref(r) = k { Some(r.0) } else { None }).collect();
        let found: Vec<(Uuid, i64)> = sqlx::query_as(
            "SELECT id, reference_number FROM incidents WHERE id = ANY($1) OR reference_number = ANY($2)",
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
                        IncidentKey::Id(want) => id == want,
                        IncidentKey::Ref(r) => *n == r.0,
                    })
                    .map(|(id, _)| *id)
            })
            .collect())
    }

    async fn insert_timeline_entry(&mut self, e: &TimelineEntry) -> Result<()> {
        self.deferred.push(Deferred::Timeline(e.clone()));
        Ok(())
    }

    async fn existing_component_ids(&mut self, ids: &[Uuid]) -> Result<HashSet<Uuid>> {
        self.flush().await?;
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        // KEY SHARE keeps the rows from being deleted (as the foreign key will) without blocking
        // other changes from locking them for their status update (NO KEY UPDATE): a stronger
        // lock here would deadlock two changes that both upgrade it.
        let found: Vec<(Uuid,)> = sqlx::query_as("SELECT id FROM components WHERE id = ANY($1) FOR KEY SHARE")
            .bind(ids)
            .fetch_all(&mut *self.tx)
            .await
            .map_err(db_err)?;
        Ok(found.into_iter().map(|(id,)| id).collect())
    }

    async fn insert_component(&mut self, c: &Component) -> Result<()> {
        self.flush().await?;
        rows::bind_component(sqlx::query(AssertSqlSafe(INSERT_COMPONENT.as_str())), c)
            .execute(&mut *self.tx)
            .await
            .map_err(|e| super::component_name_err(e, &c.name, db_err))?;
        Ok(())
    }

    async fn lock_component(&mut self, id: Uuid) -> Result<Option<(Component, Vec<ComponentStatus>)>> {
        self.flush().await?;
        let row: Option<ComponentRow> = sqlx::query_as(AssertSqlSafe(LOCK_COMPONENT_BY_ID.as_str()))
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(db_err)?;
        row.map(ComponentRow::into_parts).transpose()
    }

    async fn update_component(&mut self, c: &Component) -> Result<()> {
        self.flush().await?;
        rows::bind_component(sqlx::query(AssertSqlSafe(UPDATE_COMPONENT.as_str())), c)
            .execute(&mut *self.tx)
            .await
            .map_err(|e| super::component_name_err(e, &c.name, db_err))?;
        Ok(())
    }

    async fn delete_component(&mut self, id: Uuid) -> Result<()> {
        self.flush().await?;
        // The strongest row lock: waits for changes that are about to reference the component
        // (they hold KEY SHARE), so the count below sees them.
        sqlx::query("SELECT 1 FROM components WHERE id = $1 FOR UPDATE")
            .bind(id)
            .execute(&mut *self.tx)
            .await
            .map_err(db_err)?;
        let (open,): (i64,) = sqlx::query_as(COUNT_OPEN_INCIDENTS_FOR_COMPONENT)
            .bind(id)
            .fetch_one(&mut *self.tx)
            .await
            .map_err(db_err)?;
        if open > 0 {
            return Err(super::component_in_use(id, open));
        }
        sqlx::query("DELETE FROM components WHERE id = $1").bind(id).execute(&mut *self.tx).await.map_err(db_err)?;
        Ok(())
    }

    async fn insert_api_key(&mut self, key: &IssuedKey) -> Result<()> {
        self.flush().await?;
        rows::bind_api_key(sqlx::query(AssertSqlSafe(INSERT_API_KEY.as_str())), key)
            .execute(&mut *self.tx)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn revoke_api_key(&mut self, id: Uuid, at: DateTime<Utc>) -> Result<Option<ApiKey>> {
        self.flush().await?;
        let row: Option<ApiKeyRow> = sqlx::query_as(AssertSqlSafe(REVOKE_API_KEY.as_str()))
            .bind(id)
            .bind(at)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(db_err)?;
        row.map(ApiKey::try_from).transpose()
    }

    async fn count_api_keys_exclusively(&mut self) -> Result<i64> {
        self.flush().await?;
        // Replicas starting together: the second waits here, then sees the first's key.
        sqlx::query("LOCK TABLE api_keys IN SHARE ROW EXCLUSIVE MODE").execute(&mut *self.tx).await.map_err(db_err)?;
        let (n,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM api_keys").fetch_one(&mut *self.tx).await.map_err(db_err)?;
        Ok(n)
    }

    async fn insert_audit_event(&mut self, event: &AuditEvent) -> Result<()> {
        self.deferred.push(Deferred::Audit(event.clone()));
        Ok(())
    }

    async fn insert_subscription(&mut self, subscription: &Subscription, secrets: &SigningSecrets) -> Result<()> {
        self.flush().await?;
        rows::bind_subscription(sqlx::query(AssertSqlSafe(INSERT_SUBSCRIPTION.as_str())), subscription, secrets)
            .execute(&mut *self.tx)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn lock_subscription(&mut self, id: Uuid) -> Result<Option<(Subscription, SigningSecrets)>> {
        self.flush().await?;
        let row = sqlx::query(AssertSqlSafe(LOCK_SUBSCRIPTION.as_str()))
            .bind(DbId(id))
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(db_err)?;
        let Some(row) = row else { return Ok(None) };
        rows::subscription_with_secrets(&row).map(Some)
    }

    async fn update_subscription(&mut self, subscription: &Subscription, secrets: &SigningSecrets) -> Result<()> {
        self.flush().await?;
        rows::bind_subscription(sqlx::query(AssertSqlSafe(UPDATE_SUBSCRIPTION.as_str())), subscription, secrets)
            .execute(&mut *self.tx)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn delete_subscription(&mut self, id: Uuid) -> Result<()> {
        self.flush().await?;
        sqlx::query(AssertSqlSafe(DELETE_SUBSCRIPTION.as_str()))
            .bind(DbId(id))
            .execute(&mut *self.tx)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn fanout_subscriptions(&mut self) -> Result<Vec<(Subscription, SigningSecrets)>> {
        self.flush().await?;
        let rows = sqlx::query(AssertSqlSafe(SELECT_ACTIVE_SUBSCRIPTIONS.as_str()))
            .fetch_all(&mut *self.tx)
            .await
            .map_err(db_err)?;
        rows.iter().map(rows::subscription_with_secrets).collect()
    }

    async fn record_attempts(&mut self, results: &[AttemptResult]) -> Result<u64> {
        self.flush().await?;
        let mut updated = 0;
        for chunk in results.chunks(1000) {
            let attempts: Vec<&DeliveryAttempt> = chunk.iter().map(|r| &r.attempt).collect();
            // The attempts and the deliveries' new state in one statement.
            updated += sqlx::query(
                "WITH a AS (INSERT INTO delivery_attempts (id, delivery_id, subscription_id, attempted_at, status_code, \
                   latency_ms, response_excerpt, error) SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], \
                   $4::timestamptz[], $5::int4[], $6::int8[], $7::text[], $8::text[])) \
                 UPDATE deliveries d SET status = r.status, attempts = d.attempts + 1, next_attempt_at = r.next_attempt_at, \
                 last_attempt_at = r.attempted_at, last_status_code = r.status_code, last_error = r.error, \
                 delivered_at = CASE WHEN r.status = 'delivered' THEN r.attempted_at ELSE d.delivered_at END, \
                 lease_owner = NULL, lease_expires_at = NULL \
                 FROM unnest($2::uuid[], $9::text[], $10::text[], $11::timestamptz[], $4::timestamptz[], $5::int4[], $8::text[]) \
                   AS r(id, owner, status, next_attempt_at, attempted_at, status_code, error) \
                 WHERE d.id = r.id AND d.lease_owner = r.owner AND d.status = 'sending'",
            )
            .bind(attempts.iter().map(|a| a.id).collect::<Vec<_>>())
            .bind(attempts.iter().map(|a| a.delivery_id).collect::<Vec<_>>())
            .bind(attempts.iter().map(|a| a.subscription_id).collect::<Vec<_>>())
            .bind(attempts.iter().map(|a| a.attempted_at).collect::<Vec<_>>())
            .bind(attempts.iter().map(|a| a.status_code).collect::<Vec<_>>())
            .bind(attempts.iter().map(|a| a.latency_ms).collect::<Vec<_>>())
            .bind(attempts.iter().map(|a| a.response_excerpt.as_deref()).collect::<Vec<_>>())
            .bind(attempts.iter().map(|a| a.error.as_deref()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|r| r.owner.as_str()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|r| r.status.as_str()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|r| r.next_attempt_at).collect::<Vec<_>>())
            .execute(&mut *self.tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        }
        Ok(updated)
    }

    async fn clear_failing(&mut self, subscription_ids: &[Uuid], now: DateTime<Utc>) -> Result<()> {
        self.flush().await?;
        if subscription_ids.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE subscriptions SET failing_since = NULL, version = version + 1, updated_at = $2 \
             WHERE id = ANY($1) AND failing_since IS NOT NULL",
        )
        .bind(subscription_ids)
        .bind(now)
        .execute(&mut *self.tx)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn cancel_deliveries(&mut self, subscription_id: Uuid) -> Result<u64> {
        self.flush().await?;
        let done = sqlx::query(AssertSqlSafe(CANCEL_DELIVERIES.as_str()))
            .bind(DbId(subscription_id))
            .execute(&mut *self.tx)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected())
    }

    async fn failed_delivery_ids(&mut self, subscription_id: Uuid) -> Result<Vec<Uuid>> {
        self.flush().await?;
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
        self.flush().await?;
        for chunk in deliveries.chunks(5000) {
            sqlx::query(
                "INSERT INTO deliveries (id, event_id, subscription_id, event_type, status, next_attempt_at, created_at, \
                 lease_owner, lease_expires_at) \
                 SELECT id, event_id, subscription_id, event_type, CASE WHEN claimed THEN 'sending' ELSE 'pending' END, $6, $6, \
                 CASE WHEN claimed THEN $7 END, CASE WHEN claimed THEN $8::timestamptz END \
                 FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::bool[]) \
                   AS t(id, event_id, subscription_id, event_type, claimed)",
            )
            .bind(chunk.iter().map(|d| d.id).collect::<Vec<_>>())
            .bind(chunk.iter().map(|d| d.event.id).collect::<Vec<_>>())
            .bind(chunk.iter().map(|d| d.subscription_id).collect::<Vec<_>>())
            .bind(chunk.iter().map(|d| d.event.event_type.as_str()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|d| d.claimed).collect::<Vec<_>>())
            .bind(now)
            .bind(lease.owner)
            .bind(lease.until)
            .execute(&mut *self.tx)
            .await
            .map_err(db_err)?;
        }
        Ok(())
    }

    async fn requeue_deliveries(&mut self, ids: &[Uuid], now: DateTime<Utc>) -> Result<u64> {
        self.flush().await?;
        let done = sqlx::query(
            "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = $2, lease_owner = NULL, \
             lease_expires_at = NULL WHERE id = ANY($1) AND status IN ('failed', 'cancelled', 'delivered')",
        )
        .bind(ids)
        .bind(now)
        .execute(&mut *self.tx)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected())
    }

    async fn insert_events(&mut self, events: &[Event]) -> Result<()> {
        self.deferred.extend(events.iter().cloned().map(Deferred::Event));
        Ok(())
    }

    async fn lead_sequencer(&mut self) -> Result<bool> {
        self.flush().await?;
        let (led,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_xact_lock($1)")
            .bind(SEQUENCER_LOCK)
            .fetch_one(&mut *self.tx)
            .await
            .map_err(db_err)?;
        Ok(led)
    }

    async fn unsequenced_events(&mut self, limit: u32) -> Result<Vec<Event>> {
        self.flush().await?;
        let rows: Vec<EventRow> = sqlx::query_as(AssertSqlSafe(SELECT_UNSEQUENCED.as_str()))
            .bind(i64::from(limit))
            .fetch_all(&mut *self.tx)
            .await
            .map_err(db_err)?;
        rows.into_iter().map(Event::try_from).collect()
    }

    async fn assign_sequence(&mut self, ids: &[Uuid]) -> Result<Vec<i64>> {
        self.flush().await?;
        // The counter, the events and the cross-process notice in one statement.
        let n = ids.len() as i64;
        let (last,): (i64,) = sqlx::query_as(
            "WITH c AS (UPDATE counters SET value = value + $2 WHERE name = 'event_seq' RETURNING value), \
                  s AS (SELECT u.id, (SELECT value FROM c) - $2 + u.ord AS seq \
                        FROM unnest($1::uuid[]) WITH ORDINALITY AS u(id, ord)), \
                  e AS (UPDATE events SET seq = s.seq FROM s WHERE events.id = s.id) \
             SELECT value FROM c, LATERAL (SELECT pg_notify('incidentd_sequenced', c.value::text)) AS notified",
        )
        .bind(ids)
        .bind(n)
        .fetch_one(&mut *self.tx)
        .await
        .map_err(db_err)?;
        let seqs: Vec<i64> = (last - n + 1..=last).collect();
        Ok(seqs)
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        self.flush().await?;
        self.tx.commit().await.map_err(db_err)
    }
}

/// Rewrites the incident's rows in `incident_components`.
async fn sync_components(
    tx: &mut sqlx::Transaction<'static, Postgres>,
    incident: &Incident,
    clear_first: bool,
) -> Result<()> {
    if clear_first {
        sqlx::query("DELETE FROM incident_components WHERE incident_id = $1")
            .bind(incident.id)
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
    }
    if incident.affected_components.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = incident.affected_components.iter().map(|c| c.component_id).collect();
    let statuses: Vec<&str> = incident.affected_components.iter().map(|c| c.status.as_str()).collect();
    sqlx::query(
        "INSERT INTO incident_components (incident_id, component_id, status, incident_open) \
         SELECT $1, c, s, $4 FROM unnest($2::uuid[], $3::text[]) AS t (c, s)",
    )
    .bind(incident.id)
    .bind(ids)
    .bind(statuses)
    .bind(incident.is_open())
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}
