//! Retention: old finished records of every kind are pruned by the workers in small batches,
//! what is recent or still needed stays, writers are not held up meanwhile, and a reader
//! resuming from a pruned cursor is told so (410 / OUT_OF_RANGE) instead of missing events.

use std::time::{Duration, Instant};

use chrono::Utc;
use incidentd::config::Config;
use incidentd::domain::retention::Table;
use incidentd::proto;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Db, TestApp, drop_database};
use crate::integrations::{integration, notification, push};
use crate::receivers::Receiver;

/// Every kind kept one hour; batches of 10; the workers' own pass runs at start and then
/// not again during the test (the test runs the passes it checks).
fn one_hour(config: &mut Config) {
    let r = &mut config.retention;
    for period in [&mut r.deliveries, &mut r.events, &mut r.alerts, &mut r.audit, &mut r.idempotency_keys] {
        *period = "1h".into();
    }
    r.batch_size = 10;
    r.interval = "1h".into();
}

/// SQL for the time `seconds` ago, on the backend of `db`.
fn ago(db: &Db, seconds: i64) -> String {
    match db {
        Db::Pg(_) => format!("now() - interval '{seconds} seconds'"),
        Db::Lite(_) => format!("(unixepoch() - {seconds}) * 1000000"),
    }
}

/// Writes `n` audit records `seconds` old straight into the database.
async fn old_audit_records(db: &Db, n: i64, seconds: i64) {
    let at = ago(db, seconds);
    let sql = match db {
        Db::Pg(_) => format!(
            "INSERT INTO audit_events (id, occurred_at, actor_name, action, resource_type, resource_id) \
             SELECT gen_random_uuid(), {at}, 'old', 'incident.created', 'incident', g::text \
             FROM generate_series(1, {n}) g"
        ),
        Db::Lite(_) => format!(
            "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {n}) \
             INSERT INTO audit_events (id, occurred_at, actor_name, action, resource_type, resource_id) \
             SELECT printf('00000000-0000-4000-8000-%012d', n), {at}, 'old', 'incident.created', 'incident', n FROM g"
        ),
    };
    db.execute(&sql).await;
}

