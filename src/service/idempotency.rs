//! Idempotent creates: a create made with an idempotency key claims the key in its own
//! transaction and stores its response there; a repeat with the same request gets that
//! response back, a repeat with a different one is refused.

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::domain::retention::RetentionPolicy;
use crate::domain::{Error, IdempotencyKey, Result};
use crate::store::{IdempotencyClaim, Transaction};

/// The fingerprint of a request made with an idempotency key: SHA-256 of its canonical JSON
/// (taken from the transport-neutral input, so REST and gRPC agree). `None` without a key.
pub(super) fn fingerprint(key: Option<&IdempotencyKey>, request: &impl Serialize) -> Result<Option<[u8; 32]>> {
    if key.is_none() {
        return Ok(None);
    }
    let body = serde_json::to_vec(request).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(Some(Sha256::digest(&body).into()))
}

/// Claims an idempotency key inside `tx`. Returns the stored response when the key was used
/// before with the same request (same fingerprint), refuses it when used with a different one,
/// and returns `None` when the caller should go ahead (and then call [`save_response`]).
/// A key is remembered as long as idempotency records are kept (`retention`, 24 h by
/// default): a record older than that is replaced, as if pruned already.
pub(super) async fn claim<T: DeserializeOwned>(
    tx: &mut dyn Transaction,
    retention: &RetentionPolicy,
    scope: &str,
    key: Option<&IdempotencyKey>,
    fingerprint: Option<[u8; 32]>,
) -> Result<Option<T>> {
    let (Some(key), Some(hash)) = (key, fingerprint) else { return Ok(None) };
    let now = crate::domain::now();
    let expired_before = retention.idempotency_expired_before(now);
    match tx.claim_idempotency_key(scope, key.as_str(), &hash, now, expired_before).await? {
        IdempotencyClaim::Claimed => Ok(None),
        IdempotencyClaim::Existing { request_hash, response } => {
            if request_hash.as_slice() != hash.as_slice() {
                return Err(Error::IdempotencyKeyReused { key: key.as_str().to_string() });
            }
            serde_json::from_value(response).map(Some).map_err(|e| Error::Internal(e.to_string()))
        }
    }
}

pub(super) async fn save_response(
    tx: &mut dyn Transaction,
    scope: &str,
    key: Option<&IdempotencyKey>,
    response: &impl Serialize,
) -> Result<()> {
    let Some(key) = key else { return Ok(()) };
    let value = serde_json::to_value(response).map_err(|e| Error::Internal(e.to_string()))?;
    tx.save_idempotent_response(scope, key.as_str(), &value).await
}
