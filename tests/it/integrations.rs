//! Alert ingestion: integrations over REST, Alertmanager and Grafana webhooks (including a
//! real Alertmanager started here), PagerDuty Events API v2 as PagerDuty answers it, and
//! acknowledgement deadlines.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestApp;

/// Creates an integration and returns `(id, secret)`.
pub async fn integration(app: &TestApp, body: Value) -> (String, String) {
    let res = app.post("/v1/integrations", body).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    (res.body["id"].as_str().unwrap().to_string(), res.body["secret"].as_str().unwrap().to_string())
}

/// An Alertmanager webhook notification (version 4) for `group` with these alerts.
pub fn notification(group: &str, alerts: &[(&str, &str, &str)]) -> Value {
    let alerts: Vec<Value> = alerts
        .iter()
        .map(|(status, instance, fingerprint)| {
            json!({
                "status": status,
                "labels": {"alertname": group, "instance": instance, "severity": "critical", "team": "db"},
                "annotations": {"summary": format!("{group} on {instance}"), "description": "p99 above 2s"},
                "startsAt": "2026-11-30T10:00:00Z",
                "endsAt": if *status == "resolved" { "2026-11-30T10:05:00Z" } else { "0001-01-01T00:00:00Z" },
                "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
                "fingerprint": fingerprint,
            })
        })
        .collect();
    let all_resolved = alerts.iter().all(|a| a["status"] == "resolved");
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{group}\"}}"),
        "truncatedAlerts": 0,
        "status": if all_resolved { "resolved" } else { "firing" },
        "receiver": "incidentd",
        "groupLabels": {"alertname": group},
        "commonLabels": {"alertname": group},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
    })
}

pub async fn push(app: &TestApp, path: &str, secret: &str, body: &Value) -> crate::helpers::Res {
    app.send(crate::helpers::http_client().post(app.url(path)).bearer_auth(secret).json(body)).await
}

async fn alerts_of(app: &TestApp, integration: &str) -> Vec<Value> {
    let res = app.get(&format!("/v1/integrations/{integration}/alerts?page_size=500")).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    res.body["alerts"].as_array().unwrap().clone()
}

async fn timeline(app: &TestApp, incident: &str) -> Vec<Value> {
    let res = app.get(&format!("/v1/incidents/{incident}/updates?page_size=500")).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    res.body["updates"].as_array().unwrap().clone()
}

