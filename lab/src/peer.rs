//! Traffic in the lab: echo servers on the internet side (`vigie-peer serve` in `inet`) and
//! probes from the LAN host (`vigie-peer probe` and `ping` in `lan`), many at once.

use std::fmt;
use std::io::{BufRead as _, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::process::Process;
use crate::topology::Topology;

/// The port the echo servers answer UDP on (STUN's, used by every conferencing service).
pub const UDP_PORT: u16 = 3478;
/// The port the echo servers answer TCP on.
pub const TCP_PORT: u16 = 443;
/// How many probes run at once: each is a short-lived process, and tests share two cores.
const CONCURRENT_PROBES: usize = 12;
/// How long the servers may take to bind every address.
const SERVERS_READY: Duration = Duration::from_secs(10);

/// Timeout for a probe that is expected to pass (leaves time for ARP/ND on first use).
pub const PASS_TIMEOUT: Duration = Duration::from_millis(2000);
/// Timeout for a probe that is expected to be blocked.
pub const BLOCK_TIMEOUT: Duration = Duration::from_millis(400);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Udp,
    Tcp,
    Icmp,
}

impl Proto {
    pub const ALL: [Self; 3] = [Self::Udp, Self::Tcp, Self::Icmp];

    /// The name vigie's events use.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Icmp => "icmp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One probe to run from the LAN host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    /// The service the address belongs to, for tables and messages.
    pub label: String,
    pub addr: IpAddr,
    pub proto: Proto,
    pub timeout: Duration,
}

impl ProbeSpec {
    /// Where the probe goes: address and port (port 0 for ICMP).
    #[must_use]
    pub fn target(&self) -> SocketAddr {
        let port = match self.proto {
            Proto::Udp => UDP_PORT,
            Proto::Tcp => TCP_PORT,
            Proto::Icmp => 0,
        };
        SocketAddr::new(self.addr, port)
    }
}

/// What a probe saw.
#[derive(Clone, Debug)]
pub struct ProbeResult {
    pub spec: ProbeSpec,
    /// The echo (or ping reply) came back.
    pub passed: bool,
    /// The probe's own line, or why it could not run.
    pub detail: String,
}

impl fmt::Display for ProbeResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.spec;
        let verdict = if self.passed { "passed" } else { "blocked" };
        write!(
            f,
            "{} {} {} {verdict}: {}",
            s.label, s.proto, s.addr, self.detail
        )
    }
}

/// Probes of `protos` to each of `addrs`, labelled `label`.
#[must_use]
pub fn specs(label: &str, addrs: &[IpAddr], protos: &[Proto], timeout: Duration) -> Vec<ProbeSpec> {
    addrs
        .iter()
        .flat_map(|&addr| {
            protos.iter().map(move |&proto| ProbeSpec {
                label: label.to_owned(),
                addr,
                proto,
                timeout,
            })
        })
        .collect()
}

/// A datagram or connection that reached an echo server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arrival {
    pub proto: Proto,
    /// The server's address (the service address the client targeted).
    pub local: SocketAddr,
    pub from: SocketAddr,
}

impl Arrival {
    /// A `udp|tcp LOCAL FROM` line of `vigie-peer serve`.
    fn parse(line: &str) -> Option<Self> {
        let mut words = line.split_whitespace();
        let proto = match words.next()? {
            "udp" => Proto::Udp,
            "tcp" => Proto::Tcp,
            _ => return None,
        };
        let local = words.next()?.parse().ok()?;
        let from = words.next()?.parse().ok()?;
        Some(Self { proto, local, from })
    }
}

/// The lab's peers: the `vigie-peer` binary and the servers it runs in `inet`.
#[derive(Debug)]
pub struct Peers {
    bin: PathBuf,
    servers: Process,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
}

impl Peers {
    /// Starts echo servers on every service address of the topology (UDP and TCP) and waits
    /// until they have bound them all.
    pub fn start(topo: &Topology, bin: &Path) -> anyhow::Result<Self> {
        let mut args = Vec::new();
        for addr in topo.services().iter().flat_map(|s| &s.addrs) {
            args.push("--udp".to_owned());
            args.push(SocketAddr::new(*addr, UDP_PORT).to_string());
            args.push("--tcp".to_owned());
            args.push(SocketAddr::new(*addr, TCP_PORT).to_string());
        }
        let mut command = vec!["serve"];
        command.extend(args.iter().map(String::as_str));
        let servers = topo.spawn(topo.inet(), bin, &command, Stdio::piped(), Stdio::inherit())?;
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        wait_ready(&servers, Arc::clone(&arrivals))?;
        Ok(Self {
            bin: bin.to_owned(),
            servers,
            arrivals,
        })
    }

