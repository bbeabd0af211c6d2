//! What both SQL stores share: column lists, row types and their conversion to domain types,
//! and the bind order of an incident. Small newtypes give one Rust type per column that each
//! backend encodes its own way: ids are `uuid` in Postgres and hyphenated text in SQLite,
//! timestamps `timestamptz` in Postgres and integer microseconds in SQLite.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef};
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArgumentsBuffer, SqliteTypeInfo, SqliteValueRef};
use sqlx::types::Json;
use sqlx::{Database, Decode, Encode, Postgres, QueryBuilder, Sqlite, Type};
use uuid::Uuid;

use super::EventFilter;
use crate::domain::auth::{AuditFilter, IssuedKey};
use crate::domain::component::effective_status;
use crate::domain::event::EventType;
use crate::domain::page::PageToken;
use crate::domain::subscription::SigningSecrets;
use crate::domain::{
    AffectedComponent, ApiKey, AuditEvent, Cause, Component, ComponentStatus, Delivery, DeliveryAttempt,
    DeliveryStatus, Error, Event, FieldChange, Incident, IncidentRef, Result, Scope, Subscription, TimelineEntry,
    Visibility, Workaround,
};

/// An id column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbId(pub Uuid);

/// A timestamp column (microsecond precision on every backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbTime(pub DateTime<Utc>);

/// A list of texts: `text[]` in Postgres, a JSON array in SQLite.
#[derive(Debug, Clone, Default)]
pub struct DbTexts(pub Vec<String>);

impl Type<Postgres> for DbId {
    fn type_info() -> PgTypeInfo {
        <Uuid as Type<Postgres>>::type_info()
    }
}
impl Encode<'_, Postgres> for DbId {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> std::result::Result<IsNull, BoxDynError> {
        <Uuid as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}
