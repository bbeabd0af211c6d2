//! Customer subscribers, service keys and the mail outbox on Postgres.

use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::subscriptions::SELECT_EVENTS_BY_ID;
use super::{PgStore, PgTx, db_err};
use crate::domain::customer_mail::CustomerMailOutcome;
use crate::domain::page::PageToken;
use crate::domain::subscriber::{OutboundMail, Subscriber};
use crate::domain::subscriber_list::SubscriberFilter;
use crate::domain::{Event, Result};
use crate::store::sql::events::EventRow;
use crate::store::sql::secrets::{open_service_key, seal_service_key};
use crate::store::sql::subscribers::{
    ANY_CUSTOMER_MAIL_DUE, ANY_MAIL_DUE, CustomerMailClaimRow, INSERT_MAIL, INSERT_SERVICE_KEY, INSERT_SUBSCRIBER,
    MailRow, MailWrite, SELECT_SERVICE_KEY, SELECT_SUBSCRIBER_BY_EMAIL, SELECT_SUBSCRIBER_BY_ID, SELECT_SUBSCRIBERS,
    SubscriberRow, SubscriberWrite, UPDATE_MAIL, UPDATE_SUBSCRIBER, claim_mail_sql, customer_mail_targets,
    join_customer_mails, queue_customer_mails_sql, record_customer_mail,
};
use crate::store::sql::subscribers::{
    COUNT_ALL_COMPONENTS, COUNT_BY_STATUS, DELETE_SUBSCRIBER, subscriber_figures, subscribers_query,
};
use crate::store::sql::{DbId, DbTime};
use crate::store::{ClaimedCustomerMail, SubscriberFigures, SubscriberStore, SubscriberTx};

/// Whether a subscriber's `components` hold the bound id.
const HAS_COMPONENT: (&str, &str) = ("components @> jsonb_build_array(", "::text)");
/// Confirmed subscribers per component they chose.
const COUNT_CHOSEN: &str = "SELECT c.value, count(*) FROM subscribers s, \
     jsonb_array_elements_text(s.components) AS c(value) WHERE s.status = 'confirmed' GROUP BY c.value";

static LOCK_SUBSCRIBER_BY_ID: LazyLock<String> = LazyLock::new(|| format!("{} FOR UPDATE", *SELECT_SUBSCRIBER_BY_ID));
static LOCK_SUBSCRIBER_BY_EMAIL: LazyLock<String> =
    LazyLock::new(|| format!("{} FOR UPDATE", *SELECT_SUBSCRIBER_BY_EMAIL));
static CLAIM_MAIL: LazyLock<String> = LazyLock::new(|| {
    claim_mail_sql(
        "SELECT id FROM mail_outbox WHERE status = 'pending' AND next_attempt_at <= $1 \
         ORDER BY next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED",
    )
});

static QUEUE_CUSTOMER_MAILS: LazyLock<String> = LazyLock::new(|| {
    queue_customer_mails_sql(
        "jsonb_to_recordset($1::jsonb) AS e(id uuid, subject text, components jsonb)",
        "e.id, s.id, e.subject",
        "s.components = '[]'::jsonb OR s.components ?| ARRAY(SELECT jsonb_array_elements_text(e.components)) \
         OR EXISTS (SELECT 1 FROM customer_mails n WHERE n.subject = e.subject AND n.subscriber_id = s.id)",
    )
});
static CLAIM_CUSTOMER_MAILS: &str = "UPDATE customer_mails n SET attempts = n.attempts + 1, next_attempt_at = $2 \
     FROM (SELECT event_id, subscriber_id FROM customer_mails WHERE status = 'pending' AND next_attempt_at <= $1 \
           ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) due \
     WHERE n.event_id = due.event_id AND n.subscriber_id = due.subscriber_id \
     RETURNING n.event_id, n.subscriber_id, n.attempts";
static SUBSCRIBERS_BY_ID: LazyLock<String> = LazyLock::new(|| format!("{}WHERE id = ANY($1)", *SELECT_SUBSCRIBERS));

#[async_trait]
impl SubscriberStore for PgStore {
    async fn get_subscriber(&self, id: Uuid) -> Result<Option<Subscriber>> {
        super::by_id::<SubscriberRow, _>(&self.pool, SELECT_SUBSCRIBER_BY_ID.as_str(), id).await
    }

    async fn list_subscribers(
        &self,
        filter: &SubscriberFilter,
        after: Option<&PageToken>,
        limit: u32,
    ) -> Result<Vec<Subscriber>> {
        super::list::<SubscriberRow, _>(&self.pool, subscribers_query(filter, HAS_COMPONENT, after, limit)).await
    }

    async fn subscriber_figures(&self) -> Result<SubscriberFigures> {
        let by_status: Vec<(String, i64)> =
            sqlx::query_as(COUNT_BY_STATUS).fetch_all(&self.pool).await.map_err(db_err)?;
        let (all,): (i64,) = sqlx::query_as(COUNT_ALL_COMPONENTS).fetch_one(&self.pool).await.map_err(db_err)?;
        let chose: Vec<(String, i64)> = sqlx::query_as(COUNT_CHOSEN).fetch_all(&self.pool).await.map_err(db_err)?;
        subscriber_figures(by_status, all, chose)
    }

