//! The embedded SQLite store: zero setup, one file, one replica.
//!
//! SQLite allows one writer at a time. Every write transaction goes through a single writer
//! connection and starts with `BEGIN IMMEDIATE`, so writers queue in the pool instead of
//! failing with "database is locked"; reads use a separate pool of connections that WAL
//! lets run alongside the writer. The busy timeout covers other processes (such as
//! `incidentd migrate`) touching the same file. A write transaction already excludes every
//! other writer, so no statement here takes a row lock.

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

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, ConnectOptions, Sqlite};

use super::sql;
use super::{Observed, PoolStats, Store, Transaction, Waiting};
use crate::domain::{Error, Result};
use crate::secrets::KeyRing;

/// Migrations, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a write waits for the file lock held by another process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct SqliteStore {
    writer: SqlitePool,
    readers: SqlitePool,
    /// Tasks waiting for a connection (see `PoolStats`).
    waiting: std::sync::atomic::AtomicI64,
    /// An in-memory database has one pool: `readers` is `writer`.
    one_pool: bool,
    /// Seals and opens the stored secrets.
    keys: Arc<KeyRing>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file the URL names, e.g. `sqlite:incidentd.db`
    /// or `sqlite:///var/lib/incidentd/incidentd.db`.
    pub async fn connect(url: &str, max_readers: u32, keys: Arc<KeyRing>) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500));
        let path = options.get_filename().to_path_buf();
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if !in_memory && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        // Switching a new file to WAL takes a lock SQLite does not wait for: a process opening
        // the file at the same moment as another gets "database is locked" and tries again.
        let mut attempt = 1;
        let writer = loop {
            let opened = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .acquire_timeout(BUSY_TIMEOUT)
                .after_release(|conn, _| Box::pin(leave_no_transaction_open(conn)))
                // What a write replaces or deletes is zeroed in the pages it writes anyway (no
                // extra I/O), so a secret encrypted in place leaves no plaintext behind.
                .connect_with(options.clone().pragma("secure_delete", "FAST"))
                .await;
            match opened {
                Err(e) if attempt < 10 && is_locked(&e) => {
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                    attempt += 1;
                }
                other => break other?,
            }
        };
        let readers = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(max_readers.max(1))
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(options.pragma("query_only", "true"))
                .await?
        };
        tracing::info!(path = %path.display(), "using SQLite");
        Ok(Self { writer, readers, waiting: Default::default(), one_pool: in_memory, keys })
    }

    /// A write transaction outside the service's (for the dispatcher's claims).
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Sqlite>> {
        self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)
    }
}

/// Maps a driver error: a locked database or a lost connection is `Unavailable`, everything
/// else `Internal`.
fn db_err(e: sqlx::Error) -> Error {
    match &e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => Error::Unavailable(e.to_string()),
        sqlx::Error::Database(_) if is_locked(&e) => Error::Unavailable(e.to_string()),
        sqlx::Error::Database(d) => match d.code().and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff) {
            // SQLITE_FULL: the disk (or the size limit) is full; the statement and its
            // transaction were not applied.
            Some(13) => Error::StorageFull(e.to_string()),
            // SQLITE_READONLY: a read-only file, directory or file system.
            Some(8) => Error::ReadOnly(e.to_string()),
            // SQLITE_IOERR, SQLITE_CANTOPEN: the disk failed the read or write.
            Some(10 | 14) => Error::Unavailable(e.to_string()),
            _ => Error::Internal(e.to_string()),
        },
        _ => Error::Internal(e.to_string()),
    }
}

/// Keeps the writer usable after a failed commit. When COMMIT fails (a full disk), SQLite
/// may already have rolled the transaction back; the ROLLBACK that sqlx then sends fails, and
/// sqlx still counts the connection as inside a transaction, so every later `BEGIN` would
/// fail until the process restarts. Such a connection is closed on release instead, and the
/// pool opens a fresh one.
async fn leave_no_transaction_open(conn: &mut sqlx::SqliteConnection) -> sqlx::Result<bool> {
    use sqlx::Connection;
    if !conn.is_in_transaction() {
        return Ok(true);
    }
    // The rollback of a dropped transaction is queued on the connection: let it land.
    conn.ping().await?;
    if conn.is_in_transaction() {
        tracing::warn!("the SQLite writer was left inside a failed transaction; reopening it");
        return Ok(false);
    }
    Ok(true)
}

/// SQLITE_BUSY (5) or SQLITE_LOCKED (6), with their extended codes.
fn is_locked(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d)
        if d.code().and_then(|c| c.parse::<i32>().ok()).is_some_and(|c| matches!(c & 0xff, 5 | 6)))
}

