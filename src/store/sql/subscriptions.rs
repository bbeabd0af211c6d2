//! Subscriptions, their deliveries and the attempts at them: rows, conversions and the
//! statements both backends share.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use sqlx::types::Json;
use sqlx::{Database, Encode, QueryBuilder, Type};
use uuid::Uuid;

use super::events::EventRow;
use super::secrets::{open_signing_secrets, seal_signing_secrets};
use super::{
    DbId, DbTime, insert_sql, parse, parse_all, parse_opt, push_newest_first, read_row, row_err, select_sql, time,
    untime, update_sql, write_row,
};
use crate::domain::page::PageToken;
use crate::domain::query::AttemptsOf;
use crate::domain::subscription::SigningSecrets;
use crate::domain::{Delivery, DeliveryAttempt, DeliveryStatus, Error, Event, Result, Subscription};
use crate::secrets::KeyRing;
use crate::store::ClaimedDelivery;

read_row! {
    /// A subscription as read (without its secrets).
    pub struct SubscriptionRow {
        id: DbId,
        channel: String,
        target: String,
        event_types: Json<Vec<String>>,
        min_severity: Option<String>,
        component_ids: Json<Vec<Uuid>>,
        include_internal: bool,
        paused: bool,
        disabled_at: Option<DbTime>,
        disabled_reason: Option<String>,
        failing_since: Option<DbTime>,
        created_at: DbTime,
        updated_at: DbTime,
        created_by: String,
        version: i64,
    }
}

read_row! {
    /// A subscription's signing secrets.
    pub struct SecretsRow {
        secret: Option<String>,
        previous_secret: Option<String>,
        previous_secret_expires_at: Option<DbTime>,
    }
}

write_row! {
    /// A subscription and its secrets as written.
    pub struct SubscriptionWrite<'a> {
        id: DbId,
        channel: &'a str,
        target: &'a str,
        event_types: Json<&'a Vec<crate::domain::EventType>>,
        min_severity: Option<&'a str>,
        component_ids: Json<&'a Vec<Uuid>>,
        include_internal: bool,
        paused: bool,
        disabled_at: Option<DbTime>,
        disabled_reason: Option<&'a str>,
        failing_since: Option<DbTime>,
        created_at: DbTime,
        updated_at: DbTime,
        created_by: &'a str,
        version: i64,
        secret: Option<String>,
        previous_secret: Option<String>,
        previous_secret_expires_at: Option<DbTime>,
    }
}

impl<'a> SubscriptionWrite<'a> {
    /// The row to write, its secrets sealed with `keys`.
    pub fn new(subscription: &'a Subscription, secrets: &'a SigningSecrets, keys: &KeyRing) -> Self {
        let Subscription {
            id,
            channel,
            target,
            event_types,
            min_severity,
            component_ids,
            include_internal,
            paused,
            disabled_at,
            disabled_reason,
            failing_since,
            created_at,
            updated_at,
            created_by,
            version,
        } = subscription;
        let (secret, previous_secret) = seal_signing_secrets(keys, *id, secrets);
        SubscriptionWrite {
            id: DbId(*id),
            channel: channel.as_str(),
            target,
            event_types: Json(event_types),
            min_severity: min_severity.map(|m| m.as_str()),
            component_ids: Json(component_ids),
            include_internal: *include_internal,
            paused: *paused,
            disabled_at: time(*disabled_at),
            disabled_reason: disabled_reason.as_deref(),
            failing_since: time(*failing_since),
            created_at: DbTime(*created_at),
            updated_at: DbTime(*updated_at),
            created_by,
            version: *version,
            secret,
            previous_secret,
            previous_secret_expires_at: time(secrets.previous_expires_at),
        }
    }
}

