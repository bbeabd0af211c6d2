//! What customers may see: the one place that decides, field by field, which parts of an
//! incident are public. The events' public data (and with it public subscribers, webhooks
//! and mails), the status page, the Statuspage-compatible JSON, the feeds and the badges read
//! incidents through [`PublicIncident`] and their timelines through [`public_updates`], and
//! maintenance through [`PublicMaintenance`]. Each view is built by destructuring every field of [`Incident`], so a new field does not
//! compile until it is declared public here or named internal.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::component::{Component, ComponentStatus};
use super::history::{StatusChange, Uptime};
use super::ids::IncidentRef;
use super::incident::{AffectedComponent, Cause, CauseKind, Impact, Incident, Severity, Status, Workaround};
use super::maintenance::{Maintenance, MaintenanceStatus, MaintenanceUpdate};
use super::postmortem::{Postmortem, PostmortemStatus};
use super::timeline::{TimelineEntry, Visibility};

/// Declares a public view with `FIELDS`, the names of its fields (which are the names of the
/// incident fields it shows).
macro_rules! public_view {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $field:ident: $ty:ty,)+ }) => {
        $(#[$m])*
        pub struct $name { $($(#[$fm])* pub $field: $ty,)+ }

        impl $name {
            /// The fields customers see, by name.
            pub const FIELDS: &'static [&'static str] = &[$(stringify!($field)),+];
        }
    };
}

public_view! {
    /// An incident as customers may read it.
    #[derive(Debug, Clone, PartialEq, Serialize)]
    pub struct PublicIncident {
        pub id: Uuid,
        pub reference: IncidentRef,
        pub title: String,
        pub summary: String,
        pub severity: Severity,
        pub status: Status,
        pub impact: Impact,
        pub affected_components: Vec<AffectedComponent>,
        /// How many customers are affected, rounded to two significant figures (4,321 reads
        /// 4,300): the exact figure is the responders'.
        pub affected_customers_estimate: Option<i64>,
        pub eta: Option<DateTime<Utc>>,
        pub workaround: Workaround,
        pub cause: PublicCause,
        pub resolution_summary: Option<String>,
        pub started_at: DateTime<Utc>,
        pub identified_at: Option<DateTime<Utc>>,
        pub mitigated_at: Option<DateTime<Utc>>,
        pub resolved_at: Option<DateTime<Utc>>,
        pub closed_at: Option<DateTime<Utc>>,
        pub created_at: DateTime<Utc>,
        pub updated_at: DateTime<Utc>,
        /// The incident this one was merged into (it carries on there).
        pub merged_into: Option<Uuid>,
    }
}

/// Where the fault lies, as customers may read it: the provider's own reference (a ticket, an
/// internal link) stays internal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicCause {
    pub kind: CauseKind,
    pub provider: Option<String>,
}

impl From<&Incident> for PublicIncident {
    fn from(incident: &Incident) -> Self {
        let Incident {
            id,
            reference,
            title,
            summary,
            severity,
            status,
            impact,
            affected_components,
            affected_customers,
            eta,
            workaround,
            cause: Cause { kind, provider, external_reference: _ },
            resolution_summary,
            started_at,
            identified_at,
            mitigated_at,
            resolved_at,
            closed_at,
            created_at,
            updated_at,
            merged_into,
            // Internal: who leads and who acknowledged, labels, related incidents, the root
            // cause, when it was detected (as opposed to when it started), and bookkeeping.
            commander: _,
            acknowledged_at: _,
            acknowledged_by: _,
            labels: _,
            related_incident_ids: _,
            root_cause: _,
            detected_at: _,
            reopen_count: _,
            version: _,
        } = incident;
        PublicIncident {
            id: *id,
            reference: *reference,
            title: title.clone(),
            summary: summary.clone(),
            severity: *severity,
            status: *status,
            impact: *impact,
            affected_components: affected_components.clone(),
            affected_customers_estimate: affected_customers.map(two_significant_figures),
            eta: *eta,
            workaround: workaround.clone(),
            cause: PublicCause { kind: *kind, provider: provider.clone() },
            resolution_summary: resolution_summary.clone(),
            started_at: *started_at,
            identified_at: *identified_at,
            mitigated_at: *mitigated_at,
            resolved_at: *resolved_at,
            closed_at: *closed_at,
            created_at: *created_at,
            updated_at: *updated_at,
            merged_into: *merged_into,
        }
    }
}

/// A published postmortem as customers may read it: what changes so it does not happen again.
/// The analysis, the root cause and its category, the contributing factors, the judgement of
/// recurrence and who wrote it stay the responders'.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicPostmortem {
    pub incident_id: Uuid,
    pub summary: String,
    pub published_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl PublicPostmortem {
    /// The public part of a published postmortem; `None` before it is published.
    pub fn of(p: &Postmortem) -> Option<PublicPostmortem> {
        let Postmortem {
            incident_id,
            status,
            public_summary,
            published_at,
            updated_at,
            // Internal.
            body: _,
            root_cause_category: _,
            contributing_factors: _,
            recurrence_risk: _,
            recurrence_reason: _,
            third_party: _,
            author: _,
            created_at: _,
            version: _,
        } = p;
        match (status, published_at) {
            (PostmortemStatus::Published, Some(at)) => Some(PublicPostmortem {
                incident_id: *incident_id,
                summary: public_summary.clone(),
                published_at: *at,
                updated_at: *updated_at,
            }),
            _ => None,
        }
    }
}

/// Whether customers see the incident field `name` (an editable field's name, as in a
/// change list). The affected-customer figure is seen rounded.
pub fn is_public_field(name: &str) -> bool {
    name == "affected_customers" || PublicIncident::FIELDS.contains(&name)
}

/// Rounds to two significant figures, half away from zero: 4,321 → 4,300, 98,765 → 99,000,
/// 7 → 7.
pub fn two_significant_figures(n: i64) -> i64 {
    let magnitude = n.unsigned_abs();
    if magnitude < 100 {
        return n;
    }
    let digits = magnitude.ilog10();
    let unit = 10u64.pow(digits - 1);
    let rounded = (magnitude + unit / 2) / unit * unit;
    i64::try_from(rounded).map(|r| r * n.signum()).unwrap_or(n)
}

/// A public timeline entry as customers read it: what was said, when, and the incident's
/// status at that moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublicUpdate {
    pub id: Uuid,
    pub incident_id: Uuid,
    pub status: Status,
    pub body: String,
    pub created_at: DateTime<Utc>,
    /// The component status changes the incident caused since the public update before this
    /// one (Statuspage's `affected_components`): customers learn of them with this update.
    pub component_changes: Vec<ComponentMove>,
}

