//! Outbound notifications: the SSRF guard, Standard Webhooks signing, what each channel sends,
//! and sending it. A leaf: it imports only the domain and telemetry. The dispatcher that
//! drives it lives in the service (`service/dispatch/`), which also owns the store it needs.

pub mod customer;
pub mod render;
pub mod send;
pub mod sign;
pub mod smtp;
pub mod ssrf;

pub use send::{Sender, SenderSettings, Sent};
pub use ssrf::{Allowlist, Guard};
