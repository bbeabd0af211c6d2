//! The one place domain error codes become gRPC status codes, with `google.rpc` details:
//! `ErrorInfo` always, `BadRequest` field violations for invalid arguments, and
//! `PreconditionFailure` listing the allowed targets for a forbidden transition.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::{Error, ErrorCode};

/// The error domain reported in `ErrorInfo`.
pub const ERROR_DOMAIN: &str = "incidentd";

pub fn grpc_code(code: ErrorCode) -> Code {
    match code {
        ErrorCode::InvalidArgument => Code::InvalidArgument,
        ErrorCode::NotFound => Code::NotFound,
        ErrorCode::InvalidTransition | ErrorCode::Conflict | ErrorCode::IdempotencyKeyReused => {
            Code::FailedPrecondition
        }
        ErrorCode::EtagMismatch => Code::Aborted,
        ErrorCode::Unauthenticated => Code::Unauthenticated,
        ErrorCode::PermissionDenied => Code::PermissionDenied,
        ErrorCode::RateLimited | ErrorCode::InsufficientStorage | ErrorCode::Overloaded => Code::ResourceExhausted,
        ErrorCode::AlreadyExists => Code::AlreadyExists,
        ErrorCode::Unavailable => Code::Unavailable,
        ErrorCode::CursorExpired => Code::OutOfRange,
        ErrorCode::NotConfigured => Code::Unimplemented,
        ErrorCode::Internal => Code::Internal,
    }
}

pub fn to_status(e: Error) -> Status {
    let code = e.code();
    let mut details = ErrorDetails::new();
    let mut metadata = HashMap::new();
    let message = crate::api::public_message(&e);
    match &e {
        Error::Validation(violations) => {
            for v in violations {
                details.add_bad_request_violation(v.field.clone(), v.message.clone());
            }
        }
        Error::InvalidTransition { from, to, allowed, .. } => {
            metadata.insert("from".to_string(), from.to_string());
            metadata.insert("to".to_string(), to.to_string());
            metadata.insert("allowed_transitions".to_string(), allowed.join(","));
            details.add_precondition_failure_violation(
                "STATUS_TRANSITION",
                format!("{from} -> {to}"),
                format!(
                    "allowed targets from {from}: {}",
                    if allowed.is_empty() { "none".into() } else { allowed.join(", ") }
                ),
            );
        }
        Error::EtagMismatch { current, .. } => {
            metadata.insert("current_etag".to_string(), current.clone());
        }
        Error::CursorExpired { oldest, .. } => {
            metadata.insert("oldest_cursor".to_string(), oldest.to_string());
        }
        _ => {}
    }
    if let Some(wait) = e.retry_after() {
        details.set_retry_info(Some(wait));
    }
    details.set_error_info(code.as_str().to_ascii_uppercase(), ERROR_DOMAIN, metadata);
    let mut status = Status::with_error_details(grpc_code(code), message, details);
    if let Some(wait) = e.retry_after() {
        status.metadata_mut().insert("retry-after", crate::domain::error::retry_after_secs(wait).into());
    }
    status
}
