//! The real application on loopback ports against a fresh database of its own, on the
//! backend under test ([`backend`]).

use std::net::SocketAddr;

use incidentd::app::Application;
use incidentd::config::Config;
use incidentd::proto::component_service_client::ComponentServiceClient;
use incidentd::proto::incident_service_client::IncidentServiceClient;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// An HTTP client for tests (rustls needs its crypto provider chosen first).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// The storage backend under test: `INCIDENTD_TEST_BACKEND=postgres|sqlite` (default
/// sqlite). `scripts/test` runs the whole suite once per backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

pub fn backend() -> Backend {
    match std::env::var("INCIDENTD_TEST_BACKEND").as_deref() {
        Ok("postgres") => Backend::Postgres,
        Ok("sqlite") | Err(_) => Backend::Sqlite,
        Ok(other) => panic!("INCIDENTD_TEST_BACKEND={other}: expected postgres or sqlite"),
    }
}

/// Ends the test here unless it runs on `$backend`, saying why on the terminal: the harness
/// would report the test "ok" either way, so the line written past its output capture
/// (`skipped on sqlite: <test>: <why>`) is what tells a reader it did not run here.
macro_rules! skip_unless {
    ($backend:ident, $why:expr) => {
        if $crate::helpers::backend() != $crate::helpers::Backend::$backend {
            $crate::helpers::report_skip($why);
            return;
        }
    };
}
pub(crate) use skip_unless;

/// Writes the skip notice straight to stderr (print macros would be captured and dropped).
pub fn report_skip(why: &str) {
    use std::io::Write;
    let test = std::thread::current().name().unwrap_or("a test").to_string();
    let backend = format!("{:?}", backend()).to_lowercase();
    let _ = writeln!(std::io::stderr(), "skipped on {backend} (from here on): {test}: {why}");
}

