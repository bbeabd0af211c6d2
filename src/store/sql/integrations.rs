//! Integrations, alert groups, received alerts and acknowledgement reminders: rows,
//! conversions and the statements both backends share.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use sqlx::types::Json;
use sqlx::{Database, Encode, QueryBuilder, Type};
use uuid::Uuid;

use super::{DbId, DbTime, OPEN_STATUSES, insert_sql, parse, push_newest_first, read_row, select_sql, write_row};
use crate::domain::alert::Alert;
use crate::domain::integration::{Integration, LabelRule};
use crate::domain::page::PageToken;
use crate::domain::{Error, Result, Severity};

read_row! {
    pub struct IntegrationRow {
        id: DbId,
        name: String,
        kind: String,
        secret_prefix: String,
        default_severity: String,
        rules: Json<Vec<LabelRule>>,
        grouping: String,
        auto_resolve: bool,
        created_at: DbTime,
        updated_at: DbTime,
        version: i64,
    }
}

write_row! {
    pub struct IntegrationWrite<'a> {
        id: DbId,
        name: &'a str,
        kind: &'a str,
        secret_prefix: &'a str,
        default_severity: &'a str,
        rules: Json<&'a [LabelRule]>,
        grouping: &'a str,
        auto_resolve: bool,
        created_at: DbTime,
        updated_at: DbTime,
        version: i64,
    }
}

impl<'a> From<&'a Integration> for IntegrationWrite<'a> {
    fn from(i: &'a Integration) -> Self {
        let Integration {
            id,
            name,
            kind,
            secret_prefix,
            default_severity,
            rules,
            grouping,
            auto_resolve,
            created_at,
            updated_at,
            version,
        } = i;
        IntegrationWrite {
            id: DbId(*id),
            name,
            kind: kind.as_str(),
            secret_prefix,
            default_severity: default_severity.as_str(),
            rules: Json(rules.as_slice()),
            grouping: grouping.as_str(),
            auto_resolve: *auto_resolve,
            created_at: DbTime(*created_at),
            updated_at: DbTime(*updated_at),
            version: *version,
        }
    }
}

impl TryFrom<IntegrationRow> for Integration {
    type Error = Error;
    fn try_from(row: IntegrationRow) -> Result<Integration> {
        let IntegrationRow {
            id,
            name,
            kind,
            secret_prefix,
            default_severity,
            rules,
            grouping,
            auto_resolve,
            created_at,
            updated_at,
            version,
        } = row;
        Ok(Integration {
            id: id.0,
            name,
            kind: parse("kind", &kind)?,
            secret_prefix,
            default_severity: parse("default_severity", &default_severity)?,
            rules: rules.0,
            grouping: parse("grouping", &grouping)?,
            auto_resolve,
            created_at: created_at.0,
            updated_at: updated_at.0,
            version,
        })
    }
}

read_row! {
    pub struct AlertRow {
        id: DbId,
        integration_id: DbId,
        incident_id: Option<DbId>,
        dedup_key: String,
        fingerprint: String,
        status: String,
        title: String,
        received_at: DbTime,
        payload: Json<serde_json::Value>,
    }
}

write_row! {
    pub struct AlertWrite<'a> {
        id: DbId,
        integration_id: DbId,
        incident_id: Option<DbId>,
        dedup_key: &'a str,
        fingerprint: &'a str,
        status: &'a str,
        title: &'a str,
        received_at: DbTime,
        payload: Json<&'a serde_json::Value>,
    }
}

impl<'a> From<&'a Alert> for AlertWrite<'a> {
    fn from(a: &'a Alert) -> Self {
        let Alert { id, integration_id, incident_id, dedup_key, fingerprint, status, title, received_at, payload } = a;
        AlertWrite {
            id: DbId(*id),
            integration_id: DbId(*integration_id),
            incident_id: incident_id.map(DbId),
            dedup_key,
            fingerprint,
            status: status.as_str(),
            title,
            received_at: DbTime(*received_at),
            payload: Json(payload),
        }
    }
}

impl TryFrom<AlertRow> for Alert {
    type Error = Error;
    fn try_from(row: AlertRow) -> Result<Alert> {
        let AlertRow { id, integration_id, incident_id, dedup_key, fingerprint, status, title, received_at, payload } =
            row;
        Ok(Alert {
            id: id.0,
            integration_id: integration_id.0,
            incident_id: incident_id.map(|i| i.0),
            dedup_key,
            fingerprint,
            status: parse("status", &status)?,
            title,
            received_at: received_at.0,
            payload: payload.0,
        })
    }
}

