//! `/v1/incidents/{id}/postmortem`: an incident's postmortem, and its moves through review to
//! publication.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::{
    Authorized, JsonBody, ReadIncidents, WriteIncidents, idempotency_key, if_match, incident_key, not_null, nullable,
};
use super::incidents::IncidentPath;
use super::problem::ApiError;
use super::{created, tagged};
use crate::domain::postmortem::{
    NewPostmortem, Postmortem, PostmortemPatch, PostmortemStatus, RecurrenceRisk, RootCauseCategory,
};
use crate::domain::validate::Violations;
use crate::service::{Created, Service};

/// A postmortem to start (as a draft). Every field may be left out.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostmortemIn {
    /// Internal: the analysis, Markdown, up to 100,000 characters.
    #[schema(max_length = 100000)]
    pub body: Option<String>,
    /// What customers are told changes, up to 10,000 characters: public once published.
    /// Leave out what an attacker could use.
    #[schema(max_length = 10000)]
    pub public_summary: Option<String>,
    /// Defaults to `unknown`.
    pub root_cause_category: Option<RootCauseCategory>,
    /// At most 20, each 1-500 characters.
    #[serde(default)]
    pub contributing_factors: Vec<String>,
    pub recurrence_risk: Option<RecurrenceRisk>,
    /// Why the risk is what it is.
    pub recurrence_reason: Option<String>,
    /// Whether a third party was the cause; defaults to the incident's `cause.kind` being
    /// `third_party`.
    pub third_party: Option<bool>,
    /// Defaults to the API key's name.
    pub author: Option<String>,
}

/// A JSON merge patch of a postmortem: absent fields stay, `null` clears. The status moves
/// through `POST /v1/incidents/{id}/postmortem/transitions`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostmortemPatchIn {
    /// `null` empties it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub body: Option<Option<String>>,
    /// `null` empties it (not once published).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub public_summary: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = RootCauseCategory, required = false)]
    pub root_cause_category: Option<Option<RootCauseCategory>>,
    /// Replaced whole; `null` empties it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Vec<String>>)]
    pub contributing_factors: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<RecurrenceRisk>)]
    pub recurrence_risk: Option<Option<RecurrenceRisk>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub recurrence_reason: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = bool, required = false)]
    pub third_party: Option<Option<bool>>,
}

/// A move of the postmortem.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostmortemTransitionIn {
    /// `in_review` (from a draft), `draft` or `published` (from review).
    #[schema(value_type = PostmortemStatus, required = true)]
    pub to: Option<PostmortemStatus>,
}

fn location(p: &Postmortem) -> String {
    format!("/v1/incidents/{}/postmortem", p.incident_id)
}

#[utoipa::path(
    post, path = "/v1/incidents/{id}/postmortem", tag = "postmortems",
    request_body = PostmortemIn,
    params(
        IncidentPath,
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "Makes the create idempotent for 24 h"),
    ),
    responses(
        (status = 201, description = "Started, as a draft", body = Postmortem, headers(("Location" = String), ("ETag" = String))),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such incident"),
        (status = 409, description = "The incident has a postmortem already, or was merged"),
        (status = 422, description = "Idempotency key reused with a different request"),
    )
)]
pub async fn create_postmortem(
    Authorized(caller, ..): Authorized<WriteIncidents>,
    State(service): State<Service>,
    Path(IncidentPath { id }): Path<IncidentPath>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<PostmortemIn>,
) -> Result<Response, ApiError> {
    let key = incident_key(&id)?;
    let idem = idempotency_key(&headers)?;
    let PostmortemIn {
        body,
        public_summary,
        root_cause_category,
        contributing_factors,
        recurrence_risk,
        recurrence_reason,
        third_party,
        author,
    } = body;
    let input = NewPostmortem {
        body,
        public_summary,
        root_cause_category,
        contributing_factors,
        recurrence_risk,
        recurrence_reason,
        third_party,
        author,
    };
    let Created { value, replayed } = service.create_postmortem(&caller, key, input, idem.as_ref()).await?;
    Ok(created(location(&value), &value.etag(), replayed, &value))
}

