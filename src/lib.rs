//! incidentd: the system of record for incidents, served over REST and gRPC.
//!
//! Data flows one way: transport (`api::rest`, `api::grpc`) → [`service`] → [`domain`]
//! rules and [`store`].

pub mod alloc;
pub mod api;
pub mod app;
pub mod config;
pub mod domain;
pub mod notify;
pub mod secrets;
pub mod seed;
pub mod service;
pub mod store;
pub mod telemetry;

/// Generated protobuf and gRPC code for `incidentd.v1`.
pub mod proto {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("incidentd.v1");

    /// Encoded file descriptor set of every incidentd proto (and its imports), for reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/incidentd_descriptor.bin"));
}
