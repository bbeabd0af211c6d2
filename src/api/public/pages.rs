//! The handlers of the public routes: the pages, the Statuspage-compatible JSON, the feeds
//! and the badges.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;

use super::Public;
use super::serve::{HistoryQuery, PageQuery, language, on_demand, serve_key, serve_page, starting};
use crate::api::rest::problem::{ApiError, problem};
use crate::domain::history::local_midnight;
use crate::domain::{Error, IncidentKey};
use crate::service::Service;

#[utoipa::path(get, path = "/status", tag = "public", params(PageQuery),
    responses((status = 200, description = "The status page (HTML)", content_type = "text/html"),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 429, description = "Too many requests from this address; see Retry-After"),
        (status = 503, description = "Starting: retry shortly")))]
pub(super) async fn status_page(
    Extension(public): Extension<Arc<Public>>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    serve_page(&public, "/status", &query, &headers)
}

#[utoipa::path(get, path = "/status/incidents/{reference}", tag = "public",
    params(("reference" = String, Path, description = "The incident's reference, e.g. INC-42"), PageQuery),
    responses((status = 200, description = "The incident's page (HTML)", content_type = "text/html"),
        (status = 301, description = "The incident was merged into another: Location is that one's page"),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 404, description = "No such incident"),
        (status = 429, description = "Too many requests from this address; see Retry-After"),
        (status = 503, description = "Starting: retry shortly")))]
pub(super) async fn incident_page(
    Extension(public): Extension<Arc<Public>>,
    axum::extract::State(service): axum::extract::State<Service>,
    Path(reference): Path<String>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let Ok(key @ IncidentKey::Ref(r)) = IncidentKey::parse("reference", &reference) else {
        return problem(StatusCode::NOT_FOUND, "not_found", "no such incident");
    };
    let path = format!("/status/incidents/{r}");
    let (lang, negotiated) = language(&public, &query, &headers);
    let Some(snapshot) = public.current() else { return starting() };
    // A merged incident's readers are sent to the incident it went into.
    if snapshot.incident(r).is_none() {
        match service.public_merge_target(key).await {
            Ok(Some(target)) => {
                let lang = query.lang.as_deref().and_then(crate::domain::i18n::Lang::parse);
                let lang = lang.map(|l| format!("?lang={}", l.tag())).unwrap_or_default();
                let to = format!("/status/incidents/{target}{lang}");
                return (StatusCode::MOVED_PERMANENTLY, [(axum::http::header::LOCATION, to)]).into_response();
            }
            Ok(None) => {}
            Err(e) => return ApiError(e).into_response(),
        }
    }
    // An incident the snapshot holds is rendered from memory; an older one is read.
    let read = async {
        match snapshot.incident(r) {
            Some(page) => Ok(page.clone()),
            None => service.public_incident(key).await,
        }
    };
    on_demand(&public, &snapshot, &path, (lang, negotiated), &headers, read, |r, page| r.incident(&page)).await
}

#[utoipa::path(get, path = "/status/history", tag = "public", params(HistoryQuery),
    responses((status = 200, description = "Past incidents by month (HTML)", content_type = "text/html"),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 400, description = "`month` is not YYYY-MM"),
        (status = 429, description = "Too many requests from this address; see Retry-After"),
        (status = 503, description = "Starting: retry shortly")))]