impl TryFrom<SubscriptionRow> for Subscription {
    type Error = Error;
    fn try_from(row: SubscriptionRow) -> Result<Subscription> {
        let SubscriptionRow {
            id,
            channel,
            target,
            event_types,
            min_severity,
            component_ids,
            include_internal,
            paused,
            disabled_at,
            disabled_reason,
            failing_since,
            created_at,
            updated_at,
            created_by,
            version,
        } = row;
        Ok(Subscription {
            id: id.0,
            channel: parse("channel", &channel)?,
            target,
            event_types: parse_all("event_types", &event_types.0)?,
            min_severity: parse_opt("min_severity", min_severity.as_deref())?,
            component_ids: component_ids.0,
            include_internal,
            paused,
            disabled_at: untime(disabled_at),
            disabled_reason,
            failing_since: untime(failing_since),
            created_at: created_at.0,
            updated_at: updated_at.0,
            created_by,
            version,
        })
    }
}

impl SecretsRow {
    /// The secrets of subscription `id`, opened with `keys`.
    fn open(self, keys: &KeyRing, id: Uuid) -> Result<SigningSecrets> {
        let SecretsRow { secret, previous_secret, previous_secret_expires_at } = self;
        let (current, previous) = open_signing_secrets(keys, id, secret, previous_secret)?;
        Ok(SigningSecrets { current, previous, previous_expires_at: untime(previous_secret_expires_at) })
    }
}

/// A subscription and its signing secrets (opened with `keys`), from a row carrying both
/// column sets.
pub fn subscription_with_secrets<R: sqlx::Row>(row: &R, keys: &KeyRing) -> Result<(Subscription, SigningSecrets)>
where
    for<'r> SubscriptionRow: sqlx::FromRow<'r, R>,
    for<'r> SecretsRow: sqlx::FromRow<'r, R>,
{
    let subscription: SubscriptionRow = sqlx::FromRow::from_row(row).map_err(row_err)?;
    let secrets: SecretsRow = sqlx::FromRow::from_row(row).map_err(row_err)?;
    let subscription = Subscription::try_from(subscription)?;
    let secrets = secrets.open(keys, subscription.id)?;
    Ok((subscription, secrets))
}

/// `SELECT <subscription columns>, <secret columns> FROM subscriptions` followed by `rest`.
pub fn select_with_secrets(rest: &str) -> String {
    let columns: Vec<&str> = SubscriptionRow::COLUMNS.iter().chain(SecretsRow::COLUMNS).copied().collect();
    select_sql(&columns, "subscriptions", rest)
}

pub static SELECT_SUBSCRIPTION: LazyLock<String> =
    LazyLock::new(|| select_sql(SubscriptionRow::COLUMNS, "subscriptions", "WHERE id = $1"));
pub static SELECT_SUBSCRIPTION_WITH_SECRETS: LazyLock<String> = LazyLock::new(|| select_with_secrets("WHERE id = $1"));
/// Every subscription fan-out considers: not disabled (paused ones too: their deliveries wait).
pub static SELECT_FANOUT_SUBSCRIPTIONS: LazyLock<String> =
    LazyLock::new(|| select_with_secrets("WHERE disabled_at IS NULL"));
pub static INSERT_SUBSCRIPTION: LazyLock<String> =
    LazyLock::new(|| insert_sql("subscriptions", SubscriptionWrite::COLUMNS));
pub static UPDATE_SUBSCRIPTION: LazyLock<String> =
    LazyLock::new(|| update_sql("subscriptions", SubscriptionWrite::COLUMNS));
pub const DELETE_SUBSCRIPTION: &str = "DELETE FROM subscriptions WHERE id = $1";

/// Ends the failing streak of the subscriptions `ids_in_1` selects (the backend's test of
/// `id` against the list bound to `$1`), as a change at `$2`: the version bump of
/// `domain::version::bump`, done in SQL so that subscriptions without a streak are not
/// touched or locked.
pub fn clear_failing_sql(ids_in_1: &str) -> String {
    format!(
        "UPDATE subscriptions SET failing_since = NULL, version = version + 1, updated_at = $2 \
         WHERE failing_since IS NOT NULL AND {ids_in_1}"
    )
}

