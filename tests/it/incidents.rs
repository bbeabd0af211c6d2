//! REST: incidents, their timeline, listing and paging, health and the OpenAPI document.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::TestApp;

#[tokio::test]
async fn create_returns_201_with_location_etag_and_every_field() {
    let app = TestApp::spawn().await;
    let component = app.create_component("API").await;
    let res = app
        .post(
            "/v1/incidents",
            json!({
                "title": "  Checkout errors  ",
                "summary": "5xx on /checkout",
                "severity": "sev1",
                "impact": "major",
                "affected_components": [{"component_id": component["id"], "status": "partial_outage"}],
                "affected_customers": 1200,
                "eta": "2030-01-01T12:00:00Z",
                "workaround": {"availability": "available", "text": "Use the mobile app"},
                "cause": {"kind": "third_party", "provider": "AWS", "external_reference": "aws-123"},
                "commander": "alice",
                "labels": {"team": "payments"},
                "root_cause": "expired certificate",
                "started_at": "2026-01-01T10:00:00Z"
            }),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let i = &res.body;
    let id = i["id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7, "ids are UUIDv7");
    assert_eq!(res.header("location"), Some(format!("/v1/incidents/{id}").as_str()));
    assert_eq!(res.header("etag"), Some("\"1\""));
    assert_eq!(i["reference"], "INC-1");
    assert_eq!(i["title"], "Checkout errors", "title is trimmed");
    assert_eq!(i["status"], "investigating");
    assert_eq!(i["severity"], "sev1");
    assert_eq!(i["impact"], "major");
    assert_eq!(i["affected_components"][0]["status"], "partial_outage");
    assert_eq!(i["affected_customers"], 1200);
    assert_eq!(i["eta"], "2030-01-01T12:00:00Z");
    assert_eq!(i["workaround"], json!({"availability": "available", "text": "Use the mobile app"}));
    assert_eq!(i["cause"], json!({"kind": "third_party", "provider": "AWS", "external_reference": "aws-123"}));
    assert_eq!(i["commander"], "alice");
    assert_eq!(i["labels"], json!({"team": "payments"}));
    assert_eq!(i["root_cause"], "expired certificate");
    assert_eq!(i["started_at"], "2026-01-01T10:00:00Z");
    assert_eq!(i["detected_at"], i["created_at"], "detected_at defaults to creation");
    assert_eq!(i["reopen_count"], 0);
    assert_eq!(i["version"], 1);
    for t in ["acknowledged_at", "identified_at", "mitigated_at", "resolved_at", "closed_at"] {
        assert!(i[t].is_null(), "{t} starts unset");
    }

    // Read back by id and by reference (case-insensitive): identical, with the ETag.
    let by_id = app.get(&format!("/v1/incidents/{id}")).await;
    assert_eq!(by_id.status, StatusCode::OK);
    assert_eq!(by_id.header("etag"), Some("\"1\""));
    assert_eq!(&by_id.body, i);
    assert_eq!(app.get("/v1/incidents/INC-1").await.body, *i);
    assert_eq!(app.get("/v1/incidents/inc-1").await.body, *i);

    // Defaults, and sequential references.
    let second = app.create_incident(json!({"title": "Second", "severity": "sev4"})).await;
    assert_eq!(second["reference"], "INC-2");
    assert_eq!(second["impact"], "none");
    assert_eq!(second["workaround"]["availability"], "unknown");
    assert_eq!(second["cause"]["kind"], "unknown");
    assert_eq!(second["started_at"], second["detected_at"]);
}

#[tokio::test]
async fn unknown_and_malformed_ids() {
    let app = TestApp::spawn().await;
    app.get("/v1/incidents/INC-99").await.problem(404);
    app.get(&format!("/v1/incidents/{}", uuid::Uuid::now_v7())).await.problem(404);
    let bad = app.get("/v1/incidents/not-an-id").await;
    bad.problem(400);
    assert_eq!(bad.error_fields(), ["id"]);
    app.get("/v1/nothing-here").await.problem(404);
    app.request(Method::PUT, "/v1/incidents", Some(json!({}))).await.problem(405);
}

#[tokio::test]
async fn patch_is_a_merge_patch_with_if_match_and_a_timeline_entry() {
    let app = TestApp::spawn().await;
    let i = app
        .create_incident(json!({
            "title": "Slow search", "severity": "sev3", "labels": {"a": "1", "b": "2"},
            "workaround": {"availability": "available", "text": "retry"}, "commander": "bob"
        }))
        .await;
    let id = i["id"].as_str().unwrap();
    let path = format!("/v1/incidents/{id}");

    let res = app
        .send(
            app.client
                .patch(app.url(&path))
                .header("content-type", "application/merge-patch+json")
                .header("if-match", "\"1\"")
                .body(
                    json!({
                        "severity": "sev1", "labels": {"a": null, "c": "3"}, "workaround": {"text": "use the API"},
                        "commander": null, "eta": "2031-05-01T00:00:00Z", "affected_customers": 40
                    })
                    .to_string(),
                ),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.header("etag"), Some("\"2\""));
    let p = &res.body;
    assert_eq!(p["severity"], "sev1");
    assert_eq!(p["labels"], json!({"b": "2", "c": "3"}), "labels merge key by key");
    assert_eq!(p["workaround"], json!({"availability": "available", "text": "use the API"}), "nested merge");
    assert!(p["commander"].is_null(), "null clears");
    assert_eq!(p["eta"], "2031-05-01T00:00:00Z");
    assert_eq!(p["title"], "Slow search", "absent fields stay");
    assert_eq!(p["status"], "investigating");
    assert_eq!(p["version"], 2);

    // A stale If-Match is refused and changes nothing.
    let stale =
        app.send(app.client.patch(app.url(&path)).header("if-match", "\"1\"").json(&json!({"title": "Lost"}))).await;
    stale.problem(412);
    assert_eq!(app.get(&path).await.body["title"], "Slow search");

    // A patch that changes nothing does not bump the version or add an entry.
    let same = app.patch(&path, json!({"severity": "sev1"})).await;
    assert_eq!(same.body["version"], 2);

    // The status is not editable here.
    let res = app.patch(&path, json!({"status": "resolved"})).await;
    res.problem(400);
    assert_eq!(res.error_fields(), ["status"]);

    // The field change is on the timeline, internal, with old and new values.
    let timeline = app.get(&format!("{path}/updates")).await.body;
    let entries = timeline["updates"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{timeline}");
    assert_eq!(entries[0]["kind"], "created");
    let change = &entries[1];
    assert_eq!(change["kind"], "field_change");
    assert_eq!(change["visibility"], "internal");
    let sev = change["changes"].as_array().unwrap().iter().find(|c| c["field"] == "severity").unwrap();
    assert_eq!(sev["old_value"], "sev3");
    assert_eq!(sev["new_value"], "sev1");
}

#[tokio::test]
async fn related_incidents_accept_ids_and_references() {
    let app = TestApp::spawn().await;
    let first = app.incident("First").await;
    let second = app.incident("Second").await;
    let third = app
        .create_incident(json!({"title": "Third", "severity": "sev2", "related_incident_ids": ["INC-1", second["id"]]}))
        .await;
    assert_eq!(third["related_incident_ids"], json!([first["id"], second["id"]]));
    let bad = app
        .post("/v1/incidents", json!({"title": "x", "severity": "sev2", "related_incident_ids": ["INC-77", "nope"]}))
        .await;
    bad.problem(400);
    assert_eq!(bad.error_fields(), ["related_incident_ids[1]"], "malformed names are reported first");
    let unknown = app
        .post("/v1/incidents", json!({"title": "x", "severity": "sev2", "related_incident_ids": ["INC-77", "INC-2"]}))
        .await;
    unknown.problem(400);
    assert_eq!(unknown.error_fields(), ["related_incident_ids[0]"]);
    let own = app.patch("/v1/incidents/INC-3", json!({"related_incident_ids": ["INC-3"]})).await;
    own.problem(400);
}

#[tokio::test]
async fn delete_removes_the_incident_and_its_timeline() {
    let app = TestApp::spawn().await;
    let i = app.incident("Doomed").await;
    let path = format!("/v1/incidents/{}", i["id"].as_str().unwrap());
    let stale = app.send(app.client.delete(app.url(&path)).header("if-match", "\"7\"")).await;
    stale.problem(412);
    let res = app.delete(&path).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    app.get(&path).await.problem(404);
    app.get(&format!("{path}/updates")).await.problem(404);
    app.delete(&path).await.problem(404);
}

#[tokio::test]
async fn acknowledge_once_then_no_op() {
    let app = TestApp::spawn().await;
    let i = app.incident("Pager went off").await;
    let path = format!("/v1/incidents/{}/acknowledge", i["reference"].as_str().unwrap());
    let first = app.post(&path, json!({"by": "carol"})).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.body["acknowledged_by"], "carol");
    assert!(first.body["acknowledged_at"].is_string());
    assert_eq!(first.body["version"], 2);
    let again = app.post(&path, json!({"by": "dave"})).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body, first.body, "acknowledging again changes nothing");
    // An empty body is accepted and records the caller (the admin token is "admin").
    let other = app.incident("Other").await;
    let res = app
        .send(app.client.post(app.url(&format!("/v1/incidents/{}/acknowledge", other["id"].as_str().unwrap()))))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["acknowledged_by"], "admin");
    // A resolved incident that nobody acknowledged cannot be acknowledged any more.
    let resolved = app.incident("Resolved quickly").await;
    let rid = resolved["id"].as_str().unwrap();
    app.transition(rid, "resolved").await;
    app.post(&format!("/v1/incidents/{rid}/acknowledge"), json!({})).await.problem(409);
    let timeline = app.get(&path.replace("acknowledge", "updates")).await.body;
    let kinds: Vec<&str> =
        timeline["updates"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["created", "acknowledgement"]);
}