/// The Postgres server tests create their databases on. `INCIDENTD_TEST_DATABASE_URL` names
/// a server (any database on it); the default is the local one.
pub fn server_url() -> String {
    std::env::var("INCIDENTD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// The URL of a new, not yet existing database of the backend under test.
pub fn fresh_database_url() -> String {
    let name = format!("incidentd_it_{}", uuid::Uuid::new_v4().simple());
    match backend() {
        Backend::Sqlite => {
            let dir = std::env::temp_dir().join(&name);
            format!("sqlite:{}", dir.join("incidentd.db").display())
        }
        Backend::Postgres => {
            let server = server_url();
            let (base, query) = match server.split_once('?') {
                Some((b, q)) => (b.to_string(), format!("?{q}")),
                None => (server.clone(), String::new()),
            };
            let base = base.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or(base);
            format!("{base}/{name}{query}")
        }
    }
}

/// Direct access to a test database, for what the API cannot show (rows left behind) or do
/// (age a record).
pub enum Db {
    Pg(sqlx::PgPool),
    Lite(sqlx::SqlitePool),
}

impl Db {
    pub async fn open(url: &str) -> Db {
        if url.starts_with("sqlite:") {
            Db::Lite(sqlx::SqlitePool::connect(url).await.expect("open SQLite"))
        } else {
            Db::Pg(sqlx::PgPool::connect(url).await.expect("connect Postgres"))
        }
    }

    pub async fn execute(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match self {
            Db::Pg(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
            Db::Lite(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
        }
        .expect("statement runs");
    }

    /// The single integer a query returns.
    pub async fn scalar(&self, sql: &str) -> i64 {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match self {
            Db::Pg(p) => sqlx::query_scalar(sql).fetch_one(p).await,
            Db::Lite(p) => sqlx::query_scalar(sql).fetch_one(p).await,
        }
        .expect("query runs")
    }

    /// Ages every idempotency record by `seconds`.
    pub async fn age_idempotency_keys(&self, seconds: i64) {
        match self {
            Db::Pg(_) => {
                self.execute(&format!(
                    "UPDATE idempotency_keys SET created_at = created_at - interval '{seconds} seconds'"
                ))
                .await
            }
            Db::Lite(_) => {
                self.execute(&format!("UPDATE idempotency_keys SET created_at = created_at - {seconds} * 1000000"))
                    .await
            }
        }
    }

    /// Moves a timestamp column `seconds` into the past on the rows `filter` selects.
    pub async fn shift_back(&self, table: &str, column: &str, seconds: i64, filter: &str) {
        let moved = match self {
            Db::Pg(_) => format!("{column} - interval '{seconds} seconds'"),
            Db::Lite(_) => format!("{column} - {seconds} * 1000000"),
        };
        self.execute(&format!("UPDATE {table} SET {column} = {moved} WHERE {filter}")).await
    }

    /// Sets a timestamp column to `at` (or NULL) on the rows `filter` selects.
    pub async fn set_time(&self, table: &str, column: &str, at: Option<chrono::DateTime<chrono::Utc>>, filter: &str) {
        let value = match (self, at) {
            (_, None) => "NULL".to_string(),
            (Db::Pg(_), Some(t)) => format!("'{}'", t.to_rfc3339()),
            (Db::Lite(_), Some(t)) => t.timestamp_micros().to_string(),
        };
        self.execute(&format!("UPDATE {table} SET {column} = {value} WHERE {filter}")).await
    }

    /// Makes an API key expired an hour ago.
    pub async fn expire_api_key(&self, id: &str) {
        match self {
            Db::Pg(_) => {
                self.execute(&format!("UPDATE api_keys SET expires_at = now() - interval '1 hour' WHERE id = '{id}'"))
                    .await
            }
            Db::Lite(_) => {
                self.execute(&format!(
                    "UPDATE api_keys SET expires_at = (unixepoch() - 3600) * 1000000 WHERE id = '{id}'"
                ))
                .await
            }
        }
    }

    /// Every row of a table, each as one text (for searching what is stored).
    pub async fn rows_as_text(&self, table: &str) -> Vec<String> {
        match self {
            Db::Pg(p) => sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT t::text FROM {table} t")))
                .fetch_all(p)
                .await
                .expect("query runs"),
            Db::Lite(p) => {
                let columns: Vec<String> =
                    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT name FROM pragma_table_info('{table}')")))
                        .fetch_all(p)
                        .await
                        .expect("columns");
                let cells: Vec<String> = columns
                    .iter()
                    .map(|c| {
                        format!("CASE typeof({c}) WHEN 'blob' THEN hex({c}) ELSE coalesce(CAST({c} AS TEXT), '') END")
                    })
                    .collect();
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT {} FROM {table}", cells.join(" || '|' || "))))
                    .fetch_all(p)
                    .await
                    .expect("query runs")
            }
        }
    }

    pub async fn close(self) {
        match self {
            Db::Pg(p) => p.close().await,
            Db::Lite(p) => p.close().await,
        }
    }
}

/// Adds `authorization: Bearer <secret>` to every gRPC call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Bearer {
    pub fn new(secret: &str) -> Self {
        Bearer(format!("Bearer {secret}").parse().expect("ASCII secret"))
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// A gRPC channel that authenticates.
pub type Authed = InterceptedService<Channel, Bearer>;

pub struct TestApp {
    pub http: SocketAddr,
    /// Port 0 when the app runs no API (a worker).
    pub grpc: SocketAddr,
    /// Set when metrics have a port of their own.
    pub metrics: Option<SocketAddr>,
    /// Sends the admin token on every request.
    pub client: reqwest::Client,
    /// The admin token (`INCIDENTD_ADMIN_TOKEN`) this app runs with.
    pub admin_token: String,
    pub database_url: String,
    /// The service behind both transports, for driving background work.
    pub service: incidentd::service::Service,
    /// Whether dropping this app drops its database (false for a second app on it).
    owns_database: bool,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
        if self.owns_database {
            drop_database(&self.database_url);
        }
    }
}

/// Drops a test database: removes a SQLite file's directory, or drops a Postgres database
/// (forcing its connections closed, on a thread of its own so it can run from `Drop` inside
/// an async test).
pub fn drop_database(url: &str) {
    if let Some(path) = url.strip_prefix("sqlite:") {
        if let Some(dir) = std::path::Path::new(path).parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
        return;
    }
    let url = url.to_string();
    let result = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let name = url.rsplit('/').next().unwrap_or_default().split('?').next().unwrap_or_default();
            let admin = sqlx::PgPool::connect(&server_url()).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")))
                .execute(&admin)
                .await?;
            admin.close().await;
            anyhow::Ok(())
        })
    })
    .join();
    if let Ok(Err(e)) = result {
        eprintln!("could not drop a test database: {e}");
    }
}

/// A response: status, headers and JSON body (Null when empty).
pub struct Res {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Res {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a problem+json response with this status, and returns its body.
    pub fn problem(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.body);
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "body: {}", self.body);
        assert_eq!(self.body["status"], status);
        assert!(self.body["type"].is_string() && self.body["title"].is_string() && self.body["detail"].is_string());
        assert!(self.body["errors"].is_array());
        &self.body
    }

    /// The fields named in a problem's `errors`.
    pub fn error_fields(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|a| a.iter().map(|e| e["field"].as_str().unwrap_or_default().to_string()).collect())
            .unwrap_or_default()
    }
}

impl TestApp {
    /// The application on a fresh database of the backend under test.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// The same, with settings changed by `configure`.
    pub async fn spawn_with(configure: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = Config::for_tests(&fresh_database_url());
        configure(&mut config);
        Self::start(config, true, None).await
    }

