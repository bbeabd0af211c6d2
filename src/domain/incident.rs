//! Incidents: what broke, how bad, who is affected, how long, the workaround, the cause,
//! and the lifecycle that moves an incident from investigating to closed.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::component::ComponentStatus;
use super::error::{Error, Result};
use super::ids::{IncidentKey, IncidentRef};
use super::validate::{self, Violations};
use super::wire_enum;

wire_enum! {
    /// How severe an incident is, from `sev1` (critical) to `sev4` (low).
    Severity {
        /// Critical.
        Sev1 = "sev1",
        Sev2 = "sev2",
        Sev3 = "sev3",
        /// Low.
        Sev4 = "sev4",
    }
}

wire_enum! {
    /// Lifecycle status. `investigating`, `identified` and `monitoring` are open; `merged`
    /// (reached only by merging the incident into another) is final and read-only.
    Status {
        Investigating = "investigating",
        Identified = "identified",
        Monitoring = "monitoring",
        Resolved = "resolved",
        Closed = "closed",
        Merged = "merged",
    }
}

wire_enum! {
    /// Customer impact.
    Impact { None = "none", Minor = "minor", Major = "major", Critical = "critical" }
}

wire_enum! {
    /// Whether customers can work around the problem.
    WorkaroundAvailability { Unknown = "unknown", Available = "available", None = "none" }
}

wire_enum! {
    /// Where the fault lies.
    CauseKind { Unknown = "unknown", Internal = "internal", ThirdParty = "third_party" }
}

impl Status {
    pub const OPEN: &'static [Status] = &[Status::Investigating, Status::Identified, Status::Monitoring];

    pub fn is_open(self) -> bool {
        Status::OPEN.contains(&self)
    }

    /// The statuses this one may move to. Among open statuses any move is allowed; any open
    /// status may resolve; a resolved incident may be reopened (investigating, identified)
    /// or closed; closed and merged are terminal. Nothing moves *to* merged: merging does.
    pub fn allowed_targets(self) -> &'static [Status] {
        use Status::*;
        match self {
            Investigating => &[Identified, Monitoring, Resolved],
            Identified => &[Investigating, Monitoring, Resolved],
            Monitoring => &[Investigating, Identified, Resolved],
            Resolved => &[Investigating, Identified, Closed],
            Closed | Merged => &[],
        }
    }

    pub fn can_move_to(self, to: Status) -> bool {
        self.allowed_targets().contains(&to)
    }
}

/// A component an incident affects and the status it imposes on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AffectedComponent {
    pub component_id: Uuid,
    /// `degraded_performance`, `partial_outage`, `major_outage` or `under_maintenance`.
    pub status: ComponentStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Workaround {
    pub availability: WorkaroundAvailability,
    pub text: Option<String>,
}

impl Default for Workaround {
    fn default() -> Self {
        Workaround { availability: WorkaroundAvailability::Unknown, text: None }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Cause {
    pub kind: CauseKind,
    /// The third party at fault, e.g. `AWS`.
    pub provider: Option<String>,
    /// The provider's incident id or status-page link.
    pub external_reference: Option<String>,
}

impl Default for Cause {
    fn default() -> Self {
        Cause { kind: CauseKind::Unknown, provider: None, external_reference: None }
    }
}

/// An incident as stored and as served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Incident {
    pub id: Uuid,
    #[schema(value_type = String, example = "INC-42")]
    pub reference: IncidentRef,
    pub title: String,
    pub summary: String,
    pub severity: Severity,
    pub status: Status,
    pub impact: Impact,
    pub affected_components: Vec<AffectedComponent>,
    pub affected_customers: Option<i64>,
    #[serde(serialize_with = "super::rfc3339::serialize_option")]
    pub eta: Option<DateTime<Utc>>,
    pub workaround: Workaround,
    pub cause: Cause,
    pub commander: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub related_incident_ids: Vec<Uuid>,
    /// Internal: never shown on public surfaces.
    pub root_cause: Option<String>,
    /// Public summary of the fix.
    pub resolution_summary: Option<String>,
    pub reopen_count: i32,
    #[serde(serialize_with = "super::rfc3339::serialize")]
    pub started_at: DateTime<Utc>,
    #[serde(serialize_with = "super::rfc3339::serialize")]
    pub detected_at: DateTime<Utc>,
    #[serde(serialize_with = "super::rfc3339::serialize_option")]
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<String>,
    #[serde(serialize_with = "super::rfc3339::serialize_option")]
    pub identified_at: Option<DateTime<Utc>>,
    /// First time the incident reached `monitoring`.
    #[serde(serialize_with = "super::rfc3339::serialize_option")]
    pub mitigated_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "super::rfc3339::serialize_option")]
    pub resolved_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "super::rfc3339::serialize_option")]
    pub closed_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "super::rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "super::rfc3339::serialize")]
    pub updated_at: DateTime<Utc>,
    /// Incremented on every change; the ETag is derived from it.
    pub version: i64,
    /// Set when the incident was merged into another (its status is then `merged`): where its
    /// timeline, components, alerts and actions went.
    pub merged_into: Option<Uuid>,
}

