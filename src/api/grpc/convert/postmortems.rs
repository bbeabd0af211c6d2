//! Postmortems, follow-up actions, links and analytics, both ways. Messages are destructured
//! whole, so a field added to either side fails to compile until it is carried.

use chrono::NaiveDate;
use prost_types::FieldMask;

use super::{
    action_priority_from_pb, action_priority_to_pb, action_status_from_pb, action_status_to_pb, cause_kind_to_pb,
    link_kind_to_pb, mask_paths, postmortem_status_to_pb, recurrence_risk_from_pb, recurrence_risk_to_pb,
    root_cause_from_pb, root_cause_to_pb, severity_to_pb, status_to_pb, ts,
};
use crate::domain::action::{Action, ActionPatch, NewAction, parse_due_date};
use crate::domain::link::Link;
use crate::domain::postmortem::{NewPostmortem, Postmortem, PostmortemPatch};
use crate::domain::stats::{Durations, Stats};
use crate::domain::validate::Violations;
use crate::domain::{Error, Result};
use crate::proto as pb;

pub fn postmortem_to_pb(p: &Postmortem) -> pb::Postmortem {
    let etag = p.etag();
    let Postmortem {
        incident_id,
        status,
        body,
        public_summary,
        root_cause_category,
        contributing_factors,
        recurrence_risk,
        recurrence_reason,
        third_party,
        author,
        published_at,
        created_at,
        updated_at,
        version,
    } = p;
    pb::Postmortem {
        incident_id: incident_id.to_string(),
        status: postmortem_status_to_pb(*status),
        body: body.clone(),
        public_summary: public_summary.clone(),
        root_cause_category: root_cause_to_pb(*root_cause_category),
        contributing_factors: contributing_factors.clone(),
        recurrence_risk: recurrence_risk.map(recurrence_risk_to_pb).unwrap_or_default(),
        recurrence_reason: recurrence_reason.clone(),
        third_party: Some(*third_party),
        author: author.clone(),
        published_at: published_at.map(ts),
        created_at: Some(ts(*created_at)),
        updated_at: Some(ts(*updated_at)),
        version: *version,
        etag,
    }
}

pub fn new_postmortem_from_pb(p: pb::Postmortem) -> Result<NewPostmortem> {
    let pb::Postmortem {
        body,
        public_summary,
        root_cause_category,
        contributing_factors,
        recurrence_risk,
        recurrence_reason,
        third_party,
        author,
        // Output only.
        incident_id: _,
        status: _,
        published_at: _,
        created_at: _,
        updated_at: _,
        version: _,
        etag: _,
    } = p;
    let mut v = Violations::new();
    let input = NewPostmortem {
        body: Some(body),
        public_summary: Some(public_summary),
        root_cause_category: root_cause_from_pb(&mut v, "root_cause_category", root_cause_category),
        contributing_factors,
        recurrence_risk: recurrence_risk_from_pb(&mut v, "recurrence_risk", recurrence_risk),
        recurrence_reason,
        third_party,
        author: crate::api::grpc::non_empty(author),
    };
    v.finish()?;
    Ok(input)
}

const POSTMORTEM_MASK_PATHS: &[&str] = &[
    "body",
    "public_summary",
    "root_cause_category",
    "contributing_factors",
    "recurrence_risk",
    "recurrence_reason",
    "third_party",
];

/// The fields an update without a mask sets: those not at their protobuf default.
fn populated_postmortem_paths(p: &pb::Postmortem) -> Vec<String> {
    [
        ("body", !p.body.is_empty()),
        ("public_summary", !p.public_summary.is_empty()),
        ("root_cause_category", p.root_cause_category != 0),
        ("contributing_factors", !p.contributing_factors.is_empty()),
        ("recurrence_risk", p.recurrence_risk != 0),
        ("recurrence_reason", p.recurrence_reason.is_some()),
        ("third_party", p.third_party.is_some()),
    ]
    .into_iter()
    .filter(|(_, set)| *set)
    .map(|(path, _)| path.to_string())
    .collect()
}