impl<'r> Decode<'r, Postgres> for DbId {
    fn decode(value: PgValueRef<'r>) -> std::result::Result<Self, BoxDynError> {
        <Uuid as Decode<Postgres>>::decode(value).map(DbId)
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
        Ok(DbId(Uuid::parse_str(text)?))
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

fn time(t: DateTime<Utc>) -> DbTime {
    DbTime(t)
}

fn parse<T: std::str::FromStr<Err = String>>(column: &str, value: &str) -> Result<T> {
    value.parse().map_err(|e| Error::Internal(format!("column {column}: {e}")))
}

/// Every incident column, in the order of [`IncidentRow`].
pub const INCIDENT_COLUMNS: &str = "id, reference_number, title, summary, severity, status, impact, \
    affected_components, affected_customers, eta, workaround_availability, workaround_text, cause_kind, \
    cause_provider, cause_external_reference, commander, labels, related_incident_ids, root_cause, \
    resolution_summary, reopen_count, started_at, detected_at, acknowledged_at, acknowledged_by, identified_at, \
    mitigated_at, resolved_at, closed_at, created_at, updated_at, version";

/// The columns written by insert and update, in bind order after the id (see
/// [`bind_incident`]).
pub const INCIDENT_WRITE_COLUMNS: [&str; 31] = [
    "title",
    "summary",
    "search_text",
    "severity",
    "status",
    "impact",
    "affected_components",
    "affected_customers",
    "eta",
    "workaround_availability",
    "workaround_text",
    "cause_kind",
    "cause_provider",
    "cause_external_reference",
    "commander",
    "labels",
    "related_incident_ids",
    "root_cause",
    "resolution_summary",
    "reopen_count",
    "started_at",
    "detected_at",
    "acknowledged_at",
    "acknowledged_by",
    "identified_at",
    "mitigated_at",
    "resolved_at",
    "closed_at",
    "created_at",
    "updated_at",
    "version",
];

/// `INSERT INTO incidents (id, <write columns>, <extra>) VALUES (...)` with numbered
/// parameters written `<sigil><n>` (`$` for Postgres, `?` for SQLite).
pub fn insert_incident_sql(sigil: char, extra: &[&str]) -> String {
    let columns: Vec<&str> = std::iter::once("id").chain(INCIDENT_WRITE_COLUMNS).chain(extra.iter().copied()).collect();
    insert_sql(sigil, "incidents", &columns)
}

/// `UPDATE incidents SET <write columns> WHERE id = <sigil>1`.
pub fn update_incident_sql(sigil: char) -> String {
    let sets: Vec<String> =
        INCIDENT_WRITE_COLUMNS.iter().enumerate().map(|(i, c)| format!("{c} = {sigil}{}", i + 2)).collect();
    format!("UPDATE incidents SET {} WHERE id = {sigil}1", sets.join(", "))
}

/// Binds the id and then every column of [`INCIDENT_WRITE_COLUMNS`], in that order.
pub fn bind_incident<'q, 'a, DB>(
    q: Query<'q, DB, <DB as Database>::Arguments>,
    i: &'a Incident,
) -> Query<'q, DB, <DB as Database>::Arguments>
where
    DB: Database,
    DbId: Encode<'a, DB> + Type<DB>,
    DbTime: Encode<'a, DB> + Type<DB>,
    Option<DbTime>: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
    Option<&'a str>: Encode<'a, DB> + Type<DB>,
    String: Encode<'a, DB> + Type<DB>,
    i32: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
    Option<i64>: Encode<'a, DB> + Type<DB>,
    Json<&'a Vec<AffectedComponent>>: Encode<'a, DB> + Type<DB>,
    Json<&'a BTreeMap<String, String>>: Encode<'a, DB> + Type<DB>,
    Json<&'a Vec<Uuid>>: Encode<'a, DB> + Type<DB>,
{
    q.bind(DbId(i.id))
        .bind(i.title.as_str())
        .bind(i.summary.as_str())
        .bind(i.search_text())
        .bind(i.severity.as_str())
        .bind(i.status.as_str())
        .bind(i.impact.as_str())
        .bind(Json(&i.affected_components))
        .bind(i.affected_customers)
        .bind(i.eta.map(time))
        .bind(i.workaround.availability.as_str())
        .bind(i.workaround.text.as_deref())
        .bind(i.cause.kind.as_str())
        .bind(i.cause.provider.as_deref())
        .bind(i.cause.external_reference.as_deref())
        .bind(i.commander.as_deref())
        .bind(Json(&i.labels))
        .bind(Json(&i.related_incident_ids))
        .bind(i.root_cause.as_deref())
        .bind(i.resolution_summary.as_deref())
        .bind(i.reopen_count)
        .bind(DbTime(i.started_at))
        .bind(DbTime(i.detected_at))
        .bind(i.acknowledged_at.map(time))
        .bind(i.acknowledged_by.as_deref())
        .bind(i.identified_at.map(time))
        .bind(i.mitigated_at.map(time))
        .bind(i.resolved_at.map(time))
        .bind(i.closed_at.map(time))
        .bind(DbTime(i.created_at))
        .bind(DbTime(i.updated_at))
        .bind(i.version)
}

#[derive(sqlx::FromRow)]
pub struct IncidentRow {
    id: DbId,
    reference_number: i64,
    title: String,
    summary: String,
    severity: String,
    status: String,
    impact: String,
    affected_components: Json<Vec<AffectedComponent>>,
    affected_customers: Option<i64>,
    eta: Option<DbTime>,
    workaround_availability: String,
    workaround_text: Option<String>,
    cause_kind: String,
    cause_provider: Option<String>,
    cause_external_reference: Option<String>,
    commander: Option<String>,
    labels: Json<BTreeMap<String, String>>,
    related_incident_ids: Json<Vec<Uuid>>,
    root_cause: Option<String>,
    resolution_summary: Option<String>,
    reopen_count: i32,
    started_at: DbTime,
    detected_at: DbTime,
    acknowledged_at: Option<DbTime>,
    acknowledged_by: Option<String>,
    identified_at: Option<DbTime>,
    mitigated_at: Option<DbTime>,
    resolved_at: Option<DbTime>,
    closed_at: Option<DbTime>,
    created_at: DbTime,
    updated_at: DbTime,
    version: i64,
}

impl TryFrom<IncidentRow> for Incident {
    type Error = Error;
    fn try_from(r: IncidentRow) -> Result<Incident> {
        let t = |t: Option<DbTime>| t.map(|t| t.0);
        Ok(Incident {
            id: r.id.0,
            reference: IncidentRef(r.reference_number),
            title: r.title,
            summary: r.summary,
            severity: parse("severity", &r.severity)?,
            status: parse("status", &r.status)?,
            impact: parse("impact", &r.impact)?,
            affected_components: r.affected_components.0,
            affected_customers: r.affected_customers,
            eta: t(r.eta),
            workaround: Workaround {
                availability: parse("workaround_availability", &r.workaround_availability)?,
                text: r.workaround_text,
            },
            cause: Cause {
                kind: parse("cause_kind", &r.cause_kind)?,
                provider: r.cause_provider,
                external_reference: r.cause_external_reference,
            },
            commander: r.commander,
            labels: r.labels.0,
            related_incident_ids: r.related_incident_ids.0,
            root_cause: r.root_cause,
            resolution_summary: r.resolution_summary,
            reopen_count: r.reopen_count,
            started_at: r.started_at.0,
            detected_at: r.detected_at.0,
            acknowledged_at: t(r.acknowledged_at),
            acknowledged_by: r.acknowledged_by,
            identified_at: t(r.identified_at),
            mitigated_at: t(r.mitigated_at),
            resolved_at: t(r.resolved_at),
            closed_at: t(r.closed_at),
            created_at: r.created_at.0,
            updated_at: r.updated_at.0,
            version: r.version,
        })
    }
}

/// Every timeline column, in the order of [`TimelineRow`] and of the insert's parameters.
pub const TIMELINE_COLUMNS: &str =
    "id, incident_id, kind, body, visibility, status_from, status_to, changes, author, created_at";

/// Binds a timeline entry in the order of [`TIMELINE_COLUMNS`].
pub fn bind_timeline_entry<'q, 'a, DB>(
    q: Query<'q, DB, <DB as Database>::Arguments>,
    e: &'a TimelineEntry,
) -> Query<'q, DB, <DB as Database>::Arguments>
where
    DB: Database,
    DbId: Encode<'a, DB> + Type<DB>,
    DbTime: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
    Option<&'a str>: Encode<'a, DB> + Type<DB>,
    Json<&'a Vec<FieldChange>>: Encode<'a, DB> + Type<DB>,
{
    q.bind(DbId(e.id))
        .bind(DbId(e.incident_id))
        .bind(e.kind.as_str())
        .bind(e.body.as_str())
        .bind(e.visibility.as_str())
        .bind(e.status_from.map(|s| s.as_str()))
        .bind(e.status_to.map(|s| s.as_str()))
        .bind(Json(&e.changes))
        .bind(e.author.as_str())
        .bind(DbTime(e.created_at))
}

#[derive(sqlx::FromRow)]
pub struct TimelineRow {
    id: DbId,
    incident_id: DbId,
    kind: String,
    body: String,
    visibility: String,
    status_from: Option<String>,
    status_to: Option<String>,
    changes: Json<Vec<FieldChange>>,
    author: String,
    created_at: DbTime,
}

impl TryFrom<TimelineRow> for TimelineEntry {
    type Error = Error;
    fn try_from(r: TimelineRow) -> Result<TimelineEntry> {
        Ok(TimelineEntry {
            id: r.id.0,
            incident_id: r.incident_id.0,
            kind: parse("kind", &r.kind)?,
            body: r.body,
            visibility: parse("visibility", &r.visibility)?,
            status_from: r.status_from.as_deref().map(|s| parse("status_from", s)).transpose()?,
            status_to: r.status_to.as_deref().map(|s| parse("status_to", s)).transpose()?,
            changes: r.changes.0,
            author: r.author,
            created_at: r.created_at.0,
        })
    }
}

/// A component with `imposed`: the statuses open incidents impose on it.
#[derive(sqlx::FromRow)]
pub struct ComponentRow {
    id: DbId,
    name: String,
    description: String,
    group_name: Option<String>,
    position: i32,
    status: String,
    created_at: DbTime,
    updated_at: DbTime,
    version: i64,
    imposed: DbTexts,
}

impl ComponentRow {
    pub fn into_parts(self) -> Result<(Component, Vec<ComponentStatus>)> {
        let status: ComponentStatus = parse("status", &self.status)?;
        let imposed = self.imposed.0.iter().map(|s| parse("status", s)).collect::<Result<Vec<ComponentStatus>>>()?;
        let component = Component {
            id: self.id.0,
            name: self.name,
            description: self.description,
            group: self.group_name,
            position: self.position,
            status,
            effective_status: effective_status(status, imposed.iter().copied()),
            created_at: self.created_at.0,
            updated_at: self.updated_at.0,
            version: self.version,
        };
        Ok((component, imposed))
    }

    pub fn into_component(self) -> Result<Component> {
        self.into_parts().map(|(c, _)| c)
    }
}

/// Every component column written, in the order of [`bind_component`].
pub const COMPONENT_WRITE_COLUMNS: [&str; 10] = [
    "name",
    "name_key",
    "description",
    "group_name",
    "group_key",
    "position",
    "status",
    "created_at",
    "updated_at",
    "version",
];

/// Binds the id and then every column of [`COMPONENT_WRITE_COLUMNS`].
pub fn bind_component<'q, 'a, DB>(
    q: Query<'q, DB, <DB as Database>::Arguments>,
    c: &'a Component,
) -> Query<'q, DB, <DB as Database>::Arguments>
where
    DB: Database,
    DbId: Encode<'a, DB> + Type<DB>,
    DbTime: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
    Option<&'a str>: Encode<'a, DB> + Type<DB>,
    String: Encode<'a, DB> + Type<DB>,
    i32: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    q.bind(DbId(c.id))
        .bind(c.name.as_str())
        .bind(c.name_key())
        .bind(c.description.as_str())
        .bind(c.group.as_deref())
        .bind(c.group_key())
        .bind(c.position)
        .bind(c.status.as_str())
        .bind(DbTime(c.created_at))
        .bind(DbTime(c.updated_at))
        .bind(c.version)
}

/// `INSERT INTO components (id, <write columns>) VALUES (...)`.
pub fn insert_component_sql(sigil: char) -> String {
    let columns: Vec<&str> = std::iter::once("id").chain(COMPONENT_WRITE_COLUMNS).collect();
    insert_sql(sigil, "components", &columns)
}

/// `UPDATE components SET <write columns> WHERE id = <sigil>1`.
pub fn update_component_sql(sigil: char) -> String {
    let sets: Vec<String> =
        COMPONENT_WRITE_COLUMNS.iter().enumerate().map(|(i, c)| format!("{c} = {sigil}{}", i + 2)).collect();
    format!("UPDATE components SET {} WHERE id = {sigil}1", sets.join(", "))
}

/// `INSERT INTO incident_updates (<timeline columns>) VALUES (...)`.
pub fn insert_timeline_sql(sigil: char) -> String {
    insert_sql(sigil, "incident_updates", &column_names(TIMELINE_COLUMNS))
}

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

/// Every API key column but the secret hash, in the order of [`ApiKeyRow`].
pub const API_KEY_COLUMNS: &str =
    "id, name, prefix, scopes, created_at, expires_at, last_used_at, revoked_at, created_by";

#[derive(sqlx::FromRow)]
pub struct ApiKeyRow {
    id: DbId,
    name: String,
    prefix: String,
    scopes: Json<Vec<String>>,
    created_at: DbTime,
    expires_at: Option<DbTime>,
    last_used_at: Option<DbTime>,
    revoked_at: Option<DbTime>,
    created_by: Option<String>,
}

impl TryFrom<ApiKeyRow> for ApiKey {
    type Error = Error;
    fn try_from(r: ApiKeyRow) -> Result<ApiKey> {
        Ok(ApiKey {
            id: r.id.0,
            name: r.name,
            prefix: r.prefix,
            scopes: r.scopes.0.iter().map(|s| parse("scopes", s)).collect::<Result<Vec<Scope>>>()?,
            created_at: r.created_at.0,
            expires_at: r.expires_at.map(|t| t.0),
            last_used_at: r.last_used_at.map(|t| t.0),
            revoked_at: r.revoked_at.map(|t| t.0),
            created_by: r.created_by,
        })
    }
}

/// `INSERT INTO api_keys` for an issued key, bound by [`bind_api_key`].
pub fn insert_api_key_sql(sigil: char) -> String {
    let columns: Vec<&str> = ["lookup", "secret_hash"].into_iter().chain(column_names(API_KEY_COLUMNS)).collect();
    insert_sql(sigil, "api_keys", &columns)
}

pub fn bind_api_key<'q, 'a, DB>(
    q: Query<'q, DB, <DB as Database>::Arguments>,
    k: &'a IssuedKey,
) -> Query<'q, DB, <DB as Database>::Arguments>
where
    DB: Database,
    DbId: Encode<'a, DB> + Type<DB>,
    DbTime: Encode<'a, DB> + Type<DB>,
    Option<DbTime>: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
    &'a [u8]: Encode<'a, DB> + Type<DB>,
    Option<&'a str>: Encode<'a, DB> + Type<DB>,
    Json<Vec<&'static str>>: Encode<'a, DB> + Type<DB>,
{
    q.bind(k.lookup.as_str())
        .bind(k.secret_hash.as_slice())
        .bind(DbId(k.key.id))
        .bind(k.key.name.as_str())
        .bind(k.key.prefix.as_str())
        .bind(Json(k.key.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>()))
        .bind(DbTime(k.key.created_at))
        .bind(k.key.expires_at.map(time))
        .bind(k.key.last_used_at.map(time))
        .bind(k.key.revoked_at.map(time))
        .bind(k.key.created_by.as_deref())
}

/// Every audit column, in the order of [`AuditRow`] and of the insert's parameters.
pub const AUDIT_COLUMNS: &str =
    "id, occurred_at, actor_key_id, actor_name, action, resource_type, resource_id, details";

pub fn insert_audit_sql(sigil: char) -> String {
    insert_sql(sigil, "audit_events", &column_names(AUDIT_COLUMNS))
}

pub fn bind_audit_event<'q, 'a, DB>(
    q: Query<'q, DB, <DB as Database>::Arguments>,
    e: &'a AuditEvent,
) -> Query<'q, DB, <DB as Database>::Arguments>
where
    DB: Database,
    DbId: Encode<'a, DB> + Type<DB>,
    Option<DbId>: Encode<'a, DB> + Type<DB>,
    DbTime: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
    Json<&'a serde_json::Value>: Encode<'a, DB> + Type<DB>,
{
    q.bind(DbId(e.id))
        .bind(DbTime(e.occurred_at))
        .bind(e.actor_key_id.map(DbId))
        .bind(e.actor_name.as_str())
        .bind(e.action.as_str())
        .bind(e.resource_type.as_str())
        .bind(e.resource_id.as_str())
        .bind(Json(&e.details))
}

#[derive(sqlx::FromRow)]
pub struct AuditRow {
    id: DbId,
    occurred_at: DbTime,
    actor_key_id: Option<DbId>,
    actor_name: String,
    action: String,
    resource_type: String,
    resource_id: String,
    details: Json<serde_json::Value>,
}

impl From<AuditRow> for AuditEvent {
    fn from(r: AuditRow) -> AuditEvent {
        AuditEvent {
            id: r.id.0,
            occurred_at: r.occurred_at.0,
            actor_key_id: r.actor_key_id.map(|k| k.0),
            actor_name: r.actor_name,
            action: r.action,
            resource_type: r.resource_type,
            resource_id: r.resource_id,
            details: r.details.0,
        }
    }
}

/// `SELECT <audit columns> FROM audit_events WHERE <filters> ORDER BY occurred_at DESC, id DESC`
/// after the page token, for either backend.
pub fn audit_events_query<DB>(filter: &AuditFilter, after: Option<&PageToken>, limit: u32) -> Result<QueryBuilder<DB>>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'t> DbId: Encode<'t, DB> + Type<DB>,
    for<'t> DbTime: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::<DB>::new(format!("SELECT {AUDIT_COLUMNS} FROM audit_events WHERE 1 = 1"));
    if let Some(k) = filter.actor_key_id {
        q.push(" AND actor_key_id = ").push_bind(DbId(k));
    }
    for (column, value) in
        [("resource_type", &filter.resource_type), ("resource_id", &filter.resource_id), ("action", &filter.action)]
    {
        if let Some(v) = value {
            q.push(format!(" AND {column} = ")).push_bind(v.clone());
        }
    }
    push_newest_first(&mut q, "occurred_at", after, limit)?;
    Ok(q)
}

