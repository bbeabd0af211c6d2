//! API keys and the audit trail on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{SqliteStore, SqliteTx, db_err};
use crate::domain::access::{AuditFilter, IssuedKey};
use crate::domain::page::PageToken;
use crate::domain::{ApiKey, AuditEvent, Result};
use crate::store::sql::access::{
    ApiKeyRow, ApiKeyWrite, AuditRow, AuditWrite, COUNT_API_KEYS, FIND_API_KEY, INSERT_API_KEY, INSERT_AUDIT_EVENT,
    REVOKE_API_KEY, SELECT_API_KEY_BY_ID, TOUCH_API_KEY, api_keys_query, audit_events_query,
};
use crate::store::sql::{DbId, DbTime};
use crate::store::{AccessStore, AccessTx};

#[async_trait]
impl AccessStore for SqliteStore {
    async fn find_api_key(&self, lookup: &str) -> Result<Option<(ApiKey, Vec<u8>)>> {
        let row: Option<(Vec<u8>, DbId)> =
            sqlx::query_as(FIND_API_KEY).bind(lookup).fetch_optional(&self.readers).await.map_err(db_err)?;
        let Some((hash, id)) = row else { return Ok(None) };
        Ok(self.get_api_key(id.0).await?.map(|k| (k, hash)))
    }

    async fn get_api_key(&self, id: Uuid) -> Result<Option<ApiKey>> {
        super::by_id::<ApiKeyRow, _>(&self.readers, SELECT_API_KEY_BY_ID.as_str(), id).await
    }

    async fn list_api_keys(&self, after: Option<&PageToken>, limit: u32) -> Result<Vec<ApiKey>> {
        super::list::<ApiKeyRow, _>(&self.readers, api_keys_query(after, limit)).await
    }

    async fn touch_api_key(&self, id: Uuid, at: DateTime<Utc>) -> Result<()> {
        sqlx::query(TOUCH_API_KEY).bind(DbId(id)).bind(DbTime(at)).execute(&self.writer).await.map_err(db_err)?;
        Ok(())
    }

    async fn list_audit_events(
        &self,
        filter: &AuditFilter,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>> {
        super::list::<AuditRow, _>(&self.readers, audit_events_query(filter, after, limit)).await
    }
}

#[async_trait]
impl AccessTx for SqliteTx {
    async fn insert_api_key(&mut self, key: &IssuedKey) -> Result<()> {
        ApiKeyWrite::from(key).bind(sqlx::query(INSERT_API_KEY.as_str())).execute(self.conn()).await.map_err(db_err)?;
        Ok(())
    }

    async fn revoke_api_key(&mut self, id: Uuid, at: DateTime<Utc>) -> Result<Option<ApiKey>> {
        let row: Option<ApiKeyRow> = sqlx::query_as(REVOKE_API_KEY.as_str())
            .bind(DbId(id))
            .bind(DbTime(at))
            .fetch_optional(self.conn())
            .await
            .map_err(db_err)?;
        row.map(ApiKey::try_from).transpose()
    }

    async fn count_api_keys_exclusively(&mut self) -> Result<i64> {
        // The write transaction already excludes every other writer.
        let (n,): (i64,) = sqlx::query_as(COUNT_API_KEYS).fetch_one(self.conn()).await.map_err(db_err)?;
        Ok(n)
    }

    async fn insert_audit_event(&mut self, event: &AuditEvent) -> Result<()> {
        AuditWrite::from(event)
            .bind(sqlx::query(INSERT_AUDIT_EVENT.as_str()))
            .execute(self.conn())
            .await
            .map_err(db_err)?;
        Ok(())
    }
}