    /// The application with a clock the test moves (for retry timing).
    pub async fn spawn_with_clock(clock: std::sync::Arc<incidentd::service::ManualClock>) -> TestApp {
        Self::start(Config::for_tests(&fresh_database_url()), true, Some(clock)).await
    }

    /// Another application on the same database (a second replica, or a restart); it leaves
    /// the database to its first owner.
    pub async fn spawn_on(database_url: &str) -> TestApp {
        Self::start(Config::for_tests(database_url), false, None).await
    }

    /// The same, with settings changed by `configure`.
    pub async fn spawn_on_with(database_url: &str, configure: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = Config::for_tests(database_url);
        configure(&mut config);
        Self::start(config, false, None).await
    }

    async fn start(
        mut config: Config,
        owns_database: bool,
        clock: Option<std::sync::Arc<incidentd::service::ManualClock>>,
    ) -> TestApp {
        let admin_token = config
            .admin_token
            .as_ref()
            .map(|t| secrecy::ExposeSecret::expose_secret(t).to_string())
            .unwrap_or_else(|| format!("test-admin-{}", uuid::Uuid::new_v4().simple()));
        config.admin_token = Some(admin_token.clone().into());
        let database_url = secrecy::ExposeSecret::expose_secret(&config.database_url).to_string();
        let app = match clock {
            Some(c) => Application::build_with_clock(&config, c).await,
            None => Application::build(&config).await,
        }
        .expect("application builds");
        let (http, grpc) = (app.http_addr(), app.grpc_addr().unwrap_or_else(|| ([127, 0, 0, 1], 0).into()));
        let service = app.service().clone();
        let metrics = app.metrics_addr();
        let stop = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(stop.clone()));
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {admin_token}").parse().expect("header"));
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder().default_headers(headers).build().expect("client");
        TestApp {
            http,
            grpc,
            metrics,
            client,
            admin_token,
            database_url,
            service,
            owns_database,
            stop,
            task: Some(task),
        }
    }

    /// Authenticates gRPC calls as the admin token.
    pub fn bearer(&self) -> Bearer {
        Bearer::new(&self.admin_token)
    }

    /// Stops the application and waits until it has; the database stays. Returns its URL.
    pub async fn stop(mut self) -> String {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("app task").expect("app stops cleanly");
        }
        self.owns_database = false;
        self.database_url.clone()
    }

    pub async fn db(&self) -> Db {
        Db::open(&self.database_url).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Res {
        let res = req.send().await.expect("request is sent");
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Res { status, headers, body }
    }

    pub async fn request(&self, method: Method, path: &str, body: Option<Value>) -> Res {
        let mut req = self.client.request(method, self.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.send(req).await
    }

    pub async fn get(&self, path: &str) -> Res {
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Res {
        self.request(Method::POST, path, Some(body)).await
    }

    /// POSTs with an `Idempotency-Key` header.
    pub async fn post_idempotent(&self, path: &str, key: &str, body: &Value) -> Res {
        self.send(self.client.post(self.url(path)).header("Idempotency-Key", key).json(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Res {
        self.request(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Res {
        self.request(Method::DELETE, path, None).await
    }

    /// The events after `after` once at least `count` of them are sequenced (they are
    /// sequenced just after their change commits), as CloudEvents.
    pub async fn events_after(&self, after: i64, count: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            // Runs a sequencer round here too (the background one may hold the lead).
            self.service.sequence_all().await.expect("sequencing works");
            let res = self.get(&format!("/v1/events?after={after}&page_size=500")).await;
            assert_eq!(res.status, StatusCode::OK, "{}", res.body);
            let events = res.body["events"].as_array().unwrap().clone();
            if events.len() >= count {
                return events;
            }
            assert!(tokio::time::Instant::now() < deadline, "only {} of {count} events: {}", events.len(), res.body);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Creates an API key with these scopes (as admin) and returns `(id, secret)`.
    pub async fn api_key(&self, name: &str, scopes: &[&str]) -> (String, String) {
        let res = self.post("/v1/api-keys", json!({"name": name, "scopes": scopes})).await;
        assert_eq!(res.status, StatusCode::CREATED, "create key failed: {}", res.body);
        (res.body["api_key"]["id"].as_str().unwrap().to_string(), res.body["secret"].as_str().unwrap().to_string())
    }

    /// Declares an incident over REST and returns it.
    pub async fn create_incident(&self, body: Value) -> Value {
        let res = self.post("/v1/incidents", body).await;
        assert_eq!(res.status, StatusCode::CREATED, "create failed: {}", res.body);
        res.body
    }

    /// Declares a minimal incident with this title.
    pub async fn incident(&self, title: &str) -> Value {
        self.create_incident(json!({"title": title, "severity": "sev2"})).await
    }

    pub async fn create_component(&self, name: &str) -> Value {
        let res = self.post("/v1/components", json!({"name": name})).await;
        assert_eq!(res.status, StatusCode::CREATED, "create component failed: {}", res.body);
        res.body
    }

    /// Moves an incident over REST, asserting success.
    pub async fn transition(&self, id: &str, to: &str) -> Value {
        let res = self.post(&format!("/v1/incidents/{id}/transitions"), json!({"to": to})).await;
        assert_eq!(res.status, StatusCode::OK, "transition to {to} failed: {}", res.body);
        res.body
    }

    pub async fn incidents_grpc(&self) -> IncidentServiceClient<Authed> {
        IncidentServiceClient::with_interceptor(self.channel().await, self.bearer())
    }

    pub async fn components_grpc(&self) -> ComponentServiceClient<Authed> {
        ComponentServiceClient::with_interceptor(self.channel().await, self.bearer())
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.grpc)).expect("uri").connect().await.expect("connects")
    }
}

/// A path through the lifecycle from a new (investigating) incident to `status`.
pub fn path_to(status: &str) -> &'static [&'static str] {
    match status {
        "investigating" => &[],
        "identified" => &["identified"],
        "monitoring" => &["monitoring"],
        "resolved" => &["resolved"],
        "closed" => &["resolved", "closed"],
        other => panic!("unknown status {other}"),
    }
}

pub const STATUSES: [&str; 5] = ["investigating", "identified", "monitoring", "resolved", "closed"];

/// The lifecycle as the issue states it, written out independently of the code under test.
pub fn allowed(from: &str, to: &str) -> bool {
    let open = |s: &str| matches!(s, "investigating" | "identified" | "monitoring");
    if from == to {
        return false;
    }
    match from {
        f if open(f) => open(to) || to == "resolved",
        "resolved" => matches!(to, "investigating" | "identified" | "closed"),
        _ => false,
    }
}

/// The details of a gRPC error: BadRequest field names.
pub fn bad_request_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// The `incidentd` binary serving a database, started by [`serve_binary`].
pub struct Served {
    pub child: tokio::process::Child,
    /// The REST base URL (`http://127.0.0.1:port`).
    pub base: String,
    /// The gRPC address (`127.0.0.1:port`).
    pub grpc: String,
    /// Every line it wrote on stderr (JSON logs).
    pub logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// Finishes when stderr closes (the process exited): `logs` is then complete.
    pub logs_done: tokio::task::JoinHandle<()>,
}

/// Starts `incidentd serve` on `url` on loopback ports, with `token` as the admin token, JSON
/// logs at info, rate limiting off and loopback receivers allowed, then `env` on top; returns
/// once it listens.
pub async fn serve_binary(url: &str, token: &str, env: &[(&str, &str)]) -> Served {
    serve_binary_wrapped(&[], url, token, env).await
}

/// [`serve_binary`] run through `wrapper` (a program and its arguments that end by executing
/// the command line after them, as `unshare … sh -c '… exec "$@"'` does).
pub async fn serve_binary_wrapped(wrapper: &[&str], url: &str, token: &str, env: &[(&str, &str)]) -> Served {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = tokio::process::Command::new(program);
            c.args(args).arg(env!("CARGO_BIN_EXE_incidentd"));
            c
        }
        None => tokio::process::Command::new(env!("CARGO_BIN_EXE_incidentd")),
    };
    command
        .env_remove("DATABASE_URL")
        .env_remove("OTEL_SDK_DISABLED")
        .env("INCIDENTD_DATABASE_URL", url)
        .env("INCIDENTD_ADMIN_TOKEN", token)
        .env("INCIDENTD_HTTP_ADDR", "127.0.0.1:0")
        .env("INCIDENTD_GRPC_ADDR", "127.0.0.1:0")
        .env("INCIDENTD_LOG_FORMAT", "json")
        .env("INCIDENTD_LOG", "info")
        .env("INCIDENTD_RATE_LIMIT_PER_SECOND", "0")
        .env("INCIDENTD_WEBHOOK_ALLOWLIST", "127.0.0.0/8");
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("incidentd starts");
    let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
    let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (http, grpc) = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let json: Value = serde_json::from_str(&line).unwrap_or_default();
            logs.lock().unwrap().push(line);
            if json["message"] == "incidentd listening" {
                return (
                    json["http_addr"].as_str().unwrap().to_string(),
                    json["grpc_addr"].as_str().unwrap().to_string(),
                );
            }
        }
        panic!("exited before listening: {:?}", logs.lock().unwrap());
    })
    .await
    .expect("listens within 30 s");
    let sink = logs.clone();
    let logs_done = tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    Served { child, base: format!("http://{http}"), grpc, logs, logs_done }
}

/// Sends SIGTERM to a child process (as Kubernetes does to stop a pod).
pub fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("the process is running").to_string();
    let kill = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
    assert!(kill.success(), "kill -TERM {pid} failed");
}
