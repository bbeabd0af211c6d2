//! Events: one per change, written in the change's transaction (a transactional outbox), sent
//! to subscribers and streamed to dashboards as CloudEvents 1.0.
//!
//! Each change emits one event typed by its most significant effect: a resolve is
//! `incident.resolved` (not also `incident.status_changed`), a posted update that moves the
//! status is one `incident.update_posted` carrying `previous_status`. Components whose
//! effective status changes get a `component.status_changed` each.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::action::Action;
use super::component::{Component, ComponentStatus};
use super::incident::{Incident, Severity, Status, Transition};
use super::link::Link;
use super::maintenance::{Maintenance, MaintenanceStatus, MaintenanceUpdate};
use super::postmortem::Postmortem;
use super::public::{PublicIncident, PublicMaintenance, PublicMaintenanceUpdate, PublicPostmortem, is_public_field};
use super::timeline::{TimelineEntry, Visibility};
use super::wire_enum;

wire_enum! {
    /// What happened.
    EventType {
        IncidentCreated = "incident.created",
        IncidentUpdated = "incident.updated",
        IncidentStatusChanged = "incident.status_changed",
        IncidentAcknowledged = "incident.acknowledged",
        /// An open incident is still unacknowledged past its deadline (`INCIDENTD_ACK_DEADLINES`),
        /// then again every `INCIDENTD_ACK_REPEAT`: page the next person. Internal.
        IncidentAckOverdue = "incident.ack_overdue",
        IncidentUpdatePosted = "incident.update_posted",
        IncidentResolved = "incident.resolved",
        IncidentReopened = "incident.reopened",
        IncidentDeleted = "incident.deleted",
        /// The incident (a duplicate) was merged into another (`data.into`), which carries on.
        IncidentMerged = "incident.merged",
        /// A typed link to another incident was made or removed. Internal.
        IncidentLinked = "incident.linked",
        IncidentUnlinked = "incident.unlinked",
        /// A postmortem was started, edited or moved between draft and review. Internal,
        /// except an edit of a published postmortem's public summary.
        PostmortemCreated = "postmortem.created",
        PostmortemUpdated = "postmortem.updated",
        /// The postmortem was published: its public summary is on the status page.
        PostmortemPublished = "postmortem.published",
        /// A follow-up action was added, edited (or done) or removed. Internal.
        ActionCreated = "action.created",
        ActionUpdated = "action.updated",
        ActionDeleted = "action.deleted",
        /// An open action's due date passed (once per due date). Internal.
        ActionOverdue = "action.overdue",
        ComponentStatusChanged = "component.status_changed",
        MaintenanceScheduled = "maintenance.scheduled",
        MaintenanceUpdated = "maintenance.updated",
        MaintenanceStarted = "maintenance.started",
        MaintenanceCompleted = "maintenance.completed",
        MaintenanceCancelled = "maintenance.cancelled",
        /// Sent once, `INCIDENTD_MAINTENANCE_REMINDER_MINUTES` before a maintenance starts.
        MaintenanceReminder = "maintenance.reminder",
        SubscriptionDisabled = "subscription.disabled",
        /// Sent by `POST /v1/subscriptions/{id}/test`; never stored.
        SubscriptionTest = "subscription.test",
    }
}

/// An event as stored: both the full (internal) and the public form of its data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The CloudEvents id, also the webhook id: stable across retries.
    pub id: Uuid,
    /// Commit order, assigned once the change has committed; `None` until then.
    pub seq: Option<i64>,
    pub event_type: EventType,
    /// The resource the event is about (an incident or component id).
    pub subject: String,
    pub time: DateTime<Utc>,
    /// For subscription filters: the incident's severity.
    pub severity: Option<Severity>,
    /// For subscription filters: the components concerned.
    pub component_ids: Vec<Uuid>,
    /// The data for subscribers that may see internal details.
    pub data: Value,
    /// The data for public subscribers; `None` when the event is internal only.
    pub public_data: Option<Value>,
    /// The W3C `traceparent` of the request that caused the event, if it was traced: its
    /// deliveries continue that trace.
    pub traceparent: Option<String>,
}

fn value<T: Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

