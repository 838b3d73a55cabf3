//! A thousand policy swaps under continuous traffic: every packet gets the verdict of one whole
//! policy or the other, never a mix, and no flow event is lost.
//!
//! Two policies disagree on everything the traffic touches: A blocks Zoom and allows Teams, B
//! does the opposite, with rules in the same positions. A packet judged with the rules of one
//! and the generation of the other would carry, in its event, an action that its policy never
//! gives to its service; a packet whose event says "block" but that reached the server (or the
//! other way round) would show that the verdict and the report disagree. Each datagram is its
//! own flow (its own source port), so each gets its own decision and its own event.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use vigie_lab::daemon::Hook;
use vigie_lab::fixtures::{Mode, PolicyDir};
use vigie_lab::peer::UDP_PORT;
use vigie_lab::scenario::Lab;

const PEER: &str = env!("CARGO_BIN_EXE_vigie-peer");
const SWAPS: usize = 1000;
const FIRST_PORT: u16 = 20_000;
/// Datagrams, one every `INTERVAL_US`: enough to outlast the swaps (each waits out the 20 ms
/// grace period, so a thousand take some 25 s).
const DATAGRAMS: u32 = 44_000;
const INTERVAL_US: u32 = 900;

const SETTINGS: &str =
    "[settings]\nmode = \"enforce\"\ndefault = \"allow\"\nunparsed = \"allow\"\n";

fn policy_a() -> String {
    format!(
        "{SETTINGS}[[rule]]\nname = \"a-block-zoom\"\nservices = [\"zoom\"]\naction = \"block\"\n\
         [[rule]]\nname = \"a-allow-teams\"\nservices = [\"teams\"]\naction = \"allow\"\n"
    )
}

fn policy_b() -> String {
    format!(
        "{SETTINGS}[[rule]]\nname = \"b-allow-zoom\"\nservices = [\"zoom\"]\naction = \"allow\"\n\
         [[rule]]\nname = \"b-block-teams\"\nservices = [\"teams\"]\naction = \"block\"\n"
    )
}

/// What each policy gives each service: (rule, action).
fn expected(policy: char, service: &str) -> (&'static str, &'static str) {
    match (policy, service) {
        ('A', "zoom") => ("a-block-zoom", "block"),
        ('A', _) => ("a-allow-teams", "allow"),
        ('B', "zoom") => ("b-allow-zoom", "allow"),
        (_, _) => ("b-block-teams", "block"),
    }
}

