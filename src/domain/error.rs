//! The one error type every use case returns, and the code both transports map from
//! (to HTTP in `api::rest::problem`, to gRPC in `api::grpc::status`).

use serde::Serialize;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One invalid input field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldViolation {
    /// The field's path in the request, e.g. `title` or `affected_components[0].status`.
    pub field: String,
    pub message: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", describe_violations(.0))]
    Validation(Vec<FieldViolation>),
    #[error("{resource} {id} not found")]
    NotFound { resource: &'static str, id: String },
    /// A lifecycle move that is not allowed (of an incident, a maintenance, ...): the wire
    /// names of the statuses, and those it may move to instead.
    #[error("cannot move {} from {from} to {to}; allowed: {}", with_article(.resource), list_statuses(.from, .allowed))]
    InvalidTransition { resource: &'static str, from: &'static str, to: &'static str, allowed: Vec<&'static str> },
    #[error("the {resource} has changed: current etag is {current}, the request expected {expected}")]
    EtagMismatch { resource: &'static str, expected: String, current: String },
    #[error("a {resource} with {field} {value:?} already exists")]
    AlreadyExists { resource: &'static str, field: &'static str, value: String },
    #[error("the idempotency key {key:?} was already used with a different request")]
    IdempotencyKeyReused { key: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("rate limit exceeded; retry in {} s", retry_after_secs(*.retry_after))]
    RateLimited { retry_after: std::time::Duration },
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The database's disk is full: the change was not stored (nothing acknowledged is lost).
    #[error("the database's disk is full: {0}")]
    StorageFull(String),
    /// The database accepts no writes (a read-only disk or file, a standby server).
    #[error("the database is read-only: {0}")]
    ReadOnly(String),
    /// This process is at its limit of requests in flight.
    #[error("the server is at its limit of {limit} requests in flight; retry shortly")]
    Overloaded { limit: usize },
    /// A cursor into the event log older than what is kept: events after it were pruned
    /// (retention). `oldest` is the oldest cursor still complete.
    #[error(
        "events after cursor {cursor} are no longer kept (event retention); the oldest cursor still \
         available is {oldest}: resume from it (or from now) and re-read what may have changed in between"
    )]
    CursorExpired { cursor: i64, oldest: i64 },
    /// This deployment is not set up for it (email without `INCIDENTD_SMTP_URL`).
    #[error("{0}")]
    NotConfigured(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// What kind of failure an [`Error`] is; the transports map this, and only this, to their codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidArgument,
    NotFound,
    InvalidTransition,
    EtagMismatch,
    AlreadyExists,
    IdempotencyKeyReused,
    Conflict,
    Unauthenticated,
    PermissionDenied,
    RateLimited,
    Unavailable,
    InsufficientStorage,
    Overloaded,
    CursorExpired,
    NotConfigured,
    Internal,
}

impl ErrorCode {
    /// Stable machine-readable name (problem `code`, gRPC `ErrorInfo.reason` in upper case).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::NotFound => "not_found",
            ErrorCode::InvalidTransition => "invalid_transition",
            ErrorCode::EtagMismatch => "etag_mismatch",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::InsufficientStorage => "insufficient_storage",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::CursorExpired => "cursor_expired",
            ErrorCode::NotConfigured => "not_configured",
            ErrorCode::Internal => "internal",
        }
    }

    /// Short human title (problem `title`).
    pub fn title(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "Invalid request",
            ErrorCode::NotFound => "Not found",
            ErrorCode::InvalidTransition => "Transition not allowed",
            ErrorCode::EtagMismatch => "Precondition failed",
            ErrorCode::AlreadyExists => "Already exists",
            ErrorCode::IdempotencyKeyReused => "Idempotency key reused",
            ErrorCode::Conflict => "Conflict",
            ErrorCode::Unauthenticated => "Unauthenticated",
            ErrorCode::PermissionDenied => "Permission denied",
            ErrorCode::RateLimited => "Too many requests",
            ErrorCode::Unavailable => "Service unavailable",
            ErrorCode::InsufficientStorage => "Insufficient storage",
            ErrorCode::Overloaded => "Overloaded",
            ErrorCode::CursorExpired => "Cursor expired",
            ErrorCode::NotConfigured => "Not configured",
            ErrorCode::Internal => "Internal error",
        }
    }
}

