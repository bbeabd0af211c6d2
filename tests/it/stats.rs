//! Analytics: MTTA and MTTR (mean, p50, p90) overall, by severity, by component and by month;
//! causes, providers, root-cause categories, the reopen rate and the follow-up actions; over a
//! window, merged duplicates and incidents outside it left out; computed by the database and
//! checked against figures worked out here; the same over REST and gRPC.

use chrono::{DateTime, Duration, Utc};
use incidentd::proto;
use incidentd::proto::stats_service_client::StatsServiceClient;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, bad_request_fields};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// `percentile_cont`, written out here: the value at rank (n - 1) p, interpolated.
fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = (v.len() - 1) as f64 * p;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    v[lo] + (rank - rank.floor()) * (v[hi] - v[lo])
}

/// What the API should say of these durations.
fn durations(values: &[f64]) -> Value {
    if values.is_empty() {
        return json!({"count": 0, "mean_seconds": null, "p50_seconds": null, "p90_seconds": null});
    }
    // The API gives seconds to the millisecond.
    let ms = |x: f64| (x * 1000.0).round() / 1000.0;
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    json!({"count": values.len(), "mean_seconds": ms(mean), "p50_seconds": ms(percentile(values, 0.5)),
        "p90_seconds": ms(percentile(values, 0.9))})
}

struct Declared {
    id: String,
    reference: String,
}

/// Declares an incident, then gives it these times (declared; acknowledged and resolved that
/// many seconds later).
async fn incident(app: &TestApp, body: Value, declared: &str, ack: Option<i64>, resolve: Option<i64>) -> Declared {
    let created = app.create_incident(body).await;
    let id = created["id"].as_str().unwrap().to_string();
    if ack.is_some() {
        assert_eq!(app.post(&format!("/v1/incidents/{id}/acknowledge"), json!({})).await.status, StatusCode::OK);
    }
    if resolve.is_some() {
        app.transition(&id, "resolved").await;
    }
    let db = app.db().await;
    let filter = format!("id = '{id}'");
    let t0 = at(declared);
    db.set_time("incidents", "created_at", Some(t0), &filter).await;
    db.set_time("incidents", "acknowledged_at", ack.map(|s| t0 + Duration::seconds(s)), &filter).await;
    db.set_time("incidents", "resolved_at", resolve.map(|s| t0 + Duration::seconds(s)), &filter).await;
    db.close().await;
    Declared { id, reference: created["reference"].as_str().unwrap().to_string() }
}

fn yesterday() -> String {
    (Utc::now().date_naive() - Duration::days(1)).to_string()
}