/// The input to declare an incident, before validation. Related incidents are named by
/// id or reference and resolved by the service.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NewIncident {
    pub title: Option<String>,
    pub summary: Option<String>,
    pub severity: Option<Severity>,
    pub status: Option<Status>,
    pub impact: Option<Impact>,
    pub affected_components: Vec<AffectedComponent>,
    pub affected_customers: Option<i64>,
    pub eta: Option<DateTime<Utc>>,
    pub workaround: Option<Workaround>,
    pub cause: Option<Cause>,
    pub commander: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub related_incidents: Vec<String>,
    pub root_cause: Option<String>,
    pub resolution_summary: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub detected_at: Option<DateTime<Utc>>,
}

/// A validated [`NewIncident`]: every field checked, related incidents still to resolve.
#[derive(Debug, Clone)]
pub struct IncidentDraft {
    pub incident: Incident,
    pub related: Vec<IncidentKey>,
}

/// How far a caller-supplied start or detection time may lie in the future (clock skew).
pub const CLOCK_SKEW_SECS: i64 = 300;

impl NewIncident {
    /// Validates every field and builds the incident (reference still unassigned, related
    /// incidents still to resolve).
    pub fn validate(self, id: Uuid, now: DateTime<Utc>) -> Result<IncidentDraft> {
        let mut v = Violations::new();
        let title = v.required_text("title", self.title.as_deref(), validate::TITLE_MAX);
        let severity = self.severity.unwrap_or_else(|| {
            v.add("severity", format!("is required; one of: {}", Severity::expected()));
            Severity::Sev3
        });
        let status = self.status.unwrap_or(Status::Investigating);
        if !status.is_open() {
            v.add("status", "a new incident must be investigating, identified or monitoring");
        }
        let related = related_keys(&mut v, &self.related_incidents);
        let detected_at = self.detected_at.map(super::truncate).unwrap_or(now);
        let started_at = self.started_at.map(super::truncate).unwrap_or(detected_at);
        let mut incident = Incident {
            id,
            reference: IncidentRef(0),
            title,
            summary: self.summary.unwrap_or_default(),
            severity,
            status,
            impact: self.impact.unwrap_or(Impact::None),
            affected_components: self.affected_components,
            affected_customers: self.affected_customers,
            eta: self.eta.map(super::truncate),
            workaround: self.workaround.unwrap_or_default(),
            cause: self.cause.unwrap_or_default(),
            commander: self.commander,
            labels: self.labels,
            related_incident_ids: Vec::new(),
            root_cause: self.root_cause,
            resolution_summary: self.resolution_summary,
            reopen_count: 0,
            started_at,
            detected_at,
            acknowledged_at: None,
            acknowledged_by: None,
            identified_at: None,
            mitigated_at: None,
            resolved_at: None,
            closed_at: None,
            created_at: now,
            updated_at: now,
            version: 1,
            merged_into: None,
        };
        incident.normalize_editable(&mut v, now);
        incident.stamp(status, now);
        v.finish()?;
        Ok(IncidentDraft { incident, related })
    }
}

