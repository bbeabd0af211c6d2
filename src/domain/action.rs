//! Follow-up actions: what must be done so an incident does not happen again, with an owner,
//! a due date, a priority and a reference in an outside tracker. Internal: customers never see
//! them. An open action is overdue once its due date has passed in the status page's time
//! zone.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::Result;
use super::page::PageToken;
use super::validate::{self, Violations};
use super::wire_enum;

wire_enum! {
    /// Whether an action is still to do.
    ActionStatus { Open = "open", Done = "done", WontDo = "wont_do" }
}

wire_enum! {
    /// How urgent an action is.
    ActionPriority { High = "high", Medium = "medium", Low = "low" }
}

/// The longest tracker reference (a URL or a key such as `OPS-123`).
pub const TRACKER_MAX: usize = 1_000;

/// Due dates are in this range: the list sorts actions without one after every real date.
pub const FIRST_DUE_DATE: NaiveDate = NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date");
pub const NO_DUE_DATE: NaiveDate = NaiveDate::from_ymd_opt(9999, 12, 31).expect("a date");

/// A due date as requests write it on either transport: `YYYY-MM-DD`, spaces around ignored.
pub fn parse_due_date(raw: &str) -> std::result::Result<NaiveDate, &'static str> {
    raw.trim().parse().map_err(|_| "must be a date, YYYY-MM-DD")
}

/// A follow-up action of an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Action {
    pub id: Uuid,
    /// The incident it follows up (after a merge, the incident merged into).
    pub incident_id: Uuid,
    pub title: String,
    /// Who does it (a name, a handle or an address).
    pub owner: Option<String>,
    /// When it is due (a date, `YYYY-MM-DD`).
    #[schema(value_type = Option<String>, format = Date)]
    pub due_date: Option<NaiveDate>,
    pub priority: ActionPriority,
    pub status: ActionStatus,
    /// The action in an outside tracker: a URL or a key such as `OPS-123`.
    pub tracker: Option<String>,
    /// When it was done or given up (cleared when it is reopened).
    pub completed_at: Option<DateTime<Utc>>,
    /// Output only: open and past its due date.
    pub overdue: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// The input to add an action, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NewAction {
    pub title: Option<String>,
    pub owner: Option<String>,
    pub due_date: Option<NaiveDate>,
    pub priority: Option<ActionPriority>,
    pub status: Option<ActionStatus>,
    pub tracker: Option<String>,
}

/// A partial update; `None` leaves a field, `Some(None)` clears a clearable one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionPatch {
    pub title: Option<String>,
    pub owner: Option<Option<String>>,
    pub due_date: Option<Option<NaiveDate>>,
    pub priority: Option<ActionPriority>,
    pub status: Option<ActionStatus>,
    pub tracker: Option<Option<String>>,
}

impl NewAction {
    pub fn validate(self, id: Uuid, incident_id: Uuid, now: DateTime<Utc>) -> Result<Action> {
        let NewAction { title, owner, due_date, priority, status, tracker } = self;
        let mut v = Violations::new();
        let title = v.required_text("title", title.as_deref(), validate::TITLE_MAX);
        let status = status.unwrap_or(ActionStatus::Open);
        let mut action = Action {
            id,
            incident_id,
            title,
            owner,
            due_date,
            priority: priority.unwrap_or(ActionPriority::Medium),
            status,
            tracker,
            completed_at: (status != ActionStatus::Open).then_some(now),
            overdue: false,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        action.normalize(&mut v);
        v.finish()?;
        Ok(action)
    }
}

impl Action {
    pub fn etag(&self) -> String {
        super::version::etag(self.version)
    }

    /// The owner, case-folded: the owner filter matches it whatever the case.
    pub fn owner_key(&self) -> Option<String> {
        self.owner.as_deref().map(super::fold_case)
    }

    /// Where the action sorts in a list (open first, then by due date, none last, then id),
    /// as a page token.
    pub fn sort_key(&self) -> PageToken {
        PageToken::Due {
            closed: self.status != ActionStatus::Open,
            due: self.due_date.unwrap_or(NO_DUE_DATE),
            id: self.id,
        }
    }

    /// Sets `overdue` for `today` (in the status page's time zone).
    pub fn with_overdue(mut self, today: NaiveDate) -> Self {
        self.overdue = self.status == ActionStatus::Open && self.due_date.is_some_and(|d| d < today);
        self
    }

