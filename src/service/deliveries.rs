//! Subscriptions and the dispatcher: fan-out of sequenced events to matching subscriptions,
//! workers that claim due deliveries under a lease and send them, the retry schedule,
//! dead-lettering, and disabling subscriptions whose receivers are gone or keep failing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::{Created, Service};
use crate::domain::page::{Page, PageToken};
use crate::domain::query::AttemptsOf;
use crate::domain::subscription::{
    NewSubscription, Outcome, SigningSecrets, SubscriptionPatch, jitter, new_signing_secret, next_attempt_at,
};
use crate::domain::validate::Violations;
use crate::domain::{
    AuditEvent, Caller, Delivery, DeliveryAttempt, DeliveryStatus, Error, Event, PageRequest, Permission, Result,
    Subscription,
};
use crate::notify::{Sender, Sent};
use crate::store::{AttemptResult, ClaimedDelivery, Lease, NewDelivery, Transaction};

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
    /// At shutdown, how long sends already under way may take to finish and be recorded.
    pub drain: Duration,
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
            drain: Duration::from_secs(25),
            clock: Arc::new(SystemClock),
        }
    }
}

/// At most this many deliveries are claimed in one query.
const CLAIM_BATCH: usize = 256;
/// A process holds at most this many claimed deliveries per delivery it may send at once.
const CLAIMED_PER_IN_FLIGHT: usize = 16;
/// A subscription is not claimed for while this many deliveries per slot wait for it.
const QUEUED_PER_SLOT: usize = 8;
/// At most this many finished attempts are written in one transaction.
const RECORD_BATCH: usize = 500;

/// A sent delivery whose outcome is still to be written.
struct Finished {
    delivery_id: Uuid,
    subscription_id: Uuid,
    channel: crate::domain::Channel,
    /// Attempts before this one.
    attempts: i32,
    sent: Sent,
}

/// The deliveries fan-out claimed for this process to send.
#[derive(Default)]
pub(crate) struct FannedOut {
    claimed: Vec<(ClaimedDelivery, OwnedSemaphorePermit)>,
    /// The running dispatcher's stop signal.
    stop: Option<CancellationToken>,
}

/// The state the dispatcher of this process keeps.
pub(crate) struct Dispatcher {
    pub(crate) sender: Sender,
    pub(crate) settings: DispatchSettings,
    pub(crate) owner: String,
    pub(crate) wake: Notify,
    /// Deliveries being sent.
    in_flight: Arc<Semaphore>,
    /// Deliveries claimed and not yet finished (queued for a slot or being sent).
    claimed: Arc<Semaphore>,
    per_subscription: Mutex<HashMap<Uuid, Arc<Gate>>>,
    leased: Mutex<HashSet<Uuid>>,
    finished: mpsc::UnboundedSender<Finished>,
    finished_rx: Mutex<Option<mpsc::UnboundedReceiver<Finished>>>,
    /// Set while the dispatcher runs.
    stop: Mutex<Option<CancellationToken>>,
}

impl Dispatcher {
    pub(crate) fn new(sender: Sender, settings: DispatchSettings) -> Self {
        let (finished, finished_rx) = mpsc::unbounded_channel();
        Dispatcher {
            finished,
            finished_rx: Mutex::new(Some(finished_rx)),
            stop: Mutex::new(None),
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight)),
            claimed: Arc::new(Semaphore::new(settings.max_in_flight * CLAIMED_PER_IN_FLIGHT)),
            sender,
            owner: format!("{}:{}", std::process::id(), Uuid::now_v7()),
            wake: Notify::new(),
            per_subscription: Mutex::new(HashMap::new()),
            leased: Mutex::new(HashSet::new()),
            settings,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.settings.clock.now()
    }

    fn subscription_gate(&self, id: Uuid) -> Arc<Gate> {
        let mut gates = self.per_subscription.lock().expect("gate lock");
        // Forget idle subscriptions now and then (deleted ones, say).
        if gates.len() > 1024 {
            gates.retain(|_, g| g.queued.load(Ordering::Relaxed) > 0);
        }
        gates
            .entry(id)
            .or_insert_with(|| {
                Arc::new(Gate {
                    slots: Arc::new(Semaphore::new(self.settings.per_subscription)),
                    queued: AtomicUsize::new(0),
                })
            })
            .clone()
    }

    /// Subscriptions with enough claimed already: not claimed for until some are sent, so a slow
    /// receiver's backlog stays in the database instead of in this process's queue.
    fn saturated(&self) -> Vec<Uuid> {
        let cap = self.settings.per_subscription * QUEUED_PER_SLOT;
        self.per_subscription
            .lock()
            .expect("gate lock")
            .iter()
            .filter(|(_, g)| g.queued.load(Ordering::Relaxed) >= cap)
            .map(|(id, _)| *id)
            .collect()
    }
}

