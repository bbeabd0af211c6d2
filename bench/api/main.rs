//! `bench/api`: API throughput and latency against the database's own limit.
//!
//! For each backend (a throwaway Postgres database, then an SQLite file) it seeds a dataset with
//! `incidentd seed`, starts the release `incidentd`, and drives six operations (create, get by
//! id, get by reference, list with filters and paging, transition, post update):
//!
//! * over REST with [oha](https://crates.io/crates/oha) (stateless operations) and a small
//!   reqwest driver (transitions, which depend on each incident's current status);
//! * over gRPC with a small tonic driver;
//!
//! each at a fixed concurrency (closed model: throughput) and at a fixed request rate (open
//! model, latency counted from when each request was due, so a stall is not hidden by
//! coordinated omission). On Postgres it then runs pgbench with scripts issuing the service's own
//! statements for create and get (`bench/api/pgbench/`) at the same concurrency and rate, and
//! prints one table with each operation's ratio to pgbench. See `bench/README.md`.

#[path = "../common.rs"]
mod common;
mod floor;
mod instructions;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use incidentd::proto;
use proto::incident_service_client::IncidentServiceClient;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use common::{Service, TOKEN, backend_database_url, percentile};

#[derive(Parser, Debug)]
#[command(about = "incidentd API benchmark: REST and gRPC against pgbench")]
struct Args {
    #[command(flatten)]
    server: common::BenchServer,
    /// Backends to measure.
    #[arg(long, value_delimiter = ',', default_value = "postgres,sqlite")]
    backends: Vec<String>,
    /// Incidents to seed before measuring. Up to 10⁴ are written by `incidentd seed` (through
    /// the service); on Postgres a larger number is reached by copying those (see `amplify`).
    #[arg(long, default_value_t = 10_000)]
    incidents: usize,
    /// Seconds per measurement; 0 skips the throughput and latency runs (and pgbench).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Concurrent clients in the fixed-concurrency runs (and pgbench clients).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Requests per second in the fixed-rate runs; 0 skips them.
    #[arg(long, default_value_t = 500)]
    rate: u32,
    /// Operations to measure (create, get_id, get_ref, list, transition, update, healthz).
    #[arg(long, value_delimiter = ',', default_value = "get_id,get_ref,list,healthz,update,transition,create")]
    ops: Vec<String>,
    /// On Postgres, leave out the floor (`bench/floor`: a minimal axum + sqlx server answering
    /// get, list and hello world) that get_id, get_ref, list and healthz are compared with.
    #[arg(long)]
    no_floor: bool,
    /// On Postgres, count the instructions per request of incidentd and the floor under
    /// callgrind over this many sequential requests per operation (list: a tenth); 0 skips.
    #[arg(long, default_value_t = 2000)]
    instructions: u64,
    /// Where callgrind's profiles are kept (for `callgrind_annotate`).
    #[arg(long, default_value_t = std::env::temp_dir().join("incidentd_callgrind").display().to_string())]
    callgrind_dir: String,
    /// The oha binary (`cargo install oha`).
    #[arg(long, default_value = "oha")]
    oha: String,
    /// The pgbench binary.
    #[arg(long, default_value = "pgbench")]
    pgbench: String,
    /// `cargo bench` passes this; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Closed(usize),
    Open(u32),
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode::Closed(c) => write!(f, "c={c}"),
            Mode::Open(r) => write!(f, "{r}/s"),
        }
    }
}

/// One measurement.
#[derive(Debug, Clone)]
struct Stats {
    rps: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    errors: u64,
}

impl Stats {
    fn from_micros(mut latencies: Vec<i64>, errors: u64, elapsed: Duration) -> Stats {
        latencies.sort_unstable();
        Stats {
            rps: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50: percentile(&latencies, 50.0),
            p99: percentile(&latencies, 99.0),
            p999: percentile(&latencies, 99.9),
            errors,
        }
    }
}

/// The service's resident size in KiB: idle on an empty database, idle after the seed's events
/// were processed, and its peak over the whole run.
struct Memory {
    backend: String,
    idle_empty: u64,
    idle_seeded: u64,
    peak: u64,
}

struct Row {
    backend: String,
    transport: &'static str,
    op: String,
    mode: Mode,
    stats: Stats,
    /// Throughput as a fraction of pgbench's for the same transaction and mode.
    ratio: Option<f64>,
    /// Throughput as a fraction of the floor's for the same request and mode.
    floor_ratio: Option<f64>,
}

/// Instructions per request of one server and operation.
struct Counted {
    server: &'static str,
    transport: &'static str,
    op: String,
    per_request: f64,
    requests: u64,
    profile: std::path::PathBuf,
}

