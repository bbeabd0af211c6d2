//! Events: one per change, in the change's transaction, listed in commit order as CloudEvents;
//! public subscribers' view; live streams that resume without gaps or duplicates.

use std::collections::HashSet;
use std::time::Duration;

use eventsource_stream::Eventsource;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_stream::StreamExt;

use crate::helpers::{TestApp, skip_unless};
use incidentd::proto;

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn every_change_emits_its_event_in_commit_order() {
    let app = TestApp::spawn().await;
    let c = app.create_component("Checkout").await;
    let i = app
        .create_incident(json!({
            "title": "Checkout down", "severity": "sev1", "root_cause": "SECRET-CANARY-1",
            "affected_components": [{"component_id": c["id"], "status": "major_outage"}]
        }))
        .await;
    let id = i["id"].as_str().unwrap();
    let path = format!("/v1/incidents/{id}");
    app.transition(id, "identified").await;
    app.post(&format!("{path}/acknowledge"), json!({})).await;
    app.post(&format!("{path}/updates"), json!({"body": "SECRET-CANARY-2 internal note"})).await;
    app.post(
        &format!("{path}/updates"),
        json!({"body": "Fix rolling out", "visibility": "public", "status": "monitoring"}),
    )
    .await;
    app.patch(&path, json!({"root_cause": "SECRET-CANARY-3"})).await;
    app.patch(&path, json!({"severity": "sev2"})).await;
    app.transition(id, "resolved").await;
    app.transition(id, "investigating").await;
    app.delete(&path).await;

    let events = app.events_after(0, 14).await;
    assert_eq!(
        types(&events),
        [
            "incident.created",
            "component.status_changed",
            "incident.status_changed",
            "incident.acknowledged",
            "incident.update_posted",
            "incident.update_posted",
            "incident.updated",
            "incident.updated",
            "incident.resolved",
            "component.status_changed",
            "incident.reopened",
            "component.status_changed",
            "incident.deleted",
            "component.status_changed",
        ],
    );
    let seqs: Vec<i64> = events.iter().map(|e| e["sequence"].as_str().unwrap().parse().unwrap()).collect();
    assert_eq!(seqs, (1..=14).collect::<Vec<_>>(), "consecutive, in commit order");

    // CloudEvents 1.0 envelope.
    let created = &events[0];
    assert_eq!(created["specversion"], "1.0");
    assert_eq!(created["source"], "http://localhost:8080");
    assert_eq!(created["subject"], id);
    assert_eq!(created["datacontenttype"], "application/json");
    assert!(uuid::Uuid::parse_str(created["id"].as_str().unwrap()).is_ok());
    assert!(created["time"].is_string());
    assert_eq!(created["data"]["incident"]["reference"], "INC-1");
    assert_eq!(created["data"]["incident"]["root_cause"], "SECRET-CANARY-1", "internal view has everything");
    let component_event = &events[1];
    assert_eq!(component_event["subject"], c["id"]);
    assert_eq!(component_event["data"]["previous_status"], "operational");
    assert_eq!(component_event["data"]["component"]["effective_status"], "major_outage");
    assert_eq!(events[5]["data"]["previous_status"], "identified", "an update that moves the status says from where");
    assert_eq!(events[5]["data"]["update"]["body"], "Fix rolling out");
    assert_eq!(events[8]["data"]["previous_status"], "monitoring");
    assert_eq!(events[9]["data"]["component"]["effective_status"], "operational");

    // The public view: internal-only events are absent, internal fields and texts never appear.
    let public = app.get("/v1/events?public=true&page_size=500").await.body;
    let public_events = public["events"].as_array().unwrap();
    assert_eq!(
        types(public_events),
        [
            "incident.created",
            "component.status_changed",
            "incident.status_changed",
            "incident.update_posted",
            "incident.updated",
            "incident.resolved",
            "component.status_changed",
            "incident.reopened",
            "component.status_changed",
            "incident.deleted",
            "component.status_changed",
        ]
    );
    assert!(!public.to_string().contains("SECRET-CANARY"), "no internal text in public events: {public}");
    assert!(public_events[0]["data"]["incident"].get("labels").is_none());
    assert_eq!(public_events[4]["data"]["changed_fields"], json!(["severity"]));

    // Filters and cursors.
    let resolved = app.get("/v1/events?type=incident.resolved&type=incident.reopened").await.body;
    assert_eq!(types(resolved["events"].as_array().unwrap()), ["incident.resolved", "incident.reopened"]);
    let after = app.get("/v1/events?after=12").await.body;
    assert_eq!(after["events"].as_array().unwrap().len(), 2);
    assert_eq!(after["next_cursor"], "14");
    let empty = app.get("/v1/events?after=14").await.body;
    assert_eq!(empty["next_cursor"], "14", "an empty page keeps the cursor");
    let about = app.get(&format!("/v1/events?subject={}", c["id"].as_str().unwrap())).await.body;
    assert_eq!(about["events"].as_array().unwrap().len(), 4);
    for bad in ["after=-1", "after=abc", "type=incident.exploded", "public=maybe"] {
        app.get(&format!("/v1/events?{bad}")).await.problem(400);
    }

    // gRPC lists the same events.
    let mut client =
        proto::event_service_client::EventServiceClient::with_interceptor(app.channel().await, app.bearer());
    let listed = client
        .list_events(proto::ListEventsRequest { page_size: 500, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.events.len(), 14);
    assert_eq!(listed.next_cursor, 14);
    for (g, r) in listed.events.iter().zip(&events) {
        assert_eq!(g.id, r["id"].as_str().unwrap());
        assert_eq!(g.r#type, r["type"].as_str().unwrap());
        assert_eq!(g.sequence.to_string(), r["sequence"].as_str().unwrap());
    }
    let public = client
        .list_events(proto::ListEventsRequest { public_only: true, page_size: 500, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(public.events.len(), 11);
    assert!(!format!("{public:?}").contains("SECRET-CANARY"));
}

#[tokio::test]
async fn a_change_that_fails_emits_nothing() {
    let app = TestApp::spawn().await;
    let i = app.incident("Stays").await;
    let id = i["id"].as_str().unwrap();
    app.post(&format!("/v1/incidents/{id}/transitions"), json!({"to": "closed"})).await.problem(409);
    app.patch(&format!("/v1/incidents/{id}"), json!({"title": ""})).await.problem(400);
    app.patch(&format!("/v1/incidents/{id}"), json!({"title": "Stays"})).await;
    app.create_incident(json!({"title": "Next", "severity": "sev4"})).await;
    let events = app.events_after(0, 2).await;
    assert_eq!(types(&events), ["incident.created", "incident.created"], "refused and no-op changes emit nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_get_gapless_commit_order() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let mut tasks = Vec::new();
    for w in 0..16 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..5 {
                app.incident(&format!("w{w} n{n}")).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let events = app.events_after(0, 80).await;
    let seqs: Vec<i64> = events.iter().map(|e| e["sequence"].as_str().unwrap().parse().unwrap()).collect();
    assert_eq!(seqs, (1..=80).collect::<Vec<_>>());
    let subjects: HashSet<&str> = events.iter().map(|e| e["subject"].as_str().unwrap()).collect();
    assert_eq!(subjects.len(), 80, "each incident's event exactly once");
}

async fn sse_ids(app: &TestApp, after: Option<&str>, want: usize) -> Vec<(String, Value)> {
    let mut req = app.client.get(app.url("/v1/events/stream"));
    if let Some(a) = after {
        req = req.header("Last-Event-ID", a);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut stream = res.bytes_stream().eventsource();
    let mut got = Vec::new();
    while got.len() < want {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("events arrive")
            .expect("stream open")
            .expect("well-formed SSE");
        let data: Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(event.event, data["type"].as_str().unwrap());
        got.push((event.id, data));
    }
    got
}

#[tokio::test]
async fn sse_stream_resumes_after_last_event_id_without_gaps_or_duplicates() {
    let app = TestApp::spawn().await;
    for n in 0..3 {
        app.incident(&format!("before {n}")).await;
    }
    app.events_after(0, 3).await;
    // From the start: the three that exist, then new ones as they commit.
    let reader = {
        let app_url = app.url("/v1/events/stream");
        let client = app.client.clone();
        tokio::spawn(async move {
            let res = client.get(app_url).header("Last-Event-ID", "0").send().await.unwrap();
            let mut stream = res.bytes_stream().eventsource();
            let mut got = Vec::new();
            while got.len() < 5 {
                let e = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap().unwrap().unwrap();
                got.push(e.id);
            }
            got
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.incident("live 1").await;
    app.incident("live 2").await;
    assert_eq!(reader.await.unwrap(), ["1", "2", "3", "4", "5"]);

    // The client "disconnects" after 4, more happen, it reconnects with Last-Event-ID: 4.
    for n in 0..3 {
        app.incident(&format!("while away {n}")).await;
    }
    let resumed = sse_ids(&app, Some("4"), 4).await;
    let ids: Vec<&str> = resumed.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["5", "6", "7", "8"], "everything missed, in order, none twice");
    assert_eq!(resumed[1].1["data"]["incident"]["title"], "while away 0");

    // Without a cursor the stream starts from now.
    let fresh = {
        let client = app.client.clone();
        let url = app.url("/v1/events/stream");
        tokio::spawn(async move {
            let res = client.get(url).send().await.unwrap();
            let mut stream = res.bytes_stream().eventsource();
            tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap().unwrap().unwrap().id
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.incident("after subscribing").await;
    assert_eq!(fresh.await.unwrap(), "9");
    let res = app.send(app.client.get(app.url("/v1/events/stream")).header("Last-Event-ID", "nope")).await;
    res.problem(400);
    assert_eq!(res.error_fields(), ["Last-Event-ID"]);
}

#[tokio::test]
async fn grpc_watch_resumes_after_a_cursor_and_filters() {
    let app = TestApp::spawn().await;
    let mut client =
        proto::event_service_client::EventServiceClient::with_interceptor(app.channel().await, app.bearer());
    let c = app.create_component("Watched").await;
    let mut stream = client
        .watch_events(proto::WatchEventsRequest {
            after: Some(0),
            types: vec!["incident.created".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    app.create_incident(json!({"title": "one", "severity": "sev3",
        "affected_components": [{"component_id": c["id"], "status": "partial_outage"}]}))
        .await;
    app.incident("two").await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let e = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.unwrap().unwrap().unwrap();
        let e = e.event.unwrap();
        assert_eq!(e.r#type, "incident.created", "the filter holds");
        seen.push(e.sequence);
    }
    drop(stream);
    // Sequence 2 was the component's change, filtered out: seqs 1 and 3.
    assert_eq!(seen, [1, 3]);
    app.incident("three").await;
    let mut resumed = client
        .watch_events(proto::WatchEventsRequest { after: Some(3), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let next = tokio::time::timeout(Duration::from_secs(10), resumed.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(next.event.unwrap().sequence, 4);
    let err = client
        .watch_events(proto::WatchEventsRequest { types: vec!["nope".into()], ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn an_event_committed_on_one_replica_reaches_watchers_on_another() {
    skip_unless!(
        Postgres,
        "one process owns a SQLite file; replicas need Postgres (two processes on one file still see each other's events by polling)"
    );
    let a = TestApp::spawn().await;
    let b = TestApp::spawn_on(&a.database_url).await;
    let reader = {
        let client = b.client.clone();
        let url = b.url("/v1/events/stream");
        tokio::spawn(async move {
            let res = client.get(url).send().await.unwrap();
            let mut stream = res.bytes_stream().eventsource();
            let e = tokio::time::timeout(Duration::from_secs(3), stream.next()).await.unwrap().unwrap().unwrap();
            serde_json::from_str::<Value>(&e.data).unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = tokio::time::Instant::now();
    a.incident("on replica A").await;
    let event = reader.await.unwrap();
    assert_eq!(event["data"]["incident"]["title"], "on replica A");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "woken by notification, not by polling: {:?}",
        started.elapsed()
    );
}
