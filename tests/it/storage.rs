//! Storage: both backends keep the same migrations, lose no write under concurrency, keep
//! data across restarts, and the embedded default needs no configuration.

use std::collections::BTreeSet;
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Backend, Db, TestApp, backend, drop_database, skip_unless};

fn migration_names(backend: &str) -> BTreeSet<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(backend);
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql"))
        .collect()
}

#[test]
fn every_migration_exists_for_both_backends() {
    let postgres = migration_names("postgres");
    let sqlite = migration_names("sqlite");
    assert!(!postgres.is_empty());
    assert_eq!(
        postgres, sqlite,
        "migrations/postgres and migrations/sqlite must hold the same migrations (translated)"
    );
}

/// 32 writers at once, split over two application instances on one database (two
/// replicas on Postgres; two processes' worth of connections on one SQLite file): every
/// write succeeds (no "database is locked") and every write is there afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_concurrent_writers_lose_nothing() {
    let first = Arc::new(TestApp::spawn().await);
    let second = Arc::new(TestApp::spawn_on(&first.database_url).await);
    const WRITERS: usize = 32;
    const PER_WRITER: usize = 3;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let app = if w % 2 == 0 { first.clone() } else { second.clone() };
        tasks.push(tokio::spawn(async move {
            for n in 0..PER_WRITER {
                let res = app.post("/v1/incidents", json!({"title": format!("w{w} n{n}"), "severity": "sev3"})).await;
                assert_eq!(res.status, StatusCode::CREATED, "writer {w}: {}", res.body);
                let id = res.body["id"].as_str().unwrap().to_string();
                for u in 0..2 {
                    let res =
                        app.post(&format!("/v1/incidents/{id}/updates"), json!({"body": format!("update {u}")})).await;
                    assert_eq!(res.status, StatusCode::CREATED, "writer {w}: {}", res.body);
                }
                let res = app.post(&format!("/v1/incidents/{id}/transitions"), json!({"to": "identified"})).await;
                assert_eq!(res.status, StatusCode::OK, "writer {w}: {}", res.body);
                let res = app.patch(&format!("/v1/incidents/{id}"), json!({"labels": {"writer": w.to_string()}})).await;
                assert_eq!(res.status, StatusCode::OK, "writer {w}: {}", res.body);
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer finished without error");
    }
    let listed = first.get("/v1/incidents?page_size=500").await.body;
    let incidents = listed["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), WRITERS * PER_WRITER);
    let titles: BTreeSet<&str> = incidents.iter().map(|i| i["title"].as_str().unwrap()).collect();
    assert_eq!(titles.len(), WRITERS * PER_WRITER, "every incident is there once");
    for i in incidents {
        assert_eq!(i["status"], "identified");
        assert_eq!(i["version"], 3, "create, transition, patch");
        assert!(i["labels"]["writer"].is_string());
    }
    let references: BTreeSet<&str> = incidents.iter().map(|i| i["reference"].as_str().unwrap()).collect();
    assert_eq!(references.len(), WRITERS * PER_WRITER, "references are unique");
    let db = first.db().await;
    // created + 2 updates + status change + field change, per incident
    assert_eq!(db.scalar("SELECT count(*) FROM incident_updates").await, (WRITERS * PER_WRITER * 5) as i64);
    db.close().await;
}

#[tokio::test]
async fn data_survives_a_restart() {
    let app = TestApp::spawn().await;
    let c = app.create_component("Storage").await;
    let i = app
        .create_incident(json!({
            "title": "Before restart", "severity": "sev2",
            "affected_components": [{"component_id": c["id"], "status": "partial_outage"}]
        }))
        .await;
    app.post(&format!("/v1/incidents/{}/updates", i["id"].as_str().unwrap()), json!({"body": "noted"})).await;
    let url = app.stop().await;

    let again = TestApp::spawn_on(&url).await;
    let got = again.get(&format!("/v1/incidents/{}", i["id"].as_str().unwrap())).await;
    assert_eq!(got.body, i, "the incident is unchanged after a restart");
    let component = again.get(&format!("/v1/components/{}", c["id"].as_str().unwrap())).await.body;
    assert_eq!(component["effective_status"], "partial_outage");
    let timeline = again.get(&format!("/v1/incidents/{}/updates", i["id"].as_str().unwrap())).await.body;
    assert_eq!(timeline["updates"].as_array().unwrap().len(), 2);
    let next = again.incident("After restart").await;
    assert_eq!(next["reference"], "INC-2", "references continue");
    drop(again);
    drop_database(&url);
}

#[tokio::test]
async fn deleting_an_incident_leaves_no_rows_behind() {
    let app = TestApp::spawn().await;
    let c = app.create_component("Cascade").await;
    let i = app
        .create_incident(json!({
            "title": "Cascade", "severity": "sev2",
            "affected_components": [{"component_id": c["id"], "status": "major_outage"}]
        }))
        .await;
    let id = i["id"].as_str().unwrap();
    app.post(&format!("/v1/incidents/{id}/updates"), json!({"body": "one"})).await;
    let other = app.incident("Stays").await["id"].as_str().unwrap().to_string();
    for (path, body) in [
        ("postmortem", json!({})),
        ("actions", json!({"title": "follow up"})),
        ("links", json!({"kind": "related", "incident": other})),
    ] {
        let res = app.post(&format!("/v1/incidents/{id}/{path}"), body).await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    }
    let db = app.db().await;
    assert_eq!(db.scalar(&format!("SELECT count(*) FROM incident_updates WHERE incident_id = '{id}'")).await, 3);
    assert_eq!(db.scalar("SELECT count(*) FROM incident_components").await, 1);
    assert_eq!(app.delete(&format!("/v1/incidents/{id}")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(db.scalar(&format!("SELECT count(*) FROM incident_updates WHERE incident_id = '{id}'")).await, 0);
    assert_eq!(db.scalar("SELECT count(*) FROM incident_components").await, 0);
    for table in ["postmortems", "actions", "incident_links"] {
        assert_eq!(db.scalar(&format!("SELECT count(*) FROM {table}")).await, 0, "{table}");
    }
    assert!(app.get("/v1/incidents?q=cascade").await.body["incidents"].as_array().unwrap().is_empty());
    if backend() == Backend::Sqlite {
        assert_eq!(db.scalar("SELECT count(*) FROM incidents_fts").await, 1, "search index follows deletes");
        let mode: String = match &db {
            crate::helpers::Db::Lite(p) => sqlx::query_scalar("PRAGMA journal_mode").fetch_one(p).await.unwrap(),
            crate::helpers::Db::Pg(_) => unreachable!(),
        };
        assert_eq!(mode, "wal");
    }
    db.close().await;
}

#[tokio::test]
async fn search_matches_the_same_way_on_every_backend() {
    let app = TestApp::spawn().await;
    for (title, summary) in [
        ("Straße closed in Köln", "ÄRGER with the tram"),
        ("API latency", "p99 at 3s for GET /v1/orders"),
        ("Ab", "x"),
        ("under_score and 100% sure", ""),
    ] {
        app.create_incident(json!({"title": title, "summary": summary, "severity": "sev3"})).await;
    }
    let titles = |q: &'static str| {
        let app = &app;
        async move {
            let res = app.get(&format!("/v1/incidents?q={}", urlencode(q))).await;
            assert_eq!(res.status, StatusCode::OK, "{q}: {}", res.body);
            res.body["incidents"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["title"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(titles("köln").await, ["Straße closed in Köln"], "non-ASCII case folding");
    assert_eq!(titles("KÖLN ärger").await, ["Straße closed in Köln"]);
    assert_eq!(titles("STRASSE").await, Vec::<String>::new(), "no transliteration");
    assert_eq!(titles("/v1/ord").await, ["API latency"]);
    assert_eq!(titles("ab").await, ["Ab"], "terms shorter than a trigram");
    assert_eq!(titles("b").await, ["Ab"]);
    assert_eq!(titles("%").await, ["under_score and 100% sure"]);
    assert_eq!(titles("_").await, ["under_score and 100% sure"]);
    assert_eq!(titles("0%_").await, Vec::<String>::new());
    assert_eq!(titles("latency p99").await, ["API latency"], "words may come from title and summary");
    assert_eq!(titles("latency tram").await, Vec::<String>::new());
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// SQLite has no autoanalyze: without statistics its planner guesses, and the filtered
/// incident list walked a whole severity and sorted. A start on an existing file analyses
/// the tables, so the planner has statistics from then on.
#[tokio::test]
async fn sqlite_planner_statistics_are_gathered_at_start() {
    skip_unless!(Sqlite, "Postgres gathers planner statistics itself (autoanalyze)");
    let app = TestApp::spawn().await;
    for n in 0..50 {
        app.incident(&format!("Statistics {n}")).await;
    }
    let url = app.stop().await;
    // Forget whatever statistics exist (the first start's upkeep may have analysed a few rows).
    let db = Db::open(&url).await;
    if db.scalar("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'").await > 0 {
        db.execute("DELETE FROM sqlite_stat1").await;
    }
    db.close().await;

    let again = TestApp::spawn_on(&url).await;
    let db = again.db().await;
    // The upkeep runs as the service starts, beside the first requests.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while db.scalar("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'").await == 0
        || db.scalar("SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'incidents'").await == 0
    {
        assert!(std::time::Instant::now() < deadline, "the incidents table was not analysed at start");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    db.close().await;
    drop(again);
    drop_database(&url);
}

/// The migration that added the `merged` status rebuilds SQLite's `incidents` and
/// `incident_updates` (SQLite cannot change a CHECK in place) while other tables reference
/// them: a database made by the migrations before it keeps every incident, timeline entry,
/// component imposition, alert and reminder, its search index, and its cascades.
#[tokio::test]
async fn the_sqlite_rebuild_for_merged_incidents_keeps_what_was_stored() {
    skip_unless!(Sqlite, "the rebuild is SQLite's; Postgres changes the CHECK in place");
    let url = crate::helpers::fresh_database_url();
    let path = url.strip_prefix("sqlite:").unwrap().to_string();
    std::fs::create_dir_all(std::path::Path::new(&path).parent().unwrap()).unwrap();
    // The migrations before 0012, as a deployment of the previous release ran them.
    let before = std::env::temp_dir().join(format!("incidentd-migrations-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&before).unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    for name in migration_names("sqlite").into_iter().filter(|n| n.as_str() < "0012") {
        std::fs::copy(dir.join(&name), before.join(&name)).unwrap();
    }
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path).create_if_missing(true).foreign_keys(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    sqlx::migrate::Migrator::new(before.as_path()).await.unwrap().run(&pool).await.unwrap();
    let (a, b, c) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let us = chrono::Utc::now().timestamp_micros();
    let incident = |id: uuid::Uuid, n: i64, title: &str, status: &str| {
        format!(
            "INSERT INTO incidents (id, reference_number, title, search_text, severity, status, impact, \
             workaround_availability, cause_kind, started_at, detected_at, created_at, updated_at) VALUES \
             ('{id}', {n}, '{title}', '{}', 'sev2', '{status}', 'minor', 'unknown', 'unknown', {us}, {us}, {us}, {us})",
            title.to_lowercase()
        )
    };
    for sql in [
        incident(a, 1, "Checkout down", "investigating"),
        incident(b, 2, "Search slow", "resolved"),
        "UPDATE counters SET value = 2 WHERE name = 'incident_reference'".to_string(),
        format!(
            "INSERT INTO incident_components (incident_id, component_id, status, incident_open) VALUES ('{a}', '{c}', 'major_outage', 1)"
        ),
        format!(
            "INSERT INTO incident_updates (id, incident_id, kind, body, visibility, author, created_at) VALUES \
             ('{}', '{a}', 'alert', 'Disk full', 'internal', 'pd', {us}), ('{}', '{b}', 'update', 'Fixed', 'public', 'bob', {us})",
            uuid::Uuid::now_v7(),
            uuid::Uuid::now_v7()
        ),
        format!("INSERT INTO ack_reminders (incident_id, sent, last_sent_at) VALUES ('{a}', 1, {us})"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await.unwrap();
    }
    pool.close().await;
    let _ = std::fs::remove_dir_all(&before);

    // The application migrates on start.
    let app = TestApp::spawn_on(&url).await;
    let read = app.get("/v1/incidents/INC-1").await;
    assert_eq!((read.status, read.body["title"].as_str()), (StatusCode::OK, Some("Checkout down")), "{}", read.body);
    assert_eq!(read.body["merged_into"], serde_json::Value::Null);
    let found = app.get("/v1/incidents?q=search").await.body;
    assert_eq!(found["incidents"][0]["reference"], "INC-2", "the search index survived: {found}");
    let timeline = app.get("/v1/incidents/INC-1/updates").await.body;
    assert_eq!(timeline["updates"][0]["body"], "Disk full");
    let db = app.db().await;
    assert_eq!(db.scalar("SELECT count(*) FROM incident_components").await, 1);
    assert_eq!(db.scalar("SELECT count(*) FROM ack_reminders").await, 1);
    assert_eq!(db.scalar("SELECT count(*) FROM pragma_foreign_key_check").await, 0);
    // New incidents take the next reference, and deleting one still takes its rows along.
    assert_eq!(app.incident("After the upgrade").await["reference"], "INC-3");
    assert_eq!(app.delete("/v1/incidents/INC-1").await.status, StatusCode::NO_CONTENT);
    assert_eq!(db.scalar("SELECT count(*) FROM incident_updates WHERE body = 'Disk full'").await, 0);
    assert_eq!(db.scalar("SELECT count(*) FROM incident_components").await, 0);
    assert_eq!(db.scalar("SELECT count(*) FROM ack_reminders").await, 0);
    db.close().await;
    drop(app);
    drop_database(&url);
}
