//! The transports: thin adapters that convert, call the [`crate::service::Service`], and
//! convert back.

pub mod admission;
pub mod grpc;
pub mod public;
pub mod rest;
pub mod serve;

/// The message a caller gets for an error. Internal errors and an unavailable database are
/// logged here, and the caller gets a fixed sentence instead of their detail (it may name
/// tables, hosts or queries).
pub(crate) fn public_message(error: &crate::domain::Error) -> String {
    use crate::domain::Error;
    match error {
        Error::Internal(msg) => {
            tracing::error!(error = %msg, "internal error");
            "an internal error occurred; it has been logged".to_string()
        }
        // The readiness watcher warns once when the database goes away; one line per failed
        // request would bury that line in an outage.
        Error::Unavailable(msg) => {
            tracing::debug!(error = %msg, "database unavailable");
            "the database is unavailable; retry later".to_string()
        }
        Error::StorageFull(msg) => {
            tracing::error!(error = %msg, "the database's disk is full");
            "the database's disk is full: the change was not stored; retry once space is freed".to_string()
        }
        Error::ReadOnly(msg) => {
            tracing::error!(error = %msg, "the database is read-only");
            "the database is read-only (its disk or file accepts no writes, or it is a standby): the change was not stored; retry later".to_string()
        }
        other => other.to_string(),
    }
}
