//! Component status history and uptime: every change of a component's effective status,
//! and the uptime figures computed from them.
//!
//! **The uptime rule** (Atlassian Statuspage's): time in `major_outage` counts fully as
//! downtime, time in `partial_outage` counts 30 %, and `degraded_performance` and
//! `under_maintenance` count as up. A day's colour is the worst status the component had
//! that day. Days are calendar days in the status page's time zone; time before the
//! component existed is not counted (a day wholly before it has no figure).

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::component::ComponentStatus;

/// One change of a component's effective status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StatusChange {
    pub id: Uuid,
    pub component_id: Uuid,
    pub changed_at: DateTime<Utc>,
    pub from_status: ComponentStatus,
    pub to_status: ComponentStatus,
    /// The incident whose opening, change or resolution caused it; absent for a status set
    /// by hand (or when the incident was deleted).
    pub incident_id: Option<Uuid>,
    /// The maintenance whose start, change or end caused it.
    pub maintenance_id: Option<Uuid>,
}

/// What caused a component's status to move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Set by hand.
    Manual,
    Incident(Uuid),
    Maintenance(Uuid),
}

impl StatusChange {
    pub fn new(
        component_id: Uuid,
        from_status: ComponentStatus,
        to_status: ComponentStatus,
        changed_at: DateTime<Utc>,
        cause: Cause,
    ) -> Self {
        let (incident_id, maintenance_id) = match cause {
            Cause::Manual => (None, None),
            Cause::Incident(id) => (Some(id), None),
            Cause::Maintenance(id) => (None, Some(id)),
        };
        StatusChange {
            id: Uuid::now_v7(),
            component_id,
            changed_at,
            from_status,
            to_status,
            incident_id,
            maintenance_id,
        }
    }
}

/// How much of a span of time in `status` counts as downtime.
pub fn downtime_weight(status: ComponentStatus) -> f64 {
    match status {
        ComponentStatus::MajorOutage => 1.0,
        ComponentStatus::PartialOutage => 0.3,
        ComponentStatus::Operational | ComponentStatus::DegradedPerformance | ComponentStatus::UnderMaintenance => 0.0,
    }
}

/// A component's uptime over a window, and day by day.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Uptime {
    pub component_id: Uuid,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The IANA time zone the days are in.
    pub time_zone: String,
    /// Over the part of the window the component existed; absent when it did not exist yet.
    pub uptime_percent: Option<f64>,
    pub days: Vec<UptimeDay>,
}

/// One calendar day of a component's uptime.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct UptimeDay {
    #[schema(value_type = String, format = Date, example = "2026-11-30")]
    pub date: NaiveDate,
    /// Absent for a day before the component existed.
    pub uptime_percent: Option<f64>,
    /// The worst status of the day.
    pub worst_status: ComponentStatus,
    /// Seconds spent in each status that day, in the order of [`ComponentStatus::ALL`].
    #[serde(skip)]
    pub seconds: [i64; 5],
    /// The incidents that changed the component's status that day or were affecting it.
    pub incident_ids: Vec<Uuid>,
}

/// When an incident affected a component: from its declaration until it was resolved
/// (`None` while it is open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Affecting {
    pub incident_id: Uuid,
    pub from: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
}

/// A status an incident imposed on a component, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imposed {
    pub incident_id: Uuid,
    pub status: ComponentStatus,
    pub from: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
}

impl Imposed {
    fn holds_at(&self, t: DateTime<Utc>) -> bool {
        self.from <= t && self.until.is_none_or(|u| u > t)
    }
}

/// A stretch of time in one status.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    status: ComponentStatus,
}

