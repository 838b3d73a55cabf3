//! `vigie replay` on captures written here (pcap with Ethernet frames, pcapng with raw IP):
//! one JSON object per flow, in order of first appearance, oriented as the initiator opened
//! it, with the service, action, rule and evidence the kernel program gave it; and a broken
//! capture refused with the byte where it breaks.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use vigie_lab::fixtures::shipped_policy_dir;
use vigie_lab::packet::{Frame, tcp_flags};
use vigie_lab::tempdir::TempDir;

const PEER: &str = env!("CARGO_BIN_EXE_vigie-peer");

const HOST: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 5);
/// In the shipped catalog's Zoom prefix 3.7.35.0/25.
const ZOOM: Ipv4Addr = Ipv4Addr::new(3, 7, 35, 10);
/// In no service.
const OTHER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);

fn vigie(args: &[&str]) -> Output {
    let bin = vigie_lab::bins::vigie(Some(Path::new(PEER))).unwrap_or_else(|e| panic!("{e:#}"));
    std::process::Command::new(bin).args(args).output().unwrap()
}

fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4_u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes()); // Ethernet
    for (i, f) in frames.iter().enumerate() {
        out.extend_from_slice(&(i as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    out
}

/// A big-endian pcapng file with one raw-IP interface (link type 101): the frames' IP packets.
fn pcapng_raw_ip(frames: &[Vec<u8>]) -> Vec<u8> {
    let block = |kind: u32, body: &[u8]| {
        let len = 12 + body.len().div_ceil(4) * 4;
        let mut b = Vec::new();
        b.extend_from_slice(&kind.to_be_bytes());
        b.extend_from_slice(&(len as u32).to_be_bytes());
        b.extend_from_slice(body);
        b.resize(len - 4, 0);
        b.extend_from_slice(&(len as u32).to_be_bytes());
        b
    };
    let mut out = block(
        0x0a0d_0d0a,
        &[
            &0x1a2b_3c4d_u32.to_be_bytes()[..],
            &[0, 1, 0, 0],
            &[0xff; 8],
        ]
        .concat(),
    );
    out.extend(block(
        1,
        &[&101u16.to_be_bytes()[..], &[0, 0], &0u32.to_be_bytes()].concat(),
    ));
    for f in frames {
        let ip = &f[14..];
        let mut body = Vec::new();
        body.extend_from_slice(&0u32.to_be_bytes()); // interface 0
        body.extend_from_slice(&[0; 8]); // timestamp
        body.extend_from_slice(&(ip.len() as u32).to_be_bytes());
        body.extend_from_slice(&(ip.len() as u32).to_be_bytes());
        body.extend_from_slice(ip);
        out.extend(block(6, &body));
    }
    out
}

fn traffic() -> Vec<Vec<u8>> {
    let zoom = Frame::udp4(HOST, 5000, ZOOM, 8801).payload(b"media");
    let inbound = Frame::tcp4(OTHER, 40000, HOST, 22);
    let web = Frame::tcp4(HOST, 5001, OTHER, 443);
    vec![
        zoom.build(),
        zoom.clone().reversed().build(),
        inbound.build(),
        web.build(),
        inbound.reversed().build(),
        web.clone().reversed().build(),
        web.tcp_flags(tcp_flags::ACK).build(),
        Frame::arp(HOST, Ipv4Addr::new(10, 1, 0, 1)).build(),
    ]
}

fn replay(path: &Path) -> Vec<Value> {
    let policy = shipped_policy_dir();
    let out = vigie(&[
        "replay",
        "--policy",
        policy.to_str().unwrap(),
        "--json",
        "--pcap",
        path.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn write(dir: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn assert_flows(flows: &[Value], what: &str) {
    let summary: Vec<_> = flows
        .iter()
        .map(|f| {
            (
                f["src"].as_str().unwrap().to_owned(),
                f["dst"].as_str().unwrap().to_owned(),
                f["proto"].as_str().unwrap().to_owned(),
                f["service"].as_str().map(str::to_owned),
                f["action"].as_str().unwrap().to_owned(),
                f["rule"].as_str().unwrap().to_owned(),
                f["evidence"].as_str().unwrap().to_owned(),
                f["packets"].as_u64().unwrap(),
            )
        })
        .collect();
    let s = |x: &str| x.to_owned();
    assert_eq!(
        summary,
        [
            (
                s("10.1.0.5:5000"),
                s("3.7.35.10:8801"),
                s("udp"),
                Some(s("zoom")),
                s("block"),
                s("block-non-european-conferencing"),
                s("address"),
                2
            ),
            // Opened from outside: the initiator is the remote side.
            (
                s("203.0.113.9:40000"),
                s("10.1.0.5:22"),
                s("tcp"),
                None,
                s("allow"),
                s("default"),
                s("none"),
                2
            ),
            (
                s("10.1.0.5:5001"),
                s("203.0.113.9:443"),
                s("tcp"),
                None,
                s("allow"),
                s("default"),
                s("none"),
                3
            ),
        ],
        "{what}"
    );
}

#[test]
fn replay_reports_each_flow_as_the_kernel_decided_it() {
    if !vigie_lab::privilege::privileged("replay_reports_each_flow_as_the_kernel_decided_it") {
        return;
    }
    let dir = TempDir::new("replay").unwrap();
    let frames = traffic();
    assert_flows(&replay(&write(&dir, "t.pcap", &pcap(&frames))), "pcap");
    // The same packets without their link layer (no ARP), in a big-endian pcapng file.
    let ip_only: Vec<_> = frames[..7].to_vec();
    assert_flows(
        &replay(&write(&dir, "t.pcapng", &pcapng_raw_ip(&ip_only))),
        "pcapng",
    );
}

#[test]
fn a_broken_capture_is_refused_with_its_place() {
    let dir = TempDir::new("replay").unwrap();
    let policy = shipped_policy_dir();
    let whole = pcap(&traffic());
    let cases = [
        (
            "cut.pcap",
            whole[..whole.len() - 3].to_vec(),
            "a packet record needs",
        ),
        (
            "text.pcap",
            b"not a capture at all".to_vec(),
            "not a pcap or pcapng file",
        ),
    ];
    for (name, bytes, message) in cases {
        let path = write(&dir, name, &bytes);
        let out = vigie(&[
            "replay",
            "--policy",
            policy.to_str().unwrap(),
            "--pcap",
            path.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: {stderr}");
        assert!(
            stderr.contains(path.to_str().unwrap()) && stderr.contains(message),
            "{name}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{name}");
    }
    // The place: the byte where the last record's data starts.
    let path = dir.path().join("cut.pcap");
    let out = vigie(&["replay", "--pcap", path.to_str().unwrap()]);
    let last = traffic().last().unwrap().len();
    let offset = whole.len() - last;
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("byte {offset}:")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
