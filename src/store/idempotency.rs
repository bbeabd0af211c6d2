//! Idempotency keys: the stored responses of creates made with a key (expired records are
//! pruned with the rest, in `retention.rs`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::Result;

/// What a claim on an idempotency key found.
#[derive(Debug, Clone, PartialEq)]
pub enum IdempotencyClaim {
    /// The key is new (or its earlier use expired): go ahead, then save the response.
    Claimed,
    /// The key was used before: its request hash and stored response.
    Existing { request_hash: Vec<u8>, response: serde_json::Value },
}

#[async_trait]
pub trait IdempotencyTx {
    /// Claims `(scope, key)`. Waits for a concurrent transaction holding the same key, so
    /// concurrent duplicates see the first one's committed response. A record created before
    /// `expired_before` is replaced.
    async fn claim_idempotency_key(
        &mut self,
        scope: &str,
        key: &str,
        request_hash: &[u8],
        now: DateTime<Utc>,
        expired_before: DateTime<Utc>,
    ) -> Result<IdempotencyClaim>;
    /// Stores the response of a claimed key.
    async fn save_idempotent_response(&mut self, scope: &str, key: &str, response: &serde_json::Value) -> Result<()>;
}
