//! Events after commit: the sequencer that gives committed events their commit order, listing
//! them, and the signals that wake whoever waits for new ones.

use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Service;
use crate::domain::component::Component;
use crate::domain::query::EventFilter;
use crate::domain::{Caller, Event, Permission, Result};
use crate::store::{Notice, Transaction};

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

/// In-process wake-ups.
pub(crate) struct Signals {
    /// A transaction that wrote events committed.
    pub(crate) events_written: Notify,
    /// The highest seq known to be given.
    pub(crate) sequenced: watch::Sender<i64>,
}

impl Signals {
    pub(crate) fn new() -> Self {
        Signals { events_written: Notify::new(), sequenced: watch::Sender::new(0) }
    }
}

impl Service {
    /// Runs one sequencer round: gives committed, unsequenced events consecutive seqs in the
    /// order they were written. Returns how many (0 when there were none), or `None` when
    /// another process is the sequencer right now.
    pub async fn sequence_events(&self) -> Result<Option<usize>> {
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
            self.note_sequenced(*last);
        }
        Ok(Some(events.len()))
    }

    /// Sequences until nothing is left. When another process is sequencing, it waits for its
    /// turn (briefly: that one may have looked before this process's events committed), so
    /// whoever writes events sees them sequenced without a cross-process wake-up per write.
    pub async fn sequence_all(&self) -> Result<usize> {
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
    pub async fn run_sequencer(&self, stop: CancellationToken) {
        loop {
            match self.sequence_all().await {
                // A backlog (a start after downtime, a burst): its batches are freed now.
                Ok(n) if n >= TRIM_AFTER_EVENTS => crate::alloc::release_free_memory(),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "sequencing events failed"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.signals.events_written.notified() => {}
                _ = tokio::time::sleep(SEQUENCER_POLL) => {}
            }
        }
    }

    /// Starts the background work of this process: the sequencer and, on a shared database,
    /// the listener for other processes' notices, and (with `deliver`) the dispatcher. All stop
    /// with `stop`; the handles finish once they have (the dispatcher after handing back or
    /// recording what it holds).
    pub async fn start_background(
        &self,
        stop: CancellationToken,
        deliver: bool,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>> {
        self.note_sequenced(self.store.latest_event_seq().await?);
        if let Some(mut notices) = self.store.notifications().await? {
            let service = self.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        notice = notices.recv() => match notice {
                            Some(n) => service.notice(n),
                            None => return,
                        },
                    }
                }
            });
        }
        let service = self.clone();
        let sequencer_stop = stop.clone();
        let mut tasks = vec![tokio::spawn(async move { service.run_sequencer(sequencer_stop).await })];
        if deliver {
            let service = self.clone();
            tasks.push(tokio::spawn(async move { service.run_dispatcher(stop).await }));
        }
        Ok(tasks)
    }

    /// Reacts to a notice from another process.
    pub fn notice(&self, notice: Notice) {
        match notice {
            Notice::Sequenced(seq) => self.note_sequenced(seq),
        }
    }

    fn note_sequenced(&self, seq: i64) {
        self.signals.sequenced.send_if_modified(|current| {
            let newer = seq > *current;
            if newer {
                *current = seq;
            }
            newer
        });
    }

    /// Wakes whenever events are sequenced; the value is the highest seq known.
    pub fn watch_sequenced(&self) -> watch::Receiver<i64> {
        self.signals.sequenced.subscribe()
    }

    /// Events after the cursor `after`, in commit order.
    pub async fn list_events(
        &self,
        caller: &Caller,
        after: i64,
        filter: &EventFilter,
        limit: u32,
    ) -> Result<Vec<Event>> {
        caller.require(Permission::ReadIncidents)?;
        self.store.list_events(after, filter, limit).await
    }

    /// The cursor of the latest event, for readers that start from now.
    pub async fn latest_event_seq(&self, caller: &Caller) -> Result<i64> {
        caller.require(Permission::ReadIncidents)?;
        self.store.latest_event_seq().await
    }

    /// Stamps events with the trace context of the request that causes them, so that the
    /// deliveries they fan out to continue its trace.
    pub(crate) fn traced(mut events: Vec<Event>) -> Vec<Event> {
        if let Some(traceparent) = crate::telemetry::current_traceparent() {
            for e in &mut events {
                e.traceparent = Some(traceparent.clone());
            }
        }
        events
    }

    /// Commits a transaction that wrote events and wakes the sequencer.
    pub(crate) async fn commit_with_events(&self, tx: Box<dyn Transaction>) -> Result<()> {
        tx.commit().await?;
        self.signals.events_written.notify_one();
        Ok(())
    }
}

/// The effective statuses of some components before a change, to tell afterwards which moved.
pub(crate) struct ComponentWatch {
    before: Vec<Component>,
}

impl ComponentWatch {
    /// Reads (and locks) the components. Call before writing the change.
    ///
    /// Rows are locked in id order, whatever order the change names them in, so two changes
    /// touching the same components cannot deadlock.
    pub(crate) async fn start(tx: &mut dyn Transaction, ids: impl IntoIterator<Item = Uuid>) -> Result<Self> {
        let mut before = Vec::new();
        let mut ids: Vec<Uuid> = ids.into_iter().collect();
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            if let Some((c, _)) = tx.lock_component(id).await? {
                before.push(c);
            }
        }
        Ok(ComponentWatch { before })
    }

    /// A `component.status_changed` event for each component whose effective status moved.
    pub(crate) async fn finish(
        self,
        tx: &mut dyn Transaction,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Event>> {
        let mut events = Vec::new();
        for before in self.before {
            if let Some((after, _)) = tx.lock_component(before.id).await?
                && after.effective_status != before.effective_status
            {
                events.push(Event::component_status_changed(&after, before.effective_status, now));
            }
        }
        Ok(events)
    }
}

/// How often an idle watcher looks again without being woken.
const WATCH_POLL: Duration = Duration::from_secs(5);

impl Service {
    /// Streams events after `after` (from now when `None`) as they are sequenced, in order,
    /// each once. The stream ends when the receiver is dropped.
    pub async fn watch_events(
        &self,
        caller: &Caller,
        after: Option<i64>,
        filter: EventFilter,
    ) -> Result<tokio::sync::mpsc::Receiver<Result<Event>>> {
        caller.require(Permission::ReadIncidents)?;
        let mut cursor = match after {
            Some(c) => c,
            None => self.store.latest_event_seq().await?,
        };
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let store = self.store.clone();
        let mut sequenced = self.watch_sequenced();
        let closing = self.closing.clone();
        tokio::spawn(async move {
            loop {
                // Everything up to `known` is visible once this query runs.
                let known = *sequenced.borrow_and_update();
                let batch = match store.list_events(cursor, &filter, 500).await {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let full = batch.len() == 500;
                for event in batch {
                    cursor = event.seq.unwrap_or(cursor);
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
                if full {
                    continue;
                }
                cursor = cursor.max(known);
                tokio::select! {
                    _ = tx.closed() => return,
                    // Shutdown: the stream ends; the client resumes from its last event id
                    // on another replica.
                    _ = closing.cancelled() => return,
                    changed = sequenced.changed() => if changed.is_err() { return },
                    _ = tokio::time::sleep(WATCH_POLL) => {}
                }
            }
        });
        Ok(rx)
    }
}
