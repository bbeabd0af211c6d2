//! Alerts in, incidents out: a delivery of alerts opens, joins, acknowledges or resolves
//! incidents in one transaction; and the acknowledgement deadlines, checked by the workers,
//! emit `incident.ack_overdue` once per reminder across replicas.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Service;
use super::events::traced;
use super::incidents::{acknowledge_in, declare_in, transition_in};
use super::integrations::integration_caller;
use super::metrics::Milestones;
use crate::domain::alert::{Alert, AlertSignal, AlertStatus, timeline_text};
use crate::domain::integration::{Integration, IntegrationKind};
use crate::domain::timeline::ValidTransition;
use crate::domain::validate::{self, Violations};
use crate::domain::{
    AffectedComponent, Caller, Event, Incident, IncidentKey, NewIncident, Result, Status, TimelineEntry, Visibility,
};
use crate::store::Transaction;

/// What a delivery did to one group (one dedup key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOutcome {
    pub dedup_key: String,
    /// The incident the group's alerts are linked to, if any.
    pub incident_id: Option<Uuid>,
    /// Whether this delivery opened it.
    pub opened: bool,
    /// Whether this delivery resolved it.
    pub resolved: bool,
}

/// Ack reminders looked at per round.
const REMINDER_BATCH: u32 = 200;

fn source_name(integration: &Integration) -> String {
    let kind = match integration.kind {
        IntegrationKind::Alertmanager => "Alertmanager",
        IntegrationKind::Grafana => "Grafana",
        IntegrationKind::PagerdutyEventsV2 => "PagerDuty Events API v2",
    };
    format!("{kind} ({})", integration.name)
}

/// Cuts `text` to at most `max` characters.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The incident a new group of firing alerts opens: title from the first alert (its
/// `summary`, else its name), the most severe severity the rules give, the components they
/// name, the first alert's labels where they are valid labels
/// (labels are internal). The public summary stays empty: what the alerts say (description,
/// source links, hosts) goes on the internal timeline only.
fn incident_from_alerts(integration: &Integration, firing: &[&AlertSignal], now: DateTime<Utc>) -> Result<Incident> {
    let first = firing[0];
    let severity =
        firing.iter().map(|a| integration.severity_for(&a.labels)).min().unwrap_or(integration.default_severity);
    let mut affected: Vec<AffectedComponent> = Vec::new();
    for a in firing {
        for (id, status) in integration.components_for(&a.labels, severity) {
            if !affected.iter().any(|c| c.component_id == id) {
                affected.push(AffectedComponent { component_id: id, status });
            }
        }
    }
    let others = firing.iter().filter(|a| a.title != first.title).count();
    let title = match others {
        0 => cut(&first.title, validate::TITLE_MAX),
        n => {
            let more = format!(" (and {n} more)");
            format!("{}{more}", cut(&first.title, validate::TITLE_MAX - more.chars().count()))
        }
    };
    let mut labels = BTreeMap::new();
    for (k, v) in &first.labels {
        let mut one = Violations::new();
        one.labels("labels", &BTreeMap::from([(k.clone(), v.clone())]));
        if one.finish().is_ok() && labels.len() < validate::LABELS_MAX {
            labels.insert(k.clone(), v.clone());
        }
    }
    let started_at = firing.iter().filter_map(|a| a.starts_at).filter(|t| *t <= now).min();
    let input = NewIncident {
        title: Some(title),
        severity: Some(severity),
        affected_components: affected,
        labels,
        started_at,
        ..Default::default()
    };
    Ok(input.validate(Uuid::now_v7(), now)?.incident)
}

impl Service {
    /// Takes in one delivery of alerts from `integration`, in one transaction: each group
    /// (dedup key, in key order so that concurrent deliveries lock groups in the same order)
    /// opens an incident when it fires and maps to no open one, or adds an internal timeline
    /// entry to the open one; a PagerDuty acknowledge acknowledges it; once every alert of
    /// the group has cleared it resolves (with `auto_resolve`) or the timeline says so.
    /// Every alert is kept, linked to its incident.
    pub async fn ingest_alerts(
        &self,
        integration: &Integration,
        signals: Vec<AlertSignal>,
    ) -> Result<Vec<GroupOutcome>> {
        let caller = integration_caller(integration);
        let now = crate::domain::now();
        let mut groups: BTreeMap<String, Vec<AlertSignal>> = BTreeMap::new();
        let mut changes = Vec::new();
        for s in signals {
            let key = s.dedup_key(integration.kind, integration.grouping);
            if s.status == AlertStatus::Change {
                // Information only: kept, never an incident.
                changes.push(Alert::received(&s, integration.id, &key, None, now));
            } else {
                groups.entry(key).or_default().push(s);
            }
        }
        let mut tx = self.store.begin().await?;
        tx.insert_alerts(&changes).await?;
        let mut events = Vec::new();
        let mut milestones = Vec::new();
        let mut outcomes = Vec::new();
        for (key, signals) in groups {
            let (outcome, changed) =
                self.ingest_group(tx.as_mut(), &caller, integration, &key, &signals, now, &mut events).await?;
            milestones.extend(changed);
            outcomes.push(outcome);
        }
        tx.insert_events(&traced(events)).await?;
        self.commit_with_events(tx).await?;
        for (before, incident) in milestones {
            self.metrics.observe_milestones(before, &incident);
        }
        Ok(outcomes)
    }

