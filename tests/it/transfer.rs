//! Moving between backends and backing up (issue 17): `incidentd export` of a live, seeded
//! SQLite database, `incidentd import` into Postgres, every API read compared, the moved keys
//! and webhook secrets still working; `incidentd backup` of a SQLite database while it is
//! being written.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Backend, TestApp, backend, drop_database, fresh_database_url};
use crate::receivers::Receiver;

/// Runs the incidentd binary with `args` on the database `url`; panics with its output unless
/// it succeeds.
fn incidentd(url: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_incidentd"))
        .env_remove("DATABASE_URL")
        .env("INCIDENTD_DATABASE_URL", url)
        .env("INCIDENTD_LOG", "warn")
        .args(args)
        .output()
        .expect("incidentd runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "incidentd {args:?} failed: {stderr}");
    stderr
}

/// Fills `app` with one of most things: components, incidents through their lifecycle with
/// updates, a merge, links, a postmortem and follow-ups, an API key, a webhook subscription
/// (whose deliveries are made), a maintenance. Returns the API key's secret and the
/// subscription's signing secret.
async fn seed(app: &TestApp, receiver: &Receiver) -> (String, String) {
    let api = app.create_component("API").await;
    let db = app.create_component("Database").await;
    let res = app.post("/v1/subscriptions", json!({"channel": "webhook", "target": receiver.url})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let signing = res.body["secret"].as_str().unwrap().to_string();
    let key = app.post("/v1/api-keys", json!({"name": "ci", "scopes": ["incidents:read"]})).await;
    assert_eq!(key.status, StatusCode::CREATED, "{}", key.body);
    let key = key.body["secret"].as_str().unwrap().to_string();

    let mut ids = Vec::new();
    for (n, component) in [&api, &db, &api, &db].iter().enumerate() {
        let incident = app
            .create_incident(json!({
                "title": format!("Outage {n}"), "severity": "sev2", "summary": "Errors on checkout",
                "affected_components": [{"component_id": component["id"], "status": "major_outage"}],
                "labels": {"team": "payments"}, "affected_customers": 120 + n,
            }))
            .await;
        let id = incident["id"].as_str().unwrap().to_string();
        app.post(&format!("/v1/incidents/{id}/updates"), json!({"body": "Internal: rolling back"})).await;
        app.post(&format!("/v1/incidents/{id}/updates"), json!({"body": "We are on it", "visibility": "public"})).await;
        ids.push(id);
    }
    assert_eq!(app.post(&format!("/v1/incidents/{}/acknowledge", ids[0]), json!({})).await.status, StatusCode::OK);
    app.transition(&ids[0], "identified").await;
    app.transition(&ids[0], "resolved").await;
    app.transition(&ids[1], "resolved").await;
    app.transition(&ids[1], "closed").await;
    let merged = app.post(&format!("/v1/incidents/{}/merge", ids[3]), json!({"into": ids[2]})).await;
    assert_eq!(merged.status, StatusCode::OK, "{}", merged.body);
    let link =
        app.post(&format!("/v1/incidents/{}/links", ids[2]), json!({"kind": "caused_by", "incident": ids[1]})).await;
    assert_eq!(link.status, StatusCode::CREATED, "{}", link.body);
    let pm = format!("/v1/incidents/{}/postmortem", ids[0]);
    let res =
        app.post(&pm, json!({"body": "# What happened\nA bad deploy.", "contributing_factors": ["no canary"]})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let action = app
        .post(
            &format!("/v1/incidents/{}/actions", ids[0]),
            json!({"title": "Add a canary", "owner": "ana", "due_date": "2030-01-31"}),
        )
        .await;
    assert_eq!(action.status, StatusCode::CREATED, "{}", action.body);
    let maintenance = app
        .post(
            "/v1/maintenances",
            json!({"title": "Database upgrade", "scheduled_for": "2030-01-01T02:00:00Z", "scheduled_until": "2030-01-01T03:00:00Z",
                   "components": [db["id"]]}),
        )
        .await;
    assert_eq!(maintenance.status, StatusCode::CREATED, "{}", maintenance.body);
    (key, signing)
}

/// Every GET the OpenAPI document lists, with each id the source has for its parameters:
/// path → (status, body).
async fn read_everything(app: &TestApp) -> BTreeMap<String, (u16, String)> {
    let doc = app.get("/openapi.json").await.body;
    let list = |path: &'static str, key: &'static str| async move {
        let body = app.get(path).await.body;
        body[key]
            .as_array()
            .map(|a| a.iter().map(|i| i["id"].as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    let incidents: Vec<String> = list("/v1/incidents?page_size=100", "incidents").await;
    let references: Vec<String> = {
        let body = app.get("/v1/incidents?page_size=100").await.body;
        body["incidents"].as_array().unwrap().iter().map(|i| i["reference"].as_str().unwrap().to_string()).collect()
    };
    let mut ids: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    ids.insert("/v1/incidents/", incidents);
    ids.insert("/status/incidents/", references);
    ids.insert("/v1/components/", list("/v1/components", "components").await);
    ids.insert("/components/", list("/v1/components", "components").await);
    ids.insert("/v1/subscriptions/", list("/v1/subscriptions", "subscriptions").await);
    ids.insert("/v1/actions/", list("/v1/actions", "actions").await);
    ids.insert("/v1/api-keys/", list("/v1/api-keys", "api_keys").await);
    ids.insert("/v1/maintenances/", list("/v1/maintenances", "maintenances").await);
    ids.insert("/v1/integrations/", list("/v1/integrations", "integrations").await);
    ids.insert("/v1/subscribers/", list("/v1/subscribers", "subscribers").await);
    let mut deliveries = Vec::new();
    for s in ids["/v1/subscriptions/"].clone() {
        let body = app.get(&format!("/v1/subscriptions/{s}/deliveries")).await.body;
        deliveries.extend(body["deliveries"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap().to_string()));
    }
    ids.insert("/v1/deliveries/", deliveries);

    let mut read = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if item.get("get").is_none()
            || ["/metrics", "/healthz", "/readyz", "/v1/events/stream", "/openapi.json"].contains(&path.as_str())
            || path.starts_with("/status/subscribe")
        {
            continue;
        }
        let concrete: Vec<String> = match path.find('{') {
            // A window of its own: the default one ends now.
            None if path == "/v1/stats" => vec!["/v1/stats?from=2026-01-01T00:00:00Z&to=2030-01-01T00:00:00Z".into()],
            None => vec![path.clone()],
            Some(at) => {
                let prefix = &path[..at];
                let Some(values) = ids.get(prefix) else { panic!("no ids for {path}") };
                if path[at..].matches('{').count() > 1 {
                    continue; // a sub-resource by its own id (links/{link_id}): read through its list
                }
                let end = path[at..].find('}').unwrap() + at;
                values.iter().map(|v| format!("{prefix}{v}{}", &path[end + 1..])).collect()
            }
        };
        for p in concrete {
            let res = app.client.get(app.url(&p)).send().await.unwrap();
            let status = res.status().as_u16();
            let mut text = res.text().await.unwrap();
            if p.ends_with("/uptime") {
                // Uptime runs to now: its window and percentages move with the clock; the days'
                // statuses and incidents are the moved history.
                let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
                for key in ["from", "to", "uptime_percent"] {
                    json.as_object_mut().unwrap().remove(key);
                }
                for day in json["days"].as_array_mut().unwrap() {
                    day.as_object_mut().unwrap().remove("uptime_percent");
                }
                text = json.to_string();
            }
            if p == "/status" || p.starts_with("/status/") {
                text = without_percentages(&text);
            }
            read.insert(p, (status, text));
        }
    }
    read
}

/// The text with every percentage (`2.71%`) made `N%`: the status page's uptime runs to now.
fn without_percentages(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '%' {
            while out.ends_with(|d: char| d.is_ascii_digit() || d == '.') {
                out.pop();
            }
            out.push('N');
        }
        out.push(c);
    }
    out
}

/// A seeded SQLite database, exported while it serves and imported into a new Postgres
/// database, answers every API read the same; the moved API key authenticates, and the moved
/// webhook secret signs new deliveries (the target runs with the source's secret key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_database_moves_to_postgres_with_every_read_the_same() {
    if backend() != Backend::Postgres {
        return; // needs Postgres as the target: the Postgres pass runs it
    }
    let dir = std::env::temp_dir().join(format!("incidentd_move_{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite_url = format!("sqlite:{}", dir.join("incidentd.db").display());
    let receiver = Receiver::start().await;
    let source = TestApp::spawn_on(&sqlite_url).await;
    let (api_key, signing) = seed(&source, &receiver).await;
    source.service.sequence_all().await.unwrap();
    let events = source.get("/v1/events?page_size=500").await.body;
    let webhooks = events["events"].as_array().unwrap().len();
    receiver.wait_for(webhooks.min(1)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = read_everything(&source).await;
    assert!(before.len() > 60, "only {} reads", before.len());

    // Exported while the source serves.
    let file = dir.join("incidentd.export");
    let said = incidentd(&sqlite_url, &["export", "--output", file.to_str().unwrap()]);
    assert!(said.contains("exported"), "{said}");
    let again = read_everything(&source).await;
    drop(source);
    let pg_url = fresh_database_url();
    let said = incidentd(&pg_url, &["import", "--input", file.to_str().unwrap()]);
    assert!(said.contains("imported"), "{said}");
    let key = std::fs::read_to_string(dir.join("incidentd-secret.key")).unwrap().trim().to_string();
    let target = TestApp::spawn_on_with(&pg_url, |c| c.secret_key = Some(key.into())).await;
    let after = read_everything(&target).await;

    assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>(), "the same reads");
    let mut differ = Vec::new();
    for (path, answer) in &before {
        // Reads whose answer depends on the time of reading (uptime to now) are compared with
        // a second read of the source made after the export.
        if &after[path] != answer && after[path] != again[path] {
            let (a, b) = (&answer.1, &after[path].1);
            let at = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
            let around = |t: &str| t.chars().skip(at.saturating_sub(80)).take(240).collect::<String>();
            differ.push(format!(
                "{path} ({} / {}), from character {at}:\n  sqlite:   {:?}\n  postgres: {:?}",
                answer.0,
                after[path].0,
                around(a),
                around(b)
            ));
        }
    }
    assert!(differ.is_empty(), "{} reads differ:\n{}", differ.len(), differ.join("\n"));

    // The moved key authenticates; a new reference follows the moved ones.
    let res = target.client.get(target.url("/v1/incidents")).bearer_auth(&api_key).send().await.unwrap();
    assert_eq!(res.status(), 200, "the moved API key");
    let res = target.client.get(target.url("/v1/incidents")).bearer_auth("ind_not_a_key").send().await.unwrap();
    assert_eq!(res.status(), 401);
    let next = target.incident("After the move").await;
    assert_eq!(next["reference"], "INC-5", "{next}");
    target.service.sequence_all().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let delivered = loop {
        let found =
            receiver.received().into_iter().find(|r| String::from_utf8_lossy(&r.body).contains("After the move"));
        if let Some(found) = found {
            break found;
        }
        assert!(std::time::Instant::now() < deadline, "no delivery of the new incident after the move");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    standardwebhooks::Webhook::new(&signing)
        .unwrap()
        .verify(&delivered.body, &delivered.headers)
        .expect("signed with the moved secret");

    // A second import into the now non-empty database is refused, and changes nothing.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_incidentd"))
        .env("INCIDENTD_DATABASE_URL", &pg_url)
        .args(["import", "--input", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"), "{}", String::from_utf8_lossy(&out.stderr));
    drop(target);
    drop_database(&pg_url);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An export cut off in the middle imports nothing.
#[tokio::test]
async fn a_cut_off_export_imports_nothing() {
    let app = TestApp::spawn().await;
    app.incident("One").await;
    app.incident("Two").await;
    let dir = std::env::temp_dir().join(format!("incidentd_cut_{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("full.export");
    incidentd(&app.database_url, &["export", "--output", file.to_str().unwrap()]);
    let text = std::fs::read_to_string(&file).unwrap();
    let cut: String = text.lines().take(text.lines().count() - 3).map(|l| format!("{l}\n")).collect();
    let cut_file = dir.join("cut.export");
    std::fs::write(&cut_file, cut).unwrap();
    let target = fresh_database_url();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_incidentd"))
        .env("INCIDENTD_DATABASE_URL", &target)
        .args(["import", "--input", cut_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cut off"), "{}", String::from_utf8_lossy(&out.stderr));
    let db = crate::helpers::Db::open(&target).await;
    assert_eq!(db.scalar("SELECT count(*) FROM incidents").await, 0, "nothing imported");
    db.close().await;
    // The whole file imports.
    incidentd(&target, &["import", "--input", file.to_str().unwrap()]);
    let db = crate::helpers::Db::open(&target).await;
    assert_eq!(db.scalar("SELECT count(*) FROM incidents").await, 2);
    db.close().await;
    drop_database(&target);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `incidentd backup` copies a SQLite database while incidents are being written: the copy is
/// a sound database as of one moment (every incident with its creation event), and it serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_a_live_sqlite_database_is_consistent_and_serves() {
    if backend() != Backend::Sqlite {
        return; // a SQLite feature: the SQLite pass runs it
    }
    let app = TestApp::spawn().await;
    let writing = {
        let (client, base, token) = (app.client.clone(), app.url(""), app.admin_token.clone());
        tokio::spawn(async move {
            for n in 0..150 {
                let res = client
                    .post(format!("{base}/v1/incidents"))
                    .bearer_auth(&token)
                    .json(&json!({"title": format!("Written during the backup {n}"), "severity": "sev3"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 201);
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dir = std::env::temp_dir().join(format!("incidentd_backup_{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("backup.db");
    let said = incidentd(&app.database_url, &["backup", copy.to_str().unwrap()]);
    assert!(said.contains("backed up"), "{said}");
    writing.await.unwrap();
    // Not over an existing file.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_incidentd"))
        .env("INCIDENTD_DATABASE_URL", &app.database_url)
        .args(["backup", copy.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());

    let copy_url = format!("sqlite:{}", copy.display());
    let db = crate::helpers::Db::open(&copy_url).await;
    let incidents = db.scalar("SELECT count(*) FROM incidents").await;
    let created = db.scalar("SELECT count(*) FROM events WHERE type = 'incident.created'").await;
    assert_eq!(incidents, created, "every incident in the copy has its event, and no event lacks its incident");
    assert!(incidents > 0 && incidents < 150, "{incidents} incidents: the copy is of a moment during the writes");
    db.close().await;
    let restored = TestApp::spawn_on(&copy_url).await;
    let listed = restored.get("/v1/incidents?page_size=200").await;
    assert_eq!(listed.body["incidents"].as_array().unwrap().len() as i64, incidents);
    drop(restored);
    let _ = std::fs::remove_dir_all(&dir);
}
