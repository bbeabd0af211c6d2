//! `/v1/maintenances`: DTOs and handlers.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{
    Authorized, JsonBody, ReadMaintenance, WriteMaintenance, idempotency_key, if_match, not_null, nullable, paged,
    path_id,
};
use super::problem::ApiError;
use super::{created, tagged};
use crate::domain::maintenance::{
    Maintenance, MaintenancePatch, MaintenanceStatus, MaintenanceUpdate, NewMaintenance, NewMaintenanceUpdate,
};
use crate::domain::validate::Violations;
use crate::service::{Created, Service};

/// A maintenance to schedule. `title`, `scheduled_for` and `scheduled_until` are required.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceIn {
    #[schema(value_type = String, required = true, min_length = 1, max_length = 200)]
    pub title: Option<String>,
    /// What customers are told: the work, what they will notice, what to do. Up to 10,000
    /// characters.
    #[schema(max_length = 10000)]
    pub body: Option<String>,
    /// The components under maintenance while it is in progress (at most 100).
    #[serde(default)]
    pub components: Vec<uuid::Uuid>,
    /// The start of the window (RFC 3339).
    #[schema(value_type = String, format = DateTime, required = true)]
    pub scheduled_for: Option<DateTime<Utc>>,
    /// The end of the window: after the start, at most 31 days later, in the future.
    #[schema(value_type = String, format = DateTime, required = true)]
    pub scheduled_until: Option<DateTime<Utc>>,
    /// Start it at `scheduled_for` (default true).
    pub auto_start: Option<bool>,
    /// Complete it at `scheduled_until` (default true).
    pub auto_complete: Option<bool>,
}

/// A JSON merge patch of a maintenance that is not completed or cancelled. The status moves
/// through `POST /v1/maintenances/{id}/updates`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MaintenancePatchIn {
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = String, required = false)]
    pub title: Option<Option<String>>,
    /// `null` empties it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub body: Option<Option<String>>,
    /// `null` empties it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Vec<uuid::Uuid>>)]
    pub components: Option<Option<Vec<uuid::Uuid>>>,
    /// Only before it has started.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = String, format = DateTime, required = false)]
    pub scheduled_for: Option<Option<DateTime<Utc>>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = String, format = DateTime, required = false)]
    pub scheduled_until: Option<Option<DateTime<Utc>>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = bool, required = false)]
    pub auto_start: Option<Option<bool>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = bool, required = false)]
    pub auto_complete: Option<Option<bool>>,
}

/// An update to a maintenance's timeline: a note for customers, a status change, or both.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceUpdateIn {
    /// Required unless `status` changes; up to 10,000 characters.
    #[schema(max_length = 10000)]
    pub body: Option<String>,
    /// Move to this status: `scheduled → in_progress → verifying → completed`, `verifying →
    /// in_progress`, `in_progress → completed`, or `cancelled` from any state that is not
    /// final. An invalid move is 409 with `allowed_transitions`.
    pub status: Option<MaintenanceStatus>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MaintenanceList {
    pub maintenances: Vec<Maintenance>,
    /// Absent on the last page.
    pub next_page_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MaintenanceUpdateList {
    pub updates: Vec<MaintenanceUpdate>,
    /// Absent on the last page.
    pub next_page_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MaintenanceUpdatePosted {
    pub update: MaintenanceUpdate,
    pub maintenance: Maintenance,
}

/// Paging and filter for maintenances.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListMaintenancesParams {
    /// Only these statuses (repeat the parameter or separate with commas).
    status: Option<Vec<MaintenanceStatus>>,
    /// 1-500, default 50.
    page_size: Option<u32>,
    /// `next_page_token` of the previous page.
    page_token: Option<String>,
}

/// Paging of a timeline.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListMaintenanceUpdatesParams {
    /// 1-500, default 50.
    page_size: Option<u32>,
    /// `next_page_token` of the previous page.
    page_token: Option<String>,
}

fn location(m: &Maintenance) -> String {
    format!("/v1/maintenances/{}", m.id)
}

#[utoipa::path(
    post, path = "/v1/maintenances", tag = "maintenance",
    request_body = MaintenanceIn,
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "Makes the create idempotent for 24 h")),
    responses(
        (status = 201, description = "Scheduled", body = Maintenance, headers(("Location" = String), ("ETag" = String))),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 422, description = "Idempotency key reused with a different request"),
    )
)]
pub async fn create_maintenance(
    Authorized(caller, ..): Authorized<WriteMaintenance>,
    State(service): State<Service>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<MaintenanceIn>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let MaintenanceIn { title, body, components, scheduled_for, scheduled_until, auto_start, auto_complete } = body;
    let input = NewMaintenance { title, body, components, scheduled_for, scheduled_until, auto_start, auto_complete };
    let Created { value, replayed } = service.create_maintenance(&caller, input, key.as_ref()).await?;
    Ok(created(location(&value), &value.etag(), replayed, &value))
}