/// One component's change of status, as an update reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ComponentMove {
    pub component_id: Uuid,
    pub from: ComponentStatus,
    pub to: ComponentStatus,
}

/// The public updates of an incident, newest first, from its whole timeline (oldest first):
/// only public entries are kept, each with the status the incident had once it was posted
/// (the internal entries only contribute the status moves they record, never their text),
/// and the component status changes (`changes`, of any incidents) this incident caused up to
/// it and after the public update before it.
pub fn public_updates(incident: &Incident, timeline: &[TimelineEntry], changes: &[StatusChange]) -> Vec<PublicUpdate> {
    let mut status = timeline.iter().find_map(|e| e.status_from.or(e.status_to)).unwrap_or(incident.status);
    let mut mine: Vec<&StatusChange> = changes.iter().filter(|c| c.incident_id == Some(incident.id)).collect();
    mine.sort_by_key(|c| c.changed_at);
    let mut pending = mine.into_iter().peekable();
    let mut updates = Vec::new();
    for entry in timeline {
        let TimelineEntry {
            id,
            incident_id,
            kind: _,
            body,
            visibility,
            status_from: _,
            status_to,
            changes: _,
            author: _,
            created_at,
        } = entry;
        if let Some(to) = status_to {
            status = *to;
        }
        if *visibility == Visibility::Public && !body.trim().is_empty() {
            let mut component_changes = Vec::new();
            while let Some(c) = pending.next_if(|c| c.changed_at <= *created_at) {
                component_changes.push(ComponentMove {
                    component_id: c.component_id,
                    from: c.from_status,
                    to: c.to_status,
                });
            }
            updates.push(PublicUpdate {
                id: *id,
                incident_id: *incident_id,
                status,
                body: body.clone(),
                created_at: *created_at,
                component_changes,
            });
        }
    }
    updates.reverse();
    updates
}

/// An incident, its public updates (newest first) and its published postmortem.
#[derive(Debug, Clone, PartialEq)]
pub struct PublicIncidentPage {
    pub incident: PublicIncident,
    pub updates: Vec<PublicUpdate>,
    pub postmortem: Option<PublicPostmortem>,
}