pub fn postmortem_patch_from_pb(p: pb::Postmortem, mask: Option<FieldMask>) -> Result<PostmortemPatch> {
    let paths = mask_paths(mask, POSTMORTEM_MASK_PATHS, || populated_postmortem_paths(&p));
    if paths.is_empty() {
        return Err(Error::invalid("update_mask", "names no field to update"));
    }
    let mut v = Violations::new();
    let mut patch = PostmortemPatch::default();
    for path in &paths {
        match path.as_str() {
            "body" => patch.body = Some(p.body.clone()),
            "public_summary" => patch.public_summary = Some(p.public_summary.clone()),
            "root_cause_category" => {
                patch.root_cause_category = root_cause_from_pb(&mut v, "root_cause_category", p.root_cause_category);
                if p.root_cause_category == 0 {
                    v.add("root_cause_category", "cannot be unset (UNKNOWN says it is not known)");
                }
            }
            "contributing_factors" => patch.contributing_factors = Some(p.contributing_factors.clone()),
            "recurrence_risk" => {
                patch.recurrence_risk = Some(recurrence_risk_from_pb(&mut v, "recurrence_risk", p.recurrence_risk))
            }
            "recurrence_reason" => patch.recurrence_reason = Some(p.recurrence_reason.clone()),
            "third_party" => patch.third_party = Some(p.third_party.unwrap_or(false)),
            "status" => v.add("update_mask", "status cannot be updated here; use TransitionPostmortem"),
            p @ ("incident_id" | "author" | "published_at" | "created_at" | "updated_at" | "version" | "etag") => {
                v.add("update_mask", format!("{p} is output only"))
            }
            p => v.add("update_mask", format!("unknown field path {p:?}")),
        }
    }
    v.finish().map_err(|e| e.prefix_fields_except("postmortem", &["update_mask"]))?;
    Ok(patch)
}

pub fn action_to_pb(a: &Action) -> pb::Action {
    let etag = a.etag();
    let Action {
        id,
        incident_id,
        title,
        owner,
        due_date,
        priority,
        status,
        tracker,
        completed_at,
        overdue,
        created_at,
        updated_at,
        version,
    } = a;
    pb::Action {
        id: id.to_string(),
        incident_id: incident_id.to_string(),
        title: title.clone(),
        owner: owner.clone(),
        due_date: due_date.map(|d| d.to_string()).unwrap_or_default(),
        priority: action_priority_to_pb(*priority),
        status: action_status_to_pb(*status),
        tracker: tracker.clone(),
        completed_at: completed_at.map(ts),
        overdue: *overdue,
        created_at: Some(ts(*created_at)),
        updated_at: Some(ts(*updated_at)),
        version: *version,
        etag,
    }
}

/// A due date: `YYYY-MM-DD`, empty for none.
fn due_date(v: &mut Violations, raw: &str) -> Option<NaiveDate> {
    if raw.trim().is_empty() {
        return None;
    }
    parse_due_date(raw).map_err(|m| v.add("due_date", m)).ok()
}

/// The create input; `incident_id` is returned apart (the service looks it up).
pub fn new_action_from_pb(a: pb::Action) -> Result<(String, NewAction)> {
    let pb::Action {
        incident_id,
        title,
        owner,
        due_date: due,
        priority,
        status,
        tracker,
        // Output only.
        id: _,
        completed_at: _,
        overdue: _,
        created_at: _,
        updated_at: _,
        version: _,
        etag: _,
    } = a;
    let mut v = Violations::new();
    let input = NewAction {
        title: Some(title),
        owner,
        due_date: due_date(&mut v, &due),
        priority: action_priority_from_pb(&mut v, "priority", priority),
        status: action_status_from_pb(&mut v, "status", status),
        tracker,
    };
    v.finish()?;
    Ok((incident_id, input))
}

const ACTION_MASK_PATHS: &[&str] = &["title", "owner", "due_date", "priority", "status", "tracker"];

