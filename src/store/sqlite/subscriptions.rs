//! Subscriptions and the delivery outbox on SQLite: claims inside the single write
//! transaction, and batches passed as JSON arrays.

use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use super::{SqliteStore, SqliteTx, db_err, json_list};
use crate::domain::page::PageToken;
use crate::domain::query::AttemptsOf;
use crate::domain::subscription::SigningSecrets;
use crate::domain::{Delivery, DeliveryAttempt, DeliveryStatus, Result, Subscription};
use crate::store::sql::events::{EventRow, SELECT_EVENTS};
use crate::store::sql::subscriptions::{
    AttemptRow, AttemptWrite, CANCEL_DELIVERIES, DELETE_SUBSCRIPTION, DeliveryRow, FAILED_DELIVERIES, INSERT_ATTEMPT,
    INSERT_SUBSCRIPTION, SELECT_DELIVERY, SELECT_FANOUT_SUBSCRIPTIONS, SELECT_SUBSCRIPTION,
    SELECT_SUBSCRIPTION_WITH_SECRETS, SubscriptionRow, SubscriptionWrite, UPDATE_SUBSCRIPTION, attempts_query,
    clear_failing_sql, deliveries_query, join_claims, select_with_secrets, subscription_with_secrets,
    subscriptions_query,
};
use crate::store::sql::{DbId, DbTime};
use crate::store::{AttemptResult, ClaimedDelivery, Lease, NewDelivery, SubscriptionStore, SubscriptionTx};

/// Records the outcome, only while the worker still holds the lease.
const FINISH_ATTEMPT: &str = "UPDATE deliveries SET status = $3, attempts = attempts + 1, next_attempt_at = $4, \
     last_attempt_at = $5, last_status_code = $6, last_error = $7, \
     delivered_at = CASE WHEN $3 = 'delivered' THEN $5 ELSE delivered_at END, \
     lease_owner = NULL, lease_expires_at = NULL \
     WHERE id = $1 AND lease_owner = $2 AND status = 'sending'";
static CLEAR_FAILING: LazyLock<String> = LazyLock::new(|| clear_failing_sql("id IN (SELECT value FROM json_each($1))"));
static CLAIM_DELIVERIES: LazyLock<String> = LazyLock::new(|| {
    // As on Postgres: due pending deliveries and expired leases, each through its own index.
    let sendable = "d.subscription_id NOT IN (SELECT value FROM json_each($5)) AND d.subscription_id NOT IN \
                    (SELECT s.id FROM subscriptions s WHERE s.paused OR s.disabled_at IS NOT NULL)";
    format!(
        "UPDATE deliveries SET status = 'sending', lease_owner = $1, lease_expires_at = $3 WHERE id IN \
         (SELECT id FROM (SELECT d.id FROM deliveries d WHERE d.status = 'sending' AND d.lease_expires_at < $2 \
                          AND {sendable} ORDER BY d.lease_expires_at LIMIT $4) \
          UNION ALL \
          SELECT id FROM (SELECT d.id FROM deliveries d WHERE d.status = 'pending' AND d.next_attempt_at <= $2 \
                          AND {sendable} ORDER BY d.next_attempt_at LIMIT $4) \
          LIMIT $4) RETURNING {}",
        DeliveryRow::COLUMNS.join(", ")
    )
});
/// Events by id (`$1`: the ids); also read by the customer-mail claim.
pub(super) static SELECT_EVENTS_BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("{}WHERE id IN (SELECT value FROM json_each($1))", *SELECT_EVENTS));
static SELECT_SUBSCRIPTIONS_BY_ID: LazyLock<String> =
    LazyLock::new(|| select_with_secrets("WHERE id IN (SELECT value FROM json_each($1))"));

#[async_trait]
impl SubscriptionStore for SqliteStore {
    async fn get_subscription(&self, id: Uuid) -> Result<Option<Subscription>> {
        super::by_id::<SubscriptionRow, _>(&self.readers, SELECT_SUBSCRIPTION.as_str(), id).await
    }

