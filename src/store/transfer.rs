//! Moving a whole database between backends (`incidentd export` / `incidentd import`), and
//! copying a live SQLite database (`incidentd backup`).
//!
//! The export is JSON Lines: a header line, then for each table a line naming it and its
//! columns followed by one JSON array per row, then an end line with the row counts (an import
//! of a cut-off file fails and changes nothing). Values are written as SQLite stores them,
//! the format both backends read back: ids and text as strings, timestamps as integer
//! microseconds since the epoch, JSON and lists as JSON text, booleans as 0/1, bytes as
//! `{"$bytes": "<hex>"}`. Postgres converts to and from it by its column types.
//!
//! Stored secrets move as they are stored (encrypted under the source's key): the target
//! reads them with the same key (see README, "Moving to Postgres").

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Every table, in an order in which each row's references are written before it. An
/// export of a database with a table not listed here fails (a new table must be added).
pub const TABLES: &[&str] = &[
    "counters",
    "components",
    "incidents",
    "incident_components",
    "incident_updates",
    "idempotency_keys",
    "api_keys",
    "audit_events",
    "events",
    "subscriptions",
    "deliveries",
    "delivery_attempts",
    "component_status_changes",
    "maintenances",
    "maintenance_components",
    "maintenance_updates",
    "subscribers",
    "service_keys",
    "mail_outbox",
    "customer_mails",
    "integrations",
    "alert_groups",
    "alerts",
    "ack_reminders",
    "postmortems",
    "actions",
    "incident_links",
];

/// Tables that are not data: the migration ledger and SQLite's full-text index (rebuilt by
/// its triggers as incidents are written).
pub fn is_internal_table(name: &str) -> bool {
    name.starts_with("_sqlx") || name.starts_with("sqlite_") || name.starts_with("incidents_fts")
}

/// The row order of a table: what a row refers to in its own table comes first. A merged
/// incident refers to the incident it was merged into, which is never itself merged.
pub fn order_by(table: &str) -> &'static str {
    match table {
        "incidents" => "(merged_into IS NOT NULL), id",
        "counters" => "name",
        _ => "1",
    }
}

pub const FORMAT: &str = "incidentd-export";
pub const VERSION: u32 = 1;

/// The first line.
#[derive(Debug, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    /// `sqlite` or `postgres`.
    pub source: String,
    /// The newest migration applied to the source: the target must be at the same one.
    pub migration: i64,
    pub exported_at: String,
}

/// The line before a table's rows.
#[derive(Debug, Serialize, Deserialize)]
pub struct TableStart {
    pub table: String,
    pub columns: Vec<String>,
}

/// The last line.
#[derive(Debug, Serialize, Deserialize)]
pub struct End {
    pub end: bool,
    pub rows: BTreeMap<String, u64>,
}

/// What an export or import moved.
#[derive(Debug, Default)]
pub struct Moved {
    pub rows: BTreeMap<String, u64>,
}

impl Moved {
    pub fn total(&self) -> u64 {
        self.rows.values().sum()
    }
}

/// Writes the export line by line.
pub struct Writer<W: Write> {
    out: W,
    moved: Moved,
    table: Option<String>,
}

impl<W: Write> Writer<W> {
    pub fn start(mut out: W, source: &str, migration: i64) -> anyhow::Result<Self> {
        let header = Header {
            format: FORMAT.into(),
            version: VERSION,
            source: source.into(),
            migration,
            exported_at: chrono::Utc::now().to_rfc3339(),
        };
        writeln!(out, "{}", serde_json::to_string(&header)?)?;
        Ok(Writer { out, moved: Moved::default(), table: None })
    }

    pub fn table(&mut self, table: &str, columns: &[String]) -> anyhow::Result<()> {
        let start = TableStart { table: table.into(), columns: columns.to_vec() };
        writeln!(self.out, "{}", serde_json::to_string(&start)?)?;
        self.moved.rows.insert(table.into(), 0);
        self.table = Some(table.into());
        Ok(())
    }

