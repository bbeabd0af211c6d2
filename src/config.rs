//! Typed settings: command-line flags, each with an `INCIDENTD_*` environment variable and a
//! default that works on a laptop. Secrets are wrapped so they never print.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::{ExposeSecret, SecretString};

pub use crate::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "incidentd",
    version,
    about = "Incident management service: REST and gRPC, on Postgres or embedded SQLite"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API servers (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Print the OpenAPI 3.1 document of the REST API and exit.
    Openapi,
    /// Manage API keys directly in the configured database.
    #[command(subcommand)]
    ApiKey(ApiKeyCommand),
    /// Manage the encryption of stored secrets (INCIDENTD_SECRET_KEY).
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Copy the configured SQLite database to FILE, consistently, while the service runs
    /// (`VACUUM INTO`). Postgres: use pg_dump.
    Backup {
        /// Where to write the copy (a new file).
        file: std::path::PathBuf,
    },
    /// Write everything in the configured database (incidents, timelines, components and
    /// their history, subscriptions and their secrets, API key hashes, events and their
    /// sequence, audit, ...) as JSON Lines, to move it to another database with `import`.
    Export {
        /// The file to write (default: standard output).
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
    /// Read an export into the configured database, which must be new (migrated and empty),
    /// in one transaction: all of it or nothing.
    Import {
        /// The file to read (default: standard input).
        #[arg(long)]
        input: Option<std::path::PathBuf>,
    },
    /// Fill the configured database with a realistic dataset (for benchmarks and demos):
    /// 20 components and N incidents with labels, updates and resolutions.
    Seed {
        /// How many incidents to write.
        #[arg(long, default_value_t = 10_000)]
        incidents: usize,
        /// How many to write at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key and print its secret (shown this once).
    Create {
        /// A name for the key: who or what uses it.
        #[arg(long)]
        name: String,
        /// A scope (repeat, or separate with commas): incidents:read, incidents:write,
        /// components:write, subscriptions:manage, admin.
        #[arg(long = "scope", required = true, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Days until the key expires (default: never).
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id.
    Revoke {
        /// The key's id.
        id: uuid::Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Re-encrypt every stored secret under the first key of INCIDENTD_SECRET_KEY and print
    /// how many were re-encrypted; the other keys can then be removed. Fails, naming it, on a
    /// value no configured key decrypts.
    Rotate,
}

/// What a process runs. A process runs one or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// The REST and gRPC APIs (and the event sequencer every process runs).
    Api,
    /// Notification delivery: claims deliveries and sends webhooks, chat messages and email.
    Worker,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// REST listen address.
    #[arg(long, env = "INCIDENTD_HTTP_ADDR", default_value = "0.0.0.0:8080", global = true)]
    pub http_addr: SocketAddr,

    /// gRPC listen address.
    #[arg(long, env = "INCIDENTD_GRPC_ADDR", default_value = "0.0.0.0:50051", global = true)]
    pub grpc_addr: SocketAddr,

    /// Database URL: `sqlite:<path>` (embedded, one replica) or `postgres://…` (production,
    /// several replicas). The database is created if missing. `DATABASE_URL` is read when this
    /// is unset. Default: sqlite:incidentd.db (in the working directory).
    #[arg(
        long,
        env = "INCIDENTD_DATABASE_URL",
        default_value = DEFAULT_DATABASE_URL,
        hide_env_values = true,
        value_parser = parse_secret,
        hide_default_value = true,
        global = true
    )]
    pub database_url: SecretString,

    /// Maximum connections in the database pool.
    #[arg(long, env = "INCIDENTD_DATABASE_MAX_CONNECTIONS", default_value_t = 16, global = true)]
    pub database_max_connections: u32,

    /// The longest a request waits for a database connection, in milliseconds, before it
    /// fails with 503 / UNAVAILABLE (Postgres).
    #[arg(long, env = "INCIDENTD_DATABASE_ACQUIRE_TIMEOUT_MS", default_value_t = 2000, global = true)]
    pub database_acquire_timeout_ms: u64,

    /// Log format.
    #[arg(long, env = "INCIDENTD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// Log filter (tracing `EnvFilter` syntax, e.g. `info,incidentd=debug`).
    #[arg(long, env = "INCIDENTD_LOG", default_value = "info", global = true)]
    pub log: String,

    /// A static credential with the admin scope (`Authorization: Bearer <token>`). When set, no
    /// bootstrap key is generated.
    #[arg(long, env = "INCIDENTD_ADMIN_TOKEN", hide_env_values = true, value_parser = parse_secret, global = true)]
    pub admin_token: Option<SecretString>,

    /// Keys that encrypt the stored secrets the service uses (webhook signing secrets, the
    /// subscriber-link key): base64 of 32 random bytes (`openssl rand -base64 32`), several
    /// comma-separated while rotating (the first encrypts, any decrypts). Unset: with SQLite, a
    /// key is generated on the first start into `incidentd-secret.key` beside the database
    /// (mode 0600); with Postgres, secrets are stored unencrypted (with a warning at every start).
    #[arg(long, env = "INCIDENTD_SECRET_KEY", hide_env_values = true, value_parser = parse_secret, global = true)]
    pub secret_key: Option<SecretString>,

    /// Requests per second each API key may make on average (token bucket refill); 0 turns
    /// rate limiting off.
    #[arg(long, env = "INCIDENTD_RATE_LIMIT_PER_SECOND", default_value_t = 100, global = true)]
    pub rate_limit_per_second: u32,

    /// Requests each API key may make in a burst (token bucket size).
    #[arg(long, env = "INCIDENTD_RATE_LIMIT_BURST", default_value_t = 200, global = true)]
    pub rate_limit_burst: u32,

    /// Largest accepted request: REST body or gRPC message, in bytes.
    #[arg(long, env = "INCIDENTD_MAX_REQUEST_BYTES", default_value_t = 1024 * 1024, global = true)]
    pub max_request_bytes: usize,

    /// Requests this process serves at once (REST and gRPC together, health and metrics
    /// aside); more get 503 `overloaded` / RESOURCE_EXHAUSTED at once, with Retry-After.
    #[arg(long, env = "INCIDENTD_MAX_IN_FLIGHT", default_value_t = 512, global = true)]
    pub max_in_flight: usize,

    /// Seconds an HTTP/1 client has to send a request's headers (slow clients are cut off).
    #[arg(long, env = "INCIDENTD_HEADER_READ_TIMEOUT_SECS", default_value_t = 10, global = true)]
    pub header_read_timeout_secs: u64,

    /// Seconds a request body may stall between two reads before the request fails with 408.
    #[arg(long, env = "INCIDENTD_BODY_READ_TIMEOUT_SECS", default_value_t = 30, global = true)]
    pub body_read_timeout_secs: u64,

    /// Largest header section a request may send, in bytes (HTTP/1: 431; HTTP/2 and gRPC: the
    /// advertised SETTINGS_MAX_HEADER_LIST_SIZE).
    #[arg(long, env = "INCIDENTD_MAX_HEADER_BYTES", default_value_t = 64 * 1024, global = true)]
    pub max_header_bytes: usize,

    /// Streams one HTTP/2 or gRPC connection may have open at once.
    #[arg(long, env = "INCIDENTD_HTTP2_MAX_CONCURRENT_STREAMS", default_value_t = 100, global = true)]
    pub http2_max_concurrent_streams: u32,

    /// Origins browsers may call the REST API from (comma-separated, or `*`); empty turns CORS
    /// off.
    #[arg(long, env = "INCIDENTD_CORS_ALLOWED_ORIGINS", value_delimiter = ',', global = true)]
    pub cors_allowed_origins: Vec<String>,

    /// Where the first start writes the generated admin key (mode 0600). Default: beside the
    /// SQLite file, or `./incidentd-admin.key` with Postgres.
    #[arg(long, env = "INCIDENTD_BOOTSTRAP_KEY_FILE", global = true)]
    pub bootstrap_key_file: Option<PathBuf>,

    /// The URL the API is reached at from outside: the CloudEvents `source` of events, and the
    /// base of links in notifications.
    #[arg(long, env = "INCIDENTD_PUBLIC_URL", default_value = "http://localhost:8080", global = true)]
    pub public_url: String,

    /// Receivers admitted despite the SSRF guard: comma-separated CIDRs, addresses or host
    /// names (e.g. `10.0.0.0/8,receiver.internal`).
    #[arg(long, env = "INCIDENTD_WEBHOOK_ALLOWLIST", value_delimiter = ',', global = true)]
    pub webhook_allowlist: Vec<String>,

    /// SMTP server for email subscriptions: `smtp://host:25`, `smtps://user:pass@host:465` or
    /// `smtp://user:pass@host:587?tls=required`. Unset: email deliveries fail and are retried.
    #[arg(long, env = "INCIDENTD_SMTP_URL", hide_env_values = true, value_parser = parse_secret, global = true)]
    pub smtp_url: Option<SecretString>,

    /// The sender of notification emails.
    #[arg(long, env = "INCIDENTD_SMTP_FROM", default_value = "incidentd <incidentd@localhost>", global = true)]
    pub smtp_from: String,

    /// SMTP connections per process: customer mails go out over this many at once, each
    /// connection reused for many mails.
    #[arg(long, env = "INCIDENTD_SMTP_CONNECTIONS", default_value_t = 8, global = true)]
    pub smtp_connections: u32,

    /// Deliveries in flight at once per process.
    #[arg(long, env = "INCIDENTD_DELIVERY_CONCURRENCY", default_value_t = 256, global = true)]
    pub delivery_concurrency: usize,

    /// Deliveries in flight at once per subscription.
    #[arg(long, env = "INCIDENTD_DELIVERY_CONCURRENCY_PER_SUBSCRIPTION", default_value_t = 16, global = true)]
    pub delivery_concurrency_per_subscription: usize,

    /// A subscription whose deliveries all fail for this many hours is disabled.
    #[arg(long, env = "INCIDENTD_DISABLE_FAILING_AFTER_HOURS", default_value_t = 120, global = true)]
    pub disable_failing_after_hours: u64,

    /// Seconds a worker's claim on a delivery lasts without a heartbeat: a crashed worker's
    /// deliveries are taken over after this long.
    #[arg(long, env = "INCIDENTD_DELIVERY_LEASE_SECS", default_value_t = 60, global = true)]
    pub delivery_lease_secs: u64,

    /// Minutes before a scheduled maintenance starts that its `maintenance.reminder` event
    /// goes out (once); 0 sends none.
    #[arg(long, env = "INCIDENTD_MAINTENANCE_REMINDER_MINUTES", default_value_t = 60, global = true)]
    pub maintenance_reminder_minutes: u32,

    /// Acknowledgement deadlines per severity: an open incident still unacknowledged this
    /// long after it was declared emits `incident.ack_overdue` (e.g. `sev1=5m,sev2=15m`;
    /// durations in s, m or h; severities not named have none; `none` turns them off).
    #[arg(long, env = "INCIDENTD_ACK_DEADLINES", default_value = "sev1=5m,sev2=15m", global = true)]
    pub ack_deadlines: String,

    /// How often `incident.ack_overdue` repeats until the incident is acknowledged or
    /// resolved (`0` sends it once).
    #[arg(long, env = "INCIDENTD_ACK_REPEAT", default_value = "15m", global = true)]
    pub ack_repeat: String,

    /// Whether publishing a resolved incident's postmortem closes the incident (the last step
    /// of its story; a closed incident cannot be reopened).
    #[arg(long, env = "INCIDENTD_POSTMORTEM_CLOSES_INCIDENT", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub postmortem_closes_incident: bool,

    /// Hours a rotated-out webhook secret keeps signing beside the new one.
    #[arg(long, env = "INCIDENTD_SECRET_ROTATION_GRACE_HOURS", default_value_t = 24, global = true)]
    pub secret_rotation_grace_hours: u64,

    /// Seconds to wait for in-flight requests and deliveries once the drain delay is over.
    #[arg(long, env = "INCIDENTD_SHUTDOWN_TIMEOUT_SECS", default_value_t = 30, global = true)]
    pub shutdown_timeout_secs: u64,

    /// Seconds between a stop signal and refusing new work: readiness and gRPC health report
    /// NOT_SERVING at once, and requests keep being served while load balancers notice.
    #[arg(long, env = "INCIDENTD_DRAIN_DELAY_SECS", default_value_t = 5, global = true)]
    pub drain_delay_secs: u64,

    /// What this process runs, comma-separated: `api` (REST and gRPC), `worker` (notification
    /// delivery). A worker-only process serves only /healthz, /readyz and /metrics over HTTP.
    #[arg(
        long,
        env = "INCIDENTD_ROLES",
        value_enum,
        value_delimiter = ',',
        default_value = "api,worker",
        global = true
    )]
    pub roles: Vec<Role>,

    /// Apply database migrations when `serve` starts (under a Postgres advisory lock, so
    /// replicas starting together are safe). Off when a migration job does it (`incidentd migrate`).
    #[arg(long, env = "INCIDENTD_MIGRATE_ON_START", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub migrate_on_start: bool,

    /// Serve /metrics on this address instead of the HTTP address (e.g. 0.0.0.0:9090).
    #[arg(long, env = "INCIDENTD_METRICS_ADDR", global = true)]
    pub metrics_addr: Option<SocketAddr>,

    #[command(flatten)]
    pub retention: RetentionConfig,

    #[command(flatten)]
    pub status: StatusPageConfig,
}

