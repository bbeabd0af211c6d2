//! Retention: what makes a row prunable, per table, written once for both backends. `$1` is
//! the cutoff: rows older than it may go. Each condition is served by an index (migration
//! 0014), so finding a batch reads that batch, not the table.

use crate::domain::retention::Table;

/// The table a [`Table`] prunes, and the condition on its rows (the table itself is not
/// aliased, so the conditions can name its columns as `<table>.<column>`).
pub fn prunable(table: Table) -> (&'static str, &'static str) {
    match table {
        // Finished: delivered, failed (dead-lettered) or cancelled; aged from the last
        // attempt, or from creation if there was none. The same expression and predicate as
        // `deliveries_finished_idx`.
        Table::Deliveries => (
            "deliveries",
            "status IN ('delivered', 'failed', 'cancelled') AND COALESCE(last_attempt_at, created_at) < $1",
        ),
        // Sequenced (a reader may already have moved past it), with no delivery left (they go
        // first) and no customer mail waiting for it.
        Table::Events => (
            "events",
            "seq IS NOT NULL AND time < $1 \
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id) \
             AND NOT EXISTS (SELECT 1 FROM customer_mails m WHERE m.event_id = events.id AND m.status = 'pending')",
        ),
        // Not the alerts of an open incident: they decide when it resolves and show on it.
        Table::Alerts => (
            "alerts",
            "received_at < $1 AND NOT EXISTS (SELECT 1 FROM incidents i WHERE i.id = alerts.incident_id \
             AND i.status IN ('investigating', 'identified', 'monitoring'))",
        ),
        Table::AuditEvents => ("audit_events", "occurred_at < $1"),
        Table::IdempotencyKeys => ("idempotency_keys", "created_at < $1"),
    }
}

/// The key a batch is chosen and deleted by (every table here but the idempotency records
/// has an `id`).
pub fn key_columns(table: Table) -> &'static [&'static str] {
    match table {
        Table::IdempotencyKeys => &["scope", "key"],
        _ => &["id"],
    }
}

/// The highest seq of a pruned event.
pub const EVENTS_PRUNED_THROUGH: &str = "SELECT value FROM counters WHERE name = 'events_pruned_through'";
