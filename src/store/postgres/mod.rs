//! The Postgres store (sqlx, runtime-checked queries: building needs no database): the pool,
//! the transaction with its deferred log writes, and one file per feature.

mod access;
mod actions;
mod components;
mod events;
mod history;
mod idempotency;
mod incidents;
mod integrations;
mod links;
mod maintenance;
mod postmortems;
mod retention;
mod secrets;
mod stats;
mod subscribers;
mod subscriptions;
pub mod transfer;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Postgres};

use super::sql::access::{AUDIT_TABLE, AuditWrite};
use super::sql::events::{EVENT_TABLE, EventWrite};
use super::sql::history::{HISTORY_TABLE, StatusChangeWrite};
use super::sql::incidents::{TIMELINE_TABLE, TimelineWrite};
use super::sql::{self, insert_many_sql};
use super::{Observed, PoolStats, Store, Transaction, Waiting};
use crate::domain::history::StatusChange;
use crate::domain::{AuditEvent, Error, Event, Result, TimelineEntry};
use crate::secrets::KeyRing;

/// Migrations, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub struct PgStore {
    pool: PgPool,
    /// Seals and opens the stored secrets.
    keys: Arc<KeyRing>,
    /// Tasks waiting for a connection (see `PoolStats`).
    waiting: std::sync::atomic::AtomicI64,
}

impl PgStore {
    /// Connects (creating the database if it does not exist yet and the role may create it).
    pub async fn connect(url: &str, settings: super::PoolSettings, keys: Arc<KeyRing>) -> anyhow::Result<Self> {
        let options: PgConnectOptions = url.parse()?;
        let options = options.log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500));
        if !Postgres::database_exists(url).await.unwrap_or(true) {
            tracing::info!(database = options.get_database().unwrap_or_default(), "creating database");
            // Replicas starting together may race to create it: losing the race is fine.
            if let Err(e) = Postgres::create_database(url).await
                && !Postgres::database_exists(url).await.unwrap_or(false)
            {
                return Err(e.into());
            }
        }
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            // sqlx pings every connection on acquire by default: a round trip per request on
            // top of the query (and the ping it makes on release). A connection used within
            // the last half second is known good; one idle for longer (it may have been cut
            // by a failover or a restart) is still checked first. A connection that fails
            // anyway is discarded when it is released.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for > TRUST_RECENTLY_USED {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options)
            .await?;
        Ok(Self { pool, keys, waiting: Default::default() })
    }

    /// A pooled connection, counted as waited for until it is handed out.
    async fn acquire(&self) -> Result<sqlx::pool::PoolConnection<Postgres>> {
        let waiting = Waiting::enter(&self.waiting);
        let conn = self.pool.acquire().await.map_err(db_err)?;
        drop(waiting);
        Ok(conn)
    }

    /// Runs one read (a statement that changes nothing, so may run twice) on a pooled
    /// connection. An idle connection is taken at once when there is one: the pool's acquire
    /// is a 14 KB future with a timeout and the idle check, which cost a read about a tenth
    /// of its instructions. Such a connection is not checked first, so one cut since it was
    /// last used (a failover, a restart) fails the read as unavailable: it is then closed and
    /// the read runs again on a connection acquired (and checked) as usual.
    async fn read<T>(&self, run: impl for<'c> Fn(&'c mut sqlx::PgConnection) -> BoxFuture<'c, Result<T>>) -> Result<T> {
        if let Some(mut conn) = self.pool.try_acquire() {
            match run(&mut conn).await {
                Err(Error::Unavailable(_)) => conn.close_on_drop(),
                done => return done,
            }
        }
        // Boxed: the slow path's size is not the fast path's.
        let mut conn = Box::pin(self.acquire()).await?;
        run(&mut conn).await
    }
}

/// How recently a pooled connection must have been used to be handed out without a ping.
const TRUST_RECENTLY_USED: Duration = Duration::from_millis(500);

/// Maps a driver error: connection trouble is `Unavailable`, everything else `Internal`.
fn db_err(e: sqlx::Error) -> Error {
    match &e {
        // disk_full: the server could not write the change, which was rolled back.
        sqlx::Error::Database(d) if d.code().is_some_and(|c| c == "53100") => Error::StorageFull(e.to_string()),
        // read_only_sql_transaction: a standby (a failover in progress) or a read-only database.
        sqlx::Error::Database(d) if d.code().is_some_and(|c| c == "25006") => Error::ReadOnly(e.to_string()),
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
            Error::Unavailable(e.to_string())
        }
        // Connection exceptions, shutdowns, resource exhaustion, and the refusals a server
        // gives at connect time (authentication, missing or closed database).
        sqlx::Error::Database(d)
            if d.code().is_some_and(|c| {
                ["08", "57P", "53", "28"].iter().any(|p| c.starts_with(p)) || c == "3D000" || c == "55000"
            }) =>
        {
            Error::Unavailable(e.to_string())
        }
        // A deadlock or serialization failure: the change collided with a concurrent one and
        // was rolled back whole; the caller may retry it.
        sqlx::Error::Database(d) if d.code().is_some_and(|c| c == "40P01" || c == "40001") => {
            Error::Conflict("the change collided with a concurrent change and was not applied; retry it".into())
        }
        _ => Error::Internal(e.to_string()),
    }
}