    #[allow(clippy::too_many_arguments)]
    async fn ingest_group(
        &self,
        tx: &mut dyn Transaction,
        caller: &Caller,
        integration: &Integration,
        key: &str,
        signals: &[AlertSignal],
        now: DateTime<Utc>,
        events: &mut Vec<Event>,
    ) -> Result<(GroupOutcome, Option<(Milestones, Incident)>)> {
        let source = source_name(integration);
        let mapped = tx.lock_alert_group(integration.id, key).await?;
        let mut incident = match mapped {
            Some(id) => tx.lock_incident(IncidentKey::Id(id)).await?,
            None => None,
        };
        let firing: Vec<&AlertSignal> = signals.iter().filter(|s| s.status == AlertStatus::Firing).collect();
        let mut outcome =
            GroupOutcome { dedup_key: key.to_string(), incident_id: None, opened: false, resolved: false };
        if !incident.as_ref().is_some_and(Incident::is_open) && !firing.is_empty() {
            let mut new = incident_from_alerts(integration, &firing, now)?;
            // A rule may name a component deleted since: the incident affects those that exist.
            let named: Vec<Uuid> = new.affected_components.iter().map(|c| c.component_id).collect();
            let existing = tx.existing_component_ids(&named).await?;
            new.affected_components.retain(|c| existing.contains(&c.component_id));
            events.extend(declare_in(tx, caller, &mut new, now).await?);
            tx.set_alert_group(integration.id, key, new.id).await?;
            tracing::info!(incident = %new.reference, integration = %integration.id, "incident opened from alerts");
            incident = Some(new);
            outcome.opened = true;
        }
        outcome.incident_id = incident.as_ref().map(|i| i.id);
        let alerts: Vec<Alert> =
            signals.iter().map(|s| Alert::received(s, integration.id, key, outcome.incident_id, now)).collect();
        tx.insert_alerts(&alerts).await?;
        let Some(incident) = incident.as_mut().filter(|i| i.is_open()) else {
            return Ok((outcome, None));
        };
        let before = Milestones::of(incident);
        let refs: Vec<&AlertSignal> = signals.iter().collect();
        let entry = TimelineEntry::alerts(incident, timeline_text(&source, &refs), &caller.name, now);
        tx.insert_timeline_entry(&entry).await?;
        if !outcome.opened {
            // The declaration's own event already says what opened it.
            events.push(Event::update_posted(incident, &entry, None, now));
        }
        if signals.iter().any(|s| s.status == AlertStatus::Acknowledged)
            && let Some(e) = acknowledge_in(tx, caller, incident, &caller.name, now).await?
        {
            events.push(e);
        }
        let cleared = signals.iter().any(|s| s.status == AlertStatus::Resolved);
        if cleared && tx.active_alerts(incident.id, key).await? == 0 {
            if integration.auto_resolve {
                let input = ValidTransition {
                    to: Status::Resolved,
                    message: Some(format!("Resolved automatically: every alert has cleared ({source}).")),
                    visibility: Visibility::Internal,
                    actor: caller.name.clone(),
                };
                let (_, moved) = transition_in(tx, caller, incident, input, now).await?;
                events.extend(moved);
                outcome.resolved = true;
            } else {
                let body = format!(
                    "Every alert has cleared ({source}). Auto-resolve is off for this integration: \
                     the incident stays open until someone resolves it."
                );
                let entry = TimelineEntry::alerts(incident, body, &caller.name, now);
                tx.insert_timeline_entry(&entry).await?;
                events.push(Event::update_posted(incident, &entry, None, now));
            }
        }
        Ok((outcome, Some((before, incident.clone()))))
    }

    /// Emits `incident.ack_overdue` for each open incident past its acknowledgement
    /// deadline (then once per repeat interval), each reminder once across replicas: it is
    /// recorded with a compare-and-set in the transaction that writes its event.
    pub(crate) async fn send_due_ack_reminders(&self, now: DateTime<Utc>) -> Result<()> {
        let policy = &self.ack_policy;
        let Some(shortest) = policy.shortest().and_then(|d| chrono::Duration::from_std(d).ok()) else {
            return Ok(());
        };
        let repeat = chrono::Duration::from_std(policy.repeat).unwrap_or_default();
        let sent_before = (!policy.repeat.is_zero()).then(|| now - repeat);
        let candidates =
            self.store.ack_candidates(&policy.severities(), now - shortest, sent_before, REMINDER_BATCH).await?;
        for c in candidates {
            if policy.reminders_due(c.severity, c.declared_at, now).is_none_or(|due| due <= c.sent) {
                continue;
            }
            let mut tx = self.store.begin().await?;
            let Some(incident) = tx.lock_incident(IncidentKey::Id(c.incident_id)).await? else { continue };
            if !incident.is_open() || incident.acknowledged_at.is_some() {
                continue;
            }
            let Some(due) = policy.reminders_due(incident.severity, incident.created_at, now).filter(|d| *d > c.sent)
            else {
                continue;
            };
            if !tx.record_ack_reminder(incident.id, c.sent, due, now).await? {
                continue;
            }
            let due_at = policy.due_at(incident.severity, incident.created_at, due).unwrap_or(now);
            let deadline = policy.deadlines.get(&incident.severity).map(|d| d.as_secs()).unwrap_or_default();
            tx.insert_events(&[Event::incident_ack_overdue(&incident, due, due_at, deadline, now)]).await?;
            self.commit_with_events(tx).await?;
            tracing::info!(incident = %incident.reference, reminder = due, "incident not acknowledged in time");
        }
        Ok(())
    }
}
