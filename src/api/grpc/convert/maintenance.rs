//! Maintenance, both ways.

use prost_types::FieldMask;

use super::{maintenance_status_to_pb, mask_paths, opt_ts, ts};
use crate::domain::maintenance::{Maintenance, MaintenancePatch, MaintenanceUpdate, NewMaintenance};
use crate::domain::validate::Violations;
use crate::domain::{Error, Result};
use crate::proto as pb;

pub fn maintenance_to_pb(m: &Maintenance) -> pb::Maintenance {
    let Maintenance {
        id,
        title,
        body,
        components,
        scheduled_for,
        scheduled_until,
        status,
        auto_start,
        auto_complete,
        started_at,
        completed_at,
        cancelled_at,
        reminded_at,
        created_at,
        updated_at,
        version,
    } = m;
    pb::Maintenance {
        id: id.to_string(),
        title: title.clone(),
        body: body.clone(),
        components: components.iter().map(|c| c.to_string()).collect(),
        scheduled_for: Some(ts(*scheduled_for)),
        scheduled_until: Some(ts(*scheduled_until)),
        status: maintenance_status_to_pb(*status),
        auto_start: Some(*auto_start),
        auto_complete: Some(*auto_complete),
        started_at: started_at.map(ts),
        completed_at: completed_at.map(ts),
        cancelled_at: cancelled_at.map(ts),
        reminded_at: reminded_at.map(ts),
        created_at: Some(ts(*created_at)),
        updated_at: Some(ts(*updated_at)),
        version: *version,
        etag: m.etag(),
    }
}

pub fn maintenance_update_to_pb(u: &MaintenanceUpdate) -> pb::MaintenanceUpdate {
    let MaintenanceUpdate { id, maintenance_id, status, body, automatic, author, created_at } = u;
    pb::MaintenanceUpdate {
        id: id.to_string(),
        maintenance_id: maintenance_id.to_string(),
        status: maintenance_status_to_pb(*status),
        body: body.clone(),
        automatic: *automatic,
        author: author.clone(),
        created_at: Some(ts(*created_at)),
    }
}

fn component_ids(v: &mut Violations, ids: &[String]) -> Vec<uuid::Uuid> {
    ids.iter()
        .enumerate()
        .filter_map(|(i, c)| match uuid::Uuid::parse_str(c) {
            Ok(id) => Some(id),
            Err(_) => {
                v.add(format!("components[{i}]"), "must be a UUID");
                None
            }
        })
        .collect()
}

pub fn new_maintenance_from_pb(m: pb::Maintenance) -> Result<NewMaintenance> {
    let mut v = Violations::new();
    let input = NewMaintenance {
        title: Some(m.title),
        body: Some(m.body),
        components: component_ids(&mut v, &m.components),
        scheduled_for: opt_ts(&mut v, "scheduled_for", &m.scheduled_for),
        scheduled_until: opt_ts(&mut v, "scheduled_until", &m.scheduled_until),
        auto_start: m.auto_start,
        auto_complete: m.auto_complete,
    };
    v.finish()?;
    Ok(input)
}

const MAINTENANCE_MASK_PATHS: &[&str] =
    &["title", "body", "components", "scheduled_for", "scheduled_until", "auto_start", "auto_complete"];

pub fn maintenance_patch_from_pb(m: pb::Maintenance, mask: Option<FieldMask>) -> Result<MaintenancePatch> {
    let paths = mask_paths(mask, MAINTENANCE_MASK_PATHS, Vec::new);
    if paths.is_empty() {
        return Err(Error::invalid("update_mask", "is required: name the fields to update"));
    }
    let mut v = Violations::new();
    let mut patch = MaintenancePatch::default();
    for path in &paths {
        match path.as_str() {
            "title" => patch.title = Some(m.title.clone()),
            "body" => patch.body = Some(m.body.clone()),
            "components" => patch.components = Some(component_ids(&mut v, &m.components)),
            "scheduled_for" => match opt_ts(&mut v, "scheduled_for", &m.scheduled_for) {
                Some(t) => patch.scheduled_for = Some(t),
                None => v.add("scheduled_for", "is required when in update_mask"),
            },
            "scheduled_until" => match opt_ts(&mut v, "scheduled_until", &m.scheduled_until) {
                Some(t) => patch.scheduled_until = Some(t),
                None => v.add("scheduled_until", "is required when in update_mask"),
            },
            "auto_start" => patch.auto_start = Some(m.auto_start.unwrap_or(false)),
            "auto_complete" => patch.auto_complete = Some(m.auto_complete.unwrap_or(false)),
            p @ ("id" | "status" | "started_at" | "completed_at" | "cancelled_at" | "reminded_at" | "created_at"
            | "updated_at" | "version" | "etag") => v.add("update_mask", format!("{p} is output only")),
            p => v.add("update_mask", format!("unknown field path {p:?}")),
        }
    }
    v.finish().map_err(|e| e.prefix_fields_except("maintenance", &["update_mask"]))?;
    Ok(patch)
}
