//! Network namespaces made with iproute2, deleted when their guard drops (also while a test
//! panics). Every command here names its namespace explicitly (`ip -n NS`, `ip netns exec NS`):
//! nothing in this module runs `ip` against the machine's own namespace except `netns add` and
//! `netns del`, which only create and remove namespace handles.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};

/// A name unique to this process and call, e.g. `vg4242x3t81234`: parallel tests (threads of
/// one test binary, or several test binaries) never collide, and the time of the process's
/// first call keeps a later process that gets the same pid from meeting what an earlier one
/// left behind.
#[must_use]
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    static STARTED: OnceLock<u64> = OnceLock::new();
    let started = STARTED.get_or_init(|| {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        since_epoch.as_secs() % 1_000_000
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}t{started}", std::process::id())
}

/// The pid in a name made by [`unique_name`] with `prefix`, if the name is one.
#[must_use]
pub fn creator_pid(name: &str, prefix: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let (pid, rest) = rest.split_once('x')?;
    let (n, rest) = rest.split_once('t')?;
    let started: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(n) && digits(&started))
        .then(|| pid.parse().ok())
        .flatten()
}

/// Whether the process that made `name` (with `prefix`) is gone: what it left is stale.
#[must_use]
pub fn is_stale(name: &str, prefix: &str) -> bool {
    creator_pid(name, prefix).is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
}

/// Deletes the namespaces that a lab whose process died (SIGKILL, abort) left behind, killing
/// what still runs in them first. Only names of the lab's own pattern are touched.
pub fn sweep_stale(prefix: &str) {
    let Ok(out) = run_checked(Command::new("ip").args(["netns", "list"])) else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let stale = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| is_stale(name, prefix));
    for name in stale {
        crate::report::warn(format_args!("removing namespace {name} of a dead lab"));
        if let Ok(pids) = run_checked(Command::new("ip").args(["netns", "pids", name])) {
            for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                let _ = Command::new("kill")
                    .args(["-KILL", pid])
                    .stdin(Stdio::null())
                    .output();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", name])
            .stdin(Stdio::null())
            .output();
    }
}

