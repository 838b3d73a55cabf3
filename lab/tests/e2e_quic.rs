//! QUIC server names with a real QUIC client and server (`vigie-quic`: quinn with rustls) in
//! the namespace lab, on each hook. The server sits on an address that no catalog service
//! lists, so only the name in the client's Initial can tell the service: the daemon decrypts
//! it while the kernel holds the server's datagrams back. A connection for a Zoom or Teams
//! name never completes its handshake, one for Visio's name or a name of no service does (and
//! carries a stream's echo), and the daemon reports the blocked flows with `quic-sni`
//! evidence. Without vigie every one of those names connects, so the block is vigie's doing.
//!
//! The test prints the handshake times of the allowed connections with and without vigie
//! (`--nocapture`): the delay vigie adds, as figures only. The kernel drops the server's
//! datagrams that it holds back (it does not queue them): when the daemon tells the name
//! before the server answers, vigie adds next to nothing; when it tells it after, the handshake
//! completes at the first retransmission (quinn's first probe timeout, about 1 s), and the
//! printed `quic_held` counts the server datagrams held back (all flows together).

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use vigie_lab::daemon::{Hook, events_to};
use vigie_lab::fixtures::{Mode, PolicyDir};
use vigie_lab::scenario::Lab;
use vigie_lab::tempdir::TempDir;

const PEER: &str = env!("CARGO_BIN_EXE_vigie-peer");
const QUIC: &str = env!("CARGO_BIN_EXE_vigie-quic");
/// In no catalog service (TEST-NET-3).
const SERVER: &str = "203.0.113.80";
const QUIC_PORT: u16 = 4433;
/// Seconds a client waits for its handshake.
const CLIENT_TIMEOUT: &str = "4";
/// The name the readiness check uses (of no service).
const READY_NAME: &str = "ready.example";
/// Names the shipped policy lets through: Visio's catalog domain, and a name of no service.
const ALLOWED: [&str; 2] = ["visio.numerique.gouv.fr", "www.example.org"];
/// Names of blocked services, with the service the daemon must name.
const BLOCKED: [(&str, &str); 2] = [("zoom.us", "zoom"), ("teams.microsoft.com", "teams")];
/// Connections per allowed name, with vigie and without, for the printed times.
const SAMPLES: usize = 3;

struct Quic {
    lab: Lab,
    cert: PathBuf,
    _keys: TempDir,
}

/// What one client run said.
#[derive(Debug)]
struct Attempt {
    connected: bool,
    millis: Option<f64>,
    echoed: bool,
    error: Option<String>,
    said: String,
}

fn lab() -> Quic {
    let lab = Lab::with_unlisted(Path::new(PEER), &[SERVER]).unwrap_or_else(|e| panic!("{e:#}"));
    let keys = TempDir::new("quic").unwrap();
    // Every name the test uses, blocked ones too: a blocked handshake must fail for vigie's
    // doing, never for the certificate's.
    let names: Vec<&str> = [READY_NAME]
        .into_iter()
        .chain(ALLOWED)
        .chain(BLOCKED.map(|(name, _)| name))
        .collect();
    let made = std::process::Command::new(QUIC)
        .args(["cert", "--names", &names.join(","), "--out"])
        .arg(keys.path())
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let (cert, key) = (keys.path().join("cert.pem"), keys.path().join("key.pem"));
    let listen = format!("{SERVER}:{QUIC_PORT}");
    let server = lab
        .topo
        .spawn(
            lab.topo.inet(),
            QUIC,
            &[
                "server",
                "--listen",
                &listen,
                "--cert",
                cert.to_str().unwrap(),
                "--key",
                key.to_str().unwrap(),
            ],
            Stdio::null(),
            Stdio::inherit(),
        )
        .unwrap();
    let quic = Quic {
        lab,
        cert,
        _keys: keys,
    };
    // Ready when a connection completes (no vigie yet).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = connect(&quic, READY_NAME);
        if attempt.connected && attempt.echoed {
            break;
        }
        assert!(
            server.try_wait().unwrap().is_none(),
            "the QUIC server stopped"
        );
        assert!(
            Instant::now() < deadline,
            "the QUIC server never answered: {attempt:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    quic
}

/// A QUIC connection from the LAN host with `name` as server name.
fn connect(quic: &Quic, name: &str) -> Attempt {
    let to = format!("{SERVER}:{QUIC_PORT}");
    let out = quic
        .lab
        .topo
        .exec(
            quic.lab.topo.lan(),
            QUIC,
            &[
                "client",
                "--connect",
                &to,
                "--server-name",
                name,
                "--ca",
                quic.cert.to_str().unwrap(),
                "--timeout",
                CLIENT_TIMEOUT,
            ],
        )
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "vigie-quic client {name}: {said}");
    let line: Value = said
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("vigie-quic client {name} printed no JSON: {said}"));
    Attempt {
        connected: line["connected"] == true,
        millis: line["millis"].as_f64(),
        echoed: line["echoed"] == true,
        error: line["error"].as_str().map(str::to_owned),
        said,
    }
}

