//! REST and gRPC call the same service: what one writes, the other reads identically.

use serde_json::{Value, json};

use crate::helpers::TestApp;
use incidentd::proto;

fn ts(t: &Option<prost_types::Timestamp>) -> Value {
    match t {
        None => Value::Null,
        Some(t) => {
            let dt = chrono::DateTime::from_timestamp(t.seconds, t.nanos as u32).unwrap();
            json!(dt.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        }
    }
}

fn enum_name(debug: String) -> Value {
    // prost enum names are CamelCase variants; the REST names are snake_case.
    let mut out = String::new();
    for (i, c) in debug.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    json!(out)
}

/// A gRPC incident in the REST JSON shape, written independently of the server's converters.
fn as_rest(i: &proto::Incident) -> Value {
    let status = |s: i32| enum_name(format!("{:?}", proto::ComponentStatus::try_from(s).unwrap()));
    let w = i.workaround.clone().unwrap();
    let c = i.cause.clone().unwrap();
    json!({
        "id": i.id, "reference": i.reference, "title": i.title, "summary": i.summary,
        "severity": enum_name(format!("{:?}", proto::Severity::try_from(i.severity).unwrap())),
        "status": enum_name(format!("{:?}", proto::IncidentStatus::try_from(i.status).unwrap())),
        "impact": enum_name(format!("{:?}", proto::Impact::try_from(i.impact).unwrap())),
        "affected_components": i.affected_components.iter()
            .map(|a| json!({"component_id": a.component_id, "status": status(a.status)})).collect::<Vec<_>>(),
        "affected_customers": i.affected_customers,
        "eta": ts(&i.eta),
        "workaround": {
            "availability": enum_name(format!("{:?}", proto::WorkaroundAvailability::try_from(w.availability).unwrap())),
            "text": w.text,
        },
        "cause": {
            "kind": enum_name(format!("{:?}", proto::CauseKind::try_from(c.kind).unwrap())),
            "provider": c.provider, "external_reference": c.external_reference,
        },
        "commander": i.commander, "labels": i.labels, "related_incident_ids": i.related_incident_ids,
        "root_cause": i.root_cause, "resolution_summary": i.resolution_summary, "reopen_count": i.reopen_count,
        "started_at": ts(&i.started_at), "detected_at": ts(&i.detected_at),
        "acknowledged_at": ts(&i.acknowledged_at), "acknowledged_by": i.acknowledged_by,
        "identified_at": ts(&i.identified_at), "mitigated_at": ts(&i.mitigated_at),
        "resolved_at": ts(&i.resolved_at), "closed_at": ts(&i.closed_at),
        "created_at": ts(&i.created_at), "updated_at": ts(&i.updated_at), "version": i.version,
        "merged_into": if i.merged_into.is_empty() { Value::Null } else { json!(i.merged_into) },
    })
}

#[tokio::test]
async fn an_incident_made_over_one_transport_reads_identically_over_the_other() {
    let app = TestApp::spawn().await;
    let component = app.create_component("Edge").await;
    let mut client = app.incidents_grpc().await;

    // REST → gRPC.
    let rest = app
        .create_incident(json!({
            "title": "CDN errors", "summary": "EU only", "severity": "sev2", "impact": "minor",
            "affected_components": [{"component_id": component["id"], "status": "degraded_performance"}],
            "affected_customers": 300, "eta": "2031-01-01T00:00:00.123456Z",
            "workaround": {"availability": "none"}, "cause": {"kind": "third_party", "provider": "Fastly"},
            "labels": {"region": "eu"}, "root_cause": "bad config push"
        }))
        .await;
    let id = rest["id"].as_str().unwrap();
    app.post(&format!("/v1/incidents/{id}/acknowledge"), json!({"by": "gina"})).await;
    app.transition(id, "monitoring").await;
    let rest = app.get(&format!("/v1/incidents/{id}")).await.body;
    let grpc = client.get_incident(proto::GetIncidentRequest { id: id.into() }).await.unwrap().into_inner();
    let grpc = grpc.incident.unwrap();
    assert_eq!(as_rest(&grpc), rest);
    assert_eq!(grpc.etag, app.get(&format!("/v1/incidents/{id}")).await.header("etag").unwrap());

    // gRPC → REST.
    let made = client
        .create_incident(proto::CreateIncidentRequest {
            incident: Some(proto::Incident {
                title: "Queue lag".into(),
                severity: proto::Severity::Sev3 as i32,
                impact: proto::Impact::Major as i32,
                commander: Some("hank".into()),
                related_incident_ids: vec!["INC-1".into()],
                workaround: Some(proto::Workaround {
                    availability: proto::WorkaroundAvailability::Available as i32,
                    text: Some("retry later".into()),
                }),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .incident
        .unwrap();
    let transitioned = client
        .transition_incident(proto::TransitionIncidentRequest {
            id: made.reference.clone(),
            to: proto::IncidentStatus::Identified as i32,
            message: "found it".into(),
            visibility: proto::Visibility::Public as i32,
            actor: "ivy".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .incident
        .unwrap();
    let over_rest = app.get(&format!("/v1/incidents/{}", made.reference)).await.body;
    assert_eq!(as_rest(&transitioned), over_rest);
    assert_eq!(over_rest["related_incident_ids"], json!([id]));

    // Lists agree, in the same order.
    let rest_list: Vec<String> = app.get("/v1/incidents").await.body["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    let grpc_list: Vec<String> = client
        .list_incidents(proto::ListIncidentsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .incidents
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(rest_list, grpc_list);

    // Timelines agree.
    let rest_timeline = app.get(&format!("/v1/incidents/{}/updates", made.id)).await.body;
    let grpc_timeline = client
        .list_incident_updates(proto::ListIncidentUpdatesRequest { incident_id: made.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let rest_entries = rest_timeline["updates"].as_array().unwrap();
    assert_eq!(rest_entries.len(), grpc_timeline.updates.len());
    for (r, g) in rest_entries.iter().zip(&grpc_timeline.updates) {
        assert_eq!(r["id"], g.id.as_str());
        assert_eq!(r["body"], g.body.as_str());
        assert_eq!(r["author"], g.author.as_str());
        assert_eq!(r["created_at"], ts(&g.created_at));
    }
    assert_eq!(rest_entries[1]["body"], "found it");
    assert_eq!(rest_entries[1]["visibility"], "public");
    assert_eq!(rest_entries[1]["author"], "ivy");
}

#[tokio::test]
async fn the_same_bad_input_is_refused_the_same_way() {
    let app = TestApp::spawn().await;
    let mut client = app.incidents_grpc().await;
    let rest = app.post("/v1/incidents", json!({"title": "", "severity": "sev1", "affected_customers": -1})).await;
    rest.problem(400);
    let grpc = client
        .create_incident(proto::CreateIncidentRequest {
            incident: Some(proto::Incident {
                title: String::new(),
                severity: proto::Severity::Sev1 as i32,
                affected_customers: Some(-1),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    let grpc_fields: Vec<String> = crate::helpers::bad_request_fields(&grpc)
        .into_iter()
        .map(|f| f.trim_start_matches("incident.").to_string())
        .collect();
    assert_eq!(rest.error_fields(), grpc_fields);
}
