//! Retention: a worker loop that deletes what is older than it is kept (the policy in
//! `domain/retention.rs`), table by table in small batches with a pause after each full one,
//! so no statement runs long, holds many locks or keeps writers waiting. Replicas may all run
//! it: on Postgres each batch skips rows another holds.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Service;
use crate::domain::Result;
use crate::domain::retention::Table;

/// What one pass deleted, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub deliveries: u64,
    pub delivery_attempts: u64,
    pub events: u64,
    pub alerts: u64,
    pub audit_events: u64,
    pub idempotency_keys: u64,
    /// Statements run (batches, the last of each table's short or empty).
    pub batches: u64,
}

impl Pruned {
    pub fn total(&self) -> u64 {
        self.deliveries + self.delivery_attempts + self.events + self.alerts + self.audit_events + self.idempotency_keys
    }

    fn add(&mut self, table: Table, rows: u64, children: u64) {
        match table {
            Table::Deliveries => {
                self.deliveries += rows;
                self.delivery_attempts += children;
            }
            Table::Events => self.events += rows,
            Table::Alerts => self.alerts += rows,
            Table::AuditEvents => self.audit_events += rows,
            Table::IdempotencyKeys => self.idempotency_keys += rows,
        }
    }
}

impl Service {
    /// Runs one pass now, to the end (tests and tools; the workers run it every
    /// `RetentionPolicy::every`).
    pub async fn prune_expired(&self) -> Result<Pruned> {
        self.prune_pass(&CancellationToken::new()).await
    }

    /// One pass: every table with a retention, in order (children before parents), in
    /// batches until a short one; stops between batches when `stop` fires.
    async fn prune_pass(&self, stop: &CancellationToken) -> Result<Pruned> {
        let policy = &self.retention;
        let limit = policy.batch_size.max(1);
        let mut pruned = Pruned::default();
        for table in Table::ALL {
            // Each table's cutoff is taken when its turn comes: a long pass keeps what became
            // prunable meanwhile for the next.
            let Some(before) = policy.cutoff(table, crate::domain::now()) else { continue };
            loop {
                let batch = self.store.prune_batch(table, before, limit).await?;
                pruned.batches += 1;
                pruned.add(table, batch.rows, batch.children);
                self.metrics.count_pruned(table.as_str(), batch.rows);
                if table == Table::Deliveries {
                    self.metrics.count_pruned("delivery_attempts", batch.children);
                }
                if batch.rows < u64::from(limit) {
                    break;
                }
                tokio::select! {
                    _ = stop.cancelled() => return Ok(pruned),
                    _ = tokio::time::sleep(policy.pause) => {}
                }
            }
        }
        Ok(pruned)
    }

    /// The workers' loop: a pass at start and then every `RetentionPolicy::every`.
    pub(super) async fn run_retention(self, stop: CancellationToken) {
        loop {
            let started = std::time::Instant::now();
            match self.prune_pass(&stop).await {
                Ok(p) if p.total() == 0 => tracing::debug!(batches = p.batches, "retention: nothing to prune"),
                Ok(p) => tracing::info!(
                    deliveries = p.deliveries,
                    delivery_attempts = p.delivery_attempts,
                    events = p.events,
                    alerts = p.alerts,
                    audit_events = p.audit_events,
                    idempotency_keys = p.idempotency_keys,
                    batches = p.batches,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "retention: pruned expired records"
                ),
                Err(e) => tracing::warn!(error = %e, "retention: pruning failed; trying again at the next pass"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.retention.every.max(Duration::from_millis(10))) => {}
            }
        }
    }

    /// Fails with `CursorExpired` when events after `cursor` may have been pruned (a cursor
    /// of 0 means "from the oldest kept" and never does). Called after reading from the
    /// cursor: pruning that raced the read has then moved the horizon already.
    pub(super) async fn check_cursor(&self, cursor: i64) -> Result<()> {
        if cursor == 0 {
            return Ok(());
        }
        let oldest = self.store.events_pruned_through().await?;
        if cursor < oldest {
            return Err(crate::domain::Error::CursorExpired { cursor, oldest });
        }
        Ok(())
    }
}
