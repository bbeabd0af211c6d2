//! Retention: deleting what is older than it is kept, one small batch at a time, and the
//! event log's horizon (the cursor below which events may be gone).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::Result;
use crate::domain::retention::Table;

/// What one batch deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrunedBatch {
    /// Rows of the table itself.
    pub rows: u64,
    /// Rows of its children deleted with them (a delivery's attempts).
    pub children: u64,
}

#[async_trait]
pub trait RetentionStore {
    /// Deletes at most `limit` rows of `table` that are older than `before` and no longer
    /// needed (see [`Table`]), children first, in one short transaction. On Postgres the rows
    /// are taken with `SKIP LOCKED`, so replicas pruning together take different rows.
    async fn prune_batch(&self, table: Table, before: DateTime<Utc>, limit: u32) -> Result<PrunedBatch>;
    /// The highest seq of an event pruned so far (0 before any): events after a cursor below
    /// it may be missing.
    async fn events_pruned_through(&self) -> Result<i64>;
}
