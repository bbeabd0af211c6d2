//! Wiring: connect the store, bind both listeners (port 0 allowed), serve REST and gRPC
//! until the cancellation token fires, then drain.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;

use crate::api::{grpc, rest};
use crate::config::{Config, Role};
use crate::secrets::{KeyRing, Reseal};
use crate::service::Service;
use crate::store::{self, DynStore};

/// How long a starting process waits for its first status snapshot before it listens.
const STATUS_PAGE_WAIT: Duration = Duration::from_secs(5);

/// A built application: store connected and migrated, listeners bound, nothing served yet.
pub struct Application {
    http: TcpListener,
    /// Bound when the process runs the API.
    grpc: Option<TcpListener>,
    /// Bound when metrics have a port of their own.
    metrics: Option<TcpListener>,
    service: Service,
    /// The public surfaces (status page, Statuspage JSON, feeds, badges).
    public: std::sync::Arc<crate::api::public::Public>,
    rest: rest::RestSettings,
    api: bool,
    worker: bool,
    max_message_bytes: usize,
    /// Requests in flight at once (REST and gRPC together).
    max_in_flight: usize,
    http_limits: crate::api::serve::HttpLimits,
    drain_delay: Duration,
    shutdown_timeout: Duration,
}

/// Connects to the database the URL names and applies migrations (without the keys of the
/// stored secrets: for what writes none).
pub async fn migrate(database_url: &str, max_connections: u32) -> anyhow::Result<DynStore> {
    migrate_with(database_url, store::PoolSettings::new(max_connections)).await
}

/// [`migrate`] with the pool's limits spelled out.
pub async fn migrate_with(database_url: &str, pool: store::PoolSettings) -> anyhow::Result<DynStore> {
    let store = store::connect_with(database_url, pool, Arc::new(KeyRing::unencrypted()))
        .await
        .with_context(|| format!("connecting to {}", store::redact_url(database_url)))?;
    store.migrate().await.context("applying migrations")?;
    crate::service::backfill_component_history(&store).await.context("replaying the component status history")?;
    Ok(store)
}

/// Connects to the configured database, sealing stored secrets with `keys`; migrates first
/// when `migrate`.
async fn connect_configured(config: &Config, keys: KeyRing, migrate: bool) -> anyhow::Result<DynStore> {
    let url = config.database_url.expose_secret();
    let store = store::connect_with(url, config.pool_settings(), Arc::new(keys))
        .await
        .with_context(|| format!("connecting to {}", store::redact_url(url)))?;
    if migrate {
        store.migrate().await.context("applying migrations")?;
        crate::service::backfill_component_history(&store).await.context("replaying the component status history")?;
    }
    Ok(store)
}

/// Connects to the configured database with the keys of the stored secrets, and migrates it.
pub async fn open_store(config: &Config) -> anyhow::Result<DynStore> {
    connect_configured(config, secret_keys(config)?, true).await
}

/// The keys that seal the stored secrets: `INCIDENTD_SECRET_KEY`; else, with SQLite, the key
/// file beside the database (generated on the first start); else none (Postgres: stored
/// unencrypted, with a warning).
pub fn secret_keys(config: &Config) -> anyhow::Result<KeyRing> {
    if let Some(value) = &config.secret_key {
        let keys = KeyRing::parse(value.expose_secret(), crate::secrets::ENV)?;
        tracing::info!(keys = %keys.key_ids().join(","), "stored secrets are encrypted with INCIDENTD_SECRET_KEY");
        return Ok(keys);
    }
    if config.database_url.expose_secret().starts_with("sqlite:") {
        let Some(path) = config.secret_key_path() else {
            // An in-memory database lives as long as the process: so does its key.
            return Ok(KeyRing::parse(&KeyRing::generate_key(), "a generated key").expect("a valid key"));
        };
        let (value, generated) = read_or_create_key_file(&path)?;
        let keys = KeyRing::parse(&value, &path.display().to_string())?;
        match generated {
            true => tracing::info!(file = %path.display(), keys = %keys.key_ids().join(","),
                "generated the key of the stored secrets (mode 0600); back it up with the database"),
            false => tracing::info!(file = %path.display(), keys = %keys.key_ids().join(","),
                "stored secrets are encrypted with the key file"),
        }
        return Ok(keys);
    }
    tracing::warn!("secrets are stored unencrypted; set INCIDENTD_SECRET_KEY (openssl rand -base64 32)");
    Ok(KeyRing::unencrypted())
}

