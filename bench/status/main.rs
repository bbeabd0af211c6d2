//! `bench/status`: the public status surfaces against nginx serving the same bytes.
//!
//! For each backend (a throwaway Postgres database, then an SQLite file) it gives the status
//! page realistic content (the 20 seed components in 4 groups, resolved incidents spread over
//! the last 90 days, two active incidents), captures the current gzip and identity bytes of
//! `/api/v2/summary.json` and `/status`, writes them into a temporary docroot and starts
//! Debian's nginx on it (`gzip_static on`, so both sides send the very same gzip bytes). Then,
//! alternating between the two targets, [oha](https://crates.io/crates/oha) drives each
//! document with `Accept-Encoding: gzip` over keep-alive connections:
//!
//! * closed model: `--concurrency` (64) clients back to back, for the throughput;
//! * open model: half of the service's measured throughput, latency counted from when each
//!   request was due (`--latency-correction`), for p50/p90/p99/max.
//!
//! While the service is measured a background writer keeps declaring, resolving and deleting
//! an incident with component impact (one write every `--write-interval-ms`), so the snapshot
//! really is rebuilt under load; it reports its writes and how soon each became visible (the
//! summary's ETag changed). See `bench/README.md`.

#[path = "../common.rs"]
mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use common::{Service, TOKEN, backend_database_url, percentile};

#[derive(Parser, Debug)]
#[command(about = "incidentd public status surfaces against nginx serving the same bytes")]
struct Args {
    #[command(flatten)]
    server: common::BenchServer,
    /// Backends to measure.
    #[arg(long, value_delimiter = ',', default_value = "postgres,sqlite")]
    backends: Vec<String>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 15)]
    duration: u64,
    /// Concurrent keep-alive connections (closed model; also the open model's connection pool).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Measurements per target, document and model, alternating incidentd and nginx.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// The open model's rate as a fraction of the service's closed-model throughput.
    #[arg(long, default_value_t = 0.5)]
    rate_fraction: f64,
    /// Milliseconds between the background writer's writes (0: no writer).
    #[arg(long, default_value_t = 500)]
    write_interval_ms: u64,
    /// Resolved incidents spread over the last 90 days.
    #[arg(long, default_value_t = 30)]
    past_incidents: usize,
    /// Documents to measure (summary, status).
    #[arg(long, value_delimiter = ',', default_value = "summary,status")]
    docs: Vec<String>,
    /// Before each run, wait up to this many seconds for the machine to be idle (other work
    /// below 0.3 cores, e.g. a build), then measure anyway and report the load seen.
    #[arg(long, default_value_t = 600)]
    quiet_timeout: u64,
    /// nginx `worker_processes`.
    #[arg(long, default_value = "auto")]
    nginx_workers: String,
    /// The nginx binary; by default Debian's, unpacked into target/tools/nginx when missing.
    #[arg(long)]
    nginx: Option<PathBuf>,
    /// The oha binary (`cargo install oha --locked`).
    #[arg(long, default_value = "oha")]
    oha: String,
    /// `cargo bench` passes this; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// A public document: its path on the service, the file nginx serves it from.
struct Document {
    name: &'static str,
    path: &'static str,
    file: &'static str,
}

const DOCUMENTS: [Document; 2] = [
    Document { name: "summary", path: "/api/v2/summary.json", file: "api/v2/summary.json" },
    Document { name: "status", path: "/status", file: "status.html" },
];

/// What a document looked like when it was captured.
struct Captured {
    content_type: String,
    etag: String,
    gzip: Vec<u8>,
    identity: Vec<u8>,
    /// Headers the service sends that nginx is configured to send too.
    headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Incidentd,
    Nginx,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Incidentd => "incidentd",
            Target::Nginx => "nginx",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Closed(usize),
    Open(u64),
}

/// One oha run.
#[derive(Debug, Clone)]
struct Run {
    backend: String,
    doc: &'static str,
    target: Target,
    mode: Mode,
    rps: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    ok: u64,
    /// Non-2xx answers and connection errors.
    failed: u64,
    /// Status codes other than 200, with counts.
    statuses: String,
    bytes_per_request: f64,
    /// CPU over the run, in cores: the target's processes, oha, the whole machine.
    target_cpu: f64,
    oha_cpu: f64,
    machine_cpu: f64,
    /// Cores busy on the otherwise idle machine just before the run.
    idle_before: f64,
    /// Which attempt this is (a run disturbed by other work is repeated).
    attempt: u32,
}

/// A run during which processes other than the target and oha (Postgres and the writer
/// included) took more than this many cores is repeated, up to `MAX_ATTEMPTS` times in all.
const MAX_REST_CPU: f64 = 0.35;
const MAX_ATTEMPTS: u32 = 3;