/// Parses the named related incidents, recording a violation per bad entry.
pub(crate) fn related_keys(v: &mut Violations, related: &[String]) -> Vec<IncidentKey> {
    if related.len() > validate::RELATED_MAX {
        v.add("related_incident_ids", format!("must have at most {} entries", validate::RELATED_MAX));
    }
    related
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let field = format!("related_incident_ids[{i}]");
            IncidentKey::parse(&field, s).map_err(|e| v.extend(e)).ok()
        })
        .collect()
}

/// What a transition did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: Status,
    pub to: Status,
    pub reopened: bool,
}

impl Incident {
    pub fn is_open(&self) -> bool {
        self.status.is_open()
    }

    /// What text search looks in: title and summary, case-folded.
    pub fn search_text(&self) -> String {
        super::fold_case(&format!("{}\n{}", self.title, self.summary))
    }

    /// The entity tag derived from [`Incident::version`].
    pub fn etag(&self) -> String {
        super::version::etag(self.version)
    }

    /// Trims and bounds-checks the editable fields other than the title in place (shared by
    /// create and patch; the title is checked where it is given).
    pub(crate) fn normalize_editable(&mut self, v: &mut Violations, now: DateTime<Utc>) {
        v.text("summary", &self.summary, validate::SUMMARY_MAX);
        self.commander = v.optional_text("commander", self.commander.as_deref(), validate::SHORT_TEXT_MAX);
        self.root_cause = v.optional_text("root_cause", self.root_cause.as_deref(), validate::LONG_TEXT_MAX);
        self.resolution_summary =
            v.optional_text("resolution_summary", self.resolution_summary.as_deref(), validate::LONG_TEXT_MAX);
        self.workaround.text =
            v.optional_text("workaround.text", self.workaround.text.as_deref(), validate::LONG_TEXT_MAX);
        self.cause.provider =
            v.optional_text("cause.provider", self.cause.provider.as_deref(), validate::SHORT_TEXT_MAX);
        self.cause.external_reference = v.optional_text(
            "cause.external_reference",
            self.cause.external_reference.as_deref(),
            validate::SHORT_TEXT_MAX * 5,
        );
        if let Some(n) = self.affected_customers
            && n < 0
        {
            v.add("affected_customers", "must be zero or more");
        }
        v.labels("labels", &self.labels);
        if self.affected_components.len() > validate::AFFECTED_COMPONENTS_MAX {
            v.add("affected_components", format!("must have at most {} entries", validate::AFFECTED_COMPONENTS_MAX));
        }
        for (i, c) in self.affected_components.iter().enumerate() {
            if c.status == ComponentStatus::Operational {
                v.add(
                    format!("affected_components[{i}].status"),
                    "an incident imposes degraded_performance, partial_outage, major_outage or under_maintenance",
                );
            }
            if self.affected_components[..i].iter().any(|o| o.component_id == c.component_id) {
                v.add(format!("affected_components[{i}].component_id"), "is listed twice");
            }
        }
        let horizon = now + chrono::Duration::seconds(CLOCK_SKEW_SECS);
        if self.started_at > horizon {
            v.add("started_at", "must not be in the future");
        }
        if self.detected_at > horizon {
            v.add("detected_at", "must not be in the future");
        }
        if self.started_at > self.detected_at {
            v.add("started_at", "must not be after detected_at");
        }
    }

    /// Stamps the timestamp of reaching `status`: identified_at and mitigated_at (monitoring)
    /// the first time, resolved_at on every resolve, closed_at on close.
    fn stamp(&mut self, status: Status, now: DateTime<Utc>) {
        match status {
            Status::Investigating => {}
            Status::Identified => {
                self.identified_at.get_or_insert(now);
            }
            Status::Monitoring => {
                self.mitigated_at.get_or_insert(now);
            }
            Status::Resolved => self.resolved_at = Some(now),
            Status::Closed => {
                self.closed_at.get_or_insert(now);
            }
            Status::Merged => {}
        }
    }

