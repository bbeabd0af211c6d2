//! Components on SQLite.

use std::collections::HashSet;
use std::sync::LazyLock;

use async_trait::async_trait;
use uuid::Uuid;

use super::{SqliteStore, SqliteTx, db_err, json_list};
use crate::domain::page::PageToken;
use crate::domain::{Component, ComponentStatus, Result};
use crate::store::sql::DbId;
use crate::store::sql::components::{
    COUNT_OPEN_INCIDENTS_FOR_COMPONENT, ComponentRow, ComponentWrite, DELETE_COMPONENT, INSERT_COMPONENT,
    UPDATE_COMPONENT, components_query, in_use, name_taken, select_components,
};
use crate::store::{ComponentStore, ComponentTx};

/// Components with the statuses open incidents impose on each (`imposed`, a JSON array).
static SELECT_COMPONENTS: LazyLock<String> = LazyLock::new(|| {
    select_components(
        "(SELECT json_group_array(s) FROM (SELECT ic.status AS s FROM incident_components ic \
         WHERE ic.component_id = c.id AND ic.incident_open \
         UNION ALL SELECT 'under_maintenance' FROM maintenance_components mc \
         WHERE mc.component_id = c.id AND mc.active))",
    )
});
static SELECT_COMPONENT_BY_ID: LazyLock<String> = LazyLock::new(|| format!("{} WHERE c.id = $1", *SELECT_COMPONENTS));

async fn select_component<'e, E: sqlx::SqliteExecutor<'e>>(
    db: E,
    id: Uuid,
) -> Result<Option<(Component, Vec<ComponentStatus>)>> {
    let row: Option<ComponentRow> =
        sqlx::query_as(SELECT_COMPONENT_BY_ID.as_str()).bind(DbId(id)).fetch_optional(db).await.map_err(db_err)?;
    row.map(ComponentRow::into_parts).transpose()
}

#[async_trait]
impl ComponentStore for SqliteStore {
    async fn get_component(&self, id: Uuid) -> Result<Option<Component>> {
        select_component(&self.readers, id).await.map(|c| c.map(|(c, _)| c))
    }

    async fn list_components(
        &self,
        group: Option<&str>,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<Component>> {
        super::list::<ComponentRow, _>(&self.readers, components_query(&SELECT_COMPONENTS, group, after, limit)).await
    }
}

#[async_trait]
impl ComponentTx for SqliteTx {
    async fn existing_component_ids(&mut self, ids: &[Uuid]) -> Result<HashSet<Uuid>> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let found: Vec<(DbId,)> =
            sqlx::query_as("SELECT id FROM components WHERE id IN (SELECT value FROM json_each($1))")
                .bind(json_list(ids))
                .fetch_all(self.conn())
                .await
                .map_err(db_err)?;
        Ok(found.into_iter().map(|(id,)| id.0).collect())
    }

    async fn insert_component(&mut self, c: &Component) -> Result<()> {
        ComponentWrite::from(c)
            .bind(sqlx::query(INSERT_COMPONENT.as_str()))
            .execute(self.conn())
            .await
            .map_err(|e| name_taken(e, &c.name, db_err))?;
        Ok(())
    }

    async fn lock_component(&mut self, id: Uuid) -> Result<Option<(Component, Vec<ComponentStatus>)>> {
        select_component(self.conn(), id).await
    }

    async fn update_component(&mut self, c: &Component) -> Result<()> {
        ComponentWrite::from(c)
            .bind(sqlx::query(UPDATE_COMPONENT.as_str()))
            .execute(self.conn())
            .await
            .map_err(|e| name_taken(e, &c.name, db_err))?;
        Ok(())
    }

    async fn delete_component(&mut self, id: Uuid) -> Result<()> {
        let conn = self.conn();
        let (open,): (i64,) = sqlx::query_as(COUNT_OPEN_INCIDENTS_FOR_COMPONENT)
            .bind(DbId(id))
            .fetch_one(&mut *conn)
            .await
            .map_err(db_err)?;
        if open > 0 {
            return Err(in_use(id, open));
        }
        sqlx::query(DELETE_COMPONENT).bind(DbId(id)).execute(conn).await.map_err(db_err)?;
        Ok(())
    }
}
