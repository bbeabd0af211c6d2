//! How long what piles up is kept: finished deliveries and their attempts, the event log,
//! idempotency records, received alerts and the audit trail. The workers prune what is older
//! in small batches (`service/retention.rs`); what is still needed is never pruned, whatever
//! its age (see [`Table`]).

use std::time::Duration;

/// What the retention covers, in the order a pass prunes it: children before parents
/// (a delivery's attempts with the delivery, deliveries before the events they deliver).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// Delivered, failed or cancelled deliveries, with their attempts, by their last attempt
    /// (their creation if never attempted). Pending or sending ones are never pruned.
    Deliveries,
    /// Sequenced events. Never one not yet sequenced, one a delivery still refers to, or one
    /// a customer mail still waits to be sent for.
    Events,
    /// Received alerts, by when they arrived. Never those of an open incident.
    Alerts,
    /// Audit records, by when the change happened.
    AuditEvents,
    /// Idempotency records, by when their key was first used (the replay window is the
    /// same length).
    IdempotencyKeys,
}

impl Table {
    /// Every table, in pruning order.
    pub const ALL: [Table; 5] =
        [Table::Deliveries, Table::Events, Table::Alerts, Table::AuditEvents, Table::IdempotencyKeys];

    /// The table's name (and the `table` label of the pruned-rows metric).
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Deliveries => "deliveries",
            Table::Events => "events",
            Table::Alerts => "alerts",
            Table::AuditEvents => "audit_events",
            Table::IdempotencyKeys => "idempotency_keys",
        }
    }
}

/// How long each kind of record is kept (`None`: forever) and how the workers prune.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub deliveries: Option<Duration>,
    pub events: Option<Duration>,
    pub alerts: Option<Duration>,
    pub audit_events: Option<Duration>,
    pub idempotency_keys: Option<Duration>,
    /// How often a pass runs.
    pub every: Duration,
    /// Rows deleted per statement (and transaction).
    pub batch_size: u32,
    /// The pause after a full batch, so that writers waiting for the database interleave.
    pub pause: Duration,
}

const DAY: u64 = 86_400;

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            deliveries: Some(Duration::from_secs(30 * DAY)),
            events: Some(Duration::from_secs(30 * DAY)),
            alerts: Some(Duration::from_secs(90 * DAY)),
            audit_events: Some(Duration::from_secs(365 * DAY)),
            idempotency_keys: Some(Duration::from_secs(DAY)),
            every: Duration::from_secs(300),
            batch_size: 500,
            pause: Duration::from_millis(50),
        }
    }
}

impl RetentionPolicy {
    /// How long rows of `table` are kept; `None`: forever.
    pub fn of(&self, table: Table) -> Option<Duration> {
        match table {
            Table::Deliveries => self.deliveries,
            Table::Events => self.events,
            Table::Alerts => self.alerts,
            Table::AuditEvents => self.audit_events,
            Table::IdempotencyKeys => self.idempotency_keys,
        }
    }

    /// Rows of `table` older than this at `now` may be pruned; `None`: keep them all.
    pub fn cutoff(&self, table: Table, now: chrono::DateTime<chrono::Utc>) -> Option<chrono::DateTime<chrono::Utc>> {
        let keep = chrono::Duration::from_std(self.of(table)?).ok()?;
        now.checked_sub_signed(keep)
    }

    /// An idempotency record created before this is expired: its key may be used afresh
    /// (the start of time when records are kept forever).
    pub fn idempotency_expired_before(&self, now: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
        self.cutoff(Table::IdempotencyKeys, now).unwrap_or(chrono::DateTime::UNIX_EPOCH)
    }
}

/// Parses a retention period: `30d`, `24h`, `90m`, `45s` (a bare number is seconds); `0`
/// (in any unit) keeps records forever (`None`).
pub fn parse_retention(s: &str) -> Result<Option<Duration>, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let bad = || format!("{s:?} is not a retention period such as 30d, 24h, 90m or 45s (0 keeps forever)");
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let unit = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => DAY,
        _ => return Err(bad()),
    };
    let secs = n.checked_mul(unit).filter(|s| *s <= 100 * 365 * DAY).ok_or_else(|| format!("{s:?} is too long"))?;
    Ok((secs > 0).then(|| Duration::from_secs(secs)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_parse_and_zero_keeps_forever() {
        assert_eq!(parse_retention("30d"), Ok(Some(Duration::from_secs(30 * DAY))));
        assert_eq!(parse_retention("24h"), Ok(Some(Duration::from_secs(DAY))));
        assert_eq!(parse_retention("5m"), Ok(Some(Duration::from_secs(300))));
        assert_eq!(parse_retention("10"), Ok(Some(Duration::from_secs(10))));
        assert_eq!(parse_retention(" 2s "), Ok(Some(Duration::from_secs(2))));
        assert_eq!(parse_retention("0"), Ok(None));
        assert_eq!(parse_retention("0d"), Ok(None));
        for bad in ["", "d", "30w", "-1d", "1.5d", "99999999999d"] {
            assert!(parse_retention(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn cutoffs_follow_the_policy() {
        let now = chrono::Utc::now();
        let p = RetentionPolicy { events: None, ..RetentionPolicy::default() };
        assert_eq!(p.cutoff(Table::Events, now), None);
        assert_eq!(p.cutoff(Table::IdempotencyKeys, now), Some(now - chrono::Duration::hours(24)));
        assert_eq!(p.idempotency_expired_before(now), now - chrono::Duration::hours(24));
        let forever = RetentionPolicy { idempotency_keys: None, ..p };
        assert_eq!(forever.idempotency_expired_before(now), chrono::DateTime::UNIX_EPOCH);
    }
}