    fn normalize(&mut self, v: &mut Violations) {
        self.owner = v.optional_text("owner", self.owner.as_deref(), validate::SHORT_TEXT_MAX);
        self.tracker = v.optional_text("tracker", self.tracker.as_deref(), TRACKER_MAX);
        if let Some(d) = self.due_date
            && !(FIRST_DUE_DATE..NO_DUE_DATE).contains(&d)
        {
            v.add("due_date", format!("must be a date from {FIRST_DUE_DATE} to 9999-12-30"));
        }
    }

    /// Applies a patch and returns the names of the fields it changed. Leaving `open` stamps
    /// `completed_at`; reopening clears it.
    pub fn apply_patch(&mut self, patch: ActionPatch, now: DateTime<Utc>) -> Result<Vec<&'static str>> {
        let ActionPatch { title, owner, due_date, priority, status, tracker } = patch;
        let before = self.clone();
        let mut v = Violations::new();
        if let Some(t) = title {
            self.title = v.required_text("title", Some(&t), validate::TITLE_MAX);
        }
        if let Some(o) = owner {
            self.owner = o;
        }
        if let Some(d) = due_date {
            self.due_date = d;
        }
        if let Some(p) = priority {
            self.priority = p;
        }
        if let Some(s) = status {
            self.status = s;
        }
        if let Some(t) = tracker {
            self.tracker = t;
        }
        self.normalize(&mut v);
        if let Err(e) = v.finish() {
            *self = before;
            return Err(e);
        }
        let Action { title, owner, due_date, priority, status, tracker, .. } = &*self;
        let changed: Vec<&'static str> = [
            ("title", *title != before.title),
            ("owner", *owner != before.owner),
            ("due_date", *due_date != before.due_date),
            ("priority", *priority != before.priority),
            ("status", *status != before.status),
            ("tracker", *tracker != before.tracker),
        ]
        .into_iter()
        .filter(|(_, c)| *c)
        .map(|(n, _)| n)
        .collect();
        if changed.contains(&"status") {
            self.completed_at = (self.status != ActionStatus::Open).then_some(now);
        }
        if !changed.is_empty() {
            super::version::bump(&mut self.version, &mut self.updated_at, now);
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn an_open_action_is_overdue_the_day_after_its_due_date() {
        let now = crate::domain::now();
        let input = NewAction {
            title: Some("Add failover test".into()),
            due_date: Some(date("2026-12-05")),
            ..Default::default()
        };
        let a = input.validate(Uuid::now_v7(), Uuid::now_v7(), now).unwrap();
        assert_eq!((a.priority, a.status), (ActionPriority::Medium, ActionStatus::Open));
        assert!(!a.clone().with_overdue(date("2026-12-05")).overdue, "due today is not overdue");
        assert!(a.clone().with_overdue(date("2026-12-06")).overdue);
        let mut done = a.clone();
        done.apply_patch(ActionPatch { status: Some(ActionStatus::Done), ..Default::default() }, now).unwrap();
        assert!(!done.with_overdue(date("2027-01-01")).overdue, "a done action is never overdue");
    }

    #[test]
    fn finishing_stamps_completion_and_reopening_clears_it() {
        let t0 = crate::domain::now();
        let t1 = t0 + chrono::Duration::seconds(5);
        let mut a = NewAction { title: Some("x".into()), ..Default::default() }
            .validate(Uuid::now_v7(), Uuid::now_v7(), t0)
            .unwrap();
        let changed =
            a.apply_patch(ActionPatch { status: Some(ActionStatus::WontDo), ..Default::default() }, t1).unwrap();
        assert_eq!((changed, a.completed_at, a.version), (vec!["status"], Some(t1), 2));
        a.apply_patch(ActionPatch { status: Some(ActionStatus::Open), ..Default::default() }, t1).unwrap();
        assert_eq!(a.completed_at, None);
        let same = ActionPatch { title: Some("x".into()), ..Default::default() };
        assert!(a.apply_patch(same, t1).unwrap().is_empty());
        assert_eq!(a.version, 3);
    }

    #[test]
    fn fields_are_bounded_and_named() {
        let now = crate::domain::now();
        let input = NewAction {
            title: Some(" ".into()),
            owner: Some("o".repeat(201)),
            due_date: Some(NO_DUE_DATE),
            ..Default::default()
        };
        let err = input.validate(Uuid::now_v7(), Uuid::now_v7(), now).unwrap_err();
        let fields: Vec<&str> = err.violations().iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["title", "owner", "due_date"]);
    }
}