/// How long what piles up is kept. Periods are `30d`, `24h`, `90m` or `45s`; `0` keeps
/// forever. The worker processes prune in small batches; what is still needed (pending
/// deliveries, unsequenced or undelivered events, an open incident's alerts) is never pruned.
#[derive(Debug, Clone, Args)]
pub struct RetentionConfig {
    /// Finished deliveries (delivered, failed, cancelled) and their attempts, counted from the
    /// last attempt.
    #[arg(long = "retention-deliveries", env = "INCIDENTD_RETENTION_DELIVERIES", default_value = "30d", global = true)]
    pub deliveries: String,

    /// The event log (`/v1/events`, stream resumption): a client resuming from an older
    /// cursor gets 410 / OUT_OF_RANGE.
    #[arg(long = "retention-events", env = "INCIDENTD_RETENTION_EVENTS", default_value = "30d", global = true)]
    pub events: String,

    /// Received alerts, except those of an open incident.
    #[arg(long = "retention-alerts", env = "INCIDENTD_RETENTION_ALERTS", default_value = "90d", global = true)]
    pub alerts: String,

    /// Audit records.
    #[arg(long = "retention-audit", env = "INCIDENTD_RETENTION_AUDIT", default_value = "365d", global = true)]
    pub audit: String,

    /// Idempotency records: also how long a key replays its first response.
    #[arg(
        long = "retention-idempotency-keys",
        env = "INCIDENTD_RETENTION_IDEMPOTENCY_KEYS",
        default_value = "24h",
        global = true
    )]
    pub idempotency_keys: String,

    /// How often the workers prune (`s`, `m`, `h`).
    #[arg(long = "retention-interval", env = "INCIDENTD_RETENTION_INTERVAL", default_value = "5m", global = true)]
    pub interval: String,

    /// Rows deleted per statement; the workers pause briefly after each full batch.
    #[arg(long = "retention-batch-size", env = "INCIDENTD_RETENTION_BATCH_SIZE", default_value_t = 500, global = true)]
    pub batch_size: u32,
}

