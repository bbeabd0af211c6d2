//! Conversions between protobuf messages and domain types: every enum (through `enum_map!`),
//! timestamps, JSON values and field masks here; the incident, component, maintenance and
//! integration messages in `incidents.rs`, `components.rs`, `maintenance.rs` and
//! `integrations.rs`; postmortems, actions, links and analytics in `postmortems.rs`. Messages that only one service uses are converted beside it
//! (`subscriptions.rs`, `access.rs`).

mod components;
mod incidents;
mod integrations;
mod maintenance;
mod postmortems;

pub use components::{
    component_patch_from_pb, component_to_pb, new_component_from_pb, status_change_to_pb, uptime_to_pb,
};
pub use incidents::{entry_to_pb, incident_patch_from_pb, incident_to_pb, new_incident_from_pb};
pub use integrations::{alert_to_pb, integration_patch_from_pb, integration_to_pb, new_integration_from_pb};
pub use maintenance::{
    maintenance_patch_from_pb, maintenance_to_pb, maintenance_update_to_pb, new_maintenance_from_pb,
};
pub use postmortems::{
    action_patch_from_pb, action_to_pb, link_to_pb, new_action_from_pb, new_postmortem_from_pb,
    postmortem_patch_from_pb, postmortem_to_pb, stats_to_pb,
};

use chrono::{DateTime, Utc};
use prost_types::{FieldMask, Timestamp};

use crate::domain::action::{ActionPriority, ActionStatus};
use crate::domain::alert::AlertStatus;
use crate::domain::integration::{Grouping, IntegrationKind};
use crate::domain::link::LinkKind;
use crate::domain::maintenance::MaintenanceStatus;
use crate::domain::postmortem::{PostmortemStatus, RecurrenceRisk, RootCauseCategory};
use crate::domain::subscriber::SubscriberStatus;
use crate::domain::validate::Violations;
use crate::domain::{
    CauseKind, Channel, ComponentStatus, DeliveryStatus, Impact, Scope, Severity, Status, UpdateKind, Visibility,
    WorkaroundAvailability,
};
use crate::proto as pb;

/// Maps a domain enum to its protobuf twin (same variant names) and back; the protobuf
/// `UNSPECIFIED` value reads as `None`.
macro_rules! enum_map {
    ($to:ident, $from:ident, $domain:ident, $pb:ident, [$($v:ident),+]) => {
        pub fn $to(x: $domain) -> i32 {
            match x { $($domain::$v => pb::$pb::$v as i32),+ }
        }

        pub fn $from(v: &mut Violations, field: &str, raw: i32) -> Option<$domain> {
            match pb::$pb::try_from(raw) {
                Ok(pb::$pb::Unspecified) => None,
                $(Ok(pb::$pb::$v) => Some($domain::$v),)+
                Err(_) => {
                    v.add(field, format!("unknown enum value {raw}"));
                    None
                }
            }
        }
    };
}

enum_map!(severity_to_pb, severity_from_pb, Severity, Severity, [Sev1, Sev2, Sev3, Sev4]);
enum_map!(
    status_to_pb,
    status_from_pb,
    Status,
    IncidentStatus,
    [Investigating, Identified, Monitoring, Resolved, Closed, Merged]
);
enum_map!(impact_to_pb, impact_from_pb, Impact, Impact, [None, Minor, Major, Critical]);
enum_map!(
    component_status_to_pb,
    component_status_from_pb,
    ComponentStatus,
    ComponentStatus,
    [Operational, DegradedPerformance, PartialOutage, MajorOutage, UnderMaintenance]
);
enum_map!(
    workaround_to_pb,
    workaround_from_pb,
    WorkaroundAvailability,
    WorkaroundAvailability,
    [Unknown, Available, None]
);
enum_map!(cause_kind_to_pb, cause_kind_from_pb, CauseKind, CauseKind, [Unknown, Internal, ThirdParty]);
enum_map!(visibility_to_pb, visibility_from_pb, Visibility, Visibility, [Public, Internal]);
enum_map!(
    update_kind_to_pb,
    update_kind_from_pb,
    UpdateKind,
    UpdateKind,
    [Created, Update, StatusChange, FieldChange, Acknowledgement, Alert, Merge, Link]
);
enum_map!(
    link_kind_to_pb,
    link_kind_from_pb,
    LinkKind,
    LinkKind,
    [Related, CausedBy, RecurrenceOf, Causes, RecurredAs]
);
enum_map!(
    postmortem_status_to_pb,
    postmortem_status_from_pb,
    PostmortemStatus,
    PostmortemStatus,
    [Draft, InReview, Published]
);
enum_map!(recurrence_risk_to_pb, recurrence_risk_from_pb, RecurrenceRisk, RecurrenceRisk, [Low, Medium, High]);
enum_map!(
    root_cause_to_pb,
    root_cause_from_pb,
    RootCauseCategory,
    RootCauseCategory,
    [Unknown, CodeChange, ConfigurationChange, Infrastructure, Capacity, Dependency, Security, Data, Process, Other]
);
enum_map!(action_status_to_pb, action_status_from_pb, ActionStatus, ActionStatus, [Open, Done, WontDo]);
enum_map!(action_priority_to_pb, action_priority_from_pb, ActionPriority, ActionPriority, [High, Medium, Low]);

