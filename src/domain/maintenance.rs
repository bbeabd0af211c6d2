//! Scheduled maintenance: planned work announced in advance, with its window, the components
//! it takes down, and the lifecycle `scheduled → in_progress → verifying → completed` (or
//! `cancelled` from any state before that) that the workers can drive on their own at the
//! scheduled times.
//!
//! The rules live here, so that the store, the workers and both transports apply the same
//! ones: what a new maintenance must satisfy, which moves are allowed and what each stamps,
//! which automatic moves are due at a given time (also after a pause of every process), when
//! the reminder is due, and what a maintenance imposes on its components while it is active.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::component::ComponentStatus;
use super::error::Result;
use super::validate::{self, Violations};
use super::wire_enum;

wire_enum! {
    /// Lifecycle status: the values of Statuspage's scheduled maintenances, and `cancelled`.
    MaintenanceStatus {
        Scheduled = "scheduled",
        InProgress = "in_progress",
        Verifying = "verifying",
        Completed = "completed",
        Cancelled = "cancelled",
    }
}

impl MaintenanceStatus {
    /// The statuses this one may move to: forward through the window (`verifying` may be
    /// skipped, and may go back to `in_progress` when the check finds more to do), or
    /// `cancelled` from any state that is not final.
    pub fn allowed_targets(self) -> &'static [MaintenanceStatus] {
        use MaintenanceStatus::*;
        match self {
            Scheduled => &[InProgress, Cancelled],
            InProgress => &[Verifying, Completed, Cancelled],
            Verifying => &[InProgress, Completed, Cancelled],
            Completed | Cancelled => &[],
        }
    }

    pub fn can_move_to(self, to: MaintenanceStatus) -> bool {
        self.allowed_targets().contains(&to)
    }

    /// `completed` and `cancelled` are final: nothing changes a maintenance after them.
    pub fn is_final(self) -> bool {
        self.allowed_targets().is_empty()
    }

    /// Whether the work is under way (`in_progress` or `verifying`): its components are then
    /// under maintenance.
    pub fn is_active(self) -> bool {
        matches!(self, MaintenanceStatus::InProgress | MaintenanceStatus::Verifying)
    }
}

/// The longest window a maintenance may have.
pub const WINDOW_MAX_DAYS: i64 = 31;

/// A scheduled maintenance as stored and as served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Maintenance {
    pub id: Uuid,
    pub title: String,
    /// What customers are told: the work, what they will notice, what to do.
    pub body: String,
    /// The components under maintenance while it is active.
    pub components: Vec<Uuid>,
    pub scheduled_for: DateTime<Utc>,
    pub scheduled_until: DateTime<Utc>,
    pub status: MaintenanceStatus,
    /// The workers start it at `scheduled_for`.
    pub auto_start: bool,
    /// The workers complete it at `scheduled_until`.
    pub auto_complete: bool,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// When the reminder before the start went out (at most once); for a maintenance
    /// scheduled closer to its start than the reminder lead, when it was scheduled (it gets
    /// no reminder).
    pub reminded_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Incremented on every change; the ETag is derived from it.
    pub version: i64,
}

/// The input to schedule a maintenance, before validation.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NewMaintenance {
    pub title: Option<String>,
    pub body: Option<String>,
    pub components: Vec<Uuid>,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub scheduled_until: Option<DateTime<Utc>>,
    pub auto_start: Option<bool>,
    pub auto_complete: Option<bool>,
}

/// A move the workers make on their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutomaticMove {
    Start,
    Complete,
}

impl AutomaticMove {
    pub fn target(self) -> MaintenanceStatus {
        match self {
            AutomaticMove::Start => MaintenanceStatus::InProgress,
            AutomaticMove::Complete => MaintenanceStatus::Completed,
        }
    }
}

