//! `bench/soak`: do the tables stay bounded under steady load?
//!
//! Runs the release `incidentd` binary as a child process on a throwaway database with every
//! retention period short (`--retention`, default 20 s; pruned every `--interval`, 5 s), points
//! two webhook subscriptions at a loopback sink, and applies steady load for `--duration`
//! seconds at `--rate` operations per second: four in five declare an incident (with an
//! idempotency key) and resolve it, one in five is an Alertmanager group firing and then
//! clearing (an incident opened and auto-resolved). So deliveries, their attempts, events,
//! audit records, idempotency records and received alerts all grow. Every `--sample` seconds it
//! counts each table's rows, their size (`pg_total_relation_size` on Postgres, `dbstat` on
//! SQLite) and the whole database's, the rows pruned so far (`incidentd_retention_pruned_rows_total`) and the latency of
//! the writes made since the last sample, and prints a table per backend: the retained tables
//! level off after one retention period, while incidents (kept for good) grow.
//!
//! Postgres's autovacuum reclaims the space of deleted rows for reuse; when the server runs
//! with autovacuum off (a development server), the bench runs a plain `VACUUM` of those tables
//! after each sample in its stead (`--no-vacuum` to leave it out). See `bench/README.md`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::http::StatusCode;
use clap::Parser;
use serde_json::{Value, json};

#[path = "../common.rs"]
mod common;
use common::{Service, TOKEN, backend_database_url, percentile};

#[derive(Parser, Debug)]
#[command(about = "incidentd retention soak: table sizes under steady load")]
struct Args {
    #[command(flatten)]
    server: common::BenchServer,
    /// Backends to soak, one after the other.
    #[arg(long, value_delimiter = ',', default_value = "postgres,sqlite")]
    backends: Vec<String>,
    /// Seconds of load per backend.
    #[arg(long, default_value_t = 100)]
    duration: u64,
    /// Operations per second (each two or three writes).
    #[arg(long, default_value_t = 20)]
    rate: u32,
    /// Every retention period (`INCIDENTD_RETENTION_*`).
    #[arg(long, default_value = "20s")]
    retention: String,
    /// How often the workers prune (`INCIDENTD_RETENTION_INTERVAL`).
    #[arg(long, default_value = "5s")]
    interval: String,
    /// `INCIDENTD_RETENTION_BATCH_SIZE`.
    #[arg(long, default_value_t = 500)]
    batch_size: u32,
    /// Seconds between samples.
    #[arg(long, default_value_t = 10)]
    sample: u64,
    /// Never VACUUM on Postgres, even with autovacuum off.
    #[arg(long)]
    no_vacuum: bool,
    /// `cargo bench` passes this; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The tables retention bounds, in the table's column order.
const BOUNDED: [&str; 6] = ["deliveries", "delivery_attempts", "events", "audit_events", "idempotency_keys", "alerts"];

/// Direct access to the database under test, for counting.
enum Db {
    Pg(sqlx::PgPool),
    Lite(sqlx::SqlitePool, std::path::PathBuf),
}

impl Db {
    async fn open(url: &str) -> anyhow::Result<Db> {
        Ok(match url.strip_prefix("sqlite:") {
            Some(path) => Db::Lite(sqlx::SqlitePool::connect(url).await?, path.into()),
            None => Db::Pg(sqlx::PgPool::connect(url).await?),
        })
    }

    async fn scalar(&self, sql: &str) -> anyhow::Result<i64> {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        Ok(match self {
            Db::Pg(p) => sqlx::query_scalar(sql).fetch_one(p).await?,
            Db::Lite(p, _) => sqlx::query_scalar(sql).fetch_one(p).await?,
        })
    }

    /// Bytes the bounded tables take with their indexes: their relations with TOAST
    /// (Postgres), or the pages of their b-trees in use (SQLite's `dbstat`; pages freed by
    /// deletes go to the free list, which later inserts reuse).
    async fn bytes(&self) -> anyhow::Result<i64> {
        match self {
            Db::Pg(_) => {
                let sizes: Vec<String> = BOUNDED.iter().map(|t| format!("pg_total_relation_size('{t}')")).collect();
                self.scalar(&format!("SELECT ({})::int8", sizes.join(" + "))).await
            }
            Db::Lite(..) => {
                let names: Vec<String> = BOUNDED.iter().map(|t| format!("'{t}'")).collect();
                self.scalar(&format!(
                    "SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name IN \
                     (SELECT name FROM sqlite_master WHERE tbl_name IN ({}))",
                    names.join(", ")
                ))
                .await
            }
        }
    }