/// `SELECT <api key columns> FROM api_keys` newest first, after the page token.
pub fn api_keys_query<DB>(after: Option<&PageToken>, limit: u32) -> Result<QueryBuilder<DB>>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'t> DbId: Encode<'t, DB> + Type<DB>,
    for<'t> DbTime: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::<DB>::new(format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE 1 = 1"));
    push_newest_first(&mut q, "created_at", after, limit)?;
    Ok(q)
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
        Some(_) => return Err(Error::invalid("page_token", "is not a page token returned by this list")),
        None => {}
    }
    q.push(format!(" ORDER BY {time} DESC, id DESC LIMIT ")).push_bind(i64::from(limit));
    Ok(())
}

/// The timeline of one incident, oldest first, after the page token, for either backend.
pub fn timeline_query<DB>(
    incident_id: Uuid,
    visibility: Option<Visibility>,
    after: Option<&PageToken>,
    limit: u32,
) -> Result<QueryBuilder<DB>>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'t> DbId: Encode<'t, DB> + Type<DB>,
    for<'t> DbTime: Encode<'t, DB> + Type<DB>,
    for<'t> &'static str: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let mut q =
        QueryBuilder::<DB>::new(format!("SELECT {TIMELINE_COLUMNS} FROM incident_updates WHERE incident_id = "));
    q.push_bind(DbId(incident_id));
    if let Some(v) = visibility {
        q.push(" AND visibility = ").push_bind(v.as_str());
    }
    match after {
        Some(PageToken::Time { at, id }) => {
            q.push(" AND (created_at, id) > (").push_bind(DbTime(*at)).push(", ").push_bind(DbId(*id)).push(")");
        }
        Some(_) => return Err(Error::invalid("page_token", "is not a page token returned by this list")),
        None => {}
    }
    q.push(" ORDER BY created_at, id LIMIT ").push_bind(i64::from(limit));
    Ok(q)
}