/// The longest a measurement waits for the machine to be idle (the service numbering the
/// seed's events, autovacuum, someone else's build) before it starts anyway.
const QUIET_TIMEOUT: u64 = 120;

/// The operations the floor answers too.
const FLOOR_OPS: [&str; 4] = ["get_id", "get_ref", "list", "healthz"];

/// What the seeded dataset offers the operations.
struct Targets {
    /// A seeded incident's id and reference, for the get operations.
    id: String,
    reference: String,
    /// Ids for post update (spread so updates do not all wait on one row lock).
    update_ids: Vec<String>,
    /// Open incidents for transitions, each with its current status.
    open: Vec<(String, Mutex<&'static str>)>,
    /// A component for the list filter.
    component: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rustls::crypto::ring::default_provider().install_default().ok();
    let args = Args::parse();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mut rows = Vec::new();
    let mut memory = Vec::new();
    let mut counted = Vec::new();
    for backend in &args.backends {
        let url = backend_database_url(backend, &args.server.database_url, "api")?;
        let empty = Service::start(&url).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle_empty = empty.memory_kib("VmRSS").unwrap_or(0);
        if args.ops.iter().any(|o| o == "list") && args.rate > 0 && args.duration > 0 {
            // The list's latency on an empty database: the reference the large dataset's
            // figure is compared with.
            eprintln!("{backend}: list REST on the empty database");
            let http = reqwest::Client::new();
            let nothing = Arc::new(Targets {
                id: String::new(),
                reference: String::new(),
                update_ids: Vec::new(),
                open: Vec::new(),
                component: uuid::Uuid::now_v7().to_string(),
            });
            let mode = Mode::Open(args.rate);
            let duration = Duration::from_secs(args.duration);
            let stats = rest(&args, &http, &empty.base, &nothing, "list", mode, duration).await?;
            rows.push(Row {
                backend: backend.clone(),
                transport: "REST",
                op: "list_empty".into(),
                mode,
                stats,
                ratio: None,
                floor_ratio: None,
            });
        }
        empty.kill().await?;
        let through_service =
            if backend == "postgres" { args.incidents.min(SEEDED_THROUGH_SERVICE) } else { args.incidents };
        eprintln!("{backend}: seeding {through_service} incidents");
        let seeded = Instant::now();
        seed(&url, through_service).await?;
        if through_service < args.incidents {
            let factor = args.incidents.div_ceil(through_service);
            eprintln!("{backend}: copying them {factor}-fold");
            amplify(&url, factor).await?;
        }
        eprintln!("{backend}: seeded in {:.0} s", seeded.elapsed().as_secs_f64());
        let service = Service::start(&url).await?;
        // Let the service number the seed's events, then read its idle size.
        tokio::time::sleep(Duration::from_secs(5)).await;
        common::wait_for_quiet(QUIET_TIMEOUT).await;
        let idle_seeded = service.memory_kib("VmRSS").unwrap_or(0);
        let result = measure_backend(&args, backend, &url, &service).await;
        memory.push(Memory {
            backend: backend.clone(),
            idle_empty,
            idle_seeded,
            peak: service.peak_rss_kib().unwrap_or(0),
        });
        service.stop().await?;
        let (measured, instructions) = result?;
        rows.extend(measured);
        counted.extend(instructions);
    }
    print_table(&args, cores, &rows, &memory);
    print_instructions(&counted);
    Ok(())
}

async fn seed(url: &str, incidents: usize) -> anyhow::Result<()> {
    common::seed(url, incidents).await?;
    // Refresh the planner's statistics, as autovacuum would after that many inserts (it may be
    // off on a development server).
    if !url.starts_with("sqlite:") {
        let pool = sqlx::PgPool::connect(url).await?;
        sqlx::query("ANALYZE").execute(&pool).await?;
        pool.close().await;
    }
    Ok(())
}

/// On Postgres, incidents beyond this many are copies of those written through the service.
const SEEDED_THROUGH_SERVICE: usize = 10_000;

/// Grows a seeded Postgres database `factor`-fold: each incident is copied `factor - 1` times
/// with a new id and reference, created an hour further back per copy, together with its
/// affected components (with their open flags). The copies keep the seed's distributions
/// (severities, statuses, components, labels); only the incidents and their components are
/// copied, which is what listing reads. 10⁶ incidents take minutes this way instead of the
/// better part of an hour through the service.
async fn amplify(url: &str, factor: usize) -> anyhow::Result<()> {
    let pool = sqlx::PgPool::connect(url).await?;
    let columns = |table: &'static str| {
        let pool = pool.clone();
        async move {
            let names: Vec<String> = sqlx::query_scalar(
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_name = $1 AND is_generated = 'NEVER' ORDER BY ordinal_position",
            )
            .bind(table)
            .fetch_all(&pool)
            .await?;
            anyhow::Ok(names)
        }
    };
    let copy_of = |column: &str| format!("md5({column}::text || k::text)::uuid");
    let incident_columns = columns("incidents").await?;
    let incident_values: Vec<String> = incident_columns
        .iter()
        .map(|c| match c.as_str() {
            "id" => copy_of("id"),
            "reference_number" => "reference_number + k * m.top".to_string(),
            "created_at" => "created_at - k * interval '1 hour'".to_string(),
            other => other.to_string(),
        })
        .collect();
    let component_columns = columns("incident_components").await?;
    let component_values: Vec<String> =
        component_columns.iter().map(|c| if c == "incident_id" { copy_of("incident_id") } else { c.clone() }).collect();
    let top: i64 = sqlx::query_scalar("SELECT max(reference_number) FROM incidents").fetch_one(&pool).await?;
    for k in 1..factor as i64 {
        let mut tx = pool.begin().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO incidents ({}) SELECT {} FROM incidents, (SELECT $1::bigint AS top) m, (SELECT $2::bigint AS k) n \
             WHERE reference_number <= m.top",
            incident_columns.join(", "),
            incident_values.join(", ")
        )))
        .bind(top)
        .bind(k)
        .execute(&mut *tx)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO incident_components ({}) SELECT {} FROM incident_components ic, (SELECT $1::bigint AS k) n \
             WHERE EXISTS (SELECT 1 FROM incidents i WHERE i.id = ic.incident_id AND i.reference_number <= $2)",
            component_columns.join(", "),
            component_values.join(", ")
        )))
        .bind(k)
        .bind(top)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if k % 10 == 0 {
            eprintln!("  {k} of {} copies", factor - 1);
        }
    }
    sqlx::query("SELECT setval('incident_reference_seq', (SELECT max(reference_number) FROM incidents))")
        .execute(&pool)
        .await?;
    sqlx::query("VACUUM ANALYZE incidents").execute(&pool).await?;
    sqlx::query("VACUUM ANALYZE incident_components").execute(&pool).await?;
    pool.close().await;
    Ok(())
}

