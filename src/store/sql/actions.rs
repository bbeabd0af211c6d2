//! Follow-up actions: rows, conversions and the statements both backends share.

use std::sync::LazyLock;

use chrono::NaiveDate;
use sqlx::{Database, Encode, QueryBuilder, Type};

use super::incidents::Dialect;
use super::{DbId, DbTime, insert_declared_sql, parse, read_row, select_sql, time, untime, update_sql, write_row};
use crate::domain::action::Action;
use crate::domain::page::PageToken;
use crate::domain::query::ActionFilter;
use crate::domain::{Error, Result};

read_row! {
    /// An action as read.
    pub struct ActionRow {
        id: DbId,
        incident_id: DbId,
        title: String,
        owner: Option<String>,
        due_date: Option<NaiveDate>,
        priority: String,
        status: String,
        tracker: Option<String>,
        completed_at: Option<DbTime>,
        created_at: DbTime,
        updated_at: DbTime,
        version: i64,
    }
}

write_row! {
    /// An action as written (`owner_key` is derived).
    pub struct ActionWrite<'a> {
        id: DbId,
        incident_id: DbId,
        title: &'a str,
        owner: Option<&'a str>,
        owner_key: Option<String>,
        due_date: Option<NaiveDate>,
        priority: &'a str,
        status: &'a str,
        tracker: Option<&'a str>,
        completed_at: Option<DbTime>,
        created_at: DbTime,
        updated_at: DbTime,
        version: i64,
    }
}

impl<'a> From<&'a Action> for ActionWrite<'a> {
    fn from(a: &'a Action) -> Self {
        let owner_key = a.owner_key();
        let Action {
            id,
            incident_id,
            title,
            owner,
            due_date,
            priority,
            status,
            tracker,
            completed_at,
            created_at,
            updated_at,
            version,
            // Computed when read.
            overdue: _,
        } = a;
        ActionWrite {
            id: DbId(*id),
            incident_id: DbId(*incident_id),
            title,
            owner: owner.as_deref(),
            owner_key,
            due_date: *due_date,
            priority: priority.as_str(),
            status: status.as_str(),
            tracker: tracker.as_deref(),
            completed_at: time(*completed_at),
            created_at: DbTime(*created_at),
            updated_at: DbTime(*updated_at),
            version: *version,
        }
    }
}

impl TryFrom<ActionRow> for Action {
    type Error = Error;
    fn try_from(row: ActionRow) -> Result<Action> {
        let ActionRow {
            id,
            incident_id,
            title,
            owner,
            due_date,
            priority,
            status,
            tracker,
            completed_at,
            created_at,
            updated_at,
            version,
        } = row;
        Ok(Action {
            id: id.0,
            incident_id: incident_id.0,
            title,
            owner,
            due_date,
            priority: parse("priority", &priority)?,
            status: parse("status", &status)?,
            tracker,
            completed_at: untime(completed_at),
            overdue: false,
            created_at: created_at.0,
            updated_at: updated_at.0,
            version,
        })
    }
}

pub const ACTION_TABLE: &str = "actions";
pub static SELECT_ACTION: LazyLock<String> =
    LazyLock::new(|| select_sql(ActionRow::COLUMNS, ACTION_TABLE, "WHERE id = $1"));
/// With the incident's declaration time (the incident is `$2`).
pub static INSERT_ACTION: LazyLock<String> =
    LazyLock::new(|| insert_declared_sql(ACTION_TABLE, ActionWrite::COLUMNS, 2));
pub static UPDATE_ACTION: LazyLock<String> = LazyLock::new(|| update_sql(ACTION_TABLE, ActionWrite::COLUMNS));
pub const DELETE_ACTION: &str = "DELETE FROM actions WHERE id = $1";
/// Open, due before `$1`, and not announced for its due date.
pub const OVERDUE: &str = "status = 'open' AND due_date < $1 \
     AND (overdue_notified_for IS NULL OR overdue_notified_for <> due_date)";
pub static ANY_OVERDUE: LazyLock<String> =
    LazyLock::new(|| format!("SELECT EXISTS (SELECT 1 FROM actions WHERE {OVERDUE})"));
/// The next action to announce as overdue (a backend adds its row lock).
pub static NEXT_OVERDUE: LazyLock<String> = LazyLock::new(|| {
    select_sql(ActionRow::COLUMNS, ACTION_TABLE, &format!("WHERE {OVERDUE} ORDER BY due_date, id LIMIT 1"))
});
pub const MARK_OVERDUE_NOTIFIED: &str = "UPDATE actions SET overdue_notified_for = due_date WHERE id = $1";

/// Actions matching the filter, in list order, after the page token. `due_key` is the
/// backend's `coalesce(due_date, <the last date>)`.
pub fn actions_query<DB>(
    filter: &ActionFilter,
    due_key: &str,
    after: Option<&PageToken>,
    limit: u32,
) -> Result<QueryBuilder<DB>>
where
    DB: Dialect,
    <DB as Database>::Arguments: Default,
    for<'t> DbId: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> NaiveDate: Encode<'t, DB> + Type<DB>,
    for<'t> bool: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let ActionFilter { incident_id, owner_key, statuses, overdue, today } = filter;
    let mut q = QueryBuilder::<DB>::new(select_sql(ActionRow::COLUMNS, ACTION_TABLE, "WHERE 1 = 1"));
    if let Some(id) = incident_id {
        q.push(" AND incident_id = ").push_bind(DbId(*id));
    }
    if let Some(owner) = owner_key {
        q.push(" AND owner_key = ").push_bind(owner.clone());
    }
    if !statuses.is_empty() {
        DB::push_any_of(&mut q, "status", statuses.iter().map(|s| s.as_str()).collect());
    }
    match overdue {
        Some(true) => {
            q.push(" AND status = 'open' AND due_date < ").push_bind(*today);
        }
        Some(false) => {
            q.push(" AND NOT (status = 'open' AND due_date IS NOT NULL AND due_date < ").push_bind(*today).push(")");
        }
        None => {}
    }
    match after {
        Some(PageToken::Due { closed, due, id }) => {
            q.push(format!(" AND ((status <> 'open'), {due_key}, id) > ("))
                .push_bind(*closed)
                .push(", ")
                .push_bind(*due)
                .push(", ")
                .push_bind(DbId(*id))
                .push(")");
        }
        Some(_) => return Err(Error::invalid("page_token", "is not a page token returned by this list")),
        None => {}
    }
    q.push(format!(" ORDER BY (status <> 'open'), {due_key}, id LIMIT ")).push_bind(i64::from(limit));
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_read_is_written_and_the_owner_key_only_written() {
        assert_eq!(ActionWrite::COLUMNS[1], "incident_id", "the insert reads the declaration time of $2");
        let written: Vec<&str> = ActionWrite::COLUMNS.iter().copied().filter(|c| *c != "owner_key").collect();
        assert_eq!(ActionRow::COLUMNS, written);
    }
}
