//! `/v1/components/{id}/history` and `/v1/components/{id}/uptime`: a component's status
//! changes and the uptime computed from them.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use super::extract::{Authorized, QueryParams, ReadComponents, paged, path_id};
use super::problem::ApiError;
use crate::domain::history::{StatusChange, Uptime};
use crate::domain::validate::Violations;
use crate::service::Service;

#[derive(Debug, Serialize, ToSchema)]
pub struct StatusChangeList {
    /// Newest first.
    pub changes: Vec<StatusChange>,
    /// Absent on the last page.
    pub next_page_token: Option<String>,
}

/// Paging for a component's history.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct HistoryParams {
    /// 1-500, default 50.
    page_size: Option<u32>,
    /// `next_page_token` of the previous page.
    page_token: Option<String>,
}

/// The uptime window.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct UptimeParams {
    /// Start (RFC 3339); default 90 days before `to`. The window spans at most 366 days.
    from: Option<chrono::DateTime<chrono::Utc>>,
    /// End (RFC 3339); default (and at most) now.
    to: Option<chrono::DateTime<chrono::Utc>>,
}

#[utoipa::path(
    get, path = "/v1/components/{id}/history", tag = "components",
    params(("id" = uuid::Uuid, Path, description = "Component id"), HistoryParams),
    responses(
        (status = 200, description = "Every change of the component's effective status, newest first", body = StatusChangeList),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
    )
)]
pub async fn list_component_history(
    Authorized(caller, ..): Authorized<ReadComponents>,
    State(service): State<Service>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<StatusChangeList>, ApiError> {
    let id = path_id(&id)?;
    let (_, page) = paged(query.as_deref(), &[])?;
    let page = service.list_component_history(&caller, id, page).await?;
    Ok(Json(StatusChangeList { changes: page.items, next_page_token: page.next_page_token }))
}

#[utoipa::path(
    get, path = "/v1/components/{id}/uptime", tag = "components",
    params(("id" = uuid::Uuid, Path, description = "Component id"), UptimeParams),
    responses(
        (status = 200, description = "Uptime over the window and per day (in the status page's time zone): major \
            outages count fully as downtime, partial outages 30 %, degraded performance and maintenance not at all", body = Uptime),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
    )
)]
pub async fn get_component_uptime(
    Authorized(caller, ..): Authorized<ReadComponents>,
    State(service): State<Service>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Uptime>, ApiError> {
    let id = path_id(&id)?;
    let q = QueryParams::parse(query.as_deref(), &["from", "to"])?;
    let mut v = Violations::new();
    let (from, to) = (q.time(&mut v, "from"), q.time(&mut v, "to"));
    v.finish()?;
    Ok(Json(service.component_uptime(&caller, id, from, to).await?))
}