#[tokio::test]
async fn stats_give_mtta_and_mttr_by_severity_component_and_month_with_causes_reopens_and_actions() {
    let app = TestApp::spawn().await;
    let c1 = app.create_component("Checkout").await["id"].as_str().unwrap().to_string();
    let c2 = app.create_component("Search").await["id"].as_str().unwrap().to_string();
    let affects = |ids: &[&str]| -> Value {
        ids.iter().map(|c| json!({"component_id": c, "status": "partial_outage"})).collect()
    };
    let aws = json!({"kind": "third_party", "provider": "AWS"});
    let i1 = incident(
        &app,
        json!({"title": "1", "severity": "sev1", "cause": aws, "affected_components": affects(&[&c1])}),
        "2026-01-10T00:00:00Z",
        Some(60),
        Some(3600),
    )
    .await;
    let i2 = incident(
        &app,
        json!({"title": "2", "severity": "sev1", "cause": aws, "affected_components": affects(&[&c1, &c2])}),
        "2026-01-20T00:00:00Z",
        Some(120),
        Some(7200),
    )
    .await;
    // Reopened once, then resolved again.
    let i3 = incident(
        &app,
        json!({"title": "3", "severity": "sev1", "cause": {"kind": "internal"},
        "affected_components": affects(&[&c2])}),
        "2026-02-05T00:00:00Z",
        Some(180),
        None,
    )
    .await;
    for to in ["resolved", "investigating", "resolved"] {
        app.transition(&i3.id, to).await;
    }
    let db = app.db().await;
    db.set_time("incidents", "resolved_at", Some(at("2026-02-05T00:30:00Z")), &format!("id = '{}'", i3.id)).await;
    db.close().await;
    let i4 = incident(
        &app,
        json!({"title": "4", "severity": "sev2", "cause": {"kind": "third_party", "provider": "Stripe"}}),
        "2026-02-10T00:00:00Z",
        Some(240),
        None,
    )
    .await;
    let i5 = incident(&app, json!({"title": "5", "severity": "sev2"}), "2026-02-20T00:00:00Z", None, Some(600)).await;
    // Left out: a merged duplicate, and an incident before the window.
    let dup = incident(&app, json!({"title": "dup", "severity": "sev3"}), "2026-02-21T00:00:00Z", Some(1), None).await;
    let merged = app.post(&format!("/v1/incidents/{}/merge", dup.reference), json!({"into": i4.reference})).await;
    assert_eq!(merged.status, StatusCode::OK, "{}", merged.body);
    let before = incident(
        &app,
        json!({"title": "old", "severity": "sev1", "cause": aws}),
        "2025-12-31T23:59:59Z",
        Some(5),
        Some(5),
    )
    .await;
    // Postmortems and follow-up actions.
    for (i, category) in [(&i1, "dependency"), (&i2, "dependency"), (&i3, "code_change"), (&before, "capacity")] {
        let res =
            app.post(&format!("/v1/incidents/{}/postmortem", i.id), json!({"root_cause_category": category})).await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    }
    for (i, action) in [
        (&i1, json!({"title": "late", "due_date": yesterday()})),
        (&i2, json!({"title": "done", "status": "done"})),
        (&i3, json!({"title": "later", "due_date": "2099-01-01"})),
        (&before, json!({"title": "old and late", "due_date": yesterday()})),
    ] {
        let res = app.post(&format!("/v1/incidents/{}/actions", i.id), action).await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    }

    let window = "from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z";
    let res = app.get(&format!("/v1/stats?{window}")).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let s = &res.body;
    assert_eq!((s["from"].as_str(), s["to"].as_str()), (Some("2026-01-01T00:00:00Z"), Some("2026-03-01T00:00:00Z")));
    assert_eq!(s["time_zone"], "UTC");
    assert_eq!(s["incidents"], 5);
    assert_eq!(s["mtta"], durations(&[60.0, 120.0, 180.0, 240.0]));
    assert_eq!(s["mttr"], durations(&[3600.0, 7200.0, 1800.0, 600.0]));
    assert_eq!((s["reopened"].as_i64(), s["reopen_rate"].as_f64()), (Some(1), Some(0.25)));
    let sev = |n: usize| &s["by_severity"][n];
    assert_eq!((sev(0)["severity"].as_str(), sev(0)["incidents"].as_i64()), (Some("sev1"), Some(3)));
    assert_eq!(sev(0)["mtta"], durations(&[60.0, 120.0, 180.0]));
    assert_eq!(sev(0)["mttr"], durations(&[3600.0, 7200.0, 1800.0]));
    assert_eq!(
        (sev(1)["incidents"].as_i64(), &sev(1)["mtta"], &sev(1)["mttr"]),
        (Some(2), &durations(&[240.0]), &durations(&[600.0]))
    );
    assert_eq!((sev(2)["incidents"].as_i64(), &sev(3)["mttr"]), (Some(0), &durations(&[])));
    let months: Vec<(&str, i64)> = s["by_month"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["month"].as_str().unwrap(), m["incidents"].as_i64().unwrap()))
        .collect();
    assert_eq!(months, [("2026-01", 2), ("2026-02", 3)]);
    assert_eq!(s["by_month"][0]["mttr"], durations(&[3600.0, 7200.0]));
    assert_eq!(s["by_month"][1]["mtta"], durations(&[180.0, 240.0]));
    let by_component: Vec<(&str, &str, i64)> = s["by_component"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["component_id"].as_str().unwrap(), c["name"].as_str().unwrap(), c["incidents"].as_i64().unwrap()))
        .collect();
    let mut expected = vec![(c1.as_str(), "Checkout", 2), (c2.as_str(), "Search", 2)];
    expected.sort_by_key(|(id, _, _)| id.to_string());
    assert_eq!(by_component, expected);
    let search = s["by_component"].as_array().unwrap().iter().find(|c| c["component_id"] == c2.as_str()).unwrap();
    assert_eq!(search["mtta"], durations(&[120.0, 180.0]));
    assert_eq!(
        s["by_cause_kind"],
        json!([{"cause_kind": "unknown", "incidents": 1}, {"cause_kind": "internal", "incidents": 1},
            {"cause_kind": "third_party", "incidents": 3}])
    );
    assert_eq!(s["by_provider"], json!([{"provider": "AWS", "incidents": 2}, {"provider": "Stripe", "incidents": 1}]));
    assert_eq!(
        s["by_root_cause_category"],
        json!([{"root_cause_category": "dependency", "incidents": 2}, {"root_cause_category": "code_change", "incidents": 1}])
    );
    assert_eq!(s["actions"], json!({"open": 2, "overdue": 1, "done": 1, "wont_do": 0}));
    let _ = i5;

    // gRPC gives the same figures.
    let mut stats = StatsServiceClient::with_interceptor(app.channel().await, app.bearer());
    let ts = |s: &str| prost_types::Timestamp { seconds: at(s).timestamp(), nanos: 0 };
    let g = stats
        .get_stats(proto::GetStatsRequest {
            from: Some(ts("2026-01-01T00:00:00Z")),
            to: Some(ts("2026-03-01T00:00:00Z")),
        })
        .await
        .unwrap()
        .into_inner();
    let d = |d: &Option<proto::Durations>| {
        let d = d.unwrap();
        json!({"count": d.count, "mean_seconds": d.mean_seconds, "p50_seconds": d.p50_seconds, "p90_seconds": d.p90_seconds})
    };
    assert_eq!((g.incidents, g.reopened, g.reopen_rate), (5, 1, Some(0.25)));
    assert_eq!((d(&g.mtta), d(&g.mttr)), (s["mtta"].clone(), s["mttr"].clone()));
    for (i, m) in g.by_month.iter().enumerate() {
        assert_eq!(
            (m.month.as_str(), m.incidents),
            (s["by_month"][i]["month"].as_str().unwrap(), s["by_month"][i]["incidents"].as_i64().unwrap())
        );
        assert_eq!(d(&m.mttr), s["by_month"][i]["mttr"]);
    }
    assert_eq!(g.by_severity[0].severity, proto::Severity::Sev1 as i32);
    assert_eq!(d(&g.by_severity[0].mttr), s["by_severity"][0]["mttr"]);
    assert_eq!(
        g.by_provider.iter().map(|p| (p.provider.as_str(), p.incidents)).collect::<Vec<_>>(),
        [("AWS", 2), ("Stripe", 1)]
    );
    let actions = g.actions.unwrap();
    assert_eq!((actions.open, actions.overdue, actions.done, actions.wont_do), (2, 1, 1, 0));
    assert_eq!(g.by_root_cause_category[0].root_cause_category, proto::RootCauseCategory::Dependency as i32);
}

