//! The stored secrets the service uses again, sealed with the key ring (see
//! `sql/secrets.rs`, where every backend seals and opens them).

use async_trait::async_trait;

pub use super::sql::secrets::Resealed;
use crate::domain::Result;
use crate::secrets::Reseal;

#[async_trait]
pub trait SecretStore {
    /// Seals stored secrets again under the ring's first key, as `scope` says, in small
    /// batches; each value is replaced only while its row still holds what was read. Every
    /// sealed value is opened on the way, so one that no key opens fails the pass, naming it.
    async fn reseal_secrets(&self, scope: Reseal) -> Result<Resealed>;
}
