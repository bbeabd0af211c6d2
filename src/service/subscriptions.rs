//! Subscription use cases: managing subscriptions (create, edit, pause, rotate the signing
//! secret, test) and their deliveries (list, inspect, retry). Sending them is the dispatcher's
//! (`dispatch/`).

use serde_json::json;
use uuid::Uuid;

use super::dispatch::attempt_of;
use super::{Created, Service};
use crate::domain::page::{Page, PageToken};
use crate::domain::query::AttemptsOf;
use crate::domain::subscription::{NewSubscription, SigningSecrets, SubscriptionPatch, new_signing_secret};
use crate::domain::validate::Violations;
use crate::domain::version::check_etag;
use crate::domain::{
    AuditEvent, Caller, Delivery, DeliveryAttempt, DeliveryStatus, Error, PageRequest, Permission, Result, Subscription,
};

fn not_found(id: Uuid) -> Error {
    Error::NotFound { resource: "subscription", id: id.to_string() }
}

/// A subscription and, once, its signing secret.
#[derive(Debug, Clone)]
pub struct SubscriptionWithSecret {
    pub subscription: Subscription,
    /// The webhook signing secret: only when created or rotated.
    pub secret: Option<String>,
}

impl Service {
    /// Refuses a target the SSRF guard would refuse, when its URL already shows it.
    fn check_target(&self, subscription: &Subscription) -> Result<()> {
        if subscription.channel == crate::domain::Channel::Email {
            return Ok(());
        }
        let url = url::Url::parse(&subscription.target).map_err(|_| Error::invalid("target", "is not a URL"))?;
        if let Some(why) = url.host().and_then(|h| self.dispatcher.sender().guard().refuse_host(&h)) {
            return Err(Error::invalid(
                "target",
                format!("refused: {why} (internal receivers must be allowed in INCIDENTD_WEBHOOK_ALLOWLIST)"),
            ));
        }
        Ok(())
    }

    pub async fn create_subscription(
        &self,
        caller: &Caller,
        input: NewSubscription,
    ) -> Result<Created<SubscriptionWithSecret>> {
        caller.require(Permission::ManageSubscriptions)?;
        let now = crate::domain::now();
        let (subscription, secrets) = input.validate(&caller.name, now)?;
        self.check_target(&subscription)?;
        let mut tx = self.store.begin().await?;
        tx.insert_subscription(&subscription, &secrets).await?;
        let details = json!({"channel": subscription.channel, "event_types": subscription.event_types});
        let audit = AuditEvent::new(caller, "subscription.create", "subscription", subscription.id, details, now);
        tx.insert_audit_event(&audit).await?;
        tx.commit().await?;
        Ok(Created { value: SubscriptionWithSecret { subscription, secret: secrets.current }, replayed: false })
    }

    pub async fn get_subscription(&self, caller: &Caller, id: Uuid) -> Result<Subscription> {
        caller.require(Permission::ManageSubscriptions)?;
        self.store.get_subscription(id).await?.ok_or_else(|| not_found(id))
    }

    pub async fn list_subscriptions(&self, caller: &Caller, page: PageRequest) -> Result<Page<Subscription>> {
        caller.require(Permission::ManageSubscriptions)?;
        let rows = self.store.list_subscriptions(page.after.as_ref(), page.size + 1).await?;
        Ok(Page::from_rows(rows, page.size, |s| PageToken::Time { at: s.created_at, id: s.id }))
    }

    /// Edits a subscription (including pausing and resuming it).
    pub async fn update_subscription(
        &self,
        caller: &Caller,
        id: Uuid,
        patch: SubscriptionPatch,
        if_match: Option<&str>,
    ) -> Result<Subscription> {
        caller.require(Permission::ManageSubscriptions)?;
        let now = crate::domain::now();
        let mut tx = self.store.begin().await?;
        let (mut subscription, secrets) = tx.lock_subscription(id).await?.ok_or_else(|| not_found(id))?;
        check_etag("subscription", if_match, subscription.version)?;
        let resumed = patch.paused == Some(false) && subscription.paused;
        if subscription.apply_patch(patch, now)? {
            self.check_target(&subscription)?;
            tx.update_subscription(&subscription, &secrets).await?;
            let audit = AuditEvent::new(caller, "subscription.update", "subscription", id, json!({}), now);
            tx.insert_audit_event(&audit).await?;
            tx.commit().await?;
            if resumed {
                self.dispatcher.wake();
            }
        }
        Ok(subscription)
    }

    pub async fn delete_subscription(&self, caller: &Caller, id: Uuid) -> Result<()> {
        caller.require(Permission::ManageSubscriptions)?;
        let mut tx = self.store.begin().await?;
        let (subscription, _) = tx.lock_subscription(id).await?.ok_or_else(|| not_found(id))?;
        tx.delete_subscription(id).await?;
        let details = json!({"channel": subscription.channel});
        let audit = AuditEvent::new(caller, "subscription.delete", "subscription", id, details, crate::domain::now());
        tx.insert_audit_event(&audit).await?;
        tx.commit().await
    }

