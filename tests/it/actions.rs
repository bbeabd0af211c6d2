//! Follow-up actions: added to an incident with owner, due date, priority and tracker; listed
//! per incident and across incidents (open first, the overdue first; filters by owner, status,
//! overdue; paged); edited and done under ETags; `action.overdue` once per due date across
//! replicas; the same over gRPC.

use std::time::Duration;

use incidentd::proto;
use incidentd::proto::action_service_client::ActionServiceClient;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, bad_request_fields};

fn day(offset: i64) -> String {
    (chrono::Utc::now().date_naive() + chrono::Duration::days(offset)).to_string()
}

async fn add(app: &TestApp, incident: &str, body: Value) -> Value {
    let res = app.post(&format!("/v1/incidents/{incident}/actions"), body).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    res.body
}

fn titles(list: &Value) -> Vec<String> {
    list["actions"].as_array().unwrap().iter().map(|a| a["title"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn actions_are_added_listed_overdue_first_filtered_paged_and_done() {
    let app = TestApp::spawn().await;
    let a = app.incident("Checkout down").await["reference"].as_str().unwrap().to_string();
    let b = app.incident("Login slow").await["reference"].as_str().unwrap().to_string();

    let first = add(
        &app,
        &a,
        json!({"title": "Add a payment failover", "owner": "Alice", "due_date": day(-3),
        "priority": "high", "tracker": "https://tracker.example.com/OPS-12"}),
    )
    .await;
    assert_eq!((first["status"].as_str(), first["overdue"].as_bool()), (Some("open"), Some(true)));
    assert_eq!(first["completed_at"], Value::Null);
    let defaults = add(&app, &a, json!({"title": "Write the runbook"})).await;
    assert_eq!((defaults["priority"].as_str(), defaults["due_date"].clone()), (Some("medium"), Value::Null));
    add(&app, &b, json!({"title": "Tune the session cache", "owner": "alice", "due_date": day(10)})).await;
    add(&app, &b, json!({"title": "Alert on login latency", "owner": "Bob", "due_date": day(-1)})).await;
    let done = add(&app, &b, json!({"title": "Roll back the flag", "owner": "Bob", "due_date": day(-9)})).await;
    let done_id = done["id"].as_str().unwrap();

    // Done, under the ETag: completed, no longer overdue.
    let stale = app
        .send(
            app.client
                .patch(app.url(&format!("/v1/actions/{done_id}")))
                .header("if-match", "\"5\"")
                .json(&json!({"status": "done"})),
        )
        .await;
    assert_eq!(stale.problem(412)["code"], "etag_mismatch");
    let res = app
        .send(
            app.client
                .patch(app.url(&format!("/v1/actions/{done_id}")))
                .header("if-match", "\"1\"")
                .json(&json!({"status": "done"})),
        )
        .await;
    assert_eq!((res.status, res.header("etag")), (StatusCode::OK, Some("\"2\"")), "{}", res.body);
    assert!(res.body["completed_at"].is_string());
    assert_eq!(res.body["overdue"], false);

    // Across incidents: open first by due date (the overdue first, none last), then the rest.
    let all = app.get("/v1/actions").await.body;
    assert_eq!(
        titles(&all),
        [
            "Add a payment failover",
            "Alert on login latency",
            "Tune the session cache",
            "Write the runbook",
            "Roll back the flag"
        ]
    );
    let overdue: Vec<bool> =
        all["actions"].as_array().unwrap().iter().map(|a| a["overdue"].as_bool().unwrap()).collect();
    assert_eq!(overdue, [true, true, false, false, false]);
    // Filters: owner in any case, status, overdue, incident.
    assert_eq!(
        titles(&app.get("/v1/actions?owner=ALICE").await.body),
        ["Add a payment failover", "Tune the session cache"]
    );
    assert_eq!(
        titles(&app.get("/v1/actions?overdue=true").await.body),
        ["Add a payment failover", "Alert on login latency"]
    );
    assert_eq!(titles(&app.get("/v1/actions?status=done").await.body), ["Roll back the flag"]);
    assert_eq!(titles(&app.get(&format!("/v1/actions?incident={a}&overdue=false")).await.body), ["Write the runbook"]);
    let per_incident = app.get(&format!("/v1/incidents/{b}/actions?status=open,done")).await.body;
    assert_eq!(titles(&per_incident), ["Alert on login latency", "Tune the session cache", "Roll back the flag"]);
    // Paged, each page after the last, nothing missed or repeated.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let q = token.as_ref().map(|t| format!("&page_token={t}")).unwrap_or_default();
        let page = app.get(&format!("/v1/actions?page_size=2{q}")).await.body;
        seen.extend(titles(&page));
        match page["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, titles(&all));

    // Errors name the field; nothing is stored.
    let bad = app
        .post(
            &format!("/v1/incidents/{a}/actions"),
            json!({"title": " ", "due_date": "next week", "priority": "urgent"}),
        )
        .await;
    bad.problem(400);
    let bad = app.post(&format!("/v1/incidents/{a}/actions"), json!({"title": " ", "due_date": "2026-02-30"})).await;
    assert_eq!(bad.problem(400)["errors"][0]["field"], "due_date");
    let blank = app.post(&format!("/v1/incidents/{a}/actions"), json!({"title": " "})).await;
    assert_eq!(blank.problem(400)["errors"][0]["field"], "title");
    let unknown = app.post(&format!("/v1/incidents/{a}/actions"), json!({"title": "x", "assignee": "Al"})).await;
    assert_eq!(unknown.problem(400)["errors"][0]["field"], "assignee");
    assert_eq!(app.get("/v1/actions?overdue=maybe").await.problem(400)["errors"][0]["field"], "overdue");
    assert_eq!(app.get("/v1/actions?sort=due").await.problem(400)["errors"][0]["field"], "sort");
    assert_eq!(app.get("/v1/actions?incident=INC-99").await.problem(404)["code"], "not_found");
    let null_status = app.patch(&format!("/v1/actions/{done_id}"), json!({"status": null})).await;
    assert_eq!(null_status.problem(400)["errors"][0]["field"], "status");
    assert_eq!(app.get("/v1/actions").await.body["actions"].as_array().unwrap().len(), 5);

    // Removed for good, with an event for each change.
    assert_eq!(app.delete(&format!("/v1/actions/{done_id}")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&format!("/v1/actions/{done_id}")).await.problem(404)["code"], "not_found");
    app.service.sequence_all().await.unwrap();
    let events = app.get("/v1/events?type=action.created,action.updated,action.deleted&page_size=100").await.body;
    let types: Vec<&str> = events["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types.iter().filter(|t| **t == "action.created").count(), 5);
    assert_eq!(
        types.iter().filter(|t| **t != "action.created").copied().collect::<Vec<_>>(),
        ["action.updated", "action.deleted"]
    );
    let public = app.get("/v1/events?public=true&type=action.created").await.body;
    assert_eq!(public["events"], json!([]), "actions are internal");
}

#[tokio::test]
async fn an_overdue_action_is_announced_once_per_due_date_across_replicas() {
    let app = TestApp::spawn().await;
    let second = TestApp::spawn_on(&app.database_url).await;
    let incident = app.incident("Checkout down").await["id"].as_str().unwrap().to_string();
    let late = add(&app, &incident, json!({"title": "Add retries", "due_date": day(-1)})).await;
    add(&app, &incident, json!({"title": "Later", "due_date": day(30)})).await;
    let id = late["id"].as_str().unwrap();
    let overdue = || async {
        app.service.sequence_all().await.unwrap();
        let events = app.get("/v1/events?type=action.overdue").await.body;
        events["events"].as_array().unwrap().clone()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while overdue().await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no action.overdue within 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Both replicas' workers look every second: still one after a few of their rounds.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let events = overdue().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["subject"], id);
    assert_eq!(events[0]["data"]["action"]["overdue"], true);
    assert_eq!(events[0]["data"]["due_date"], day(-1));

    // A new due date that passes is announced again; a done action never.
    let res = app.patch(&format!("/v1/actions/{id}"), json!({"due_date": day(-2)})).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while overdue().await.len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no second action.overdue within 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let done = add(&app, &incident, json!({"title": "Already done", "due_date": day(-5), "status": "done"})).await;
    assert!(done["completed_at"].is_string());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(overdue().await.len(), 2);
    drop(second);
}

#[tokio::test]
async fn actions_over_grpc_follow_the_same_rules_and_read_as_over_rest() {
    let app = TestApp::spawn().await;
    let mut actions = ActionServiceClient::with_interceptor(app.channel().await, app.bearer());
    let incident = app.incident("Checkout down").await;
    let reference = incident["reference"].as_str().unwrap().to_string();
    let created = actions
        .create_action(proto::CreateActionRequest {
            action: Some(proto::Action {
                incident_id: reference.clone(),
                title: "Add a failover".into(),
                owner: Some("Alice".into()),
                due_date: day(-1),
                priority: proto::ActionPriority::High as i32,
                tracker: Some("OPS-12".into()),
                ..Default::default()
            }),
            request_id: "a-1".into(),
        })
        .await
        .unwrap();
    assert_eq!(created.metadata().get("idempotent-replayed"), None);
    let created = created.into_inner().action.unwrap();
    assert!(created.overdue);
    assert_eq!(created.status, proto::ActionStatus::Open as i32);
    let bad = actions
        .create_action(proto::CreateActionRequest {
            action: Some(proto::Action {
                incident_id: reference.clone(),
                due_date: "soon".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert_eq!(bad_request_fields(&bad), ["action.due_date"]);

    let rest = app.get(&format!("/v1/actions/{}", created.id)).await.body;
    assert_eq!(rest["title"], created.title.as_str());
    assert_eq!(rest["due_date"], created.due_date.as_str());
    assert_eq!(rest["priority"], "high");
    assert_eq!(rest["incident_id"], incident["id"]);

    let update = |mask: &[&str], etag: &str, a: proto::Action| proto::UpdateActionRequest {
        action: Some(a),
        update_mask: Some(prost_types::FieldMask { paths: mask.iter().map(|m| m.to_string()).collect() }),
        etag: etag.into(),
    };
    let done =
        proto::Action { id: created.id.clone(), status: proto::ActionStatus::WontDo as i32, ..Default::default() };
    let stale = actions.update_action(update(&["status"], "\"4\"", done.clone())).await.unwrap_err();
    assert_eq!(stale.code(), tonic::Code::Aborted);
    let output_only = actions.update_action(update(&["overdue"], "", done.clone())).await.unwrap_err();
    assert_eq!(bad_request_fields(&output_only), ["update_mask"]);
    let updated = actions.update_action(update(&["status"], "\"1\"", done)).await.unwrap().into_inner().action.unwrap();
    assert_eq!((updated.status, updated.overdue, updated.version), (proto::ActionStatus::WontDo as i32, false, 2));
    assert!(updated.completed_at.is_some());

    let list = actions
        .list_actions(proto::ListActionsRequest {
            incident_id: reference.clone(),
            statuses: vec![proto::ActionStatus::WontDo as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.actions.len(), 1);
    let none = actions
        .list_actions(proto::ListActionsRequest { overdue: Some(true), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(none.actions.is_empty());
    actions.delete_action(proto::DeleteActionRequest { id: created.id.clone(), etag: "\"2\"".into() }).await.unwrap();
    let gone = actions.get_action(proto::GetActionRequest { id: created.id }).await.unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
}
