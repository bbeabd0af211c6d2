//! Component status history on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{SqliteStore, SqliteTx, db_err};
use crate::domain::Result;
use crate::domain::history::StatusChange;
use crate::domain::page::PageToken;
use crate::store::sql::history::{
    CLAIM_BACKFILL, IMPOSITIONS, INSERT_STATUS_CHANGE, ImpositionRow, StatusChangeRow, StatusChangeWrite,
    changes_since_query, imposition, status_changes_query,
};
use crate::store::{HistoryStore, HistoryTx, Imposition};

#[async_trait]
impl HistoryStore for SqliteStore {
    async fn list_status_changes(
        &self,
        component_id: Uuid,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<StatusChange>> {
        super::list::<StatusChangeRow, _>(&self.readers, status_changes_query(component_id, after, limit)).await
    }

    async fn status_changes_since(
        &self,
        component_id: Option<Uuid>,
        since: DateTime<Utc>,
    ) -> Result<Vec<StatusChange>> {
        super::list::<StatusChangeRow, _>(&self.readers, Ok(changes_since_query(component_id, since))).await
    }
}

#[async_trait]
impl HistoryTx for SqliteTx {
    async fn insert_status_changes(&mut self, changes: &[StatusChange]) -> Result<()> {
        for change in changes {
            StatusChangeWrite::from(change)
                .bind(sqlx::query(INSERT_STATUS_CHANGE.as_str()))
                .execute(self.conn())
                .await
                .map_err(db_err)?;
        }
        Ok(())
    }

    async fn claim_history_backfill(&mut self) -> Result<bool> {
        // The write transaction already excludes every other writer.
        let done = sqlx::query(CLAIM_BACKFILL).execute(self.conn()).await.map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn impositions(&mut self) -> Result<Vec<Imposition>> {
        let rows: Vec<ImpositionRow> =
            sqlx::query_as(IMPOSITIONS.as_str()).fetch_all(self.conn()).await.map_err(db_err)?;
        rows.into_iter().map(imposition).collect()
    }
}