    /// The whole database (Postgres), or the database file with its WAL (SQLite), in bytes.
    async fn database_bytes(&self) -> anyhow::Result<i64> {
        match self {
            Db::Pg(_) => self.scalar("SELECT pg_database_size(current_database())").await,
            Db::Lite(_, path) => {
                let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len() as i64).unwrap_or(0);
                let wal =
                    path.with_file_name(format!("{}-wal", path.file_name().unwrap_or_default().to_string_lossy()));
                Ok(size(path) + size(&wal))
            }
        }
    }

    async fn close(self) {
        match self {
            Db::Pg(p) => p.close().await,
            Db::Lite(p, _) => p.close().await,
        }
    }
}

/// The latency of every write, with when it finished.
type Latencies = Arc<Mutex<Vec<(Instant, i64)>>>;

struct Load {
    client: reqwest::Client,
    base: String,
    /// The integration's receiver path and its secret.
    integration: (String, String),
    latencies: Latencies,
    failures: AtomicU64,
}

impl Load {
    /// Sends one write and records its latency; fails unless it answered `expect`.
    async fn write(&self, req: reqwest::RequestBuilder, expect: u16) -> anyhow::Result<Value> {
        let started = Instant::now();
        let res = req.send().await?;
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or_default();
        let done = Instant::now();
        self.latencies.lock().unwrap().push((done, (done - started).as_micros() as i64));
        if status != expect {
            bail!("{status}: {body}");
        }
        Ok(body)
    }

    /// Operation `n`: an incident declared and resolved, or (one in five) an alert group that
    /// fires and clears.
    async fn operation(&self, n: u64) -> anyhow::Result<()> {
        if n % 5 == 4 {
            let (id, secret) = &self.integration;
            let path = format!("{}/v1/integrations/{id}/alertmanager", self.base);
            for status in ["firing", "resolved"] {
                let req = self.client.post(&path).bearer_auth(secret).json(&alertmanager(n, status));
                self.write(req, 200).await?;
            }
            return Ok(());
        }
        let req = self
            .client
            .post(format!("{}/v1/incidents", self.base))
            .bearer_auth(TOKEN)
            .header("Idempotency-Key", format!("soak-{n}"))
            .json(&json!({"title": format!("soak incident {n}"), "severity": "sev3", "impact": "minor"}));
        let incident = self.write(req, 201).await?;
        let id = incident["id"].as_str().context("incident id")?;
        let req = self
            .client
            .post(format!("{}/v1/incidents/{id}/transitions", self.base))
            .bearer_auth(TOKEN)
            .json(&json!({"to": "resolved", "message": "Fixed.", "visibility": "public"}));
        self.write(req, 200).await?;
        Ok(())
    }
}

/// An Alertmanager notification for group `n`, with one alert.
fn alertmanager(n: u64, status: &str) -> Value {
    let group = format!("SoakAlert{n}");
    json!({
        "version": "4", "groupKey": format!("{{}}:{{alertname=\"{group}\"}}"), "truncatedAlerts": 0,
        "status": status, "receiver": "incidentd", "groupLabels": {"alertname": group},
        "commonLabels": {"alertname": group}, "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
        "alerts": [{
            "status": status, "labels": {"alertname": group, "instance": "web-1", "severity": "warning"},
            "annotations": {"summary": format!("{group} on web-1")}, "startsAt": "2026-12-01T10:00:00Z",
            "endsAt": if status == "resolved" { "2026-12-01T10:05:00Z" } else { "0001-01-01T00:00:00Z" },
            "generatorURL": "http://prometheus:9090/graph", "fingerprint": format!("{n:016x}"),
        }],
    })
}

