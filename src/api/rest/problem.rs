//! RFC 9457 `application/problem+json` errors. The one place domain error codes become
//! HTTP status codes.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::{Error, ErrorCode, FieldViolation};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// The HTTP status for an error code.
pub fn http_status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::InvalidTransition | ErrorCode::AlreadyExists | ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::EtagMismatch => StatusCode::PRECONDITION_FAILED,
        ErrorCode::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Unavailable | ErrorCode::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
        // The events after the cursor are gone for good (pruned): resuming cannot succeed.
        ErrorCode::CursorExpired => StatusCode::GONE,
        // The feature is not there on this deployment (as if the route were absent).
        ErrorCode::NotConfigured => StatusCode::NOT_FOUND,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A problem document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the problem type: `urn:incidentd:problem:<code>`.
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Machine-readable code, e.g. `invalid_argument`, `invalid_transition`, `etag_mismatch`.
    pub code: String,
    /// The invalid fields, for `invalid_argument`; empty otherwise.
    pub errors: Vec<FieldViolation>,
    /// For `invalid_transition`: the statuses the incident (or maintenance) may move to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_transitions: Option<Vec<String>>,
    /// For `cursor_expired` (410): the oldest event cursor still complete, to resume from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_cursor: Option<String>,
}

/// An error on its way to becoming a problem response.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

/// A problem response with an explicit status, for failures that happen before the
/// service is reached (media type, body size, routing).
pub fn problem(status: StatusCode, code: &str, detail: impl Into<String>) -> Response {
    let title = status.canonical_reason().unwrap_or("Error").to_string();
    problem_response(Problem {
        type_: format!("urn:incidentd:problem:{code}"),
        title,
        status: status.as_u16(),
        detail: detail.into(),
        code: code.to_string(),
        errors: Vec::new(),
        allowed_transitions: None,
        oldest_cursor: None,
    })
}

fn problem_response(p: Problem) -> Response {
    let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut res = (status, axum::Json(p)).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    res
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.0.code();
        let status = http_status(code);
        let detail = crate::api::public_message(&self.0);
        let allowed_transitions = match &self.0 {
            Error::InvalidTransition { allowed, .. } => Some(allowed.iter().map(|s| s.to_string()).collect()),
            _ => None,
        };
        let oldest_cursor = match &self.0 {
            Error::CursorExpired { oldest, .. } => Some(oldest.to_string()),
            _ => None,
        };
        let mut res = problem_response(Problem {
            type_: format!("urn:incidentd:problem:{}", code.as_str()),
            title: code.title().to_string(),
            status: status.as_u16(),
            detail,
            code: code.as_str().to_string(),
            errors: self.0.violations().to_vec(),
            allowed_transitions,
            oldest_cursor,
        });
        if let Some(wait) = self.0.retry_after() {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(crate::domain::error::retry_after_secs(wait)));
        }
        if let Error::Unauthenticated(_) = &self.0 {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"incidentd\""));
        }
        res
    }
}
