//! Customer mails: the mails confirmed customer subscribers get about incidents and maintenance.
//!
//! Which events are worth a mail is decided here, once: a declared incident, every move of
//! its status (resolution and reopening included), each public update, and edits of what a
//! customer plans around (impact, ETA, workaround, affected components); for maintenance its
//! scheduling, start, completion, cancellation, edits, notes and the reminder before it
//! starts. Internal events (acknowledgement, internal updates, edits of internal fields) and
//! component moves (the incident or maintenance behind them is the news) send nothing.
//!
//! Who gets one: a confirmed subscriber of every component, one of a component the event
//! concerns, and anyone who got a mail about the same incident or maintenance before (who
//! heard of an outage hears of its end, even if its components changed in between). A mail
//! is one row per event and subscriber, so nobody gets the same one twice.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::event::{Event, EventType};
use super::wire_enum;

/// The edited incident fields worth a mail to customers.
const MAIL_FIELDS: [&str; 4] = ["impact", "eta", "workaround", "affected_components"];

/// Whether confirmed subscribers hear of `event`. Only public events qualify, and only their
/// public data is ever rendered.
pub fn notifies_subscribers(event: &Event) -> bool {
    let Some(public) = &event.public_data else { return false };
    match event.event_type {
        EventType::IncidentCreated
        | EventType::IncidentStatusChanged
        | EventType::IncidentUpdatePosted
        | EventType::IncidentResolved
        | EventType::IncidentReopened
        | EventType::MaintenanceScheduled
        | EventType::MaintenanceUpdated
        | EventType::MaintenanceStarted
        | EventType::MaintenanceCompleted
        | EventType::MaintenanceCancelled
        | EventType::MaintenanceReminder
        | EventType::PostmortemPublished => true,
        EventType::IncidentUpdated => public["changed_fields"]
            .as_array()
            .is_some_and(|fields| fields.iter().any(|f| f.as_str().is_some_and(|f| MAIL_FIELDS.contains(&f)))),
        EventType::IncidentAcknowledged
        | EventType::IncidentAckOverdue
        | EventType::IncidentDeleted
        // The incident merged into carries on, and its mails go to who hears of its components.
        | EventType::IncidentMerged
        | EventType::IncidentLinked
        | EventType::IncidentUnlinked
        | EventType::PostmortemCreated
        | EventType::PostmortemUpdated
        | EventType::ActionCreated
        | EventType::ActionUpdated
        | EventType::ActionDeleted
        | EventType::ActionOverdue
        | EventType::ComponentStatusChanged
        | EventType::SubscriptionDisabled
        | EventType::SubscriptionTest => false,
    }
}

wire_enum! {
    /// Where a customer mail stands.
    CustomerMailStatus {
        Pending = "pending",
        Sent = "sent",
        /// Every attempt failed.
        Failed = "failed",
        /// Not sent: the subscriber unsubscribed (or the event is gone) before its turn.
        Skipped = "skipped",
    }
}

/// A customer mail is tried at most this often.
pub const CUSTOMER_MAIL_ATTEMPTS: i32 = 8;

/// What became of one attempt at a customer mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerMailOutcome {
    pub event_id: Uuid,
    pub subscriber_id: Uuid,
    pub status: CustomerMailStatus,
    /// When a pending mail is tried again.
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
}

impl CustomerMailOutcome {
    pub fn sent(event_id: Uuid, subscriber_id: Uuid, now: DateTime<Utc>) -> Self {
        CustomerMailOutcome {
            event_id,
            subscriber_id,
            status: CustomerMailStatus::Sent,
            next_attempt_at: now,
            last_error: None,
        }
    }

    pub fn skipped(event_id: Uuid, subscriber_id: Uuid, why: &str, now: DateTime<Utc>) -> Self {
        CustomerMailOutcome {
            event_id,
            subscriber_id,
            status: CustomerMailStatus::Skipped,
            next_attempt_at: now,
            last_error: Some(why.to_string()),
        }
    }

    /// A failed attempt (the `attempts`-th): tried again after a growing pause (30 s, 1 min,
    /// 2 min, …), or failed for good after [`CUSTOMER_MAIL_ATTEMPTS`].
    pub fn failed(event_id: Uuid, subscriber_id: Uuid, attempts: i32, error: String, now: DateTime<Utc>) -> Self {
        let status =
            if attempts >= CUSTOMER_MAIL_ATTEMPTS { CustomerMailStatus::Failed } else { CustomerMailStatus::Pending };
        CustomerMailOutcome {
            event_id,
            subscriber_id,
            status,
            next_attempt_at: now + Duration::seconds(30 << (attempts.clamp(1, 10) - 1)),
            last_error: Some(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(event_type: EventType, public: Option<serde_json::Value>) -> Event {
        Event {
            id: Uuid::now_v7(),
            seq: None,
            event_type,
            subject: Uuid::now_v7().to_string(),
            time: Utc::now(),
            severity: None,
            component_ids: Vec::new(),
            data: json!({}),
            public_data: public,
            traceparent: None,
        }
    }

    #[test]
    fn customers_hear_of_what_they_plan_around_and_nothing_internal() {
        assert!(notifies_subscribers(&event(EventType::IncidentCreated, Some(json!({})))));
        assert!(notifies_subscribers(&event(EventType::IncidentResolved, Some(json!({})))));
        assert!(notifies_subscribers(&event(EventType::MaintenanceReminder, Some(json!({})))));
        // An internal update has no public data.
        assert!(!notifies_subscribers(&event(EventType::IncidentUpdatePosted, None)));
        assert!(!notifies_subscribers(&event(EventType::IncidentAcknowledged, None)));
        assert!(!notifies_subscribers(&event(EventType::ComponentStatusChanged, Some(json!({})))));
        let edited =
            |fields: serde_json::Value| event(EventType::IncidentUpdated, Some(json!({"changed_fields": fields})));
        assert!(notifies_subscribers(&edited(json!(["title", "eta"]))));
        assert!(!notifies_subscribers(&edited(json!(["title", "summary"]))));
    }

    #[test]
    fn failed_mails_back_off_then_give_up() {
        let now = Utc::now();
        let (e, s) = (Uuid::now_v7(), Uuid::now_v7());
        let first = CustomerMailOutcome::failed(e, s, 1, "421".into(), now);
        assert_eq!((first.status, first.next_attempt_at), (CustomerMailStatus::Pending, now + Duration::seconds(30)));
        assert_eq!(CustomerMailOutcome::failed(e, s, 3, "x".into(), now).next_attempt_at, now + Duration::seconds(120));
        assert_eq!(
            CustomerMailOutcome::failed(e, s, CUSTOMER_MAIL_ATTEMPTS, "x".into(), now).status,
            CustomerMailStatus::Failed
        );
    }
}
