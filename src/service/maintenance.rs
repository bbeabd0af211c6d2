//! Scheduled maintenance: scheduling, editing and moving it by hand, and the workers' step
//! that starts, completes and announces it on its own (once, whichever replica gets there).

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::components::{ComponentWatch, refuse_unknown_components};
use super::events::traced;
use super::{Created, Service, claim, fingerprint, save_response};
use crate::domain::history::Cause;
use crate::domain::maintenance::{
    Maintenance, MaintenancePatch, MaintenanceStatus, MaintenanceUpdate, NewMaintenance, NewMaintenanceUpdate,
};
use crate::domain::page::{Page, PageToken};
use crate::domain::version::check_etag;
use crate::domain::{
    AuditEvent, Caller, Error, Event, EventType, IdempotencyKey, PageRequest, Permission, Result, now,
};
use crate::store::{MaintenanceFilter, Transaction};

const CREATE_SCOPE: &str = "maintenances.create";
const UPDATE_SCOPE: &str = "maintenances.update";

fn not_found(id: Uuid) -> Error {
    Error::NotFound { resource: "maintenance", id: id.to_string() }
}

/// An update posted to a maintenance, as fingerprinted for idempotency.
#[derive(serde::Serialize)]
struct UpdateRequest<'a> {
    maintenance: Uuid,
    update: &'a NewMaintenanceUpdate,
}

impl Service {
    /// Schedules a maintenance. With an idempotency key a repeat returns the first response.
    pub async fn create_maintenance(
        &self,
        caller: &Caller,
        input: NewMaintenance,
        idempotency_key: Option<&IdempotencyKey>,
    ) -> Result<Created<Maintenance>> {
        caller.require(Permission::WriteMaintenance)?;
        let scope = format!("{CREATE_SCOPE}:{}", caller.label());
        let fingerprint = fingerprint(idempotency_key, &input)?;
        let now = now();
        let mut maintenance = input.validate(Uuid::now_v7(), now)?;
        maintenance.settle_reminder(now, self.maintenance_reminder);
        let mut tx = self.store.begin().await?;
        if let Some(replay) = claim(tx.as_mut(), &self.retention, &scope, idempotency_key, fingerprint).await? {
            return Ok(Created { value: replay, replayed: true });
        }
        refuse_unknown_components(tx.as_mut(), "components", &maintenance.components, |_| true).await?;
        tx.insert_maintenance(&maintenance).await?;
        let update = MaintenanceUpdate::new(&maintenance, maintenance.body.clone(), false, &caller.name, now);
        tx.insert_maintenance_update(&update).await?;
        let event = Event::about_maintenance(EventType::MaintenanceScheduled, &maintenance, json!({}), None, now);
        tx.insert_events(&traced(vec![event])).await?;
        let details = json!({"title": maintenance.title, "scheduled_for": maintenance.scheduled_for});
        tx.insert_audit_event(&AuditEvent::new(
            caller,
            "maintenance.create",
            "maintenance",
            maintenance.id,
            details,
            now,
        ))
        .await?;
        save_response(tx.as_mut(), &scope, idempotency_key, &maintenance).await?;
        self.commit_with_events(tx).await?;
        Ok(Created { value: maintenance, replayed: false })
    }

    pub async fn get_maintenance(&self, caller: &Caller, id: Uuid) -> Result<Maintenance> {
        caller.require(Permission::ReadMaintenance)?;
        self.store.get_maintenance(id).await?.ok_or_else(|| not_found(id))
    }

    /// Maintenances newest window first, of any of `statuses` (all when empty).
    pub async fn list_maintenances(
        &self,
        caller: &Caller,
        statuses: Vec<MaintenanceStatus>,
        page: PageRequest,
    ) -> Result<Page<Maintenance>> {
        caller.require(Permission::ReadMaintenance)?;
        let filter = MaintenanceFilter { statuses };
        let rows = self.store.list_maintenances(&filter, page.after.as_ref(), page.size + 1).await?;
        Ok(Page::from_rows(rows, page.size, |m| PageToken::Time { at: m.scheduled_for, id: m.id }))
    }

