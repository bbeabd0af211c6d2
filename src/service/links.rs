//! Relations between incidents: merging a duplicate into the incident that carries on, and
//! typed links, each recorded on both incidents' timelines.

use serde_json::json;
use uuid::Uuid;

use super::Service;
use super::components::ComponentWatch;
use super::events::traced;
use super::incidents::{component_ids, not_found};
use crate::domain::history::Cause;
use crate::domain::link::{IncidentLink, Link, LinkKind, LinkedIncident};
use crate::domain::timeline::actor;
use crate::domain::validate::Violations;
use crate::domain::{AuditEvent, Caller, Error, Event, Incident, IncidentKey, Permission, Result, TimelineEntry, now};
use crate::store::{Moved, Transaction};

/// Parses an incident named in a request body (`field`): required, an id or a reference.
fn named(field: &str, raw: Option<&str>) -> Result<IncidentKey> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => IncidentKey::parse(field, s),
        None => Err(Error::invalid(field, "is required: an incident id or reference (INC-<n>)")),
    }
}

/// Locks two incidents in id order (so two requests naming the same pair cannot deadlock):
/// `this` (404 when missing) and `other` (named by the request's `field`: a violation of it
/// when missing, and when it is `this`).
async fn lock_pair(
    tx: &mut dyn Transaction,
    this: IncidentKey,
    other: IncidentKey,
    field: &str,
    itself: &str,
) -> Result<(Incident, Incident)> {
    let ids = tx.resolve_incident_ids(&[this, other]).await?;
    let this_id = ids[0].ok_or_else(|| not_found(this))?;
    let other_id = ids[1].ok_or_else(|| Error::invalid(field, format!("no incident {other}")))?;
    if this_id == other_id {
        return Err(Error::invalid(field, itself));
    }
    let lock = |id: Uuid| IncidentKey::Id(id);
    let (first, second) = if this_id < other_id { (this_id, other_id) } else { (other_id, this_id) };
    let a = tx.lock_incident(lock(first)).await?.ok_or_else(|| not_found(lock(first)))?;
    let b = tx.lock_incident(lock(second)).await?.ok_or_else(|| not_found(lock(second)))?;
    Ok(if a.id == this_id { (a, b) } else { (b, a) })
}

/// What a merge moved, as the target's timeline says it.
fn moved_text(moved: &Moved, components: usize) -> String {
    let Moved { timeline_entries, alerts, actions, links, postmortem } = *moved;
    let mut parts = vec![
        format!("{timeline_entries} timeline entries"),
        format!("{components} affected components"),
        format!("{alerts} alerts"),
        format!("{actions} follow-up actions"),
        format!("{links} links"),
    ];
    if postmortem {
        parts.push("its postmortem".into());
    }
    parts.join(", ")
}

impl Service {
    /// Merges the duplicate `key` into `into`: its timeline, affected components, alerts,
    /// actions and links move there with their original times (and its postmortem when the
    /// target has none); it becomes `merged`, read-only and pointing at the target; both
    /// timelines record it. Returns the target and the duplicate as they now are.
    pub async fn merge_incident(
        &self,
        caller: &Caller,
        key: IncidentKey,
        into: Option<&str>,
        by: Option<&str>,
    ) -> Result<(Incident, Incident)> {
        caller.require(Permission::WriteIncidents)?;
        let mut v = Violations::new();
        let by = actor(&mut v, "actor", by, &caller.name);
        let into = named("into", into).map_err(|e| v.extend(e)).ok();
        v.finish()?;
        let into = into.expect("validated");
        let now = now();
        let mut tx = self.store.begin().await?;
        let (mut source, mut target) =
            lock_pair(tx.as_mut(), key, into, "into", "an incident cannot be merged into itself").await?;
        let from = source.status;
        let watched: Vec<Uuid> = component_ids(&source).into_iter().chain(component_ids(&target)).collect();
        let watch = ComponentWatch::start(tx.as_mut(), watched, Cause::Incident(target.id)).await?;
        let source_components = source.affected_components.len();
        source.merge_into(&mut target, now)?;
        tx.update_incident(&source, true).await?;
        tx.update_incident(&target, true).await?;
        let moved = tx.move_merged(source.id, target.id).await?;
        // After the move, so that each stays on its own timeline.
        tx.insert_timeline_entry(&TimelineEntry::merged_into(&source, from, &target, &by, now)).await?;
        let text = moved_text(&moved, source_components);
        tx.insert_timeline_entry(&TimelineEntry::merged_from(&target, &source, &text, &by, now)).await?;
        let mut events = vec![Event::incident_merged(&source, &target, json!(moved), now)];
        events.extend(watch.finish(tx.as_mut(), now).await?);
        tx.insert_events(&traced(events)).await?;
        let details = json!({"into": target.id, "into_reference": target.reference, "moved": moved});
        tx.insert_audit_event(&AuditEvent::new(caller, "incident.merge", "incident", source.id, details, now)).await?;
        self.commit_with_events(tx).await?;
        tracing::info!(incident = %source.reference, into = %target.reference, "incident merged");
        Ok((target, source))
    }