/// Components in status-page order after the page token; `select` is the backend's
/// `SELECT … FROM components c` (with its `imposed` column).
pub fn components_query<DB>(
    select: &str,
    group: Option<&str>,
    after: Option<&PageToken>,
    limit: u32,
) -> Result<QueryBuilder<DB>>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'t> DbId: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> i32: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::<DB>::new(format!("{select} WHERE 1 = 1"));
    if let Some(g) = group {
        q.push(" AND coalesce(c.group_name, '') = ").push_bind(g.to_string());
    }
    match after {
        Some(PageToken::Ordered { group_key, position, name_key, id }) => {
            q.push(" AND (c.group_key, c.position, c.name_key, c.id) > (")
                .push_bind(group_key.clone())
                .push(", ")
                .push_bind(*position)
                .push(", ")
                .push_bind(name_key.clone())
                .push(", ")
                .push_bind(DbId(*id))
                .push(")");
        }
        Some(_) => return Err(Error::invalid("page_token", "is not a page token returned by this list")),
        None => {}
    }
    q.push(" ORDER BY c.group_key, c.position, c.name_key, c.id LIMIT ").push_bind(i64::from(limit));
    Ok(q)
}

/// `INSERT INTO <table> (<columns>) VALUES (<sigil>1, <sigil>2, …)`.
fn insert_sql(sigil: char, table: &str, columns: &[&str]) -> String {
    let params: Vec<String> = (1..=columns.len()).map(|i| format!("{sigil}{i}")).collect();
    format!("INSERT INTO {table} ({}) VALUES ({})", columns.join(", "), params.join(", "))
}

