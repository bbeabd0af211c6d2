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
    self, API_KEY_COLUMNS, ApiKeyRow, AttemptRow, AuditRow, ComponentRow, DELIVERY_COLUMNS, DbId, DbTime, DeliveryRow,
    EVENT_COLUMNS, EventRow, INCIDENT_COLUMNS, IncidentRow, SUBSCRIPTION_COLUMNS, SUBSCRIPTION_SECRET_COLUMNS,
    SecretsRow, SubscriptionRow, TimelineRow, like_pattern,
};
use super::{
    AttemptResult, AttemptsOf, ClaimedDelivery, EventFilter, IdempotencyClaim, IncidentFilter, Notice, Store,
    Transaction,
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
}

impl PgStore {
    /// Connects (creating the database if it does not exist yet and the role may create it).
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let options: PgConnectOptions = url.parse()?;
        let options = options.log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500));
        if !Postgres::database_exists(url).await.unwrap_or(true) {
            tracing::info!(database = options.get_database().unwrap_or_default(), "creating database");
            Postgres::create_database(url).await?;
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }
}

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
static UPDATE_INCIDENT: LazyLock<String> = LazyLock::new(|| rows::update_incident_sql('$'));
static INSERT_TIMELINE: LazyLock<String> = LazyLock::new(|| rows::insert_timeline_sql('$'));
static INSERT_COMPONENT: LazyLock<String> = LazyLock::new(|| rows::insert_component_sql('$'));
static UPDATE_COMPONENT: LazyLock<String> = LazyLock::new(|| rows::update_component_sql('$'));
static INSERT_API_KEY: LazyLock<String> = LazyLock::new(|| rows::insert_api_key_sql('$'));
static INSERT_EVENT: LazyLock<String> = LazyLock::new(|| rows::insert_event_sql('$'));
static SELECT_UNSEQUENCED: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq IS NULL ORDER BY id LIMIT $1"));
/// The advisory lock the sequencer holds while it runs (one replica at a time).
const SEQUENCER_LOCK: i64 = 0x696e_6369_6465_6e01;
static SELECT_SUBSCRIPTION: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = $1"));
static LOCK_SUBSCRIPTION: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {SUBSCRIPTION_COLUMNS}, {SUBSCRIPTION_SECRET_COLUMNS} FROM subscriptions WHERE id = $1 FOR UPDATE")
});
static SELECT_ACTIVE_SUBSCRIPTIONS: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE disabled_at IS NULL"));
static INSERT_SUBSCRIPTION: LazyLock<String> = LazyLock::new(|| rows::insert_subscription_sql('$'));
static UPDATE_SUBSCRIPTION: LazyLock<String> = LazyLock::new(|| rows::update_subscription_sql('$'));
static DELETE_SUBSCRIPTION: LazyLock<String> = LazyLock::new(|| "DELETE FROM subscriptions WHERE id = $1".to_string());
static SELECT_DELIVERY: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = $1"));
static INSERT_ATTEMPT: LazyLock<String> = LazyLock::new(|| rows::insert_attempt_sql('$'));
/// Records the outcome, only while the worker still holds the lease.
static FINISH_ATTEMPT: LazyLock<String> = LazyLock::new(|| {
    "UPDATE deliveries SET status = $3, attempts = attempts + 1, next_attempt_at = $4, last_attempt_at = $5, \
     last_status_code = $6, last_error = $7, \
     delivered_at = CASE WHEN $3 = 'delivered' THEN $5 ELSE delivered_at END, \
     lease_owner = NULL, lease_expires_at = NULL \
     WHERE id = $1 AND lease_owner = $2 AND status = 'sending'"
        .to_string()
});
static CANCEL_DELIVERIES: LazyLock<String> = LazyLock::new(|| {
    "UPDATE deliveries SET status = 'cancelled', next_attempt_at = NULL, lease_owner = NULL, lease_expires_at = NULL \
     WHERE subscription_id = $1 AND status IN ('pending', 'sending')"
        .to_string()
});
static FAILED_DELIVERIES: LazyLock<String> = LazyLock::new(|| {
    "SELECT id FROM deliveries WHERE subscription_id = $1 AND status = 'failed' ORDER BY created_at".to_string()
});
static CLAIM_DELIVERIES: LazyLock<String> = LazyLock::new(|| {
    let returning: Vec<String> = DELIVERY_COLUMNS.split(',').map(|c| format!("d.{}", c.trim())).collect();
    format!(
        "UPDATE deliveries d SET status = 'sending', lease_owner = $1, lease_expires_at = $3 \
         FROM (SELECT d2.id FROM deliveries d2 JOIN subscriptions s ON s.id = d2.subscription_id \
               WHERE ((d2.status = 'pending' AND d2.next_attempt_at <= $2) \
                      OR (d2.status = 'sending' AND d2.lease_expires_at < $2)) \
                 AND NOT s.paused AND s.disabled_at IS NULL AND NOT (d2.subscription_id = ANY($5)) \
               ORDER BY d2.next_attempt_at LIMIT $4 FOR UPDATE OF d2 SKIP LOCKED) due \
         WHERE d.id = due.id RETURNING {}",
        returning.join(", ")
    )
});
static SELECT_EVENTS_BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = ANY($1)"));
static SELECT_SUBSCRIPTIONS_BY_ID: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {SUBSCRIPTION_COLUMNS}, {SUBSCRIPTION_SECRET_COLUMNS} FROM subscriptions WHERE id = ANY($1)")
});
static INSERT_AUDIT: LazyLock<String> = LazyLock::new(|| rows::insert_audit_sql('$'));
static SELECT_API_KEY_BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = $1"));
static REVOKE_API_KEY: LazyLock<String> = LazyLock::new(|| {
    format!("UPDATE api_keys SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1 RETURNING {API_KEY_COLUMNS}")
});