fn save(dir: &Path, text: &str) {
    let tmp = dir.join("policy.toml.new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("policy.toml")).unwrap();
}

fn first_v4(addrs: &[IpAddr]) -> IpAddr {
    *addrs
        .iter()
        .find(|a| a.is_ipv4())
        .expect("an IPv4 lab address")
}

#[test]
fn a_thousand_swaps_under_traffic_never_mix_two_policies() {
    if !vigie_lab::privilege::privileged("a_thousand_swaps_under_traffic_never_mix_two_policies") {
        return;
    }
    let vigie = vigie_lab::bins::vigie(Some(Path::new(PEER))).unwrap_or_else(|e| panic!("{e:#}"));
    let lab = Lab::new(Path::new(PEER), vigie).unwrap();
    let dir = PolicyDir::write(Mode::Enforce).unwrap();
    save(dir.path(), &policy_a());
    let digest = |text: &str| {
        save(dir.path(), text);
        vigie::policy::load_dir(dir.path()).unwrap().policy.digest
    };
    let digests: BTreeMap<String, char> =
        [(digest(&policy_b()), 'B'), (digest(&policy_a()), 'A')].into();
    // Every event written: repeats are not folded together here, each datagram is checked.
    let daemon = lab
        .start_vigie_with(Hook::Xdp, Some(dir.path()), &["--event-window", "0"])
        .unwrap();

    let zoom = SocketAddr::new(first_v4(&lab.topo.service_addrs("zoom")), UDP_PORT);
    let teams = SocketAddr::new(first_v4(&lab.topo.service_addrs("teams")), UDP_PORT);
    let mark = lab.peers.arrivals().len();
    let sender = start_stream(&lab, zoom, teams);

    let swapping = swap_alternately(&daemon, dir.path());
    let status = sender
        .wait_timeout(Duration::from_secs(60))
        .unwrap()
        .expect("the stream ends");
    assert!(status.success(), "the stream failed");
    assert!(
        swapping < Duration::from_micros(u64::from(DATAGRAMS) * u64::from(INTERVAL_US)),
        "the swaps ({swapping:?}) outlasted the traffic: not every swap was under load"
    );
    std::thread::sleep(Duration::from_millis(500));

    // Every datagram has its event; each event's verdict is its policy's, and the packet met it.
    let events = daemon.wait_events(Duration::from_secs(10), |e| e.len() >= DATAGRAMS as usize);
    let arrived: BTreeSet<u16> = lab.peers.arrivals()[mark..]
        .iter()
        .filter(|a| a.local == zoom || a.local == teams)
        .map(|a| a.from.port())
        .collect();
    let by_policy = check_events(&events, &digests, &arrived);
    let datapath = &daemon.status().unwrap().raw["stats"];
    assert_eq!(datapath["events_lost"], 0, "{datapath}");
    eprintln!(
        "{SWAPS} swaps in {swapping:?} under {DATAGRAMS} flows; decisions by policy {by_policy:?}, decisions retried {}",
        datapath["decisions_retried"]
    );
}

/// Starts the datagrams on the LAN host: even ones to Zoom, odd ones to Teams.
fn start_stream(lab: &Lab, zoom: SocketAddr, teams: SocketAddr) -> vigie_lab::process::Process {
    let (zoom_arg, teams_arg) = (zoom.to_string(), teams.to_string());
    let count = DATAGRAMS.to_string();
    let first = FIRST_PORT.to_string();
    lab.topo
        .spawn(
            lab.topo.lan(),
            PEER,
            &[
                "stream",
                "--to",
                &zoom_arg,
                "--to",
                &teams_arg,
                "--count",
                &count,
                "--first-port",
                &first,
                "--interval-us",
                &INTERVAL_US.to_string(),
            ],
            Stdio::null(),
            Stdio::piped(),
        )
        .unwrap()
}

/// Swaps B, A, B... by file and SIGHUP, each time waiting for the daemon to say the new
/// generation is in force; returns how long the swaps took.
fn swap_alternately(daemon: &vigie_lab::daemon::Daemon<'_>, dir: &Path) -> Duration {
    let started = Instant::now();
    let applied = |log: &str| log.matches("policy applied").count();
    let mut seen = applied(&daemon.log());
    for swap in 0..SWAPS {
        let text = if swap % 2 == 0 {
            policy_b()
        } else {
            policy_a()
        };
        save(dir, &text);
        daemon.process().unwrap().signal(libc::SIGHUP).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = applied(&daemon.log());
            if now > seen {
                seen = now;
                break;
            }
            assert!(
                Instant::now() < deadline,
                "swap {swap} not applied:\n{}",
                daemon.log_tail()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    started.elapsed()
}

/// Checks every event of the stream against its policy and its datagram's fate; returns the
/// number of decisions by policy.
fn check_events(
    events: &[serde_json::Value],
    digests: &BTreeMap<String, char>,
    arrived: &BTreeSet<u16>,
) -> BTreeMap<char, usize> {
    let mut seen_ports = BTreeSet::new();
    let mut by_policy: BTreeMap<char, usize> = BTreeMap::new();
    for e in events {
        let src: SocketAddr = e["src"].as_str().unwrap().parse().unwrap();
        let port = src.port();
        if !(FIRST_PORT..FIRST_PORT + DATAGRAMS as u16).contains(&port) {
            continue;
        }
        // A flow decided again after a swap (its echo came back under the next policy) is
        // reported again, marked: its verdict is checked, but the datagram met the first.
        let first_decision = e["redecided"] == false;
        if first_decision {
            assert!(
                seen_ports.insert(port),
                "two first events for one datagram: {e}"
            );
        }
        let service = if (port - FIRST_PORT).is_multiple_of(2) {
            "zoom"
        } else {
            "teams"
        };
        assert_eq!(e["service"], service, "{e}");
        let policy = *digests
            .get(e["policy_digest"].as_str().unwrap_or_default())
            .unwrap_or_else(|| panic!("an event of an unknown policy: {e}"));
        *by_policy.entry(policy).or_default() += 1;
        let (rule, action) = expected(policy, service);
        assert_eq!(
            (e["rule"].as_str().unwrap(), e["action"].as_str().unwrap()),
            (rule, action),
            "policy {policy}: {e}"
        );
        if first_decision {
            assert_eq!(
                arrived.contains(&port),
                action == "allow",
                "the packet did not get its event's verdict: {e}"
            );
        }
    }
    assert_eq!(
        seen_ports.len(),
        DATAGRAMS as usize,
        "events missing: {} of {DATAGRAMS}",
        seen_ports.len()
    );
    assert!(
        by_policy.get(&'A').is_some_and(|&n| n > 1000)
            && by_policy.get(&'B').is_some_and(|&n| n > 1000),
        "{by_policy:?}"
    );
    by_policy
}
