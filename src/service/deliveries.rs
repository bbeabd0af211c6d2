//! Subscriptions and the dispatcher: fan-out of sequenced events to matching subscriptions,
//! workers that claim due deliveries under a lease and send them, the retry schedule,
//! dead-lettering, and disabling subscriptions whose receivers are gone or keep failing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Created, Service};
use crate::domain::page::{Page, PageToken};
use crate::domain::subscription::{
    NewSubscription, Outcome, SigningSecrets, SubscriptionPatch, jitter, new_signing_secret, next_attempt_at,
};
use crate::domain::validate::Violations;
use crate::domain::{
    AuditEvent, Caller, Delivery, DeliveryAttempt, DeliveryStatus, Error, Event, PageRequest, Permission, Result,
    Subscription,
};
use crate::notify::{Sender, Sent};
use crate::store::{AttemptResult, AttemptsOf, ClaimedDelivery, Transaction};

/// A clock the dispatcher reads, so tests can move time instead of waiting.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        crate::domain::now()
    }
}

/// A clock that runs with the system clock, plus an offset tests can move.
#[derive(Debug, Default)]
pub struct ManualClock {
    offset: Mutex<chrono::Duration>,
}

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        *self.offset.lock().expect("clock lock") += chrono::Duration::from_std(by).expect("in range");
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        crate::domain::now() + *self.offset.lock().expect("clock lock")
    }
}

/// How deliveries are made.
#[derive(Clone)]
pub struct DispatchSettings {
    /// Deliveries in flight at once, per process.
    pub max_in_flight: usize,
    /// Deliveries in flight at once per subscription, so a slow receiver only slows itself.
    pub per_subscription: usize,
    /// A subscription failing for this long without a success is disabled.
    pub disable_failing_after: Duration,
    /// How long a rotated-out webhook secret keeps signing.
    pub rotation_grace: Duration,
    /// A claimed delivery is another worker's to take after this long without a heartbeat.
    pub lease: Duration,
    pub clock: Arc<dyn Clock>,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        DispatchSettings {
            max_in_flight: 256,
            per_subscription: 16,
            disable_failing_after: Duration::from_secs(5 * 24 * 3600),
            rotation_grace: Duration::from_secs(24 * 3600),
            lease: Duration::from_secs(60),
            clock: Arc::new(SystemClock),
        }
    }
}

/// The state the dispatcher of this process keeps.
pub(crate) struct Dispatcher {
    pub(crate) sender: Sender,
    pub(crate) settings: DispatchSettings,
    pub(crate) owner: String,
    pub(crate) wake: Notify,
    in_flight: Arc<Semaphore>,
    per_subscription: Mutex<HashMap<Uuid, Arc<Semaphore>>>,
    leased: Mutex<Vec<Uuid>>,
}