/// One statement that inserts rows into several tables in order, each `(table, columns)` a
/// data-modifying CTE with its own run of parameters (Postgres): a transaction's log rows in
/// one round trip.
pub fn insert_many_sql(inserts: &[(&str, &str)]) -> String {
    let mut next = 1;
    let ctes: Vec<String> = inserts
        .iter()
        .enumerate()
        .map(|(i, (table, columns))| {
            let columns = column_names(columns);
            let params: Vec<String> = (next..next + columns.len()).map(|n| format!("${n}")).collect();
            next += columns.len();
            format!("w{i} AS (INSERT INTO {table} ({}) VALUES ({}))", columns.join(", "), params.join(", "))
        })
        .collect();
    format!("WITH {} SELECT 1", ctes.join(", "))
}

/// The names in a comma-separated column list.
fn column_names(list: &str) -> Vec<&str> {
    list.split(',').map(str::trim).collect()
}

/// Every event column, in the order of [`EventRow`] and of the insert's parameters.
pub const EVENT_COLUMNS: &str = "id, seq, type, subject, time, severity, component_ids, data, public_data, traceparent";

pub fn insert_event_sql(sigil: char) -> String {
    insert_sql(sigil, "events", &column_names(EVENT_COLUMNS))
}

pub fn bind_event<'q, 'a, DB>(
    q: Query<'q, DB, <DB as Database>::Arguments>,
    e: &'a Event,
) -> Query<'q, DB, <DB as Database>::Arguments>
where
    DB: Database,
    DbId: Encode<'a, DB> + Type<DB>,
    DbTime: Encode<'a, DB> + Type<DB>,
    Option<i64>: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
    Option<&'a str>: Encode<'a, DB> + Type<DB>,
    Json<&'a Vec<Uuid>>: Encode<'a, DB> + Type<DB>,
    Json<&'a serde_json::Value>: Encode<'a, DB> + Type<DB>,
    Option<Json<&'a serde_json::Value>>: Encode<'a, DB> + Type<DB>,
{
    q.bind(DbId(e.id))
        .bind(e.seq)
        .bind(e.event_type.as_str())
        .bind(e.subject.as_str())
        .bind(DbTime(e.time))
        .bind(e.severity.map(|s| s.as_str()))
        .bind(Json(&e.component_ids))
        .bind(Json(&e.data))
        .bind(e.public_data.as_ref().map(Json))
        .bind(e.traceparent.as_deref())
}

