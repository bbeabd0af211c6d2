//! Scheduled maintenance: rows, conversions and the statements both backends share.

use std::sync::LazyLock;

use sqlx::{Database, Encode, QueryBuilder, Type};
use uuid::Uuid;

use super::{
    DbId, DbTexts, DbTime, insert_sql, parse, push_newest_first, push_oldest_first, read_row, time, untime, update_sql,
    write_row,
};
use crate::domain::maintenance::{Maintenance, MaintenanceStatus, MaintenanceUpdate};
use crate::domain::page::PageToken;
use crate::domain::{Error, Result};

read_row! {
    /// A maintenance with `components`: its component ids in the order given (each backend's
    /// [`select_maintenances`] aggregates them its own way).
    pub struct MaintenanceRow {
        id: DbId,
        title: String,
        body: String,
        scheduled_for: DbTime,
        scheduled_until: DbTime,
        status: String,
        auto_start: bool,
        auto_complete: bool,
        started_at: Option<DbTime>,
        completed_at: Option<DbTime>,
        cancelled_at: Option<DbTime>,
        reminded_at: Option<DbTime>,
        created_at: DbTime,
        updated_at: DbTime,
        version: i64,
        components: DbTexts,
    }
}

write_row! {
    /// A maintenance as written (its components go to `maintenance_components`).
    pub struct MaintenanceWrite<'a> {
        id: DbId,
        title: &'a str,
        body: &'a str,
        scheduled_for: DbTime,
        scheduled_until: DbTime,
        status: &'a str,
        auto_start: bool,
        auto_complete: bool,
        started_at: Option<DbTime>,
        completed_at: Option<DbTime>,
        cancelled_at: Option<DbTime>,
        reminded_at: Option<DbTime>,
        created_at: DbTime,
        updated_at: DbTime,
        version: i64,
    }
}

impl<'a> From<&'a Maintenance> for MaintenanceWrite<'a> {
    fn from(m: &'a Maintenance) -> Self {
        let Maintenance {
            id,
            title,
            body,
            components: _,
            scheduled_for,
            scheduled_until,
            status,
            auto_start,
            auto_complete,
            started_at,
            completed_at,
            cancelled_at,
            reminded_at,
            created_at,
            updated_at,
            version,
        } = m;
        MaintenanceWrite {
            id: DbId(*id),
            title,
            body,
            scheduled_for: DbTime(*scheduled_for),
            scheduled_until: DbTime(*scheduled_until),
            status: status.as_str(),
            auto_start: *auto_start,
            auto_complete: *auto_complete,
            started_at: time(*started_at),
            completed_at: time(*completed_at),
            cancelled_at: time(*cancelled_at),
            reminded_at: time(*reminded_at),
            created_at: DbTime(*created_at),
            updated_at: DbTime(*updated_at),
            version: *version,
        }
    }
}

impl TryFrom<MaintenanceRow> for Maintenance {
    type Error = Error;
    fn try_from(row: MaintenanceRow) -> Result<Maintenance> {
        let MaintenanceRow {
            id,
            title,
            body,
            scheduled_for,
            scheduled_until,
            status,
            auto_start,
            auto_complete,
            started_at,
            completed_at,
            cancelled_at,
            reminded_at,
            created_at,
            updated_at,
            version,
            components,
        } = row;
        let components = components
            .0
            .iter()
            .map(|c| Uuid::parse_str(c).map_err(|e| Error::Internal(format!("column components: {e}"))))
            .collect::<Result<Vec<Uuid>>>()?;
        Ok(Maintenance {
            id: id.0,
            title,
            body,
            components,
            scheduled_for: scheduled_for.0,
            scheduled_until: scheduled_until.0,
            status: parse("status", &status)?,
            auto_start,
            auto_complete,
            started_at: untime(started_at),
            completed_at: untime(completed_at),
            cancelled_at: untime(cancelled_at),
            reminded_at: untime(reminded_at),
            created_at: created_at.0,
            updated_at: updated_at.0,
            version,
        })
    }
}

read_row! {
    /// An entry of a maintenance's timeline as read.
    pub struct MaintenanceUpdateRow {
        id: DbId,
        maintenance_id: DbId,
        status: String,
        body: String,
        automatic: bool,
        author: String,
        created_at: DbTime,
    }
}

write_row! {
    /// An entry of a maintenance's timeline as written.
    pub struct MaintenanceUpdateWrite<'a> {
        id: DbId,
        maintenance_id: DbId,
        status: &'a str,
        body: &'a str,
        automatic: bool,
        author: &'a str,
        created_at: DbTime,
    }
}

impl<'a> From<&'a MaintenanceUpdate> for MaintenanceUpdateWrite<'a> {
    fn from(u: &'a MaintenanceUpdate) -> Self {
        let MaintenanceUpdate { id, maintenance_id, status, body, automatic, author, created_at } = u;
        MaintenanceUpdateWrite {
            id: DbId(*id),
            maintenance_id: DbId(*maintenance_id),
            status: status.as_str(),
            body,
            automatic: *automatic,
            author,
            created_at: DbTime(*created_at),
        }
    }
}

