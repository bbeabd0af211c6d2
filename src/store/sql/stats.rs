//! Analytics: the statements both backends share (the counts), and their conversions. The
//! duration figures (percentiles) are each backend's own: Postgres has `percentile_cont`,
//! SQLite ranks with window functions.

use super::parse;
use crate::domain::Result;
use crate::domain::incident::CauseKind;
use crate::domain::postmortem::RootCauseCategory;

/// Incidents by cause kind and, for third parties, provider.
pub const CAUSES_SQL: &str = "SELECT cause_kind, CASE WHEN cause_kind = 'third_party' THEN cause_provider END, count(*) \
     FROM incidents WHERE created_at >= $1 AND created_at < $2 AND status <> 'merged' GROUP BY 1, 2";

/// Postmortems of the window's incidents by root-cause category (through the declaration time
/// they carry; a postmortem stays with a merged incident only when the one it went into had
/// its own, and is then left out).
pub const CATEGORIES_SQL: &str = "SELECT root_cause_category, count(*) FROM postmortems p \
     WHERE incident_declared_at >= $1 AND incident_declared_at < $2 \
     AND NOT EXISTS (SELECT 1 FROM incidents i WHERE i.id = p.incident_id AND i.status = 'merged') GROUP BY 1";

/// The window's follow-up actions: open, overdue (open and due before `$3`), done, won't do
/// (through the declaration time they carry; a merge moves every action of the merged
/// incident, so none belongs to one).
pub const ACTIONS_SQL: &str = "SELECT \
     coalesce(sum(CASE WHEN status = 'open' THEN 1 ELSE 0 END), 0), \
     coalesce(sum(CASE WHEN status = 'open' AND due_date < $3 THEN 1 ELSE 0 END), 0), \
     coalesce(sum(CASE WHEN status = 'done' THEN 1 ELSE 0 END), 0), \
     coalesce(sum(CASE WHEN status = 'wont_do' THEN 1 ELSE 0 END), 0) \
     FROM actions WHERE incident_declared_at >= $1 AND incident_declared_at < $2";

pub fn cause_rows(rows: Vec<(String, Option<String>, i64)>) -> Result<Vec<(CauseKind, Option<String>, i64)>> {
    rows.into_iter().map(|(k, p, n)| Ok((parse("cause_kind", &k)?, p, n))).collect()
}

pub fn category_rows(rows: Vec<(String, i64)>) -> Result<Vec<(RootCauseCategory, i64)>> {
    rows.into_iter().map(|(c, n)| Ok((parse("root_cause_category", &c)?, n))).collect()
}
