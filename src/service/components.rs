//! Component use cases, and watching the effective status of the components a change touches.

use serde_json::json;
use uuid::Uuid;

use super::events::traced;
use super::{Created, Service, claim, fingerprint, save_response};
use crate::domain::history::{Cause, StatusChange};
use crate::domain::page::{Page, PageToken};
use crate::domain::validate::Violations;
use crate::domain::version::check_etag;
use crate::domain::{
    AuditEvent, Caller, Component, ComponentPatch, Error, Event, IdempotencyKey, NewComponent, PageRequest, Permission,
    Result, now,
};
use crate::store::Transaction;

const CREATE_SCOPE: &str = "components.create";

fn not_found(id: Uuid) -> Error {
    Error::NotFound { resource: "component", id: id.to_string() }
}

impl Service {
    pub async fn create_component(
        &self,
        caller: &Caller,
        input: NewComponent,
        idempotency_key: Option<&IdempotencyKey>,
    ) -> Result<Created<Component>> {
        caller.require(Permission::WriteComponents)?;
        let scope = format!("{CREATE_SCOPE}:{}", caller.label());
        let fingerprint = fingerprint(idempotency_key, &input)?;
        let component = input.validate(Uuid::now_v7(), now())?;
        let mut tx = self.store.begin().await?;
        if let Some(replay) = claim(tx.as_mut(), &self.retention, &scope, idempotency_key, fingerprint).await? {
            return Ok(Created { value: replay, replayed: true });
        }
        tx.insert_component(&component).await?;
        let details = json!({"name": component.name, "status": component.status});
        tx.insert_audit_event(&AuditEvent::new(caller, "component.create", "component", component.id, details, now()))
            .await?;
        save_response(tx.as_mut(), &scope, idempotency_key, &component).await?;
        self.commit_public_change(tx).await?;
        Ok(Created { value: component, replayed: false })
    }

    pub async fn get_component(&self, caller: &Caller, id: Uuid) -> Result<Component> {
        caller.require(Permission::ReadComponents)?;
        self.store.get_component(id).await?.ok_or_else(|| not_found(id))
    }

    pub async fn list_components(
        &self,
        caller: &Caller,
        group: Option<&str>,
        page: PageRequest,
    ) -> Result<Page<Component>> {
        caller.require(Permission::ReadComponents)?;
        let mut v = Violations::new();
        v.search_text("group", group.unwrap_or_default());
        v.finish()?;
        let rows = self.store.list_components(group, page.after.as_ref(), page.size + 1).await?;
        Ok(Page::from_rows(rows, page.size, |c| PageToken::Ordered {
            group_key: c.group_key(),
            position: c.position,
            name_key: c.name_key(),
            id: c.id,
        }))
    }

    pub async fn update_component(
        &self,
        caller: &Caller,
        id: Uuid,
        patch: ComponentPatch,
        if_match: Option<&str>,
    ) -> Result<Component> {
        caller.require(Permission::WriteComponents)?;
        let mut tx = self.store.begin().await?;
        let (mut component, imposed) = tx.lock_component(id).await?.ok_or_else(|| not_found(id))?;
        check_etag("component", if_match, component.version)?;
        let before = component.clone();
        let now = now();
        if component.apply_patch(patch, &imposed, now)? {
            let fields: Vec<&str> = [
                ("name", before.name != component.name),
                ("description", before.description != component.description),
                ("group", before.group != component.group),
                ("position", before.position != component.position),
                ("status", before.status != component.status),
            ]
            .into_iter()
            .filter_map(|(f, changed)| changed.then_some(f))
            .collect();
            tx.update_component(&component).await?;
            let details = json!({"fields": fields});
            tx.insert_audit_event(&AuditEvent::new(caller, "component.update", "component", id, details, now)).await?;
            if component.effective_status != before.effective_status {
                let events =
                    record_moves(tx.as_mut(), &[(component.clone(), before.effective_status)], Cause::Manual, now)
                        .await?;
                tx.insert_events(&traced(events)).await?;
                self.commit_with_events(tx).await?;
            } else {
                self.commit_public_change(tx).await?;
            }
        }
        Ok(component)
    }