    async fn list_subscriptions(&self, after: Option<&PageToken>, limit: u32) -> Result<Vec<Subscription>> {
        super::list::<SubscriptionRow, _>(&self.readers, subscriptions_query(after, limit)).await
    }

    async fn get_delivery(&self, id: Uuid) -> Result<Option<Delivery>> {
        super::by_id::<DeliveryRow, _>(&self.readers, SELECT_DELIVERY.as_str(), id).await
    }

    async fn list_deliveries(
        &self,
        subscription_id: Uuid,
        status: Option<DeliveryStatus>,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        super::list::<DeliveryRow, _>(&self.readers, deliveries_query(subscription_id, status, after, limit)).await
    }

    async fn list_attempts(
        &self,
        of: AttemptsOf,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<DeliveryAttempt>> {
        super::list::<AttemptRow, _>(&self.readers, attempts_query(of, after, limit)).await
    }

    async fn claim_deliveries(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        exclude: &[Uuid],
    ) -> Result<Vec<ClaimedDelivery>> {
        // Inside the single write transaction nobody else claims at the same time.
        let mut tx = self.begin_write().await?;
        let rows: Vec<DeliveryRow> = sqlx::query_as(CLAIM_DELIVERIES.as_str())
            .bind(owner)
            .bind(DbTime(now))
            .bind(DbTime(lease_until))
            .bind(i64::from(limit))
            .bind(json_list(exclude))
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
        let deliveries = rows.into_iter().map(Delivery::try_from).collect::<Result<Vec<_>>>()?;
        let events: Vec<EventRow> = sqlx::query_as(SELECT_EVENTS_BY_ID.as_str())
            .bind(json_list(deliveries.iter().map(|d| d.event_id)))
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
        let subs = sqlx::query(SELECT_SUBSCRIPTIONS_BY_ID.as_str())
            .bind(json_list(deliveries.iter().map(|d| d.subscription_id)))
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        join_claims(deliveries, events, &subs, &self.keys)
    }

    async fn extend_leases(&self, owner: &str, ids: &[Uuid], until: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "UPDATE deliveries SET lease_expires_at = $3 WHERE lease_owner = $1 AND status = 'sending' \
             AND id IN (SELECT value FROM json_each($2))",
        )
        .bind(owner)
        .bind(json_list(ids))
        .bind(DbTime(until))
        .execute(&self.writer)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn release_deliveries(&self, owner: &str, ids: &[Uuid], at: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = $3, lease_owner = NULL, lease_expires_at = NULL \
             WHERE lease_owner = $1 AND status = 'sending' AND id IN (SELECT value FROM json_each($2))",
        )
        .bind(owner)
        .bind(json_list(ids))
        .bind(DbTime(at))
        .execute(&self.writer)
        .await
        .map_err(db_err)?;
        Ok(())
    }
}