/// Waits until `sql` counts `n`.
async fn wait_count(db: &Db, sql: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = db.scalar(sql).await;
        if got == n {
            return;
        }
        assert!(Instant::now() < deadline, "{sql}: {got}, expected {n}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn old_finished_records_are_pruned_in_batches_and_what_is_needed_stays() {
    let app = TestApp::spawn_with(one_hour).await;
    let db = app.db().await;

    // 35 incidents delivered to a webhook, five of them created with an idempotency key.
    let receiver = Receiver::start().await;
    let res = app.post("/v1/subscriptions", json!({"channel": "webhook", "target": receiver.url})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    for i in 0..35 {
        let body = json!({"title": format!("Old {i}"), "severity": "sev3"});
        let res = if i < 5 {
            app.post_idempotent("/v1/incidents", &format!("old-{i}"), &body).await
        } else {
            app.post("/v1/incidents", body).await
        };
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    }
    app.service.sequence_all().await.unwrap();
    wait_count(&db, "SELECT count(*) FROM deliveries WHERE status <> 'delivered'", 0).await;
    // Then a paused subscription: the deliveries of two more incidents wait for it.
    let held = Receiver::start().await;
    let res = app.post("/v1/subscriptions", json!({"channel": "webhook", "target": held.url})).await;
    let paused_id = res.body["id"].as_str().unwrap().to_string();
    app.post(&format!("/v1/subscriptions/{paused_id}/pause"), json!({})).await;
    let held_incidents = [app.incident("Held 1").await, app.incident("Held 2").await];
    app.service.sequence_all().await.unwrap();
    let pending_sql =
        format!("SELECT count(*) FROM deliveries WHERE subscription_id = '{paused_id}' AND status = 'pending'");
    wait_count(&db, &pending_sql, 2).await;
    wait_count(&db, "SELECT count(*) FROM deliveries WHERE status NOT IN ('delivered', 'pending')", 0).await;

    // Alerts: one group opens an incident that stays open, another opens one that resolves.
    let (integration_id, secret) =
        integration(&app, json!({"name": "prom", "kind": "alertmanager", "default_severity": "sev2"})).await;
    let path = format!("/v1/integrations/{integration_id}/alertmanager");
    let open = push(&app, &path, &secret, &notification("DiskFull", &[("firing", "db-1", "f1")])).await;
    assert_eq!(open.status, StatusCode::OK, "{}", open.body);
    push(&app, &path, &secret, &notification("CpuHigh", &[("firing", "web-1", "f2")])).await;
    push(&app, &path, &secret, &notification("CpuHigh", &[("resolved", "web-1", "f2")])).await;
    let open_alerts =
        "SELECT count(*) FROM alerts a JOIN incidents i ON i.id = a.incident_id WHERE i.status = 'investigating'";
    assert_eq!(db.scalar(open_alerts).await, 1);
    assert_eq!(db.scalar("SELECT count(*) FROM alerts").await, 3);
    app.service.sequence_all().await.unwrap();
    wait_count(&db, "SELECT count(*) FROM deliveries WHERE status NOT IN ('delivered', 'pending')", 0).await;

    // Everything so far becomes two hours old.
    for (table, column) in [
        ("deliveries", "created_at"),
        ("deliveries", "last_attempt_at"),
        ("delivery_attempts", "attempted_at"),
        ("events", "time"),
        ("alerts", "received_at"),
        ("audit_events", "occurred_at"),
        ("idempotency_keys", "created_at"),
    ] {
        db.shift_back(table, column, 7200, &format!("{column} IS NOT NULL")).await;
    }
    let old_deliveries = db.scalar("SELECT count(*) FROM deliveries WHERE status = 'delivered'").await;
    let old_attempts = db.scalar("SELECT count(*) FROM delivery_attempts").await;
    let old_audit = db.scalar("SELECT count(*) FROM audit_events").await;
    assert!(old_deliveries >= 35 && old_audit >= 35, "{old_deliveries} deliveries, {old_audit} audit records");

    // And something recent of each kind.
    let fresh =
        app.post_idempotent("/v1/incidents", "fresh", &json!({"title": "Fresh", "severity": "sev3"})).await.body;
    app.service.sequence_all().await.unwrap();
    wait_count(&db, "SELECT count(*) FROM deliveries WHERE status = 'delivered'", old_deliveries + 1).await;
    let last_seq = db.scalar("SELECT max(seq) FROM events").await;
    let pending = db.scalar(&pending_sql).await;
    assert!(pending >= 3, "the two held, the fresh one (and the alerts' incidents)");

    let pruned = app.service.prune_expired().await.unwrap();

    // Finished deliveries and their attempts: the old ones went, in batches of 10.
    assert_eq!(pruned.deliveries, old_deliveries as u64);
    assert_eq!(pruned.delivery_attempts, old_attempts as u64);
    assert_eq!(db.scalar("SELECT count(*) FROM deliveries WHERE status = 'delivered'").await, 1, "the fresh one");
    // Pending deliveries stay, however old.
    assert_eq!(db.scalar(&pending_sql).await, pending);
    // Events: the old ones without a pending delivery went; the held ones and the fresh one stay.
    assert!(pruned.events >= 35, "{pruned:?}");
    for i in held_incidents.iter().chain([&fresh]) {
        let sql = format!("SELECT count(*) FROM events WHERE subject = '{}'", i["id"].as_str().unwrap());
        assert_eq!(db.scalar(&sql).await, 1, "the events of {} stay", i["title"]);
    }
    let old_events = format!(
        "SELECT count(*) FROM events e WHERE e.time < {} AND NOT EXISTS \
         (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.status = 'pending')",
        ago(&db, 3600)
    );
    assert_eq!(db.scalar(&old_events).await, 0);
    // Alerts: the resolved incident's went, the open incident's stay.
    assert_eq!(pruned.alerts, 2);
    assert_eq!(db.scalar("SELECT count(*) FROM alerts").await, 1);
    assert_eq!(db.scalar(open_alerts).await, 1);
    // Audit records and idempotency records: only the recent ones stay.
    assert_eq!(pruned.audit_events, old_audit as u64);
    assert!(db.scalar("SELECT count(*) FROM audit_events").await >= 1);
    assert_eq!(pruned.idempotency_keys, 5);
    assert_eq!(db.scalar("SELECT count(*) FROM idempotency_keys").await, 1, "the fresh key");
    // Batches of at most 10, each table ending with a short (or empty) one.
    let per_table = |n: u64| n / 10 + 1;
    let least = per_table(pruned.deliveries)
        + per_table(pruned.events)
        + per_table(pruned.alerts)
        + per_table(pruned.audit_events)
        + per_table(pruned.idempotency_keys);
    assert_eq!(pruned.batches, least, "{pruned:?}");

    // A second pass finds nothing; the count shows in the metrics.
    let again = app.service.prune_expired().await.unwrap();
    assert_eq!(again.total(), 0, "{again:?}");
    let metrics = app.get("/metrics").await.body;
    let metrics = metrics.as_str().unwrap();
    let line = format!("incidentd_retention_pruned_rows_total{{table=\"deliveries\"}} {old_deliveries}");
    assert!(metrics.contains(&line), "{line} missing from the metrics");

    // Resuming from a pruned cursor is refused, saying where the log now starts.
    let res = app.get("/v1/events?after=1").await;
    let problem = res.problem(410);
    assert_eq!(problem["code"], "cursor_expired");
    let oldest: i64 = problem["oldest_cursor"].as_str().unwrap().parse().unwrap();
    assert!(oldest >= 35 && oldest < last_seq, "oldest cursor {oldest}");
    assert!(problem["detail"].as_str().unwrap().contains(&format!("oldest cursor still available is {oldest}")));
    let sse = app.send(app.client.get(app.url("/v1/events/stream")).header("Last-Event-ID", "1")).await;
    assert_eq!(sse.problem(410)["code"], "cursor_expired");
    // From the oldest cursor, or from the start (0), the log reads on without a gap.
    let from_oldest = app.get(&format!("/v1/events?after={oldest}&page_size=500")).await;
    assert_eq!(from_oldest.status, StatusCode::OK, "{}", from_oldest.body);
    let from_start = app.get("/v1/events?page_size=500").await;
    assert_eq!(from_start.body["events"], from_oldest.body["events"]);
    let seqs: Vec<i64> = from_start.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sequence"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(seqs.first(), Some(&(oldest + 1)));
    assert_eq!(seqs.last(), Some(&last_seq));
    // gRPC says the same with OUT_OF_RANGE and the oldest cursor in ErrorInfo.
    let mut events =
        proto::event_service_client::EventServiceClient::with_interceptor(app.channel().await, app.bearer());
    let err = events.list_events(proto::ListEventsRequest { after: 1, ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");
    let info = tonic_types::StatusExt::get_details_error_info(&err).expect("ErrorInfo");
    assert_eq!(info.reason, "CURSOR_EXPIRED");
    assert_eq!(info.metadata.get("oldest_cursor"), Some(&oldest.to_string()));
    let err = events
        .watch_events(proto::WatchEventsRequest { after: Some(1), ..Default::default() })
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");
    let ok = events.watch_events(proto::WatchEventsRequest { after: Some(oldest), ..Default::default() }).await;
    assert!(ok.is_ok(), "{ok:?}");
    db.close().await;
}

#[tokio::test]
async fn a_batch_takes_at_most_its_size_and_never_an_unsequenced_event() {
    let app = TestApp::spawn().await;
    let url = app.stop().await;
    let db = Db::open(&url).await;
    old_audit_records(&db, 35, 7200).await;
    let old = ago(&db, 7200);
    let events = [("00000000-0000-7000-8000-000000000001", "NULL"), ("00000000-0000-7000-8000-000000000002", "7")];
    for (id, seq) in events {
        db.execute(&format!(
            "INSERT INTO events (id, seq, type, subject, time, data) \
             VALUES ('{id}', {seq}, 'incident.created', 'x', {old}, '{{}}')"
        ))
        .await;
    }
    let store = incidentd::store::connect(&url, 2).await.unwrap();
    let hour_ago = Utc::now() - chrono::Duration::hours(1);
    let mut sizes = Vec::new();
    loop {
        let batch = store.prune_batch(Table::AuditEvents, hour_ago, 10).await.unwrap();
        sizes.push(batch.rows);
        if batch.rows < 10 {
            break;
        }
    }
    assert_eq!(sizes, [10, 10, 10, 5]);
    assert_eq!(store.events_pruned_through().await.unwrap(), 0);
    let batch = store.prune_batch(Table::Events, Utc::now(), 10).await.unwrap();
    assert_eq!(batch.rows, 1, "the sequenced one");
    assert_eq!(db.scalar("SELECT count(*) FROM events WHERE seq IS NULL").await, 1, "the unsequenced one stays");
    assert_eq!(store.events_pruned_through().await.unwrap(), 7);
    db.close().await;
    drop(store);
    drop_database(&url);
}

#[tokio::test]
async fn writes_keep_succeeding_while_the_workers_prune() {
    let app = TestApp::spawn_with(|c| {
        c.retention.audit = "1h".into();
        c.retention.batch_size = 20;
        c.retention.interval = "1s".into();
    })
    .await;
    let db = app.db().await;
    old_audit_records(&db, 1500, 7200).await;
    let old = format!("SELECT count(*) FROM audit_events WHERE occurred_at < {}", ago(&db, 3600));
    assert_eq!(db.scalar(&old).await, 1500);

    // Incidents are created one after another while the workers prune 75 batches.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut writes, mut slowest) = (0, Duration::ZERO);
    while db.scalar(&old).await > 0 {
        assert!(Instant::now() < deadline, "{} old records left", db.scalar(&old).await);
        let started = Instant::now();
        let res = app.post("/v1/incidents", json!({"title": format!("During {writes}"), "severity": "sev4"})).await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
        slowest = slowest.max(started.elapsed());
        writes += 1;
    }
    assert!(writes >= 5, "only {writes} writes while pruning");
    assert!(slowest < Duration::from_secs(1), "a write took {slowest:?}");
    // Those writes' own audit records are recent: they stay.
    assert!(db.scalar("SELECT count(*) FROM audit_events").await >= writes);
    let metrics = app.get("/metrics").await.body;
    assert!(
        metrics.as_str().unwrap().contains("incidentd_retention_pruned_rows_total{table=\"audit_events\"} 1500"),
        "the pruned count shows in the metrics"
    );
    db.close().await;
}