/// The key file's content, generating it first when it does not exist; and whether it was
/// generated. A new key is written under a temporary name and linked into place, so a
/// process starting at the same moment either creates the file or reads the other's whole.
fn read_or_create_key_file(path: &Path) -> anyhow::Result<(String, bool)> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).with_context(|| format!("reading the secret key file {}", path.display()))
    };
    if path.exists() {
        return Ok((read(path)?, false));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let key = KeyRing::generate_key();
    let temporary = path.with_extension(format!("key.{}.tmp", std::process::id()));
    write_secret_file(&temporary, &key)
        .with_context(|| format!("writing the secret key file {}", temporary.display()))?;
    let linked = std::fs::hard_link(&temporary, path);
    let _ = std::fs::remove_file(&temporary);
    match linked {
        Ok(()) => Ok((key, true)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok((read(path)?, false)),
        Err(e) => Err(e).with_context(|| format!("writing the secret key file {}", path.display())),
    }
}

/// Encrypts the stored secrets still in plaintext (from before a key was set) and checks
/// that every encrypted one decrypts with the configured keys, so a missing key stops the
/// start instead of failing deliveries later.
async fn seal_stored_secrets(store: &DynStore) -> anyhow::Result<()> {
    let done = store.reseal_secrets(Reseal::Plaintext).await.context("checking the stored secrets")?;
    if done.resealed > 0 {
        tracing::info!(encrypted = done.resealed, "encrypted stored secrets that were in plaintext");
    }
    Ok(())
}

/// Writes the generated admin key to `path`, readable by its owner only.
fn write_secret_file(path: &Path, secret: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(format!("{secret}\n").as_bytes())
}

/// On a database without any API key (and no admin token configured), creates an admin key,
/// prints it once on standard output and writes it to the bootstrap key file.
async fn bootstrap(config: &Config, service: &Service) -> anyhow::Result<()> {
    if config.admin_token.is_some() {
        return Ok(());
    }
    let Some(issued) = service.bootstrap_admin_key().await? else { return Ok(()) };
    let path = config.bootstrap_key_path();
    let written = write_secret_file(&path, &issued.secret);
    println!(
        "\n  No API key existed, so incidentd created an admin key. It is shown this once:\n\n    {}\n",
        issued.secret
    );
    match written {
        Ok(()) => {
            println!("  It was also written to {} (mode 0600).\n", path.display());
            tracing::warn!(key = %issued.key.prefix, file = %path.display(), "created the bootstrap admin key");
        }
        Err(e) => tracing::warn!(key = %issued.key.prefix, file = %path.display(), error = %e,
            "created the bootstrap admin key (printed above) but could not write it to a file"),
    }
    Ok(())
}

impl Application {
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, std::sync::Arc::new(crate::service::SystemClock)).await
    }

    /// Builds with the clock the dispatcher reads (tests move time instead of waiting).
    pub async fn build_with_clock(
        config: &Config,
        clock: std::sync::Arc<dyn crate::service::Clock>,
    ) -> anyhow::Result<Self> {
        let store = connect_configured(config, secret_keys(config)?, config.migrate_on_start).await?;
        seal_stored_secrets(&store).await?;
        let mut settings = config.service_settings()?;
        settings.dispatch.clock = clock;
        let service = Service::new(store, settings)?;
        bootstrap(config, &service).await?;
        let public = crate::api::public::Public::new(crate::api::public::PublicSettings::from_config(config));
        // The status page is ready when the process listens, unless preparing it takes long
        // (a database under load, thousands of open incidents): the process then listens
        // anyway, the API serves, and the page follows from the background.
        if config.runs(Role::Api) {
            match tokio::time::timeout(STATUS_PAGE_WAIT, public.rebuild(&service)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "could not prepare the status page yet; it is retried in the background")
                }
                Err(_) => tracing::warn!(
                    waited_secs = STATUS_PAGE_WAIT.as_secs(),
                    "the status page is not prepared yet; it follows from the background"
                ),
            }
        }
        let http = TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("binding the HTTP address {}", config.http_addr))?;
        let api = config.runs(Role::Api);
        let grpc = match api {
            true => Some(
                TcpListener::bind(config.grpc_addr)
                    .await
                    .with_context(|| format!("binding the gRPC address {}", config.grpc_addr))?,
            ),
            false => None,
        };
        let metrics = match config.metrics_addr {
            Some(addr) => {
                Some(TcpListener::bind(addr).await.with_context(|| format!("binding the metrics address {addr}"))?)
            }
            None => None,
        };
        Ok(Self {
            http,
            grpc,
            service,
            public,
            rest: rest::RestSettings {
                max_body_bytes: config.max_request_bytes,
                cors_allowed_origins: config.cors_allowed_origins.clone(),
                serve_metrics: metrics.is_none(),
                body_read_timeout: Duration::from_secs(config.body_read_timeout_secs.max(1)),
            },
            metrics,
            api,
            worker: config.runs(Role::Worker),
            max_message_bytes: config.max_request_bytes,
            max_in_flight: config.max_in_flight,
            http_limits: crate::api::serve::HttpLimits {
                header_read_timeout: Duration::from_secs(config.header_read_timeout_secs.max(1)),
                max_header_bytes: config.max_header_bytes,
                http2_max_concurrent_streams: config.http2_max_concurrent_streams.max(1),
            },
            drain_delay: Duration::from_secs(config.drain_delay_secs),
            shutdown_timeout: Duration::from_secs(config.shutdown_timeout_secs),
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr().expect("bound listener has an address")
    }

    /// The gRPC address, when the process runs the API.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().map(|l| l.local_addr().expect("bound listener has an address"))
    }

    /// The metrics address, when metrics have a port of their own.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|l| l.local_addr().expect("bound listener has an address"))
    }

    /// The service behind both transports (tests drive background work through it).
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// Serves until `shutdown` is cancelled, then shuts down gracefully: readiness and gRPC
    /// health report NOT_SERVING at once; requests keep being served for the drain delay
    /// (while load balancers take the process out); then the listeners close, live streams
    /// end, in-flight requests finish, the dispatcher stops claiming, hands back what it has
    /// queued and records what it is sending; all within the shutdown timeout.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let (health, health_service) = tonic_health::server::health_reporter();
        let http_addr = self.http_addr();
        let grpc_addr = self.grpc_addr();
        let metrics_addr = self.metrics_addr();

        // The database answered during build: serve from the start; the watcher keeps the
        // status in step from then on.
        for name in health_services() {
            health.set_service_status(name, ServingStatus::Serving).await;
        }
        let mut background = self.service.start_background(self.worker).await?;
        let (service, reporter) = (self.service.clone(), health.clone());
        background.spawn("readiness", |stop| watch_readiness(service, reporter, stop));
        if self.api {
            let (public, service) = (self.public.clone(), self.service.clone());
            background.spawn("status page", |stop| public.run(service, stop));
        }

        // Closing the listeners waits for the drain delay; `shutdown` only starts the drain.
        let closing = CancellationToken::new();
        let mut servers = Vec::new();
        let admission = crate::api::admission::Admission::new(self.max_in_flight, self.service.clone());
        let router = match self.api {
            true => rest::router(self.service.clone(), &self.rest, self.public.clone(), admission.clone())?,
            false => rest::operations_router(self.service.clone(), self.rest.serve_metrics),
        };
        // The peer address (ConnectInfo) feeds the public routes' rate limit.
        let rest_server =
            crate::api::serve::serve(self.http, router, self.http_limits, closing.clone().cancelled_owned());
        servers.push(tokio::spawn(async move { rest_server.await.context("REST server") }));
        if let Some(listener) = self.grpc {
            let limits = grpc::GrpcLimits {
                max_message_bytes: self.max_message_bytes,
                max_concurrent_streams: self.http_limits.http2_max_concurrent_streams,
                max_header_list_bytes: u32::try_from(self.http_limits.max_header_bytes).unwrap_or(u32::MAX),
            };
            let grpc_server = grpc::server(self.service.clone(), health_service, limits, admission)?
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                    closing.clone().cancelled_owned(),
                );
            servers.push(tokio::spawn(async move { grpc_server.await.context("gRPC server") }));
        }
        if let Some(listener) = self.metrics {
            let server = axum::serve(listener, rest::metrics_router(self.service.clone()))
                .with_graceful_shutdown(closing.clone().cancelled_owned());
            servers.push(tokio::spawn(async move { server.await.context("metrics server") }));
        }
        let roles = match (self.api, self.worker) {
            (true, true) => "api,worker",
            (true, false) => "api",
            _ => "worker",
        };
        let shown = |a: Option<SocketAddr>| a.map_or_else(|| "off".to_string(), |a| a.to_string());
        tracing::info!(%http_addr, grpc_addr = %shown(grpc_addr), metrics_addr = %shown(metrics_addr), roles, "incidentd listening");

        shutdown.cancelled().await;
        tracing::info!(drain_delay = ?self.drain_delay, "stopping: not ready any more; draining");
        self.service.start_draining();
        for name in health_services() {
            health.set_service_status(name, ServingStatus::NotServing).await;
        }
        tokio::time::sleep(self.drain_delay).await;
        tracing::info!("stopping: closing the listeners, finishing in-flight work");
        closing.cancel();
        self.service.end_streams();
        let drained = tokio::time::timeout(self.shutdown_timeout, async {
            background.stop().await;
            for server in servers {
                server.await??;
            }
            anyhow::Ok(())
        })
        .await;
        match drained {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(timeout = ?self.shutdown_timeout, "in-flight work did not finish in time");
                Ok(())
            }
        }
    }
}

