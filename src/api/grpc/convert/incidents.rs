//! Incidents and their timeline entries, both ways. The proto and domain messages are
//! destructured whole, so a field added to either fails to compile until it is carried.

use std::collections::BTreeMap;

use prost_types::FieldMask;

use super::{
    cause_kind_from_pb, cause_kind_to_pb, component_status_from_pb, component_status_to_pb, impact_from_pb,
    impact_to_pb, json_to_pb, mask_paths, opt_ts, severity_from_pb, severity_to_pb, status_from_pb, status_to_pb, ts,
    update_kind_to_pb, visibility_to_pb, workaround_from_pb, workaround_to_pb,
};
use crate::domain::incident::EDITABLE_FIELDS;
use crate::domain::validate::Violations;
use crate::domain::{
    AffectedComponent, Cause, CauseKind, Error, FieldChange, Incident, IncidentPatch, LabelsPatch, NewIncident, Result,
    TimelineEntry, Workaround, WorkaroundAvailability,
};
use crate::proto as pb;

pub fn incident_to_pb(incident: &Incident) -> pb::Incident {
    let etag = incident.etag();
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
        workaround: Workaround { availability, text },
        cause: Cause { kind, provider, external_reference },
        commander,
        labels,
        related_incident_ids,
        root_cause,
        resolution_summary,
        reopen_count,
        started_at,
        detected_at,
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
    } = incident;
    pb::Incident {
        id: id.to_string(),
        reference: reference.to_string(),
        title: title.clone(),
        summary: summary.clone(),
        severity: severity_to_pb(*severity),
        status: status_to_pb(*status),
        impact: impact_to_pb(*impact),
        affected_components: affected_components
            .iter()
            .map(|c| pb::AffectedComponent {
                component_id: c.component_id.to_string(),
                status: component_status_to_pb(c.status),
            })
            .collect(),
        affected_customers: *affected_customers,
        eta: eta.map(ts),
        workaround: Some(pb::Workaround { availability: workaround_to_pb(*availability), text: text.clone() }),
        cause: Some(pb::Cause {
            kind: cause_kind_to_pb(*kind),
            provider: provider.clone(),
            external_reference: external_reference.clone(),
        }),
        commander: commander.clone(),
        labels: labels.clone(),
        related_incident_ids: related_incident_ids.iter().map(|id| id.to_string()).collect(),
        root_cause: root_cause.clone(),
        resolution_summary: resolution_summary.clone(),
        reopen_count: *reopen_count,
        started_at: Some(ts(*started_at)),
        detected_at: Some(ts(*detected_at)),
        acknowledged_at: acknowledged_at.map(ts),
        acknowledged_by: acknowledged_by.clone(),
        identified_at: identified_at.map(ts),
        mitigated_at: mitigated_at.map(ts),
        resolved_at: resolved_at.map(ts),
        closed_at: closed_at.map(ts),
        created_at: Some(ts(*created_at)),
        updated_at: Some(ts(*updated_at)),
        version: *version,
        etag,
        merged_into: merged_into.map(|m| m.to_string()).unwrap_or_default(),
    }
}

fn affected_components(v: &mut Violations, list: &[pb::AffectedComponent]) -> Vec<AffectedComponent> {
    list.iter()
        .enumerate()
        .filter_map(|(n, c)| {
            let field = format!("affected_components[{n}]");
            let id = crate::domain::ids::parse_uuid(&format!("{field}.component_id"), &c.component_id)
                .map_err(|e| v.extend(e).ok())
                .ok();
            let status = component_status_from_pb(v, &format!("{field}.status"), c.status);
            if status.is_none() && c.status == 0 {
                v.add(format!("{field}.status"), "is required");
            }
            Some(AffectedComponent { component_id: id?, status: status? })
        })
        .collect()
}

fn workaround(v: &mut Violations, w: Option<&pb::Workaround>) -> Workaround {
    let Some(w) = w else { return Workaround::default() };
    Workaround {
        availability: workaround_from_pb(v, "workaround.availability", w.availability)
            .unwrap_or(WorkaroundAvailability::Unknown),
        text: w.text.clone(),
    }
}

