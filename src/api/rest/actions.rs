//! Follow-up actions: `/v1/incidents/{id}/actions` (an incident's) and `/v1/actions` (all of
//! them, and one by id).

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::NaiveDate;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{
    Authorized, JsonBody, QueryParams, ReadIncidents, WriteIncidents, idempotency_key, if_match, incident_key,
    not_null, nullable, path_id,
};
use super::incidents::IncidentPath;
use super::problem::ApiError;
use super::{created, tagged};
use crate::domain::action::{Action, ActionPatch, ActionPriority, ActionStatus, NewAction, parse_due_date};
use crate::domain::validate::Violations;
use crate::domain::{IncidentKey, PageRequest};
use crate::service::{ActionQuery, Created, Service};

/// A due date: `YYYY-MM-DD`.
fn date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) => parse_due_date(&s).map(Some).map_err(serde::de::Error::custom),
    }
}

/// A due date in a merge patch: absent, `null` or `YYYY-MM-DD`.
fn nullable_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<NaiveDate>>, D::Error> {
    date(d).map(Some)
}

/// A follow-up action to add. `title` is required.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionIn {
    /// 1-200 characters.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 200)]
    pub title: Option<String>,
    /// Who does it (a name, a handle or an address).
    pub owner: Option<String>,
    /// When it is due (`YYYY-MM-DD`): overdue from the next day in the status page's time zone.
    #[serde(default, deserialize_with = "date")]
    #[schema(value_type = Option<String>, format = Date)]
    pub due_date: Option<NaiveDate>,
    /// Defaults to `medium`.
    pub priority: Option<ActionPriority>,
    /// Defaults to `open`.
    pub status: Option<ActionStatus>,
    /// The action in an outside tracker: a URL or a key such as `OPS-123`.
    pub tracker: Option<String>,
}

/// A JSON merge patch of an action: absent fields stay, `null` clears.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionPatchIn {
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = String, required = false)]
    pub title: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub owner: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable_date")]
    #[schema(value_type = Option<String>, format = Date)]
    pub due_date: Option<Option<NaiveDate>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = ActionPriority, required = false)]
    pub priority: Option<Option<ActionPriority>>,
    /// `done` or `wont_do` stamps `completed_at`; `open` reopens.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = ActionStatus, required = false)]
    pub status: Option<Option<ActionStatus>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub tracker: Option<Option<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ActionList {
    pub actions: Vec<Action>,
    /// Absent on the last page.
    pub next_page_token: Option<String>,
}

/// Filters and paging of actions.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListActionsParams {
    /// Only this owner's (any case).
    owner: Option<String>,
    /// Any of these statuses (repeat the parameter or separate with commas).
    status: Option<Vec<ActionStatus>>,
    /// `true`: only overdue actions; `false`: only those not overdue.
    overdue: Option<bool>,
    /// 1-500, default 50.
    page_size: Option<u32>,
    /// `next_page_token` of the previous page.
    page_token: Option<String>,
}

/// Filters and paging of all actions.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListAllActionsParams {
    /// Only this incident's (id or reference).
    incident: Option<String>,
    /// Only this owner's (any case).
    owner: Option<String>,
    /// Any of these statuses (repeat the parameter or separate with commas).
    status: Option<Vec<ActionStatus>>,
    /// `true`: only overdue actions; `false`: only those not overdue.
    overdue: Option<bool>,
    /// 1-500, default 50.
    page_size: Option<u32>,
    /// `next_page_token` of the previous page.
    page_token: Option<String>,
}

/// The action a route is about.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ActionPath {
    /// Action id
    pub id: String,
}

fn location(a: &Action) -> String {
    format!("/v1/actions/{}", a.id)
}

/// Reads the list's query: `incident` where allowed, `owner`, `status`, `overdue`, paging.
fn list_query(raw: Option<&str>, incident: Option<IncidentKey>) -> Result<(ActionQuery, PageRequest), ApiError> {
    let known: &[&str] = if incident.is_some() {
        &["owner", "status", "overdue", "page_size", "page_token"]
    } else {
        &["incident", "owner", "status", "overdue", "page_size", "page_token"]
    };
    let q = QueryParams::parse(raw, known)?;
    let mut v = Violations::new();
    let incident = match (incident, q.one("incident")) {
        (Some(k), _) => Some(k),
        (None, Some(raw)) => IncidentKey::parse("incident", raw).map_err(|e| v.extend(e)).ok(),
        (None, None) => None,
    };
    let owner = q.one("owner").map(str::to_string);
    v.search_text("owner", owner.as_deref().unwrap_or_default());
    let query =
        ActionQuery { incident, owner, statuses: q.parse_all(&mut v, "status"), overdue: q.bool(&mut v, "overdue") };
    let page_size = q.int(&mut v, "page_size");
    v.finish()?;
    Ok((query, PageRequest::new(page_size, q.one("page_token"))?))
}

