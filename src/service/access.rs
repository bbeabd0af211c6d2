//! Authentication and access control: who is calling (API key or admin token), rate limits per
//! caller, API key management and the audit trail.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use uuid::Uuid;

use super::Service;
use crate::domain::access::{AuditFilter, IssuedKey, NewApiKey, Token, hash_secret, hashes_match};
use crate::domain::page::{Page, PageToken};
use crate::domain::{ApiKey, AuditEvent, Caller, Error, PageRequest, Permission, Result, Scope, now};

/// How long a key read from the database is trusted before it is read again: a key revoked on
/// another replica stops working within this time (at once on the replica that revoked it).
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(5);
/// `last_used_at` is written at most this often per key.
const TOUCH_INTERVAL: Duration = Duration::from_secs(60);

/// Per-caller request rate: a token bucket refilled at `per_second`, holding `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

/// How callers are authenticated.
#[derive(Debug, Clone, Default)]
pub struct AccessSettings {
    /// `INCIDENTD_ADMIN_TOKEN`: a static credential with the `admin` scope.
    pub admin_token: Option<SecretString>,
    /// `None` disables rate limiting.
    pub rate_limit: Option<RateLimit>,
}

struct CachedKey {
    key: ApiKey,
    secret_hash: Vec<u8>,
    fetched: Instant,
}

pub(super) struct Authenticator {
    admin_token_hash: Option<Vec<u8>>,
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    keys: Mutex<HashMap<String, CachedKey>>,
    touched: Mutex<HashMap<Uuid, Instant>>,
}

impl Authenticator {
    pub(super) fn new(settings: AccessSettings) -> Self {
        Authenticator {
            admin_token_hash: settings.admin_token.map(|t| hash_secret(t.expose_secret())),
            limiter: settings
                .rate_limit
                .map(|r| RateLimiter::keyed(Quota::per_second(r.per_second).allow_burst(r.burst))),
            keys: Mutex::new(HashMap::new()),
            touched: Mutex::new(HashMap::new()),
        }
    }

    fn forget(&self, id: Uuid) {
        self.keys.lock().expect("key cache lock").retain(|_, c| c.key.id != id);
    }

    /// Takes one request from the caller's bucket.
    pub(super) fn admit(&self, caller: &Caller) -> Result<()> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        limiter
            .check_key(&caller.label())
            .map_err(|not_until| Error::RateLimited { retry_after: not_until.wait_time_from(limiter.clock().now()) })
    }

    /// Whether `last_used_at` is due to be written for this key (and notes that it will be).
    fn touch_due(&self, id: Uuid) -> bool {
        let mut touched = self.touched.lock().expect("touch lock");
        let now = Instant::now();
        match touched.get(&id) {
            Some(t) if now.duration_since(*t) < TOUCH_INTERVAL => false,
            _ => {
                touched.insert(id, now);
                true
            }
        }
    }
}

fn unauthenticated(message: &str) -> Error {
    Error::Unauthenticated(message.to_string())
}

