//! Idempotency keys on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::{SqliteTx, db_err};
use crate::domain::Result;
use crate::store::sql::DbTime;
use crate::store::sql::idempotency::{CLAIM_KEY, SAVE_RESPONSE, SELECT_CLAIMED, existing};
use crate::store::{IdempotencyClaim, IdempotencyTx};

#[async_trait]
impl IdempotencyTx for SqliteTx {
    async fn claim_idempotency_key(
        &mut self,
        scope: &str,
        key: &str,
        request_hash: &[u8],
        now: DateTime<Utc>,
        expired_before: DateTime<Utc>,
    ) -> Result<IdempotencyClaim> {
        let conn = self.conn();
        let claimed = sqlx::query(CLAIM_KEY)
            .bind(scope)
            .bind(key)
            .bind(request_hash)
            .bind(DbTime(now))
            .bind(DbTime(expired_before))
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
        if claimed.rows_affected() == 1 {
            return Ok(IdempotencyClaim::Claimed);
        }
        let row = sqlx::query_as(SELECT_CLAIMED).bind(scope).bind(key).fetch_one(conn).await.map_err(db_err)?;
        existing(scope, key, row)
    }

    async fn save_idempotent_response(&mut self, scope: &str, key: &str, response: &serde_json::Value) -> Result<()> {
        sqlx::query(SAVE_RESPONSE)
            .bind(scope)
            .bind(key)
            .bind(Json(response))
            .execute(self.conn())
            .await
            .map_err(db_err)?;
        Ok(())
    }
}
