//! PagerDuty's Events API v2 (`POST /v2/enqueue`, `POST /v2/change/enqueue`), answered as
//! PagerDuty answers: a tool configured for PagerDuty works when pointed here. The
//! `routing_key` is the secret of a `pagerduty_events_v2` integration.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::domain::Error;
use crate::domain::alert::{AlertSignal, AlertStatus};
use crate::domain::integration::SECRET_LEN;
use crate::service::Service;

/// PagerDuty's size limit for an event.
pub const MAX_EVENT_BYTES: usize = 512 * 1024;
const DEDUP_KEY_MAX: usize = 255;
const SUMMARY_MAX: usize = 1024;

/// PagerDuty's answer: `success` (202), `invalid event` (400) or `throttle event` (429).
#[derive(Debug, Serialize, ToSchema)]
pub struct PagerDutyResponse {
    pub status: String,
    pub message: String,
    /// The alert's key: the one sent, or the one made for a trigger without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedup_key: Option<String>,
    /// What is wrong with an invalid event.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// A response with PagerDuty's body.
fn answer(
    code: StatusCode,
    status: &str,
    message: impl Into<String>,
    dedup_key: Option<String>,
    errors: Vec<String>,
) -> Response {
    let body = PagerDutyResponse { status: status.into(), message: message.into(), dedup_key, errors };
    (code, axum::Json(body)).into_response()
}

fn invalid(errors: Vec<String>) -> Response {
    answer(StatusCode::BAD_REQUEST, "invalid event", "Event object is invalid", None, errors)
}

fn too_large(code: StatusCode, errors: Vec<String>) -> Response {
    let message = format!("Event object is too large (at most {} KB)", MAX_EVENT_BYTES / 1024);
    answer(code, "invalid event", message, None, errors)
}

/// A failure of the service, in PagerDuty's form where it has one.
fn failed(e: Error) -> Response {
    match e {
        Error::RateLimited { retry_after } => {
            let message = "Requests for this service are arriving too quickly. Please retry later.";
            let mut res = answer(StatusCode::TOO_MANY_REQUESTS, "throttle event", message, None, Vec::new());
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(crate::domain::error::retry_after_secs(retry_after)));
            res
        }
        Error::Validation(violations) => {
            invalid(violations.into_iter().map(|v| format!("'{}' {}", v.field, v.message)).collect())
        }
        other => super::problem::ApiError(other).into_response(),
    }
}

/// The body, at most [`MAX_EVENT_BYTES`] (PagerDuty's limit).
pub struct EventBody(Bytes);

impl<S: Send + Sync> FromRequest<S> for EventBody {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => too_large(StatusCode::PAYLOAD_TOO_LARGE, vec![e.body_text()]),
            other => answer(other, "invalid event", "Event object could not be read", None, vec![e.body_text()]),
        })?;
        if bytes.len() > MAX_EVENT_BYTES {
            return Err(too_large(StatusCode::PAYLOAD_TOO_LARGE, Vec::new()));
        }
        Ok(EventBody(bytes))
    }
}

fn text<'a>(obj: &'a Map<String, Value>, field: &str, path: &str, errors: &mut Vec<String>) -> Option<&'a str> {
    match obj.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => {
            errors.push(format!("'{path}' must be a string"));
            None
        }
    }
}

/// PagerDuty's timestamps: ISO 8601, with `+0000` or `+00:00` or `Z`.
fn timestamp(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Checks a `links` or `images` array: objects, each with `required` a string.
fn check_context(event: &Map<String, Value>, field: &str, required: &str, errors: &mut Vec<String>) {
    match event.get(field) {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                if !item.get(required).is_some_and(Value::is_string) {
                    errors.push(format!("'{field}[{i}].{required}' is missing or not a string"));
                }
            }
        }
        Some(_) => errors.push(format!("'{field}' must be an array")),
    }
}

