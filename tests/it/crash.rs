//! The process is killed (SIGKILL) in the middle of fanning out a few thousand events; after a
//! restart every event reaches every matching subscription at least once.

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::{drop_database, fresh_database_url};
use crate::receivers::Receiver;

const TOKEN: &str = "crash-test-admin-token";

async fn start(url: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_incidentd"))
        .env_remove("DATABASE_URL")
        .env("INCIDENTD_DATABASE_URL", url)
        .env("INCIDENTD_ADMIN_TOKEN", TOKEN)
        .env("INCIDENTD_HTTP_ADDR", "127.0.0.1:0")
        .env("INCIDENTD_GRPC_ADDR", "127.0.0.1:0")
        .env("INCIDENTD_LOG_FORMAT", "json")
        .env("INCIDENTD_LOG", "info")
        .env("INCIDENTD_RATE_LIMIT_PER_SECOND", "0")
        .env("INCIDENTD_WEBHOOK_ALLOWLIST", "127.0.0.0/8")
        .env("INCIDENTD_DELIVERY_LEASE_SECS", "3")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let json: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if json["message"] == "incidentd listening" {
                return json["http_addr"].as_str().unwrap().to_string();
            }
        }
        panic!("exited before listening");
    })
    .await
    .expect("starts");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, format!("http://{addr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_fan_out_loses_no_delivery() {
    let url = fresh_database_url();
    let (mut child, base) = start(&url).await;
    let client = crate::helpers::http_client();
    let receivers = [Receiver::start().await, Receiver::start().await, Receiver::start().await];
    for r in &receivers {
        let res = client
            .post(format!("{base}/v1/subscriptions"))
            .bearer_auth(TOKEN)
            .json(&json!({"channel": "webhook", "target": r.url, "event_types": ["incident.created"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
    }
    // A few thousand deliveries: 1000 events to 3 subscriptions.
    const INCIDENTS: usize = 1000;
    let created = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = Vec::new();
    for n in 0..INCIDENTS {
        let (client, base, permit) = (client.clone(), base.clone(), created.clone().acquire_owned().await.unwrap());
        tasks.push(tokio::spawn(async move {
            let res = client
                .post(format!("{base}/v1/incidents"))
                .bearer_auth(TOKEN)
                .json(&json!({"title": format!("storm {n}"), "severity": "sev2"}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 201);
            drop(permit);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Kill it while deliveries are flowing.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: usize = receivers.iter().map(|r| r.received().len()).sum();
        if got >= 300 {
            break;
        }
        assert!(Instant::now() < deadline, "deliveries did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let at_kill: usize = receivers.iter().map(|r| r.received().len()).sum();
    assert!(at_kill < 3 * INCIDENTS, "killed before the end ({at_kill} delivered)");

    let (mut child, _) = start(&url).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    for r in &receivers {
        loop {
            let ids: HashSet<String> = r.received().iter().map(|m| m.header("webhook-id").to_string()).collect();
            if ids.len() == INCIDENTS {
                break;
            }
            assert!(Instant::now() < deadline, "only {} of {INCIDENTS} events reached {}", ids.len(), r.url);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let total: usize = receivers.iter().map(|r| r.received().len()).sum();
    println!("{at_kill} deliveries before the kill; {total} requests in all for {} pairs", 3 * INCIDENTS);
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    drop_database(&url);
}
