//! Incidents and their timeline.

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::page::PageToken;
use crate::domain::query::IncidentFilter;
use crate::domain::{Incident, IncidentKey, IncidentRef, Result, TimelineEntry, Visibility};

#[async_trait]
pub trait IncidentStore {
    async fn get_incident(&self, key: IncidentKey) -> Result<Option<Incident>>;
    /// Incidents newest first (created_at, then id, descending), after `after`, at most `limit`.
    async fn list_incidents(
        &self,
        filter: &IncidentFilter,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<Incident>>;
    /// Every timeline entry of these incidents, oldest first (created_at, then id).
    async fn list_timelines(&self, incident_ids: &[Uuid]) -> Result<Vec<TimelineEntry>>;
    /// Timeline entries oldest first (created_at, then id), after `after`, at most `limit`.
    async fn list_timeline(
        &self,
        incident_id: Uuid,
        visibility: Option<Visibility>,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<TimelineEntry>>;
}

#[async_trait]
pub trait IncidentTx {
    /// Inserts a new incident and returns the reference assigned to it.
    async fn insert_incident(&mut self, incident: &Incident) -> Result<IncidentRef>;
    /// Reads an incident and locks it until the transaction ends.
    async fn lock_incident(&mut self, key: IncidentKey) -> Result<Option<Incident>>;
    /// Writes back every mutable field of a locked incident. `components_changed` rewrites
    /// the affected-component index.
    async fn update_incident(&mut self, incident: &Incident, components_changed: bool) -> Result<()>;
    async fn delete_incident(&mut self, id: Uuid) -> Result<()>;
    /// Resolves incident keys to ids; `None` where no incident matches.
    async fn resolve_incident_ids(&mut self, keys: &[IncidentKey]) -> Result<Vec<Option<Uuid>>>;
    async fn insert_timeline_entry(&mut self, entry: &TimelineEntry) -> Result<()>;
}
