//! The lab by itself, without vigie: the LAN host reaches every service address of the
//! internet namespace over UDP, TCP and ICMP, IPv4 and IPv6, through the gateway; and the
//! machine's own namespace gains no interface.

use std::net::IpAddr;
use std::path::Path;

use vigie_lab::netns::current_interfaces;
use vigie_lab::peer::{self, PASS_TIMEOUT, Peers, Proto};
use vigie_lab::topology::Topology;

const PEER: &str = env!("CARGO_BIN_EXE_vigie-peer");

fn addrs(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

fn services() -> Vec<(String, Vec<IpAddr>)> {
    vec![
        (
            "example-a".to_owned(),
            addrs(&["192.0.2.1", "2001:db8:a::1"]),
        ),
        (
            "example-b".to_owned(),
            addrs(&["198.51.100.10", "2001:db8:5::10"]),
        ),
    ]
}

#[test]
fn lan_reaches_the_internet_through_the_gateway() {
    if !vigie_lab::privilege::privileged("lan_reaches_the_internet_through_the_gateway") {
        return;
    }
    let before = current_interfaces().unwrap();
    {
        let topo = Topology::new(&services()).unwrap();
        assert_eq!(
            current_interfaces().unwrap(),
            before,
            "the lab touched the root namespace"
        );
        let peers = Peers::start(&topo, Path::new(PEER)).unwrap();
        let mut specs = Vec::new();
        for s in topo.services() {
            specs.extend(peer::specs(&s.label, &s.addrs, &Proto::ALL, PASS_TIMEOUT));
        }
        // The internet's end of the WAN link too: routing both ways, not only to the services.
        let wan = addrs(&["10.78.0.2", "fd78::2"]);
        specs.extend(peer::specs("inet", &wan, &[Proto::Icmp], PASS_TIMEOUT));
        let results = peers.probe_all(&topo, &specs);
        assert_eq!(results.len(), specs.len());
        for r in &results {
            println!("{r}");
        }
        let failed = peer::unexpected(&results, true);
        assert!(failed.is_empty(), "unreachable:\n{}", failed.join("\n"));
        // The servers saw each UDP and TCP probe: what the blocking tests rely on to prove that
        // blocked traffic never arrived.
        let arrived = peers.arrived_since(0, &specs);
        let seen = |s: &&peer::ProbeSpec| {
            arrived
                .iter()
                .any(|a| a.ends_with(&format!(" reached {}", s.target())))
        };
        let unseen: Vec<_> = specs
            .iter()
            .filter(|s| s.proto != Proto::Icmp)
            .filter(|s| !seen(s))
            .collect();
        assert!(
            unseen.is_empty(),
            "arrivals not reported: {unseen:#?}\n{arrived:#?}"
        );
    }
    assert_eq!(
        current_interfaces().unwrap(),
        before,
        "the lab left an interface behind"
    );
}

#[test]
fn closed_ports_and_unknown_hosts_read_as_blocked() {
    if !vigie_lab::privilege::privileged("closed_ports_and_unknown_hosts_read_as_blocked") {
        return;
    }
    let topo = Topology::new(&services()).unwrap();
    let peers = Peers::start(&topo, Path::new(PEER)).unwrap();
    // These addresses exist nowhere: the gateway sends them to the internet namespace, which
    // has no route for them and answers unreachable; the probes must read as blocked.
    let nowhere = addrs(&["203.0.113.7", "2001:db8:ff::7"]);
    let specs = peer::specs("nowhere", &nowhere, &Proto::ALL, peer::BLOCK_TIMEOUT);
    let passed = peer::unexpected(&peers.probe_all(&topo, &specs), false);
    assert!(
        passed.is_empty(),
        "probes to no host passed:\n{}",
        passed.join("\n")
    );
}

#[test]
fn namespaces_are_deleted_on_drop() {
    if !vigie_lab::privilege::privileged("namespaces_are_deleted_on_drop") {
        return;
    }
    let names: Vec<String> = {
        let topo = Topology::new(&services()).unwrap();
        [topo.lan(), topo.gw(), topo.inet()]
            .map(str::to_owned)
            .to_vec()
    };
    let list = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    for name in names {
        let left = list
            .lines()
            .any(|l| l.split_whitespace().next() == Some(name.as_str()));
        assert!(!left, "namespace {name} left behind");
    }
}
