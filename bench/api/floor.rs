//! The floor server (`bench/floor`, the `floor` example) as a child process.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The floor, running on the seeded Postgres database.
pub struct Floor {
    child: Child,
    pub base: String,
}

/// The floor's binary, built first in the profile the bench runs in (a no-op when it is up to
/// date).
pub async fn binary() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--profile", "bench", "--quiet", "--example", "floor"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .await
        .context("building the floor (cargo build --profile bench --example floor)")?;
    if !status.success() {
        bail!("cargo build --profile bench --example floor failed");
    }
    // The bench runs as target/release/deps/api-…; examples are in target/release/examples.
    let exe = std::env::current_exe()?;
    let release = exe.parent().and_then(|deps| deps.parent()).context("the bench's target directory")?;
    let floor = release.join("examples").join("floor");
    anyhow::ensure!(floor.exists(), "{} is missing", floor.display());
    Ok(floor)
}

impl Floor {
    /// Starts `binary` on `database_url`, run by `wrapper` when it is not empty (valgrind).
    pub async fn start(
        binary: &PathBuf,
        database_url: &str,
        wrapper: &[String],
        timeout: Duration,
    ) -> anyhow::Result<Floor> {
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        let mut child = command
            .args(["--database-url", database_url])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting the floor")?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let base = tokio::time::timeout(timeout, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(base) = line.strip_prefix("floor listening on ") {
                    return anyhow::Ok(base.to_string());
                }
            }
            bail!("the floor exited before listening")
        })
        .await
        .context("the floor did not start in time")??;
        Ok(Floor { child, base })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}