impl RetentionConfig {
    /// The defaults (as documented above).
    pub fn defaults() -> Self {
        RetentionConfig {
            deliveries: "30d".into(),
            events: "30d".into(),
            alerts: "90d".into(),
            audit: "365d".into(),
            idempotency_keys: "24h".into(),
            interval: "5m".into(),
            batch_size: 500,
        }
    }

    /// The policy these settings describe.
    pub fn policy(&self) -> anyhow::Result<crate::domain::retention::RetentionPolicy> {
        use crate::domain::retention::{RetentionPolicy, parse_retention};
        let period = |name: &str, value: &str| {
            parse_retention(value).map_err(|e| anyhow::anyhow!("INCIDENTD_RETENTION_{name}: {e}"))
        };
        let every =
            crate::domain::alert::parse_duration(&self.interval).ok().filter(|d| !d.is_zero()).ok_or_else(|| {
                anyhow::anyhow!("INCIDENTD_RETENTION_INTERVAL: {:?} is not a period such as 5m", self.interval)
            })?;
        Ok(RetentionPolicy {
            deliveries: period("DELIVERIES", &self.deliveries)?,
            events: period("EVENTS", &self.events)?,
            alerts: period("ALERTS", &self.alerts)?,
            audit_events: period("AUDIT", &self.audit)?,
            idempotency_keys: period("IDEMPOTENCY_KEYS", &self.idempotency_keys)?,
            every,
            batch_size: self.batch_size.clamp(1, 10_000),
            ..RetentionPolicy::default()
        })
    }
}

