//! What the benchmarks share: the service under test as a child process, throwaway databases,
//! percentiles.

// Each benchmark is its own crate and uses only part of this module.
#![allow(dead_code)]

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The admin token the service under test is started with.
pub const TOKEN: &str = "bench-admin-token-0123456789abcdef";

/// The release `incidentd` binary, running as a child process.
pub struct Service {
    child: Child,
    pub base: String,
    pub grpc: String,
    database_url: String,
}

impl Service {
    /// Starts `incidentd serve` on `database_url` (rate limiting off, loopback receivers
    /// allowed) and waits until it listens.
    pub async fn start(database_url: &str) -> anyhow::Result<Self> {
        Self::start_with(database_url, &[]).await
    }

    /// The same, with more settings in the environment.
    pub async fn start_with(database_url: &str, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_wrapped(database_url, env, &[], Duration::from_secs(60)).await
    }

    /// The same, run by `wrapper` (a command and its arguments, such as valgrind's), which
    /// execs the service in its own process; waits up to `timeout` for it to listen.
    pub async fn start_wrapped(
        database_url: &str,
        env: &[(&str, &str)],
        wrapper: &[String],
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let binary = env!("CARGO_BIN_EXE_incidentd");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        let mut child = command
            .arg("serve")
            .env_remove("DATABASE_URL")
            .env("INCIDENTD_DATABASE_URL", database_url)
            .env("INCIDENTD_ADMIN_TOKEN", TOKEN)
            .env("INCIDENTD_HTTP_ADDR", "127.0.0.1:0")
            .env("INCIDENTD_GRPC_ADDR", "127.0.0.1:0")
            .env("INCIDENTD_LOG_FORMAT", "json")
            .env("INCIDENTD_RATE_LIMIT_PER_SECOND", "0")
            // The public routes' per-address limit too (bench/status loads them from one address).
            .env("INCIDENTD_PUBLIC_RATE_LIMIT_PER_SECOND", "0")
            .env("INCIDENTD_WEBHOOK_ALLOWLIST", "127.0.0.0/8")
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting incidentd")?;
        let mut lines = BufReader::new(child.stderr.take().context("stderr")?).lines();
        let (http, grpc) = tokio::time::timeout(timeout, async {
            while let Some(line) = lines.next_line().await? {
                let json: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if json["message"] == "incidentd listening" {
                    let addr = |field: &str| json[field].as_str().map(str::to_string).context("listen address");
                    return anyhow::Ok((addr("http_addr")?, addr("grpc_addr")?));
                }
                if json["level"] == "ERROR" {
                    bail!("incidentd: {line}");
                }
            }
            bail!("incidentd exited before listening")
        })
        .await
        .with_context(|| format!("incidentd did not start within {} s", timeout.as_secs()))??;
        // Keep draining the log so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Service {
            child,
            base: format!("http://{http}"),
            grpc: format!("http://{grpc}"),
            database_url: database_url.to_string(),
        })
    }

    /// A `/proc/<pid>/status` figure in KiB (`VmHWM` peak, `VmRSS` now).
    pub fn memory_kib(&self, field: &str) -> Option<u64> {
        let pid = self.child.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// The child's process id (None once it has exited).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.memory_kib("VmHWM")
    }

    /// Stops the service, keeping its database.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// Stops the service and drops its database.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        drop_database(&self.database_url).await
    }
}

/// The server both benchmarks create their throwaway databases on.
#[derive(clap::Args, Debug)]
pub struct BenchServer {
    /// Postgres server to create the throwaway bench database on (`bench/fanout` also takes a
    /// `sqlite:` URL).
    #[arg(
        long,
        env = "INCIDENTD_BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
    )]
    pub database_url: String,
}

/// A throwaway database named after `name` on the server of `server` (a Postgres URL whose
/// database part is replaced), or a file in a temporary directory for a `sqlite:` URL.
pub fn bench_database_url(server: &str, name: &str) -> String {
    if server.starts_with("sqlite:") {
        let dir = std::env::temp_dir().join(format!("incidentd_bench_{name}_{}", std::process::id()));
        return format!("sqlite:{}", dir.join("incidentd.db").display());
    }
    let (base, query) = server.split_once('?').map_or((server, ""), |(b, q)| (b, q));
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    let query = if query.is_empty() { String::new() } else { format!("?{query}") };
    format!("{base}/incidentd_bench_{name}_{}{query}", std::process::id())
}

/// The throwaway database of `backend` (`postgres`: on `server`; `sqlite`: a file) for the
/// bench `name`.
pub fn backend_database_url(backend: &str, server: &str, name: &str) -> anyhow::Result<String> {
    match backend {
        "postgres" => Ok(bench_database_url(server, name)),
        "sqlite" => Ok(bench_database_url("sqlite:", name)),
        other => anyhow::bail!("unknown backend {other:?} (postgres or sqlite)"),
    }
}

/// Runs `incidentd seed` on `url`: the 20 components and `incidents` incidents, written
/// through the service by 16 workers.
pub async fn seed(url: &str, incidents: usize) -> anyhow::Result<()> {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_incidentd"))
        .args(["seed", "--incidents", &incidents.to_string(), "--concurrency", "16"])
        .env_remove("DATABASE_URL")
        .env("INCIDENTD_DATABASE_URL", url)
        .env("INCIDENTD_LOG", "warn")
        .output()
        .await?;
    if !out.status.success() {
        anyhow::bail!("incidentd seed failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Drops a database made by [`bench_database_url`].
pub async fn drop_database(url: &str) -> anyhow::Result<()> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        if let Some(dir) = std::path::Path::new(path).parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
        return Ok(());
    }
    let (rest, query) = url.split_once('?').map_or((url, ""), |(b, q)| (b, q));
    let (base, name) = rest.rsplit_once('/').context("database name")?;
    let admin_url = if query.is_empty() { format!("{base}/postgres") } else { format!("{base}/postgres?{query}") };
    let admin = sqlx::PgPool::connect(&admin_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")))
        .execute(&admin)
        .await?;
    admin.close().await;
    Ok(())
}

/// The `p`th percentile of sorted durations in microseconds, in milliseconds.
pub fn percentile(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

/// Busy and total clock ticks of the whole machine.
pub fn machine_ticks() -> (u64, u64) {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else { return (0, 0) };
    let Some(cpu) = stat.lines().next() else { return (0, 0) };
    let v: Vec<u64> = cpu.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Waits (up to `timeout` seconds) until the machine's busy cores, sampled over a second,
/// fall below 0.3, so that no build or test run of someone else's shares the cores with a
/// measurement; returns the last sample.
pub async fn wait_for_quiet(timeout: u64) -> f64 {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    let deadline = std::time::Instant::now() + Duration::from_secs(timeout);
    let mut said = false;
    loop {
        let before = machine_ticks();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = machine_ticks();
        let total = after.1.saturating_sub(before.1).max(1);
        let busy = after.0.saturating_sub(before.0) as f64 / total as f64 * cores;
        if busy < 0.3 || std::time::Instant::now() >= deadline {
            if busy >= 0.3 {
                eprintln!("  measuring anyway: {busy:.2} cores busy elsewhere");
            }
            return busy;
        }
        if !said {
            eprintln!("  waiting for the machine to be idle ({busy:.2} cores busy elsewhere)");
            said = true;
        }
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
}
