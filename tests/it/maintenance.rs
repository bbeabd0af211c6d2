//! Scheduled maintenance: the lifecycle by hand and on schedule (once across processes, and
//! caught up after every process was down), what it imposes on its components (an incident's
//! worse status wins, overlapping windows combine), the history and events it causes, and
//! the API's conventions over REST and gRPC.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use incidentd::config::Role;
use incidentd::proto;
use incidentd::proto::maintenance_service_client::MaintenanceServiceClient;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, bad_request_fields};

/// An RFC 3339 time `secs` from now.
fn at(secs: i64) -> String {
    (Utc::now() + chrono::Duration::milliseconds(secs * 1000)).to_rfc3339_opts(SecondsFormat::Millis, true)
}

async fn effective(app: &TestApp, component: &str) -> String {
    app.get(&format!("/v1/components/{component}")).await.body["effective_status"].as_str().unwrap().to_string()
}

async fn schedule(app: &TestApp, body: Value) -> Value {
    let res = app.post("/v1/maintenances", body).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    res.body
}

async fn move_to(app: &TestApp, id: &str, status: &str) -> Value {
    let res = app.post(&format!("/v1/maintenances/{id}/updates"), json!({"status": status})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    res.body["maintenance"].clone()
}

/// Waits until the maintenance has `status` (the workers look every second).
async fn wait_status(app: &TestApp, id: &str, status: &str, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let m = app.get(&format!("/v1/maintenances/{id}")).await.body;
        if m["status"] == status {
            return m;
        }
        assert!(tokio::time::Instant::now() < deadline, "not {status} in time: {m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn types(events: &[Value], subject: &str) -> Vec<String> {
    events.iter().filter(|e| e["subject"] == subject).map(|e| e["type"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn a_maintenance_starts_and_completes_on_schedule_and_its_components_follow() {
    let app = TestApp::spawn().await;
    let db = app.create_component("Database").await["id"].as_str().unwrap().to_string();
    let api = app.create_component("API").await["id"].as_str().unwrap().to_string();
    // An incident imposes something worse on the API: it wins over the maintenance.
    app.create_incident(json!({"title": "API errors", "severity": "sev2",
        "affected_components": [{"component_id": api, "status": "major_outage"}]}))
        .await;
    let m = schedule(
        &app,
        json!({"title": "Database upgrade", "body": "Writes pause for a minute.",
            "components": [db, api], "scheduled_for": at(1), "scheduled_until": at(4)}),
    )
    .await;
    let id = m["id"].as_str().unwrap();
    assert_eq!(m["status"], "scheduled");
    assert_eq!(m["auto_start"], true, "on by default");
    assert_eq!(m["auto_complete"], true, "on by default");
    assert_eq!(effective(&app, &db).await, "operational", "nothing is imposed before the start");

    let started = wait_status(&app, id, "in_progress", Duration::from_secs(6)).await;
    assert!(started["started_at"].is_string());
    assert_eq!(effective(&app, &db).await, "under_maintenance");
    assert_eq!(effective(&app, &api).await, "major_outage", "the incident's worse status wins");

    let done = wait_status(&app, id, "completed", Duration::from_secs(8)).await;
    assert!(done["completed_at"].is_string());
    assert_eq!(effective(&app, &db).await, "operational", "restored after");
    assert_eq!(effective(&app, &api).await, "major_outage");

    // The timeline: scheduled by hand, started and completed by the workers.
    let updates = app.get(&format!("/v1/maintenances/{id}/updates")).await.body["updates"].clone();
    let steps: Vec<(Value, Value)> =
        updates.as_array().unwrap().iter().map(|u| (u["status"].clone(), u["automatic"].clone())).collect();
    assert_eq!(
        steps,
        [(json!("scheduled"), json!(false)), (json!("in_progress"), json!(true)), (json!("completed"), json!(true))]
    );
    // The component history names the maintenance as the cause of both moves.
    let history = app.get(&format!("/v1/components/{db}/history")).await.body;
    let moves: Vec<(Value, Value, Value)> = history["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["from_status"].clone(), c["to_status"].clone(), c["maintenance_id"].clone()))
        .collect();
    assert_eq!(
        moves,
        [
            (json!("under_maintenance"), json!("operational"), json!(id)),
            (json!("operational"), json!("under_maintenance"), json!(id)),
        ]
    );
    // Events through the fan-out's log, once each.
    let events = app.events_after(0, 1).await;
    let seen = types(&events, id);
    assert_eq!(seen, ["maintenance.scheduled", "maintenance.started", "maintenance.completed"], "{events:?}");
    let started_event = events.iter().find(|e| e["type"] == "maintenance.started").unwrap();
    assert_eq!(started_event["data"]["maintenance"]["title"], "Database upgrade");
    assert_eq!(started_event["data"]["previous_status"], "scheduled");
}

#[tokio::test]
async fn overlapping_windows_on_one_component_combine_and_moves_by_hand_follow_the_lifecycle() {
    let app = TestApp::spawn().await;
    let c = app.create_component("Storage").await["id"].as_str().unwrap().to_string();
    let window = |title: &str| {
        json!({"title": title, "components": [c], "scheduled_for": at(3600), "scheduled_until": at(7200),
            "auto_start": false, "auto_complete": false})
    };
    let first = schedule(&app, window("Disk swap")).await["id"].as_str().unwrap().to_string();
    let second = schedule(&app, window("Firmware")).await["id"].as_str().unwrap().to_string();
    move_to(&app, &first, "in_progress").await;
    move_to(&app, &second, "in_progress").await;
    assert_eq!(effective(&app, &c).await, "under_maintenance");
    let verifying = move_to(&app, &first, "verifying").await;
    assert_eq!(verifying["status"], "verifying");
    assert_eq!(effective(&app, &c).await, "under_maintenance", "verifying still holds the component");
    move_to(&app, &first, "completed").await;
    assert_eq!(effective(&app, &c).await, "under_maintenance", "the other window is still open");
    move_to(&app, &second, "cancelled").await;
    assert_eq!(effective(&app, &c).await, "operational");
    // One move into maintenance and one out: the overlap is not recorded twice.
    let history = app.get(&format!("/v1/components/{c}/history")).await.body;
    assert_eq!(history["changes"].as_array().unwrap().len(), 2, "{history}");

    // A final maintenance moves no more, and says which moves there are.
    let res = app.post(&format!("/v1/maintenances/{first}/updates"), json!({"status": "in_progress"})).await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.body);
    let res = app.patch(&format!("/v1/maintenances/{first}"), json!({"title": "Later"})).await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.body);
    // An invalid move names the allowed ones.
    let third = schedule(&app, window("Network")).await["id"].as_str().unwrap().to_string();
    let res = app.post(&format!("/v1/maintenances/{third}/updates"), json!({"status": "completed"})).await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.body);
    assert_eq!(res.body["allowed_transitions"], json!(["in_progress", "cancelled"]));
    assert_eq!(res.header("content-type"), Some("application/problem+json"));
    // A note without a move needs a body.
    let res = app.post(&format!("/v1/maintenances/{third}/updates"), json!({})).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.error_fields(), ["body"]);
    let res = app.post(&format!("/v1/maintenances/{third}/updates"), json!({"body": "Still on for tonight."})).await;
    assert_eq!(res.status, StatusCode::CREATED);
    assert_eq!(res.body["update"]["status"], "scheduled");
}

#[tokio::test]
async fn bad_input_names_each_field_and_the_conventions_hold() {
    let app = TestApp::spawn().await;
    let c = app.create_component("Search").await["id"].as_str().unwrap().to_string();
    let res = app.post("/v1/maintenances", json!({})).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.error_fields(), ["title", "scheduled_for", "scheduled_until"]);
    let res =
        app.post("/v1/maintenances", json!({"title": "x", "scheduled_for": at(60), "scheduled_until": at(30)})).await;
    assert_eq!(res.error_fields(), ["scheduled_until"], "{}", res.body);
    let res = app
        .post(
            "/v1/maintenances",
            json!({"title": "x", "scheduled_for": at(60), "scheduled_until": at(60 + 32 * 86400)}),
        )
        .await;
    assert_eq!(res.error_fields(), ["scheduled_until"], "{}", res.body);
    let unknown = uuid::Uuid::now_v7();
    let res = app
        .post(
            "/v1/maintenances",
            json!({"title": "x", "components": [c, c, unknown], "scheduled_for": at(60), "scheduled_until": at(120)}),
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    assert_eq!(res.error_fields(), ["components[1]"], "{}", res.body);
    let res = app
        .post(
            "/v1/maintenances",
            json!({"title": "x", "components": [unknown], "scheduled_for": at(60), "scheduled_until": at(120)}),
        )
        .await;
    assert_eq!(res.error_fields(), ["components[0]"], "{}", res.body);
    let res = app.post("/v1/maintenances", json!({"title": "x", "scheduled_for": "soon"})).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.error_fields(), ["scheduled_for"], "{}", res.body);
    assert_eq!(app.get("/v1/maintenances").await.body["maintenances"], json!([]), "nothing bad was stored");

    // Idempotency-Key: a repeat returns the first response and schedules nothing new.
    let body = json!({"title": "Reindex", "components": [c], "scheduled_for": at(600), "scheduled_until": at(900)});
    let first = app.post_idempotent("/v1/maintenances", "reindex-1", &body).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let again = app.post_idempotent("/v1/maintenances", "reindex-1", &body).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body["id"], first.body["id"]);
    let id = first.body["id"].as_str().unwrap();
    assert_eq!(first.header("etag"), Some("\"1\""));
    assert_eq!(first.header("location"), Some(format!("/v1/maintenances/{id}").as_str()));

    // If-Match: a stale tag is refused and nothing changes.
    let stale = app
        .send(
            app.client
                .patch(app.url(&format!("/v1/maintenances/{id}")))
                .header("if-match", "\"7\"")
                .json(&json!({"title": "Reindex all"})),
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    let ok = app
        .send(
            app.client
                .patch(app.url(&format!("/v1/maintenances/{id}")))
                .header("if-match", "\"1\"")
                .json(&json!({"title": "Reindex all", "body": "Search results may lag."})),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.header("etag"), Some("\"2\""));
    assert_eq!(ok.body["title"], "Reindex all");
    let res = app.patch(&format!("/v1/maintenances/{id}"), json!({"title": null, "auto_start": null})).await;
    assert_eq!(res.error_fields(), ["title", "auto_start"]);

    // Keyset paging, newest window first, and the status filter.
    for i in 0..3 {
        schedule(
            &app,
            json!({"title": format!("Window {i}"), "scheduled_for": at(1000 + i * 100), "scheduled_until": at(5000)}),
        )
        .await;
    }
    let page1 = app.get("/v1/maintenances?page_size=2").await.body;
    let titles = |p: &Value| -> Vec<String> {
        p["maintenances"].as_array().unwrap().iter().map(|m| m["title"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(titles(&page1), ["Window 2", "Window 1"]);
    let token = page1["next_page_token"].as_str().unwrap();
    let page2 = app.get(&format!("/v1/maintenances?page_size=2&page_token={token}")).await.body;
    assert_eq!(titles(&page2), ["Window 0", "Reindex all"]);
    assert!(page2["next_page_token"].is_null());
    move_to(&app, id, "cancelled").await;
    let cancelled = app.get("/v1/maintenances?status=cancelled").await.body;
    assert_eq!(titles(&cancelled), ["Reindex all"]);
    let res = app.get("/v1/maintenances?status=paused").await;
    assert_eq!(res.error_fields(), ["status"]);
    let res = app.get("/v1/maintenances/not-a-uuid").await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    let res = app.get(&format!("/v1/maintenances/{unknown}")).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn grpc_and_rest_serve_the_same_maintenance() {
    let app = TestApp::spawn().await;
    let c = app.create_component("Mail").await["id"].as_str().unwrap().to_string();
    let mut grpc = MaintenanceServiceClient::with_interceptor(app.channel().await, app.bearer());
    let ts = |secs: i64| {
        let t = Utc::now() + chrono::Duration::seconds(secs);
        prost_types::Timestamp { seconds: t.timestamp(), nanos: 0 }
    };
    let created = grpc
        .create_maintenance(proto::CreateMaintenanceRequest {
            maintenance: Some(proto::Maintenance {
                title: "Mail relay move".into(),
                components: vec![c.clone()],
                scheduled_for: Some(ts(3600)),
                scheduled_until: Some(ts(7200)),
                auto_start: Some(false),
                ..Default::default()
            }),
            request_id: "relay-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .maintenance
        .unwrap();
    let rest = app.get(&format!("/v1/maintenances/{}", created.id)).await.body;
    assert_eq!(rest["title"], "Mail relay move");
    assert_eq!(rest["components"], json!([c]));
    assert_eq!(rest["auto_start"], false);
    assert_eq!(rest["auto_complete"], true);
    assert_eq!(created.status, proto::MaintenanceStatus::Scheduled as i32);
    assert_eq!(created.etag, "\"1\"");

    let updated = grpc
        .update_maintenance(proto::UpdateMaintenanceRequest {
            maintenance: Some(proto::Maintenance {
                id: created.id.clone(),
                body: "Expect delays.".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths: vec!["body".into()] }),
            etag: created.etag.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .maintenance
        .unwrap();
    assert_eq!(updated.body, "Expect delays.");
    assert_eq!(app.get(&format!("/v1/maintenances/{}", created.id)).await.body["body"], "Expect delays.");
    let stale = grpc
        .update_maintenance(proto::UpdateMaintenanceRequest {
            maintenance: Some(proto::Maintenance { id: created.id.clone(), title: "x".into(), ..Default::default() }),
            update_mask: Some(prost_types::FieldMask { paths: vec!["title".into()] }),
            etag: created.etag.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), tonic::Code::Aborted);

    let moved = grpc
        .create_maintenance_update(proto::CreateMaintenanceUpdateRequest {
            maintenance_id: created.id.clone(),
            status: proto::MaintenanceStatus::InProgress as i32,
            body: "Started early.".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(moved.maintenance.unwrap().status, proto::MaintenanceStatus::InProgress as i32);
    assert_eq!(effective(&app, &c).await, "under_maintenance");
    let bad = grpc
        .create_maintenance_update(proto::CreateMaintenanceUpdateRequest {
            maintenance_id: created.id.clone(),
            status: proto::MaintenanceStatus::Scheduled as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::FailedPrecondition, "{bad:?}");
    let invalid = grpc
        .create_maintenance(proto::CreateMaintenanceRequest {
            maintenance: Some(Default::default()),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        bad_request_fields(&invalid),
        ["maintenance.title", "maintenance.scheduled_for", "maintenance.scheduled_until"]
    );

    let listed = grpc
        .list_maintenance_updates(proto::ListMaintenanceUpdatesRequest {
            maintenance_id: created.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let rest_updates = app.get(&format!("/v1/maintenances/{}/updates", created.id)).await.body;
    let rest_bodies: Vec<&str> =
        rest_updates["updates"].as_array().unwrap().iter().map(|u| u["body"].as_str().unwrap()).collect();
    let grpc_bodies: Vec<&str> = listed.updates.iter().map(|u| u.body.as_str()).collect();
    assert_eq!(grpc_bodies, rest_bodies);
    assert_eq!(grpc_bodies, ["", "Started early."]);
    let all = grpc
        .list_maintenances(proto::ListMaintenancesRequest {
            statuses: vec![proto::MaintenanceStatus::InProgress as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.maintenances.len(), 1);
}

#[tokio::test]
async fn the_schedule_runs_once_across_workers_and_catches_up_after_every_process_was_down() {
    // Only an API process is running when the window opens and closes.
    let api = TestApp::spawn_with(|c| c.roles = vec![Role::Api]).await;
    let c = api.create_component("Billing").await["id"].as_str().unwrap().to_string();
    let m = schedule(
        &api,
        json!({"title": "Ledger migration", "components": [c], "scheduled_for": at(1), "scheduled_until": at(2)}),
    )
    .await;
    let id = m["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(api.get(&format!("/v1/maintenances/{id}")).await.body["status"], "scheduled", "no worker ran");

    // Two workers come up together: the window is caught up, once.
    let w1 = TestApp::spawn_on_with(&api.database_url, |c| c.roles = vec![Role::Worker]).await;
    let w2 = TestApp::spawn_on_with(&api.database_url, |c| c.roles = vec![Role::Worker]).await;
    let done = wait_status(&api, &id, "completed", Duration::from_secs(5)).await;
    assert!(done["started_at"].is_string());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let updates = api.get(&format!("/v1/maintenances/{id}/updates")).await.body;
    let statuses: Vec<&str> =
        updates["updates"].as_array().unwrap().iter().map(|u| u["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["scheduled", "in_progress", "completed"], "each move once");
    let events = api.events_after(0, 1).await;
    assert_eq!(types(&events, &id), ["maintenance.scheduled", "maintenance.started", "maintenance.completed"]);
    let history = api.get(&format!("/v1/components/{c}/history")).await.body;
    assert_eq!(history["changes"].as_array().unwrap().len(), 2, "in and out of maintenance: {history}");
    assert_eq!(effective(&api, &c).await, "operational");

    // A reminder goes out once, the configured lead before the start, whichever worker
    // gets there; one scheduled closer to its start than the lead gets none (the scheduling
    // notice was the announcement).
    let soon =
        schedule(&api, json!({"title": "Cache flush", "scheduled_for": at(5400), "scheduled_until": at(9000)})).await;
    let late = schedule(
        &api,
        json!({"title": "Quick fix", "scheduled_for": at(600), "scheduled_until": at(9000), "auto_start": false}),
    )
    .await;
    assert!(soon["reminded_at"].is_null());
    assert!(late["reminded_at"].is_string(), "within the 60-minute lead: {late}");
    let soon_id = soon["id"].as_str().unwrap().to_string();
    let before_lead = Utc::now() + chrono::Duration::seconds(5400 - 3700);
    assert_eq!(w1.service.run_due_maintenance(before_lead).await.unwrap(), 0, "not due yet");
    let in_lead = Utc::now() + chrono::Duration::seconds(5400 - 3500);
    let (a, b) = tokio::join!(w1.service.run_due_maintenance(in_lead), w2.service.run_due_maintenance(in_lead));
    assert_eq!(a.unwrap() + b.unwrap(), 1, "one worker sent it");
    assert_eq!(w2.service.run_due_maintenance(in_lead).await.unwrap(), 0, "and only once");
    let events = api.events_after(0, 1).await;
    assert_eq!(types(&events, &soon_id), ["maintenance.scheduled", "maintenance.reminder"]);
    assert_eq!(types(&events, late["id"].as_str().unwrap()), ["maintenance.scheduled"]);
    drop((w1, w2));
}

#[tokio::test]
async fn maintenance_events_reach_subscribers_through_the_fan_out_filtered_by_component() {
    let smtp = crate::receivers::SmtpSink::start();
    let smtp_url = smtp.url.clone();
    let app = TestApp::spawn_with(move |c| {
        c.smtp_url = Some(smtp_url.into());
        c.smtp_from = "Status <status@example.com>".into();
    })
    .await;
    let db = app.create_component("Database").await["id"].as_str().unwrap().to_string();
    let other = app.create_component("Search").await["id"].as_str().unwrap().to_string();
    let mine = crate::receivers::Receiver::start().await;
    let not_mine = crate::receivers::Receiver::start().await;
    for (receiver, component) in [(&mine, &db), (&not_mine, &other)] {
        let res = app
            .post(
                "/v1/subscriptions",
                json!({"channel": "webhook", "target": receiver.url, "component_ids": [component],
                    "event_types": ["maintenance.scheduled", "maintenance.started", "maintenance.completed"]}),
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    }
    let res = app
        .post("/v1/subscriptions", json!({"channel": "email", "target": "ops@example.com", "component_ids": [db]}))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);

    let m = schedule(
        &app,
        json!({"title": "Database failover drill", "body": "Expect a few seconds of errors.",
            "components": [db], "scheduled_for": at(3600), "scheduled_until": at(7200), "auto_start": false}),
    )
    .await;
    let id = m["id"].as_str().unwrap().to_string();
    move_to(&app, &id, "in_progress").await;
    move_to(&app, &id, "completed").await;
    app.service.sequence_all().await.unwrap();

    let got = mine.wait_for(3).await;
    let kinds: Vec<String> = got.iter().map(|r| r.json()["type"].as_str().unwrap().to_string()).collect();
    let mut sorted = kinds.clone();
    sorted.sort();
    assert_eq!(sorted, ["maintenance.completed", "maintenance.scheduled", "maintenance.started"]);
    let started = got.iter().find(|r| r.json()["type"] == "maintenance.started").unwrap().json();
    assert_eq!(started["subject"], id.as_str());
    assert_eq!(started["data"]["maintenance"]["title"], "Database failover drill");
    assert!(started["data"]["maintenance"].get("auto_start").is_none(), "public subscribers get the public view");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(not_mine.received().is_empty(), "another component's subscriber hears nothing");
    // The email subscription gets a readable summary of each.
    let mails = smtp.wait_for(3).await;
    assert!(mails.iter().any(|m| m.contains("Maintenance Database failover drill: maintenance started")), "{mails:?}");
    assert!(mails.iter().all(|m| m.contains("ops@example.com")));
}