    /// Everything that reached the servers so far, in order.
    #[must_use]
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.arrivals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// What reached the servers after the first `mark` arrivals, for the `specs` given (ICMP
    /// is answered by the kernel and never shows here), as readable lines.
    #[must_use]
    pub fn arrived_since(&self, mark: usize, specs: &[ProbeSpec]) -> Vec<String> {
        self.arrivals()
            .into_iter()
            .skip(mark)
            .filter(|a| {
                specs
                    .iter()
                    .any(|s| s.proto == a.proto && s.target() == a.local)
            })
            .map(|a| format!("{} from {} reached {}", a.proto, a.from, a.local))
            .collect()
    }

    #[must_use]
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The server process (to check it still runs).
    #[must_use]
    pub fn servers(&self) -> &Process {
        &self.servers
    }

    /// Runs one probe from the LAN host.
    #[must_use]
    pub fn probe(&self, topo: &Topology, spec: &ProbeSpec) -> ProbeResult {
        let output = match spec.proto {
            Proto::Icmp => {
                let wait = format!("{:.3}", spec.timeout.as_secs_f64());
                let addr = spec.addr.to_string();
                topo.exec(topo.lan(), "ping", &["-c1", "-n", "-W", &wait, &addr])
            }
            Proto::Udp | Proto::Tcp => {
                let target = spec.target().to_string();
                let ms = spec.timeout.as_millis().to_string();
                let args = ["probe", spec.proto.name(), &target, "--timeout-ms", &ms];
                topo.exec(topo.lan(), &self.bin, &args)
            }
        };
        match output {
            Ok(out) => {
                let text = String::from_utf8_lossy(&out.stdout);
                let detail = match spec.proto {
                    Proto::Icmp => ping_summary(&text, &String::from_utf8_lossy(&out.stderr)),
                    _ => text.trim().to_owned(),
                };
                ProbeResult {
                    spec: spec.clone(),
                    passed: out.status.success(),
                    detail,
                }
            }
            Err(e) => ProbeResult {
                spec: spec.clone(),
                passed: false,
                detail: format!("{e:#}"),
            },
        }
    }

    /// Runs every probe, `CONCURRENT_PROBES` at a time; results in the order of `specs`.
    #[must_use]
    pub fn probe_all(&self, topo: &Topology, specs: &[ProbeSpec]) -> Vec<ProbeResult> {
        let mut results = Vec::with_capacity(specs.len());
        for chunk in specs.chunks(CONCURRENT_PROBES) {
            std::thread::scope(|scope| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|s| scope.spawn(move || self.probe(topo, s)))
                    .collect();
                for (h, s) in handles.into_iter().zip(chunk) {
                    results.push(h.join().unwrap_or_else(|_| ProbeResult {
                        spec: s.clone(),
                        passed: false,
                        detail: "probe thread panicked".to_owned(),
                    }));
                }
            });
        }
        results
    }
}

/// Waits until the servers have bound every address, then keeps recording what arrives.
fn wait_ready(servers: &Process, arrivals: Arc<Mutex<Vec<Arrival>>>) -> anyhow::Result<()> {
    let stdout = servers
        .take_stdout()
        .context("peer servers have no stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let _ = tx.send(first);
        for line in lines.map_while(Result::ok) {
            if let Some(arrival) = Arrival::parse(&line) {
                arrivals
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(arrival);
            }
        }
    });
    match rx.recv_timeout(SERVERS_READY) {
        Ok(line) if line.trim() == "ready" => Ok(()),
        Ok(_) => bail!(
            "{} exited before binding its addresses (see its stderr)",
            servers.what()
        ),
        Err(_) => bail!("{} not ready after {SERVERS_READY:?}", servers.what()),
    }
}

/// The line of ping's output that tells what happened.
fn ping_summary(stdout: &str, stderr: &str) -> String {
    stdout
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .or_else(|| stderr.lines().next())
        .unwrap_or("no output from ping")
        .trim()
        .to_owned()
}

/// The probes among `results` whose outcome differs from `expect_pass`, as readable lines.
#[must_use]
pub fn unexpected(results: &[ProbeResult], expect_pass: bool) -> Vec<String> {
    results
        .iter()
        .filter(|r| r.passed != expect_pass)
        .map(ToString::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrival_lines_are_read_in_both_families() {
        let a = Arrival::parse("udp 3.7.35.1:3478 10.77.0.2:40000").unwrap();
        assert_eq!(a.proto, Proto::Udp);
        assert_eq!(a.local, "3.7.35.1:3478".parse().unwrap());
        let b = Arrival::parse("tcp [2407:30c0::1]:443 [fd77::2]:5000").unwrap();
        assert_eq!(b.from, "[fd77::2]:5000".parse().unwrap());
        assert!(Arrival::parse("ready").is_none());
    }
}