    async fn mail_due(&self, now: DateTime<Utc>) -> Result<bool> {
        let (due,): (bool,) =
            sqlx::query_as(ANY_MAIL_DUE).bind(DbTime(now)).fetch_one(&self.pool).await.map_err(db_err)?;
        Ok(due)
    }

    async fn customer_mail_due(&self, now: DateTime<Utc>) -> Result<bool> {
        let (due,): (bool,) =
            sqlx::query_as(ANY_CUSTOMER_MAIL_DUE).bind(DbTime(now)).fetch_one(&self.pool).await.map_err(db_err)?;
        Ok(due)
    }

    async fn claim_customer_mails(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ClaimedCustomerMail>> {
        let claimed: Vec<CustomerMailClaimRow> = sqlx::query_as(CLAIM_CUSTOMER_MAILS)
            .bind(DbTime(now))
            .bind(DbTime(lease_until))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        let claimed: Vec<(Uuid, Uuid, i32)> = claimed.iter().map(CustomerMailClaimRow::ids).collect();
        let mut event_ids: Vec<Uuid> = claimed.iter().map(|c| c.0).collect();
        event_ids.sort_unstable();
        event_ids.dedup();
        let subscriber_ids: Vec<Uuid> = claimed.iter().map(|c| c.1).collect();
        let events: Vec<EventRow> = sqlx::query_as(SELECT_EVENTS_BY_ID.as_str())
            .bind(&event_ids)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        let subscribers: Vec<SubscriberRow> = sqlx::query_as(SUBSCRIBERS_BY_ID.as_str())
            .bind(&subscriber_ids)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        join_customer_mails(claimed, events, subscribers)
    }

    async fn record_customer_mails(&self, outcomes: &[CustomerMailOutcome], now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        for o in outcomes {
            record_customer_mail(o, DbTime(now)).execute(&mut *tx).await.map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }
}

#[async_trait]
impl SubscriberTx for PgTx {
    async fn lock_subscriber(&mut self, id: Uuid) -> Result<Option<Subscriber>> {
        let row: Option<SubscriberRow> = sqlx::query_as(LOCK_SUBSCRIBER_BY_ID.as_str())
            .bind(DbId(id))
            .fetch_optional(self.conn().await?)
            .await
            .map_err(db_err)?;
        row.map(Subscriber::try_from).transpose()
    }

    async fn lock_subscriber_by_email(&mut self, email: &str) -> Result<Option<Subscriber>> {
        let row: Option<SubscriberRow> = sqlx::query_as(LOCK_SUBSCRIBER_BY_EMAIL.as_str())
            .bind(crate::domain::subscriber::email_key(email))
            .fetch_optional(self.conn().await?)
            .await
            .map_err(db_err)?;
        row.map(Subscriber::try_from).transpose()
    }

    async fn insert_subscriber(&mut self, s: &Subscriber) -> Result<bool> {
        let done = SubscriberWrite::from(s)
            .bind(sqlx::query(INSERT_SUBSCRIBER.as_str()))
            .execute(self.conn().await?)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn update_subscriber(&mut self, s: &Subscriber) -> Result<()> {
        SubscriberWrite::from(s)
            .bind(sqlx::query(UPDATE_SUBSCRIBER.as_str()))
            .execute(self.conn().await?)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn delete_subscriber(&mut self, id: Uuid) -> Result<bool> {
        let done = sqlx::query(DELETE_SUBSCRIBER).bind(DbId(id)).execute(self.conn().await?).await.map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn service_key(&mut self, name: &str, generated: &[u8], now: DateTime<Utc>) -> Result<Vec<u8>> {
        let sealed = seal_service_key(&self.keys, name, generated);
        let conn = self.conn().await?;
        sqlx::query(INSERT_SERVICE_KEY)
            .bind(name)
            .bind(sealed)
            .bind(DbTime(now))
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
        let (value,): (Vec<u8>,) =
            sqlx::query_as(SELECT_SERVICE_KEY).bind(name).fetch_one(conn).await.map_err(db_err)?;
        open_service_key(&self.keys, name, &value)
    }

    async fn insert_mail(&mut self, m: &OutboundMail) -> Result<()> {
        MailWrite::from(m).bind(sqlx::query(INSERT_MAIL.as_str())).execute(self.conn().await?).await.map_err(db_err)?;
        Ok(())
    }

    async fn claim_mail(&mut self, now: DateTime<Utc>, lease_until: DateTime<Utc>) -> Result<Option<OutboundMail>> {
        let row: Option<MailRow> = sqlx::query_as(CLAIM_MAIL.as_str())
            .bind(DbTime(now))
            .bind(DbTime(lease_until))
            .fetch_optional(self.conn().await?)
            .await
            .map_err(db_err)?;
        row.map(OutboundMail::try_from).transpose()
    }

    async fn update_mail(&mut self, m: &OutboundMail) -> Result<()> {
        MailWrite::from(m).bind(sqlx::query(UPDATE_MAIL.as_str())).execute(self.conn().await?).await.map_err(db_err)?;
        Ok(())
    }

    async fn queue_customer_mails(&mut self, events: &[&Event], now: DateTime<Utc>) -> Result<u64> {
        let done = sqlx::query(QUEUE_CUSTOMER_MAILS.as_str())
            .bind(customer_mail_targets(events))
            .bind(DbTime(now))
            .execute(self.conn().await?)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected())
    }
}
