//! Incident use cases: declare, read, list, edit, delete, transition, acknowledge, and the
//! timeline. Each checks the caller's permission first and records an audit event in the
//! transaction of its change.

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::components::{ComponentWatch, check_components_exist};
use super::events::traced;
use super::metrics::Milestones;
use super::{Created, Service, claim, fingerprint, save_response};
use crate::domain::history::Cause;
use crate::domain::incident::{IncidentDraft, Transition, related_keys};
use crate::domain::page::{Page, PageToken};
use crate::domain::query::IncidentFilter;
use crate::domain::timeline::{ValidTransition, actor};
use crate::domain::validate::Violations;
use crate::domain::version::check_etag;
use crate::domain::{
    AffectedComponent, AuditEvent, Caller, Error, Event, IdempotencyKey, Incident, IncidentKey, IncidentPatch,
    NewIncident, NewUpdate, PageRequest, Permission, Result, TimelineEntry, TransitionInput, Visibility, now,
};
use crate::store::Transaction;

const CREATE_SCOPE: &str = "incidents.create";
const UPDATE_SCOPE: &str = "incident_updates.create";

pub(super) fn not_found(key: IncidentKey) -> Error {
    Error::NotFound { resource: "incident", id: key.to_string() }
}

/// The request an idempotent update post is recognised by.
#[derive(serde::Serialize)]
struct UpdateRequest<'a> {
    incident: IncidentKey,
    update: &'a NewUpdate,
}

/// Idempotency keys belong to the caller that used them.
fn idempotency_scope(scope: &str, caller: &Caller) -> String {
    format!("{scope}:{}", caller.label())
}

impl Service {
    /// Declares an incident. With an idempotency key, a repeat of the same request returns
    /// the first response; concurrent repeats wait for the first and get its response.
    pub async fn create_incident(
        &self,
        caller: &Caller,
        input: NewIncident,
        idempotency_key: Option<&IdempotencyKey>,
    ) -> Result<Created<Incident>> {
        caller.require(Permission::WriteIncidents)?;
        let now = now();
        let scope = idempotency_scope(CREATE_SCOPE, caller);
        let fingerprint = fingerprint(idempotency_key, &input)?;
        let IncidentDraft { mut incident, related } = input.validate(Uuid::now_v7(), now)?;
        let mut tx = self.store.begin().await?;
        if let Some(replay) = claim(tx.as_mut(), &self.retention, &scope, idempotency_key, fingerprint).await? {
            return Ok(Created { value: replay, replayed: true });
        }
        let mut v = Violations::new();
        incident.related_incident_ids = resolve_related(tx.as_mut(), &mut v, &related, None).await?;
        check_components(tx.as_mut(), &mut v, &incident.affected_components, &[]).await?;
        v.finish()?;
        let events = declare_in(tx.as_mut(), caller, &mut incident, now).await?;
        tx.insert_events(&traced(events)).await?;
        save_response(tx.as_mut(), &scope, idempotency_key, &incident).await?;
        self.commit_with_events(tx).await?;
        tracing::info!(incident = %incident.reference, severity = %incident.severity, "incident declared");
        Ok(Created { value: incident, replayed: false })
    }

    pub async fn get_incident(&self, caller: &Caller, key: IncidentKey) -> Result<Incident> {
        caller.require(Permission::ReadIncidents)?;
        self.store.get_incident(key).await?.ok_or_else(|| not_found(key))
    }

    pub async fn list_incidents(
        &self,
        caller: &Caller,
        filter: IncidentFilter,
        page: PageRequest,
    ) -> Result<Page<Incident>> {
        caller.require(Permission::ReadIncidents)?;
        let mut v = Violations::new();
        if let (Some(a), Some(b)) = (filter.created_after, filter.created_before)
            && a >= b
        {
            v.add("created_before", "must be later than created_after");
        }
        v.finish()?;
        let rows = self.store.list_incidents(&filter, page.after.as_ref(), page.size + 1).await?;
        Ok(Page::from_rows(rows, page.size, |i| PageToken::Time { at: i.created_at, id: i.id }))
    }

