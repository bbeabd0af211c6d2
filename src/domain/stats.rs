//! Analytics over a window of time: how fast incidents are acknowledged (MTTA: declared →
//! first acknowledgement) and resolved (MTTR: declared → resolved), as mean, median and 90th
//! percentile, overall, by severity, by component and by month; what caused them; how often
//! they came back; and the follow-up actions still open. The database computes the figures
//! (`store::StatsStore`); this module says what the window is and shapes the answer.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::error::Result;
use super::history::local_midnight;
use super::incident::{CauseKind, Severity};
use super::postmortem::RootCauseCategory;
use super::validate::Violations;

/// The window when the caller names none: the last 30 days.
pub const DEFAULT_WINDOW_DAYS: i64 = 30;
/// The longest window: ten years.
pub const MAX_WINDOW_DAYS: i64 = 3660;

/// Incidents declared in `[from, to)` (merged ones are duplicates and not counted), and the
/// months of the time zone it spans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsWindow {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The start of each month the window touches, in the time zone, the first at or before
    /// `from`: an incident belongs to the last month that starts at or before its declaration.
    pub month_starts: Vec<DateTime<Utc>>,
    /// The months' names (`2026-11`), one per start.
    pub month_labels: Vec<String>,
    /// Today in the time zone: open actions due before it are overdue.
    pub today: NaiveDate,
    pub time_zone: String,
}

impl StatsWindow {
    /// The window from `from` (default: `to` less 30 days) to `to` (default: now). `from` must
    /// come before `to`, at most ten years before.
    pub fn new(
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        tz: &chrono_tz::Tz,
        now: DateTime<Utc>,
    ) -> Result<StatsWindow> {
        let to = to.map(super::truncate).unwrap_or(now);
        let from = from.map(super::truncate).unwrap_or(to - Duration::days(DEFAULT_WINDOW_DAYS));
        let mut v = Violations::new();
        if from >= to {
            v.add("from", "must be earlier than to");
        } else if to - from > Duration::days(MAX_WINDOW_DAYS) {
            v.add("from", format!("must be at most {MAX_WINDOW_DAYS} days before to"));
        }
        v.finish()?;
        let first = from.with_timezone(tz).date_naive().with_day(1).expect("the first of a month");
        let mut month_starts = Vec::new();
        let mut month_labels = Vec::new();
        let mut month = first;
        loop {
            let start = local_midnight(tz, month);
            if start >= to && !month_starts.is_empty() {
                break;
            }
            month_starts.push(start);
            month_labels.push(month.format("%Y-%m").to_string());
            month = month.checked_add_months(chrono::Months::new(1)).expect("a later month");
        }
        Ok(StatsWindow {
            from,
            to,
            month_starts,
            month_labels,
            today: now.with_timezone(tz).date_naive(),
            time_zone: tz.name().to_string(),
        })
    }
}

/// How long something took, over the incidents where it happened: how many, the mean, the
/// median and the 90th percentile (linear interpolation between the closest ranks, as SQL's
/// `percentile_cont`), in seconds to the millisecond. No incident: no figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Durations {
    pub count: i64,
    pub mean_seconds: Option<f64>,
    pub p50_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
}

impl Durations {
    /// Rounds the figures to the millisecond (both backends then give the same numbers).
    pub fn rounded(self) -> Self {
        let ms = |x: Option<f64>| x.map(|x| (x * 1000.0).round() / 1000.0);
        Durations {
            count: self.count,
            mean_seconds: ms(self.mean_seconds),
            p50_seconds: ms(self.p50_seconds),
            p90_seconds: ms(self.p90_seconds),
        }
    }
}

/// The figures of one group of incidents.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GroupFigures {
    pub incidents: i64,
    pub mtta: Durations,
    pub mttr: Durations,
}

/// Follow-up actions of the window's incidents, by where they stand.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ActionCounts {
    pub open: i64,
    /// Open and past their due date.
    pub overdue: i64,
    pub done: i64,
    pub wont_do: i64,
}

