//! Export, import and backup on SQLite, whose stored values are the export's representation.
//! See `store::transfer`.

use std::io::Write;
use std::str::FromStr;

use anyhow::{Context, bail};
use futures::TryStreamExt;
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Row, TypeInfo, ValueRef};

use crate::store::transfer::{self, Item, Moved, Reader, TABLES, Writer};

/// The columns of a table, in order (hidden and generated ones aside).
async fn columns(conn: &mut SqliteConnection, table: &str) -> anyhow::Result<Vec<String>> {
    let columns: Vec<String> =
        sqlx::query_scalar("SELECT name FROM pragma_table_xinfo($1) WHERE hidden = 0 ORDER BY cid")
            .bind(table)
            .fetch_all(&mut *conn)
            .await?;
    if columns.is_empty() {
        bail!("the database has no table {table} (is it migrated?)");
    }
    Ok(columns)
}

async fn migration(conn: &mut SqliteConnection) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(transfer::MIGRATION_SQL).fetch_one(conn).await?)
}

/// Column `i` of a row, as stored.
fn value(row: &SqliteRow, i: usize) -> anyhow::Result<Value> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    Ok(match raw.type_info().name() {
        "INTEGER" => Value::from(row.try_get::<i64, _>(i)?),
        "REAL" => Value::from(row.try_get::<f64, _>(i)?),
        "BLOB" => transfer::bytes_value(&row.try_get::<Vec<u8>, _>(i)?),
        _ => Value::from(row.try_get::<String, _>(i)?),
    })
}

async fn open(url: &str, foreign_keys: bool) -> anyhow::Result<SqliteConnection> {
    let options = SqliteConnectOptions::from_str(url)?
        .foreign_keys(foreign_keys)
        .busy_timeout(std::time::Duration::from_secs(30));
    Ok(options.connect().await?)
}

pub async fn export(url: &str, out: impl Write + Send) -> anyhow::Result<Moved> {
    let mut conn = open(url, true).await.context("opening the source")?;
    // One read transaction: a snapshot of everything, whatever the service writes meanwhile.
    let mut tx = conn.begin().await?;
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_schema WHERE type = 'table'").fetch_all(&mut *tx).await?;
    if let Some(unknown) = tables.iter().find(|t| !TABLES.contains(&t.as_str()) && !transfer::is_internal_table(t)) {
        bail!("table {unknown} is not known to the export (store::transfer::TABLES)");
    }
    let mut writer = Writer::start(out, "sqlite", migration(&mut tx).await?)?;
    for table in TABLES {
        let columns = columns(&mut tx, table).await?;
        writer.table(table, &columns)?;
        let list = columns.iter().map(|n| transfer::quote(n)).collect::<Vec<_>>().join(", ");
        let sql = format!("SELECT {list} FROM {table} ORDER BY {}", transfer::order_by(table));
        let mut rows = sqlx::query(AssertSqlSafe(sql)).fetch(&mut *tx);
        while let Some(row) = rows.try_next().await? {
            let values = (0..row.columns().len()).map(|i| value(&row, i)).collect::<anyhow::Result<Vec<_>>>()?;
            writer.row(&values)?;
        }
    }
    tx.rollback().await?;
    writer.finish()
}

pub async fn import<R: std::io::BufRead + Send>(url: &str, reader: &mut Reader<R>) -> anyhow::Result<Moved> {
    // References are checked once everything is in (rows of a table may refer to each other).
    let mut conn = open(url, false).await.context("opening the target")?;
    let target = migration(&mut conn).await?;
    transfer::check_migration(reader.header.migration, target)?;
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let mut not_empty = Vec::new();
    for (table, sql) in transfer::emptiness_checks() {
        if sqlx::query_scalar::<_, bool>(AssertSqlSafe(sql)).fetch_one(&mut *tx).await? {
            not_empty.push(table);
        }
    }
    transfer::check_empty(&not_empty)?;

    let mut moved = Moved::default();
    let mut end = None;
    let mut current: Option<(String, Vec<String>, String)> = None;
    while let Some(item) = reader.next_item()? {
        match item {
            Item::Table(start) => {
                if !TABLES.contains(&start.table.as_str()) {
                    bail!("the export has a table this incidentd does not know: {}", start.table);
                }
                let target = columns(&mut tx, &start.table).await?;
                transfer::check_columns(&start.table, &start.columns, &target)?;
                let list = start.columns.iter().map(|n| transfer::quote(n)).collect::<Vec<_>>().join(", ");
                let marks = (1..=start.columns.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
                let verb = if start.table == "counters" { "INSERT OR REPLACE" } else { "INSERT" };
                let sql = format!("{verb} INTO {} ({list}) VALUES ({marks})", start.table);
                moved.rows.insert(start.table.clone(), 0);
                current = Some((start.table, start.columns, sql));
            }
            Item::Row(values) => {
                let Some((table, columns, sql)) = current.as_ref() else { bail!("a row before any table") };
                if values.len() != columns.len() {
                    bail!("table {table}: a row of {} values for {} columns", values.len(), columns.len());
                }
                let mut query = sqlx::query(AssertSqlSafe(sql.clone()));
                for (value, column) in values.into_iter().zip(columns) {
                    query = match value {
                        Value::Null => query.bind(None::<String>),
                        Value::Bool(b) => query.bind(i64::from(b)),
                        Value::Number(n) => match n.as_i64() {
                            Some(i) => query.bind(i),
                            None => query.bind(n.as_f64()),
                        },
                        Value::String(s) => query.bind(s),
                        bytes @ Value::Object(_) => {
                            query.bind(transfer::value_bytes(&bytes).with_context(|| format!("{table}.{column}"))?)
                        }
                        Value::Array(_) => bail!("{table}.{column}: a list where a stored value goes"),
                    };
                }
                query.execute(&mut *tx).await.with_context(|| format!("writing table {table}"))?;
                *moved.rows.get_mut(table.as_str()).expect("counted") += 1;
            }
            Item::End(e) => end = Some(e),
        }
    }
    transfer::check_end(end, &moved)?;
    // The next incident reference follows the last one moved (a Postgres source numbers them
    // with a sequence, not this counter).
    sqlx::query(
        "UPDATE counters SET value = max(value, (SELECT coalesce(max(reference_number), 0) FROM incidents)) \
         WHERE name = 'incident_reference'",
    )
    .execute(&mut *tx)
    .await?;
    let broken: Vec<(String, Option<i64>, String)> =
        sqlx::query_as("SELECT \"table\", rowid, parent FROM pragma_foreign_key_check").fetch_all(&mut *tx).await?;
    if let Some((table, rowid, parent)) = broken.first() {
        bail!(
            "{} rows refer to missing rows (first: {table} row {rowid:?} -> {parent}): nothing was imported",
            broken.len()
        );
    }
    tx.commit().await?;
    Ok(moved)
}

/// `VACUUM INTO`: a consistent, compact copy of the database as of one moment, taken while
/// the service reads and writes it.
pub async fn backup(url: &str, file: &std::path::Path) -> anyhow::Result<u64> {
    if file.exists() {
        bail!("{} exists: choose a new file (a backup never overwrites)", file.display());
    }
    let path = file.to_str().context("the backup path is not UTF-8")?;
    let mut conn = open(url, true).await.context("opening the database")?;
    sqlx::query("VACUUM INTO $1").bind(path).execute(&mut conn).await.context("copying the database")?;
    conn.close().await?;
    Ok(std::fs::metadata(file)?.len())
}