enum_map!(channel_to_pb, channel_from_pb, Channel, Channel, [Webhook, Slack, Teams, Email]);
enum_map!(
    delivery_status_to_pb,
    delivery_status_from_pb,
    DeliveryStatus,
    DeliveryStatus,
    [Pending, Sending, Delivered, Failed, Cancelled]
);
enum_map!(
    maintenance_status_to_pb,
    maintenance_status_from_pb,
    MaintenanceStatus,
    MaintenanceStatus,
    [Scheduled, InProgress, Verifying, Completed, Cancelled]
);
enum_map!(
    subscriber_status_to_pb,
    subscriber_status_from_pb,
    SubscriberStatus,
    SubscriberStatus,
    [Pending, Confirmed, Unsubscribed]
);
enum_map!(
    scope_to_pb,
    scope_from_pb,
    Scope,
    Scope,
    [IncidentsRead, IncidentsWrite, ComponentsWrite, MaintenanceWrite, SubscriptionsManage, Admin]
);
enum_map!(
    integration_kind_to_pb,
    integration_kind_from_pb,
    IntegrationKind,
    IntegrationKind,
    [Alertmanager, Grafana, PagerdutyEventsV2]
);
enum_map!(grouping_to_pb, grouping_from_pb, Grouping, Grouping, [GroupKey, Fingerprint]);
enum_map!(alert_status_to_pb, alert_status_from_pb, AlertStatus, AlertStatus, [Firing, Acknowledged, Resolved, Change]);

pub fn ts(t: DateTime<Utc>) -> Timestamp {
    Timestamp { seconds: t.timestamp(), nanos: t.timestamp_subsec_nanos() as i32 }
}

pub fn from_ts(v: &mut Violations, field: &str, t: &Timestamp) -> Option<DateTime<Utc>> {
    let parsed = u32::try_from(t.nanos).ok().and_then(|n| DateTime::from_timestamp(t.seconds, n));
    if parsed.is_none() {
        v.add(field, "is not a valid timestamp");
    }
    parsed
}

/// An optional timestamp field.
pub fn opt_ts(v: &mut Violations, field: &str, t: &Option<Timestamp>) -> Option<DateTime<Utc>> {
    t.as_ref().and_then(|t| from_ts(v, field, t))
}

pub fn json_to_pb(value: &serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Array(a) => {
            Kind::ListValue(prost_types::ListValue { values: a.iter().map(json_to_pb).collect() })
        }
        serde_json::Value::Object(o) => Kind::StructValue(prost_types::Struct {
            fields: o.iter().map(|(k, v)| (k.clone(), json_to_pb(v))).collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

/// The paths an update applies: the mask's, `*` for every editable field, or (empty mask)
/// every populated field.
pub(super) fn mask_paths(
    mask: Option<FieldMask>,
    all: &[&str],
    populated: impl FnOnce() -> Vec<String>,
) -> Vec<String> {
    let paths = mask.map(|m| m.paths).unwrap_or_default();
    if paths.is_empty() {
        populated()
    } else if paths.iter().any(|p| p == "*") {
        all.iter().map(|p| p.to_string()).collect()
    } else {
        paths
    }
}