#[async_trait]
impl SubscriptionTx for SqliteTx {
    async fn insert_subscription(&mut self, subscription: &Subscription, secrets: &SigningSecrets) -> Result<()> {
        SubscriptionWrite::new(subscription, secrets, &self.keys)
            .bind(sqlx::query(INSERT_SUBSCRIPTION.as_str()))
            .execute(self.conn())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn lock_subscription(&mut self, id: Uuid) -> Result<Option<(Subscription, SigningSecrets)>> {
        let row = sqlx::query(SELECT_SUBSCRIPTION_WITH_SECRETS.as_str())
            .bind(DbId(id))
            .fetch_optional(self.conn())
            .await
            .map_err(db_err)?;
        row.as_ref().map(|r| subscription_with_secrets(r, &self.keys)).transpose()
    }

    async fn update_subscription(&mut self, subscription: &Subscription, secrets: &SigningSecrets) -> Result<()> {
        SubscriptionWrite::new(subscription, secrets, &self.keys)
            .bind(sqlx::query(UPDATE_SUBSCRIPTION.as_str()))
            .execute(self.conn())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn delete_subscription(&mut self, id: Uuid) -> Result<()> {
        sqlx::query(DELETE_SUBSCRIPTION).bind(DbId(id)).execute(self.conn()).await.map_err(db_err)?;
        Ok(())
    }

    async fn fanout_subscriptions(&mut self) -> Result<Vec<(Subscription, SigningSecrets)>> {
        let rows = sqlx::query(SELECT_FANOUT_SUBSCRIPTIONS.as_str()).fetch_all(self.conn()).await.map_err(db_err)?;
        rows.iter().map(|r| subscription_with_secrets(r, &self.keys)).collect()
    }

    async fn record_attempts(&mut self, results: &[AttemptResult]) -> Result<u64> {
        let conn = self.conn();
        let mut updated = 0;
        for result in results {
            AttemptWrite::from(&result.attempt)
                .bind(sqlx::query(INSERT_ATTEMPT.as_str()))
                .execute(&mut *conn)
                .await
                .map_err(db_err)?;
            let a = &result.attempt;
            updated += sqlx::query(FINISH_ATTEMPT)
                .bind(DbId(a.delivery_id))
                .bind(result.owner.as_str())
                .bind(result.status.as_str())
                .bind(result.next_attempt_at.map(DbTime))
                .bind(DbTime(a.attempted_at))
                .bind(a.status_code)
                .bind(a.error.as_deref())
                .execute(&mut *conn)
                .await
                .map_err(db_err)?
                .rows_affected();
        }
        Ok(updated)
    }

    async fn clear_failing(&mut self, subscription_ids: &[Uuid], now: DateTime<Utc>) -> Result<()> {
        if subscription_ids.is_empty() {
            return Ok(());
        }
        sqlx::query(CLEAR_FAILING.as_str())
            .bind(json_list(subscription_ids))
            .bind(DbTime(now))
            .execute(self.conn())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn cancel_deliveries(&mut self, subscription_id: Uuid) -> Result<u64> {
        let done =
            sqlx::query(CANCEL_DELIVERIES).bind(DbId(subscription_id)).execute(self.conn()).await.map_err(db_err)?;
        Ok(done.rows_affected())
    }

    async fn failed_delivery_ids(&mut self, subscription_id: Uuid) -> Result<Vec<Uuid>> {
        let rows: Vec<(DbId,)> = sqlx::query_as(FAILED_DELIVERIES)
            .bind(DbId(subscription_id))
            .fetch_all(self.conn())
            .await
            .map_err(db_err)?;
        Ok(rows.into_iter().map(|(id,)| id.0).collect())
    }

    async fn insert_deliveries(
        &mut self,
        deliveries: &[NewDelivery<'_>],
        now: DateTime<Utc>,
        lease: Lease<'_>,
    ) -> Result<()> {
        let conn = self.conn();
        for chunk in deliveries.chunks(5000) {
            let rows: Vec<(String, String, String, &str, bool)> = chunk
                .iter()
                .map(|d| {
                    (
                        d.id.hyphenated().to_string(),
                        d.event.id.hyphenated().to_string(),
                        d.subscription_id.hyphenated().to_string(),
                        d.event.event_type.as_str(),
                        d.claimed,
                    )
                })
                .collect();
            sqlx::query(
                "INSERT INTO deliveries (id, event_id, subscription_id, event_type, status, next_attempt_at, created_at, \
                 lease_owner, lease_expires_at) \
                 SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), \
                 json_extract(value, '$[3]'), CASE WHEN json_extract(value, '$[4]') THEN 'sending' ELSE 'pending' END, \
                 $2, $2, CASE WHEN json_extract(value, '$[4]') THEN $3 END, CASE WHEN json_extract(value, '$[4]') THEN $4 END \
                 FROM json_each($1)",
            )
            .bind(Json(&rows))
            .bind(DbTime(now))
            .bind(lease.owner)
            .bind(DbTime(lease.until))
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
        }
        Ok(())
    }

    async fn requeue_deliveries(&mut self, ids: &[Uuid], now: DateTime<Utc>) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = $2, lease_owner = NULL, \
             lease_expires_at = NULL WHERE id IN (SELECT value FROM json_each($1)) \
             AND status IN ('failed', 'cancelled', 'delivered')",
        )
        .bind(json_list(ids))
        .bind(DbTime(now))
        .execute(self.conn())
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected())
    }
}
