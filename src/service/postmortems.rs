//! Postmortem use cases: start, read, edit, and move one through review to publication, which
//! puts its public summary in front of customers and may close the incident.

use serde_json::json;

use super::events::traced;
use super::incidents::{lock_writable, transition_in};
use super::{Created, Service, claim, fingerprint, save_response};
use crate::domain::postmortem::{NewPostmortem, Postmortem, PostmortemPatch, PostmortemStatus};
use crate::domain::timeline::ValidTransition;
use crate::domain::version::check_etag;
use crate::domain::{
    AuditEvent, Caller, Error, Event, EventType, IdempotencyKey, Incident, IncidentKey, Permission, Result, Status,
    Visibility, now,
};
use crate::store::Transaction;

const CREATE_SCOPE: &str = "postmortems.create";

/// The request a create is recognised by (idempotency).
#[derive(serde::Serialize)]
struct CreateRequest<'a> {
    incident: IncidentKey,
    postmortem: &'a NewPostmortem,
}

fn no_postmortem(incident: &Incident) -> Error {
    Error::NotFound { resource: "postmortem", id: format!("of {}", incident.reference) }
}

/// Locks the incident (it must not be merged) and its postmortem.
async fn lock_both(tx: &mut dyn Transaction, key: IncidentKey) -> Result<(Incident, Postmortem)> {
    let incident = lock_writable(tx, key).await?;
    let postmortem = tx.lock_postmortem(incident.id).await?.ok_or_else(|| no_postmortem(&incident))?;
    Ok((incident, postmortem))
}

impl Service {
    /// Starts the incident's postmortem, as a draft. An incident has one postmortem: a second
    /// is refused (409). With an idempotency key a repeat returns the first response.
    pub async fn create_postmortem(
        &self,
        caller: &Caller,
        key: IncidentKey,
        input: NewPostmortem,
        idempotency_key: Option<&IdempotencyKey>,
    ) -> Result<Created<Postmortem>> {
        caller.require(Permission::WriteIncidents)?;
        let scope = format!("{CREATE_SCOPE}:{}", caller.label());
        let fingerprint = fingerprint(idempotency_key, &CreateRequest { incident: key, postmortem: &input })?;
        let now = now();
        let mut tx = self.store.begin().await?;
        if let Some(replay) = claim(tx.as_mut(), &self.retention, &scope, idempotency_key, fingerprint).await? {
            return Ok(Created { value: replay, replayed: true });
        }
        let incident = lock_writable(tx.as_mut(), key).await?;
        if tx.lock_postmortem(incident.id).await?.is_some() {
            return Err(Error::AlreadyExists {
                resource: "postmortem",
                field: "incident",
                value: incident.reference.to_string(),
            });
        }
        let postmortem = input.validate(&incident, &caller.name, now)?;
        tx.insert_postmortem(&postmortem).await?;
        let event =
            Event::about_postmortem(EventType::PostmortemCreated, &incident, &postmortem, json!({}), false, now);
        tx.insert_events(&traced(vec![event])).await?;
        tx.insert_audit_event(&AuditEvent::new(caller, "postmortem.create", "incident", incident.id, json!({}), now))
            .await?;
        save_response(tx.as_mut(), &scope, idempotency_key, &postmortem).await?;
        self.commit_with_events(tx).await?;
        Ok(Created { value: postmortem, replayed: false })
    }

    pub async fn get_postmortem(&self, caller: &Caller, key: IncidentKey) -> Result<Postmortem> {
        let incident = self.get_incident(caller, key).await?;
        self.store.get_postmortem(incident.id).await?.ok_or_else(|| no_postmortem(&incident))
    }

    /// Edits the postmortem (any status; a published one stays publishable, and a change of
    /// its public summary reaches customers). A patch that changes nothing changes nothing.
    pub async fn update_postmortem(
        &self,
        caller: &Caller,
        key: IncidentKey,
        patch: PostmortemPatch,
        if_match: Option<&str>,
    ) -> Result<Postmortem> {
        caller.require(Permission::WriteIncidents)?;
        let now = now();
        let mut tx = self.store.begin().await?;
        let (incident, mut postmortem) = lock_both(tx.as_mut(), key).await?;
        check_etag("postmortem", if_match, postmortem.version)?;
        let changed = postmortem.apply_patch(patch, now)?;
        if changed.is_empty() {
            return Ok(postmortem);
        }
        tx.update_postmortem(&postmortem).await?;
        let public = postmortem.status == PostmortemStatus::Published && changed.contains(&"public_summary");
        let data = json!({"changed_fields": changed});
        let event = Event::about_postmortem(EventType::PostmortemUpdated, &incident, &postmortem, data, public, now);
        tx.insert_events(&traced(vec![event])).await?;
        let details = json!({"fields": changed});
        tx.insert_audit_event(&AuditEvent::new(caller, "postmortem.update", "incident", incident.id, details, now))
            .await?;
        self.commit_with_events(tx).await?;
        Ok(postmortem)
    }

    /// Moves the postmortem: draft → in review → published (or back to draft). Publishing
    /// needs the incident resolved (or closed); it tells customers (`postmortem.published`)
    /// and, with `INCIDENTD_POSTMORTEM_CLOSES_INCIDENT`, closes a resolved incident.
    pub async fn transition_postmortem(
        &self,
        caller: &Caller,
        key: IncidentKey,
        to: Option<PostmortemStatus>,
        if_match: Option<&str>,
    ) -> Result<Postmortem> {
        caller.require(Permission::WriteIncidents)?;
        let to =
            to.ok_or_else(|| Error::invalid("to", format!("is required; one of: {}", PostmortemStatus::expected())))?;
        let now = now();
        let mut tx = self.store.begin().await?;
        let (mut incident, mut postmortem) = lock_both(tx.as_mut(), key).await?;
        check_etag("postmortem", if_match, postmortem.version)?;
        // A move the review allows, then the incident's state, then what publishing needs.
        if to == PostmortemStatus::Published && postmortem.status.allowed_targets().contains(&to) && incident.is_open()
        {
            return Err(Error::Conflict(format!(
                "incident {} is still {}: resolve it before publishing its postmortem",
                incident.reference, incident.status
            )));
        }
        let from = postmortem.transition(to, now)?;
        tx.update_postmortem(&postmortem).await?;
        let mut events = Vec::new();
        if to == PostmortemStatus::Published {
            events.push(Event::about_postmortem(
                EventType::PostmortemPublished,
                &incident,
                &postmortem,
                json!({}),
                true,
                now,
            ));
            if self.postmortem_closes_incident && incident.status == Status::Resolved {
                let close = ValidTransition {
                    to: Status::Closed,
                    message: Some("Closed: the postmortem was published.".into()),
                    visibility: Visibility::Internal,
                    actor: caller.name.clone(),
                };
                events.extend(transition_in(tx.as_mut(), caller, &mut incident, close, now).await?.1);
            }
        } else {
            let data = json!({"previous_status": from});
            events.push(Event::about_postmortem(
                EventType::PostmortemUpdated,
                &incident,
                &postmortem,
                data,
                false,
                now,
            ));
        }
        tx.insert_events(&traced(events)).await?;
        let details = json!({"from": from, "to": to});
        tx.insert_audit_event(&AuditEvent::new(caller, "postmortem.transition", "incident", incident.id, details, now))
            .await?;
        self.commit_with_events(tx).await?;
        tracing::info!(incident = %incident.reference, from = %from, to = %to, "postmortem moved");
        Ok(postmortem)
    }
}
