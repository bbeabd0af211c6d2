//! The `incidentd` binary itself: help, `migrate`, `serve` with JSON logs, and a clean stop
//! on SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::helpers::{Backend, Db, backend, drop_database, fresh_database_url};

const EXE: &str = env!("CARGO_BIN_EXE_incidentd");

fn command() -> Command {
    let mut c = Command::new(EXE);
    for var in ["INCIDENTD_DATABASE_URL", "DATABASE_URL", "INCIDENTD_HTTP_ADDR", "INCIDENTD_GRPC_ADDR", "INCIDENTD_LOG"]
    {
        c.env_remove(var);
    }
    c.kill_on_drop(true);
    c
}

#[tokio::test]
async fn help_lists_commands_and_settings() {
    let out = command().arg("--help").output().await.unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for word in [
        "serve",
        "migrate",
        "INCIDENTD_HTTP_ADDR",
        "INCIDENTD_GRPC_ADDR",
        "INCIDENTD_DATABASE_URL",
        "INCIDENTD_LOG_FORMAT",
    ] {
        assert!(help.contains(word), "--help does not mention {word}:\n{help}");
    }
    let out = command().arg("frobnicate").output().await.unwrap();
    assert!(!out.status.success(), "an unknown command fails");
}

#[tokio::test]
async fn migrate_then_serve_with_json_logs_and_stop_on_sigterm() {
    let url = fresh_database_url();
    // `migrate` creates the database and applies migrations; DATABASE_URL is honoured.
    let out = command().arg("migrate").env("DATABASE_URL", &url).output().await.unwrap();
    assert!(out.status.success(), "migrate failed: {}", String::from_utf8_lossy(&out.stderr));
    let db = Db::open(&url).await;
    let tables = db
        .scalar(match backend() {
            Backend::Postgres => {
                "SELECT count(*) FROM information_schema.tables \
                 WHERE table_name IN ('incidents', 'incident_updates', 'components')"
            }
            Backend::Sqlite => {
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' \
                 AND name IN ('incidents', 'incident_updates', 'components')"
            }
        })
        .await;
    assert_eq!(tables, 3);
    db.close().await;

    let mut child = command()
        .env("INCIDENTD_DATABASE_URL", &url)
        .env("INCIDENTD_HTTP_ADDR", "127.0.0.1:0")
        .env("INCIDENTD_GRPC_ADDR", "127.0.0.1:0")
        .env("INCIDENTD_LOG_FORMAT", "json")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let listening = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let json: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
            if json["message"] == "incidentd listening" {
                return json;
            }
        }
        panic!("the server exited before listening");
    })
    .await
    .expect("the server starts");
    assert_eq!(listening["level"], "INFO");
    let http = listening["http_addr"].as_str().unwrap().to_string();

    let client = reqwest::Client::new();
    let ready = client.get(format!("http://{http}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let created = client
        .post(format!("http://{http}/v1/incidents"))
        .json(&serde_json::json!({"title": "From the binary", "severity": "sev3"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    let pid = child.id().unwrap().to_string();
    let kill = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait()).await.expect("stops in time").unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    let mut rest = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        rest.push(line);
    }
    assert!(rest.iter().any(|l| l.contains("received SIGTERM")), "{rest:?}");
    assert!(rest.iter().all(|l| !l.contains("postgres://")), "no database URL in logs");
    drop_database(&url);
}

/// The README's run command: with no database configured, the service keeps its data in
/// `./incidentd.db` and finds it again after a restart.
#[tokio::test]
async fn with_no_database_configured_data_lives_in_incidentd_db_and_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!("incidentd_default_{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let start = || {
        command()
            .current_dir(&dir)
            .env("INCIDENTD_HTTP_ADDR", "127.0.0.1:0")
            .env("INCIDENTD_GRPC_ADDR", "127.0.0.1:0")
            .env("INCIDENTD_LOG_FORMAT", "json")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    async fn http_addr(child: &mut tokio::process::Child) -> String {
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                let json: serde_json::Value = serde_json::from_str(&line).unwrap();
                if json["message"] == "incidentd listening" {
                    return json["http_addr"].as_str().unwrap().to_string();
                }
            }
            panic!("exited before listening");
        })
        .await
        .expect("starts");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        addr
    }
    async fn stop(child: &mut tokio::process::Child) {
        let pid = child.id().unwrap().to_string();
        std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = tokio::time::timeout(Duration::from_secs(15), child.wait()).await.unwrap().unwrap();
        assert!(status.success());
    }

    let mut child = start();
    let addr = http_addr(&mut child).await;
    let client = reqwest::Client::new();
    let created: serde_json::Value = client
        .post(format!("http://{addr}/v1/incidents"))
        .json(&serde_json::json!({"title": "Zero setup", "severity": "sev4"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stop(&mut child).await;
    assert!(dir.join("incidentd.db").is_file(), "the default database file is ./incidentd.db");

    let mut child = start();
    let addr = http_addr(&mut child).await;
    let got: serde_json::Value =
        client.get(format!("http://{addr}/v1/incidents/INC-1")).send().await.unwrap().json().await.unwrap();
    assert_eq!(got, created, "the data survived the restart");
    stop(&mut child).await;
    std::fs::remove_dir_all(&dir).unwrap();
}
