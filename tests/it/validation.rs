//! Bad input gets a 4xx naming the field (REST problem+json, gRPC INVALID_ARGUMENT with
//! BadRequest field violations), never a 500, and changes nothing already stored.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, bad_request_fields};
use incidentd::proto;

fn long(n: usize) -> String {
    "x".repeat(n)
}

fn labels(n: usize) -> Value {
    Value::Object((0..n).map(|i| (format!("k{i}"), json!("v"))).collect())
}

#[tokio::test]
async fn rest_create_names_each_bad_field() {
    let app = TestApp::spawn().await;
    let base = json!({"title": "ok", "severity": "sev2"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let cases: Vec<(Value, &str)> = vec![
        (json!({"severity": "sev2"}), "title"),
        (json!({"title": "ok"}), "severity"),
        (with("title", json!("   ")), "title"),
        (with("title", json!(long(201))), "title"),
        (with("summary", json!(long(10_001))), "summary"),
        (with("severity", json!("sev5")), "severity"),
        (with("severity", json!(1)), "severity"),
        (with("impact", json!("catastrophic")), "impact"),
        (with("status", json!("closed")), "status"),
        (with("affected_customers", json!(-5)), "affected_customers"),
        (with("affected_customers", json!("many")), "affected_customers"),
        (with("eta", json!("tomorrow")), "eta"),
        (with("started_at", json!("2999-01-01T00:00:00Z")), "started_at"),
        (with("labels", labels(33)), "labels"),
        (with("labels", json!({"bad key": "v"})), "labels.bad key"),
        (with("labels", json!({"k": 1})), "labels.k"),
        (with("workaround", json!({"availability": "maybe"})), "workaround.availability"),
        (with("workaround", json!({"txt": "typo"})), "workaround.txt"),
        (with("cause", json!({"kind": "aliens"})), "cause.kind"),
        (
            with("affected_components", json!([{"component_id": "nope", "status": "major_outage"}])),
            "affected_components[0].component_id",
        ),
        (
            with("affected_components", json!([{"component_id": uuid::Uuid::now_v7(), "status": "fine"}])),
            "affected_components[0].status",
        ),
        (with("related_incident_ids", json!(["INC-x"])), "related_incident_ids[0]"),
        (with("titel", json!("typo")), "titel"),
        (with("commander", json!(long(201))), "commander"),
    ];
    for (body, field) in cases {
        let res = app.post("/v1/incidents", body.clone()).await;
        res.problem(400);
        assert!(res.error_fields().contains(&field.to_string()), "{body} should name {field}: {}", res.body);
    }
    // Malformed JSON and the wrong media type.
    let res = app
        .send(app.client.post(app.url("/v1/incidents")).header("content-type", "application/json").body("{\"title\": "))
        .await;
    res.problem(400);
    assert_eq!(res.error_fields(), ["body"]);
    let res = app.send(app.client.post(app.url("/v1/incidents")).body("{}")).await;
    res.problem(415);
    let res = app
        .send(app.client.post(app.url("/v1/incidents")).header("content-type", "application/json").body("[1, 2]"))
        .await;
    res.problem(400);
    // Too large.
    let res = app
        .send(
            app.client
                .post(app.url("/v1/incidents"))
                .header("content-type", "application/json")
                .body(format!("{{\"title\": \"{}\"}}", long(2 * 1024 * 1024))),
        )
        .await;
    res.problem(413);
    // Nothing was stored by any of these.
    assert!(app.get("/v1/incidents").await.body["incidents"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn rest_patch_and_queries_name_each_bad_field_and_store_nothing() {
    let app = TestApp::spawn().await;
    let i = app.create_incident(json!({"title": "Keep me", "severity": "sev2", "labels": {"a": "b"}})).await;
    let path = format!("/v1/incidents/{}", i["id"].as_str().unwrap());
    for (body, field) in [
        (json!({"title": null}), "title"),
        (json!({"title": ""}), "title"),
        (json!({"severity": null}), "severity"),
        (json!({"severity": "sev0"}), "severity"),
        (json!({"impact": null}), "impact"),
        (json!({"started_at": null}), "started_at"),
        (json!({"labels": {"x y": "z"}}), "labels.x y"),
        (json!({"summary": long(10_001)}), "summary"),
        (json!({"affected_customers": -1}), "affected_customers"),
        (json!({"workaround": {"availability": "sometimes"}}), "workaround.availability"),
        (json!({"nonsense": true}), "nonsense"),
        (
            json!({"title": "fine", "detected_at": "2000-01-01T00:00:00Z", "started_at": "2001-01-01T00:00:00Z"}),
            "started_at",
        ),
    ] {
        let res = app.patch(&path, body.clone()).await;
        res.problem(400);
        assert!(res.error_fields().contains(&field.to_string()), "{body} should name {field}: {}", res.body);
    }
    let after = app.get(&path).await.body;
    assert_eq!(after, i, "refused patches changed nothing");

    for (query, field) in [
        ("status=done", "status"),
        ("severity=high", "severity"),
        ("component=abc", "component"),
        ("open=maybe", "open"),
        ("created_after=yesterday", "created_after"),
        ("statuss=open", "statuss"),
    ] {
        let res = app.get(&format!("/v1/incidents?{query}")).await;
        res.problem(400);
        assert_eq!(res.error_fields(), [field], "{query}");
    }
    let res = app.get("/v1/incidents?created_after=2026-01-02T00:00:00Z&created_before=2026-01-01T00:00:00Z").await;
    res.problem(400);
    let res = app.get(&format!("{path}/updates?visibility=secret")).await;
    res.problem(400);
    assert_eq!(res.error_fields(), ["visibility"]);
    let res = app.post(&format!("{path}/updates"), json!({"body": ""})).await;
    res.problem(400);
    assert_eq!(res.error_fields(), ["body"]);
    let res = app.post(&format!("{path}/updates"), json!({"body": long(10_001)})).await;
    assert_eq!(res.error_fields(), ["body"]);
    let res = app.post(&format!("{path}/transitions"), json!({"to": "done"})).await;
    res.problem(400);
    assert_eq!(res.error_fields(), ["to"]);
    let res = app.post("/v1/components", json!({"name": long(101)})).await;
    assert_eq!(res.error_fields(), ["name"]);
    let res = app.post("/v1/components", json!({"name": "x", "status": "broken"})).await;
    assert_eq!(res.error_fields(), ["status"]);
    let res = app.post("/v1/components", json!({"name": "x", "position": "first"})).await;
    assert_eq!(res.error_fields(), ["position"]);
    let res = app
        .send(
            app.client
                .post(app.url("/v1/incidents"))
                .header("idempotency-key", "has space")
                .json(&json!({"title": "x", "severity": "sev1"})),
        )
        .await;
    res.problem(400);
    assert_eq!(res.error_fields(), ["Idempotency-Key"]);
    assert_eq!(app.get(&format!("{path}/updates")).await.body["updates"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn grpc_names_each_bad_field() {
    let app = TestApp::spawn().await;
    let mut client = app.incidents_grpc().await;
    let ok = || proto::Incident { title: "ok".into(), severity: proto::Severity::Sev2 as i32, ..Default::default() };
    let cases: Vec<(proto::Incident, &str)> = vec![
        (proto::Incident { title: String::new(), ..ok() }, "incident.title"),
        (proto::Incident { severity: 0, ..ok() }, "incident.severity"),
        (proto::Incident { severity: 42, ..ok() }, "incident.severity"),
        (proto::Incident { title: long(201), ..ok() }, "incident.title"),
        (proto::Incident { impact: 9, ..ok() }, "incident.impact"),
        (proto::Incident { status: proto::IncidentStatus::Closed as i32, ..ok() }, "incident.status"),
        (proto::Incident { affected_customers: Some(-1), ..ok() }, "incident.affected_customers"),
        (
            proto::Incident { labels: (0..33).map(|i| (format!("k{i}"), "v".to_string())).collect(), ..ok() },
            "incident.labels",
        ),
        (
            proto::Incident {
                affected_components: vec![proto::AffectedComponent { component_id: "nope".into(), status: 4 }],
                ..ok()
            },
            "incident.affected_components[0].component_id",
        ),
        (
            proto::Incident {
                affected_components: vec![proto::AffectedComponent {
                    component_id: uuid::Uuid::now_v7().to_string(),
                    status: 0,
                }],
                ..ok()
            },
            "incident.affected_components[0].status",
        ),
        (proto::Incident { related_incident_ids: vec!["bogus".into()], ..ok() }, "incident.related_incident_ids[0]"),
        (proto::Incident { eta: Some(prost_types::Timestamp { seconds: 0, nanos: -5 }), ..ok() }, "incident.eta"),
    ];
    for (incident, field) in cases {
        let err = client
            .create_incident(proto::CreateIncidentRequest {
                incident: Some(incident.clone()),
                request_id: String::new(),
            })
            .await
            .expect_err(&format!("{incident:?} must be refused"));
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{field}: {err:?}");
        assert!(bad_request_fields(&err).contains(&field.to_string()), "{field} not in {:?}", bad_request_fields(&err));
    }
    let err = client
        .create_incident(proto::CreateIncidentRequest { incident: Some(ok()), request_id: "with space".into() })
        .await
        .unwrap_err();
    assert_eq!(bad_request_fields(&err), ["request_id"]);

    let err = client.get_incident(proto::GetIncidentRequest { id: "nope".into() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(bad_request_fields(&err), ["id"]);
    let err = client.get_incident(proto::GetIncidentRequest { id: "INC-404".into() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    let created = client
        .create_incident(proto::CreateIncidentRequest { incident: Some(ok()), request_id: String::new() })
        .await
        .unwrap()
        .into_inner()
        .incident
        .unwrap();
    let update = |mask: &[&str], incident: proto::Incident| proto::UpdateIncidentRequest {
        incident: Some(proto::Incident { id: created.id.clone(), ..incident }),
        update_mask: Some(prost_types::FieldMask { paths: mask.iter().map(|s| s.to_string()).collect() }),
        etag: String::new(),
    };
    for (req, field) in [
        (update(&["status"], ok()), "update_mask"),
        (update(&["reference"], ok()), "update_mask"),
        (update(&["no_such_field"], ok()), "update_mask"),
        (update(&["severity"], proto::Incident { severity: 0, ..ok() }), "incident.severity"),
        (update(&["title"], proto::Incident { title: String::new(), ..ok() }), "incident.title"),
        (update(&["started_at"], ok()), "incident.started_at"),
    ] {
        let err = client.update_incident(req).await.expect_err(field);
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(bad_request_fields(&err), [field]);
    }
    let err =
        client.list_incidents(proto::ListIncidentsRequest { page_size: 501, ..Default::default() }).await.unwrap_err();
    assert_eq!(bad_request_fields(&err), ["page_size"]);
    let err = client
        .list_incidents(proto::ListIncidentsRequest { statuses: vec![0], ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(bad_request_fields(&err), ["statuses[0]"]);
    let err = client
        .list_incidents(proto::ListIncidentsRequest { page_token: "%%%".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(bad_request_fields(&err), ["page_token"]);
    let err = client
        .create_incident_update(proto::CreateIncidentUpdateRequest {
            incident_id: created.id.clone(),
            update: Some(proto::IncidentUpdate::default()),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_request_fields(&err), ["update.body"]);
    let err = client
        .transition_incident(proto::TransitionIncidentRequest { id: created.id.clone(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(bad_request_fields(&err), ["to"]);

    let mut components = app.components_grpc().await;
    let err = components
        .create_component(proto::CreateComponentRequest {
            component: Some(proto::Component::default()),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_request_fields(&err), ["component.name"]);

    let unchanged =
        client.get_incident(proto::GetIncidentRequest { id: created.id.clone() }).await.unwrap().into_inner();
    assert_eq!(unchanged.incident.unwrap(), created, "refused calls changed nothing");
    assert_eq!(app.get("/v1/incidents").await.status, StatusCode::OK);
}

/// Inputs an API fuzzer (schemathesis) found: each must be a clear 4xx (or accepted where the
/// schema allows it), never a 500.
#[tokio::test]
async fn fuzzer_findings_stay_fixed() {
    let app = TestApp::spawn().await;
    // NUL characters cannot be stored in text: refused per field, everywhere.
    for (body, field) in [
        (json!({"title": "a\u{0}b", "severity": "sev1"}), "title"),
        (json!({"title": "ok", "severity": "sev1", "summary": "\u{0}"}), "summary"),
        (json!({"title": "ok", "severity": "sev1", "labels": {"k": "v\u{0}"}}), "labels.k"),
        (json!({"title": "ok", "severity": "sev1", "commander": "x\u{0}"}), "commander"),
    ] {
        let res = app.post("/v1/incidents", body).await;
        res.problem(400);
        assert_eq!(res.error_fields(), [field]);
    }
    let res = app.post("/v1/components", json!({"name": "S\u{0}s"})).await;
    res.problem(400);
    assert_eq!(res.error_fields(), ["name"]);
    let res = app.get("/v1/incidents?q=a%00b").await;
    res.problem(400);
    assert_eq!(res.error_fields(), ["q"]);
    let res = app.get("/v1/components?group=%00").await;
    res.problem(400);
    assert_eq!(res.error_fields(), ["group"]);
    let mut client = app.incidents_grpc().await;
    let err = client
        .list_incidents(proto::ListIncidentsRequest { query: "\u{0}".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(bad_request_fields(&err), ["query"]);

    // A JSON array is not an object, at the top level or nested.
    let res = app.post("/v1/incidents", json!(["ok", null, "sev1"])).await;
    res.problem(400);
    let res =
        app.post("/v1/incidents", json!({"title": "ok", "severity": "sev1", "workaround": ["available", "x"]})).await;
    res.problem(400);
    assert_eq!(res.error_fields(), ["workaround"]);
    let res = app
        .post(
            "/v1/incidents",
            json!({"title": "ok", "severity": "sev1", "affected_components": [[uuid::Uuid::now_v7(), "major_outage"]]}),
        )
        .await;
    res.problem(400);
    assert_eq!(res.error_fields(), ["affected_components[0]"]);
    let i = app.incident("Target").await;
    let ack = format!("/v1/incidents/{}/acknowledge", i["id"].as_str().unwrap());
    app.post(&ack, json!([null])).await.problem(400);
    let res = app.post(&ack, Value::Null).await;
    assert_eq!(res.status, StatusCode::OK, "a null body is an empty acknowledgement: {}", res.body);

    // Integral numbers written with a fraction are integers (as in JSON Schema); others are not.
    let c = app.post("/v1/components", json!({"name": "Floaty", "position": 2.0})).await;
    assert_eq!(c.status, StatusCode::CREATED, "{}", c.body);
    assert_eq!(c.body["position"], 2);
    let res = app.post("/v1/components", json!({"name": "Half", "position": 2.5})).await;
    assert_eq!(res.error_fields(), ["position"]);
    let res = app.post("/v1/components", json!({"name": "Huge", "position": 1e12})).await;
    assert_eq!(res.error_fields(), ["position"]);
    let res = app.post("/v1/incidents", json!({"title": "ok", "severity": "sev1", "affected_customers": 12.0})).await;
    assert_eq!(res.status, StatusCode::CREATED);
    assert_eq!(res.body["affected_customers"], 12);

    // An empty value for an enum filter is an error, not "no filter".
    let res = app.get("/v1/incidents?severity=&severity=").await;
    res.problem(400);
    assert_eq!(res.error_fields(), ["severity", "severity"]);
}