/// Computes a component's uptime over `[from, to)` from its status changes (any order; only
/// those up to `to` matter) and its status now. The status at `from` is the `from_status` of
/// the first change after it, or the current status when nothing changed since.
/// `incidents` are the incidents that affected the component, listed on the days they
/// overlap.
#[allow(clippy::too_many_arguments)]
pub fn uptime<Tz: TimeZone>(
    component_id: Uuid,
    created_at: DateTime<Utc>,
    current: ComponentStatus,
    changes: &[StatusChange],
    incidents: &[Affecting],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    tz: &Tz,
    tz_name: &str,
) -> Uptime
where
    Tz::Offset: Copy,
{
    let mut sorted: Vec<&StatusChange> = changes.iter().collect();
    sorted.sort_by_key(|c| (c.changed_at, c.id));
    // The status at `from`: the one the first later change left (even one after `to`), else
    // the one of the last earlier change, else the current one.
    let first_after = sorted.iter().find(|c| c.changed_at >= from);
    let last_before = sorted.iter().rev().find(|c| c.changed_at < from);
    let mut status = match (first_after, last_before) {
        (Some(c), _) => c.from_status,
        (None, Some(c)) => c.to_status,
        (None, None) => current,
    };
    let mut spans = Vec::new();
    let mut at = from;
    for c in sorted.iter().filter(|c| c.changed_at >= from && c.changed_at < to) {
        spans.push(Span { start: at, end: c.changed_at, status });
        at = c.changed_at;
        status = c.to_status;
    }
    spans.push(Span { start: at, end: to, status });

    let counted = |start: DateTime<Utc>, end: DateTime<Utc>| (start.max(created_at), end);
    let weighted = |start: DateTime<Utc>, end: DateTime<Utc>| -> (f64, i64) {
        let (start, end) = counted(start, end);
        let mut down = 0.0;
        let mut total = 0;
        for s in &spans {
            let (a, b) = (s.start.max(start), s.end.min(end));
            if a < b {
                let secs = (b - a).num_milliseconds() as f64 / 1000.0;
                down += secs * downtime_weight(s.status);
                total += (b - a).num_milliseconds();
            }
        }
        (down, total)
    };
    let percent = |start, end| {
        let (down, total_ms) = weighted(start, end);
        (total_ms > 0).then(|| round_percent(100.0 * (1.0 - down / (total_ms as f64 / 1000.0))))
    };

    let mut days = Vec::new();
    let mut day = from.with_timezone(tz).date_naive();
    let last = (to - Duration::milliseconds(1)).with_timezone(tz).date_naive();
    while day <= last {
        let start = local_midnight(tz, day).max(from);
        let end = local_midnight(tz, day.succ_opt().unwrap_or(day)).min(to);
        let mut seconds = [0i64; 5];
        let mut worst = ComponentStatus::Operational;
        for s in &spans {
            let (a, b) = (s.start.max(start).max(created_at), s.end.min(end));
            if a < b {
                let i = ComponentStatus::ALL.iter().position(|x| *x == s.status).unwrap_or(0);
                seconds[i] += (b - a).num_seconds();
                if s.status.rank() > worst.rank() {
                    worst = s.status;
                }
            }
        }
        let mut incident_ids: Vec<Uuid> = incidents
            .iter()
            .filter(|a| a.from < end && a.until.is_none_or(|u| u > start))
            .map(|a| a.incident_id)
            .collect();
        for c in sorted.iter().filter(|c| c.changed_at >= start && c.changed_at < end) {
            if let Some(id) = c.incident_id
                && !incident_ids.contains(&id)
            {
                incident_ids.push(id);
            }
        }
        days.push(UptimeDay {
            date: day,
            uptime_percent: percent(start, end),
            worst_status: worst,
            seconds,
            incident_ids,
        });
        match day.succ_opt() {
            Some(next) => day = next,
            None => break,
        }
    }
    Uptime { component_id, from, to, time_zone: tz_name.to_string(), uptime_percent: percent(from, to), days }
}

/// The instant the calendar day `days - 1` days before `now`'s starts in `tz`: the start of a
/// window of exactly `days` local days, the last one today.
pub fn start_of_last_days<Tz: TimeZone>(tz: &Tz, now: DateTime<Utc>, days: u32) -> DateTime<Utc> {
    let today = now.with_timezone(tz).date_naive();
    let first = today - Duration::days(i64::from(days.max(1)) - 1);
    local_midnight(tz, first)
}

