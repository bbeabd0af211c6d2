//! API keys and the audit trail: rows, conversions and the statements both backends share.

use std::sync::LazyLock;

use sqlx::types::Json;
use sqlx::{Database, Encode, QueryBuilder, Type};

use super::{DbId, DbTime, insert_sql, parse_all, push_newest_first, read_row, select_sql, time, untime, write_row};
use crate::domain::access::{AuditFilter, IssuedKey};
use crate::domain::page::PageToken;
use crate::domain::{ApiKey, AuditEvent, Error, Result};

read_row! {
    /// An API key as read (without its secret hash).
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
}

write_row! {
    /// An issued key as written: its lookup id and secret hash, then the key.
    pub struct ApiKeyWrite<'a> {
        lookup: &'a str,
        secret_hash: &'a [u8],
        id: DbId,
        name: &'a str,
        prefix: &'a str,
        scopes: Json<Vec<&'a str>>,
        created_at: DbTime,
        expires_at: Option<DbTime>,
        last_used_at: Option<DbTime>,
        revoked_at: Option<DbTime>,
        created_by: Option<&'a str>,
    }
}

impl<'a> From<&'a IssuedKey> for ApiKeyWrite<'a> {
    fn from(issued: &'a IssuedKey) -> Self {
        // The secret itself is never stored.
        let IssuedKey { key, lookup, secret_hash, secret: _ } = issued;
        let ApiKey { id, name, prefix, scopes, created_at, expires_at, last_used_at, revoked_at, created_by } = key;
        ApiKeyWrite {
            lookup,
            secret_hash,
            id: DbId(*id),
            name,
            prefix,
            scopes: Json(scopes.iter().map(|s| s.as_str()).collect()),
            created_at: DbTime(*created_at),
            expires_at: time(*expires_at),
            last_used_at: time(*last_used_at),
            revoked_at: time(*revoked_at),
            created_by: created_by.as_deref(),
        }
    }
}

impl TryFrom<ApiKeyRow> for ApiKey {
    type Error = Error;
    fn try_from(row: ApiKeyRow) -> Result<ApiKey> {
        let ApiKeyRow { id, name, prefix, scopes, created_at, expires_at, last_used_at, revoked_at, created_by } = row;
        Ok(ApiKey {
            id: id.0,
            name,
            prefix,
            scopes: parse_all("scopes", &scopes.0)?,
            created_at: created_at.0,
            expires_at: untime(expires_at),
            last_used_at: untime(last_used_at),
            revoked_at: untime(revoked_at),
            created_by,
        })
    }
}

pub static INSERT_API_KEY: LazyLock<String> = LazyLock::new(|| insert_sql("api_keys", ApiKeyWrite::COLUMNS));
pub static SELECT_API_KEY_BY_ID: LazyLock<String> =
    LazyLock::new(|| select_sql(ApiKeyRow::COLUMNS, "api_keys", "WHERE id = $1"));
pub static REVOKE_API_KEY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1 RETURNING {}",
        ApiKeyRow::COLUMNS.join(", ")
    )
});
pub const FIND_API_KEY: &str = "SELECT secret_hash, id FROM api_keys WHERE lookup = $1";
pub const TOUCH_API_KEY: &str = "UPDATE api_keys SET last_used_at = $2 WHERE id = $1";
pub const COUNT_API_KEYS: &str = "SELECT count(*) FROM api_keys";

/// API keys newest first, after the page token.
pub fn api_keys_query<DB>(after: Option<&PageToken>, limit: u32) -> Result<QueryBuilder<DB>>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'t> DbId: Encode<'t, DB> + Type<DB>,
    for<'t> DbTime: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::<DB>::new(select_sql(ApiKeyRow::COLUMNS, "api_keys", "WHERE 1 = 1"));
    push_newest_first(&mut q, "created_at", after, limit)?;
    Ok(q)
}

read_row! {
    /// An audit record as read.
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
}

write_row! {
    /// An audit record as written.
    pub struct AuditWrite<'a> {
        id: DbId,
        occurred_at: DbTime,
        actor_key_id: Option<DbId>,
        actor_name: &'a str,
        action: &'a str,
        resource_type: &'a str,
        resource_id: &'a str,
        details: Json<&'a serde_json::Value>,
    }
}

impl<'a> From<&'a AuditEvent> for AuditWrite<'a> {
    fn from(event: &'a AuditEvent) -> Self {
        let AuditEvent { id, occurred_at, actor_key_id, actor_name, action, resource_type, resource_id, details } =
            event;
        AuditWrite {
            id: DbId(*id),
            occurred_at: DbTime(*occurred_at),
            actor_key_id: actor_key_id.map(DbId),
            actor_name,
            action,
            resource_type,
            resource_id,
            details: Json(details),
        }
    }
}

impl TryFrom<AuditRow> for AuditEvent {
    type Error = Error;
    fn try_from(row: AuditRow) -> Result<AuditEvent> {
        let AuditRow { id, occurred_at, actor_key_id, actor_name, action, resource_type, resource_id, details } = row;
        Ok(AuditEvent {
            id: id.0,
            occurred_at: occurred_at.0,
            actor_key_id: actor_key_id.map(|k| k.0),
            actor_name,
            action,
            resource_type,
            resource_id,
            details: details.0,
        })
    }
}

pub const AUDIT_TABLE: &str = "audit_events";
pub static INSERT_AUDIT_EVENT: LazyLock<String> = LazyLock::new(|| insert_sql(AUDIT_TABLE, AuditWrite::COLUMNS));

/// Audit records matching the filter, newest first (occurred_at, then id), after the page
/// token.
pub fn audit_events_query<DB>(filter: &AuditFilter, after: Option<&PageToken>, limit: u32) -> Result<QueryBuilder<DB>>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'t> DbId: Encode<'t, DB> + Type<DB>,
    for<'t> DbTime: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::<DB>::new(select_sql(AuditRow::COLUMNS, AUDIT_TABLE, "WHERE 1 = 1"));
    let AuditFilter { actor_key_id, resource_type, resource_id, action } = filter;
    if let Some(k) = actor_key_id {
        q.push(" AND actor_key_id = ").push_bind(DbId(*k));
    }
    for (column, value) in [("resource_type", resource_type), ("resource_id", resource_id), ("action", action)] {
        if let Some(v) = value {
            q.push(format!(" AND {column} = ")).push_bind(v.clone());
        }
    }
    push_newest_first(&mut q, "occurred_at", after, limit)?;
    Ok(q)
}