    /// Moves the incident to `to` if the lifecycle allows it.
    pub fn transition(&mut self, to: Status, now: DateTime<Utc>) -> Result<Transition> {
        let from = self.status;
        if !from.can_move_to(to) {
            return Err(Error::InvalidTransition {
                resource: "incident",
                from: from.as_str(),
                to: to.as_str(),
                allowed: from.allowed_targets().iter().map(|s| s.as_str()).collect(),
            });
        }
        let reopened = from == Status::Resolved && to.is_open();
        if reopened {
            self.reopen_count += 1;
            self.resolved_at = None;
        }
        self.status = to;
        self.stamp(to, now);
        self.touch(now);
        Ok(Transition { from, to, reopened })
    }

    /// Refuses a change to a merged incident: it is read-only, and says where it went.
    pub fn ensure_not_merged(&self) -> Result<()> {
        if self.status != Status::Merged {
            return Ok(());
        }
        let into = self.merged_into.map(|id| format!("incident {id}")).unwrap_or_else(|| "another incident".into());
        Err(Error::Conflict(format!(
            "incident {} was merged into {into} and is read-only; change that incident instead",
            self.reference
        )))
    }

    /// Records the first acknowledgement. Returns false (and changes nothing) when the
    /// incident was already acknowledged.
    pub fn acknowledge(&mut self, by: &str, now: DateTime<Utc>) -> Result<bool> {
        if self.acknowledged_at.is_some() {
            return Ok(false);
        }
        if !self.is_open() {
            return Err(Error::Conflict(format!(
                "incident {} is {} and was never acknowledged; only open incidents can be acknowledged",
                self.reference, self.status
            )));
        }
        self.acknowledged_at = Some(now);
        self.acknowledged_by = Some(by.to_string());
        self.touch(now);
        Ok(true)
    }

    /// Marks a change: bumps the version and updated_at.
    pub(crate) fn touch(&mut self, now: DateTime<Utc>) {
        super::version::bump(&mut self.version, &mut self.updated_at, now);
    }
}

/// Declares which incident fields a patch may change: [`EDITABLE_FIELDS`] (their names, also
/// the gRPC field-mask paths) and `Incident::editable_fields` (their values), from one list
/// that destructures every field, so a new field must be named editable or fixed here.
macro_rules! editable {
    (editable: [$($field:ident),+ $(,)?], fixed: [$($fixed:ident),+ $(,)?] $(,)?) => {
        /// The fields a patch may change, by name.
        pub const EDITABLE_FIELDS: &[&str] = &[$(stringify!($field)),+];

        impl Incident {
            /// The editable fields as JSON values, by name; used to describe what a patch changed.
            pub(crate) fn editable_fields(&self) -> Vec<(&'static str, serde_json::Value)> {
                let Incident { $($field,)+ $($fixed: _,)+ } = self;
                vec![$((stringify!($field), serde_json::to_value($field).unwrap_or_default())),+]
            }
        }
    };
}

editable! {
    editable: [
        title,
        summary,
        severity,
        impact,
        affected_components,
        affected_customers,
        eta,
        workaround,
        cause,
        commander,
        labels,
        related_incident_ids,
        root_cause,
        resolution_summary,
        started_at,
        detected_at,
    ],
    // The status moves only through transitions; the rest is the system's to set.
    fixed: [
        id,
        reference,
        status,
        reopen_count,
        acknowledged_at,
        acknowledged_by,
        identified_at,
        mitigated_at,
        resolved_at,
        closed_at,
        created_at,
        updated_at,
        version,
        merged_into,
    ],
}