#[tokio::test]
async fn integrations_are_admin_managed_with_a_secret_shown_once() {
    let app = TestApp::spawn().await;
    let db = app.create_component("Database").await;
    let res = app
        .post(
            "/v1/integrations",
            json!({"name": "prod alerts", "kind": "alertmanager", "default_severity": "sev2",
                   "rules": [{"labels": {"team": "db"}, "severity": "sev1", "components": [db["id"]]}]}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let id = res.body["id"].as_str().unwrap().to_string();
    let secret = res.body["secret"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 32);
    assert!(secret.starts_with(res.body["secret_prefix"].as_str().unwrap()));
    assert_eq!(res.body["receiver_url"], format!("http://localhost:8080/v1/integrations/{id}/alertmanager"));
    assert_eq!((&res.body["grouping"], &res.body["auto_resolve"]), (&json!("group_key"), &json!(true)));
    // Never again.
    let got = app.get(&format!("/v1/integrations/{id}")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(got.body.get("secret").is_none(), "{}", got.body);
    assert_eq!(got.header("etag"), Some("\"1\""));
    let listed = app.get("/v1/integrations").await;
    assert_eq!(listed.body["integrations"].as_array().unwrap().len(), 1);
    assert!(!listed.body.to_string().contains(&secret));
    // Only a hash is stored.
    let db_rows = app.db().await.rows_as_text("integrations").await;
    assert!(db_rows.iter().all(|r| !r.contains(&secret)), "{db_rows:?}");

    // Bad input names the field; unknown components are refused.
    let bad = app
        .post(
            "/v1/integrations",
            json!({"kind": "nagios", "rules": [{"labels": {}, "components": [uuid::Uuid::nil()]}]}),
        )
        .await;
    bad.problem(400);
    assert!(bad.error_fields().contains(&"kind".to_string()), "{}", bad.body);
    let bad = app
        .post(
            "/v1/integrations",
            json!({"name": "x", "kind": "grafana", "rules": [{"components": [uuid::Uuid::nil()]}]}),
        )
        .await;
    bad.problem(400);
    assert_eq!(bad.error_fields(), vec!["rules[0].components[0]"]);

    // Patch with If-Match; a stale tag is 412.
    let stale = app
        .send(
            app.client
                .patch(app.url(&format!("/v1/integrations/{id}")))
                .header("if-match", "\"7\"")
                .json(&json!({"auto_resolve": false})),
        )
        .await;
    stale.problem(412);
    let patched =
        app.patch(&format!("/v1/integrations/{id}"), json!({"auto_resolve": false, "grouping": "fingerprint"})).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!((&patched.body["auto_resolve"], &patched.body["version"]), (&json!(false), &json!(2)));

    // Rotating: the old secret stops working at once, the new one works.
    let rotated = app.post(&format!("/v1/integrations/{id}/rotate-secret"), json!({})).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let new_secret = rotated.body["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    let path = format!("/v1/integrations/{id}/alertmanager");
    let body = notification("DiskFull", &[("firing", "db-1", "f1")]);
    push(&app, &path, &secret, &body).await.problem(401);
    let ok = push(&app, &path, &new_secret, &body).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    // The rules decided severity and components.
    let incident = app.get(&format!("/v1/incidents/{}", ok.body["groups"][0]["incident_id"].as_str().unwrap())).await;
    assert_eq!(incident.body["severity"], "sev1");
    assert_eq!(incident.body["affected_components"][0]["component_id"], db["id"]);
    assert_eq!(incident.body["affected_components"][0]["status"], "major_outage");

    // Deleting: the secret stops working; the alerts stay on their incident.
    let deleted = app.delete(&format!("/v1/integrations/{id}")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    push(&app, &path, &new_secret, &body).await.problem(401);
    let kept = app.get(&format!("/v1/incidents/{}/alerts", incident.body["id"].as_str().unwrap())).await;
    assert_eq!(kept.body["alerts"].as_array().unwrap().len(), 1, "{}", kept.body);
}

#[tokio::test]
async fn a_group_opens_one_incident_that_repeats_join_and_resolving_every_alert_resolves() {
    let app = TestApp::spawn().await;
    let (id, secret) = integration(&app, json!({"name": "am", "kind": "alertmanager"})).await;
    let path = format!("/v1/integrations/{id}/alertmanager");

    let first = push(&app, &path, &secret, &notification("HighLatency", &[("firing", "api-1", "a1")])).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.body["groups"][0]["opened"], true);
    let incident_id = first.body["groups"][0]["incident_id"].as_str().unwrap().to_string();
    let incident = app.get(&format!("/v1/incidents/{incident_id}")).await.body;
    assert_eq!(incident["title"], "HighLatency on api-1");
    assert_eq!(incident["severity"], "sev1", "the severity label: critical");
    assert_eq!(incident["started_at"], "2026-11-30T10:00:00Z");
    assert_eq!(incident["labels"]["instance"], "api-1");
    assert_eq!(incident["summary"], "", "what the alert says stays on the internal timeline");

    // A repeat, then a second alert of the group: the same incident, a timeline entry each.
    for body in [
        notification("HighLatency", &[("firing", "api-1", "a1")]),
        notification("HighLatency", &[("firing", "api-1", "a1"), ("firing", "api-2", "a2")]),
    ] {
        let res = push(&app, &path, &secret, &body).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        assert_eq!(res.body["groups"][0]["incident_id"], incident_id.as_str());
        assert_eq!(res.body["groups"][0]["opened"], false);
    }
    let count = app.get("/v1/incidents").await.body["incidents"].as_array().unwrap().len();
    assert_eq!(count, 1, "never a second incident");
    // One alert cleared: still open.
    let res = push(
        &app,
        &path,
        &secret,
        &notification("HighLatency", &[("resolved", "api-1", "a1"), ("firing", "api-2", "a2")]),
    )
    .await;
    assert_eq!(res.body["groups"][0]["resolved"], false, "{}", res.body);
    assert_eq!(app.get(&format!("/v1/incidents/{incident_id}")).await.body["status"], "investigating");
    // Every alert cleared: resolved by itself.
    let res = push(
        &app,
        &path,
        &secret,
        &notification("HighLatency", &[("resolved", "api-1", "a1"), ("resolved", "api-2", "a2")]),
    )
    .await;
    assert_eq!(res.body["groups"][0]["resolved"], true, "{}", res.body);
    let incident = app.get(&format!("/v1/incidents/{incident_id}")).await.body;
    assert_eq!(incident["status"], "resolved");

    // The internal timeline says what fired and cleared; every alert is kept and linked.
    let entries = timeline(&app, &incident_id).await;
    let alert_entries: Vec<&Value> = entries.iter().filter(|e| e["kind"] == "alert").collect();
    assert_eq!(alert_entries.len(), 5, "{entries:?}");
    assert!(alert_entries.iter().all(|e| e["visibility"] == "internal"));
    assert!(alert_entries[0]["body"].as_str().unwrap().contains("1 firing"), "{}", alert_entries[0]);
    assert!(alert_entries[0]["body"].as_str().unwrap().contains("p99 above 2s"), "{}", alert_entries[0]);
    assert!(alert_entries[4]["body"].as_str().unwrap().contains("2 resolved"), "{}", alert_entries[4]);
    assert!(entries.iter().any(|e| e["kind"] == "status_change" && e["status_to"] == "resolved"));
    let alerts = alerts_of(&app, &id).await;
    assert_eq!(alerts.len(), 8);
    assert!(alerts.iter().all(|a| a["incident_id"] == incident_id.as_str()));
    assert_eq!(alerts[0]["payload"]["labels"]["instance"], "api-2", "the raw alert, newest first");
    // Nothing internal reaches the public page.
    let public = crate::helpers::http_client().get(app.url("/api/v2/incidents.json")).send().await.unwrap();
    let public = public.text().await.unwrap();
    for internal in ["prometheus:9090", "p99 above 2s", "instance", "firing"] {
        assert!(!public.contains(internal), "{internal} in {public}");
    }

    // It fires again after the resolve: a new incident.
    let again = push(&app, &path, &secret, &notification("HighLatency", &[("firing", "api-1", "a1")])).await;
    assert_eq!(again.body["groups"][0]["opened"], true, "{}", again.body);
    assert_ne!(again.body["groups"][0]["incident_id"], incident_id.as_str());
}

#[tokio::test]
async fn without_auto_resolve_the_timeline_tells_a_human_and_fingerprints_group_apart() {
    let app = TestApp::spawn().await;
    let (id, secret) =
        integration(&app, json!({"name": "g", "kind": "grafana", "grouping": "fingerprint", "auto_resolve": false}))
            .await;
    let path = format!("/v1/integrations/{id}/grafana");
    // Grafana's payload: Alertmanager's with extra fields.
    let mut body = notification("CPU", &[("firing", "web-1", "g1"), ("firing", "web-2", "g2")]);
    body["orgId"] = json!(1);
    body["state"] = json!("alerting");
    body["title"] = json!("[FIRING:2] CPU");
    body["message"] = json!("**Firing**");
    for a in body["alerts"].as_array_mut().unwrap() {
        a["values"] = json!({"B": 97.5});
        a["valueString"] = json!("[ var='B' value=97.5 ]");
        a["silenceURL"] = json!("http://grafana/alerting/silence/new");
        a["dashboardURL"] = json!("http://grafana/d/abc");
        a["panelURL"] = json!("http://grafana/d/abc?viewPanel=2");
    }
    let res = push(&app, &path, &secret, &body).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let groups = res.body["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "one incident per alert: {}", res.body);
    assert_ne!(groups[0]["incident_id"], groups[1]["incident_id"]);
    let g1 = groups.iter().find(|g| g["dedup_key"] == "g1").unwrap()["incident_id"].as_str().unwrap().to_string();
    // An Alertmanager payload at the Grafana integration's other door: refused.
    let wrong = push(&app, &format!("/v1/integrations/{id}/alertmanager"), &secret, &body).await;
    wrong.problem(404);
    // Cleared, but auto-resolve is off: it stays open and the timeline says so.
    let cleared = notification("CPU", &[("resolved", "web-1", "g1")]);
    let res = push(&app, &path, &secret, &cleared).await;
    assert_eq!(res.body["groups"][0]["resolved"], false);
    assert_eq!(app.get(&format!("/v1/incidents/{g1}")).await.body["status"], "investigating");
    let entries = timeline(&app, &g1).await;
    assert!(entries.iter().any(|e| e["body"].as_str().unwrap().contains("Auto-resolve is off")), "{entries:?}");
    // Basic auth with the secret as password works too (Grafana's option).
    let basic = app
        .send(crate::helpers::http_client().post(app.url(&path)).basic_auth("grafana", Some(&secret)).json(&cleared))
        .await;
    assert_eq!(basic.status, StatusCode::OK, "{}", basic.body);
}

#[tokio::test]
async fn bad_payloads_get_clear_errors_and_store_nothing() {
    let app = TestApp::spawn_with(|c| c.max_request_bytes = 64 * 1024).await;
    let (id, secret) = integration(&app, json!({"name": "am", "kind": "alertmanager"})).await;
    let path = format!("/v1/integrations/{id}/alertmanager");
    let good = notification("X", &[("firing", "h", "f")]);
    let client = crate::helpers::http_client();
    // Unauthenticated: no header, a wrong secret, an unknown integration.
    let res = app.send(client.post(app.url(&path)).json(&good)).await;
    res.problem(401);
    push(&app, &path, "wrong-secret", &good).await.problem(401);
    push(&app, &format!("/v1/integrations/{}/alertmanager", uuid::Uuid::now_v7()), &secret, &good).await.problem(401);
    // Malformed: not JSON, fields missing or of the wrong type, no alerts.
    let res = app.send(client.post(app.url(&path)).bearer_auth(&secret).body("{not json")).await;
    res.problem(400);
    let mut missing = good.clone();
    missing["alerts"][0].as_object_mut().unwrap().remove("labels");
    let res = push(&app, &path, &secret, &missing).await;
    res.problem(400);
    assert_eq!(res.error_fields(), vec!["alerts[0].labels"], "{}", res.body);
    let mut wrong = good.clone();
    wrong["alerts"][0]["status"] = json!("exploded");
    let res = push(&app, &path, &secret, &wrong).await;
    res.problem(400);
    assert_eq!(res.error_fields(), vec!["alerts[0].status"], "{}", res.body);
    let mut nul = good.clone();
    nul["alerts"][0]["labels"]["instance"] = json!("a\u{0}b");
    let res = push(&app, &path, &secret, &nul).await;
    res.problem(400);
    assert_eq!(res.error_fields(), vec!["body"], "{}", res.body);
    let mut none = good.clone();
    none["alerts"] = json!([]);
    push(&app, &path, &secret, &none).await.problem(400);
    // Oversized.
    let mut big = good.clone();
    big["alerts"][0]["annotations"]["description"] = json!("x".repeat(70 * 1024));
    let res = push(&app, &path, &secret, &big).await;
    res.problem(413);
    // Nothing was stored.
    assert!(alerts_of(&app, &id).await.is_empty());
    assert!(app.get("/v1/incidents").await.body["incidents"].as_array().unwrap().is_empty());
    // The API stays up.
    assert_eq!(push(&app, &path, &secret, &good).await.status, StatusCode::OK);
}

#[tokio::test]
async fn concurrent_deliveries_of_new_groups_open_one_incident_each() {
    let app = TestApp::spawn().await;
    let (id, secret) = integration(&app, json!({"name": "storm", "kind": "alertmanager"})).await;
    let path = format!("/v1/integrations/{id}/alertmanager");
    let mut tasks = Vec::new();
    for g in 0..8 {
        for n in 0..5 {
            let url = app.url(&path);
            let secret = secret.clone();
            let body = notification(&format!("G{g}"), &[("firing", &format!("h{n}"), &format!("f{g}-{n}"))]);
            tasks.push(tokio::spawn(async move {
                crate::helpers::http_client().post(url).bearer_auth(secret).json(&body).send().await.unwrap().status()
            }));
        }
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    let incidents = app.get("/v1/incidents?page_size=100").await.body["incidents"].as_array().unwrap().clone();
    assert_eq!(incidents.len(), 8, "one per group");
    assert_eq!(alerts_of(&app, &id).await.len(), 40, "no alert lost");
}

fn pagerduty_trigger(routing_key: &str, dedup_key: Option<&str>) -> Value {
    // PagerDuty's documented example trigger (Events API v2, "Send an Alert Event").
    let mut event = json!({
        "payload": {
            "summary": "Example alert on host1.example.com",
            "timestamp": "2015-07-17T08:42:58.315+0000",
            "source": "monitoringtool:cloudvendor:central-region-dc-01:852559987:cluster/api-stats-prod-003",
            "severity": "info",
            "component": "postgres",
            "group": "prod-datapipe",
            "class": "deploy",
            "custom_details": {"ping time": "1500ms", "load avg": 0.75}
        },
        "routing_key": routing_key,
        "images": [{"src": "https://www.pagerduty.com/wp-content/uploads/2016/05/pagerduty-logo-green.png",
                    "href": "https://example.com/", "alt": "Example text"}],
        "links": [{"href": "https://example.com/", "text": "Link text"}],
        "event_action": "trigger",
        "client": "Sample Monitoring Service",
        "client_url": "https://monitoring.example.com"
    });
    if let Some(k) = dedup_key {
        event["dedup_key"] = json!(k);
    }
    event
}

async fn enqueue(app: &TestApp, path: &str, body: &Value) -> crate::helpers::Res {
    app.send(crate::helpers::http_client().post(app.url(path)).json(body)).await
}

#[tokio::test]
async fn pagerduty_events_v2_is_answered_as_pagerduty_answers() {
    let app = TestApp::spawn().await;
    let (id, key) = integration(&app, json!({"name": "uptime kuma", "kind": "pagerduty_events_v2"})).await;

    // A trigger without a dedup_key: one is made and returned.
    let res = enqueue(&app, "/v2/enqueue", &pagerduty_trigger(&key, None)).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    assert_eq!((&res.body["status"], &res.body["message"]), (&json!("success"), &json!("Event processed")));
    let made = res.body["dedup_key"].as_str().unwrap().to_string();
    assert!(!made.is_empty());
    // With the documented dedup_key: repeats join one incident.
    for _ in 0..2 {
        let res = enqueue(&app, "/v2/enqueue", &pagerduty_trigger(&key, Some("samplekeyhere"))).await;
        assert_eq!((res.status, &res.body["dedup_key"]), (StatusCode::ACCEPTED, &json!("samplekeyhere")));
    }
    let incidents = app.get("/v1/incidents").await.body["incidents"].as_array().unwrap().clone();
    assert_eq!(incidents.len(), 2, "{incidents:?}");
    let incident = incidents.iter().find(|i| i["labels"]["component"] == "postgres").unwrap();
    let incident = app.get(&format!("/v1/incidents/{}", incident["id"].as_str().unwrap())).await.body;
    assert_eq!(incident["title"], "Example alert on host1.example.com");
    assert_eq!(incident["severity"], "sev4", "info is sev4");
    assert_eq!(incident["started_at"], "2015-07-17T08:42:58.315Z");
    let incident_id = incident["id"].as_str().unwrap().to_string();
    let linked = app.get(&format!("/v1/incidents/{incident_id}/alerts")).await.body;
    let linked = linked["alerts"].as_array().unwrap();
    assert_eq!(linked.len(), 2);
    assert!(linked[0]["payload"].get("routing_key").is_none(), "the routing key is a secret: not kept");
    assert_eq!(linked[0]["payload"]["payload"]["custom_details"]["ping time"], "1500ms");

    // The documented acknowledge and resolve.
    let ack = json!({"routing_key": key, "dedup_key": "samplekeyhere", "event_action": "acknowledge"});
    assert_eq!(enqueue(&app, "/v2/enqueue", &ack).await.status, StatusCode::ACCEPTED);
    let acked = app.get(&format!("/v1/incidents/{incident_id}")).await.body;
    assert!(acked["acknowledged_at"].is_string(), "{acked}");
    assert_eq!(acked["acknowledged_by"], "integration uptime kuma");
    let resolve = json!({"routing_key": key, "dedup_key": "samplekeyhere", "event_action": "resolve"});
    let res = enqueue(&app, "/v2/enqueue", &resolve).await;
    assert_eq!((res.status, &res.body["dedup_key"]), (StatusCode::ACCEPTED, &json!("samplekeyhere")));
    assert_eq!(app.get(&format!("/v1/incidents/{incident_id}")).await.body["status"], "resolved");
    // After the resolve, the same dedup_key opens a new incident.
    enqueue(&app, "/v2/enqueue", &pagerduty_trigger(&key, Some("samplekeyhere"))).await;
    assert_eq!(app.get("/v1/incidents").await.body["incidents"].as_array().unwrap().len(), 3);
    // A resolve for a key nobody triggered is accepted and changes nothing.
    let stray = json!({"routing_key": key, "dedup_key": "never-seen", "event_action": "resolve"});
    assert_eq!(enqueue(&app, "/v2/enqueue", &stray).await.status, StatusCode::ACCEPTED);
    assert_eq!(app.get("/v1/incidents").await.body["incidents"].as_array().unwrap().len(), 3);

    // A change event: accepted and kept, no incident.
    let change = json!({"routing_key": key, "payload": {"summary": "Build Success: Increase snapshot create timeout to 30 seconds",
        "timestamp": "2020-07-17T08:42:58.315+0000", "source": "prod-build-agent-i-0b148d1040d565540",
        "custom_details": {"build_state": "passed", "build_number": "2", "run_time": "1236s"}},
        "links": [{"href": "https://dev.acme.com/builds/2", "text": "View more details in Acme!"}]});
    let res = enqueue(&app, "/v2/change/enqueue", &change).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    assert_eq!((&res.body["status"], &res.body["message"]), (&json!("success"), &json!("Change event processed")));
    assert_eq!(app.get("/v1/incidents").await.body["incidents"].as_array().unwrap().len(), 3);
    let stored = alerts_of(&app, &id).await;
    assert_eq!(stored.iter().filter(|a| a["status"] == "change").count(), 1);
    let before = stored.len();

    // Invalid events: PagerDuty's 400, and nothing stored.
    for (body, says) in [
        (json!({"routing_key": key, "event_action": "trigger"}), "'payload' is missing"),
        (json!({"routing_key": "short", "event_action": "trigger", "payload": {}}), "Length of 'routing_key'"),
        (json!({"routing_key": key, "event_action": "explode", "dedup_key": "k"}), "'event_action' must be one of"),
        (json!({"routing_key": key, "event_action": "resolve"}), "'dedup_key' is missing"),
        (pagerduty_trigger("0123456789abcdef0123456789abcdef", None), "does not name"),
        (
            json!({"routing_key": key, "event_action": "trigger",
                "payload": {"summary": "nul \u{0}", "source": "h", "severity": "error"}}),
            "NUL",
        ),
        (
            json!({"routing_key": key, "event_action": "trigger", "dedup_key": "k".repeat(256),
                "payload": {"summary": "s", "source": "h", "severity": "error"}}),
            "'dedup_key' is too long",
        ),
    ] {
        let res = enqueue(&app, "/v2/enqueue", &body).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{body}: {}", res.body);
        assert_eq!(
            (&res.body["status"], &res.body["message"]),
            (&json!("invalid event"), &json!("Event object is invalid"))
        );
        let errors = res.body["errors"].as_array().unwrap();
        assert!(errors.iter().any(|e| e.as_str().unwrap().contains(says)), "{says}: {}", res.body);
    }
    let res = app.send(crate::helpers::http_client().post(app.url("/v2/enqueue")).body("{oops")).await;
    assert_eq!((res.status, &res.body["status"]), (StatusCode::BAD_REQUEST, &json!("invalid event")));
    let mut big = pagerduty_trigger(&key, Some("big"));
    big["payload"]["custom_details"] = json!({"blob": "x".repeat(600 * 1024)});
    let res = enqueue(&app, "/v2/enqueue", &big).await;
    assert_eq!(
        (res.status, &res.body["status"]),
        (StatusCode::PAYLOAD_TOO_LARGE, &json!("invalid event")),
        "{}",
        res.body
    );
    assert_eq!(alerts_of(&app, &id).await.len(), before, "nothing stored");
}

#[tokio::test]
async fn pagerduty_rate_limits_answer_429_with_retry_after() {
    let app = TestApp::spawn_with(|c| {
        c.rate_limit_per_second = 1;
        c.rate_limit_burst = 2;
    })
    .await;
    let (_, key) = integration(&app, json!({"name": "pd", "kind": "pagerduty_events_v2"})).await;
    let mut statuses = Vec::new();
    for i in 0..4 {
        let res = enqueue(&app, "/v2/enqueue", &pagerduty_trigger(&key, Some(&format!("k{i}")))).await;
        if res.status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(res.body["status"], "throttle event", "{}", res.body);
            assert!(res.header("retry-after").is_some());
        }
        statuses.push(res.status);
    }
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    assert_eq!(statuses[0], StatusCode::ACCEPTED);
}

async fn ack_overdue_events(app: &TestApp, incident: &str) -> Vec<Value> {
    app.service.sequence_all().await.unwrap();
    let res = app.get("/v1/events?page_size=500&type=incident.ack_overdue").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    res.body["events"].as_array().unwrap().iter().filter(|e| e["subject"] == incident).cloned().collect()
}

async fn wait_for_reminders(app: &TestApp, incident: &str, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let events = ack_overdue_events(app, incident).await;
        if events.len() >= n {
            return events;
        }
        assert!(tokio::time::Instant::now() < deadline, "only {} of {n} reminders", events.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn unacknowledged_incidents_remind_once_per_interval_across_replicas() {
    let configure = |c: &mut incidentd::config::Config| {
        c.ack_deadlines = "sev1=1s".into();
        c.ack_repeat = "3s".into();
    };
    let app = TestApp::spawn_with(configure).await;
    // A second replica on the same database: each reminder still goes out once.
    let replica = TestApp::spawn_on_with(&app.database_url, configure).await;
    let sev1 = app.create_incident(json!({"title": "down", "severity": "sev1"})).await;
    let sev3 = app.create_incident(json!({"title": "slow", "severity": "sev3"})).await;
    let id = sev1["id"].as_str().unwrap();
    let first = wait_for_reminders(&app, id, 1).await;
    assert_eq!(first[0]["data"]["reminder"], 1, "{}", first[0]);
    assert_eq!(first[0]["data"]["deadline_seconds"], 1);
    assert_eq!(first[0]["data"]["incident"]["id"], id);
    // Not twice: both replicas looked in the meantime.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(ack_overdue_events(&app, id).await.len(), 1);
    // Again after the repeat interval.
    let second = wait_for_reminders(&app, id, 2).await;
    assert_eq!(second.len(), 2);
    assert_eq!(second.iter().filter(|e| e["data"]["reminder"] == 2).count(), 1);
    // Acknowledged: no more.
    let ack = app.post(&format!("/v1/incidents/{id}/acknowledge"), json!({})).await;
    assert_eq!(ack.status, StatusCode::OK, "{}", ack.body);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(ack_overdue_events(&app, id).await.len(), 2);
    // A severity without a deadline never reminds.
    assert!(ack_overdue_events(&app, sev3["id"].as_str().unwrap()).await.is_empty());
    drop(replica);
}

#[test]
fn bad_ack_settings_stop_the_start() {
    let mut config = incidentd::config::Config::for_tests("sqlite::memory:");
    config.ack_deadlines = "sev1=5 minutes".into();
    let e = config.service_settings().err().expect("refused").to_string();
    assert!(e.contains("INCIDENTD_ACK_DEADLINES"), "{e}");
}

/// A real Alertmanager (Debian's `prometheus-alertmanager`, on the PATH: `scripts/test`
/// unpacks it into target/tools/), started by this test with a webhook receiver pointing at
/// incidentd, and stopped (by its own pid) when dropped.
struct Alertmanager {
    child: tokio::process::Child,
    url: String,
    dir: std::path::PathBuf,
}

impl Alertmanager {
    async fn start(receiver_url: &str, secret: &str) -> Alertmanager {
        let dir = std::env::temp_dir().join(format!("incidentd-am-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = format!(
            "route:\n  receiver: incidentd\n  group_by: ['alertname']\n  group_wait: 1s\n  group_interval: 1s\n  \
             repeat_interval: 3s\nreceivers:\n  - name: incidentd\n    webhook_configs:\n      - url: '{receiver_url}'\n        \
             send_resolved: true\n        http_config:\n          authorization:\n            type: Bearer\n            \
             credentials: '{secret}'\n"
        );
        let config_file = dir.join("alertmanager.yml");
        std::fs::write(&config_file, config).unwrap();
        let child = tokio::process::Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn")
            .kill_on_drop(true)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect(
                "prometheus-alertmanager is on the PATH (Debian: prometheus-alertmanager; ./scripts/test unpacks it)",
            );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let ready = crate::helpers::http_client().get(format!("{url}/-/ready")).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "Alertmanager did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Alertmanager { child, url, dir }
    }

    /// Fires (or, with `ends_at` in the past, clears) an alert through Alertmanager's API v2.
    async fn post_alert(&self, labels: Value, annotations: Value, ends_at: Option<chrono::DateTime<chrono::Utc>>) {
        let mut alert =
            json!({"labels": labels, "annotations": annotations, "generatorURL": "http://prometheus:9090/graph"});
        if let Some(t) = ends_at {
            alert["startsAt"] = json!((t - chrono::Duration::minutes(5)).to_rfc3339());
            alert["endsAt"] = json!(t.to_rfc3339());
        }
        let res = crate::helpers::http_client()
            .post(format!("{}/api/v2/alerts", self.url))
            .json(&json!([alert]))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "Alertmanager refused the alert: {}", res.status());
    }

    /// Fires an alert with `amtool alert add`, the way an operator would.
    async fn amtool_add(&self, args: &[&str]) {
        let out = tokio::process::Command::new("amtool")
            .arg("alert")
            .arg("add")
            .arg(format!("--alertmanager.url={}", self.url))
            .args(args)
            .output()
            .await
            .expect("amtool is on the PATH (it comes with prometheus-alertmanager)");
        assert!(out.status.success(), "amtool failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls until `check` holds for this integration's alerts and incidents.
async fn until<F: Fn(&[Value], &[Value]) -> bool>(
    app: &TestApp,
    integration: &str,
    what: &str,
    check: F,
) -> (Vec<Value>, Vec<Value>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let alerts = alerts_of(app, integration).await;
        let incidents = app.get("/v1/incidents?page_size=100").await.body["incidents"].as_array().unwrap().clone();
        if check(&alerts, &incidents) {
            return (alerts, incidents);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}: alerts {alerts:?} incidents {incidents:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_real_alertmanager_opens_groups_repeats_and_auto_resolves_an_incident() {
    let app = TestApp::spawn().await;
    let (id, secret) = integration(&app, json!({"name": "prometheus", "kind": "alertmanager"})).await;
    let am = Alertmanager::start(&app.url(&format!("/v1/integrations/{id}/alertmanager")), &secret).await;

    // Open: one alert fired with amtool.
    am.amtool_add(&[
        "alertname=HighErrorRate",
        "instance=api-1",
        "severity=critical",
        "--annotation=summary=Error rate above 5%",
    ])
    .await;
    let (_, incidents) =
        until(&app, &id, "an incident is open", |alerts, incidents| !alerts.is_empty() && incidents.len() == 1).await;
    let incident = &incidents[0];
    assert_eq!((&incident["title"], &incident["severity"]), (&json!("Error rate above 5%"), &json!("sev1")));
    let incident_id = incident["id"].as_str().unwrap().to_string();

    // Group: a second alert of the same alertname joins the incident.
    am.post_alert(
        json!({"alertname": "HighErrorRate", "instance": "api-2", "severity": "critical"}),
        json!({"summary": "Error rate above 5%"}),
        None,
    )
    .await;
    let (alerts, incidents) = until(&app, &id, "the second alert arrived", |alerts, _| {
        alerts.iter().any(|a| a["payload"]["labels"]["instance"] == "api-2")
    })
    .await;
    assert_eq!(incidents.len(), 1, "the group's second alert opened no second incident");
    assert!(alerts.iter().all(|a| a["incident_id"] == incident_id.as_str()));
    let group = alerts[0]["dedup_key"].as_str().unwrap().to_string();
    assert!(group.contains("HighErrorRate"), "grouped by Alertmanager's groupKey: {group}");

    // Repeat: Alertmanager sends the group again after repeat_interval; still one incident.
    let seen = alerts.len();
    let (_, incidents) = until(&app, &id, "a repeat notification", |alerts, _| alerts.len() >= seen + 2).await;
    assert_eq!(incidents.len(), 1);
    let entries = timeline(&app, &incident_id).await;
    assert!(entries.iter().filter(|e| e["kind"] == "alert").count() >= 3, "{entries:?}");

    // Auto-resolve: both alerts cleared (endsAt in the past).
    let now = chrono::Utc::now();
    for instance in ["api-1", "api-2"] {
        am.post_alert(
            json!({"alertname": "HighErrorRate", "instance": instance, "severity": "critical"}),
            json!({"summary": "Error rate above 5%"}),
            Some(now),
        )
        .await;
    }
    until(&app, &id, "the incident resolved", |_, incidents| {
        incidents.iter().any(|i| i["id"] == incident_id.as_str() && i["status"] == "resolved")
    })
    .await;
    let entries = timeline(&app, &incident_id).await;
    assert!(
        entries.iter().any(|e| e["kind"] == "alert" && e["body"].as_str().unwrap().contains("2 resolved")),
        "{entries:?}"
    );
    let resolved = app.get(&format!("/v1/incidents/{incident_id}")).await.body;
    assert!(resolved["resolved_at"].is_string());
    drop(am);
}
