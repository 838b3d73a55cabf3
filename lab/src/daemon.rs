//! The vigie daemon run on the lab's gateway: `vigie run` in the `gw` namespace with its own
//! pin directory (on the lab's bpffs), its own event file and log. On drop it stops the daemon,
//! runs `vigie detach` in the gateway namespace and removes the pin directory, so that no
//! program or pin outlives the test.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::bpffs::PinDir;
use crate::process::Process;
use crate::tempdir::TempDir;
use crate::topology::{Topology, iface};

/// How long a daemon may take to load, attach and apply its first policy.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a daemon may take to stop on SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How much of the daemon's log failure messages quote.
const LOG_TAIL_LINES: usize = 40;

/// Where vigie classifies outbound traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    /// XDP on the gateway's LAN side.
    Xdp,
    /// TC ingress on the gateway's LAN side.
    TcIngress,
    /// TC egress on the gateway's internet side.
    TcEgress,
}

impl Hook {
    pub const ALL: [Self; 3] = [Self::Xdp, Self::TcIngress, Self::TcEgress];

    /// The value of `vigie run --hook`.
    #[must_use]
    pub fn arg(self) -> &'static str {
        match self {
            Self::Xdp => "xdp",
            Self::TcIngress => "tc-ingress",
            Self::TcEgress => "tc-egress",
        }
    }

    /// The gateway interface this hook attaches to in the lab.
    #[must_use]
    pub fn iface(self) -> &'static str {
        match self {
            Self::Xdp | Self::TcIngress => iface::GW_LAN,
            Self::TcEgress => iface::GW_WAN,
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.arg())
    }
}

impl std::str::FromStr for Hook {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|h| h.arg() == s)
            .ok_or_else(|| format!("unknown hook {s:?} (xdp, tc-ingress or tc-egress)"))
    }
}

/// One attachment as `vigie status --json` reports it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Attachment {
    pub iface: String,
    pub hook: String,
    pub direction: String,
}

/// What `vigie status --json` says (the fields the lab relies on, and the whole document).
#[derive(Clone, Debug)]
pub struct Status {
    pub generation: u64,
    pub attachments: Vec<Attachment>,
    /// The daemon that wrote the pinned state, if the status tells.
    pub daemon_pid: Option<u64>,
    pub raw: Value,
}

impl Status {
    /// Parses `vigie status --json` output.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let raw: Value = serde_json::from_str(text).context("vigie status --json is not JSON")?;
        let generation = raw["generation"]
            .as_u64()
            .context("status without a generation")?;
        let attachments = raw["attachments"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|a| Attachment {
                        iface: text_of(&a["iface"]),
                        hook: text_of(&a["hook"]),
                        direction: text_of(&a["direction"]),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            generation,
            attachments,
            daemon_pid: raw["daemon_pid"].as_u64(),
            raw,
        })
    }

    /// Attachments per (interface, direction): every count should be 1.
    #[must_use]
    pub fn per_iface_direction(&self) -> BTreeMap<(String, String), usize> {
        let mut counts = BTreeMap::new();
        for a in &self.attachments {
            *counts
                .entry((a.iface.clone(), a.direction.clone()))
                .or_insert(0) += 1;
        }
        counts
    }
}

fn text_of(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

/// How to run the daemon.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub hook: Hook,
    /// A policy directory; None lets the daemon use its embedded default.
    pub policy: Option<PathBuf>,
    /// More arguments of `vigie run` (metrics, event options).
    pub args: Vec<String>,
}

/// A vigie daemon on the lab's gateway.
pub struct Daemon<'t> {
    topo: &'t Topology,
    bin: PathBuf,
    options: RunOptions,
    process: Option<Process>,
    /// How many times the daemon was started (each start writes its own event file).
    starts: u32,
    // Dropped after Drop::drop has detached: the pins first, then the files.
    pin_dir: PinDir,
    files: TempDir,
}

impl<'t> Daemon<'t> {
    /// Starts `vigie run` in the gateway namespace and waits until its policy is in force.
    pub fn start(topo: &'t Topology, bin: &Path, options: RunOptions) -> anyhow::Result<Self> {
        let mut daemon = Self {
            topo,
            bin: bin.to_owned(),
            options,
            process: None,
            starts: 0,
            pin_dir: PinDir::new()?,
            files: TempDir::new("run")?,
        };
        daemon.launch()?;
        Ok(daemon)
    }

    /// Starts the daemon again with the same options (after `kill` or `stop`), and waits until
    /// it is ready.
    pub fn launch(&mut self) -> anyhow::Result<()> {
        self.launch_signalled(None)
    }

