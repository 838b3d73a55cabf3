//! `reject` with real clients in the namespace lab, on each hook: the shipped policy with its
//! block turned into a reject. A TCP client's connect fails with "connection refused" and a UDP
//! client's connected socket reports the ICMP error as "connection refused", long before their
//! timeout; nothing reaches the servers; Visio still passes; the datapath counts the answers.

use std::path::Path;
use std::time::Duration;

use vigie_lab::daemon::Hook;
use vigie_lab::fixtures::{BLOCKED_SERVICES, Mode, PolicyDir};
use vigie_lab::peer::{self, PASS_TIMEOUT, Proto};
use vigie_lab::scenario::Lab;

const PEER: &str = env!("CARGO_BIN_EXE_vigie-peer");

/// Long enough that a probe which only times out cannot pass for a refusal.
const PROBE_TIMEOUT: Duration = Duration::from_secs(4);

fn reject_policy() -> PolicyDir {
    let dir = PolicyDir::write(Mode::Enforce).unwrap();
    let path = dir.path().join("policy.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let rejecting = text.replace("action = \"block\"", "action = \"reject\"");
    assert_ne!(
        text, rejecting,
        "the shipped policy has no block rule to turn into a reject"
    );
    std::fs::write(&path, rejecting).unwrap();
    dir
}

fn clients_are_refused_at_once(hook: Hook) {
    let vigie = vigie_lab::bins::vigie(Some(Path::new(PEER))).unwrap_or_else(|e| panic!("{e:#}"));
    let lab = Lab::new(Path::new(PEER), vigie).unwrap();
    let policy = reject_policy();
    let daemon = lab.start_vigie(hook, Some(policy.path())).unwrap();

    let mark = lab.peers.arrivals().len();
    let specs = lab.specs(&BLOCKED_SERVICES, &[Proto::Tcp, Proto::Udp], PROBE_TIMEOUT);
    let results = lab.probe(&specs);
    // What each client saw, with how long the refusal took (kept in the test's output).
    for r in &results {
        eprintln!("{hook}: {r}");
    }
    let not_refused: Vec<String> = results
        .iter()
        .filter(|r| r.passed || !r.detail.contains(" refused after "))
        .map(ToString::to_string)
        .collect();
    assert!(
        not_refused.is_empty(),
        "{hook}: probes not refused by an answer:\n{}\n\ndaemon log:\n{}",
        not_refused.join("\n"),
        daemon.log_tail()
    );
    let arrived = lab.peers.arrived_since(mark, &specs);
    assert!(
        arrived.is_empty(),
        "{hook}: rejected traffic arrived:\n{}",
        arrived.join("\n")
    );

    // ICMP gets no answer (only a drop), and Visio is untouched.
    let pings = lab.probe(&lab.specs(&BLOCKED_SERVICES, &[Proto::Icmp], PASS_TIMEOUT));
    let leaked = peer::unexpected(&pings, false);
    assert!(
        leaked.is_empty(),
        "{hook}: pings answered:\n{}",
        leaked.join("\n")
    );
    let visio = lab.probe(&lab.visio_specs(PASS_TIMEOUT));
    let failed = peer::unexpected(&visio, true);
    assert!(
        failed.is_empty(),
        "{hook}: Visio unreachable:\n{}",
        failed.join("\n")
    );

    // Every rejected TCP and UDP probe was answered at least once (TCP retransmits nothing:
    // the reset comes first); the pings were dropped without an answer.
    let stats = &daemon.status().unwrap().raw["stats"];
    let answered = stats["rejects_answered"].as_u64().unwrap_or(0);
    let dropped = stats["rejects_dropped"].as_u64().unwrap_or(0);
    assert!(
        answered >= specs.len() as u64,
        "{hook}: {answered} answers for {} probes: {stats}",
        specs.len()
    );
    assert!(dropped >= pings.len() as u64, "{hook}: {stats}");

    // Events name them as blocks by the rejecting rule.
    for (service, mine) in daemon.events_of_each(&BLOCKED_SERVICES, Duration::from_secs(3)) {
        for e in mine {
            assert_eq!(e["action"], "block", "{hook} {service}: {e}");
            assert_eq!(e["verdict"], "dropped", "{hook} {service}: {e}");
        }
    }
}

#[test]
fn xdp_rejects_with_answers() {
    if !vigie_lab::privilege::privileged("xdp_rejects_with_answers") {
        return;
    }
    clients_are_refused_at_once(Hook::Xdp);
}

#[test]
fn tc_ingress_rejects_with_answers() {
    if !vigie_lab::privilege::privileged("tc_ingress_rejects_with_answers") {
        return;
    }
    clients_are_refused_at_once(Hook::TcIngress);
}

#[test]
fn tc_egress_rejects_with_answers() {
    if !vigie_lab::privilege::privileged("tc_egress_rejects_with_answers") {
        return;
    }
    clients_are_refused_at_once(Hook::TcEgress);
}
