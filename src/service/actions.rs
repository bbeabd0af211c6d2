//! Follow-up action use cases: add, read, list (per incident and across incidents), edit,
//! remove, and the workers' step that announces each action whose due date passed, once.

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::events::traced;
use super::incidents::lock_writable;
use super::{Created, Service, claim, fingerprint, save_response};
use crate::domain::action::{Action, ActionPatch, NewAction};
use crate::domain::page::Page;
use crate::domain::query::ActionFilter;
use crate::domain::version::check_etag;
use crate::domain::{
    AuditEvent, Caller, Error, Event, EventType, IdempotencyKey, IncidentKey, PageRequest, Permission, Result, now,
};

const CREATE_SCOPE: &str = "actions.create";
/// At most this many `action.overdue` go out per step of the workers (a step a second).
pub const OVERDUE_PER_STEP: usize = 100;

/// The request a create is recognised by (idempotency).
#[derive(serde::Serialize)]
struct CreateRequest<'a> {
    incident: IncidentKey,
    action: &'a NewAction,
}

fn no_action(id: Uuid) -> Error {
    Error::NotFound { resource: "action", id: id.to_string() }
}

/// What a list of actions asks for, before the incident is looked up.
#[derive(Debug, Clone, Default)]
pub struct ActionQuery {
    pub incident: Option<IncidentKey>,
    pub owner: Option<String>,
    pub statuses: Vec<crate::domain::action::ActionStatus>,
    pub overdue: Option<bool>,
}

impl Service {
    /// Adds a follow-up action to an incident (not to a merged one: its actions went to the
    /// incident it was merged into).
    pub async fn create_action(
        &self,
        caller: &Caller,
        key: IncidentKey,
        input: NewAction,
        idempotency_key: Option<&IdempotencyKey>,
    ) -> Result<Created<Action>> {
        caller.require(Permission::WriteIncidents)?;
        let scope = format!("{CREATE_SCOPE}:{}", caller.label());
        let fingerprint = fingerprint(idempotency_key, &CreateRequest { incident: key, action: &input })?;
        let now = now();
        let mut tx = self.store.begin().await?;
        if let Some(replay) = claim(tx.as_mut(), &self.retention, &scope, idempotency_key, fingerprint).await? {
            return Ok(Created { value: replay, replayed: true });
        }
        let incident = lock_writable(tx.as_mut(), key).await?;
        let action = input.validate(Uuid::now_v7(), incident.id, now)?.with_overdue(self.today());
        tx.insert_action(&action).await?;
        let data = json!({"incident": {"id": incident.id, "reference": incident.reference}});
        tx.insert_events(&traced(vec![Event::about_action(EventType::ActionCreated, &action, data, now)])).await?;
        let details = json!({"incident_id": incident.id, "title": action.title});
        tx.insert_audit_event(&AuditEvent::new(caller, "action.create", "action", action.id, details, now)).await?;
        save_response(tx.as_mut(), &scope, idempotency_key, &action).await?;
        self.commit_with_events(tx).await?;
        Ok(Created { value: action, replayed: false })
    }

    pub async fn get_action(&self, caller: &Caller, id: Uuid) -> Result<Action> {
        caller.require(Permission::ReadIncidents)?;
        let action = self.store.get_action(id).await?.ok_or_else(|| no_action(id))?;
        Ok(action.with_overdue(self.today()))
    }

    /// Actions open first, by due date (so the overdue come first), then the done and
    /// won't-do ones; of one incident or of all.
    pub async fn list_actions(&self, caller: &Caller, query: ActionQuery, page: PageRequest) -> Result<Page<Action>> {
        caller.require(Permission::ReadIncidents)?;
        let ActionQuery { incident, owner, statuses, overdue } = query;
        let incident_id = match incident {
            Some(key) => Some(self.get_incident(caller, key).await?.id),
            None => None,
        };
        let today = self.today();
        let filter = ActionFilter {
            incident_id,
            owner_key: owner.as_deref().map(str::trim).filter(|o| !o.is_empty()).map(crate::domain::fold_case),
            statuses,
            overdue,
            today,
        };
        let rows = self.store.list_actions(&filter, page.after.as_ref(), page.size + 1).await?;
        let rows = rows.into_iter().map(|a| a.with_overdue(today)).collect();
        Ok(Page::from_rows(rows, page.size, Action::sort_key))
    }

    /// Edits an action; a patch that changes nothing changes nothing.
    pub async fn update_action(
        &self,
        caller: &Caller,
        id: Uuid,
        patch: ActionPatch,
        if_match: Option<&str>,
    ) -> Result<Action> {
        caller.require(Permission::WriteIncidents)?;
        let now = now();
        let mut tx = self.store.begin().await?;
        let mut action = tx.lock_action(id).await?.ok_or_else(|| no_action(id))?;
        check_etag("action", if_match, action.version)?;
        let changed = action.apply_patch(patch, now)?;
        let action = action.with_overdue(self.today());
        if changed.is_empty() {
            return Ok(action);
        }
        tx.update_action(&action).await?;
        let event = Event::about_action(EventType::ActionUpdated, &action, json!({"changed_fields": changed}), now);
        tx.insert_events(&traced(vec![event])).await?;
        let details = json!({"fields": changed});
        tx.insert_audit_event(&AuditEvent::new(caller, "action.update", "action", id, details, now)).await?;
        self.commit_with_events(tx).await?;
        Ok(action)
    }

    pub async fn delete_action(&self, caller: &Caller, id: Uuid, if_match: Option<&str>) -> Result<()> {
        caller.require(Permission::WriteIncidents)?;
        let now = now();
        let mut tx = self.store.begin().await?;
        let action = tx.lock_action(id).await?.ok_or_else(|| no_action(id))?;
        check_etag("action", if_match, action.version)?;
        tx.delete_action(id).await?;
        tx.insert_events(&traced(vec![Event::about_action(EventType::ActionDeleted, &action, json!({}), now)])).await?;
        let details = json!({"incident_id": action.incident_id, "title": action.title});
        tx.insert_audit_event(&AuditEvent::new(caller, "action.delete", "action", id, details, now)).await?;
        self.commit_with_events(tx).await
    }

    /// The workers' step: every open action whose due date passed before `today` and was not
    /// announced for that date gets one `action.overdue`, each in its own transaction that
    /// holds the action (other replicas skip it); at most [`OVERDUE_PER_STEP`] a step, so a
    /// backlog (an import, a long outage of the workers) is worked off without crowding out
    /// the rest. Returns how many were announced.
    pub async fn send_overdue_actions(&self, at: DateTime<Utc>) -> Result<usize> {
        let today = at.with_timezone(&self.time_zone).date_naive();
        if !self.store.overdue_actions_due(today).await? {
            return Ok(0);
        }
        let mut sent = 0;
        while sent < OVERDUE_PER_STEP {
            let mut tx = self.store.begin().await?;
            let Some(action) = tx.claim_overdue_action(today).await? else { return Ok(sent) };
            let now = now();
            let action = action.with_overdue(today);
            let data = json!({"due_date": action.due_date});
            tx.insert_events(&[Event::about_action(EventType::ActionOverdue, &action, data, now)]).await?;
            self.commit_with_events(tx).await?;
            tracing::info!(action = %action.id, due = ?action.due_date, "follow-up action overdue");
            sent += 1;
        }
        Ok(sent)
    }
}
