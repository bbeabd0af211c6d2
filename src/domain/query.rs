//! What a list asks for: the filters the transports build and the service passes on to the
//! store.

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::action::ActionStatus;
use super::event::EventType;
use super::incident::{Severity, Status};

/// Filters for listing incidents; every field narrows the result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncidentFilter {
    pub statuses: Vec<Status>,
    pub severities: Vec<Severity>,
    pub component_id: Option<Uuid>,
    pub open: Option<bool>,
    /// Case-folded words that must all occur in [`super::Incident::search_text`] (see
    /// [`super::incident::search_terms`]).
    pub terms: Vec<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
}

/// Which events to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Any of these types (all when empty).
    pub types: Vec<EventType>,
    /// Only events about this resource id.
    pub subject: Option<String>,
    /// Only events public subscribers receive.
    pub public_only: bool,
}

/// Whose delivery attempts to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptsOf {
    Delivery(Uuid),
    Subscription(Uuid),
}

/// Which follow-up actions to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionFilter {
    /// Only this incident's.
    pub incident_id: Option<Uuid>,
    /// Only this owner's, case-folded.
    pub owner_key: Option<String>,
    /// Any of these statuses (all when empty).
    pub statuses: Vec<ActionStatus>,
    /// Only overdue (true) or only not overdue (false) actions.
    pub overdue: Option<bool>,
    /// Today in the status page's time zone: open actions due before it are overdue.
    pub today: NaiveDate,
}