/// One subscription's share of the dispatcher: slots for concurrent sends and a count of the
/// deliveries claimed for it and not yet finished.
struct Gate {
    slots: Arc<Semaphore>,
    queued: AtomicUsize,
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

    /// Fan-out, inside the sequencer's transaction: a delivery for every subscription that
    /// wants each newly sequenced event. As many as this process's dispatcher can take are
    /// created already claimed by it, to send as soon as the transaction commits
    /// ([`Service::send_claimed`]) without a round through the table; the rest are pending
    /// for whichever worker claims them.
    pub(crate) async fn fan_out(&self, tx: &mut dyn Transaction, events: &[Event]) -> Result<FannedOut> {
        let subscriptions = tx.fanout_subscriptions().await?;
        if subscriptions.is_empty() {
            return Ok(FannedOut::default());
        }
        let d = self.dispatcher();
        let now = d.now();
        let lease_until = now + chrono::Duration::from_std(d.settings.lease).unwrap_or_default();
        let dispatching = d.stop.lock().expect("stop lock").clone().filter(|stop| !stop.is_cancelled());
        // What each subscription may still take here before it counts as saturated.
        let cap = d.settings.per_subscription * QUEUED_PER_SLOT;
        let mut room: HashMap<Uuid, usize> = subscriptions
            .iter()
            .filter(|(s, _)| dispatching.is_some() && !s.paused)
            .map(|(s, _)| (s.id, cap.saturating_sub(d.subscription_gate(s.id).queued.load(Ordering::Relaxed))))
            .collect();
        let mut new = Vec::new();
        let mut permits = Vec::new();
        for event in events {
            for (s, _) in subscriptions.iter().filter(|(s, _)| s.wants(event)) {
                let claimed = match room.get_mut(&s.id) {
                    Some(left) if *left > 0 => match d.claimed.clone().try_acquire_owned() {
                        Ok(permit) => {
                            *left -= 1;
                            permits.push(permit);
                            true
                        }
                        Err(_) => false,
                    },
                    _ => false,
                };
                new.push(NewDelivery { id: Uuid::now_v7(), event, subscription_id: s.id, claimed });
            }
        }
        tx.insert_deliveries(&new, now, Lease { owner: &d.owner, until: lease_until }).await?;
        let Some(stop) = dispatching.filter(|_| !permits.is_empty()) else {
            return Ok(FannedOut::default());
        };
        let events: HashMap<Uuid, Arc<Event>> = events.iter().map(|e| (e.id, Arc::new(e.clone()))).collect();
        let subscriptions: HashMap<Uuid, (Arc<Subscription>, Arc<SigningSecrets>)> =
            subscriptions.into_iter().map(|(s, secrets)| (s.id, (Arc::new(s), Arc::new(secrets)))).collect();
        let claimed = new
            .iter()
            .filter(|n| n.claimed)
            .zip(permits)
            .map(|(n, permit)| {
                let (subscription, secrets) = subscriptions[&n.subscription_id].clone();
                let delivery = Delivery {
                    id: n.id,
                    event_id: n.event.id,
                    subscription_id: n.subscription_id,
                    event_type: n.event.event_type,
                    status: DeliveryStatus::Sending,
                    attempts: 0,
                    next_attempt_at: Some(now),
                    last_attempt_at: None,
                    last_status_code: None,
                    last_error: None,
                    created_at: now,
                    delivered_at: None,
                };
                (ClaimedDelivery { delivery, event: events[&n.event.id].clone(), subscription, secrets }, permit)
            })
            .collect();
        Ok(FannedOut { claimed, stop: Some(stop) })
    }

