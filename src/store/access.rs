//! API keys and the audit trail.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::access::{AuditFilter, IssuedKey};
use crate::domain::page::PageToken;
use crate::domain::{ApiKey, AuditEvent, Result};

#[async_trait]
pub trait AccessStore {
    /// The key with this lookup id, with the hash of its secret.
    async fn find_api_key(&self, lookup: &str) -> Result<Option<(ApiKey, Vec<u8>)>>;
    async fn get_api_key(&self, id: Uuid) -> Result<Option<ApiKey>>;
    /// Keys newest first (created_at, then id, descending).
    async fn list_api_keys(&self, after: Option<&PageToken>, limit: u32) -> Result<Vec<ApiKey>>;
    /// Records when a key was last used.
    async fn touch_api_key(&self, id: Uuid, at: DateTime<Utc>) -> Result<()>;
    /// Audit events newest first (occurred_at, then id, descending).
    async fn list_audit_events(
        &self,
        filter: &AuditFilter,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>>;
}

#[async_trait]
pub trait AccessTx {
    async fn insert_api_key(&mut self, key: &IssuedKey) -> Result<()>;
    /// Marks a key revoked (once) and returns it; `None` if there is no such key.
    async fn revoke_api_key(&mut self, id: Uuid, at: DateTime<Utc>) -> Result<Option<ApiKey>>;
    /// How many keys exist, holding a lock that keeps others from adding one until the
    /// transaction ends (for the one-time bootstrap key).
    async fn count_api_keys_exclusively(&mut self) -> Result<i64>;
    async fn insert_audit_event(&mut self, event: &AuditEvent) -> Result<()>;
}
