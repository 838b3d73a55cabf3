//! Endpoints learned from DNS, with a real DNS server (dnsmasq) and client (dig) in the
//! namespace lab, on each hook. The servers sit on addresses that no catalog service lists:
//! only the DNS answers that cross the gateway can tell their service. Before the lookup a
//! connection passes; after it, one to the address of a Zoom name (or of a name whose CNAME
//! chain leads to a Teams name) is blocked with `dns` evidence, while the address of a name
//! of no service still passes; once the (clamped) TTL has run out, the address is forgotten.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use vigie_lab::daemon::{Hook, events_to};
use vigie_lab::fixtures::{Mode, PolicyDir};
use vigie_lab::peer::{ProbeSpec, Proto};
use vigie_lab::scenario::Lab;
use vigie_lab::tempdir::TempDir;

const PEER: &str = env!("CARGO_BIN_EXE_vigie-peer");
/// All in TEST-NET-3, in no catalog service.
const RESOLVER: &str = "203.0.113.53";
/// `meetings.zoom.us`.
const ZOOM_HOST: &str = "203.0.113.81";
/// `video.corp.test`, a CNAME of `gw.teams.microsoft.com`.
const TEAMS_HOST: &str = "203.0.113.82";
/// `www.example.org`.
const OTHER_HOST: &str = "203.0.113.83";
/// The TTL dnsmasq gives its answers, and the policy's bounds: learned addresses count for
/// three seconds.
const TTL: &str = "3";
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

struct DnsLab {
    lab: Lab,
    _run: TempDir,
}

fn lab() -> DnsLab {
    let lab = Lab::with_unlisted(
        Path::new(PEER),
        &[RESOLVER, ZOOM_HOST, TEAMS_HOST, OTHER_HOST],
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let run = TempDir::new("dnsmasq").unwrap();
    let pid = run.path().join("dnsmasq.pid");
    let listen = format!("--listen-address={RESOLVER}");
    let pid_file = format!("--pid-file={}", pid.display());
    let zoom = format!("--host-record=meetings.zoom.us,{ZOOM_HOST}");
    let teams = format!("--host-record=gw.teams.microsoft.com,{TEAMS_HOST}");
    let other = format!("--host-record=www.example.org,{OTHER_HOST}");
    let ttl = format!("--local-ttl={TTL}");
    let server = lab
        .topo
        .spawn(
            lab.topo.inet(),
            "dnsmasq",
            &[
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--user=root",
                &listen,
                &pid_file,
                &zoom,
                &teams,
                "--cname=video.corp.test,gw.teams.microsoft.com",
                &other,
                &ttl,
            ],
            Stdio::null(),
            Stdio::null(),
        )
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while lookup(&lab, "www.example.org").is_empty() {
        assert!(server.try_wait().unwrap().is_none(), "dnsmasq stopped");
        assert!(Instant::now() < deadline, "dnsmasq never answered");
        std::thread::sleep(Duration::from_millis(200));
    }
    DnsLab { lab, _run: run }
}

/// The addresses `dig` got for `name` from the lab's resolver, asked from the LAN host.
fn lookup(lab: &Lab, name: &str) -> Vec<String> {
    let server = format!("@{RESOLVER}");
    let out = lab
        .topo
        .exec(
            lab.topo.lan(),
            "dig",
            &[&server, name, "A", "+short", "+time=2", "+tries=1"],
        )
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.parse::<std::net::IpAddr>().is_ok())
        .map(str::to_owned)
        .collect()
}

/// Whether a TCP connection (the echo server's port) to `addr` from the LAN host passes.
fn passes(lab: &Lab, addr: &str) -> bool {
    let spec = ProbeSpec {
        label: "unlisted".into(),
        addr: addr.parse().unwrap(),
        proto: Proto::Tcp,
        timeout: PROBE_TIMEOUT,
    };
    let result = lab.probe(&[spec]);
    result.first().is_some_and(|r| r.passed)
}

