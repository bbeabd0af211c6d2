//! The event log on Postgres: the sequencer's advisory lock, and notices between replicas
//! over LISTEN/NOTIFY.

use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use super::{Deferred, PgStore, PgTx, db_err};
use crate::domain::query::EventFilter;
use crate::domain::{Event, Result};
use crate::store::sql::events::{EventRow, LATEST_SEQ, SELECT_UNSEQUENCED, events_query};
use crate::store::{EventStore, EventTx, Notice};

/// The advisory lock the sequencer holds while it runs (one replica at a time).
const SEQUENCER_LOCK: i64 = 0x696e_6369_6465_6e01;
/// The channel sequencers announce new seqs on.
const SEQUENCED_CHANNEL: &str = "incidentd_sequenced";
/// The channel changes customers see without an event are announced on.
const PUBLIC_CHANNEL: &str = "incidentd_public";

#[async_trait]
impl EventStore for PgStore {
    async fn list_events(&self, after: i64, filter: &EventFilter, limit: u32) -> Result<Vec<Event>> {
        super::list::<EventRow, _>(&self.pool, Ok(events_query(after, filter, limit))).await
    }

    async fn latest_event_seq(&self) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as(LATEST_SEQ).fetch_one(&self.pool).await.map_err(db_err)?;
        Ok(n)
    }

    async fn notifications(&self) -> Result<Option<tokio::sync::mpsc::Receiver<Notice>>> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await.map_err(db_err)?;
        listener.listen_all([SEQUENCED_CHANNEL, PUBLIC_CHANNEL]).await.map_err(db_err)?;
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(async move {
            loop {
                // recv() reconnects after a lost connection; what was sent meanwhile is found
                // by polling.
                match listener.recv().await {
                    Ok(n) => {
                        let notice = match n.channel() {
                            PUBLIC_CHANNEL => Notice::PublicChanged,
                            _ => Notice::Sequenced(n.payload().parse().unwrap_or(0)),
                        };
                        if tx.send(notice).await.is_err() {
                            return;
                        }
                    }
                    // The database going away is reported by the readiness watcher.
                    Err(e) => {
                        tracing::debug!(error = %e, "listening for notifications failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(Some(rx))
    }
}

#[async_trait]
impl EventTx for PgTx {
    async fn insert_events(&mut self, events: &[Event]) -> Result<()> {
        self.deferred.extend(events.iter().cloned().map(Deferred::Event));
        Ok(())
    }

    async fn lead_sequencer(&mut self) -> Result<bool> {
        let (led,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_xact_lock($1)")
            .bind(SEQUENCER_LOCK)
            .fetch_one(self.conn().await?)
            .await
            .map_err(db_err)?;
        Ok(led)
    }

    async fn unsequenced_events(&mut self, limit: u32) -> Result<Vec<Event>> {
        let rows: Vec<EventRow> = sqlx::query_as(SELECT_UNSEQUENCED.as_str())
            .bind(i64::from(limit))
            .fetch_all(self.conn().await?)
            .await
            .map_err(db_err)?;
        rows.into_iter().map(Event::try_from).collect()
    }

    async fn assign_sequence(&mut self, ids: &[Uuid]) -> Result<Vec<i64>> {
        // The counter, the events and the cross-process notice in one statement.
        let n = ids.len() as i64;
        let (last,): (i64,) = sqlx::query_as(
            "WITH c AS (UPDATE counters SET value = value + $2 WHERE name = 'event_seq' RETURNING value), \
                  s AS (SELECT u.id, (SELECT value FROM c) - $2 + u.ord AS seq \
                        FROM unnest($1::uuid[]) WITH ORDINALITY AS u(id, ord)), \
                  e AS (UPDATE events SET seq = s.seq FROM s WHERE events.id = s.id) \
             SELECT value FROM c, LATERAL (SELECT pg_notify($3, c.value::text)) AS notified",
        )
        .bind(ids)
        .bind(n)
        .bind(SEQUENCED_CHANNEL)
        .fetch_one(self.conn().await?)
        .await
        .map_err(db_err)?;
        Ok((last - n + 1..=last).collect())
    }

    async fn announce_public_change(&mut self) -> Result<()> {
        // NOTIFY is delivered at commit, and only if the transaction commits.
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(PUBLIC_CHANNEL)
            .execute(self.conn().await?)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}
