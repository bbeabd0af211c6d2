//! `/v1/subscribers`: the customer subscribers for operators (`subscriptions:manage`): list,
//! count, look up, remove, export as CSV and import.

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use super::extract::{Authorized, ManageSubscriptions, QueryParams, paged, parse_json, path_id};
use super::problem::{ApiError, problem};
use crate::domain::subscriber::{Subscriber, SubscriberStatus};
use crate::domain::subscriber_list::{ImportReport, SubscriberCounts, SubscriberFilter};
use crate::domain::validate::Violations;
use crate::service::Service;

type Manage = Authorized<ManageSubscriptions>;

/// The largest import read (about 100,000 lines).
const IMPORT_MAX_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriberList {
    pub subscribers: Vec<Subscriber>,
    /// Absent on the last page.
    pub next_page_token: Option<String>,
}

/// Which subscribers to list (or export).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct SubscriberFilterParams {
    /// Only these statuses: `pending`, `confirmed`, `unsubscribed` (repeat the parameter or
    /// separate with commas).
    status: Option<Vec<SubscriberStatus>>,
    /// Only those who hear about this component: who chose it, and the subscribers of every
    /// component.
    component: Option<uuid::Uuid>,
    /// Only addresses containing this text (any case).
    q: Option<String>,
}

#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PageParams {
    /// 1-500, default 50.
    page_size: Option<u32>,
    /// `next_page_token` of the previous page.
    page_token: Option<String>,
}

const FILTERS: [&str; 3] = ["status", "component", "q"];

fn filter(q: &QueryParams) -> Result<SubscriberFilter, ApiError> {
    let mut v = Violations::new();
    let statuses = q.parse_all(&mut v, "status");
    let component = q.one("component").and_then(|c| {
        uuid::Uuid::parse_str(c.trim()).map_err(|_| v.add("component", "must be a component id (a UUID)")).ok()
    });
    let search = q.one("q").map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
    v.finish()?;
    Ok(SubscriberFilter { statuses, component, search })
}

#[utoipa::path(get, path = "/v1/subscribers", tag = "subscribers",
    params(SubscriberFilterParams, PageParams),
    responses(
        (status = 200, description = "Customer subscribers, newest first", body = SubscriberList),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
    ))]
pub async fn list_subscribers(
    Authorized(caller, ..): Manage,
    State(service): State<Service>,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<SubscriberList>, ApiError> {
    let (q, page) = paged(query.as_deref(), &FILTERS)?;
    let page = service.list_subscribers(&caller, filter(&q)?, page).await?;
    Ok(axum::Json(SubscriberList { subscribers: page.items, next_page_token: page.next_page_token }))
}

#[utoipa::path(get, path = "/v1/subscribers/counts", tag = "subscribers",
    responses((status = 200, description = "Subscribers per status, and per component who chose it and who hears about it", body = SubscriberCounts)))]
pub async fn count_subscribers(
    Authorized(caller, ..): Manage,
    State(service): State<Service>,
) -> Result<axum::Json<SubscriberCounts>, ApiError> {
    Ok(axum::Json(service.count_subscribers(&caller).await?))
}

#[utoipa::path(get, path = "/v1/subscribers/{id}", tag = "subscribers",
    params(("id" = uuid::Uuid, Path, description = "Subscriber id")),
    responses(
        (status = 200, description = "OK", body = Subscriber),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
    ))]
pub async fn get_subscriber(
    Authorized(caller, ..): Manage,
    State(service): State<Service>,
    Path(raw): Path<String>,
) -> Result<axum::Json<Subscriber>, ApiError> {
    Ok(axum::Json(service.get_subscriber(&caller, path_id(&raw)?).await?))
}

#[utoipa::path(delete, path = "/v1/subscribers/{id}", tag = "subscribers",
    params(("id" = uuid::Uuid, Path, description = "Subscriber id")),
    responses(
        (status = 204, description = "Removed for good: the address and the mails queued for it"),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
    ))]
pub async fn delete_subscriber(
    Authorized(caller, ..): Manage,
    State(service): State<Service>,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    service.delete_subscriber(&caller, path_id(&raw)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/subscribers/export", tag = "subscribers",
    params(SubscriberFilterParams),
    responses(
        (status = 200, description = "CSV with a header line: id, email, status, lang, components (ids separated by `;`, empty for every component), created_at, confirmed_at, unsubscribed_at", content_type = "text/csv", body = String),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
    ))]
pub async fn export_subscribers(
    Authorized(caller, ..): Manage,
    State(service): State<Service>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let q = QueryParams::parse(query.as_deref(), &FILTERS)?;
    let (csv, _) = service.export_subscribers(&caller, filter(&q)?).await?;
    let mut res = csv.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"subscribers.csv\""));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// An import as JSON: the CSV text in one field.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportIn {
    pub csv: String,
}

#[utoipa::path(post, path = "/v1/subscribers/import", tag = "subscribers",
    request_body(content(
        (String = "text/csv"),
        (ImportIn = "application/json"),
    ), description = "CSV with a header line naming an `email` column, and optionally `components` (ids or names separated by `;`; empty: every component) and `lang` (`en`, `de`); other columns are ignored. Up to 100,000 lines, 16 MiB."),
    responses(
        (status = 200, description = "Imported as confirmed subscribers (no mail is sent); the report lists each line skipped (address known already) or rejected, with the reason", body = ImportReport),
        (status = 400, description = "The file as a whole cannot be imported (no header with `email`, too many lines): field `csv`"),
        (status = 413, description = "Larger than 16 MiB"),
    ))]
pub async fn import_subscribers(
    Authorized(caller, ..): Manage,
    State(service): State<Service>,
    request: Request,
) -> Result<Response, ApiError> {
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let Ok(body) = axum::body::to_bytes(request.into_body(), IMPORT_MAX_BYTES).await else {
        return Ok(problem(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "an import is at most 16 MiB"));
    };
    let text = if json {
        parse_json::<ImportIn>(&body)?.csv
    } else {
        String::from_utf8(body.to_vec()).map_err(|_| crate::domain::Error::invalid("csv", "must be UTF-8 text"))?
    };
    Ok(axum::Json(service.import_subscribers(&caller, &text).await?).into_response())
}
