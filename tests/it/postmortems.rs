//! Postmortems: one per incident, from draft through review to published, with optimistic
//! concurrency and idempotency; publishing needs a resolved incident, a public summary and a
//! judgement of recurrence, tells customers only the summary, and may close the incident;
//! the same over gRPC.

use incidentd::proto;
use incidentd::proto::postmortem_service_client::PostmortemServiceClient;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tonic_types::StatusExt;

use crate::helpers::{TestApp, bad_request_fields};

async fn resolved_incident(app: &TestApp, title: &str) -> Value {
    let incident = app.create_incident(json!({"title": title, "severity": "sev2"})).await;
    app.transition(incident["id"].as_str().unwrap(), "resolved").await
}

fn path(incident: &Value) -> String {
    format!("/v1/incidents/{}/postmortem", incident["reference"].as_str().unwrap())
}

#[tokio::test]
async fn a_postmortem_is_drafted_reviewed_and_published_and_publishing_closes_the_resolved_incident() {
    let app = TestApp::spawn().await;
    let incident = app
        .create_incident(json!({"title": "Checkout down", "severity": "sev1",
            "cause": {"kind": "third_party", "provider": "Stripe"}}))
        .await;
    let id = incident["id"].as_str().unwrap();
    let pm = path(&incident);

    // Start it: a draft, its third-party flag from the incident's cause, its author the key's.
    let res =
        app.post(&pm, json!({"body": "# What happened\nA bad deploy.", "contributing_factors": ["no canary"]})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(res.header("etag"), Some("\"1\""));
    assert_eq!(res.header("location"), Some(format!("/v1/incidents/{id}/postmortem").as_str()));
    let p = &res.body;
    assert_eq!((p["status"].as_str(), p["third_party"].as_bool()), (Some("draft"), Some(true)));
    assert_eq!((p["root_cause_category"].as_str(), p["author"].as_str()), (Some("unknown"), Some("admin")));
    assert_eq!(p["incident_id"], id);
    // One per incident.
    let again = app.post(&pm, json!({})).await;
    assert_eq!(again.problem(409)["code"], "already_exists");
    assert_eq!(app.get(&pm).await.body, *p, "read back as written");

    // Edits are conditional on the ETag, field errors are named, and a no-op changes nothing.
    let stale = app
        .send(app.client.patch(app.url(&pm)).header("if-match", "\"7\"").json(&json!({"public_summary": "x"})))
        .await;
    assert_eq!(stale.problem(412)["code"], "etag_mismatch");
    let bad = app.patch(&pm, json!({"recurrence_risk": "sometimes", "contributing_factors": [""]})).await;
    bad.problem(400);
    assert!(bad.error_fields().contains(&"recurrence_risk".to_string()), "{}", bad.body);
    let unknown = app.patch(&pm, json!({"status": "published"})).await;
    assert_eq!(unknown.problem(400)["errors"][0]["field"], "status", "the status moves through transitions");
    let same = app.patch(&pm, json!({"contributing_factors": ["no canary"]})).await;
    assert_eq!((same.status, same.header("etag")), (StatusCode::OK, Some("\"1\"")));
    let edited = app
        .send(app.client.patch(app.url(&pm)).header("if-match", "\"1\"").json(&json!({
            "public_summary": "Payments now fail over to a second provider within a minute.",
            "root_cause_category": "dependency"})))
        .await;
    assert_eq!((edited.status, edited.header("etag")), (StatusCode::OK, Some("\"2\"")), "{}", edited.body);

    // The review: no skipping it, no publishing while the incident is open, nothing missing.
    let skip = app.post(&format!("{pm}/transitions"), json!({"to": "published"})).await;
    assert_eq!(skip.problem(409)["code"], "invalid_transition");
    assert_eq!(skip.body["allowed_transitions"], json!(["in_review"]), "{}", skip.body);
    let review = app.post(&format!("{pm}/transitions"), json!({"to": "in_review"})).await;
    assert_eq!(review.body["status"], "in_review", "{}", review.body);
    let open = app.post(&format!("{pm}/transitions"), json!({"to": "published"})).await;
    assert!(open.problem(409)["detail"].as_str().unwrap().contains("resolve it"), "{}", open.body);
    app.transition(id, "resolved").await;
    let missing = app.post(&format!("{pm}/transitions"), json!({"to": "published"})).await;
    missing.problem(400);
    assert_eq!(missing.error_fields(), ["recurrence_risk", "recurrence_reason"]);
    assert_eq!(app.get(&pm).await.body["status"], "in_review", "a refused publication changes nothing");
    app.patch(&pm, json!({"recurrence_risk": "low", "recurrence_reason": "Failover is exercised every week."})).await;
    let published = app.post(&format!("{pm}/transitions"), json!({"to": "published"})).await;
    assert_eq!(published.status, StatusCode::OK, "{}", published.body);
    assert_eq!(published.body["status"], "published");
    assert!(published.body["published_at"].is_string());
    let final_move = app.post(&format!("{pm}/transitions"), json!({"to": "draft"})).await;
    assert_eq!(final_move.problem(409)["allowed_transitions"], json!([]), "published is final");

    // Publishing closed the resolved incident, and its timeline says so.
    let closed = app.get(&format!("/v1/incidents/{id}")).await.body;
    assert_eq!(closed["status"], "closed");
    let timeline = app.get(&format!("/v1/incidents/{id}/updates")).await.body;
    let last = timeline["updates"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((last["status_to"].as_str(), last["kind"].as_str()), (Some("closed"), Some("status_change")));

    // A published postmortem stays publishable: its summary cannot be emptied.
    let emptied = app.patch(&pm, json!({"public_summary": null})).await;
    assert_eq!(emptied.problem(400)["errors"][0]["field"], "public_summary");

    // One event per change: created, three updates (edit, review, the later edit), published,
    // and the incident's close; public subscribers hear of the publication only.
    let events = app.events_after(0, 8).await;
    let about: Vec<&str> = events
        .iter()
        .filter(|e| e["subject"] == id)
        .map(|e| e["type"].as_str().unwrap())
        .filter(|t| t.starts_with("postmortem.") || *t == "incident.status_changed")
        .collect();
    assert_eq!(
        about,
        [
            "postmortem.created",
            "postmortem.updated",
            "postmortem.updated",
            "postmortem.updated",
            "postmortem.published",
            "incident.status_changed"
        ]
    );
    let public = app.get("/v1/events?public=true&type=postmortem.published").await.body;
    let e = &public["events"][0];
    assert_eq!(e["data"]["postmortem"]["summary"], "Payments now fail over to a second provider within a minute.");
    assert!(!e.to_string().contains("bad deploy") && !e.to_string().contains("no canary"), "{e}");
    let internal = app.get("/v1/events?type=postmortem.created").await.body;
    assert!(internal["events"][0]["data"]["postmortem"]["body"].as_str().unwrap().contains("bad deploy"));
    let no_public_drafts = app.get("/v1/events?public=true&type=postmortem.created").await.body;
    assert_eq!(no_public_drafts["events"], json!([]));
}

#[tokio::test]
async fn publishing_leaves_the_incident_resolved_when_so_configured_and_repeats_are_idempotent() {
    let app = TestApp::spawn_with(|c| c.postmortem_closes_incident = false).await;
    let incident = resolved_incident(&app, "Search slow").await;
    let pm = path(&incident);
    let body = json!({"public_summary": "Search indexes are rebuilt in the background now.",
        "recurrence_risk": "medium", "recurrence_reason": "The rebuild is new."});
    let first = app.post_idempotent(&pm, "pm-1", &body).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let replay = app.post_idempotent(&pm, "pm-1", &body).await;
    assert_eq!((replay.status, replay.header("idempotent-replayed")), (StatusCode::CREATED, Some("true")));
    assert_eq!(replay.body, first.body);
    let other = app.post_idempotent(&pm, "pm-1", &json!({"body": "different"})).await;
    assert_eq!(other.problem(422)["code"], "idempotency_key_reused");
    for to in ["in_review", "published"] {
        let res = app.post(&format!("{pm}/transitions"), json!({"to": to})).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    }
    let after = app.get(&format!("/v1/incidents/{}", incident["id"].as_str().unwrap())).await.body;
    assert_eq!(after["status"], "resolved", "INCIDENTD_POSTMORTEM_CLOSES_INCIDENT=false keeps it resolved");

    // Errors a reader can act on.
    assert_eq!(app.get("/v1/incidents/INC-99/postmortem").await.problem(404)["code"], "not_found");
    let none = app.incident("no postmortem yet").await;
    let missing = app.get(&path(&none)).await;
    assert!(missing.problem(404)["detail"].as_str().unwrap().contains("postmortem"), "{}", missing.body);
    let no_to = app.post(&format!("{pm}/transitions"), json!({})).await;
    assert_eq!(no_to.problem(400)["errors"][0]["field"], "to");
    let huge = app.post(&path(&none), json!({"body": "x".repeat(100_001)})).await;
    assert_eq!(huge.problem(400)["errors"][0]["field"], "body");
    let wrong_type = app.request(Method::POST, &path(&none), Some(json!({"third_party": "yes"}))).await;
    assert_eq!(wrong_type.problem(400)["errors"][0]["field"], "third_party");
}

#[tokio::test]
async fn postmortems_over_grpc_follow_the_same_rules_and_read_as_over_rest() {
    let app = TestApp::spawn().await;
    let mut pms = PostmortemServiceClient::with_interceptor(app.channel().await, app.bearer());
    let incident = resolved_incident(&app, "Login errors").await;
    let reference = incident["reference"].as_str().unwrap().to_string();
    let created = pms
        .create_postmortem(proto::CreatePostmortemRequest {
            incident_id: reference.clone(),
            postmortem: Some(proto::Postmortem {
                body: "Internal analysis".into(),
                contributing_factors: vec!["stale cache".into()],
                root_cause_category: proto::RootCauseCategory::ConfigurationChange as i32,
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .postmortem
        .unwrap();
    assert_eq!(created.status, proto::PostmortemStatus::Draft as i32);
    assert_eq!(created.etag, "\"1\"");
    let again = pms
        .create_postmortem(proto::CreatePostmortemRequest { incident_id: reference.clone(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::AlreadyExists);

    // Update by field mask, conditional on the etag.
    let update = |mask: &[&str], etag: &str, p: proto::Postmortem| proto::UpdatePostmortemRequest {
        incident_id: reference.clone(),
        postmortem: Some(p),
        update_mask: Some(prost_types::FieldMask { paths: mask.iter().map(|m| m.to_string()).collect() }),
        etag: etag.into(),
    };
    let summary =
        proto::Postmortem { public_summary: "Sessions are kept across restarts now.".into(), ..Default::default() };
    let stale = pms.update_postmortem(update(&["public_summary"], "\"9\"", summary.clone())).await.unwrap_err();
    assert_eq!(stale.code(), tonic::Code::Aborted);
    let status = pms.update_postmortem(update(&["status"], "", summary.clone())).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(bad_request_fields(&status), ["update_mask"]);
    let updated = pms
        .update_postmortem(update(&["public_summary"], "\"1\"", summary))
        .await
        .unwrap()
        .into_inner()
        .postmortem
        .unwrap();
    assert_eq!((updated.version, updated.body.as_str()), (2, "Internal analysis"), "only the masked field");

    // Moves: the review cannot be skipped; publishing names what is missing.
    let transition = |to: proto::PostmortemStatus| proto::TransitionPostmortemRequest {
        incident_id: reference.clone(),
        to: to as i32,
        etag: String::new(),
    };
    let skip = pms.transition_postmortem(transition(proto::PostmortemStatus::Published)).await.unwrap_err();
    assert_eq!(skip.code(), tonic::Code::FailedPrecondition);
    assert_eq!(skip.get_error_details().error_info().unwrap().reason, "INVALID_TRANSITION");
    pms.transition_postmortem(transition(proto::PostmortemStatus::InReview)).await.unwrap();
    let missing = pms.transition_postmortem(transition(proto::PostmortemStatus::Published)).await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::InvalidArgument);
    assert_eq!(bad_request_fields(&missing), ["postmortem.recurrence_risk", "postmortem.recurrence_reason"]);
    let judged = proto::Postmortem {
        recurrence_risk: proto::RecurrenceRisk::High as i32,
        recurrence_reason: Some("The cache is shared.".into()),
        ..Default::default()
    };
    pms.update_postmortem(update(&[], "", judged)).await.unwrap();
    let published = pms
        .transition_postmortem(transition(proto::PostmortemStatus::Published))
        .await
        .unwrap()
        .into_inner()
        .postmortem
        .unwrap();
    assert_eq!(published.status, proto::PostmortemStatus::Published as i32);
    assert!(published.published_at.is_some());
    let unspecified = pms.transition_postmortem(transition(proto::PostmortemStatus::Unspecified)).await.unwrap_err();
    assert_eq!(bad_request_fields(&unspecified), ["to"]);

    // The same postmortem over both transports.
    let grpc = pms
        .get_postmortem(proto::GetPostmortemRequest { incident_id: reference.clone() })
        .await
        .unwrap()
        .into_inner()
        .postmortem
        .unwrap();
    let rest = app.get(&path(&incident)).await.body;
    assert_eq!(grpc.public_summary, rest["public_summary"].as_str().unwrap());
    assert_eq!(grpc.version, rest["version"].as_i64().unwrap());
    assert_eq!(grpc.recurrence_reason.as_deref(), rest["recurrence_reason"].as_str());
    assert_eq!(grpc.contributing_factors, ["stale cache"]);
    assert_eq!(rest["root_cause_category"], "configuration_change");
    assert_eq!(rest["recurrence_risk"], "high");
    let absent = pms.get_postmortem(proto::GetPostmortemRequest { incident_id: "INC-999".into() }).await.unwrap_err();
    assert_eq!(absent.code(), tonic::Code::NotFound);
}
