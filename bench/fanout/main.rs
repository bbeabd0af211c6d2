//! `bench/fanout`: end-to-end notification throughput and latency.
//!
//! Runs the release `incidentd` binary as a child process against a fresh database, points 1, 10
//! and 100 webhook subscriptions at a loopback sink that answers `204 No Content`, declares
//! incidents over REST and measures, for every delivery, the time from the event (the incident's
//! commit) to its arrival at the sink. Two runs per subscription count:
//!
//! * **saturation**: `--concurrency` clients declare incidents as fast as they are accepted for
//!   `--duration` seconds; the figure is how many incidents per second were *fully delivered*
//!   (every subscription received it), counted until the last delivery arrived;
//! * **paced**: incidents are declared at a fixed rate (`--rates`, default the targets of
//!   issue 5) and the commit → delivery latency is reported at that load.
//!
//! Peak RSS is the service's `VmHWM` after both runs. See `bench/README.md`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::{DateTime, Utc};
use clap::Parser;
use serde_json::json;
use tokio::sync::Semaphore;
use uuid::Uuid;

#[path = "../common.rs"]
mod common;
use common::{Service, TOKEN, bench_database_url, percentile};

#[derive(Parser, Debug)]
#[command(about = "incidentd notification fan-out benchmark")]
struct Args {
    #[command(flatten)]
    server: common::BenchServer,
    /// Subscription counts to measure, one scenario each.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    subscriptions: Vec<usize>,
    /// Paced incident rates (incidents/s), one per subscription count; 0 skips the paced run.
    #[arg(long, value_delimiter = ',', default_value = "1500,480,48")]
    rates: Vec<u32>,
    /// Seconds each run declares incidents for.
    #[arg(long, default_value_t = 15)]
    duration: u64,
    /// Concurrent clients in the saturation run.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// `cargo bench` passes this; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// One delivery at the sink: incident id, arrival time, event time.
type Arrival = (Uuid, DateTime<Utc>, DateTime<Utc>);

/// What the sink saw.
#[derive(Default)]
struct Sink {
    received: AtomicU64,
    /// Every first arrival since the last reset: the incident, when it arrived, and the
    /// event's time (taken in the transaction that declared the incident).
    arrivals: Mutex<Vec<Arrival>>,
    /// (subscription path, webhook-id) pairs: duplicates are counted, not double counted.
    seen: Mutex<HashSet<(u32, String)>>,
    duplicates: AtomicU64,
    last_arrival: Mutex<Option<Instant>>,
}

impl Sink {
    fn reset(&self) {
        self.received.store(0, Ordering::SeqCst);
        self.arrivals.lock().unwrap().clear();
        self.seen.lock().unwrap().clear();
        self.duplicates.store(0, Ordering::SeqCst);
        *self.last_arrival.lock().unwrap() = None;
    }
}

#[derive(serde::Deserialize)]
struct CloudEvent {
    time: DateTime<Utc>,
    data: EventData,
}

#[derive(serde::Deserialize)]
struct EventData {
    incident: IncidentId,
}

#[derive(serde::Deserialize)]
struct IncidentId {
    id: Uuid,
}

async fn receive(State(sink): State<Arc<Sink>>, Path(n): Path<u32>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let arrived = Utc::now();
    let Ok(event) = serde_json::from_slice::<CloudEvent>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok()) else {
        return StatusCode::BAD_REQUEST;
    };
    if !sink.seen.lock().unwrap().insert((n, id.to_string())) {
        sink.duplicates.fetch_add(1, Ordering::Relaxed);
        return StatusCode::NO_CONTENT;
    }
    sink.arrivals.lock().unwrap().push((event.data.incident.id, arrived, event.time));
    *sink.last_arrival.lock().unwrap() = Some(Instant::now());
    sink.received.fetch_add(1, Ordering::SeqCst);
    StatusCode::NO_CONTENT
}

