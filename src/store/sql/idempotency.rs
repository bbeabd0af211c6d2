//! Idempotency keys: the statements both backends run.

/// Claims a key: waits on a concurrent holder of it; a record created before `$5` is taken
/// over.
pub const CLAIM_KEY: &str = "INSERT INTO idempotency_keys (scope, key, request_hash, created_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (scope, key) DO UPDATE SET request_hash = excluded.request_hash, response = NULL, \
     created_at = excluded.created_at WHERE idempotency_keys.created_at < $5";
pub const SELECT_CLAIMED: &str = "SELECT request_hash, response FROM idempotency_keys WHERE scope = $1 AND key = $2";
pub const SAVE_RESPONSE: &str = "UPDATE idempotency_keys SET response = $3 WHERE scope = $1 AND key = $2";

/// What [`SELECT_CLAIMED`] found for a key the claim did not take: the earlier request's
/// hash and response.
pub fn existing(
    scope: &str,
    key: &str,
    (request_hash, response): (Vec<u8>, Option<sqlx::types::Json<serde_json::Value>>),
) -> crate::domain::Result<crate::store::IdempotencyClaim> {
    let sqlx::types::Json(response) = response
        .ok_or_else(|| crate::domain::Error::Internal(format!("idempotency record {scope}/{key} has no response")))?;
    Ok(crate::store::IdempotencyClaim::Existing { request_hash, response })
}
