//! Flow events survive a stop: repeats that an aggregation window counted are reported when
//! the daemon stops (SIGTERM), not lost with the process.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use vigie_lab::daemon::Hook;
use vigie_lab::fixtures::BLOCKED_SERVICES;
use vigie_lab::peer::{self, BLOCK_TIMEOUT, Proto};
use vigie_lab::scenario::Lab;

const PEER: &str = env!("CARGO_BIN_EXE_vigie-peer");

/// The host part of an event's `dst` (`addr:port` or `[v6]:port`).
fn host(event: &Value) -> String {
    let dst = event["dst"].as_str().unwrap_or_default();
    dst.parse::<std::net::SocketAddr>()
        .map_or_else(|_| dst.to_owned(), |a| a.ip().to_string())
}

fn suppressed(event: &Value) -> u64 {
    event["suppressed"].as_u64().unwrap_or(0)
}

#[test]
fn stopping_reports_the_repeats_that_open_windows_counted() {
    if !vigie_lab::privilege::privileged("stopping_reports_the_repeats_that_open_windows_counted") {
        return;
    }
    let vigie = vigie_lab::bins::vigie(Some(Path::new(PEER))).unwrap_or_else(|e| panic!("{e:#}"));
    let lab = Lab::new(Path::new(PEER), vigie).unwrap();
    // A window far longer than the test: only the stop can close it.
    let mut daemon = lab
        .start_vigie_with(Hook::Xdp, None, &["--event-window", "600"])
        .unwrap();

    // UDP, TCP and ICMP to each blocked address: three flows (at least) between the same two
    // hosts, of which the first is written and the others counted.
    let results = lab.probe(&lab.blocked_specs(BLOCK_TIMEOUT));
    let failed = peer::unexpected(&results, false);
    assert!(failed.is_empty(), "not blocked:\n{}", failed.join("\n"));
    let destinations: BTreeSet<String> = results.iter().map(|r| r.spec.addr.to_string()).collect();
    let before = daemon.wait_events(Duration::from_secs(5), |events| {
        destinations
            .iter()
            .all(|d| events.iter().any(|e| host(e) == *d))
    });
    for d in &destinations {
        assert!(
            before.iter().any(|e| host(e) == *d),
            "no event to {d}: {before:#?}"
        );
    }
    assert!(
        before.iter().all(|e| suppressed(e) == 0),
        "a window closed before the stop: {before:#?}"
    );

    let status = daemon.stop().unwrap();
    assert!(status.success(), "vigie run exited with {status}");
    let after = daemon.events();
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "the stop rewrote earlier lines"
    );
    let mut counted: BTreeMap<String, u64> = BTreeMap::new();
    for e in &after[before.len()..] {
        assert!(
            suppressed(e) > 0,
            "a line after the stop that reports no repeat: {e}"
        );
        *counted.entry(host(e)).or_default() += suppressed(e);
        let service = e["service"].as_str().unwrap_or_default();
        assert!(BLOCKED_SERVICES.contains(&service), "{e}");
        assert_eq!(e["action"], "block", "{e}");
    }
    for d in &destinations {
        let repeats = counted.get(d).copied().unwrap_or(0);
        assert!(
            repeats >= 2,
            "{d}: {repeats} repeats reported at the stop, three protocols were sent: {after:#?}"
        );
    }
}

/// Flow events written while no daemon ran (after a SIGKILL) wait in the pinned ring; the next
/// daemon, started on the same policy files, writes them with their names (rule, service), not
/// as an unknown rule of an unknown generation.
#[test]
fn events_left_in_the_ring_are_named_by_the_next_daemon() {
    if !vigie_lab::privilege::privileged("events_left_in_the_ring_are_named_by_the_next_daemon") {
        return;
    }
    let vigie = vigie_lab::bins::vigie(Some(Path::new(PEER))).unwrap_or_else(|e| panic!("{e:#}"));
    let lab = Lab::new(Path::new(PEER), vigie).unwrap();
    let mut daemon = lab
        .start_vigie_with(Hook::Xdp, None, &["--event-window", "0"])
        .unwrap();
    let generation = daemon.status().unwrap().generation;
    daemon.kill().unwrap();

    let results = lab.probe(&lab.specs(&["zoom"], &[Proto::Udp, Proto::Tcp], BLOCK_TIMEOUT));
    let failed = peer::unexpected(&results, false);
    assert!(
        failed.is_empty(),
        "not blocked without the daemon:\n{}",
        failed.join("\n")
    );
    daemon.launch().unwrap();
    let zoom: BTreeSet<String> = results.iter().map(|r| r.spec.addr.to_string()).collect();
    let events = daemon.wait_events(Duration::from_secs(5), |events| {
        zoom.iter().all(|d| events.iter().any(|e| host(e) == *d))
    });
    let left: Vec<&Value> = events
        .iter()
        .filter(|e| e["generation"].as_u64() == Some(generation))
        .collect();
    assert!(
        !left.is_empty(),
        "no event of generation {generation}: {events:#?}"
    );
    for e in left {
        assert_eq!(e["service"], "zoom", "{e}");
        assert_eq!(e["rule"], "block-non-european-conferencing", "{e}");
        assert_eq!(e["action"], "block", "{e}");
    }
}
