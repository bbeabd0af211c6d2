//! Running in production: Prometheus metrics (scraped, and checked with promtool), roles that
//! scale separately, migrations from replicas starting together, and a graceful stop on
//! SIGTERM under load that fails no request and strands no delivery.

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use incidentd::config::Role;
use incidentd::proto;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

use crate::helpers::{Db, TestApp, drop_database, fresh_database_url, path_to, serve_binary, sigterm};
use crate::receivers::{Receiver, Reply};

/// The value of the sample named exactly `series` (name and labels as exposed), if present.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Runs `promtool check metrics` on an exposition; panics with its findings if it fails.
async fn promtool_check(body: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is on the PATH (Debian: apt-get install prometheus; ./scripts/test installs it)");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(body.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition ---\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn scrape(url: &str) -> (String, String) {
    let res = reqwest::get(url).await.unwrap();
    assert_eq!(res.status(), 200);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_string();
    (content_type, res.text().await.unwrap())
}

/// Scrapes until `ready` holds for the exposition (the dispatcher records outcomes in
/// batches, a moment after the receiver answered).
async fn scrape_until(url: &str, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, body) = scrape(url).await;
        if ready(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "metrics never got there:\n{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn metrics_count_requests_incidents_and_deliveries_and_pass_promtool() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let sub = app
        .post(
            "/v1/subscriptions",
            json!({"channel": "webhook", "target": receiver.url, "event_types": ["incident.created"]}),
        )
        .await;
    assert_eq!(sub.status, 201, "{}", sub.body);
    app.create_incident(json!({"title": "Checkout down", "severity": "sev1"})).await;
    let fixed = app.incident("Search slow").await;
    let id = fixed["id"].as_str().unwrap();
    let ack = app.post(&format!("/v1/incidents/{id}/acknowledge"), json!({})).await;
    assert_eq!(ack.status, 200, "{}", ack.body);
    for to in path_to("resolved") {
        app.transition(id, to).await;
    }
    let mut grpc = app.incidents_grpc().await;
    grpc.get_incident(proto::GetIncidentRequest { id: "INC-1".into() }).await.unwrap();
    let missing = grpc.get_incident(proto::GetIncidentRequest { id: "INC-999".into() }).await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    receiver.wait_for(2).await;

    let url = app.url("/metrics");
    let (content_type, _) = scrape(&url).await;
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let delivered = r#"incidentd_delivery_attempts_total{channel="webhook",outcome="delivered"}"#;
    // Background loops (the maintenance schedule, the sequencer) hold a connection for a moment
    // now and then: scrape until one finds the pool idle, as a quiet service is.
    let idle = r#"incidentd_db_pool_connections{state="idle"}"#;
    let body =
        scrape_until(&url, |b| sample(b, delivered) == Some(2.0) && sample(b, idle).is_some_and(|n| n >= 1.0)).await;
    let value = |series: &str| sample(&body, series).unwrap_or_else(|| panic!("no sample {series} in:\n{body}"));

    assert_eq!(value(r#"incidentd_http_requests_total{method="POST",route="/v1/incidents",status="201"}"#), 2.0);
    assert_eq!(value(r#"incidentd_http_requests_total{method="POST",route="/v1/subscriptions",status="201"}"#), 1.0);
    assert_eq!(
        value(r#"incidentd_http_request_duration_seconds_count{method="POST",route="/v1/incidents",status="201"}"#),
        2.0
    );
    // Route templates, never paths: one series whatever the incident.
    assert!(!body.contains(id), "a path with an id became a label");
    assert_eq!(
        value(r#"incidentd_grpc_requests_total{code="Ok",method="/incidentd.v1.IncidentService/GetIncident"}"#),
        1.0
    );
    assert_eq!(
        value(r#"incidentd_grpc_requests_total{code="NotFound",method="/incidentd.v1.IncidentService/GetIncident"}"#),
        1.0
    );
    // Open incidents by severity and status: the sev1 is open, the sev2 was resolved.
    assert_eq!(value(r#"incidentd_incidents_open{severity="sev1",status="investigating"}"#), 1.0);
    assert_eq!(value(r#"incidentd_incidents_open{severity="sev2",status="investigating"}"#), 0.0);
    // MTTA and MTTR.
    assert_eq!(value("incidentd_incident_time_to_acknowledge_seconds_count"), 1.0);
    assert_eq!(value("incidentd_incident_time_to_resolve_seconds_count"), 1.0);
    // Deliveries and the outbox.
    assert_eq!(value(r#"incidentd_delivery_attempt_duration_seconds_count{channel="webhook"}"#), 2.0);
    assert_eq!(value(r#"incidentd_deliveries_pending{subscription="active"}"#), 0.0);
    assert_eq!(value("incidentd_deliveries_oldest_pending_age_seconds"), 0.0);
    // The pool.
    assert!(value("incidentd_db_pool_max_connections") >= 8.0);
    assert!(value(r#"incidentd_db_pool_connections{state="idle"}"#) >= 1.0);
    assert!(value(r#"incidentd_db_pool_connections{state="waiting"}"#) >= 0.0);
    assert_eq!(value("incidentd_database_up"), 1.0);
    promtool_check(&body).await;

    // A paused subscription's backlog is counted apart, and does not age the outbox.
    let sub_id = sub.body["id"].as_str().unwrap();
    assert_eq!(app.post(&format!("/v1/subscriptions/{sub_id}/pause"), json!({})).await.status, 200);
    app.incident("While paused").await;
    let body =
        scrape_until(&url, |b| sample(b, r#"incidentd_deliveries_pending{subscription="paused"}"#) == Some(1.0)).await;
    assert_eq!(sample(&body, r#"incidentd_deliveries_pending{subscription="active"}"#), Some(0.0));
    assert_eq!(sample(&body, "incidentd_deliveries_oldest_pending_age_seconds"), Some(0.0));
    promtool_check(&body).await;
}

#[tokio::test]
async fn metrics_can_have_a_port_of_their_own() {
    let app = TestApp::spawn_with(|c| c.metrics_addr = Some("127.0.0.1:0".parse().unwrap())).await;
    app.incident("Counted").await;
    let metrics = app.metrics.expect("a metrics port");
    let (_, body) = scrape(&format!("http://{metrics}/metrics")).await;
    assert_eq!(
        sample(&body, r#"incidentd_http_requests_total{method="POST",route="/v1/incidents",status="201"}"#),
        Some(1.0)
    );
    promtool_check(&body).await;
    // Not on the API port any more.
    app.get("/metrics").await.problem(404);
}

/// An API-only process and a worker-only process on one database: the API takes requests and
/// sends nothing; the worker serves no API and delivers what the API's requests produced.
#[tokio::test]
async fn api_and_worker_roles_run_apart() {
    let api = TestApp::spawn_with(|c| c.roles = vec![Role::Api]).await;
    let receiver = Receiver::start().await;
    let sub = api
        .post(
            "/v1/subscriptions",
            json!({"channel": "webhook", "target": receiver.url, "event_types": ["incident.created"]}),
        )
        .await;
    assert_eq!(sub.status, 201, "{}", sub.body);
    let incident = api.incident("Queued for the workers").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(receiver.received().is_empty(), "an API-only process sent a delivery");
    let deliveries = api.get(&format!("/v1/subscriptions/{}/deliveries", sub.body["id"].as_str().unwrap())).await;
    assert_eq!(deliveries.body["deliveries"][0]["status"], "pending", "{}", deliveries.body);

    let worker = TestApp::spawn_on_with(&api.database_url, |c| c.roles = vec![Role::Worker]).await;
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].json()["data"]["incident"]["id"], incident["id"]);
    // The worker serves health and metrics, no API and no gRPC.
    assert_eq!(worker.grpc.port(), 0, "a worker-only process binds no gRPC port");
    worker.get("/v1/incidents").await.problem(404);
    assert_eq!(worker.get("/readyz").await.status, 200);
    let (_, body) = scrape(&worker.url("/metrics")).await;
    let body = if sample(&body, r#"incidentd_delivery_attempts_total{channel="webhook",outcome="delivered"}"#).is_some()
    {
        body
    } else {
        scrape_until(&worker.url("/metrics"), |b| {
            sample(b, r#"incidentd_delivery_attempts_total{channel="webhook",outcome="delivered"}"#) == Some(1.0)
        })
        .await
    };
    promtool_check(&body).await;
    drop(worker);
}

/// Replicas starting at once each apply migrations: on Postgres they queue on an advisory
/// lock (and race to create the database), on SQLite the losers of a race run again; none
/// fails and the schema is applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_starting_together_migrate_safely() {
    let url = fresh_database_url();
    let mut starts = Vec::new();
    for _ in 0..3 {
        let url = url.clone();
        starts.push(tokio::spawn(async move { incidentd::app::migrate(&url, 2).await.map(|_| ()) }));
    }
    for s in starts {
        s.await.unwrap().expect("every replica migrates");
    }
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".sql"))
        .count();
    let db = Db::open(&url).await;
    assert_eq!(db.scalar("SELECT count(*) FROM _sqlx_migrations WHERE success").await, migrations as i64);
    db.close().await;
    let app = TestApp::spawn_on(&url).await;
    app.incident("Schema works").await;
    drop(app);
    drop_database(&url);
}

const TOKEN: &str = "graceful-test-admin-token";

/// Starts the binary with this drain delay; returns it with its REST base URL and gRPC address.
async fn start_binary(url: &str, drain_secs: u64) -> (Child, String, String) {
    let drain = drain_secs.to_string();
    let served = serve_binary(
        url,
        TOKEN,
        &[
            ("INCIDENTD_DRAIN_DELAY_SECS", &drain),
            ("INCIDENTD_SHUTDOWN_TIMEOUT_SECS", "20"),
            // A long lease: a delivery left behind by the stop would wait a minute to be sent.
            ("INCIDENTD_DELIVERY_LEASE_SECS", "60"),
        ],
    )
    .await;
    (served.child, served.base, served.grpc)
}

/// Waits until every incident in `created` reached the receiver (its `incident.created`
/// webhook), for at most `timeout`.
async fn wait_until_delivered(receiver: &Receiver, created: &HashSet<String>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let subjects: HashSet<String> = receiver
            .received()
            .iter()
            .map(|m| m.json()["data"]["incident"]["id"].as_str().unwrap().to_string())
            .collect();
        let missing = created.iter().filter(|id| !subjects.contains(*id)).count();
        if missing == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{missing} of {} incidents never reached the receiver", created.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The load balancer of the shutdown tests: replicas by slot, each routed or not.
#[derive(Default)]
struct Balancer {
    replicas: std::sync::RwLock<Vec<(String, bool)>>,
}

impl Balancer {
    /// A routed replica's base URL, round-robin from `n`.
    fn pick(&self, n: usize) -> Option<String> {
        let replicas = self.replicas.read().unwrap();
        (0..replicas.len()).map(|i| &replicas[(n + i) % replicas.len()]).find(|r| r.1).map(|r| r.0.clone())
    }

    fn with(bases: &[&str]) -> Arc<Balancer> {
        Arc::new(Balancer { replicas: std::sync::RwLock::new(bases.iter().map(|b| (b.to_string(), true)).collect()) })
    }

    fn set(&self, slot: usize, base: &str, routed: bool) {
        self.replicas.write().unwrap()[slot] = (base.to_string(), routed);
    }
}

/// Clients creating incidents back to back through a balancer, until stopped: what they
/// created, and every request that failed.
struct Load {
    running: Arc<AtomicBool>,
    created: Arc<std::sync::Mutex<HashSet<String>>>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    /// Set by [`Load::mark`]; creations completed after it are counted in `after_mark`.
    marked: Arc<AtomicBool>,
    after_mark: Arc<AtomicUsize>,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(clients: usize, http: &reqwest::Client, balancer: &Arc<Balancer>) -> Load {
        let mut load = Load {
            running: Arc::new(AtomicBool::new(true)),
            created: Default::default(),
            failures: Default::default(),
            marked: Default::default(),
            after_mark: Default::default(),
            clients: Vec::new(),
        };
        for c in 0..clients {
            let (client, balancer) = (http.clone(), balancer.clone());
            let (running, created, failures, marked, after_mark) = (
                load.running.clone(),
                load.created.clone(),
                load.failures.clone(),
                load.marked.clone(),
                load.after_mark.clone(),
            );
            load.clients.push(tokio::spawn(async move {
                let mut n = c;
                while running.load(Ordering::SeqCst) {
                    n += 1;
                    let Some(base) = balancer.pick(n) else {
                        // Nothing routed: wait for a replica or the end.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    };
                    let res = client
                        .post(format!("{base}/v1/incidents"))
                        .bearer_auth(TOKEN)
                        .json(&json!({"title": format!("client {c} incident {n}"), "severity": "sev2"}))
                        .send()
                        .await;
                    match res {
                        Ok(r) if r.status() == 201 => {
                            let body: serde_json::Value = r.json().await.unwrap();
                            created.lock().unwrap().insert(body["id"].as_str().unwrap().to_string());
                            if marked.load(Ordering::SeqCst) {
                                after_mark.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        Ok(r) => {
                            let failure = format!("{base}: {}: {}", r.status(), r.text().await.unwrap_or_default());
                            failures.lock().unwrap().push(failure);
                        }
                        Err(e) => failures.lock().unwrap().push(format!("{base}: {e}")),
                    }
                }
            }));
        }
        load
    }

    fn mark(&self) {
        self.marked.store(true, Ordering::SeqCst);
    }

    fn created_count(&self) -> usize {
        self.created.lock().unwrap().len()
    }

    /// Stops the clients and waits for them; returns what they created, after asserting that
    /// no request failed, and how many were created after the mark.
    async fn stop(self) -> (HashSet<String>, usize) {
        self.running.store(false, Ordering::SeqCst);
        for c in self.clients {
            c.await.unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        assert!(failures.is_empty(), "{} requests failed: {:?}", failures.len(), &failures[..failures.len().min(5)]);
        let created = self.created.lock().unwrap().clone();
        (created, self.after_mark.load(Ordering::SeqCst))
    }
}

/// SIGTERM while clients create incidents and deliveries are in flight to a slow receiver:
/// readiness fails first while requests are still served, the process exits cleanly within
/// the grace period, no request fails, and no delivery is left under the stopped process's
/// lease: after a restart every event is delivered at once, not a lease later.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_fails_no_request_and_strands_no_delivery() {
    let url = fresh_database_url();
    let (mut child, base, grpc) = start_binary(&url, 2).await;
    let client = crate::helpers::http_client();
    let channel = tonic::transport::Channel::from_shared(format!("http://{grpc}")).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let serving = |health: tonic_health::pb::HealthCheckResponse| health.status;
    let check = tonic_health::pb::HealthCheckRequest { service: String::new() };
    let status = serving(health.check(check.clone()).await.unwrap().into_inner());
    assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    let receiver = Receiver::start().await;
    receiver.always(Reply::After(Duration::from_millis(300)));
    let res = client
        .post(format!("{base}/v1/subscriptions"))
        .bearer_auth(TOKEN)
        .json(&json!({"channel": "webhook", "target": receiver.url, "event_types": ["incident.created"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);

    // The load balancer: stops routing new requests here once readiness fails.
    // The load balancer: stops routing new requests here once readiness fails.
    let balancer = Balancer::with(&[&base]);
    let load = Load::start(8, &client, &balancer);
    receiver.wait_for(10).await;

    let signalled = Instant::now();
    load.mark();
    sigterm(&child);
    loop {
        let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
        if ready.status() == 503 {
            break;
        }
        assert!(signalled.elapsed() < Duration::from_secs(1), "readiness still passes after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let not_ready_after = signalled.elapsed();
    // gRPC health says the same, on the connection the balancer already has.
    let status = serving(health.check(check).await.unwrap().into_inner());
    assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::NotServing as i32);
    // Traffic already routed keeps being served for a moment, as the balancer catches up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    balancer.set(0, &base, false);
    let (created, during_drain) = load.stop().await;
    let status = tokio::time::timeout(Duration::from_secs(25), child.wait()).await.expect("exits in time").unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(signalled.elapsed() >= Duration::from_secs(2), "stopped before the drain delay was over");
    assert!(during_drain > 0, "no request was served during the drain");

    // Nothing is left under the stopped process's lease.
    let db = Db::open(&url).await;
    assert_eq!(db.scalar("SELECT count(*) FROM deliveries WHERE status = 'sending'").await, 0);
    db.close().await;

    // A new process sends the rest straight away (well within the 60 s lease).
    receiver.always(Reply::Status(204));
    let (mut child, base, _) = start_binary(&url, 0).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    wait_until_delivered(&receiver, &created, Duration::from_secs(20)).await;
    // Their outcomes are recorded a moment after the receiver answered.
    let db = Db::open(&url).await;
    while db.scalar("SELECT count(*) FROM deliveries WHERE status <> 'delivered'").await > 0 {
        assert!(Instant::now() < deadline, "deliveries were sent but not recorded as delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    db.close().await;
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    println!(
        "{} incidents created; not ready {:?} after SIGTERM; {} requests served while draining",
        created.len(),
        not_ready_after,
        during_drain
    );
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    drop_database(&url);
}

/// Three processes on one Postgres behind a balancer that routes by readiness, clients
/// creating incidents on all three, one process restarted in the middle (SIGTERM, drained,
/// replaced): no request fails, every event reaches the receiver, and no delivery is ever
/// sent twice (so none was claimed by two processes at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_and_a_rolling_restart_fail_nothing_and_deliver_everything_once() {
    crate::helpers::skip_unless!(Postgres, "several replicas share a database only on Postgres");
    let url = fresh_database_url();
    let mut children = Vec::new();
    let mut bases = Vec::new();
    for _ in 0..3 {
        let (child, base, _) = start_binary(&url, 2).await;
        bases.push(base);
        children.push(child);
    }
    let balancer = Balancer::with(&bases.iter().map(String::as_str).collect::<Vec<_>>());
    let client = crate::helpers::http_client();
    let receiver = Receiver::start().await;
    let first = balancer.pick(0).unwrap();
    let res = client
        .post(format!("{first}/v1/subscriptions"))
        .bearer_auth(TOKEN)
        .json(&json!({"channel": "webhook", "target": receiver.url, "event_types": ["incident.created"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);

    let load = Load::start(6, &client, &balancer);
    receiver.wait_for(50).await;

    // Rolling restart of the second replica: SIGTERM; the balancer takes it out when its
    // readiness fails; a new process takes its slot.
    let (old_base, _) = balancer.replicas.read().unwrap()[1].clone();
    sigterm(&children[1]);
    let signalled = Instant::now();
    loop {
        if client.get(format!("{old_base}/readyz")).send().await.unwrap().status() == 503 {
            balancer.set(1, &old_base, false);
            break;
        }
        assert!(signalled.elapsed() < Duration::from_secs(1), "readiness still passes after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = tokio::time::timeout(Duration::from_secs(25), children[1].wait()).await.expect("exits").unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    let (child, base, _) = start_binary(&url, 2).await;
    children[1] = child;
    balancer.set(1, &base, true);
    let before = load.created_count();
    let deadline = Instant::now() + Duration::from_secs(20);
    while load.created_count() < before + 100 {
        assert!(Instant::now() < deadline, "the replicas stopped taking requests");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (created, _) = load.stop().await;

    wait_until_delivered(&receiver, &created, Duration::from_secs(30)).await;
    let received = receiver.received();
    let ids: HashSet<&str> = received.iter().map(|m| m.header("webhook-id")).collect();
    assert_eq!(ids.len(), received.len(), "a delivery was sent more than once");
    let db = Db::open(&url).await;
    assert_eq!(
        db.scalar("SELECT count(*) FROM (SELECT delivery_id FROM delivery_attempts GROUP BY delivery_id HAVING count(*) > 1) d")
            .await,
        0,
        "a delivery was attempted more than once"
    );
    db.close().await;
    println!("{} incidents over three replicas and a restart; each delivered once", created.len());
    for mut child in children {
        child.start_kill().unwrap();
        child.wait().await.unwrap();
    }
    drop_database(&url);
}

/// An OTLP/HTTP trace collector on a loopback port: keeps every exported span with its
/// resource's service name.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<std::sync::Mutex<Vec<(String, opentelemetry_proto::tonic::trace::v1::Span)>>>,
}

impl Collector {
    async fn start(&self) -> String {
        use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
        use prost::Message;
        let spans = self.spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let spans = spans.clone();
                async move {
                    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
                    for resource in request.resource_spans {
                        let service = resource
                            .resource
                            .iter()
                            .flat_map(|r| &r.attributes)
                            .find(|a| a.key == "service.name")
                            .and_then(|a| a.value.as_ref())
                            .map(|v| format!("{:?}", v.value))
                            .unwrap_or_default();
                        for scope in resource.scope_spans {
                            for span in scope.spans {
                                spans.lock().unwrap().push((service.clone(), span));
                            }
                        }
                    }
                    (
                        [("content-type", "application/x-protobuf")],
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// OpenTelemetry: with OTEL_EXPORTER_OTLP_ENDPOINT set, the binary exports the spans of a REST
/// request (continuing the caller's `traceparent`), of its database transaction, of the
/// webhook delivery it causes (whose request carries a `traceparent` in the same trace) and of
/// a gRPC call; none of the exporter's own HTTP internals; the tracer is flushed at SIGTERM;
/// JSON log lines carry the trace id.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn traces_run_from_the_caller_through_incidentd_to_the_receiver() {
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let url = fresh_database_url();
    let served = serve_binary(
        &url,
        TOKEN,
        &[
            ("INCIDENTD_DRAIN_DELAY_SECS", "0"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_SERVICE_NAME", "incidentd-under-test"),
        ],
    )
    .await;
    let (mut child, base, grpc) = (served.child, served.base, served.grpc);
    let client = crate::helpers::http_client();
    let receiver = Receiver::start().await;
    let res = client
        .post(format!("{base}/v1/subscriptions"))
        .bearer_auth(TOKEN)
        .json(&json!({"channel": "webhook", "target": receiver.url, "event_types": ["incident.created"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);

    // The caller's trace.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let res = client
        .post(format!("{base}/v1/incidents"))
        .bearer_auth(TOKEN)
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .json(&json!({"title": "Traced", "severity": "sev2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let incident: serde_json::Value = res.json().await.unwrap();
    let incident_id = incident["id"].as_str().unwrap().to_string();
    let read = client.get(format!("{base}/v1/incidents/{incident_id}")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(read.status(), 200);
    let webhook = receiver.wait_for(1).await.remove(0);
    let traceparent = webhook.header("traceparent").to_string();
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[1], trace_id, "the webhook continues the caller's trace");
    assert_ne!(parts[2], caller_span, "the webhook's parent is incidentd's delivery span");

    // A gRPC call in a trace of its own.
    let grpc_trace = "0af7651916cd43dd8448eb211c80319c";
    let channel = tonic::transport::Channel::from_shared(format!("http://{grpc}")).unwrap().connect().await.unwrap();
    let mut incidents = proto::incident_service_client::IncidentServiceClient::new(channel);
    let mut request = tonic::Request::new(proto::GetIncidentRequest { id: "INC-1".into() });
    request.metadata_mut().insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    request.metadata_mut().insert("traceparent", format!("00-{grpc_trace}-b7ad6b7169203331-01").parse().unwrap());
    incidents.get_incident(request).await.unwrap();

    // SIGTERM flushes what is buffered.
    sigterm(&child);
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait()).await.expect("exits").unwrap();
    assert!(status.success());
    served.logs_done.await.unwrap();

    let spans = collector.spans.lock().unwrap().clone();
    assert!(!spans.is_empty(), "no span was exported");
    assert!(spans.iter().all(|(service, _)| service.contains("incidentd-under-test")), "service.name");
    let in_trace: Vec<&opentelemetry_proto::tonic::trace::v1::Span> =
        spans.iter().map(|(_, s)| s).filter(|s| hex(&s.trace_id) == trace_id).collect();
    let names: Vec<&str> = in_trace.iter().map(|s| s.name.as_str()).collect();
    let request_span = in_trace
        .iter()
        .find(|s| s.name == "POST /v1/incidents")
        .unwrap_or_else(|| panic!("no request span in the caller's trace: {names:?}"));
    assert_eq!(hex(&request_span.parent_span_id), caller_span, "the request span's parent is the caller's span");
    assert!(
        in_trace.iter().any(|s| s.name == "db.transaction" && s.parent_span_id == request_span.span_id),
        "no transaction span under the request: {names:?}"
    );
    let delivery = in_trace
        .iter()
        .find(|s| s.name == "deliver webhook")
        .unwrap_or_else(|| panic!("no delivery span in the caller's trace: {names:?}"));
    assert_eq!(hex(&delivery.span_id), parts[2], "the webhook's traceparent names the delivery span");
    assert!(
        spans.iter().any(|(_, s)| hex(&s.trace_id) == grpc_trace
            && s.name == "incidentd.v1.IncidentService/GetIncident"
            && hex(&s.parent_span_id) == "b7ad6b7169203331"),
        "no gRPC span in the gRPC caller's trace"
    );
    // Request spans are named after the route template, never the path.
    assert!(spans.iter().any(|(_, s)| s.name == "GET /v1/incidents/{id}"), "no span named after the route");
    assert!(spans.iter().all(|(_, s)| !s.name.contains(&incident_id)), "a span is named after a path");
    // Only incidentd's own spans: nothing from the HTTP/2 and HTTP client internals.
    for (_, s) in &spans {
        let ours = s.name == "db.transaction"
            || s.name.starts_with("deliver ")
            || s.name.starts_with("incidentd.v1.")
            || s.name.starts_with("grpc.")
            || ["GET ", "POST ", "PATCH ", "DELETE "].iter().any(|m| s.name.starts_with(m));
        assert!(ours, "an internal span was exported: {}", s.name);
    }
    // JSON log lines carry the trace id of the request they belong to.
    let logs = served.logs.lock().unwrap().clone();
    assert!(
        logs.iter().any(|l| l.contains("incident declared") && l.contains(trace_id)),
        "no log line of the request carries its trace id: {:?}",
        logs.iter().filter(|l| l.contains("incident declared")).collect::<Vec<_>>()
    );
    assert!(logs.iter().all(|l| !l.contains(TOKEN)), "the admin token was logged");
    drop_database(&url);
}