    /// Starts sending what fan-out claimed, once its transaction has committed.
    pub(crate) fn send_claimed(&self, fanned_out: FannedOut) {
        let Some(stop) = fanned_out.stop else { return };
        let d = self.dispatcher();
        d.leased.lock().expect("lease lock").extend(fanned_out.claimed.iter().map(|(c, _)| c.delivery.id));
        for (c, permit) in fanned_out.claimed {
            self.start_delivery(c, permit, &stop);
        }
    }

    fn start_delivery(&self, c: ClaimedDelivery, permit: OwnedSemaphorePermit, stop: &CancellationToken) {
        let gate = self.dispatcher().subscription_gate(c.subscription.id);
        gate.queued.fetch_add(1, Ordering::Relaxed);
        let (service, stop) = (self.clone(), stop.clone());
        tokio::spawn(async move { service.deliver(c, gate, permit, stop).await });
    }

    /// Claims due deliveries, many per query, and starts sending them, until none are due or
    /// this process has claimed as many as it may hold. Returns how many it claimed.
    async fn dispatch_due(&self, stop: &CancellationToken) -> Result<usize> {
        let d = self.dispatcher();
        let mut started = 0;
        loop {
            let free = d.claimed.available_permits();
            if free == 0 || stop.is_cancelled() {
                return Ok(started);
            }
            let now = d.now();
            let lease_until = now + chrono::Duration::from_std(d.settings.lease).unwrap_or_default();
            let limit = free.min(CLAIM_BATCH) as u32;
            let claimed = self.store.claim_deliveries(&d.owner, now, lease_until, limit, &d.saturated()).await?;
            if claimed.is_empty() {
                return Ok(started);
            }
            let full = claimed.len() == limit as usize;
            // A lease of this process's own that looked lapsed (its heartbeat was late) comes
            // back renewed; that delivery is already in flight here, so it is not sent again.
            let claimed: Vec<ClaimedDelivery> = {
                let mut leased = d.leased.lock().expect("lease lock");
                claimed.into_iter().filter(|c| leased.insert(c.delivery.id)).collect()
            };
            for c in claimed {
                // Rarely waits: fan-out may have taken some since `free` was read, and then
                // deliveries finish soon.
                let permit = d.claimed.clone().acquire_owned().await.map_err(|e| Error::Internal(e.to_string()))?;
                started += 1;
                self.start_delivery(c, permit, stop);
            }
            if !full {
                return Ok(started);
            }
        }
    }

