//! Analytics on Postgres: `percentile_cont` over grouping sets, the groups by component in a
//! second query on a second connection at the same time (the two take most of the time), and
//! the counts after.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{PgStore, db_err};
use crate::domain::Result;
use crate::domain::stats::{ActionCounts, Durations, GroupFigures, StatsFigures, StatsWindow};
use crate::store::StatsStore;
use crate::store::sql::stats::{ACTIONS_SQL, CATEGORIES_SQL, CAUSES_SQL, category_rows, cause_rows};
use crate::store::sql::{DbId, DbTime, parse};

/// The window's incidents with their durations in seconds (`date_part` is double precision)
/// and their month (`width_bucket` over the months' starts, from 0).
const WINDOW: &str = "WITH w AS (SELECT id, severity, width_bucket(created_at, $3::timestamptz[]) - 1 AS month, \
     date_part('epoch', acknowledged_at) - date_part('epoch', created_at) AS tta, \
     date_part('epoch', resolved_at) - date_part('epoch', created_at) AS ttr, \
     reopen_count > 0 AS reopened, (resolved_at IS NOT NULL OR reopen_count > 0) AS ever_resolved \
     FROM incidents WHERE created_at >= $1 AND created_at < $2 AND status <> 'merged')";

/// The figures of a group: incidents, then count, mean and the p50/p90 pair of each duration.
const FIGURES: &str = "count(*), \
     count(tta), avg(tta), percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY tta), \
     count(ttr), avg(ttr), percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY ttr)";

type Figures = (i64, i64, Option<f64>, Option<Vec<f64>>, i64, Option<f64>, Option<Vec<f64>>);

fn group((incidents, na, ma, pa, nr, mr, pr): Figures) -> GroupFigures {
    let durations = |count, mean, p: Option<Vec<f64>>| Durations {
        count,
        mean_seconds: mean,
        p50_seconds: p.as_ref().and_then(|p| p.first().copied()),
        p90_seconds: p.as_ref().and_then(|p| p.get(1).copied()),
    };
    GroupFigures { incidents, mtta: durations(na, ma, pa), mttr: durations(nr, mr, pr) }
}

/// Overall, by severity and by month, with the reopen counts.
async fn by_groups(
    pool: &PgPool,
    w: &StatsWindow,
) -> Result<Vec<(i32, i32, Option<String>, Option<i32>, Figures, i64, i64)>> {
    let sql = format!(
        "{WINDOW} SELECT GROUPING(severity), GROUPING(month), severity, month, {FIGURES}, \
         count(*) FILTER (WHERE reopened), count(*) FILTER (WHERE ever_resolved) \
         FROM w GROUP BY GROUPING SETS ((), (severity), (month))"
    );
    let rows: Vec<sqlx::postgres::PgRow> =
        bind_window(sqlx::query(sqlx::AssertSqlSafe(sql)), w).fetch_all(pool).await.map_err(db_err)?;
    use sqlx::Row;
    rows.into_iter()
        .map(|r| {
            let figures: Figures = (
                r.try_get(4)?,
                r.try_get(5)?,
                r.try_get(6)?,
                r.try_get(7)?,
                r.try_get(8)?,
                r.try_get(9)?,
                r.try_get(10)?,
            );
            Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, figures, r.try_get(11)?, r.try_get(12)?))
        })
        .collect::<std::result::Result<_, sqlx::Error>>()
        .map_err(db_err)
}

/// By component (an incident counts for each component it affects).
async fn by_component(pool: &PgPool, w: &StatsWindow) -> Result<Vec<(DbId, Figures)>> {
    let sql = format!(
        "{WINDOW} SELECT ic.component_id, {FIGURES} FROM w JOIN incident_components ic ON ic.incident_id = w.id \
         GROUP BY ic.component_id"
    );
    let rows: Vec<sqlx::postgres::PgRow> =
        bind_window(sqlx::query(sqlx::AssertSqlSafe(sql)), w).fetch_all(pool).await.map_err(db_err)?;
    use sqlx::Row;
    rows.into_iter()
        .map(|r| {
            let figures: Figures = (
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
                r.try_get(5)?,
                r.try_get(6)?,
                r.try_get(7)?,
            );
            Ok((r.try_get(0)?, figures))
        })
        .collect::<std::result::Result<_, sqlx::Error>>()
        .map_err(db_err)
}

fn bind_window<'q>(
    q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    w: &StatsWindow,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let starts: Vec<DateTime<Utc>> = w.month_starts.clone();
    q.bind(DbTime(w.from)).bind(DbTime(w.to)).bind(starts)
}

#[async_trait]
impl StatsStore for PgStore {
    async fn incident_stats(&self, w: &StatsWindow) -> Result<StatsFigures> {
        let (groups, components) = tokio::try_join!(by_groups(&self.pool, w), by_component(&self.pool, w))?;
        let mut figures = StatsFigures::default();
        for (no_severity, no_month, severity, month, f, reopened, ever_resolved) in groups {
            match (no_severity, no_month, severity, month) {
                (1, 1, _, _) => {
                    figures.overall = group(f);
                    figures.reopened = reopened;
                    figures.ever_resolved = ever_resolved;
                }
                (0, 1, Some(s), _) => figures.by_severity.push((parse("severity", &s)?, group(f))),
                (1, 0, _, Some(m)) => figures.by_month.push((usize::try_from(m).unwrap_or_default(), group(f))),
                _ => {}
            }
        }
        figures.by_component = components.into_iter().map(|(id, f)| (id.0, group(f))).collect();
        let causes: Vec<(String, Option<String>, i64)> = sqlx::query_as(CAUSES_SQL)
            .bind(DbTime(w.from))
            .bind(DbTime(w.to))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        figures.by_cause = cause_rows(causes)?;
        let categories: Vec<(String, i64)> = sqlx::query_as(CATEGORIES_SQL)
            .bind(DbTime(w.from))
            .bind(DbTime(w.to))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        figures.by_category = category_rows(categories)?;
        let (open, overdue, done, wont_do): (i64, i64, i64, i64) = sqlx::query_as(ACTIONS_SQL)
            .bind(DbTime(w.from))
            .bind(DbTime(w.to))
            .bind(w.today)
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        figures.actions = ActionCounts { open, overdue, done, wont_do };
        Ok(figures)
    }
}