fn cause(v: &mut Violations, c: Option<&pb::Cause>) -> Cause {
    let Some(c) = c else { return Cause::default() };
    Cause {
        kind: cause_kind_from_pb(v, "cause.kind", c.kind).unwrap_or(CauseKind::Unknown),
        provider: c.provider.clone(),
        external_reference: c.external_reference.clone(),
    }
}

/// The create input from a protobuf incident; output-only fields are ignored.
pub fn new_incident_from_pb(incident: pb::Incident) -> Result<NewIncident> {
    let pb::Incident {
        title,
        summary,
        severity,
        status,
        impact,
        affected_components: affected,
        affected_customers,
        eta,
        workaround: workaround_in,
        cause: cause_in,
        commander,
        labels,
        related_incident_ids,
        root_cause,
        resolution_summary,
        started_at,
        detected_at,
        // Output only.
        id: _,
        reference: _,
        reopen_count: _,
        acknowledged_at: _,
        acknowledged_by: _,
        identified_at: _,
        mitigated_at: _,
        resolved_at: _,
        closed_at: _,
        created_at: _,
        updated_at: _,
        version: _,
        etag: _,
        merged_into: _,
    } = incident;
    let mut v = Violations::new();
    let input = NewIncident {
        title: Some(title),
        summary: Some(summary),
        severity: severity_from_pb(&mut v, "severity", severity),
        status: status_from_pb(&mut v, "status", status),
        impact: impact_from_pb(&mut v, "impact", impact),
        affected_components: affected_components(&mut v, &affected),
        affected_customers,
        eta: opt_ts(&mut v, "eta", &eta),
        workaround: Some(workaround(&mut v, workaround_in.as_ref())),
        cause: Some(cause(&mut v, cause_in.as_ref())),
        commander,
        labels,
        related_incidents: related_incident_ids,
        root_cause,
        resolution_summary,
        started_at: opt_ts(&mut v, "started_at", &started_at),
        detected_at: opt_ts(&mut v, "detected_at", &detected_at),
    };
    v.finish()?;
    Ok(input)
}

const INCIDENT_OUTPUT_ONLY: &[&str] = &[
    "id",
    "reference",
    "reopen_count",
    "acknowledged_at",
    "acknowledged_by",
    "identified_at",
    "mitigated_at",
    "resolved_at",
    "closed_at",
    "created_at",
    "updated_at",
    "version",
    "etag",
    "merged_into",
];

/// The editable fields an update without a mask sets: those not at their protobuf default.
fn populated_paths(incident: &pb::Incident) -> Vec<String> {
    let pb::Incident {
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
        // Not editable here (the status moves through transitions) or output only.
        status: _,
        id: _,
        reference: _,
        reopen_count: _,
        acknowledged_at: _,
        acknowledged_by: _,
        identified_at: _,
        mitigated_at: _,
        resolved_at: _,
        closed_at: _,
        created_at: _,
        updated_at: _,
        version: _,
        etag: _,
        merged_into: _,
    } = incident;
    [
        ("title", !title.is_empty()),
        ("summary", !summary.is_empty()),
        ("severity", *severity != 0),
        ("impact", *impact != 0),
        ("affected_components", !affected_components.is_empty()),
        ("affected_customers", affected_customers.is_some()),
        ("eta", eta.is_some()),
        ("workaround", workaround.is_some()),
        ("cause", cause.is_some()),
        ("commander", commander.is_some()),
        ("labels", !labels.is_empty()),
        ("related_incident_ids", !related_incident_ids.is_empty()),
        ("root_cause", root_cause.is_some()),
        ("resolution_summary", resolution_summary.is_some()),
        ("started_at", started_at.is_some()),
        ("detected_at", detected_at.is_some()),
    ]
    .into_iter()
    .filter(|(_, set)| *set)
    .map(|(path, _)| path.to_string())
    .collect()
}