/// Subscriptions newest first.
pub fn subscriptions_query<DB>(after: Option<&PageToken>, limit: u32) -> Result<QueryBuilder<DB>>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'t> DbId: Encode<'t, DB> + Type<DB>,
    for<'t> DbTime: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::<DB>::new(select_sql(SubscriptionRow::COLUMNS, "subscriptions", "WHERE 1 = 1"));
    push_newest_first(&mut q, "created_at", after, limit)?;
    Ok(q)
}

read_row! {
    /// A delivery as the API shows it.
    pub struct DeliveryRow {
        id: DbId,
        event_id: DbId,
        subscription_id: DbId,
        event_type: String,
        status: String,
        attempts: i32,
        next_attempt_at: Option<DbTime>,
        last_attempt_at: Option<DbTime>,
        last_status_code: Option<i32>,
        last_error: Option<String>,
        created_at: DbTime,
        delivered_at: Option<DbTime>,
    }
}

impl TryFrom<DeliveryRow> for Delivery {
    type Error = Error;
    fn try_from(row: DeliveryRow) -> Result<Delivery> {
        let DeliveryRow {
            id,
            event_id,
            subscription_id,
            event_type,
            status,
            attempts,
            next_attempt_at,
            last_attempt_at,
            last_status_code,
            last_error,
            created_at,
            delivered_at,
        } = row;
        Ok(Delivery {
            id: id.0,
            event_id: event_id.0,
            subscription_id: subscription_id.0,
            event_type: parse("event_type", &event_type)?,
            status: parse("status", &status)?,
            attempts,
            next_attempt_at: untime(next_attempt_at),
            last_attempt_at: untime(last_attempt_at),
            last_status_code,
            last_error,
            created_at: created_at.0,
            delivered_at: untime(delivered_at),
        })
    }
}

pub static SELECT_DELIVERY: LazyLock<String> =
    LazyLock::new(|| select_sql(DeliveryRow::COLUMNS, "deliveries", "WHERE id = $1"));
pub const CANCEL_DELIVERIES: &str = "UPDATE deliveries SET status = 'cancelled', next_attempt_at = NULL, \
     lease_owner = NULL, lease_expires_at = NULL WHERE subscription_id = $1 AND status IN ('pending', 'sending')";
pub const FAILED_DELIVERIES: &str =
    "SELECT id FROM deliveries WHERE subscription_id = $1 AND status = 'failed' ORDER BY created_at";

/// A subscription's deliveries, newest first, optionally of one status.
pub fn deliveries_query<DB>(
    subscription_id: Uuid,
    status: Option<DeliveryStatus>,
    after: Option<&PageToken>,
    limit: u32,
) -> Result<QueryBuilder<DB>>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'t> DbId: Encode<'t, DB> + Type<DB>,
    for<'t> DbTime: Encode<'t, DB> + Type<DB>,
    for<'t> &'static str: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::<DB>::new(select_sql(DeliveryRow::COLUMNS, "deliveries", "WHERE subscription_id = "));
    q.push_bind(DbId(subscription_id));
    if let Some(s) = status {
        q.push(" AND status = ").push_bind(s.as_str());
    }
    push_newest_first(&mut q, "created_at", after, limit)?;
    Ok(q)
}

read_row! {
    /// An attempt as read.
    pub struct AttemptRow {
        id: DbId,
        delivery_id: DbId,
        subscription_id: DbId,
        attempted_at: DbTime,
        status_code: Option<i32>,
        latency_ms: i64,
        response_excerpt: Option<String>,
        error: Option<String>,
    }
}

write_row! {
    /// An attempt as written.
    pub struct AttemptWrite<'a> {
        id: DbId,
        delivery_id: DbId,
        subscription_id: DbId,
        attempted_at: DbTime,
        status_code: Option<i32>,
        latency_ms: i64,
        response_excerpt: Option<&'a str>,
        error: Option<&'a str>,
    }
}