/// A scheduled maintenance as customers may read it: everything but the workers' settings
/// and bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicMaintenance {
    pub id: Uuid,
    pub title: String,
    pub body: String,
    pub components: Vec<Uuid>,
    pub scheduled_for: DateTime<Utc>,
    pub scheduled_until: DateTime<Utc>,
    pub status: MaintenanceStatus,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Maintenance> for PublicMaintenance {
    fn from(m: &Maintenance) -> Self {
        let Maintenance {
            id,
            title,
            body,
            components,
            scheduled_for,
            scheduled_until,
            status,
            started_at,
            completed_at,
            cancelled_at,
            created_at,
            updated_at,
            // Internal: how the workers drive it, and bookkeeping.
            auto_start: _,
            auto_complete: _,
            reminded_at: _,
            version: _,
        } = m;
        PublicMaintenance {
            id: *id,
            title: title.clone(),
            body: body.clone(),
            components: components.clone(),
            scheduled_for: *scheduled_for,
            scheduled_until: *scheduled_until,
            status: *status,
            started_at: *started_at,
            completed_at: *completed_at,
            cancelled_at: *cancelled_at,
            created_at: *created_at,
            updated_at: *updated_at,
        }
    }
}

/// An entry of a maintenance's timeline as customers read it (who posted it is internal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicMaintenanceUpdate {
    pub id: Uuid,
    pub maintenance_id: Uuid,
    pub status: MaintenanceStatus,
    /// Empty for an automatic move: each surface words it itself.
    pub body: String,
    pub created_at: DateTime<Utc>,
}

impl From<&MaintenanceUpdate> for PublicMaintenanceUpdate {
    fn from(u: &MaintenanceUpdate) -> Self {
        let MaintenanceUpdate { id, maintenance_id, status, body, created_at, automatic: _, author: _ } = u;
        PublicMaintenanceUpdate {
            id: *id,
            maintenance_id: *maintenance_id,
            status: *status,
            body: body.clone(),
            created_at: *created_at,
        }
    }
}

/// A maintenance and its updates (newest first).
#[derive(Debug, Clone, PartialEq)]
pub struct PublicMaintenancePage {
    pub maintenance: PublicMaintenance,
    pub updates: Vec<PublicMaintenanceUpdate>,
}

impl PublicMaintenancePage {
    /// The updates after the scheduling (the oldest entry, whose text is the maintenance's
    /// body), newest first.
    pub fn later_updates(&self) -> &[PublicMaintenanceUpdate] {
        &self.updates[..self.updates.len().saturating_sub(1)]
    }
}

/// Everything the public surfaces show, read at one moment: the status page, the
/// Statuspage-compatible JSON, the feeds and the badges are all rendered from it.
#[derive(Debug, Clone)]
pub struct PublicState {
    /// When it was read.
    pub at: DateTime<Utc>,
    /// Where the history window starts: the first of the last 90 local days.
    pub since: DateTime<Utc>,
    /// When anything shown last changed (`page.updated_at`).
    pub updated_at: DateTime<Utc>,
    /// Every component, in status-page order, with its effective status (names, groups,
    /// positions and statuses are public).
    pub components: Vec<Component>,
    /// Open incidents, newest first.
    pub active: Vec<PublicIncidentPage>,
    /// Resolved or closed incidents, newest first: those of the history window and at least
    /// the most recent ones.
    pub past: Vec<PublicIncidentPage>,
    /// Each component's uptime over the history window, day by day.
    pub uptime: Vec<Uptime>,
    /// Maintenance not yet over (scheduled, in progress, verifying), soonest first, then the
    /// most recent completed or cancelled ones, latest window first.
    pub maintenances: Vec<PublicMaintenancePage>,
    /// The time zone days and times are shown in.
    pub time_zone: chrono_tz::Tz,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::incident::{EDITABLE_FIELDS, NewIncident};

    fn incident() -> Incident {
        let input = NewIncident {
            title: Some("Checkout down".into()),
            severity: Some(Severity::Sev1),
            affected_customers: Some(4321),
            commander: Some("alice".into()),
            root_cause: Some("CANARY-root-cause".into()),
            labels: [("team".to_string(), "CANARY-label".to_string())].into(),
            cause: Some(Cause {
                kind: CauseKind::ThirdParty,
                provider: Some("Stripe".into()),
                external_reference: Some("CANARY-ticket".into()),
            }),
            ..Default::default()
        };
        // A fixed id and time: a random one could contain a canary figure (4321) by chance.
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z").unwrap().with_timezone(&chrono::Utc);
        input.validate(Uuid::from_u128(0x1000), now).expect("valid").incident
    }

