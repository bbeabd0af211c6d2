//! The sequencer: gives committed events consecutive seqs in the order they were written (one
//! process at a time), and fans them out in the same transaction.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Dispatcher;
use crate::domain::{Event, Result};

/// How many events one sequencer round takes.
const SEQUENCE_BATCH: u32 = 1000;
/// How long to wait before trying again when another process is sequencing, and how often.
const SEQUENCER_RETRY: Duration = Duration::from_millis(5);
const SEQUENCER_WAIT_ROUNDS: u32 = 200;
/// After sequencing at least this many events in one go, freed memory is given back.
const TRIM_AFTER_EVENTS: usize = SEQUENCE_BATCH as usize;
/// How often the sequencer looks without being woken (another replica's events when
/// notifications were lost, or no notifications at all).
const SEQUENCER_POLL: Duration = Duration::from_secs(1);

impl Dispatcher {
    /// Runs one sequencer round: gives committed, unsequenced events consecutive seqs in the
    /// order they were written. Returns how many (0 when there were none), or `None` when
    /// another process is the sequencer right now.
    pub(crate) async fn sequence_events(self: &Arc<Self>) -> Result<Option<usize>> {
        let mut tx = self.store.begin().await?;
        if !tx.lead_sequencer().await? {
            tx.commit().await?;
            return Ok(None);
        }
        let events = tx.unsequenced_events(SEQUENCE_BATCH).await?;
        if events.is_empty() {
            // Ends the transaction now, and with it the lead, rather than when the connection
            // is next tested.
            tx.commit().await?;
            return Ok(Some(0));
        }
        let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
        let seqs = tx.assign_sequence(&ids).await?;
        let events: Vec<Event> = events.into_iter().zip(&seqs).map(|(e, s)| Event { seq: Some(*s), ..e }).collect();
        let fanned_out = self.fan_out(tx.as_mut(), &events).await?;
        tx.commit().await?;
        self.send_claimed(fanned_out);
        if let Some(last) = seqs.last() {
            self.signals.note_sequenced(*last);
        }
        Ok(Some(events.len()))
    }

    /// Sequences until nothing is left. When another process is sequencing, it waits for its
    /// turn (briefly: that one may have looked before this process's events committed), so
    /// whoever writes events sees them sequenced without a cross-process wake-up per write.
    pub(crate) async fn sequence_all(self: &Arc<Self>) -> Result<usize> {
        let mut total = 0;
        let mut waited = 0;
        loop {
            match self.sequence_events().await? {
                Some(0) => return Ok(total),
                Some(n) => total += n,
                None if waited < SEQUENCER_WAIT_ROUNDS => {
                    waited += 1;
                    tokio::time::sleep(SEQUENCER_RETRY).await;
                }
                // Busy all along: the poll comes back.
                None => return Ok(total),
            }
        }
    }

    /// The sequencer loop: runs when this process commits events and every second (events a
    /// crashed process committed but did not sequence), until `stop`.
    pub(crate) async fn run_sequencer(self: Arc<Self>, stop: CancellationToken) {
        loop {
            match self.sequence_all().await {
                // A backlog (a start after downtime, a burst): its batches are freed now.
                Ok(n) if n >= TRIM_AFTER_EVENTS => crate::alloc::release_free_memory(),
                Ok(_) => {}
                Err(e) if e.is_outage() => tracing::debug!(error = %e, "sequencing events failed"),
                Err(e) => tracing::warn!(error = %e, "sequencing events failed"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.signals.events_written.notified() => {}
                _ = tokio::time::sleep(SEQUENCER_POLL) => {}
            }
        }
    }
}