#[utoipa::path(
    post, path = "/v1/incidents/{id}/actions", tag = "actions",
    request_body = ActionIn,
    params(
        IncidentPath,
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "Makes the create idempotent for 24 h"),
    ),
    responses(
        (status = 201, description = "Added", body = Action, headers(("Location" = String), ("ETag" = String))),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such incident"),
        (status = 409, description = "The incident was merged (its actions are with the incident it went into)"),
        (status = 422, description = "Idempotency key reused with a different request"),
    )
)]
pub async fn create_action(
    Authorized(caller, ..): Authorized<WriteIncidents>,
    State(service): State<Service>,
    Path(IncidentPath { id }): Path<IncidentPath>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ActionIn>,
) -> Result<Response, ApiError> {
    let key = incident_key(&id)?;
    let idem = idempotency_key(&headers)?;
    let ActionIn { title, owner, due_date, priority, status, tracker } = body;
    let input = NewAction { title, owner, due_date, priority, status, tracker };
    let Created { value, replayed } = service.create_action(&caller, key, input, idem.as_ref()).await?;
    Ok(created(location(&value), &value.etag(), replayed, &value))
}

#[utoipa::path(
    get, path = "/v1/incidents/{id}/actions", tag = "actions",
    params(IncidentPath, ListActionsParams),
    responses(
        (status = 200, description = "The incident's actions: open first, by due date (the overdue first)", body = ActionList),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such incident"),
    )
)]
pub async fn list_incident_actions(
    Authorized(caller, ..): Authorized<ReadIncidents>,
    State(service): State<Service>,
    Path(IncidentPath { id }): Path<IncidentPath>,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<ActionList>, ApiError> {
    let (query, page) = list_query(query.as_deref(), Some(incident_key(&id)?))?;
    let page = service.list_actions(&caller, query, page).await?;
    Ok(axum::Json(ActionList { actions: page.items, next_page_token: page.next_page_token }))
}

#[utoipa::path(
    get, path = "/v1/actions", tag = "actions",
    params(ListAllActionsParams),
    responses(
        (status = 200, description = "Actions across incidents: open first, by due date (the overdue first)", body = ActionList),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such incident"),
    )
)]
pub async fn list_actions(
    Authorized(caller, ..): Authorized<ReadIncidents>,
    State(service): State<Service>,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<ActionList>, ApiError> {
    let (query, page) = list_query(query.as_deref(), None)?;
    let page = service.list_actions(&caller, query, page).await?;
    Ok(axum::Json(ActionList { actions: page.items, next_page_token: page.next_page_token }))
}

#[utoipa::path(
    get, path = "/v1/actions/{id}", tag = "actions",
    params(ActionPath),
    responses(
        (status = 200, description = "OK", body = Action, headers(("ETag" = String))),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such action"),
    )
)]
pub async fn get_action(
    Authorized(caller, ..): Authorized<ReadIncidents>,
    State(service): State<Service>,
    Path(ActionPath { id }): Path<ActionPath>,
) -> Result<Response, ApiError> {
    let a = service.get_action(&caller, path_id(&id)?).await?;
    Ok(tagged(StatusCode::OK, &a.etag(), &a))
}

#[utoipa::path(
    patch, path = "/v1/actions/{id}", tag = "actions",
    request_body(content = ActionPatchIn, content_type = "application/merge-patch+json"),
    params(
        ActionPath,
        ("If-Match" = Option<String>, Header, description = "Apply only if the ETag still matches (e.g. `\"3\"`, a list, or `*`); otherwise 412"),
    ),
    responses(
        (status = 200, description = "OK", body = Action, headers(("ETag" = String))),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such action"),
        (status = 412, description = "The ETag no longer matches"),
    )
)]
pub async fn patch_action(
    Authorized(caller, ..): Authorized<WriteIncidents>,
    State(service): State<Service>,
    Path(ActionPath { id }): Path<ActionPath>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ActionPatchIn>,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let ActionPatchIn { title, owner, due_date, priority, status, tracker } = body;
    let mut v = Violations::new();
    let patch = ActionPatch {
        title: not_null(&mut v, "title", title),
        owner,
        due_date,
        priority: not_null(&mut v, "priority", priority),
        status: not_null(&mut v, "status", status),
        tracker,
    };
    v.finish()?;
    let a = service.update_action(&caller, id, patch, if_match(&headers)?.as_deref()).await?;
    Ok(tagged(StatusCode::OK, &a.etag(), &a))
}

#[utoipa::path(
    delete, path = "/v1/actions/{id}", tag = "actions",
    params(
        ActionPath,
        ("If-Match" = Option<String>, Header, description = "Delete only if the ETag still matches; otherwise 412"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such action"),
        (status = 412, description = "The ETag no longer matches"),
    )
)]
pub async fn delete_action(
    Authorized(caller, ..): Authorized<WriteIncidents>,
    State(service): State<Service>,
    Path(ActionPath { id }): Path<ActionPath>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    service.delete_action(&caller, path_id(&id)?, if_match(&headers)?.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}
