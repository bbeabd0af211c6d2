//! Customer subscribers, the service's own keys and the mail outbox: rows, conversions and
//! the statements both backends share.

use std::sync::LazyLock;

use sqlx::types::Json;
use sqlx::{Database, Encode, QueryBuilder, Type};
use uuid::Uuid;

use super::{
    DbId, DbTime, insert_sql, parse, push_newest_first, read_row, select_sql, time, untime, update_sql, write_row,
};
use crate::domain::customer_mail::CustomerMailOutcome;
use crate::domain::page::PageToken;
use crate::domain::subscriber::{OutboundMail, Subscriber};
use crate::domain::subscriber_list::SubscriberFilter;
use crate::domain::{Error, Event, Result};

read_row! {
    pub struct SubscriberRow {
        id: DbId,
        email: String,
        email_key: String,
        components: Json<Vec<Uuid>>,
        lang: String,
        status: String,
        created_at: DbTime,
        confirmed_at: Option<DbTime>,
        unsubscribed_at: Option<DbTime>,
        mailed_at: Option<DbTime>,
        mails_today: i32,
        updated_at: DbTime,
    }
}

write_row! {
    pub struct SubscriberWrite<'a> {
        id: DbId,
        email: &'a str,
        email_key: String,
        components: Json<&'a Vec<Uuid>>,
        lang: &'a str,
        status: &'a str,
        created_at: DbTime,
        confirmed_at: Option<DbTime>,
        unsubscribed_at: Option<DbTime>,
        mailed_at: Option<DbTime>,
        mails_today: i32,
        updated_at: DbTime,
    }
}

impl<'a> From<&'a Subscriber> for SubscriberWrite<'a> {
    fn from(s: &'a Subscriber) -> Self {
        let Subscriber {
            id,
            email,
            components,
            lang,
            status,
            created_at,
            confirmed_at,
            unsubscribed_at,
            mailed_at,
            mails_today,
            updated_at,
        } = s;
        SubscriberWrite {
            id: DbId(*id),
            email,
            email_key: crate::domain::subscriber::email_key(email),
            components: Json(components),
            lang,
            status: status.as_str(),
            created_at: DbTime(*created_at),
            confirmed_at: time(*confirmed_at),
            unsubscribed_at: time(*unsubscribed_at),
            mailed_at: time(*mailed_at),
            mails_today: *mails_today,
            updated_at: DbTime(*updated_at),
        }
    }
}

impl TryFrom<SubscriberRow> for Subscriber {
    type Error = Error;
    fn try_from(row: SubscriberRow) -> Result<Subscriber> {
        let SubscriberRow {
            id,
            email,
            email_key: _,
            components,
            lang,
            status,
            created_at,
            confirmed_at,
            unsubscribed_at,
            mailed_at,
            mails_today,
            updated_at,
        } = row;
        Ok(Subscriber {
            id: id.0,
            email,
            components: components.0,
            lang,
            status: parse("status", &status)?,
            created_at: created_at.0,
            confirmed_at: untime(confirmed_at),
            unsubscribed_at: untime(unsubscribed_at),
            mailed_at: untime(mailed_at),
            mails_today,
            updated_at: updated_at.0,
        })
    }
}

read_row! {
    pub struct MailRow {
        id: DbId,
        subscriber_id: Option<DbId>,
        to_address: String,
        subject: String,
        text_body: String,
        html_body: String,
        headers: Json<Vec<(String, String)>>,
        status: String,
        attempts: i32,
        next_attempt_at: DbTime,
        last_error: Option<String>,
        created_at: DbTime,
        sent_at: Option<DbTime>,
    }
}

write_row! {
    pub struct MailWrite<'a> {
        id: DbId,
        subscriber_id: Option<DbId>,
        to_address: &'a str,
        subject: &'a str,
        text_body: &'a str,
        html_body: &'a str,
        headers: Json<&'a Vec<(String, String)>>,
        status: &'a str,
        attempts: i32,
        next_attempt_at: DbTime,
        last_error: Option<&'a str>,
        created_at: DbTime,
        sent_at: Option<DbTime>,
    }
}

impl<'a> From<&'a OutboundMail> for MailWrite<'a> {
    fn from(m: &'a OutboundMail) -> Self {
        let OutboundMail {
            id,
            subscriber_id,
            to,
            subject,
            text,
            html,
            headers,
            status,
            attempts,
            next_attempt_at,
            last_error,
            created_at,
            sent_at,
        } = m;
        MailWrite {
            id: DbId(*id),
            subscriber_id: subscriber_id.map(DbId),
            to_address: to,
            subject,
            text_body: text,
            html_body: html,
            headers: Json(headers),
            status: status.as_str(),
            attempts: *attempts,
            next_attempt_at: DbTime(*next_attempt_at),
            last_error: last_error.as_deref(),
            created_at: DbTime(*created_at),
            sent_at: time(*sent_at),
        }
    }
}

