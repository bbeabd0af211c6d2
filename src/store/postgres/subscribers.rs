//! Customer subscribers, service keys and the mail outbox on Postgres.

use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{PgStore, PgTx, db_err};
use crate::domain::Result;
use crate::domain::subscriber::{OutboundMail, Subscriber};
use crate::store::sql::subscribers::{
    ANY_MAIL_DUE, INSERT_MAIL, INSERT_SERVICE_KEY, INSERT_SUBSCRIBER, MailRow, MailWrite, SELECT_SERVICE_KEY,
    SELECT_SUBSCRIBER_BY_EMAIL, SELECT_SUBSCRIBER_BY_ID, SubscriberRow, SubscriberWrite, UPDATE_MAIL,
    UPDATE_SUBSCRIBER, claim_mail_sql,
};
use crate::store::sql::{DbId, DbTime};
use crate::store::{SubscriberStore, SubscriberTx};

static LOCK_SUBSCRIBER_BY_ID: LazyLock<String> = LazyLock::new(|| format!("{} FOR UPDATE", *SELECT_SUBSCRIBER_BY_ID));
static LOCK_SUBSCRIBER_BY_EMAIL: LazyLock<String> =
    LazyLock::new(|| format!("{} FOR UPDATE", *SELECT_SUBSCRIBER_BY_EMAIL));
static CLAIM_MAIL: LazyLock<String> = LazyLock::new(|| {
    claim_mail_sql(
        "SELECT id FROM mail_outbox WHERE status = 'pending' AND next_attempt_at <= $1 \
         ORDER BY next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED",
    )
});

#[async_trait]
impl SubscriberStore for PgStore {
    async fn get_subscriber(&self, id: Uuid) -> Result<Option<Subscriber>> {
        super::by_id::<SubscriberRow, _>(&self.pool, SELECT_SUBSCRIBER_BY_ID.as_str(), id).await
    }

    async fn mail_due(&self, now: DateTime<Utc>) -> Result<bool> {
        let (due,): (bool,) =
            sqlx::query_as(ANY_MAIL_DUE).bind(DbTime(now)).fetch_one(&self.pool).await.map_err(db_err)?;
        Ok(due)
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

    async fn service_key(&mut self, name: &str, generated: &[u8], now: DateTime<Utc>) -> Result<Vec<u8>> {
        let conn = self.conn().await?;
        sqlx::query(INSERT_SERVICE_KEY)
            .bind(name)
            .bind(generated)
            .bind(DbTime(now))
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
        let (value,): (Vec<u8>,) =
            sqlx::query_as(SELECT_SERVICE_KEY).bind(name).fetch_one(conn).await.map_err(db_err)?;
        Ok(value)
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
}