/// Waits until the daemon has learned `n` addresses in all (its metrics say so): it writes
/// them some tens of microseconds after the answer crossed the gateway, which can be after
/// `dig` returned.
fn wait_learned(lab: &Lab, n: u64, hook: Hook) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let scrape = lab
            .topo
            .exec(
                lab.topo.gw(),
                "curl",
                &["-s", "http://127.0.0.1:9947/metrics"],
            )
            .unwrap();
        let learned = String::from_utf8_lossy(&scrape.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("vigie_dns_endpoints_total{event=\"learned\"} "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if learned >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{hook}: the daemon learned {learned} of {n} addresses"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn learned_from_dns(hook: Hook) {
    let dns = lab();
    let lab = &dns.lab;
    let policy = PolicyDir::write(Mode::Enforce).unwrap();
    let file = policy.path().join("policy.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let bounds = format!("[settings]\ndns_min_ttl = {TTL}\ndns_max_ttl = {TTL}\n");
    std::fs::write(&file, text.replacen("[settings]\n", &bounds, 1)).unwrap();
    let daemon = lab.start_vigie(hook, Some(policy.path())).unwrap();

    for host in [ZOOM_HOST, TEAMS_HOST, OTHER_HOST] {
        assert!(
            passes(lab, host),
            "{hook}: {host} blocked before any lookup"
        );
    }
    // Each lookup just before its probe: a blocked probe waits out its timeout, longer than
    // the short TTL this test gives.
    assert_eq!(lookup(lab, "meetings.zoom.us"), [ZOOM_HOST]);
    wait_learned(lab, 1, hook);
    // `vigie status` counts it (read from the pinned table, in the active slot).
    assert_eq!(
        daemon.status().unwrap().raw["learned_endpoints"],
        1,
        "{hook}"
    );
    assert!(
        !passes(lab, ZOOM_HOST),
        "{hook}: a Zoom name's address passes"
    );
    assert_eq!(lookup(lab, "video.corp.test"), [TEAMS_HOST]);
    wait_learned(lab, 2, hook);
    assert!(
        !passes(lab, TEAMS_HOST),
        "{hook}: a CNAME of a Teams name passes"
    );
    assert_eq!(lookup(lab, "www.example.org"), [OTHER_HOST]);
    assert!(
        passes(lab, OTHER_HOST),
        "{hook}: a name of no service is blocked"
    );

    let events = daemon.wait_events(Duration::from_secs(5), |e| {
        events_to(e, ZOOM_HOST.parse().unwrap()).len()
            + events_to(e, TEAMS_HOST.parse().unwrap()).len()
            >= 2
    });
    for (addr, service) in [(ZOOM_HOST, "zoom"), (TEAMS_HOST, "teams")] {
        let seen = events_to(&events, addr.parse().unwrap());
        assert!(
            seen.iter().any(|e| e["service"] == service
                && e["evidence"] == "dns"
                && e["action"] == "block"),
            "{hook}: no dns block event for {service} at {addr}: {seen:?}"
        );
    }
    let stats = &daemon.status().unwrap().raw["stats"];
    assert!(
        stats["dns_responses"].as_u64().unwrap_or(0) >= 3,
        "{hook}: {stats}"
    );

    // Past the TTL (three seconds, and the daemon's sweep each second), the addresses are
    // forgotten: a new flow to them passes again.
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        passes(lab, ZOOM_HOST),
        "{hook}: the learned address never expired"
    );
}

#[test]
fn xdp_learns_from_dns() {
    if !vigie_lab::privilege::privileged("xdp_learns_from_dns") {
        return;
    }
    learned_from_dns(Hook::Xdp);
}

#[test]
fn tc_ingress_learns_from_dns() {
    if !vigie_lab::privilege::privileged("tc_ingress_learns_from_dns") {
        return;
    }
    learned_from_dns(Hook::TcIngress);
}

#[test]
fn tc_egress_learns_from_dns() {
    if !vigie_lab::privilege::privileged("tc_egress_learns_from_dns") {
        return;
    }
    learned_from_dns(Hook::TcEgress);
}