impl TryFrom<MailRow> for OutboundMail {
    type Error = Error;
    fn try_from(row: MailRow) -> Result<OutboundMail> {
        let MailRow {
            id,
            subscriber_id,
            to_address,
            subject,
            text_body,
            html_body,
            headers,
            status,
            attempts,
            next_attempt_at,
            last_error,
            created_at,
            sent_at,
        } = row;
        Ok(OutboundMail {
            id: id.0,
            subscriber_id: subscriber_id.map(|s| s.0),
            to: to_address,
            subject,
            text: text_body,
            html: html_body,
            headers: headers.0,
            status: parse("status", &status)?,
            attempts,
            next_attempt_at: next_attempt_at.0,
            last_error,
            created_at: created_at.0,
            sent_at: untime(sent_at),
        })
    }
}

pub static SELECT_SUBSCRIBER_BY_ID: LazyLock<String> =
    LazyLock::new(|| select_sql(SubscriberRow::COLUMNS, "subscribers", "WHERE id = $1"));
pub static SELECT_SUBSCRIBER_BY_EMAIL: LazyLock<String> =
    LazyLock::new(|| select_sql(SubscriberRow::COLUMNS, "subscribers", "WHERE email_key = $1"));
/// Inserts a subscriber unless one has the address already (two requests racing).
pub static INSERT_SUBSCRIBER: LazyLock<String> = LazyLock::new(|| {
    format!("{} ON CONFLICT (email_key) DO NOTHING", insert_sql("subscribers", SubscriberWrite::COLUMNS))
});
pub static UPDATE_SUBSCRIBER: LazyLock<String> = LazyLock::new(|| update_sql("subscribers", SubscriberWrite::COLUMNS));

pub const INSERT_SERVICE_KEY: &str =
    "INSERT INTO service_keys (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING";
pub const SELECT_SERVICE_KEY: &str = "SELECT value FROM service_keys WHERE name = $1";

pub static INSERT_MAIL: LazyLock<String> = LazyLock::new(|| insert_sql("mail_outbox", MailWrite::COLUMNS));
pub static UPDATE_MAIL: LazyLock<String> = LazyLock::new(|| update_sql("mail_outbox", MailWrite::COLUMNS));

/// Takes the next due mail for an attempt: counts the attempt and pushes its next attempt
/// `$2` (the lease) ahead, so another worker leaves it alone while this one sends;
/// `pick` is the backend's subquery choosing one due mail (`$1`: now).
pub fn claim_mail_sql(pick: &str) -> String {
    format!(
        "UPDATE mail_outbox SET attempts = attempts + 1, next_attempt_at = $2 WHERE id = ({pick}) RETURNING {}",
        MailRow::COLUMNS.join(", ")
    )
}

/// The subquery of [`claim_mail_sql`] without row locks (SQLite).
pub const PICK_DUE_MAIL: &str =
    "SELECT id FROM mail_outbox WHERE status = 'pending' AND next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT 1";

/// Whether any queued mail is due at `$1`.
pub const ANY_MAIL_DUE: &str =
    "SELECT EXISTS (SELECT 1 FROM mail_outbox WHERE status = 'pending' AND next_attempt_at <= $1)";

/// What the backends' customer-mail queueing reads of a round's events: `[{id, subject, components}]`.
pub fn customer_mail_targets(events: &[&Event]) -> Json<serde_json::Value> {
    Json(
        events
            .iter()
            .map(|e| serde_json::json!({"id": e.id, "subject": e.subject, "components": e.component_ids}))
            .collect(),
    )
}

/// Queues customer mails: `$1` the targets ([`customer_mail_targets`], as `e`), `$2` now; `wants` is the
/// backend's condition that subscriber `s` (confirmed) wants event `e`, `select` how the
/// backend reads `e`'s id and subject. `WHERE true` keeps SQLite from reading `ON CONFLICT`
/// as the join's.
pub fn queue_customer_mails_sql(from: &str, select: &str, wants: &str) -> String {
    format!(
        "INSERT INTO customer_mails (event_id, subscriber_id, subject, status, attempts, next_attempt_at, \
         created_at) SELECT {select}, 'pending', 0, $2, $2 FROM {from} JOIN subscribers s \
         ON s.status = 'confirmed' AND ({wants}) WHERE true ON CONFLICT DO NOTHING"
    )
}

read_row! {
    pub struct CustomerMailClaimRow {
        event_id: DbId,
        subscriber_id: DbId,
        attempts: i32,
    }
}

impl CustomerMailClaimRow {
    pub fn ids(&self) -> (Uuid, Uuid, i32) {
        (self.event_id.0, self.subscriber_id.0, self.attempts)
    }
}

/// Whether any customer mail is due at `$1`.
pub const ANY_CUSTOMER_MAIL_DUE: &str =
    "SELECT EXISTS (SELECT 1 FROM customer_mails WHERE status = 'pending' AND next_attempt_at <= $1)";

