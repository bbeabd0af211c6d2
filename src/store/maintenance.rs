//! Scheduled maintenance, its components and its public timeline.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use super::sql::maintenance::MaintenanceFilter;
use crate::domain::Result;
use crate::domain::maintenance::{Maintenance, MaintenanceUpdate};
use crate::domain::page::PageToken;

#[async_trait]
pub trait MaintenanceStore {
    async fn get_maintenance(&self, id: Uuid) -> Result<Option<Maintenance>>;
    /// Maintenances newest window first (`scheduled_for`, then id), after `after`.
    async fn list_maintenances(
        &self,
        filter: &MaintenanceFilter,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<Maintenance>>;
    /// The timelines of these maintenances, oldest first (the public surfaces read them at once).
    async fn list_maintenance_timelines(&self, maintenance_ids: &[Uuid]) -> Result<Vec<MaintenanceUpdate>>;
    /// Whether the workers have anything to do at `now` (see [`MaintenanceTx::claim_due_maintenance`]).
    async fn maintenance_due(&self, now: DateTime<Utc>, remind_before: DateTime<Utc>) -> Result<bool>;
    /// A maintenance's timeline, oldest first.
    async fn list_maintenance_updates(
        &self,
        maintenance_id: Uuid,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<MaintenanceUpdate>>;
}

#[async_trait]
pub trait MaintenanceTx {
    /// Inserts a maintenance with its components.
    async fn insert_maintenance(&mut self, maintenance: &Maintenance) -> Result<()>;
    /// Reads a maintenance and locks it.
    async fn lock_maintenance(&mut self, id: Uuid) -> Result<Option<Maintenance>>;
    /// Writes a maintenance and its components, which impose `under_maintenance` while it
    /// is active.
    async fn update_maintenance(&mut self, maintenance: &Maintenance) -> Result<()>;
    async fn insert_maintenance_update(&mut self, update: &MaintenanceUpdate) -> Result<()>;
    /// Locks the maintenance (soonest first) the workers have something to do for at `now`
    /// (an automatic start or completion, or the reminder of a start before
    /// `remind_before`), skipping any another transaction holds: each is handled once.
    async fn claim_due_maintenance(
        &mut self,
        now: DateTime<Utc>,
        remind_before: DateTime<Utc>,
    ) -> Result<Option<Maintenance>>;
}
