//! Keeping working when things fail (issue 17): truthful logs through a planned drain,
//! database outages, full disks, overload and slow clients.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{drop_database, fresh_database_url, serve_binary, sigterm};

const TOKEN: &str = "reliability-admin-token";

/// The log lines at `WARN` or `ERROR` among JSON log lines.
fn alarming(logs: &[String]) -> Vec<String> {
    logs.iter()
        .filter(|l| {
            let json: Value = serde_json::from_str(l).unwrap_or_default();
            matches!(json["level"].as_str(), Some("WARN" | "ERROR"))
        })
        .cloned()
        .collect()
}

/// A rolling restart, as Kubernetes does it: probes ask `/readyz` every 100 ms, SIGTERM
/// arrives, readiness answers 503 through the drain; the process exits cleanly, and not one
/// line at WARN or ERROR is logged (log-based alerts must not fire on routine operations).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_drain_logs_no_warning_or_error() {
    let url = fresh_database_url();
    // A drain longer than the readiness watcher's period, so its tick falls in the window.
    let mut served = serve_binary(&url, TOKEN, &[("INCIDENTD_DRAIN_DELAY_SECS", "3")]).await;
    let client = crate::helpers::http_client();
    let readyz = format!("{}/readyz", served.base);
    let probe = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut unready = 0;
            while let Ok(res) = client.get(&readyz).send().await {
                if res.status() == 503 {
                    unready += 1;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            unready
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let signalled = Instant::now();
    sigterm(&served.child);
    let status = tokio::time::timeout(Duration::from_secs(20), served.child.wait()).await.expect("exits").unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(signalled.elapsed() >= Duration::from_secs(3), "stopped before the drain delay was over");
    let unready = probe.await.unwrap();
    assert!(unready >= 20, "the probe saw {unready} 503s during a 3 s drain");
    served.logs_done.await.unwrap();
    let logs = served.logs.lock().unwrap().clone();
    assert!(logs.iter().any(|l| l.contains("stopping: not ready any more")), "the drain is logged: {logs:?}");
    assert_eq!(alarming(&logs), Vec::<String>::new(), "warnings or errors during a planned drain");
    drop_database(&url);
}

/// Creates one incident with a 9 KB summary; returns the response's status and body.
async fn create_big(client: &reqwest::Client, base: &str, n: usize) -> (u16, Value, Option<String>) {
    let res = client
        .post(format!("{base}/v1/incidents"))
        .bearer_auth(TOKEN)
        .json(
            &serde_json::json!({"title": format!("Disk filler {n}"), "severity": "sev3", "summary": "x".repeat(9000)}),
        )
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let retry_after = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    (status, res.json().await.unwrap_or_default(), retry_after)
}

/// The titles of every incident the API lists.
async fn all_titles(client: &reqwest::Client, base: &str) -> Vec<String> {
    let mut titles = Vec::new();
    let mut token = String::new();
    loop {
        let res = client
            .get(format!("{base}/v1/incidents?page_size=100&page_token={token}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let page: Value = res.json().await.unwrap();
        titles.extend(page["incidents"].as_array().unwrap().iter().map(|i| i["title"].as_str().unwrap().to_string()));
        match page["next_page_token"].as_str() {
            Some(t) if !t.is_empty() => token = t.to_string(),
            _ => return titles,
        }
    }
}

/// SQLite on a disk that fills up: the service keeps its data on a small tmpfs of its own (a
/// mount namespace made with `unshare`), the disk is filled to the last byte, and writes then
/// fail with 507 `insufficient_storage` naming the cause (not 500), again and again, while
/// reads go on; once space is freed, writes work again in the same process (the writer does
/// not stay broken), and every incident that got a 201 is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_on_a_full_disk_refuses_writes_clearly_and_recovers_when_space_is_freed() {
    let dir = std::env::temp_dir().join(format!("incidentd_full_{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let dir_str = dir.display().to_string();
    let url = format!("sqlite:{dir_str}/incidentd.db");
    let script = r#"mount -t tmpfs -o size=8m tmpfs "$0" && exec "$@""#;
    let wrapper = ["unshare", "-Urm", "--propagation", "private", "sh", "-c", script, dir_str.as_str()];
    let mut served = crate::helpers::serve_binary_wrapped(&wrapper, &url, TOKEN, &[]).await;
    let client = crate::helpers::http_client();
    let base = served.base.clone();
    // The service's view of its directory (the tmpfs), through its own root.
    let pid = served.child.id().unwrap();
    let inside = std::path::PathBuf::from(format!("/proc/{pid}/root{dir_str}"));
    assert!(inside.join("incidentd.db").exists(), "the database is on the tmpfs");

    let mut acknowledged = Vec::new();
    for n in 0..20 {
        let (status, body, _) = create_big(&client, &base, n).await;
        assert_eq!(status, 201, "{body}");
        acknowledged.push(format!("Disk filler {n}"));
    }
    // Fill the disk to the last byte.
    let ballast = inside.join("ballast");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&ballast).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                    break;
                }
            }
        }
        // The last partial chunk, byte by byte in small pieces.
        while file.write(&[0u8; 512]).is_ok_and(|n| n > 0) {}
    }

    // Writes until the database needs a new page: each answers 201 (stored) or 507.
    let mut refused = None;
    for n in 20..2000 {
        let (status, body, retry_after) = create_big(&client, &base, n).await;
        match status {
            201 => acknowledged.push(format!("Disk filler {n}")),
            507 => {
                refused = Some((body, retry_after));
                break;
            }
            other => panic!("a write on a full disk answered {other}: {body}"),
        }
    }
    let (body, retry_after) = refused.expect("the disk never filled up");
    assert_eq!(body["code"], "insufficient_storage", "{body}");
    assert_eq!(body["status"], 507);
    assert!(body["detail"].as_str().unwrap().contains("disk is full"), "{body}");
    assert!(retry_after.is_some(), "507 without Retry-After");
    // Again: the same clear answer, not a writer stuck in a failed transaction.
    for n in 0..5 {
        let (status, body, _) = create_big(&client, &base, 5000 + n).await;
        assert_eq!(status, 507, "{body}");
    }
    // Reads go on, and show every acknowledged write and nothing else.
    let mut titles = all_titles(&client, &base).await;
    titles.sort();
    acknowledged.sort();
    assert_eq!(titles, acknowledged, "what the API lists on a full disk");

    // Space is freed: writes work again in the same process.
    std::fs::remove_file(&ballast).unwrap();
    let (status, body, _) = create_big(&client, &base, 9999).await;
    assert_eq!(status, 201, "after freeing space: {body}");
    acknowledged.push("Disk filler 9999".into());
    let mut titles = all_titles(&client, &base).await;
    titles.sort();
    acknowledged.sort();
    assert_eq!(titles, acknowledged);

    sigterm(&served.child);
    let status = tokio::time::timeout(Duration::from_secs(20), served.child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "exit status {status}");
    served.logs_done.await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs grpcurl (a reflection-driven client: it knows no proto file of ours) against `app`;
