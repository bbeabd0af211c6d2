//! What customers may see: the one place that decides, field by field, which parts of an
//! incident are public. The events' public data (and with it public subscribers, webhooks
//! and mails) reads incidents through [`PublicIncident`]; so will the status page and the
//! feeds. It is built by destructuring every field of [`Incident`], so a new field does not
//! compile until it is declared public here or named internal.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::ids::IncidentRef;
use super::incident::{AffectedComponent, Cause, CauseKind, Impact, Incident, Severity, Status, Workaround};

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
            // Internal: how many customers (an estimate for responders), who leads and who
            // acknowledged, labels, related incidents, the root cause, when it was detected
            // (as opposed to when it started), and bookkeeping.
            affected_customers: _,
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
        }
    }
}

/// Whether customers see the incident field `name` (an editable field's name, as in a
/// change list).
pub fn is_public_field(name: &str) -> bool {
    PublicIncident::FIELDS.contains(&name)
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
        input.validate(Uuid::now_v7(), crate::domain::now()).expect("valid").incident
    }

    #[test]
    fn the_public_view_leaves_out_every_internal_detail() {
        let public = serde_json::to_string(&PublicIncident::from(&incident())).unwrap();
        for internal in ["CANARY", "4321", "alice", "commander", "labels", "detected_at", "acknowledged"] {
            assert!(!public.contains(internal), "{internal} leaked into {public}");
        }
        assert!(public.contains("Stripe") && public.contains("third_party"), "{public}");
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
        assert_eq!(
            internal,
            ["affected_customers", "commander", "labels", "related_incident_ids", "root_cause", "detected_at"]
        );
    }
}