/// The public status page and everything customers read without a key: `/status`, the
/// Statuspage-compatible `/api/v2/*.json`, the feeds and the badges. Its address is
/// `INCIDENTD_PUBLIC_URL`.
#[derive(Debug, Clone, Args)]
pub struct StatusPageConfig {
    /// The name the page shows (and `page.name` in the JSON).
    #[arg(
        long = "status-page-name",
        env = "INCIDENTD_STATUS_PAGE_NAME",
        default_value = "Service status",
        global = true
    )]
    pub name: String,

    /// A logo for the page header: an image URL (https://…) or a path on this host.
    #[arg(long = "status-logo-url", env = "INCIDENTD_STATUS_LOGO_URL", global = true)]
    pub logo_url: Option<String>,

    /// The time zone the page shows times and days in (an IANA name such as Europe/Berlin);
    /// uptime days are its calendar days.
    #[arg(
        long = "status-time-zone",
        env = "INCIDENTD_STATUS_TIME_ZONE",
        default_value = "UTC",
        value_parser = parse_time_zone,
        global = true
    )]
    pub time_zone: chrono_tz::Tz,

    /// The page's language: `auto` (each reader's Accept-Language), `en` or `de`.
    #[arg(
        long = "status-language",
        env = "INCIDENTD_STATUS_LANGUAGE",
        value_enum,
        default_value = "auto",
        global = true
    )]
    pub language: LanguageSetting,

    /// Seconds browsers and proxies may reuse a public response (Cache-Control max-age).
    #[arg(long = "status-max-age-secs", env = "INCIDENTD_STATUS_MAX_AGE_SECS", default_value_t = 10, global = true)]
    pub max_age_secs: u32,

    /// Seconds between full rebuilds of what the public routes serve (it is also rebuilt
    /// within a second of every change).
    #[arg(long = "status-refresh-secs", env = "INCIDENTD_STATUS_REFRESH_SECS", default_value_t = 60, global = true)]
    pub refresh_secs: u64,

    /// Public requests per second per client address (0: unlimited).
    #[arg(
        long = "public-rate-limit-per-second",
        env = "INCIDENTD_PUBLIC_RATE_LIMIT_PER_SECOND",
        default_value_t = 50,
        global = true
    )]
    pub public_rate_limit_per_second: u32,

    /// Burst of public requests per client address.
    #[arg(
        long = "public-rate-limit-burst",
        env = "INCIDENTD_PUBLIC_RATE_LIMIT_BURST",
        default_value_t = 200,
        global = true
    )]
    pub public_rate_limit_burst: u32,

    /// Take the client address from the last X-Forwarded-For entry (set only behind a proxy
    /// that writes it), for the public rate limit.
    #[arg(long = "trust-forwarded-for", env = "INCIDENTD_TRUST_FORWARDED_FOR", default_value_t = false, action = clap::ArgAction::Set, global = true)]
    pub trust_forwarded_for: bool,
}

