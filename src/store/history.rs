//! Component status history.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::history::{Imposed, StatusChange};
use crate::domain::page::PageToken;
use crate::domain::{ComponentStatus, Result};

/// An incident's imposition on a component, as recorded: what the history backfill replays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imposition {
    pub component_id: Uuid,
    /// The component's own status now.
    pub manual: ComponentStatus,
    /// The status, from the incident's declaration until it was resolved.
    pub imposed: Imposed,
}

#[async_trait]
pub trait HistoryStore {
    /// A component's status changes, newest first (changed_at, then id), after `after`.
    async fn list_status_changes(
        &self,
        component_id: Uuid,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<StatusChange>>;
    /// The status changes at or after `since`, of one component or of all, oldest first.
    async fn status_changes_since(&self, component_id: Option<Uuid>, since: DateTime<Utc>)
    -> Result<Vec<StatusChange>>;
}

#[async_trait]
pub trait HistoryTx {
    async fn insert_status_changes(&mut self, changes: &[StatusChange]) -> Result<()>;
    /// Claims the one-time replay of the history recorded before it was kept: true for the
    /// one transaction that should do it (others wait, then get false).
    async fn claim_history_backfill(&mut self) -> Result<bool>;
    /// Every imposition ever recorded, for the replay.
    async fn impositions(&mut self) -> Result<Vec<Imposition>>;
}