/// A parsed event: the routing key and the alert it carries.
#[derive(Debug)]
pub struct Parsed {
    pub routing_key: String,
    pub signal: AlertSignal,
}

/// Reads an alert event (`change` false) or a change event, with PagerDuty's error texts.
/// Public for the fuzz target `alert_payloads`.
pub fn parse_event(bytes: &[u8], change: bool) -> Result<Parsed, Vec<String>> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| vec![format!("Malformed JSON: {e}")])?;
    if crate::domain::alert::contains_nul(&value) {
        return Err(vec!["Event object must not contain NUL characters (\\u0000)".into()]);
    }
    let Value::Object(event) = value else {
        return Err(vec!["Event must be a JSON object".into()]);
    };
    let mut errors = Vec::new();
    let routing_key = text(&event, "routing_key", "routing_key", &mut errors).map(str::to_string);
    match &routing_key {
        None => errors.push("'routing_key' is missing or blank".into()),
        Some(k) if k.len() != SECRET_LEN => {
            errors.push(format!("Length of 'routing_key' is incorrect (should be {SECRET_LEN} characters)"))
        }
        Some(_) => {}
    }
    let action = if change {
        AlertStatus::Change
    } else {
        match text(&event, "event_action", "event_action", &mut errors) {
            None => {
                errors.push("'event_action' is missing or blank".into());
                AlertStatus::Firing
            }
            Some("trigger") => AlertStatus::Firing,
            Some("acknowledge") => AlertStatus::Acknowledged,
            Some("resolve") => AlertStatus::Resolved,
            Some(other) => {
                errors.push(format!("'event_action' must be one of trigger, acknowledge, resolve (got {other:?})"));
                AlertStatus::Firing
            }
        }
    };
    let dedup_key = text(&event, "dedup_key", "dedup_key", &mut errors).map(str::to_string);
    if dedup_key.as_ref().is_some_and(|k| k.chars().count() > DEDUP_KEY_MAX) {
        errors.push(format!("'dedup_key' is too long (at most {DEDUP_KEY_MAX} characters)"));
    }
    if matches!(action, AlertStatus::Acknowledged | AlertStatus::Resolved) && dedup_key.is_none() {
        errors.push("'dedup_key' is missing or blank".into());
    }
    let empty = Map::new();
    let payload = match event.get("payload") {
        Some(Value::Object(p)) => p,
        None | Some(Value::Null) if matches!(action, AlertStatus::Acknowledged | AlertStatus::Resolved) => &empty,
        None | Some(Value::Null) => {
            errors.push("'payload' is missing".into());
            &empty
        }
        Some(_) => {
            errors.push("'payload' must be an object".into());
            &empty
        }
    };
    let needs_payload = matches!(action, AlertStatus::Firing | AlertStatus::Change);
    let summary = text(payload, "summary", "payload.summary", &mut errors).map(str::to_string);
    if needs_payload && summary.is_none() {
        errors.push("'payload.summary' is missing or blank".into());
    }
    if summary.as_ref().is_some_and(|s| s.chars().count() > SUMMARY_MAX) {
        errors.push(format!("'payload.summary' is too long (at most {SUMMARY_MAX} characters)"));
    }
    let source = text(payload, "source", "payload.source", &mut errors).map(str::to_string);
    let severity = text(payload, "severity", "payload.severity", &mut errors).map(str::to_string);
    if action == AlertStatus::Firing {
        if source.is_none() {
            errors.push("'payload.source' is missing or blank".into());
        }
        match severity.as_deref() {
            None => errors.push("'payload.severity' is missing or blank".into()),
            Some("critical" | "error" | "warning" | "info") => {}
            Some(other) => {
                errors.push(format!("'payload.severity' must be one of critical, error, warning, info (got {other:?})"))
            }
        }
    }
    let starts_at = match text(payload, "timestamp", "payload.timestamp", &mut errors) {
        None => None,
        Some(t) => {
            let parsed = timestamp(t);
            if parsed.is_none() {
                errors.push(format!("'payload.timestamp' is not an ISO 8601 timestamp (got {t:?})"));
            }
            parsed
        }
    };
    check_context(&event, "links", "href", &mut errors);
    check_context(&event, "images", "src", &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut labels = BTreeMap::new();
    for field in ["source", "component", "group", "class", "severity"] {
        if let Some(v) = payload.get(field).and_then(Value::as_str).filter(|v| !v.is_empty()) {
            labels.insert(field.to_string(), v.to_string());
        }
    }
    let description = payload
        .get("custom_details")
        .filter(|d| !d.is_null())
        .map(|d| serde_json::to_string_pretty(d).unwrap_or_default())
        .or_else(|| event.get("client").and_then(Value::as_str).map(|c| format!("Sent by {c}.")));
    let source_url = event
        .get("links")
        .and_then(|l| l.get(0))
        .and_then(|l| l.get("href"))
        .and_then(Value::as_str)
        .or_else(|| event.get("client_url").and_then(Value::as_str))
        .map(str::to_string);
    // The routing key is the integration's secret: never kept with the alert.
    let mut kept = event.clone();
    kept.remove("routing_key");
    let signal = AlertSignal {
        group_key: None,
        fingerprint: dedup_key.unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string()),
        status: action,
        title: summary.unwrap_or_else(|| format!("{action} event")),
        description,
        labels,
        starts_at,
        ends_at: None,
        source_url,
        payload: Value::Object(kept),
    };
    Ok(Parsed { routing_key: routing_key.unwrap_or_default(), signal })
}