pub(super) async fn history_page(
    Extension(public): Extension<Arc<Public>>,
    axum::extract::State(service): axum::extract::State<Service>,
    Query(query): Query<HistoryQuery>,
    headers: HeaderMap,
) -> Response {
    let page_query = PageQuery { lang: query.lang.clone() };
    let Some(month) = query.month.as_deref().filter(|m| !m.is_empty()) else {
        return serve_page(&public, "/status/history", &page_query, &headers);
    };
    let Some(first) = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").ok().filter(|_| month.len() == 7)
    else {
        return ApiError(Error::invalid("month", "must be a month as YYYY-MM, such as 2026-11")).into_response();
    };
    let Some(next) = first.checked_add_months(chrono::Months::new(1)) else {
        return ApiError(Error::invalid("month", "is out of range")).into_response();
    };
    let language = language(&public, &page_query, &headers);
    let Some(snapshot) = public.current() else { return starting() };
    let tz = snapshot.state.time_zone;
    let read = service.public_incidents_between(local_midnight(&tz, first), local_midnight(&tz, next));
    let path = format!("/status/history?month={month}");
    on_demand(&public, &snapshot, &path, language, &headers, read, |r, incidents| {
        r.history(&path, &incidents, first, first)
    })
    .await
}

/// Declares the handler of a snapshot document.
macro_rules! document {
    ($name:ident, $path:literal, $description:literal, $content_type:literal) => {
        #[utoipa::path(get, path = $path, tag = "public",
                            responses((status = 200, description = $description, content_type = $content_type),
                                (status = 304, description = "Not modified (If-None-Match)"),
                                (status = 429, description = "Too many requests from this address; see Retry-After"),
                                (status = 503, description = "Starting: retry shortly")))]
        pub(super) async fn $name(Extension(public): Extension<Arc<Public>>, headers: HeaderMap) -> Response {
            serve_key(&public, $path, &headers)
        }
    };
}

document!(
    summary,
    "/api/v2/summary.json",
    "Statuspage-compatible summary: page, components, unresolved incidents, scheduled maintenances, status",
    "application/json"
);
document!(
    status,
    "/api/v2/status.json",
    "Statuspage-compatible status: the indicator (none, minor, major, critical) and its description",
    "application/json"
);
document!(
    components,
    "/api/v2/components.json",
    "Statuspage-compatible components (groups included)",
    "application/json"
);
document!(
    incidents,
    "/api/v2/incidents.json",
    "Statuspage-compatible list of the 50 most recent incidents",
    "application/json"
);
document!(
    unresolved,
    "/api/v2/incidents/unresolved.json",
    "Statuspage-compatible list of the unresolved incidents",
    "application/json"
);
document!(
    scheduled_maintenances,
    "/api/v2/scheduled-maintenances.json",
    "Statuspage-compatible list of the 50 most recent scheduled maintenances (scheduled, in_progress, verifying, completed; cancelled ones are left out)",
    "application/json"
);
document!(
    upcoming_maintenances,
    "/api/v2/scheduled-maintenances/upcoming.json",
    "Statuspage-compatible list of the maintenances not yet started, soonest first",
    "application/json"
);
document!(
    active_maintenances,
    "/api/v2/scheduled-maintenances/active.json",
    "Statuspage-compatible list of the maintenances in progress or verifying",
    "application/json"
);
document!(
    atom,
    "/history.atom",
    "Atom feed (RFC 4287) of the public incident and maintenance updates, newest first",
    "application/atom+xml"
);
document!(
    rss,
    "/history.rss",
    "RSS 2.0 feed of the public incident and maintenance updates, newest first",
    "application/rss+xml"
);
document!(overall_badge, "/badge.svg", "A badge of the page's overall status (SVG)", "image/svg+xml");

#[utoipa::path(get, path = "/components/{id}/badge.svg", tag = "public",
    params(("id" = String, Path, description = "Component id")),
    responses((status = 200, description = "A badge of the component's status (SVG)", content_type = "image/svg+xml"),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 404, description = "No such component"),
        (status = 429, description = "Too many requests from this address; see Retry-After"),
        (status = 503, description = "Starting: retry shortly")))]
pub(super) async fn component_badge(
    Extension(public): Extension<Arc<Public>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match uuid::Uuid::parse_str(&id) {
        Ok(id) => serve_key(&public, &format!("/components/{id}/badge.svg"), &headers),
        Err(_) => problem(StatusCode::NOT_FOUND, "not_found", "no such component"),
    }
}