    /// Deletes a component; refused while an open incident affects it.
    pub async fn delete_component(&self, caller: &Caller, id: Uuid, if_match: Option<&str>) -> Result<()> {
        caller.require(Permission::WriteComponents)?;
        let mut tx = self.store.begin().await?;
        let (component, _) = tx.lock_component(id).await?.ok_or_else(|| not_found(id))?;
        check_etag("component", if_match, component.version)?;
        tx.delete_component(id).await?;
        let details = json!({"name": component.name});
        tx.insert_audit_event(&AuditEvent::new(caller, "component.delete", "component", id, details, now())).await?;
        self.commit_public_change(tx).await
    }

    /// Commits a change customers see that writes no event, and says so to the public
    /// surfaces of this process and (through the database) of the others.
    async fn commit_public_change(&self, mut tx: Box<dyn Transaction>) -> Result<()> {
        tx.announce_public_change().await?;
        tx.commit().await?;
        self.signals.note_public_change();
        Ok(())
    }
}

/// The effective statuses of some components before a change, to tell afterwards which moved
/// (and record each move in the status history, caused by `caused_by`).
pub(crate) struct ComponentWatch {
    before: Vec<Component>,
    caused_by: Cause,
}

impl ComponentWatch {
    /// Reads (and locks) the components. Call before writing the change.
    ///
    /// Rows are locked in id order, whatever order the change names them in, so two changes
    /// touching the same components cannot deadlock.
    pub(crate) async fn start(
        tx: &mut dyn Transaction,
        ids: impl IntoIterator<Item = Uuid>,
        caused_by: Cause,
    ) -> Result<Self> {
        let mut before = Vec::new();
        let mut ids: Vec<Uuid> = ids.into_iter().collect();
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            if let Some((c, _)) = tx.lock_component(id).await? {
                before.push(c);
            }
        }
        Ok(ComponentWatch { before, caused_by })
    }

    /// Records each component whose effective status moved in the history, and returns a
    /// `component.status_changed` event for each.
    pub(crate) async fn finish(
        self,
        tx: &mut dyn Transaction,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Event>> {
        let mut moved = Vec::new();
        for before in self.before {
            if let Some((after, _)) = tx.lock_component(before.id).await?
                && after.effective_status != before.effective_status
            {
                moved.push((after, before.effective_status));
            }
        }
        record_moves(tx, &moved, self.caused_by, now).await
    }
}

/// Records a violation, under its field name, for each named component that does not exist.
pub(crate) async fn check_components_exist(
    tx: &mut dyn Transaction,
    v: &mut Violations,
    named: impl IntoIterator<Item = (String, Uuid)>,
) -> Result<()> {
    let named: Vec<(String, Uuid)> = named.into_iter().collect();
    let mut ids: Vec<Uuid> = named.iter().map(|(_, id)| *id).collect();
    ids.sort_unstable();
    ids.dedup();
    let existing = tx.existing_component_ids(&ids).await?;
    for (field, id) in named {
        if !existing.contains(&id) {
            v.add(field, format!("no component {id}"));
        }
    }
    Ok(())
}

/// Refuses the components of the list at `field` that do not exist, among those `is_new`
/// picks (those already on the resource may have been deleted since), naming each by its
/// place in the list.
pub(crate) async fn refuse_unknown_components(
    tx: &mut dyn Transaction,
    field: &str,
    components: &[Uuid],
    is_new: impl Fn(&Uuid) -> bool,
) -> Result<()> {
    let mut v = Violations::new();
    let named = components.iter().enumerate().filter(|(_, c)| is_new(c)).map(|(i, c)| (format!("{field}[{i}]"), *c));
    check_components_exist(tx, &mut v, named).await?;
    v.finish()
}

/// Records effective-status moves `(component after, status before)` in the history and
/// makes their events: the one place a move is written down.
async fn record_moves(
    tx: &mut dyn Transaction,
    moved: &[(Component, crate::domain::ComponentStatus)],
    caused_by: Cause,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<Event>> {
    let changes: Vec<StatusChange> = moved
        .iter()
        .map(|(after, before)| StatusChange::new(after.id, *before, after.effective_status, now, caused_by))
        .collect();
    tx.insert_status_changes(&changes).await?;
    Ok(moved.iter().map(|(after, before)| Event::component_status_changed(after, *before, now)).collect())
}