impl NewMaintenance {
    /// Validates every field (naming each bad one) and builds the maintenance, `scheduled`.
    pub fn validate(self, id: Uuid, now: DateTime<Utc>) -> Result<Maintenance> {
        let mut v = Violations::new();
        let title = v.required_text("title", self.title.as_deref(), validate::TITLE_MAX);
        let body = v.text("body", self.body.as_deref().unwrap_or_default().trim(), validate::BODY_MAX);
        let scheduled_for = self.scheduled_for.map(super::truncate);
        let scheduled_until = self.scheduled_until.map(super::truncate);
        if scheduled_for.is_none() {
            v.add("scheduled_for", "is required (RFC 3339)");
        }
        if scheduled_until.is_none() {
            v.add("scheduled_until", "is required (RFC 3339)");
        }
        let maintenance = Maintenance {
            id,
            title,
            body,
            components: self.components,
            scheduled_for: scheduled_for.unwrap_or(now),
            scheduled_until: scheduled_until.unwrap_or(now),
            status: MaintenanceStatus::Scheduled,
            auto_start: self.auto_start.unwrap_or(true),
            auto_complete: self.auto_complete.unwrap_or(true),
            started_at: None,
            completed_at: None,
            cancelled_at: None,
            reminded_at: None,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        if scheduled_for.is_some() && scheduled_until.is_some() {
            maintenance.check_window(&mut v);
            if maintenance.scheduled_until <= now {
                v.add("scheduled_until", "must be in the future");
            }
        }
        v.component_ids("components", &maintenance.components);
        v.finish()?;
        Ok(maintenance)
    }
}

impl Maintenance {
    /// The entity tag derived from [`Maintenance::version`].
    pub fn etag(&self) -> String {
        super::version::etag(self.version)
    }

    /// What it imposes on each of its components now: `under_maintenance` while active. An
    /// incident imposing something worse on the same component wins (the effective status is
    /// the worst imposed), and overlapping maintenances impose the same status, so the
    /// component is under maintenance while any of them is active.
    pub fn imposes(&self) -> Option<ComponentStatus> {
        self.status.is_active().then_some(ComponentStatus::UnderMaintenance)
    }

    /// The window is ordered and at most [`WINDOW_MAX_DAYS`] long (shared by create and edit).
    pub(crate) fn check_window(&self, v: &mut Violations) {
        if self.scheduled_until <= self.scheduled_for {
            v.add("scheduled_until", "must be after scheduled_for");
        } else if self.scheduled_until - self.scheduled_for > Duration::days(WINDOW_MAX_DAYS) {
            v.add("scheduled_until", format!("must be at most {WINDOW_MAX_DAYS} days after scheduled_for"));
        }
    }

    /// Moves to `to` at `now`, stamping when it started, completed or was cancelled; refuses
    /// a move the lifecycle does not allow, naming the allowed ones.
    pub fn transition(&mut self, to: MaintenanceStatus, now: DateTime<Utc>) -> Result<MaintenanceStatus> {
        let from = self.status;
        if !from.can_move_to(to) {
            return Err(super::Error::InvalidTransition {
                resource: "maintenance",
                from: from.as_str(),
                to: to.as_str(),
                allowed: from.allowed_targets().iter().map(|s| s.as_str()).collect(),
            });
        }
        match to {
            MaintenanceStatus::InProgress => {
                self.started_at.get_or_insert(now);
            }
            MaintenanceStatus::Completed => self.completed_at = Some(now),
            MaintenanceStatus::Cancelled => self.cancelled_at = Some(now),
            MaintenanceStatus::Scheduled | MaintenanceStatus::Verifying => {}
        }
        self.status = to;
        super::version::bump(&mut self.version, &mut self.updated_at, now);
        Ok(from)
    }

    /// The automatic moves due at `now`, in order. A maintenance whose whole window passed
    /// while no process ran is started and then completed, so its history shows both.
    pub fn due_moves(&self, now: DateTime<Utc>) -> Vec<AutomaticMove> {
        let mut moves = Vec::new();
        let mut status = self.status;
        if status == MaintenanceStatus::Scheduled && self.auto_start && now >= self.scheduled_for {
            moves.push(AutomaticMove::Start);
            status = MaintenanceStatus::InProgress;
        }
        if status.is_active() && self.auto_complete && now >= self.scheduled_until {
            moves.push(AutomaticMove::Complete);
        }
        moves
    }

    /// When the workers next have something to do for it on their own (a move or the
    /// reminder `lead` before the start), if ever.
    pub fn next_due(&self, lead: Duration) -> Option<DateTime<Utc>> {
        let reminder = (self.status == MaintenanceStatus::Scheduled && self.reminded_at.is_none())
            .then(|| self.scheduled_for - lead);
        let start = (self.status == MaintenanceStatus::Scheduled && self.auto_start).then_some(self.scheduled_for);
        let complete = ((self.status.is_active() || (self.status == MaintenanceStatus::Scheduled && self.auto_start))
            && self.auto_complete)
            .then_some(self.scheduled_until);
        [reminder, start, complete].into_iter().flatten().min()
    }