impl Event {
    fn about_incident(
        event_type: EventType,
        incident: &Incident,
        mut data: Value,
        mut public: Option<Value>,
        now: DateTime<Utc>,
    ) -> Self {
        data["incident"] = value(incident);
        if let Some(p) = &mut public {
            p["incident"] = value(&PublicIncident::from(incident));
        }
        Event {
            id: Uuid::now_v7(),
            seq: None,
            event_type,
            subject: incident.id.to_string(),
            time: now,
            severity: Some(incident.severity),
            component_ids: incident.affected_components.iter().map(|c| c.component_id).collect(),
            data,
            public_data: public,
            traceparent: None,
        }
    }

    pub fn incident_created(incident: &Incident, now: DateTime<Utc>) -> Self {
        Self::about_incident(EventType::IncidentCreated, incident, json!({}), Some(json!({})), now)
    }

    /// Editable fields changed; public subscribers hear of it only when a public field did.
    pub fn incident_updated(incident: &Incident, fields: &[&str], now: DateTime<Utc>) -> Self {
        let public_fields: Vec<&str> = fields.iter().copied().filter(|f| is_public_field(f)).collect();
        let public = (!public_fields.is_empty()).then(|| json!({"changed_fields": public_fields}));
        Self::about_incident(EventType::IncidentUpdated, incident, json!({"changed_fields": fields}), public, now)
    }

    /// A lifecycle move (without a posted update): resolved, reopened or status_changed.
    pub fn incident_transitioned(
        incident: &Incident,
        t: Transition,
        entry: &TimelineEntry,
        now: DateTime<Utc>,
    ) -> Self {
        let event_type = if t.to == Status::Resolved {
            EventType::IncidentResolved
        } else if t.reopened {
            EventType::IncidentReopened
        } else {
            EventType::IncidentStatusChanged
        };
        let mut data = json!({"previous_status": t.from});
        let mut public = json!({"previous_status": t.from});
        data["update"] = value(entry);
        if entry.visibility == Visibility::Public {
            public["update"] = value(entry);
        }
        Self::about_incident(event_type, incident, data, Some(public), now)
    }

    /// Who acknowledged is a matter for responders: internal only.
    pub fn incident_acknowledged(incident: &Incident, now: DateTime<Utc>) -> Self {
        Self::about_incident(EventType::IncidentAcknowledged, incident, json!({}), None, now)
    }

    /// The incident is unacknowledged past its deadline: reminder `reminder` (from 1), due
    /// since `due_at`. Internal.
    pub fn incident_ack_overdue(
        incident: &Incident,
        reminder: i64,
        due_at: DateTime<Utc>,
        deadline_seconds: u64,
        now: DateTime<Utc>,
    ) -> Self {
        let data = json!({"reminder": reminder, "due_at": due_at, "deadline_seconds": deadline_seconds});
        Self::about_incident(EventType::IncidentAckOverdue, incident, data, None, now)
    }

    /// A posted update; internal updates reach internal subscribers only.
    pub fn update_posted(
        incident: &Incident,
        entry: &TimelineEntry,
        previous_status: Option<Status>,
        now: DateTime<Utc>,
    ) -> Self {
        let data = json!({"update": entry, "previous_status": previous_status});
        let public = (entry.visibility == Visibility::Public).then(|| data.clone());
        Self::about_incident(EventType::IncidentUpdatePosted, incident, data, public, now)
    }

    pub fn incident_deleted(incident: &Incident, now: DateTime<Utc>) -> Self {
        Self::about_incident(EventType::IncidentDeleted, incident, json!({}), Some(json!({})), now)
    }

    /// `source` was merged into `target`: about the source, concerning the target's
    /// components (which now include the source's).
    pub fn incident_merged(source: &Incident, target: &Incident, moved: Value, now: DateTime<Utc>) -> Self {
        let data = json!({"into": value(target), "moved": moved});
        let public = json!({"into": value(&PublicIncident::from(target))});
        let mut event = Self::about_incident(EventType::IncidentMerged, source, data, Some(public), now);
        event.component_ids = target.affected_components.iter().map(|c| c.component_id).collect();
        event
    }

    /// A link made (or removed) from `incident`'s side, as that side reads it. Internal.
    pub fn incident_linked(incident: &Incident, link: &Link, removed: bool, now: DateTime<Utc>) -> Self {
        let event_type = if removed { EventType::IncidentUnlinked } else { EventType::IncidentLinked };
        Self::about_incident(event_type, incident, json!({"link": link}), None, now)
    }

