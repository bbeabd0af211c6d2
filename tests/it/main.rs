//! The one integration-test binary: every test runs the real application against a fresh
//! database of its own, on the backend `INCIDENTD_TEST_BACKEND` names (SQLite by default;
//! `scripts/test` runs the suite on Postgres and then on SQLite), over real HTTP and gRPC
//! clients.

mod access;
mod actions;
mod binary;
mod components;
mod concurrency;
mod crash;
mod deliveries;
mod events;
mod grpc;
mod helpers;
mod history;
mod incidents;
mod integrations;
mod integrations_grpc;
mod lifecycle;
mod maintenance;
mod merge;
mod parity;
mod postmortems;
mod production;
mod properties;
mod public;
mod receivers;
mod reliability;
mod retention;
mod secrets;
mod stats;
mod storage;
mod subscribers;
mod transfer;
mod validation;