/// A JSON array of strings, for `IN (SELECT value FROM json_each($n))`: SQLite's stand-in for
/// Postgres's arrays.
fn json_list<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    serde_json::Value::from(items.into_iter().map(|i| i.to_string()).collect::<Vec<_>>()).to_string()
}

/// Reads the row `sql` selects by id (`$1`) and converts it.
async fn by_id<R, T>(pool: &SqlitePool, sql: &'static str, id: uuid::Uuid) -> Result<Option<T>>
where
    R: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
    T: TryFrom<R, Error = Error>,
{
    let row: Option<R> = sqlx::query_as(sql).bind(sql::DbId(id)).fetch_optional(pool).await.map_err(db_err)?;
    row.map(T::try_from).transpose()
}

/// Runs a list query built by `sql` and converts its rows.
async fn list<R, T>(pool: &SqlitePool, query: Result<sqlx::QueryBuilder<Sqlite>>) -> Result<Vec<T>>
where
    R: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
    T: TryFrom<R, Error = Error>,
{
    let rows: Vec<R> = query?.build_query_as().fetch_all(pool).await.map_err(db_err)?;
    rows.into_iter().map(T::try_from).collect()
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> anyhow::Result<()> {
        // SQLite has no advisory lock: processes starting together on one file may both find
        // a migration missing, and the second to apply it fails ("table already exists"). Each
        // migration commits with its record, so running again skips what the other applied.
        let mut attempt = 1;
        while let Err(e) = MIGRATOR.run(&self.writer).await {
            if attempt == 5 {
                return Err(e.into());
            }
            tracing::debug!(error = %e, "another process is migrating this database; trying again");
            tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            attempt += 1;
        }
        Ok(())
    }

    /// `PRAGMA optimize`, SQLite's recommended upkeep: it analyses the tables never analysed
    /// or grown a lot since (0x10002: every table, not only those this connection has read,
    /// which for the writer would leave out what only the readers query), sampling a bounded
    /// number of rows per index, so it takes milliseconds even on a large file. Without
    /// statistics SQLite plans by guesswork: the filtered incident list walked a whole
    /// severity and sorted it.
    async fn refresh_statistics(&self) -> Result<()> {
        let mut conn = self.writer.acquire().await.map_err(db_err)?;
        sqlx::query("PRAGMA analysis_limit = 1000").execute(&mut *conn).await.map_err(db_err)?;
        sqlx::query("PRAGMA optimize = 0x10002").execute(&mut *conn).await.map_err(db_err)?;
        Ok(())
    }

    async fn begin(&self) -> Result<Box<dyn Transaction>> {
        let waiting = Waiting::enter(&self.waiting);
        let tx = self.begin_write().await?;
        drop(waiting);
        Ok(Box::new(SqliteTx { tx, keys: self.keys.clone(), _span: crate::telemetry::transaction_span("sqlite") }))
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.readers).await.map_err(db_err)?;
        Ok(())
    }

    async fn observe(&self) -> Result<Observed> {
        let open = sqlx::query_as(AssertSqlSafe(sql::OBSERVE_OPEN_SQL.as_str()))
            .fetch_all(&self.readers)
            .await
            .map_err(db_err)?;
        let outbox = sqlx::query_as(sql::OBSERVE_OUTBOX_SQL).fetch_one(&self.readers).await.map_err(db_err)?;
        // The writer and the readers together (one pool when the database is in memory).
        let pools: &[&SqlitePool] = if self.one_pool { &[&self.writer] } else { &[&self.writer, &self.readers] };
        let mut pool =
            PoolStats { waiting: self.waiting.load(std::sync::atomic::Ordering::Relaxed), ..Default::default() };
        for p in pools {
            let idle = p.num_idle() as i64;
            pool.idle += idle;
            pool.in_use += i64::from(p.size()) - idle;
            pool.max += i64::from(p.options().get_max_connections());
        }
        sql::observed(open, outbox, pool)
    }
}

/// A write transaction. It holds the database's write lock from `BEGIN IMMEDIATE`, so its
/// reads are already serialized with every other writer: no row locks are needed.
struct SqliteTx {
    tx: sqlx::Transaction<'static, Sqlite>,
    keys: Arc<KeyRing>,
    /// Open from `begin` until commit or rollback (drop).
    _span: tracing::Span,
}

impl SqliteTx {
    fn conn(&mut self) -> &mut sqlx::SqliteConnection {
        &mut self.tx
    }
}

#[async_trait]
impl Transaction for SqliteTx {
    async fn commit(self: Box<Self>) -> Result<()> {
        self.tx.commit().await.map_err(db_err)
    }
}
