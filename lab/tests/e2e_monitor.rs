//! A policy in monitor mode lets everything through and reports what it would have blocked.

use std::path::Path;
use std::time::Duration;

use vigie_lab::daemon::Hook;
use vigie_lab::fixtures::{BLOCKED_SERVICES, Mode, PolicyDir};
use vigie_lab::peer::{self, PASS_TIMEOUT};
use vigie_lab::scenario::Lab;

const PEER: &str = env!("CARGO_BIN_EXE_vigie-peer");

fn monitor_passes_and_reports(hook: Hook) {
    let vigie = vigie_lab::bins::vigie(Some(Path::new(PEER))).unwrap_or_else(|e| panic!("{e:#}"));
    let lab = Lab::new(Path::new(PEER), vigie).unwrap();
    let policy = PolicyDir::write(Mode::Monitor).unwrap();
    let daemon = lab.start_vigie(hook, Some(policy.path())).unwrap();

    let results = lab.probe(&lab.blocked_specs(PASS_TIMEOUT));
    let failed = peer::unexpected(&results, true);
    assert!(
        failed.is_empty(),
        "{hook}: monitor mode blocked:\n{}",
        failed.join("\n")
    );

    for (service, mine) in daemon.events_of_each(&BLOCKED_SERVICES, Duration::from_secs(3)) {
        for e in mine {
            assert_eq!(e["mode"], "monitor", "{hook} {service}: {e}");
            // The rule's own action (what enforce mode would do), or "monitor".
            let action = e["action"].as_str().unwrap_or_default();
            assert!(
                ["block", "monitor"].contains(&action),
                "{hook} {service}: {e}"
            );
            if let Some(verdict) = e.get("verdict") {
                assert_eq!(verdict, "passed", "{hook} {service}: {e}");
            }
        }
    }
}

#[test]
fn xdp_monitor_passes_and_reports() {
    if !vigie_lab::privilege::privileged("xdp_monitor_passes_and_reports") {
        return;
    }
    monitor_passes_and_reports(Hook::Xdp);
}

#[test]
fn tc_ingress_monitor_passes_and_reports() {
    if !vigie_lab::privilege::privileged("tc_ingress_monitor_passes_and_reports") {
        return;
    }
    monitor_passes_and_reports(Hook::TcIngress);
}

#[test]
fn tc_egress_monitor_passes_and_reports() {
    if !vigie_lab::privilege::privileged("tc_egress_monitor_passes_and_reports") {
        return;
    }
    monitor_passes_and_reports(Hook::TcEgress);
}