/// What the background writer did over one backend's service runs.
#[derive(Default)]
struct WriterStats {
    writes: AtomicU64,
    failed: AtomicU64,
    /// Writes whose effect was not visible on the status page within the timeout.
    invisible: AtomicU64,
    /// Writes after which the status page's and the summary's ETags changed.
    status_changes: AtomicU64,
    summary_changes: AtomicU64,
    /// Write latency and write → visible on the status page, in µs.
    write_us: Mutex<Vec<i64>>,
    visible_us: Mutex<Vec<i64>>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rustls::crypto::ring::default_provider().install_default().ok();
    let args = Args::parse();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let oha_version =
        tool_version(&args.oha, "--version").await.context("oha is missing: cargo install oha --locked")?;
    let nginx_bin = match &args.nginx {
        Some(path) => path.clone(),
        None => debian_nginx().await?,
    };
    let nginx_version = tool_version(nginx_bin.to_str().context("nginx path")?, "-v").await?;
    eprintln!("{oha_version}; {nginx_version}");
    let docs: Vec<&Document> = args
        .docs
        .iter()
        .map(|d| DOCUMENTS.iter().find(|doc| doc.name == d).with_context(|| format!("unknown document {d:?}")))
        .collect::<anyhow::Result<_>>()?;
    let mut runs = Vec::new();
    let mut reports = Vec::new();
    for backend in &args.backends {
        let url = backend_database_url(backend, &args.server.database_url, "status")?;
        let result = measure_backend(&args, backend, &url, &docs, &nginx_bin).await;
        if result.is_err() {
            let _ = common::drop_database(&url).await;
        }
        let (mut backend_runs, report) = result?;
        runs.append(&mut backend_runs);
        reports.push(report);
    }
    print_report(&args, cores, &oha_version, &nginx_version, &docs, &runs, &reports);
    Ok(())
}