    /// A maintenance scheduled (or moved) closer to its start than the reminder `lead` gets
    /// no reminder: the notice that scheduled or moved it was the announcement. Marks it as
    /// reminded then.
    pub fn settle_reminder(&mut self, now: DateTime<Utc>, lead: Duration) {
        if self.status == MaintenanceStatus::Scheduled && self.reminded_at.is_none() && self.scheduled_for - lead <= now
        {
            self.reminded_at = Some(now);
        }
    }

    /// Whether the reminder `lead` before the start is due at `now`: once, while still
    /// scheduled and before the start (a maintenance that starts before anyone could be
    /// reminded gets its `maintenance.started` instead).
    pub fn reminder_due(&self, now: DateTime<Utc>, lead: Duration) -> bool {
        self.status == MaintenanceStatus::Scheduled
            && self.reminded_at.is_none()
            && now >= self.scheduled_for - lead
            && now < self.scheduled_for
    }
}

/// A partial update of a maintenance that is not final; `None` leaves a field as it is. The
/// status is not here: it moves through posted updates (or the workers).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MaintenancePatch {
    pub title: Option<String>,
    pub body: Option<String>,
    pub components: Option<Vec<Uuid>>,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub scheduled_until: Option<DateTime<Utc>>,
    pub auto_start: Option<bool>,
    pub auto_complete: Option<bool>,
}

impl Maintenance {
    /// Applies `patch`, validates the result and returns the changed fields (none: nothing
    /// changes, not even the version). A final maintenance is not edited; the start of one
    /// that has started is history and stays; a maintenance not yet started may be moved to
    /// any window that has not passed.
    pub fn apply_patch(&mut self, patch: MaintenancePatch, now: DateTime<Utc>) -> Result<Vec<&'static str>> {
        if self.status.is_final() {
            return Err(super::Error::Conflict(format!(
                "maintenance {} is {} and can no longer be edited",
                self.id, self.status
            )));
        }
        let before = self.clone();
        let MaintenancePatch { title, body, components, scheduled_for, scheduled_until, auto_start, auto_complete } =
            patch;
        let mut v = Violations::new();
        if let Some(t) = title {
            self.title = v.required_text("title", Some(&t), validate::TITLE_MAX);
        }
        if let Some(b) = body {
            self.body = v.text("body", b.trim(), validate::BODY_MAX);
        }
        if let Some(c) = components {
            self.components = c;
        }
        if let Some(f) = scheduled_for {
            let f = super::truncate(f);
            if self.status != MaintenanceStatus::Scheduled && f != self.scheduled_for {
                v.add("scheduled_for", "cannot change once the maintenance has started");
            }
            self.scheduled_for = f;
        }
        if let Some(u) = scheduled_until {
            self.scheduled_until = super::truncate(u);
        }
        if let Some(a) = auto_start {
            self.auto_start = a;
        }
        if let Some(a) = auto_complete {
            self.auto_complete = a;
        }
        if self.scheduled_until != before.scheduled_until || self.scheduled_for != before.scheduled_for {
            self.check_window(&mut v);
            if self.scheduled_until != before.scheduled_until && self.scheduled_until <= now {
                v.add("scheduled_until", "must be in the future");
            }
        }
        v.component_ids("components", &self.components);
        v.finish()?;
        let changed: Vec<&'static str> = [
            ("title", self.title != before.title),
            ("body", self.body != before.body),
            ("components", self.components != before.components),
            ("scheduled_for", self.scheduled_for != before.scheduled_for),
            ("scheduled_until", self.scheduled_until != before.scheduled_until),
            ("auto_start", self.auto_start != before.auto_start),
            ("auto_complete", self.auto_complete != before.auto_complete),
        ]
        .into_iter()
        .filter_map(|(f, c)| c.then_some(f))
        .collect();
        if !changed.is_empty() {
            // A window moved to later than the reminder went out gets a new reminder.
            if self.scheduled_for != before.scheduled_for {
                self.reminded_at = None;
            }
            super::version::bump(&mut self.version, &mut self.updated_at, now);
        }
        Ok(changed)
    }
}

