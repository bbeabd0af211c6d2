//! The `incidentd` binary itself: help, `migrate`, `serve` with JSON logs, and a clean stop
//! on SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::helpers::{drop_database, fresh_database_url};

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
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let (tables,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('incidents', 'incident_updates', 'components')",
    )
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(tables, 3);
    admin.close().await;

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
