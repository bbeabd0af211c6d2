//! Components, both ways.

use prost_types::FieldMask;

use super::{component_status_from_pb, component_status_to_pb, mask_paths, ts};
use crate::domain::history::{StatusChange, Uptime};
use crate::domain::validate::Violations;
use crate::domain::{Component, ComponentPatch, Error, NewComponent, Result};
use crate::proto as pb;

pub fn component_to_pb(c: &Component) -> pb::Component {
    pb::Component {
        id: c.id.to_string(),
        name: c.name.clone(),
        description: c.description.clone(),
        group: c.group.clone(),
        position: c.position,
        status: component_status_to_pb(c.status),
        effective_status: component_status_to_pb(c.effective_status),
        created_at: Some(ts(c.created_at)),
        updated_at: Some(ts(c.updated_at)),
        version: c.version,
        etag: c.etag(),
    }
}

pub fn new_component_from_pb(c: pb::Component) -> Result<NewComponent> {
    let mut v = Violations::new();
    let input = NewComponent {
        name: Some(c.name),
        description: Some(c.description),
        group: c.group,
        position: Some(c.position),
        status: component_status_from_pb(&mut v, "status", c.status),
    };
    v.finish()?;
    Ok(input)
}

const COMPONENT_MASK_PATHS: &[&str] = &["name", "description", "group", "position", "status"];

pub fn component_patch_from_pb(c: pb::Component, mask: Option<FieldMask>) -> Result<ComponentPatch> {
    let paths = mask_paths(mask, COMPONENT_MASK_PATHS, || {
        let mut p = Vec::new();
        if !c.name.is_empty() {
            p.push("name".to_string());
        }
        if !c.description.is_empty() {
            p.push("description".to_string());
        }
        if c.group.is_some() {
            p.push("group".to_string());
        }
        if c.position != 0 {
            p.push("position".to_string());
        }
        if c.status != 0 {
            p.push("status".to_string());
        }
        p
    });
    if paths.is_empty() {
        return Err(Error::invalid("update_mask", "names no field to update"));
    }
    let mut v = Violations::new();
    let mut patch = ComponentPatch::default();
    for path in &paths {
        match path.as_str() {
            "name" => patch.name = Some(c.name.clone()),
            "description" => patch.description = Some(c.description.clone()),
            "group" => patch.group = Some(c.group.clone()),
            "position" => patch.position = Some(c.position),
            "status" => {
                patch.status = component_status_from_pb(&mut v, "status", c.status);
                if c.status == 0 {
                    v.add("status", "cannot be unset");
                }
            }
            p @ ("id" | "effective_status" | "created_at" | "updated_at" | "version" | "etag") => {
                v.add("update_mask", format!("{p} is output only"))
            }
            p => v.add("update_mask", format!("unknown field path {p:?}")),
        }
    }
    v.finish().map_err(|e| e.prefix_fields_except("component", &["update_mask"]))?;
    Ok(patch)
}

pub fn status_change_to_pb(c: &StatusChange) -> pb::ComponentStatusChange {
    let StatusChange { id, component_id, changed_at, from_status, to_status, incident_id, maintenance_id } = c;
    pb::ComponentStatusChange {
        id: id.to_string(),
        component_id: component_id.to_string(),
        changed_at: Some(ts(*changed_at)),
        from_status: component_status_to_pb(*from_status),
        to_status: component_status_to_pb(*to_status),
        incident_id: incident_id.map(|i| i.to_string()).unwrap_or_default(),
        maintenance_id: maintenance_id.map(|i| i.to_string()).unwrap_or_default(),
    }
}

pub fn uptime_to_pb(u: &Uptime) -> pb::ComponentUptime {
    let Uptime { component_id, from, to, time_zone, uptime_percent, days } = u;
    pb::ComponentUptime {
        component_id: component_id.to_string(),
        from: Some(ts(*from)),
        to: Some(ts(*to)),
        time_zone: time_zone.clone(),
        uptime_percent: *uptime_percent,
        days: days
            .iter()
            .map(|d| pb::UptimeDay {
                date: d.date.to_string(),
                uptime_percent: d.uptime_percent,
                worst_status: component_status_to_pb(d.worst_status),
                incident_ids: d.incident_ids.iter().map(|i| i.to_string()).collect(),
            })
            .collect(),
    }
}