/// An open, unacknowledged incident whose reminder may be due, and how many were sent.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AckCandidateRow {
    pub id: DbId,
    pub severity: String,
    pub created_at: DbTime,
    pub sent: i64,
}

/// See [`AckCandidateRow`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AckCandidate {
    pub incident_id: Uuid,
    pub severity: Severity,
    pub declared_at: DateTime<Utc>,
    pub sent: i64,
}

impl TryFrom<AckCandidateRow> for AckCandidate {
    type Error = Error;
    fn try_from(r: AckCandidateRow) -> Result<AckCandidate> {
        Ok(AckCandidate {
            incident_id: r.id.0,
            severity: parse("severity", &r.severity)?,
            declared_at: r.created_at.0,
            sent: r.sent,
        })
    }
}

pub static SELECT_INTEGRATION: LazyLock<String> =
    LazyLock::new(|| select_sql(IntegrationRow::COLUMNS, "integrations", "WHERE id = $1"));
pub static SELECT_INTEGRATION_BY_SECRET: LazyLock<String> =
    LazyLock::new(|| select_sql(IntegrationRow::COLUMNS, "integrations", "WHERE secret_hash = $1"));
/// The integration and its secret hash: `secret_hash` is the last column.
pub static SELECT_INTEGRATION_SECRET: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {}, secret_hash FROM integrations WHERE id = $1", IntegrationRow::COLUMNS.join(", "))
});
pub static INSERT_INTEGRATION: LazyLock<String> = LazyLock::new(|| {
    let mut columns = IntegrationWrite::COLUMNS.to_vec();
    columns.push("secret_hash");
    insert_sql("integrations", &columns)
});
pub static UPDATE_INTEGRATION: LazyLock<String> =
    LazyLock::new(|| super::update_sql("integrations", IntegrationWrite::COLUMNS));
pub const SET_INTEGRATION_SECRET: &str = "UPDATE integrations SET secret_hash = $2 WHERE id = $1";
pub const DELETE_INTEGRATION: &str = "DELETE FROM integrations WHERE id = $1";
/// At most this many alerts go in one statement (9 parameters each, under SQLite's 32,766).
pub const ALERTS_PER_INSERT: usize = 500;

/// One statement inserting these alerts (at most [`ALERTS_PER_INSERT`]).
pub fn insert_alerts_query<'a, DB>(alerts: &'a [Alert]) -> QueryBuilder<DB>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'t> DbId: Encode<'t, DB> + Type<DB>,
    for<'t> Option<DbId>: Encode<'t, DB> + Type<DB>,
    for<'t> DbTime: Encode<'t, DB> + Type<DB>,
    for<'t> &'a str: Encode<'t, DB> + Type<DB>,
    for<'t> Json<&'a serde_json::Value>: Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::<DB>::new(format!("INSERT INTO alerts ({}) ", AlertWrite::COLUMNS.join(", ")));
    q.push_values(alerts, |mut row, a| {
        let AlertWrite { id, integration_id, incident_id, dedup_key, fingerprint, status, title, received_at, payload } =
            AlertWrite::from(a);
        row.push_bind(id)
            .push_bind(integration_id)
            .push_bind(incident_id)
            .push_bind(dedup_key)
            .push_bind(fingerprint)
            .push_bind(status)
            .push_bind(title)
            .push_bind(received_at)
            .push_bind(payload);
    });
    q
}

/// Makes sure the group's row exists (a concurrent delivery's insert is waited for).
pub const ENSURE_ALERT_GROUP: &str =
    "INSERT INTO alert_groups (integration_id, dedup_key) VALUES ($1, $2) ON CONFLICT DO NOTHING";
/// The incident the group maps to; the backend adds its row lock.
pub const SELECT_ALERT_GROUP: &str =
    "SELECT incident_id FROM alert_groups WHERE integration_id = $1 AND dedup_key = $2";
pub const SET_ALERT_GROUP: &str =
    "UPDATE alert_groups SET incident_id = $3 WHERE integration_id = $1 AND dedup_key = $2";