#[derive(sqlx::FromRow)]
pub struct EventRow {
    id: DbId,
    seq: Option<i64>,
    #[sqlx(rename = "type")]
    event_type: String,
    subject: String,
    time: DbTime,
    severity: Option<String>,
    component_ids: Json<Vec<Uuid>>,
    data: Json<serde_json::Value>,
    public_data: Option<Json<serde_json::Value>>,
    traceparent: Option<String>,
}

impl TryFrom<EventRow> for Event {
    type Error = Error;
    fn try_from(r: EventRow) -> Result<Event> {
        Ok(Event {
            id: r.id.0,
            seq: r.seq,
            event_type: parse("type", &r.event_type)?,
            subject: r.subject,
            time: r.time.0,
            severity: r.severity.as_deref().map(|s| parse("severity", s)).transpose()?,
            component_ids: r.component_ids.0,
            data: r.data.0,
            public_data: r.public_data.map(|d| d.0),
            traceparent: r.traceparent,
        })
    }
}

/// Sequenced events after `after`, in commit order, for either backend.
pub fn events_query<DB>(after: i64, filter: &EventFilter, limit: u32) -> QueryBuilder<DB>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::<DB>::new(format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq > "));
    q.push_bind(after);
    if !filter.types.is_empty() {
        q.push(" AND type IN (");
        let mut sep = q.separated(", ");
        for t in &filter.types {
            sep.push_bind(t.as_str().to_string());
        }
        q.push(")");
    }
    if let Some(s) = &filter.subject {
        q.push(" AND subject = ").push_bind(s.clone());
    }
    if filter.public_only {
        q.push(" AND public_data IS NOT NULL");
    }
    q.push(" ORDER BY seq LIMIT ").push_bind(i64::from(limit));
    q
}

/// Every subscription column but its secrets, in the order of [`SubscriptionRow`].
pub const SUBSCRIPTION_COLUMNS: &str = "id, channel, target, event_types, min_severity, component_ids, \
    include_internal, paused, disabled_at, disabled_reason, failing_since, created_at, updated_at, created_by, version";
/// The secret columns, written after [`SUBSCRIPTION_COLUMNS`].
pub const SUBSCRIPTION_SECRET_COLUMNS: &str = "secret, previous_secret, previous_secret_expires_at";

pub fn insert_subscription_sql(sigil: char) -> String {
    let columns: Vec<&str> =
        column_names(SUBSCRIPTION_COLUMNS).into_iter().chain(column_names(SUBSCRIPTION_SECRET_COLUMNS)).collect();
    insert_sql(sigil, "subscriptions", &columns)
}

/// `UPDATE subscriptions SET <every column but the id> WHERE id = <sigil>1`, bound like an insert.
pub fn update_subscription_sql(sigil: char) -> String {
    let columns: Vec<&str> =
        column_names(SUBSCRIPTION_COLUMNS).into_iter().chain(column_names(SUBSCRIPTION_SECRET_COLUMNS)).collect();
    let sets: Vec<String> =
        columns.iter().enumerate().skip(1).map(|(i, c)| format!("{c} = {sigil}{}", i + 1)).collect();
    format!("UPDATE subscriptions SET {} WHERE id = {sigil}1", sets.join(", "))
}

pub fn bind_subscription<'q, 'a, DB>(
    q: Query<'q, DB, <DB as Database>::Arguments>,
    s: &'a Subscription,
    secrets: &'a SigningSecrets,
) -> Query<'q, DB, <DB as Database>::Arguments>
where
    DB: Database,
    DbId: Encode<'a, DB> + Type<DB>,
    DbTime: Encode<'a, DB> + Type<DB>,
    Option<DbTime>: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
    Option<&'a str>: Encode<'a, DB> + Type<DB>,
    bool: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
    Json<&'a Vec<EventType>>: Encode<'a, DB> + Type<DB>,
    Json<&'a Vec<Uuid>>: Encode<'a, DB> + Type<DB>,
{
    q.bind(DbId(s.id))
        .bind(s.channel.as_str())
        .bind(s.target.as_str())
        .bind(Json(&s.event_types))
        .bind(s.min_severity.map(|m| m.as_str()))
        .bind(Json(&s.component_ids))
        .bind(s.include_internal)
        .bind(s.paused)
        .bind(s.disabled_at.map(time))
        .bind(s.disabled_reason.as_deref())
        .bind(s.failing_since.map(time))
        .bind(DbTime(s.created_at))
        .bind(DbTime(s.updated_at))
        .bind(s.created_by.as_str())
        .bind(s.version)
        .bind(secrets.current.as_deref())
        .bind(secrets.previous.as_deref())
        .bind(secrets.previous_expires_at.map(time))
}

