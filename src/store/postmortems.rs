//! Postmortems, one per incident.

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::Result;
use crate::domain::postmortem::Postmortem;

#[async_trait]
pub trait PostmortemStore {
    async fn get_postmortem(&self, incident_id: Uuid) -> Result<Option<Postmortem>>;
    /// The published postmortems of these incidents (the public surfaces read them at once).
    async fn published_postmortems(&self, incident_ids: &[Uuid]) -> Result<Vec<Postmortem>>;
}

#[async_trait]
pub trait PostmortemTx {
    /// Inserts a postmortem; one for an incident that has one is
    /// [`crate::domain::Error::AlreadyExists`].
    async fn insert_postmortem(&mut self, postmortem: &Postmortem) -> Result<()>;
    /// Reads the incident's postmortem and locks it.
    async fn lock_postmortem(&mut self, incident_id: Uuid) -> Result<Option<Postmortem>>;
    async fn update_postmortem(&mut self, postmortem: &Postmortem) -> Result<()>;
}