/// Every operation on one backend.
async fn measure_backend(
    args: &Args,
    backend: &str,
    url: &str,
    service: &Service,
) -> anyhow::Result<(Vec<Row>, Vec<Counted>)> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency * 2).build()?;
    let targets = Arc::new(targets(&http, &service.base, args.concurrency).await?);
    // Like a load generator with one connection per virtual user, up to 8: one HTTP/2
    // connection is served by one task on each side, which would cap the figure.
    let mut channels = Vec::new();
    for _ in 0..args.concurrency.clamp(1, GRPC_CONNECTIONS) {
        channels.push(Channel::from_shared(service.grpc.clone())?.connect().await?);
    }
    let modes: Vec<Mode> = std::iter::once(Mode::Closed(args.concurrency))
        .chain((args.rate > 0).then_some(Mode::Open(args.rate)))
        .filter(|_| args.duration > 0)
        .collect();
    let duration = Duration::from_secs(args.duration);
    let floor = if backend == "postgres"
        && !args.no_floor
        && !modes.is_empty()
        && args.ops.iter().any(|o| FLOOR_OPS.contains(&o.as_str()))
    {
        Some(floor::Floor::start(&floor::binary().await?, url, &[], Duration::from_secs(60)).await?)
    } else {
        None
    };
    let mut rows = Vec::new();
    for op in &args.ops {
        for &mode in &modes {
            common::wait_for_quiet(QUIET_TIMEOUT).await;
            eprintln!("{backend}: {op} REST {mode}");
            let stats = rest(args, &http, &service.base, &targets, op, mode, duration).await?;
            rows.push(Row {
                backend: backend.into(),
                transport: "REST",
                op: op.clone(),
                mode,
                stats,
                ratio: None,
                floor_ratio: None,
            });
            common::wait_for_quiet(QUIET_TIMEOUT).await;
            eprintln!("{backend}: {op} gRPC {mode}");
            let stats = drive(grpc_call(&channels, &targets, op)?, mode, duration).await;
            rows.push(Row {
                backend: backend.into(),
                transport: "gRPC",
                op: op.clone(),
                mode,
                stats,
                ratio: None,
                floor_ratio: None,
            });
            if let (Some(floor), true) = (&floor, FLOOR_OPS.contains(&op.as_str())) {
                common::wait_for_quiet(QUIET_TIMEOUT).await;
                eprintln!("{backend}: {op} floor {mode}");
                let url = format!("{}{}", floor.base, floor_path(op, &targets));
                let stats = oha(args, "GET", &url, None, false, mode, duration).await?;
                rows.push(Row {
                    backend: backend.into(),
                    transport: "floor",
                    op: op.clone(),
                    mode,
                    stats,
                    ratio: None,
                    floor_ratio: None,
                });
            }
        }
    }
    if backend == "postgres" {
        for (op, script) in [("create", "create.sql"), ("get_id", "get.sql")] {
            if !args.ops.iter().any(|o| o == op) {
                continue;
            }
            for &mode in &modes {
                common::wait_for_quiet(QUIET_TIMEOUT).await;
                eprintln!("{backend}: {op} pgbench {mode}");
                let stats = pgbench(args, url, script, &targets.id, mode).await?;
                if let Mode::Closed(_) = mode {
                    for r in rows.iter_mut().filter(|r| r.op == op && r.mode == mode) {
                        r.ratio = Some(r.stats.rps / stats.rps);
                    }
                }
                rows.push(Row {
                    backend: backend.into(),
                    transport: "pgbench",
                    op: op.into(),
                    mode,
                    stats,
                    ratio: None,
                    floor_ratio: None,
                });
            }
        }
    }
    if let Some(floor) = floor {
        floor.kill().await?;
    }
    for i in 0..rows.len() {
        let (op, mode) = (rows[i].op.clone(), rows[i].mode);
        let floor_rps =
            rows.iter().find(|r| r.transport == "floor" && r.op == op && r.mode == mode).map(|r| r.stats.rps);
        if let (Some(floor_rps), Mode::Closed(_), "REST" | "gRPC") = (floor_rps, mode, rows[i].transport) {
            rows[i].floor_ratio = Some(rows[i].stats.rps / floor_rps);
        }
    }
    let counted = if backend == "postgres" && args.instructions > 0 {
        count_instructions(args, url, &targets).await?
    } else {
        Vec::new()
    };
    Ok((rows, counted))
}