    /// Waits for a slot of the subscription and one of the process, sends, and hands the
    /// outcome to the recorder. At shutdown, a delivery still waiting is handed back.
    async fn deliver(
        &self,
        c: ClaimedDelivery,
        gate: Arc<Gate>,
        _claim: OwnedSemaphorePermit,
        stop: CancellationToken,
    ) {
        let d = self.dispatcher();
        let slots = async {
            let slot = gate.slots.clone().acquire_owned().await.ok()?;
            let global = d.in_flight.clone().acquire_owned().await.ok()?;
            Some((slot, global))
        };
        let permits = tokio::select! {
            biased;
            permits = slots => permits,
            _ = stop.cancelled() => None,
        };
        let Some(permits) = permits else {
            gate.queued.fetch_sub(1, Ordering::Relaxed);
            if let Err(e) = self.store.release_deliveries(&d.owner, &[c.delivery.id], d.now()).await {
                tracing::debug!(error = %e, delivery = %c.delivery.id, "could not hand back a delivery; its lease will run out");
            }
            d.leased.lock().expect("lease lock").remove(&c.delivery.id);
            return;
        };
        let span = crate::telemetry::delivery_span(
            c.event.traceparent.as_deref(),
            c.delivery.id,
            c.subscription.channel.as_str(),
            c.delivery.attempts + 1,
        );
        let sent = d.sender.send(&c.event, &c.subscription, &c.secrets, d.now()).instrument(span.clone()).await;
        span.record("http.response.status_code", sent.status_code);
        drop(span);
        self.metrics.observe_attempt(c.subscription.channel.as_str(), sent.latency);
        // The slots are free once the exchange is over; the lease stays with this worker (and
        // its heartbeat) until the recorder has written the outcome.
        drop(permits);
        gate.queued.fetch_sub(1, Ordering::Relaxed);
        let finished = Finished {
            delivery_id: c.delivery.id,
            subscription_id: c.subscription.id,
            channel: c.subscription.channel,
            attempts: c.delivery.attempts,
            sent,
        };
        if d.finished.send(finished).is_err() {
            // The recorder has stopped (shutdown): the lease runs out and another worker sends
            // the delivery again, which receivers de-duplicate by `webhook-id`.
            tracing::debug!(delivery = %c.delivery.id, "finished after the recorder stopped");
        }
    }

    /// Writes finished attempts in batches, one transaction per batch: under load, one commit
    /// covers hundreds of deliveries. Runs until `stop`, then writes what has already arrived.
    async fn run_recorder(&self, mut finished: mpsc::UnboundedReceiver<Finished>, stop: CancellationToken) {
        let mut batch = Vec::with_capacity(RECORD_BATCH);
        loop {
            tokio::select! {
                biased;
                n = finished.recv_many(&mut batch, RECORD_BATCH) => if n == 0 { return },
                _ = stop.cancelled() => {
                    self.drain_recorder(&mut finished, &mut batch).await;
                    return;
                }
            }
            self.record_with_retries(&mut batch).await;
        }
    }