/// Which language the status page speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LanguageSetting {
    /// Each reader's `Accept-Language` (English when it names neither).
    Auto,
    En,
    De,
}

fn parse_time_zone(s: &str) -> Result<chrono_tz::Tz, String> {
    s.parse().map_err(|_| format!("{s:?} is not an IANA time zone name (such as UTC or Europe/Berlin)"))
}

fn parse_secret(s: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(s.to_string()))
}

/// The default database: an embedded SQLite file in the working directory, created on
/// first start.
pub const DEFAULT_DATABASE_URL: &str = "sqlite:incidentd.db";

impl Config {
    /// Reads flags and environment; `DATABASE_URL` fills in when `INCIDENTD_DATABASE_URL`
    /// and `--database-url` are both absent.
    pub fn from_cli() -> (Option<Command>, Config) {
        let mut cli = Cli::parse();
        if std::env::var_os("INCIDENTD_DATABASE_URL").is_none()
            && cli.config.database_url.expose_secret() == DEFAULT_DATABASE_URL
            && let Ok(url) = std::env::var("DATABASE_URL")
        {
            cli.config.database_url = SecretString::from(url);
        }
        (cli.command, cli.config)
    }

    /// What the service is built from: access control, how notifications are sent and made.
    /// The database pool's limits.
    pub fn pool_settings(&self) -> crate::store::PoolSettings {
        crate::store::PoolSettings {
            max_connections: self.database_max_connections,
            acquire_timeout: std::time::Duration::from_millis(self.database_acquire_timeout_ms.max(1)),
        }
    }

