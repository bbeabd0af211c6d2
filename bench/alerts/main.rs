//! `bench/alerts`: alert storms into the Alertmanager receiver.
//!
//! Per backend (a throwaway Postgres database, then an SQLite file) it starts the release
//! `incidentd`, declares one incident by hand (the reader's target) and then:
//!
//! 1. **baseline**: one client reads `GET /v1/incidents/{id}` back to back for
//!    `--baseline-seconds`, on a thread and runtime of its own;
//! 2. **storm**: `--storm-alerts` (1,000) single-alert deliveries to
//!    `POST /v1/integrations/{id}/alertmanager`, each alert with its own fingerprint, across
//!    `--storm-groups` (50) group keys interleaved (delivery *i* is of group *i* mod 50), paced
//!    evenly over `--storm-seconds` (10) by `--storm-senders` (8) concurrent senders, while the
//!    same reader keeps reading the incident; then it checks that every delivery was answered
//!    200, that exactly one incident per group was opened (and listed by `GET /v1/incidents`),
//!    and that every alert is stored once, on its group's incident (`GET
//!    /v1/integrations/{id}/alerts`, paged);
//! 3. **throughput**: `--deliveries` (5,000) Alertmanager-sized deliveries of
//!    `--alerts-per-delivery` (5) alerts each, across `--groups` (50) groups, as fast as
//!    `--concurrency` (16) senders go (closed model), the reader still reading; the same checks;
//! 4. **open race**: `--race-groups` (20) new groups, each delivered by `--race-senders` (8)
//!    senders at once (as Alertmanager replicas would): each group must open one incident,
//!    and every sender must be told the same one.
//!
//! Each phase uses an integration of its own. Prints Markdown tables on stdout (progress on
//! stderr) and exits non-zero when a check fails. See `bench/README.md`.

#[path = "../common.rs"]
mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};

use common::{Service, TOKEN, backend_database_url, percentile};