    /// Replaces a webhook subscription's signing secret; the old one keeps signing (beside the
    /// new) for the grace period, so receivers can switch without missing a message.
    pub async fn rotate_secret(&self, caller: &Caller, id: Uuid) -> Result<SubscriptionWithSecret> {
        caller.require(Permission::ManageSubscriptions)?;
        let now = crate::domain::now();
        let mut tx = self.store.begin().await?;
        let (mut subscription, secrets) = tx.lock_subscription(id).await?.ok_or_else(|| not_found(id))?;
        if subscription.channel != crate::domain::Channel::Webhook {
            return Err(Error::Conflict("only webhook subscriptions have a signing secret".into()));
        }
        let grace = chrono::Duration::from_std(self.dispatcher.settings().rotation_grace).unwrap_or_default();
        let rotated = SigningSecrets {
            current: Some(new_signing_secret()),
            previous: secrets.current,
            previous_expires_at: Some(now + grace),
        };
        subscription.touch(now);
        tx.update_subscription(&subscription, &rotated).await?;
        let audit = AuditEvent::new(caller, "subscription.rotate_secret", "subscription", id, json!({}), now);
        tx.insert_audit_event(&audit).await?;
        tx.commit().await?;
        Ok(SubscriptionWithSecret { subscription, secret: rotated.current })
    }

    /// Sends a `subscription.test` event now and reports how it went (not queued, not retried).
    pub async fn test_subscription(&self, caller: &Caller, id: Uuid) -> Result<DeliveryAttempt> {
        caller.require(Permission::ManageSubscriptions)?;
        let mut tx = self.store.begin().await?;
        let (subscription, secrets) = tx.lock_subscription(id).await?.ok_or_else(|| not_found(id))?;
        drop(tx);
        let now = self.dispatcher.now();
        let event = crate::notify::send::test_event(&subscription, now);
        let test = Subscription { include_internal: true, ..subscription };
        let sent = self.dispatcher.sender().send(&event, &test, &secrets, now).await;
        Ok(attempt_of(Uuid::nil(), test.id, now, &sent))
    }

    pub async fn list_deliveries(
        &self,
        caller: &Caller,
        subscription_id: Uuid,
        status: Option<DeliveryStatus>,
        page: PageRequest,
    ) -> Result<Page<Delivery>> {
        self.get_subscription(caller, subscription_id).await?;
        let rows = self.store.list_deliveries(subscription_id, status, page.after.as_ref(), page.size + 1).await?;
        Ok(Page::from_rows(rows, page.size, |d| PageToken::Time { at: d.created_at, id: d.id }))
    }

    pub async fn get_delivery(&self, caller: &Caller, id: Uuid) -> Result<Delivery> {
        caller.require(Permission::ManageSubscriptions)?;
        self.store.get_delivery(id).await?.ok_or_else(|| Error::NotFound { resource: "delivery", id: id.to_string() })
    }

    /// The delivery log: attempts, newest first.
    pub async fn list_attempts(
        &self,
        caller: &Caller,
        of: AttemptsOf,
        page: PageRequest,
    ) -> Result<Page<DeliveryAttempt>> {
        match of {
            AttemptsOf::Subscription(id) => drop(self.get_subscription(caller, id).await?),
            AttemptsOf::Delivery(id) => drop(self.get_delivery(caller, id).await?),
        }
        let rows = self.store.list_attempts(of, page.after.as_ref(), page.size + 1).await?;
        Ok(Page::from_rows(rows, page.size, |a| PageToken::Time { at: a.attempted_at, id: a.id }))
    }

    /// Sends a delivery again (a dead-lettered one, or a delivered one to replay it) with a
    /// fresh retry schedule.
    pub async fn retry_delivery(&self, caller: &Caller, id: Uuid) -> Result<Delivery> {
        let delivery = self.get_delivery(caller, id).await?;
        if matches!(delivery.status, DeliveryStatus::Pending | DeliveryStatus::Sending) {
            return Err(Error::Conflict(format!("delivery {id} is already {}", delivery.status)));
        }
        let now = self.dispatcher.now();
        let mut tx = self.store.begin().await?;
        tx.requeue_deliveries(&[id], now).await?;
        let audit = AuditEvent::new(caller, "delivery.retry", "delivery", id, json!({}), now);
        tx.insert_audit_event(&audit).await?;
        tx.commit().await?;
        self.dispatcher.wake();
        self.get_delivery(caller, id).await
    }

    /// Sends every dead-lettered delivery of a subscription again. Returns how many.
    pub async fn retry_failed_deliveries(&self, caller: &Caller, subscription_id: Uuid) -> Result<u64> {
        self.get_subscription(caller, subscription_id).await?;
        let now = self.dispatcher.now();
        let mut tx = self.store.begin().await?;
        let ids = tx.failed_delivery_ids(subscription_id).await?;
        let n = tx.requeue_deliveries(&ids, now).await?;
        let details = json!({"deliveries": n});
        tx.insert_audit_event(&AuditEvent::new(
            caller,
            "delivery.retry_failed",
            "subscription",
            subscription_id,
            details,
            now,
        ))
        .await?;
        tx.commit().await?;
        self.dispatcher.wake();
        Ok(n)
    }
}

/// Parses a delivery status filter.
pub fn delivery_status(v: &mut Violations, field: &str, raw: &str) -> Option<DeliveryStatus> {
    raw.parse().map_err(|e: String| v.add(field, e)).ok()
}
