//! Components on Postgres.

use std::collections::HashSet;
use std::sync::LazyLock;

use async_trait::async_trait;
use uuid::Uuid;

use super::{PgStore, PgTx, db_err};
use crate::domain::page::PageToken;
use crate::domain::{Component, ComponentStatus, Result};
use crate::store::sql::DbId;
use crate::store::sql::components::{
    COUNT_OPEN_INCIDENTS_FOR_COMPONENT, ComponentRow, ComponentWrite, DELETE_COMPONENT, INSERT_COMPONENT,
    UPDATE_COMPONENT, components_query, in_use, name_taken, select_components,
};
use crate::store::{ComponentStore, ComponentTx};

/// Components with the statuses open incidents and active maintenance impose on each
/// (`imposed`).
static SELECT_COMPONENTS: LazyLock<String> = LazyLock::new(|| {
    select_components(
        "ARRAY(SELECT ic.status FROM incident_components ic WHERE ic.component_id = c.id AND ic.incident_open \
         UNION ALL SELECT 'under_maintenance' FROM maintenance_components mc \
         WHERE mc.component_id = c.id AND mc.active)",
    )
});
static SELECT_COMPONENT_BY_ID: LazyLock<String> = LazyLock::new(|| format!("{} WHERE c.id = $1", *SELECT_COMPONENTS));
static LOCK_COMPONENT_BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("{} WHERE c.id = $1 FOR NO KEY UPDATE OF c", *SELECT_COMPONENTS));

#[async_trait]
impl ComponentStore for PgStore {
    async fn get_component(&self, id: Uuid) -> Result<Option<Component>> {
        super::by_id::<ComponentRow, _>(&self.pool, SELECT_COMPONENT_BY_ID.as_str(), id).await
    }

    async fn list_components(
        &self,
        group: Option<&str>,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<Component>> {
        super::list::<ComponentRow, _>(&self.pool, components_query(&SELECT_COMPONENTS, group, after, limit)).await
    }
}

#[async_trait]
impl ComponentTx for PgTx {
    async fn existing_component_ids(&mut self, ids: &[Uuid]) -> Result<HashSet<Uuid>> {
        let conn = self.conn().await?;
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        // KEY SHARE keeps the rows from being deleted (as the foreign key will) without blocking
        // other changes from locking them for their status update (NO KEY UPDATE): a stronger
        // lock here would deadlock two changes that both upgrade it.
        let found: Vec<(DbId,)> = sqlx::query_as("SELECT id FROM components WHERE id = ANY($1) FOR KEY SHARE")
            .bind(ids)
            .fetch_all(conn)
            .await
            .map_err(db_err)?;
        Ok(found.into_iter().map(|(id,)| id.0).collect())
    }

    async fn insert_component(&mut self, c: &Component) -> Result<()> {
        ComponentWrite::from(c)
            .bind(sqlx::query(INSERT_COMPONENT.as_str()))
            .execute(self.conn().await?)
            .await
            .map_err(|e| name_taken(e, &c.name, db_err))?;
        Ok(())
    }

    async fn lock_component(&mut self, id: Uuid) -> Result<Option<(Component, Vec<ComponentStatus>)>> {
        let row: Option<ComponentRow> = sqlx::query_as(LOCK_COMPONENT_BY_ID.as_str())
            .bind(DbId(id))
            .fetch_optional(self.conn().await?)
            .await
            .map_err(db_err)?;
        row.map(ComponentRow::into_parts).transpose()
    }

    async fn update_component(&mut self, c: &Component) -> Result<()> {
        ComponentWrite::from(c)
            .bind(sqlx::query(UPDATE_COMPONENT.as_str()))
            .execute(self.conn().await?)
            .await
            .map_err(|e| name_taken(e, &c.name, db_err))?;
        Ok(())
    }

    async fn delete_component(&mut self, id: Uuid) -> Result<()> {
        let conn = self.conn().await?;
        // The strongest row lock: waits for changes that are about to reference the component
        // (they hold KEY SHARE), so the count below sees them.
        sqlx::query("SELECT 1 FROM components WHERE id = $1 FOR UPDATE")
            .bind(DbId(id))
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
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
