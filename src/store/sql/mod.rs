//! What both SQL backends share, one file per feature: each table's columns as row structs
//! (declared with [`read_row!`] and [`write_row!`], so a column list and its bind order cannot
//! disagree), their conversions to and from domain types, and every statement the backends
//! run alike, written once with `$N` parameters (sqlx's SQLite driver binds `$N` by number,
//! as Postgres does).
//!
//! Small newtypes give one Rust type per column that each backend encodes its own way: ids
//! are `uuid` in Postgres and hyphenated text in SQLite, timestamps `timestamptz` in Postgres
//! and integer microseconds in SQLite, lists of texts `text[]` and a JSON array.

pub mod access;
pub mod actions;
pub mod components;
pub mod events;
pub mod history;
pub mod idempotency;
pub mod incidents;
pub mod integrations;
pub mod links;
pub mod maintenance;
pub mod postmortems;
pub mod retention;
pub mod secrets;
pub mod stats;
pub mod subscribers;
pub mod subscriptions;

use chrono::{DateTime, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef};
use sqlx::sqlite::{SqliteArgumentsBuffer, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Database, Decode, Encode, Postgres, QueryBuilder, Sqlite, Type};

use crate::domain::page::PageToken;
use crate::domain::{Error, Result, Status};

/// Declares a row read from the database: a `sqlx::FromRow` struct whose fields are the
/// columns, in order, and `COLUMNS`, their names (a field written `name = "column"` reads a
/// column whose name is not a Rust identifier).
macro_rules! read_row {
    ($(#[$m:meta])* $vis:vis struct $name:ident { $($field:ident $(= $column:literal)?: $ty:ty),+ $(,)? }) => {
        $(#[$m])*
        #[derive(sqlx::FromRow)]
        $vis struct $name { $($(#[sqlx(rename = $column)])? pub $field: $ty),+ }

        impl $name {
            /// The columns, in field order.
            pub const COLUMNS: &'static [&'static str] = &[$($crate::store::sql::column_name!($field $($column)?)),+];
        }
    };
}

/// Declares a row written to the database: a struct borrowing what it writes, `COLUMNS` (the
/// names, in field order) and `bind`, which binds every field in that order. Built from a
/// domain value by a conversion that destructures it whole, so a new field fails to compile
/// until it has a column.
macro_rules! write_row {
    ($(#[$m:meta])* $vis:vis struct $name:ident<$lt:lifetime> { $($field:ident $(= $column:literal)?: $ty:ty),+ $(,)? }) => {
        $(#[$m])*
        $vis struct $name<$lt> { $(pub $field: $ty),+ }

        impl<$lt> $name<$lt> {
            /// The columns, in bind order.
            pub const COLUMNS: &'static [&'static str] = &[$($crate::store::sql::column_name!($field $($column)?)),+];

            /// Binds every column, in the order of `COLUMNS`.
            pub fn bind<'q, DB: sqlx::Database>(
                self,
                q: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>,
            ) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>
            where
                $($ty: sqlx::Encode<$lt, DB> + sqlx::Type<DB>,)+
            {
                let Self { $($field),+ } = self;
                q$(.bind($field))+
            }
        }
    };
}

macro_rules! column_name {
    ($field:ident) => {
        stringify!($field)
    };
    ($field:ident $column:literal) => {
        $column
    };
}

pub(crate) use {column_name, read_row, write_row};

/// An id column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbId(pub uuid::Uuid);

/// A timestamp column (microsecond precision on every backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbTime(pub DateTime<Utc>);

/// A list of texts: `text[]` in Postgres, a JSON array in SQLite.
#[derive(Debug, Clone, Default)]
pub struct DbTexts(pub Vec<String>);

/// A list of ids, written: `uuid[]` in Postgres, a JSON array of hyphenated ids in SQLite.
#[derive(Debug, Clone, Default)]
pub struct DbIds(pub Vec<uuid::Uuid>);

impl Type<Postgres> for DbId {
    fn type_info() -> PgTypeInfo {
        <uuid::Uuid as Type<Postgres>>::type_info()
    }
}
impl Encode<'_, Postgres> for DbId {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> std::result::Result<IsNull, BoxDynError> {
        <uuid::Uuid as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}
impl<'r> Decode<'r, Postgres> for DbId {
    fn decode(value: PgValueRef<'r>) -> std::result::Result<Self, BoxDynError> {
        <uuid::Uuid as Decode<Postgres>>::decode(value).map(DbId)
    }
}
impl Type<Sqlite> for DbId {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
}
impl Encode<'_, Sqlite> for DbId {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> std::result::Result<IsNull, BoxDynError> {
        <String as Encode<Sqlite>>::encode(self.0.hyphenated().to_string(), buf)
    }
}
impl<'r> Decode<'r, Sqlite> for DbId {
    fn decode(value: SqliteValueRef<'r>) -> std::result::Result<Self, BoxDynError> {
        let text = <&str as Decode<Sqlite>>::decode(value)?;
        Ok(DbId(uuid::Uuid::parse_str(text)?))
    }
}

impl Type<Postgres> for DbTime {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }
}
impl Encode<'_, Postgres> for DbTime {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> std::result::Result<IsNull, BoxDynError> {
        <DateTime<Utc> as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}
