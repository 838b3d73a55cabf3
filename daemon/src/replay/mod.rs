//! `vigie replay`: a recorded capture through the real kernel program, to see what a policy
//! would do with real traffic before deploying it.
//!
//! Every packet goes, in capture order, to a private instance of the programs (`sandbox`, the
//! same object and maps `vigie run` loads, nothing attached): packets from the LAN to the
//! outbound program (XDP's, as `--hook xdp` attaches it), the others to the reply program. The
//! flow table the kernel wrote is then read back, one line per flow, oriented as its initiator
//! opened it. Signals that live in userspace (DNS learning, QUIC server names) do not exist yet:
//! when they do, replay feeds them as the daemon does.

pub mod capture;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;
use serde::Serialize;
use vigie_common::{
    action,
    flow::{FlowEntry, FlowKey, flags},
};

use crate::{
    compiled::CompiledPolicy,
    events::{action_name, evidence_name},
    sandbox::{Hook, Sandbox, SandboxError},
};

/// The LAN when `--lan` is not given: private, shared (carrier-grade NAT), unique-local and
/// link-local addresses.
pub const DEFAULT_LAN: [&str; 7] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "fc00::/7",
    "fe80::/10",
];

/// One flow of the capture and what the policy gave it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlowVerdict {
    /// The initiator's address and port.
    pub src: String,
    pub dst: String,
    pub proto: String,
    pub service: Option<String>,
    /// What the flow's packets got: `allow`, `block`, `monitor` (a block only reported).
    pub action: &'static str,
    /// The deciding rule, `default`, or `no-policy`.
    pub rule: String,
    pub evidence: &'static str,
    /// Packets of the flow in the capture.
    pub packets: u64,
}

/// What the replay read and did.
#[derive(Debug, Default)]
pub struct Replay {
    pub flows: Vec<FlowVerdict>,
    /// Frames given to the kernel program.
    pub packets: usize,
    /// Frames that carry no IP packet vigie could place (ARP, truncated...): still run.
    pub unplaced: usize,
    /// What DNS answers and QUIC Initials taught, and what could not be classified.
    pub learning: crate::learning::LearningStats,
    pub blind_spots: Vec<(&'static str, u64)>,
}

/// Runs `frames` through a fresh instance under `policy`; `lan` tells outbound packets.
pub fn replay(
    policy: &CompiledPolicy,
    frames: &[Vec<u8>],
    lan: &[IpNet],
) -> Result<Replay, SandboxError> {
    let mut sandbox = Sandbox::new()?;
    sandbox.apply(policy)?;
    let mut report = Replay::default();
    // First appearance and packet count of each connection, either direction.
    let mut seen: HashMap<Connection, (usize, u64)> = HashMap::new();
    for frame in frames {
        let tuple = five_tuple(frame);
        let outbound = tuple.is_some_and(|t| in_lan(lan, t.src.ip()));
        let hook = if outbound {
            Hook::XdpOutbound
        } else {
            Hook::TcReply
        };
        match tuple {
            Some(t) => {
                let next = seen.len();
                seen.entry(Connection::of(&t)).or_insert((next, 0)).1 += 1;
            }
            None => report.unplaced += 1,
        }
        sandbox.run(hook, frame)?;
        report.packets += 1;
        // Events are not reported here: drain the ring so it never fills.
        let _ = sandbox.drain_events();
    }
    report.learning = sandbox.learner().stats;
    report.blind_spots = crate::learning::blind_spots(&sandbox.stats()?, &report.learning).to_vec();
    let mut flows: Vec<(usize, FlowVerdict)> = Vec::new();
    let mut placed: HashMap<Connection, usize> = HashMap::new();
    for (key, entry) in sandbox.flows() {
        let (src, dst) = initiator(&key, &entry);
        let connection = Connection {
            proto: key.proto,
            ends: order(src, dst),
        };
        let (first, packets) = seen.get(&connection).copied().unwrap_or((usize::MAX, 0));
        let verdict = verdict(policy, &key, &entry, src, dst, packets);
        // A connection between two addresses outside the LAN has an entry per direction:
        // keep one, the one that recognised a service if either did.
        match placed.get(&connection) {
            Some(&i) if flows[i].1.service.is_none() && verdict.service.is_some() => {
                flows[i].1 = verdict;
            }
            Some(_) => {}
            None => {
                placed.insert(connection, flows.len());
                flows.push((first, verdict));
            }
        }
    }
    flows.sort_by_key(|(first, _)| *first);
    report.flows = flows.into_iter().map(|(_, f)| f).collect();
    Ok(report)
}

fn in_lan(lan: &[IpNet], addr: IpAddr) -> bool {
    lan.iter().any(|net| net.contains(&addr))
}

fn verdict(
    policy: &CompiledPolicy,
    key: &FlowKey,
    entry: &FlowEntry,
    src: SocketAddr,
    dst: SocketAddr,
    packets: u64,
) -> FlowVerdict {
    let monitored = action::blocks(entry.action) && entry.flags & flags::MONITOR_MODE != 0;
    FlowVerdict {
        src: src.to_string(),
        dst: dst.to_string(),
        proto: proto_name(key.proto),
        service: policy.service_name(entry.service).map(str::to_owned),
        action: if monitored {
            "monitor"
        } else {
            action_name(entry.action)
        },
        rule: policy.rule_name(entry.rule).to_owned(),
        evidence: evidence_name(entry.evidence),
        packets,
    }
}

fn proto_name(proto: u8) -> String {
    match proto {
        6 => "tcp".to_owned(),
        17 => "udp".to_owned(),
        1 => "icmp".to_owned(),
        58 => "icmpv6".to_owned(),
        n => n.to_string(),
    }
}

/// The flow's two ends as its first packet went: from the remote side if it came from there.
fn initiator(key: &FlowKey, entry: &FlowEntry) -> (SocketAddr, SocketAddr) {
    let addr = |bytes: &[u8; 16]| -> IpAddr {
        if key.family == 4 {
            IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
        } else {
            IpAddr::V6(Ipv6Addr::from(*bytes))
        }
    };
    let local = SocketAddr::new(addr(&key.local), key.local_port);
    let remote = SocketAddr::new(addr(&key.remote), key.remote_port);
    if entry.flags & flags::FROM_REMOTE != 0 {
        (remote, local)
    } else {
        (local, remote)
    }
}

/// A connection whichever way its packets go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Connection {
    proto: u8,
    ends: (SocketAddr, SocketAddr),
}

