//! `/v1/events` (the event log, in commit order) and `/v1/events/stream` (Server-Sent Events,
//! resumable with `Last-Event-ID`).

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use utoipa::{IntoParams, ToSchema};

use super::extract::{Authorized, QueryParams, ReadIncidents};
use super::problem::ApiError;
use crate::domain::query::EventFilter;
use crate::domain::validate::Violations;
use crate::domain::{Error, EventType, PageRequest};
use crate::service::Service;

#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    /// CloudEvents 1.0 documents; `sequence` is each one's cursor.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<serde_json::Value>,
    /// Pass as `after` to continue (the last sequence returned, or `after`).
    pub next_cursor: String,
}

/// Filters for the event log.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListEventsParams {
    /// Events after this cursor (a `sequence`); default (and 0): from the oldest event kept.
    after: Option<String>,
    /// Only these types (repeatable), e.g. `incident.created`.
    #[param(inline)]
    r#type: Option<Vec<EventType>>,
    /// Only events about this incident or component id.
    subject: Option<String>,
    /// `true`: only events public subscribers receive, with their public data.
    public: Option<bool>,
    /// 1-500, default 50.
    page_size: Option<u32>,
}

/// Filters for the live stream.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct StreamEventsParams {
    /// Resume after this cursor; `Last-Event-ID` takes precedence. Default: from now; 0: from the
    /// oldest event kept.
    after: Option<String>,
    /// Only these types (repeatable).
    #[param(inline)]
    r#type: Option<Vec<EventType>>,
    /// Only events about this incident or component id.
    subject: Option<String>,
    /// `true`: only events public subscribers receive, with their public data.
    public: Option<bool>,
}

/// Reads an event cursor (`after`, `Last-Event-ID`): a sequence number, 0 or more. Public for
/// the fuzz target `event_cursor`.
pub fn cursor(v: &mut Violations, field: &str, raw: Option<&str>) -> Option<i64> {
    let raw = raw?.trim();
    raw.parse::<i64>().ok().filter(|n| *n >= 0).or_else(|| {
        v.add(field, format!("must be a cursor (a sequence number) from this API (got {raw:?})"));
        None
    })
}

fn filter(q: &QueryParams, v: &mut Violations) -> EventFilter {
    let subject = q.one("subject").map(|s| {
        v.search_text("subject", s);
        s.to_string()
    });
    EventFilter { types: q.parse_all(v, "type"), subject, public_only: q.bool(v, "public").unwrap_or(false) }
}

#[utoipa::path(
    get, path = "/v1/events", tag = "events",
    params(ListEventsParams),
    responses(
        (status = 200, description = "Events in commit order", body = EventList),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 410, description = "The events after `after` are no longer kept (`cursor_expired`): resume from `oldest_cursor`"),
    )
)]
pub async fn list_events(
    Authorized(caller, ..): Authorized<ReadIncidents>,
    State(service): State<Service>,
    RawQuery(query): RawQuery,
) -> Result<Json<EventList>, ApiError> {
    let q = QueryParams::parse(query.as_deref(), &["after", "type", "subject", "public", "page_size"])?;
    let mut v = Violations::new();
    let after = cursor(&mut v, "after", q.one("after")).unwrap_or(0);
    let filter = filter(&q, &mut v);
    let page_size = q.int(&mut v, "page_size");
    v.finish()?;
    let page = PageRequest::new(page_size, None)?;
    let events = service.list_events(&caller, after, &filter, page.size).await?;
    let next_cursor = events.last().and_then(|e| e.seq).unwrap_or(after).to_string();
    let internal = !filter.public_only;
    let events = events.iter().map(|e| e.cloud_event(service.public_url(), internal)).collect();
    Ok(Json(EventList { events, next_cursor }))
}

#[utoipa::path(
    get, path = "/v1/events/stream", tag = "events",
    params(
        StreamEventsParams,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event (the SSE id is the sequence)"),
    ),
    responses(
        (status = 200, description = "Server-Sent Events: `id` is the cursor, `event` the type, `data` the CloudEvent",
            content_type = "text/event-stream", body = String),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 410, description = "The events after the cursor are no longer kept (`cursor_expired`): resume from `oldest_cursor`"),
    )
)]
pub async fn stream_events(
    Authorized(caller, ..): Authorized<ReadIncidents>,
    State(service): State<Service>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let q = QueryParams::parse(query.as_deref(), &["after", "type", "subject", "public"])?;
    let mut v = Violations::new();
    let last_event_id = headers.get("last-event-id").map(|h| h.to_str().unwrap_or("invalid"));
    let after = match last_event_id {
        Some(id) => cursor(&mut v, "Last-Event-ID", Some(id)),
        None => cursor(&mut v, "after", q.one("after")),
    };
    let filter = filter(&q, &mut v);
    v.finish()?;
    let internal = !filter.public_only;
    let events = service.watch_events(&caller, after, filter).await?;
    let source = service.public_url().to_string();
    let stream = ReceiverStream::new(events).map(move |item| -> Result<SseEvent, Infallible> {
        Ok(match item {
            Ok(e) => SseEvent::default()
                .id(e.seq.unwrap_or_default().to_string())
                .event(e.event_type.as_str())
                .json_data(e.cloud_event(&source, internal))
                .unwrap_or_else(|_| SseEvent::default().comment("unserializable event")),
            Err(e) => {
                let e: Error = e;
                tracing::warn!(error = %e, "event stream failed");
                SseEvent::default().event("error").data(e.code().as_str())
            }
        })
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response())
}
