//! Outbound notifications: the SSRF guard, Standard Webhooks signing, what each channel sends,
//! and sending it. The dispatcher that drives them lives in the service
//! (`service::deliveries`).

pub mod render;
pub mod send;
pub mod sign;
pub mod ssrf;

pub use send::{Sender, SenderSettings, Sent};
pub use ssrf::{Allowlist, Guard};