async fn enqueue(service: Service, bytes: &[u8], change: bool) -> Response {
    let parsed = match parse_event(bytes, change) {
        Ok(p) => p,
        Err(errors) => return invalid(errors),
    };
    let integration = match service.integration_for_routing_key(&parsed.routing_key).await {
        Ok(Some(i)) => i,
        Ok(None) => return invalid(vec!["'routing_key' does not name an Events API v2 integration".into()]),
        Err(e) => return failed(e),
    };
    let dedup_key = parsed.signal.fingerprint.clone();
    if let Err(e) = service.ingest_alerts(&integration, vec![parsed.signal]).await {
        return failed(e);
    }
    if change {
        answer(StatusCode::ACCEPTED, "success", "Change event processed", None, Vec::new())
    } else {
        answer(StatusCode::ACCEPTED, "success", "Event processed", Some(dedup_key), Vec::new())
    }
}

/// A PagerDuty Events API v2 alert event (see PagerDuty's documentation): `routing_key`,
/// `event_action`, `dedup_key`, `payload`, `links`, `images`, `client`, `client_url`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct PagerDutyEvent {
    /// The secret of a `pagerduty_events_v2` integration (32 characters).
    routing_key: String,
    /// `trigger`, `acknowledge` or `resolve`.
    event_action: String,
    /// At most 255 characters; made (and returned) for a trigger without one.
    dedup_key: Option<String>,
    /// Required for a trigger: `summary`, `source`, `severity` (critical, error, warning,
    /// info: sev1 to sev4), and optionally `timestamp`, `component`, `group`, `class`,
    /// `custom_details`.
    #[schema(value_type = Object)]
    payload: Option<Value>,
    #[schema(value_type = Option<Vec<Object>>)]
    links: Option<Value>,
    #[schema(value_type = Option<Vec<Object>>)]
    images: Option<Value>,
}

#[utoipa::path(
    post, path = "/v2/enqueue", tag = "integrations",
    request_body = PagerDutyEvent,
    responses(
        (status = 202, description = "Event processed (`dedup_key` returned)", body = PagerDutyResponse),
        (status = 400, description = "Invalid event (`errors` says why), or an unknown routing key", body = PagerDutyResponse),
        (status = 413, description = "Over 512 KB", body = PagerDutyResponse),
        (status = 429, description = "Throttled; see Retry-After", body = PagerDutyResponse),
    )
)]
pub async fn enqueue_event(State(service): State<Service>, EventBody(bytes): EventBody) -> Response {
    enqueue(service, &bytes, false).await
}

