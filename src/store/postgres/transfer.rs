//! Export and import on Postgres: values converted to and from the export's representation
//! (SQLite's) by each column's type. See `store::transfer`.

use std::io::Write;

use anyhow::{Context, bail};
use futures::TryStreamExt;
use serde_json::Value;
use sqlx::postgres::{PgConnection, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection};

use crate::store::transfer::{self, Item, Moved, Reader, TABLES, Writer};

/// The column names and types (`udt_name`) of a table, in order, without generated columns.
async fn columns(conn: &mut PgConnection, table: &str) -> anyhow::Result<Vec<(String, String)>> {
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT column_name::text, udt_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 AND is_generated = 'NEVER' \
         ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await?;
    if columns.is_empty() {
        bail!("the database has no table {table} (is it migrated?)");
    }
    Ok(columns)
}

async fn migration(conn: &mut PgConnection) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(transfer::MIGRATION_SQL).fetch_one(conn).await?)
}

/// A value as Postgres's `row_to_json` wrote it, in the export's representation.
fn to_export(udt: &str, value: Value) -> anyhow::Result<Value> {
    if value.is_null() {
        return Ok(value);
    }
    Ok(match udt {
        "timestamptz" | "timestamp" => {
            let text = value.as_str().context("a timestamp")?;
            let parsed = chrono::DateTime::parse_from_rfc3339(text)
                .or_else(|_| chrono::DateTime::parse_from_rfc3339(&format!("{text}Z")))
                .with_context(|| format!("timestamp {text:?}"))?;
            Value::from(parsed.timestamp_micros())
        }
        "json" | "jsonb" => Value::String(value.to_string()),
        array if array.starts_with('_') => Value::String(value.to_string()),
        "bool" => Value::from(u8::from(value.as_bool().context("a boolean")?)),
        "bytea" => {
            let text = value.as_str().context("bytes")?;
            let hex = text.strip_prefix("\\x").context("bytes in hex format")?;
            serde_json::json!({ "$bytes": hex })
        }
        _ => value,
    })
}