/// Creates what the load needs: two webhook subscriptions to the sink and an integration
/// (its id and secret).
async fn prepare(client: &reqwest::Client, base: &str, sink: &str) -> anyhow::Result<(String, String)> {
    let post = |path: &str, body: Value| client.post(format!("{base}{path}")).bearer_auth(TOKEN).json(&body).send();
    for n in 0..2 {
        let body = json!({"channel": "webhook", "target": format!("{sink}/hook/{n}"), "include_internal": true});
        let res = post("/v1/subscriptions", body).await?;
        if res.status() != reqwest::StatusCode::CREATED {
            bail!("creating a subscription: {} {}", res.status(), res.text().await.unwrap_or_default());
        }
    }
    let res =
        post("/v1/integrations", json!({"name": "soak", "kind": "alertmanager", "default_severity": "sev3"})).await?;
    if res.status() != reqwest::StatusCode::CREATED {
        bail!("creating an integration: {} {}", res.status(), res.text().await.unwrap_or_default());
    }
    let body: Value = res.json().await?;
    let field = |name: &str| body[name].as_str().map(str::to_string).context("integration id and secret");
    Ok((field("id")?, field("secret")?))
}

/// The sum of `incidentd_retention_pruned_rows_total` over its tables.
async fn pruned_so_far(client: &reqwest::Client, base: &str) -> anyhow::Result<u64> {
    let text = client.get(format!("{base}/metrics")).send().await?.text().await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("incidentd_retention_pruned_rows_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

struct Sample {
    at: u64,
    counts: Vec<i64>,
    incidents: i64,
    bytes: i64,
    database_bytes: i64,
    pruned: u64,
    writes: usize,
    p50: f64,
    p99: f64,
    max: f64,
}

async fn soak(args: &Args, backend: &str, client: &reqwest::Client, sink: &str) -> anyhow::Result<Vec<Sample>> {
    let url = backend_database_url(backend, &args.server.database_url, "soak")?;
    let mut env: Vec<(String, String)> = ["DELIVERIES", "EVENTS", "ALERTS", "AUDIT", "IDEMPOTENCY_KEYS"]
        .iter()
        .map(|kind| (format!("INCIDENTD_RETENTION_{kind}"), args.retention.clone()))
        .collect();
    env.push(("INCIDENTD_RETENTION_INTERVAL".into(), args.interval.clone()));
    env.push(("INCIDENTD_RETENTION_BATCH_SIZE".into(), args.batch_size.to_string()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let service = Service::start_with(&url, &env).await?;
    let result = run(args, backend, client, sink, &service.base, &url).await;
    service.stop().await?;
    result
}

async fn run(
    args: &Args,
    backend: &str,
    client: &reqwest::Client,
    sink: &str,
    base: &str,
    url: &str,
) -> anyhow::Result<Vec<Sample>> {
    let integration = prepare(client, base, sink).await?;
    let db = Db::open(url).await?;
    let vacuum = matches!(db, Db::Pg(_))
        && !args.no_vacuum
        && db.scalar("SELECT CASE WHEN current_setting('autovacuum') = 'off' THEN 1 ELSE 0 END::int8").await? == 1;
    if vacuum {
        eprintln!("{backend}: autovacuum is off on this server: VACUUM after each sample stands in for it");
    }
    let load = Arc::new(Load {
        client: client.clone(),
        base: base.to_string(),
        integration,
        latencies: Arc::default(),
        failures: AtomicU64::new(0),
    });
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration);
    let generator = {
        let load = load.clone();
        let rate = args.rate.max(1);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
            let (mut n, mut in_flight) = (0, tokio::task::JoinSet::new());
            while Instant::now() < deadline {
                ticker.tick().await;
                let load = load.clone();
                in_flight.spawn(async move {
                    if let Err(e) = load.operation(n).await
                        && load.failures.fetch_add(1, Ordering::SeqCst) == 0
                    {
                        eprintln!("a write failed: {e:#}");
                    }
                });
                n += 1;
                while in_flight.try_join_next().is_some() {}
            }
            // The service stops after the last sample: let what is in flight finish first.
            in_flight.join_all().await;
        })
    };
    let mut samples = Vec::new();
    let mut next = started;
    loop {
        next += Duration::from_secs(args.sample.max(1));
        tokio::time::sleep_until(next.min(deadline).into()).await;
        let mut counts = Vec::new();
        for table in BOUNDED {
            counts.push(db.scalar(&format!("SELECT count(*) FROM {table}")).await?);
        }
        let window: Vec<i64> = {
            let mut l = load.latencies.lock().unwrap();
            let mut w: Vec<i64> = l.drain(..).map(|(_, us)| us).collect();
            w.sort_unstable();
            w
        };
        let sample = Sample {
            at: started.elapsed().as_secs_f64().round() as u64,
            counts,
            incidents: db.scalar("SELECT count(*) FROM incidents").await?,
            bytes: db.bytes().await?,
            database_bytes: db.database_bytes().await?,
            pruned: pruned_so_far(client, base).await?,
            writes: window.len(),
            p50: percentile(&window, 50.0),
            p99: percentile(&window, 99.0),
            max: window.last().map_or(f64::NAN, |us| *us as f64 / 1000.0),
        };
        eprintln!("{}", row(backend, &sample, args.sample));
        samples.push(sample);
        if vacuum && let Db::Pg(p) = &db {
            for table in BOUNDED {
                sqlx::query(sqlx::AssertSqlSafe(format!("VACUUM {table}"))).execute(p).await?;
            }
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    generator.await?;
    db.close().await;
    let failed = load.failures.load(Ordering::SeqCst);
    if failed > 0 {
        bail!("{backend}: {failed} operations failed");
    }
    Ok(samples)
}

fn row(backend: &str, s: &Sample, every: u64) -> String {
    let counts: Vec<String> = s.counts.iter().map(|c| format!("{c:>6}")).collect();
    format!(
        "| {backend:<8} | {:>4} | {} | {:>9} | {:>8.1} | {:>6.1} | {:>9} | {:>8.1} | {:>6.1} | {:>7.1} | {:>7.0} |",
        s.at,
        counts.join(" | "),
        s.incidents,
        s.bytes as f64 / (1024.0 * 1024.0),
        s.database_bytes as f64 / (1024.0 * 1024.0),
        s.pruned,
        s.writes as f64 / every as f64,
        s.p50,
        s.p99,
        s.max,
    )
}

async fn receive() -> StatusCode {
    StatusCode::NO_CONTENT
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sink = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, Router::new().fallback(receive)).await });
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut results = Vec::new();
    for backend in &args.backends {
        eprintln!("{backend}: {} s of load at {} operations/s", args.duration, args.rate);
        results.push((backend.clone(), soak(&args, backend, &client, &sink).await?));
    }
    println!(
        "incidentd retention soak: {cores} cores, {} operations/s for {} s per backend, retention {} pruned every {} \
         in batches of {}, a sample every {} s",
        args.rate, args.duration, args.retention, args.interval, args.batch_size, args.sample
    );
    println!();
    println!(
        "| backend  |    t | deliv. | attem. | events |  audit |  idem. | alerts | incidents | size MiB | db MiB |    pruned | writes/s | p50 ms | p99 ms |  max ms |"
    );
    println!(
        "|----------|-----:|-------:|-------:|-------:|-------:|-------:|-------:|----------:|---------:|-------:|----------:|---------:|-------:|-------:|--------:|"
    );
    for (backend, samples) in &results {
        for s in samples {
            println!("{}", row(backend, s, args.sample));
        }
    }
    println!();
    println!("Rows per table at each sample (t: seconds since the load started); size: the six retained tables");
    println!("with their indexes (Postgres: pg_total_relation_size; SQLite: their pages in use, dbstat); db: the");
    println!("whole database (Postgres) or its file and WAL (SQLite), incidents included; pruned: rows deleted");
    println!("by retention so far; writes/s and latencies: the writes completed since the previous sample.");
    for (backend, samples) in &results {
        let half = args.duration / 2;
        let late: Vec<&Sample> = samples.iter().filter(|s| s.at > half).collect();
        let ranges: Vec<String> = BOUNDED
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let min = late.iter().map(|s| s.counts[i]).min().unwrap_or(0);
                let max = late.iter().map(|s| s.counts[i]).max().unwrap_or(0);
                format!("{t} {min}–{max}")
            })
            .collect();
        println!("{backend}, t > {half} s: {}", ranges.join(", "));
    }
    Ok(())
}