/// Splits a search query (the request's `field`) into case-folded words; every word must
/// occur in [`Incident::search_text`]. A query with a NUL character is refused.
pub fn search_terms(v: &mut Violations, field: &str, query: &str) -> Vec<String> {
    v.search_text(field, query);
    query.split_whitespace().map(super::fold_case).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident(now: DateTime<Utc>) -> Incident {
        let input =
            NewIncident { title: Some("Checkout down".into()), severity: Some(Severity::Sev2), ..Default::default() };
        input.validate(Uuid::now_v7(), now).expect("valid").incident
    }

    #[test]
    fn the_lifecycle_allows_exactly_the_documented_moves() {
        use Status::*;
        // The README's lifecycle, written out on its own: any open status may move to another
        // open one or resolve; a resolved incident reopens or closes; closed is terminal.
        let allowed = |from: Status, to: Status| match (from, to) {
            (a, b) if a == b => false,
            (Investigating | Identified | Monitoring, Investigating | Identified | Monitoring | Resolved) => true,
            (Resolved, Investigating | Identified | Closed) => true,
            _ => false,
        };
        for from in Status::ALL {
            for to in Status::ALL {
                assert_eq!(from.can_move_to(*to), allowed(*from, *to), "{from} -> {to}");
            }
        }
        assert!(Closed.allowed_targets().is_empty());
        assert_eq!(Status::OPEN, [Investigating, Identified, Monitoring]);
    }

    #[test]
    fn a_forbidden_move_says_where_the_incident_may_go_and_changes_nothing() {
        let now = crate::domain::now();
        let mut i = incident(now);
        i.transition(Status::Resolved, now).unwrap();
        i.transition(Status::Closed, now).unwrap();
        let before = i.clone();
        match i.transition(Status::Investigating, now) {
            Err(Error::InvalidTransition { resource, from, to, allowed }) => {
                assert_eq!((resource, from, to), ("incident", "closed", "investigating"));
                assert!(allowed.is_empty());
            }
            other => panic!("closed -> investigating gave {other:?}"),
        }
        assert_eq!(i, before);
    }

    #[test]
    fn moves_stamp_their_milestones_and_a_reopen_clears_the_resolution() {
        let t0 = crate::domain::now();
        let at = |s: i64| t0 + chrono::Duration::seconds(s);
        let mut i = incident(t0);
        assert_eq!((i.status, i.version), (Status::Investigating, 1));
        i.transition(Status::Identified, at(1)).unwrap();
        i.transition(Status::Monitoring, at(2)).unwrap();
        i.transition(Status::Identified, at(3)).unwrap();
        assert_eq!((i.identified_at, i.mitigated_at), (Some(at(1)), Some(at(2))), "first times are kept");
        i.transition(Status::Resolved, at(4)).unwrap();
        assert_eq!(i.resolved_at, Some(at(4)));
        let t = i.transition(Status::Investigating, at(5)).unwrap();
        assert!(t.reopened);
        assert_eq!((i.reopen_count, i.resolved_at), (1, None));
        assert_eq!((i.version, i.updated_at), (6, at(5)));
    }

    #[test]
    fn acknowledging_is_once_and_only_while_open() {
        let now = crate::domain::now();
        let mut i = incident(now);
        assert!(i.acknowledge("alice", now).unwrap());
        assert!(!i.acknowledge("bob", now).unwrap(), "a second acknowledgement changes nothing");
        assert_eq!(i.acknowledged_by.as_deref(), Some("alice"));
        let mut resolved = incident(now);
        resolved.transition(Status::Resolved, now).unwrap();
        assert!(matches!(resolved.acknowledge("alice", now), Err(Error::Conflict(_))));
    }

    #[test]
    fn search_terms_are_folded_words_and_nul_is_refused() {
        let mut v = Violations::new();
        assert_eq!(search_terms(&mut v, "q", "  Checkout  EU "), ["checkout", "eu"]);
        assert!(v.finish().is_ok());
        let mut v = Violations::new();
        search_terms(&mut v, "query", "a\0b");
        assert_eq!(v.finish().unwrap_err().violations()[0].field, "query");
    }
}