/// A value in the export's representation, as `jsonb_populate_recordset` reads it for a
/// column of type `udt`.
fn from_export(udt: &str, value: Value) -> anyhow::Result<Value> {
    if value.is_null() {
        return Ok(value);
    }
    Ok(match udt {
        "timestamptz" | "timestamp" => {
            let micros = value.as_i64().context("a timestamp in microseconds")?;
            let at = chrono::DateTime::from_timestamp_micros(micros).context("a timestamp out of range")?;
            Value::String(at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        }
        "json" | "jsonb" => match value {
            Value::String(text) => serde_json::from_str(&text).context("JSON text")?,
            other => other,
        },
        array if array.starts_with('_') => match value {
            Value::String(text) => serde_json::from_str(&text).context("a JSON list")?,
            other => other,
        },
        "bool" => match value {
            Value::Number(n) => Value::Bool(n.as_i64() != Some(0)),
            other => other,
        },
        "bytea" => Value::String(format!("\\x{}", hex(&transfer::value_bytes(&value)?))),
        _ => value,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub async fn export(url: &str, out: impl Write + Send) -> anyhow::Result<Moved> {
    let pool = PgPoolOptions::new().max_connections(1).connect(url).await.context("connecting to the source")?;
    let mut conn = pool.acquire().await?;
    // One snapshot of everything, whatever the service writes meanwhile.
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&mut *tx)
    .await?;
    if let Some(unknown) = tables.iter().find(|t| !TABLES.contains(&t.as_str()) && !transfer::is_internal_table(t)) {
        bail!("table {unknown} is not known to the export (store::transfer::TABLES)");
    }
    let mut writer = Writer::start(out, "postgres", migration(&mut tx).await?)?;
    for table in TABLES {
        let columns = columns(&mut tx, table).await?;
        let names: Vec<String> = columns.iter().map(|(n, _)| n.clone()).collect();
        writer.table(table, &names)?;
        let list = names.iter().map(|n| transfer::quote(n)).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT row_to_json(t)::text FROM (SELECT {list} FROM {table} ORDER BY {}) t",
            transfer::order_by(table)
        );
        let mut rows = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql)).fetch(&mut *tx);
        while let Some(json) = rows.try_next().await? {
            let mut object: serde_json::Map<String, Value> = serde_json::from_str(&json)?;
            let values = columns
                .iter()
                .map(|(name, udt)| {
                    to_export(udt, object.remove(name).unwrap_or(Value::Null))
                        .with_context(|| format!("{table}.{name}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            writer.row(&values)?;
        }
    }
    tx.rollback().await?;
    writer.finish()
}

/// A table being imported: its name, its columns with their types, the rows not yet written.
type Pending = (String, Vec<(String, String)>, Vec<Value>);

/// Rows written per statement.
const BATCH: usize = 500;

pub async fn import<R: std::io::BufRead + Send>(url: &str, reader: &mut Reader<R>) -> anyhow::Result<Moved> {
    let pool = PgPoolOptions::new().max_connections(1).connect(url).await.context("connecting to the target")?;
    let mut conn = pool.acquire().await?;
    let target = migration(&mut conn).await?;
    transfer::check_migration(reader.header.migration, target)?;
    let mut tx = conn.begin().await?;
    let mut not_empty = Vec::new();
    for (table, sql) in transfer::emptiness_checks() {
        if sqlx::query_scalar::<_, bool>(AssertSqlSafe(sql)).fetch_one(&mut *tx).await? {
            not_empty.push(table);
        }
    }
    transfer::check_empty(&not_empty)?;

    let mut moved = Moved::default();
    let mut end = None;
    // The table being read: its name, its columns with their types, and the rows not yet written.
    let mut current: Option<Pending> = None;
    while let Some(item) = reader.next_item()? {
        match item {
            Item::Table(start) => {
                if let Some((table, columns, rows)) = current.take() {
                    flush(&mut tx, &table, &columns, rows).await?;
                }
                if !TABLES.contains(&start.table.as_str()) {
                    bail!("the export has a table this incidentd does not know: {}", start.table);
                }
                let target = columns(&mut tx, &start.table).await?;
                let names: Vec<String> = target.iter().map(|(n, _)| n.clone()).collect();
                transfer::check_columns(&start.table, &start.columns, &names)?;
                let typed = start
                    .columns
                    .iter()
                    .map(|c| {
                        (c.clone(), target.iter().find(|(n, _)| n == c).map(|(_, t)| t.clone()).unwrap_or_default())
                    })
                    .collect();
                moved.rows.insert(start.table.clone(), 0);
                current = Some((start.table, typed, Vec::new()));
            }
            Item::Row(values) => {
                let Some((table, columns, rows)) = current.as_mut() else { bail!("a row before any table") };
                if values.len() != columns.len() {
                    bail!("table {table}: a row of {} values for {} columns", values.len(), columns.len());
                }
                let mut object = serde_json::Map::new();
                for ((name, udt), value) in columns.iter().zip(values) {
                    object.insert(name.clone(), from_export(udt, value).with_context(|| format!("{table}.{name}"))?);
                }
                rows.push(Value::Object(object));
                *moved.rows.get_mut(table.as_str()).expect("counted") += 1;
                if rows.len() >= BATCH {
                    let batch = std::mem::take(rows);
                    let (table, columns) = (table.clone(), columns.clone());
                    flush(&mut tx, &table, &columns, batch).await?;
                }
            }
            Item::End(e) => end = Some(e),
        }
    }
    if let Some((table, columns, rows)) = current.take() {
        flush(&mut tx, &table, &columns, rows).await?;
    }
    transfer::check_end(end, &moved)?;
    // The next incident reference follows the last one moved.
    sqlx::query(
        "SELECT setval('incident_reference_seq', greatest((SELECT max(reference_number) FROM incidents), 1), \
         (SELECT max(reference_number) FROM incidents) IS NOT NULL)",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(moved)
}

/// Writes rows of a table in one statement; counters replace the target's own.
async fn flush(
    tx: &mut PgConnection,
    table: &str,
    columns: &[(String, String)],
    rows: Vec<Value>,
) -> anyhow::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let list = columns.iter().map(|(n, _)| transfer::quote(n)).collect::<Vec<_>>().join(", ");
    let conflict = match table {
        // The target's migrations created the counters; the source's values replace them
        // (Postgres numbers incidents with a sequence, not the SQLite counter).
        "counters" => " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        _ => "",
    };
    let sql = format!(
        "INSERT INTO {table} ({list}) SELECT {list} FROM jsonb_populate_recordset(NULL::{table}, $1::jsonb){conflict}"
    );
    let rows = match table {
        "counters" => rows.into_iter().filter(|r| r["name"] != "incident_reference").collect(),
        _ => rows,
    };
    sqlx::query(AssertSqlSafe(sql))
        .bind(Value::Array(rows))
        .execute(&mut *tx)
        .await
        .with_context(|| format!("writing table {table}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_convert_both_ways() {
        let at = Value::from("2026-12-06T05:10:34.811123+00:00");
        let micros = to_export("timestamptz", at).unwrap();
        assert_eq!(micros, Value::from(1_796_533_834_811_123_i64));
        assert_eq!(from_export("timestamptz", micros).unwrap(), Value::from("2026-12-06T05:10:34.811123Z"));
        let json = to_export("jsonb", serde_json::json!({"a": [1]})).unwrap();
        assert_eq!(from_export("jsonb", json).unwrap(), serde_json::json!({"a": [1]}));
        assert_eq!(to_export("bool", Value::Bool(true)).unwrap(), Value::from(1));
        assert_eq!(from_export("bool", Value::from(0)).unwrap(), Value::Bool(false));
        let bytes = to_export("bytea", Value::from("\\x00ff")).unwrap();
        assert_eq!(from_export("bytea", bytes).unwrap(), Value::from("\\x00ff"));
        let ids = to_export("_uuid", serde_json::json!(["a"])).unwrap();
        assert_eq!(ids, Value::from("[\"a\"]"));
        assert_eq!(from_export("_uuid", ids).unwrap(), serde_json::json!(["a"]));
        assert_eq!(to_export("text", Value::Null).unwrap(), Value::Null);
    }
}
