//! The event log on SQLite: one process owns the file, so the sequencer needs no lock and
//! there are no other processes to notify.

use async_trait::async_trait;
use sqlx::types::Json;
use uuid::Uuid;

use super::{SqliteStore, SqliteTx, db_err};
use crate::domain::query::EventFilter;
use crate::domain::{Event, Result};
use crate::store::sql::events::{EventRow, EventWrite, INSERT_EVENT, LATEST_SEQ, SELECT_UNSEQUENCED, events_query};
use crate::store::{EventStore, EventTx, Notice};

#[async_trait]
impl EventStore for SqliteStore {
    async fn list_events(&self, after: i64, filter: &EventFilter, limit: u32) -> Result<Vec<Event>> {
        super::list::<EventRow, _>(&self.readers, Ok(events_query(after, filter, limit))).await
    }

    async fn latest_event_seq(&self) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as(LATEST_SEQ).fetch_one(&self.readers).await.map_err(db_err)?;
        Ok(n)
    }

    async fn notifications(&self) -> Result<Option<tokio::sync::mpsc::Receiver<Notice>>> {
        Ok(None)
    }
}

#[async_trait]
impl EventTx for SqliteTx {
    async fn insert_events(&mut self, events: &[Event]) -> Result<()> {
        for e in events {
            EventWrite::from(e).bind(sqlx::query(INSERT_EVENT.as_str())).execute(self.conn()).await.map_err(db_err)?;
        }
        Ok(())
    }

    async fn lead_sequencer(&mut self) -> Result<bool> {
        // The write transaction already excludes every other writer.
        Ok(true)
    }

    async fn unsequenced_events(&mut self, limit: u32) -> Result<Vec<Event>> {
        let rows: Vec<EventRow> = sqlx::query_as(SELECT_UNSEQUENCED.as_str())
            .bind(i64::from(limit))
            .fetch_all(self.conn())
            .await
            .map_err(db_err)?;
        rows.into_iter().map(Event::try_from).collect()
    }

    async fn assign_sequence(&mut self, ids: &[Uuid]) -> Result<Vec<i64>> {
        let conn = self.conn();
        let n = ids.len() as i64;
        let (last,): (i64,) =
            sqlx::query_as("UPDATE counters SET value = value + $1 WHERE name = 'event_seq' RETURNING value")
                .bind(n)
                .fetch_one(&mut *conn)
                .await
                .map_err(db_err)?;
        let seqs: Vec<i64> = (last - n + 1..=last).collect();
        let pairs: Vec<(String, i64)> =
            ids.iter().map(|id| id.hyphenated().to_string()).zip(seqs.iter().copied()).collect();
        sqlx::query(
            "UPDATE events SET seq = m.seq FROM (SELECT json_extract(value, '$[0]') AS id, \
             json_extract(value, '$[1]') AS seq FROM json_each($1)) AS m WHERE events.id = m.id",
        )
        .bind(Json(&pairs))
        .execute(conn)
        .await
        .map_err(db_err)?;
        Ok(seqs)
    }

    async fn announce_public_change(&mut self) -> Result<()> {
        // One process owns the file: there is no one else to tell.
        Ok(())
    }
}