/// The floor's path for `op`.
fn floor_path(op: &str, t: &Targets) -> String {
    match op {
        "get_id" => format!("/incidents/{}", t.id),
        "get_ref" => format!("/incidents/{}", t.reference),
        "list" => format!("/incidents?{}", list_query(t)),
        _ => "/hello".to_string(),
    }
}

/// incidentd's REST path for a read `op`.
fn rest_path(op: &str, t: &Targets) -> String {
    match op {
        "get_id" => format!("/v1/incidents/{}", t.id),
        "get_ref" => format!("/v1/incidents/{}", t.reference),
        "list" => format!("/v1/incidents?{}", list_query(t)),
        _ => "/healthz".to_string(),
    }
}

/// A GET of `url`, which must succeed, its body read.
fn get_call(http: &reqwest::Client, url: String) -> Call {
    let http = http.clone();
    Arc::new(move |_| {
        let (http, url) = (http.clone(), url.clone());
        Box::pin(async move {
            let res = http.get(&url).bearer_auth(TOKEN).send().await.map_err(|e| e.to_string())?;
            if !res.status().is_success() {
                return Err(format!("GET {url}: {}", res.status()));
            }
            res.bytes().await.map_err(|e| e.to_string())?;
            Ok(())
        })
    })
}

/// Instructions per request of incidentd (REST and gRPC, API role only, default log level)
/// and of the floor, each under callgrind, over `--instructions` sequential requests on one
/// keep-alive connection per operation.
async fn count_instructions(args: &Args, url: &str, t: &Arc<Targets>) -> anyhow::Result<Vec<Counted>> {
    let dir = std::path::PathBuf::from(&args.callgrind_dir);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let ops: Vec<&str> = FLOOR_OPS.iter().copied().filter(|op| args.ops.iter().any(|o| o == op)).collect();
    let requests = |op: &str| if op == "list" { (args.instructions / 10).max(1) } else { args.instructions };
    let mut counted = Vec::new();
    eprintln!("postgres: counting incidentd's instructions under callgrind");
    let wrapper = instructions::wrapper(&dir, "incidentd");
    let service =
        Service::start_wrapped(url, &[("INCIDENTD_ROLES", "api")], &wrapper, instructions::START_TIMEOUT).await?;
    let mut counter = instructions::Counter::new(service.pid().context("pid")?, &dir, "incidentd");
    let http = reqwest::Client::builder().pool_max_idle_per_host(1).build()?;
    for op in &ops {
        let call = get_call(&http, format!("{}{}", service.base, rest_path(op, t)));
        let (per_request, profile) = counter.per_request(&call, requests(op)).await?;
        counted.push(Counted {
            server: "incidentd",
            transport: "REST",
            op: op.to_string(),
            per_request,
            requests: requests(op),
            profile,
        });
    }
    let channel = Channel::from_shared(service.grpc.clone())?.connect().await?;
    for op in &ops {
        let call = grpc_call(std::slice::from_ref(&channel), t, op)?;
        let (per_request, profile) = counter.per_request(&call, requests(op)).await?;
        counted.push(Counted {
            server: "incidentd",
            transport: "gRPC",
            op: op.to_string(),
            per_request,
            requests: requests(op),
            profile,
        });
    }
    service.kill().await?;
    eprintln!("postgres: counting the floor's instructions under callgrind");
    let binary = floor::binary().await?;
    let floor =
        floor::Floor::start(&binary, url, &instructions::wrapper(&dir, "floor"), instructions::START_TIMEOUT).await?;
    let mut counter = instructions::Counter::new(floor.pid().context("pid")?, &dir, "floor");
    for op in &ops {
        let call = get_call(&http, format!("{}{}", floor.base, floor_path(op, t)));
        let (per_request, profile) = counter.per_request(&call, requests(op)).await?;
        counted.push(Counted {
            server: "floor",
            transport: "REST",
            op: op.to_string(),
            per_request,
            requests: requests(op),
            profile,
        });
    }
    floor.kill().await?;
    Ok(counted)
}

