//! Component status history: rows, conversions and the statements both backends share.

use std::sync::LazyLock;

use sqlx::{Database, Encode, QueryBuilder, Type};
use uuid::Uuid;

use super::{
    DbId, DbTime, OPEN_STATUSES, insert_sql, parse, push_newest_first, read_row, select_sql, untime, write_row,
};
use crate::domain::history::{Imposed, StatusChange};
use crate::domain::page::PageToken;
use crate::domain::{Error, Result};
use crate::store::Imposition;

read_row! {
    /// A status change as read.
    pub struct StatusChangeRow {
        id: DbId,
        component_id: DbId,
        changed_at: DbTime,
        from_status: String,
        to_status: String,
        incident_id: Option<DbId>,
        maintenance_id: Option<DbId>,
    }
}

write_row! {
    /// A status change as written.
    pub struct StatusChangeWrite<'a> {
        id: DbId,
        component_id: DbId,
        changed_at: DbTime,
        from_status: &'a str,
        to_status: &'a str,
        incident_id: Option<DbId>,
        maintenance_id: Option<DbId>,
    }
}

impl<'a> From<&'a StatusChange> for StatusChangeWrite<'a> {
    fn from(change: &'a StatusChange) -> Self {
        let StatusChange { id, component_id, changed_at, from_status, to_status, incident_id, maintenance_id } = change;
        StatusChangeWrite {
            id: DbId(*id),
            component_id: DbId(*component_id),
            changed_at: DbTime(*changed_at),
            from_status: from_status.as_str(),
            to_status: to_status.as_str(),
            incident_id: incident_id.map(DbId),
            maintenance_id: maintenance_id.map(DbId),
        }
    }
}

impl TryFrom<StatusChangeRow> for StatusChange {
    type Error = Error;
    fn try_from(row: StatusChangeRow) -> Result<StatusChange> {
        let StatusChangeRow { id, component_id, changed_at, from_status, to_status, incident_id, maintenance_id } = row;
        Ok(StatusChange {
            id: id.0,
            component_id: component_id.0,
            changed_at: changed_at.0,
            from_status: parse("from_status", &from_status)?,
            to_status: parse("to_status", &to_status)?,
            incident_id: incident_id.map(|i| i.0),
            maintenance_id: maintenance_id.map(|i| i.0),
        })
    }
}

pub const HISTORY_TABLE: &str = "component_status_changes";
pub static INSERT_STATUS_CHANGE: LazyLock<String> =
    LazyLock::new(|| insert_sql(HISTORY_TABLE, StatusChangeWrite::COLUMNS));

/// A component's status changes newest first, after the page token.
pub fn status_changes_query<DB>(component_id: Uuid, after: Option<&PageToken>, limit: u32) -> Result<QueryBuilder<DB>>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'t> DbId: Encode<'t, DB> + Type<DB>,
    for<'t> DbTime: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::<DB>::new(select_sql(StatusChangeRow::COLUMNS, HISTORY_TABLE, "WHERE component_id = "));
    q.push_bind(DbId(component_id));
    push_newest_first(&mut q, "changed_at", after, limit)?;
    Ok(q)
}

/// The changes at or after `since`, of one component or all, oldest first.
pub fn changes_since_query<DB>(component_id: Option<Uuid>, since: chrono::DateTime<chrono::Utc>) -> QueryBuilder<DB>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'t> DbId: Encode<'t, DB> + Type<DB>,
    for<'t> DbTime: Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::<DB>::new(select_sql(StatusChangeRow::COLUMNS, HISTORY_TABLE, "WHERE changed_at >= "));
    q.push_bind(DbTime(since));
    if let Some(c) = component_id {
        q.push(" AND component_id = ").push_bind(DbId(c));
    }
    q.push(" ORDER BY changed_at, id");
    q
}

/// Sets the backfill marker, once: the transaction whose update took it does the replay.
pub const CLAIM_BACKFILL: &str =
    "UPDATE counters SET value = 1 WHERE name = 'component_history_backfilled' AND value = 0";

/// Every recorded imposition with its incident's span: declared until resolved (or, for a
/// closed incident somehow never resolved, until it last changed).
pub static IMPOSITIONS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT ic.component_id, c.status, ic.incident_id, ic.status, i.created_at, \
         CASE WHEN i.status IN {} THEN NULL ELSE coalesce(i.resolved_at, i.closed_at, i.updated_at) END \
         FROM incident_components ic JOIN incidents i ON i.id = ic.incident_id \
         JOIN components c ON c.id = ic.component_id ORDER BY ic.component_id, i.created_at",
        *OPEN_STATUSES
    )
});

/// An [`IMPOSITIONS`] row.
pub type ImpositionRow = (DbId, String, DbId, String, DbTime, Option<DbTime>);

pub fn imposition(row: ImpositionRow) -> Result<Imposition> {
    let (component_id, manual, incident_id, status, from, until) = row;
    Ok(Imposition {
        component_id: component_id.0,
        manual: parse("status", &manual)?,
        imposed: Imposed {
            incident_id: incident_id.0,
            status: parse("status", &status)?,
            from: from.0,
            until: untime(until),
        },
    })
}
