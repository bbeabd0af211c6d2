//! `/v1/api-keys` and `/v1/audit-events` (scope `admin`).

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{Admin, Authorized, JsonBody, QueryParams, paged, path_id};
use super::problem::ApiError;
use crate::domain::access::{AuditFilter, NewApiKey};
use crate::domain::ids::parse_uuid;
use crate::domain::validate::Violations;
use crate::domain::{ApiKey, AuditEvent, PageRequest, Scope};
use crate::service::Service;

/// A new API key.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyIn {
    /// 1-100 characters: who or what uses the key. It is the default author of what the key
    /// changes.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 100)]
    pub name: Option<String>,
    /// At least one.
    #[serde(default)]
    #[schema(min_items = 1)]
    pub scopes: Vec<Scope>,
    /// Optional, in the future.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A created key and its secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyCreated {
    pub api_key: ApiKey,
    /// `Authorization: Bearer <secret>`. Not stored: it cannot be shown again.
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    pub api_keys: Vec<ApiKey>,
    /// Absent on the last page.
    pub next_page_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventList {
    pub events: Vec<AuditEvent>,
    /// Absent on the last page.
    pub next_page_token: Option<String>,
}

/// Paging for API keys.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListApiKeysParams {
    /// 1-500, default 50.
    page_size: Option<u32>,
    /// `next_page_token` of the previous page.
    page_token: Option<String>,
}

/// Filters and paging for the audit trail.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListAuditEventsParams {
    /// Only what this API key did.
    actor_key_id: Option<uuid::Uuid>,
    /// `incident`, `component` or `api_key`.
    resource_type: Option<String>,
    /// Only events about this resource (its id).
    resource_id: Option<String>,
    /// e.g. `incident.transition`.
    action: Option<String>,
    /// 1-500, default 50.
    page_size: Option<u32>,
    /// `next_page_token` of the previous page.
    page_token: Option<String>,
}

#[utoipa::path(
    post, path = "/v1/api-keys", tag = "access",
    request_body = ApiKeyIn,
    responses(
        (status = 201, description = "Created; the secret is in the body, this once", body = ApiKeyCreated,
            headers(("Location" = String))),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
    )
)]
pub async fn create_api_key(
    Authorized(caller, ..): Authorized<Admin>,
    State(service): State<Service>,
    JsonBody(body): JsonBody<ApiKeyIn>,
) -> Result<Response, ApiError> {
    let input = NewApiKey { name: body.name, scopes: body.scopes, expires_at: body.expires_at };
    let issued = service.create_api_key(&caller, input).await?;
    let mut res = (StatusCode::CREATED, Json(ApiKeyCreated { api_key: issued.key.clone(), secret: issued.secret }))
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/api-keys/{}", issued.key.id)) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

#[utoipa::path(
    get, path = "/v1/api-keys", tag = "access",
    params(ListApiKeysParams),
    responses(
        (status = 200, description = "Keys, newest first (never their secrets)", body = ApiKeyList),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
    )
)]
pub async fn list_api_keys(
    Authorized(caller, ..): Authorized<Admin>,
    State(service): State<Service>,
    RawQuery(query): RawQuery,
) -> Result<Json<ApiKeyList>, ApiError> {
    let (_, page) = paged(query.as_deref(), &[])?;
    let page = service.list_api_keys(&caller, page).await?;
    Ok(Json(ApiKeyList { api_keys: page.items, next_page_token: page.next_page_token }))
}

#[utoipa::path(
    get, path = "/v1/api-keys/{id}", tag = "access",
    params(("id" = uuid::Uuid, Path, description = "API key id")),
    responses(
        (status = 200, description = "OK", body = ApiKey),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
    )
)]
pub async fn get_api_key(
    Authorized(caller, ..): Authorized<Admin>,
    State(service): State<Service>,
    Path(id): Path<String>,
) -> Result<Json<ApiKey>, ApiError> {
    Ok(Json(service.get_api_key(&caller, path_id(&id)?).await?))
}

#[utoipa::path(
    delete, path = "/v1/api-keys/{id}", tag = "access",
    params(("id" = uuid::Uuid, Path, description = "API key id")),
    responses(
        (status = 200, description = "Revoked (revoking again changes nothing)", body = ApiKey),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
    )
)]
pub async fn revoke_api_key(
    Authorized(caller, ..): Authorized<Admin>,
    State(service): State<Service>,
    Path(id): Path<String>,
) -> Result<Json<ApiKey>, ApiError> {
    Ok(Json(service.revoke_api_key(&caller, path_id(&id)?).await?))
}

#[utoipa::path(
    get, path = "/v1/audit-events", tag = "access",
    params(ListAuditEventsParams),
    responses(
        (status = 200, description = "Who changed what and when, newest first", body = AuditEventList),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
    )
)]
pub async fn list_audit_events(
    Authorized(caller, ..): Authorized<Admin>,
    State(service): State<Service>,
    RawQuery(query): RawQuery,
) -> Result<Json<AuditEventList>, ApiError> {
    let q = QueryParams::parse(
        query.as_deref(),
        &["actor_key_id", "resource_type", "resource_id", "action", "page_size", "page_token"],
    )?;
    let mut v = Violations::new();
    let actor_key_id =
        q.one("actor_key_id").and_then(|s| parse_uuid("actor_key_id", s).map_err(|e| v.extend(e).ok()).ok());
    let text = |v: &mut Violations, name: &str| {
        q.one(name).map(|s| {
            v.search_text(name, s);
            s.to_string()
        })
    };
    let filter = AuditFilter {
        actor_key_id,
        resource_type: text(&mut v, "resource_type"),
        resource_id: text(&mut v, "resource_id"),
        action: text(&mut v, "action"),
    };
    let page_size = q.int(&mut v, "page_size");
    v.finish()?;
    let page = service.list_audit_events(&caller, filter, PageRequest::new(page_size, q.one("page_token"))?).await?;
    Ok(Json(AuditEventList { events: page.items, next_page_token: page.next_page_token }))
}