#[tokio::test]
async fn updates_carry_visibility_and_optional_status_change() {
    let app = TestApp::spawn().await;
    let i = app.incident("Queue backlog").await;
    let path = format!("/v1/incidents/{}/updates", i["id"].as_str().unwrap());
    let res = app
        .post(
            &path,
            json!({"body": "We found the cause.", "visibility": "public", "status": "identified", "author": "erin"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let u = &res.body["update"];
    assert_eq!(u["kind"], "update");
    assert_eq!(u["body"], "We found the cause.");
    assert_eq!(u["visibility"], "public");
    assert_eq!(u["status_from"], "investigating");
    assert_eq!(u["status_to"], "identified");
    assert_eq!(u["author"], "erin");
    assert_eq!(res.body["incident"]["status"], "identified");
    assert!(res.body["incident"]["identified_at"].is_string());
    assert_eq!(res.header("etag"), Some("\"2\""));

    let internal = app.post(&path, json!({"body": "Internal note"})).await;
    assert_eq!(internal.body["update"]["visibility"], "internal", "updates are internal unless said otherwise");
    assert_eq!(internal.body["update"]["author"], "admin", "the author defaults to the caller's name");
    assert_eq!(internal.body["incident"]["version"], 2, "an update without a status change leaves the incident");

    // A forbidden status change refuses the whole update.
    let bad = app.post(&path, json!({"body": "closing", "status": "closed"})).await;
    bad.problem(409);

    let public = app.get(&format!("{path}?visibility=public")).await.body;
    let bodies: Vec<&str> = public["updates"].as_array().unwrap().iter().map(|e| e["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, ["We found the cause."]);
    let all = app.get(&path).await.body["updates"].as_array().unwrap().len();
    assert_eq!(all, 3, "created + two updates; the refused one left nothing");

    // Paging through the timeline.
    for n in 0..7 {
        app.post(&path, json!({"body": format!("note {n}")})).await;
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let q = match &token {
            Some(t) => format!("{path}?page_size=4&page_token={t}"),
            None => format!("{path}?page_size=4"),
        };
        let page = app.get(&q).await.body;
        for e in page["updates"].as_array().unwrap() {
            seen.push(e["id"].as_str().unwrap().to_string());
        }
        match page["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 10);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "oldest first (UUIDv7 order)");
}

async fn list_titles(app: &TestApp, query: &str) -> Vec<String> {
    let res = app.get(&format!("/v1/incidents?{query}")).await;
    assert_eq!(res.status, StatusCode::OK, "{query}: {}", res.body);
    res.body["incidents"].as_array().unwrap().iter().map(|i| i["title"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn list_filters() {
    let app = TestApp::spawn().await;
    let db = app.create_component("Database").await;
    let a = app.create_incident(json!({"title": "Database failover", "severity": "sev1"})).await;
    app.transition(a["id"].as_str().unwrap(), "identified").await;
    let b = app
        .create_incident(json!({
            "title": "Slow logins", "summary": "The auth DATABASE is saturated", "severity": "sev3",
            "affected_components": [{"component_id": db["id"], "status": "degraded_performance"}]
        }))
        .await;
    let c = app.create_incident(json!({"title": "Old outage 100%_done", "severity": "sev2"})).await;
    app.transition(c["id"].as_str().unwrap(), "resolved").await;

    assert_eq!(
        list_titles(&app, "").await,
        ["Old outage 100%_done", "Slow logins", "Database failover"],
        "newest first"
    );
    assert_eq!(list_titles(&app, "status=identified").await, ["Database failover"]);
    assert_eq!(
        list_titles(&app, "status=identified&status=resolved").await,
        ["Old outage 100%_done", "Database failover"]
    );
    assert_eq!(list_titles(&app, "status=identified,investigating").await, ["Slow logins", "Database failover"]);
    assert_eq!(list_titles(&app, "severity=sev3").await, ["Slow logins"]);
    assert_eq!(list_titles(&app, &format!("component={}", db["id"].as_str().unwrap())).await, ["Slow logins"]);
    assert_eq!(list_titles(&app, "open=true").await, ["Slow logins", "Database failover"]);
    assert_eq!(list_titles(&app, "open=false").await, ["Old outage 100%_done"]);
    assert_eq!(
        list_titles(&app, "q=database").await,
        ["Slow logins", "Database failover"],
        "title and summary, any case"
    );
    assert_eq!(list_titles(&app, "q=auth+saturated").await, ["Slow logins"], "every word must match");
    assert_eq!(list_titles(&app, "q=100%25_").await, ["Old outage 100%_done"], "LIKE wildcards are literal");
    assert!(list_titles(&app, "q=50%25").await.is_empty());
    let b_created = b["created_at"].as_str().unwrap();
    assert_eq!(list_titles(&app, &format!("created_after={b_created}")).await, ["Old outage 100%_done"]);
    assert_eq!(list_titles(&app, &format!("created_before={b_created}")).await, ["Database failover"]);
    assert_eq!(list_titles(&app, "severity=sev1&open=true&q=fail").await, ["Database failover"]);
}

#[tokio::test]
async fn list_pages_with_keyset_tokens() {
    let app = TestApp::spawn().await;
    for n in 0..12 {
        app.incident(&format!("incident {n}")).await;
    }
    let first = app.get("/v1/incidents?page_size=5").await.body;
    assert_eq!(first["incidents"].as_array().unwrap().len(), 5);
    let token = first["next_page_token"].as_str().unwrap();
    let second = app.get(&format!("/v1/incidents?page_size=5&page_token={token}")).await.body;
    assert_eq!(second["incidents"][0]["title"], "incident 6");
    let token = second["next_page_token"].as_str().unwrap();
    let third = app.get(&format!("/v1/incidents?page_size=5&page_token={token}")).await.body;
    assert_eq!(third["incidents"].as_array().unwrap().len(), 2);
    assert!(third["next_page_token"].is_null(), "last page has no token");
    let default = app.get("/v1/incidents").await.body;
    assert_eq!(default["incidents"].as_array().unwrap().len(), 12, "default page size is 50");
    for bad in ["page_size=501", "page_size=-1", "page_size=ten", "page_token=garbage!"] {
        let res = app.get(&format!("/v1/incidents?{bad}")).await;
        res.problem(400);
        assert_eq!(res.error_fields(), [bad.split('=').next().unwrap()], "{bad}");
    }
    assert_eq!(app.get("/v1/incidents?page_size=500").await.status, StatusCode::OK);
}

#[tokio::test]
async fn health_and_openapi() {
    let app = TestApp::spawn().await;
    let health = app.get("/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);

    let doc = app.get("/openapi.json").await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3.1"), "OpenAPI 3.1: {}", doc.body["openapi"]);
    let paths = doc.body["paths"].as_object().unwrap();
    let expect: &[(&str, &[&str])] = &[
        ("/v1/incidents", &["get", "post"]),
        ("/v1/incidents/{id}", &["get", "patch", "delete"]),
        ("/v1/incidents/{id}/transitions", &["post"]),
        ("/v1/incidents/{id}/acknowledge", &["post"]),
        ("/v1/incidents/{id}/updates", &["get", "post"]),
        ("/v1/components", &["get", "post"]),
        ("/v1/components/{id}", &["get", "patch", "delete"]),
        ("/healthz", &["get"]),
        ("/readyz", &["get"]),
    ];
    for (path, methods) in expect {
        let item = paths.get(*path).unwrap_or_else(|| panic!("{path} missing from the OpenAPI document"));
        for m in *methods {
            assert!(item.get(*m).is_some(), "{m} {path} missing");
        }
    }
    let schemas = &doc.body["components"]["schemas"];
    for s in ["Incident", "IncidentIn", "IncidentPatchIn", "Problem", "Component", "TimelineEntry"] {
        assert!(schemas.get(s).is_some(), "schema {s} missing");
    }
    let severity: Vec<Value> = schemas["Severity"]["enum"].as_array().cloned().unwrap_or_default();
    assert_eq!(severity, [json!("sev1"), json!("sev2"), json!("sev3"), json!("sev4")]);
}

#[tokio::test]
async fn readiness_fails_when_the_database_goes_away_and_stop_is_clean() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);
    if crate::helpers::backend() == crate::helpers::Backend::Sqlite {
        // An embedded file cannot become unreachable the way a server can; stopping cleanly
        // still applies.
        let url = app.stop().await;
        crate::helpers::drop_database(&url);
        crate::helpers::report_skip("an embedded file cannot become unreachable the way a database server can");
        return;
    }
    // Terminate the app's own connections and forbid new ones to its database.
    let name = app.database_url.rsplit('/').next().unwrap().split('?').next().unwrap().to_string();
    let admin = sqlx::PgPool::connect(&crate::helpers::server_url()).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")))
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&name)
        .execute(&admin)
        .await
        .unwrap();
    let res = app.get("/readyz").await;
    res.problem(503);
    let failing = app.get("/v1/incidents").await;
    failing.problem(503);
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK, "liveness does not depend on the database");
    sqlx::query(sqlx::AssertSqlSafe(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")))
        .execute(&admin)
        .await
        .unwrap();
    // Recovers within a probe period or two: connections cut while in the pool are checked
    // (and replaced) once they have been idle for half a second.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while app.get("/readyz").await.status != StatusCode::OK {
        assert!(std::time::Instant::now() < deadline, "readiness did not recover");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(app.get("/v1/incidents").await.status, StatusCode::OK, "recovers");
    let url = app.stop().await;
    crate::helpers::drop_database(&url);
}
