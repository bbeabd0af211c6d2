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
        .env("INCIDENTD_ADMIN_TOKEN", "binary-test-admin-token")
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

    let client = crate::helpers::http_client();
    let ready = client.get(format!("http://{http}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let created = client
        .post(format!("http://{http}/v1/incidents"))
        .bearer_auth("binary-test-admin-token")
        .json(&serde_json::json!({"title": "From the binary", "severity": "sev3"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    crate::helpers::sigterm(&child);
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait()).await.expect("stops in time").unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    let mut rest = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        rest.push(line);
    }
    assert!(rest.iter().any(|l| l.contains("received SIGTERM")), "{rest:?}");
    assert!(rest.iter().all(|l| !l.contains("postgres://")), "no database URL in logs");
    assert!(rest.iter().all(|l| !l.contains("binary-test-admin-token")), "no secret in logs");
    drop_database(&url);
}

/// Reads standard output until `wait` has passed without a new line; returns the lines.
async fn drain_stdout(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    wait: Duration,
) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(Ok(Some(line))) = tokio::time::timeout(wait, lines.next_line()).await {
        out.push(line);
    }
    out
}

struct Server {
    child: tokio::process::Child,
    addr: String,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

/// Starts `incidentd` in `dir` with no database or admin token configured.
async fn start_bare(dir: &std::path::Path) -> Server {
    let mut child = command()
        .current_dir(dir)
        .env_remove("INCIDENTD_ADMIN_TOKEN")
        .env("INCIDENTD_HTTP_ADDR", "127.0.0.1:0")
        .env("INCIDENTD_GRPC_ADDR", "127.0.0.1:0")
        .env("INCIDENTD_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let json: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert!(
                !line.contains("ind_") || json["key"].as_str().is_some_and(|k| k.len() == 16),
                "a secret in the logs: {line}"
            );
            if json["message"] == "incidentd listening" {
                return json["http_addr"].as_str().unwrap().to_string();
            }
        }
        panic!("exited before listening");
    })
    .await
    .expect("starts");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    Server { child, addr, stdout }
}

async fn stop(server: &mut Server) {
    crate::helpers::sigterm(&server.child);
    let status = tokio::time::timeout(Duration::from_secs(15), server.child.wait()).await.unwrap().unwrap();
    assert!(status.success());
}

/// The README's run command: with no database configured, the service keeps its data in
/// `./incidentd.db` and finds it again after a restart; the first start creates an admin key,
/// prints it once and writes it, readable by its owner only, beside the data.
#[tokio::test]
async fn first_start_creates_an_admin_key_and_data_lives_in_incidentd_db() {
    let dir = std::env::temp_dir().join(format!("incidentd_default_{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let client = crate::helpers::http_client();

    let mut server = start_bare(&dir).await;
    let printed = drain_stdout(&mut server.stdout, Duration::from_millis(500)).await;
    let key = printed
        .iter()
        .map(|l| l.trim())
        .find(|l| l.starts_with("ind_"))
        .unwrap_or_else(|| panic!("no key printed: {printed:?}"))
        .to_string();
    let file = dir.join("incidentd-admin.key");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), key, "the key file holds the printed key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);

    let url = |path: &str| format!("http://{}{path}", server.addr);
    let anonymous = client.post(url("/v1/incidents")).json(&serde_json::json!({"title": "x", "severity": "sev4"}));
    assert_eq!(anonymous.send().await.unwrap().status(), 401);
    let res = client
        .post(url("/v1/incidents"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"title": "Zero setup", "severity": "sev4"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let created: serde_json::Value = res.json().await.unwrap();
    assert_eq!(created["title"], "Zero setup");
    assert!(dir.join("incidentd.db").is_file(), "the default database file is ./incidentd.db");

    // The command line manages keys in the same database, even while the server runs.
    let out = command()
        .current_dir(&dir)
        .args(["api-key", "create", "--name", "dashboard", "--scope", "incidents:read"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reader = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(reader.starts_with("ind_"));
    let get = client.get(url("/v1/incidents/INC-1")).bearer_auth(&reader).send().await.unwrap();
    assert_eq!(get.status(), 200);
    let post = client
        .post(url("/v1/incidents"))
        .bearer_auth(&reader)
        .json(&serde_json::json!({"title": "x", "severity": "sev4"}))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 403, "a read-only key cannot declare incidents");
    let list = command().current_dir(&dir).args(["api-key", "list"]).output().await.unwrap();
    let listing = String::from_utf8(list.stdout).unwrap();
    assert!(listing.contains("bootstrap-admin") && listing.contains("dashboard"), "{listing}");
    assert!(!listing.contains(&key) && !listing.contains(&reader), "secrets are never listed");
    let id = listing.lines().find(|l| l.contains("dashboard")).unwrap().split_whitespace().next().unwrap().to_string();
    let revoke = command().current_dir(&dir).args(["api-key", "revoke", &id]).output().await.unwrap();
    assert!(revoke.status.success());
    stop(&mut server).await;

    // A restart keeps the data and creates no second key.
    let mut server = start_bare(&dir).await;
    let printed = drain_stdout(&mut server.stdout, Duration::from_millis(500)).await;
    assert!(printed.iter().all(|l| !l.contains("ind_")), "no new key on later starts: {printed:?}");
    let url = |path: &str| format!("http://{}{path}", server.addr);
    let got: serde_json::Value =
        client.get(url("/v1/incidents/INC-1")).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
    assert_eq!(got, created, "the data survived the restart");
    let revoked = client.get(url("/v1/incidents/INC-1")).bearer_auth(&reader).send().await.unwrap();
    assert_eq!(revoked.status(), 401, "the revoked key no longer works");
    stop(&mut server).await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn seed_writes_a_realistic_dataset_through_the_service() {
    let url = fresh_database_url();
    let seed =
        |n: &str| command().args(["seed", "--incidents", n, "--concurrency", "4"]).env("DATABASE_URL", &url).output();
    let out = seed("25").await.unwrap();
    assert!(out.status.success(), "seed failed: {}", String::from_utf8_lossy(&out.stderr));
    // Seeding again adds incidents and reuses the components.
    let out = seed("5").await.unwrap();
    assert!(out.status.success(), "second seed failed: {}", String::from_utf8_lossy(&out.stderr));
    let db = Db::open(&url).await;
    assert_eq!(db.scalar("SELECT count(*) FROM components").await, 20);
    assert_eq!(db.scalar("SELECT count(*) FROM incidents").await, 30);
    // Four in five are resolved; every one has its two updates, labels and components.
    assert_eq!(db.scalar("SELECT count(*) FROM incidents WHERE status = 'resolved'").await, 24);
    assert_eq!(db.scalar("SELECT count(*) FROM incident_updates WHERE kind = 'update'").await, 60);
    assert_eq!(db.scalar("SELECT count(DISTINCT incident_id) FROM incident_components").await, 30);
    assert_eq!(db.scalar("SELECT count(*) FROM events WHERE type = 'incident.created'").await, 30);
    db.close().await;
    drop_database(&url);
}