/// Runs a command to completion and fails with its stderr when it exits non-zero.
pub fn run_checked(cmd: &mut Command) -> anyhow::Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("spawning {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// One named network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace `name` and brings its loopback up.
    pub fn create(name: &str) -> anyhow::Result<Self> {
        run_checked(Command::new("ip").args(["netns", "add", name]))?;
        let ns = Self {
            name: name.to_owned(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NS ARGS...`
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<Output> {
        run_checked(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// Runs many `ip` commands (one a line, without the leading `ip`) in this namespace with one
    /// process: `ip -n NS -batch -`.
    pub fn ip_batch(&self, lines: &[String]) -> anyhow::Result<()> {
        let mut child = Command::new("ip")
            .args(["-n", &self.name, "-batch", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning ip -batch")?;
        let script = lines.join("\n") + "\n";
        child
            .stdin
            .take()
            .context("ip -batch stdin")?
            .write_all(script.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "ip -n {} -batch failed: {}\nscript:\n{script}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Sets sysctls inside the namespace (`/proc/sys/net` follows the reader's namespace).
    pub fn sysctl(&self, settings: &[String]) -> anyhow::Result<()> {
        run_checked(exec_command(&self.name, "sysctl", ["-q", "-w"]).args(settings))?;
        Ok(())
    }

    /// Waits until each of `devices` is running (carrier seen by the kernel's link watcher,
    /// which can lag up to a second behind `link set up`; until then a device drops what it
    /// sends) and has a usable IPv6 link-local address (neighbour discovery needs one).
    pub fn wait_running(&self, devices: &[&str], timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let links = self.ip(&["-o", "link", "show"])?;
            let addrs = self.ip(&["-6", "-o", "addr", "show", "scope", "link"])?;
            let (links, addrs) = (
                String::from_utf8_lossy(&links.stdout),
                String::from_utf8_lossy(&addrs.stdout),
            );
            let waiting: Vec<&str> = devices
                .iter()
                .copied()
                .filter(|d| !is_ready(&links, &addrs, d))
                .collect();
            if waiting.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{}: {} not running after {timeout:?}:\n{links}{addrs}",
                    self.name,
                    waiting.join(", ")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Names of the interfaces of this namespace.
    pub fn interfaces(&self) -> anyhow::Result<Vec<String>> {
        let out = run_checked(Command::new("ip").args(["-n", &self.name, "-o", "link", "show"]))?;
        Ok(parse_link_names(&String::from_utf8_lossy(&out.stdout)))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let out = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => crate::report::warn(format_args!(
                "deleting namespace {}: {}",
                self.name,
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => crate::report::warn(format_args!("deleting namespace {}: {e}", self.name)),
        }
    }
}

/// `ip netns exec NS PROGRAM ARGS...` as a command to complete (stdio left to the caller).
/// `ip netns exec` replaces itself with the program (no fork), so the child's pid is the
/// program's: signals sent to it reach the program.
pub fn exec_command<I, S>(ns: &str, program: impl AsRef<std::ffi::OsStr>, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program).args(args);
    cmd
}

/// Whether `dev` is running in `ip -o link show` output and has a link-local address that is
/// not tentative in `ip -6 -o addr show scope link` output.
fn is_ready(links: &str, addrs: &str, dev: &str) -> bool {
    let running = links.lines().any(|l| {
        link_name(l) == Some(dev)
            && l.contains("LOWER_UP")
            && !l.contains("NO-CARRIER")
            && (l.contains("state UP") || l.contains("state UNKNOWN"))
    });
    let link_local = addrs.lines().any(|l| {
        l.split_whitespace().nth(1).map(|n| n.split('@').next()) == Some(Some(dev))
            && !l.contains("tentative")
    });
    running && link_local
}

fn link_name(line: &str) -> Option<&str> {
    line.split(':')
        .nth(1)
        .map(|n| n.trim().split('@').next().unwrap_or_default())
}

/// Interface names from `ip -o link show` output (`2: lan0@if3: <...`).
#[must_use]
pub fn parse_link_names(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(link_name)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Interface names of the namespace this process runs in: tests use it to prove that the lab
/// added nothing to the machine's own namespace.
pub fn current_interfaces() -> anyhow::Result<Vec<String>> {
    let out = run_checked(Command::new("ip").args(["-o", "link", "show"]))?;
    Ok(parse_link_names(&String::from_utf8_lossy(&out.stdout)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_names_drop_the_peer_suffix() {
        let text = "1: lo: <LOOPBACK,UP> mtu 65536\n2: lan0@if2: <BROADCAST> mtu 1500\n";
        assert_eq!(parse_link_names(text), ["lo", "lan0"]);
    }

    #[test]
    fn a_device_is_ready_when_running_with_a_link_local_address() {
        let up = "2: lan0@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 state UP mode";
        let no_carrier = "2: lan0@if2: <NO-CARRIER,BROADCAST,UP,LOWER_UP> mtu 1500 state DOWN";
        let ll = "2: lan0    inet6 fe80::1/64 scope link \\       valid_lft forever";
        let tentative = "2: lan0    inet6 fe80::1/64 scope link tentative \\";
        assert!(is_ready(up, ll, "lan0"));
        assert!(!is_ready(no_carrier, ll, "lan0"));
        assert!(!is_ready(up, tentative, "lan0"));
        assert!(!is_ready(up, "", "lan0"));
    }

    #[test]
    fn stale_names_are_recognised_by_their_creator() {
        let mine = unique_name("vg");
        assert_eq!(
            creator_pid(&format!("{mine}-gw"), "vg"),
            Some(std::process::id())
        );
        assert!(!is_stale(&format!("{mine}-gw"), "vg"));
        assert_eq!(creator_pid("vg4242x3t81234-lan", "vg"), Some(4242));
        assert_eq!(creator_pid("vgood", "vg"), None);
        assert_eq!(creator_pid("vg12x3-lan", "vg"), None);
        assert_eq!(creator_pid("other4242x3t1", "vg"), None);
    }

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique_name("vg"), unique_name("vg"));
    }
}
