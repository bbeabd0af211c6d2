//! The request and response bodies of `/v1/incidents`, and their conversion to the
//! service's inputs (each destructured whole, so a new field fails to compile until it is
//! carried through).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::rest::extract::{Obj, not_null, nullable};
use crate::api::rest::problem::ApiError;
use crate::domain::validate::Violations;
use crate::domain::{
    AffectedComponent, Cause, CauseKind, Impact, Incident, IncidentPatch, LabelsPatch, NewIncident, Severity, Status,
    TimelineEntry, Visibility, Workaround, WorkaroundAvailability,
};

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkaroundIn {
    /// Defaults to `unknown`.
    pub availability: Option<WorkaroundAvailability>,
    pub text: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CauseIn {
    /// Defaults to `unknown`.
    pub kind: Option<CauseKind>,
    pub provider: Option<String>,
    pub external_reference: Option<String>,
}

/// A new incident. Only `title` and `severity` are required.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentIn {
    /// 1-200 characters, trimmed.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 200)]
    pub title: Option<String>,
    /// Up to 10,000 characters.
    #[schema(max_length = 10000)]
    pub summary: Option<String>,
    #[schema(value_type = Severity, required = true)]
    pub severity: Option<Severity>,
    /// An open status; defaults to `investigating`.
    pub status: Option<Status>,
    /// Defaults to `none`.
    pub impact: Option<Impact>,
    #[serde(default)]
    #[schema(value_type = Vec<AffectedComponent>)]
    pub affected_components: Vec<Obj<AffectedComponent>>,
    /// Estimated number of affected customers (>= 0).
    #[serde(default, deserialize_with = "crate::api::rest::extract::integer")]
    #[schema(minimum = 0)]
    pub affected_customers: Option<i64>,
    /// Expected resolution time.
    pub eta: Option<DateTime<Utc>>,
    #[schema(value_type = Option<WorkaroundIn>)]
    pub workaround: Option<Obj<WorkaroundIn>>,
    #[schema(value_type = Option<CauseIn>)]
    pub cause: Option<Obj<CauseIn>>,
    pub commander: Option<String>,
    /// Up to 32 entries; keys 1-63 characters of `A-Z a-z 0-9 . _ / -`, values up to 255.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Ids or references (`INC-7`) of related incidents.
    #[serde(default)]
    pub related_incident_ids: Vec<String>,
    /// Internal.
    pub root_cause: Option<String>,
    pub resolution_summary: Option<String>,
    /// When impact began; defaults to `detected_at`.
    pub started_at: Option<DateTime<Utc>>,
    /// Defaults to now.
    pub detected_at: Option<DateTime<Utc>>,
}

impl From<IncidentIn> for NewIncident {
    fn from(input: IncidentIn) -> Self {
        let IncidentIn {
            title,
            summary,
            severity,
            status,
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
        } = input;
        NewIncident {
            title,
            summary,
            severity,
            status,
            impact,
            affected_components: affected_components.into_iter().map(|Obj(c)| c).collect(),
            affected_customers,
            eta,
            workaround: workaround.map(|Obj(WorkaroundIn { availability, text })| Workaround {
                availability: availability.unwrap_or(WorkaroundAvailability::Unknown),
                text,
            }),
            cause: cause.map(|Obj(CauseIn { kind, provider, external_reference })| Cause {
                kind: kind.unwrap_or(CauseKind::Unknown),
                provider,
                external_reference,
            }),
            commander,
            labels,
            related_incidents: related_incident_ids,
            root_cause,
            resolution_summary,
            started_at,
            detected_at,
        }
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkaroundPatchIn {
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<WorkaroundAvailability>)]
    pub availability: Option<Option<WorkaroundAvailability>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub text: Option<Option<String>>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CausePatchIn {
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<CauseKind>)]
    pub kind: Option<Option<CauseKind>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub provider: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub external_reference: Option<Option<String>>,
}

/// A JSON merge patch (RFC 7396) of the editable fields: absent fields stay, `null` clears.
/// `labels` merges key by key (a `null` value removes the key). The status is not editable
/// here: use the transitions endpoint.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentPatchIn {
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = String, required = false, min_length = 1, max_length = 200)]
    pub title: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub summary: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Severity, required = false)]
    pub severity: Option<Option<Severity>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Impact, required = false)]
    pub impact: Option<Option<Impact>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Vec<AffectedComponent>>)]
    pub affected_components: Option<Option<Vec<Obj<AffectedComponent>>>>,
    #[serde(default, deserialize_with = "crate::api::rest::extract::nullable_integer")]
    #[schema(value_type = Option<i64>, minimum = 0)]
    pub affected_customers: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub eta: Option<Option<DateTime<Utc>>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<WorkaroundPatchIn>)]
    pub workaround: Option<Option<Obj<WorkaroundPatchIn>>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<CausePatchIn>)]
    pub cause: Option<Option<Obj<CausePatchIn>>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub commander: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<BTreeMap<String, Option<String>>>)]
    pub labels: Option<Option<BTreeMap<String, Option<String>>>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Vec<String>>)]
    pub related_incident_ids: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub root_cause: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub resolution_summary: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = DateTime<Utc>, required = false)]
    pub started_at: Option<Option<DateTime<Utc>>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = DateTime<Utc>, required = false)]
    pub detected_at: Option<Option<DateTime<Utc>>>,
}

