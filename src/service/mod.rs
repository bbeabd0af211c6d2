//! The use cases. Both transports call these and nothing else; each use case runs in one
//! store transaction, so a change and everything it records commit together.

mod auth;
mod components;
mod deliveries;
mod events;
mod incidents;
mod metrics;

pub use crate::store::Notice;
pub use auth::{AuthSettings, KEY_CACHE_TTL, RateLimit};
pub use deliveries::{Clock, DispatchSettings, ManualClock, SubscriptionWithSecret, SystemClock, delivery_status};
pub use metrics::Metrics;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::domain::{Error, IdempotencyKey, Result};
use crate::store::{DynStore, IdempotencyClaim, Transaction};

/// How long a stored idempotent response is replayed.
pub const IDEMPOTENCY_TTL: chrono::Duration = chrono::Duration::hours(24);

/// The service every transport calls. Cheap to clone.
#[derive(Clone)]
pub struct Service {
    store: DynStore,
    auth: std::sync::Arc<auth::Authenticator>,
    signals: std::sync::Arc<events::Signals>,
    /// Where the API is reached from outside: the CloudEvents `source`, links in messages.
    public_url: std::sync::Arc<str>,
    dispatcher: std::sync::Arc<deliveries::Dispatcher>,
    metrics: std::sync::Arc<Metrics>,
    /// Set at shutdown: readiness fails from then on.
    draining: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Cancelled when the process stops taking work: live event streams end.
    closing: tokio_util::sync::CancellationToken,
}

/// The result of a create: the resource, and whether it is a replay of an earlier request
/// with the same idempotency key.
#[derive(Debug, Clone)]
pub struct Created<T> {
    pub value: T,
    pub replayed: bool,
}

impl Service {
    pub fn new(store: DynStore, auth: AuthSettings) -> Self {
        Self {
            store,
            auth: std::sync::Arc::new(auth::Authenticator::new(auth)),
            signals: std::sync::Arc::new(events::Signals::new()),
            public_url: "http://localhost:8080".into(),
            dispatcher: std::sync::Arc::new(deliveries::Dispatcher::new(
                crate::notify::Sender::new(crate::notify::SenderSettings {
                    guard: crate::notify::Guard::default(),
                    smtp_url: None,
                    smtp_from: "incidentd@localhost".into(),
                    public_url: "http://localhost:8080".into(),
                })
                .expect("the default HTTP client builds"),
                DispatchSettings::default(),
            )),
            metrics: Default::default(),
            draining: Default::default(),
            closing: Default::default(),
        }
    }

    /// Sets how notifications are sent.
    pub fn with_dispatch(
        mut self,
        sender: crate::notify::SenderSettings,
        settings: DispatchSettings,
    ) -> anyhow::Result<Self> {
        self.dispatcher =
            std::sync::Arc::new(deliveries::Dispatcher::new(crate::notify::Sender::new(sender)?, settings));
        Ok(self)
    }

    /// Sets the externally reachable base URL (no trailing slash needed).
    pub fn with_public_url(mut self, url: &str) -> Self {
        self.public_url = url.trim_end_matches('/').into();
        self
    }

    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// Whether this process takes traffic: the database answers and it is not shutting down.
    pub async fn ready(&self) -> Result<()> {
        if self.is_draining() {
            return Err(Error::Unavailable("shutting down".into()));
        }
        self.store.ping().await
    }

    /// Starts the shutdown: readiness fails from now on, so load balancers stop sending
    /// traffic while requests already routed here are still served.
    pub fn start_draining(&self) {
        self.draining.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Ends live event streams (their clients resume elsewhere from their last event id).
    pub fn end_streams(&self) {
        self.closing.cancel();
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The metrics the transports record into.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The Prometheus text exposition, with the figures read from the database now.
    pub async fn render_metrics(&self) -> String {
        let observed = tokio::time::timeout(std::time::Duration::from_secs(5), self.store.observe())
            .await
            .unwrap_or_else(|_| Err(Error::Unavailable("reading the metrics timed out".into())));
        self.metrics.render(observed)
    }

    /// Removes idempotency records older than [`IDEMPOTENCY_TTL`].
    pub async fn purge_expired_idempotency_keys(&self) -> Result<u64> {
        self.store.purge_idempotency_keys(crate::domain::now() - IDEMPOTENCY_TTL).await
    }

    /// Keeps the database's query planner statistics current (see `Store::refresh_statistics`).
    pub async fn refresh_statistics(&self) -> Result<()> {
        self.store.refresh_statistics().await
    }
}

/// The fingerprint of a request made with an idempotency key: SHA-256 of its canonical JSON
/// (taken from the transport-neutral input, so REST and gRPC agree). `None` without a key.
fn fingerprint(key: Option<&IdempotencyKey>, request: &impl Serialize) -> Result<Option<[u8; 32]>> {
    if key.is_none() {
        return Ok(None);
    }
    let body = serde_json::to_vec(request).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(Some(Sha256::digest(&body).into()))
}

/// Claims an idempotency key inside `tx`. Returns the stored response when the key was used
/// before with the same request (same fingerprint), refuses it when used with a different one,
/// and returns `None` when the caller should go ahead (and then call [`save_response`]).
async fn claim<T: DeserializeOwned>(
    tx: &mut dyn Transaction,
    scope: &str,
    key: Option<&IdempotencyKey>,
    fingerprint: Option<[u8; 32]>,
) -> Result<Option<T>> {
    let (Some(key), Some(hash)) = (key, fingerprint) else { return Ok(None) };
    let now = crate::domain::now();
    match tx.claim_idempotency_key(scope, key.as_str(), &hash, now, now - IDEMPOTENCY_TTL).await? {
        IdempotencyClaim::Claimed => Ok(None),
        IdempotencyClaim::Existing { request_hash, response } => {
            if request_hash.as_slice() != hash.as_slice() {
                return Err(Error::IdempotencyKeyReused { key: key.as_str().to_string() });
            }
            serde_json::from_value(response).map(Some).map_err(|e| Error::Internal(e.to_string()))
        }
    }
}

async fn save_response(
    tx: &mut dyn Transaction,
    scope: &str,
    key: Option<&IdempotencyKey>,
    response: &impl Serialize,
) -> Result<()> {
    let Some(key) = key else { return Ok(()) };
    let value = serde_json::to_value(response).map_err(|e| Error::Internal(e.to_string()))?;
    tx.save_idempotent_response(scope, key.as_str(), &value).await
}