    /// Applies a partial update of the editable fields. `if_match` (an entity tag) makes it
    /// conditional. Records the changed fields on the timeline; a patch that changes
    /// nothing changes nothing (not even the version).
    pub async fn update_incident(
        &self,
        caller: &Caller,
        key: IncidentKey,
        mut patch: IncidentPatch,
        if_match: Option<&str>,
    ) -> Result<Incident> {
        caller.require(Permission::WriteIncidents)?;
        let now = now();
        let mut tx = self.store.begin().await?;
        let mut incident = lock_writable(tx.as_mut(), key).await?;
        check_etag("incident", if_match, incident.version)?;
        let mut v = Violations::new();
        let related = match patch.related_incidents.take() {
            Some(names) => {
                let keys = related_keys(&mut v, &names);
                Some(resolve_related(tx.as_mut(), &mut v, &keys, Some(incident.id)).await?)
            }
            None => None,
        };
        if let Some(components) = &patch.affected_components {
            let known: Vec<Uuid> = incident.affected_components.iter().map(|c| c.component_id).collect();
            check_components(tx.as_mut(), &mut v, components, &known).await?;
        }
        v.finish()?;
        let components_before = incident.affected_components.clone();
        let changes = incident.apply_patch(patch, related, now)?;
        if changes.is_empty() {
            return Ok(incident);
        }
        let components_changed = incident.affected_components != components_before;
        let watched = if components_changed {
            components_before.iter().map(|c| c.component_id).chain(component_ids(&incident)).collect()
        } else {
            Vec::new()
        };
        let watch = ComponentWatch::start(tx.as_mut(), watched, Cause::Incident(incident.id)).await?;
        let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
        let audit = AuditEvent::new(caller, "incident.update", "incident", incident.id, json!({"fields": fields}), now);
        let mut events = vec![Event::incident_updated(&incident, &fields, now)];
        tx.update_incident(&incident, components_changed).await?;
        events.extend(watch.finish(tx.as_mut(), now).await?);
        tx.insert_timeline_entry(&TimelineEntry::field_change(&incident, changes, &caller.name, now)).await?;
        tx.insert_audit_event(&audit).await?;
        tx.insert_events(&traced(events)).await?;
        self.commit_with_events(tx).await?;
        Ok(incident)
    }

    pub async fn delete_incident(&self, caller: &Caller, key: IncidentKey, if_match: Option<&str>) -> Result<()> {
        caller.require(Permission::WriteIncidents)?;
        let mut tx = self.store.begin().await?;
        let incident = lock_writable(tx.as_mut(), key).await?;
        check_etag("incident", if_match, incident.version)?;
        let now = now();
        let watched = if incident.is_open() { component_ids(&incident) } else { Vec::new() };
        let watch = ComponentWatch::start(tx.as_mut(), watched, Cause::Incident(incident.id)).await?;
        tx.delete_incident(incident.id).await?;
        let mut events = vec![Event::incident_deleted(&incident, now)];
        events.extend(watch.finish(tx.as_mut(), now).await?);
        let details = json!({"reference": incident.reference, "title": incident.title});
        tx.insert_audit_event(&AuditEvent::new(caller, "incident.delete", "incident", incident.id, details, now))
            .await?;
        tx.insert_events(&traced(events)).await?;
        self.commit_with_events(tx).await?;
        tracing::info!(incident = %incident.reference, "incident deleted");
        Ok(())
    }

    /// Moves the incident through its lifecycle and records the move on the timeline.
    pub async fn transition_incident(
        &self,
        caller: &Caller,
        key: IncidentKey,
        input: TransitionInput,
    ) -> Result<Incident> {
        caller.require(Permission::WriteIncidents)?;
        let input = input.validate(&caller.name)?;
        let now = now();
        let mut tx = self.store.begin().await?;
        let mut incident = tx.lock_incident(key).await?.ok_or_else(|| not_found(key))?;
        let before = Milestones::of(&incident);
        let (t, events) = transition_in(tx.as_mut(), caller, &mut incident, input, now).await?;
        tx.insert_events(&traced(events)).await?;
        self.commit_with_events(tx).await?;
        self.metrics.observe_milestones(before, &incident);
        tracing::info!(incident = %incident.reference, from = %t.from, to = %t.to, "incident status changed");
        Ok(incident)
    }

