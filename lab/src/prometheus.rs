//! Debian's Prometheus run inside a lab namespace against vigie's `/metrics` there, with its
//! own temporary storage, and queried through its HTTP API (with curl in the same namespace:
//! the namespace's loopback is not reachable from outside it).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::process::Process;
use crate::tempdir::TempDir;
use crate::topology::Topology;

/// Where Prometheus listens inside the namespace (not 9090, which a host's own may use in a
/// namespace sharing test; each lab namespace has its own loopback anyway).
pub const LISTEN: &str = "127.0.0.1:9091";

/// A running Prometheus; killed on drop with the topology's children.
pub struct Prometheus<'t> {
    topo: &'t Topology,
    ns: String,
    process: Process,
    files: TempDir,
}

impl<'t> Prometheus<'t> {
    /// Starts Prometheus in `ns`, scraping `target` (host:port) every second as job `vigie`,
    /// with the alerting rules of `rules` loaded.
    pub fn start(topo: &'t Topology, ns: &str, target: &str, rules: &Path) -> anyhow::Result<Self> {
        let files = TempDir::new("prometheus")?;
        let config = files.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files: [{rules:?}]\n\
                 scrape_configs:\n  - job_name: vigie\n    static_configs:\n      - targets: [{target:?}]\n",
                rules = rules.display().to_string(),
            ),
        )?;
        let log = std::fs::File::create(files.path().join("prometheus.log"))?;
        let config_arg = format!("--config.file={}", config.display());
        let storage_arg = format!(
            "--storage.tsdb.path={}",
            files.path().join("data").display()
        );
        let listen_arg = format!("--web.listen-address={LISTEN}");
        let process = topo.spawn(
            ns,
            "prometheus",
            &[&config_arg, &storage_arg, &listen_arg],
            Stdio::null(),
            Stdio::from(log),
        )?;
        Ok(Self {
            topo,
            ns: ns.to_owned(),
            process,
            files,
        })
    }

    /// Prometheus's own log, for failure messages.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.files.path().join("prometheus.log")).unwrap_or_default()
    }

    /// GETs an API path (with its query string) and returns the JSON answer, whatever its
    /// status (errors come back as `{"status": "error", ...}`).
    pub fn api(&self, path_and_query: &str) -> anyhow::Result<Value> {
        let url = format!("http://{LISTEN}{path_and_query}");
        let out = self
            .topo
            .exec(&self.ns, "curl", &["-sS", "--max-time", "10", &url])?;
        serde_json::from_slice(&out.stdout)
            .with_context(|| format!("{url}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Evaluates a `PromQL` expression now.
    pub fn query(&self, expr: &str) -> anyhow::Result<Value> {
        let url = format!("http://{LISTEN}/api/v1/query");
        let out = self.topo.exec(
            &self.ns,
            "curl",
            &[
                "-sS",
                "--max-time",
                "10",
                "--data-urlencode",
                &format!("query={expr}"),
                &url,
            ],
        )?;
        serde_json::from_slice(&out.stdout)
            .with_context(|| format!("{expr}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Waits until `expr` returns at least one series.
    pub fn wait_for(&self, expr: &str, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(answer) = self.query(expr)
                && answer["data"]["result"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty())
            {
                return Ok(answer);
            }
            if Instant::now() > deadline {
                bail!(
                    "no result for {expr} after {timeout:?}; prometheus log:\n{}",
                    self.log()
                );
            }
            if self.process.try_wait()?.is_some() {
                bail!("prometheus exited; its log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}