/// Picks the incidents and component the operations work on from the seeded data.
async fn targets(http: &reqwest::Client, base: &str, concurrency: usize) -> anyhow::Result<Targets> {
    let get = |path: String| {
        let http = http.clone();
        async move {
            let res = http.get(format!("{base}{path}")).bearer_auth(TOKEN).send().await?;
            anyhow::ensure!(res.status().is_success(), "GET {path}: {}", res.status());
            anyhow::Ok(res.json::<Value>().await?)
        }
    };
    let listed = get("/v1/incidents?page_size=100".into()).await?;
    let incidents = listed["incidents"].as_array().context("incidents")?;
    let first = incidents.first().context("the seed wrote no incidents")?;
    let open = get(format!("/v1/incidents?open=true&page_size={}", (concurrency * 4).clamp(10, 500))).await?;
    let open: Vec<(String, Mutex<&'static str>)> = open["incidents"]
        .as_array()
        .context("incidents")?
        .iter()
        .map(|i| {
            let status = match i["status"].as_str() {
                Some("identified") => "identified",
                Some("monitoring") => "monitoring",
                _ => "investigating",
            };
            (i["id"].as_str().unwrap_or_default().to_string(), Mutex::new(status))
        })
        .collect();
    anyhow::ensure!(!open.is_empty(), "the seed left no open incident");
    // Filter on the component of a resolved sev2 incident, so the list has matches to page.
    let sample = get("/v1/incidents?status=resolved&severity=sev2&page_size=1".into()).await?;
    let component = sample["incidents"][0]["affected_components"][0]["component_id"]
        .as_str()
        .context("no resolved sev2 incident with a component to filter on")?
        .to_string();
    Ok(Targets {
        id: first["id"].as_str().context("id")?.into(),
        reference: first["reference"].as_str().context("reference")?.into(),
        update_ids: incidents.iter().filter_map(|i| i["id"].as_str().map(str::to_string)).collect(),
        open,
        component,
    })
}

const CREATE_BODY: &str = r#"{"title":"Checkout is failing for some customers","severity":"sev3","summary":"Card payments fail with a timeout","labels":{"team":"payments"}}"#;
const UPDATE_BODY: &str = r#"{"body":"Still investigating; retries mostly succeed.","visibility":"public"}"#;

fn list_query(t: &Targets) -> String {
    format!("status=resolved&severity=sev2&component={}&page_size=20", t.component)
}

/// The next status in the open cycle investigating → identified → monitoring → investigating.
fn next_status(current: &str) -> &'static str {
    match current {
        "investigating" => "identified",
        "identified" => "monitoring",
        _ => "investigating",
    }
}

