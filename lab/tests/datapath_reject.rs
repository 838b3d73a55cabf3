//! The `reject` action through `BPF_PROG_TEST_RUN`: the frame each outbound hook sends back,
//! read byte for byte and its checksums verified with the lab's own implementation; and the
//! packets that get no answer, only a drop.

#[path = "datapath_support.rs"]
mod support;

use std::net::{Ipv4Addr, Ipv6Addr};

use support::*;
use vigie::sandbox::{Hook, Outcome, Sandbox};
use vigie_common::{action, counters::stat};
use vigie_lab::packet::{
    self, ETH_P_8021AD, ETH_P_8021Q, ETH_P_PPPOE_SESSION, Ext, Frame, checksum, pseudo_v4,
    pseudo_v6, tcp_flags,
};

const LAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const GATEWAY_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const SEQ: u32 = 0x1122_3344;
const ACK: u32 = 0x5566_7788;

fn reject_zoom() -> PolicySpec {
    PolicySpec::new().rule("reject-zoom", rule(action::REJECT).services(&[ZOOM]))
}

/// Runs `frame` on `hook` in a fresh sandbox under `policy`; returns the verdict, the frame the
/// program left, and the sandbox for its statistics.
fn run_on(policy: &PolicySpec, hook: Hook, frame: &[u8]) -> (Outcome, Vec<u8>, Sandbox) {
    let mut sandbox = sandbox(policy);
    let (outcome, out) = sandbox
        .run_frame(hook, frame)
        .unwrap_or_else(|e| panic!("{hook:?}: {e}"));
    (outcome, out, sandbox)
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Sets the TCP sequence and acknowledgement numbers of a built frame.
fn with_seq_ack(frame: Frame, seq: u32, ack: u32) -> Frame {
    let at = frame.offsets().transport;
    frame
        .patch(at + 4, &seq.to_be_bytes())
        .patch(at + 8, &ack.to_be_bytes())
}

/// Checks the link layer of an answer: MACs swapped, the bytes between them and the IP
/// header (ethertypes, tags, PPPoE session) those of the rejected frame, but for the PPPoE
/// length (the 4th and 3rd bytes before the IP header), which the caller checks.
fn assert_link_layer(hook: Hook, sent: &[u8], answer: &[u8], l3: usize, pppoe: bool) {
    assert_eq!(answer[0..6], sent[6..12], "{hook:?}: destination MAC");
    assert_eq!(answer[6..12], sent[0..6], "{hook:?}: source MAC");
    if pppoe {
        assert_eq!(answer[12..l3 - 4], sent[12..l3 - 4], "{hook:?}: tags");
        assert_eq!(
            answer[l3 - 2..l3],
            sent[l3 - 2..l3],
            "{hook:?}: PPP protocol"
        );
    } else {
        assert_eq!(answer[12..l3], sent[12..l3], "{hook:?}: ethertype and tags");
    }
}

/// Checks an IPv4 header at `l3` from `src` to `dst`; returns its payload.
fn ipv4_payload(
    hook: Hook,
    answer: &[u8],
    l3: usize,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
) -> &[u8] {
    let ip = &answer[l3..];
    assert_eq!(ip[0], 0x45, "{hook:?}: version and header length");
    let total = usize::from(be16(ip, 2));
    assert_eq!(total, ip.len(), "{hook:?}: total length vs frame");
    assert!(ip[8] > 0, "{hook:?}: TTL");
    assert_eq!(ip[9], proto, "{hook:?}: protocol");
    assert_eq!(checksum(&[&ip[..20]]), 0, "{hook:?}: IPv4 header checksum");
    assert_eq!(ip[12..16], src.octets(), "{hook:?}: source");
    assert_eq!(ip[16..20], dst.octets(), "{hook:?}: destination");
    &ip[20..]
}

fn ipv6_payload(
    hook: Hook,
    answer: &[u8],
    l3: usize,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    proto: u8,
) -> &[u8] {
    let ip = &answer[l3..];
    assert_eq!(ip[0] >> 4, 6, "{hook:?}: version");
    assert_eq!(
        usize::from(be16(ip, 4)),
        ip.len() - 40,
        "{hook:?}: payload length"
    );
    assert_eq!(ip[6], proto, "{hook:?}: next header");
    assert!(ip[7] > 0, "{hook:?}: hop limit");
    assert_eq!(ip[8..24], src.octets(), "{hook:?}: source");
    assert_eq!(ip[24..40], dst.octets(), "{hook:?}: destination");
    &ip[40..]
}

/// Checks a TCP reset's ports, numbers, flags and length (its checksum is the caller's).
fn assert_reset(hook: Hook, tcp: &[u8], seq: u32, ack: u32, flags: u8) {
    assert_eq!(tcp.len(), 20, "{hook:?}: a bare TCP header");
    assert_eq!(
        (be16(tcp, 0), be16(tcp, 2)),
        (8801, 5000),
        "{hook:?}: ports"
    );
    assert_eq!(
        (be32(tcp, 4), be32(tcp, 8)),
        (seq, ack),
        "{hook:?}: seq, ack"
    );
    assert_eq!(tcp[12] >> 4, 5, "{hook:?}: data offset");
    assert_eq!(tcp[13], flags, "{hook:?}: flags");
}

#[test]
fn a_syn_gets_a_reset_that_acknowledges_it() {
    if !vigie_lab::privilege::privileged("a_syn_gets_a_reset_that_acknowledges_it") {
        return;
    }
    let frame = with_seq_ack(
        Frame::tcp4(FINANCE_HOST, 5000, ZOOM_HOST, 8801).macs(LAN_MAC, GATEWAY_MAC),
        SEQ,
        0,
    );
    let sent = frame.build();
    for hook in OUTBOUND_HOOKS {
        let (outcome, answer, sandbox) = run_on(&reject_zoom(), hook, &sent);
        assert_eq!(outcome, Outcome::Answer, "{hook:?}");
        assert_eq!(answer.len(), 14 + 20 + 20, "{hook:?}");
        assert_link_layer(hook, &sent, &answer, 14, false);
        let tcp = ipv4_payload(
            hook,
            &answer,
            14,
            ZOOM_HOST,
            FINANCE_HOST,
            packet::IPPROTO_TCP,
        );
        assert_reset(hook, tcp, 0, SEQ + 1, tcp_flags::RST | tcp_flags::ACK);
        let pseudo = pseudo_v4(ZOOM_HOST, FINANCE_HOST, packet::IPPROTO_TCP, 20);
        assert_eq!(checksum(&[&pseudo, tcp]), 0, "{hook:?}: TCP checksum");
        assert_eq!(stat(&sandbox, stat::REJECTS_ANSWERED), 1, "{hook:?}");
        assert_eq!(stat(&sandbox, stat::REJECTS_DROPPED), 0, "{hook:?}");
    }
}

#[test]
fn a_segment_of_an_open_connection_gets_a_reset_at_the_acknowledged_sequence() {
    if !vigie_lab::privilege::privileged(
        "a_segment_of_an_open_connection_gets_a_reset_at_the_acknowledged_sequence",
    ) {
        return;
    }
    // A connection cut by a reload: its data segments carry an acknowledgement.
    let frame = with_seq_ack(
        Frame::tcp4(FINANCE_HOST, 5000, ZOOM_HOST, 8801)
            .tcp_flags(tcp_flags::ACK | tcp_flags::PSH)
            .payload(&[0x5a; 300]),
        SEQ,
        ACK,
    );
    let sent = frame.build();
    for hook in OUTBOUND_HOOKS {
        let (outcome, answer, _) = run_on(&reject_zoom(), hook, &sent);
        assert_eq!(outcome, Outcome::Answer, "{hook:?}");
        let tcp = ipv4_payload(
            hook,
            &answer,
            14,
            ZOOM_HOST,
            FINANCE_HOST,
            packet::IPPROTO_TCP,
        );
        assert_reset(hook, tcp, ACK, 0, tcp_flags::RST);
        let pseudo = pseudo_v4(ZOOM_HOST, FINANCE_HOST, packet::IPPROTO_TCP, 20);
        assert_eq!(checksum(&[&pseudo, tcp]), 0, "{hook:?}: TCP checksum");
    }
    // Without ACK (a FIN alone, say), the reset acknowledges the data and the FIN.
    let frame = with_seq_ack(
        Frame::tcp4(FINANCE_HOST, 5000, ZOOM_HOST, 8801)
            .tcp_flags(tcp_flags::FIN)
            .payload(&[1; 10]),
        SEQ,
        0,
    );
    let (_, answer, _) = run_on(&reject_zoom(), Hook::XdpOutbound, &frame.build());
    let tcp = &answer[34..];
    assert_reset(
        Hook::XdpOutbound,
        tcp,
        0,
        SEQ + 11,
        tcp_flags::RST | tcp_flags::ACK,
    );
}

#[test]
fn ipv6_tcp_gets_a_reset() {
    if !vigie_lab::privilege::privileged("ipv6_tcp_gets_a_reset") {
        return;
    }
    let frame = with_seq_ack(Frame::tcp6(FINANCE_HOST6, 5000, ZOOM_HOST6, 8801), SEQ, 0);
    let sent = frame.build();
    for hook in OUTBOUND_HOOKS {
        let (outcome, answer, _) = run_on(&reject_zoom(), hook, &sent);
        assert_eq!(outcome, Outcome::Answer, "{hook:?}");
        assert_eq!(answer.len(), 14 + 40 + 20, "{hook:?}");
        assert_link_layer(hook, &sent, &answer, 14, false);
        let tcp = ipv6_payload(
            hook,
            &answer,
            14,
            ZOOM_HOST6,
            FINANCE_HOST6,
            packet::IPPROTO_TCP,
        );
        assert_reset(hook, tcp, 0, SEQ + 1, tcp_flags::RST | tcp_flags::ACK);
        let pseudo = pseudo_v6(ZOOM_HOST6, FINANCE_HOST6, packet::IPPROTO_TCP, 20);
        assert_eq!(checksum(&[&pseudo, tcp]), 0, "{hook:?}: TCP checksum");
    }
}

#[test]
fn udp_gets_an_icmp_port_unreachable_quoting_it() {
    if !vigie_lab::privilege::privileged("udp_gets_an_icmp_port_unreachable_quoting_it") {
        return;
    }
    // Payloads shorter and longer than the answer: the frame grows or shrinks.
    for payload_len in [0, 5, 1200] {
        let frame = Frame::udp4(FINANCE_HOST, 5000, ZOOM_HOST, 8801).payload(&vec![7; payload_len]);
        let sent = frame.build();
        for hook in OUTBOUND_HOOKS {
            let (outcome, answer, _) = run_on(&reject_zoom(), hook, &sent);
            assert_eq!(outcome, Outcome::Answer, "{hook:?} {payload_len}");
            assert_eq!(answer.len(), 14 + 20 + 8 + 20 + 8, "{hook:?} {payload_len}");
            assert_link_layer(hook, &sent, &answer, 14, false);
            let icmp = ipv4_payload(
                hook,
                &answer,
                14,
                ZOOM_HOST,
                FINANCE_HOST,
                packet::IPPROTO_ICMP,
            );
            assert_eq!((icmp[0], icmp[1]), (3, 3), "{hook:?}: port unreachable");
            assert_eq!(be32(icmp, 4), 0, "{hook:?}: unused word");
            assert_eq!(
                icmp[8..],
                sent[14..14 + 28],
                "{hook:?}: the quoted IP and UDP headers"
            );
            assert_eq!(checksum(&[icmp]), 0, "{hook:?}: ICMP checksum");
        }
    }
}

#[test]
fn ipv6_udp_gets_an_icmpv6_port_unreachable() {
    if !vigie_lab::privilege::privileged("ipv6_udp_gets_an_icmpv6_port_unreachable") {
        return;
    }
    let frame = Frame::udp6(FINANCE_HOST6, 5000, ZOOM_HOST6, 8801).payload(b"media");
    let sent = frame.build();
    for hook in OUTBOUND_HOOKS {
        let (outcome, answer, _) = run_on(&reject_zoom(), hook, &sent);
        assert_eq!(outcome, Outcome::Answer, "{hook:?}");
        assert_eq!(answer.len(), 14 + 40 + 8 + 40 + 8, "{hook:?}");
        let icmp = ipv6_payload(
            hook,
            &answer,
            14,
            ZOOM_HOST6,
            FINANCE_HOST6,
            packet::IPPROTO_ICMPV6,
        );
        assert_eq!((icmp[0], icmp[1]), (1, 4), "{hook:?}: port unreachable");
        assert_eq!(
            icmp[8..],
            sent[14..14 + 48],
            "{hook:?}: the quoted IPv6 and UDP headers"
        );
        let pseudo = pseudo_v6(
            ZOOM_HOST6,
            FINANCE_HOST6,
            packet::IPPROTO_ICMPV6,
            icmp.len(),
        );
        assert_eq!(checksum(&[&pseudo, icmp]), 0, "{hook:?}: ICMPv6 checksum");
    }
}

#[test]
fn tags_and_pppoe_sessions_carry_the_answer_back() {
    if !vigie_lab::privilege::privileged("tags_and_pppoe_sessions_carry_the_answer_back") {
        return;
    }
    // A live TC program sees VLAN tags in the skb's metadata, not in the data: XDP is where
    // tags are in the frame; test_run hands the frame as is to both.
    let cases = [
        (
            Frame::udp4(FINANCE_HOST, 5000, ZOOM_HOST, 8801).vlan(42),
            18,
            false,
        ),
        (
            Frame::udp4(FINANCE_HOST, 5000, ZOOM_HOST, 8801).qinq(7, 42),
            22,
            false,
        ),
        (
            Frame::udp4(FINANCE_HOST, 5000, ZOOM_HOST, 8801).pppoe(),
            22,
            true,
        ),
        (
            Frame::udp4(FINANCE_HOST, 5000, ZOOM_HOST, 8801)
                .vlan(42)
                .pppoe(),
            26,
            true,
        ),
    ];
    for (frame, l3, pppoe) in cases {
        let sent = frame.build();
        for hook in OUTBOUND_HOOKS {
            let (outcome, answer, _) = run_on(&reject_zoom(), hook, &sent);
            assert_eq!(outcome, Outcome::Answer, "{hook:?} l3 {l3}");
            assert_eq!(answer.len(), l3 + 56, "{hook:?} l3 {l3}");
            assert_link_layer(hook, &sent, &answer, l3, pppoe);
            // PPPoE's length is the answer's (its IP packet and the PPP protocol field).
            if pppoe {
                assert_eq!(
                    usize::from(be16(&answer, l3 - 4)),
                    56 + 2,
                    "{hook:?}: PPPoE length"
                );
                assert_eq!(be16(&answer, l3 - 10), ETH_P_PPPOE_SESSION, "{hook:?}");
            } else {
                assert!(
                    [ETH_P_8021Q, ETH_P_8021AD].contains(&be16(&answer, 12)),
                    "{hook:?}: outer tag"
                );
            }
            let icmp = ipv4_payload(
                hook,
                &answer,
                l3,
                ZOOM_HOST,
                FINANCE_HOST,
                packet::IPPROTO_ICMP,
            );
            assert_eq!(checksum(&[icmp]), 0, "{hook:?}: ICMP checksum");
        }
    }
}

#[test]
fn what_cannot_be_answered_is_dropped_and_counted() {
    if !vigie_lab::privilege::privileged("what_cannot_be_answered_is_dropped_and_counted") {
        return;
    }
    let tcp = || Frame::tcp4(FINANCE_HOST, 5000, ZOOM_HOST, 8801);
    let cases = [
        (
            "a reset is never answered",
            tcp().tcp_flags(tcp_flags::RST | tcp_flags::ACK),
        ),
        ("ICMP", Frame::icmp4(FINANCE_HOST, ZOOM_HOST)),
        ("IPv4 options", tcp().ipv4_options(&[1, 1, 1, 1])),
        (
            "IPv6 extension headers",
            Frame::udp6(FINANCE_HOST6, 5000, ZOOM_HOST6, 8801).ext_headers(&[Ext::HopByHop]),
        ),
        (
            "a later fragment",
            Frame::udp4(FINANCE_HOST, 5000, ZOOM_HOST, 8801).fragment(185, false),
        ),
    ];
    for (what, frame) in cases {
        let sent = frame.build();
        for hook in OUTBOUND_HOOKS {
            let (outcome, out, sandbox) = run_on(&reject_zoom(), hook, &sent);
            assert_eq!(outcome, Outcome::Drop, "{hook:?}: {what}");
            assert_eq!(out, sent, "{hook:?}: {what}: the frame was changed");
            // A later fragment is judged before reaching the answer (no ports): not counted.
            let dropped = u64::from(what != "a later fragment");
            assert_eq!(
                stat(&sandbox, stat::REJECTS_DROPPED),
                dropped,
                "{hook:?}: {what}"
            );
            assert_eq!(
                stat(&sandbox, stat::REJECTS_ANSWERED),
                0,
                "{hook:?}: {what}"
            );
        }
    }
}

#[test]
fn replies_and_monitored_flows_are_never_answered() {
    if !vigie_lab::privilege::privileged("replies_and_monitored_flows_are_never_answered") {
        return;
    }
    // The remote side's packet of a rejected flow: dropped, not answered.
    let reply = Frame::udp4(FINANCE_HOST, 5000, ZOOM_HOST, 8801)
        .reversed()
        .build();
    let (outcome, out, _) = run_on(&reject_zoom(), Hook::TcReply, &reply);
    assert_eq!((outcome, out == reply), (Outcome::Drop, true));

    // Monitor mode: the reject is reported, the packet passes untouched.
    let sent = Frame::udp4(FINANCE_HOST, 5000, ZOOM_HOST, 8801).build();
    for hook in OUTBOUND_HOOKS {
        let (outcome, out, sandbox) = run_on(&reject_zoom().monitor_mode(), hook, &sent);
        assert_eq!(outcome, Outcome::Pass, "{hook:?}");
        assert_eq!(out, sent, "{hook:?}");
        assert_eq!(stat(&sandbox, stat::REJECTS_ANSWERED), 0, "{hook:?}");
        assert!(
            counter(&sandbox, 0, ZOOM, FINANCE, action::MONITOR).is_some(),
            "{hook:?}: {:?}",
            counters(&sandbox)
        );
    }
}

#[test]
fn every_packet_of_a_rejected_flow_is_answered() {
    if !vigie_lab::privilege::privileged("every_packet_of_a_rejected_flow_is_answered") {
        return;
    }
    // The flow cache keeps the verdict: retransmitted SYNs get their reset too.
    let sent = with_seq_ack(Frame::tcp4(FINANCE_HOST, 5000, ZOOM_HOST, 8801), SEQ, 0).build();
    for hook in OUTBOUND_HOOKS {
        let mut sandbox = sandbox(&reject_zoom());
        for _ in 0..3 {
            let (outcome, _) = sandbox.run_frame(hook, &sent).unwrap();
            assert_eq!(outcome, Outcome::Answer, "{hook:?}");
        }
        assert_eq!(stat(&sandbox, stat::REJECTS_ANSWERED), 3, "{hook:?}");
        let row = counter(&sandbox, 0, ZOOM, FINANCE, action::REJECT).unwrap();
        assert_eq!((row.packets, row.flows), (3, 1), "{hook:?}");
    }
}
