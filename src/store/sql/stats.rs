//! Analytics: the statements both backends share (the counts), and their conversions. The
//! duration figures (percentiles) are each backend's own: Postgres has `percentile_cont`,
//! SQLite ranks with window functions.

use super::parse;
use crate::domain::Result;
use crate::domain::incident::CauseKind;
use crate::domain::postmortem::RootCauseCategory;

/// The incidents of the window: declared in `[$1, $2)`, merged duplicates left out.
pub const IN_WINDOW: &str = "created_at >= $1 AND created_at < $2 AND status <> 'merged'";

/// Incidents by cause kind and, for third parties, provider.
pub const CAUSES_SQL: &str = "SELECT cause_kind, CASE WHEN cause_kind = 'third_party' THEN cause_provider END, count(*) \
     FROM incidents WHERE created_at >= $1 AND created_at < $2 AND status <> 'merged' GROUP BY 1, 2";

/// Postmortems of the window's incidents by root-cause category.
pub const CATEGORIES_SQL: &str = "SELECT p.root_cause_category, count(*) FROM postmortems p \
     JOIN incidents i ON i.id = p.incident_id \
     WHERE i.created_at >= $1 AND i.created_at < $2 AND i.status <> 'merged' GROUP BY 1";

/// The window's follow-up actions: open, overdue (open and due before `$3`), done, won't do.
pub const ACTIONS_SQL: &str = "SELECT \
     coalesce(sum(CASE WHEN a.status = 'open' THEN 1 ELSE 0 END), 0), \
     coalesce(sum(CASE WHEN a.status = 'open' AND a.due_date < $3 THEN 1 ELSE 0 END), 0), \
     coalesce(sum(CASE WHEN a.status = 'done' THEN 1 ELSE 0 END), 0), \
     coalesce(sum(CASE WHEN a.status = 'wont_do' THEN 1 ELSE 0 END), 0) \
     FROM actions a JOIN incidents i ON i.id = a.incident_id \
     WHERE i.created_at >= $1 AND i.created_at < $2 AND i.status <> 'merged'";

pub fn cause_rows(rows: Vec<(String, Option<String>, i64)>) -> Result<Vec<(CauseKind, Option<String>, i64)>> {
    rows.into_iter().map(|(k, p, n)| Ok((parse("cause_kind", &k)?, p, n))).collect()
}

pub fn category_rows(rows: Vec<(String, i64)>) -> Result<Vec<(RootCauseCategory, i64)>> {
    rows.into_iter().map(|(c, n)| Ok((parse("root_cause_category", &c)?, n))).collect()
}
