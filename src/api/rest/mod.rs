//! The REST API (axum). The OpenAPI document is generated from the same handler
//! annotations that register the routes, so the two cannot drift.

pub mod access;
pub mod actions;
pub mod components;
pub mod events;
pub mod extract;
pub mod history;
pub mod incidents;
pub mod integrations;
pub mod links;
pub mod maintenance;
pub mod pagerduty;
pub mod postmortems;
pub mod problem;
pub mod stats;
pub mod subscribers;
pub mod subscriptions;
pub mod trace;

use std::sync::Arc;

use axum::extract::State;
use axum::handler::Handler;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::service::Service;
use problem::problem;

/// A response with an `ETag` header.
pub(crate) fn tagged(status: StatusCode, etag: &str, body: impl Serialize) -> Response {
    let mut res = (status, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(etag) {
        res.headers_mut().insert(header::ETAG, v);
    }
    res
}

/// A 201 response (or the replay of one) with `Location`, `ETag` and, for replays,
/// `Idempotent-Replayed: true`.
pub(crate) fn created(location: String, etag: &str, replayed: bool, body: impl Serialize) -> Response {
    let mut res = tagged(StatusCode::CREATED, etag, body);
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    if replayed {
        res.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    res
}

/// Settings of the REST server.
#[derive(Debug, Clone)]
pub struct RestSettings {
    /// Largest accepted request body (413 above).
    pub max_body_bytes: usize,
    /// Origins browsers may call from (`*` for any); empty turns CORS off.
    pub cors_allowed_origins: Vec<String>,
    /// Whether `/metrics` is served here (not when it has a port of its own).
    pub serve_metrics: bool,
    /// Time a client has to send a request's whole body (408 after).
    pub body_read_timeout: std::time::Duration,
}

impl Default for RestSettings {
    fn default() -> Self {
        RestSettings {
            max_body_bytes: 1024 * 1024,
            cors_allowed_origins: Vec::new(),
            serve_metrics: true,
            body_read_timeout: std::time::Duration::from_secs(30),
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "incidentd",
        description = "Incident management: incidents with severity, impact, ETA, workaround and an enforced \
                       lifecycle; timelines; components. Errors are RFC 9457 application/problem+json.",
        license(name = "Apache-2.0")
    ),
    components(schemas(problem::Problem, crate::domain::FieldViolation)),
    tags(
        (name = "incidents", description = "Incidents, their lifecycle and timeline"),
        (name = "postmortems", description = "One postmortem per incident: the analysis and root cause (internal), what customers are told changes (public once published), recurrence"),
        (name = "actions", description = "Follow-up actions of incidents: owner, due date, priority, tracker reference; overdue ones announced"),
        (name = "stats", description = "Analytics: MTTA and MTTR by severity, component and month; causes; reopen rate; open actions"),
        (name = "components", description = "Components and their status"),
        (name = "integrations", description = "Alert ingestion (scope admin to manage): Alertmanager and Grafana webhooks, PagerDuty Events API v2; alerts open, group and resolve incidents"),
        (name = "maintenance", description = "Scheduled maintenance: windows that start and complete on their own, and their timeline"),
        (name = "subscribers", description = "Customer subscribers (who subscribed by email on the status page): list, count, remove, export and import"),
        (name = "events", description = "The event log and its live stream"),
        (name = "subscriptions", description = "Notification subscriptions and their deliveries (scope subscriptions:manage)"),
        (name = "access", description = "API keys and the audit trail (scope admin)"),
        (name = "health", description = "Liveness and readiness"),
        (name = "public", description = "What customers read, without a key: the status page, Statuspage-compatible JSON, feeds and badges"),
    )
)]
struct ApiDoc;

/// The OpenAPI document and the routes it describes.
fn api(public: Arc<crate::api::public::Public>) -> (Router<Service>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(crate::api::public::routes(public))
        .routes(routes!(incidents::create_incident, incidents::list_incidents))
        .routes(routes!(incidents::get_incident, incidents::patch_incident, incidents::delete_incident))
        .routes(routes!(incidents::transition_incident))
        .routes(routes!(incidents::acknowledge_incident))
        .routes(routes!(incidents::create_update, incidents::list_updates))
        .routes(routes!(links::merge_incident))
        .routes(routes!(links::create_link, links::list_links))
        .routes(routes!(links::delete_link))
        .routes(routes!(postmortems::create_postmortem, postmortems::get_postmortem, postmortems::patch_postmortem))
        .routes(routes!(postmortems::transition_postmortem))
        .routes(routes!(actions::create_action, actions::list_incident_actions))
        .routes(routes!(actions::list_actions))
        .routes(routes!(actions::get_action, actions::patch_action, actions::delete_action))
        .routes(routes!(stats::get_stats))
        .routes(routes!(integrations::list_incident_alerts))
        .routes(routes!(integrations::create_integration, integrations::list_integrations))
        .routes(routes!(
            integrations::get_integration,
            integrations::patch_integration,
            integrations::delete_integration
        ))
        .routes(routes!(integrations::rotate_integration_secret))
        .routes(routes!(integrations::list_integration_alerts))
        .routes(routes!(integrations::receive_alertmanager))
        .routes(routes!(integrations::receive_grafana))
        .routes(routes!(pagerduty::enqueue_event))
        .routes(routes!(pagerduty::enqueue_change_event))
        .routes(routes!(components::create_component, components::list_components))
        .routes(routes!(components::get_component, components::patch_component, components::delete_component))
        .routes(routes!(history::list_component_history))
        .routes(routes!(history::get_component_uptime))
        .routes(routes!(maintenance::create_maintenance, maintenance::list_maintenances))
        .routes(routes!(maintenance::get_maintenance, maintenance::patch_maintenance))
        .routes(routes!(maintenance::create_maintenance_update, maintenance::list_maintenance_updates))
        .routes(routes!(subscribers::list_subscribers))
        .routes(routes!(subscribers::count_subscribers))
        .routes(routes!(subscribers::export_subscribers))
        .routes(routes!(subscribers::import_subscribers))
        .routes(routes!(subscribers::get_subscriber, subscribers::delete_subscriber))
        .routes(routes!(events::list_events))
        .routes(routes!(events::stream_events))
        .routes(routes!(subscriptions::create_subscription, subscriptions::list_subscriptions))
        .routes(routes!(
            subscriptions::get_subscription,
            subscriptions::patch_subscription,
            subscriptions::delete_subscription
        ))
        .routes(routes!(subscriptions::pause_subscription))
        .routes(routes!(subscriptions::resume_subscription))
        .routes(routes!(subscriptions::rotate_secret))
        .routes(routes!(subscriptions::test_subscription))
        .routes(routes!(subscriptions::list_deliveries))
        .routes(routes!(subscriptions::list_subscription_attempts))
        .routes(routes!(subscriptions::retry_failed))
        .routes(routes!(subscriptions::get_delivery))
        .routes(routes!(subscriptions::list_delivery_attempts))
        .routes(routes!(subscriptions::retry_delivery))
        .routes(routes!(access::create_api_key, access::list_api_keys))
        .routes(routes!(access::get_api_key, access::revoke_api_key))
        .routes(routes!(access::list_audit_events))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .split_for_parts()
}

/// The OpenAPI 3.1 document served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let public = crate::api::public::Public::new(crate::api::public::PublicSettings::default());
    let mut doc = api(public).1;
    secure(&mut doc);
    doc
}

/// Completes the document: bearer authentication on every `/v1` operation, with the 401, 403
/// and 429 responses every one of them can give; and every error response (4xx, 5xx) a
/// problem document, which is what `ApiError` sends, so handlers only say when and why.
fn secure(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
    use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};
    let mut bearer = Http::new(HttpAuthScheme::Bearer);
    bearer.bearer_format = Some("incidentd API key (ind_…) or the admin token".into());
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
    let mut integration = Http::new(HttpAuthScheme::Bearer);
    integration.bearer_format = Some("the integration's secret (or HTTP Basic with it as the password)".into());
    components.add_security_scheme("integration_secret", SecurityScheme::Http(integration));
    let error = |description: &str| -> RefOr<utoipa::openapi::Response> {
        ResponseBuilder::new().description(description).build().into()
    };
    for (path, item) in doc.paths.paths.iter_mut() {
        for op in
            [&mut item.get, &mut item.post, &mut item.patch, &mut item.delete, &mut item.put].into_iter().flatten()
        {
            let responses = &mut op.responses.responses;
            // The alert receivers declare their own (the integration's secret) and their errors.
            if path.starts_with("/v1/") && op.security.is_none() {
                op.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
                responses.insert("401".into(), error("Missing, malformed, unknown, revoked or expired credentials"));
                responses.insert("403".into(), error("The API key lacks the scope this needs"));
                responses.insert("429".into(), error("Rate limit exceeded; see Retry-After"));
            }
            // Every JSON body is read by `JsonBody`, which refuses these before the handler runs.
            if op.request_body.is_some() {
                responses
                    .insert("413".into(), error("Body too large (over INCIDENTD_MAX_REQUEST_BYTES, 1 MiB by default)"));
                responses.insert("415".into(), error("Not JSON"));
            }
            for (status, response) in responses.iter_mut() {
                if let (true, RefOr::T(response)) = (status.starts_with(['4', '5']), response)
                    && response.content.is_empty()
                {
                    let problem = Content::new(Some(Ref::from_schema_name("Problem")));
                    response.content.insert(problem::PROBLEM_JSON.into(), problem.into());
                }
            }
        }
    }
}

