//! Keeping working when things fail (issue 17): truthful logs through a planned drain,
//! database outages, full disks, overload and slow clients.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{drop_database, fresh_database_url, serve_binary, sigterm};

const TOKEN: &str = "reliability-admin-token";

/// The log lines at `WARN` or `ERROR` among JSON log lines, from the first line containing
/// `from` on (the start's own warnings, such as unencrypted secrets on Postgres without a key,
/// are not what these tests look at).
fn alarming(logs: &[String], from: &str) -> Vec<String> {
    let start =
        logs.iter().position(|l| l.contains(from)).unwrap_or_else(|| panic!("no line with {from:?}: {logs:#?}"));
    logs[start..]
        .iter()
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
    assert_eq!(alarming(&logs, "received SIGTERM"), Vec::<String>::new(), "warnings or errors during a planned drain");
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

/// Sends a request's head and all but the last byte of its body on a fresh connection, and
/// leaves it there: the server has admitted the request and waits for the rest.
async fn held_request(addr: std::net::SocketAddr, token: &str, body: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/incidents HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body.as_bytes()[..body.len() - 1]).await.unwrap();
    stream.flush().await.unwrap();
    stream
}

/// Reads what the server answered on `stream` (up to 64 KiB, or until it closes).
async fn answer(stream: &mut tokio::net::TcpStream, within: Duration) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 65536];
    let n = tokio::time::timeout(within, stream.read(&mut buf)).await.expect("an answer in time").unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// A bounded number of requests in flight: with the limit at 2 and two requests held open
/// (their bodies still arriving), a third is refused at once with 503 `overloaded` and
/// Retry-After over REST and RESOURCE_EXHAUSTED over gRPC, while health checks still answer;
/// once a held request completes, requests are admitted again; a body that never completes is
/// cut off with 408 at the body deadline, and its slot comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_in_flight_limit_requests_are_refused_at_once_and_slow_bodies_time_out() {
    let app = crate::helpers::TestApp::spawn_with(|c| {
        c.max_in_flight = 2;
        c.body_read_timeout_secs = 2;
    })
    .await;
    let body = serde_json::json!({"title": "Held", "severity": "sev3"}).to_string();
    let mut first = held_request(app.http, &app.admin_token, &body).await;
    let mut second = held_request(app.http, &app.admin_token, &body).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let refused = app.get("/v1/incidents").await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.body["code"], "overloaded", "{}", refused.body);
    assert!(refused.body["detail"].as_str().unwrap().contains("limit of 2 requests"), "{}", refused.body);
    let raw = app.client.get(format!("http://{}/v1/incidents", app.http)).send().await.unwrap();
    assert_eq!(raw.status(), 503);
    assert!(raw.headers().get("retry-after").is_some(), "no Retry-After");
    assert_eq!(raw.headers()["content-type"], "application/problem+json");
    let mut grpc = app.incidents_grpc().await;
    let status = grpc.list_incidents(incidentd::proto::ListIncidentsRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    use tonic_types::StatusExt;
    let info = status.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "OVERLOADED");
    assert!(status.get_details_retry_info().is_some(), "no RetryInfo");
    // Probes are never refused.
    assert_eq!(app.get("/readyz").await.status, 200);
    assert_eq!(app.get("/healthz").await.status, 200);

    // The first held request completes: a slot is free again.
    {
        use tokio::io::AsyncWriteExt;
        first.write_all(&body.as_bytes()[body.len() - 1..]).await.unwrap();
    }
    let answered = answer(&mut first, Duration::from_secs(5)).await;
    assert!(answered.starts_with("HTTP/1.1 201"), "{answered}");
    assert_eq!(app.get("/v1/incidents").await.status, 200);

    // The second never completes: 408 at the body deadline (2 s), and its slot comes back.
    let answered = answer(&mut second, Duration::from_secs(10)).await;
    assert!(answered.starts_with("HTTP/1.1 408"), "{answered}");
    assert!(answered.contains("request_timeout"), "{answered}");
    let a = app.get("/v1/incidents");
    let b = app.get("/v1/incidents");
    let (a, b) = tokio::join!(a, b);
    assert_eq!((a.status.as_u16(), b.status.as_u16()), (200, 200));
    let listed = app.get("/v1/incidents").await;
    assert_eq!(listed.body["incidents"].as_array().unwrap().len(), 1, "only the completed request created one");

    let metrics = app.client.get(format!("http://{}/metrics", app.http)).send().await.unwrap().text().await.unwrap();
    let shed = |transport: &str| {
        let series = format!("incidentd_requests_shed_total{{transport=\"{transport}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&series)).map(|v| v.trim().parse::<f64>().unwrap())
    };
    assert!(shed("http").is_some_and(|n| n >= 2.0), "{metrics}");
    assert!(shed("grpc").is_some_and(|n| n >= 1.0), "{metrics}");
}