    pub fn service_settings(&self) -> anyhow::Result<crate::service::ServiceSettings> {
        use std::num::NonZeroU32;
        let hours = |h: u64| std::time::Duration::from_secs(h * 3600);
        let rate_limit = NonZeroU32::new(self.rate_limit_per_second).map(|per_second| crate::service::RateLimit {
            per_second,
            burst: NonZeroU32::new(self.rate_limit_burst).unwrap_or(per_second),
        });
        Ok(crate::service::ServiceSettings {
            access: crate::service::AccessSettings { admin_token: self.admin_token.clone(), rate_limit },
            sender: crate::notify::SenderSettings {
                guard: crate::notify::Guard::new(crate::notify::Allowlist::parse(&self.webhook_allowlist)?),
                smtp_url: self.smtp_url.clone(),
                smtp_from: self.smtp_from.clone(),
                smtp_connections: self.smtp_connections.clamp(1, 256),
                public_url: self.public_url.trim_end_matches('/').to_string(),
            },
            dispatch: crate::service::DispatchSettings {
                max_in_flight: self.delivery_concurrency.max(1),
                per_subscription: self.delivery_concurrency_per_subscription.max(1),
                disable_failing_after: hours(self.disable_failing_after_hours),
                rotation_grace: hours(self.secret_rotation_grace_hours),
                lease: std::time::Duration::from_secs(self.delivery_lease_secs.max(3)),
                drain: std::time::Duration::from_secs(self.shutdown_timeout_secs),
                ..Default::default()
            },
            time_zone: self.status.time_zone,
            maintenance_reminder: chrono::Duration::minutes(i64::from(self.maintenance_reminder_minutes)),
            page_name: self.status.name.clone(),
            ack_policy: crate::domain::alert::AckPolicy::parse(&self.ack_deadlines, &self.ack_repeat)
                .map_err(|e| anyhow::anyhow!("INCIDENTD_ACK_DEADLINES / INCIDENTD_ACK_REPEAT: {e}"))?,
            postmortem_closes_incident: self.postmortem_closes_incident,
            retention: self.retention.policy()?,
        })
    }