    /// At shutdown: records the sends that finish while the deliveries this process holds
    /// are handed back or sent (up to the drain time), so that after a clean stop no delivery
    /// waits for a lease to run out.
    async fn drain_recorder(&self, finished: &mut mpsc::UnboundedReceiver<Finished>, batch: &mut Vec<Finished>) {
        let d = self.dispatcher();
        let deadline = tokio::time::Instant::now() + d.settings.drain;
        loop {
            while let Ok(f) = finished.try_recv() {
                batch.push(f);
            }
            self.record_with_retries(batch).await;
            let held = d.leased.lock().expect("lease lock").len();
            if held == 0 {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    deliveries = held,
                    "stopping with deliveries still being sent; their leases will run out"
                );
                return;
            }
            let _ = tokio::time::timeout_at(
                deadline.min(tokio::time::Instant::now() + Duration::from_millis(100)),
                finished.recv_many(batch, RECORD_BATCH),
            )
            .await;
        }
    }

    async fn record_with_retries(&self, batch: &mut Vec<Finished>) {
        if batch.is_empty() {
            return;
        }
        let d = self.dispatcher();
        for attempt in 1..=3 {
            match self.record(batch).await {
                Ok(()) => break,
                // Two replicas recording failures of the same subscriptions may deadlock; the
                // database aborts one, which tries again.
                Err(e) if attempt < 3 => {
                    tracing::debug!(error = %e, "recording delivery attempts failed; trying again");
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
                Err(e) => tracing::warn!(
                    error = %e,
                    deliveries = batch.len(),
                    "could not record delivery attempts; their leases will run out and they will be sent again"
                ),
            }
        }
        let mut leased = d.leased.lock().expect("lease lock");
        for f in batch.iter() {
            leased.remove(&f.delivery_id);
        }
        drop(leased);
        batch.clear();
        d.wake.notify_one();
    }

    /// Records a batch of attempts: the schedule, dead-lettering, and disabling subscriptions
    /// whose receivers are gone or have failed for too long.
    async fn record(&self, batch: &[Finished]) -> Result<()> {
        let d = self.dispatcher();
        let now = d.now();
        let results: Vec<AttemptResult> = batch
            .iter()
            .map(|f| {
                let attempts = (f.attempts + 1) as u32;
                let (status, next) = match f.sent.outcome {
                    Outcome::Delivered => (DeliveryStatus::Delivered, None),
                    Outcome::Gone => (DeliveryStatus::Failed, None),
                    Outcome::Retry { retry_after, slow_down } => {
                        match next_attempt_at(attempts, now, retry_after, slow_down, jitter()) {
                            Some(at) => (DeliveryStatus::Pending, Some(at)),
                            None => (DeliveryStatus::Failed, None),
                        }
                    }
                };
                AttemptResult {
                    attempt: attempt_of(f.delivery_id, f.subscription_id, now, &f.sent),
                    owner: d.owner.clone(),
                    status,
                    next_attempt_at: next,
                }
            })
            .collect();
        // Each subscription's outcomes in the order they finished.
        let mut outcomes: BTreeMap<Uuid, Vec<Outcome>> = BTreeMap::new();
        for f in batch {
            outcomes.entry(f.subscription_id).or_default().push(f.sent.outcome);
        }
        let mut tx = self.store.begin().await?;
        tx.record_attempts(&results).await?;
        let mut events = Vec::new();
        let mut healthy = Vec::new();
        // Rows are locked in id order, so replicas recording at once cannot deadlock on them.
        for (id, outcomes) in outcomes {
            if outcomes.iter().all(|o| *o == Outcome::Delivered) {
                healthy.push(id);
                continue;
            }
            let Some((mut s, secrets)) = tx.lock_subscription(id).await? else { continue };
            let before = s.clone();
            let failing_for = chrono::Duration::from_std(d.settings.disable_failing_after).unwrap_or_default();
            let mut disable = None;
            for outcome in outcomes {
                match outcome {
                    Outcome::Delivered => s.failing_since = None,
                    Outcome::Gone => disable = Some("the receiver answered 410 Gone".to_string()),
                    Outcome::Retry { .. } => {
                        let since = *s.failing_since.get_or_insert(now);
                        if now - since >= failing_for {
                            disable = Some(format!("every delivery failed for {} hours", failing_for.num_hours()));
                        }
                    }
                }
            }
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
        // A success ends a failing streak; in the usual case there is none and nothing is locked.
        tx.clear_failing(&healthy, now).await?;
        if events.is_empty() {
            tx.commit().await?;
        } else {
            tx.insert_events(&Self::traced(events)).await?;
            self.commit_with_events(tx).await?;
        }
        for (f, r) in batch.iter().zip(&results) {
            let outcome = match r.status {
                DeliveryStatus::Delivered => "delivered",
                DeliveryStatus::Pending => "retry_scheduled",
                _ => "failed",
            };
            self.metrics.count_outcome(f.channel.as_str(), outcome);
        }
        Ok(())
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
        let recorder = match self.dispatcher().finished_rx.lock().expect("recorder lock").take() {
            Some(rx) => {
                let service = self.clone();
                let stop = stop.clone();
                Some(tokio::spawn(async move { service.run_recorder(rx, stop).await }))
            }
            None => {
                tracing::error!("the dispatcher of this process is already running");
                return;
            }
        };
        *self.dispatcher().stop.lock().expect("stop lock") = Some(stop.clone());
        let mut sequenced = self.watch_sequenced();
        loop {
            if let Err(e) = self.dispatch_due(&stop).await {
                tracing::warn!(error = %e, "claiming deliveries failed");
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.dispatcher().wake.notified() => {}
                _ = sequenced.changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        if let Some(recorder) = recorder {
            let _ = recorder.await;
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
            let ids: Vec<Uuid> = d.leased.lock().expect("lease lock").iter().copied().collect();
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
