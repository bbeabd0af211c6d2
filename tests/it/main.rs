//! The one integration-test binary: every test runs the real application against its own
//! fresh Postgres database, over real HTTP and gRPC clients.

mod access;
mod binary;
mod components;
mod concurrency;
mod crash;
mod deliveries;
mod events;
mod grpc;
mod helpers;
mod incidents;
mod lifecycle;
mod parity;
mod production;
mod receivers;
mod storage;
mod validation;