impl IncidentPatchIn {
    pub fn into_patch(self) -> Result<IncidentPatch, ApiError> {
        let IncidentPatchIn {
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
        } = self;
        let mut v = Violations::new();
        // `null` resets a whole workaround or cause to unknown; a nested field sets one part.
        let (workaround_availability, workaround_text) = match workaround {
            Some(None) => (Some(WorkaroundAvailability::Unknown), Some(None)),
            Some(Some(Obj(WorkaroundPatchIn { availability, text }))) => {
                (availability.map(|a| a.unwrap_or(WorkaroundAvailability::Unknown)), text)
            }
            None => (None, None),
        };
        let (cause_kind, cause_provider, cause_external_reference) = match cause {
            Some(None) => (Some(CauseKind::Unknown), Some(None), Some(None)),
            Some(Some(Obj(CausePatchIn { kind, provider, external_reference }))) => {
                (kind.map(|k| k.unwrap_or(CauseKind::Unknown)), provider, external_reference)
            }
            None => (None, None, None),
        };
        let patch = IncidentPatch {
            title: not_null(&mut v, "title", title),
            summary: summary.map(Option::unwrap_or_default),
            severity: not_null(&mut v, "severity", severity),
            impact: not_null(&mut v, "impact", impact),
            affected_components: affected_components
                .map(|list| list.unwrap_or_default().into_iter().map(|Obj(c)| c).collect()),
            affected_customers,
            eta,
            workaround_availability,
            workaround_text,
            cause_kind,
            cause_provider,
            cause_external_reference,
            commander,
            labels: labels.map(|l| match l {
                None => LabelsPatch::Replace(BTreeMap::new()),
                Some(m) => LabelsPatch::Merge(m),
            }),
            related_incidents: related_incident_ids.map(Option::unwrap_or_default),
            root_cause,
            resolution_summary,
            started_at: not_null(&mut v, "started_at", started_at),
            detected_at: not_null(&mut v, "detected_at", detected_at),
        };
        v.finish()?;
        Ok(patch)
    }
}

/// A lifecycle move.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitionIn {
    #[schema(value_type = Status, required = true)]
    pub to: Option<Status>,
    /// Recorded on the timeline entry.
    pub message: Option<String>,
    /// Visibility of the timeline entry; defaults to `internal`.
    pub visibility: Option<Visibility>,
    /// Who made the move; defaults to the API key's name.
    pub actor: Option<String>,
}

/// An acknowledgement. The body is optional.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcknowledgeIn {
    /// Who acknowledged; defaults to the API key's name.
    pub by: Option<String>,
}

/// A timeline update.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateIn {
    /// 1-10,000 characters.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 10000)]
    pub body: Option<String>,
    /// Defaults to `internal`: say `public` for customer-facing updates.
    pub visibility: Option<Visibility>,
    /// Optional status change riding along with the update.
    pub status: Option<Status>,
    /// Defaults to the API key's name.
    pub author: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentList {
    pub incidents: Vec<Incident>,
    /// Absent on the last page.
    pub next_page_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UpdateList {
    pub updates: Vec<TimelineEntry>,
    /// Absent on the last page.
    pub next_page_token: Option<String>,
}

/// The posted update and the incident after it (its status may have changed).
#[derive(Debug, Serialize, ToSchema)]
pub struct UpdateCreated {
    pub update: TimelineEntry,
    pub incident: Incident,
}

/// The incident a route is about.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct IncidentPath {
    /// Incident id or reference (INC-42)
    #[param(
        pattern = r"^([Ii][Nn][Cc]-[1-9][0-9]{0,17}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
    )]
    pub id: String,
}

/// Filters and paging for listing incidents.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListIncidentsParams {
    /// Any of these statuses (repeat the parameter, or separate with commas).
    status: Option<Vec<Status>>,
    /// Any of these severities (repeatable).
    severity: Option<Vec<Severity>>,
    /// Only incidents affecting this component id.
    component: Option<uuid::Uuid>,
    /// `true`: only open incidents; `false`: only resolved or closed ones.
    open: Option<bool>,
    /// Words that must all appear in the title or summary (case-insensitive).
    q: Option<String>,
    /// Created strictly after this time (RFC 3339).
    created_after: Option<DateTime<Utc>>,
    /// Created strictly before this time (RFC 3339).
    created_before: Option<DateTime<Utc>>,
    /// 1-500, default 50.
    page_size: Option<u32>,
    /// `next_page_token` of the previous page.
    page_token: Option<String>,
}

/// Paging and filter for an incident's timeline.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListUpdatesParams {
    /// Only entries of this visibility.
    visibility: Option<Visibility>,
    /// 1-500, default 50.
    page_size: Option<u32>,
    /// `next_page_token` of the previous page.
    page_token: Option<String>,
}
