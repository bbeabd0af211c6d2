//! The transports: thin adapters that convert, call the [`crate::service::Service`], and
//! convert back.

pub mod grpc;
pub mod rest;
