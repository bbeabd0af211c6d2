//! What customers read, without a key: the status page (`/status`), the
//! Statuspage-compatible JSON (`/api/v2/*.json`), the feeds and the badges.
//!
//! Every response comes from an in-memory [`Snapshot`], rebuilt within a second of a change
//! (events sequenced here or on another replica, components edited) and every
//! `INCIDENTD_STATUS_REFRESH_SECS`, so an outage's traffic never reaches the database. Pages
//! of incidents older than the snapshot keeps, and months before its window, are read once
//! and cached until the next rebuild. Responses carry strong ETags (`If-None-Match` → 304),
//! `Cache-Control: public, max-age`, and are pre-compressed with gzip and brotli. Requests
//! are rate-limited per client address.

mod badge;
mod feeds;
mod html;
pub use crate::domain::i18n;
mod pages;
mod serve;
mod snapshot;
pub mod statuspage;
mod subscribe;
/// The public subscribe form's JSON body (for the fuzz target `rest_bodies`).
pub use subscribe::SubscribeIn;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Router};
use base64::Engine;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::i18n::Lang;
use self::pages::*;
use self::snapshot::Doc;
pub use self::snapshot::Snapshot;
use crate::config::{Config, LanguageSetting};
use crate::domain::Error;
use crate::service::Service;

/// How the public surfaces look and behave.
#[derive(Debug, Clone)]
pub struct PublicSettings {
    pub name: String,
    /// The base URL (no trailing slash) links and `page.url` are built on.
    pub public_url: String,
    /// `<public_url>/status`.
    pub status_url: String,
    pub logo_url: Option<String>,
    pub language: LanguageSetting,
    pub max_age_secs: u32,
    pub refresh: Duration,
    /// Per client address: requests per second and burst; `None`: unlimited.
    pub rate_limit: Option<(NonZeroU32, NonZeroU32)>,
    pub trust_forwarded_for: bool,
    /// A stable page id for the JSON (`page.id`): derived from the public URL.
    pub page_id: String,
    /// Customers may subscribe by email (`INCIDENTD_SMTP_URL` is set): the page shows the form.
    pub email_subscriptions: bool,
}

impl Default for PublicSettings {
    /// The settings of a default configuration (for documenting the routes).
    fn default() -> Self {
        PublicSettings::from_config(&Config::for_tests("sqlite::memory:"))
    }
}

impl PublicSettings {
    pub fn from_config(config: &Config) -> Self {
        let public_url = config.public_url.trim_end_matches('/').to_string();
        let s = &config.status;
        let page_id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, public_url.as_bytes()).simple().to_string()[..12]
            .to_string();
        PublicSettings {
            name: s.name.clone(),
            status_url: format!("{public_url}/status"),
            public_url,
            logo_url: s.logo_url.clone().filter(|l| !l.trim().is_empty()),
            language: s.language,
            max_age_secs: s.max_age_secs,
            refresh: Duration::from_secs(s.refresh_secs.max(1)),
            rate_limit: NonZeroU32::new(s.public_rate_limit_per_second)
                .map(|per_second| (per_second, NonZeroU32::new(s.public_rate_limit_burst).unwrap_or(per_second))),
            trust_forwarded_for: s.trust_forwarded_for,
            page_id,
            email_subscriptions: config.smtp_url.is_some(),
        }
    }

    /// The page of an incident.
    pub fn incident_url(&self, reference: &str) -> String {
        format!("{}/status/incidents/{reference}", self.public_url)
    }

    /// The language when a reader names none: the setting, or English.
    pub fn default_lang(&self) -> Lang {
        match self.language {
            LanguageSetting::De => Lang::De,
            LanguageSetting::En | LanguageSetting::Auto => Lang::En,
        }
    }

    /// The Content-Security-Policy of the pages: nothing but the inlined stylesheet and the
    /// logo.
    fn content_security_policy(&self) -> String {
        let style = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(html::STYLE.as_bytes()));
        let logo = match self.logo_url.as_deref().and_then(|l| url::Url::parse(l).ok()) {
            Some(url) => format!(" {}", url.origin().ascii_serialization()),
            None => String::new(),
        };
        format!(
            "default-src 'none'; style-src 'sha256-{style}'; img-src 'self' data:{logo}; base-uri 'none'; \
             form-action 'self'; frame-ancestors 'none'"
        )
    }
}

