//! Scheduled maintenance on SQLite.

use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{SqliteStore, SqliteTx, db_err};
use crate::domain::Result;
use crate::domain::maintenance::{Maintenance, MaintenanceUpdate};
use crate::domain::page::PageToken;
use crate::store::sql::maintenance::{
    ANY_DUE, DELETE_MAINTENANCE_COMPONENTS, DUE, INSERT_MAINTENANCE, INSERT_MAINTENANCE_COMPONENT,
    INSERT_MAINTENANCE_UPDATE, MaintenanceFilter, MaintenanceRow, MaintenanceUpdateRow, MaintenanceUpdateWrite,
    MaintenanceWrite, UPDATE_MAINTENANCE, maintenance_timelines_sql, maintenance_updates_query, maintenances_query,
    select_maintenances,
};
use crate::store::sql::{DbId, DbTime};
use crate::store::{MaintenanceStore, MaintenanceTx};

static SELECT_MAINTENANCES: LazyLock<String> = LazyLock::new(|| {
    select_maintenances(
        "(SELECT json_group_array(component_id) FROM (SELECT mc.component_id FROM maintenance_components mc \
         WHERE mc.maintenance_id = m.id ORDER BY mc.position))",
    )
});
static TIMELINES: LazyLock<String> =
    LazyLock::new(|| maintenance_timelines_sql("maintenance_id IN (SELECT value FROM json_each($1))"));
static SELECT_MAINTENANCE_BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("{} WHERE m.id = $1", *SELECT_MAINTENANCES));
/// The write transaction already excludes every other writer: no row locks.
static CLAIM_DUE: LazyLock<String> =
    LazyLock::new(|| format!("{} WHERE {DUE} ORDER BY m.scheduled_for LIMIT 1", *SELECT_MAINTENANCES));

#[async_trait]
impl MaintenanceStore for SqliteStore {
    async fn get_maintenance(&self, id: Uuid) -> Result<Option<Maintenance>> {
        super::by_id::<MaintenanceRow, _>(&self.readers, SELECT_MAINTENANCE_BY_ID.as_str(), id).await
    }

    async fn list_maintenances(
        &self,
        filter: &MaintenanceFilter,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<Maintenance>> {
        super::list::<MaintenanceRow, _>(&self.readers, maintenances_query(&SELECT_MAINTENANCES, filter, after, limit))
            .await
    }

    async fn list_maintenance_timelines(&self, maintenance_ids: &[Uuid]) -> Result<Vec<MaintenanceUpdate>> {
        let rows: Vec<MaintenanceUpdateRow> = sqlx::query_as(TIMELINES.as_str())
            .bind(super::json_list(maintenance_ids))
            .fetch_all(&self.readers)
            .await
            .map_err(db_err)?;
        rows.into_iter().map(MaintenanceUpdate::try_from).collect()
    }

    async fn maintenance_due(&self, now: DateTime<Utc>, remind_before: DateTime<Utc>) -> Result<bool> {
        let (due,): (bool,) = sqlx::query_as(ANY_DUE.as_str())
            .bind(DbTime(now))
            .bind(DbTime(remind_before))
            .fetch_one(&self.readers)
            .await
            .map_err(db_err)?;
        Ok(due)
    }

    async fn list_maintenance_updates(
        &self,
        maintenance_id: Uuid,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<MaintenanceUpdate>> {
        super::list::<MaintenanceUpdateRow, _>(&self.readers, maintenance_updates_query(maintenance_id, after, limit))
            .await
    }
}

impl SqliteTx {
    async fn write_maintenance_components(&mut self, m: &Maintenance) -> Result<()> {
        let conn = self.conn();
        sqlx::query(DELETE_MAINTENANCE_COMPONENTS).bind(DbId(m.id)).execute(&mut *conn).await.map_err(db_err)?;
        for (position, c) in m.components.iter().enumerate() {
            sqlx::query(INSERT_MAINTENANCE_COMPONENT)
                .bind(DbId(m.id))
                .bind(DbId(*c))
                .bind(position as i32)
                .bind(m.status.is_active())
                .execute(&mut *conn)
                .await
                .map_err(db_err)?;
        }
        Ok(())
    }
}

#[async_trait]
impl MaintenanceTx for SqliteTx {
    async fn insert_maintenance(&mut self, m: &Maintenance) -> Result<()> {
        MaintenanceWrite::from(m)
            .bind(sqlx::query(INSERT_MAINTENANCE.as_str()))
            .execute(self.conn())
            .await
            .map_err(db_err)?;
        self.write_maintenance_components(m).await
    }

    async fn lock_maintenance(&mut self, id: Uuid) -> Result<Option<Maintenance>> {
        let row: Option<MaintenanceRow> = sqlx::query_as(SELECT_MAINTENANCE_BY_ID.as_str())
            .bind(DbId(id))
            .fetch_optional(self.conn())
            .await
            .map_err(db_err)?;
        row.map(Maintenance::try_from).transpose()
    }

    async fn update_maintenance(&mut self, m: &Maintenance) -> Result<()> {
        MaintenanceWrite::from(m)
            .bind(sqlx::query(UPDATE_MAINTENANCE.as_str()))
            .execute(self.conn())
            .await
            .map_err(db_err)?;
        self.write_maintenance_components(m).await
    }

    async fn insert_maintenance_update(&mut self, u: &MaintenanceUpdate) -> Result<()> {
        MaintenanceUpdateWrite::from(u)
            .bind(sqlx::query(INSERT_MAINTENANCE_UPDATE.as_str()))
            .execute(self.conn())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn claim_due_maintenance(
        &mut self,
        now: DateTime<Utc>,
        remind_before: DateTime<Utc>,
    ) -> Result<Option<Maintenance>> {
        let row: Option<MaintenanceRow> = sqlx::query_as(CLAIM_DUE.as_str())
            .bind(DbTime(now))
            .bind(DbTime(remind_before))
            .fetch_optional(self.conn())
            .await
            .map_err(db_err)?;
        row.map(Maintenance::try_from).transpose()
    }
}