/// Records one attempt's outcome.
pub const RECORD_CUSTOMER_MAIL: &str = "UPDATE customer_mails SET status = $3, next_attempt_at = $4, last_error = $5, \
     sent_at = CASE WHEN $3 = 'sent' THEN $6 ELSE sent_at END WHERE event_id = $1 AND subscriber_id = $2";

/// Binds [`RECORD_CUSTOMER_MAIL`] for one outcome.
pub fn record_customer_mail<'q, DB: sqlx::Database>(
    o: &'q CustomerMailOutcome,
    now: super::DbTime,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>
where
    DbId: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    super::DbTime: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query(RECORD_CUSTOMER_MAIL)
        .bind(DbId(o.event_id))
        .bind(DbId(o.subscriber_id))
        .bind(o.status.as_str())
        .bind(super::DbTime(o.next_attempt_at))
        .bind(o.last_error.as_deref())
        .bind(now)
}

pub static SELECT_SUBSCRIBERS: LazyLock<String> =
    LazyLock::new(|| select_sql(SubscriberRow::COLUMNS, "subscribers", ""));

/// Joins claimed customer mails with their events and subscribers (a subscriber removed since the
/// claim has no mail left to send).
pub fn join_customer_mails(
    claimed: Vec<(Uuid, Uuid, i32)>,
    events: Vec<super::events::EventRow>,
    subscribers: Vec<SubscriberRow>,
) -> Result<Vec<crate::store::ClaimedCustomerMail>> {
    let events: std::collections::HashMap<Uuid, std::sync::Arc<Event>> = events
        .into_iter()
        .map(|r| Event::try_from(r).map(|e| (e.id, std::sync::Arc::new(e))))
        .collect::<Result<_>>()?;
    let subscribers: std::collections::HashMap<Uuid, Subscriber> =
        subscribers.into_iter().map(|r| Subscriber::try_from(r).map(|s| (s.id, s))).collect::<Result<_>>()?;
    Ok(claimed
        .into_iter()
        .filter_map(|(event_id, subscriber_id, attempts)| {
            let subscriber = subscribers.get(&subscriber_id)?.clone();
            Some(crate::store::ClaimedCustomerMail {
                event: events.get(&event_id).cloned(),
                subscriber,
                event_id,
                attempts,
            })
        })
        .collect())
}

/// A list of subscribers, newest first. `component` is the backend's test that the JSON array
/// `components` holds the bound id text: `(prefix, suffix)` around the bind.
pub fn subscribers_query<DB>(
    filter: &SubscriberFilter,
    component: (&str, &str),
    after: Option<&PageToken>,
    limit: u32,
) -> crate::domain::Result<QueryBuilder<DB>>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'t> DbId: Encode<'t, DB> + Type<DB>,
    for<'t> DbTime: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> &'static str: Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::<DB>::new(select_sql(SubscriberRow::COLUMNS, "subscribers", "WHERE 1 = 1"));
    if !filter.statuses.is_empty() {
        q.push(" AND status IN (");
        let mut list = q.separated(", ");
        for s in &filter.statuses {
            list.push_bind(s.as_str());
        }
        q.push(")");
    }
    if let Some(id) = filter.component {
        q.push(format!(" AND (components = '[]' OR {}", component.0))
            .push_bind(id.to_string())
            .push(component.1)
            .push(")");
    }
    if let Some(text) = &filter.search {
        let escaped = text.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        q.push(" AND email_key LIKE ").push_bind(format!("%{escaped}%")).push(" ESCAPE '\\'");
    }
    push_newest_first(&mut q, "created_at", after, limit)?;
    Ok(q)
}

/// Subscribers per status.
pub const COUNT_BY_STATUS: &str = "SELECT status, count(*) FROM subscribers GROUP BY status";
/// Confirmed subscribers of every component.
pub const COUNT_ALL_COMPONENTS: &str =
    "SELECT count(*) FROM subscribers WHERE status = 'confirmed' AND components = '[]'";
/// Removes a subscriber (its queued mails go with it).
pub const DELETE_SUBSCRIBER: &str = "DELETE FROM subscribers WHERE id = $1";

/// Reads the figures of [`COUNT_BY_STATUS`], [`COUNT_ALL_COMPONENTS`] and the backend's count
/// per chosen component.
pub fn subscriber_figures(
    by_status: Vec<(String, i64)>,
    all_components: i64,
    chose: Vec<(String, i64)>,
) -> crate::domain::Result<crate::store::SubscriberFigures> {
    Ok(crate::store::SubscriberFigures {
        by_status: by_status.into_iter().map(|(s, n)| Ok((parse("status", &s)?, n))).collect::<Result<_>>()?,
        all_components,
        chose: chose.into_iter().filter_map(|(id, n)| Uuid::parse_str(&id).ok().map(|id| (id, n))).collect(),
    })
}