    pub fn row(&mut self, values: &[Value]) -> anyhow::Result<()> {
        serde_json::to_writer(&mut self.out, values)?;
        self.out.write_all(b"\n")?;
        if let Some(n) = self.table.as_ref().and_then(|t| self.moved.rows.get_mut(t)) {
            *n += 1;
        }
        Ok(())
    }

    pub fn finish(mut self) -> anyhow::Result<Moved> {
        let end = End { end: true, rows: self.moved.rows.clone() };
        writeln!(self.out, "{}", serde_json::to_string(&end)?)?;
        self.out.flush()?;
        Ok(self.moved)
    }
}

/// One item of an export being read.
pub enum Item {
    Table(TableStart),
    Row(Vec<Value>),
    End(End),
}

/// Reads an export: its header first, then its items.
pub struct Reader<R: BufRead> {
    input: R,
    line: String,
    number: u64,
    pub header: Header,
}

impl<R: BufRead> Reader<R> {
    pub fn open(mut input: R) -> anyhow::Result<Self> {
        let mut line = String::new();
        input.read_line(&mut line).context("reading the export")?;
        let header: Header = serde_json::from_str(line.trim_end())
            .context("the input does not start with an incidentd export header (made by `incidentd export`)")?;
        if header.format != FORMAT || header.version != VERSION {
            bail!(
                "unsupported export: format {:?} version {} (this incidentd reads {FORMAT:?} version {VERSION})",
                header.format,
                header.version
            );
        }
        Ok(Reader { input, line, number: 1, header })
    }

    /// The next item; `None` at the end of the input (which must come after the end line).
    pub fn next_item(&mut self) -> anyhow::Result<Option<Item>> {
        self.line.clear();
        if self.input.read_line(&mut self.line).context("reading the export")? == 0 {
            return Ok(None);
        }
        self.number += 1;
        let line = self.line.trim_end();
        let at = || format!("line {} of the export", self.number);
        if line.starts_with('[') {
            return Ok(Some(Item::Row(serde_json::from_str(line).with_context(at)?)));
        }
        let value: Value = serde_json::from_str(line).with_context(at)?;
        if value.get("end").is_some() {
            return Ok(Some(Item::End(serde_json::from_value(value).with_context(at)?)));
        }
        Ok(Some(Item::Table(serde_json::from_value(value).with_context(at)?)))
    }
}

/// Bytes in the export's representation.
pub fn bytes_value(bytes: &[u8]) -> Value {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    serde_json::json!({ "$bytes": hex })
}

/// Bytes from the export's representation.
pub fn value_bytes(value: &Value) -> anyhow::Result<Vec<u8>> {
    let hex = value.get("$bytes").and_then(Value::as_str).context("expected {\"$bytes\": \"<hex>\"}")?;
    if !hex.len().is_multiple_of(2) {
        bail!("odd-length hex in $bytes");
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).context("invalid hex in $bytes")).collect()
}

/// A quoted SQL identifier (column names come from the database's catalog).
pub fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// The newest migration applied (both backends keep sqlx's ledger).
pub const MIGRATION_SQL: &str = "SELECT coalesce(max(version), 0) FROM _sqlx_migrations";

/// Refuses an export made at another migration than the target's.
pub fn check_migration(export: i64, target: i64) -> anyhow::Result<()> {
    if export != target {
        bail!(
            "the export is at migration {export} and the target at {target}: export and import with the same incidentd version"
        );
    }
    Ok(())
}

/// The tables an import needs empty (the counters come with the schema), with the query
/// telling whether each has a row.
pub fn emptiness_checks() -> impl Iterator<Item = (&'static str, String)> {
    TABLES.iter().filter(|t| **t != "counters").map(|t| (*t, format!("SELECT EXISTS (SELECT 1 FROM {t})")))
}

/// Refuses a target with rows in any of `not_empty`.
pub fn check_empty(not_empty: &[&str]) -> anyhow::Result<()> {
    if !not_empty.is_empty() {
        bail!("the target database is not empty (rows in {}): import into a new database", not_empty.join(", "));
    }
    Ok(())
}

