//! Typed settings: command-line flags, each with an `INCIDENTD_*` environment variable and a
//! default that works on a laptop. Secrets are wrapped so they never print.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::{ExposeSecret, SecretString};

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
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

    /// Log format.
    #[arg(long, env = "INCIDENTD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// Log filter (tracing `EnvFilter` syntax, e.g. `info,incidentd=debug`).
    #[arg(long, env = "INCIDENTD_LOG", default_value = "info", global = true)]
    pub log: String,

    /// Seconds to wait for in-flight requests after a stop signal.
    #[arg(long, env = "INCIDENTD_SHUTDOWN_TIMEOUT_SECS", default_value_t = 30, global = true)]
    pub shutdown_timeout_secs: u64,
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

    /// Settings for tests: loopback, OS-chosen ports, the given database.
    pub fn for_tests(database_url: &str) -> Self {
        Config {
            http_addr: "127.0.0.1:0".parse().expect("valid address"),
            grpc_addr: "127.0.0.1:0".parse().expect("valid address"),
            database_url: SecretString::from(database_url.to_string()),
            database_max_connections: 8,
            log_format: LogFormat::Text,
            log: "warn".into(),
            shutdown_timeout_secs: 5,
        }
    }
}
