//! Integrations, alert groups, alerts and acknowledgement reminders on Postgres.

use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{PgStore, PgTx, db_err};
use crate::domain::alert::Alert;
use crate::domain::integration::Integration;
use crate::domain::page::PageToken;
use crate::domain::{Result, Severity};
use crate::store::sql::integrations::{
    ACTIVE_ALERTS, ALERTS_PER_INSERT, AckCandidate, AckCandidateRow, AlertRow, AlertsOf, DELETE_INTEGRATION,
    ENSURE_ALERT_GROUP, INSERT_INTEGRATION, IntegrationRow, IntegrationWrite, RECORD_ACK_REMINDER, SELECT_ALERT_GROUP,
    SELECT_INTEGRATION, SELECT_INTEGRATION_BY_SECRET, SELECT_INTEGRATION_SECRET, SET_ALERT_GROUP,
    SET_INTEGRATION_SECRET, UPDATE_INTEGRATION, ack_candidates_query, alerts_query, insert_alerts_query,
    integrations_query,
};
use crate::store::sql::{DbId, DbTime};
use crate::store::{IntegrationStore, IntegrationTx};

static LOCK_INTEGRATION: LazyLock<String> = LazyLock::new(|| format!("{} FOR UPDATE", *SELECT_INTEGRATION));
static LOCK_ALERT_GROUP: LazyLock<String> = LazyLock::new(|| format!("{SELECT_ALERT_GROUP} FOR UPDATE"));

#[async_trait]
impl IntegrationStore for PgStore {
    async fn get_integration(&self, id: Uuid) -> Result<Option<Integration>> {
        super::by_id::<IntegrationRow, _>(&self.pool, SELECT_INTEGRATION.as_str(), id).await
    }

    async fn get_integration_secret(&self, id: Uuid) -> Result<Option<(Integration, Vec<u8>)>> {
        let row = sqlx::query(SELECT_INTEGRATION_SECRET.as_str())
            .bind(DbId(id))
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.map(|r| super::super::sql::integrations::with_secret(&r)).transpose()
    }

    async fn find_integration_by_secret(&self, secret_hash: &[u8]) -> Result<Option<Integration>> {
        let row: Option<IntegrationRow> = sqlx::query_as(SELECT_INTEGRATION_BY_SECRET.as_str())
            .bind(secret_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.map(Integration::try_from).transpose()
    }

    async fn list_integrations(&self, after: Option<&PageToken>, limit: u32) -> Result<Vec<Integration>> {
        super::list::<IntegrationRow, _>(&self.pool, integrations_query(after, limit)).await
    }

    async fn list_alerts(&self, of: AlertsOf, after: Option<&PageToken>, limit: u32) -> Result<Vec<Alert>> {
        super::list::<AlertRow, _>(&self.pool, alerts_query(of, after, limit)).await
    }

    async fn ack_candidates(
        &self,
        severities: &[Severity],
        declared_before: DateTime<Utc>,
        sent_before: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<AckCandidate>> {
        let query = ack_candidates_query(severities, declared_before, sent_before, limit);
        super::list::<AckCandidateRow, _>(&self.pool, Ok(query)).await
    }
}

#[async_trait]
impl IntegrationTx for PgTx {
    async fn insert_integration(&mut self, integration: &Integration, secret_hash: &[u8]) -> Result<()> {
        IntegrationWrite::from(integration)
            .bind(sqlx::query(INSERT_INTEGRATION.as_str()))
            .bind(secret_hash)
            .execute(self.conn().await?)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn lock_integration(&mut self, id: Uuid) -> Result<Option<Integration>> {
        let row: Option<IntegrationRow> = sqlx::query_as(LOCK_INTEGRATION.as_str())
            .bind(DbId(id))
            .fetch_optional(self.conn().await?)
            .await
            .map_err(db_err)?;
        row.map(Integration::try_from).transpose()
    }

    async fn update_integration(&mut self, integration: &Integration, secret_hash: Option<&[u8]>) -> Result<()> {
        let conn = self.conn().await?;
        IntegrationWrite::from(integration)
            .bind(sqlx::query(UPDATE_INTEGRATION.as_str()))
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
        if let Some(hash) = secret_hash {
            sqlx::query(SET_INTEGRATION_SECRET)
                .bind(DbId(integration.id))
                .bind(hash)
                .execute(&mut *conn)
                .await
                .map_err(db_err)?;
        }
        Ok(())
    }

    async fn delete_integration(&mut self, id: Uuid) -> Result<()> {
        sqlx::query(DELETE_INTEGRATION).bind(DbId(id)).execute(self.conn().await?).await.map_err(db_err)?;
        Ok(())
    }

    async fn lock_alert_group(&mut self, integration_id: Uuid, dedup_key: &str) -> Result<Option<Uuid>> {
        let conn = self.conn().await?;
        sqlx::query(ENSURE_ALERT_GROUP)
            .bind(DbId(integration_id))
            .bind(dedup_key)
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
        let (incident,): (Option<DbId>,) = sqlx::query_as(LOCK_ALERT_GROUP.as_str())
            .bind(DbId(integration_id))
            .bind(dedup_key)
            .fetch_one(&mut *conn)
            .await
            .map_err(db_err)?;
        Ok(incident.map(|i| i.0))
    }

    async fn set_alert_group(&mut self, integration_id: Uuid, dedup_key: &str, incident_id: Uuid) -> Result<()> {
        sqlx::query(SET_ALERT_GROUP)
            .bind(DbId(integration_id))
            .bind(dedup_key)
            .bind(DbId(incident_id))
            .execute(self.conn().await?)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn insert_alerts(&mut self, alerts: &[Alert]) -> Result<()> {
        let conn = self.conn().await?;
        for chunk in alerts.chunks(ALERTS_PER_INSERT) {
            insert_alerts_query(chunk).build().execute(&mut *conn).await.map_err(db_err)?;
        }
        Ok(())
    }

    async fn active_alerts(&mut self, incident_id: Uuid, dedup_key: &str) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as(ACTIVE_ALERTS)
            .bind(DbId(incident_id))
            .bind(dedup_key)
            .fetch_one(self.conn().await?)
            .await
            .map_err(db_err)?;
        Ok(n)
    }

    async fn record_ack_reminder(
        &mut self,
        incident_id: Uuid,
        before: i64,
        now_sent: i64,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let done = sqlx::query(RECORD_ACK_REMINDER)
            .bind(DbId(incident_id))
            .bind(before)
            .bind(now_sent)
            .bind(DbTime(at))
            .execute(self.conn().await?)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }
}
