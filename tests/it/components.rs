//! REST: components, their effective status, and deletion rules.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn component_crud_and_unique_names() {
    let app = TestApp::spawn().await;
    let res = app
        .post("/v1/components", json!({"name": " API ", "description": "Public API", "group": "Core", "position": 2}))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let c = res.body.clone();
    let id = c["id"].as_str().unwrap();
    assert_eq!(res.header("location"), Some(format!("/v1/components/{id}").as_str()));
    assert_eq!(res.header("etag"), Some("\"1\""));
    assert_eq!(c["name"], "API");
    assert_eq!(c["status"], "operational");
    assert_eq!(c["effective_status"], "operational");
    assert_eq!(c["group"], "Core");

    let dup = app.post("/v1/components", json!({"name": "api"})).await;
    dup.problem(409);
    assert_eq!(dup.body["code"], "already_exists");

    let got = app.get(&format!("/v1/components/{id}")).await;
    assert_eq!(got.body, c);

    let patched = app
        .send(
            app.client
                .patch(app.url(&format!("/v1/components/{id}")))
                .header("if-match", "\"1\"")
                .json(&json!({"status": "under_maintenance", "group": null, "description": "v2"})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["status"], "under_maintenance");
    assert_eq!(patched.body["effective_status"], "under_maintenance");
    assert!(patched.body["group"].is_null());
    assert_eq!(patched.header("etag"), Some("\"2\""));
    let stale = app
        .send(
            app.client
                .patch(app.url(&format!("/v1/components/{id}")))
                .header("if-match", "\"1\"")
                .json(&json!({"name": "x"})),
        )
        .await;
    stale.problem(412);

    app.create_component("Web").await;
    let rename = app.patch(&format!("/v1/components/{id}"), json!({"name": "web"})).await;
    rename.problem(409);
    let null_name = app.patch(&format!("/v1/components/{id}"), json!({"name": null})).await;
    null_name.problem(400);
    assert_eq!(null_name.error_fields(), ["name"]);

    assert_eq!(app.delete(&format!("/v1/components/{id}")).await.status, StatusCode::NO_CONTENT);
    app.get(&format!("/v1/components/{id}")).await.problem(404);
    app.get("/v1/components/not-a-uuid").await.problem(400);
}

