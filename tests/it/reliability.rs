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
