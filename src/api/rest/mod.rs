//! The REST API (axum). The OpenAPI document is generated from the same handler
//! annotations that register the routes, so the two cannot drift.

pub mod components;
pub mod extract;
pub mod incidents;
pub mod problem;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::service::Service;
use problem::problem;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "incidentd",
        description = "Incident management: incidents with severity, impact, ETA, workaround and an enforced \
                       lifecycle; timelines; components. Errors are RFC 9457 application/problem+json.",
        license(name = "Apache-2.0")
    ),
    tags(
        (name = "incidents", description = "Incidents, their lifecycle and timeline"),
        (name = "components", description = "Components and their status"),
        (name = "health", description = "Liveness and readiness"),
    )
)]
struct ApiDoc;

/// The OpenAPI document and the routes it describes.
fn api() -> (Router<Service>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(incidents::create_incident, incidents::list_incidents))
        .routes(routes!(incidents::get_incident, incidents::patch_incident, incidents::delete_incident))
        .routes(routes!(incidents::transition_incident))
        .routes(routes!(incidents::acknowledge_incident))
        .routes(routes!(incidents::create_update, incidents::list_updates))
        .routes(routes!(components::create_component, components::list_components))
        .routes(routes!(components::get_component, components::patch_component, components::delete_component))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .split_for_parts()
}

/// The OpenAPI 3.1 document served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().1
}

/// The whole REST router.
pub fn router(service: Service) -> Router {
    let (routes, doc) = api();
    let doc = Arc::new(doc.to_json().expect("the OpenAPI document serializes"));
    routes
        .route(
            "/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], doc.to_string()) }
            }),
        )
        .fallback(|| async { problem(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            problem(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not accept that method")
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TraceLayer::new_for_http())
        .with_state(service)
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
        (status = 503, description = "The database is unreachable", body = Problem, content_type = "application/problem+json"),
    ))]
async fn readyz(State(service): State<Service>) -> Response {
    match service.ready().await {
        Ok(()) => Json(Health { status: "ready" }).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the database is unreachable")
        }
    }
}

use problem::Problem;