/// Slow clients cannot hold connections: a client that never finishes its headers is
/// disconnected at the header read timeout; a header section over the limit gets 431.
#[tokio::test]
async fn slow_headers_are_cut_off_and_oversized_headers_refused() {
    use tokio::io::AsyncWriteExt;
    let app = crate::helpers::TestApp::spawn_with(|c| {
        c.header_read_timeout_secs = 1;
        c.max_header_bytes = 16 * 1024;
    })
    .await;
    // Slowloris: a request line and one header, then nothing.
    let mut slow = tokio::net::TcpStream::connect(app.http).await.unwrap();
    slow.write_all(b"GET /v1/incidents HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    let started = Instant::now();
    let answered = answer(&mut slow, Duration::from_secs(10)).await;
    assert!(answered.is_empty() || answered.starts_with("HTTP/1.1 408"), "{answered}");
    assert!(started.elapsed() < Duration::from_secs(5), "held for {:?}", started.elapsed());

    let res = app
        .client
        .get(format!("http://{}/v1/incidents", app.http))
        .header("x-padding", "a".repeat(32 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 431);
    // A normal request still works.
    assert_eq!(app.get("/v1/incidents").await.status, 200);
}

/// Sends a request with a header of `padding` bytes on an HTTP/2 connection; whether it got a
/// successful answer.
async fn h2_with_header(
    send: &mut h2::client::SendRequest<axum::body::Bytes>,
    addr: std::net::SocketAddr,
    path: &str,
    content_type: &str,
    padding: usize,
) -> bool {
    let request = axum::http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", content_type)
        .header("te", "trailers")
        .header("x-padding", "a".repeat(padding))
        .body(())
        .unwrap();
    let Ok((response, mut stream)) = send.send_request(request, false) else { return false };
    let _ = stream.send_data(axum::body::Bytes::from_static(&[0, 0, 0, 0, 0]), true);
    match response.await {
        Ok(r) => r.status().is_success() || r.status() == 405,
        Err(_) => false,
    }
}

/// HTTP/2 limits hold on both listeners (REST over h2c, and gRPC): a client learns the stream
/// limit from the server's SETTINGS, and a header list over the limit is refused while one
/// under it is served.
#[tokio::test]
async fn http2_stream_and_header_limits_hold_on_rest_and_grpc() {
    let app = crate::helpers::TestApp::spawn_with(|c| {
        c.http2_max_concurrent_streams = 7;
        c.max_header_bytes = 16 * 1024;
    })
    .await;
    for (addr, path, content_type) in
        [(app.http, "/healthz", "text/plain"), (app.grpc, "/grpc.health.v1.Health/Check", "application/grpc")]
    {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (send, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut send = send.ready().await.unwrap();
        let request = axum::http::Request::post(format!("http://{addr}{path}"))
            .header("content-type", content_type)
            .header("te", "trailers")
            .body(())
            .unwrap();
        let (response, mut stream) = send.send_request(request, false).unwrap();
        stream.send_data(axum::body::Bytes::from_static(&[0, 0, 0, 0, 0]), true).unwrap();
        let response = response.await.unwrap();
        assert!(response.status().is_success() || response.status() == 405, "{addr}: {}", response.status());
        assert_eq!(send.current_max_send_streams(), 7, "the stream limit {addr} advertises");
        let mut send = send.ready().await.unwrap();
        assert!(h2_with_header(&mut send, addr, path, content_type, 4 * 1024).await, "{addr}: a 4 KiB header");
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (send, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut send = send.ready().await.unwrap();
        assert!(
            !h2_with_header(&mut send, addr, path, content_type, 32 * 1024).await,
            "{addr}: a 32 KiB header was served"
        );
    }
}

/// A PostgreSQL cluster of this test's own (the machine's initdb/pg_ctl, as the `postgres`
/// user when the test runs as root), which the test can stop and start.
struct ThrowawayPostgres {
    dir: std::path::PathBuf,
    bindir: std::path::PathBuf,
    port: u16,
}

impl ThrowawayPostgres {
    fn bindir() -> std::path::PathBuf {
        let mut found: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
            .map(|d| {
                d.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).filter(|b| b.join("initdb").exists()).collect()
            })
            .unwrap_or_default();
        found.sort();
        found.pop().expect("PostgreSQL's initdb under /usr/lib/postgresql/*/bin (Debian: apt-get install postgresql)")
    }

    /// Runs a PostgreSQL program as a user that may run it.
    fn run(&self, program: &str, args: &[&str]) -> std::process::Output {
        let path = self.bindir.join(program);
        let mut command = if unsafe { libc::geteuid() } == 0 {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            std::process::Command::new(&path)
        };
        command.args(args).output().unwrap_or_else(|e| panic!("{program} runs: {e}"))
    }

    fn start_new() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("incidentd_pg_{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        if unsafe { libc::geteuid() } == 0 {
            let chown = std::process::Command::new("chown").args(["postgres"]).arg(&dir).status().unwrap();
            assert!(chown.success());
        }
        let pg = ThrowawayPostgres { dir, bindir: Self::bindir(), port };
        let data = pg.data();
        let out = pg.run("initdb", &["-D", &data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"]);
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        pg.start();
        pg
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/incidentd", self.port)
    }

    fn start(&self) {
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.dir.display());
        let log = self.dir.join("server.log").display().to_string();
        let out = self.run("pg_ctl", &["-D", &self.data(), "-l", &log, "-w", "-t", "60", "-o", &options, "start"]);
        assert!(out.status.success(), "pg_ctl start: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A clean, fast stop: sessions are cut, committed work is on disk.
    fn stop(&self) {
        let out = self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
        assert!(out.status.success(), "pg_ctl stop: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        let _ = self.run("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One request of the load: when it was sent, how long it took, its status, and the id of
/// the incident it created (on 201).
struct Sent {
    at: Instant,
    took: Duration,
    status: u16,
    retry_after: bool,
    created: Option<String>,
}

/// Postgres stopped under load for 10 s and started again: the service stays up; readiness
/// and gRPC health say NOT_SERVING while it is down; requests fail fast with 503 and
/// Retry-After (none waits longer than the 2 s acquire timeout, with a margin for the
/// machine), gRPC with UNAVAILABLE; within 5 s of the database's return it serves again, by
/// itself; every write that got a 201 is there afterwards; the loss is warned once and the
/// recovery logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_outage_under_load_fails_fast_recovers_and_loses_no_acknowledged_write() {
    if crate::helpers::backend() != crate::helpers::Backend::Postgres {
        return; // a Postgres outage; the SQLite pass runs the full-disk test above instead
    }
    let pg = ThrowawayPostgres::start_new();
    let served = serve_binary(&pg.url(), TOKEN, &[]).await;
    let client = crate::helpers::http_client();
    let base = served.base.clone();
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", served.grpc)).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let check = tonic_health::pb::HealthCheckRequest { service: String::new() };
    use tonic_health::pb::health_check_response::ServingStatus;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for worker in 0..6 {
        let (client, base, stop) = (client.clone(), base.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let at = Instant::now();
                let res = client
                    .post(format!("{base}/v1/incidents"))
                    .bearer_auth(TOKEN)
                    .json(&serde_json::json!({"title": format!("Load {worker}-{n}"), "severity": "sev3"}))
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await
                    .expect("the service answers throughout");
                let status = res.status().as_u16();
                let retry_after = res.headers().contains_key("retry-after");
                let body: Value = res.json().await.unwrap_or_default();
                let created = (status == 201).then(|| body["id"].as_str().unwrap().to_string());
                sent.push(Sent { at, took: at.elapsed(), status, retry_after, created });
                if status != 201 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            sent
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    pg.stop();
    let down_at = Instant::now();
    // While it is down: readiness and gRPC health fail, gRPC calls are UNAVAILABLE.
    let mut readyz_failed = false;
    let mut health_failed = false;
    let mut grpc_unavailable = None;
    let mut incidents = incidentd::proto::incident_service_client::IncidentServiceClient::new(channel.clone());
    while down_at.elapsed() < Duration::from_secs(10) {
        let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
        readyz_failed |= ready.status() == 503;
        let status = health.check(check.clone()).await.unwrap().into_inner().status;
        health_failed |= status == ServingStatus::NotServing as i32;
        if grpc_unavailable.is_none() {
            let mut request = tonic::Request::new(incidentd::proto::ListIncidentsRequest::default());
            request.metadata_mut().insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
            let at = Instant::now();
            if let Err(status) = incidents.list_incidents(request).await
                && status.code() == tonic::Code::Unavailable
            {
                grpc_unavailable = Some((status, at.elapsed()));
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(readyz_failed, "/readyz never failed while the database was down");
    assert!(health_failed, "gRPC health never said NOT_SERVING while the database was down");
    let (status, took) = grpc_unavailable.expect("no gRPC call failed with UNAVAILABLE while the database was down");
    assert!(status.metadata().get("retry-after").is_some(), "UNAVAILABLE without retry-after: {status:?}");
    assert!(took < Duration::from_millis(3500), "a gRPC call waited {took:?}");

    pg.start();
    let up_at = Instant::now();
    // Serving again, by itself, within 5 s.
    loop {
        let ready = client.get(format!("{base}/readyz")).send().await.unwrap().status() == 200;
        let serving = health.check(check.clone()).await.unwrap().into_inner().status == ServingStatus::Serving as i32;
        if ready && serving {
            break;
        }
        assert!(
            up_at.elapsed() < Duration::from_secs(5),
            "not serving {:?} after the database came back",
            up_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut sent = Vec::new();
    for task in load {
        sent.extend(task.await.unwrap());
    }

    // During the outage: failures were 503 with Retry-After, and fast.
    let during: Vec<&Sent> = sent.iter().filter(|s| s.at > down_at && s.at < up_at).collect();
    let failed: Vec<&&Sent> = during.iter().filter(|s| s.status != 201).collect();
    assert!(failed.len() >= 6, "only {} requests failed during a 10 s outage", failed.len());
    for s in &failed {
        assert_eq!(s.status, 503, "a request during the outage answered {}", s.status);
        assert!(s.retry_after, "503 without Retry-After");
    }
    let slowest = sent.iter().map(|s| s.took).max().unwrap();
    assert!(slowest < Duration::from_millis(3500), "a request waited {slowest:?} (acquire timeout 2 s)");
    // After the return: writes succeed again.
    let first_ok_after = sent.iter().filter(|s| s.at > up_at && s.status == 201).map(|s| s.at - up_at).min();
    let first_ok_after = first_ok_after.expect("no write succeeded after the database came back");
    assert!(first_ok_after < Duration::from_secs(5), "first write {first_ok_after:?} after the return");

    // Every acknowledged write is there.
    let acknowledged: std::collections::HashSet<String> = sent.iter().filter_map(|s| s.created.clone()).collect();
    assert!(acknowledged.len() > 10, "{} writes acknowledged", acknowledged.len());
    let db = crate::helpers::Db::open(&pg.url()).await;
    let stored = db
        .scalar(&format!(
            "SELECT count(*) FROM incidents WHERE id::text IN ({})",
            acknowledged.iter().map(|id| format!("'{id}'")).collect::<Vec<_>>().join(",")
        ))
        .await;
    assert_eq!(stored as usize, acknowledged.len(), "acknowledged writes missing after the outage");
    db.close().await;

    sigterm(&served.child);
    let mut child = served.child;
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "the service stayed up and stopped cleanly: {status}");
    served.logs_done.await.unwrap();
    let logs = served.logs.lock().unwrap().clone();
    // One warning for the outage, not one per request or per background retry.
    let alarms = alarming(&logs, "incidentd listening");
    assert_eq!(alarms.len(), 1, "warnings and errors in an outage: {alarms:#?}");
    assert!(alarms[0].contains("database unreachable"), "{alarms:#?}");
    assert!(logs.iter().any(|l| l.contains("database reachable again")), "the recovery is logged");
    println!(
        "{} requests, {} acknowledged; {} sent during the 10 s outage, {} refused with 503; slowest answer {slowest:?}; \
         first write {first_ok_after:?} after the database came back",
        sent.len(),
        acknowledged.len(),
        during.len(),
        failed.len()
    );
}

/// A database that accepts no writes (here Postgres with `default_transaction_read_only`, as
/// a standby during a failover would be): writes answer 503 naming the cause, with
/// Retry-After, not 500; reads go on; nothing stored is touched.
#[tokio::test]
async fn a_read_only_database_refuses_writes_clearly_and_serves_reads() {
    if crate::helpers::backend() != crate::helpers::Backend::Postgres {
        return; // the SQLite pass runs the full-disk test; a read-only file is mapped the same way
    }
    let app = crate::helpers::TestApp::spawn().await;
    let kept = app.incident("Stored before").await;
    let database = app.database_url.rsplit('/').next().unwrap().split('?').next().unwrap().to_string();
    let db = crate::helpers::Db::open(&app.database_url).await;
    db.execute(&format!("ALTER DATABASE {database} SET default_transaction_read_only = on")).await;
    db.close().await;
    // New connections are read-only: a process started now sees a read-only database.
    let read_only = crate::helpers::TestApp::spawn_on_with(&app.database_url, |c| c.migrate_on_start = false).await;
    let res = read_only.post("/v1/incidents", serde_json::json!({"title": "Refused", "severity": "sev3"})).await;
    assert_eq!(res.status, 503, "{}", res.body);
    assert_eq!(res.body["code"], "unavailable");
    assert!(res.body["detail"].as_str().unwrap().contains("read-only"), "{}", res.body);
    assert!(res.headers.get("retry-after").is_some());
    let got = read_only.get(&format!("/v1/incidents/{}", kept["id"].as_str().unwrap())).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.body["title"], "Stored before");
    drop(read_only);
    // The database is dropped with `app`, from another database.
}
