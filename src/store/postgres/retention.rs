//! Retention on Postgres: each batch is one statement (so one short transaction) that picks
//! its rows with `FOR UPDATE SKIP LOCKED`, so replicas pruning at once take different rows and
//! nothing waits on a row a writer holds.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;

use super::{PgStore, db_err};
use crate::domain::Result;
use crate::domain::retention::Table;
use crate::store::sql::DbTime;
use crate::store::sql::retention::{EVENTS_PRUNED_THROUGH, key_columns, prunable};
use crate::store::{PrunedBatch, RetentionStore};

/// The statement that prunes one batch of `table` (`$1` the cutoff, `$2` the batch size),
/// answering how many rows and how many of their children it deleted.
fn prune_sql(table: Table) -> String {
    let (name, condition) = prunable(table);
    let keys = key_columns(table);
    let batch = format!("SELECT {} FROM {name} WHERE {condition} LIMIT $2 FOR UPDATE SKIP LOCKED", keys.join(", "));
    match table {
        // The attempts first (children before parents), then the deliveries.
        Table::Deliveries => format!(
            "WITH b AS ({batch}), \
             a AS (DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM b) RETURNING 1), \
             d AS (DELETE FROM deliveries WHERE id IN (SELECT id FROM b) RETURNING 1) \
             SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM a)"
        ),
        // The horizon moves in the same statement as the events go.
        Table::Events => format!(
            "WITH b AS ({batch}), \
             d AS (DELETE FROM events WHERE id IN (SELECT id FROM b) RETURNING seq), \
             h AS (UPDATE counters SET value = GREATEST(value, (SELECT max(seq) FROM d)) \
                   WHERE name = 'events_pruned_through' AND EXISTS (SELECT 1 FROM d)) \
             SELECT (SELECT count(*) FROM d), 0::int8"
        ),
        _ => {
            let same = keys.iter().map(|k| format!("t.{k} = b.{k}")).collect::<Vec<_>>().join(" AND ");
            format!(
                "WITH b AS ({batch}), d AS (DELETE FROM {name} t USING b WHERE {same} RETURNING 1) \
                 SELECT (SELECT count(*) FROM d), 0::int8"
            )
        }
    }
}

#[async_trait]
impl RetentionStore for PgStore {
    async fn prune_batch(&self, table: Table, before: DateTime<Utc>, limit: u32) -> Result<PrunedBatch> {
        let (rows, children): (i64, i64) = sqlx::query_as(AssertSqlSafe(prune_sql(table)))
            .bind(DbTime(before))
            .bind(i64::from(limit))
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(PrunedBatch { rows: rows.max(0) as u64, children: children.max(0) as u64 })
    }

    async fn events_pruned_through(&self) -> Result<i64> {
        let seq: Option<i64> =
            sqlx::query_scalar(EVENTS_PRUNED_THROUGH).fetch_optional(&self.pool).await.map_err(db_err)?;
        Ok(seq.unwrap_or(0))
    }
}