impl<'a> From<&'a DeliveryAttempt> for AttemptWrite<'a> {
    fn from(attempt: &'a DeliveryAttempt) -> Self {
        let DeliveryAttempt {
            id,
            delivery_id,
            subscription_id,
            attempted_at,
            status_code,
            latency_ms,
            response_excerpt,
            error,
        } = attempt;
        AttemptWrite {
            id: DbId(*id),
            delivery_id: DbId(*delivery_id),
            subscription_id: DbId(*subscription_id),
            attempted_at: DbTime(*attempted_at),
            status_code: *status_code,
            latency_ms: *latency_ms,
            response_excerpt: response_excerpt.as_deref(),
            error: error.as_deref(),
        }
    }
}

impl TryFrom<AttemptRow> for DeliveryAttempt {
    type Error = Error;
    fn try_from(row: AttemptRow) -> Result<DeliveryAttempt> {
        let AttemptRow {
            id,
            delivery_id,
            subscription_id,
            attempted_at,
            status_code,
            latency_ms,
            response_excerpt,
            error,
        } = row;
        Ok(DeliveryAttempt {
            id: id.0,
            delivery_id: delivery_id.0,
            subscription_id: subscription_id.0,
            attempted_at: attempted_at.0,
            status_code,
            latency_ms,
            response_excerpt,
            error,
        })
    }
}

pub static INSERT_ATTEMPT: LazyLock<String> = LazyLock::new(|| insert_sql("delivery_attempts", AttemptWrite::COLUMNS));

/// Attempts, newest first: of one delivery, or of every delivery of one subscription.
pub fn attempts_query<DB>(of: AttemptsOf, after: Option<&PageToken>, limit: u32) -> Result<QueryBuilder<DB>>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    for<'t> DbId: Encode<'t, DB> + Type<DB>,
    for<'t> DbTime: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let (column, id) = match of {
        AttemptsOf::Delivery(id) => ("delivery_id", id),
        AttemptsOf::Subscription(id) => ("subscription_id", id),
    };
    let mut q =
        QueryBuilder::<DB>::new(select_sql(AttemptRow::COLUMNS, "delivery_attempts", &format!("WHERE {column} = ")));
    q.push_bind(DbId(id));
    push_newest_first(&mut q, "attempted_at", after, limit)?;
    Ok(q)
}

/// Joins claimed deliveries with their events and subscriptions (rows carrying secrets).
pub fn join_claims<R: sqlx::Row>(
    deliveries: Vec<Delivery>,
    events: Vec<EventRow>,
    subscriptions: &[R],
    keys: &KeyRing,
) -> Result<Vec<ClaimedDelivery>>
where
    for<'r> SubscriptionRow: sqlx::FromRow<'r, R>,
    for<'r> SecretsRow: sqlx::FromRow<'r, R>,
{
    let mut by_id = HashMap::with_capacity(events.len());
    for row in events {
        let event = Event::try_from(row)?;
        by_id.insert(event.id, Arc::new(event));
    }
    let mut subs = HashMap::with_capacity(subscriptions.len());
    for row in subscriptions {
        let (s, secrets) = subscription_with_secrets(row, keys)?;
        subs.insert(s.id, (Arc::new(s), Arc::new(secrets)));
    }
    deliveries
        .into_iter()
        .map(|delivery| {
            let event = by_id.get(&delivery.event_id).cloned();
            let sub = subs.get(&delivery.subscription_id).cloned();
            match (event, sub) {
                (Some(event), Some((subscription, secrets))) => {
                    Ok(ClaimedDelivery { delivery, event, subscription, secrets })
                }
                _ => Err(Error::Internal(format!("delivery {} lost its event or subscription", delivery.id))),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscription_is_written_as_it_is_read_with_its_secrets() {
        let read: Vec<&str> = SubscriptionRow::COLUMNS.iter().chain(SecretsRow::COLUMNS).copied().collect();
        assert_eq!(read, SubscriptionWrite::COLUMNS);
        assert_eq!(AttemptRow::COLUMNS, AttemptWrite::COLUMNS);
    }
}
