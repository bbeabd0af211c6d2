//! Incidents and their timeline on Postgres.

use std::sync::LazyLock;

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{Deferred, PgStore, PgTx, db_err};
use crate::domain::page::PageToken;
use crate::domain::query::IncidentFilter;
use crate::domain::{Incident, IncidentKey, IncidentRef, Result, TimelineEntry, Visibility};
use crate::store::sql::incidents::{
    self as q, DELETE_INCIDENT, DELETE_INCIDENT_COMPONENTS, IncidentRow, IncidentWrite, TimelineRow,
};
use crate::store::sql::{DbId, OPEN_STATUSES, like_pattern};
use crate::store::{IncidentStore, IncidentTx};

impl q::Dialect for Postgres {
    fn push_any_of(q: &mut QueryBuilder<Self>, column: &str, values: Vec<&'static str>) {
        q.push(format!(" AND {column} = ANY(")).push_bind(values).push(")");
    }

    fn push_search_term(q: &mut QueryBuilder<Self>, term: &str) {
        q.push(" AND search_text LIKE ").push_bind(like_pattern(term)).push(r" ESCAPE '\'");
    }
}

static LOCK_INCIDENT_BY_ID: LazyLock<String> = LazyLock::new(|| format!("{} FOR UPDATE", *q::SELECT_INCIDENT_BY_ID));
static LOCK_INCIDENT_BY_REF: LazyLock<String> = LazyLock::new(|| format!("{} FOR UPDATE", *q::SELECT_INCIDENT_BY_REF));
/// The reference comes from the column default (a sequence).
static TIMELINES: LazyLock<String> = LazyLock::new(|| q::timelines_sql("incident_id = ANY($1)"));
static INSERT_INCIDENT: LazyLock<String> =
    LazyLock::new(|| format!("{} RETURNING reference_number", q::insert_incident_sql(&[])));
/// Updates the incident and, in the same statement, the open flag of its component rows.
static UPDATE_INCIDENT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH u AS ({} RETURNING status IN {open} AS open) \
         UPDATE incident_components ic SET incident_open = u.open FROM u \
         WHERE ic.incident_id = $1 AND ic.incident_open <> u.open",
        *q::UPDATE_INCIDENT,
        open = *OPEN_STATUSES
    )
});

/// The incident with this key, read with `select_by_id` or `select_by_ref`.
async fn select_incident(
    conn: &mut sqlx::PgConnection,
    key: IncidentKey,
    by_id: &str,
    by_ref: &str,
) -> Result<Option<Incident>> {
    let row: Option<IncidentRow> = match key {
        IncidentKey::Id(id) => sqlx::query_as(AssertSqlSafe(by_id)).bind(DbId(id)).fetch_optional(conn).await,
        IncidentKey::Ref(r) => sqlx::query_as(AssertSqlSafe(by_ref)).bind(r.0).fetch_optional(conn).await,
    }
    .map_err(db_err)?;
    row.map(Incident::try_from).transpose()
}

#[async_trait]
impl IncidentStore for PgStore {
    async fn get_incident(&self, key: IncidentKey) -> Result<Option<Incident>> {
        self.read(|conn| Box::pin(select_incident(conn, key, &q::SELECT_INCIDENT_BY_ID, &q::SELECT_INCIDENT_BY_REF)))
            .await
    }

    async fn list_incidents(
        &self,
        filter: &IncidentFilter,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<Incident>> {
        super::list::<IncidentRow, _>(&self.pool, q::incidents_query(filter, after, limit)).await
    }

    async fn list_timelines(&self, incident_ids: &[Uuid]) -> Result<Vec<TimelineEntry>> {
        let rows: Vec<TimelineRow> = sqlx::query_as(TIMELINES.as_str())
            .bind(incident_ids.to_vec())
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.into_iter().map(TimelineEntry::try_from).collect()
    }

    async fn list_timeline(
        &self,
        incident_id: Uuid,
        visibility: Option<Visibility>,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<TimelineEntry>> {
        super::list::<TimelineRow, _>(&self.pool, q::timeline_query(incident_id, visibility, after, limit)).await
    }
}

#[async_trait]
impl IncidentTx for PgTx {
    async fn insert_incident(&mut self, incident: &Incident) -> Result<IncidentRef> {
        let conn = self.conn().await?;
        let (n,): (i64,) = IncidentWrite::from(incident)
            .bind(sqlx::query(INSERT_INCIDENT.as_str()))
            .try_map(|row: sqlx::postgres::PgRow| sqlx::FromRow::from_row(&row))
            .fetch_one(&mut *conn)
            .await
            .map_err(db_err)?;
        sync_components(conn, incident, false).await?;
        Ok(IncidentRef(n))
    }

    async fn lock_incident(&mut self, key: IncidentKey) -> Result<Option<Incident>> {
        select_incident(self.conn().await?, key, &LOCK_INCIDENT_BY_ID, &LOCK_INCIDENT_BY_REF).await
    }

    async fn update_incident(&mut self, incident: &Incident, components_changed: bool) -> Result<()> {
        let conn = self.conn().await?;
        IncidentWrite::from(incident)
            .bind(sqlx::query(UPDATE_INCIDENT.as_str()))
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
        if components_changed {
            sync_components(conn, incident, true).await?;
        }
        Ok(())
    }

    async fn delete_incident(&mut self, id: Uuid) -> Result<()> {
        sqlx::query(DELETE_INCIDENT).bind(DbId(id)).execute(self.conn().await?).await.map_err(db_err)?;
        Ok(())
    }

    async fn resolve_incident_ids(&mut self, keys: &[IncidentKey]) -> Result<Vec<Option<Uuid>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, refs) = q::split_keys(keys);
        let found: Vec<(DbId, i64)> = sqlx::query_as(
            "SELECT id, reference_number FROM incidents WHERE id = ANY($1) OR reference_number = ANY($2)",
        )
        .bind(ids)
        .bind(refs)
        .fetch_all(self.conn().await?)
        .await
        .map_err(db_err)?;
        Ok(q::match_keys(keys, &found))
    }

    async fn insert_timeline_entry(&mut self, e: &TimelineEntry) -> Result<()> {
        self.deferred.push(Deferred::Timeline(e.clone()));
        Ok(())
    }
}

/// Rewrites the incident's rows in `incident_components`.
async fn sync_components(conn: &mut sqlx::PgConnection, incident: &Incident, clear_first: bool) -> Result<()> {
    if clear_first {
        sqlx::query(DELETE_INCIDENT_COMPONENTS).bind(DbId(incident.id)).execute(&mut *conn).await.map_err(db_err)?;
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
    .bind(DbId(incident.id))
    .bind(ids)
    .bind(statuses)
    .bind(incident.is_open())
    .execute(conn)
    .await
    .map_err(db_err)?;
    Ok(())
}
