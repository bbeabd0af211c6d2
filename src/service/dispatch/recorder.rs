//! The recorder: writes finished attempts in batches, one transaction per batch (under load,
//! one commit covers hundreds of deliveries), with the retry schedule, dead-lettering, and
//! disabling subscriptions whose receivers are gone or have failed for too long.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Dispatcher, attempt_of};
use crate::domain::subscription::{Outcome, jitter, next_attempt_at};
use crate::domain::{Channel, DeliveryStatus, Event, Result};
use crate::notify::Sent;
use crate::service::events::traced;
use crate::store::AttemptResult;

/// At most this many finished attempts are written in one transaction.
const RECORD_BATCH: usize = 500;

/// A sent delivery whose outcome is still to be written.
pub(super) struct Finished {
    pub(super) delivery_id: Uuid,
    pub(super) subscription_id: Uuid,
    pub(super) channel: Channel,
    /// Attempts before this one.
    pub(super) attempts: i32,
    pub(super) sent: Sent,
}

impl Dispatcher {
    /// Writes finished attempts as they arrive, until `stop`; then writes what arrives while
    /// the deliveries this process holds are handed back or sent.
    pub(super) async fn run_recorder(
        self: Arc<Self>,
        mut finished: mpsc::UnboundedReceiver<Finished>,
        stop: CancellationToken,
    ) {
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
        let deadline = tokio::time::Instant::now() + self.settings.drain;
        loop {
            while let Ok(f) = finished.try_recv() {
                batch.push(f);
            }
            self.record_with_retries(batch).await;
            let held = self.leased.lock().expect("lease lock").len();
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
        let mut leased = self.leased.lock().expect("lease lock");
        for f in batch.iter() {
            leased.remove(&f.delivery_id);
        }
        drop(leased);
        batch.clear();
        self.wake();
    }

    /// Records a batch of attempts: the schedule, dead-lettering, and disabling subscriptions
    /// whose receivers are gone or have failed for too long.
    async fn record(&self, batch: &[Finished]) -> Result<()> {
        let now = self.now();
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
                    owner: self.owner.clone(),
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
        let failing_for = chrono::Duration::from_std(self.settings.disable_failing_after).unwrap_or_default();
        // Rows are locked in id order, so replicas recording at once cannot deadlock on them.
        for (id, outcomes) in outcomes {
            if outcomes.iter().all(|o| *o == Outcome::Delivered) {
                healthy.push(id);
                continue;
            }
            let Some((mut s, secrets)) = tx.lock_subscription(id).await? else { continue };
            let before = s.clone();
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
                s.touch(now);
                tx.update_subscription(&s, &secrets).await?;
            }
        }
        // A success ends a failing streak; in the usual case there is none and nothing is locked.
        tx.clear_failing(&healthy, now).await?;
        if events.is_empty() {
            tx.commit().await?;
        } else {
            tx.insert_events(&traced(events)).await?;
            self.signals.commit(tx).await?;
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
}
