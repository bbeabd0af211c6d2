//! Claiming due deliveries and sending them: a slot of the subscription and one of the
//! process per send, so a slow receiver only slows itself.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::recorder::Finished;
use super::{Dispatcher, Gate};
use crate::domain::{Error, Result};
use crate::store::ClaimedDelivery;

/// At most this many deliveries are claimed in one query.
const CLAIM_BATCH: usize = 256;

impl Dispatcher {
    /// Claims due deliveries, many per query, and starts sending them, until none are due or
    /// this process has claimed as many as it may hold. Returns how many it claimed.
    pub(super) async fn dispatch_due(self: &Arc<Self>, stop: &CancellationToken) -> Result<usize> {
        let mut started = 0;
        loop {
            let free = self.claimed.available_permits();
            if free == 0 || stop.is_cancelled() {
                return Ok(started);
            }
            let now = self.now();
            let limit = free.min(CLAIM_BATCH) as u32;
            let claimed =
                self.store.claim_deliveries(&self.owner, now, self.lease_until(now), limit, &self.saturated()).await?;
            if claimed.is_empty() {
                return Ok(started);
            }
            let full = claimed.len() == limit as usize;
            // A lease of this process's own that looked lapsed (its heartbeat was late) comes
            // back renewed; that delivery is already in flight here, so it is not sent again.
            let claimed: Vec<ClaimedDelivery> = {
                let mut leased = self.leased.lock().expect("lease lock");
                claimed.into_iter().filter(|c| leased.insert(c.delivery.id)).collect()
            };
            for c in claimed {
                // Rarely waits: fan-out may have taken some since `free` was read, and then
                // deliveries finish soon.
                let permit = self.claimed.clone().acquire_owned().await.map_err(|e| Error::Internal(e.to_string()))?;
                started += 1;
                self.start_delivery(c, permit, stop);
            }
            if !full {
                return Ok(started);
            }
        }
    }

    pub(super) fn start_delivery(
        self: &Arc<Self>,
        c: ClaimedDelivery,
        permit: OwnedSemaphorePermit,
        stop: &CancellationToken,
    ) {
        let gate = self.subscription_gate(c.subscription.id);
        gate.queued.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(self.clone().deliver(c, gate, permit, stop.clone()));
    }

    /// Waits for a slot of the subscription and one of the process, sends, and hands the
    /// outcome to the recorder. At shutdown, a delivery still waiting is handed back.
    async fn deliver(
        self: Arc<Self>,
        c: ClaimedDelivery,
        gate: Arc<Gate>,
        _claim: OwnedSemaphorePermit,
        stop: CancellationToken,
    ) {
        let slots = async {
            let slot = gate.slots.clone().acquire_owned().await.ok()?;
            let global = self.in_flight.clone().acquire_owned().await.ok()?;
            Some((slot, global))
        };
        let permits = tokio::select! {
            biased;
            permits = slots => permits,
            _ = stop.cancelled() => None,
        };
        let Some(permits) = permits else {
            gate.queued.fetch_sub(1, Ordering::Relaxed);
            if let Err(e) = self.store.release_deliveries(&self.owner, &[c.delivery.id], self.now()).await {
                tracing::debug!(error = %e, delivery = %c.delivery.id, "could not hand back a delivery; its lease will run out");
            }
            self.leased.lock().expect("lease lock").remove(&c.delivery.id);
            return;
        };
        let span = crate::telemetry::delivery_span(
            c.event.traceparent.as_deref(),
            c.delivery.id,
            c.subscription.channel.as_str(),
            c.delivery.attempts + 1,
        );
        let sent = self.sender.send(&c.event, &c.subscription, &c.secrets, self.now()).instrument(span.clone()).await;
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
        if self.finished.send(finished).is_err() {
            // The recorder has stopped (shutdown): the lease runs out and another worker sends
            // the delivery again, which receivers de-duplicate by `webhook-id`.
            tracing::debug!(delivery = %c.delivery.id, "finished after the recorder stopped");
        }
    }
}
