//! Typed links between incidents, and what merging an incident into another moves.

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::Result;
use crate::domain::link::{IncidentLink, Link, LinkKind};

/// What a merge moved from the duplicate to the incident it went into.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Moved {
    pub timeline_entries: u64,
    pub alerts: u64,
    pub actions: u64,
    pub links: u64,
    pub postmortem: bool,
}

#[async_trait]
pub trait LinkStore {
    /// The incident's links, as it reads them, oldest first.
    async fn list_links(&self, incident_id: Uuid) -> Result<Vec<Link>>;
}

#[async_trait]
pub trait LinkTx {
    /// Whether `a` and `b` are linked with `kind` (one of [`LinkKind::STORED`]) from `a` to
    /// `b`, or either way for a symmetric kind.
    async fn link_exists(&mut self, a: Uuid, b: Uuid, kind: LinkKind) -> Result<bool>;
    async fn insert_link(&mut self, link: &IncidentLink) -> Result<()>;
    async fn get_link(&mut self, id: Uuid) -> Result<Option<IncidentLink>>;
    async fn delete_link(&mut self, id: Uuid) -> Result<()>;
    /// Moves the duplicate's timeline, alerts (and its alert groups, so later alerts join the
    /// target), actions, links (dropping those between the two and repeats) and postmortem
    /// (when the target has none) to the target; forgets its acknowledgement reminders.
    async fn move_merged(&mut self, source: Uuid, target: Uuid) -> Result<Moved>;
}
