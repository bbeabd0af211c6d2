//! Component status history on Postgres.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Deferred, PgStore, PgTx, db_err};
use crate::domain::Result;
use crate::domain::history::StatusChange;
use crate::domain::page::PageToken;
use crate::store::sql::history::{
    CLAIM_BACKFILL, IMPOSITIONS, ImpositionRow, StatusChangeRow, changes_since_query, imposition, status_changes_query,
};
use crate::store::{HistoryStore, HistoryTx, Imposition};

#[async_trait]
impl HistoryStore for PgStore {
    async fn list_status_changes(
        &self,
        component_id: Uuid,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<StatusChange>> {
        super::list::<StatusChangeRow, _>(&self.pool, status_changes_query(component_id, after, limit)).await
    }

    async fn status_changes_since(
        &self,
        component_id: Option<Uuid>,
        since: DateTime<Utc>,
    ) -> Result<Vec<StatusChange>> {
        super::list::<StatusChangeRow, _>(&self.pool, Ok(changes_since_query(component_id, since))).await
    }
}

#[async_trait]
impl HistoryTx for PgTx {
    async fn insert_status_changes(&mut self, changes: &[StatusChange]) -> Result<()> {
        self.deferred.extend(changes.iter().cloned().map(Deferred::StatusChange));
        Ok(())
    }

    async fn claim_history_backfill(&mut self) -> Result<bool> {
        // The row lock makes replicas migrating together wait for the one that claimed it.
        let done = sqlx::query(CLAIM_BACKFILL).execute(self.conn().await?).await.map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn impositions(&mut self) -> Result<Vec<Imposition>> {
        let rows: Vec<ImpositionRow> =
            sqlx::query_as(IMPOSITIONS.as_str()).fetch_all(self.conn().await?).await.map_err(db_err)?;
        rows.into_iter().map(imposition).collect()
    }
}
