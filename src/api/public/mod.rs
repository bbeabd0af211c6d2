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
pub mod i18n;
mod snapshot;
pub mod statuspage;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, Query, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Router};
use base64::Engine;
use chrono::NaiveDate;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::i18n::Lang;
pub use self::snapshot::Snapshot;
use self::snapshot::{Doc, HTML, page_key};
use super::rest::problem::{ApiError, problem};
use crate::config::{Config, LanguageSetting};
use crate::domain::history::local_midnight;
use crate::domain::{Error, IncidentKey};
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
        let state = service.public_state().await.map_err(|e| anyhow::anyhow!("{e}"))?;
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
            if let Err(e) = self.rebuild(&service).await {
                tracing::warn!(error = %e, "rebuilding the public status snapshot failed; serving the last one");
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

/// Refuses a client over its rate (429 with `Retry-After`).
async fn rate_limit(Extension(public): Extension<Arc<Public>>, request: Request, next: Next) -> Response {
    if let Some(limiter) = &public.limiter {
        let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        let forwarded = public
            .settings
            .trust_forwarded_for
            .then(|| request.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok()))
            .flatten()
            .and_then(|v| v.rsplit(',').next())
            .and_then(|ip| ip.trim().parse::<IpAddr>().ok());
        if let Some(ip) = forwarded.or(peer)
            && let Err(not_until) = limiter.check_key(&ip)
        {
            use governor::clock::Clock;
            let retry_after = not_until.wait_time_from(limiter.clock().now());
            return super::rest::problem::ApiError(Error::RateLimited { retry_after }).into_response();
        }
    }
    next.run(request).await
}

/// Which encoding to send: brotli, then gzip, then none, as `Accept-Encoding` allows.
fn encoding(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok())?;
    let q = |name: &str| -> Option<f32> {
        accept.split(',').find_map(|part| {
            let mut pieces = part.split(';');
            let coding = pieces.next()?.trim();
            if !coding.eq_ignore_ascii_case(name) && coding != "*" {
                return None;
            }
            Some(pieces.find_map(|p| p.trim().strip_prefix("q=")).and_then(|q| q.trim().parse().ok()).unwrap_or(1.0))
        })
    };
    ["br", "gzip"].into_iter().find(|c| q(c).is_some_and(|q| q > 0.0))
}

/// Serves a document: 304 when the client's tag matches, else the best encoding.
fn serve(public: &Public, doc: &Doc, headers: &HeaderMap, vary_language: Option<Lang>, status: StatusCode) -> Response {
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == doc.etag || t.trim() == "*"));
    let chosen = encoding(headers);
    let mut res = if matches && status == StatusCode::OK {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let body = match chosen {
            Some("br") => doc.br.clone(),
            Some(_) => doc.gzip.clone(),
            None => doc.identity.clone(),
        };
        let mut res = (status, body).into_response();
        if let Some(coding) = chosen {
            res.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding));
        }
        res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(doc.content_type));
        res
    };
    let h = res.headers_mut();
    if let Ok(tag) = HeaderValue::from_str(&doc.etag) {
        h.insert(header::ETAG, tag);
    }
    h.insert(header::CACHE_CONTROL, public.cache_control.clone());
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    match vary_language {
        Some(lang) => {
            h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding, Accept-Language"));
            h.insert(header::CONTENT_LANGUAGE, HeaderValue::from_static(lang.tag()));
        }
        None => {
            h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        }
    }
    if doc.content_type == HTML {
        h.insert(header::CONTENT_SECURITY_POLICY, public.csp.clone());
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    }
    res
}

fn starting() -> Response {
    let mut res =
        problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the status page is being prepared; retry shortly");
    res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    res
}

/// Serves the document at `key` of the current snapshot.
fn serve_key(public: &Public, key: &str, headers: &HeaderMap) -> Response {
    match public.current() {
        None => starting(),
        Some(snapshot) => match snapshot.get(key) {
            Some(doc) => serve(public, doc, headers, None, StatusCode::OK),
            None => problem(StatusCode::NOT_FOUND, "not_found", "no such document"),
        },
    }
}

/// The language of a page: `?lang=`, else the setting, else `Accept-Language`. The second
/// value says whether it was negotiated (the response then varies by `Accept-Language`).
fn language(public: &Public, query: &PageQuery, headers: &HeaderMap) -> (Lang, bool) {
    if let Some(lang) = query.lang.as_deref().and_then(Lang::parse) {
        return (lang, false);
    }
    match public.settings.language {
        LanguageSetting::En => (Lang::En, false),
        LanguageSetting::De => (Lang::De, false),
        LanguageSetting::Auto => {
            (Lang::negotiate(headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok())), true)
        }
    }
}