/// The names gRPC health reports on: the server as a whole and each service.
fn health_services() -> impl Iterator<Item = &'static str> {
    std::iter::once("").chain(grpc::SERVICE_NAMES.iter().copied())
}

/// How often the readiness watcher asks the database while it answers, and while it does not.
const READINESS_EVERY: Duration = Duration::from_secs(2);
const READINESS_RETRY: Duration = Duration::from_millis(500);

/// Keeps the gRPC health status in step with the database: NOT_SERVING while it is
/// unreachable. Logs the loss once (WARN) and the recovery once (INFO); stops watching when the
/// process drains, whose NOT_SERVING is planned and not worth a warning.
async fn watch_readiness(service: Service, health: tonic_health::server::HealthReporter, stop: CancellationToken) {
    let mut lost: Option<std::time::Instant> = None;
    loop {
        let pause = if lost.is_some() { READINESS_RETRY } else { READINESS_EVERY };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        let answer = service.ping_database().await;
        if service.is_draining() {
            return;
        }
        let status = match (answer, lost) {
            (Err(e), None) => {
                tracing::warn!(error = %e, "database unreachable: not serving until it answers");
                lost = Some(std::time::Instant::now());
                ServingStatus::NotServing
            }
            (Ok(()), Some(since)) => {
                tracing::info!(unreachable_for = ?since.elapsed(), "database reachable again: serving");
                lost = None;
                ServingStatus::Serving
            }
            _ => continue,
        };
        for name in health_services() {
            health.set_service_status(name, status).await;
        }
    }
}