    /// Edits a maintenance that is not final. Components added to or removed from one that is
    /// under way start or stop being under maintenance at once.
    pub async fn update_maintenance(
        &self,
        caller: &Caller,
        id: Uuid,
        patch: MaintenancePatch,
        if_match: Option<&str>,
    ) -> Result<Maintenance> {
        caller.require(Permission::WriteMaintenance)?;
        let now = now();
        let mut tx = self.store.begin().await?;
        let mut maintenance = tx.lock_maintenance(id).await?.ok_or_else(|| not_found(id))?;
        check_etag("maintenance", if_match, maintenance.version)?;
        let before = maintenance.components.clone();
        let changed = maintenance.apply_patch(patch, now)?;
        if changed.is_empty() {
            return Ok(maintenance);
        }
        maintenance.settle_reminder(now, self.maintenance_reminder);
        // Components already on it may have been deleted since (they are then dropped).
        refuse_unknown_components(tx.as_mut(), "components", &maintenance.components, |c| !before.contains(c)).await?;
        let watched = if maintenance.status.is_active() {
            before.iter().chain(&maintenance.components).copied().collect()
        } else {
            Vec::new()
        };
        let watch = ComponentWatch::start(tx.as_mut(), watched, Cause::Maintenance(id)).await?;
        tx.update_maintenance(&maintenance).await?;
        let data = json!({"changed_fields": changed});
        let mut events = vec![Event::about_maintenance(EventType::MaintenanceUpdated, &maintenance, data, None, now)];
        events.extend(watch.finish(tx.as_mut(), now).await?);
        tx.insert_events(&traced(events)).await?;
        let details = json!({"fields": changed});
        tx.insert_audit_event(&AuditEvent::new(caller, "maintenance.update", "maintenance", id, details, now)).await?;
        self.commit_with_events(tx).await?;
        Ok(maintenance)
    }

    /// Posts an update to a maintenance's timeline, moving its status when it names another
    /// one (`cancelled` from any state that is not final).
    pub async fn post_maintenance_update(
        &self,
        caller: &Caller,
        id: Uuid,
        input: NewMaintenanceUpdate,
        if_match: Option<&str>,
        idempotency_key: Option<&IdempotencyKey>,
    ) -> Result<Created<(MaintenanceUpdate, Maintenance)>> {
        caller.require(Permission::WriteMaintenance)?;
        let scope = format!("{UPDATE_SCOPE}:{}", caller.label());
        let fingerprint = fingerprint(idempotency_key, &UpdateRequest { maintenance: id, update: &input })?;
        let now = now();
        let mut tx = self.store.begin().await?;
        if let Some(replay) = claim(tx.as_mut(), &self.retention, &scope, idempotency_key, fingerprint).await? {
            return Ok(Created { value: replay, replayed: true });
        }
        let mut maintenance = tx.lock_maintenance(id).await?.ok_or_else(|| not_found(id))?;
        check_etag("maintenance", if_match, maintenance.version)?;
        if maintenance.status.is_final() {
            return Err(Error::Conflict(format!("maintenance {id} is {}: its timeline is closed", maintenance.status)));
        }
        let (body, to) = input.validate(maintenance.status)?;
        let value = match to {
            Some(to) => {
                let moved = move_maintenance(tx.as_mut(), &mut maintenance, to, body, false, &caller.name, now).await?;
                tx.insert_events(&traced(moved.1)).await?;
                (moved.0, maintenance)
            }
            None => {
                let update = MaintenanceUpdate::new(&maintenance, body, false, &caller.name, now);
                tx.insert_maintenance_update(&update).await?;
                let event = Event::about_maintenance(
                    EventType::MaintenanceUpdated,
                    &maintenance,
                    json!({}),
                    Some(&update),
                    now,
                );
                tx.insert_events(&traced(vec![event])).await?;
                (update, maintenance)
            }
        };
        let details = json!({"update_id": value.0.id, "status": value.1.status});
        tx.insert_audit_event(&AuditEvent::new(caller, "maintenance.update_posted", "maintenance", id, details, now))
            .await?;
        save_response(tx.as_mut(), &scope, idempotency_key, &value).await?;
        self.commit_with_events(tx).await?;
        Ok(Created { value, replayed: false })
    }

