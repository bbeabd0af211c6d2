//! `bench/mail`: one incident update to 10⁴ confirmed customer subscribers, handed to a local
//! SMTP server.
//!
//! Runs the release `incidentd` binary against a fresh database with `INCIDENTD_SMTP_URL`
//! pointing at an in-process SMTP sink (mailin-embedded, one thread per connection), imports
//! `--subscribers` confirmed subscribers over `POST /v1/subscribers/import`, declares an
//! incident (its mails are sent and counted first), then posts one public update and measures
//! until every subscriber received its mail about it: the mails per second, the time from the
//! update's request to each mail's arrival (p50, p99, last), how many new SMTP sessions carried
//! them (connection reuse), and duplicates (a subscriber receiving the same update twice).
//! Per `--connections` value (`INCIDENTD_SMTP_CONNECTIONS`) and backend. See
//! `bench/README.md`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};

#[path = "../common.rs"]
mod common;
use common::{Service, TOKEN, backend_database_url, percentile};

#[derive(Parser, Debug)]
#[command(about = "incidentd customer mail benchmark")]
struct Args {
    #[command(flatten)]
    server: common::BenchServer,
    /// Confirmed subscribers to import.
    #[arg(long, default_value_t = 10_000)]
    subscribers: usize,
    /// SMTP connections per process (`INCIDENTD_SMTP_CONNECTIONS`), one run each.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    connections: Vec<u32>,
    /// `postgres`, `sqlite`, or both.
    #[arg(long, value_delimiter = ',', default_value = "postgres,sqlite")]
    backends: Vec<String>,
    /// `cargo bench` passes this; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Per subject, each recipient and when its mail arrived.
type Arrivals = HashMap<String, Vec<(String, Instant)>>;

/// What the sink saw: the arrivals, and the sessions.
#[derive(Clone, Default)]
struct Seen {
    mails: Arc<Mutex<Arrivals>>,
    sessions: Arc<AtomicU64>,
}

#[derive(Clone)]
struct Sink {
    seen: Seen,
    to: Vec<String>,
    subject: Option<String>,
    in_headers: bool,
}

impl mailin_embedded::Handler for Sink {
    fn helo(&mut self, _ip: IpAddr, _domain: &str) -> mailin_embedded::Response {
        self.seen.sessions.fetch_add(1, Ordering::Relaxed);
        mailin_embedded::response::OK
    }

    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, to: &[String]) -> mailin_embedded::Response {
        self.to = to.to_vec();
        self.subject = None;
        self.in_headers = true;
        mailin_embedded::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.in_headers {
            let text = String::from_utf8_lossy(buf);
            for line in text.lines() {
                if line.is_empty() {
                    self.in_headers = false;
                    break;
                }
                if let Some(s) = line.strip_prefix("Subject: ") {
                    self.subject = Some(s.trim().to_string());
                }
            }
        }
        Ok(())
    }

    fn data_end(&mut self) -> mailin_embedded::Response {
        let now = Instant::now();
        let subject = self.subject.take().unwrap_or_default();
        let mut mails = self.seen.mails.lock().unwrap();
        let list = mails.entry(subject).or_default();
        for to in self.to.drain(..) {
            list.push((to, now));
        }
        mailin_embedded::response::OK
    }
}

fn start_sink() -> anyhow::Result<(String, Seen)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("smtp://{}", listener.local_addr()?);
    let seen = Seen::default();
    let handler = Sink { seen: seen.clone(), to: Vec::new(), subject: None, in_headers: false };
    std::thread::spawn(move || {
        let mut server = mailin_embedded::Server::new(handler);
        server.with_name("sink.bench").with_num_threads(96).with_tcp_listener(listener);
        let _ = server.serve();
    });
    Ok((url, seen))
}