/// `incidentd export`: the configured database, as JSON Lines, to `output` or standard output.
pub async fn export_command(config: &Config, output: Option<&Path>) -> anyhow::Result<()> {
    let url = config.database_url.expose_secret();
    let moved = match output {
        Some(path) => {
            let file =
                std::fs::File::create_new(path).with_context(|| format!("creating {} (a new file)", path.display()))?;
            store::transfer::export(url, std::io::BufWriter::new(file)).await?
        }
        None => store::transfer::export(url, std::io::BufWriter::new(std::io::stdout())).await?,
    };
    eprintln!("exported {} rows from {} tables", moved.total(), moved.rows.len());
    Ok(())
}

/// `incidentd import`: an export from `input` or standard input into the configured database,
/// which is migrated first and must be empty.
pub async fn import_command(config: &Config, input: Option<&Path>) -> anyhow::Result<()> {
    let url = config.database_url.expose_secret();
    // Migrated by this incidentd, then closed: the import writes on a connection of its own.
    migrate(url, 1).await?;
    let moved = match input {
        Some(path) => {
            let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            store::transfer::import(url, std::io::BufReader::new(file)).await?
        }
        None => store::transfer::import(url, std::io::BufReader::new(std::io::stdin())).await?,
    };
    eprintln!("imported {} rows into {} tables", moved.total(), moved.rows.len());
    Ok(())
}