/// One REST measurement: oha for the stateless operations, the reqwest driver for transitions.
async fn rest(
    args: &Args,
    http: &reqwest::Client,
    base: &str,
    t: &Arc<Targets>,
    op: &str,
    mode: Mode,
    duration: Duration,
) -> anyhow::Result<Stats> {
    let alternatives = |ids: &[String]| ids.join("|");
    let (method, url, body, regex) = match op {
        "create" => ("POST", format!("{base}/v1/incidents"), Some(CREATE_BODY), false),
        "get_id" | "get_ref" | "list" | "healthz" => ("GET", format!("{base}{}", rest_path(op, t)), None, false),
        "update" => {
            ("POST", format!("{base}/v1/incidents/({})/updates", alternatives(&t.update_ids)), Some(UPDATE_BODY), true)
        }
        "transition" => {
            let (http, base, t) = (http.clone(), base.to_string(), t.clone());
            let call: Call = Arc::new(move |n| {
                let (http, base, t) = (http.clone(), base.clone(), t.clone());
                Box::pin(async move {
                    let (id, status) = &t.open[n as usize % t.open.len()];
                    let mut status = status.lock().await;
                    let to = next_status(&status);
                    let res = http
                        .post(format!("{base}/v1/incidents/{id}/transitions"))
                        .bearer_auth(TOKEN)
                        .json(&json!({"to": to}))
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    if !res.status().is_success() {
                        return Err(format!("{}", res.status()));
                    }
                    *status = to;
                    Ok(())
                })
            });
            return Ok(drive(call, mode, duration).await);
        }
        other => bail!("unknown operation {other:?}"),
    };
    oha(args, method, &url, body, regex, mode, duration).await
}

