//! `/v1/incidents`: the handlers; the bodies they take and give are in `dto.rs`. Each handler
//! extracts, converts, calls the service and converts back.

mod dto;

pub use dto::*;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use crate::api::rest::extract::{
    Authorized, JsonBody, OptionalJsonBody, QueryParams, ReadIncidents, WriteIncidents, idempotency_key, if_match,
    incident_key,
};
use crate::api::rest::problem::ApiError;
use crate::api::rest::{created, tagged};
use crate::domain::incident::search_terms;
use crate::domain::query::IncidentFilter;
use crate::domain::validate::Violations;
use crate::domain::{Incident, NewUpdate, PageRequest, TransitionInput, Visibility};
use crate::service::{Created, Service};

fn location(i: &Incident) -> String {
    format!("/v1/incidents/{}", i.id)
}

#[utoipa::path(
    post, path = "/v1/incidents", tag = "incidents",
    request_body = IncidentIn,
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$",
        description = "Makes the create idempotent for 24 h: a repeat with the same body returns the first response")),
    responses(
        (status = 201, description = "Declared (or replayed)", body = Incident,
            headers(("Location" = String), ("ETag" = String))),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 422, description = "Idempotency key reused with a different body"),
    )
)]
pub async fn create_incident(
    Authorized(caller, ..): Authorized<WriteIncidents>,
    State(service): State<Service>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<IncidentIn>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let Created { value, replayed } = service.create_incident(&caller, body.into(), key.as_ref()).await?;
    Ok(created(location(&value), &value.etag(), replayed, &value))
}

#[utoipa::path(
    get, path = "/v1/incidents/{id}", tag = "incidents",
    params(IncidentPath),
    responses(
        (status = 200, description = "OK", body = Incident, headers(("ETag" = String))),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
    )
)]
pub async fn get_incident(
    Authorized(caller, ..): Authorized<ReadIncidents>,
    State(service): State<Service>,
    Path(IncidentPath { id }): Path<IncidentPath>,
) -> Result<Response, ApiError> {
    let incident = service.get_incident(&caller, incident_key(&id)?).await?;
    Ok(tagged(StatusCode::OK, &incident.etag(), &incident))
}

#[utoipa::path(
    get, path = "/v1/incidents", tag = "incidents",
    params(ListIncidentsParams),
    responses(
        (status = 200, description = "OK", body = IncidentList),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
    )
)]
pub async fn list_incidents(
    Authorized(caller, ..): Authorized<ReadIncidents>,
    State(service): State<Service>,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<IncidentList>, ApiError> {
    let q = QueryParams::parse(
        query.as_deref(),
        &["status", "severity", "component", "open", "q", "created_after", "created_before", "page_size", "page_token"],
    )?;
    let mut v = Violations::new();
    let component_id = q
        .one("component")
        .and_then(|c| crate::domain::ids::parse_uuid("component", c).map_err(|e| v.extend(e).ok()).ok());
    let filter = IncidentFilter {
        statuses: q.parse_all(&mut v, "status"),
        severities: q.parse_all(&mut v, "severity"),
        component_id,
        open: q.bool(&mut v, "open"),
        terms: search_terms(&mut v, "q", q.one("q").unwrap_or_default()),
        created_after: q.time(&mut v, "created_after"),
        created_before: q.time(&mut v, "created_before"),
    };
    let page_size = q.int(&mut v, "page_size");
    v.finish()?;
    let page = PageRequest::new(page_size, q.one("page_token"))?;
    let page = service.list_incidents(&caller, filter, page).await?;
    Ok(axum::Json(IncidentList { incidents: page.items, next_page_token: page.next_page_token }))
}

#[utoipa::path(
    patch, path = "/v1/incidents/{id}", tag = "incidents",
    request_body(content = IncidentPatchIn, content_type = "application/merge-patch+json"),
    params(
        IncidentPath,
        ("If-Match" = Option<String>, Header, description = "Apply only if the ETag still matches (e.g. `\"3\"`, a list, or `*`); otherwise 412"),
    ),
    responses(
        (status = 200, description = "OK", body = Incident, headers(("ETag" = String))),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
        (status = 412, description = "The ETag no longer matches"),
    )
)]
pub async fn patch_incident(
    Authorized(caller, ..): Authorized<WriteIncidents>,
    State(service): State<Service>,
    Path(IncidentPath { id }): Path<IncidentPath>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<IncidentPatchIn>,
) -> Result<Response, ApiError> {
    let key = incident_key(&id)?;
    let patch = body.into_patch()?;
    let expected = if_match(&headers)?;
    let incident = service.update_incident(&caller, key, patch, expected.as_deref()).await?;
    Ok(tagged(StatusCode::OK, &incident.etag(), &incident))
}