    /// A maintenance's timeline, oldest first.
    pub async fn list_maintenance_updates(
        &self,
        caller: &Caller,
        id: Uuid,
        page: PageRequest,
    ) -> Result<Page<MaintenanceUpdate>> {
        let maintenance = self.get_maintenance(caller, id).await?;
        let rows = self.store.list_maintenance_updates(maintenance.id, page.after.as_ref(), page.size + 1).await?;
        Ok(Page::from_rows(rows, page.size, |u| PageToken::Time { at: u.created_at, id: u.id }))
    }

    /// The workers' step at `at` (or later: the time the step reads): every maintenance with an automatic start or completion
    /// due is moved, and every reminder due is sent, each in its own transaction that holds
    /// the maintenance (other replicas skip it), so each happens once. A maintenance whose
    /// whole window passed while no process ran is started and completed now. Returns how
    /// many maintenances were handled.
    pub async fn run_due_maintenance(&self, at: DateTime<Utc>) -> Result<usize> {
        // Most seconds nothing is due: find that out without a write transaction (on SQLite
        // one takes the database's write lock).
        let first = at.max(now());
        if !self.store.maintenance_due(first, first + self.maintenance_reminder).await? {
            return Ok(0);
        }
        let mut handled = 0;
        loop {
            let mut tx = self.store.begin().await?;
            // Read after the transaction began, so nothing it finds was written later.
            let now = at.max(now());
            let Some(mut maintenance) = tx.claim_due_maintenance(now, now + self.maintenance_reminder).await? else {
                return Ok(handled);
            };
            let mut events = Vec::new();
            if maintenance.reminder_due(now, self.maintenance_reminder) {
                maintenance.reminded_at = Some(now);
                tx.update_maintenance(&maintenance).await?;
                events.push(Event::about_maintenance(
                    EventType::MaintenanceReminder,
                    &maintenance,
                    json!({}),
                    None,
                    now,
                ));
            }
            for step in maintenance.due_moves(now) {
                let (_, moved) =
                    move_maintenance(tx.as_mut(), &mut maintenance, step.target(), String::new(), true, "system", now)
                        .await?;
                events.extend(moved);
            }
            if events.is_empty() {
                // Nothing the rules call due (the SQL and the rules disagree): do not spin.
                tracing::warn!(maintenance = %maintenance.id, "a maintenance was claimed with nothing due");
                return Ok(handled);
            }
            tx.insert_events(&traced(events)).await?;
            self.commit_with_events(tx).await?;
            tracing::info!(maintenance = %maintenance.id, status = %maintenance.status, "maintenance moved on schedule");
            handled += 1;
        }
    }
}

/// Moves a maintenance to `to` with an update saying so, records what its components did,
/// and returns the update and the events.
async fn move_maintenance(
    tx: &mut dyn Transaction,
    maintenance: &mut Maintenance,
    to: MaintenanceStatus,
    body: String,
    automatic: bool,
    author: &str,
    now: DateTime<Utc>,
) -> Result<(MaintenanceUpdate, Vec<Event>)> {
    let was_active = maintenance.status.is_active();
    let watched = if was_active != to.is_active() { maintenance.components.clone() } else { Vec::new() };
    let watch = ComponentWatch::start(tx, watched, Cause::Maintenance(maintenance.id)).await?;
    let from = maintenance.transition(to, now)?;
    tx.update_maintenance(maintenance).await?;
    let update = MaintenanceUpdate::new(maintenance, body, automatic, author, now);
    tx.insert_maintenance_update(&update).await?;
    let mut events = vec![Event::maintenance_moved(maintenance, from, &update, now)];
    events.extend(watch.finish(tx, now).await?);
    Ok((update, events))
}