/// A page's query: other parameters (`utm_source` and such) are ignored.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// `en` or `de`; by default the setting, else the reader's Accept-Language.
    pub lang: Option<String>,
}

/// The history's query.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// `en` or `de`.
    pub lang: Option<String>,
    /// `YYYY-MM`: that month's incidents; by default the last 90 days.
    pub month: Option<String>,
}

fn serve_page(public: &Public, path: &str, query: &PageQuery, headers: &HeaderMap) -> Response {
    let (lang, negotiated) = language(public, query, headers);
    match public.current() {
        None => starting(),
        Some(snapshot) => match snapshot.get(&page_key(path, lang)) {
            Some(doc) => serve(public, doc, headers, negotiated.then_some(lang), StatusCode::OK),
            None => problem(StatusCode::NOT_FOUND, "not_found", "no such page"),
        },
    }
}

#[utoipa::path(get, path = "/status", tag = "public", params(PageQuery),
    responses((status = 200, description = "The status page (HTML)", content_type = "text/html"),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 429, description = "Too many requests from this address; see Retry-After"),
        (status = 503, description = "Starting: retry shortly")))]
async fn status_page(
    Extension(public): Extension<Arc<Public>>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    serve_page(&public, "/status", &query, &headers)
}

#[utoipa::path(get, path = "/status/incidents/{reference}", tag = "public",
    params(("reference" = String, Path, description = "The incident's reference, e.g. INC-42"), PageQuery),
    responses((status = 200, description = "The incident's page (HTML)", content_type = "text/html"),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 404, description = "No such incident"),
        (status = 429, description = "Too many requests from this address; see Retry-After"),
        (status = 503, description = "Starting: retry shortly")))]
async fn incident_page(
    Extension(public): Extension<Arc<Public>>,
    axum::extract::State(service): axum::extract::State<Service>,
    Path(reference): Path<String>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let Ok(key @ IncidentKey::Ref(r)) = IncidentKey::parse("reference", &reference) else {
        return problem(StatusCode::NOT_FOUND, "not_found", "no such incident");
    };
    let path = format!("/status/incidents/{r}");
    let (lang, negotiated) = language(&public, &query, &headers);
    let Some(snapshot) = public.current() else { return starting() };
    // An incident the snapshot holds is rendered from memory; an older one is read.
    let read = async {
        match snapshot.incident(r) {
            Some(page) => Ok(page.clone()),
            None => service.public_incident(key).await,
        }
    };
    on_demand(&public, &snapshot, &path, (lang, negotiated), &headers, read, |r, page| r.incident(&page)).await
}

/// Serves a page the snapshot does not hold rendered: from the cache of this snapshot's
/// generation, else from what `read` reads, rendered by `render`, then cached until the next
/// rebuild.
async fn on_demand<T>(
    public: &Public,
    snapshot: &Snapshot,
    path: &str,
    (lang, negotiated): (Lang, bool),
    headers: &HeaderMap,
    read: impl std::future::Future<Output = crate::domain::Result<T>>,
    render: impl FnOnce(&html::Renderer, T) -> askama::Result<String>,
) -> Response {
    let key = page_key(path, lang);
    let vary = negotiated.then_some(lang);
    if let Some(doc) = public.cold_get(snapshot.generation, &key) {
        return serve(public, &doc, headers, vary, StatusCode::OK);
    }
    let data = match read.await {
        Ok(data) => data,
        Err(e) => return ApiError(e).into_response(),
    };
    let renderer = html::Renderer { settings: &public.settings, state: &snapshot.state, lang };
    match render(&renderer, data) {
        Ok(body) => {
            let doc = Doc::new(HTML, body.into_bytes(), None);
            public.cold_put(snapshot.generation, key, doc.clone());
            serve(public, &doc, headers, vary, StatusCode::OK)
        }
        Err(e) => ApiError(Error::Internal(e.to_string())).into_response(),
    }
}

#[utoipa::path(get, path = "/status/history", tag = "public", params(HistoryQuery),
    responses((status = 200, description = "Past incidents by month (HTML)", content_type = "text/html"),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 400, description = "`month` is not YYYY-MM"),
        (status = 429, description = "Too many requests from this address; see Retry-After"),
        (status = 503, description = "Starting: retry shortly")))]