/// Reads the row `sql` selects by id (`$1`) and converts it.
async fn by_id<R, T>(pool: &PgPool, sql: &'static str, id: uuid::Uuid) -> Result<Option<T>>
where
    R: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
    T: TryFrom<R, Error = Error>,
{
    let row: Option<R> = sqlx::query_as(sql).bind(sql::DbId(id)).fetch_optional(pool).await.map_err(db_err)?;
    row.map(T::try_from).transpose()
}

/// Runs a list query built by `sql` and converts its rows.
async fn list<R, T>(pool: &PgPool, query: Result<sqlx::QueryBuilder<Postgres>>) -> Result<Vec<T>>
where
    R: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
    T: TryFrom<R, Error = Error>,
{
    let rows: Vec<R> = query?.build_query_as().fetch_all(pool).await.map_err(db_err)?;
    rows.into_iter().map(T::try_from).collect()
}

#[async_trait]
impl Store for PgStore {
    /// Applies pending migrations under the Postgres advisory lock sqlx takes.
    async fn migrate(&self) -> anyhow::Result<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn begin(&self) -> Result<Box<dyn Transaction>> {
        let waiting = Waiting::enter(&self.waiting);
        let tx = self.pool.begin().await.map_err(db_err)?;
        drop(waiting);
        Ok(Box::new(PgTx {
            tx,
            keys: self.keys.clone(),
            deferred: Vec::new(),
            _span: crate::telemetry::transaction_span("postgresql"),
        }))
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db_err)?;
        Ok(())
    }

    async fn refresh_statistics(&self) -> Result<()> {
        Ok(())
    }

    async fn observe(&self) -> Result<Observed> {
        let open = sqlx::query_as(AssertSqlSafe(sql::OBSERVE_OPEN_SQL.as_str()))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        let outbox = sqlx::query_as(sql::OBSERVE_OUTBOX_SQL).fetch_one(&self.pool).await.map_err(db_err)?;
        let idle = self.pool.num_idle() as i64;
        let pool = PoolStats {
            in_use: i64::from(self.pool.size()) - idle,
            idle,
            waiting: self.waiting.load(std::sync::atomic::Ordering::Relaxed),
            max: i64::from(self.pool.options().get_max_connections()),
        };
        sql::observed(open, outbox, pool)
    }
}

struct PgTx {
    tx: sqlx::Transaction<'static, Postgres>,
    keys: Arc<KeyRing>,
    /// Timeline entries, events and audit records not yet written: they go in one statement
    /// before the next one of this transaction (or the commit), saving a round trip each.
    deferred: Vec<Deferred>,
    /// Open from `begin` until commit or rollback (drop).
    _span: tracing::Span,
}

enum Deferred {
    Timeline(TimelineEntry),
    Event(Event),
    Audit(AuditEvent),
    StatusChange(StatusChange),
}

impl Deferred {
    fn shape(&self) -> (&'static str, &'static [&'static str]) {
        match self {
            Deferred::Timeline(_) => (TIMELINE_TABLE, TimelineWrite::COLUMNS),
            Deferred::Event(_) => (EVENT_TABLE, EventWrite::COLUMNS),
            Deferred::Audit(_) => (AUDIT_TABLE, AuditWrite::COLUMNS),
            Deferred::StatusChange(_) => (HISTORY_TABLE, StatusChangeWrite::COLUMNS),
        }
    }
}

/// At most this many parameters go in one statement (Postgres allows 65,535).
const MAX_PARAMETERS: usize = 30_000;

impl PgTx {
    /// Writes what was deferred. Every other statement of the transaction runs after this, so
    /// nothing can observe the delay.
    async fn flush(&mut self) -> Result<()> {
        if self.deferred.is_empty() {
            return Ok(());
        }
        let deferred = std::mem::take(&mut self.deferred);
        // Usually one statement; a bulk write (the history backfill) is split to stay under
        // the parameter limit.
        let mut rest = deferred.as_slice();
        while !rest.is_empty() {
            let mut params = 0;
            let n = rest
                .iter()
                .take_while(|d| {
                    params += d.shape().1.len();
                    params <= MAX_PARAMETERS
                })
                .count()
                .max(1);
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            let shape: Vec<(&str, &[&str])> = chunk.iter().map(Deferred::shape).collect();
            let mut q = sqlx::query(AssertSqlSafe(insert_many_sql(&shape)));
            for d in chunk {
                q = match d {
                    Deferred::Timeline(e) => TimelineWrite::from(e).bind(q),
                    Deferred::Event(e) => EventWrite::from(e).bind(q),
                    Deferred::Audit(e) => AuditWrite::from(e).bind(q),
                    Deferred::StatusChange(c) => StatusChangeWrite::from(c).bind(q),
                };
            }
            q.execute(&mut *self.tx).await.map_err(db_err)?;
        }
        Ok(())
    }

    /// The connection, with what was deferred written first.
    async fn conn(&mut self) -> Result<&mut sqlx::PgConnection> {
        self.flush().await?;
        Ok(&mut *self.tx)
    }
}

#[async_trait]
impl Transaction for PgTx {
    async fn commit(mut self: Box<Self>) -> Result<()> {
        self.flush().await?;
        self.tx.commit().await.map_err(db_err)
    }
}