    /// Records the first acknowledgement; later ones return the incident unchanged.
    pub async fn acknowledge_incident(&self, caller: &Caller, key: IncidentKey, by: Option<&str>) -> Result<Incident> {
        caller.require(Permission::WriteIncidents)?;
        let mut v = Violations::new();
        let by = actor(&mut v, "by", by, &caller.name);
        v.finish()?;
        let now = now();
        let mut tx = self.store.begin().await?;
        let mut incident = tx.lock_incident(key).await?.ok_or_else(|| not_found(key))?;
        let before = Milestones::of(&incident);
        if let Some(event) = acknowledge_in(tx.as_mut(), caller, &mut incident, &by, now).await? {
            tx.insert_events(&traced(vec![event])).await?;
            self.commit_with_events(tx).await?;
            self.metrics.observe_milestones(before, &incident);
        }
        Ok(incident)
    }

    /// Posts an update to the timeline, applying the status change it carries, if any.
    pub async fn post_update(
        &self,
        caller: &Caller,
        key: IncidentKey,
        input: NewUpdate,
        idempotency_key: Option<&IdempotencyKey>,
    ) -> Result<Created<(TimelineEntry, Incident)>> {
        caller.require(Permission::WriteIncidents)?;
        let scope = idempotency_scope(UPDATE_SCOPE, caller);
        let fingerprint = fingerprint(idempotency_key, &UpdateRequest { incident: key, update: &input })?;
        let update = input.validate(&caller.name)?;
        let now = now();
        let mut tx = self.store.begin().await?;
        if let Some(replay) = claim(tx.as_mut(), &self.retention, &scope, idempotency_key, fingerprint).await? {
            return Ok(Created { value: replay, replayed: true });
        }
        let mut incident = lock_writable(tx.as_mut(), key).await?;
        let before = Milestones::of(&incident);
        let transition = match update.status {
            Some(to) => Some(incident.transition(to, now)?),
            None => None,
        };
        let entry = TimelineEntry::update(&incident, update, transition, now);
        let watched = transition.map(|t| imposition_changes(&incident, t)).unwrap_or_default();
        let watch = ComponentWatch::start(tx.as_mut(), watched, Cause::Incident(incident.id)).await?;
        if transition.is_some() {
            tx.update_incident(&incident, false).await?;
        }
        let mut events = vec![Event::update_posted(&incident, &entry, transition.map(|t| t.from), now)];
        events.extend(watch.finish(tx.as_mut(), now).await?);
        tx.insert_events(&traced(events)).await?;
        tx.insert_timeline_entry(&entry).await?;
        let details = json!({"update_id": entry.id, "visibility": entry.visibility, "status_to": entry.status_to});
        tx.insert_audit_event(&AuditEvent::new(
            caller,
            "incident.update_posted",
            "incident",
            incident.id,
            details,
            now,
        ))
        .await?;
        let value = (entry, incident);
        save_response(tx.as_mut(), &scope, idempotency_key, &value).await?;
        self.commit_with_events(tx).await?;
        self.metrics.observe_milestones(before, &value.1);
        Ok(Created { value, replayed: false })
    }

    pub async fn list_updates(
        &self,
        caller: &Caller,
        key: IncidentKey,
        visibility: Option<Visibility>,
        page: PageRequest,
    ) -> Result<Page<TimelineEntry>> {
        let incident = self.get_incident(caller, key).await?;
        let rows = self.store.list_timeline(incident.id, visibility, page.after.as_ref(), page.size + 1).await?;
        Ok(Page::from_rows(rows, page.size, |e| PageToken::Time { at: e.created_at, id: e.id }))
    }
}

/// Locks an incident to change it (or what belongs to it): not found is 404, a merged one is
/// read-only (409, naming where it went).
pub(super) async fn lock_writable(tx: &mut dyn Transaction, key: IncidentKey) -> Result<Incident> {
    let incident = tx.lock_incident(key).await?.ok_or_else(|| not_found(key))?;
    incident.ensure_not_merged()?;
    Ok(incident)
}

/// Writes a new (validated) incident with what declaring it records: its first timeline
/// entry, the component statuses it imposes, the audit event. Returns its events, to be
/// written with the transaction's others.
pub(super) async fn declare_in(
    tx: &mut dyn Transaction,
    caller: &Caller,
    incident: &mut Incident,
    now: DateTime<Utc>,
) -> Result<Vec<Event>> {
    let watch = ComponentWatch::start(tx, component_ids(incident), Cause::Incident(incident.id)).await?;
    incident.reference = tx.insert_incident(incident).await?;
    tx.insert_timeline_entry(&TimelineEntry::created(incident, &caller.name, now)).await?;
    let mut events = vec![Event::incident_created(incident, now)];
    events.extend(watch.finish(tx, now).await?);
    let details = json!({"reference": incident.reference, "severity": incident.severity, "status": incident.status});
    tx.insert_audit_event(&AuditEvent::new(caller, "incident.create", "incident", incident.id, details, now)).await?;
    Ok(events)
}