#[utoipa::path(
    post, path = "/v2/change/enqueue", tag = "integrations",
    request_body = PagerDutyEvent,
    responses(
        (status = 202, description = "Change event processed: kept with the integration's alerts, no incident", body = PagerDutyResponse),
        (status = 400, description = "Invalid event (`errors` says why), or an unknown routing key", body = PagerDutyResponse),
        (status = 413, description = "Over 512 KB", body = PagerDutyResponse),
        (status = 429, description = "Throttled; see Retry-After", body = PagerDutyResponse),
    )
)]
pub async fn enqueue_change_event(State(service): State<Service>, EventBody(bytes): EventBody) -> Response {
    enqueue(service, &bytes, true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdefghijABCDEFGHIJ01";

    #[test]
    fn pagerduty_documented_trigger_parses_with_its_timestamp_form() {
        let body = serde_json::json!({
            "payload": {
                "summary": "Example alert on host1.example.com",
                "timestamp": "2015-07-17T08:42:58.315+0000",
                "source": "monitoringtool:cloudvendor:central-region-dc-01:852559987:cluster/api-stats-prod-003",
                "severity": "info",
                "component": "postgres",
                "group": "prod-datapipe",
                "class": "deploy",
                "custom_details": {"ping time": "1500ms", "load avg": 0.75}
            },
            "routing_key": KEY,
            "dedup_key": "samplekeyhere",
            "images": [{"src": "https://www.pagerduty.com/wp-content/uploads/2016/05/pagerduty-logo-green.png",
                        "href": "https://example.com/", "alt": "Example text"}],
            "links": [{"href": "https://example.com/", "text": "Link text"}],
            "event_action": "trigger",
            "client": "Sample Monitoring Service",
            "client_url": "https://monitoring.example.com"
        });
        let p = parse_event(body.to_string().as_bytes(), false).unwrap();
        assert_eq!(p.routing_key, KEY);
        assert_eq!(p.signal.fingerprint, "samplekeyhere");
        assert_eq!(p.signal.status, AlertStatus::Firing);
        assert_eq!(p.signal.labels["severity"], "info");
        assert_eq!(p.signal.starts_at.unwrap().to_rfc3339(), "2015-07-17T08:42:58.315+00:00");
        assert_eq!(p.signal.source_url.as_deref(), Some("https://example.com/"));
        assert!(p.signal.payload.get("routing_key").is_none(), "the secret is not kept");
    }

    #[test]
    fn invalid_events_say_what_is_wrong() {
        let errors = |v: Value| parse_event(v.to_string().as_bytes(), false).err().unwrap_or_default();
        let e = errors(serde_json::json!({"routing_key": "short", "event_action": "trigger"}));
        assert!(e.iter().any(|m| m.contains("Length of 'routing_key'")), "{e:?}");
        assert!(e.iter().any(|m| m.contains("'payload' is missing")), "{e:?}");
        let e = errors(serde_json::json!({"routing_key": KEY, "event_action": "resolve"}));
        assert_eq!(e, vec!["'dedup_key' is missing or blank"]);
        let e = errors(serde_json::json!({"routing_key": KEY, "event_action": "trigger", "dedup_key": "x".repeat(256),
            "payload": {"summary": "s", "source": "h", "severity": "fatal"}}));
        assert!(e.iter().any(|m| m.contains("'dedup_key' is too long")), "{e:?}");
        assert!(e.iter().any(|m| m.contains("'payload.severity' must be one of")), "{e:?}");
        assert!(parse_event(b"{not json", false).is_err());
        assert!(parse_event(b"[]", false).is_err());
    }
}
