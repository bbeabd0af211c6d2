//! Postmortems on SQLite.

use std::sync::LazyLock;

use async_trait::async_trait;
use uuid::Uuid;

use super::{SqliteStore, SqliteTx, db_err, json_list};
use crate::domain::Result;
use crate::domain::postmortem::Postmortem;
use crate::store::sql::DbId;
use crate::store::sql::postmortems::{
    INSERT_POSTMORTEM, PostmortemRow, PostmortemWrite, SELECT_POSTMORTEM, UPDATE_POSTMORTEM, published_sql,
};
use crate::store::{PostmortemStore, PostmortemTx};

static PUBLISHED: LazyLock<String> =
    LazyLock::new(|| published_sql("incident_id IN (SELECT value FROM json_each($1))"));

#[async_trait]
impl PostmortemStore for SqliteStore {
    async fn get_postmortem(&self, incident_id: Uuid) -> Result<Option<Postmortem>> {
        super::by_id::<PostmortemRow, _>(&self.readers, SELECT_POSTMORTEM.as_str(), incident_id).await
    }

    async fn published_postmortems(&self, incident_ids: &[Uuid]) -> Result<Vec<Postmortem>> {
        let rows: Vec<PostmortemRow> = sqlx::query_as(PUBLISHED.as_str())
            .bind(json_list(incident_ids))
            .fetch_all(&self.readers)
            .await
            .map_err(db_err)?;
        rows.into_iter().map(Postmortem::try_from).collect()
    }
}

#[async_trait]
impl PostmortemTx for SqliteTx {
    async fn insert_postmortem(&mut self, p: &Postmortem) -> Result<()> {
        PostmortemWrite::from(p)
            .bind(sqlx::query(INSERT_POSTMORTEM.as_str()))
            .execute(self.conn())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn lock_postmortem(&mut self, incident_id: Uuid) -> Result<Option<Postmortem>> {
        let row: Option<PostmortemRow> = sqlx::query_as(SELECT_POSTMORTEM.as_str())
            .bind(DbId(incident_id))
            .fetch_optional(self.conn())
            .await
            .map_err(db_err)?;
        row.map(Postmortem::try_from).transpose()
    }

    async fn update_postmortem(&mut self, p: &Postmortem) -> Result<()> {
        PostmortemWrite::from(p)
            .bind(sqlx::query(UPDATE_POSTMORTEM.as_str()))
            .execute(self.conn())
            .await
            .map_err(db_err)?;
        Ok(())
    }
}