/// A path no route serves.
async fn no_such_route() -> Response {
    problem(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// A route asked with a method it does not have.
pub(crate) async fn method_not_allowed() -> Response {
    problem(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not accept that method")
}

/// Cross-origin access for browser dashboards, when origins are configured.
fn cors(settings: &RestSettings) -> anyhow::Result<Option<CorsLayer>> {
    if settings.cors_allowed_origins.is_empty() {
        return Ok(None);
    }
    let origins = if settings.cors_allowed_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let list = settings
            .cors_allowed_origins
            .iter()
            .map(|o| HeaderValue::from_str(o.trim()).map_err(|_| anyhow::anyhow!("invalid CORS origin {o:?}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        AllowOrigin::list(list)
    };
    let headers = |names: &[&'static str]| names.iter().map(|n| HeaderName::from_static(n)).collect::<Vec<_>>();
    Ok(Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
            .allow_headers(headers(&["authorization", "content-type", "if-match", "idempotency-key"]))
            .expose_headers(headers(&["etag", "location", "retry-after", "idempotent-replayed"]))
            .max_age(std::time::Duration::from_secs(600)),
    ))
}

/// The whole REST router.
pub fn router(
    service: Service,
    settings: &RestSettings,
    public: Arc<crate::api::public::Public>,
    admission: crate::api::admission::Admission,
) -> anyhow::Result<Router> {
    let (routes, mut doc) = api(public);
    secure(&mut doc);
    let doc = Arc::new(doc.to_json().expect("the OpenAPI document serializes"));
    let router = routes
        .merge(crate::api::public::root())
        .route_layer(RecordLayer(service.clone()))
        .layer(axum::Extension(MetricsHere(settings.serve_metrics)))
        .route(
            "/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], doc.to_string()) }
            }),
        )
        // The request span is made once the request is routed, so that it is named after its
        // route from the start; requests no route takes get theirs from the fallbacks.
        .route_layer(trace::layer())
        .fallback(no_such_route.layer(trace::layer()))
        .method_not_allowed_fallback(method_not_allowed.layer(trace::layer()))
        .layer(axum::extract::DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(tower_http::timeout::RequestBodyDeadlineLayer::new(settings.body_read_timeout))
        // Outside the trace layer: a shed request costs no span and no log line (it is counted
        // in `incidentd_requests_shed_total`).
        .layer(admission.layer::<crate::api::admission::Http>())
        .with_state(service);
    Ok(match cors(settings)? {
        Some(cors) => router.layer(cors),
        None => router,
    })
}

/// The routes of a process that serves no API (a worker): health and, unless it has a port
/// of its own, metrics.
pub fn operations_router(service: Service, serve_metrics: bool) -> Router {
    let mut router = Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz));
    if serve_metrics {
        router = router.route("/metrics", get(metrics));
    }
    router
        .layer(axum::Extension(MetricsHere(true)))
        .route_layer(trace::layer())
        .fallback(
            (|| async { problem(StatusCode::NOT_FOUND, "not_found", "no such route (this process runs no API)") })
                .layer(trace::layer()),
        )
        .with_state(service)
}

/// `/metrics` alone, for a separate metrics port.
pub fn metrics_router(service: Service) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(|| async { problem(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(axum::Extension(MetricsHere(true)))
        .with_state(service)
}

/// Counts and times each request by its route template (not its path, which would give a
/// series per incident): a route layer, so the route is known.
#[derive(Clone)]
struct RecordLayer(Service);

impl<S> tower::Layer<S> for RecordLayer {
    type Service = Recorded<S>;

    fn layer(&self, inner: S) -> Recorded<S> {
        Recorded { inner, service: self.0.clone() }
    }
}

#[derive(Clone)]
struct Recorded<S> {
    inner: S,
    service: Service,
}

impl<S, B> tower::Service<axum::http::Request<B>> for Recorded<S>
where
    S: tower::Service<axum::http::Request<B>, Response = Response>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        let started = std::time::Instant::now();
        let method = request.method().clone();
        let route = request.extensions().get::<axum::extract::MatchedPath>().cloned();
        let service = self.service.clone();
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await?;
            let route = route.as_ref().map_or("unmatched", |r| r.as_str());
            service.metrics().observe_http(method.as_str(), route, response.status().as_u16(), started.elapsed());
            Ok(response)
        })
    }
}