/// One oha run: `method` on `url` (a pattern of URLs with `regex`), with `body` as JSON.
async fn oha(
    args: &Args,
    method: &str,
    url: &str,
    body: Option<&str>,
    regex: bool,
    mode: Mode,
    duration: Duration,
) -> anyhow::Result<Stats> {
    let mut cmd = tokio::process::Command::new(&args.oha);
    cmd.args(["--no-tui", "--output-format", "json", "-z", &format!("{}s", duration.as_secs()), "-m", method]);
    cmd.args(["-H", &format!("authorization: Bearer {TOKEN}")]);
    match mode {
        Mode::Closed(c) => cmd.args(["-c", &c.to_string()]),
        Mode::Open(r) => cmd.args(["-c", &args.concurrency.to_string(), "-q", &r.to_string(), "--latency-correction"]),
    };
    if let Some(body) = body {
        cmd.args(["-T", "application/json", "-d", body]);
    }
    if regex {
        cmd.arg("--rand-regex-url");
    }
    cmd.arg(url);
    let out = cmd.output().await.with_context(|| format!("running {} (cargo install oha)", args.oha))?;
    if !out.status.success() {
        bail!("oha failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let report: Value = serde_json::from_slice(&out.stdout).context("oha's JSON report")?;
    let ms = |key: &str| report["latencyPercentiles"][key].as_f64().unwrap_or(f64::NAN) * 1000.0;
    let statuses = report["statusCodeDistribution"].as_object().cloned().unwrap_or_default();
    let failed_statuses: u64 =
        statuses.iter().filter(|(code, _)| !code.starts_with('2')).map(|(_, n)| n.as_u64().unwrap_or(0)).sum();
    let ok: u64 = statuses.iter().filter(|(code, _)| code.starts_with('2')).map(|(_, n)| n.as_u64().unwrap_or(0)).sum();
    let errors: u64 = report["errorDistribution"]
        .as_object()
        .map(|e| e.iter().filter(|(k, _)| !k.contains("deadline")).map(|(_, n)| n.as_u64().unwrap_or(0)).sum())
        .unwrap_or(0);
    let total = report["summary"]["total"].as_f64().unwrap_or(duration.as_secs_f64());
    Ok(Stats {
        rps: ok as f64 / total,
        p50: ms("p50"),
        p99: ms("p99"),
        p999: ms("p99.9"),
        errors: failed_statuses + errors,
    })
}

type Call = Arc<dyn Fn(u64) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// How many HTTP/2 connections the gRPC driver spreads its calls over.
const GRPC_CONNECTIONS: usize = 8;

/// A gRPC call for `op`, spread round-robin over the channels.
fn grpc_call(channels: &[Channel], t: &Arc<Targets>, op: &str) -> anyhow::Result<Call> {
    let clients: Vec<_> = channels.iter().map(|c| IncidentServiceClient::new(c.clone())).collect();
    let health: Vec<_> = channels.iter().map(|c| HealthClient::new(c.clone())).collect();
    let t = t.clone();
    fn authed<T>(message: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        req.metadata_mut().insert("authorization", format!("Bearer {TOKEN}").parse().expect("ascii"));
        req
    }
    let op = op.to_string();
    anyhow::ensure!(
        ["create", "get_id", "get_ref", "list", "update", "transition", "healthz"].contains(&op.as_str()),
        "unknown operation {op:?}"
    );
    Ok(Arc::new(move |n| {
        let (mut client, t, op) = (clients[n as usize % clients.len()].clone(), t.clone(), op.clone());
        let mut health = health[n as usize % health.len()].clone();
        Box::pin(async move {
            let result = match op.as_str() {
                // The standard health check, as a probe sends it (no credentials).
                "healthz" => health.check(HealthCheckRequest { service: String::new() }).await.map(drop),
                "create" => client
                    .create_incident(authed(proto::CreateIncidentRequest {
                        incident: Some(proto::Incident {
                            title: "Checkout is failing for some customers".into(),
                            summary: "Card payments fail with a timeout".into(),
                            severity: proto::Severity::Sev3 as i32,
                            labels: [("team".to_string(), "payments".to_string())].into(),
                            ..Default::default()
                        }),
                        request_id: String::new(),
                    }))
                    .await
                    .map(drop),
                "get_id" => client.get_incident(authed(proto::GetIncidentRequest { id: t.id.clone() })).await.map(drop),
                "get_ref" => {
                    client.get_incident(authed(proto::GetIncidentRequest { id: t.reference.clone() })).await.map(drop)
                }
                "list" => client
                    .list_incidents(authed(proto::ListIncidentsRequest {
                        statuses: vec![proto::IncidentStatus::Resolved as i32],
                        severities: vec![proto::Severity::Sev2 as i32],
                        component_id: t.component.clone(),
                        page_size: 20,
                        ..Default::default()
                    }))
                    .await
                    .map(drop),
                "update" => client
                    .create_incident_update(authed(proto::CreateIncidentUpdateRequest {
                        incident_id: t.update_ids[n as usize % t.update_ids.len()].clone(),
                        update: Some(proto::IncidentUpdate {
                            body: "Still investigating; retries mostly succeed.".into(),
                            visibility: proto::Visibility::Public as i32,
                            ..Default::default()
                        }),
                        request_id: String::new(),
                    }))
                    .await
                    .map(drop),
                _ => {
                    let (id, status) = &t.open[n as usize % t.open.len()];
                    let mut status = status.lock().await;
                    let to = next_status(&status);
                    let target = match to {
                        "identified" => proto::IncidentStatus::Identified,
                        "monitoring" => proto::IncidentStatus::Monitoring,
                        _ => proto::IncidentStatus::Investigating,
                    };
                    let res = client
                        .transition_incident(authed(proto::TransitionIncidentRequest {
                            id: id.clone(),
                            to: target as i32,
                            ..Default::default()
                        }))
                        .await;
                    if res.is_ok() {
                        *status = to;
                    }
                    res.map(drop)
                }
            };
            result.map_err(|s| format!("{:?}: {}", s.code(), s.message()))
        })
    }))
}

/// Runs `call` for `duration`: `Closed(c)` keeps c calls in flight; `Open(r)` starts r calls a
/// second on schedule whatever the ones before are doing, and times each from when it was due.
async fn drive(call: Call, mode: Mode, duration: Duration) -> Stats {
    let started = Instant::now();
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    match mode {
        Mode::Closed(c) => {
            let next = Arc::new(AtomicU64::new(0));
            let deadline = started + duration;
            for _ in 0..c {
                let (call, next, errors) = (call.clone(), next.clone(), errors.clone());
                tasks.spawn(async move {
                    let mut latencies = Vec::new();
                    while Instant::now() < deadline {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let sent = Instant::now();
                        match call(n).await {
                            Ok(()) => latencies.push(sent.elapsed().as_micros() as i64),
                            Err(_) => _ = errors.fetch_add(1, Ordering::Relaxed),
                        }
                    }
                    latencies
                });
            }
        }
        Mode::Open(rate) => {
            let total = u64::from(rate) * duration.as_secs();
            for n in 0..total {
                let due = started + Duration::from_secs_f64(n as f64 / f64::from(rate));
                tokio::time::sleep_until(due.into()).await;
                let (call, errors) = (call.clone(), errors.clone());
                tasks.spawn(async move {
                    match call(n).await {
                        Ok(()) => vec![due.elapsed().as_micros() as i64],
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            Vec::new()
                        }
                    }
                });
            }
        }
    }
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done.unwrap_or_default());
    }
    Stats::from_micros(latencies, errors.load(Ordering::Relaxed), started.elapsed())
}

