//! Typed links and merges on Postgres.

use async_trait::async_trait;
use uuid::Uuid;

use super::{PgStore, PgTx, db_err};
use crate::domain::Result;
use crate::domain::link::{IncidentLink, Link, LinkKind};
use crate::store::sql::DbId;
use crate::store::sql::links::{
    DELETE_LINK, IncidentLinkRow, IncidentLinkWrite, LINK_EXISTS, LIST_LINKS, LinkViewRow, MERGE_STATEMENTS,
    SELECT_LINK, insert_link_sql, link_view,
};
use crate::store::{LinkStore, LinkTx, Moved};

#[async_trait]
impl LinkStore for PgStore {
    async fn list_links(&self, incident_id: Uuid) -> Result<Vec<Link>> {
        let rows: Vec<LinkViewRow> =
            sqlx::query_as(LIST_LINKS).bind(DbId(incident_id)).fetch_all(&self.pool).await.map_err(db_err)?;
        rows.into_iter().map(|r| link_view(incident_id, r)).collect()
    }
}

#[async_trait]
impl LinkTx for PgTx {
    async fn link_exists(&mut self, a: Uuid, b: Uuid, kind: LinkKind) -> Result<bool> {
        let (exists,): (bool,) = sqlx::query_as(LINK_EXISTS)
            .bind(DbId(a))
            .bind(DbId(b))
            .bind(kind.as_str())
            .bind(kind.is_symmetric())
            .fetch_one(self.conn().await?)
            .await
            .map_err(db_err)?;
        Ok(exists)
    }

    async fn insert_link(&mut self, link: &IncidentLink) -> Result<()> {
        IncidentLinkWrite::from(link)
            .bind(sqlx::query(sqlx::AssertSqlSafe(insert_link_sql())))
            .execute(self.conn().await?)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn get_link(&mut self, id: Uuid) -> Result<Option<IncidentLink>> {
        let row: Option<IncidentLinkRow> =
            sqlx::query_as(SELECT_LINK).bind(DbId(id)).fetch_optional(self.conn().await?).await.map_err(db_err)?;
        row.map(IncidentLink::try_from).transpose()
    }

    async fn delete_link(&mut self, id: Uuid) -> Result<()> {
        sqlx::query(DELETE_LINK).bind(DbId(id)).execute(self.conn().await?).await.map_err(db_err)?;
        Ok(())
    }

    async fn move_merged(&mut self, source: Uuid, target: Uuid) -> Result<Moved> {
        let conn = self.conn().await?;
        let mut moved = Moved::default();
        for (step, sql) in MERGE_STATEMENTS {
            let done =
                sqlx::query(*sql).bind(DbId(source)).bind(DbId(target)).execute(&mut *conn).await.map_err(db_err)?;
            step.count(&mut moved, done.rows_affected());
        }
        Ok(moved)
    }
}
