//! Concurrency: conditional writes lose no update, idempotent creates create exactly one,
//! and paging while inserts happen neither repeats nor skips.

use std::collections::HashSet;
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::json;
use tonic_types::StatusExt;

use crate::helpers::TestApp;
use incidentd::proto;

/// Read-modify-write over REST: append `[name]` to the summary under `If-Match`, retrying on
/// 412. Returns how many times it had to retry.
async fn rest_writer(app: Arc<TestApp>, path: Arc<String>, name: String) -> u32 {
    let mut conflicts = 0;
    loop {
        let current = app.get(&path).await;
        let etag = current.header("etag").unwrap().to_string();
        let summary = format!("{}[{name}]", current.body["summary"].as_str().unwrap());
        let res = app
            .send(app.client.patch(app.url(&path)).header("if-match", etag).json(&json!({"summary": summary})))
            .await;
        match res.status {
            StatusCode::OK => return conflicts,
            StatusCode::PRECONDITION_FAILED => conflicts += 1,
            other => panic!("unexpected {other}: {}", res.body),
        }
    }
}

/// The same over gRPC, with the `etag` field, retrying on ABORTED.
async fn grpc_writer(app: Arc<TestApp>, id: String, name: String) -> u32 {
    let mut client = app.incidents_grpc().await;
    let mut conflicts = 0;
    loop {
        let current = client
            .get_incident(proto::GetIncidentRequest { id: id.clone() })
            .await
            .unwrap()
            .into_inner()
            .incident
            .unwrap();
        let req = proto::UpdateIncidentRequest {
            incident: Some(proto::Incident {
                id: id.clone(),
                summary: format!("{}[{name}]", current.summary),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths: vec!["summary".into()] }),
            etag: current.etag,
        };
        match client.update_incident(req).await {
            Ok(_) => return conflicts,
            Err(e) if e.code() == tonic::Code::Aborted => conflicts += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_conditional_writes_over_both_transports_lose_no_update() {
    let app = Arc::new(TestApp::spawn().await);
    let i = app.incident("Contended").await;
    let id = i["id"].as_str().unwrap().to_string();
    let path = Arc::new(format!("/v1/incidents/{id}"));
    const WRITERS: usize = 10;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let name = format!("w{w}");
        tasks.push(if w % 2 == 0 {
            tokio::spawn(rest_writer(app.clone(), path.clone(), name))
        } else {
            tokio::spawn(grpc_writer(app.clone(), id.clone(), name))
        });
    }
    let mut conflicts = 0;
    for t in tasks {
        conflicts += t.await.unwrap();
    }
    let fin = app.get(&path).await.body;
    let summary = fin["summary"].as_str().unwrap();
    for w in 0..WRITERS {
        assert_eq!(summary.matches(&format!("[w{w}]")).count(), 1, "writer {w}'s update is there once: {summary}");
    }
    assert_eq!(fin["version"], 1 + WRITERS as i64, "one version per successful write");
    let timeline = app.get(&format!("{path}/updates?page_size=500")).await.body;
    let changes = timeline["updates"].as_array().unwrap().iter().filter(|e| e["kind"] == "field_change").count();
    assert_eq!(changes, WRITERS, "one field-change entry per successful write");
    println!("{conflicts} conflicts were retried");
}

#[tokio::test]
async fn grpc_update_with_a_stale_etag_is_aborted() {
    let app = TestApp::spawn().await;
    let i = app.incident("Etags").await;
    let mut client = app.incidents_grpc().await;
    let req = |etag: &str, title: &str| proto::UpdateIncidentRequest {
        incident: Some(proto::Incident {
            id: i["id"].as_str().unwrap().into(),
            title: title.into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["title".into()] }),
        etag: etag.into(),
    };
    let updated = client.update_incident(req("\"1\"", "First")).await.unwrap().into_inner().incident.unwrap();
    assert_eq!(updated.etag, "\"2\"");
    let err = client.update_incident(req("\"1\"", "Second")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Aborted);
    assert_eq!(err.get_error_details().error_info().unwrap().metadata["current_etag"], "\"2\"");
    let bare = client.update_incident(req("2", "Third")).await.unwrap().into_inner().incident.unwrap();
    assert_eq!(bare.title, "Third", "an unquoted etag is accepted");
    assert_eq!(app.get(&format!("/v1/incidents/{}", i["id"].as_str().unwrap())).await.body["title"], "Third");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicate_creates_with_one_idempotency_key_create_one_incident() {
    let app = Arc::new(TestApp::spawn().await);
    let body = json!({"title": "Storm", "severity": "sev1", "labels": {"source": "alertmanager"}});
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (app, body) = (app.clone(), body.clone());
        tasks.push(tokio::spawn(async move { app.post_idempotent("/v1/incidents", "alert-123", &body).await }));
    }
    let mut ids = HashSet::new();
    let mut replays = 0;
    for t in tasks {
        let res = t.await.unwrap();
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
        ids.insert(res.body["id"].as_str().unwrap().to_string());
        if res.header("idempotent-replayed") == Some("true") {
            replays += 1;
        }
    }
    assert_eq!(ids.len(), 1, "every response names the same incident");
    assert_eq!(replays, 15, "all but the first are replays");
    let listed = app.get("/v1/incidents").await.body;
    assert_eq!(listed["incidents"].as_array().unwrap().len(), 1, "exactly one incident exists");

    // The replay is the first response, even after the incident changed.
    let id = ids.into_iter().next().unwrap();
    app.transition(&id, "identified").await;
    let replay = app.post_idempotent("/v1/incidents", "alert-123", &body).await;
    assert_eq!(replay.status, StatusCode::CREATED);
    assert_eq!(replay.body["status"], "investigating");
    assert_eq!(replay.header("location"), Some(format!("/v1/incidents/{id}").as_str()));

    // The same key with a different body is refused.
    let other =
        app.post_idempotent("/v1/incidents", "alert-123", &json!({"title": "Different", "severity": "sev1"})).await;
    other.problem(422);
    assert_eq!(other.body["code"], "idempotency_key_reused");

    // After 24 hours the key is free again: backdate the record and reuse the key.
    let db = app.db().await;
    db.age_idempotency_keys(24 * 3600 + 1).await;
    let fresh =
        app.post_idempotent("/v1/incidents", "alert-123", &json!({"title": "Different", "severity": "sev1"})).await;
    assert_eq!(fresh.status, StatusCode::CREATED, "{}", fresh.body);
    assert_ne!(fresh.body["id"].as_str().unwrap(), id, "an expired key creates anew");
    assert!(fresh.header("idempotent-replayed").is_none());
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grpc_request_id_is_idempotent_under_concurrency() {
    let app = TestApp::spawn().await;
    let channel = app.channel().await;
    let incident =
        proto::Incident { title: "gRPC storm".into(), severity: proto::Severity::Sev2 as i32, ..Default::default() };
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut client =
            proto::incident_service_client::IncidentServiceClient::with_interceptor(channel.clone(), app.bearer());
        let incident = incident.clone();
        tasks.push(tokio::spawn(async move {
            client
                .create_incident(proto::CreateIncidentRequest { incident: Some(incident), request_id: "req-9".into() })
                .await
                .map(|r| r.into_inner().incident.unwrap().id)
        }));
    }
    let mut ids = HashSet::new();
    for t in tasks {
        ids.insert(t.await.unwrap().expect("create succeeds"));
    }
    assert_eq!(ids.len(), 1);
    let mut client = app.incidents_grpc().await;
    let err = client
        .create_incident(proto::CreateIncidentRequest {
            incident: Some(proto::Incident { title: "changed".into(), ..incident }),
            request_id: "req-9".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert_eq!(err.get_error_details().error_info().unwrap().reason, "IDEMPOTENCY_KEY_REUSED");
    let all = client.list_incidents(proto::ListIncidentsRequest::default()).await.unwrap().into_inner();
    assert_eq!(all.incidents.len(), 1);

    // Idempotent update posts: one entry for repeated posts.
    let id = ids.into_iter().next().unwrap();
    for _ in 0..3 {
        let res = app
            .post_idempotent(
                &format!("/v1/incidents/{id}/updates"),
                "upd-1",
                &json!({"body": "We are on it", "visibility": "public"}),
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED);
    }
    let public = app.get(&format!("/v1/incidents/{id}/updates?visibility=public")).await.body;
    assert_eq!(public["updates"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paging_while_inserting_has_no_duplicates_or_gaps() {
    let app = Arc::new(TestApp::spawn().await);
    let mut seeded = Vec::new();
    for n in 0..60 {
        seeded.push(app.incident(&format!("seed {n}")).await["id"].as_str().unwrap().to_string());
    }
    let writer = {
        let app = app.clone();
        tokio::spawn(async move {
            for n in 0..40 {
                app.incident(&format!("new {n}")).await;
            }
        })
    };
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let q = match &token {
            Some(t) => format!("/v1/incidents?page_size=7&page_token={t}"),
            None => "/v1/incidents?page_size=7".to_string(),
        };
        let page = app.get(&q).await.body;
        for i in page["incidents"].as_array().unwrap() {
            seen.push((i["created_at"].as_str().unwrap().to_string(), i["id"].as_str().unwrap().to_string()));
        }
        match page["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    let ids: Vec<&String> = seen.iter().map(|(_, id)| id).collect();
    let unique: HashSet<&String> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "no incident appears twice");
    for id in &seeded {
        assert!(unique.contains(id), "incident {id}, present from the start, was skipped");
    }
    for pair in seen.windows(2) {
        assert!(pair[0] > pair[1], "strictly newest first: {pair:?}");
    }
}

/// Incidents naming the same components in opposite orders, declared and resolved at once:
/// each change locks the components it touches, and none may deadlock or fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_sharing_components_in_any_order_do_not_deadlock() {
    let app = Arc::new(TestApp::spawn().await);
    let mut ids = Vec::new();
    for name in ["Shared A", "Shared B", "Shared C"] {
        let res = app.post("/v1/components", json!({"name": name})).await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
        ids.push(res.body["id"].as_str().unwrap().to_string());
    }
    let mut tasks = Vec::new();
    for n in 0..48 {
        let app = app.clone();
        let mut order = ids.clone();
        order.rotate_left(n % 3);
        if n % 2 == 1 {
            order.reverse();
        }
        tasks.push(tokio::spawn(async move {
            let affected: Vec<_> =
                order.iter().map(|id| json!({"component_id": id, "status": "partial_outage"})).collect();
            let res = app
                .post(
                    "/v1/incidents",
                    json!({"title": format!("shared {n}"), "severity": "sev2", "affected_components": affected}),
                )
                .await;
            assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
            let path = format!("/v1/incidents/{}/transitions", res.body["id"].as_str().unwrap());
            let res = app.post(&path, json!({"to": "resolved"})).await;
            assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for id in &ids {
        let c = app.get(&format!("/v1/components/{id}")).await;
        assert_eq!(c.body["effective_status"], "operational", "every incident is resolved");
    }
}
