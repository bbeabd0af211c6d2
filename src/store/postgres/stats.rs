//! Analytics on Postgres: `percentile_cont` over the window's incidents, read through one
//! covering index (`incidents_stats_idx`, with each incident's component ids). Four queries
//! run at once, each on a connection of its own (overall and by severity; by month; by
//! component; the counts, from postmortems and actions that carry their incident's
//! declaration time).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::postgres::types::PgInterval;
use sqlx::{PgPool, Row};

use super::{PgStore, db_err};
use crate::domain::stats::{ActionCounts, Durations, GroupFigures, StatsFigures, StatsWindow};
use crate::domain::{Error, Result};
use crate::store::StatsStore;
use crate::store::sql::stats::{ACTIONS_SQL, CATEGORIES_SQL, CAUSES_SQL, category_rows, cause_rows};
use crate::store::sql::{DbId, DbTime, parse};

/// The window's incidents: declared in `[$1, $2)`, merged duplicates left out.
const WINDOW: &str = "FROM incidents WHERE created_at >= $1 AND created_at < $2 AND status <> 'merged'";

/// The figures of a group: incidents, then count, mean and the p50/p90 pair of each duration,
/// as intervals (exact to the microsecond, and cheaper to sort than seconds computed per row).
const FIGURES: &str = "count(*), \
     count(acknowledged_at), avg(acknowledged_at - created_at), \
     percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY acknowledged_at - created_at), \
     count(resolved_at), avg(resolved_at - created_at), \
     percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY resolved_at - created_at)";

/// An interval in seconds (a difference of two instants has no months).
fn seconds(i: &PgInterval) -> f64 {
    (i64::from(i.months) * 30 + i64::from(i.days)) as f64 * 86_400.0 + i.microseconds as f64 / 1e6
}

/// Reads the [`FIGURES`] that start at column `at`.
fn figures(row: &PgRow, at: usize) -> std::result::Result<GroupFigures, sqlx::Error> {
    let durations = |n: usize| -> std::result::Result<Durations, sqlx::Error> {
        let mean: Option<PgInterval> = row.try_get(n + 1)?;
        let p: Option<Vec<PgInterval>> = row.try_get(n + 2)?;
        Ok(Durations {
            count: row.try_get(n)?,
            mean_seconds: mean.as_ref().map(seconds),
            p50_seconds: p.as_ref().and_then(|p| p.first()).map(seconds),
            p90_seconds: p.as_ref().and_then(|p| p.get(1)).map(seconds),
        })
    };
    Ok(GroupFigures { incidents: row.try_get(at)?, mtta: durations(at + 1)?, mttr: durations(at + 4)? })
}

/// A transaction set for the analytics: no JIT (compiling these queries costs more than
/// running them), no parallel workers (the queries already run side by side, one core each),
/// and room to sort in memory.
async fn begin(pool: &PgPool) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    sqlx::raw_sql("SET LOCAL jit = off; SET LOCAL max_parallel_workers_per_gather = 0; SET LOCAL work_mem = '64MB'")
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    Ok(tx)
}

/// Runs `sql` (bound to the window: from, to, then the months' starts when it uses `$3`) on a
/// connection of its own, in a transaction that turns JIT off.
async fn rows(pool: &PgPool, sql: String, w: &StatsWindow) -> Result<Vec<PgRow>> {
    let mut tx = begin(pool).await?;
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(DbTime(w.from)).bind(DbTime(w.to));
    if sql.contains("$3") {
        q = q.bind(w.month_starts.clone());
    }
    let rows = q.fetch_all(&mut *tx).await.map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    Ok(rows)
}

fn decoded<T>(r: std::result::Result<T, sqlx::Error>) -> Result<T> {
    r.map_err(|e| Error::Internal(e.to_string()))
}

