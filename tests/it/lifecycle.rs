//! The lifecycle: every from/to pair on both transports, timestamp stamping, reopening,
//! and the timeline entries transitions add.

use reqwest::StatusCode;
use serde_json::json;
use tonic_types::StatusExt;

use crate::helpers::{STATUSES, TestApp, allowed, path_to};
use incidentd::proto;

fn pb_status(s: &str) -> i32 {
    (match s {
        "investigating" => proto::IncidentStatus::Investigating,
        "identified" => proto::IncidentStatus::Identified,
        "monitoring" => proto::IncidentStatus::Monitoring,
        "resolved" => proto::IncidentStatus::Resolved,
        "closed" => proto::IncidentStatus::Closed,
        other => panic!("{other}"),
    }) as i32
}

#[tokio::test]
async fn transition_matrix_over_rest() {
    let app = TestApp::spawn().await;
    for from in STATUSES {
        for to in STATUSES {
            let i = app.incident(&format!("{from} -> {to}")).await;
            let id = i["id"].as_str().unwrap();
            for step in path_to(from) {
                app.transition(id, step).await;
            }
            let res = app.post(&format!("/v1/incidents/{id}/transitions"), json!({"to": to})).await;
            if allowed(from, to) {
                assert_eq!(res.status, StatusCode::OK, "{from} -> {to} must be allowed: {}", res.body);
                assert_eq!(res.body["status"], to);
            } else {
                res.problem(409);
                assert_eq!(res.body["code"], "invalid_transition");
                let mut listed: Vec<String> = res.body["allowed_transitions"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{from} -> {to}: no allowed_transitions in {}", res.body))
                    .iter()
                    .map(|s| s.as_str().unwrap().to_string())
                    .collect();
                listed.sort();
                let mut expected: Vec<String> =
                    STATUSES.iter().filter(|t| allowed(from, t)).map(|t| t.to_string()).collect();
                expected.sort();
                assert_eq!(listed, expected, "{from} -> {to}: allowed targets");
                assert_eq!(app.get(&format!("/v1/incidents/{id}")).await.body["status"], from, "unchanged");
            }
        }
    }
}

#[tokio::test]
async fn transition_matrix_over_grpc() {
    let app = TestApp::spawn().await;
    let mut client = app.incidents_grpc().await;
    for from in STATUSES {
        for to in STATUSES {
            let i = app.incident(&format!("{from} -> {to}")).await;
            let id = i["reference"].as_str().unwrap().to_string();
            for step in path_to(from) {
                client
                    .transition_incident(proto::TransitionIncidentRequest {
                        id: id.clone(),
                        to: pb_status(step),
                        ..Default::default()
                    })
                    .await
                    .unwrap_or_else(|e| panic!("step to {step}: {e}"));
            }
            let res = client
                .transition_incident(proto::TransitionIncidentRequest {
                    id: id.clone(),
                    to: pb_status(to),
                    ..Default::default()
                })
                .await;
            if allowed(from, to) {
                let incident = res.unwrap_or_else(|e| panic!("{from} -> {to} must be allowed: {e}")).into_inner();
                assert_eq!(incident.incident.unwrap().status, pb_status(to));
            } else {
                let status = res.expect_err(&format!("{from} -> {to} must be refused"));
                assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{from} -> {to}: {status:?}");
                let details = status.get_error_details();
                let info = details.error_info().expect("ErrorInfo");
                assert_eq!(info.reason, "INVALID_TRANSITION");
                let mut listed: Vec<&str> =
                    info.metadata["allowed_transitions"].split(',').filter(|s| !s.is_empty()).collect();
                listed.sort();
                let mut expected: Vec<&str> = STATUSES.iter().copied().filter(|t| allowed(from, t)).collect();
                expected.sort();
                assert_eq!(listed, expected, "{from} -> {to}");
                assert!(details.precondition_failure().is_some(), "PreconditionFailure detail");
            }
        }
    }
}

#[tokio::test]
async fn timestamps_are_stamped_once_and_reopen_clears_resolved_at() {
    let app = TestApp::spawn().await;
    let i = app.incident("Stamps").await;
    let id = i["id"].as_str().unwrap();

    let identified = app.transition(id, "identified").await;
    let identified_at = identified["identified_at"].as_str().unwrap().to_string();
    assert!(identified["mitigated_at"].is_null());

    let monitoring = app.transition(id, "monitoring").await;
    let mitigated_at = monitoring["mitigated_at"].as_str().unwrap().to_string();
    assert_eq!(monitoring["identified_at"], identified_at.as_str());

    // Back to identified and monitoring again: the first times stay.
    app.transition(id, "identified").await;
    let again = app.transition(id, "monitoring").await;
    assert_eq!(again["identified_at"], identified_at.as_str(), "identified_at is stamped once");
    assert_eq!(again["mitigated_at"], mitigated_at.as_str(), "mitigated_at is stamped once");

    let resolved = app.transition(id, "resolved").await;
    let first_resolve = resolved["resolved_at"].as_str().unwrap().to_string();
    assert_eq!(resolved["reopen_count"], 0);

    let reopened = app.transition(id, "investigating").await;
    assert!(reopened["resolved_at"].is_null(), "a reopen clears resolved_at");
    assert_eq!(reopened["reopen_count"], 1);

    let resolved_again = app.transition(id, "resolved").await;
    let second_resolve = resolved_again["resolved_at"].as_str().unwrap();
    assert!(second_resolve > first_resolve.as_str(), "resolved_at is stamped on every resolve");

    app.transition(id, "identified").await;
    let resolved_third = app.transition(id, "resolved").await;
    assert_eq!(resolved_third["reopen_count"], 2);

    let closed = app.transition(id, "closed").await;
    assert!(closed["closed_at"].is_string());
    assert!(closed["updated_at"].as_str().unwrap() >= closed["closed_at"].as_str().unwrap());
    assert_eq!(closed["version"], 11, "one version per change");

    // Every transition appended one entry with from, to, actor and time.
    let res = app
        .post(
            &format!("/v1/incidents/{id}/transitions"),
            json!({"to": "investigating", "message": "nope", "actor": "zed"}),
        )
        .await;
    res.problem(409);
    let timeline = app.get(&format!("/v1/incidents/{id}/updates")).await.body;
    let moves: Vec<(String, String)> = timeline["updates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "status_change")
        .map(|e| {
            assert!(e["created_at"].is_string() && e["author"].is_string());
            (e["status_from"].as_str().unwrap().to_string(), e["status_to"].as_str().unwrap().to_string())
        })
        .collect();
    let expected = [
        ("investigating", "identified"),
        ("identified", "monitoring"),
        ("monitoring", "identified"),
        ("identified", "monitoring"),
        ("monitoring", "resolved"),
        ("resolved", "investigating"),
        ("investigating", "resolved"),
        ("resolved", "identified"),
        ("identified", "resolved"),
        ("resolved", "closed"),
    ];
    let expected: Vec<(String, String)> = expected.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    assert_eq!(moves, expected);
}

#[tokio::test]
async fn transition_message_visibility_and_actor() {
    let app = TestApp::spawn().await;
    let i = app.incident("Messages").await;
    let id = i["id"].as_str().unwrap();
    let res = app
        .post(
            &format!("/v1/incidents/{id}/transitions"),
            json!({"to": "identified", "message": "Bad deploy; rolling back.", "visibility": "public", "actor": "frank"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    app.transition(id, "monitoring").await;
    let timeline = app.get(&format!("/v1/incidents/{id}/updates")).await.body;
    let entries = timeline["updates"].as_array().unwrap();
    assert_eq!(entries[1]["body"], "Bad deploy; rolling back.");
    assert_eq!(entries[1]["visibility"], "public");
    assert_eq!(entries[1]["author"], "frank");
    assert_eq!(entries[2]["visibility"], "internal", "a transition entry is internal by default");
    assert_eq!(entries[2]["author"], "admin");
    assert!(entries[2]["body"].as_str().unwrap().contains("identified"), "a generated body names the move");

    let missing = app.post(&format!("/v1/incidents/{id}/transitions"), json!({})).await;
    missing.problem(400);
    assert_eq!(missing.error_fields(), ["to"]);
    let same = app.post(&format!("/v1/incidents/{id}/transitions"), json!({"to": "monitoring"})).await;
    same.problem(409);
}

#[tokio::test]
async fn create_in_an_open_status_stamps_it() {
    let app = TestApp::spawn().await;
    let i = app.create_incident(json!({"title": "Known cause", "severity": "sev2", "status": "identified"})).await;
    assert_eq!(i["status"], "identified");
    assert_eq!(i["identified_at"], i["created_at"]);
    let res = app.post("/v1/incidents", json!({"title": "Done", "severity": "sev2", "status": "resolved"})).await;
    res.problem(400);
    assert_eq!(res.error_fields(), ["status"]);
}