impl<'r> Decode<'r, Postgres> for DbTime {
    fn decode(value: PgValueRef<'r>) -> std::result::Result<Self, BoxDynError> {
        <DateTime<Utc> as Decode<Postgres>>::decode(value).map(DbTime)
    }
}
impl Type<Sqlite> for DbTime {
    fn type_info() -> SqliteTypeInfo {
        <i64 as Type<Sqlite>>::type_info()
    }
}
impl Encode<'_, Sqlite> for DbTime {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> std::result::Result<IsNull, BoxDynError> {
        <i64 as Encode<Sqlite>>::encode(self.0.timestamp_micros(), buf)
    }
}
impl<'r> Decode<'r, Sqlite> for DbTime {
    fn decode(value: SqliteValueRef<'r>) -> std::result::Result<Self, BoxDynError> {
        let micros = <i64 as Decode<Sqlite>>::decode(value)?;
        DateTime::from_timestamp_micros(micros)
            .map(DbTime)
            .ok_or_else(|| format!("timestamp {micros} out of range").into())
    }
}

impl Type<Postgres> for DbTexts {
    fn type_info() -> PgTypeInfo {
        <Vec<String> as Type<Postgres>>::type_info()
    }
}
impl<'r> Decode<'r, Postgres> for DbTexts {
    fn decode(value: PgValueRef<'r>) -> std::result::Result<Self, BoxDynError> {
        <Vec<String> as Decode<Postgres>>::decode(value).map(DbTexts)
    }
}
impl Type<Sqlite> for DbTexts {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
}
impl<'r> Decode<'r, Sqlite> for DbTexts {
    fn decode(value: SqliteValueRef<'r>) -> std::result::Result<Self, BoxDynError> {
        let text = <&str as Decode<Sqlite>>::decode(value)?;
        Ok(DbTexts(serde_json::from_str(text)?))
    }
}

impl Type<Postgres> for DbIds {
    fn type_info() -> PgTypeInfo {
        <Vec<uuid::Uuid> as Type<Postgres>>::type_info()
    }
}
impl Encode<'_, Postgres> for DbIds {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> std::result::Result<IsNull, BoxDynError> {
        <Vec<uuid::Uuid> as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}
impl Type<Sqlite> for DbIds {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
}
impl Encode<'_, Sqlite> for DbIds {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> std::result::Result<IsNull, BoxDynError> {
        <String as Encode<Sqlite>>::encode(serde_json::to_string(&self.0)?, buf)
    }
}

