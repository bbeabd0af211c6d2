//! Components and the statuses open incidents impose on them.

use std::collections::HashSet;

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::page::PageToken;
use crate::domain::{Component, ComponentStatus, Result};

#[async_trait]
pub trait ComponentStore {
    async fn get_component(&self, id: Uuid) -> Result<Option<Component>>;
    /// Components in status-page order (group, position, name, id), after `after`, at most `limit`.
    async fn list_components(
        &self,
        group: Option<&str>,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<Component>>;
}

#[async_trait]
pub trait ComponentTx {
    /// Which of `ids` name existing components.
    async fn existing_component_ids(&mut self, ids: &[Uuid]) -> Result<HashSet<Uuid>>;
    /// Inserts a component; a duplicate name is [`crate::domain::Error::AlreadyExists`].
    async fn insert_component(&mut self, component: &Component) -> Result<()>;
    /// Reads a component, locks it, and returns it with the statuses open incidents impose on it.
    async fn lock_component(&mut self, id: Uuid) -> Result<Option<(Component, Vec<ComponentStatus>)>>;
    async fn update_component(&mut self, component: &Component) -> Result<()>;
    /// Deletes a component no open incident affects ([`crate::domain::Error::Conflict`] otherwise).
    async fn delete_component(&mut self, id: Uuid) -> Result<()>;
}
