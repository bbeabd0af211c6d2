//! Partial updates of an incident's editable fields. REST builds one from a JSON merge
//! patch, gRPC from a field mask; both apply it the same way here.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::error::Result;
use super::incident::{AffectedComponent, CauseKind, Impact, Incident, Severity, WorkaroundAvailability};
use super::timeline::FieldChange;
use super::validate::{self, Violations};

/// How to change the labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelsPatch {
    /// Replace every label.
    Replace(BTreeMap<String, String>),
    /// Set the keys with a value, remove the keys with `None` (JSON merge patch).
    Merge(BTreeMap<String, Option<String>>),
}

/// A partial update; `None` leaves a field as it is, `Some(None)` clears a clearable field.
/// The status is not here: it only moves through transitions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IncidentPatch {
    pub title: Option<String>,
    pub summary: Option<String>,
    pub severity: Option<Severity>,
    pub impact: Option<Impact>,
    pub affected_components: Option<Vec<AffectedComponent>>,
    pub affected_customers: Option<Option<i64>>,
    pub eta: Option<Option<DateTime<Utc>>>,
    pub workaround_availability: Option<WorkaroundAvailability>,
    pub workaround_text: Option<Option<String>>,
    pub cause_kind: Option<CauseKind>,
    pub cause_provider: Option<Option<String>>,
    pub cause_external_reference: Option<Option<String>>,
    pub commander: Option<Option<String>>,
    pub labels: Option<LabelsPatch>,
    /// Related incidents by id or reference; the service resolves them to ids.
    pub related_incidents: Option<Vec<String>>,
    pub root_cause: Option<Option<String>>,
    pub resolution_summary: Option<Option<String>>,
    pub started_at: Option<DateTime<Utc>>,
    pub detected_at: Option<DateTime<Utc>>,
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *field = v;
    }
}

impl Incident {
    /// Applies `patch` (with related incidents already resolved to `related`), validates the
    /// result and returns the changed fields. Nothing changes (not even the version) when the
    /// patch sets every field to its current value.
    pub fn apply_patch(
        &mut self,
        patch: IncidentPatch,
        related: Option<Vec<Uuid>>,
        now: DateTime<Utc>,
    ) -> Result<Vec<FieldChange>> {
        let before = self.editable_fields();
        let IncidentPatch {
            title,
            summary,
            severity,
            impact,
            affected_components,
            affected_customers,
            eta,
            workaround_availability,
            workaround_text,
            cause_kind,
            cause_provider,
            cause_external_reference,
            commander,
            labels,
            // Resolved by the service into `related`.
            related_incidents: _,
            root_cause,
            resolution_summary,
            started_at,
            detected_at,
        } = patch;
        let mut v = Violations::new();
        if let Some(title) = title {
            self.title = v.required_text("title", Some(&title), validate::TITLE_MAX);
        }
        set(&mut self.summary, summary);
        set(&mut self.severity, severity);
        set(&mut self.impact, impact);
        set(&mut self.affected_components, affected_components);
        set(&mut self.affected_customers, affected_customers);
        set(&mut self.eta, eta.map(|e| e.map(super::truncate)));
        set(&mut self.workaround.availability, workaround_availability);
        set(&mut self.workaround.text, workaround_text);
        set(&mut self.cause.kind, cause_kind);
        set(&mut self.cause.provider, cause_provider);
        set(&mut self.cause.external_reference, cause_external_reference);
        set(&mut self.commander, commander);
        match labels {
            Some(LabelsPatch::Replace(labels)) => self.labels = labels,
            Some(LabelsPatch::Merge(changes)) => {
                for (k, val) in changes {
                    match val {
                        Some(val) => self.labels.insert(k, val),
                        None => self.labels.remove(&k),
                    };
                }
            }
            None => {}
        }
        set(&mut self.related_incident_ids, related);
        set(&mut self.root_cause, root_cause);
        set(&mut self.resolution_summary, resolution_summary);
        set(&mut self.started_at, started_at.map(super::truncate));
        set(&mut self.detected_at, detected_at.map(super::truncate));
        self.normalize_editable(&mut v, now);
        v.finish()?;

        let changes: Vec<FieldChange> = before
            .into_iter()
            .zip(self.editable_fields())
            .filter(|((_, old), (_, new))| old != new)
            .map(|((field, old_value), (_, new_value))| FieldChange { field: field.to_string(), old_value, new_value })
            .collect();
        if !changes.is_empty() {
            self.touch(now);
        }
        Ok(changes)
    }
}
