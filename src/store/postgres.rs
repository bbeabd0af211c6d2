//! The Postgres store (sqlx, runtime-checked queries: building needs no database).

use std::collections::{BTreeMap, HashSet};
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::query::Query;
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, ConnectOptions, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{IdempotencyClaim, IncidentFilter, Store, Transaction};
use crate::domain::component::effective_status;
use crate::domain::page::PageToken;
use crate::domain::{
    AffectedComponent, Cause, Component, ComponentStatus, Error, FieldChange, Incident, IncidentKey, IncidentRef,
    Result, Status, TimelineEntry, Visibility, Workaround,
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

fn parse<T: std::str::FromStr<Err = String>>(column: &str, value: &str) -> Result<T> {
    value.parse().map_err(|e| Error::Internal(format!("column {column}: {e}")))
}

/// `('investigating', 'identified', 'monitoring')`, from the domain's list of open statuses.
static OPEN_STATUSES: LazyLock<String> = LazyLock::new(|| {
    let list: Vec<String> = Status::OPEN.iter().map(|s| format!("'{s}'")).collect();
    format!("({})", list.join(", "))
});

const INCIDENT_COLUMNS: &str = "id, reference_number, title, summary, severity, status, impact, \
    affected_components, affected_customers, eta, workaround_availability, workaround_text, cause_kind, \
    cause_provider, cause_external_reference, commander, labels, related_incident_ids, root_cause, \
    resolution_summary, reopen_count, started_at, detected_at, acknowledged_at, acknowledged_by, identified_at, \
    mitigated_at, resolved_at, closed_at, created_at, updated_at, version";

static SELECT_INCIDENT_BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1"));
static SELECT_INCIDENT_BY_REF: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE reference_number = $1"));
static LOCK_INCIDENT_BY_ID: LazyLock<String> = LazyLock::new(|| format!("{} FOR UPDATE", *SELECT_INCIDENT_BY_ID));
static LOCK_INCIDENT_BY_REF: LazyLock<String> = LazyLock::new(|| format!("{} FOR UPDATE", *SELECT_INCIDENT_BY_REF));

/// The columns written by insert and update, in bind order after the id ($1).
const INCIDENT_WRITE_COLUMNS: [&str; 30] = [
    "title",
    "summary",
    "severity",
    "status",
    "impact",
    "affected_components",
    "affected_customers",
    "eta",
    "workaround_availability",
    "workaround_text",
    "cause_kind",
    "cause_provider",
    "cause_external_reference",
    "commander",
    "labels",
    "related_incident_ids",
    "root_cause",
    "resolution_summary",
    "reopen_count",
    "started_at",
    "detected_at",
    "acknowledged_at",
    "acknowledged_by",
    "identified_at",
    "mitigated_at",
    "resolved_at",
    "closed_at",
    "created_at",
    "updated_at",
    "version",
];

static INSERT_INCIDENT: LazyLock<String> = LazyLock::new(|| {
    let params: Vec<String> = (2..=INCIDENT_WRITE_COLUMNS.len() + 1).map(|i| format!("${i}")).collect();
    format!(
        "INSERT INTO incidents (id, {}) VALUES ($1, {}) RETURNING reference_number",
        INCIDENT_WRITE_COLUMNS.join(", "),
        params.join(", ")
    )
});

static UPDATE_INCIDENT: LazyLock<String> = LazyLock::new(|| {
    let sets: Vec<String> =
        INCIDENT_WRITE_COLUMNS.iter().enumerate().map(|(i, c)| format!("{c} = ${}", i + 2)).collect();
    format!("UPDATE incidents SET {} WHERE id = $1", sets.join(", "))
});

/// Binds the id and then every column of [`INCIDENT_WRITE_COLUMNS`], in that order.
fn bind_incident<'q>(q: Query<'q, Postgres, PgArguments>, i: &'q Incident) -> Query<'q, Postgres, PgArguments> {
    q.bind(i.id)
        .bind(&i.title)
        .bind(&i.summary)
        .bind(i.severity.as_str())
        .bind(i.status.as_str())
        .bind(i.impact.as_str())
        .bind(Json(&i.affected_components))
        .bind(i.affected_customers)
        .bind(i.eta)
        .bind(i.workaround.availability.as_str())
        .bind(&i.workaround.text)
        .bind(i.cause.kind.as_str())
        .bind(&i.cause.provider)
        .bind(&i.cause.external_reference)
        .bind(&i.commander)
        .bind(Json(&i.labels))
        .bind(Json(&i.related_incident_ids))
        .bind(&i.root_cause)
        .bind(&i.resolution_summary)
        .bind(i.reopen_count)
        .bind(i.started_at)
        .bind(i.detected_at)
        .bind(i.acknowledged_at)
        .bind(&i.acknowledged_by)
        .bind(i.identified_at)
        .bind(i.mitigated_at)
        .bind(i.resolved_at)
        .bind(i.closed_at)
        .bind(i.created_at)
        .bind(i.updated_at)
        .bind(i.version)
}

#[derive(sqlx::FromRow)]
struct IncidentRow {
    id: Uuid,
    reference_number: i64,
    title: String,
    summary: String,
    severity: String,
    status: String,
    impact: String,
    affected_components: Json<Vec<AffectedComponent>>,
    affected_customers: Option<i64>,
    eta: Option<DateTime<Utc>>,
    workaround_availability: String,
    workaround_text: Option<String>,
    cause_kind: String,
    cause_provider: Option<String>,
    cause_external_reference: Option<String>,
    commander: Option<String>,
    labels: Json<BTreeMap<String, String>>,
    related_incident_ids: Json<Vec<Uuid>>,
    root_cause: Option<String>,
    resolution_summary: Option<String>,
    reopen_count: i32,
    started_at: DateTime<Utc>,
    detected_at: DateTime<Utc>,
    acknowledged_at: Option<DateTime<Utc>>,
    acknowledged_by: Option<String>,
    identified_at: Option<DateTime<Utc>>,
    mitigated_at: Option<DateTime<Utc>>,
    resolved_at: Option<DateTime<Utc>>,
    closed_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

impl TryFrom<IncidentRow> for Incident {
    type Error = Error;
    fn try_from(r: IncidentRow) -> Result<Incident> {
        Ok(Incident {
            id: r.id,
            reference: IncidentRef(r.reference_number),
            title: r.title,
            summary: r.summary,
            severity: parse("severity", &r.severity)?,
            status: parse("status", &r.status)?,
            impact: parse("impact", &r.impact)?,
            affected_components: r.affected_components.0,
            affected_customers: r.affected_customers,
            eta: r.eta,
            workaround: Workaround {
                availability: parse("workaround_availability", &r.workaround_availability)?,
                text: r.workaround_text,
            },
            cause: Cause {
                kind: parse("cause_kind", &r.cause_kind)?,
                provider: r.cause_provider,
                external_reference: r.cause_external_reference,
            },
            commander: r.commander,
            labels: r.labels.0,
            related_incident_ids: r.related_incident_ids.0,
            root_cause: r.root_cause,
            resolution_summary: r.resolution_summary,
            reopen_count: r.reopen_count,
            started_at: r.started_at,
            detected_at: r.detected_at,
            acknowledged_at: r.acknowledged_at,
            acknowledged_by: r.acknowledged_by,
            identified_at: r.identified_at,
            mitigated_at: r.mitigated_at,
            resolved_at: r.resolved_at,
            closed_at: r.closed_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
            version: r.version,
        })
    }
}

#[derive(sqlx::FromRow)]
struct TimelineRow {
    id: Uuid,
    incident_id: Uuid,
    kind: String,
    body: String,
    visibility: String,
    status_from: Option<String>,
    status_to: Option<String>,
    changes: Json<Vec<FieldChange>>,
    author: String,
    created_at: DateTime<Utc>,
}

impl TryFrom<TimelineRow> for TimelineEntry {
    type Error = Error;
    fn try_from(r: TimelineRow) -> Result<TimelineEntry> {
        Ok(TimelineEntry {
            id: r.id,
            incident_id: r.incident_id,
            kind: parse("kind", &r.kind)?,
            body: r.body,
            visibility: parse("visibility", &r.visibility)?,
            status_from: r.status_from.as_deref().map(|s| parse("status_from", s)).transpose()?,
            status_to: r.status_to.as_deref().map(|s| parse("status_to", s)).transpose()?,
            changes: r.changes.0,
            author: r.author,
            created_at: r.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ComponentRow {
    id: Uuid,
    name: String,
    description: String,
    group_name: Option<String>,
    position: i32,
    status: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
    imposed: Vec<String>,
}

impl ComponentRow {
    fn into_parts(self) -> Result<(Component, Vec<ComponentStatus>)> {
        let status: ComponentStatus = parse("status", &self.status)?;
        let imposed = self.imposed.iter().map(|s| parse("status", s)).collect::<Result<Vec<ComponentStatus>>>()?;
        let component = Component {
            id: self.id,
            name: self.name,
            description: self.description,
            group: self.group_name,
            position: self.position,
            status,
            effective_status: effective_status(status, imposed.iter().copied()),
            created_at: self.created_at,
            updated_at: self.updated_at,
            version: self.version,
        };
        Ok((component, imposed))
    }
}

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

/// Escapes `%`, `_` and `\` for a LIKE pattern.
fn like_escape(term: &str) -> String {
    let mut out = String::with_capacity(term.len() + 2);
    out.push('%');
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

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
            q.push(" AND (title || ' ' || summary) ILIKE ").push_bind(like_escape(term));
        }
        if let Some(t) = filter.created_after {
            q.push(" AND created_at > ").push_bind(t);
        }
        if let Some(t) = filter.created_before {
            q.push(" AND created_at < ").push_bind(t);
        }
        match after {
            Some(PageToken::Time { at, id }) => {
                q.push(" AND (created_at, id) < (").push_bind(*at).push(", ").push_bind(*id).push(")");
            }
            Some(_) => return Err(Error::invalid("page_token", "is not a page token returned by this list")),
            None => {}
        }
        q.push(" ORDER BY created_at DESC, id DESC LIMIT ").push_bind(i64::from(limit));
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
        let mut q = QueryBuilder::<Postgres>::new(
            "SELECT id, incident_id, kind, body, visibility, status_from, status_to, changes, author, created_at \
             FROM incident_updates WHERE incident_id = ",
        );
        q.push_bind(incident_id);
        if let Some(v) = visibility {
            q.push(" AND visibility = ").push_bind(v.as_str());
        }
        match after {
            Some(PageToken::Time { at, id }) => {
                q.push(" AND (created_at, id) > (").push_bind(*at).push(", ").push_bind(*id).push(")");
            }
            Some(_) => return Err(Error::invalid("page_token", "is not a page token returned by this list")),
            None => {}
        }
        q.push(" ORDER BY created_at, id LIMIT ").push_bind(i64::from(limit));
        let rows: Vec<TimelineRow> = q.build_query_as().fetch_all(&self.pool).await.map_err(db_err)?;
        rows.into_iter().map(TimelineEntry::try_from).collect()
    }

    async fn get_component(&self, id: Uuid) -> Result<Option<Component>> {
        let row: Option<ComponentRow> = sqlx::query_as(AssertSqlSafe(SELECT_COMPONENT_BY_ID.as_str()))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.map(|r| r.into_parts().map(|(c, _)| c)).transpose()
    }

    async fn list_components(
        &self,
        group: Option<&str>,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<Component>> {
        let mut q = QueryBuilder::<Postgres>::new(format!("{} WHERE true", *SELECT_COMPONENTS));
        if let Some(g) = group {
            q.push(" AND coalesce(c.group_name, '') = ").push_bind(g.to_string());
        }
        match after {
            Some(PageToken::Ordered { group, position, name, id }) => {
                q.push(" AND (coalesce(c.group_name, ''), c.position, c.name, c.id) > (")
                    .push_bind(group.clone())
                    .push(", ")
                    .push_bind(*position)
                    .push(", ")
                    .push_bind(name.clone())
                    .push(", ")
                    .push_bind(*id)
                    .push(")");
            }
            Some(_) => return Err(Error::invalid("page_token", "is not a page token returned by this list")),
            None => {}
        }
        q.push(" ORDER BY coalesce(c.group_name, ''), c.position, c.name, c.id LIMIT ").push_bind(i64::from(limit));
        let rows: Vec<ComponentRow> = q.build_query_as().fetch_all(&self.pool).await.map_err(db_err)?;
        rows.into_iter().map(|r| r.into_parts().map(|(c, _)| c)).collect()
    }

    async fn purge_idempotency_keys(&self, before: DateTime<Utc>) -> Result<u64> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected())
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
        let (n,): (i64,) = bind_incident(sqlx::query(AssertSqlSafe(INSERT_INCIDENT.as_str())), incident)
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
        bind_incident(sqlx::query(AssertSqlSafe(UPDATE_INCIDENT.as_str())), incident)
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
        sqlx::query(
            "INSERT INTO incident_updates (id, incident_id, kind, body, visibility, status_from, status_to, changes, \
             author, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(e.id)
        .bind(e.incident_id)
        .bind(e.kind.as_str())
        .bind(&e.body)
        .bind(e.visibility.as_str())
        .bind(e.status_from.map(|s| s.as_str()))
        .bind(e.status_to.map(|s| s.as_str()))
        .bind(Json(&e.changes))
        .bind(&e.author)
        .bind(e.created_at)
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
        sqlx::query(
            "INSERT INTO components (id, name, description, group_name, position, status, created_at, updated_at, \
             version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(c.id)
        .bind(&c.name)
        .bind(&c.description)
        .bind(&c.group)
        .bind(c.position)
        .bind(c.status.as_str())
        .bind(c.created_at)
        .bind(c.updated_at)
        .bind(c.version)
        .execute(&mut *self.tx)
        .await
        .map_err(|e| component_name_err(e, &c.name))?;
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
        sqlx::query(
            "UPDATE components SET name = $2, description = $3, group_name = $4, position = $5, status = $6, \
             updated_at = $7, version = $8 WHERE id = $1",
        )
        .bind(c.id)
        .bind(&c.name)
        .bind(&c.description)
        .bind(&c.group)
        .bind(c.position)
        .bind(c.status.as_str())
        .bind(c.updated_at)
        .bind(c.version)
        .execute(&mut *self.tx)
        .await
        .map_err(|e| component_name_err(e, &c.name))?;
        Ok(())
    }

    async fn delete_component(&mut self, id: Uuid) -> Result<()> {
        let (open,): (i64,) = sqlx::query_as(AssertSqlSafe(COUNT_OPEN_INCIDENTS_FOR_COMPONENT.as_str()))
            .bind(id)
            .fetch_one(&mut *self.tx)
            .await
            .map_err(db_err)?;
        if open > 0 {
            return Err(Error::Conflict(format!(
                "component {id} is affected by {open} open incident(s); resolve them or remove the component from them first"
            )));
        }
        sqlx::query("DELETE FROM components WHERE id = $1").bind(id).execute(&mut *self.tx).await.map_err(db_err)?;
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        self.tx.commit().await.map_err(db_err)
    }
}

fn component_name_err(e: sqlx::Error, name: &str) -> Error {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            Error::AlreadyExists { resource: "component", field: "name", value: name.to_string() }
        }
        _ => db_err(e),
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
