//! Subscriptions and the delivery outbox on Postgres: claims with `FOR UPDATE SKIP LOCKED`,
//! and batches written with `unnest`.

use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{PgStore, PgTx, db_err};
use crate::domain::page::PageToken;
use crate::domain::query::AttemptsOf;
use crate::domain::subscription::SigningSecrets;
use crate::domain::{Delivery, DeliveryAttempt, DeliveryStatus, Result, Subscription};
use crate::store::sql::events::{EventRow, SELECT_EVENTS};
use crate::store::sql::subscriptions::{
    AttemptRow, CANCEL_DELIVERIES, DELETE_SUBSCRIPTION, DeliveryRow, FAILED_DELIVERIES, INSERT_SUBSCRIPTION,
    SELECT_DELIVERY, SELECT_FANOUT_SUBSCRIPTIONS, SELECT_SUBSCRIPTION, SELECT_SUBSCRIPTION_WITH_SECRETS,
    SubscriptionRow, SubscriptionWrite, UPDATE_SUBSCRIPTION, attempts_query, clear_failing_sql, deliveries_query,
    join_claims, select_with_secrets, subscription_with_secrets, subscriptions_query,
};
use crate::store::sql::{DbId, DbTime};
use crate::store::{AttemptResult, ClaimedDelivery, Lease, NewDelivery, SubscriptionStore, SubscriptionTx};

static LOCK_SUBSCRIPTION: LazyLock<String> =
    LazyLock::new(|| format!("{} FOR UPDATE", *SELECT_SUBSCRIPTION_WITH_SECRETS));
static CLEAR_FAILING: LazyLock<String> = LazyLock::new(|| clear_failing_sql("id = ANY($1)"));
static CLAIM_DELIVERIES: LazyLock<String> = LazyLock::new(|| {
    // Two scans in index order (due pending deliveries, then expired leases) that filter on
    // the deliveries' own columns only: the paused and disabled subscriptions are looked up
    // once per claim, so no join can lead the planner away from the index however stale its
    // statistics (a queue table's always are).
    let returning: Vec<String> = DeliveryRow::COLUMNS.iter().map(|c| format!("d.{c}")).collect();
    let sendable = "NOT (d2.subscription_id = ANY($5)) AND NOT (d2.subscription_id = ANY(ARRAY(\
                    SELECT s.id FROM subscriptions s WHERE s.paused OR s.disabled_at IS NOT NULL)))";
    format!(
        "WITH due AS (SELECT d2.id FROM deliveries d2 WHERE d2.status = 'pending' AND d2.next_attempt_at <= $2 \
                      AND {sendable} ORDER BY d2.next_attempt_at LIMIT $4 FOR UPDATE OF d2 SKIP LOCKED), \
              expired AS (SELECT d2.id FROM deliveries d2 WHERE d2.status = 'sending' AND d2.lease_expires_at < $2 \
                      AND {sendable} ORDER BY d2.lease_expires_at LIMIT $4 FOR UPDATE OF d2 SKIP LOCKED) \
         UPDATE deliveries d SET status = 'sending', lease_owner = $1, lease_expires_at = $3 \
         FROM (SELECT id FROM expired UNION ALL SELECT id FROM due LIMIT $4) claim \
         WHERE d.id = claim.id RETURNING {}",
        returning.join(", ")
    )
});
/// Events by id (`$1`: the ids); also read by the customer-mail claim.
pub(super) static SELECT_EVENTS_BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("{}WHERE id = ANY($1)", *SELECT_EVENTS));
static SELECT_SUBSCRIPTIONS_BY_ID: LazyLock<String> = LazyLock::new(|| select_with_secrets("WHERE id = ANY($1)"));

#[async_trait]
impl SubscriptionStore for PgStore {
    async fn get_subscription(&self, id: Uuid) -> Result<Option<Subscription>> {
        super::by_id::<SubscriptionRow, _>(&self.pool, SELECT_SUBSCRIPTION.as_str(), id).await
    }

    async fn list_subscriptions(&self, after: Option<&PageToken>, limit: u32) -> Result<Vec<Subscription>> {
        super::list::<SubscriptionRow, _>(&self.pool, subscriptions_query(after, limit)).await
    }

    async fn get_delivery(&self, id: Uuid) -> Result<Option<Delivery>> {
        super::by_id::<DeliveryRow, _>(&self.pool, SELECT_DELIVERY.as_str(), id).await
    }