impl Dispatcher {
    pub(crate) fn new(sender: Sender, settings: DispatchSettings) -> Self {
        Dispatcher {
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight)),
            sender,
            owner: format!("{}:{}", std::process::id(), Uuid::now_v7()),
            wake: Notify::new(),
            per_subscription: Mutex::new(HashMap::new()),
            leased: Mutex::new(Vec::new()),
            settings,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.settings.clock.now()
    }

    fn subscription_gate(&self, id: Uuid) -> Arc<Semaphore> {
        self.per_subscription
            .lock()
            .expect("gate lock")
            .entry(id)
            .or_insert_with(|| Arc::new(Semaphore::new(self.settings.per_subscription)))
            .clone()
    }

    /// Subscriptions with every slot taken: not worth claiming for now.
    fn saturated(&self) -> Vec<Uuid> {
        self.per_subscription
            .lock()
            .expect("gate lock")
            .iter()
            .filter(|(_, s)| s.available_permits() == 0)
            .map(|(id, _)| *id)
            .collect()
    }
}

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
    fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }

    /// Refuses a target the SSRF guard would refuse, when its URL already shows it.
    fn check_target(&self, subscription: &Subscription) -> Result<()> {
        if subscription.channel == crate::domain::Channel::Email {
            return Ok(());
        }
        let url = url::Url::parse(&subscription.target).map_err(|_| Error::invalid("target", "is not a URL"))?;
        if let Some(why) = url.host().and_then(|h| self.dispatcher().sender.guard().refuse_host(&h)) {
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
        crate::domain::incident::check_etag("subscription", if_match, subscription.version)?;
        let resumed = patch.paused == Some(false) && subscription.paused;
        if subscription.apply_patch(patch, now)? {
            self.check_target(&subscription)?;
            tx.update_subscription(&subscription, &secrets).await?;
            let audit = AuditEvent::new(caller, "subscription.update", "subscription", id, json!({}), now);
            tx.insert_audit_event(&audit).await?;
            tx.commit().await?;
            if resumed {
                self.dispatcher().wake.notify_one();
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
        let grace = chrono::Duration::from_std(self.dispatcher().settings.rotation_grace).unwrap_or_default();
        let rotated = SigningSecrets {
            current: Some(new_signing_secret()),
            previous: secrets.current,
            previous_expires_at: Some(now + grace),
        };
        subscription.version += 1;
        subscription.updated_at = now;
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
        let now = self.dispatcher().now();
        let event = crate::notify::send::test_event(&subscription, now);
        let test = Subscription { include_internal: true, ..subscription };
        let sent = self.dispatcher().sender.send(&event, &test, &secrets, now).await;
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
        let now = self.dispatcher().now();
        let mut tx = self.store.begin().await?;
        tx.requeue_deliveries(&[id], now).await?;
        let audit = AuditEvent::new(caller, "delivery.retry", "delivery", id, json!({}), now);
        tx.insert_audit_event(&audit).await?;
        tx.commit().await?;
        self.dispatcher().wake.notify_one();
        self.get_delivery(caller, id).await
    }

    /// Sends every dead-lettered delivery of a subscription again. Returns how many.
    pub async fn retry_failed_deliveries(&self, caller: &Caller, subscription_id: Uuid) -> Result<u64> {
        self.get_subscription(caller, subscription_id).await?;
        let now = self.dispatcher().now();
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
        self.dispatcher().wake.notify_one();
        Ok(n)
    }

    /// Fan-out, inside the sequencer's transaction: a pending delivery for every subscription
    /// that wants each newly sequenced event.
    pub(crate) async fn fan_out(&self, tx: &mut dyn Transaction, events: &[Event]) -> Result<usize> {
        let subscriptions = tx.fanout_subscriptions().await?;
        if subscriptions.is_empty() {
            return Ok(0);
        }
        let pairs: Vec<(&Event, Uuid)> =
            events.iter().flat_map(|e| subscriptions.iter().filter(|s| s.wants(e)).map(move |s| (e, s.id))).collect();
        tx.insert_deliveries(&pairs, self.dispatcher().now()).await?;
        Ok(pairs.len())
    }

    /// Claims due deliveries and sends them, until none are due. Returns how many it started.
    pub async fn dispatch_due(&self) -> Result<usize> {
        let d = self.dispatcher();
        let mut started = 0;
        loop {
            let free = d.in_flight.available_permits();
            if free == 0 {
                return Ok(started);
            }
            let now = d.now();
            let lease_until = now + chrono::Duration::from_std(d.settings.lease).unwrap_or_default();
            let claimed =
                self.store.claim_deliveries(&d.owner, now, lease_until, free.min(500) as u32, &d.saturated()).await?;
            if claimed.is_empty() {
                return Ok(started);
            }
            let mut release = Vec::new();
            for c in claimed {
                let gate = d.subscription_gate(c.subscription.id);
                let (Ok(slot), Ok(global)) = (gate.try_acquire_owned(), d.in_flight.clone().try_acquire_owned()) else {
                    release.push(c.delivery.id);
                    continue;
                };
                d.leased.lock().expect("lease lock").push(c.delivery.id);
                started += 1;
                let service = self.clone();
                tokio::spawn(async move { service.deliver(c, slot, global).await });
            }
            if !release.is_empty() {
                self.store.release_deliveries(&d.owner, &release, now).await?;
                return Ok(started);
            }
        }
    }

    async fn deliver(&self, c: ClaimedDelivery, _slot: OwnedSemaphorePermit, _global: OwnedSemaphorePermit) {
        let d = self.dispatcher();
        let sent = d.sender.send(&c.event, &c.subscription, &c.secrets, d.now()).await;
        if let Err(e) = self.record(&c, &sent).await {
            tracing::warn!(error = %e, delivery = %c.delivery.id, "could not record a delivery attempt; it will be retried");
        }
        d.leased.lock().expect("lease lock").retain(|id| *id != c.delivery.id);
        d.wake.notify_one();
    }

    /// Records an attempt: the schedule, dead-lettering, and disabling a subscription whose
    /// receiver is gone or has failed for too long.
    async fn record(&self, c: &ClaimedDelivery, sent: &Sent) -> Result<()> {
        let d = self.dispatcher();
        let now = d.now();
        let attempts = (c.delivery.attempts + 1) as u32;
        let (status, next) = match sent.outcome {
            Outcome::Delivered => (DeliveryStatus::Delivered, None),
            Outcome::Gone => (DeliveryStatus::Failed, None),
            Outcome::Retry { retry_after, slow_down } => {
                match next_attempt_at(attempts, now, retry_after, slow_down, jitter()) {
                    Some(at) => (DeliveryStatus::Pending, Some(at)),
                    None => (DeliveryStatus::Failed, None),
                }
            }
        };
        let result = AttemptResult {
            attempt: attempt_of(c.delivery.id, c.subscription.id, now, sent),
            owner: d.owner.clone(),
            status,
            next_attempt_at: next,
        };
        let mut tx = self.store.begin().await?;
        tx.record_attempt(&result).await?;
        let mut events = Vec::new();
        if let Some((mut s, secrets)) = tx.lock_subscription(c.subscription.id).await? {
            let before = s.clone();
            let failing_for = chrono::Duration::from_std(d.settings.disable_failing_after).unwrap_or_default();
            let disable = match sent.outcome {
                Outcome::Delivered => {
                    s.failing_since = None;
                    None
                }
                Outcome::Gone => Some("the receiver answered 410 Gone".to_string()),
                Outcome::Retry { .. } => {
                    let since = *s.failing_since.get_or_insert(now);
                    (now - since >= failing_for)
                        .then(|| format!("every delivery failed for {} hours", failing_for.num_hours()))
                }
            };
            if let (Some(reason), true) = (disable, s.is_active()) {
                s.disabled_at = Some(now);
                s.disabled_reason = Some(reason.clone());
                tx.cancel_deliveries(s.id).await?;
                events.push(Event::subscription_disabled(s.id, &reason, now));
                tracing::warn!(subscription = %s.id, %reason, "subscription disabled");
            }
            if s != before {
                s.version += 1;
                s.updated_at = now;
                tx.update_subscription(&s, &secrets).await?;
            }
        }
        if events.is_empty() {
            tx.commit().await
        } else {
            tx.insert_events(&events).await?;
            self.commit_with_events(tx).await
        }
    }

    /// The dispatcher loop: sends due deliveries when woken (new deliveries, a finished one,
    /// a retry or resume) and at least every second; a heartbeat keeps the leases of
    /// deliveries in flight. Stops claiming when `stop` fires.
    pub async fn run_dispatcher(&self, stop: CancellationToken) {
        let heartbeat = {
            let service = self.clone();
            let stop = stop.clone();
            tokio::spawn(async move { service.heartbeat(stop).await })
        };
        let mut sequenced = self.watch_sequenced();
        loop {
            if let Err(e) = self.dispatch_due().await {
                tracing::warn!(error = %e, "claiming deliveries failed");
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.dispatcher().wake.notified() => {}
                _ = sequenced.changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        heartbeat.abort();
    }

    async fn heartbeat(&self, stop: CancellationToken) {
        let d = self.dispatcher();
        let every = d.settings.lease / 3;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let ids = d.leased.lock().expect("lease lock").clone();
            if ids.is_empty() {
                continue;
            }
            let until = d.now() + chrono::Duration::from_std(d.settings.lease).unwrap_or_default();
            if let Err(e) = self.store.extend_leases(&d.owner, &ids, until).await {
                tracing::warn!(error = %e, "extending delivery leases failed");
            }
        }
    }

    /// Wakes the dispatcher (after moving a test clock, say).
    pub fn wake_dispatcher(&self) {
        self.dispatcher().wake.notify_one();
    }
}

fn attempt_of(delivery_id: Uuid, subscription_id: Uuid, now: DateTime<Utc>, sent: &Sent) -> DeliveryAttempt {
    DeliveryAttempt {
        id: Uuid::now_v7(),
        delivery_id,
        subscription_id,
        attempted_at: now,
        status_code: sent.status_code,
        latency_ms: i64::try_from(sent.latency.as_millis()).unwrap_or(i64::MAX),
        response_excerpt: sent.excerpt.clone(),
        error: sent.error.clone(),
    }
}

/// Parses a delivery status filter.
pub fn delivery_status(v: &mut Violations, field: &str, raw: &str) -> Option<DeliveryStatus> {
    raw.parse().map_err(|e: String| v.add(field, e)).ok()
}