/// An optional timestamp column.
pub fn time(t: Option<DateTime<Utc>>) -> Option<DbTime> {
    t.map(DbTime)
}

/// What an optional timestamp column holds.
pub fn untime(t: Option<DbTime>) -> Option<DateTime<Utc>> {
    t.map(|t| t.0)
}

/// Parses a column holding a wire name.
pub fn parse<T: std::str::FromStr<Err = String>>(column: &str, value: &str) -> Result<T> {
    value.parse().map_err(|e| Error::Internal(format!("column {column}: {e}")))
}

/// Parses an optional column holding a wire name.
pub fn parse_opt<T: std::str::FromStr<Err = String>>(column: &str, value: Option<&str>) -> Result<Option<T>> {
    value.map(|v| parse(column, v)).transpose()
}

/// Parses a column holding a list of wire names.
pub fn parse_all<T: std::str::FromStr<Err = String>>(column: &str, values: &[String]) -> Result<Vec<T>> {
    values.iter().map(|v| parse(column, v)).collect()
}

/// `INSERT INTO <table> (<columns>) VALUES ($1, $2, …)`.
pub fn insert_sql(table: &str, columns: &[&str]) -> String {
    let params: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
    format!("INSERT INTO {table} ({}) VALUES ({})", columns.join(", "), params.join(", "))
}

/// `INSERT INTO <table> (<columns>, incident_declared_at) VALUES ($1, …, <the declaration
/// time of the incident whose id is parameter `incident`>)`: rows that carry when their
/// incident was declared (it never changes), for the analytics.
pub fn insert_declared_sql(table: &str, columns: &[&str], incident: usize) -> String {
    let params: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
    format!(
        "INSERT INTO {table} ({}, incident_declared_at) VALUES ({}, (SELECT created_at FROM incidents WHERE id = ${incident}))",
        columns.join(", "),
        params.join(", ")
    )
}

/// `UPDATE <table> SET <every column but the first> WHERE <first column> = $1`, bound like
/// the insert of the same columns.
pub fn update_sql(table: &str, columns: &[&str]) -> String {
    let sets: Vec<String> = columns.iter().enumerate().skip(1).map(|(i, c)| format!("{c} = ${}", i + 1)).collect();
    format!("UPDATE {table} SET {} WHERE {} = $1", sets.join(", "), columns[0])
}

/// `SELECT <columns> FROM <table>` followed by `rest`.
pub fn select_sql(columns: &[&str], table: &str, rest: &str) -> String {
    format!("SELECT {} FROM {table} {rest}", columns.join(", "))
}

/// One statement that inserts rows into several tables in order, each `(table, columns)` a
/// data-modifying CTE with its own run of parameters (Postgres): a transaction's log rows in
/// one round trip.
pub fn insert_many_sql(inserts: &[(&str, &[&str])]) -> String {
    let mut next = 1;
    let ctes: Vec<String> = inserts
        .iter()
        .enumerate()
        .map(|(i, (table, columns))| {
            let params: Vec<String> = (next..next + columns.len()).map(|n| format!("${n}")).collect();
            next += columns.len();
            format!("w{i} AS (INSERT INTO {table} ({}) VALUES ({}))", columns.join(", "), params.join(", "))
        })
        .collect();
    format!("WITH {} SELECT 1", ctes.join(", "))
}

/// `('investigating', 'identified', 'monitoring')`, from the domain's list of open statuses.
pub static OPEN_STATUSES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let list: Vec<String> = Status::OPEN.iter().map(|s| format!("'{s}'")).collect();
    format!("({})", list.join(", "))
});