/// The public surfaces of one process: the snapshot, the cache of older pages, the limiter.
pub struct Public {
    settings: PublicSettings,
    csp: HeaderValue,
    cache_control: HeaderValue,
    snapshot: RwLock<Option<Arc<Snapshot>>>,
    /// Pages read from the database on demand, for one snapshot generation.
    cold: Mutex<(u64, HashMap<String, Doc>)>,
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Requests to subscribe, per client address: at most 5 a minute.
    subscribe_limiter: DefaultKeyedRateLimiter<IpAddr>,
}

/// At most this many on-demand pages are cached.
const COLD_PAGES: usize = 512;
/// How long after a change the snapshot waits for more before rebuilding.
const DEBOUNCE: Duration = Duration::from_millis(100);

impl Public {
    pub fn new(settings: PublicSettings) -> Arc<Self> {
        let csp = HeaderValue::from_str(&settings.content_security_policy()).expect("a valid header");
        let cache_control =
            HeaderValue::from_str(&format!("public, max-age={}", settings.max_age_secs)).expect("a valid header");
        let limiter = settings
            .rate_limit
            .map(|(per_second, burst)| RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)));
        Arc::new(Public {
            settings,
            csp,
            cache_control,
            snapshot: RwLock::new(None),
            cold: Mutex::new((0, HashMap::new())),
            limiter,
            subscribe_limiter: RateLimiter::keyed(Quota::per_minute(NonZeroU32::new(5).expect("5 > 0"))),
        })
    }

    pub fn settings(&self) -> &PublicSettings {
        &self.settings
    }

    fn current(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.read().expect("snapshot lock").clone()
    }

    /// Reads the state and renders a new snapshot.
    pub async fn rebuild(&self, service: &Service) -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        let result = self.build(service).await;
        service.metrics().observe_status_rebuild(started.elapsed(), result.as_ref().ok().copied());
        result.map(|_| ())
    }

    /// Reads, renders and installs a new snapshot; returns how many documents it serves.
    async fn build(&self, service: &Service) -> anyhow::Result<usize> {
        let state = service.public_state().await?;
        let previous = self.current();
        let generation = previous.as_ref().map_or(1, |p| p.generation + 1);
        let settings = self.settings.clone();
        let built =
            tokio::task::spawn_blocking(move || Snapshot::build(&settings, state, previous.as_deref(), generation))
                .await??;
        let documents = built.documents();
        *self.snapshot.write().expect("snapshot lock") = Some(Arc::new(built));
        Ok(documents)
    }

    /// Keeps the snapshot current until `stop`: rebuilds shortly after every change anywhere
    /// (this process's or another replica's) and every refresh interval.
    pub async fn run(self: Arc<Self>, service: Service, stop: CancellationToken) {
        let mut changes = service.watch_public();
        loop {
            let started = tokio::time::Instant::now();
            match self.rebuild(&service).await {
                Err(e) if e.downcast_ref::<crate::domain::Error>().is_some_and(|e| e.is_outage()) => {
                    tracing::debug!(error = %e, "rebuilding the public status snapshot failed; serving the last one")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "rebuilding the public status snapshot failed; serving the last one")
                }
                Ok(()) => {}
            }
            // Changes come in bursts (a change and its component moves): take them together,
            // and under a storm of changes rebuild at most half the time, so that the
            // rebuilds never crowd out the requests.
            let pause = DEBOUNCE.max(started.elapsed());
            tokio::select! {
                _ = stop.cancelled() => return,
                changed = changes.changed() => {
                    if changed.is_err() { return }
                    tokio::time::sleep(pause).await;
                    changes.borrow_and_update();
                }
                _ = tokio::time::sleep(self.settings.refresh) => {}
            }
        }
    }

    fn cold_get(&self, generation: u64, key: &str) -> Option<Doc> {
        let cold = self.cold.lock().expect("cache lock");
        (cold.0 == generation).then(|| cold.1.get(key).cloned()).flatten()
    }

    fn cold_put(&self, generation: u64, key: String, doc: Doc) {
        let mut cold = self.cold.lock().expect("cache lock");
        if cold.0 != generation || cold.1.len() >= COLD_PAGES {
            *cold = (generation, HashMap::new());
        }
        cold.1.insert(key, doc);
    }
}

