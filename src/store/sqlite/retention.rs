//! Retention on SQLite: one writer at a time, so a batch is a short write transaction that
//! picks its rows by `rowid`, deletes their children, then them; the service pauses between
//! batches so that the writers queued meanwhile go first.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;

use super::{SqliteStore, db_err};
use crate::domain::Result;
use crate::domain::retention::Table;
use crate::store::sql::DbTime;
use crate::store::sql::retention::{EVENTS_PRUNED_THROUGH, prunable};
use crate::store::{PrunedBatch, RetentionStore};

/// The rows of a batch: `rowid IN` this, with `$1` a JSON array of rowids.
const IN_BATCH: &str = "rowid IN (SELECT value FROM json_each($1))";

#[async_trait]
impl RetentionStore for SqliteStore {
    async fn prune_batch(&self, table: Table, before: DateTime<Utc>, limit: u32) -> Result<PrunedBatch> {
        let (name, condition) = prunable(table);
        let mut tx = self.begin_write().await?;
        let rowids: Vec<i64> =
            sqlx::query_scalar(AssertSqlSafe(format!("SELECT rowid FROM {name} WHERE {condition} LIMIT $2")))
                .bind(DbTime(before))
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err)?;
        let mut pruned = PrunedBatch::default();
        if !rowids.is_empty() {
            let batch = serde_json::Value::from(rowids).to_string();
            match table {
                Table::Deliveries => {
                    pruned.children = sqlx::query(AssertSqlSafe(format!(
                        "DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE {IN_BATCH})"
                    )))
                    .bind(&batch)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?
                    .rows_affected();
                }
                Table::Events => {
                    sqlx::query(AssertSqlSafe(format!(
                        "UPDATE counters SET value = MAX(value, (SELECT coalesce(max(seq), 0) FROM events \
                         WHERE {IN_BATCH})) WHERE name = 'events_pruned_through'"
                    )))
                    .bind(&batch)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                }
                _ => {}
            }
            pruned.rows = sqlx::query(AssertSqlSafe(format!("DELETE FROM {name} WHERE {IN_BATCH}")))
                .bind(&batch)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected();
        }
        tx.commit().await.map_err(db_err)?;
        Ok(pruned)
    }

    async fn events_pruned_through(&self) -> Result<i64> {
        let seq: Option<i64> =
            sqlx::query_scalar(EVENTS_PRUNED_THROUGH).fetch_optional(&self.readers).await.map_err(db_err)?;
        Ok(seq.unwrap_or(0))
    }
}
