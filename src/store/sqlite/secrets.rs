//! Sealing stored secrets again on SQLite: reads on the readers, writes through the writer
//! (the statements are in `sql/secrets.rs`).

use async_trait::async_trait;
use uuid::Uuid;

use super::{SqliteStore, db_err};
use crate::domain::Result;
use crate::secrets::Reseal;
use crate::store::SecretStore;
use crate::store::sql::DbId;
use crate::store::sql::secrets::{
    RESEAL_BATCH, Resealed, SERVICE_KEYS, SUBSCRIPTION_SECRETS_PAGE, reseal_service_keys, reseal_subscriptions,
};

#[async_trait]
impl SecretStore for SqliteStore {
    async fn reseal_secrets(&self, scope: Reseal) -> Result<Resealed> {
        let mut tally = Resealed::default();
        let mut after = Uuid::nil();
        loop {
            let rows: Vec<(DbId, Option<String>, Option<String>)> = sqlx::query_as(SUBSCRIPTION_SECRETS_PAGE)
                .bind(DbId(after))
                .bind(RESEAL_BATCH)
                .fetch_all(&self.readers)
                .await
                .map_err(db_err)?;
            let Some((last, _, _)) = rows.last() else { break };
            after = last.0;
            let replacements = reseal_subscriptions(&self.keys, rows, scope, &mut tally)?;
            if replacements.is_empty() {
                continue;
            }
            let mut tx = self.begin_write().await?;
            for r in replacements {
                let done =
                    sqlx::query(r.sql).bind(r.new).bind(r.key).bind(r.old).execute(&mut *tx).await.map_err(db_err)?;
                tally.resealed += done.rows_affected();
            }
            tx.commit().await.map_err(db_err)?;
        }
        let rows: Vec<(String, Vec<u8>)> =
            sqlx::query_as(SERVICE_KEYS).fetch_all(&self.readers).await.map_err(db_err)?;
        for r in reseal_service_keys(&self.keys, rows, scope, &mut tally)? {
            let done =
                sqlx::query(r.sql).bind(r.new).bind(r.key).bind(r.old).execute(&self.writer).await.map_err(db_err)?;
            tally.resealed += done.rows_affected();
        }
        if tally.resealed > 0 {
            // The replaced values' old pages leave the write-ahead log (best effort: a reader
            // in progress may keep part of it until the next checkpoint).
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.writer).await {
                tracing::debug!(error = %e, "could not truncate the write-ahead log after encrypting secrets");
            }
        }
        Ok(tally)
    }
}