/// The public routes, documented in /openapi.json under the tag `public`.
pub fn routes(public: Arc<Public>) -> OpenApiRouter<Service> {
    OpenApiRouter::new()
        .routes(own_405(routes!(status_page)))
        .routes(own_405(routes!(incident_page)))
        .routes(own_405(routes!(history_page)))
        .routes(own_405(routes!(summary)))
        .routes(own_405(routes!(status)))
        .routes(own_405(routes!(components)))
        .routes(own_405(routes!(incidents)))
        .routes(own_405(routes!(unresolved)))
        .routes(own_405(routes!(scheduled_maintenances)))
        .routes(own_405(routes!(upcoming_maintenances)))
        .routes(own_405(routes!(active_maintenances)))
        .routes(own_405(routes!(atom)))
        .routes(own_405(routes!(rss)))
        .routes(own_405(routes!(overall_badge)))
        .routes(own_405(routes!(component_badge)))
        .merge(subscribe::routes())
        .layer(axum::middleware::from_fn(rate_limit))
        .layer(Extension(public))
        .layer(cors())
}

/// Gives a route its own method-not-allowed answer, so the layers above wrap it: a router's
/// `method_not_allowed_fallback` replaces only default ones, unwrapped, and CORS preflights
/// (`OPTIONS`) would then never reach the CORS layer.
fn own_405(
    (schemas, paths, router): utoipa_axum::router::UtoipaMethodRouter<Service>,
) -> utoipa_axum::router::UtoipaMethodRouter<Service> {
    (schemas, paths, router.fallback(super::rest::method_not_allowed))
}

/// Public documents may be read from any origin (widgets, aggregators), errors included; no
/// credentials, so no `Vary: Origin`.
fn cors() -> CorsLayer {
    use axum::http::{HeaderName, Method};
    CorsLayer::new()
        .allow_origin(AllowOrigin::any())
        .allow_methods([Method::GET, Method::HEAD])
        .allow_headers([header::IF_NONE_MATCH])
        .expose_headers([header::ETAG, header::RETRY_AFTER, header::CONTENT_LANGUAGE, HeaderName::from_static("date")])
        .max_age(Duration::from_secs(86_400))
}

/// `/` leads to the status page.
pub fn root() -> Router<Service> {
    Router::new().route("/", axum::routing::get(|| async { Redirect::temporary("/status") }))
}

impl Public {
    /// The client's address: the last `X-Forwarded-For` hop when trusted, else the peer.
    fn client(&self, request: &Request) -> Option<IpAddr> {
        let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        let forwarded = self
            .settings
            .trust_forwarded_for
            .then(|| request.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok()))
            .flatten()
            .and_then(|v| v.rsplit(',').next())
            .and_then(|ip| ip.trim().parse::<IpAddr>().ok());
        forwarded.or(peer)
    }

    /// How long the client of `request` must wait before asking to subscribe again, if it
    /// is over its limit.
    fn subscribe_limited(&self, request: &Request) -> Option<Duration> {
        over(&self.subscribe_limiter, self.client(request)?)
    }
}

/// How long `ip` must wait under `limiter`, if it is over it.
fn over(limiter: &DefaultKeyedRateLimiter<IpAddr>, ip: IpAddr) -> Option<Duration> {
    use governor::clock::Clock;
    limiter.check_key(&ip).err().map(|not_until| not_until.wait_time_from(limiter.clock().now()))
}

/// Refuses a client over its rate (429 with `Retry-After`).
async fn rate_limit(Extension(public): Extension<Arc<Public>>, request: Request, next: Next) -> Response {
    if let (Some(limiter), Some(ip)) = (&public.limiter, public.client(&request))
        && let Some(retry_after) = over(limiter, ip)
    {
        return super::rest::problem::ApiError(Error::RateLimited { retry_after }).into_response();
    }
    next.run(request).await
}