#[derive(sqlx::FromRow)]
pub struct SubscriptionRow {
    id: DbId,
    channel: String,
    target: String,
    event_types: Json<Vec<String>>,
    min_severity: Option<String>,
    component_ids: Json<Vec<Uuid>>,
    include_internal: bool,
    paused: bool,
    disabled_at: Option<DbTime>,
    disabled_reason: Option<String>,
    failing_since: Option<DbTime>,
    created_at: DbTime,
    updated_at: DbTime,
    created_by: String,
    version: i64,
}

impl TryFrom<SubscriptionRow> for Subscription {
    type Error = Error;
    fn try_from(r: SubscriptionRow) -> Result<Subscription> {
        Ok(Subscription {
            id: r.id.0,
            channel: parse("channel", &r.channel)?,
            target: r.target,
            event_types: r.event_types.0.iter().map(|t| parse("event_types", t)).collect::<Result<_>>()?,
            min_severity: r.min_severity.as_deref().map(|s| parse("min_severity", s)).transpose()?,
            component_ids: r.component_ids.0,
            include_internal: r.include_internal,
            paused: r.paused,
            disabled_at: r.disabled_at.map(|t| t.0),
            disabled_reason: r.disabled_reason,
            failing_since: r.failing_since.map(|t| t.0),
            created_at: r.created_at.0,
            updated_at: r.updated_at.0,
            created_by: r.created_by,
            version: r.version,
        })
    }
}

/// A subscription's signing secrets.
#[derive(sqlx::FromRow)]
pub struct SecretsRow {
    secret: Option<String>,
    previous_secret: Option<String>,
    previous_secret_expires_at: Option<DbTime>,
}

impl From<SecretsRow> for SigningSecrets {
    fn from(r: SecretsRow) -> SigningSecrets {
        SigningSecrets {
            current: r.secret,
            previous: r.previous_secret,
            previous_expires_at: r.previous_secret_expires_at.map(|t| t.0),
        }
    }
}

/// Every delivery column the API shows, in the order of [`DeliveryRow`].
pub const DELIVERY_COLUMNS: &str = "id, event_id, subscription_id, event_type, status, attempts, next_attempt_at, \
    last_attempt_at, last_status_code, last_error, created_at, delivered_at";

#[derive(sqlx::FromRow)]
pub struct DeliveryRow {
    id: DbId,
    event_id: DbId,
    subscription_id: DbId,
    event_type: String,
    status: String,
    attempts: i32,
    next_attempt_at: Option<DbTime>,
    last_attempt_at: Option<DbTime>,
    last_status_code: Option<i32>,
    last_error: Option<String>,
    created_at: DbTime,
    delivered_at: Option<DbTime>,
}

impl TryFrom<DeliveryRow> for Delivery {
    type Error = Error;
    fn try_from(r: DeliveryRow) -> Result<Delivery> {
        Ok(Delivery {
            id: r.id.0,
            event_id: r.event_id.0,
            subscription_id: r.subscription_id.0,
            event_type: parse("event_type", &r.event_type)?,
            status: parse("status", &r.status)?,
            attempts: r.attempts,
            next_attempt_at: r.next_attempt_at.map(|t| t.0),
            last_attempt_at: r.last_attempt_at.map(|t| t.0),
            last_status_code: r.last_status_code,
            last_error: r.last_error,
            created_at: r.created_at.0,
            delivered_at: r.delivered_at.map(|t| t.0),
        })
    }
}

pub const ATTEMPT_COLUMNS: &str =
    "id, delivery_id, subscription_id, attempted_at, status_code, latency_ms, response_excerpt, error";

pub fn insert_attempt_sql(sigil: char) -> String {
    insert_sql(sigil, "delivery_attempts", &column_names(ATTEMPT_COLUMNS))
}

pub fn bind_attempt<'q, 'a, DB>(
    q: Query<'q, DB, <DB as Database>::Arguments>,
    a: &'a DeliveryAttempt,
) -> Query<'q, DB, <DB as Database>::Arguments>
where
    DB: Database,
    DbId: Encode<'a, DB> + Type<DB>,
    DbTime: Encode<'a, DB> + Type<DB>,
    Option<i32>: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
    Option<&'a str>: Encode<'a, DB> + Type<DB>,
{
    q.bind(DbId(a.id))
        .bind(DbId(a.delivery_id))
        .bind(DbId(a.subscription_id))
        .bind(DbTime(a.attempted_at))
        .bind(a.status_code)
        .bind(a.latency_ms)
        .bind(a.response_excerpt.as_deref())
        .bind(a.error.as_deref())
}