/// One entry of a maintenance's public timeline: a status change (by hand or by the workers)
/// or a note, with what customers are told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MaintenanceUpdate {
    pub id: Uuid,
    pub maintenance_id: Uuid,
    /// The maintenance's status after this update.
    pub status: MaintenanceStatus,
    /// What customers are told; may be empty for an automatic move (the page then says
    /// what happened in its own words).
    pub body: String,
    /// Whether the workers wrote it (an automatic start or completion).
    pub automatic: bool,
    /// Who posted it (the API key's name, or `system`).
    pub author: String,
    pub created_at: DateTime<Utc>,
}

/// An update to post, before validation: a note, a status change, or both.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NewMaintenanceUpdate {
    pub body: Option<String>,
    pub status: Option<MaintenanceStatus>,
}

impl NewMaintenanceUpdate {
    /// Validates the body (required unless the status changes).
    pub fn validate(&self, current: MaintenanceStatus) -> Result<(String, Option<MaintenanceStatus>)> {
        let mut v = Violations::new();
        let moves = self.status.filter(|s| *s != current);
        let body = match moves {
            Some(_) => v.text("body", self.body.as_deref().unwrap_or_default().trim(), validate::BODY_MAX),
            None => v.required_text("body", self.body.as_deref(), validate::BODY_MAX),
        };
        v.finish()?;
        Ok((body, moves))
    }
}

