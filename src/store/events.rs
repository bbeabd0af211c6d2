//! The event log: the outbox every change writes to, and its commit order.

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::query::EventFilter;
use crate::domain::{Event, Result};

/// Something another process did that this one should react to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Events up to this seq were sequenced.
    Sequenced(i64),
    /// Something customers see changed without an event (a component was created, renamed,
    /// moved or deleted).
    PublicChanged,
}

#[async_trait]
pub trait EventStore {
    /// Sequenced events after `after` (a seq), in commit order.
    async fn list_events(&self, after: i64, filter: &EventFilter, limit: u32) -> Result<Vec<Event>>;
    /// The highest seq given so far (0 before the first).
    async fn latest_event_seq(&self) -> Result<i64>;
    /// Notices from other processes sharing the database (Postgres LISTEN/NOTIFY); `None`
    /// where there are none (SQLite serves one process).
    async fn notifications(&self) -> Result<Option<tokio::sync::mpsc::Receiver<Notice>>>;
}

#[async_trait]
pub trait EventTx {
    /// Writes events, unsequenced: the caller wakes this process's sequencer after the commit.
    async fn insert_events(&mut self, events: &[Event]) -> Result<()>;
    /// Becomes the sequencer for the rest of this transaction; false when another process
    /// already is.
    async fn lead_sequencer(&mut self) -> Result<bool>;
    /// Committed events without a seq yet, oldest first.
    async fn unsequenced_events(&mut self, limit: u32) -> Result<Vec<Event>>;
    /// Gives the events consecutive seqs after the last one given, in this order; returns them.
    async fn assign_sequence(&mut self, ids: &[Uuid]) -> Result<Vec<i64>>;
    /// Tells the other processes sharing the database, once this transaction commits, that
    /// something customers see changed ([`Notice::PublicChanged`]); nothing where there are none.
    async fn announce_public_change(&mut self) -> Result<()>;
}