/// What one backend's measurements found besides the runs.
struct BackendReport {
    backend: String,
    sizes: Vec<(&'static str, usize, usize)>,
    writes: u64,
    write_failures: u64,
    invisible: u64,
    status_changes: u64,
    summary_changes: u64,
    write_p50: f64,
    write_max: f64,
    visible_p50: f64,
    visible_p99: f64,
    visible_max: f64,
    /// The service's CPU per write when otherwise idle (the write and the rebuild it causes),
    /// in ms, and the snapshot's write → visible time then.
    idle_cpu_per_write_ms: f64,
    idle_visible_p50: f64,
    peak_rss_mib: f64,
    nginx_headers: Vec<String>,
}

async fn measure_backend(
    args: &Args,
    backend: &str,
    url: &str,
    docs: &[&Document],
    nginx_bin: &Path,
) -> anyhow::Result<(Vec<Run>, BackendReport)> {
    eprintln!("{backend}: seeding the components and {} past incidents", args.past_incidents);
    // The 20 components of `incidentd seed` (4 groups of 5), without its incidents.
    common::seed(url, 0).await?;
    let service = Service::start(url).await?;
    let http = reqwest::Client::new();
    let components = component_ids(&http, &service.base).await?;
    let mut references = Vec::new();
    for n in 0..args.past_incidents {
        references.push(past_incident(&http, &service.base, &components, n).await?);
    }
    service.kill().await?;
    backdate(url, &references).await?;
    let service = Service::start(url).await?;
    for n in 0..2 {
        active_incident(&http, &service.base, &components, n).await?;
    }
    // The writer's incidents affect a component none of the others does now.
    let writer_component = components[components.len() - 1].clone();
    wait_for_unresolved(&http, &service.base, 2).await?;

    // The service's cost of a write, otherwise idle: CPU of the write and of the rebuild.
    let stats = Arc::new(WriterStats::default());
    let writer = Writer::new(http.clone(), service.base.clone(), writer_component, stats.clone());
    let pid = service.pid().context("service pid")?;
    let before = cpu_ticks(&[pid]);
    let mut idle_visible = Vec::new();
    for _ in 0..3 {
        for _ in 0..3 {
            let (_, visible, _) = writer.write_once().await?;
            idle_visible.push(visible.unwrap_or(i64::MAX));
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let idle_cpu_per_write_ms = (cpu_ticks(&[pid]) - before) as f64 / clock_ticks() * 1000.0 / 9.0;
    idle_visible.sort_unstable();
    let idle_visible_p50 = percentile(&idle_visible, 50.0);
    // Back to the baseline (no writer incident) and let any rebuild finish.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = Arc::new(WriterStats::default());
    let writer = Writer { stats: stats.clone(), ..writer };

    let dir = std::env::temp_dir().join(format!("incidentd_bench_status_nginx_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("root/api/v2"))?;
    let mut captured = Vec::new();
    for doc in docs {
        let c = capture(&http, &service.base, doc).await?;
        std::fs::write(dir.join("root").join(doc.file), &c.identity)?;
        std::fs::write(dir.join("root").join(format!("{}.gz", doc.file)), &c.gzip)?;
        captured.push(c);
    }
    let nginx = Nginx::start(nginx_bin, &dir, &args.nginx_workers, docs, &captured).await?;
    let mut nginx_headers = Vec::new();
    for (doc, c) in docs.iter().zip(&captured) {
        nginx_headers.push(check_nginx(&http, &nginx.base, doc, c).await?);
    }
    let sizes = docs.iter().zip(&captured).map(|(d, c)| (d.name, c.gzip.len(), c.identity.len())).collect();

    let active = Arc::new(AtomicBool::new(false));
    let writer_task = (args.write_interval_ms > 0)
        .then(|| tokio::spawn(writer.clone().run(active.clone(), Duration::from_millis(args.write_interval_ms))));
    let service_pids = vec![pid];
    let result = async {
        let mut runs = Vec::new();
        for doc in docs {
            let mut service_rps = Vec::new();
            // One oha run against `target` (the writer writing while the service is
            // measured), once the machine is otherwise idle.
            let run = |target: Target, mode: Mode| {
                let (base, pids) = match target {
                    Target::Incidentd => (service.base.clone(), service_pids.clone()),
                    Target::Nginx => (nginx.base.clone(), nginx.pids()),
                };
                let active = active.clone();
                async move {
                    let mut attempt = 1;
                    loop {
                        let idle_before = common::wait_for_quiet(args.quiet_timeout).await;
                        active.store(target == Target::Incidentd && args.write_interval_ms > 0, Ordering::SeqCst);
                        let run = oha(args, backend, doc, target, mode, &base, &pids).await;
                        active.store(false, Ordering::SeqCst);
                        let run = Run { idle_before, attempt, ..run? };
                        // Something else (a build) took a share of the cores during the run:
                        // measure again.
                        let rest = run.machine_cpu - run.target_cpu - run.oha_cpu;
                        if rest <= MAX_REST_CPU || attempt == MAX_ATTEMPTS {
                            return anyhow::Ok(run);
                        }
                        eprintln!("  {rest:.2} cores were busy elsewhere during the run: measuring again");
                        attempt += 1;
                    }
                }
            };
            for round in 0..args.rounds {
                for target in [Target::Incidentd, Target::Nginx] {
                    let mode = Mode::Closed(args.concurrency);
                    let measure = |target| run(target, mode);
                    eprintln!(
                        "{backend}: {} {} closed c={} (round {})",
                        doc.name,
                        target.name(),
                        args.concurrency,
                        round + 1
                    );
                    let run = measure(target).await?;
                    if target == Target::Incidentd {
                        service_rps.push(run.rps);
                    }
                    runs.push(run);
                }
            }
            let saturation = service_rps.iter().sum::<f64>() / service_rps.len().max(1) as f64;
            let rate = ((saturation * args.rate_fraction).round() as u64).max(1);
            for round in 0..args.rounds {
                for target in [Target::Incidentd, Target::Nginx] {
                    let mode = Mode::Open(rate);
                    let measure = |target| run(target, mode);
                    eprintln!("{backend}: {} {} open {rate}/s (round {})", doc.name, target.name(), round + 1);
                    runs.push(measure(target).await?);
                }
            }
        }
        anyhow::Ok(runs)
    }
    .await;
    if let Some(task) = writer_task {
        task.abort();
        let _ = task.await;
    }
    nginx.stop().await?;
    let _ = std::fs::remove_dir_all(&dir);
    let peak_rss_mib = service.peak_rss_kib().unwrap_or(0) as f64 / 1024.0;
    service.stop().await?;
    let runs = result?;
    let mut write_us = stats.write_us.lock().await.clone();
    let mut visible_us = stats.visible_us.lock().await.clone();
    write_us.sort_unstable();
    visible_us.sort_unstable();
    let report = BackendReport {
        backend: backend.to_string(),
        sizes,
        writes: stats.writes.load(Ordering::Relaxed),
        write_failures: stats.failed.load(Ordering::Relaxed),
        invisible: stats.invisible.load(Ordering::Relaxed),
        status_changes: stats.status_changes.load(Ordering::Relaxed),
        summary_changes: stats.summary_changes.load(Ordering::Relaxed),
        write_p50: percentile(&write_us, 50.0),
        write_max: percentile(&write_us, 100.0),
        visible_p50: percentile(&visible_us, 50.0),
        visible_p99: percentile(&visible_us, 99.0),
        visible_max: percentile(&visible_us, 100.0),
        idle_cpu_per_write_ms,
        idle_visible_p50,
        peak_rss_mib,
        nginx_headers,
    };
    Ok((runs, report))
}

// ---------------------------------------------------------------------------------------------
// Content

async fn component_ids(http: &reqwest::Client, base: &str) -> anyhow::Result<Vec<String>> {
    let res: Value = http
        .get(format!("{base}/v1/components?page_size=500"))
        .bearer_auth(TOKEN)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let ids: Vec<String> = res["components"]
        .as_array()
        .context("components")?
        .iter()
        .filter_map(|c| c["id"].as_str().map(str::to_string))
        .collect();
    ensure!(ids.len() >= 4, "the seed made {} components", ids.len());
    Ok(ids)
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> anyhow::Result<Value> {
    let res = http.post(&url).bearer_auth(TOKEN).json(&body).send().await?;
    let status = res.status();
    let text = res.text().await?;
    ensure!(status.is_success(), "POST {url}: {status}: {text}");
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The created incident's id and reference number, wherever the response puts them.
fn created(res: &Value) -> anyhow::Result<(String, i64)> {
    let incident = if res["incident"].is_object() { &res["incident"] } else { res };
    let id = incident["id"].as_str().context("incident id")?.to_string();
    let number = incident["reference"]
        .as_str()
        .and_then(|r| r.strip_prefix("INC-"))
        .and_then(|n| n.parse().ok())
        .context("incident reference")?;
    Ok((id, number))
}

const STATUSES: [&str; 3] = ["partial_outage", "major_outage", "degraded_performance"];
const IMPACTS: [&str; 3] = ["minor", "major", "critical"];
const SEVERITIES: [&str; 4] = ["sev1", "sev2", "sev3", "sev4"];
const WHAT: [&str; 6] = [
    "Elevated error rates on checkout",
    "Slow responses from the search API",
    "Delayed webhook deliveries",
    "Login failures for some customers",
    "Increased latency in eu-west-1",
    "Dashboard not loading for some users",
];

fn incident_body(components: &[String], n: usize, summary: &str) -> Value {
    let first = &components[(n * 7) % components.len()];
    let mut affected = vec![json!({"component_id": first, "status": STATUSES[n % 3]})];
    if n.is_multiple_of(3) {
        let second = &components[(n * 7 + 3) % components.len()];
        affected.push(json!({"component_id": second, "status": "degraded_performance"}));
    }
    json!({
        "title": WHAT[n % WHAT.len()],
        "severity": SEVERITIES[n % 4],
        "summary": summary,
        "impact": IMPACTS[n % 3],
        "affected_components": affected,
        "affected_customers": (n * 137) % 5000,
        "eta": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
        "workaround": {"availability": "available", "text": "Retry the request; most retries succeed."},
    })
}

/// A resolved incident with a public timeline: declared, identified, monitored, resolved.
async fn past_incident(http: &reqwest::Client, base: &str, components: &[String], n: usize) -> anyhow::Result<i64> {
    // Avoid the last component: it is the writer's.
    let components = &components[..components.len() - 1];
    let body = incident_body(components, n, "Some requests fail or time out; we are looking into it.");
    let (id, number) = created(&post(http, format!("{base}/v1/incidents"), body).await?)?;
    for (text, status) in [
        ("We found the cause: a configuration change rolled out to part of the fleet.", "identified"),
        ("The change was rolled back; we are watching error rates recover.", "monitoring"),
    ] {
        let update = json!({"body": text, "visibility": "public", "status": status});
        post(http, format!("{base}/v1/incidents/{id}/updates"), update).await?;
    }
    let resolve = json!({"to": "resolved", "message": "Error rates are back to normal.", "visibility": "public"});
    post(http, format!("{base}/v1/incidents/{id}/transitions"), resolve).await?;
    Ok(number)
}

/// An open incident with two public updates.
async fn active_incident(http: &reqwest::Client, base: &str, components: &[String], n: usize) -> anyhow::Result<()> {
    let components = &components[..components.len() - 1];
    let body = incident_body(components, n + 1, "Some customers see errors; we are investigating.");
    let (id, _) = created(&post(http, format!("{base}/v1/incidents"), body).await?)?;
    let update = json!({
        "body": "The errors come from one database replica; we are moving traffic off it.",
        "visibility": "public",
        "status": "identified",
    });
    post(http, format!("{base}/v1/incidents/{id}/updates"), update).await?;
    Ok(())
}

/// Moves the past incidents back in time, one every 90/N days, each lasting 20 minutes to
/// 4 hours, with their timelines and the component changes they caused; the components are
/// made older than the window, so every uptime bar covers 90 days.
async fn backdate(url: &str, references: &[i64]) -> anyhow::Result<()> {
    const DAY_US: i64 = 86_400_000_000;
    let sqlite = url.starts_with("sqlite:");
    // `col - shift` where shift is in µs: an integer on SQLite, an interval on Postgres.
    let minus = |col: &str, n: usize| {
        if sqlite {
            format!("{col} = {col} - ?{n}")
        } else {
            format!("{col} = {col} - ${n} * interval '1 microsecond'")
        }
    };
    let incidents = format!(
        "UPDATE incidents SET {}, {}, {}, {}, {}, {}, {}, {}, {} WHERE reference_number = {}",
        minus("started_at", 1),
        minus("detected_at", 1),
        minus("created_at", 1),
        minus("acknowledged_at", 1),
        minus("identified_at", 2),
        minus("mitigated_at", 2),
        minus("resolved_at", 3),
        minus("closed_at", 3),
        minus("updated_at", 3),
        if sqlite { "?4" } else { "$4" }
    );
    let p = |n: usize| if sqlite { format!("?{n}") } else { format!("${n}") };
    let shift = |n: usize| if sqlite { p(n) } else { format!("{} * interval '1 microsecond'", p(n)) };
    let updates = format!(
        "UPDATE incident_updates SET created_at = created_at - CASE WHEN status_to = 'resolved' THEN {} \
         WHEN kind = 'created' THEN {} ELSE {} END \
         WHERE incident_id = (SELECT id FROM incidents WHERE reference_number = {})",
        shift(3),
        shift(1),
        shift(2),
        p(4)
    );
    let changes = format!(
        "UPDATE component_status_changes SET changed_at = changed_at - CASE WHEN to_status = 'operational' \
         THEN {} ELSE {} END WHERE incident_id = (SELECT id FROM incidents WHERE reference_number = {})",
        shift(3),
        shift(1),
        p(2)
    );
    let components = format!("UPDATE components SET {}", minus("created_at", 1));
    let n = references.len().max(1) as i64;
    let plan = |i: usize| {
        let start = DAY_US * 88 * (i as i64 + 1) / n - DAY_US / 3 + (i as i64 * 7_919_000_000) % (DAY_US / 2);
        let length = 1_200_000_000 + (i as i64 * 2_750_000_000) % 13_200_000_000;
        (start, start - length / 2, start - length)
    };
    macro_rules! run_all {
        ($pool:expr) => {{
            let pool = $pool;
            sqlx::query(sqlx::AssertSqlSafe(components.clone())).bind(DAY_US * 200).execute(&pool).await?;
            for (i, reference) in references.iter().enumerate() {
                let (start, middle, end) = plan(references.len() - 1 - i);
                for statement in [&incidents, &updates] {
                    sqlx::query(sqlx::AssertSqlSafe(statement.clone()))
                        .bind(start)
                        .bind(middle)
                        .bind(end)
                        .bind(reference)
                        .execute(&pool)
                        .await?;
                }
                sqlx::query(sqlx::AssertSqlSafe(changes.clone()))
                    .bind(start)
                    .bind(reference)
                    .bind(end)
                    .execute(&pool)
                    .await?;
            }
            pool.close().await;
        }};
    }
    if sqlite {
        run_all!(sqlx::SqlitePool::connect(url).await?);
    } else {
        run_all!(sqlx::PgPool::connect(url).await?);
    }
    Ok(())
}

async fn wait_for_unresolved(http: &reqwest::Client, base: &str, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let summary: Value = http.get(format!("{base}/api/v2/summary.json")).send().await?.json().await?;
        if summary["incidents"].as_array().is_some_and(|i| i.len() == n) {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "the summary did not show {n} unresolved incidents: {summary}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Fetches a document's gzip and identity bytes from one snapshot (the same ETag), and checks
/// that one is the other compressed.
async fn capture(http: &reqwest::Client, base: &str, doc: &Document) -> anyhow::Result<Captured> {
    for _ in 0..20 {
        let gz = http.get(format!("{base}{}", doc.path)).header("accept-encoding", "gzip").send().await?;
        ensure!(gz.status().is_success(), "{}: {}", doc.path, gz.status());
        ensure!(header(&gz, "content-encoding") == "gzip", "{} is not sent gzip-encoded", doc.path);
        let etag = header(&gz, "etag");
        let content_type = header(&gz, "content-type");
        let headers = [
            "cache-control",
            "x-content-type-options",
            "vary",
            "content-security-policy",
            "referrer-policy",
            "access-control-allow-origin",
        ]
        .iter()
        .filter(|h| gz.headers().contains_key(**h))
        .map(|h| (h.to_string(), header(&gz, h)))
        .collect();
        let gzip = gz.bytes().await?.to_vec();
        let plain = http.get(format!("{base}{}", doc.path)).send().await?;
        ensure!(plain.headers().get("content-encoding").is_none(), "{} identity is encoded", doc.path);
        if header(&plain, "etag") != etag {
            continue; // rebuilt in between
        }
        let identity = plain.bytes().await?.to_vec();
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&gzip[..]).read_to_end(&mut decoded)?;
        ensure!(decoded == identity, "{}: the gzip body is not the identity body compressed", doc.path);
        return Ok(Captured { content_type, etag, gzip, identity, headers });
    }
    bail!("{} kept changing while being captured", doc.path)
}

fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

// ---------------------------------------------------------------------------------------------
// The background writer

#[derive(Clone)]
struct Writer {
    http: reqwest::Client,
    base: String,
    component: String,
    stats: Arc<WriterStats>,
    /// The writer's open or resolved incident, and which write comes next.
    state: Arc<Mutex<(Option<String>, u64)>>,
}

impl Writer {
    fn new(http: reqwest::Client, base: String, component: String, stats: Arc<WriterStats>) -> Writer {
        Writer { http, base, component, stats, state: Arc::new(Mutex::new((None, 0))) }
    }

    async fn etag(&self, path: &str) -> anyhow::Result<String> {
        let res = self.http.get(format!("{}{path}", self.base)).header("accept-encoding", "gzip").send().await?;
        Ok(header(&res, "etag"))
    }

    /// The next write of the cycle declare → resolve → delete, each a change of the status
    /// page (the summary lists only unresolved incidents, so deleting a resolved one leaves it
    /// as it was). Returns the write's latency and how long until the page's ETag changed (None:
    /// not within 5 s), in µs, and whether the summary's ETag changed too.
    async fn write_once(&self) -> anyhow::Result<(i64, Option<i64>, bool)> {
        let mut state = self.state.lock().await;
        let before = self.etag("/status").await?;
        let summary_before = self.etag("/api/v2/summary.json").await?;
        let started = Instant::now();
        let base = &self.base;
        match (state.0.clone(), state.1 % 3) {
            (None, _) => {
                let n = state.1 as usize;
                let body = json!({
                    "title": "Checkout failing for some customers",
                    "severity": SEVERITIES[n % 4],
                    "summary": "Card payments time out for some customers.",
                    "impact": IMPACTS[n % 3],
                    "affected_components": [{"component_id": self.component, "status": STATUSES[n % 3]}],
                    "affected_customers": 1234,
                    "workaround": {"availability": "available", "text": "Pay with PayPal"},
                });
                let (id, _) = created(&post(&self.http, format!("{base}/v1/incidents"), body).await?)?;
                state.0 = Some(id);
                state.1 = 1;
            }
            (Some(id), 1) => {
                let resolve = json!({"to": "resolved", "message": "Payments work again.", "visibility": "public"});
                post(&self.http, format!("{base}/v1/incidents/{id}/transitions"), resolve).await?;
                state.1 = 2;
            }
            (Some(id), _) => {
                let res = self.http.delete(format!("{base}/v1/incidents/{id}")).bearer_auth(TOKEN).send().await?;
                ensure!(res.status().is_success(), "DELETE incident: {}", res.status());
                *state = (None, 0);
            }
        }
        let written = started.elapsed().as_micros() as i64;
        let deadline = started + Duration::from_secs(5);
        let visible = loop {
            if self.etag("/status").await? != before {
                break Some(started.elapsed().as_micros() as i64);
            }
            if Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let summary_changed = self.etag("/api/v2/summary.json").await? != summary_before;
        Ok((written, visible, summary_changed))
    }

    /// Writes every `interval` while `active`.
    async fn run(self, active: Arc<AtomicBool>, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !active.load(Ordering::SeqCst) {
                continue;
            }
            let s = &self.stats;
            s.writes.fetch_add(1, Ordering::Relaxed);
            match self.write_once().await {
                Ok((written, visible, summary_changed)) => {
                    s.write_us.lock().await.push(written);
                    if summary_changed {
                        s.summary_changes.fetch_add(1, Ordering::Relaxed);
                    }
                    match visible {
                        Some(v) => {
                            s.status_changes.fetch_add(1, Ordering::Relaxed);
                            s.visible_us.lock().await.push(v);
                        }
                        None => _ = s.invisible.fetch_add(1, Ordering::Relaxed),
                    }
                }
                Err(e) => {
                    eprintln!("writer: {e:#}");
                    s.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// nginx

/// Debian's nginx, unpacked (never installed, so nothing is started) into target/tools/nginx.
async fn debian_nginx() -> anyhow::Result<PathBuf> {
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/nginx");
    let bin = tools.join("usr/sbin/nginx");
    if bin.exists() {
        return Ok(bin);
    }
    eprintln!("nginx is missing; unpacking Debian's nginx package into {}", tools.display());
    let debs = std::env::temp_dir().join(format!("incidentd_bench_nginx_deb_{}", std::process::id()));
    std::fs::create_dir_all(&debs)?;
    let download = || async {
        tokio::process::Command::new("apt-get")
            .args(["download", "nginx", "nginx-common"])
            .current_dir(&debs)
            .output()
            .await
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if !download().await {
        let _ = tokio::process::Command::new("apt-get").args(["update", "-q"]).output().await;
        ensure!(download().await, "apt-get download nginx nginx-common failed (or pass --nginx)");
    }
    std::fs::create_dir_all(&tools)?;
    for entry in std::fs::read_dir(&debs)? {
        let deb = entry?.path();
        let status = tokio::process::Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tools).status().await?;
        ensure!(status.success(), "dpkg-deb -x {}", deb.display());
    }
    let _ = std::fs::remove_dir_all(&debs);
    ensure!(bin.exists(), "{} is missing after unpacking", bin.display());
    Ok(bin)
}

async fn tool_version(bin: &str, flag: &str) -> anyhow::Result<String> {
    let out = tokio::process::Command::new(bin).arg(flag).output().await.with_context(|| format!("running {bin}"))?;
    ensure!(out.status.success(), "{bin} {flag} failed");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok(text.trim().replace("nginx version: ", ""))
}

/// nginx as a child process (master and workers), on a loopback port, serving `dir/root`.
struct Nginx {
    child: tokio::process::Child,
    base: String,
}

impl Nginx {
    async fn start(
        bin: &Path,
        dir: &Path,
        workers: &str,
        docs: &[&Document],
        captured: &[Captured],
    ) -> anyhow::Result<Nginx> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let d = dir.display();
        let mut locations = String::new();
        for (doc, c) in docs.iter().zip(captured) {
            let mut headers = String::new();
            for (name, value) in &c.headers {
                // gzip_vary sends Vary itself.
                if name != "vary" {
                    headers.push_str(&format!("            add_header {name} \"{value}\" always;\n"));
                }
            }
            locations.push_str(&format!(
                "        location = {path} {{\n            default_type \"{ct}\";\n            alias {d}/root/{file};\n{headers}        }}\n",
                path = doc.path,
                ct = c.content_type,
                file = doc.file,
            ));
        }
        let config = format!(
            "worker_processes {workers};\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\n\
             events {{\n    worker_connections 4096;\n}}\n\
             http {{\n\
             \x20   access_log off;\n\
             \x20   client_body_temp_path {d}/tmp/body;\n\
             \x20   proxy_temp_path {d}/tmp/proxy;\n\
             \x20   fastcgi_temp_path {d}/tmp/fastcgi;\n\
             \x20   uwsgi_temp_path {d}/tmp/uwsgi;\n\
             \x20   scgi_temp_path {d}/tmp/scgi;\n\
             \x20   types {{ }}\n\
             \x20   sendfile on;\n\
             \x20   tcp_nopush on;\n\
             \x20   keepalive_timeout 75s;\n\
             \x20   keepalive_requests 1000000;\n\
             \x20   gzip_static on;\n\
             \x20   gzip_vary on;\n\
             \x20   etag on;\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             {locations}\
             \x20       location / {{ return 404; }}\n\
             \x20   }}\n\
             }}\n"
        );
        std::fs::create_dir_all(dir.join("tmp"))?;
        std::fs::write(dir.join("nginx.conf"), config)?;
        let mut child = tokio::process::Command::new(bin)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .args(["-g", "daemon off; master_process on;"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                bail!("nginx exited ({status}): {log}");
            }
            ensure!(Instant::now() < deadline, "nginx did not listen within 10 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Nginx { child, base: format!("http://127.0.0.1:{port}") })
    }

    /// The master and its workers.
    fn pids(&self) -> Vec<u32> {
        let Some(master) = self.child.id() else { return Vec::new() };
        let mut pids = vec![master];
        pids.extend(children(master));
        pids
    }

    /// Asks the master to stop (it stops its workers), by its own pid.
    async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(pid as i32, libc::SIGQUIT) };
            if tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.is_err() {
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                self.child.wait().await?;
            }
        }
        Ok(())
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: our own child; the master takes its workers down with it.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
    }
}

/// Checks that nginx serves a document as captured: the same gzip bytes for
/// `Accept-Encoding: gzip`, the same identity bytes otherwise, the same content type. Returns
/// nginx's response headers for the README.
async fn check_nginx(http: &reqwest::Client, base: &str, doc: &Document, c: &Captured) -> anyhow::Result<String> {
    let gz = http.get(format!("{base}{}", doc.path)).header("accept-encoding", "gzip").send().await?;
    ensure!(gz.status().is_success(), "nginx {}: {}", doc.path, gz.status());
    ensure!(header(&gz, "content-encoding") == "gzip", "nginx sends {} without gzip", doc.path);
    ensure!(header(&gz, "content-type") == c.content_type, "nginx's content type for {}", doc.path);
    let names: Vec<String> = gz.headers().keys().map(|k| k.to_string()).collect();
    ensure!(gz.bytes().await?.as_ref() == c.gzip.as_slice(), "nginx's gzip bytes for {} differ", doc.path);
    let plain = http.get(format!("{base}{}", doc.path)).send().await?;
    ensure!(plain.bytes().await?.as_ref() == c.identity.as_slice(), "nginx's bytes for {} differ", doc.path);
    eprintln!(
        "nginx serves {} as captured (ETag {} there, {} gzip / {} identity bytes)",
        doc.path,
        c.etag,
        c.gzip.len(),
        c.identity.len()
    );
    Ok(format!("{}: {}", doc.path, names.join(", ")))
}

// ---------------------------------------------------------------------------------------------
// CPU accounting

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// utime + stime of the processes, in clock ticks.
fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            // After the name: state is field 3, utime 14, stime 15 (1-based).
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .sum()
}

/// Children's CPU reaped by this process (cutime + cstime), in clock ticks: oha's, once it
/// has exited.
fn reaped_children_ticks() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0 };
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(13) + get(14)
}

/// The direct children of `pid`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse::<u32>().ok())
                == Some(pid)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Load

async fn oha(
    args: &Args,
    backend: &str,
    doc: &Document,
    target: Target,
    mode: Mode,
    base: &str,
    pids: &[u32],
) -> anyhow::Result<Run> {
    let mut cmd = tokio::process::Command::new(&args.oha);
    cmd.args(["--no-tui", "--output-format", "json", "-z", &format!("{}s", args.duration)]);
    cmd.args(["-c", &args.concurrency.to_string(), "-H", "accept-encoding: gzip"]);
    if let Mode::Open(rate) = mode {
        cmd.args(["-q", &rate.to_string(), "--latency-correction"]);
    }
    cmd.arg(format!("{base}{}", doc.path));
    let (target_before, oha_before, machine_before) =
        (cpu_ticks(pids), reaped_children_ticks(), common::machine_ticks());
    let out = cmd.output().await.with_context(|| format!("running {} (cargo install oha --locked)", args.oha))?;
    let (target_after, oha_after, machine_after) = (cpu_ticks(pids), reaped_children_ticks(), common::machine_ticks());
    if !out.status.success() {
        bail!("oha failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let report: Value = serde_json::from_slice(&out.stdout).context("oha's JSON report")?;
    let ms = |v: &Value| v.as_f64().unwrap_or(f64::NAN) * 1000.0;
    let statuses = report["statusCodeDistribution"].as_object().cloned().unwrap_or_default();
    let count = |pred: &dyn Fn(&str) -> bool| -> u64 {
        statuses.iter().filter(|(code, _)| pred(code)).map(|(_, n)| n.as_u64().unwrap_or(0)).sum()
    };
    let ok = count(&|code| code.starts_with('2'));
    let not_ok = count(&|code| !code.starts_with('2'));
    let other: Vec<String> =
        statuses.iter().filter(|(code, _)| code.as_str() != "200").map(|(code, n)| format!("{code}×{n}")).collect();
    // oha cancels the requests in flight when the time is up; those are not errors.
    let errors: u64 = report["errorDistribution"]
        .as_object()
        .map(|e| {
            e.iter()
                .filter(|(k, _)| !k.contains("deadline") && !k.contains("aborted"))
                .map(|(_, n)| n.as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0);
    let errors_text: Vec<String> = report["errorDistribution"]
        .as_object()
        .map(|e| e.iter().map(|(k, n)| format!("{k}×{n}")).collect())
        .unwrap_or_default();
    if !errors_text.is_empty() || !other.is_empty() {
        eprintln!("  statuses {other:?}, errors {errors_text:?}");
    }
    let total = report["summary"]["total"].as_f64().unwrap_or(args.duration as f64);
    let ticks = clock_ticks();
    let wall = total.max(1e-9);
    let (busy, all) = (machine_after.0 - machine_before.0, machine_after.1 - machine_before.1);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    let run = Run {
        backend: backend.to_string(),
        doc: doc.name,
        target,
        mode,
        rps: ok as f64 / total,
        p50: ms(&report["latencyPercentiles"]["p50"]),
        p90: ms(&report["latencyPercentiles"]["p90"]),
        p99: ms(&report["latencyPercentiles"]["p99"]),
        max: ms(&report["summary"]["slowest"]),
        ok,
        failed: not_ok + errors,
        statuses: other.join(" "),
        bytes_per_request: report["summary"]["sizePerRequest"].as_f64().unwrap_or(f64::NAN),
        target_cpu: (target_after.saturating_sub(target_before)) as f64 / ticks / wall,
        oha_cpu: (oha_after.saturating_sub(oha_before)) as f64 / ticks / wall,
        machine_cpu: if all == 0 { f64::NAN } else { busy as f64 / all as f64 * cores },
        idle_before: f64::NAN,
        attempt: 1,
    };
    eprintln!(
        "  {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} failed; CPU: {} {:.2}, oha {:.2}, machine {:.2} cores",
        run.rps,
        run.p50,
        run.p99,
        run.max,
        run.failed,
        target.name(),
        run.target_cpu,
        run.oha_cpu,
        run.machine_cpu
    );
    Ok(run)
}

// ---------------------------------------------------------------------------------------------
// Report

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

fn range(values: &[f64], digits: usize) -> String {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if values.len() < 2 { String::new() } else { format!(" ({lo:.digits$}–{hi:.digits$})") }
}

fn print_report(
    args: &Args,
    cores: usize,
    oha_version: &str,
    nginx_version: &str,
    docs: &[&Document],
    runs: &[Run],
    reports: &[BackendReport],
) {
    println!(
        "incidentd status bench: {cores} cores, {oha_version}, nginx {nginx_version} (worker_processes {}), \
         {} s per run, {} keep-alive connections, Accept-Encoding: gzip, {} round(s) alternating, \
         open model at {:.0} % of incidentd's throughput, a write every {} ms while incidentd is measured",
        args.nginx_workers,
        args.duration,
        args.concurrency,
        args.rounds,
        args.rate_fraction * 100.0,
        args.write_interval_ms
    );
    println!();
    println!(
        "| backend | document | target | req/s at {} clients | × nginx | server CPU µs/req | open rate/s | p50 ms | p90 ms | p99 ms | max ms | failed |",
        args.concurrency
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut verdicts = Vec::new();
    for backend in &args.backends {
        for doc in docs {
            let pick = |target: Target, closed: bool| -> Vec<&Run> {
                runs.iter()
                    .filter(|r| {
                        &r.backend == backend
                            && r.doc == doc.name
                            && r.target == target
                            && matches!(r.mode, Mode::Closed(_)) == closed
                    })
                    .collect()
            };
            let nginx_rps = mean(&pick(Target::Nginx, true).iter().map(|r| r.rps).collect::<Vec<_>>());
            for target in [Target::Incidentd, Target::Nginx] {
                let closed = pick(target, true);
                let open = pick(target, false);
                let rps: Vec<f64> = closed.iter().map(|r| r.rps).collect();
                let cpu_per_request: Vec<f64> = closed.iter().map(|r| r.target_cpu / r.rps * 1e6).collect();
                let field = |f: fn(&Run) -> f64| open.iter().map(|r| f(r)).collect::<Vec<_>>();
                let (p50, p90, p99, max) = (field(|r| r.p50), field(|r| r.p90), field(|r| r.p99), field(|r| r.max));
                let rate = open.first().map(|r| if let Mode::Open(q) = r.mode { q } else { 0 }).unwrap_or(0);
                let failed: u64 = closed.iter().chain(&open).map(|r| r.failed).sum();
                let ratio = mean(&rps) / nginx_rps;
                println!(
                    "| {backend} | {} | {} | {:.0}{} | {} | {:.0} | {rate} | {:.2}{} | {:.2} | {:.2}{} | {:.2} | {failed} |",
                    doc.path,
                    target.name(),
                    mean(&rps),
                    range(&rps, 0),
                    if target == Target::Incidentd { format!("{ratio:.2}") } else { "1".into() },
                    mean(&cpu_per_request),
                    mean(&p50),
                    range(&p50, 2),
                    mean(&p90),
                    mean(&p99),
                    range(&p99, 2),
                    max.iter().copied().fold(0.0, f64::max),
                );
                if target == Target::Incidentd {
                    let worst_p99 = p99.iter().copied().fold(0.0, f64::max);
                    verdicts.push(format!(
                        "- {backend} {}: throughput {:.2}× nginx (target ≥ 0.5×): {}; p99 at {rate}/s {:.2} ms \
                         (worst round; target < 10 ms): {}",
                        doc.path,
                        ratio,
                        if ratio >= 0.5 { "met" } else { "NOT met" },
                        worst_p99,
                        if worst_p99 < 10.0 { "met" } else { "NOT met" },
                    ));
                }
            }
        }
    }
    println!();
    println!("Targets:");
    for v in &verdicts {
        println!("{v}");
    }
    println!();
    println!(
        "Every run, in order. CPU in cores over the run: the target's processes, oha, everything else \
         (Postgres, the writer, this bench); idle: cores busy just before the run; attempt: a run during \
         which the rest took over 0.35 cores is measured again, up to 3 times."
    );
    println!();
    println!(
        "| backend | document | target | load | 2xx | req/s | p50 ms | p99 ms | max ms | bytes/req | failed | target CPU | oha CPU | rest CPU | idle | attempt |"
    );
    println!("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in runs {
        let load = match r.mode {
            Mode::Closed(c) => format!("c={c}"),
            Mode::Open(q) => format!("{q}/s"),
        };
        let failed =
            if r.statuses.is_empty() { r.failed.to_string() } else { format!("{} ({})", r.failed, r.statuses) };
        println!(
            "| {} | {} | {} | {load} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.0} | {failed} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
            r.backend,
            r.doc,
            r.target.name(),
            r.ok,
            r.rps,
            r.p50,
            r.p99,
            r.max,
            r.bytes_per_request,
            r.target_cpu,
            r.oha_cpu,
            (r.machine_cpu - r.target_cpu - r.oha_cpu).max(0.0),
            r.idle_before,
            r.attempt
        );
    }
    println!();
    for r in reports {
        let sizes: Vec<String> =
            r.sizes.iter().map(|(name, gz, id)| format!("{name} {gz} B gzip / {id} B identity")).collect();
        println!("{}: documents as captured (what nginx serves): {}.", r.backend, sizes.join(", "));
        println!(
            "{}: background writer during incidentd's runs: {} writes (declare, resolve, delete in turn), {} failed; \
             the status page's ETag changed after {} of them ({} not within 5 s), the summary's after {}; \
             write p50 {:.1} ms, max {:.1} ms; write → new page ETag p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms.",
            r.backend,
            r.writes,
            r.write_failures,
            r.status_changes,
            r.invisible,
            r.summary_changes,
            r.write_p50,
            r.write_max,
            r.visible_p50,
            r.visible_p99,
            r.visible_max
        );
        println!(
            "{}: otherwise idle, a write and the snapshot rebuild it causes cost the service {:.1} ms of CPU; \
             write → new page ETag p50 {:.0} ms (100 ms of it the debounce). Service peak RSS {:.1} MiB.",
            r.backend, r.idle_cpu_per_write_ms, r.idle_visible_p50, r.peak_rss_mib
        );
        for h in &r.nginx_headers {
            println!("{}: nginx's headers for {h}", r.backend);
        }
    }
}