#[derive(sqlx::FromRow)]
pub struct AttemptRow {
    id: DbId,
    delivery_id: DbId,
    subscription_id: DbId,
    attempted_at: DbTime,
    status_code: Option<i32>,
    latency_ms: i64,
    response_excerpt: Option<String>,
    error: Option<String>,
}

impl From<AttemptRow> for DeliveryAttempt {
    fn from(r: AttemptRow) -> DeliveryAttempt {
        DeliveryAttempt {
            id: r.id.0,
            delivery_id: r.delivery_id.0,
            subscription_id: r.subscription_id.0,
            attempted_at: r.attempted_at.0,
            status_code: r.status_code,
            latency_ms: r.latency_ms,
            response_excerpt: r.response_excerpt,
            error: r.error,
        }
    }
}

/// A subscription's deliveries, newest first, optionally of one status.
pub fn deliveries_query<DB>(
    subscription_id: Uuid,
    status: Option<DeliveryStatus>,
    after: Option<&PageToken>,
    limit: u32,
) -> Result<QueryBuilder<DB>>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'t> DbId: Encode<'t, DB> + Type<DB>,
    for<'t> DbTime: Encode<'t, DB> + Type<DB>,
    for<'t> &'static str: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::<DB>::new(format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE subscription_id = "));
    q.push_bind(DbId(subscription_id));
    if let Some(s) = status {
        q.push(" AND status = ").push_bind(s.as_str());
    }
    push_newest_first(&mut q, "created_at", after, limit)?;
    Ok(q)
}

/// Attempts, newest first: of one delivery, or of every delivery of one subscription.
pub fn attempts_query<DB>(column: &str, id: Uuid, after: Option<&PageToken>, limit: u32) -> Result<QueryBuilder<DB>>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'t> DbId: Encode<'t, DB> + Type<DB>,
    for<'t> DbTime: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::<DB>::new(format!("SELECT {ATTEMPT_COLUMNS} FROM delivery_attempts WHERE {column} = "));
    q.push_bind(DbId(id));
    push_newest_first(&mut q, "attempted_at", after, limit)?;
    Ok(q)
}

/// Subscriptions newest first.
pub fn subscriptions_query<DB>(after: Option<&PageToken>, limit: u32) -> Result<QueryBuilder<DB>>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'t> DbId: Encode<'t, DB> + Type<DB>,
    for<'t> DbTime: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::<DB>::new(format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE 1 = 1"));
    push_newest_first(&mut q, "created_at", after, limit)?;
    Ok(q)
}

/// A subscription and its signing secrets, from a row carrying both column sets.
pub fn subscription_with_secrets<R: sqlx::Row>(row: &R) -> Result<(Subscription, SigningSecrets)>
where
    for<'r> SubscriptionRow: sqlx::FromRow<'r, R>,
    for<'r> SecretsRow: sqlx::FromRow<'r, R>,
{
    let subscription: SubscriptionRow = sqlx::FromRow::from_row(row).map_err(|e| Error::Internal(e.to_string()))?;
    let secrets: SecretsRow = sqlx::FromRow::from_row(row).map_err(|e| Error::Internal(e.to_string()))?;
    Ok((Subscription::try_from(subscription)?, secrets.into()))
}

/// Joins claimed deliveries with their events and subscriptions (rows carrying secrets).
pub fn join_claims<R: sqlx::Row>(
    deliveries: Vec<Delivery>,
    events: Vec<EventRow>,
    subscriptions: &[R],
) -> Result<Vec<super::ClaimedDelivery>>
where
    for<'r> SubscriptionRow: sqlx::FromRow<'r, R>,
    for<'r> SecretsRow: sqlx::FromRow<'r, R>,
{
    let mut by_id = std::collections::HashMap::with_capacity(events.len());
    for row in events {
        let event = Event::try_from(row)?;
        by_id.insert(event.id, std::sync::Arc::new(event));
    }
    let mut subs = std::collections::HashMap::with_capacity(subscriptions.len());
    for row in subscriptions {
        let (s, secrets) = subscription_with_secrets(row)?;
        subs.insert(s.id, (std::sync::Arc::new(s), std::sync::Arc::new(secrets)));
    }
    deliveries
        .into_iter()
        .map(|delivery| {
            let event = by_id.get(&delivery.event_id).cloned();
            let sub = subs.get(&delivery.subscription_id).cloned();
            match (event, sub) {
                (Some(event), Some((subscription, secrets))) => {
                    Ok(super::ClaimedDelivery { delivery, event, subscription, secrets })
                }
                _ => Err(Error::Internal(format!("delivery {} lost its event or subscription", delivery.id))),
            }
        })
        .collect()
}

/// `/metrics`: open incidents by severity and status.
pub static OBSERVE_OPEN_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let open: Vec<String> = crate::domain::Status::OPEN.iter().map(|s| format!("'{s}'")).collect();
    format!(
        "SELECT severity, status, count(*) FROM incidents WHERE status IN ({}) GROUP BY severity, status",
        open.join(", ")
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
    Ok(super::Observed { open_incidents, pending_active, pending_paused, oldest_pending: oldest.map(|t| t.0), pool })
}