/// The patch an `UpdateIncident` call describes.
pub fn incident_patch_from_pb(i: pb::Incident, mask: Option<FieldMask>) -> Result<IncidentPatch> {
    let paths = mask_paths(mask, EDITABLE_FIELDS, || populated_paths(&i));
    if paths.is_empty() {
        return Err(Error::invalid("update_mask", "names no field to update"));
    }
    let mut v = Violations::new();
    let mut patch = IncidentPatch::default();
    for path in &paths {
        let path = path.as_str();
        match path {
            "title" => patch.title = Some(i.title.clone()),
            "summary" => patch.summary = Some(i.summary.clone()),
            "severity" => {
                patch.severity = severity_from_pb(&mut v, "severity", i.severity);
                if i.severity == 0 {
                    v.add("severity", "cannot be unset");
                }
            }
            "impact" => {
                patch.impact = impact_from_pb(&mut v, "impact", i.impact);
                if i.impact == 0 {
                    v.add("impact", "cannot be unset");
                }
            }
            "affected_components" => {
                patch.affected_components = Some(affected_components(&mut v, &i.affected_components))
            }
            "affected_customers" => patch.affected_customers = Some(i.affected_customers),
            "eta" => patch.eta = Some(opt_ts(&mut v, "eta", &i.eta)),
            "workaround" => {
                let w = workaround(&mut v, i.workaround.as_ref());
                patch.workaround_availability = Some(w.availability);
                patch.workaround_text = Some(w.text);
            }
            "workaround.availability" => {
                patch.workaround_availability = Some(workaround(&mut v, i.workaround.as_ref()).availability)
            }
            "workaround.text" => patch.workaround_text = Some(workaround(&mut v, i.workaround.as_ref()).text),
            "cause" => {
                let c = cause(&mut v, i.cause.as_ref());
                patch.cause_kind = Some(c.kind);
                patch.cause_provider = Some(c.provider);
                patch.cause_external_reference = Some(c.external_reference);
            }
            "cause.kind" => patch.cause_kind = Some(cause(&mut v, i.cause.as_ref()).kind),
            "cause.provider" => patch.cause_provider = Some(cause(&mut v, i.cause.as_ref()).provider),
            "cause.external_reference" => {
                patch.cause_external_reference = Some(cause(&mut v, i.cause.as_ref()).external_reference)
            }
            "commander" => patch.commander = Some(i.commander.clone()),
            "labels" => patch.labels = Some(LabelsPatch::Replace(i.labels.clone())),
            "related_incident_ids" => patch.related_incidents = Some(i.related_incident_ids.clone()),
            "root_cause" => patch.root_cause = Some(i.root_cause.clone()),
            "resolution_summary" => patch.resolution_summary = Some(i.resolution_summary.clone()),
            "started_at" | "detected_at" => {
                let t = if path == "started_at" { &i.started_at } else { &i.detected_at };
                let value = opt_ts(&mut v, path, t);
                if t.is_none() {
                    v.add(path, "cannot be cleared");
                }
                if path == "started_at" {
                    patch.started_at = value;
                } else {
                    patch.detected_at = value;
                }
            }
            "status" => v.add("update_mask", "status cannot be updated here; use TransitionIncident"),
            p if p.starts_with("labels.") => {
                let key = &p["labels.".len()..];
                if !matches!(patch.labels, Some(LabelsPatch::Merge(_))) {
                    patch.labels = Some(LabelsPatch::Merge(BTreeMap::new()));
                }
                if let Some(LabelsPatch::Merge(m)) = &mut patch.labels {
                    m.insert(key.to_string(), i.labels.get(key).cloned());
                }
            }
            p if INCIDENT_OUTPUT_ONLY.contains(&p) => v.add("update_mask", format!("{p} is output only")),
            p => v.add("update_mask", format!("unknown field path {p:?}")),
        }
    }
    v.finish().map_err(|e| e.prefix_fields_except("incident", &["update_mask"]))?;
    Ok(patch)
}

pub fn entry_to_pb(e: &TimelineEntry) -> pb::IncidentUpdate {
    pb::IncidentUpdate {
        id: e.id.to_string(),
        incident_id: e.incident_id.to_string(),
        kind: update_kind_to_pb(e.kind),
        body: e.body.clone(),
        visibility: visibility_to_pb(e.visibility),
        status_from: e.status_from.map(status_to_pb).unwrap_or_default(),
        status_to: e.status_to.map(status_to_pb).unwrap_or_default(),
        changes: e.changes.iter().map(change_to_pb).collect(),
        author: e.author.clone(),
        created_at: Some(ts(e.created_at)),
    }
}

fn change_to_pb(c: &FieldChange) -> pb::FieldChange {
    pb::FieldChange {
        field: c.field.clone(),
        old_value: Some(json_to_pb(&c.old_value)),
        new_value: Some(json_to_pb(&c.new_value)),
    }
}