#[utoipa::path(
    get, path = "/v1/incidents/{id}/postmortem", tag = "postmortems",
    params(IncidentPath),
    responses(
        (status = 200, description = "OK", body = Postmortem, headers(("ETag" = String))),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such incident, or it has no postmortem"),
    )
)]
pub async fn get_postmortem(
    Authorized(caller, ..): Authorized<ReadIncidents>,
    State(service): State<Service>,
    Path(IncidentPath { id }): Path<IncidentPath>,
) -> Result<Response, ApiError> {
    let p = service.get_postmortem(&caller, incident_key(&id)?).await?;
    Ok(tagged(StatusCode::OK, &p.etag(), &p))
}

#[utoipa::path(
    patch, path = "/v1/incidents/{id}/postmortem", tag = "postmortems",
    request_body(content = PostmortemPatchIn, content_type = "application/merge-patch+json"),
    params(
        IncidentPath,
        ("If-Match" = Option<String>, Header, description = "Apply only if the ETag still matches (e.g. `\"3\"`, a list, or `*`); otherwise 412"),
    ),
    responses(
        (status = 200, description = "OK", body = Postmortem, headers(("ETag" = String))),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such incident, or it has no postmortem"),
        (status = 409, description = "The incident was merged (read-only)"),
        (status = 412, description = "The ETag no longer matches"),
    )
)]
pub async fn patch_postmortem(
    Authorized(caller, ..): Authorized<WriteIncidents>,
    State(service): State<Service>,
    Path(IncidentPath { id }): Path<IncidentPath>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<PostmortemPatchIn>,
) -> Result<Response, ApiError> {
    let key = incident_key(&id)?;
    let PostmortemPatchIn {
        body,
        public_summary,
        root_cause_category,
        contributing_factors,
        recurrence_risk,
        recurrence_reason,
        third_party,
    } = body;
    let mut v = Violations::new();
    let patch = PostmortemPatch {
        body: body.map(Option::unwrap_or_default),
        public_summary: public_summary.map(Option::unwrap_or_default),
        root_cause_category: not_null(&mut v, "root_cause_category", root_cause_category),
        contributing_factors: contributing_factors.map(Option::unwrap_or_default),
        recurrence_risk,
        recurrence_reason,
        third_party: not_null(&mut v, "third_party", third_party),
    };
    v.finish()?;
    let p = service.update_postmortem(&caller, key, patch, if_match(&headers)?.as_deref()).await?;
    Ok(tagged(StatusCode::OK, &p.etag(), &p))
}

#[utoipa::path(
    post, path = "/v1/incidents/{id}/postmortem/transitions", tag = "postmortems",
    request_body = PostmortemTransitionIn,
    params(
        IncidentPath,
        ("If-Match" = Option<String>, Header, description = "Move only if the postmortem's ETag still matches; otherwise 412"),
    ),
    responses(
        (status = 200, description = "Moved", body = Postmortem, headers(("ETag" = String))),
        (status = 400, description = "Invalid request, or publishing without a public summary or a judgement of recurrence: `errors` names each missing field"),
        (status = 404, description = "No such incident, or it has no postmortem"),
        (status = 409, description = "A move the review does not allow (`allowed_transitions`), publishing while the incident is open, or a merged incident"),
        (status = 412, description = "The ETag no longer matches"),
    )
)]
pub async fn transition_postmortem(
    Authorized(caller, ..): Authorized<WriteIncidents>,
    State(service): State<Service>,
    Path(IncidentPath { id }): Path<IncidentPath>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<PostmortemTransitionIn>,
) -> Result<Response, ApiError> {
    let key = incident_key(&id)?;
    let p = service.transition_postmortem(&caller, key, body.to, if_match(&headers)?.as_deref()).await?;
    Ok(tagged(StatusCode::OK, &p.etag(), &p))
}