/// pgbench with one of `bench/api/pgbench/*.sql`, prepared statements, the same clients or
/// rate; latencies from its per-transaction log.
async fn pgbench(args: &Args, url: &str, script: &str, id: &str, mode: Mode) -> anyhow::Result<Stats> {
    let dir = std::env::temp_dir().join(format!("incidentd_pgbench_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/api/pgbench").join(script);
    let mut cmd = tokio::process::Command::new(&args.pgbench);
    cmd.args(["-n", "-M", "prepared", "-j", "2", "-T", &args.duration.to_string(), "-l"]);
    cmd.arg(format!("--log-prefix={}", dir.join("log").display()));
    cmd.arg("-D").arg(format!("id={id}"));
    cmd.arg("-f").arg(&script);
    match mode {
        Mode::Closed(c) => cmd.args(["-c", &c.to_string()]),
        Mode::Open(r) => cmd.args(["-c", &args.concurrency.to_string(), "-R", &r.to_string()]),
    };
    // libpq takes a connection URI where a database name goes; pgbench's own `-d` is debug.
    cmd.arg(url);
    let out = cmd.output().await.with_context(|| format!("running {}", args.pgbench))?;
    if !out.status.success() {
        bail!("pgbench failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    let mut latencies = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let text = std::fs::read_to_string(entry?.path())?;
        // client_id transaction_no time script_no time_epoch time_us [schedule_lag]; with a
        // rate, `time` counts from the scheduled start.
        latencies.extend(text.lines().filter_map(|l| l.split_whitespace().nth(2)?.parse::<i64>().ok()));
    }
    let _ = std::fs::remove_dir_all(&dir);
    let failed = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("number of failed transactions: ")?.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Ok(Stats::from_micros(latencies, failed, Duration::from_secs(args.duration)))
}

fn print_table(args: &Args, cores: usize, rows: &[Row], memory: &[Memory]) {
    println!(
        "incidentd API bench: {cores} cores, {} incidents seeded, {} s per run, {} clients or {} requests/s",
        args.incidents, args.duration, args.concurrency, args.rate
    );
    println!();
    println!("| backend | op | transport | load | req/s | p50 ms | p99 ms | p99.9 ms | errors | × pgbench | × floor |");
    println!("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let s = &r.stats;
        let ratio = r.ratio.map(|x| format!("{x:.2}")).unwrap_or_default();
        let floor_ratio = r.floor_ratio.map(|x| format!("{x:.2}")).unwrap_or_default();
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {ratio} | {floor_ratio} |",
            r.backend, r.op, r.transport, r.mode, s.rps, s.p50, s.p99, s.p999, s.errors
        );
    }
    println!();
    let mib = |kib: u64| kib as f64 / 1024.0;
    for m in memory {
        println!(
            "{}: service RSS idle {:.1} MiB on an empty database, {:.1} MiB idle after seeding, peak {:.1} MiB",
            m.backend,
            mib(m.idle_empty),
            mib(m.idle_seeded),
            mib(m.peak)
        );
    }
}

/// Instructions per request, incidentd against the floor (healthz against hello world).
fn print_instructions(counted: &[Counted]) {
    if counted.is_empty() {
        return;
    }
    println!();
    println!("Instructions per request (callgrind, sequential requests on one keep-alive connection, Postgres):");
    println!();
    println!("| op | requests | incidentd REST | incidentd gRPC | floor | REST ÷ floor | gRPC ÷ floor |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let find = |server: &str, transport: &str, op: &str| {
        counted.iter().find(|c| c.server == server && c.transport == transport && c.op == op)
    };
    let mut ops: Vec<&str> = Vec::new();
    for c in counted {
        if !ops.contains(&c.op.as_str()) {
            ops.push(&c.op);
        }
    }
    for op in ops {
        let figure = |c: Option<&Counted>| c.map(|c| format!("{:.0}", c.per_request)).unwrap_or_default();
        let (rest, grpc, floor) =
            (find("incidentd", "REST", op), find("incidentd", "gRPC", op), find("floor", "REST", op));
        let ratio = |a: Option<&Counted>| match (a, floor) {
            (Some(a), Some(f)) => format!("{:.2}", a.per_request / f.per_request),
            _ => String::new(),
        };
        let requests = rest.or(floor).map(|c| c.requests).unwrap_or_default();
        let name = if op == "healthz" { "healthz (floor: hello)" } else { op };
        println!(
            "| {name} | {requests} | {} | {} | {} | {} | {} |",
            figure(rest),
            figure(grpc),
            figure(floor),
            ratio(rest),
            ratio(grpc)
        );
    }
    if let Some(c) = counted.first()
        && let Some(dir) = c.profile.parent()
    {
        println!();
        println!("Profiles of the counted requests: {} (callgrind_annotate --inclusive=yes FILE)", dir.display());
    }
}
