//! Relations between incidents: `POST /v1/incidents/{id}/merge` and the typed links of
//! `/v1/incidents/{id}/links`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{Authorized, JsonBody, ReadIncidents, WriteIncidents, incident_key, path_id};
use super::incidents::IncidentPath;
use super::problem::ApiError;
use super::tagged;
use crate::domain::Incident;
use crate::domain::link::{Link, LinkKind};
use crate::service::Service;

/// Where a duplicate goes.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeIn {
    /// The incident that carries on (id or reference): not this one, not merged, not closed.
    #[schema(value_type = String, required = true, example = "INC-7")]
    pub into: Option<String>,
    /// Who merged it; defaults to the API key's name.
    pub actor: Option<String>,
}

/// The outcome of a merge.
#[derive(Debug, Serialize, ToSchema)]
pub struct Merged {
    /// The incident merged into, as it now is.
    pub incident: Incident,
    /// The duplicate, now `merged` (read-only, `merged_into` the incident).
    pub merged: Incident,
}

/// A link to make.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkIn {
    /// How this incident relates to the other: `related`, `caused_by`, `recurrence_of`, or
    /// (from the other side) `causes`, `recurred_as`.
    #[schema(value_type = LinkKind, required = true)]
    pub kind: Option<LinkKind>,
    /// The other incident (id or reference).
    #[schema(value_type = String, required = true, example = "INC-3")]
    pub incident: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinkList {
    /// Oldest first, each as this incident reads it.
    pub links: Vec<Link>,
}

/// A link of an incident.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct LinkPath {
    /// Incident id or reference (INC-42)
    pub id: String,
    /// Link id
    pub link_id: String,
}

#[utoipa::path(
    post, path = "/v1/incidents/{id}/merge", tag = "incidents",
    request_body = MergeIn,
    params(IncidentPath),
    responses(
        (status = 200, description = "Merged: the timeline, components, alerts, actions and links moved into `incident` with their original times", body = Merged,
            headers(("ETag" = String, description = "The ETag of the incident merged into"))),
        (status = 400, description = "Invalid request (`into` missing, unknown, or this incident itself): `errors` names it"),
        (status = 404, description = "No such incident"),
        (status = 409, description = "Into or from a merged or closed incident"),
    )
)]
pub async fn merge_incident(
    Authorized(caller, ..): Authorized<WriteIncidents>,
    State(service): State<Service>,
    Path(IncidentPath { id }): Path<IncidentPath>,
    JsonBody(body): JsonBody<MergeIn>,
) -> Result<Response, ApiError> {
    let key = incident_key(&id)?;
    let MergeIn { into, actor } = body;
    let (incident, merged) = service.merge_incident(&caller, key, into.as_deref(), actor.as_deref()).await?;
    Ok(tagged(StatusCode::OK, &incident.etag(), Merged { incident, merged }))
}

#[utoipa::path(
    post, path = "/v1/incidents/{id}/links", tag = "incidents",
    request_body = LinkIn,
    params(IncidentPath),
    responses(
        (status = 201, description = "Linked; the link as this incident reads it", body = Link, headers(("Location" = String))),
        (status = 400, description = "Invalid request (`kind` or `incident` missing or unknown, or this incident itself): `errors` names each"),
        (status = 404, description = "No such incident"),
        (status = 409, description = "The two are linked so already, or one was merged"),
    )
)]
pub async fn create_link(
    Authorized(caller, ..): Authorized<WriteIncidents>,
    State(service): State<Service>,
    Path(IncidentPath { id }): Path<IncidentPath>,
    JsonBody(body): JsonBody<LinkIn>,
) -> Result<Response, ApiError> {
    let key = incident_key(&id)?;
    let LinkIn { kind, incident } = body;
    let link = service.create_link(&caller, key, kind, incident.as_deref()).await?;
    let location = format!("/v1/incidents/{id}/links/{}", link.id);
    Ok((StatusCode::CREATED, [(axum::http::header::LOCATION, location)], axum::Json(link)).into_response())
}

#[utoipa::path(
    get, path = "/v1/incidents/{id}/links", tag = "incidents",
    params(IncidentPath),
    responses(
        (status = 200, description = "The incident's links, as it reads them", body = LinkList),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such incident"),
    )
)]
pub async fn list_links(
    Authorized(caller, ..): Authorized<ReadIncidents>,
    State(service): State<Service>,
    Path(IncidentPath { id }): Path<IncidentPath>,
) -> Result<axum::Json<LinkList>, ApiError> {
    let links = service.list_links(&caller, incident_key(&id)?).await?;
    Ok(axum::Json(LinkList { links }))
}

#[utoipa::path(
    delete, path = "/v1/incidents/{id}/links/{link_id}", tag = "incidents",
    params(LinkPath),
    responses(
        (status = 204, description = "Removed (from both sides)"),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such incident, or no such link of it"),
    )
)]
pub async fn delete_link(
    Authorized(caller, ..): Authorized<WriteIncidents>,
    State(service): State<Service>,
    Path(LinkPath { id, link_id }): Path<LinkPath>,
) -> Result<StatusCode, ApiError> {
    service.delete_link(&caller, incident_key(&id)?, path_id(&link_id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