#[derive(Parser, Debug)]
#[command(about = "incidentd alert storms: Alertmanager webhooks in, incidents out, the API meanwhile")]
struct Args {
    #[command(flatten)]
    server: common::BenchServer,
    /// Backends to measure.
    #[arg(long, value_delimiter = ',', default_value = "postgres,sqlite")]
    backends: Vec<String>,
    /// Seconds of reads without alerts, for the baseline.
    #[arg(long, default_value_t = 5)]
    baseline_seconds: u64,
    /// Storm: single-alert deliveries.
    #[arg(long, default_value_t = 1000)]
    storm_alerts: usize,
    /// Storm: group keys (one incident each).
    #[arg(long, default_value_t = 50)]
    storm_groups: usize,
    /// Storm: seconds the deliveries are paced over.
    #[arg(long, default_value_t = 10.0)]
    storm_seconds: f64,
    /// Storm: concurrent senders.
    #[arg(long, default_value_t = 8)]
    storm_senders: usize,
    /// Throughput: deliveries (0: skip).
    #[arg(long, default_value_t = 5000)]
    deliveries: usize,
    /// Throughput: alerts per delivery (all of one group, as Alertmanager sends them).
    #[arg(long, default_value_t = 5)]
    alerts_per_delivery: usize,
    /// Throughput: group keys.
    #[arg(long, default_value_t = 50)]
    groups: usize,
    /// Throughput: concurrent senders, back to back.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Open race: new groups, each delivered by `--race-senders` senders at once (0: skip).
    #[arg(long, default_value_t = 20)]
    race_groups: usize,
    /// Open race: concurrent deliveries per group.
    #[arg(long, default_value_t = 8)]
    race_senders: usize,
    /// Before each backend, wait up to this many seconds for the machine to be idle (other
    /// work below 0.3 cores), then measure anyway and report the load seen.
    #[arg(long, default_value_t = 120)]
    quiet_timeout: u64,
    /// `cargo bench` passes this; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

// ---------------------------------------------------------------------------------------------
// Payloads

/// One delivery as Alertmanager would post it: alerts of one group.
struct Delivery {
    group_key: String,
    /// The fingerprints of its alerts.
    fingerprints: Vec<String>,
    body: Vec<u8>,
}

/// A delivery of `fingerprints.len()` firing alerts of group `group` (alert name `G{group}`),
/// the `n`th alert's instance `h{n}`, with the labels, annotations and URLs a Prometheus rule
/// gives them.
fn delivery(phase: &str, group: usize, first: usize, count: usize) -> Delivery {
    let group_key = format!("{{}}/{{severity=\"critical\"}}:{{alertname=\"{phase}-G{group}\"}}");
    let alertname = format!("{phase}-G{group}");
    let mut fingerprints = Vec::with_capacity(count);
    let alerts: Vec<Value> = (first..first + count)
        .map(|n| {
            let fingerprint = format!("{phase}-{n:012x}");
            fingerprints.push(fingerprint.clone());
            json!({
                "status": "firing",
                "labels": {
                    "alertname": alertname,
                    "instance": format!("h{n}:9100"),
                    "job": "node",
                    "severity": "critical",
                    "team": "payments",
                    "region": "eu-west-1",
                },
                "annotations": {
                    "summary": format!("High error rate on h{n}"),
                    "description": format!("5xx ratio on h{n} is 12.4 % (threshold 5 %) for the last 5 minutes."),
                    "runbook_url": "https://runbooks.example.com/payments/high-error-rate",
                },
                "startsAt": "2026-11-30T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": format!(
                    "http://prometheus.example.com:9090/graph?g0.expr=sum+by+%28instance%29+%28rate%28http_requests_total%7Bcode%3D~%225..%22%2Cinstance%3D%22h{n}%22%7D%5B5m%5D%29%29&g0.tab=1"
                ),
                "fingerprint": fingerprint,
            })
        })
        .collect();
    let body = json!({
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "incidentd",
        "groupLabels": {"alertname": alertname},
        "commonLabels": {"alertname": alertname, "job": "node", "severity": "critical", "team": "payments", "region": "eu-west-1"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example.com:9093",
        "alerts": alerts,
    });
    Delivery { group_key, fingerprints, body: serde_json::to_vec(&body).expect("JSON") }
}

// ---------------------------------------------------------------------------------------------
// Sending

/// What one delivery was answered.
struct Sent {
    status: u16,
    /// Request to response, µs.
    micros: i64,
    /// How late it was sent after it was due (storm), µs.
    lag_micros: i64,
    /// `groups[]` of the answer: dedup key, incident id, opened.
    groups: Vec<(String, Option<String>, bool)>,
    /// The body of an answer other than 200, or the error.
    error: Option<String>,
}

struct Receiver {
    url: String,
    secret: String,
    integration: String,
}

async fn create_integration(client: &reqwest::Client, base: &str, name: &str) -> anyhow::Result<Receiver> {
    let created: Value = client
        .post(format!("{base}/v1/integrations"))
        .bearer_auth(TOKEN)
        .json(&json!({"name": name, "kind": "alertmanager"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = created["id"].as_str().context("integration id")?.to_string();
    Ok(Receiver {
        url: format!("{base}/v1/integrations/{id}/alertmanager"),
        secret: created["secret"].as_str().context("integration secret")?.to_string(),
        integration: id,
    })
}

async fn deliver(client: &reqwest::Client, receiver: &Receiver, body: Vec<u8>) -> Sent {
    let started = Instant::now();
    let result = client
        .post(&receiver.url)
        .bearer_auth(&receiver.secret)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    let response = match result {
        Ok(r) => r,
        Err(e) => {
            return Sent {
                status: 0,
                micros: started.elapsed().as_micros() as i64,
                lag_micros: 0,
                groups: Vec::new(),
                error: Some(e.to_string()),
            };
        }
    };
    let status = response.status().as_u16();
    let bytes = response.bytes().await;
    let micros = started.elapsed().as_micros() as i64;
    let mut sent = Sent { status, micros, lag_micros: 0, groups: Vec::new(), error: None };
    match bytes {
        Err(e) => sent.error = Some(format!("reading the answer: {e}")),
        Ok(b) if status != 200 => sent.error = Some(String::from_utf8_lossy(&b).into_owned()),
        Ok(b) => match serde_json::from_slice::<Value>(&b) {
            Err(e) => sent.error = Some(format!("answer is not JSON: {e}")),
            Ok(v) => {
                sent.groups = v["groups"]
                    .as_array()
                    .map(|groups| {
                        groups
                            .iter()
                            .map(|g| {
                                (
                                    g["dedup_key"].as_str().unwrap_or_default().to_string(),
                                    g["incident_id"].as_str().map(str::to_string),
                                    g["opened"].as_bool().unwrap_or(false),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
            }
        },
    }
    sent
}

// ---------------------------------------------------------------------------------------------
// The reader

#[derive(Default)]
struct Reads {
    /// Latencies of 200 answers, µs, sorted.
    micros: Vec<i64>,
    /// Answers other than 200 and errors.
    failed: usize,
    first_failure: Option<String>,
    seconds: f64,
}

impl Reads {
    fn p(&self, p: f64) -> f64 {
        percentile(&self.micros, p)
    }
    fn max(&self) -> f64 {
        self.micros.last().map_or(f64::NAN, |m| *m as f64 / 1000.0)
    }
}

/// A client reading `url` back to back until stopped, on a thread and runtime of its own (so
/// that the senders' tasks do not delay its timing).
struct Reader {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<anyhow::Result<Reads>>,
}

impl Reader {
    fn start(url: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || -> anyhow::Result<Reads> {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async move {
                let client = reqwest::Client::new();
                let mut reads = Reads::default();
                let started = Instant::now();
                while !flag.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    match client.get(&url).bearer_auth(TOKEN).send().await {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let body = r.bytes().await;
                            let micros = t.elapsed().as_micros() as i64;
                            if status == 200 && body.is_ok() {
                                reads.micros.push(micros);
                            } else {
                                reads.failed += 1;
                                reads.first_failure.get_or_insert_with(|| {
                                    format!(
                                        "{status}: {}",
                                        body.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
                                    )
                                });
                            }
                        }
                        Err(e) => {
                            reads.failed += 1;
                            reads.first_failure.get_or_insert_with(|| e.to_string());
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
                reads.seconds = started.elapsed().as_secs_f64();
                reads.micros.sort_unstable();
                Ok(reads)
            })
        });
        Reader { stop, thread }
    }

    async fn finish(self) -> anyhow::Result<Reads> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join()).await?.map_err(|_| anyhow::anyhow!("the reader panicked"))?
    }
}

// ---------------------------------------------------------------------------------------------
// Checks

/// Every item of a paged list (`page_size=500`, following `next_page_token`).
async fn list_all(client: &reqwest::Client, base: &str, path: &str, field: &str) -> anyhow::Result<Vec<Value>> {
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut url = url::Url::parse(&format!("{base}{path}"))?;
        url.query_pairs_mut().append_pair("page_size", "500");
        if let Some(t) = &token {
            url.query_pairs_mut().append_pair("page_token", t);
        }
        let page: Value = client.get(url).bearer_auth(TOKEN).send().await?.error_for_status()?.json().await?;
        items.extend(page[field].as_array().with_context(|| format!("{path}: no {field}"))?.iter().cloned());
        match page["next_page_token"].as_str() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => return Ok(items),
        }
    }
}

async fn incident_ids(client: &reqwest::Client, base: &str) -> anyhow::Result<HashSet<String>> {
    let incidents = list_all(client, base, "/v1/incidents", "incidents").await?;
    Ok(incidents.iter().filter_map(|i| i["id"].as_str().map(str::to_string)).collect())
}

/// What a phase's checks found.
#[derive(Default)]
struct Verdict {
    deliveries: usize,
    ok: usize,
    /// Answers other than 200, by status (0: no answer).
    statuses: BTreeMap<u16, usize>,
    /// Groups whose delivery said `opened`.
    opened: usize,
    /// Incidents new in `GET /v1/incidents` since the phase began.
    new_incidents: usize,
    alerts_sent: usize,
    alerts_stored: usize,
    problems: Vec<String>,
}

impl Verdict {
    fn non_200(&self) -> String {
        if self.statuses.is_empty() {
            return "0".into();
        }
        let n: usize = self.statuses.values().sum();
        let each: Vec<String> = self.statuses.iter().map(|(s, n)| format!("{s}×{n}")).collect();
        format!("{n} ({})", each.join(" "))
    }
    fn checks(&self) -> &'static str {
        if self.problems.is_empty() { "pass" } else { "**FAIL**" }
    }
}

/// Checks a phase: every delivery answered 200 naming its group's one incident; one
/// incident opened per group, each listed; every alert stored once, on its group's incident.
async fn verify(
    client: &reqwest::Client,
    base: &str,
    receiver: &Receiver,
    deliveries: &[Delivery],
    sent: &[Sent],
    incidents_before: &HashSet<String>,
) -> anyhow::Result<Verdict> {
    let mut v = Verdict { deliveries: sent.len(), ..Default::default() };
    let mut first_error = None;
    let mut per_group: HashMap<&str, (HashSet<String>, usize)> = HashMap::new();
    for (d, s) in deliveries.iter().zip(sent) {
        if s.status == 200 {
            v.ok += 1;
        } else {
            *v.statuses.entry(s.status).or_default() += 1;
            first_error.get_or_insert_with(|| format!("{}: {}", s.status, s.error.clone().unwrap_or_default()));
            continue;
        }
        let entry = per_group.entry(d.group_key.as_str()).or_default();
        match s.groups.as_slice() {
            [(key, incident, opened)] if key == &d.group_key => {
                if let Some(i) = incident {
                    entry.0.insert(i.clone());
                }
                entry.1 += usize::from(*opened);
                v.opened += usize::from(*opened);
            }
            other => v.problems.push(format!("a delivery of {} was answered with groups {other:?}", d.group_key)),
        }
    }
    let groups: HashSet<&str> = deliveries.iter().map(|d| d.group_key.as_str()).collect();
    if let Some(e) = first_error {
        v.problems.push(format!("{} deliveries not answered 200; the first: {e}", v.deliveries - v.ok));
    }
    if v.opened != groups.len() {
        v.problems.push(format!("{} deliveries said they opened an incident, for {} groups", v.opened, groups.len()));
    }
    let mut group_incident: HashMap<&str, String> = HashMap::new();
    for (key, (incidents, opened)) in &per_group {
        if incidents.len() != 1 || *opened != 1 {
            v.problems.push(format!("group {key}: answers named incidents {incidents:?}, {opened} said opened"));
        }
        if let Some(i) = incidents.iter().next() {
            group_incident.insert(*key, i.clone());
        }
    }
    let answered: HashSet<&String> = group_incident.values().collect();
    let after = incident_ids(client, base).await?;
    let new: HashSet<&String> = after.difference(incidents_before).collect();
    v.new_incidents = new.len();
    if new.len() != groups.len() {
        v.problems.push(format!("{} incidents are new in GET /v1/incidents, for {} groups", new.len(), groups.len()));
    }
    if new != answered {
        v.problems.push(format!(
            "the new incidents listed ({}) are not the {} the answers named",
            new.len(),
            answered.len()
        ));
    }
    // Every alert stored once, under its group's key, on its group's incident.
    let expected: HashMap<&str, &str> =
        deliveries.iter().flat_map(|d| d.fingerprints.iter().map(|f| (f.as_str(), d.group_key.as_str()))).collect();
    v.alerts_sent = deliveries.iter().map(|d| d.fingerprints.len()).sum();
    let path = format!("/v1/integrations/{}/alerts", receiver.integration);
    let alerts = list_all(client, base, &path, "alerts").await?;
    v.alerts_stored = alerts.len();
    let mut seen: HashSet<&str> = HashSet::new();
    let (mut duplicates, mut unknown, mut misplaced) = (0, 0, 0);
    for a in &alerts {
        let fingerprint = a["fingerprint"].as_str().unwrap_or_default();
        if !seen.insert(fingerprint) {
            duplicates += 1;
        }
        let Some(key) = expected.get(fingerprint) else {
            unknown += 1;
            continue;
        };
        let incident = a["incident_id"].as_str();
        if a["dedup_key"].as_str() != Some(*key)
            || incident.is_none()
            || incident != group_incident.get(key).map(|s| s.as_str())
        {
            misplaced += 1;
        }
    }
    let missing = expected.keys().filter(|f| !seen.contains(*f)).count();
    if alerts.len() != v.alerts_sent || duplicates + unknown + missing + misplaced > 0 {
        v.problems.push(format!(
            "{} alerts stored for {} sent: {missing} missing, {duplicates} duplicates, {unknown} unknown, \
             {misplaced} not on their group's incident",
            alerts.len(),
            v.alerts_sent
        ));
    }
    Ok(v)
}

// ---------------------------------------------------------------------------------------------
// CPU accounting

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: Option<u32>) -> u64 {
    let Some(pid) = pid else { return 0 };
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0 };
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

/// Busy and total clock ticks of the whole machine.
fn machine_ticks() -> (u64, u64) {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else { return (0, 0) };
    let Some(cpu) = stat.lines().next() else { return (0, 0) };
    let v: Vec<u64> = cpu.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
}

/// Cores busy between two `machine_ticks` samples.
fn busy_cores(before: (u64, u64), after: (u64, u64)) -> f64 {
    let total = after.1.saturating_sub(before.1).max(1);
    after.0.saturating_sub(before.0) as f64 / total as f64 * cores()
}

/// Waits (up to `timeout` seconds) until the machine's busy cores, sampled over a second,
/// fall below 0.3; returns the last sample.
async fn wait_for_quiet(timeout: u64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let mut said = false;
    loop {
        let before = machine_ticks();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let busy = busy_cores(before, machine_ticks());
        if busy < 0.3 || Instant::now() >= deadline {
            if busy >= 0.3 {
                eprintln!("  measuring anyway: {busy:.2} cores busy elsewhere");
            }
            return busy;
        }
        if !said {
            eprintln!("  waiting for the machine to be idle ({busy:.2} cores busy elsewhere)");
            said = true;
        }
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The phases

struct Storm {
    verdict: Verdict,
    baseline: Reads,
    reads: Reads,
    /// From the first delivery due to the last answer, s.
    seconds: f64,
    post_micros: Vec<i64>,
    max_lag_ms: f64,
}

struct Throughput {
    verdict: Verdict,
    reads: Reads,
    seconds: f64,
    post_micros: Vec<i64>,
    service_cores: f64,
    machine_cores: f64,
}

struct Race {
    verdict: Verdict,
    seconds: f64,
}

struct BackendRun {
    backend: String,
    idle_before: f64,
    storm: Storm,
    throughput: Option<Throughput>,
    race: Option<Race>,
    /// The service's peak RSS (`VmHWM`) after each step, then its RSS once idle, MiB.
    rss: Vec<(&'static str, f64)>,
}

fn peak_rss_mib(service: &Service) -> f64 {
    service.peak_rss_kib().unwrap_or(0) as f64 / 1024.0
}

async fn storm(
    args: &Args,
    client: &reqwest::Client,
    service: &Service,
    read_url: &str,
    rss: &mut Vec<(&'static str, f64)>,
) -> anyhow::Result<Storm> {
    let base = &service.base;
    eprintln!("  baseline: reading one incident for {} s", args.baseline_seconds);
    let reader = Reader::start(read_url.to_string());
    tokio::time::sleep(Duration::from_secs(args.baseline_seconds)).await;
    let baseline = reader.finish().await?;
    eprintln!(
        "  baseline: {} reads, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        baseline.micros.len(),
        baseline.p(50.0),
        baseline.p(99.0),
        baseline.max()
    );

    let receiver = Arc::new(create_integration(client, base, "storm").await?);
    let deliveries: Arc<Vec<Delivery>> =
        Arc::new((0..args.storm_alerts).map(|i| delivery("storm", i % args.storm_groups, i, 1)).collect());
    let before = incident_ids(client, base).await?;
    eprintln!(
        "  storm: {} single-alert deliveries across {} groups over {} s, {} senders",
        args.storm_alerts, args.storm_groups, args.storm_seconds, args.storm_senders
    );
    let reader = Reader::start(read_url.to_string());
    let interval = Duration::from_secs_f64(args.storm_seconds / args.storm_alerts.max(1) as f64);
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let next = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for _ in 0..args.storm_senders {
        let (client, receiver, deliveries, next) = (client.clone(), receiver.clone(), deliveries.clone(), next.clone());
        senders.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(d) = deliveries.get(i) else { return out };
                let due = start + interval * i as u32;
                tokio::time::sleep_until(due).await;
                let lag = due.elapsed().as_micros() as i64;
                let mut sent = deliver(&client, &receiver, d.body.clone()).await;
                sent.lag_micros = lag;
                out.push((i, sent));
            }
        }));
    }
    let mut sent: Vec<(usize, Sent)> = Vec::new();
    for s in senders {
        sent.extend(s.await?);
    }
    let seconds = start.elapsed().as_secs_f64();
    let reads = reader.finish().await?;
    sent.sort_by_key(|(i, _)| *i);
    let sent: Vec<Sent> = sent.into_iter().map(|(_, s)| s).collect();
    let mut post_micros: Vec<i64> = sent.iter().map(|s| s.micros).collect();
    post_micros.sort_unstable();
    let max_lag_ms = sent.iter().map(|s| s.lag_micros).max().unwrap_or(0) as f64 / 1000.0;
    eprintln!(
        "  storm: done in {seconds:.2} s (latest send {max_lag_ms:.1} ms after due); POST p50 {:.2} ms, p99 {:.2} ms; \
         {} reads meanwhile, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} failed",
        percentile(&post_micros, 50.0),
        percentile(&post_micros, 99.0),
        reads.micros.len(),
        reads.p(50.0),
        reads.p(99.0),
        reads.max(),
        reads.failed
    );
    rss.push(("storm sent", peak_rss_mib(service)));
    let mut verdict = verify(client, base, &receiver, &deliveries, &sent, &before).await?;
    rss.push(("storm checked", peak_rss_mib(service)));
    if reads.failed > 0 || baseline.failed > 0 {
        verdict.problems.push(format!(
            "{} reads failed during the storm, {} in the baseline; the first: {}",
            reads.failed,
            baseline.failed,
            reads.first_failure.clone().or(baseline.first_failure.clone()).unwrap_or_default()
        ));
    }
    Ok(Storm { verdict, baseline, reads, seconds, post_micros, max_lag_ms })
}

async fn throughput(
    args: &Args,
    client: &reqwest::Client,
    service: &Service,
    read_url: &str,
    rss: &mut Vec<(&'static str, f64)>,
) -> anyhow::Result<Throughput> {
    let base = &service.base;
    let receiver = Arc::new(create_integration(client, base, "throughput").await?);
    let deliveries: Arc<Vec<Delivery>> = Arc::new(
        (0..args.deliveries)
            .map(|j| delivery("load", j % args.groups, j * args.alerts_per_delivery, args.alerts_per_delivery))
            .collect(),
    );
    let before = incident_ids(client, base).await?;
    eprintln!(
        "  throughput: {} deliveries of {} alerts ({} bytes each) across {} groups, {} senders",
        args.deliveries,
        args.alerts_per_delivery,
        deliveries.first().map_or(0, |d| d.body.len()),
        args.groups,
        args.concurrency
    );
    let reader = Reader::start(read_url.to_string());
    let (service_before, machine_before) = (cpu_ticks(service.pid()), machine_ticks());
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for _ in 0..args.concurrency {
        let (client, receiver, deliveries, next) = (client.clone(), receiver.clone(), deliveries.clone(), next.clone());
        senders.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(d) = deliveries.get(i) else { return out };
                out.push((i, deliver(&client, &receiver, d.body.clone()).await));
            }
        }));
    }
    let mut sent: Vec<(usize, Sent)> = Vec::new();
    for s in senders {
        sent.extend(s.await?);
    }
    let seconds = started.elapsed().as_secs_f64();
    let (service_after, machine_after) = (cpu_ticks(service.pid()), machine_ticks());
    let reads = reader.finish().await?;
    sent.sort_by_key(|(i, _)| *i);
    let sent: Vec<Sent> = sent.into_iter().map(|(_, s)| s).collect();
    let mut post_micros: Vec<i64> = sent.iter().map(|s| s.micros).collect();
    post_micros.sort_unstable();
    let service_cores = service_after.saturating_sub(service_before) as f64 / clock_ticks() / seconds;
    let machine_cores = busy_cores(machine_before, machine_after);
    eprintln!(
        "  throughput: {seconds:.2} s, {:.0} deliveries/s, {:.0} alerts/s; POST p50 {:.2} ms, p99 {:.2} ms; \
         reads p99 {:.2} ms; CPU: service {service_cores:.2}, machine {machine_cores:.2} cores",
        args.deliveries as f64 / seconds,
        (args.deliveries * args.alerts_per_delivery) as f64 / seconds,
        percentile(&post_micros, 50.0),
        percentile(&post_micros, 99.0),
        reads.p(99.0)
    );
    rss.push(("throughput sent", peak_rss_mib(service)));
    let mut verdict = verify(client, base, &receiver, &deliveries, &sent, &before).await?;
    rss.push(("throughput checked", peak_rss_mib(service)));
    if reads.failed > 0 {
        verdict.problems.push(format!(
            "{} reads failed during the throughput run; the first: {}",
            reads.failed,
            reads.first_failure.clone().unwrap_or_default()
        ));
    }
    Ok(Throughput { verdict, reads, seconds, post_micros, service_cores, machine_cores })
}

