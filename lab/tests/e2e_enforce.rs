//! vigie on each hook, enforcing the shipped policy (plus the lab's Visio): UDP, TCP and ICMP to
//! every blocked service's IPv4 and IPv6 address never arrive, Visio is reached, and the
//! daemon reports the blocks as flow events.

use std::path::Path;
use std::time::Duration;

use vigie_lab::daemon::{Hook, events_to};
use vigie_lab::fixtures::{BLOCKED_SERVICES, Mode, PolicyDir, VISIO};
use vigie_lab::netns::current_interfaces;
use vigie_lab::peer::{self, BLOCK_TIMEOUT, PASS_TIMEOUT, Proto};
use vigie_lab::scenario::Lab;

const PEER: &str = env!("CARGO_BIN_EXE_vigie-peer");

fn lab() -> Lab {
    let vigie = vigie_lab::bins::vigie(Some(Path::new(PEER))).unwrap_or_else(|e| panic!("{e:#}"));
    Lab::new(Path::new(PEER), vigie).unwrap()
}

fn blocks_services_and_passes_visio(hook: Hook) {
    let root = current_interfaces().unwrap();
    run_enforcing(hook);
    assert_eq!(
        current_interfaces().unwrap(),
        root,
        "{hook}: the root namespace changed"
    );
}

fn run_enforcing(hook: Hook) {
    let lab = lab();
    // Without vigie every service is reachable: what is blocked later, vigie blocks.
    let before = lab.probe(&lab.specs(&BLOCKED_SERVICES, &[Proto::Tcp], PASS_TIMEOUT));
    let failed = peer::unexpected(&before, true);
    assert!(
        failed.is_empty(),
        "unreachable before vigie ran:\n{}",
        failed.join("\n")
    );

    let policy = PolicyDir::write(Mode::Enforce).unwrap();
    let daemon = lab.start_vigie(hook, Some(policy.path())).unwrap();

    let mark = lab.peers.arrivals().len();
    let specs = lab.blocked_specs(BLOCK_TIMEOUT);
    let leaked = peer::unexpected(&lab.probe(&specs), false);
    assert!(
        leaked.is_empty(),
        "{hook}: blocked services answered:\n{}",
        leaked.join("\n")
    );
    // Not only no answer: nothing reached the servers.
    let arrived = lab.peers.arrived_since(mark, &specs);
    assert!(
        arrived.is_empty(),
        "{hook}: blocked traffic arrived:\n{}",
        arrived.join("\n")
    );
    let visio = lab.probe(&lab.visio_specs(PASS_TIMEOUT));
    let failed = peer::unexpected(&visio, true);
    assert!(
        failed.is_empty(),
        "{hook}: Visio unreachable:\n{}",
        failed.join("\n")
    );

    // Each blocked service's flows are reported as blocks, in enforce mode.
    for (service, mine) in daemon.events_of_each(&BLOCKED_SERVICES, Duration::from_secs(3)) {
        for e in mine {
            assert_eq!(e["action"], "block", "{hook} {service}: {e}");
            assert_eq!(e["mode"], "enforce", "{hook} {service}: {e}");
            assert!(
                e["generation"].as_u64().is_some_and(|g| g >= 1),
                "{hook} {service}: {e}"
            );
            assert!(
                e["rule"].is_string() && e["time"].is_string(),
                "{hook} {service}: {e}"
            );
        }
    }
    let events = daemon.events();
    for addr in lab.topo.service_addrs(VISIO) {
        for e in events_to(&events, addr) {
            assert_ne!(
                e["action"], "block",
                "{hook}: Visio reported as blocked: {e}"
            );
        }
    }
}

#[test]
fn xdp_blocks_services_and_passes_visio() {
    if !vigie_lab::privilege::privileged("xdp_blocks_services_and_passes_visio") {
        return;
    }
    blocks_services_and_passes_visio(Hook::Xdp);
}

#[test]
fn tc_ingress_blocks_services_and_passes_visio() {
    if !vigie_lab::privilege::privileged("tc_ingress_blocks_services_and_passes_visio") {
        return;
    }
    blocks_services_and_passes_visio(Hook::TcIngress);
}

#[test]
fn tc_egress_blocks_services_and_passes_visio() {
    if !vigie_lab::privilege::privileged("tc_egress_blocks_services_and_passes_visio") {
        return;
    }
    blocks_services_and_passes_visio(Hook::TcEgress);
}