/// The instant a calendar day starts in `tz` (the earliest, where a change of offset makes
/// midnight ambiguous or skipped).
pub fn local_midnight<Tz: TimeZone>(tz: &Tz, day: NaiveDate) -> DateTime<Utc> {
    let mut t = day.and_hms_opt(0, 0, 0).expect("midnight exists");
    // A skipped midnight (a daylight-saving jump at 00:00) starts the day at the first
    // instant that exists.
    for _ in 0..4 {
        if let Some(local) = tz.from_local_datetime(&t).earliest() {
            return local.with_timezone(&Utc);
        }
        t += Duration::minutes(30);
    }
    Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight exists"))
}

/// Rounds to three decimals (99.987 %), never showing 100 % for a period with downtime.
fn round_percent(p: f64) -> f64 {
    let rounded = (p * 1000.0).round() / 1000.0;
    if rounded >= 100.0 && p < 100.0 { 99.999 } else { rounded.clamp(0.0, 100.0) }
}

/// Replays impositions to recover a component's status history (the backfill of
/// incidents recorded before history was kept): `manual` is the component's own status.
/// Returns the changes of the effective status, in time order.
pub fn replay(component_id: Uuid, manual: ComponentStatus, impositions: &[Imposed]) -> Vec<StatusChange> {
    // Every instant something starts or ends, with the incident that did it.
    let mut moments: Vec<(DateTime<Utc>, Uuid)> = Vec::new();
    for i in impositions {
        moments.push((i.from, i.incident_id));
        if let Some(until) = i.until {
            moments.push((until, i.incident_id));
        }
    }
    moments.sort();
    let effective_at = |t: DateTime<Utc>| {
        super::component::effective_status(manual, impositions.iter().filter(|i| i.holds_at(t)).map(|i| i.status))
    };
    let mut changes = Vec::new();
    let mut current = manual;
    for (t, incident) in moments {
        let next = effective_at(t);
        if next != current {
            changes.push(StatusChange::new(component_id, current, next, t, Cause::Incident(incident)));
            current = next;
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use ComponentStatus::*;

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z").unwrap().with_timezone(&Utc) + Duration::hours(h)
    }

    fn change(at: i64, from: ComponentStatus, to: ComponentStatus) -> StatusChange {
        StatusChange::new(Uuid::nil(), from, to, t(at), Cause::Incident(Uuid::from_u128(at as u128)))
    }

    #[test]
    fn major_outages_count_fully_partial_ones_30_percent_and_degradation_not_at_all() {
        // Day 1: 6 h major outage; day 2: 10 h partial outage; day 3: 24 h degraded.
        let changes = [
            change(6, Operational, MajorOutage),
            change(12, MajorOutage, Operational),
            change(24, Operational, PartialOutage),
            change(34, PartialOutage, Operational),
            change(48, Operational, DegradedPerformance),
        ];
        let u = uptime(Uuid::nil(), t(-100), DegradedPerformance, &changes, &[], t(0), t(72), &Utc, "UTC");
        let days: Vec<(Option<f64>, ComponentStatus)> =
            u.days.iter().map(|d| (d.uptime_percent, d.worst_status)).collect();
        assert_eq!(days, [(Some(75.0), MajorOutage), (Some(87.5), PartialOutage), (Some(100.0), DegradedPerformance)]);
        // 6 h + 0.3 × 10 h = 9 h down of 72.
        assert_eq!(u.uptime_percent, Some(87.5));
        assert_eq!(u.days[0].incident_ids, [Uuid::from_u128(6), Uuid::from_u128(12)]);
    }

    #[test]
    fn the_status_at_the_start_comes_from_the_first_later_change_or_the_current_one() {
        // Down since before the window, until 3 h in.
        let changes = [change(-5, Operational, MajorOutage), change(3, MajorOutage, Operational)];
        let u = uptime(Uuid::nil(), t(-100), Operational, &changes, &[], t(0), t(24), &Utc, "UTC");
        assert_eq!(u.uptime_percent, Some(87.5));
        // Nothing changed in the window: the current status held throughout.
        let quiet = uptime(Uuid::nil(), t(-100), MajorOutage, &[], &[], t(0), t(24), &Utc, "UTC");
        assert_eq!(quiet.uptime_percent, Some(0.0));
    }

    #[test]
    fn a_window_before_a_later_change_has_the_status_that_change_left() {
        use ComponentStatus::*;
        // Operational until hour 10, degraded since (and now): the window 0..5 was operational.
        let changes = [change(10, Operational, DegradedPerformance)];
        let u = uptime(Uuid::nil(), t(-100), DegradedPerformance, &changes, &[], t(0), t(5), &Utc, "UTC");
        assert!(u.days.iter().all(|d| d.worst_status == Operational), "{:?}", u.days);
    }

    #[test]
    fn time_before_the_component_existed_does_not_count() {
        let u = uptime(Uuid::nil(), t(36), Operational, &[], &[], t(0), t(72), &Utc, "UTC");
        assert_eq!(u.days[0].uptime_percent, None);
        assert_eq!(u.days[1].uptime_percent, Some(100.0));
        assert_eq!(u.uptime_percent, Some(100.0));
    }

    #[test]
    fn the_last_days_start_at_a_local_midnight() {
        let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 23, 30, 0).unwrap(); // 00:30 on 2 Dec in Berlin
        assert_eq!(start_of_last_days(&berlin, now, 1), Utc.with_ymd_and_hms(2026, 12, 1, 23, 0, 0).unwrap());
        assert_eq!(start_of_last_days(&Utc, now, 90), Utc.with_ymd_and_hms(2026, 9, 3, 0, 0, 0).unwrap());
    }

    #[test]
    fn days_follow_the_time_zone_and_a_little_downtime_is_never_100_percent() {
        let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
        // 23:00 UTC on 1 Nov is 00:00 on 2 Nov in Berlin.
        let changes = [change(23, Operational, MajorOutage), change(24, MajorOutage, Operational)];
        let u = uptime(Uuid::nil(), t(-100), Operational, &changes, &[], t(-1), t(47), &berlin, "Europe/Berlin");
        let dates: Vec<String> = u.days.iter().map(|d| d.date.to_string()).collect();
        assert_eq!(dates, ["2026-11-01", "2026-11-02"]);
        assert_eq!(u.days[0].worst_status, Operational);
        assert_eq!(u.days[1].worst_status, MajorOutage);
        let blip = [
            StatusChange::new(Uuid::nil(), Operational, MajorOutage, t(1), Cause::Manual),
            StatusChange::new(Uuid::nil(), MajorOutage, Operational, t(1) + Duration::milliseconds(500), Cause::Manual),
        ];
        let u = uptime(Uuid::nil(), t(-100), Operational, &blip, &[], t(0), t(24 * 90), &Utc, "UTC");
        assert!(u.uptime_percent.unwrap() < 100.0);
    }

    #[test]
    fn replaying_impositions_gives_the_effective_status_changes() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let imposed = |incident_id, status, from, until| Imposed { incident_id, status, from, until };
        let changes = replay(
            Uuid::nil(),
            Operational,
            &[
                imposed(a, PartialOutage, t(1), Some(t(5))),
                imposed(b, MajorOutage, t(2), Some(t(3))),
                imposed(b, DegradedPerformance, t(8), None),
            ],
        );
        let seen: Vec<(i64, ComponentStatus, ComponentStatus, Option<Uuid>)> = changes
            .iter()
            .map(|c| ((c.changed_at - t(0)).num_hours(), c.from_status, c.to_status, c.incident_id))
            .collect();
        assert_eq!(
            seen,
            [
                (1, Operational, PartialOutage, Some(a)),
                (2, PartialOutage, MajorOutage, Some(b)),
                (3, MajorOutage, PartialOutage, Some(b)),
                (5, PartialOutage, Operational, Some(a)),
                (8, Operational, DegradedPerformance, Some(b)),
            ]
        );
    }
}
