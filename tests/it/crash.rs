//! The process is killed (SIGKILL) in the middle of fanning out a few thousand events; after a
//! restart every committed event reaches every matching subscription at least once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::process::Child;

use crate::helpers::{drop_database, fresh_database_url, serve_binary};
use crate::receivers::{Receiver, Reply};

const TOKEN: &str = "crash-test-admin-token";

/// The binary with short leases (a killed process's deliveries are taken over quickly) and
/// a small per-subscription concurrency (so the slow receiver keeps a backlog).
async fn start(url: &str) -> (Child, String) {
    let served = serve_binary(
        url,
        TOKEN,
        &[("INCIDENTD_DELIVERY_LEASE_SECS", "3"), ("INCIDENTD_DELIVERY_CONCURRENCY_PER_SUBSCRIPTION", "4")],
    )
    .await;
    (served.child, served.base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_fan_out_loses_no_delivery() {
    let url = fresh_database_url();
    let (mut child, base) = start(&url).await;
    let client = crate::helpers::http_client();
    let receivers = [Receiver::start().await, Receiver::start().await, Receiver::start().await];
    // One slow receiver keeps a backlog queued whatever the speed of the machine, so the kill always
    // lands with deliveries outstanding.
    receivers[2].always(Reply::After(Duration::from_millis(50)));
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
    // A few thousand deliveries: up to 3000 events to 3 subscriptions, still being created when the
    // process is killed, so some fan-outs are mid-flight and some requests never get an answer.
    const INCIDENTS: usize = 3000;
    let accepted = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let creator = {
        let (client, base, accepted) = (client.clone(), base.clone(), accepted.clone());
        tokio::spawn(async move {
            let slots = Arc::new(tokio::sync::Semaphore::new(16));
            for n in 0..INCIDENTS {
                let Ok(permit) = slots.clone().acquire_owned().await else { return };
                let (client, base, accepted) = (client.clone(), base.clone(), accepted.clone());
                tokio::spawn(async move {
                    let res = client
                        .post(format!("{base}/v1/incidents"))
                        .bearer_auth(TOKEN)
                        .json(&json!({"title": format!("storm {n}"), "severity": "sev2"}))
                        .send()
                        .await;
                    if let Ok(res) = res {
                        assert_eq!(res.status(), 201);
                        let body: serde_json::Value = res.json().await.unwrap();
                        accepted.lock().unwrap().push(body["id"].as_str().unwrap().to_string());
                    }
                    drop(permit);
                });
            }
        })
    };
    // Kill it while incidents are being created and deliveries are flowing.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: usize = receivers.iter().map(|r| r.received().len()).sum();
        if got >= 1500 {
            break;
        }
        assert!(Instant::now() < deadline, "deliveries did not start");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let at_kill: usize = receivers.iter().map(|r| r.received().len()).sum();
    let delivered_at_kill: usize = receivers
        .iter()
        .map(|r| r.received().iter().map(|m| m.header("webhook-id").to_string()).collect::<HashSet<_>>().len())
        .sum();
    creator.abort();
    let accepted: HashSet<String> = accepted.lock().unwrap().iter().cloned().collect();

    let (mut child, base) = start(&url).await;
    // Events are listed once the restarted sequencer has given them their commit order: the
    // ones committed just before the kill may take it a moment after the start.
    let sequenced = Instant::now() + Duration::from_secs(10);
    let events = loop {
        let events = committed_created_events(&client, &base).await;
        let subjects: HashSet<&str> = events.iter().map(|(_, subject)| subject.as_str()).collect();
        let missing = accepted.iter().find(|id| !subjects.contains(id.as_str())).cloned();
        match missing {
            None => break events,
            Some(id) if Instant::now() >= sequenced => {
                panic!("incident {id} was acknowledged with 201 but has no event")
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let expected: HashSet<&str> = events.iter().map(|(id, _)| id.as_str()).collect();
    assert!(delivered_at_kill < 3 * expected.len(), "killed after the end ({delivered_at_kill} delivered)");
    let deadline = Instant::now() + Duration::from_secs(60);
    for r in &receivers {
        loop {
            let ids: HashSet<String> = r.received().iter().map(|m| m.header("webhook-id").to_string()).collect();
            let missing = expected.iter().filter(|id| !ids.contains(**id)).count();
            if missing == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "{missing} of {} events never reached {}", expected.len(), r.url);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let total: usize = receivers.iter().map(|r| r.received().len()).sum();
    println!("{at_kill} deliveries before the kill; {total} requests in all for {} pairs", 3 * expected.len());
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    drop_database(&url);
}

/// Every committed `incident.created` event as (event id, subject), read through the API.
async fn committed_created_events(client: &reqwest::Client, base: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut after = "0".to_string();
    loop {
        let page: serde_json::Value = client
            .get(format!("{base}/v1/events?type=incident.created&page_size=500&after={after}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let events = page["events"].as_array().unwrap();
        if events.is_empty() {
            return out;
        }
        for e in events {
            out.push((e["id"].as_str().unwrap().to_string(), e["subject"].as_str().unwrap().to_string()));
        }
        after = page["next_cursor"].as_str().unwrap().to_string();
    }
}
