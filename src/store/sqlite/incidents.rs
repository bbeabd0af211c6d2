//! Incidents and their timeline on SQLite: text search through the FTS5 trigram index.

use std::sync::LazyLock;

use async_trait::async_trait;
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, QueryBuilder, Sqlite};
use uuid::Uuid;

use super::{SqliteStore, SqliteTx, db_err, json_list};
use crate::domain::page::PageToken;
use crate::domain::query::IncidentFilter;
use crate::domain::{Incident, IncidentKey, IncidentRef, Result, TimelineEntry, Visibility};
use crate::store::sql::incidents::{
    self as q, DELETE_INCIDENT, DELETE_INCIDENT_COMPONENTS, INSERT_TIMELINE_ENTRY, IncidentRow, IncidentWrite,
    TimelineRow, TimelineWrite,
};
use crate::store::sql::{DbId, like_pattern};
use crate::store::{IncidentStore, IncidentTx, Waiting};

impl q::Dialect for Sqlite {
    fn push_any_of(q: &mut QueryBuilder<Self>, column: &str, values: Vec<&'static str>) {
        q.push(format!(" AND {column} IN (SELECT value FROM json_each(")).push_bind(json_list(values)).push("))");
    }

    fn push_search_term(q: &mut QueryBuilder<Self>, term: &str) {
        // The trigram index serves LIKE patterns; one with an ESCAPE clause is evaluated row
        // by row, with the same result.
        let pattern = like_pattern(term);
        let escape = if pattern.contains('\\') { r" ESCAPE '\'" } else { "" };
        q.push(" AND reference_number IN (SELECT rowid FROM incidents_fts WHERE search_text LIKE ")
            .push_bind(pattern)
            .push(escape)
            .push(")");
    }
}

/// The reference is bound last, after the written columns.
static TIMELINES: LazyLock<String> =
    LazyLock::new(|| q::timelines_sql("incident_id IN (SELECT value FROM json_each($1))"));
static INSERT_INCIDENT: LazyLock<String> = LazyLock::new(|| q::insert_incident_sql(&["reference_number"]));

async fn select_incident<'e, E: sqlx::SqliteExecutor<'e>>(db: E, key: IncidentKey) -> Result<Option<Incident>> {
    let row: Option<IncidentRow> = match key {
        IncidentKey::Id(id) => {
            sqlx::query_as(AssertSqlSafe(q::SELECT_INCIDENT_BY_ID.as_str())).bind(DbId(id)).fetch_optional(db).await
        }
        IncidentKey::Ref(r) => {
            sqlx::query_as(AssertSqlSafe(q::SELECT_INCIDENT_BY_REF.as_str())).bind(r.0).fetch_optional(db).await
        }
    }
    .map_err(db_err)?;
    row.map(Incident::try_from).transpose()
}

#[async_trait]
impl IncidentStore for SqliteStore {
    async fn get_incident(&self, key: IncidentKey) -> Result<Option<Incident>> {
        let waiting = Waiting::enter(&self.waiting);
        let mut conn = self.readers.acquire().await.map_err(db_err)?;
        drop(waiting);
        select_incident(&mut *conn, key).await
    }

    async fn list_incidents(
        &self,
        filter: &IncidentFilter,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<Incident>> {
        super::list::<IncidentRow, _>(&self.readers, q::incidents_query(filter, after, limit)).await
    }

    async fn list_timelines(&self, incident_ids: &[Uuid]) -> Result<Vec<TimelineEntry>> {
        let rows: Vec<TimelineRow> = sqlx::query_as(TIMELINES.as_str())
            .bind(json_list(incident_ids))
            .fetch_all(&self.readers)
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
        super::list::<TimelineRow, _>(&self.readers, q::timeline_query(incident_id, visibility, after, limit)).await
    }
}

#[async_trait]
impl IncidentTx for SqliteTx {
    async fn insert_incident(&mut self, incident: &Incident) -> Result<IncidentRef> {
        let conn = self.conn();
        let (n,): (i64,) =
            sqlx::query_as("UPDATE counters SET value = value + 1 WHERE name = 'incident_reference' RETURNING value")
                .fetch_one(&mut *conn)
                .await
                .map_err(db_err)?;
        IncidentWrite::from(incident)
            .bind(sqlx::query(INSERT_INCIDENT.as_str()))
            .bind(n)
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
        sync_components(conn, incident, false).await?;
        Ok(IncidentRef(n))
    }

    async fn lock_incident(&mut self, key: IncidentKey) -> Result<Option<Incident>> {
        select_incident(self.conn(), key).await
    }

    async fn update_incident(&mut self, incident: &Incident, components_changed: bool) -> Result<()> {
        let conn = self.conn();
        IncidentWrite::from(incident)
            .bind(sqlx::query(AssertSqlSafe(q::UPDATE_INCIDENT.as_str())))
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
        if components_changed {
            sync_components(conn, incident, true).await?;
        } else {
            sqlx::query(
                "UPDATE incident_components SET incident_open = $2 WHERE incident_id = $1 AND incident_open <> $2",
            )
            .bind(DbId(incident.id))
            .bind(incident.is_open())
            .execute(conn)
            .await
            .map_err(db_err)?;
        }
        Ok(())
    }

    async fn delete_incident(&mut self, id: Uuid) -> Result<()> {
        sqlx::query(DELETE_INCIDENT).bind(DbId(id)).execute(self.conn()).await.map_err(db_err)?;
        Ok(())
    }

    async fn resolve_incident_ids(&mut self, keys: &[IncidentKey]) -> Result<Vec<Option<Uuid>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, refs) = q::split_keys(keys);
        let found: Vec<(DbId, i64)> = sqlx::query_as(
            "SELECT id, reference_number FROM incidents WHERE id IN (SELECT value FROM json_each($1)) \
             OR reference_number IN (SELECT CAST(value AS INTEGER) FROM json_each($2))",
        )
        .bind(json_list(ids))
        .bind(json_list(refs))
        .fetch_all(self.conn())
        .await
        .map_err(db_err)?;
        Ok(q::match_keys(keys, &found))
    }

    async fn insert_timeline_entry(&mut self, e: &TimelineEntry) -> Result<()> {
        TimelineWrite::from(e)
            .bind(sqlx::query(INSERT_TIMELINE_ENTRY.as_str()))
            .execute(self.conn())
            .await
            .map_err(db_err)?;
        Ok(())
    }
}

/// Rewrites the incident's rows in `incident_components`.
async fn sync_components(conn: &mut sqlx::SqliteConnection, incident: &Incident, clear_first: bool) -> Result<()> {
    if clear_first {
        sqlx::query(DELETE_INCIDENT_COMPONENTS).bind(DbId(incident.id)).execute(&mut *conn).await.map_err(db_err)?;
    }
    if incident.affected_components.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO incident_components (incident_id, component_id, status, incident_open) \
         SELECT $1, json_extract(value, '$.component_id'), json_extract(value, '$.status'), $3 FROM json_each($2)",
    )
    .bind(DbId(incident.id))
    .bind(Json(&incident.affected_components))
    .bind(incident.is_open())
    .execute(conn)
    .await
    .map_err(db_err)?;
    Ok(())
}