/// `SAMPLES` connections with each of `names`, each of which must complete and echo: their
/// handshake times per name.
fn connect_times(quic: &Quic, names: &[&str], context: &str) -> Vec<(String, Vec<f64>)> {
    names
        .iter()
        .map(|&name| {
            let times = (0..SAMPLES)
                .map(|_| {
                    let attempt = connect(quic, name);
                    assert!(
                        attempt.connected && attempt.echoed,
                        "{context} {name}: did not connect: {}",
                        attempt.said
                    );
                    attempt.millis.unwrap_or(f64::NAN)
                })
                .collect();
            (name.to_owned(), times)
        })
        .collect()
}

fn show(times: &[f64]) -> String {
    times.iter().fold(String::new(), |mut s, t| {
        let _ = write!(s, "{}{t:.1}", if s.is_empty() { "" } else { ", " });
        s
    })
}

fn names_decide(hook: Hook) {
    let quic = lab();
    // Without vigie: every name connects, the blocked ones too.
    let blocked_names = BLOCKED.map(|(name, _)| name);
    let before = connect_times(&quic, &ALLOWED, &format!("{hook} (no vigie)"));
    connect_times(&quic, &blocked_names, &format!("{hook} (no vigie)"));

    let policy = PolicyDir::write(Mode::Enforce).unwrap();
    let daemon = quic.lab.start_vigie(hook, Some(policy.path())).unwrap();
    let with = connect_times(&quic, &ALLOWED, &hook.to_string());
    for (name, _) in BLOCKED {
        let attempt = connect(&quic, name);
        assert!(
            !attempt.connected,
            "{hook} {name}: connected through vigie: {}",
            attempt.said
        );
        // A handshake that never completes, not one the client gave up (a certificate...).
        assert_eq!(
            attempt.error.as_deref(),
            Some("timeout"),
            "{hook} {name}: {}",
            attempt.said
        );
    }
    for ((name, without), (_, through)) in before.iter().zip(&with) {
        println!(
            "{hook} {name}: handshake ms without vigie [{}], with vigie [{}]",
            show(without),
            show(through)
        );
    }

    let server: IpAddr = SERVER.parse().unwrap();
    let events = daemon.wait_events(Duration::from_secs(5), |e| {
        let named = events_to(e, server);
        BLOCKED
            .iter()
            .map(|(_, service)| *service)
            .chain(["visio"])
            .all(|service| {
                named
                    .iter()
                    .any(|e| e["evidence"] == "quic-sni" && e["service"] == service)
            })
    });
    let named: Vec<_> = events_to(&events, server)
        .into_iter()
        .filter(|e| e["evidence"] == "quic-sni")
        .map(|e| {
            (
                e["service"].as_str().unwrap_or("-").to_owned(),
                e["action"].clone(),
            )
        })
        .collect();
    for (_, service) in BLOCKED {
        assert!(
            named.iter().any(|(s, a)| s == service && a == "block"),
            "{hook}: no quic-sni block event for {service}: {named:?}\nall events: {events:#?}"
        );
    }
    // A name that a rule allows is reported too (as TLS names are), and no named flow reads
    // as re-decided by a policy swap.
    assert!(
        named.iter().any(|(s, a)| s == "visio" && a == "allow"),
        "{hook}: no quic-sni allow event for visio: {named:?}"
    );
    assert!(
        events_to(&events, server)
            .iter()
            .filter(|e| e["evidence"] == "quic-sni")
            .all(|e| e["redecided"] == false),
        "{hook}: a named flow reported as re-decided: {events:#?}"
    );
    let stats = &daemon.status().unwrap().raw["stats"];
    println!(
        "{hook}: quic_initials {}, quic_held {}, quic_timed_out {}; quic-sni events {named:?}",
        stats["quic_initials"], stats["quic_held"], stats["quic_timed_out"]
    );
    let connections = SAMPLES * ALLOWED.len() + BLOCKED.len();
    assert!(
        stats["quic_initials"].as_u64().unwrap_or(0) >= connections as u64,
        "{hook}: {stats}"
    );
}

#[test]
fn xdp_reads_quic_server_names() {
    if !vigie_lab::privilege::privileged("xdp_reads_quic_server_names") {
        return;
    }
    names_decide(Hook::Xdp);
}

#[test]
fn tc_ingress_reads_quic_server_names() {
    if !vigie_lab::privilege::privileged("tc_ingress_reads_quic_server_names") {
        return;
    }
    names_decide(Hook::TcIngress);
}

#[test]
fn tc_egress_reads_quic_server_names() {
    if !vigie_lab::privilege::privileged("tc_egress_reads_quic_server_names") {
        return;
    }
    names_decide(Hook::TcEgress);
}