/// Cancels `token` on Ctrl-C or SIGTERM.
pub async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("received Ctrl-C"),
        _ = terminate => tracing::info!("received SIGTERM"),
    }
    token.cancel();
}

/// `incidentd api-key …`: manage keys directly in the configured database (as the system).
pub async fn api_key_command(config: &Config, command: crate::config::ApiKeyCommand) -> anyhow::Result<()> {
    use crate::config::ApiKeyCommand;
    use crate::domain::access::NewApiKey;
    use crate::domain::{Caller, PageRequest, Scope};

    let store = open_store(config).await?;
    let service = Service::new(store, config.service_settings()?)?;
    let system = Caller::system();
    match command {
        ApiKeyCommand::Create { name, scopes, expires_in_days } => {
            let scopes = scopes
                .iter()
                .map(|s| s.trim().parse::<Scope>().map_err(|e| anyhow::anyhow!("--scope {s}: {e}")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let expires_at = expires_in_days.map(|d| crate::domain::now() + chrono::Duration::days(i64::from(d)));
            let issued = service
                .create_api_key(&system, NewApiKey { name: Some(name), scopes, expires_at })
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!(
                "created API key {} ({}), scopes {}; its secret follows, shown this once:",
                issued.key.id,
                issued.key.name,
                issued.key.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            );
            println!("{}", issued.secret);
        }
        ApiKeyCommand::List => {
            let mut token: Option<String> = None;
            println!("{:<36}  {:<16}  {:<24}  {:<40}  status", "id", "prefix", "name", "scopes");
            loop {
                let page = PageRequest::new(Some(500), token.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))?;
                let page = service.list_api_keys(&system, page).await.map_err(|e| anyhow::anyhow!("{e}"))?;
                for k in &page.items {
                    let status = match k.unusable(crate::domain::now()) {
                        Some(why) => why.trim_start_matches("the API key has ").to_string(),
                        None => "active".to_string(),
                    };
                    let scopes = k.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",");
                    println!("{:<36}  {:<16}  {:<24}  {:<40}  {status}", k.id, k.prefix, k.name, scopes);
                }
                match page.next_page_token {
                    Some(t) => token = Some(t),
                    None => break,
                }
            }
        }
        ApiKeyCommand::Revoke { id } => {
            let key = service.revoke_api_key(&system, id).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("revoked API key {} ({})", key.id, key.name);
        }
    }
    Ok(())
}

/// `incidentd secrets …`: the encryption of the stored secrets.
pub async fn secrets_command(config: &Config, command: crate::config::SecretsCommand) -> anyhow::Result<()> {
    match command {
        crate::config::SecretsCommand::Rotate => {
            let keys = secret_keys(config)?;
            let Some(first) = keys.key_ids().first().map(|id| id.to_string()) else {
                anyhow::bail!("INCIDENTD_SECRET_KEY is not set: there is no key to encrypt the stored secrets with");
            };
            let store = connect_configured(config, keys, config.migrate_on_start).await?;
            let done = store
                .reseal_secrets(Reseal::NotUnderFirstKey)
                .await
                .map_err(|e| anyhow::anyhow!("re-encrypting the stored secrets: {e}"))?;
            println!(
                "re-encrypted {} of {} stored secrets under key {first}; keys other than {first} can now be removed",
                done.resealed, done.checked
            );
        }
    }
    Ok(())
}