impl Service {
    /// Identifies the caller from an `Authorization` header value (`Bearer <key>`) and takes
    /// one request from its rate-limit bucket.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Caller> {
        let header = authorization
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .ok_or_else(|| unauthenticated("missing credentials: send the header `Authorization: Bearer <API key>`"))?;
        let secret = match header.split_once(' ') {
            Some((scheme, secret)) if scheme.eq_ignore_ascii_case("bearer") => secret.trim(),
            _ => return Err(unauthenticated("the Authorization header must be `Bearer <API key>`")),
        };
        let caller = self.identify(secret).await?;
        self.authenticator.admit(&caller)?;
        Ok(caller)
    }

    async fn identify(&self, secret: &str) -> Result<Caller> {
        if let Some(admin) = &self.authenticator.admin_token_hash
            && hashes_match(&hash_secret(secret), admin)
        {
            return Ok(Caller::admin_token());
        }
        let token = Token::parse(secret)
            .ok_or_else(|| unauthenticated("malformed API key: expected a key issued by incidentd (ind_…)"))?;
        let (key, secret_hash) =
            self.find_key(token.lookup()).await?.ok_or_else(|| unauthenticated("unknown API key"))?;
        if !hashes_match(&token.hash(), &secret_hash) {
            return Err(unauthenticated("unknown API key"));
        }
        if let Some(why) = key.unusable(now()) {
            return Err(unauthenticated(why));
        }
        if self.authenticator.touch_due(key.id) {
            let store = self.store.clone();
            let id = key.id;
            tokio::spawn(async move {
                if let Err(e) = store.touch_api_key(id, now()).await {
                    tracing::debug!(error = %e, "could not record when an API key was last used");
                }
            });
        }
        Ok(key.caller())
    }

    /// The key with this lookup id, from the cache when fresh.
    async fn find_key(&self, lookup: &str) -> Result<Option<(ApiKey, Vec<u8>)>> {
        if let Some(c) = self.authenticator.keys.lock().expect("key cache lock").get(lookup)
            && c.fetched.elapsed() < KEY_CACHE_TTL
        {
            return Ok(Some((c.key.clone(), c.secret_hash.clone())));
        }
        let found = self.store.find_api_key(lookup).await?;
        if let Some((key, secret_hash)) = &found {
            let entry = CachedKey { key: key.clone(), secret_hash: secret_hash.clone(), fetched: Instant::now() };
            self.authenticator.keys.lock().expect("key cache lock").insert(lookup.to_string(), entry);
        }
        Ok(found)
    }

    /// Creates an API key. The secret is in the result and nowhere else.
    pub async fn create_api_key(&self, caller: &Caller, input: NewApiKey) -> Result<IssuedKey> {
        caller.require(Permission::Admin)?;
        let now = now();
        let issued = input.issue(&caller.name, now)?;
        let mut tx = self.store.begin().await?;
        tx.insert_api_key(&issued).await?;
        let details =
            json!({"name": issued.key.name, "scopes": issued.key.scopes, "expires_at": issued.key.expires_at});
        tx.insert_audit_event(&AuditEvent::new(caller, "api_key.create", "api_key", issued.key.id, details, now))
            .await?;
        tx.commit().await?;
        tracing::info!(key = %issued.key.prefix, name = %issued.key.name, "API key created");
        Ok(issued)
    }

    pub async fn get_api_key(&self, caller: &Caller, id: Uuid) -> Result<ApiKey> {
        caller.require(Permission::Admin)?;
        self.store.get_api_key(id).await?.ok_or_else(|| Error::NotFound { resource: "API key", id: id.to_string() })
    }

    pub async fn list_api_keys(&self, caller: &Caller, page: PageRequest) -> Result<Page<ApiKey>> {
        caller.require(Permission::Admin)?;
        let rows = self.store.list_api_keys(page.after.as_ref(), page.size + 1).await?;
        Ok(Page::from_rows(rows, page.size, |k| PageToken::Time { at: k.created_at, id: k.id }))
    }

    /// Revokes a key: it stops working at once here and within [`KEY_CACHE_TTL`] on other
    /// replicas. Revoking again changes nothing.
    pub async fn revoke_api_key(&self, caller: &Caller, id: Uuid) -> Result<ApiKey> {
        caller.require(Permission::Admin)?;
        let now = now();
        let mut tx = self.store.begin().await?;
        let key = tx
            .revoke_api_key(id, now)
            .await?
            .ok_or_else(|| Error::NotFound { resource: "API key", id: id.to_string() })?;
        if key.revoked_at == Some(now) {
            let details = json!({"name": key.name});
            tx.insert_audit_event(&AuditEvent::new(caller, "api_key.revoke", "api_key", id, details, now)).await?;
        }
        tx.commit().await?;
        self.authenticator.forget(id);
        tracing::info!(key = %key.prefix, name = %key.name, "API key revoked");
        Ok(key)
    }

    pub async fn list_audit_events(
        &self,
        caller: &Caller,
        filter: AuditFilter,
        page: PageRequest,
    ) -> Result<Page<AuditEvent>> {
        caller.require(Permission::Admin)?;
        let rows = self.store.list_audit_events(&filter, page.after.as_ref(), page.size + 1).await?;
        Ok(Page::from_rows(rows, page.size, |e| PageToken::Time { at: e.occurred_at, id: e.id }))
    }

    /// On a database with no API key at all, creates one admin key and returns it (once:
    /// replicas starting together agree on a single key). `None` when keys exist.
    pub async fn bootstrap_admin_key(&self) -> Result<Option<IssuedKey>> {
        let now = now();
        let mut tx = self.store.begin().await?;
        if tx.count_api_keys_exclusively().await? > 0 {
            return Ok(None);
        }
        let system = Caller::system();
        let input = NewApiKey { name: Some("bootstrap-admin".into()), scopes: vec![Scope::Admin], expires_at: None };
        let issued = input.issue(&system.name, now)?;
        tx.insert_api_key(&issued).await?;
        let details = json!({"name": issued.key.name, "scopes": issued.key.scopes, "bootstrap": true});
        tx.insert_audit_event(&AuditEvent::new(&system, "api_key.create", "api_key", issued.key.id, details, now))
            .await?;
        tx.commit().await?;
        Ok(Some(issued))
    }
}