#[utoipa::path(
    delete, path = "/v1/incidents/{id}", tag = "incidents",
    params(
        IncidentPath,
        ("If-Match" = Option<String>, Header, description = "Delete only if the ETag still matches (e.g. `\"3\"`, a list, or `*`); otherwise 412"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
        (status = 412, description = "The ETag no longer matches"),
    )
)]
pub async fn delete_incident(
    Authorized(caller, ..): Authorized<WriteIncidents>,
    State(service): State<Service>,
    Path(IncidentPath { id }): Path<IncidentPath>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let key = incident_key(&id)?;
    service.delete_incident(&caller, key, if_match(&headers)?.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post, path = "/v1/incidents/{id}/transitions", tag = "incidents",
    request_body = TransitionIn,
    params(IncidentPath),
    responses(
        (status = 200, description = "OK", body = Incident, headers(("ETag" = String))),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
        (status = 409, description = "Move not allowed; `allowed_transitions` lists the targets"),
    )
)]
pub async fn transition_incident(
    Authorized(caller, ..): Authorized<WriteIncidents>,
    State(service): State<Service>,
    Path(IncidentPath { id }): Path<IncidentPath>,
    JsonBody(body): JsonBody<TransitionIn>,
) -> Result<Response, ApiError> {
    let key = incident_key(&id)?;
    let input = TransitionInput { to: body.to, message: body.message, visibility: body.visibility, actor: body.actor };
    let incident = service.transition_incident(&caller, key, input).await?;
    Ok(tagged(StatusCode::OK, &incident.etag(), &incident))
}

#[utoipa::path(
    post, path = "/v1/incidents/{id}/acknowledge", tag = "incidents",
    request_body(content = Option<AcknowledgeIn>, description = "Optional"),
    params(IncidentPath),
    responses(
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 200, description = "Acknowledged (or already acknowledged: unchanged)", body = Incident,
            headers(("ETag" = String))),
        (status = 404, description = "No such resource"),
        (status = 409, description = "Resolved or closed and never acknowledged"),
    )
)]
pub async fn acknowledge_incident(
    Authorized(caller, ..): Authorized<WriteIncidents>,
    State(service): State<Service>,
    Path(IncidentPath { id }): Path<IncidentPath>,
    OptionalJsonBody(body): OptionalJsonBody<AcknowledgeIn>,
) -> Result<Response, ApiError> {
    let key = incident_key(&id)?;
    let incident = service.acknowledge_incident(&caller, key, body.by.as_deref()).await?;
    Ok(tagged(StatusCode::OK, &incident.etag(), &incident))
}

#[utoipa::path(
    post, path = "/v1/incidents/{id}/updates", tag = "incidents",
    request_body = UpdateIn,
    params(
        IncidentPath,
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "Makes the post idempotent for 24 h"),
    ),
    responses(
        (status = 201, description = "Created", body = UpdateCreated, headers(("Location" = String), ("ETag" = String, description = "The incident's ETag"))),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
        (status = 409, description = "Conflict with the current state"),
        (status = 422, description = "Idempotency key reused with a different request"),
    )
)]
pub async fn create_update(
    Authorized(caller, ..): Authorized<WriteIncidents>,
    State(service): State<Service>,
    Path(IncidentPath { id }): Path<IncidentPath>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<UpdateIn>,
) -> Result<Response, ApiError> {
    let key = incident_key(&id)?;
    let idem = idempotency_key(&headers)?;
    let input = NewUpdate { body: body.body, visibility: body.visibility, status: body.status, author: body.author };
    let Created { value: (update, incident), replayed } =
        service.post_update(&caller, key, input, idem.as_ref()).await?;
    let location = format!("{}/updates", location(&incident));
    let etag = incident.etag();
    Ok(created(location, &etag, replayed, UpdateCreated { update, incident }))
}

#[utoipa::path(
    get, path = "/v1/incidents/{id}/updates", tag = "incidents",
    params(IncidentPath, ListUpdatesParams),
    responses(
        (status = 200, description = "The timeline, oldest first", body = UpdateList),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
    )
)]
pub async fn list_updates(
    Authorized(caller, ..): Authorized<ReadIncidents>,
    State(service): State<Service>,
    Path(IncidentPath { id }): Path<IncidentPath>,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<UpdateList>, ApiError> {
    let key = incident_key(&id)?;
    let q = QueryParams::parse(query.as_deref(), &["visibility", "page_size", "page_token"])?;
    let mut v = Violations::new();
    let visibility = q.parse_all::<Visibility>(&mut v, "visibility").pop();
    let page_size = q.int(&mut v, "page_size");
    v.finish()?;
    let page = PageRequest::new(page_size, q.one("page_token"))?;
    let page = service.list_updates(&caller, key, visibility, page).await?;
    Ok(axum::Json(UpdateList { updates: page.items, next_page_token: page.next_page_token }))
}