/// The columns to write to a target table: the source's, each of which the target must have.
pub fn check_columns(table: &str, source: &[String], target: &[String]) -> anyhow::Result<()> {
    let missing: Vec<&String> = source.iter().filter(|c| !target.contains(c)).collect();
    if !missing.is_empty() {
        bail!("table {table}: the target has no column {missing:?} (is it at the same migration as the source?)");
    }
    Ok(())
}

/// Checks the export ended properly and the row counts match what was read.
pub fn check_end(end: Option<End>, read: &Moved) -> anyhow::Result<()> {
    let Some(end) = end else {
        bail!("the export is cut off (no end line): nothing was imported");
    };
    if end.rows != read.rows {
        bail!("the export's row counts {:?} differ from the rows read {:?}: nothing was imported", end.rows, read.rows);
    }
    Ok(())
}

/// Writes an export of the database `url` names to `out`.
pub async fn export(url: &str, out: impl Write + Send) -> anyhow::Result<Moved> {
    match url.split_once(':').map(|(scheme, _)| scheme) {
        Some("postgres" | "postgresql") => super::postgres::transfer::export(url, out).await,
        Some("sqlite") => super::sqlite::transfer::export(url, out).await,
        _ => bail!("unsupported database URL (expected postgres://… or sqlite:…)"),
    }
}

/// Imports an export from `input` into the (migrated, empty) database `url` names, in one
/// transaction.
pub async fn import(url: &str, input: impl BufRead + Send) -> anyhow::Result<Moved> {
    let mut reader = Reader::open(input)?;
    match url.split_once(':').map(|(scheme, _)| scheme) {
        Some("postgres" | "postgresql") => super::postgres::transfer::import(url, &mut reader).await,
        Some("sqlite") => super::sqlite::transfer::import(url, &mut reader).await,
        _ => bail!("unsupported database URL (expected postgres://… or sqlite:…)"),
    }
}

/// Copies a live SQLite database to `file`, consistently, while it serves (`VACUUM INTO`).
pub async fn backup(url: &str, file: &std::path::Path) -> anyhow::Result<u64> {
    match url.split_once(':').map(|(scheme, _)| scheme) {
        Some("sqlite") => super::sqlite::transfer::backup(url, file).await,
        Some("postgres" | "postgresql") => {
            bail!("`incidentd backup` copies a SQLite database; back up Postgres with pg_dump (or `incidentd export`)")
        }
        _ => bail!("unsupported database URL (expected postgres://… or sqlite:…)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip() {
        let bytes = vec![0u8, 1, 0xab, 0xff];
        assert_eq!(value_bytes(&bytes_value(&bytes)).unwrap(), bytes);
        assert!(value_bytes(&serde_json::json!({"$bytes": "abc"})).is_err());
        assert!(value_bytes(&serde_json::json!("00")).is_err());
    }

    #[test]
    fn an_export_round_trips_through_reader_and_writer() {
        let mut out = Vec::new();
        let mut w = Writer::start(&mut out, "sqlite", 12).unwrap();
        w.table("components", &["id".into(), "name".into()]).unwrap();
        w.row(&[Value::from("a"), Value::from("API")]).unwrap();
        let moved = w.finish().unwrap();
        assert_eq!(moved.total(), 1);
        let mut r = Reader::open(out.as_slice()).unwrap();
        assert_eq!(r.header.migration, 12);
        assert!(matches!(r.next_item().unwrap(), Some(Item::Table(t)) if t.table == "components"));
        assert!(matches!(r.next_item().unwrap(), Some(Item::Row(v)) if v.len() == 2));
        assert!(matches!(r.next_item().unwrap(), Some(Item::End(e)) if e.rows["components"] == 1));
        assert!(r.next_item().unwrap().is_none());
        assert!(Reader::open(&b"{\"nope\":1}\n"[..]).is_err());
    }
}