#[utoipa::path(
    get, path = "/v1/maintenances/{id}", tag = "maintenance",
    params(("id" = uuid::Uuid, Path, description = "Maintenance id")),
    responses(
        (status = 200, description = "OK", body = Maintenance, headers(("ETag" = String))),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
    )
)]
pub async fn get_maintenance(
    Authorized(caller, ..): Authorized<ReadMaintenance>,
    State(service): State<Service>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let maintenance = service.get_maintenance(&caller, path_id(&id)?).await?;
    Ok(tagged(StatusCode::OK, &maintenance.etag(), &maintenance))
}

#[utoipa::path(
    get, path = "/v1/maintenances", tag = "maintenance",
    params(ListMaintenancesParams),
    responses(
        (status = 200, description = "Maintenances, latest window first", body = MaintenanceList),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
    )
)]
pub async fn list_maintenances(
    Authorized(caller, ..): Authorized<ReadMaintenance>,
    State(service): State<Service>,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<MaintenanceList>, ApiError> {
    let (q, page) = paged(query.as_deref(), &["status"])?;
    let mut v = Violations::new();
    let statuses = q.parse_all(&mut v, "status");
    v.finish()?;
    let page = service.list_maintenances(&caller, statuses, page).await?;
    Ok(axum::Json(MaintenanceList { maintenances: page.items, next_page_token: page.next_page_token }))
}

#[utoipa::path(
    patch, path = "/v1/maintenances/{id}", tag = "maintenance",
    request_body(content = MaintenancePatchIn, content_type = "application/merge-patch+json"),
    params(
        ("id" = uuid::Uuid, Path, description = "Maintenance id"),
        ("If-Match" = Option<String>, Header, description = "Apply only if the ETag still matches (e.g. `\"3\"`, a list, or `*`); otherwise 412"),
    ),
    responses(
        (status = 200, description = "OK", body = Maintenance, headers(("ETag" = String))),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
        (status = 409, description = "Completed or cancelled: it can no longer be edited"),
        (status = 412, description = "The ETag no longer matches"),
    )
)]
pub async fn patch_maintenance(
    Authorized(caller, ..): Authorized<WriteMaintenance>,
    State(service): State<Service>,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<MaintenancePatchIn>,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let MaintenancePatchIn { title, body, components, scheduled_for, scheduled_until, auto_start, auto_complete } =
        body;
    let mut v = Violations::new();
    let patch = MaintenancePatch {
        title: not_null(&mut v, "title", title),
        body: body.map(Option::unwrap_or_default),
        components: components.map(Option::unwrap_or_default),
        scheduled_for: not_null(&mut v, "scheduled_for", scheduled_for),
        scheduled_until: not_null(&mut v, "scheduled_until", scheduled_until),
        auto_start: not_null(&mut v, "auto_start", auto_start),
        auto_complete: not_null(&mut v, "auto_complete", auto_complete),
    };
    v.finish()?;
    let maintenance = service.update_maintenance(&caller, id, patch, if_match(&headers)?.as_deref()).await?;
    Ok(tagged(StatusCode::OK, &maintenance.etag(), &maintenance))
}

#[utoipa::path(
    post, path = "/v1/maintenances/{id}/updates", tag = "maintenance",
    request_body = MaintenanceUpdateIn,
    params(
        ("id" = uuid::Uuid, Path, description = "Maintenance id"),
        ("If-Match" = Option<String>, Header, description = "Post only if the maintenance's ETag still matches; otherwise 412"),
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "Makes the post idempotent for 24 h"),
    ),
    responses(
        (status = 201, description = "Posted; the maintenance as it now is", body = MaintenanceUpdatePosted, headers(("Location" = String), ("ETag" = String))),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
        (status = 409, description = "A move the lifecycle does not allow (`allowed_transitions`), or a final maintenance"),
        (status = 412, description = "The ETag no longer matches"),
        (status = 422, description = "Idempotency key reused with a different request"),
    )
)]
pub async fn create_maintenance_update(
    Authorized(caller, ..): Authorized<WriteMaintenance>,
    State(service): State<Service>,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<MaintenanceUpdateIn>,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let key = idempotency_key(&headers)?;
    let MaintenanceUpdateIn { body, status } = body;
    let input = NewMaintenanceUpdate { body, status };
    let Created { value: (update, maintenance), replayed } =
        service.post_maintenance_update(&caller, id, input, if_match(&headers)?.as_deref(), key.as_ref()).await?;
    let location = format!("{}/updates", location(&maintenance));
    let etag = maintenance.etag();
    Ok(created(location, &etag, replayed, MaintenanceUpdatePosted { update, maintenance }))
}

#[utoipa::path(
    get, path = "/v1/maintenances/{id}/updates", tag = "maintenance",
    params(("id" = uuid::Uuid, Path, description = "Maintenance id"), ListMaintenanceUpdatesParams),
    responses(
        (status = 200, description = "The timeline, oldest first", body = MaintenanceUpdateList),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
    )
)]
pub async fn list_maintenance_updates(
    Authorized(caller, ..): Authorized<ReadMaintenance>,
    State(service): State<Service>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<MaintenanceUpdateList>, ApiError> {
    let id = path_id(&id)?;
    let (_, page) = paged(query.as_deref(), &[])?;
    let page = service.list_maintenance_updates(&caller, id, page).await?;
    Ok(axum::Json(MaintenanceUpdateList { updates: page.items, next_page_token: page.next_page_token }))
}