    async fn list_deliveries(
        &self,
        subscription_id: Uuid,
        status: Option<DeliveryStatus>,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        super::list::<DeliveryRow, _>(&self.pool, deliveries_query(subscription_id, status, after, limit)).await
    }

    async fn list_attempts(
        &self,
        of: AttemptsOf,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<DeliveryAttempt>> {
        super::list::<AttemptRow, _>(&self.pool, attempts_query(of, after, limit)).await
    }

    async fn claim_deliveries(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        exclude: &[Uuid],
    ) -> Result<Vec<ClaimedDelivery>> {
        let rows: Vec<DeliveryRow> = sqlx::query_as(CLAIM_DELIVERIES.as_str())
            .bind(owner)
            .bind(DbTime(now))
            .bind(DbTime(lease_until))
            .bind(i64::from(limit))
            .bind(exclude)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        let deliveries = rows.into_iter().map(Delivery::try_from).collect::<Result<Vec<_>>>()?;
        let event_ids: Vec<Uuid> = deliveries.iter().map(|d| d.event_id).collect();
        let subscription_ids: Vec<Uuid> = deliveries.iter().map(|d| d.subscription_id).collect();
        let events: Vec<EventRow> = sqlx::query_as(SELECT_EVENTS_BY_ID.as_str())
            .bind(&event_ids)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        let subs = sqlx::query(SELECT_SUBSCRIPTIONS_BY_ID.as_str())
            .bind(&subscription_ids)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        join_claims(deliveries, events, &subs, &self.keys)
    }

    async fn extend_leases(&self, owner: &str, ids: &[Uuid], until: DateTime<Utc>) -> Result<()> {
        sqlx::query("UPDATE deliveries SET lease_expires_at = $3 WHERE lease_owner = $1 AND status = 'sending' AND id = ANY($2)")
            .bind(owner)
            .bind(ids)
            .bind(DbTime(until))
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn release_deliveries(&self, owner: &str, ids: &[Uuid], at: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = $3, lease_owner = NULL, lease_expires_at = NULL \
             WHERE lease_owner = $1 AND status = 'sending' AND id = ANY($2)",
        )
        .bind(owner)
        .bind(ids)
        .bind(DbTime(at))
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }
}

#[async_trait]
impl SubscriptionTx for PgTx {
    async fn insert_subscription(&mut self, subscription: &Subscription, secrets: &SigningSecrets) -> Result<()> {
        SubscriptionWrite::new(subscription, secrets, &self.keys)
            .bind(sqlx::query(INSERT_SUBSCRIPTION.as_str()))
            .execute(self.conn().await?)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn lock_subscription(&mut self, id: Uuid) -> Result<Option<(Subscription, SigningSecrets)>> {
        let row = sqlx::query(LOCK_SUBSCRIPTION.as_str())
            .bind(DbId(id))
            .fetch_optional(self.conn().await?)
            .await
            .map_err(db_err)?;
        row.as_ref().map(|r| subscription_with_secrets(r, &self.keys)).transpose()
    }

    async fn update_subscription(&mut self, subscription: &Subscription, secrets: &SigningSecrets) -> Result<()> {
        SubscriptionWrite::new(subscription, secrets, &self.keys)
            .bind(sqlx::query(UPDATE_SUBSCRIPTION.as_str()))
            .execute(self.conn().await?)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn delete_subscription(&mut self, id: Uuid) -> Result<()> {
        sqlx::query(DELETE_SUBSCRIPTION).bind(DbId(id)).execute(self.conn().await?).await.map_err(db_err)?;
        Ok(())
    }

    async fn fanout_subscriptions(&mut self) -> Result<Vec<(Subscription, SigningSecrets)>> {
        let rows =
            sqlx::query(SELECT_FANOUT_SUBSCRIPTIONS.as_str()).fetch_all(self.conn().await?).await.map_err(db_err)?;
        rows.iter().map(|r| subscription_with_secrets(r, &self.keys)).collect()
    }

    async fn record_attempts(&mut self, results: &[AttemptResult]) -> Result<u64> {
        let conn = self.conn().await?;
        let mut updated = 0;
        for chunk in results.chunks(1000) {
            let attempts: Vec<&DeliveryAttempt> = chunk.iter().map(|r| &r.attempt).collect();
            // The attempts and the deliveries' new state in one statement.
            updated += sqlx::query(
                "WITH a AS (INSERT INTO delivery_attempts (id, delivery_id, subscription_id, attempted_at, status_code, \
                   latency_ms, response_excerpt, error) SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], \
                   $4::timestamptz[], $5::int4[], $6::int8[], $7::text[], $8::text[])) \
                 UPDATE deliveries d SET status = r.status, attempts = d.attempts + 1, next_attempt_at = r.next_attempt_at, \
                 last_attempt_at = r.attempted_at, last_status_code = r.status_code, last_error = r.error, \
                 delivered_at = CASE WHEN r.status = 'delivered' THEN r.attempted_at ELSE d.delivered_at END, \
                 lease_owner = NULL, lease_expires_at = NULL \
                 FROM unnest($2::uuid[], $9::text[], $10::text[], $11::timestamptz[], $4::timestamptz[], $5::int4[], $8::text[]) \
                   AS r(id, owner, status, next_attempt_at, attempted_at, status_code, error) \
                 WHERE d.id = r.id AND d.lease_owner = r.owner AND d.status = 'sending'",
            )
            .bind(attempts.iter().map(|a| a.id).collect::<Vec<_>>())
            .bind(attempts.iter().map(|a| a.delivery_id).collect::<Vec<_>>())
            .bind(attempts.iter().map(|a| a.subscription_id).collect::<Vec<_>>())
            .bind(attempts.iter().map(|a| a.attempted_at).collect::<Vec<_>>())
            .bind(attempts.iter().map(|a| a.status_code).collect::<Vec<_>>())
            .bind(attempts.iter().map(|a| a.latency_ms).collect::<Vec<_>>())
            .bind(attempts.iter().map(|a| a.response_excerpt.as_deref()).collect::<Vec<_>>())
            .bind(attempts.iter().map(|a| a.error.as_deref()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|r| r.owner.as_str()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|r| r.status.as_str()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|r| r.next_attempt_at).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await
            .map_err(db_err)?
            .rows_affected();
        }
        Ok(updated)
    }

    async fn clear_failing(&mut self, subscription_ids: &[Uuid], now: DateTime<Utc>) -> Result<()> {
        let conn = self.conn().await?;
        if subscription_ids.is_empty() {
            return Ok(());
        }
        sqlx::query(CLEAR_FAILING.as_str())
            .bind(subscription_ids)
            .bind(DbTime(now))
            .execute(conn)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn cancel_deliveries(&mut self, subscription_id: Uuid) -> Result<u64> {
        let done = sqlx::query(CANCEL_DELIVERIES)
            .bind(DbId(subscription_id))
            .execute(self.conn().await?)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected())
    }

    async fn failed_delivery_ids(&mut self, subscription_id: Uuid) -> Result<Vec<Uuid>> {
        let rows: Vec<(DbId,)> = sqlx::query_as(FAILED_DELIVERIES)
            .bind(DbId(subscription_id))
            .fetch_all(self.conn().await?)
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
        let conn = self.conn().await?;
        for chunk in deliveries.chunks(5000) {
            sqlx::query(
                "INSERT INTO deliveries (id, event_id, subscription_id, event_type, status, next_attempt_at, created_at, \
                 lease_owner, lease_expires_at) \
                 SELECT id, event_id, subscription_id, event_type, CASE WHEN claimed THEN 'sending' ELSE 'pending' END, $6, $6, \
                 CASE WHEN claimed THEN $7 END, CASE WHEN claimed THEN $8::timestamptz END \
                 FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::bool[]) \
                   AS t(id, event_id, subscription_id, event_type, claimed)",
            )
            .bind(chunk.iter().map(|d| d.id).collect::<Vec<_>>())
            .bind(chunk.iter().map(|d| d.event.id).collect::<Vec<_>>())
            .bind(chunk.iter().map(|d| d.subscription_id).collect::<Vec<_>>())
            .bind(chunk.iter().map(|d| d.event.event_type.as_str()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|d| d.claimed).collect::<Vec<_>>())
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
             lease_expires_at = NULL WHERE id = ANY($1) AND status IN ('failed', 'cancelled', 'delivered')",
        )
        .bind(ids)
        .bind(DbTime(now))
        .execute(self.conn().await?)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected())
    }
}
