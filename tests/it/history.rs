//! Component status history and uptime: recorded as incidents open, change and resolve and
//! as a status is set by hand; replayed for incidents recorded before history was kept;
//! the uptime rule; the same over REST and gRPC.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestApp;
use incidentd::proto;

const HOUR: i64 = 3600;

/// `(from_status, to_status, incident_id)` of a history page, newest first.
fn moves(history: &Value) -> Vec<(String, String, Value)> {
    history["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["from_status"].as_str().unwrap().into(),
                c["to_status"].as_str().unwrap().into(),
                c["incident_id"].clone(),
            )
        })
        .collect()
}

fn mv(from: &str, to: &str, incident: &Value) -> (String, String, Value) {
    (from.into(), to.into(), incident.clone())
}

#[tokio::test]
async fn every_change_of_the_effective_status_is_recorded_with_its_cause() {
    let app = TestApp::spawn().await;
    let c = app.create_component("Checkout").await["id"].as_str().unwrap().to_string();
    let other = app.create_component("Search").await["id"].as_str().unwrap().to_string();
    let inc = app
        .create_incident(json!({"title": "Payments down", "severity": "sev1",
            "affected_components": [{"component_id": c, "status": "partial_outage"}]}))
        .await;
    let id = inc["id"].clone();
    // Worse, then a second component, then resolved.
    let res = app
        .patch(
            &format!("/v1/incidents/{}", id.as_str().unwrap()),
            json!({"affected_components": [
            {"component_id": c, "status": "major_outage"}, {"component_id": other, "status": "degraded_performance"}]}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    app.transition(id.as_str().unwrap(), "resolved").await;
    // A status set by hand has no incident.
    assert_eq!(
        app.patch(&format!("/v1/components/{c}"), json!({"status": "under_maintenance"})).await.status,
        StatusCode::OK
    );

    let history = app.get(&format!("/v1/components/{c}/history")).await;
    assert_eq!(history.status, StatusCode::OK);
    assert_eq!(
        moves(&history.body),
        [
            mv("operational", "under_maintenance", &Value::Null),
            mv("major_outage", "operational", &id),
            mv("partial_outage", "major_outage", &id),
            mv("operational", "partial_outage", &id),
        ]
    );
    let times: Vec<&str> =
        history.body["changes"].as_array().unwrap().iter().map(|c| c["changed_at"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");
    let other_history = app.get(&format!("/v1/components/{other}/history")).await.body;
    assert_eq!(
        moves(&other_history),
        [mv("degraded_performance", "operational", &id), mv("operational", "degraded_performance", &id)]
    );

    // Paging walks the same list.
    let first = app.get(&format!("/v1/components/{c}/history?page_size=3")).await.body;
    assert_eq!(first["changes"].as_array().unwrap().len(), 3);
    let token = first["next_page_token"].as_str().unwrap();
    let rest = app.get(&format!("/v1/components/{c}/history?page_size=3&page_token={token}")).await.body;
    assert_eq!(moves(&rest), [mv("operational", "partial_outage", &id)]);
    assert!(rest["next_page_token"].is_null());

    // gRPC gives the same.
    let mut grpc = app.components_grpc().await;
    let pb = grpc
        .list_component_history(proto::ListComponentHistoryRequest { id: c.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let rest_ids: Vec<&str> =
        history.body["changes"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    let grpc_ids: Vec<&str> = pb.changes.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(grpc_ids, rest_ids);
    assert_eq!(pb.changes[1].incident_id, id.as_str().unwrap());
    assert_eq!(pb.changes[0].to_status, proto::ComponentStatus::UnderMaintenance as i32);

    // An unknown component is 404 on both.
    let missing = uuid::Uuid::now_v7();
    assert_eq!(app.get(&format!("/v1/components/{missing}/history")).await.status, StatusCode::NOT_FOUND);
    let err = grpc
        .list_component_history(proto::ListComponentHistoryRequest { id: missing.to_string(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn uptime_counts_major_outages_fully_and_partial_ones_30_percent() {
    let app = TestApp::spawn().await;
    let c = app.create_component("API").await["id"].as_str().unwrap().to_string();
    let db = app.db().await;
    db.shift_back("components", "created_at", 3 * 24 * HOUR, &format!("id = '{c}'")).await;
    let impose = |status: &str| {
        json!({"title": format!("API {status}"), "severity": "sev2",
        "affected_components": [{"component_id": c, "status": status}]})
    };
    // A partial outage of 10 hours, 20 to 10 hours ago; a major outage of the last 6 hours.
    let partial = app.create_incident(impose("partial_outage")).await;
    app.transition(partial["id"].as_str().unwrap(), "resolved").await;
    let major = app.create_incident(impose("major_outage")).await;
    app.transition(major["id"].as_str().unwrap(), "resolved").await;
    let table = "component_status_changes";
    db.shift_back(table, "changed_at", 20 * HOUR, "to_status = 'partial_outage'").await;
    db.shift_back(table, "changed_at", 10 * HOUR, "from_status = 'partial_outage'").await;
    db.shift_back(table, "changed_at", 6 * HOUR, "to_status = 'major_outage'").await;
    db.close().await;

    let from = (chrono::Utc::now() - chrono::Duration::hours(24)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let res = app.get(&format!("/v1/components/{c}/uptime?from={}", from.replace('+', "%2B"))).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let u = &res.body;
    // 6 h + 0.3 × 10 h = 9 h of 24 down.
    let percent = u["uptime_percent"].as_f64().unwrap();
    assert!((percent - 62.5).abs() < 0.01, "{u}");
    assert_eq!(u["time_zone"], "UTC");
    let days = u["days"].as_array().unwrap();
    assert!(days.len() == 2 || days.len() == 1, "{u}");
    let worst: Vec<&str> = days.iter().map(|d| d["worst_status"].as_str().unwrap()).collect();
    assert_eq!(worst.last(), Some(&"major_outage"), "today had the major outage: {u}");
    let today = days.last().unwrap();
    assert!(today["incident_ids"].as_array().unwrap().contains(&major["id"]), "{today}");
    assert!(today["uptime_percent"].as_f64().unwrap() < 100.0);

    // The default window is the last 90 days: the component existed for 3 of them.
    let default = app.get(&format!("/v1/components/{c}/uptime")).await.body;
    let days = default["days"].as_array().unwrap();
    assert!((90..=91).contains(&days.len()), "{}", days.len());
    assert!(days[0]["uptime_percent"].is_null(), "no figure before the component existed");
    let expected = 100.0 * (1.0 - 9.0 / (3.0 * 24.0));
    assert!((default["uptime_percent"].as_f64().unwrap() - expected).abs() < 0.1, "{default}");

    // gRPC agrees.
    let mut grpc = app.components_grpc().await;
    let pb = grpc
        .get_component_uptime(proto::GetComponentUptimeRequest { id: c.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .uptime
        .unwrap();
    assert_eq!(pb.days.len(), days.len());
    assert!((pb.uptime_percent.unwrap() - default["uptime_percent"].as_f64().unwrap()).abs() < 0.01);
    assert_eq!(pb.days.last().unwrap().worst_status, proto::ComponentStatus::MajorOutage as i32);
}

#[tokio::test]
async fn bad_uptime_windows_are_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    let c = app.create_component("API").await["id"].as_str().unwrap().to_string();
    for (query, field) in [
        ("from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "from"),
        ("from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", "from"),
        ("from=yesterday", "from"),
        ("window=90d", "window"),
    ] {
        let res = app.get(&format!("/v1/components/{c}/uptime?{query}")).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{query}: {}", res.body);
        assert_eq!(res.error_fields(), [field], "{query}");
    }
    let mut grpc = app.components_grpc().await;
    let t = |s: i64| prost_types::Timestamp { seconds: s, nanos: 0 };
    let err = grpc
        .get_component_uptime(proto::GetComponentUptimeRequest { id: c, from: Some(t(200)), to: Some(t(100)) })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn incidents_recorded_before_history_was_kept_are_replayed_once() {
    let app = TestApp::spawn().await;
    let c = app.create_component("Checkout").await["id"].as_str().unwrap().to_string();
    let on = |status: &str| json!({"title": "x", "severity": "sev2", "affected_components": [{"component_id": c, "status": status}]});
    let resolved = app.create_incident(on("partial_outage")).await;
    app.transition(resolved["id"].as_str().unwrap(), "resolved").await;
    app.create_incident(on("major_outage")).await;
    let recorded = app.get(&format!("/v1/components/{c}/history")).await.body;
    let tuples = |h: &Value| -> Vec<(String, String, Value, String)> {
        h["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["from_status"].as_str().unwrap().into(),
                    c["to_status"].as_str().unwrap().into(),
                    c["incident_id"].clone(),
                    c["changed_at"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    assert_eq!(tuples(&recorded).len(), 3);

    // As a database from before the history was kept: no history, the replay not done.
    let url = app.stop().await;
    let db = crate::helpers::Db::open(&url).await;
    db.execute("DELETE FROM component_status_changes").await;
    db.execute("UPDATE counters SET value = 0 WHERE name = 'component_history_backfilled'").await;
    db.close().await;
    let app = TestApp::spawn_on(&url).await;
    let replayed = app.get(&format!("/v1/components/{c}/history")).await.body;
    assert_eq!(tuples(&replayed), tuples(&recorded), "the replay gives what was recorded live");

    // Once: a restart does not replay again.
    let url = app.stop().await;
    let app = TestApp::spawn_on(&url).await;
    let again = app.get(&format!("/v1/components/{c}/history")).await.body;
    assert_eq!(again["changes"].as_array().unwrap().len(), 3);
}
