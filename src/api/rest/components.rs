//! `/v1/components`: DTOs and handlers.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{
    Authorized, JsonBody, ReadComponents, WriteComponents, idempotency_key, if_match, nullable, paged, path_id,
};
use super::problem::ApiError;
use super::{created, tagged};
use crate::domain::validate::Violations;
use crate::domain::{Component, ComponentPatch, ComponentStatus, NewComponent};
use crate::service::{Created, Service};

/// A new component. Only `name` is required.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComponentIn {
    /// Unique (case-insensitive), 1-100 characters.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 100)]
    pub name: Option<String>,
    /// Up to 1,000 characters.
    #[schema(max_length = 1000)]
    pub description: Option<String>,
    /// Group heading on the status page, up to 100 characters.
    #[schema(max_length = 100)]
    pub group: Option<String>,
    /// Order within the group; defaults to 0.
    #[serde(default, deserialize_with = "super::extract::integer")]
    pub position: Option<i32>,
    /// Defaults to `operational`.
    pub status: Option<ComponentStatus>,
}

/// A JSON merge patch of a component.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComponentPatchIn {
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = String, required = false)]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub group: Option<Option<String>>,
    /// `null` resets it to 0.
    #[serde(default, deserialize_with = "super::extract::nullable_integer")]
    #[schema(value_type = Option<i32>)]
    pub position: Option<Option<i32>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = ComponentStatus, required = false)]
    pub status: Option<Option<ComponentStatus>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ComponentList {
    pub components: Vec<Component>,
    /// Absent on the last page.
    pub next_page_token: Option<String>,
}

/// Paging and filter for components.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListComponentsParams {
    /// Only components of this group.
    group: Option<String>,
    /// 1-500, default 50.
    page_size: Option<u32>,
    /// `next_page_token` of the previous page.
    page_token: Option<String>,
}

#[utoipa::path(
    post, path = "/v1/components", tag = "components",
    request_body = ComponentIn,
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "Makes the create idempotent for 24 h")),
    responses(
        (status = 201, description = "Created", body = Component, headers(("Location" = String), ("ETag" = String))),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 409, description = "Name already taken"),
        (status = 422, description = "Idempotency key reused with a different request"),
    )
)]
pub async fn create_component(
    Authorized(caller, ..): Authorized<WriteComponents>,
    State(service): State<Service>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ComponentIn>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let input = NewComponent {
        name: body.name,
        description: body.description,
        group: body.group,
        position: body.position,
        status: body.status,
    };
    let Created { value, replayed } = service.create_component(&caller, input, key.as_ref()).await?;
    Ok(created(format!("/v1/components/{}", value.id), &value.etag(), replayed, &value))
}

#[utoipa::path(
    get, path = "/v1/components/{id}", tag = "components",
    params(("id" = uuid::Uuid, Path, description = "Component id")),
    responses(
        (status = 200, description = "OK", body = Component, headers(("ETag" = String))),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
    )
)]
pub async fn get_component(
    Authorized(caller, ..): Authorized<ReadComponents>,
    State(service): State<Service>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let component = service.get_component(&caller, path_id(&id)?).await?;
    Ok(tagged(StatusCode::OK, &component.etag(), &component))
}

#[utoipa::path(
    get, path = "/v1/components", tag = "components",
    params(ListComponentsParams),
    responses(
        (status = 200, description = "Components in status-page order (group, position, name)", body = ComponentList),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
    )
)]
pub async fn list_components(
    Authorized(caller, ..): Authorized<ReadComponents>,
    State(service): State<Service>,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<ComponentList>, ApiError> {
    let (q, page) = paged(query.as_deref(), &["group"])?;
    let page = service.list_components(&caller, q.one("group"), page).await?;
    Ok(axum::Json(ComponentList { components: page.items, next_page_token: page.next_page_token }))
}

#[utoipa::path(
    patch, path = "/v1/components/{id}", tag = "components",
    request_body(content = ComponentPatchIn, content_type = "application/merge-patch+json"),
    params(
        ("id" = uuid::Uuid, Path, description = "Component id"),
        ("If-Match" = Option<String>, Header, description = "Apply only if the ETag still matches (e.g. `\"3\"`, a list, or `*`); otherwise 412"),
    ),
    responses(
        (status = 200, description = "OK", body = Component, headers(("ETag" = String))),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
        (status = 409, description = "Conflict with the current state"),
        (status = 412, description = "The ETag no longer matches"),
    )
)]
pub async fn patch_component(
    Authorized(caller, ..): Authorized<WriteComponents>,
    State(service): State<Service>,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ComponentPatchIn>,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let mut v = Violations::new();
    let mut required = |field: &str, value: Option<Option<_>>| match value {
        Some(None) => {
            v.add(field, "cannot be null");
            None
        }
        other => other.flatten(),
    };
    let name = required("name", body.name);
    let position = match body.position {
        Some(None) => Some(0),
        other => other.flatten(),
    };
    let status = match body.status {
        Some(None) => {
            v.add("status", "cannot be null");
            None
        }
        other => other.flatten(),
    };
    v.finish()?;
    let patch = ComponentPatch {
        name,
        description: body.description.map(Option::unwrap_or_default),
        group: body.group,
        position,
        status,
    };
    let component = service.update_component(&caller, id, patch, if_match(&headers)?.as_deref()).await?;
    Ok(tagged(StatusCode::OK, &component.etag(), &component))
}

#[utoipa::path(
    delete, path = "/v1/components/{id}", tag = "components",
    params(
        ("id" = uuid::Uuid, Path, description = "Component id"),
        ("If-Match" = Option<String>, Header, description = "Delete only if the ETag still matches (e.g. `\"3\"`, a list, or `*`); otherwise 412"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
        (status = 409, description = "An open incident affects it"),
        (status = 412, description = "The ETag no longer matches"),
    )
)]
pub async fn delete_component(
    Authorized(caller, ..): Authorized<WriteComponents>,
    State(service): State<Service>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let id = path_id(&id)?;
    service.delete_component(&caller, id, if_match(&headers)?.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}