/// Whether this listener serves `/metrics`.
#[derive(Debug, Clone, Copy)]
struct MetricsHere(bool);

/// Prometheus text exposition format, version 0.0.4.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus metrics (text exposition format 0.0.4): requests, \
        the connection pool, open incidents, deliveries and the outbox, MTTA and MTTR", body = String,
        content_type = "text/plain")))]
async fn metrics(State(service): State<Service>, axum::Extension(here): axum::Extension<MetricsHere>) -> Response {
    if !here.0 {
        return problem(StatusCode::NOT_FOUND, "not_found", "metrics are served on the metrics port");
    }
    let body = service.render_metrics().await;
    ([(header::CONTENT_TYPE, HeaderValue::from_static(PROMETHEUS_TEXT))], body).into_response()
}

#[derive(serde::Serialize, utoipa::ToSchema)]
struct Health {
    status: &'static str,
}

#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process is up", body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "The database is reachable", body = Health),
        (status = 503, description = "The database is unreachable, or the process is shutting down"),
    ))]
async fn readyz(State(service): State<Service>) -> Response {
    match service.ready().await {
        Ok(()) => Json(Health { status: "ready" }).into_response(),
        Err(_) if service.is_draining() => problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "shutting down"),
        // The readiness watcher logs the database going away and coming back; a probe's
        // answer is not worth a line each.
        Err(e) => {
            tracing::debug!(error = %e, "not ready");
            problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the database is unreachable")
        }
    }
}
