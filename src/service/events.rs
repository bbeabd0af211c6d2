//! Events after commit: listing them, streaming them as they are sequenced, and the signals
//! that wake whoever waits for new ones (the sequencer, the dispatcher, live streams).

use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::Service;
use crate::domain::query::EventFilter;
use crate::domain::{Caller, Event, Permission, Result};
use crate::store::{Notice, Transaction};

/// In-process wake-ups.
pub(crate) struct Signals {
    /// A transaction that wrote events committed.
    pub(crate) events_written: Notify,
    /// The highest seq known to be given.
    pub(crate) sequenced: watch::Sender<i64>,
    /// Counts the moments something customers see may have changed: events sequenced here or
    /// elsewhere, and changes that write no event (components created, renamed, deleted).
    pub(crate) public: watch::Sender<u64>,
}

impl Signals {
    pub(crate) fn new() -> Self {
        Signals { events_written: Notify::new(), sequenced: watch::Sender::new(0), public: watch::Sender::new(0) }
    }

    /// Notes that something customers see may have changed.
    pub(crate) fn note_public_change(&self) {
        self.public.send_modify(|n| *n += 1);
    }

    /// Commits a transaction that wrote events and wakes the sequencer.
    pub(crate) async fn commit(&self, tx: Box<dyn Transaction>) -> Result<()> {
        tx.commit().await?;
        self.events_written.notify_one();
        Ok(())
    }

    /// Notes that events up to `seq` are sequenced (here or by another process).
    pub(crate) fn note_sequenced(&self, seq: i64) {
        let newer = self.sequenced.send_if_modified(|current| {
            let newer = seq > *current;
            if newer {
                *current = seq;
            }
            newer
        });
        if newer {
            self.note_public_change();
        }
    }
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

impl Service {
    /// Reacts to a notice from another process.
    pub fn notice(&self, notice: Notice) {
        match notice {
            Notice::Sequenced(seq) => self.signals.note_sequenced(seq),
            Notice::PublicChanged => self.signals.note_public_change(),
        }
    }

    /// Wakes whenever something customers see may have changed (the public surfaces rebuild).
    pub fn watch_public(&self) -> watch::Receiver<u64> {
        self.signals.public.subscribe()
    }

    /// Has this process's public surfaces rebuilt soon, as after a change (for data changed
    /// behind the service's back, such as a restored backup).
    pub fn refresh_public(&self) {
        self.signals.note_public_change();
    }

    /// Wakes whenever events are sequenced; the value is the highest seq known.
    pub fn watch_sequenced(&self) -> watch::Receiver<i64> {
        self.signals.sequenced.subscribe()
    }

    /// Events after the cursor `after`, in commit order; 0 reads from the oldest event kept.
    /// A cursor older than what is kept fails with `CursorExpired` (never a silent gap).
    pub async fn list_events(
        &self,
        caller: &Caller,
        after: i64,
        filter: &EventFilter,
        limit: u32,
    ) -> Result<Vec<Event>> {
        caller.require(Permission::ReadIncidents)?;
        let from = if after == 0 { self.store.events_pruned_through().await? } else { after };
        let events = self.store.list_events(from, filter, limit).await?;
        self.check_cursor(after).await?;
        Ok(events)
    }

    /// The cursor of the latest event, for readers that start from now.
    pub async fn latest_event_seq(&self, caller: &Caller) -> Result<i64> {
        caller.require(Permission::ReadIncidents)?;
        self.store.latest_event_seq().await
    }

    /// Commits a transaction that wrote events and wakes the sequencer.
    pub(crate) async fn commit_with_events(&self, tx: Box<dyn Transaction>) -> Result<()> {
        self.signals.commit(tx).await
    }
}

/// How often an idle watcher looks again without being woken.
const WATCH_POLL: Duration = Duration::from_secs(5);

impl Service {
    /// Streams events after `after` (from now when `None`, from the oldest kept when 0) as
    /// they are sequenced, in order, each once. The stream ends when the receiver is dropped;
    /// it fails with `CursorExpired` (before it starts, or as its last item if pruning
    /// overtakes a slow reader) when events after its cursor are no longer kept.
    pub async fn watch_events(
        &self,
        caller: &Caller,
        after: Option<i64>,
        filter: EventFilter,
    ) -> Result<tokio::sync::mpsc::Receiver<Result<Event>>> {
        caller.require(Permission::ReadIncidents)?;
        let mut cursor = match after {
            Some(0) => self.store.events_pruned_through().await?,
            Some(c) => {
                self.check_cursor(c).await?;
                c
            }
            None => self.store.latest_event_seq().await?,
        };
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let service = self.clone();
        let store = self.store.clone();
        let mut sequenced = self.watch_sequenced();
        let closing = self.closing.clone();
        tokio::spawn(async move {
            loop {
                // Everything up to `known` is visible once this query runs.
                let known = *sequenced.borrow_and_update();
                let read = store.list_events(cursor, &filter, 500).await;
                let batch = match service.check_cursor(cursor).await.and(read) {
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