impl Error {
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Validation(_) => ErrorCode::InvalidArgument,
            Error::NotFound { .. } => ErrorCode::NotFound,
            Error::InvalidTransition { .. } => ErrorCode::InvalidTransition,
            Error::EtagMismatch { .. } => ErrorCode::EtagMismatch,
            Error::AlreadyExists { .. } => ErrorCode::AlreadyExists,
            Error::IdempotencyKeyReused { .. } => ErrorCode::IdempotencyKeyReused,
            Error::Conflict(_) => ErrorCode::Conflict,
            Error::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Error::PermissionDenied(_) => ErrorCode::PermissionDenied,
            Error::RateLimited { .. } => ErrorCode::RateLimited,
            Error::Unavailable(_) | Error::ReadOnly(_) => ErrorCode::Unavailable,
            Error::StorageFull(_) => ErrorCode::InsufficientStorage,
            Error::Overloaded { .. } => ErrorCode::Overloaded,
            Error::CursorExpired { .. } => ErrorCode::CursorExpired,
            Error::NotConfigured(_) => ErrorCode::NotConfigured,
            Error::Internal(_) => ErrorCode::Internal,
        }
    }

    /// How long a client should wait before retrying, when retrying later can succeed
    /// (`Retry-After`, gRPC `RetryInfo`).
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Error::RateLimited { retry_after } => Some(*retry_after),
            Error::Unavailable(_) | Error::Overloaded { .. } => Some(RETRY_UNAVAILABLE),
            Error::StorageFull(_) | Error::ReadOnly(_) => Some(RETRY_STORAGE),
            _ => None,
        }
    }

    /// Whether this is the database being away (unreachable, timed out): background work that
    /// fails on it retries quietly, since the readiness watcher reports the outage once.
    pub fn is_outage(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }

    /// A single-field validation error.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Validation(vec![FieldViolation::new(field, message)])
    }

    /// The field violations, for validation errors.
    pub fn violations(&self) -> &[FieldViolation] {
        match self {
            Error::Validation(v) => v,
            _ => &[],
        }
    }

    /// Prefixes every violated field with `prefix.` (gRPC reports paths from the request
    /// root), except the fields named in `except` (fields of the request itself).
    pub fn prefix_fields_except(self, prefix: &str, except: &[&str]) -> Self {
        match self {
            Error::Validation(v) => Error::Validation(
                v.into_iter()
                    .map(|f| {
                        if except.contains(&f.field.as_str()) {
                            f
                        } else {
                            FieldViolation::new(format!("{prefix}.{}", f.field), f.message)
                        }
                    })
                    .collect(),
            ),
            other => other,
        }
    }

    /// Prefixes every violated field with `prefix.`.
    pub fn prefix_fields(self, prefix: &str) -> Self {
        self.prefix_fields_except(prefix, &[])
    }
}

/// The wait suggested while the database is unreachable or the process is overloaded: a
/// restarted database is back within seconds, and retries then spread out.
pub const RETRY_UNAVAILABLE: std::time::Duration = std::time::Duration::from_secs(2);
/// The wait suggested while the database cannot write (a full or read-only disk): an operator
/// has to act.
pub const RETRY_STORAGE: std::time::Duration = std::time::Duration::from_secs(30);

/// Whole seconds to wait before retrying, rounded up and at least 1 (`Retry-After`).
pub fn retry_after_secs(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos().div_ceil(1_000_000_000)).unwrap_or(u64::MAX).max(1)
}

fn describe_violations(v: &[FieldViolation]) -> String {
    let parts: Vec<String> = v.iter().map(|f| format!("{}: {}", f.field, f.message)).collect();
    format!("invalid request: {}", parts.join("; "))
}

fn list_statuses(from: &str, s: &[&str]) -> String {
    if s.is_empty() {
        return format!("none ({from} is final)");
    }
    s.join(", ")
}

fn with_article(resource: &str) -> String {
    let article = if resource.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
    format!("{article} {resource}")
}