/// Waits until `count` mails with a subject containing `marker` arrived; returns them.
async fn wait_for(
    seen: &Seen,
    marker: &str,
    count: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<(String, Instant)>> {
    let deadline = Instant::now() + timeout;
    loop {
        let got: Vec<(String, Instant)> = seen
            .mails
            .lock()
            .unwrap()
            .iter()
            .filter(|(subject, _)| subject.contains(marker))
            .flat_map(|(_, list)| list.clone())
            .collect();
        if got.len() >= count {
            return Ok(got);
        }
        if Instant::now() > deadline {
            bail!("only {} of {count} mails about {marker:?} arrived", got.len());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Row {
    backend: String,
    connections: u32,
    import_s: f64,
    declared_s: f64,
    mails_per_s: f64,
    p50: f64,
    p99: f64,
    last: f64,
    sessions: u64,
    dups: usize,
    rss_mib: u64,
}

async fn run(args: &Args, backend: &str, connections: u32) -> anyhow::Result<Row> {
    let (smtp_url, seen) = start_sink()?;
    let url = backend_database_url(backend, &args.server.database_url, &format!("mail_{connections}"))?;
    let conns = connections.to_string();
    let service =
        Service::start_with(&url, &[("INCIDENTD_SMTP_URL", &smtp_url), ("INCIDENTD_SMTP_CONNECTIONS", &conns)]).await?;
    let client = reqwest::Client::new();
    let api = |path: &str| format!("{}{path}", service.base);
    let component: Value = client
        .post(api("/v1/components"))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "API"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let component = component["id"].as_str().context("component id")?.to_string();

    // The subscribers: every component for most, the API for every tenth.
    let mut csv = String::from("email,components\n");
    for i in 0..args.subscribers {
        csv.push_str(&format!("customer{i}@example.com,{}\n", if i % 10 == 0 { component.as_str() } else { "" }));
    }
    let started = Instant::now();
    let report: Value = client
        .post(api("/v1/subscribers/import"))
        .bearer_auth(TOKEN)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let import_s = started.elapsed().as_secs_f64();
    if report["imported"].as_u64() != Some(args.subscribers as u64) {
        bail!("the import took {} of {}: {report}", report["imported"], args.subscribers);
    }
    eprintln!("[{backend}, {connections} connections] imported {} subscribers in {import_s:.1} s", args.subscribers);

    // The declaration: its mails go out first.
    let started = Instant::now();
    let incident: Value = client
        .post(api("/v1/incidents"))
        .bearer_auth(TOKEN)
        .json(&json!({"title": "Checkout errors", "severity": "sev2", "impact": "major",
            "affected_components": [{"component_id": component, "status": "partial_outage"}]}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    wait_for(&seen, "Investigating: Checkout errors", args.subscribers, Duration::from_secs(600)).await?;
    let declared_s = started.elapsed().as_secs_f64();
    eprintln!("[{backend}, {connections} connections] the declaration reached everyone in {declared_s:.1} s");

    // The measured update.
    let sessions_before = seen.sessions.load(Ordering::Relaxed);
    let id = incident["id"].as_str().context("incident id")?;
    let sent = Instant::now();
    client
        .post(api(&format!("/v1/incidents/{id}/updates")))
        .bearer_auth(TOKEN)
        .json(&json!({"body": "We found the cause.", "visibility": "public", "status": "identified"}))
        .send()
        .await?
        .error_for_status()?;
    let got = wait_for(&seen, "Identified: Checkout errors", args.subscribers, Duration::from_secs(600)).await?;
    // A moment for duplicates to show.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got_after = wait_for(&seen, "Identified: Checkout errors", args.subscribers, Duration::from_secs(1)).await?;
    let mut per_recipient: HashMap<&str, usize> = HashMap::new();
    for (to, _) in &got_after {
        *per_recipient.entry(to.as_str()).or_default() += 1;
    }
    let dups = per_recipient.values().filter(|n| **n > 1).count();
    let mut latencies: Vec<i64> = got.iter().map(|(_, at)| at.duration_since(sent).as_micros() as i64).collect();
    latencies.sort_unstable();
    let last = *latencies.last().unwrap_or(&0) as f64 / 1e6;
    let rss_mib = service.peak_rss_kib().unwrap_or(0) / 1024;
    service.stop().await?;
    Ok(Row {
        backend: backend.to_string(),
        connections,
        import_s,
        declared_s,
        mails_per_s: args.subscribers as f64 / last,
        p50: percentile(&latencies, 50.0),
        p99: percentile(&latencies, 99.0),
        last,
        sessions: seen.sessions.load(Ordering::Relaxed) - sessions_before,
        dups: dups + per_recipient.len().abs_diff(args.subscribers),
        rss_mib,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut rows = Vec::new();
    for backend in &args.backends {
        for &c in &args.connections {
            rows.push(run(&args, backend, c).await?);
        }
    }
    println!("incidentd customer mail bench: {cores} cores, {} confirmed subscribers, one update", args.subscribers);
    println!();
    println!(
        "| backend | SMTP connections | import s | declaration to all s | update: mails/s | p50 ms | p99 ms | last s | new SMTP sessions | dups | peak RSS MiB |"
    );
    println!(
        "|---------|-----------------:|---------:|---------------------:|----------------:|-------:|-------:|-------:|------------------:|-----:|-------------:|"
    );
    for r in rows {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0} | {:.1} | {} | {} | {} |",
            r.backend,
            r.connections,
            r.import_s,
            r.declared_s,
            r.mails_per_s,
            r.p50,
            r.p99,
            r.last,
            r.sessions,
            r.dups,
            r.rss_mib
        );
    }
    println!();
    println!("update: from the update's request to each mail's arrival at the sink; new SMTP sessions: connections");
    println!(
        "(EHLO) opened for the update's mails (0: all reused); dups: subscribers who got it more than once, or not at all."
    );
    Ok(())
}