async fn start_sink() -> anyhow::Result<(Arc<Sink>, String)> {
    let sink = Arc::new(Sink::default());
    let app = Router::new().route("/s/{n}", post(receive)).with_state(sink.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((sink, format!("http://{addr}")))
}

fn micros(d: chrono::TimeDelta) -> i64 {
    d.num_microseconds().unwrap_or(i64::MAX).max(0)
}

struct Run {
    incidents: u64,
    deliveries: u64,
    /// From the first declaration to the last delivery.
    elapsed: Duration,
    declare_elapsed: Duration,
    /// Request sent → delivered (end to end, what a subscriber waits).
    e2e: (f64, f64),
    /// Event time → delivered: the event's time is taken inside the declaring transaction, so
    /// this bounds commit → delivery from above.
    event: (f64, f64),
    duplicates: u64,
}

impl Run {
    fn incidents_per_sec(&self) -> f64 {
        self.incidents as f64 / self.elapsed.as_secs_f64()
    }
    fn deliveries_per_sec(&self) -> f64 {
        self.deliveries as f64 / self.elapsed.as_secs_f64()
    }
}

/// When each incident's declaration was sent.
type Sent = Arc<Mutex<HashMap<Uuid, DateTime<Utc>>>>;

async fn declare(client: &reqwest::Client, base: &str, n: u64, sent: &Sent) -> anyhow::Result<()> {
    let started = Utc::now();
    let res = client
        .post(format!("{base}/v1/incidents"))
        .bearer_auth(TOKEN)
        .json(&json!({"title": format!("bench incident {n}"), "severity": "sev2", "impact": "major"}))
        .send()
        .await?;
    if res.status() != reqwest::StatusCode::CREATED {
        bail!("declaring an incident: {} {}", res.status(), res.text().await.unwrap_or_default());
    }
    let incident: IncidentId = res.json().await?;
    sent.lock().unwrap().insert(incident.id, started);
    Ok(())
}

/// Declares incidents for `duration`, either as fast as `concurrency` clients can (rate 0) or at
/// `rate` per second, then waits until every subscription received every one.
async fn run(
    client: &reqwest::Client,
    base: &str,
    sink: &Arc<Sink>,
    subscriptions: usize,
    duration: Duration,
    concurrency: usize,
    rate: u32,
) -> anyhow::Result<Run> {
    sink.reset();
    let declared = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let failures = Arc::new(AtomicU64::new(0));
    let sent: Sent = Arc::default();
    if rate == 0 {
        let mut workers = Vec::new();
        for _ in 0..concurrency {
            let (client, base, declared, failures, sent) =
                (client.clone(), base.to_string(), declared.clone(), failures.clone(), sent.clone());
            workers.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    let n = declared.fetch_add(1, Ordering::SeqCst);
                    if let Err(e) = declare(&client, &base, n, &sent).await {
                        declared.fetch_sub(1, Ordering::SeqCst);
                        if failures.fetch_add(1, Ordering::SeqCst) == 0 {
                            eprintln!("{e:#}");
                        }
                        return;
                    }
                }
            }));
        }
        for w in workers {
            w.await?;
        }
    } else {
        let in_flight = Arc::new(Semaphore::new(512));
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut tasks = Vec::new();
        while Instant::now() < deadline {
            ticker.tick().await;
            let permit = in_flight.clone().acquire_owned().await?;
            let (client, base, declared, failures, sent) =
                (client.clone(), base.to_string(), declared.clone(), failures.clone(), sent.clone());
            tasks.push(tokio::spawn(async move {
                let n = declared.fetch_add(1, Ordering::SeqCst);
                if let Err(e) = declare(&client, &base, n, &sent).await {
                    declared.fetch_sub(1, Ordering::SeqCst);
                    if failures.fetch_add(1, Ordering::SeqCst) == 0 {
                        eprintln!("{e:#}");
                    }
                }
                drop(permit);
            }));
        }
        for t in tasks {
            t.await?;
        }
    }
    let declare_elapsed = started.elapsed();
    let failed = failures.load(Ordering::SeqCst);
    if failed > 0 {
        bail!("{failed} declarations failed");
    }
    let incidents = declared.load(Ordering::SeqCst);
    let expected = incidents * subscriptions as u64;
    let mut last_progress = (0, Instant::now());
    while sink.received.load(Ordering::SeqCst) < expected {
        let got = sink.received.load(Ordering::SeqCst);
        if got != last_progress.0 {
            last_progress = (got, Instant::now());
        } else if last_progress.1.elapsed() > Duration::from_secs(30) {
            bail!("deliveries stalled at {got} of {expected}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let last = sink.last_arrival.lock().unwrap().unwrap_or_else(Instant::now);
    let arrivals = std::mem::take(&mut *sink.arrivals.lock().unwrap());
    let sent = sent.lock().unwrap();
    let mut e2e: Vec<i64> = arrivals.iter().filter_map(|(id, at, _)| sent.get(id).map(|s| micros(*at - *s))).collect();
    let mut event: Vec<i64> = arrivals.iter().map(|(_, at, time)| micros(*at - *time)).collect();
    e2e.sort_unstable();
    event.sort_unstable();
    Ok(Run {
        incidents,
        deliveries: expected,
        elapsed: last.duration_since(started),
        declare_elapsed,
        e2e: (percentile(&e2e, 50.0), percentile(&e2e, 99.0)),
        event: (percentile(&event, 50.0), percentile(&event, 99.0)),
        duplicates: sink.duplicates.load(Ordering::SeqCst),
    })
}

fn row(kind: &str, subscriptions: usize, r: &Run, rss_mib: f64) -> String {
    format!(
        "| {subscriptions:>4} | {kind:<10} | {:>9} | {:>10.0} | {:>21.0} | {:>12.0} | {:>10.1} | {:>7.1} | {:>13.1} | {:>10.1} | {:>4} | {rss_mib:>12.1} |",
        r.incidents,
        r.incidents as f64 / r.declare_elapsed.as_secs_f64(),
        r.incidents_per_sec(),
        r.deliveries_per_sec(),
        r.e2e.0,
        r.e2e.1,
        r.event.0,
        r.event.1,
        r.duplicates,
    )
}

async fn scenario(
    args: &Args,
    client: &reqwest::Client,
    sink: &Arc<Sink>,
    sink_base: &str,
    index: usize,
) -> anyhow::Result<Vec<String>> {
    let subscriptions = args.subscriptions[index];
    let rate = args.rates.get(index).copied().unwrap_or(0);
    let service = Service::start(&bench_database_url(&args.server.database_url, &subscriptions.to_string())).await?;
    let measured = measure(args, client, sink, sink_base, &service.base, subscriptions, rate).await;
    let rss_mib = service.peak_rss_kib().unwrap_or(0) as f64 / 1024.0;
    service.stop().await?;
    let runs = measured?;
    let rows: Vec<String> = runs.iter().map(|(kind, r)| row(kind, subscriptions, r, rss_mib)).collect();
    for r in &rows {
        eprintln!("{r}");
    }
    Ok(rows)
}

async fn measure(
    args: &Args,
    client: &reqwest::Client,
    sink: &Arc<Sink>,
    sink_base: &str,
    base: &str,
    subscriptions: usize,
    rate: u32,
) -> anyhow::Result<Vec<(String, Run)>> {
    for n in 0..subscriptions {
        let res = client
            .post(format!("{base}/v1/subscriptions"))
            .bearer_auth(TOKEN)
            .json(&json!({"channel": "webhook", "target": format!("{sink_base}/s/{n}"), "event_types": ["incident.created"]}))
            .send()
            .await?;
        if res.status() != reqwest::StatusCode::CREATED {
            bail!("creating a subscription: {} {}", res.status(), res.text().await.unwrap_or_default());
        }
    }
    // Warm-up: connections, caches, the query planner.
    run(client, base, sink, subscriptions, Duration::from_secs(2), args.concurrency.min(8), 0).await?;
    let duration = Duration::from_secs(args.duration);
    let mut runs = Vec::new();
    if rate > 0 {
        eprintln!("{subscriptions} subscription(s): paced run at {rate} incidents/s");
        runs.push((
            format!("{rate}/s"),
            run(client, base, sink, subscriptions, duration, args.concurrency, rate).await?,
        ));
    }
    eprintln!("{subscriptions} subscription(s): saturation run");
    runs.push(("saturation".to_string(), run(client, base, sink, subscriptions, duration, args.concurrency, 0).await?));
    Ok(runs)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder().pool_max_idle_per_host(1024).build()?;
    let (sink, sink_base) = start_sink().await?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut rows = Vec::new();
    for index in 0..args.subscriptions.len() {
        rows.extend(scenario(&args, &client, &sink, &sink_base, index).await?);
    }
    println!(
        "incidentd fan-out bench: {cores} cores, {} s per run, {} clients in saturation runs",
        args.duration, args.concurrency
    );
    println!();
    println!(
        "| subs | run        | incidents | declared/s | fully delivered inc/s | deliveries/s | e2e p50 ms | e2e p99 | commit p50 ms | commit p99 | dups | peak RSS MiB |"
    );
    println!(
        "|-----:|------------|----------:|-----------:|----------------------:|-------------:|-----------:|--------:|--------------:|-----------:|-----:|-------------:|"
    );
    for r in rows {
        println!("{r}");
    }
    println!();
    println!("e2e: request sent → delivery received; commit: the event's time (taken just before the");
    println!("commit, so an upper bound) → delivery received; dups: deliveries received more than once.");
    Ok(())
}