pub fn action_patch_from_pb(a: pb::Action, mask: Option<FieldMask>) -> Result<ActionPatch> {
    let populated = || {
        [
            ("title", !a.title.is_empty()),
            ("owner", a.owner.is_some()),
            ("due_date", !a.due_date.is_empty()),
            ("priority", a.priority != 0),
            ("status", a.status != 0),
            ("tracker", a.tracker.is_some()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(path, _)| path.to_string())
        .collect()
    };
    let paths = mask_paths(mask, ACTION_MASK_PATHS, populated);
    if paths.is_empty() {
        return Err(Error::invalid("update_mask", "names no field to update"));
    }
    let mut v = Violations::new();
    let mut patch = ActionPatch::default();
    for path in &paths {
        match path.as_str() {
            "title" => patch.title = Some(a.title.clone()),
            "owner" => patch.owner = Some(a.owner.clone()),
            "due_date" => patch.due_date = Some(due_date(&mut v, &a.due_date)),
            "priority" => {
                patch.priority = action_priority_from_pb(&mut v, "priority", a.priority);
                if a.priority == 0 {
                    v.add("priority", "cannot be unset");
                }
            }
            "status" => {
                patch.status = action_status_from_pb(&mut v, "status", a.status);
                if a.status == 0 {
                    v.add("status", "cannot be unset");
                }
            }
            "tracker" => patch.tracker = Some(a.tracker.clone()),
            p @ ("id" | "incident_id" | "completed_at" | "overdue" | "created_at" | "updated_at" | "version"
            | "etag") => v.add("update_mask", format!("{p} is output only")),
            p => v.add("update_mask", format!("unknown field path {p:?}")),
        }
    }
    v.finish().map_err(|e| e.prefix_fields_except("action", &["update_mask"]))?;
    Ok(patch)
}

pub fn link_to_pb(l: &Link) -> pb::IncidentLink {
    let Link { id, kind, incident, created_by, created_at } = l;
    pb::IncidentLink {
        id: id.to_string(),
        kind: link_kind_to_pb(*kind),
        incident: Some(pb::LinkedIncident {
            id: incident.id.to_string(),
            reference: incident.reference.to_string(),
            title: incident.title.clone(),
            status: status_to_pb(incident.status),
        }),
        created_by: created_by.clone(),
        created_at: Some(ts(*created_at)),
    }
}

fn durations_to_pb(d: &Durations) -> pb::Durations {
    let Durations { count, mean_seconds, p50_seconds, p90_seconds } = *d;
    pb::Durations { count, mean_seconds, p50_seconds, p90_seconds }
}

pub fn stats_to_pb(s: &Stats) -> pb::GetStatsResponse {
    let Stats {
        from,
        to,
        time_zone,
        incidents,
        mtta,
        mttr,
        reopened,
        reopen_rate,
        by_severity,
        by_component,
        by_month,
        by_cause_kind,
        by_provider,
        by_root_cause_category,
        actions,
    } = s;
    pb::GetStatsResponse {
        from: Some(ts(*from)),
        to: Some(ts(*to)),
        time_zone: time_zone.clone(),
        incidents: *incidents,
        mtta: Some(durations_to_pb(mtta)),
        mttr: Some(durations_to_pb(mttr)),
        reopened: *reopened,
        reopen_rate: *reopen_rate,
        by_severity: by_severity
            .iter()
            .map(|g| pb::SeverityStats {
                severity: severity_to_pb(g.severity),
                incidents: g.incidents,
                mtta: Some(durations_to_pb(&g.mtta)),
                mttr: Some(durations_to_pb(&g.mttr)),
            })
            .collect(),
        by_component: by_component
            .iter()
            .map(|g| pb::ComponentStats {
                component_id: g.component_id.to_string(),
                name: g.name.clone(),
                incidents: g.incidents,
                mtta: Some(durations_to_pb(&g.mtta)),
                mttr: Some(durations_to_pb(&g.mttr)),
            })
            .collect(),
        by_month: by_month
            .iter()
            .map(|g| pb::MonthStats {
                month: g.month.clone(),
                incidents: g.incidents,
                mtta: Some(durations_to_pb(&g.mtta)),
                mttr: Some(durations_to_pb(&g.mttr)),
            })
            .collect(),
        by_cause_kind: by_cause_kind
            .iter()
            .map(|c| pb::CauseKindCount { cause_kind: cause_kind_to_pb(c.cause_kind), incidents: c.incidents })
            .collect(),
        by_provider: by_provider
            .iter()
            .map(|p| pb::ProviderCount { provider: p.provider.clone(), incidents: p.incidents })
            .collect(),
        by_root_cause_category: by_root_cause_category
            .iter()
            .map(|c| pb::RootCauseCount {
                root_cause_category: root_cause_to_pb(c.root_cause_category),
                incidents: c.incidents,
            })
            .collect(),
        actions: Some(pb::ActionCounts {
            open: actions.open,
            overdue: actions.overdue,
            done: actions.done,
            wont_do: actions.wont_do,
        }),
    }
}