/// returns what it printed, out and err together.
async fn grpcurl(app: &crate::helpers::TestApp, method: &str, data: Value) -> String {
    let out = tokio::process::Command::new("grpcurl")
        .args(["-plaintext", "-max-time", "10", "-H"])
        .arg(format!("authorization: Bearer {}", app.admin_token))
        .arg("-d")
        .arg(data.to_string())
        .arg(app.grpc.to_string())
        .arg(method)
        .output()
        .await
        .expect("grpcurl is on the PATH (./scripts/test unpacks it into target/tools/grpcurl)");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The error details of a failed call, as grpcurl prints them: each `@type` it could resolve
/// through server reflection, with its fields.
fn details(printed: &str) -> Vec<Value> {
    printed
        .lines()
        .filter_map(|l| l.split_once(")\t").map(|(_, json)| json))
        .map(|json| serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}\n{printed}")))
        .collect()
}

/// grpcurl, which learns every type from server reflection, prints each error detail the
/// service sends (`ErrorInfo`, `BadRequest`, `PreconditionFailure`, `RetryInfo`) with its
/// fields, instead of "not recognized".
#[tokio::test]
async fn grpc_error_details_are_decodable_through_reflection() {
    let app = crate::helpers::TestApp::spawn_with(|c| {
        c.rate_limit_per_second = 1;
        c.rate_limit_burst = 3;
    })
    .await;
    let printed = grpcurl(
        &app,
        "incidentd.v1.IncidentService/CreateIncident",
        serde_json::json!({"incident": {"title": "", "severity": "SEVERITY_SEV2"}}),
    )
    .await;
    assert!(printed.contains("Code: InvalidArgument"), "{printed}");
    assert!(!printed.contains("not recognized"), "{printed}");
    let found = details(&printed);
    assert_eq!(found[0]["@type"], "type.googleapis.com/google.rpc.ErrorInfo", "{printed}");
    assert_eq!(found[0]["reason"], "INVALID_ARGUMENT");
    assert_eq!(found[0]["domain"], "incidentd");
    assert_eq!(found[1]["@type"], "type.googleapis.com/google.rpc.BadRequest", "{printed}");
    assert_eq!(found[1]["fieldViolations"][0]["field"], "incident.title");

    // A transition the lifecycle forbids: PreconditionFailure names the allowed targets.
    let printed = grpcurl(
        &app,
        "incidentd.v1.IncidentService/CreateIncident",
        serde_json::json!({"incident": {"title": "Checkout down", "severity": "SEVERITY_SEV2"}}),
    )
    .await;
    let created: Value = serde_json::from_str(&printed).unwrap_or_else(|e| panic!("{e}: {printed}"));
    let id = created["incident"]["id"].as_str().unwrap().to_string();
    let printed = grpcurl(
        &app,
        "incidentd.v1.IncidentService/TransitionIncident",
        serde_json::json!({"id": id, "to": "INCIDENT_STATUS_CLOSED"}),
    )
    .await;
    assert!(printed.contains("Code: FailedPrecondition"), "{printed}");
    let found = details(&printed);
    let failure = found.iter().find(|d| d["@type"] == "type.googleapis.com/google.rpc.PreconditionFailure");
    let failure = failure.unwrap_or_else(|| panic!("no PreconditionFailure: {printed}"));
    assert_eq!(failure["violations"][0]["type"], "STATUS_TRANSITION", "{printed}");
    assert!(failure["violations"][0]["description"].as_str().unwrap().contains("resolved"), "{printed}");

    // Over the rate limit: RetryInfo says when to come back.
    let mut limited = None;
    for _ in 0..10 {
        let printed = grpcurl(&app, "incidentd.v1.IncidentService/GetIncident", serde_json::json!({"id": id})).await;
        if printed.contains("Code: ResourceExhausted") {
            limited = Some(printed);
            break;
        }
    }
    let printed = limited.expect("the rate limit never applied");
    let found = details(&printed);
    let retry = found.iter().find(|d| d["@type"] == "type.googleapis.com/google.rpc.RetryInfo");
    let retry = retry.unwrap_or_else(|| panic!("no RetryInfo: {printed}"));
    assert!(retry["retryDelay"].as_str().unwrap().ends_with('s'), "{printed}");
    assert!(!printed.contains("not recognized"), "{printed}");
}