    /// `launch`, sending the new process `signal` while it starts: once its log says it is
    /// loading the datapath (loading, attaching and the first policy still to come); then
    /// waits until it is ready.
    pub fn launch_signalled(&mut self, signal: Option<i32>) -> anyhow::Result<()> {
        const LOADING: &str = "loading the datapath";
        let loading_before = self.log().matches(LOADING).count();
        if let Some(p) = &self.process
            && p.try_wait()?.is_none()
        {
            bail!("the daemon (pid {}) still runs", p.pid());
        }
        self.starts += 1;
        let events = self.events_path(self.starts);
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("opening the daemon log")?;
        let process = self.spawn_run(&events, Stdio::from(log))?;
        if let Some(signal) = signal {
            let deadline = Instant::now() + READY_TIMEOUT;
            while self.log().matches(LOADING).count() == loading_before {
                if Instant::now() >= deadline || process.try_wait()?.is_some() {
                    bail!("the daemon never said it was loading:\n{}", self.log_tail());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            process.signal(signal)?;
        }
        self.process = Some(process);
        self.wait_ready(READY_TIMEOUT)
    }

    /// Starts another `vigie run` with this daemon's options and pin directory beside it (its
    /// own event file), waits up to `timeout` for it to exit (killing it if it does not), and
    /// returns its exit status (None if it was killed) and what it wrote on stderr.
    pub fn run_another(
        &self,
        timeout: Duration,
    ) -> anyhow::Result<(Option<std::process::ExitStatus>, String)> {
        let events = self.files.path().join("events-another.jsonl");
        let log_path = self.files.path().join("another.log");
        let log = File::create(&log_path).context("creating the second daemon's log")?;
        let process = self.spawn_run(&events, Stdio::from(log))?;
        let status = process.wait_timeout(timeout)?;
        if status.is_none() {
            process.kill()?;
        }
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        Ok((status, log))
    }

    /// Spawns `vigie run` in the gateway namespace with this daemon's options.
    fn spawn_run(&self, events: &Path, stderr: Stdio) -> anyhow::Result<Process> {
        let pin_dir = self.pin_dir.path().to_string_lossy().into_owned();
        let events = events.to_string_lossy().into_owned();
        let mut args = vec!["run", "--iface", self.options.hook.iface(), "--hook"];
        args.extend([
            self.options.hook.arg(),
            "--pin-dir",
            &pin_dir,
            "--events",
            &events,
        ]);
        let policy = self
            .options
            .policy
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned());
        if let Some(policy) = &policy {
            args.extend(["--policy", policy]);
        }
        args.extend(self.options.args.iter().map(String::as_str));
        self.topo
            .spawn(self.topo.gw(), &self.bin, &args, Stdio::null(), stderr)
    }

    /// Polls `vigie status` until a policy is in force (generation >= 1) and the status names
    /// this daemon as the one that applied it.
    pub fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let pid = self.process.as_ref().map(|p| u64::from(p.pid()));
        loop {
            if let Some(p) = &self.process
                && let Some(status) = p.try_wait()?
            {
                bail!(
                    "vigie run exited ({status}) before it was ready:\n{}",
                    self.log_tail()
                );
            }
            let last = self.status();
            if let Ok(s) = &last {
                // This daemon's own policy: after a stop or a kill, the pinned maps still say
                // a policy is in force before the new daemon has applied anything.
                let ours = pid.is_none() || s.daemon_pid == pid;
                if s.generation >= 1 && ours && !s.attachments.is_empty() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "vigie run not ready after {timeout:?}; last status: {last:?}\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `vigie ARGS... --pin-dir <ours>` in the gateway namespace.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<Output> {
        let pin_dir = self.pin_dir.path().to_string_lossy().into_owned();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--pin-dir", &pin_dir]);
        self.topo.exec(self.topo.gw(), &self.bin, &all)
    }

    /// `vigie status --json`.
    pub fn status(&self) -> anyhow::Result<Status> {
        let out = self.cli(&["status", "--json"])?;
        if !out.status.success() {
            bail!(
                "vigie status failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Status::parse(&String::from_utf8_lossy(&out.stdout))
    }

    /// `vigie detach`; fails when it does.
    pub fn detach(&self) -> anyhow::Result<()> {
        let out = self.cli(&["detach"])?;
        if !out.status.success() {
            bail!(
                "vigie detach failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// SIGKILL: the daemon gets no chance to clean up (a crash).
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(p) = self.process.take() {
            p.kill()?;
        }
        Ok(())
    }

    /// SIGTERM, and wait for the daemon to exit (SIGKILL after a grace period).
    pub fn stop(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let p = self.process.take().context("the daemon is not running")?;
        p.terminate(STOP_GRACE)
    }

    /// The running daemon's process, if any.
    #[must_use]
    pub fn process(&self) -> Option<&Process> {
        self.process.as_ref()
    }

    #[must_use]
    pub fn pin_dir(&self) -> &Path {
        self.pin_dir.path()
    }

    #[must_use]
    pub fn options(&self) -> &RunOptions {
        &self.options
    }

    fn events_path(&self, start: u32) -> PathBuf {
        self.files.path().join(format!("events-{start}.jsonl"))
    }

    fn log_path(&self) -> PathBuf {
        self.files.path().join("vigie.log")
    }

    /// Every flow event reported so far, over all starts, in order. Lines that are not JSON
    /// objects (there should be none) are kept as strings so that assertions show them.
    #[must_use]
    pub fn events(&self) -> Vec<Value> {
        (1..=self.starts)
            .filter_map(|n| std::fs::read_to_string(self.events_path(n)).ok())
            .flat_map(|text| {
                text.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| {
                        serde_json::from_str(l).unwrap_or_else(|_| Value::String(l.to_owned()))
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Waits until `done` holds for the events reported so far; returns them either way.
    pub fn wait_events(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let events = self.events();
            if done(&events) || Instant::now() >= deadline {
                return events;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The events of each of `services`, once every one of them has been reported.
    ///
    /// # Panics
    /// When a service has no event within `timeout`: the message lists what was reported.
    #[must_use]
    pub fn events_of_each(
        &self,
        services: &[&str],
        timeout: Duration,
    ) -> Vec<(String, Vec<Value>)> {
        let events = self.wait_events(timeout, |events| {
            services
                .iter()
                .all(|s| events.iter().any(|e| e["service"] == *s))
        });
        services
            .iter()
            .map(|&service| {
                let mine: Vec<Value> = events
                    .iter()
                    .filter(|e| e["service"] == service)
                    .cloned()
                    .collect();
                assert!(
                    !mine.is_empty(),
                    "no event for {service}; events: {events:#?}"
                );
                (service.to_owned(), mine)
            })
            .collect()
    }

    /// The daemon's stderr so far.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The end of the daemon's stderr, for failure messages.
    #[must_use]
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        format!(
            "--- vigie log ({}) ---\n{tail}\n--- end of log ---",
            self.log_path().display()
        )
    }
}

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            crate::report::warn(self.log_tail());
        }
        if let Some(p) = self.process.take()
            && let Err(e) = p.terminate(STOP_GRACE)
        {
            crate::report::warn(format_args!("stopping the daemon: {e:#}"));
        }
        // In the gateway namespace, which still exists (the topology outlives `self`); a test
        // that detached already has no pin directory left.
        if self.pin_dir.path().exists()
            && let Err(e) = self.detach()
        {
            crate::report::warn(format_args!("{e:#}"));
        }
    }
}

/// Events whose `field` equals `value`.
#[must_use]
pub fn events_where<'e>(events: &'e [Value], field: &str, value: &str) -> Vec<&'e Value> {
    events
        .iter()
        .filter(|e| e[field].as_str() == Some(value))
        .collect()
}

/// Events about traffic to `addr` (their `dst` is `addr:port` or `[addr]:port`, or `addr`).
#[must_use]
pub fn events_to(events: &[Value], addr: std::net::IpAddr) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| {
            e["dst"].as_str().is_some_and(|d| {
                d.parse::<std::net::SocketAddr>()
                    .map(|s| s.ip())
                    .ok()
                    .or_else(|| d.parse().ok())
                    == Some(addr)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_read_with_its_attachments() {
        let text = r#"{"pin_dir":"/run/x","generation":3,"daemon_pid":42,
            "attachments":[{"iface":"lan0","hook":"xdp","direction":"outbound","point":"xdp"},
                           {"iface":"lan0","hook":"xdp","direction":"reply","point":"tc-egress"}]}"#;
        let s = Status::parse(text).unwrap();
        assert_eq!(s.generation, 3);
        assert_eq!(s.daemon_pid, Some(42));
        assert_eq!(s.attachments[1].direction, "reply");
        assert!(s.per_iface_direction().values().all(|&n| n == 1));
    }

    #[test]
    fn events_match_their_destination_in_both_families() {
        let events: Vec<Value> = [
            r#"{"dst":"3.7.35.1:3478","service":"zoom"}"#,
            r#"{"dst":"[2001:db8::1]:443","service":"zoom"}"#,
            r#"{"dst":"2001:db8::1","service":"zoom"}"#,
        ]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
        assert_eq!(events_to(&events, "3.7.35.1".parse().unwrap()).len(), 1);
        assert_eq!(events_to(&events, "2001:db8::1".parse().unwrap()).len(), 2);
        assert_eq!(events_where(&events, "service", "zoom").len(), 3);
    }

    #[test]
    fn hooks_round_trip_and_pick_their_interface() {
        for h in Hook::ALL {
            assert_eq!(h.arg().parse::<Hook>().unwrap(), h);
        }
        assert_eq!(Hook::TcEgress.iface(), "wan0");
    }
}
