//! Integrations and the alerts they receive, both ways.

use prost_types::FieldMask;
use uuid::Uuid;

use super::{
    alert_status_to_pb, component_status_from_pb, component_status_to_pb, grouping_from_pb, grouping_to_pb,
    integration_kind_from_pb, integration_kind_to_pb, json_to_pb, mask_paths, severity_from_pb, severity_to_pb, ts,
};
use crate::domain::alert::Alert;
use crate::domain::integration::{Integration, IntegrationPatch, LabelRule, NewIntegration};
use crate::domain::validate::Violations;
use crate::domain::{Error, Result};
use crate::proto as pb;

/// An integration as served; `public_url` is the service's, below which `receiver_url` is.
pub fn integration_to_pb(i: &Integration, public_url: &str) -> pb::Integration {
    let Integration {
        id,
        name,
        kind,
        secret_prefix,
        default_severity,
        rules,
        grouping,
        auto_resolve,
        created_at,
        updated_at,
        version,
    } = i;
    pb::Integration {
        id: id.to_string(),
        name: name.clone(),
        kind: integration_kind_to_pb(*kind),
        secret_prefix: secret_prefix.clone(),
        default_severity: severity_to_pb(*default_severity),
        rules: rules.iter().map(rule_to_pb).collect(),
        grouping: grouping_to_pb(*grouping),
        auto_resolve: Some(*auto_resolve),
        receiver_url: format!("{public_url}{}", i.receiver_path()),
        created_at: Some(ts(*created_at)),
        updated_at: Some(ts(*updated_at)),
        version: *version,
        etag: i.etag(),
    }
}

fn rule_to_pb(r: &LabelRule) -> pb::LabelRule {
    let LabelRule { labels, severity, components, component_status } = r;
    pb::LabelRule {
        labels: labels.clone(),
        severity: severity.map(severity_to_pb).unwrap_or_default(),
        components: components.iter().map(Uuid::to_string).collect(),
        component_status: component_status.map(component_status_to_pb).unwrap_or_default(),
    }
}

pub fn alert_to_pb(a: &Alert) -> pb::Alert {
    let Alert { id, integration_id, incident_id, dedup_key, fingerprint, status, title, received_at, payload } = a;
    pb::Alert {
        id: id.to_string(),
        integration_id: integration_id.to_string(),
        incident_id: incident_id.map(|i| i.to_string()).unwrap_or_default(),
        dedup_key: dedup_key.clone(),
        fingerprint: fingerprint.clone(),
        status: alert_status_to_pb(*status),
        title: title.clone(),
        received_at: Some(ts(*received_at)),
        payload: match json_to_pb(payload).kind {
            Some(prost_types::value::Kind::StructValue(s)) => Some(s),
            _ => None,
        },
    }
}

fn rules_from_pb(v: &mut Violations, rules: Vec<pb::LabelRule>) -> Vec<LabelRule> {
    rules
        .into_iter()
        .enumerate()
        .map(|(i, r)| LabelRule {
            severity: severity_from_pb(v, &format!("rules[{i}].severity"), r.severity),
            components: r
                .components
                .iter()
                .enumerate()
                .filter_map(|(j, c)| match Uuid::parse_str(c) {
                    Ok(id) => Some(id),
                    Err(_) => {
                        v.add(format!("rules[{i}].components[{j}]"), "must be a UUID");
                        None
                    }
                })
                .collect(),
            component_status: component_status_from_pb(v, &format!("rules[{i}].component_status"), r.component_status),
            labels: r.labels,
        })
        .collect()
}

pub fn new_integration_from_pb(i: pb::Integration) -> Result<NewIntegration> {
    let mut v = Violations::new();
    let input = NewIntegration {
        name: Some(i.name),
        kind: integration_kind_from_pb(&mut v, "kind", i.kind),
        default_severity: severity_from_pb(&mut v, "default_severity", i.default_severity),
        rules: rules_from_pb(&mut v, i.rules),
        grouping: grouping_from_pb(&mut v, "grouping", i.grouping),
        auto_resolve: i.auto_resolve,
    };
    v.finish()?;
    Ok(input)
}

const INTEGRATION_MASK_PATHS: &[&str] = &["name", "default_severity", "rules", "grouping", "auto_resolve"];

pub fn integration_patch_from_pb(i: pb::Integration, mask: Option<FieldMask>) -> Result<IntegrationPatch> {
    let paths = mask_paths(mask, INTEGRATION_MASK_PATHS, Vec::new);
    if paths.is_empty() {
        return Err(Error::invalid("update_mask", "is required: name the fields to update"));
    }
    let mut v = Violations::new();
    let mut patch = IntegrationPatch::default();
    let mut rules = Some(i.rules);
    for path in &paths {
        match path.as_str() {
            "name" => patch.name = Some(i.name.clone()),
            "default_severity" => match severity_from_pb(&mut v, "default_severity", i.default_severity) {
                Some(s) => patch.default_severity = Some(s),
                None if i.default_severity == 0 => v.add("default_severity", "is required when in update_mask"),
                None => {}
            },
            "rules" => {
                if let Some(r) = rules.take() {
                    patch.rules = Some(rules_from_pb(&mut v, r));
                }
            }
            "grouping" => match grouping_from_pb(&mut v, "grouping", i.grouping) {
                Some(g) => patch.grouping = Some(g),
                None if i.grouping == 0 => v.add("grouping", "is required when in update_mask"),
                None => {}
            },
            "auto_resolve" => patch.auto_resolve = Some(i.auto_resolve.unwrap_or(false)),
            "kind" => v.add("update_mask", "kind cannot change: create another integration"),
            p @ ("id" | "secret_prefix" | "receiver_url" | "created_at" | "updated_at" | "version" | "etag") => {
                v.add("update_mask", format!("{p} is output only"))
            }
            p => v.add("update_mask", format!("unknown field path {p:?}")),
        }
    }
    v.finish().map_err(|e| e.prefix_fields_except("integration", &["update_mask"]))?;
    Ok(patch)
}