/// Moves a locked incident through its lifecycle, recording the move on its timeline and in
/// the audit trail. Returns the move and its events.
pub(super) async fn transition_in(
    tx: &mut dyn Transaction,
    caller: &Caller,
    incident: &mut Incident,
    input: ValidTransition,
    now: DateTime<Utc>,
) -> Result<(Transition, Vec<Event>)> {
    incident.ensure_not_merged()?;
    let t = incident.transition(input.to, now)?;
    let entry = TimelineEntry::status_change(incident, t, input.message, input.visibility, &input.actor, now);
    let watch = ComponentWatch::start(tx, imposition_changes(incident, t), Cause::Incident(incident.id)).await?;
    tx.update_incident(incident, false).await?;
    let mut events = vec![Event::incident_transitioned(incident, t, &entry, now)];
    events.extend(watch.finish(tx, now).await?);
    tx.insert_timeline_entry(&entry).await?;
    let details = json!({"from": t.from, "to": t.to, "reopened": t.reopened});
    tx.insert_audit_event(&AuditEvent::new(caller, "incident.transition", "incident", incident.id, details, now))
        .await?;
    Ok((t, events))
}

/// Records the first acknowledgement of a locked incident; `None` (nothing written) when it
/// was already acknowledged.
pub(super) async fn acknowledge_in(
    tx: &mut dyn Transaction,
    caller: &Caller,
    incident: &mut Incident,
    by: &str,
    now: DateTime<Utc>,
) -> Result<Option<Event>> {
    incident.ensure_not_merged()?;
    if !incident.acknowledge(by, now)? {
        return Ok(None);
    }
    tx.update_incident(incident, false).await?;
    tx.insert_timeline_entry(&TimelineEntry::acknowledgement(incident, by, now)).await?;
    let audit = AuditEvent::new(caller, "incident.acknowledge", "incident", incident.id, json!({"by": by}), now);
    tx.insert_audit_event(&audit).await?;
    Ok(Some(Event::incident_acknowledged(incident, now)))
}

pub(super) fn component_ids(incident: &Incident) -> Vec<Uuid> {
    incident.affected_components.iter().map(|c| c.component_id).collect()
}

/// The components whose imposed status a transition may change: all of the incident's when it
/// opens or closes, none when it moves among open (or among closed) statuses.
fn imposition_changes(incident: &Incident, t: crate::domain::incident::Transition) -> Vec<Uuid> {
    if t.from.is_open() == t.to.is_open() { Vec::new() } else { component_ids(incident) }
}

/// Resolves related-incident keys to ids, recording a violation for each unknown one and for
/// a self-reference. Duplicates collapse.
async fn resolve_related(
    tx: &mut dyn Transaction,
    v: &mut Violations,
    keys: &[IncidentKey],
    this: Option<Uuid>,
) -> Result<Vec<Uuid>> {
    let found = tx.resolve_incident_ids(keys).await?;
    let mut ids = Vec::with_capacity(keys.len());
    for (i, (key, id)) in keys.iter().zip(found).enumerate() {
        let field = format!("related_incident_ids[{i}]");
        match id {
            None => v.add(field, format!("no incident {key}")),
            Some(id) if Some(id) == this => v.add(field, "an incident cannot be related to itself"),
            Some(id) if !ids.contains(&id) => ids.push(id),
            Some(_) => {}
        }
    }
    Ok(ids)
}

/// Records a violation for every affected component that does not exist. Components in
/// `known` (already on the incident) may have been deleted since and stay accepted.
async fn check_components(
    tx: &mut dyn Transaction,
    v: &mut Violations,
    components: &[AffectedComponent],
    known: &[Uuid],
) -> Result<()> {
    let named = components
        .iter()
        .enumerate()
        .filter(|(_, c)| !known.contains(&c.component_id))
        .map(|(i, c)| (format!("affected_components[{i}].component_id"), c.component_id));
    check_components_exist(tx, v, named).await
}
