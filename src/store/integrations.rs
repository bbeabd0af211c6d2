//! Integrations, the incident each alert group maps to, received alerts, and the
//! acknowledgement reminders sent.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use super::sql::integrations::{AckCandidate, AlertsOf};
use crate::domain::alert::Alert;
use crate::domain::integration::Integration;
use crate::domain::page::PageToken;
use crate::domain::{Result, Severity};

#[async_trait]
pub trait IntegrationStore {
    async fn get_integration(&self, id: Uuid) -> Result<Option<Integration>>;
    /// The integration and the hash of its secret, to check a presented secret against.
    async fn get_integration_secret(&self, id: Uuid) -> Result<Option<(Integration, Vec<u8>)>>;
    /// The integration whose secret has this hash (PagerDuty's `routing_key`).
    async fn find_integration_by_secret(&self, secret_hash: &[u8]) -> Result<Option<Integration>>;
    /// Integrations newest first, after `after`.
    async fn list_integrations(&self, after: Option<&PageToken>, limit: u32) -> Result<Vec<Integration>>;
    /// Alerts of an integration or an incident, newest first, after `after`.
    async fn list_alerts(&self, of: AlertsOf, after: Option<&PageToken>, limit: u32) -> Result<Vec<Alert>>;
    /// Open, unacknowledged incidents of these severities declared at or before
    /// `declared_before` with no reminder since `sent_before` (`None`: with none at all),
    /// oldest first.
    async fn ack_candidates(
        &self,
        severities: &[Severity],
        declared_before: DateTime<Utc>,
        sent_before: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<AckCandidate>>;
}

#[async_trait]
pub trait IntegrationTx {
    async fn insert_integration(&mut self, integration: &Integration, secret_hash: &[u8]) -> Result<()>;
    /// Reads an integration and locks it.
    async fn lock_integration(&mut self, id: Uuid) -> Result<Option<Integration>>;
    /// Writes an integration, and its new secret's hash when it has one.
    async fn update_integration(&mut self, integration: &Integration, secret_hash: Option<&[u8]>) -> Result<()>;
    async fn delete_integration(&mut self, id: Uuid) -> Result<()>;
    /// Locks the group's row (creating it), and returns the incident it maps to, if any. A
    /// concurrent delivery of the same group waits here until this transaction ends.
    async fn lock_alert_group(&mut self, integration_id: Uuid, dedup_key: &str) -> Result<Option<Uuid>>;
    async fn set_alert_group(&mut self, integration_id: Uuid, dedup_key: &str, incident_id: Uuid) -> Result<()>;
    async fn insert_alerts(&mut self, alerts: &[Alert]) -> Result<()>;
    /// How many alerts of the key on the incident are still active (their latest state).
    async fn active_alerts(&mut self, incident_id: Uuid, dedup_key: &str) -> Result<i64>;
    /// Records that reminder `now_sent` went out if `before` had (compare and set); false
    /// when another worker recorded it first.
    async fn record_ack_reminder(
        &mut self,
        incident_id: Uuid,
        before: i64,
        now_sent: i64,
        at: DateTime<Utc>,
    ) -> Result<bool>;
}
