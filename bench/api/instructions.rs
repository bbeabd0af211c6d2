//! Instructions per request, counted by valgrind's callgrind: a server runs under
//! `valgrind --tool=callgrind`, a client sends it requests one after another on one keep-alive
//! connection, and `callgrind_control --dump` before and after a fixed number of them gives the
//! instructions the server's process ran for those requests (every thread: the runtime's
//! workers, the pool's connections, whatever else runs meanwhile). Unlike requests per second
//! on this shared box, the count does not change with what else the machine is doing.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::Command;

use super::Call;

/// Requests sent before counting (connections opened, statements prepared, caches filled).
const WARMUP: u64 = 200;

/// The valgrind command line a server runs under, its profiles written to `dir` as
/// `name.<pid>.<n>`.
pub fn wrapper(dir: &Path, name: &str) -> Vec<String> {
    vec!["valgrind".into(), "--tool=callgrind".into(), format!("--callgrind-out-file={}/{name}.%p", dir.display())]
}

/// How long a server may take to start under valgrind (it runs some 50 times slower).
pub const START_TIMEOUT: Duration = Duration::from_secs(300);

/// The profiles of one server process under callgrind.
pub struct Counter {
    pid: u32,
    dir: PathBuf,
    prefix: String,
    seen: HashSet<PathBuf>,
}

impl Counter {
    pub fn new(pid: u32, dir: &Path, name: &str) -> Counter {
        // Callgrind names its profiles `name.<pid>.<n>` (and the one at exit `name.<pid>`).
        Counter { pid, dir: dir.to_path_buf(), prefix: format!("{name}.{pid}."), seen: HashSet::new() }
    }

    /// Asks callgrind for a profile of what ran since the last one and returns its instruction
    /// total, and whether `trigger` had to wake the process (callgrind only acts on the request
    /// when one of its threads runs: then the dump is taken as the trigger request starts,
    /// which falls in the next profile).
    async fn dump(&mut self, trigger: &Call) -> anyhow::Result<(u64, bool, PathBuf)> {
        let mut control = Command::new("callgrind_control")
            .args(["--dump", &self.pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("running callgrind_control (valgrind)")?;
        let triggered = match tokio::time::timeout(Duration::from_millis(500), control.wait()).await {
            Ok(status) => {
                anyhow::ensure!(status?.success(), "callgrind_control --dump failed");
                false
            }
            Err(_) => {
                trigger(0).await.map_err(anyhow::Error::msg)?;
                let status = tokio::time::timeout(Duration::from_secs(60), control.wait())
                    .await
                    .context("callgrind_control --dump did not return")??;
                anyhow::ensure!(status.success(), "callgrind_control --dump failed");
                true
            }
        };
        let profile = self.newest()?;
        let text = std::fs::read_to_string(&profile)?;
        let total = text
            .lines()
            .find_map(|l| l.strip_prefix("totals:").or_else(|| l.strip_prefix("summary:")))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .with_context(|| format!("no total in {}", profile.display()))?;
        Ok((total, triggered, profile))
    }

    /// The profile written since the last call.
    fn newest(&mut self) -> anyhow::Result<PathBuf> {
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name.starts_with(&self.prefix) && !self.seen.contains(&path) {
                self.seen.insert(path.clone());
                return Ok(path);
            }
        }
        bail!("callgrind wrote no profile for {} in {}", self.prefix, self.dir.display())
    }

    /// Instructions per request of `call`, over `n` requests after a warm-up; the profile of
    /// the counted requests stays in the directory (`callgrind_annotate` reads it).
    pub async fn per_request(&mut self, call: &Call, n: u64) -> anyhow::Result<(f64, PathBuf)> {
        for i in 0..WARMUP {
            call(i).await.map_err(anyhow::Error::msg)?;
        }
        let (_, woken, _) = self.dump(call).await?;
        for i in 0..n {
            call(i).await.map_err(anyhow::Error::msg)?;
        }
        let (total, _, profile) = self.dump(call).await?;
        // Each profile holds what ran since the one before; the request that woke the process
        // for the first dump ran after it.
        Ok((total as f64 / (n + u64::from(woken)) as f64, profile))
    }
}
