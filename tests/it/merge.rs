//! Merging a duplicate into the incident that carries on (its timeline, components, alerts,
//! actions and postmortem move with their original times; it becomes read-only and says where
//! it went; later alerts of its group join the target), what a merge refuses, and typed links
//! seen from both sides; over REST and gRPC.

use incidentd::proto;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, bad_request_fields, http_client};

async fn post_update(app: &TestApp, id: &str, body: &str, visibility: &str) -> Value {
    let res = app.post(&format!("/v1/incidents/{id}/updates"), json!({"body": body, "visibility": visibility})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    res.body["update"].clone()
}

async fn timeline(app: &TestApp, id: &str) -> Vec<Value> {
    app.get(&format!("/v1/incidents/{id}/updates?page_size=500")).await.body["updates"].as_array().unwrap().clone()
}

async fn effective(app: &TestApp, component: &str) -> String {
    app.get(&format!("/v1/components/{component}")).await.body["effective_status"].as_str().unwrap().to_string()
}

async fn pagerduty(app: &TestApp, key: &str, dedup: &str, summary: &str) {
    let event = json!({"routing_key": key, "dedup_key": dedup, "event_action": "trigger",
        "payload": {"summary": summary, "source": "db-1", "severity": "error"}});
    let res = app.send(http_client().post(app.url("/v2/enqueue")).json(&event)).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
}

#[tokio::test]
async fn a_merge_moves_everything_into_the_target_with_its_times_and_leaves_a_read_only_pointer() {
    let app = TestApp::spawn().await;
    let db = app.create_component("Database").await["id"].as_str().unwrap().to_string();
    let api = app.create_component("API").await["id"].as_str().unwrap().to_string();
    let target = app
        .create_incident(json!({"title": "API errors", "severity": "sev2",
            "affected_components": [{"component_id": api, "status": "degraded_performance"}]}))
        .await;
    let tid = target["id"].as_str().unwrap().to_string();
    // The duplicate: opened by an alert, with updates, components, an action, a postmortem draft.
    let (_, key) = crate::integrations::integration(&app, json!({"name": "pd", "kind": "pagerduty_events_v2"})).await;
    pagerduty(&app, &key, "db-disk", "Database disk full").await;
    let alerts = app.get("/v1/incidents?q=disk").await.body;
    let source = alerts["incidents"][0].clone();
    let sid = source["id"].as_str().unwrap().to_string();
    let sref = source["reference"].as_str().unwrap().to_string();
    let res = app
        .patch(
            &format!("/v1/incidents/{sid}"),
            json!({"affected_components": [
            {"component_id": api, "status": "major_outage"}, {"component_id": db, "status": "partial_outage"}]}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let public = post_update(&app, &sid, "The database is full; writes fail.", "public").await;
    post_update(&app, &sid, "Disk at 100%, cleaning up.", "internal").await;
    let action = app.post(&format!("/v1/incidents/{sid}/actions"), json!({"title": "Alert at 80% disk"})).await;
    assert_eq!(action.status, StatusCode::CREATED, "{}", action.body);
    let pm = app.post(&format!("/v1/incidents/{sid}/postmortem"), json!({"body": "Disk filled by logs."})).await;
    assert_eq!(pm.status, StatusCode::CREATED, "{}", pm.body);
    let source_timeline = timeline(&app, &sid).await;
    assert_eq!(effective(&app, &api).await, "major_outage");

    let merged = app.post(&format!("/v1/incidents/{sref}/merge"), json!({"into": target["reference"]})).await;
    assert_eq!(merged.status, StatusCode::OK, "{}", merged.body);
    let (t, s) = (&merged.body["incident"], &merged.body["merged"]);
    assert_eq!(merged.header("etag"), Some(format!("\"{}\"", t["version"]).as_str()));
    assert_eq!((s["status"].as_str(), s["merged_into"].as_str()), (Some("merged"), Some(tid.as_str())));
    assert_eq!(s["affected_components"], json!([]));
    // The target imposes the worse status of each component now; the duplicate nothing.
    let components: Vec<(String, String)> = t["affected_components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["component_id"].as_str().unwrap().to_string(), c["status"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(components, [(api.clone(), "major_outage".to_string()), (db.clone(), "partial_outage".to_string())]);
    assert_eq!(effective(&app, &api).await, "major_outage");
    assert_eq!(effective(&app, &db).await, "partial_outage");

    // Every entry of the duplicate's timeline is on the target's, with its original time; each
    // side records the merge.
    let target_timeline = timeline(&app, &tid).await;
    for entry in &source_timeline {
        let moved = target_timeline.iter().find(|e| e["id"] == entry["id"]).unwrap_or_else(|| panic!("{entry} moved"));
        assert_eq!((&moved["created_at"], &moved["body"]), (&entry["created_at"], &entry["body"]));
        assert_eq!(moved["incident_id"], tid.as_str());
    }
    let times: Vec<&str> = target_timeline.iter().map(|e| e["created_at"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "one timeline, oldest first");
    let last = target_timeline.last().unwrap();
    assert_eq!(last["kind"], "merge");
    assert!(last["body"].as_str().unwrap().contains(&sref), "{last}");
    let left = timeline(&app, &sid).await;
    assert_eq!(left.len(), 1, "only the merge entry stays: {left:?}");
    assert_eq!((left[0]["kind"].as_str(), left[0]["status_to"].as_str()), (Some("merge"), Some("merged")));
    assert!(target_timeline.iter().any(|e| e["id"] == public["id"] && e["visibility"] == "public"));

    // Alerts, actions and the postmortem went along; the group's next alert joins the target.
    let alerts = app.get(&format!("/v1/incidents/{tid}/alerts")).await.body;
    assert_eq!(alerts["alerts"].as_array().unwrap().len(), 1, "{alerts}");
    let actions = app.get(&format!("/v1/incidents/{tid}/actions")).await.body;
    assert_eq!(actions["actions"][0]["title"], "Alert at 80% disk");
    assert_eq!(app.get(&format!("/v1/incidents/{tid}/postmortem")).await.body["body"], "Disk filled by logs.");
    pagerduty(&app, &key, "db-disk", "Database disk full again").await;
    let alerts = app.get(&format!("/v1/incidents/{tid}/alerts")).await.body;
    assert_eq!(alerts["alerts"].as_array().unwrap().len(), 2, "{alerts}");
    assert_eq!(app.get("/v1/incidents?q=disk").await.body["incidents"].as_array().unwrap().len(), 1, "no new incident");

    // The duplicate is read-only and says where it went.
    let read = app.get(&format!("/v1/incidents/{sref}")).await;
    assert_eq!((read.status, read.body["merged_into"].as_str()), (StatusCode::OK, Some(tid.as_str())));
    let refused = [
        app.patch(&format!("/v1/incidents/{sid}"), json!({"summary": "x"})).await,
        app.post(&format!("/v1/incidents/{sid}/transitions"), json!({"to": "resolved"})).await,
        app.post(&format!("/v1/incidents/{sid}/updates"), json!({"body": "x"})).await,
        app.post(&format!("/v1/incidents/{sid}/acknowledge"), json!({})).await,
        app.post(&format!("/v1/incidents/{sid}/actions"), json!({"title": "x"})).await,
        app.post(&format!("/v1/incidents/{sid}/postmortem"), json!({})).await,
        app.delete(&format!("/v1/incidents/{sid}")).await,
    ];
    for res in refused {
        let detail = res.problem(409)["detail"].as_str().unwrap();
        assert!(detail.contains("merged into") && detail.contains(&tid), "{detail}");
    }

    // Events: the merge (public, naming the target) and the component moves it caused.
    app.service.sequence_all().await.unwrap();
    let events = app.get(&format!("/v1/events?type=incident.merged&subject={sid}")).await.body;
    assert_eq!(events["events"].as_array().unwrap().len(), 1, "{events}");
    let e = &events["events"][0];
    assert_eq!(e["data"]["into"]["id"], tid.as_str());
    assert_eq!(e["data"]["moved"]["alerts"], 1);
    assert_eq!(e["data"]["moved"]["postmortem"], true);
    let public = app.get(&format!("/v1/events?public=true&type=incident.merged&subject={sid}")).await.body;
    assert_eq!(public["events"][0]["data"]["into"]["reference"], target["reference"]);

    // Customers follow the target: the duplicate is on no list, and its page sends them there.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let json = app.send(http_client().get(app.url("/api/v2/incidents.json"))).await.body;
        if !json.to_string().contains(&sid) && json.to_string().contains(&tid) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the duplicate stays listed: {json}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let page = client.get(app.url(&format!("/status/incidents/{sref}?lang=de"))).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::MOVED_PERMANENTLY);
    let to = page.headers()["location"].to_str().unwrap();
    assert_eq!(to, format!("/status/incidents/{}?lang=de", target["reference"].as_str().unwrap()));
}

#[tokio::test]
async fn a_merge_into_itself_a_merged_or_a_closed_incident_is_refused_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let a = app.incident("A").await["reference"].as_str().unwrap().to_string();
    let b = app.incident("B").await["reference"].as_str().unwrap().to_string();
    let c = app.incident("C").await["reference"].as_str().unwrap().to_string();
    let closed = app.incident("Closed").await["id"].as_str().unwrap().to_string();
    app.transition(&closed, "resolved").await;
    app.transition(&closed, "closed").await;
    let merge = |from: String, into: Value| {
        let app = &app;
        async move { app.post(&format!("/v1/incidents/{from}/merge"), json!({"into": into})).await }
    };
    assert_eq!(merge(a.clone(), json!(a)).await.problem(400)["errors"][0]["field"], "into");
    assert_eq!(
        app.post(&format!("/v1/incidents/{a}/merge"), json!({})).await.problem(400)["errors"][0]["field"],
        "into"
    );
    assert_eq!(merge(a.clone(), json!("INC-999")).await.problem(400)["errors"][0]["field"], "into");
    assert_eq!(merge(a.clone(), json!("not an incident")).await.problem(400)["errors"][0]["field"], "into");
    assert_eq!(merge("INC-999".into(), json!(a)).await.problem(404)["code"], "not_found");
    assert!(merge(a.clone(), json!(closed)).await.problem(409)["detail"].as_str().unwrap().contains("closed"));
    assert!(merge(closed.clone(), json!(a)).await.problem(409)["detail"].as_str().unwrap().contains("closed"));
    assert_eq!(merge(b.clone(), json!(a)).await.status, StatusCode::OK);
    let into_merged = merge(c.clone(), json!(b)).await;
    assert!(into_merged.problem(409)["detail"].as_str().unwrap().contains("merged"), "{}", into_merged.body);
    assert_eq!(merge(b.clone(), json!(c)).await.problem(409)["code"], "conflict", "merged once is final");
    // Nothing refused changed anything.
    for (r, status, version) in [(&a, "investigating", 2), (&c, "investigating", 1)] {
        let i = app.get(&format!("/v1/incidents/{r}")).await.body;
        assert_eq!((i["status"].as_str(), i["version"].as_i64()), (Some(status), Some(version)), "{i}");
    }
    // Deleting the incident merged into takes the duplicates along.
    assert_eq!(app.delete(&format!("/v1/incidents/{a}")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&format!("/v1/incidents/{b}")).await.problem(404)["code"], "not_found");
}

#[tokio::test]
async fn links_are_typed_seen_from_both_sides_and_recorded_on_both_timelines() {
    let app = TestApp::spawn().await;
    let outage = app.incident("Region outage").await;
    let errors = app.incident("Checkout errors").await;
    let again = app.incident("Region outage again").await;
    let (o, e, a) = (
        outage["reference"].as_str().unwrap(),
        errors["reference"].as_str().unwrap(),
        again["reference"].as_str().unwrap(),
    );
    // From the consequence's side: caused by the outage.
    let res = app.post(&format!("/v1/incidents/{e}/links"), json!({"kind": "caused_by", "incident": o})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!((res.body["kind"].as_str(), res.body["incident"]["reference"].as_str()), (Some("caused_by"), Some(o)));
    let link_id = res.body["id"].as_str().unwrap().to_string();
    assert_eq!(res.header("location"), Some(format!("/v1/incidents/{e}/links/{link_id}").as_str()));
    // From the cause's side, with the inverse kind.
    let res = app.post(&format!("/v1/incidents/{o}/links"), json!({"kind": "recurred_as", "incident": a})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let seen = |r: &str| {
        let app = &app;
        let r = r.to_string();
        async move {
            let links = app.get(&format!("/v1/incidents/{r}/links")).await.body;
            links["links"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| {
                    (l["kind"].as_str().unwrap().to_string(), l["incident"]["reference"].as_str().unwrap().to_string())
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(seen(o).await, [("causes".to_string(), e.to_string()), ("recurred_as".to_string(), a.to_string())]);
    assert_eq!(seen(e).await, [("caused_by".to_string(), o.to_string())]);
    assert_eq!(seen(a).await, [("recurrence_of".to_string(), o.to_string())]);
    // Both timelines say it, each in its own words.
    let said = |r: &str| {
        let app = &app;
        let r = r.to_string();
        async move {
            timeline(app, &r)
                .await
                .iter()
                .filter(|e| e["kind"] == "link")
                .map(|e| e["body"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert!(said(e).await[0].starts_with(&format!("Linked: caused by {o}")), "{:?}", said(e).await);
    assert!(said(o).await[0].starts_with(&format!("Linked: the cause of {e}")), "{:?}", said(o).await);

    // The same link again (from either side), to itself, without a kind: refused.
    let dup = app.post(&format!("/v1/incidents/{o}/links"), json!({"kind": "causes", "incident": e})).await;
    assert_eq!(dup.problem(409)["code"], "already_exists");
    let related = app.post(&format!("/v1/incidents/{o}/links"), json!({"kind": "related", "incident": e})).await;
    assert_eq!(related.status, StatusCode::CREATED, "another kind is another link");
    let mirror = app.post(&format!("/v1/incidents/{e}/links"), json!({"kind": "related", "incident": o})).await;
    assert_eq!(mirror.problem(409)["code"], "already_exists", "related reads the same from both sides");
    let own = app.post(&format!("/v1/incidents/{o}/links"), json!({"kind": "related", "incident": o})).await;
    assert_eq!(own.problem(400)["errors"][0]["field"], "incident");
    let kindless = app.post(&format!("/v1/incidents/{o}/links"), json!({"incident": e})).await;
    assert_eq!(kindless.problem(400)["errors"][0]["field"], "kind");
    let odd = app.post(&format!("/v1/incidents/{o}/links"), json!({"kind": "blames", "incident": e})).await;
    assert_eq!(odd.problem(400)["errors"][0]["field"], "kind");

    // Removed from the other side: gone from both.
    assert_eq!(app.delete(&format!("/v1/incidents/{o}/links/{link_id}")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(seen(e).await, [("related".to_string(), o.to_string())]);
    assert_eq!(app.delete(&format!("/v1/incidents/{a}/links/{link_id}")).await.problem(404)["code"], "not_found");
    assert!(said(e).await.iter().any(|s| s.starts_with("Link removed: caused by")));
    app.service.sequence_all().await.unwrap();
    let events = app.get("/v1/events?type=incident.linked,incident.unlinked").await.body;
    assert_eq!(events["events"].as_array().unwrap().len(), 4, "{events}");
    let public = app.get("/v1/events?public=true&type=incident.linked").await.body;
    assert_eq!(public["events"], json!([]), "links are internal");
}

#[tokio::test]
async fn merges_and_links_over_grpc_read_as_over_rest() {
    let app = TestApp::spawn().await;
    let mut incidents = app.incidents_grpc().await;
    let target = app.incident("Target").await;
    let dup = app.incident("Duplicate").await;
    let other = app.incident("Other").await;
    let (t, d, o) = (
        target["reference"].as_str().unwrap(),
        dup["reference"].as_str().unwrap(),
        other["reference"].as_str().unwrap(),
    );
    let link = incidents
        .create_incident_link(proto::CreateIncidentLinkRequest {
            incident_id: d.into(),
            kind: proto::LinkKind::RecurrenceOf as i32,
            other_incident_id: o.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .link
        .unwrap();
    assert_eq!(link.incident.as_ref().unwrap().reference, o);
    let to_itself = incidents
        .create_incident_link(proto::CreateIncidentLinkRequest {
            incident_id: d.into(),
            kind: proto::LinkKind::Related as i32,
            other_incident_id: d.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (to_itself.code(), bad_request_fields(&to_itself)),
        (tonic::Code::InvalidArgument, vec!["other_incident_id".to_string()])
    );

    let res = incidents
        .merge_incident(proto::MergeIncidentRequest { id: d.into(), into: t.into(), actor: "alice".into() })
        .await
        .unwrap()
        .into_inner();
    let merged = res.merged.unwrap();
    assert_eq!(merged.status, proto::IncidentStatus::Merged as i32);
    assert_eq!(merged.merged_into, target["id"].as_str().unwrap());
    let rest = app.get(&format!("/v1/incidents/{d}")).await.body;
    assert_eq!(
        (rest["status"].as_str(), rest["merged_into"].as_str()),
        (Some("merged"), Some(merged.merged_into.as_str()))
    );
    // The duplicate's link went to the target.
    let links = incidents
        .list_incident_links(proto::ListIncidentLinksRequest { incident_id: t.into() })
        .await
        .unwrap()
        .into_inner()
        .links;
    assert_eq!(links.len(), 1);
    assert_eq!(
        (links[0].kind, links[0].incident.as_ref().unwrap().reference.as_str()),
        (proto::LinkKind::RecurrenceOf as i32, o)
    );
    let rest_links = app.get(&format!("/v1/incidents/{t}/links")).await.body;
    assert_eq!(rest_links["links"][0]["id"], links[0].id.as_str());
    let timeline = app.get(&format!("/v1/incidents/{t}/updates")).await.body;
    assert!(timeline["updates"].as_array().unwrap().iter().any(|e| e["kind"] == "merge" && e["author"] == "alice"));

    let again = incidents
        .merge_incident(proto::MergeIncidentRequest { id: d.into(), into: o.into(), actor: String::new() })
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::FailedPrecondition);
    let itself = incidents
        .merge_incident(proto::MergeIncidentRequest { id: o.into(), into: o.into(), actor: String::new() })
        .await
        .unwrap_err();
    assert_eq!(bad_request_fields(&itself), ["into"]);
    incidents
        .delete_incident_link(proto::DeleteIncidentLinkRequest { incident_id: o.into(), link_id: links[0].id.clone() })
        .await
        .unwrap();
    let none = incidents
        .list_incident_links(proto::ListIncidentLinksRequest { incident_id: o.into() })
        .await
        .unwrap()
        .into_inner()
        .links;
    assert!(none.is_empty());
}
