//! Postmortems on Postgres.

use std::sync::LazyLock;

use async_trait::async_trait;
use uuid::Uuid;

use super::{PgStore, PgTx, db_err};
use crate::domain::Result;
use crate::domain::postmortem::Postmortem;
use crate::store::sql::DbId;
use crate::store::sql::postmortems::{
    INSERT_POSTMORTEM, PostmortemRow, PostmortemWrite, SELECT_POSTMORTEM, UPDATE_POSTMORTEM, published_sql,
};
use crate::store::{PostmortemStore, PostmortemTx};

static PUBLISHED: LazyLock<String> = LazyLock::new(|| published_sql("incident_id = ANY($1)"));
static LOCK_POSTMORTEM: LazyLock<String> = LazyLock::new(|| format!("{} FOR UPDATE", *SELECT_POSTMORTEM));

#[async_trait]
impl PostmortemStore for PgStore {
    async fn get_postmortem(&self, incident_id: Uuid) -> Result<Option<Postmortem>> {
        super::by_id::<PostmortemRow, _>(&self.pool, SELECT_POSTMORTEM.as_str(), incident_id).await
    }

    async fn published_postmortems(&self, incident_ids: &[Uuid]) -> Result<Vec<Postmortem>> {
        let rows: Vec<PostmortemRow> = sqlx::query_as(PUBLISHED.as_str())
            .bind(incident_ids.to_vec())
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.into_iter().map(Postmortem::try_from).collect()
    }
}

#[async_trait]
impl PostmortemTx for PgTx {
    async fn insert_postmortem(&mut self, p: &Postmortem) -> Result<()> {
        PostmortemWrite::from(p)
            .bind(sqlx::query(INSERT_POSTMORTEM.as_str()))
            .execute(self.conn().await?)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn lock_postmortem(&mut self, incident_id: Uuid) -> Result<Option<Postmortem>> {
        let row: Option<PostmortemRow> = sqlx::query_as(LOCK_POSTMORTEM.as_str())
            .bind(DbId(incident_id))
            .fetch_optional(self.conn().await?)
            .await
            .map_err(db_err)?;
        row.map(Postmortem::try_from).transpose()
    }

    async fn update_postmortem(&mut self, p: &Postmortem) -> Result<()> {
        PostmortemWrite::from(p)
            .bind(sqlx::query(UPDATE_POSTMORTEM.as_str()))
            .execute(self.conn().await?)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}
