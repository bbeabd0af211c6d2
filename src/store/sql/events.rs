//! The event log: rows, conversions and the statements both backends share.

use std::sync::LazyLock;

use sqlx::types::Json;
use sqlx::{Database, Encode, QueryBuilder, Type};
use uuid::Uuid;

use super::{DbId, DbTime, insert_sql, parse, parse_opt, read_row, select_sql, write_row};
use crate::domain::query::EventFilter;
use crate::domain::{Error, Event, Result};

read_row! {
    /// An event as read.
    pub struct EventRow {
        id: DbId,
        seq: Option<i64>,
        event_type = "type": String,
        subject: String,
        time: DbTime,
        severity: Option<String>,
        component_ids: Json<Vec<Uuid>>,
        data: Json<serde_json::Value>,
        public_data: Option<Json<serde_json::Value>>,
        traceparent: Option<String>,
    }
}

write_row! {
    /// An event as written.
    pub struct EventWrite<'a> {
        id: DbId,
        seq: Option<i64>,
        event_type = "type": &'a str,
        subject: &'a str,
        time: DbTime,
        severity: Option<&'a str>,
        component_ids: Json<&'a Vec<Uuid>>,
        data: Json<&'a serde_json::Value>,
        public_data: Option<Json<&'a serde_json::Value>>,
        traceparent: Option<&'a str>,
    }
}

impl<'a> From<&'a Event> for EventWrite<'a> {
    fn from(event: &'a Event) -> Self {
        let Event { id, seq, event_type, subject, time, severity, component_ids, data, public_data, traceparent } =
            event;
        EventWrite {
            id: DbId(*id),
            seq: *seq,
            event_type: event_type.as_str(),
            subject,
            time: DbTime(*time),
            severity: severity.map(|s| s.as_str()),
            component_ids: Json(component_ids),
            data: Json(data),
            public_data: public_data.as_ref().map(Json),
            traceparent: traceparent.as_deref(),
        }
    }
}

impl TryFrom<EventRow> for Event {
    type Error = Error;
    fn try_from(row: EventRow) -> Result<Event> {
        let EventRow { id, seq, event_type, subject, time, severity, component_ids, data, public_data, traceparent } =
            row;
        Ok(Event {
            id: id.0,
            seq,
            event_type: parse("type", &event_type)?,
            subject,
            time: time.0,
            severity: parse_opt("severity", severity.as_deref())?,
            component_ids: component_ids.0,
            data: data.0,
            public_data: public_data.map(|d| d.0),
            traceparent,
        })
    }
}

pub const EVENT_TABLE: &str = "events";
pub static INSERT_EVENT: LazyLock<String> = LazyLock::new(|| insert_sql(EVENT_TABLE, EventWrite::COLUMNS));
pub static SELECT_EVENTS: LazyLock<String> = LazyLock::new(|| select_sql(EventRow::COLUMNS, EVENT_TABLE, ""));
pub static SELECT_UNSEQUENCED: LazyLock<String> =
    LazyLock::new(|| format!("{}WHERE seq IS NULL ORDER BY id LIMIT $1", *SELECT_EVENTS));
pub const LATEST_SEQ: &str = "SELECT value FROM counters WHERE name = 'event_seq'";

/// Sequenced events after `after`, in commit order.
pub fn events_query<DB>(after: i64, filter: &EventFilter, limit: u32) -> QueryBuilder<DB>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let EventFilter { types, subject, public_only } = filter;
    let mut q = QueryBuilder::<DB>::new(format!("{}WHERE seq > ", *SELECT_EVENTS));
    q.push_bind(after);
    if !types.is_empty() {
        q.push(" AND type IN (");
        let mut sep = q.separated(", ");
        for t in types {
            sep.push_bind(t.as_str().to_string());
        }
        q.push(")");
    }
    if let Some(s) = subject {
        q.push(" AND subject = ").push_bind(s.clone());
    }
    if *public_only {
        q.push(" AND public_data IS NOT NULL");
    }
    q.push(" ORDER BY seq LIMIT ").push_bind(i64::from(limit));
    q
}