impl TryFrom<MaintenanceUpdateRow> for MaintenanceUpdate {
    type Error = Error;
    fn try_from(row: MaintenanceUpdateRow) -> Result<MaintenanceUpdate> {
        let MaintenanceUpdateRow { id, maintenance_id, status, body, automatic, author, created_at } = row;
        Ok(MaintenanceUpdate {
            id: id.0,
            maintenance_id: maintenance_id.0,
            status: parse("status", &status)?,
            body,
            automatic,
            author,
            created_at: created_at.0,
        })
    }
}

/// `SELECT <maintenance columns>, <components> AS components FROM maintenances m`: every
/// column but `components` from the table, `components` from the backend's aggregate.
pub fn select_maintenances(components: &str) -> String {
    let columns: Vec<String> =
        MaintenanceRow::COLUMNS.iter().filter(|c| **c != "components").map(|c| format!("m.{c}")).collect();
    format!("SELECT {}, {components} AS components FROM maintenances m", columns.join(", "))
}

pub static INSERT_MAINTENANCE: LazyLock<String> =
    LazyLock::new(|| insert_sql("maintenances", MaintenanceWrite::COLUMNS));
pub static UPDATE_MAINTENANCE: LazyLock<String> =
    LazyLock::new(|| update_sql("maintenances", MaintenanceWrite::COLUMNS));
pub static INSERT_MAINTENANCE_UPDATE: LazyLock<String> =
    LazyLock::new(|| insert_sql("maintenance_updates", MaintenanceUpdateWrite::COLUMNS));
pub const DELETE_MAINTENANCE_COMPONENTS: &str = "DELETE FROM maintenance_components WHERE maintenance_id = $1";
pub const INSERT_MAINTENANCE_COMPONENT: &str =
    "INSERT INTO maintenance_components (maintenance_id, component_id, position, active) VALUES ($1, $2, $3, $4)";

/// The condition of a maintenance the workers have something to do for at `$1` (now), with
/// reminders due for starts before `$2` (now + the reminder lead): the SQL form of
/// [`Maintenance::due_moves`] and [`Maintenance::reminder_due`].
pub const DUE: &str = "m.status IN ('scheduled', 'in_progress', 'verifying') AND ( \
     (m.status = 'scheduled' AND m.auto_start AND m.scheduled_for <= $1) \
     OR (m.status <> 'scheduled' AND m.auto_complete AND m.scheduled_until <= $1) \
     OR (m.status = 'scheduled' AND m.reminded_at IS NULL AND m.scheduled_for <= $2 AND m.scheduled_for > $1))";

/// The timeline entries of the maintenances `ids_in_1` selects (the backend's test of
/// `maintenance_id` against the list bound to `$1`), oldest first.
pub fn maintenance_timelines_sql(ids_in_1: &str) -> String {
    format!(
        "SELECT {} FROM maintenance_updates WHERE {ids_in_1} ORDER BY created_at, id",
        MaintenanceUpdateRow::COLUMNS.join(", ")
    )
}

/// Whether any maintenance is due ([`DUE`]): read outside a transaction, so that a worker
/// with nothing to do takes no lock.
pub static ANY_DUE: LazyLock<String> =
    LazyLock::new(|| format!("SELECT EXISTS (SELECT 1 FROM maintenances m WHERE {DUE})"));

/// Which maintenances a list returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaintenanceFilter {
    /// Any of these statuses; empty: every status.
    pub statuses: Vec<MaintenanceStatus>,
}

/// Maintenances newest window first (`scheduled_for`, then id), after the page token;
/// `select` is the backend's [`select_maintenances`].
pub fn maintenances_query<DB>(
    select: &str,
    filter: &MaintenanceFilter,
    after: Option<&PageToken>,
    limit: u32,
) -> Result<QueryBuilder<DB>>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'t> DbId: Encode<'t, DB> + Type<DB>,
    for<'t> DbTime: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> &'static str: Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::<DB>::new(format!("{select} WHERE 1 = 1"));
    if !filter.statuses.is_empty() {
        q.push(" AND m.status IN (");
        let mut list = q.separated(", ");
        for s in &filter.statuses {
            list.push_bind(s.as_str());
        }
        q.push(")");
    }
    push_newest_first(&mut q, "m.scheduled_for", after, limit)?;
    Ok(q)
}

/// A maintenance's timeline, oldest first.
pub fn maintenance_updates_query<DB>(
    maintenance_id: Uuid,
    after: Option<&PageToken>,
    limit: u32,
) -> Result<QueryBuilder<DB>>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'t> DbId: Encode<'t, DB> + Type<DB>,
    for<'t> DbTime: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::<DB>::new(format!(
        "SELECT {} FROM maintenance_updates WHERE maintenance_id = ",
        MaintenanceUpdateRow::COLUMNS.join(", ")
    ));
    q.push_bind(DbId(maintenance_id));
    push_oldest_first(&mut q, after, limit)?;
    Ok(q)
}