impl MaintenanceUpdate {
    pub fn new(
        maintenance: &Maintenance,
        body: String,
        automatic: bool,
        author: impl Into<String>,
        now: DateTime<Utc>,
    ) -> Self {
        MaintenanceUpdate {
            id: Uuid::now_v7(),
            maintenance_id: maintenance.id,
            status: maintenance.status,
            body,
            automatic,
            author: author.into(),
            created_at: now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::component::effective_status;

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z").unwrap().with_timezone(&Utc) + Duration::minutes(minutes)
    }

    fn window(from: i64, until: i64) -> NewMaintenance {
        NewMaintenance {
            title: Some(" Database upgrade ".into()),
            body: Some("Writes pause for a minute.".into()),
            components: vec![Uuid::from_u128(1), Uuid::from_u128(2)],
            scheduled_for: Some(at(from)),
            scheduled_until: Some(at(until)),
            ..Default::default()
        }
    }

    fn fields(e: crate::domain::Error) -> Vec<String> {
        match e {
            crate::domain::Error::Validation(v) => v.into_iter().map(|f| f.field).collect(),
            other => panic!("not a validation error: {other:?}"),
        }
    }

    #[test]
    fn a_new_maintenance_is_scheduled_with_both_automatic_moves_on() {
        let m = window(60, 120).validate(Uuid::from_u128(9), at(0)).unwrap();
        assert_eq!(
            (m.title.as_str(), m.status, m.auto_start, m.auto_complete),
            ("Database upgrade", MaintenanceStatus::Scheduled, true, true)
        );
        assert_eq!((m.version, m.started_at, m.imposes()), (1, None, None));
    }

    #[test]
    fn every_bad_field_is_named_at_once() {
        let bad = NewMaintenance {
            title: Some("  ".into()),
            components: vec![Uuid::from_u128(1), Uuid::from_u128(1)],
            ..Default::default()
        };
        assert_eq!(
            fields(bad.validate(Uuid::nil(), at(0)).unwrap_err()),
            ["title", "scheduled_for", "scheduled_until", "components[1]"]
        );
        assert_eq!(fields(window(60, 60).validate(Uuid::nil(), at(0)).unwrap_err()), ["scheduled_until"]);
        assert_eq!(fields(window(-120, -60).validate(Uuid::nil(), at(0)).unwrap_err()), ["scheduled_until"]);
        let long = window(0, WINDOW_MAX_DAYS * 24 * 60 + 1);
        assert_eq!(fields(long.validate(Uuid::nil(), at(0)).unwrap_err()), ["scheduled_until"]);
        // A window that began already is fine: it starts as soon as a worker sees it.
        assert!(window(-10, 60).validate(Uuid::nil(), at(0)).is_ok());
    }

    #[test]
    fn the_lifecycle_moves_forward_and_cancels_from_any_state_but_the_final_ones() {
        let mut m = window(60, 120).validate(Uuid::nil(), at(0)).unwrap();
        assert!(m.transition(MaintenanceStatus::Completed, at(1)).is_err(), "scheduled cannot complete unstarted");
        m.transition(MaintenanceStatus::InProgress, at(60)).unwrap();
        assert_eq!((m.started_at, m.imposes(), m.version), (Some(at(60)), Some(ComponentStatus::UnderMaintenance), 2));
        m.transition(MaintenanceStatus::Verifying, at(100)).unwrap();
        assert_eq!(m.imposes(), Some(ComponentStatus::UnderMaintenance), "verifying is still active");
        m.transition(MaintenanceStatus::InProgress, at(105)).unwrap();
        assert_eq!(m.started_at, Some(at(60)), "going back keeps the first start");
        m.transition(MaintenanceStatus::Completed, at(110)).unwrap();
        assert_eq!((m.completed_at, m.imposes()), (Some(at(110)), None));
        let e = m.transition(MaintenanceStatus::Cancelled, at(111)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot move a maintenance from completed to cancelled; allowed: none (completed is final)"
        );
        for from in [MaintenanceStatus::Scheduled, MaintenanceStatus::InProgress, MaintenanceStatus::Verifying] {
            assert!(from.can_move_to(MaintenanceStatus::Cancelled), "{from}");
        }
    }

    #[test]
    fn automatic_moves_are_due_at_the_window_and_catch_up_after_a_pause() {
        let m = window(60, 120).validate(Uuid::nil(), at(0)).unwrap();
        assert_eq!(m.due_moves(at(59)), []);
        assert_eq!(m.due_moves(at(60)), [AutomaticMove::Start]);
        assert_eq!(m.due_moves(at(500)), [AutomaticMove::Start, AutomaticMove::Complete], "missed the whole window");
        let mut started = m.clone();
        started.transition(MaintenanceStatus::InProgress, at(61)).unwrap();
        assert_eq!(started.due_moves(at(119)), []);
        assert_eq!(started.due_moves(at(120)), [AutomaticMove::Complete]);
        let manual = Maintenance { auto_start: false, ..m.clone() };
        assert_eq!(manual.due_moves(at(500)), [], "never started by hand: nothing to complete");
        let open_ended = Maintenance { auto_complete: false, ..started.clone() };
        assert_eq!(open_ended.due_moves(at(500)), []);
        let mut cancelled = m.clone();
        cancelled.transition(MaintenanceStatus::Cancelled, at(10)).unwrap();
        assert_eq!((cancelled.due_moves(at(500)), cancelled.next_due(Duration::hours(1))), (vec![], None));
    }

    #[test]
    fn the_reminder_is_due_once_before_the_start() {
        let lead = Duration::minutes(30);
        let m = window(60, 120).validate(Uuid::nil(), at(0)).unwrap();
        assert_eq!(m.next_due(lead), Some(at(30)));
        assert!(!m.reminder_due(at(29), lead));
        assert!(m.reminder_due(at(30), lead));
        assert!(!m.reminder_due(at(60), lead), "too late once it starts");
        let reminded = Maintenance { reminded_at: Some(at(30)), ..m.clone() };
        assert!(!reminded.reminder_due(at(45), lead));
        assert_eq!(reminded.next_due(lead), Some(at(60)));
    }

    #[test]
    fn an_incident_imposing_worse_wins_and_overlapping_windows_combine() {
        let mut a = window(0, 120).validate(Uuid::nil(), at(-1)).unwrap();
        let mut b = window(60, 180).validate(Uuid::nil(), at(-1)).unwrap();
        a.transition(MaintenanceStatus::InProgress, at(0)).unwrap();
        b.transition(MaintenanceStatus::InProgress, at(60)).unwrap();
        let imposed = |ms: &[&Maintenance], incident: Option<ComponentStatus>| {
            effective_status(ComponentStatus::Operational, ms.iter().filter_map(|m| m.imposes()).chain(incident))
        };
        assert_eq!(imposed(&[&a, &b], None), ComponentStatus::UnderMaintenance);
        assert_eq!(imposed(&[&a, &b], Some(ComponentStatus::MajorOutage)), ComponentStatus::MajorOutage);
        a.transition(MaintenanceStatus::Completed, at(120)).unwrap();
        assert_eq!(imposed(&[&a, &b], None), ComponentStatus::UnderMaintenance, "b is still under way");
        b.transition(MaintenanceStatus::Completed, at(180)).unwrap();
        assert_eq!(imposed(&[&a, &b], None), ComponentStatus::Operational, "restored after the last one");
    }
}
