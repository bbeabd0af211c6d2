//! Analytics on SQLite, which has neither `percentile_cont` nor grouping sets: every group
//! (all, each severity, each month, each component) is a run of rows, each run ranked by
//! duration with window functions, and the two values around each percentile's rank read
//! out; the interpolation between them is `percentile_cont`'s (`domain::stats::interpolate`).

use async_trait::async_trait;

use super::{SqliteStore, db_err};
use crate::domain::Result;
use crate::domain::stats::{ActionCounts, Durations, GroupFigures, StatsFigures, StatsWindow, interpolate};
use crate::store::StatsStore;
use crate::store::sql::stats::{ACTIONS_SQL, CATEGORIES_SQL, CAUSES_SQL, category_rows, cause_rows};
use crate::store::sql::{DbTime, parse};

/// The window's incidents with their durations in seconds and their month, and every group
/// they count in (`dim`, `key`).
fn groups_sql(w: &StatsWindow) -> String {
    // The month: the last whose start (integer microseconds) is at or before the declaration.
    let mut month = String::from("CASE");
    for (i, start) in w.month_starts.iter().enumerate().rev() {
        month.push_str(&format!(" WHEN created_at >= {} THEN {i}", start.timestamp_micros()));
    }
    month.push_str(" ELSE 0 END");
    format!(
        "WITH w AS (SELECT id, severity, component_ids, {month} AS month, \
         CASE WHEN acknowledged_at IS NOT NULL THEN (acknowledged_at - created_at) / 1000000.0 END AS tta, \
         CASE WHEN resolved_at IS NOT NULL THEN (resolved_at - created_at) / 1000000.0 END AS ttr, \
         reopen_count > 0 AS reopened, (resolved_at IS NOT NULL OR reopen_count > 0) AS ever_resolved \
         FROM incidents WHERE created_at >= $1 AND created_at < $2 AND status <> 'merged'), \
         g AS (SELECT 'all' AS dim, '' AS key, tta, ttr, reopened, ever_resolved FROM w \
         UNION ALL SELECT 'severity', severity, tta, ttr, reopened, ever_resolved FROM w \
         UNION ALL SELECT 'month', CAST(month AS TEXT), tta, ttr, reopened, ever_resolved FROM w \
         UNION ALL SELECT 'component', c.value, w.tta, w.ttr, w.reopened, w.ever_resolved \
         FROM w, json_each(w.component_ids) c)"
    )
}

/// Incidents per group, and the reopen counts.
fn counts_sql(w: &StatsWindow) -> String {
    format!("{} SELECT dim, key, count(*), sum(reopened), sum(ever_resolved) FROM g GROUP BY dim, key", groups_sql(w))
}

/// Per duration (`tta`, `ttr`) and group: the count, the mean, and the values at and after
/// the floor ranks of p50 and p90.
fn durations_sql(w: &StatsWindow) -> String {
    format!(
        "{}, v AS (SELECT 'tta' AS metric, dim, key, tta AS x FROM g WHERE tta IS NOT NULL \
         UNION ALL SELECT 'ttr', dim, key, ttr FROM g WHERE ttr IS NOT NULL), \
         r AS (SELECT metric, dim, key, x, \
         row_number() OVER (PARTITION BY metric, dim, key ORDER BY x) - 1 AS rn, \
         count(*) OVER (PARTITION BY metric, dim, key) AS n FROM v) \
         SELECT metric, dim, key, count(*), avg(x), \
         max(CASE WHEN rn = (n - 1) * 50 / 100 THEN x END), max(CASE WHEN rn = (n - 1) * 50 / 100 + 1 THEN x END), \
         max(CASE WHEN rn = (n - 1) * 90 / 100 THEN x END), max(CASE WHEN rn = (n - 1) * 90 / 100 + 1 THEN x END) \
         FROM r GROUP BY metric, dim, key",
        groups_sql(w)
    )
}

type DurationRow = (String, String, String, i64, Option<f64>, Option<f64>, Option<f64>, Option<f64>, Option<f64>);

/// The figures of group `(dim, key)`, created empty on first sight.
fn slot<'a>(groups: &'a mut Vec<(String, String, GroupFigures)>, dim: &str, key: &str) -> &'a mut GroupFigures {
    let i = match groups.iter().position(|(d, k, _)| d == dim && k == key) {
        Some(i) => i,
        None => {
            groups.push((dim.to_string(), key.to_string(), GroupFigures::default()));
            groups.len() - 1
        }
    };
    &mut groups[i].2
}

#[async_trait]
impl StatsStore for SqliteStore {
    async fn incident_stats(&self, w: &StatsWindow) -> Result<StatsFigures> {
        let (from, to) = (DbTime(w.from), DbTime(w.to));
        let counts: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(counts_sql(w)))
            .bind(from)
            .bind(to)
            .fetch_all(&self.readers)
            .await
            .map_err(db_err)?;
        let durations: Vec<DurationRow> = sqlx::query_as(sqlx::AssertSqlSafe(durations_sql(w)))
            .bind(from)
            .bind(to)
            .fetch_all(&self.readers)
            .await
            .map_err(db_err)?;
        let mut figures = StatsFigures::default();
        let mut groups: Vec<(String, String, GroupFigures)> = Vec::new();
        for (dim, key, incidents, reopened, ever_resolved) in counts {
            slot(&mut groups, &dim, &key).incidents = incidents;
            if dim == "all" {
                figures.reopened = reopened;
                figures.ever_resolved = ever_resolved;
            }
        }
        for (metric, dim, key, n, mean, lo50, hi50, lo90, hi90) in durations {
            let d = Durations {
                count: n,
                mean_seconds: mean,
                p50_seconds: interpolate(n, 0.5, lo50, hi50),
                p90_seconds: interpolate(n, 0.9, lo90, hi90),
            };
            let g = slot(&mut groups, &dim, &key);
            if metric == "tta" {
                g.mtta = d;
            } else {
                g.mttr = d;
            }
        }
        for (dim, key, g) in groups {
            match dim.as_str() {
                "all" => figures.overall = g,
                "severity" => figures.by_severity.push((parse("severity", &key)?, g)),
                "month" => figures.by_month.push((key.parse().unwrap_or_default(), g)),
                _ => {
                    let id = uuid::Uuid::parse_str(&key).map_err(|e| crate::domain::Error::Internal(e.to_string()))?;
                    figures.by_component.push((id, g));
                }
            }
        }
        let causes: Vec<(String, Option<String>, i64)> =
            sqlx::query_as(CAUSES_SQL).bind(from).bind(to).fetch_all(&self.readers).await.map_err(db_err)?;
        figures.by_cause = cause_rows(causes)?;
        let categories: Vec<(String, i64)> =
            sqlx::query_as(CATEGORIES_SQL).bind(from).bind(to).fetch_all(&self.readers).await.map_err(db_err)?;
        figures.by_category = category_rows(categories)?;
        let (open, overdue, done, wont_do): (i64, i64, i64, i64) = sqlx::query_as(ACTIONS_SQL)
            .bind(from)
            .bind(to)
            .bind(w.today)
            .fetch_one(&self.readers)
            .await
            .map_err(db_err)?;
        figures.actions = ActionCounts { open, overdue, done, wont_do };
        Ok(figures)
    }
}