/// Components with the statuses open incidents impose on each (`imposed`).
static SELECT_COMPONENTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT c.id, c.name, c.description, c.group_name, c.position, c.status, c.created_at, c.updated_at, \
         c.version, ARRAY(SELECT ic.status FROM incident_components ic JOIN incidents i ON i.id = ic.incident_id \
         WHERE ic.component_id = c.id AND i.status IN {}) AS imposed FROM components c",
        *OPEN_STATUSES
    )
});
static SELECT_COMPONENT_BY_ID: LazyLock<String> = LazyLock::new(|| format!("{} WHERE c.id = $1", *SELECT_COMPONENTS));
static LOCK_COMPONENT_BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("{} WHERE c.id = $1 FOR UPDATE OF c", *SELECT_COMPONENTS));
static COUNT_OPEN_INCIDENTS_FOR_COMPONENT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT count(*) FROM incident_components ic JOIN incidents i ON i.id = ic.incident_id \
         WHERE ic.component_id = $1 AND i.status IN {}",
        *OPEN_STATUSES
    )
});

#[async_trait]
impl Store for PgStore {
    /// Applies pending migrations under the Postgres advisory lock sqlx takes.
    async fn migrate(&self) -> anyhow::Result<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn begin(&self) -> Result<Box<dyn Transaction>> {
        let tx = self.pool.begin().await.map_err(db_err)?;
        Ok(Box::new(PgTx { tx }))
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db_err)?;
        Ok(())
    }

    async fn get_incident(&self, key: IncidentKey) -> Result<Option<Incident>> {
        let row: Option<IncidentRow> = match key {
            IncidentKey::Id(id) => {
                sqlx::query_as(AssertSqlSafe(SELECT_INCIDENT_BY_ID.as_str())).bind(id).fetch_optional(&self.pool).await
            }
            IncidentKey::Ref(r) => {
                sqlx::query_as(AssertSqlSafe(SELECT_INCIDENT_BY_REF.as_str()))
                    .bind(r.0)
                    .fetch_optional(&self.pool)
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
        listener.listen_all(["incidentd_events", "incidentd_sequenced"]).await.map_err(db_err)?;
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(async move {
            loop {
                // recv() reconnects after a lost connection; what was sent meanwhile is found
                // by polling.
                match listener.recv().await {
                    Ok(n) => {
                        let notice = match n.channel() {
                            "incidentd_sequenced" => Notice::Sequenced(n.payload().parse().unwrap_or(0)),
                            _ => Notice::EventsWritten,
                        };
                        if tx.send(notice).await.is_err() {
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
        let (n,): (i64,) = rows::bind_incident(sqlx::query(AssertSqlSafe(INSERT_INCIDENT.as_str())), incident)
            .try_map(|row: sqlx::postgres::PgRow| sqlx::FromRow::from_row(&row))
            .fetch_one(&mut *self.tx)
            .await
            .map_err(db_err)?;
        sync_components(&mut self.tx, incident, false).await?;
        Ok(IncidentRef(n))
    }

    async fn lock_incident(&mut self, key: IncidentKey) -> Result<Option<Incident>> {
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
        sqlx::query("DELETE FROM incidents WHERE id = $1").bind(id).execute(&mut *self.tx).await.map_err(db_err)?;
        Ok(())
    }

    async fn resolve_incident_ids(&mut self, keys: &[IncidentKey]) -> Result<Vec<Option<Uuid>>> {
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
        let found: Vec<(Uuid,)> = sqlx::query_as("SELECT id FROM components WHERE id = ANY($1) FOR SHARE")
            .bind(ids)
            .fetch_all(&mut *self.tx)
            .await
            .map_err(db_err)?;
        Ok(found.into_iter().map(|(id,)| id).collect())
    }

    async fn insert_component(&mut self, c: &Component) -> Result<()> {
        rows::bind_component(sqlx::query(AssertSqlSafe(INSERT_COMPONENT.as_str())), c)
            .execute(&mut *self.tx)
            .await
            .map_err(|e| super::component_name_err(e, &c.name, db_err))?;
        Ok(())
    }

    async fn lock_component(&mut self, id: Uuid) -> Result<Option<(Component, Vec<ComponentStatus>)>> {
        let row: Option<ComponentRow> = sqlx::query_as(AssertSqlSafe(LOCK_COMPONENT_BY_ID.as_str()))
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(db_err)?;
        row.map(ComponentRow::into_parts).transpose()
    }

    async fn update_component(&mut self, c: &Component) -> Result<()> {
        rows::bind_component(sqlx::query(AssertSqlSafe(UPDATE_COMPONENT.as_str())), c)
            .execute(&mut *self.tx)
            .await
            .map_err(|e| super::component_name_err(e, &c.name, db_err))?;
        Ok(())
    }

    async fn delete_component(&mut self, id: Uuid) -> Result<()> {
        let (open,): (i64,) = sqlx::query_as(AssertSqlSafe(COUNT_OPEN_INCIDENTS_FOR_COMPONENT.as_str()))
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
        rows::bind_api_key(sqlx::query(AssertSqlSafe(INSERT_API_KEY.as_str())), key)
            .execute(&mut *self.tx)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn revoke_api_key(&mut self, id: Uuid, at: DateTime<Utc>) -> Result<Option<ApiKey>> {
        let row: Option<ApiKeyRow> = sqlx::query_as(AssertSqlSafe(REVOKE_API_KEY.as_str()))
            .bind(id)
            .bind(at)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(db_err)?;
        row.map(ApiKey::try_from).transpose()
    }

    async fn count_api_keys_exclusively(&mut self) -> Result<i64> {
        // Replicas starting together: the second waits here, then sees the first's key.
        sqlx::query("LOCK TABLE api_keys IN SHARE ROW EXCLUSIVE MODE").execute(&mut *self.tx).await.map_err(db_err)?;
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
        let subscription: SubscriptionRow = sqlx::FromRow::from_row(&row).map_err(db_err)?;
        let secrets: SecretsRow = sqlx::FromRow::from_row(&row).map_err(db_err)?;
        Ok(Some((Subscription::try_from(subscription)?, secrets.into())))
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

    async fn fanout_subscriptions(&mut self) -> Result<Vec<Subscription>> {
        let rows: Vec<SubscriptionRow> = sqlx::query_as(AssertSqlSafe(SELECT_ACTIVE_SUBSCRIPTIONS.as_str()))
            .fetch_all(&mut *self.tx)
            .await
            .map_err(db_err)?;
        rows.into_iter().map(Subscription::try_from).collect()
    }

    async fn record_attempt(&mut self, result: &AttemptResult) -> Result<bool> {
        rows::bind_attempt(sqlx::query(AssertSqlSafe(INSERT_ATTEMPT.as_str())), &result.attempt)
            .execute(&mut *self.tx)
            .await
            .map_err(db_err)?;
        let a = &result.attempt;
        let done = sqlx::query(AssertSqlSafe(FINISH_ATTEMPT.as_str()))
            .bind(DbId(a.delivery_id))
            .bind(result.owner.as_str())
            .bind(result.status.as_str())
            .bind(result.next_attempt_at.map(DbTime))
            .bind(DbTime(a.attempted_at))
            .bind(a.status_code)
            .bind(a.error.as_deref())
            .execute(&mut *self.tx)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
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

    async fn insert_deliveries(&mut self, pairs: &[(&Event, Uuid)], now: DateTime<Utc>) -> Result<()> {
        for chunk in pairs.chunks(5000) {
            let ids: Vec<Uuid> = chunk.iter().map(|_| Uuid::now_v7()).collect();
            let events: Vec<Uuid> = chunk.iter().map(|(e, _)| e.id).collect();
            let subs: Vec<Uuid> = chunk.iter().map(|(_, s)| *s).collect();
            let types: Vec<&str> = chunk.iter().map(|(e, _)| e.event_type.as_str()).collect();
            sqlx::query(
                "INSERT INTO deliveries (id, event_id, subscription_id, event_type, status, next_attempt_at, created_at) \
                 SELECT id, event_id, subscription_id, event_type, 'pending', $5, $5 \
                 FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[]) AS t(id, event_id, subscription_id, event_type)",
            )
            .bind(&ids)
            .bind(&events)
            .bind(&subs)
            .bind(&types)
            .bind(now)
            .execute(&mut *self.tx)
            .await
            .map_err(db_err)?;
        }
        Ok(())
    }

    async fn requeue_deliveries(&mut self, ids: &[Uuid], now: DateTime<Utc>) -> Result<u64> {
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
        for e in events {
            rows::bind_event(sqlx::query(AssertSqlSafe(INSERT_EVENT.as_str())), e)
                .execute(&mut *self.tx)
                .await
                .map_err(db_err)?;
        }
        if !events.is_empty() {
            // Delivered on commit, to every replica listening: one of them sequences.
            sqlx::query("SELECT pg_notify('incidentd_events', '')").execute(&mut *self.tx).await.map_err(db_err)?;
        }
        Ok(())
    }

    async fn lead_sequencer(&mut self) -> Result<bool> {
        let (led,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_xact_lock($1)")
            .bind(SEQUENCER_LOCK)
            .fetch_one(&mut *self.tx)
            .await
            .map_err(db_err)?;
        Ok(led)
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
            sqlx::query_as("UPDATE counters SET value = value + $1 WHERE name = 'event_seq' RETURNING value")
                .bind(n)
                .fetch_one(&mut *self.tx)
                .await
                .map_err(db_err)?;
        let seqs: Vec<i64> = (last - n + 1..=last).collect();
        sqlx::query(
            "UPDATE events SET seq = s.seq FROM unnest($1::uuid[], $2::bigint[]) AS s(id, seq) WHERE events.id = s.id",
        )
        .bind(ids)
        .bind(&seqs)
        .execute(&mut *self.tx)
        .await
        .map_err(db_err)?;
        sqlx::query("SELECT pg_notify('incidentd_sequenced', $1)")
            .bind(last.to_string())
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
        "INSERT INTO incident_components (incident_id, component_id, status) \
         SELECT $1, * FROM unnest($2::uuid[], $3::text[])",
    )
    .bind(incident.id)
    .bind(ids)
    .bind(statuses)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}