#[tokio::test]
async fn an_empty_window_has_zero_counts_no_durations_and_every_month_and_bad_windows_are_named() {
    let app = TestApp::spawn().await;
    let res = app.get("/v1/stats?from=2024-11-15T00:00:00Z&to=2025-01-15T00:00:00Z").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let s = res.body;
    assert_eq!((s["incidents"].as_i64(), s["reopen_rate"].clone()), (Some(0), Value::Null));
    assert_eq!(s["mtta"], durations(&[]));
    let months: Vec<&str> = s["by_month"].as_array().unwrap().iter().map(|m| m["month"].as_str().unwrap()).collect();
    assert_eq!(months, ["2024-11", "2024-12", "2025-01"]);
    assert_eq!(s["by_severity"].as_array().unwrap().len(), 4);
    assert_eq!(s["actions"], json!({"open": 0, "overdue": 0, "done": 0, "wont_do": 0}));
    // The default window: the last 30 days.
    let default = app.get("/v1/stats").await.body;
    let (from, to) = (at(default["from"].as_str().unwrap()), at(default["to"].as_str().unwrap()));
    assert_eq!(to - from, Duration::days(30));
    assert!((Utc::now() - to).num_seconds().abs() < 60);

    for (query, field) in [
        ("from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "from"),
        ("from=2000-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", "from"),
        ("from=yesterday", "from"),
        ("to=2026-13-01T00:00:00Z", "to"),
        ("window=30d", "window"),
    ] {
        let res = app.get(&format!("/v1/stats?{query}")).await;
        assert_eq!(res.problem(400)["errors"][0]["field"], field, "{query}: {}", res.body);
    }
    let mut stats = StatsServiceClient::with_interceptor(app.channel().await, app.bearer());
    let ts = |s: &str| Some(prost_types::Timestamp { seconds: at(s).timestamp(), nanos: 0 });
    let err = stats
        .get_stats(proto::GetStatsRequest { from: ts("2026-01-02T00:00:00Z"), to: ts("2026-01-01T00:00:00Z") })
        .await
        .unwrap_err();
    assert_eq!((err.code(), bad_request_fields(&err)), (tonic::Code::InvalidArgument, vec!["from".to_string()]));
}