async fn history_page(
    Extension(public): Extension<Arc<Public>>,
    axum::extract::State(service): axum::extract::State<Service>,
    Query(query): Query<HistoryQuery>,
    headers: HeaderMap,
) -> Response {
    let page_query = PageQuery { lang: query.lang.clone() };
    let Some(month) = query.month.as_deref().filter(|m| !m.is_empty()) else {
        return serve_page(&public, "/status/history", &page_query, &headers);
    };
    let Some(first) = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").ok().filter(|_| month.len() == 7)
    else {
        return ApiError(Error::invalid("month", "must be a month as YYYY-MM, such as 2026-11")).into_response();
    };
    let Some(next) = first.checked_add_months(chrono::Months::new(1)) else {
        return ApiError(Error::invalid("month", "is out of range")).into_response();
    };
    let language = language(&public, &page_query, &headers);
    let Some(snapshot) = public.current() else { return starting() };
    let tz = snapshot.state.time_zone;
    let read = service.public_incidents_between(local_midnight(&tz, first), local_midnight(&tz, next));
    let path = format!("/status/history?month={month}");
    on_demand(&public, &snapshot, &path, language, &headers, read, |r, incidents| {
        r.history(&path, &incidents, first, first)
    })
    .await
}

/// Declares the handler of a snapshot document.
macro_rules! document {
    ($name:ident, $path:literal, $description:literal, $content_type:literal) => {
        #[utoipa::path(get, path = $path, tag = "public",
                            responses((status = 200, description = $description, content_type = $content_type),
                                (status = 304, description = "Not modified (If-None-Match)"),
                                (status = 429, description = "Too many requests from this address; see Retry-After"),
                                (status = 503, description = "Starting: retry shortly")))]
        async fn $name(Extension(public): Extension<Arc<Public>>, headers: HeaderMap) -> Response {
            serve_key(&public, $path, &headers)
        }
    };
}

document!(
    summary,
    "/api/v2/summary.json",
    "Statuspage-compatible summary: page, components, unresolved incidents, scheduled maintenances, status",
    "application/json"
);
document!(
    status,
    "/api/v2/status.json",
    "Statuspage-compatible status: the indicator (none, minor, major, critical) and its description",
    "application/json"
);
document!(
    components,
    "/api/v2/components.json",
    "Statuspage-compatible components (groups included)",
    "application/json"
);
document!(
    incidents,
    "/api/v2/incidents.json",
    "Statuspage-compatible list of the 50 most recent incidents",
    "application/json"
);
document!(
    unresolved,
    "/api/v2/incidents/unresolved.json",
    "Statuspage-compatible list of the unresolved incidents",
    "application/json"
);
document!(
    scheduled_maintenances,
    "/api/v2/scheduled-maintenances.json",
    "Statuspage-compatible scheduled maintenances (none yet)",
    "application/json"
);
document!(
    upcoming_maintenances,
    "/api/v2/scheduled-maintenances/upcoming.json",
    "Statuspage-compatible upcoming maintenances (none yet)",
    "application/json"
);
document!(
    active_maintenances,
    "/api/v2/scheduled-maintenances/active.json",
    "Statuspage-compatible active maintenances (none yet)",
    "application/json"
);
document!(
    atom,
    "/history.atom",
    "Atom feed (RFC 4287) of the public incident updates, newest first",
    "application/atom+xml"
);
document!(rss, "/history.rss", "RSS 2.0 feed of the public incident updates, newest first", "application/rss+xml");
document!(overall_badge, "/badge.svg", "A badge of the page's overall status (SVG)", "image/svg+xml");

#[utoipa::path(get, path = "/components/{id}/badge.svg", tag = "public",
    params(("id" = String, Path, description = "Component id")),
    responses((status = 200, description = "A badge of the component's status (SVG)", content_type = "image/svg+xml"),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 404, description = "No such component"),
        (status = 429, description = "Too many requests from this address; see Retry-After"),
        (status = 503, description = "Starting: retry shortly")))]
async fn component_badge(
    Extension(public): Extension<Arc<Public>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match uuid::Uuid::parse_str(&id) {
        Ok(id) => serve_key(&public, &format!("/components/{id}/badge.svg"), &headers),
        Err(_) => problem(StatusCode::NOT_FOUND, "not_found", "no such component"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn brotli_is_preferred_then_gzip_and_q0_refuses() {
        assert_eq!(encoding(&accept("gzip, deflate, br")), Some("br"));
        assert_eq!(encoding(&accept("gzip")), Some("gzip"));
        assert_eq!(encoding(&accept("br;q=0, gzip;q=0.5")), Some("gzip"));
        assert_eq!(encoding(&accept("*")), Some("br"));
        assert_eq!(encoding(&accept("identity")), None);
        assert_eq!(encoding(&HeaderMap::new()), None);
    }
}