#[tokio::test]
async fn list_in_status_page_order_with_paging() {
    let app = TestApp::spawn().await;
    for (name, group, position) in
        [("Search", "Core", 2), ("API", "Core", 1), ("Billing", "Back office", 1), ("Docs", "", 0), ("Web", "Core", 1)]
    {
        let body = if group.is_empty() {
            json!({"name": name, "position": position})
        } else {
            json!({"name": name, "group": group, "position": position})
        };
        assert_eq!(app.post("/v1/components", body).await.status, StatusCode::CREATED);
    }
    let mut names = Vec::new();
    let mut token = String::new();
    loop {
        let page = app.get(&format!("/v1/components?page_size=2&page_token={token}")).await.body;
        names.extend(page["components"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()));
        match page["next_page_token"].as_str() {
            Some(t) => token = t.to_string(),
            None => break,
        }
    }
    assert_eq!(names, ["Docs", "Billing", "API", "Web", "Search"]);
    let core = app.get("/v1/components?group=Core").await.body;
    let core: Vec<&str> = core["components"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(core, ["API", "Web", "Search"]);
}

#[tokio::test]
async fn effective_status_is_the_worst_imposed_by_open_incidents() {
    let app = TestApp::spawn().await;
    let c = app.create_component("Payments").await;
    let cid = c["id"].as_str().unwrap();
    let path = format!("/v1/components/{cid}");

    let minor = app
        .create_incident(json!({
            "title": "Slow payments", "severity": "sev3",
            "affected_components": [{"component_id": cid, "status": "degraded_performance"}]
        }))
        .await;
    assert_eq!(app.get(&path).await.body["effective_status"], "degraded_performance");
    assert_eq!(app.get(&path).await.body["status"], "operational", "the manual status is kept");

    let major = app
        .create_incident(json!({
            "title": "Payments down", "severity": "sev1",
            "affected_components": [{"component_id": cid, "status": "major_outage"}]
        }))
        .await;
    assert_eq!(app.get(&path).await.body["effective_status"], "major_outage", "the worst wins");

    // Deleting a component an open incident affects is refused.
    app.delete(&path).await.problem(409);

    app.transition(major["id"].as_str().unwrap(), "resolved").await;
    assert_eq!(
        app.get(&path).await.body["effective_status"],
        "degraded_performance",
        "resolved incidents impose nothing"
    );
    // Reopened, it imposes again; resolved again, it stops.
    app.transition(major["id"].as_str().unwrap(), "investigating").await;
    assert_eq!(app.get(&path).await.body["effective_status"], "major_outage", "a reopened incident imposes again");
    app.transition(major["id"].as_str().unwrap(), "resolved").await;
    assert_eq!(app.get(&path).await.body["effective_status"], "degraded_performance");

    // Editing the incident's components moves the effective status too.
    app.patch(&format!("/v1/incidents/{}", minor["id"].as_str().unwrap()), json!({"affected_components": []})).await;
    let now = app.get(&path).await.body;
    assert_eq!(now["effective_status"], "operational");

    // Reopening brings the imposed status back.
    app.transition(major["id"].as_str().unwrap(), "investigating").await;
    assert_eq!(app.get(&path).await.body["effective_status"], "major_outage");
    let listed = app.get("/v1/components").await.body;
    assert_eq!(listed["components"][0]["effective_status"], "major_outage");

    app.transition(major["id"].as_str().unwrap(), "resolved").await;
    assert_eq!(app.delete(&path).await.status, StatusCode::NO_CONTENT, "no open incident affects it now");
    // The resolved incident still names the deleted component, and stays editable.
    let old = app.get(&format!("/v1/incidents/{}", major["id"].as_str().unwrap())).await.body;
    assert_eq!(old["affected_components"][0]["component_id"], cid);
    let edit = app
        .patch(&format!("/v1/incidents/{}", major["id"].as_str().unwrap()), json!({"title": "Payments down (RCA)"}))
        .await;
    assert_eq!(edit.status, StatusCode::OK, "{}", edit.body);
}

#[tokio::test]
async fn incidents_must_name_existing_components_with_an_outage_status() {
    let app = TestApp::spawn().await;
    let c = app.create_component("Search").await;
    let missing = uuid::Uuid::now_v7().to_string();
    let res = app
        .post(
            "/v1/incidents",
            json!({"title": "x", "severity": "sev2", "affected_components": [
                {"component_id": c["id"], "status": "operational"},
                {"component_id": missing, "status": "major_outage"}
            ]}),
        )
        .await;
    res.problem(400);
    let mut fields = res.error_fields();
    fields.sort();
    assert_eq!(fields, ["affected_components[0].status"], "existence is checked once the shape is valid");
    let res = app
        .post(
            "/v1/incidents",
            json!({"title": "x", "severity": "sev2", "affected_components": [{"component_id": missing, "status": "major_outage"}]}),
        )
        .await;
    res.problem(400);
    assert_eq!(res.error_fields(), ["affected_components[0].component_id"]);
    let dup = app
        .post(
            "/v1/incidents",
            json!({"title": "x", "severity": "sev2", "affected_components": [
                {"component_id": c["id"], "status": "major_outage"}, {"component_id": c["id"], "status": "partial_outage"}
            ]}),
        )
        .await;
    dup.problem(400);
    assert_eq!(dup.error_fields(), ["affected_components[1].component_id"]);
    let listed = app.get("/v1/incidents").await.body;
    assert!(listed["incidents"].as_array().unwrap().is_empty(), "nothing was stored");
}
