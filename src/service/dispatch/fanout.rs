//! Fan-out: a delivery for every subscription that wants each newly sequenced event, and a
//! queued mail for every confirmed customer subscriber who should hear of it
//! (`domain::customer_mail`), written in the sequencer's transaction.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Dispatcher;
use crate::domain::customer_mail::notifies_subscribers;
use crate::domain::subscription::SigningSecrets;
use crate::domain::{Delivery, DeliveryStatus, Event, Result, Subscription};
use crate::store::{ClaimedDelivery, Lease, NewDelivery, Transaction};

/// The deliveries fan-out claimed for this process to send.
#[derive(Default)]
pub(crate) struct FannedOut {
    claimed: Vec<(ClaimedDelivery, OwnedSemaphorePermit)>,
    /// The running dispatcher's stop signal.
    stop: Option<CancellationToken>,
}

impl Dispatcher {
    /// Fan-out, inside the sequencer's transaction. As many deliveries as this process's
    /// dispatcher can take are created already claimed by it, to send as soon as the
    /// transaction commits ([`Dispatcher::send_claimed`]) without a round through the table;
    /// the rest are pending for whichever worker claims them.
    pub(crate) async fn fan_out(&self, tx: &mut dyn Transaction, events: &[Event]) -> Result<FannedOut> {
        let for_customers: Vec<&Event> = events.iter().filter(|e| notifies_subscribers(e)).collect();
        if !for_customers.is_empty() {
            tx.queue_customer_mails(&for_customers, self.now()).await?;
        }
        let subscriptions = tx.fanout_subscriptions().await?;
        if subscriptions.is_empty() {
            return Ok(FannedOut::default());
        }
        let now = self.now();
        let dispatching = self.stop.lock().expect("stop lock").clone().filter(|stop| !stop.is_cancelled());
        // What each subscription may still take here before it counts as saturated.
        let mut room: HashMap<Uuid, usize> = subscriptions
            .iter()
            .filter(|(s, _)| dispatching.is_some() && !s.paused)
            .map(|(s, _)| (s.id, self.room(s.id)))
            .collect();
        let mut new = Vec::new();
        let mut permits = Vec::new();
        for event in events {
            for (s, _) in subscriptions.iter().filter(|(s, _)| s.wants(event)) {
                let claimed = match room.get_mut(&s.id) {
                    Some(left) if *left > 0 => match self.claimed.clone().try_acquire_owned() {
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
        tx.insert_deliveries(&new, now, Lease { owner: &self.owner, until: self.lease_until(now) }).await?;
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
    pub(crate) fn send_claimed(self: &Arc<Self>, fanned_out: FannedOut) {
        let Some(stop) = fanned_out.stop else { return };
        self.leased.lock().expect("lease lock").extend(fanned_out.claimed.iter().map(|(c, _)| c.delivery.id));
        for (c, permit) in fanned_out.claimed {
            self.start_delivery(c, permit, &stop);
        }
    }
}