    /// Links the incident to `other` with `kind` (as the incident reads it); the other side
    /// reads the inverse. The same link twice is refused (409).
    pub async fn create_link(
        &self,
        caller: &Caller,
        key: IncidentKey,
        kind: Option<LinkKind>,
        other: Option<&str>,
    ) -> Result<Link> {
        caller.require(Permission::WriteIncidents)?;
        let mut v = Violations::new();
        if kind.is_none() {
            v.add("kind", format!("is required; one of: {}", LinkKind::expected()));
        }
        let other = named("incident", other).map_err(|e| v.extend(e)).ok();
        v.finish()?;
        let (kind, other) = (kind.expect("validated"), other.expect("validated"));
        let now = now();
        let mut tx = self.store.begin().await?;
        let (this, other) =
            lock_pair(tx.as_mut(), key, other, "incident", "an incident cannot be linked to itself").await?;
        this.ensure_not_merged()?;
        other.ensure_not_merged()?;
        let link = IncidentLink::new(this.id, kind, other.id, &caller.name, now);
        if tx.link_exists(link.from_incident_id, link.to_incident_id, link.kind).await? {
            return Err(Error::AlreadyExists {
                resource: "link",
                field: "incident",
                value: format!("{} {} {}", this.reference, kind.phrase(), other.reference),
            });
        }
        tx.insert_link(&link).await?;
        let view = link_view(&link, &this, &other);
        record_link(tx.as_mut(), &this, &other, kind, false, &caller.name, now).await?;
        tx.insert_events(&traced(vec![Event::incident_linked(&this, &view, false, now)])).await?;
        let details = json!({"link_id": link.id, "kind": kind, "incident_id": other.id});
        tx.insert_audit_event(&AuditEvent::new(caller, "incident.link", "incident", this.id, details, now)).await?;
        self.commit_with_events(tx).await?;
        Ok(view)
    }

    /// The incident's links, as it reads them, oldest first.
    pub async fn list_links(&self, caller: &Caller, key: IncidentKey) -> Result<Vec<Link>> {
        let incident = self.get_incident(caller, key).await?;
        self.store.list_links(incident.id).await
    }

    /// Removes a link of the incident (made from either side).
    pub async fn delete_link(&self, caller: &Caller, key: IncidentKey, link_id: Uuid) -> Result<()> {
        caller.require(Permission::WriteIncidents)?;
        let now = now();
        let mut tx = self.store.begin().await?;
        let this_id = tx.resolve_incident_ids(&[key]).await?[0].ok_or_else(|| not_found(key))?;
        let no_link = || Error::NotFound { resource: "link", id: link_id.to_string() };
        let link = tx.get_link(link_id).await?.ok_or_else(no_link)?;
        if link.from_incident_id != this_id && link.to_incident_id != this_id {
            return Err(no_link());
        }
        let (kind, other_id) = link.seen_from(this_id);
        let (this, other) =
            lock_pair(tx.as_mut(), IncidentKey::Id(this_id), IncidentKey::Id(other_id), "link", "").await?;
        tx.delete_link(link.id).await?;
        let view = link_view(&link, &this, &other);
        record_link(tx.as_mut(), &this, &other, kind, true, &caller.name, now).await?;
        tx.insert_events(&traced(vec![Event::incident_linked(&this, &view, true, now)])).await?;
        let details = json!({"link_id": link.id, "kind": kind, "incident_id": other.id});
        tx.insert_audit_event(&AuditEvent::new(caller, "incident.unlink", "incident", this.id, details, now)).await?;
        self.commit_with_events(tx).await
    }
}

/// The link as `this` reads it.
fn link_view(link: &IncidentLink, this: &Incident, other: &Incident) -> Link {
    let (kind, _) = link.seen_from(this.id);
    Link {
        id: link.id,
        kind,
        incident: LinkedIncident {
            id: other.id,
            reference: other.reference,
            title: other.title.clone(),
            status: other.status,
        },
        created_by: link.created_by.clone(),
        created_at: link.created_at,
    }
}

/// Notes a link made or removed on both incidents' timelines, each in its own words.
async fn record_link(
    tx: &mut dyn Transaction,
    this: &Incident,
    other: &Incident,
    kind: LinkKind,
    removed: bool,
    author: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    tx.insert_timeline_entry(&TimelineEntry::link(this, kind.phrase(), other, removed, author, now)).await?;
    tx.insert_timeline_entry(&TimelineEntry::link(other, kind.inverse().phrase(), this, removed, author, now)).await
}