impl Connection {
    fn of(t: &FiveTuple) -> Self {
        Self {
            proto: t.proto,
            ends: order(t.src, t.dst),
        }
    }
}

fn order(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if a <= b { (a, b) } else { (b, a) }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FiveTuple {
    src: SocketAddr,
    dst: SocketAddr,
    proto: u8,
}

/// Addresses, protocol and ports of a frame, read as the kernel's parser reads them (VLAN
/// tags, PPPoE, IPv4 options, IPv6 extension headers); ports are zero for other protocols
/// and later fragments.
fn five_tuple(frame: &[u8]) -> Option<FiveTuple> {
    let be16 = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]))
    };
    let mut at = 12;
    let mut ether_type = be16(at)?;
    while ether_type == 0x8100 || ether_type == 0x88a8 {
        at += 4;
        ether_type = be16(at)?;
    }
    at += 2;
    if ether_type == 0x8864 {
        ether_type = match be16(at + 6)? {
            0x0021 => 0x0800,
            0x0057 => 0x86dd,
            _ => return None,
        };
        at += 8;
    }
    let (src, dst, mut proto, mut l4, later_fragment) = match ether_type {
        0x0800 => {
            let ip = frame.get(at..at + 20)?;
            let src: [u8; 4] = ip[12..16].try_into().ok()?;
            let dst: [u8; 4] = ip[16..20].try_into().ok()?;
            let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff != 0;
            let header = usize::from(ip[0] & 0x0f) * 4;
            (
                IpAddr::from(src),
                IpAddr::from(dst),
                ip[9],
                at + header,
                fragment,
            )
        }
        0x86dd => {
            let ip = frame.get(at..at + 40)?;
            let src: [u8; 16] = ip[8..24].try_into().ok()?;
            let dst: [u8; 16] = ip[24..40].try_into().ok()?;
            (IpAddr::from(src), IpAddr::from(dst), ip[6], at + 40, false)
        }
        _ => return None,
    };
    let mut later = later_fragment;
    // IPv6 extension headers, bounded as in the kernel.
    for _ in 0..6 {
        match proto {
            0 | 43 | 60 => {
                let next = *frame.get(l4)?;
                l4 += (usize::from(*frame.get(l4 + 1)?) + 1) * 8;
                proto = next;
            }
            51 => {
                let next = *frame.get(l4)?;
                l4 += (usize::from(*frame.get(l4 + 1)?) + 2) * 4;
                proto = next;
            }
            44 => {
                let next = *frame.get(l4)?;
                later |= be16(l4 + 2)? >> 3 != 0;
                l4 += 8;
                proto = next;
            }
            _ => break,
        }
    }
    let (sport, dport) = if (proto == 6 || proto == 17) && !later {
        (be16(l4)?, be16(l4 + 2)?)
    } else {
        (0, 0)
    };
    Some(FiveTuple {
        src: SocketAddr::new(src, sport),
        dst: SocketAddr::new(dst, dport),
        proto,
    })
}