async fn race(args: &Args, client: &reqwest::Client, service: &Service) -> anyhow::Result<Race> {
    let base = &service.base;
    let receiver = Arc::new(create_integration(client, base, "race").await?);
    // Sender s of group g sends alert g * senders + s.
    let deliveries: Vec<Delivery> = (0..args.race_groups)
        .flat_map(|g| (0..args.race_senders).map(move |s| (g, s)))
        .map(|(g, s)| delivery("race", g, g * args.race_senders + s, 1))
        .collect();
    let before = incident_ids(client, base).await?;
    eprintln!("  open race: {} new groups, each delivered by {} senders at once", args.race_groups, args.race_senders);
    let started = Instant::now();
    let sent: Vec<Sent> =
        futures::future::join_all(deliveries.iter().map(|d| deliver(client, &receiver, d.body.clone()))).await;
    let seconds = started.elapsed().as_secs_f64();
    let verdict = verify(client, base, &receiver, &deliveries, &sent, &before).await?;
    Ok(Race { verdict, seconds })
}

async fn run_backend(args: &Args, backend: &str, idle_before: f64) -> anyhow::Result<BackendRun> {
    let url = backend_database_url(backend, &args.server.database_url, "alerts")?;
    let service = Service::start(&url).await?;
    let result = async {
        let client = reqwest::Client::new();
        let incident: Value = client
            .post(format!("{}/v1/incidents", service.base))
            .bearer_auth(TOKEN)
            .json(&json!({"title": "Checkout errors", "severity": "sev2"}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let read_url = format!("{}/v1/incidents/{}", service.base, incident["id"].as_str().context("incident id")?);
        let mut rss = vec![("started", peak_rss_mib(&service))];
        let storm = storm(args, &client, &service, &read_url, &mut rss).await?;
        let throughput = match args.deliveries {
            0 => None,
            _ => Some(throughput(args, &client, &service, &read_url, &mut rss).await?),
        };
        let race = match args.race_groups {
            0 => None,
            _ => Some(race(args, &client, &service).await?),
        };
        rss.push(("end", peak_rss_mib(&service)));
        // Whether the memory is given back once the load is over.
        tokio::time::sleep(Duration::from_secs(5)).await;
        rss.push(("VmRSS 5 s after the load", service.memory_kib("VmRSS").unwrap_or(0) as f64 / 1024.0));
        anyhow::Ok(BackendRun { backend: backend.to_string(), idle_before, storm, throughput, race, rss })
    }
    .await;
    service.stop().await?;
    result
}

// ---------------------------------------------------------------------------------------------
// Report

fn ms(micros: &[i64], p: f64) -> String {
    format!("{:.2}", percentile(micros, p))
}

fn print_report(args: &Args, runs: &[BackendRun]) {
    println!(
        "incidentd alert bench: {} cores; storm: {} single-alert deliveries across {} groups paced over {} s by {} \
         senders, one client reading GET /v1/incidents/{{id}} back to back; throughput: {} deliveries of {} alerts \
         across {} groups, {} senders",
        cores(),
        args.storm_alerts,
        args.storm_groups,
        args.storm_seconds,
        args.storm_senders,
        args.deliveries,
        args.alerts_per_delivery,
        args.groups,
        args.concurrency
    );
    println!();
    println!("Storm:");
    println!();
    println!(
        "| backend | deliveries | non-200 | incidents opened | alerts stored | s | latest send ms | POST p50 ms | POST p99 ms | reads | GET p50 ms | GET p99 ms | GET max ms | baseline p50 ms | baseline p99 ms | checks |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in runs {
        let s = &r.storm;
        println!(
            "| {} | {} | {} | {} | {} / {} | {:.2} | {:.1} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
            r.backend,
            s.verdict.deliveries,
            s.verdict.non_200(),
            s.verdict.new_incidents,
            s.verdict.alerts_stored,
            s.verdict.alerts_sent,
            s.seconds,
            s.max_lag_ms,
            ms(&s.post_micros, 50.0),
            ms(&s.post_micros, 99.0),
            s.reads.micros.len(),
            s.reads.p(50.0),
            s.reads.p(99.0),
            s.reads.max(),
            s.baseline.p(50.0),
            s.baseline.p(99.0),
            s.verdict.checks()
        );
    }
    if runs.iter().any(|r| r.throughput.is_some()) {
        println!();
        println!("Throughput:");
        println!();
        println!(
            "| backend | deliveries | alerts | s | deliveries/s | alerts/s | POST p50 ms | POST p99 ms | POST max ms | non-200 | incidents opened | alerts stored | GET p99 ms meanwhile | service CPU ms/delivery | service cores | machine cores | checks |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        for r in runs {
            let Some(t) = &r.throughput else { continue };
            let n = t.verdict.deliveries as f64;
            println!(
                "| {} | {} | {} | {:.2} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
                r.backend,
                t.verdict.deliveries,
                t.verdict.alerts_sent,
                t.seconds,
                n / t.seconds,
                t.verdict.alerts_sent as f64 / t.seconds,
                ms(&t.post_micros, 50.0),
                ms(&t.post_micros, 99.0),
                ms(&t.post_micros, 100.0),
                t.verdict.non_200(),
                t.verdict.new_incidents,
                t.verdict.alerts_stored,
                t.reads.p(99.0),
                t.service_cores * t.seconds * 1000.0 / n,
                t.service_cores,
                t.machine_cores,
                t.verdict.checks()
            );
        }
    }
    if runs.iter().any(|r| r.race.is_some()) {
        println!();
        println!("Open race:");
        println!();
        println!(
            "| backend | groups | senders per group | s | non-200 | opened | incidents new | alerts stored | checks |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---|");
        for r in runs {
            let Some(x) = &r.race else { continue };
            println!(
                "| {} | {} | {} | {:.2} | {} | {} | {} | {} / {} | {} |",
                r.backend,
                args.race_groups,
                args.race_senders,
                x.seconds,
                x.verdict.non_200(),
                x.verdict.opened,
                x.verdict.new_incidents,
                x.verdict.alerts_stored,
                x.verdict.alerts_sent,
                x.verdict.checks()
            );
        }
    }
    println!();
    for r in runs {
        let rss: Vec<String> = r.rss.iter().map(|(step, mib)| format!("{step} {mib:.1}")).collect();
        println!(
            "{}: {:.2} cores busy elsewhere before; baseline {} reads in {:.1} s; service memory, MiB (peak RSS, VmHWM, \
             after each step; then VmRSS): {}.",
            r.backend,
            r.idle_before,
            r.storm.baseline.micros.len(),
            r.storm.baseline.seconds,
            rss.join(", ")
        );
    }
    let problems: Vec<String> = runs
        .iter()
        .flat_map(|r| {
            let phases = [
                ("storm", Some(&r.storm.verdict)),
                ("throughput", r.throughput.as_ref().map(|t| &t.verdict)),
                ("open race", r.race.as_ref().map(|x| &x.verdict)),
            ];
            phases.into_iter().flat_map(move |(phase, v)| {
                v.into_iter().flat_map(move |v| v.problems.iter().map(move |p| format!("- {} {phase}: {p}", r.backend)))
            })
        })
        .collect();
    if !problems.is_empty() {
        println!();
        println!("Failed checks:");
        for p in &problems {
            println!("{p}");
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    if [
        args.storm_groups,
        args.storm_senders,
        args.groups,
        args.alerts_per_delivery,
        args.concurrency,
        args.race_senders,
    ]
    .contains(&0)
    {
        bail!(
            "--storm-groups, --storm-senders, --groups, --alerts-per-delivery, --concurrency and --race-senders must be at least 1"
        );
    }
    let mut runs = Vec::new();
    for backend in &args.backends {
        eprintln!("[{backend}]");
        let idle_before = wait_for_quiet(args.quiet_timeout).await;
        runs.push(run_backend(&args, backend, idle_before).await?);
    }
    print_report(&args, &runs);
    let failed = runs.iter().any(|r| {
        !r.storm.verdict.problems.is_empty()
            || r.throughput.as_ref().is_some_and(|t| !t.verdict.problems.is_empty())
            || r.race.as_ref().is_some_and(|x| !x.verdict.problems.is_empty())
    });
    if failed {
        bail!("alert bench: checks failed (see above)");
    }
    Ok(())
}
