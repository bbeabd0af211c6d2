//! The delivery engine behind the outbox: the sequencer gives committed events their commit
//! order and fans them out to the subscriptions that want them (`sequencer.rs`,
//! `fanout.rs`); workers claim due deliveries under a lease and send them (`sending.rs`),
//! a heartbeat keeps the leases of deliveries in flight, and the recorder writes the outcomes
//! in batches: the retry schedule, dead-lettering, and disabling subscriptions whose receivers
//! are gone or keep failing (`recorder.rs`).
//!
//! The [`Dispatcher`] owns what it needs (the store, the sender, the settings, the metrics
//! and the in-process signals), as svix's worker does; the service only hands it the events
//! a use case committed and delegates to it.

mod fanout;
mod recorder;
mod sending;
mod sequencer;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Metrics;
use super::events::Signals;
use crate::domain::DeliveryAttempt;
use crate::notify::{Sender, Sent};
use crate::store::DynStore;

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

/// A process holds at most this many claimed deliveries per delivery it may send at once.
const CLAIMED_PER_IN_FLIGHT: usize = 16;
/// A subscription is not claimed for while this many deliveries per slot wait for it.
const QUEUED_PER_SLOT: usize = 8;
/// How often the dispatcher looks for due deliveries without being woken.
const DISPATCH_POLL: Duration = Duration::from_secs(1);

/// The delivery engine of this process.
pub(crate) struct Dispatcher {
    store: DynStore,
    sender: Sender,
    settings: DispatchSettings,
    metrics: Arc<Metrics>,
    signals: Arc<Signals>,
    /// This process's name on the leases it holds.
    owner: String,
    wake: Notify,
    /// Deliveries being sent.
    in_flight: Arc<Semaphore>,
    /// Deliveries claimed and not yet finished (queued for a slot or being sent).
    claimed: Arc<Semaphore>,
    per_subscription: Mutex<HashMap<Uuid, Arc<Gate>>>,
    /// The deliveries this process holds a lease on.
    leased: Mutex<HashSet<Uuid>>,
    finished: mpsc::UnboundedSender<recorder::Finished>,
    finished_rx: Mutex<Option<mpsc::UnboundedReceiver<recorder::Finished>>>,
    /// Set while the dispatcher runs.
    stop: Mutex<Option<CancellationToken>>,
}

/// One subscription's share of the dispatcher: slots for concurrent sends and a count of the
/// deliveries claimed for it and not yet finished.
struct Gate {
    slots: Arc<Semaphore>,
    queued: AtomicUsize,
}

impl Dispatcher {
    pub(crate) fn new(
        store: DynStore,
        sender: Sender,
        settings: DispatchSettings,
        metrics: Arc<Metrics>,
        signals: Arc<Signals>,
    ) -> Self {
        let (finished, finished_rx) = mpsc::unbounded_channel();
        Dispatcher {
            store,
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
            metrics,
            signals,
            settings,
        }
    }

    pub(crate) fn sender(&self) -> &Sender {
        &self.sender
    }

    pub(crate) fn settings(&self) -> &DispatchSettings {
        &self.settings
    }

    /// The time on the dispatcher's clock.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.settings.clock.now()
    }

    /// When a lease taken now runs out.
    fn lease_until(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + chrono::Duration::from_std(self.settings.lease).unwrap_or_default()
    }

    /// Wakes the dispatcher: deliveries became due (a retry, a resume, a moved test clock).
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
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

    /// How many more deliveries a subscription may have claimed here before it counts as
    /// saturated.
    fn room(&self, subscription_id: Uuid) -> usize {
        let cap = self.settings.per_subscription * QUEUED_PER_SLOT;
        cap.saturating_sub(self.subscription_gate(subscription_id).queued.load(Ordering::Relaxed))
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

    /// The dispatcher loop: sends due deliveries when woken (new deliveries, a finished one,
    /// a retry or resume) and at least every second; a heartbeat keeps the leases of
    /// deliveries in flight. Stops claiming when `stop` fires, then waits for the recorder to
    /// hand back or record what this process holds.
    pub(crate) async fn run(self: Arc<Self>, stop: CancellationToken) {
        let Some(finished) = self.finished_rx.lock().expect("recorder lock").take() else {
            tracing::error!("the dispatcher of this process is already running");
            return;
        };
        let heartbeat = tokio::spawn(self.clone().heartbeat(stop.clone()));
        let recorder = tokio::spawn(self.clone().run_recorder(finished, stop.clone()));
        *self.stop.lock().expect("stop lock") = Some(stop.clone());
        let mut sequenced = self.signals.sequenced.subscribe();
        loop {
            match self.dispatch_due(&stop).await {
                Err(e) if e.is_outage() => tracing::debug!(error = %e, "claiming deliveries failed"),
                Err(e) => tracing::warn!(error = %e, "claiming deliveries failed"),
                Ok(_) => {}
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = sequenced.changed() => {}
                _ = tokio::time::sleep(DISPATCH_POLL) => {}
            }
        }
        let _ = recorder.await;
        heartbeat.abort();
    }

    /// Extends the leases of the deliveries this process holds, three times per lease.
    async fn heartbeat(self: Arc<Self>, stop: CancellationToken) {
        let every = self.settings.lease / 3;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let ids: Vec<Uuid> = self.leased.lock().expect("lease lock").iter().copied().collect();
            if ids.is_empty() {
                continue;
            }
            if let Err(e) = self.store.extend_leases(&self.owner, &ids, self.lease_until(self.now())).await {
                tracing::warn!(error = %e, "extending delivery leases failed");
            }
        }
    }
}

/// The attempt record of a send.
pub(crate) fn attempt_of(delivery_id: Uuid, subscription_id: Uuid, now: DateTime<Utc>, sent: &Sent) -> DeliveryAttempt {
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