/// How many alerts of the key on the incident are still active: those whose latest state
/// is firing or acknowledged.
pub const ACTIVE_ALERTS: &str = "SELECT count(*) FROM alerts a \
     WHERE a.incident_id = $1 AND a.dedup_key = $2 AND a.status IN ('firing', 'acknowledged') \
     AND NOT EXISTS (SELECT 1 FROM alerts b WHERE b.incident_id = a.incident_id AND b.dedup_key = a.dedup_key \
     AND b.fingerprint = a.fingerprint AND (b.received_at > a.received_at \
     OR (b.received_at = a.received_at AND b.id > a.id)))";

/// Counts reminder `$3` as sent if `$2` were sent before (compare and set: of two workers
/// seeing the same count, one records it).
pub const RECORD_ACK_REMINDER: &str = "INSERT INTO ack_reminders (incident_id, sent, last_sent_at) VALUES ($1, $3, $4) \
     ON CONFLICT (incident_id) DO UPDATE SET sent = excluded.sent, last_sent_at = excluded.last_sent_at \
     WHERE ack_reminders.sent = $2";

/// Integrations, newest first.
pub fn integrations_query<DB>(after: Option<&PageToken>, limit: u32) -> Result<QueryBuilder<DB>>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'t> DbId: Encode<'t, DB> + Type<DB>,
    for<'t> DbTime: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::<DB>::new(select_sql(IntegrationRow::COLUMNS, "integrations", "WHERE 1 = 1"));
    push_newest_first(&mut q, "created_at", after, limit)?;
    Ok(q)
}

/// Whose alerts a list returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertsOf {
    Integration(Uuid),
    Incident(Uuid),
}

/// Alerts of an integration or an incident, newest first.
pub fn alerts_query<DB>(of: AlertsOf, after: Option<&PageToken>, limit: u32) -> Result<QueryBuilder<DB>>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'t> DbId: Encode<'t, DB> + Type<DB>,
    for<'t> DbTime: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let (column, id) = match of {
        AlertsOf::Integration(id) => ("integration_id", id),
        AlertsOf::Incident(id) => ("incident_id", id),
    };
    let mut q = QueryBuilder::<DB>::new(select_sql(AlertRow::COLUMNS, "alerts", &format!("WHERE {column} = ")));
    q.push_bind(DbId(id));
    push_newest_first(&mut q, "received_at", after, limit)?;
    Ok(q)
}

/// Open, unacknowledged incidents of these severities declared at or before `declared_before`
/// that have had no reminder since `sent_before` (`None`: that have had none), oldest first.
pub fn ack_candidates_query<DB>(
    severities: &[Severity],
    declared_before: DateTime<Utc>,
    sent_before: Option<DateTime<Utc>>,
    limit: u32,
) -> QueryBuilder<DB>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'t> DbTime: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> &'static str: Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::<DB>::new(format!(
        "SELECT i.id, i.severity, i.created_at, COALESCE(r.sent, 0) AS sent FROM incidents i \
         LEFT JOIN ack_reminders r ON r.incident_id = i.id \
         WHERE i.acknowledged_at IS NULL AND i.status IN {} AND i.created_at <= ",
        *OPEN_STATUSES
    ));
    q.push_bind(DbTime(declared_before));
    q.push(" AND i.severity IN (");
    let mut list = q.separated(", ");
    for s in severities {
        list.push_bind(s.as_str());
    }
    q.push(")");
    match sent_before {
        Some(t) => {
            q.push(" AND (r.last_sent_at IS NULL OR r.last_sent_at <= ").push_bind(DbTime(t)).push(")");
        }
        None => {
            q.push(" AND r.incident_id IS NULL");
        }
    }
    q.push(" ORDER BY i.created_at LIMIT ").push_bind(i64::from(limit));
    q
}

/// Reads a row of [`SELECT_INTEGRATION_SECRET`]: the integration, then its secret hash.
pub fn with_secret<R: sqlx::Row>(row: &R) -> Result<(Integration, Vec<u8>)>
where
    IntegrationRow: for<'r> sqlx::FromRow<'r, R>,
    usize: sqlx::ColumnIndex<R>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + Type<R::Database>,
{
    let integration = IntegrationRow::from_row(row).map_err(|e| Error::Internal(e.to_string()))?;
    let hash: Vec<u8> = row.try_get(IntegrationRow::COLUMNS.len()).map_err(|e| Error::Internal(e.to_string()))?;
    Ok((Integration::try_from(integration)?, hash))
}