/// What the database computes for a window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsFigures {
    pub overall: GroupFigures,
    /// Incidents reopened at least once, and incidents resolved at least once.
    pub reopened: i64,
    pub ever_resolved: i64,
    pub by_severity: Vec<(Severity, GroupFigures)>,
    /// By index into [`StatsWindow::month_starts`].
    pub by_month: Vec<(usize, GroupFigures)>,
    pub by_component: Vec<(Uuid, GroupFigures)>,
    /// Incidents by cause kind and named provider.
    pub by_cause: Vec<(CauseKind, Option<String>, i64)>,
    /// Postmortems of the window's incidents by root-cause category.
    pub by_category: Vec<(RootCauseCategory, i64)>,
    pub actions: ActionCounts,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SeverityStats {
    pub severity: Severity,
    pub incidents: i64,
    pub mtta: Durations,
    pub mttr: Durations,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ComponentStats {
    pub component_id: Uuid,
    /// Absent when the component was deleted since.
    pub name: Option<String>,
    pub incidents: i64,
    pub mtta: Durations,
    pub mttr: Durations,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MonthStats {
    /// `YYYY-MM`, in the time zone.
    pub month: String,
    pub incidents: i64,
    pub mtta: Durations,
    pub mttr: Durations,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CauseKindCount {
    pub cause_kind: CauseKind,
    pub incidents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ProviderCount {
    /// The third party named as the cause (`cause.provider` of incidents whose cause is
    /// `third_party`).
    pub provider: String,
    pub incidents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RootCauseCount {
    pub root_cause_category: RootCauseCategory,
    /// Incidents whose postmortem names this category.
    pub incidents: i64,
}

/// The analytics of a window.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Stats {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The time zone months are counted in (`INCIDENTD_STATUS_TIME_ZONE`).
    pub time_zone: String,
    /// Incidents declared in the window (merged duplicates not counted).
    pub incidents: i64,
    /// Declared → first acknowledgement, over the acknowledged ones.
    pub mtta: Durations,
    /// Declared → resolved, over those resolved (or closed) now.
    pub mttr: Durations,
    /// Incidents reopened at least once.
    pub reopened: i64,
    /// `reopened` over the incidents resolved at least once; absent when none was.
    pub reopen_rate: Option<f64>,
    /// Every severity, most severe first.
    pub by_severity: Vec<SeverityStats>,
    /// Components that incidents of the window affected, most incidents first.
    pub by_component: Vec<ComponentStats>,
    /// Every month the window touches, oldest first.
    pub by_month: Vec<MonthStats>,
    /// Every cause kind.
    pub by_cause_kind: Vec<CauseKindCount>,
    /// Third parties named as the cause, most incidents first.
    pub by_provider: Vec<ProviderCount>,
    /// Root-cause categories of the window's postmortems, most incidents first.
    pub by_root_cause_category: Vec<RootCauseCount>,
    /// The follow-up actions of the window's incidents.
    pub actions: ActionCounts,
}

impl Stats {
    /// Shapes the database's figures: every severity, cause kind and month present (zero when
    /// nothing happened), the rest most incidents first; components named by `names`.
    pub fn new(window: &StatsWindow, figures: StatsFigures, names: &HashMap<Uuid, String>) -> Stats {
        let StatsFigures {
            overall,
            reopened,
            ever_resolved,
            by_severity,
            by_month,
            by_component,
            by_cause,
            by_category,
            actions,
        } = figures;
        let by_severity = Severity::ALL
            .iter()
            .map(|s| {
                let g = by_severity.iter().find(|(k, _)| k == s).map(|(_, g)| *g).unwrap_or_default();
                SeverityStats { severity: *s, incidents: g.incidents, mtta: g.mtta.rounded(), mttr: g.mttr.rounded() }
            })
            .collect();
        let by_month = window
            .month_labels
            .iter()
            .enumerate()
            .map(|(i, label)| {
                let g = by_month.iter().find(|(k, _)| *k == i).map(|(_, g)| *g).unwrap_or_default();
                MonthStats {
                    month: label.clone(),
                    incidents: g.incidents,
                    mtta: g.mtta.rounded(),
                    mttr: g.mttr.rounded(),
                }
            })
            .collect();
        let mut by_component: Vec<ComponentStats> = by_component
            .into_iter()
            .map(|(id, g)| ComponentStats {
                component_id: id,
                name: names.get(&id).cloned(),
                incidents: g.incidents,
                mtta: g.mtta.rounded(),
                mttr: g.mttr.rounded(),
            })
            .collect();
        by_component.sort_by(|a, b| b.incidents.cmp(&a.incidents).then(a.component_id.cmp(&b.component_id)));
        let by_cause_kind = CauseKind::ALL
            .iter()
            .map(|k| CauseKindCount {
                cause_kind: *k,
                incidents: by_cause.iter().filter(|(c, _, _)| c == k).map(|(_, _, n)| n).sum(),
            })
            .collect();
        let mut providers: Vec<ProviderCount> = Vec::new();
        for (kind, provider, n) in &by_cause {
            let Some(provider) = provider.as_deref().filter(|_| *kind == CauseKind::ThirdParty) else { continue };
            match providers.iter_mut().find(|p| p.provider == provider) {
                Some(p) => p.incidents += n,
                None => providers.push(ProviderCount { provider: provider.to_string(), incidents: *n }),
            }
        }
        providers.sort_by(|a, b| b.incidents.cmp(&a.incidents).then(a.provider.cmp(&b.provider)));
        let mut by_root_cause_category: Vec<RootCauseCount> =
            by_category.into_iter().map(|(c, n)| RootCauseCount { root_cause_category: c, incidents: n }).collect();
        by_root_cause_category
            .sort_by(|a, b| b.incidents.cmp(&a.incidents).then(a.root_cause_category.cmp(&b.root_cause_category)));
        Stats {
            from: window.from,
            to: window.to,
            time_zone: window.time_zone.clone(),
            incidents: overall.incidents,
            mtta: overall.mtta.rounded(),
            mttr: overall.mttr.rounded(),
            reopened,
            reopen_rate: (ever_resolved > 0)
                .then(|| ((reopened as f64 / ever_resolved as f64) * 10_000.0).round() / 10_000.0),
            by_severity,
            by_component,
            by_month,
            by_cause_kind,
            by_provider: providers,
            by_root_cause_category,
            actions,
        }
    }
}

/// The `p` percentile (0..=1) of `n` sorted values, SQL's `percentile_cont`: the value at
/// rank `(n - 1) p`, interpolated between `lo` (the value at its floor) and `hi` (the next,
/// absent when `lo` is the last).
pub fn interpolate(n: i64, p: f64, lo: Option<f64>, hi: Option<f64>) -> Option<f64> {
    let lo = lo?;
    let position = (n - 1) as f64 * p;
    let fraction = position - position.floor();
    Some(match hi {
        Some(hi) if fraction > 0.0 => lo + fraction * (hi - lo),
        _ => lo,
    })
}

/// The 0-based rank of the value below the `p` percentile of `n` values: `floor((n - 1) p)`,
/// for `p` in hundredths (50, 90).
pub fn floor_rank(n: i64, percent: i64) -> i64 {
    (n - 1) * percent / 100
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_window_defaults_to_the_last_30_days_and_lists_its_local_months() {
        let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
        let now = at("2026-12-06T10:00:00Z");
        let w = StatsWindow::new(None, None, &berlin, now).unwrap();
        assert_eq!((w.from, w.to), (at("2026-11-06T10:00:00Z"), now));
        assert_eq!(w.month_labels, ["2026-11", "2026-12"]);
        assert_eq!(w.month_starts, [at("2026-10-31T23:00:00Z"), at("2026-11-30T23:00:00Z")]);
        assert_eq!(w.today, NaiveDate::from_ymd_opt(2026, 12, 6).unwrap());
        let err = StatsWindow::new(Some(now), Some(now), &berlin, now).unwrap_err();
        assert_eq!(err.violations()[0].field, "from");
        let long = StatsWindow::new(Some(at("2000-01-01T00:00:00Z")), Some(now), &berlin, now).unwrap_err();
        assert_eq!(long.violations()[0].field, "from");
    }

    #[test]
    fn percentiles_interpolate_like_percentile_cont() {
        // 10, 20, 30, 40: p50 at rank 1.5 → 25; p90 at rank 2.7 → 37.
        assert_eq!(floor_rank(4, 50), 1);
        assert_eq!(interpolate(4, 0.5, Some(20.0), Some(30.0)), Some(25.0));
        assert_eq!(floor_rank(4, 90), 2);
        let p90 = interpolate(4, 0.9, Some(30.0), Some(40.0)).unwrap();
        assert!((p90 - 37.0).abs() < 1e-9);
        assert_eq!(interpolate(1, 0.9, Some(7.0), None), Some(7.0));
        assert_eq!(interpolate(0, 0.5, None, None), None);
    }

    #[test]
    fn every_severity_cause_and_month_is_listed_and_providers_are_counted() {
        let utc: chrono_tz::Tz = "UTC".parse().unwrap();
        let w = StatsWindow::new(
            Some(at("2026-10-15T00:00:00Z")),
            Some(at("2026-12-01T00:00:00Z")),
            &utc,
            at("2026-12-06T00:00:00Z"),
        )
        .unwrap();
        let figures = StatsFigures {
            overall: GroupFigures { incidents: 3, ..Default::default() },
            reopened: 1,
            ever_resolved: 3,
            by_severity: vec![(Severity::Sev2, GroupFigures { incidents: 3, ..Default::default() })],
            by_month: vec![(1, GroupFigures { incidents: 3, ..Default::default() })],
            by_cause: vec![
                (CauseKind::ThirdParty, Some("AWS".into()), 2),
                (CauseKind::Internal, None, 1),
                (CauseKind::Unknown, Some("not a third party".into()), 1),
            ],
            ..Default::default()
        };
        let s = Stats::new(&w, figures, &HashMap::new());
        assert_eq!(s.by_severity.iter().map(|g| g.incidents).collect::<Vec<_>>(), [0, 3, 0, 0]);
        assert_eq!(
            s.by_month.iter().map(|m| (m.month.as_str(), m.incidents)).collect::<Vec<_>>(),
            [("2026-10", 0), ("2026-11", 3)]
        );
        assert_eq!(s.by_cause_kind.iter().map(|c| c.incidents).collect::<Vec<_>>(), [1, 1, 2]);
        assert_eq!(s.by_provider, [ProviderCount { provider: "AWS".into(), incidents: 2 }]);
        assert_eq!(s.reopen_rate, Some(0.3333));
    }
}