    /// Whether this process runs `role`.
    pub fn runs(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Where the generated bootstrap admin key goes: the configured file, else beside the
    /// SQLite database, else the working directory.
    pub fn bootstrap_key_path(&self) -> PathBuf {
        if let Some(p) = &self.bootstrap_key_file {
            return p.clone();
        }
        self.sqlite_dir().unwrap_or_default().join("incidentd-admin.key")
    }

    /// Where the generated key of the stored secrets goes when `INCIDENTD_SECRET_KEY` is
    /// unset: beside the SQLite database file. `None` with Postgres or an in-memory database.
    pub fn secret_key_path(&self) -> Option<PathBuf> {
        self.sqlite_dir().map(|d| d.join("incidentd-secret.key"))
    }

    /// The folder of the SQLite database file (empty: the working directory); `None` with
    /// Postgres or an in-memory database.
    fn sqlite_dir(&self) -> Option<PathBuf> {
        let url = self.database_url.expose_secret();
        url.strip_prefix("sqlite:")
            .map(|p| p.trim_start_matches("//").split('?').next().unwrap_or_default())
            .filter(|p| !p.contains(":memory:") && !url.contains("mode=memory"))
            .and_then(|p| std::path::Path::new(p).parent().map(|d| d.to_path_buf()))
    }

    /// Settings for tests: loopback, OS-chosen ports, the given database, no rate limit,
    /// loopback receivers allowed.
    pub fn for_tests(database_url: &str) -> Self {
        Config {
            http_addr: "127.0.0.1:0".parse().expect("valid address"),
            grpc_addr: "127.0.0.1:0".parse().expect("valid address"),
            database_url: SecretString::from(database_url.to_string()),
            database_max_connections: 8,
            database_acquire_timeout_ms: 2000,
            log_format: LogFormat::Text,
            log: "warn".into(),
            admin_token: None,
            secret_key: None,
            rate_limit_per_second: 0,
            rate_limit_burst: 1,
            max_request_bytes: 1024 * 1024,
            max_in_flight: 512,
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 30,
            max_header_bytes: 64 * 1024,
            http2_max_concurrent_streams: 100,
            cors_allowed_origins: Vec::new(),
            bootstrap_key_file: None,
            public_url: "http://localhost:8080".into(),
            webhook_allowlist: vec!["127.0.0.0/8".into(), "::1".into()],
            smtp_url: None,
            smtp_from: "incidentd <incidentd@localhost>".into(),
            delivery_concurrency: 64,
            delivery_concurrency_per_subscription: 8,
            smtp_connections: 8,
            disable_failing_after_hours: 120,
            secret_rotation_grace_hours: 24,
            maintenance_reminder_minutes: 60,
            postmortem_closes_incident: true,
            ack_deadlines: "sev1=5m,sev2=15m".into(),
            ack_repeat: "15m".into(),
            delivery_lease_secs: 60,
            shutdown_timeout_secs: 5,
            drain_delay_secs: 0,
            roles: vec![Role::Api, Role::Worker],
            migrate_on_start: true,
            metrics_addr: None,
            retention: RetentionConfig::defaults(),
            status: StatusPageConfig {
                name: "Acme status".into(),
                logo_url: None,
                time_zone: chrono_tz::Tz::UTC,
                language: LanguageSetting::Auto,
                max_age_secs: 10,
                refresh_secs: 60,
                public_rate_limit_per_second: 0,
                public_rate_limit_burst: 1,
                trust_forwarded_for: false,
            },
        }
    }
}