/// A LIKE pattern matching `term` anywhere, with `%`, `_` and `\` escaped (use
/// `ESCAPE '\'`).
pub fn like_pattern(term: &str) -> String {
    let mut out = String::with_capacity(term.len() + 2);
    out.push('%');
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// The error for a page token of another list.
fn foreign_token() -> Error {
    Error::invalid("page_token", "is not a page token returned by this list")
}

/// Appends the keyset condition and order for a list sorted newest first by `(time, id)`.
pub fn push_newest_first<DB>(q: &mut QueryBuilder<DB>, time: &str, after: Option<&PageToken>, limit: u32) -> Result<()>
where
    DB: Database,
    for<'t> DbId: Encode<'t, DB> + Type<DB>,
    for<'t> DbTime: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    match after {
        Some(PageToken::Time { at, id }) => {
            q.push(format!(" AND ({time}, id) < (")).push_bind(DbTime(*at)).push(", ").push_bind(DbId(*id)).push(")");
        }
        Some(_) => return Err(foreign_token()),
        None => {}
    }
    q.push(format!(" ORDER BY {time} DESC, id DESC LIMIT ")).push_bind(i64::from(limit));
    Ok(())
}

/// Appends the keyset condition and order for a list sorted oldest first by `(created_at, id)`
/// (timelines).
pub fn push_oldest_first<DB>(q: &mut QueryBuilder<DB>, after: Option<&PageToken>, limit: u32) -> Result<()>
where
    DB: Database,
    for<'t> DbId: Encode<'t, DB> + Type<DB>,
    for<'t> DbTime: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    match after {
        Some(PageToken::Time { at, id }) => {
            q.push(" AND (created_at, id) > (").push_bind(DbTime(*at)).push(", ").push_bind(DbId(*id)).push(")");
        }
        Some(_) => return Err(foreign_token()),
        None => {}
    }
    q.push(" ORDER BY created_at, id LIMIT ").push_bind(i64::from(limit));
    Ok(())
}

/// Maps the decode error of a row read by hand.
fn row_err(e: sqlx::Error) -> Error {
    Error::Internal(e.to_string())
}

/// `/metrics`: open incidents by severity and status.
pub static OBSERVE_OPEN_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT severity, status, count(*) FROM incidents WHERE status IN {} GROUP BY severity, status",
        *OPEN_STATUSES
    )
});

/// `/metrics`: the delivery outbox (pending or being sent) for active and paused
/// subscriptions, and when the oldest active one was created.
pub const OBSERVE_OUTBOX_SQL: &str = "SELECT \
     count(*) FILTER (WHERE NOT s.paused), \
     count(*) FILTER (WHERE s.paused), \
     min(d.created_at) FILTER (WHERE NOT s.paused) \
     FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id \
     WHERE d.status IN ('pending', 'sending')";

/// Builds the `/metrics` figures from the rows of the two queries above.
pub fn observed(
    open: Vec<(String, String, i64)>,
    (pending_active, pending_paused, oldest): (i64, i64, Option<DbTime>),
    pool: super::PoolStats,
) -> Result<super::Observed> {
    let open_incidents = open
        .into_iter()
        .map(|(severity, status, n)| Ok((parse("severity", &severity)?, parse("status", &status)?, n)))
        .collect::<Result<Vec<_>>>()?;
    Ok(super::Observed { open_incidents, pending_active, pending_paused, oldest_pending: untime(oldest), pool })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_and_update_bind_the_same_columns_by_number() {
        assert_eq!(insert_sql("t", &["id", "a", "b"]), "INSERT INTO t (id, a, b) VALUES ($1, $2, $3)");
        assert_eq!(update_sql("t", &["id", "a", "b"]), "UPDATE t SET a = $2, b = $3 WHERE id = $1");
    }

    #[test]
    fn batched_inserts_number_their_parameters_in_one_run() {
        let sql = insert_many_sql(&[("a", &["x", "y"]), ("b", &["z"])]);
        assert_eq!(
            sql,
            "WITH w0 AS (INSERT INTO a (x, y) VALUES ($1, $2)), w1 AS (INSERT INTO b (z) VALUES ($3)) SELECT 1"
        );
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("50%_off\\"), r"%50\%\_off\\%");
        assert_eq!(like_pattern("plain"), "%plain%");
    }
}