/// Overall and by severity, with the reopen counts.
async fn overall_and_severity(pool: &PgPool, w: &StatsWindow, into: &mut StatsFigures) -> Result<()> {
    let sql = format!(
        "SELECT GROUPING(severity), severity, {FIGURES}, count(*) FILTER (WHERE reopen_count > 0), \
         count(*) FILTER (WHERE resolved_at IS NOT NULL OR reopen_count > 0) {WINDOW} GROUP BY GROUPING SETS ((), (severity))"
    );
    for row in rows(pool, sql, w).await? {
        let g = decoded(figures(&row, 2))?;
        match decoded(row.try_get::<i32, _>(0))? {
            1 => {
                into.overall = g;
                into.reopened = decoded(row.try_get(9))?;
                into.ever_resolved = decoded(row.try_get(10))?;
            }
            _ => into.by_severity.push((parse("severity", &decoded(row.try_get::<String, _>(1))?)?, g)),
        }
    }
    Ok(())
}

/// By month (`width_bucket` over the months' starts, from 0).
async fn by_month(pool: &PgPool, w: &StatsWindow) -> Result<Vec<(usize, GroupFigures)>> {
    let sql = format!("SELECT width_bucket(created_at, $3::timestamptz[]) - 1, {FIGURES} {WINDOW} GROUP BY 1");
    let rows = rows(pool, sql, w).await?;
    rows.iter()
        .map(|row| {
            let month = decoded(row.try_get::<i32, _>(0))?;
            Ok((usize::try_from(month).unwrap_or_default(), decoded(figures(row, 1))?))
        })
        .collect()
}

/// By component: an incident counts for each component it affects.
async fn by_component(pool: &PgPool, w: &StatsWindow) -> Result<Vec<(uuid::Uuid, GroupFigures)>> {
    let sql = format!(
        "SELECT c, {FIGURES} FROM incidents, unnest(component_ids) c \
         WHERE created_at >= $1 AND created_at < $2 AND status <> 'merged' GROUP BY c"
    );
    let rows = rows(pool, sql, w).await?;
    rows.iter().map(|row| Ok((decoded(row.try_get::<DbId, _>(0))?.0, decoded(figures(row, 1))?))).collect()
}

/// Causes, root-cause categories and follow-up actions.
async fn counts(pool: &PgPool, w: &StatsWindow) -> Result<StatsFigures> {
    let (from, to): (DateTime<Utc>, DateTime<Utc>) = (w.from, w.to);
    let mut tx = begin(pool).await?;
    let causes: Vec<(String, Option<String>, i64)> =
        sqlx::query_as(CAUSES_SQL).bind(DbTime(from)).bind(DbTime(to)).fetch_all(&mut *tx).await.map_err(db_err)?;
    let categories: Vec<(String, i64)> =
        sqlx::query_as(CATEGORIES_SQL).bind(DbTime(from)).bind(DbTime(to)).fetch_all(&mut *tx).await.map_err(db_err)?;
    let (open, overdue, done, wont_do): (i64, i64, i64, i64) = sqlx::query_as(ACTIONS_SQL)
        .bind(DbTime(from))
        .bind(DbTime(to))
        .bind(w.today)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    Ok(StatsFigures {
        by_cause: cause_rows(causes)?,
        by_category: category_rows(categories)?,
        actions: ActionCounts { open, overdue, done, wont_do },
        ..Default::default()
    })
}

#[async_trait]
impl StatsStore for PgStore {
    async fn incident_stats(&self, w: &StatsWindow) -> Result<StatsFigures> {
        let mut groups = StatsFigures::default();
        let (_, by_month, by_component, counts) = tokio::try_join!(
            overall_and_severity(&self.pool, w, &mut groups),
            by_month(&self.pool, w),
            by_component(&self.pool, w),
            counts(&self.pool, w)
        )?;
        Ok(StatsFigures {
            by_month,
            by_component,
            by_cause: counts.by_cause,
            by_category: counts.by_category,
            actions: counts.actions,
            ..groups
        })
    }
}
