//! Customer subscribers, the keys the service keeps for itself, and the outbox of mails that
//! are no event's delivery.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::Result;
use crate::domain::subscriber::{OutboundMail, Subscriber};

#[async_trait]
pub trait SubscriberStore {
    async fn get_subscriber(&self, id: Uuid) -> Result<Option<Subscriber>>;
    /// Whether a queued mail is due at `now` (read outside a transaction).
    async fn mail_due(&self, now: DateTime<Utc>) -> Result<bool>;
}

#[async_trait]
pub trait SubscriberTx {
    /// Reads a subscriber and locks it.
    async fn lock_subscriber(&mut self, id: Uuid) -> Result<Option<Subscriber>>;
    /// Reads the subscriber with this address (any case) and locks it.
    async fn lock_subscriber_by_email(&mut self, email: &str) -> Result<Option<Subscriber>>;
    /// Inserts a subscriber; false when another has the address already.
    async fn insert_subscriber(&mut self, subscriber: &Subscriber) -> Result<bool>;
    async fn update_subscriber(&mut self, subscriber: &Subscriber) -> Result<()>;
    /// The service's key `name`: the stored one, or `generated`, stored now, if none is.
    async fn service_key(&mut self, name: &str, generated: &[u8], now: DateTime<Utc>) -> Result<Vec<u8>>;
    async fn insert_mail(&mut self, mail: &OutboundMail) -> Result<()>;
    /// Takes the next pending mail due at `now` for an attempt (counted), leaving it alone for
    /// other workers until `lease_until`.
    async fn claim_mail(&mut self, now: DateTime<Utc>, lease_until: DateTime<Utc>) -> Result<Option<OutboundMail>>;
    async fn update_mail(&mut self, mail: &OutboundMail) -> Result<()>;
}