    #[test]
    fn the_public_view_leaves_out_every_internal_detail() {
        let public = serde_json::to_string(&PublicIncident::from(&incident())).unwrap();
        for internal in ["CANARY", "4321", "alice", "commander", "labels", "detected_at", "acknowledged"] {
            assert!(!public.contains(internal), "{internal} leaked into {public}");
        }
        assert!(public.contains("Stripe") && public.contains("third_party"), "{public}");
        assert!(public.contains(r#""affected_customers_estimate":4300"#), "{public}");
    }

    #[test]
    fn the_view_serializes_exactly_its_declared_fields() {
        let value = serde_json::to_value(PublicIncident::from(&incident())).unwrap();
        let mut keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
        let mut fields = PublicIncident::FIELDS.to_vec();
        keys.sort_unstable();
        fields.sort_unstable();
        assert_eq!(keys, fields);
    }

    #[test]
    fn editable_fields_split_into_the_public_and_the_internal() {
        let internal: Vec<&str> = EDITABLE_FIELDS.iter().copied().filter(|f| !is_public_field(f)).collect();
        assert_eq!(internal, ["commander", "labels", "related_incident_ids", "root_cause", "detected_at"]);
    }

    #[test]
    fn customer_figures_are_rounded_to_two_significant_figures() {
        let cases = [(0, 0), (7, 7), (99, 99), (100, 100), (149, 150), (4321, 4300), (4350, 4400), (98_765, 99_000)];
        for (exact, shown) in cases {
            assert_eq!(two_significant_figures(exact), shown, "{exact}");
        }
        assert_eq!(two_significant_figures(1_234_567_890), 1_200_000_000);
    }

    #[test]
    fn public_updates_keep_only_public_text_with_the_status_of_their_moment() {
        let mut i = incident();
        let now = crate::domain::now();
        let at = |s| now + chrono::Duration::seconds(s);
        let entry = |s, visibility, body: &str, from: Option<Status>, to: Option<Status>| TimelineEntry {
            id: Uuid::now_v7(),
            incident_id: i.id,
            kind: crate::domain::UpdateKind::Update,
            body: body.into(),
            visibility,
            status_from: from,
            status_to: to,
            changes: Vec::new(),
            author: "alice".into(),
            created_at: at(s),
        };
        let timeline = [
            entry(0, Visibility::Internal, "CANARY-internal", None, Some(Status::Investigating)),
            entry(1, Visibility::Public, "Looking into it", None, None),
            entry(2, Visibility::Internal, "CANARY-bad-deploy", Some(Status::Investigating), Some(Status::Identified)),
            entry(3, Visibility::Public, "Fix rolling out", Some(Status::Identified), Some(Status::Monitoring)),
        ];
        i.status = Status::Monitoring;
        let component = Uuid::now_v7();
        let changes = [
            StatusChange::new(
                component,
                ComponentStatus::Operational,
                ComponentStatus::MajorOutage,
                at(0),
                crate::domain::history::Cause::Incident(i.id),
            ),
            StatusChange::new(
                component,
                ComponentStatus::MajorOutage,
                ComponentStatus::PartialOutage,
                at(2),
                crate::domain::history::Cause::Incident(i.id),
            ),
            StatusChange::new(
                component,
                ComponentStatus::PartialOutage,
                ComponentStatus::Operational,
                at(4),
                crate::domain::history::Cause::Incident(i.id),
            ),
            StatusChange::new(
                component,
                ComponentStatus::Operational,
                ComponentStatus::MajorOutage,
                at(1),
                crate::domain::history::Cause::Manual,
            ),
        ];
        let updates = public_updates(&i, &timeline, &changes);
        let seen: Vec<(&str, Status)> = updates.iter().map(|u| (u.body.as_str(), u.status)).collect();
        assert_eq!(seen, [("Fix rolling out", Status::Monitoring), ("Looking into it", Status::Investigating)]);
        let moves = |u: &PublicUpdate| u.component_changes.iter().map(|m| m.to).collect::<Vec<_>>();
        assert_eq!(moves(&updates[1]), [ComponentStatus::MajorOutage], "the change before the first update");
        assert_eq!(moves(&updates[0]), [ComponentStatus::PartialOutage], "a later change is not yet reported");
        assert!(!format!("{updates:?}").contains("CANARY"));
    }
}