    /// A postmortem changed (`data` says how). Public subscribers hear of it only when
    /// `public` (its publication, or a new public summary of a published one), and then only
    /// of its public part.
    pub fn about_postmortem(
        event_type: EventType,
        incident: &Incident,
        postmortem: &Postmortem,
        mut data: Value,
        public: bool,
        now: DateTime<Utc>,
    ) -> Self {
        data["postmortem"] = value(postmortem);
        let public = PublicPostmortem::of(postmortem).filter(|_| public).map(|p| json!({"postmortem": p}));
        Self::about_incident(event_type, incident, data, public, now)
    }

    /// A follow-up action changed (`data` says how). Internal.
    pub fn about_action(event_type: EventType, action: &Action, mut data: Value, now: DateTime<Utc>) -> Self {
        data["action"] = value(action);
        Event {
            id: Uuid::now_v7(),
            seq: None,
            event_type,
            subject: action.id.to_string(),
            time: now,
            severity: None,
            component_ids: Vec::new(),
            data,
            public_data: None,
            traceparent: None,
        }
    }

    /// A component's effective status moved.
    pub fn component_status_changed(component: &Component, previous: ComponentStatus, now: DateTime<Utc>) -> Self {
        let data = json!({"component": component, "previous_status": previous});
        Event {
            id: Uuid::now_v7(),
            seq: None,
            event_type: EventType::ComponentStatusChanged,
            subject: component.id.to_string(),
            time: now,
            severity: None,
            component_ids: vec![component.id],
            public_data: Some(data.clone()),
            data,
            traceparent: None,
        }
    }

    /// A maintenance changed: scheduled, edited (`changed_fields`), moved (`update`, with
    /// `previous_status`), or about to start. Public subscribers get it through
    /// [`PublicMaintenance`] (no worker settings, no author).
    pub fn about_maintenance(
        event_type: EventType,
        maintenance: &Maintenance,
        mut data: Value,
        update: Option<&MaintenanceUpdate>,
        now: DateTime<Utc>,
    ) -> Self {
        let mut public = data.clone();
        data["maintenance"] = value(maintenance);
        public["maintenance"] = value(&PublicMaintenance::from(maintenance));
        if let Some(u) = update {
            data["update"] = value(u);
            public["update"] = value(&PublicMaintenanceUpdate::from(u));
        }
        Event {
            id: Uuid::now_v7(),
            seq: None,
            event_type,
            subject: maintenance.id.to_string(),
            time: now,
            severity: None,
            component_ids: maintenance.components.clone(),
            data,
            public_data: Some(public),
            traceparent: None,
        }
    }

    /// The event of a maintenance's move from `previous` to its current status.
    pub fn maintenance_moved(
        maintenance: &Maintenance,
        previous: MaintenanceStatus,
        update: &MaintenanceUpdate,
        now: DateTime<Utc>,
    ) -> Self {
        let event_type = match maintenance.status {
            MaintenanceStatus::InProgress if previous == MaintenanceStatus::Scheduled => EventType::MaintenanceStarted,
            MaintenanceStatus::Completed => EventType::MaintenanceCompleted,
            MaintenanceStatus::Cancelled => EventType::MaintenanceCancelled,
            _ => EventType::MaintenanceUpdated,
        };
        Self::about_maintenance(event_type, maintenance, json!({"previous_status": previous}), Some(update), now)
    }

    /// A subscription was switched off by the system; internal only.
    pub fn subscription_disabled(subscription_id: Uuid, reason: &str, now: DateTime<Utc>) -> Self {
        Event {
            id: Uuid::now_v7(),
            seq: None,
            event_type: EventType::SubscriptionDisabled,
            subject: subscription_id.to_string(),
            time: now,
            severity: None,
            component_ids: Vec::new(),
            data: json!({"subscription_id": subscription_id, "reason": reason}),
            public_data: None,
            traceparent: None,
        }
    }

    /// Whether public subscribers get this event at all.
    pub fn is_public(&self) -> bool {
        self.public_data.is_some()
    }

    /// The event as a CloudEvents 1.0 JSON document, with internal details or without.
    /// `seq` is carried as the `sequence` extension attribute (its cursor).
    pub fn cloud_event(&self, source: &str, internal: bool) -> Value {
        let data = if internal { Some(&self.data) } else { self.public_data.as_ref() };
        let mut ce = json!({
            "specversion": "1.0",
            "id": self.id,
            "source": source,
            "type": self.event_type,
            "time": self.time,
            "subject": self.subject,
            "datacontenttype": "application/json",
            "data": data,
        });
        if let Some(seq) = self.seq {
            ce["sequence"] = json!(seq.to_string());
        }
        ce
    }
}
