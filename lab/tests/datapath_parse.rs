//! The kernel program's parser, through `BPF_PROG_TEST_RUN`: every encapsulation it reads,
//! every way a frame can be cut, and frames that mean nothing. Each case runs on both outbound
//! hooks (XDP and TC), each in a fresh sandbox.
//!
//! The policy blocks Zoom: a frame whose addresses the parser found is dropped, and its flow
//! (addresses, ports, protocol) shows what was read. An unparsable frame gets the policy's
//! `unparsed` action and is counted by reason.

#[path = "datapath_support.rs"]
mod support;

use std::net::Ipv4Addr;

use support::*;
use vigie::sandbox::{Hook, Outcome, Sandbox};
use vigie_common::{
    action::{self, evidence, rule as rule_no},
    counters::{parse_failure as reason, stat},
    flow::flags,
};
use vigie_lab::packet::{self, ETH_P_8021AD, ETH_P_8021Q, Ext, Frame, Prng};

const TCP: u8 = packet::IPPROTO_TCP;
const UDP: u8 = packet::IPPROTO_UDP;
const ICMP: u8 = packet::IPPROTO_ICMP;
const ICMPV6: u8 = packet::IPPROTO_ICMPV6;

/// Runs a frame to Zoom on each outbound hook under `block_zoom`: it must be dropped, and the
/// one flow recorded must be `expected`, decided by rule 0 on address evidence.
fn assert_parsed_and_blocked(frame: &[u8], expected: vigie_common::flow::FlowKey) {
    for hook in OUTBOUND_HOOKS {
        let mut sandbox = sandbox(&block_zoom());
        assert_eq!(
            run(&mut sandbox, hook, frame),
            Outcome::Drop,
            "{hook:?}: {frame:02x?}"
        );
        let (key, entry) = only_flow(&sandbox);
        assert_eq!(key, expected, "{hook:?}: flow key");
        assert_eq!(
            (entry.service, entry.evidence),
            (ZOOM, evidence::ADDRESS),
            "{hook:?}: {entry:?}"
        );
        assert_eq!(
            (entry.rule, entry.action, entry.generation),
            (0, action::DROP, 1),
            "{hook:?}: {entry:?}"
        );
        assert_eq!(entry.group, FINANCE, "{hook:?}: source group");
        assert_no_parse_failure(&sandbox);
        let stats = stats(&sandbox);
        assert_eq!(
            (stats[stat::PACKETS as usize], stats[stat::NOT_IP as usize]),
            (1, 0),
            "{hook:?}"
        );
        assert_eq!(stats[stat::FRAGMENTS as usize], 0, "{hook:?}");
    }
}

/// Runs a frame on each outbound hook, first under `unparsed = allow` (it must pass), then
/// under `unparsed = drop` (it must be dropped); both times it is counted once for `why` and
/// remembered as no flow. On a hook where `BPF_PROG_TEST_RUN` refuses the frame before the
/// program runs (see `test_run_refuses`), checks the refusal instead.
fn assert_unparsable(frame: &[u8], why: u32) {
    assert_all_unparsable(&[frame.to_vec()], why);
}

/// `assert_unparsable` for several frames, one sandbox per hook and action for all of them.
fn assert_all_unparsable(frames: &[Vec<u8>], why: u32) {
    let name = reason::NAMES[why as usize];
    for hook in OUTBOUND_HOOKS {
        for (unparsed, outcome) in [
            (action::ALLOW, Outcome::Pass),
            (action::DROP, Outcome::Drop),
        ] {
            // Zoom blocked and default drop: only the unparsed action can let these frames pass.
            let policy = block_zoom().default_action(action::DROP).unparsed(unparsed);
            let mut sandbox = sandbox(&policy);
            let mut seen = 0;
            for frame in frames {
                if test_run_refuses(hook, frame) {
                    assert_refused(&mut sandbox, hook, frame);
                    continue;
                }
                assert_eq!(
                    run(&mut sandbox, hook, frame),
                    outcome,
                    "{hook:?} {name}: {frame:02x?}"
                );
                seen += 1;
                assert_parse_failures(&sandbox, why, seen);
                assert!(
                    sandbox.flows().is_empty(),
                    "{hook:?} {name}: {:?}",
                    sandbox.flows()
                );
                let blocked = if outcome == Outcome::Drop { seen } else { 0 };
                assert_eq!(
                    stat(&sandbox, stat::UNPARSED_BLOCKED),
                    blocked,
                    "{hook:?} {name}"
                );
                assert_eq!(stat(&sandbox, stat::PACKETS), seen, "{hook:?} {name}");
                assert!(
                    sandbox.drain_events().is_empty(),
                    "{hook:?} {name}: an unparsed frame made an event"
                );
            }
        }
    }
}

/// Whether `BPF_PROG_TEST_RUN` refuses the frame (EINVAL) before running the program on `hook`:
/// always below an Ethernet header, and for TC (skb) programs when the frame's ethertype says
/// IPv4 or IPv6 but the fixed IP header is not whole (measured on kernel 6.18).
fn test_run_refuses(hook: Hook, frame: &[u8]) -> bool {
    if frame.len() < packet::ETHERNET_LEN {
        return true;
    }
    let ether_type = u16::from_be_bytes([frame[12], frame[13]]);
    let ip = frame.len() - packet::ETHERNET_LEN;
    hook != Hook::XdpOutbound
        && ((ether_type == packet::ETH_P_IPV4 && ip < packet::IPV4_LEN)
            || (ether_type == packet::ETH_P_IPV6 && ip < packet::IPV6_LEN))
}

/// The kernel refuses the frame, and the program never saw it.
fn assert_refused(sandbox: &mut Sandbox, hook: Hook, frame: &[u8]) {
    let before = stat(sandbox, stat::PACKETS);
    let error = sandbox
        .run(hook, frame)
        .expect_err("BPF_PROG_TEST_RUN accepted the frame");
    assert!(
        format!("{error}").contains("bpf_prog_test_run"),
        "{hook:?}: {error}"
    );
    assert_eq!(
        stat(sandbox, stat::PACKETS),
        before,
        "{hook:?}: the program ran"
    );
}

/// `frame` cut at each of `lengths`: each cut must count once for `why`.
fn assert_each_cut_unparsable(frame: &Frame, lengths: impl IntoIterator<Item = usize>, why: u32) {
    let cuts: Vec<Vec<u8>> = lengths
        .into_iter()
        .map(|len| frame.clone().truncate(len).build())
        .collect();
    assert_all_unparsable(&cuts, why);
}

fn zoom_udp4() -> Frame {
    Frame::udp4(FINANCE_HOST, 5000, ZOOM_HOST, 8801).payload(b"zoom media")
}

fn zoom_tcp6() -> Frame {
    Frame::tcp6(FINANCE_HOST6, 40000, ZOOM_HOST6, 443)
}

fn zoom_udp4_key() -> vigie_common::flow::FlowKey {
    flow_key4(FINANCE_HOST, 5000, ZOOM_HOST, 8801, UDP)
}

#[test]
fn ipv4_udp() {
    if !vigie_lab::privilege::privileged("ipv4_udp") {
        return;
    }
    assert_parsed_and_blocked(&zoom_udp4().build(), zoom_udp4_key());
}

#[test]
fn ipv4_tcp() {
    if !vigie_lab::privilege::privileged("ipv4_tcp") {
        return;
    }
    let frame = Frame::tcp4(FINANCE_HOST, 40000, ZOOM_HOST, 443).build();
    assert_parsed_and_blocked(&frame, flow_key4(FINANCE_HOST, 40000, ZOOM_HOST, 443, TCP));
}

#[test]
fn ipv4_icmp_is_classified_by_address() {
    if !vigie_lab::privilege::privileged("ipv4_icmp_is_classified_by_address") {
        return;
    }
    let frame = Frame::icmp4(FINANCE_HOST, ZOOM_HOST)
        .payload(&[0x5a; 32])
        .build();
    assert_parsed_and_blocked(&frame, flow_key4(FINANCE_HOST, 0, ZOOM_HOST, 0, ICMP));
}

#[test]
fn ipv6_udp() {
    if !vigie_lab::privilege::privileged("ipv6_udp") {
        return;
    }
    let frame = Frame::udp6(FINANCE_HOST6, 5000, ZOOM_HOST6, 8801)
        .payload(b"zoom media")
        .build();
    assert_parsed_and_blocked(
        &frame,
        flow_key6(FINANCE_HOST6, 5000, ZOOM_HOST6, 8801, UDP),
    );
}

#[test]
fn ipv6_tcp() {
    if !vigie_lab::privilege::privileged("ipv6_tcp") {
        return;
    }
    assert_parsed_and_blocked(
        &zoom_tcp6().build(),
        flow_key6(FINANCE_HOST6, 40000, ZOOM_HOST6, 443, TCP),
    );
}

#[test]
fn ipv6_icmpv6_is_classified_by_address() {
    if !vigie_lab::privilege::privileged("ipv6_icmpv6_is_classified_by_address") {
        return;
    }
    let frame = Frame::icmp6(FINANCE_HOST6, ZOOM_HOST6).build();
    assert_parsed_and_blocked(&frame, flow_key6(FINANCE_HOST6, 0, ZOOM_HOST6, 0, ICMPV6));
}

#[test]
fn single_vlan_tag() {
    if !vigie_lab::privilege::privileged("single_vlan_tag") {
        return;
    }
    assert_parsed_and_blocked(&zoom_udp4().vlan(100).build(), zoom_udp4_key());
    let frame = zoom_tcp6().vlan(4094).build();
    assert_parsed_and_blocked(
        &frame,
        flow_key6(FINANCE_HOST6, 40000, ZOOM_HOST6, 443, TCP),
    );
}

#[test]
fn qinq_two_vlan_tags() {
    if !vigie_lab::privilege::privileged("qinq_two_vlan_tags") {
        return;
    }
    assert_parsed_and_blocked(&zoom_udp4().qinq(200, 100).build(), zoom_udp4_key());
    // Two 802.1Q tags (no 802.1ad outer tag), as some switches send.
    assert_parsed_and_blocked(&zoom_udp4().vlan(200).vlan(100).build(), zoom_udp4_key());
}

#[test]
fn three_vlan_tags_are_too_many() {
    if !vigie_lab::privilege::privileged("three_vlan_tags_are_too_many") {
        return;
    }
    let frame = zoom_udp4().qinq(300, 200).vlan(100).build();
    assert_unparsable(&frame, reason::TOO_MANY_VLAN_TAGS);
    let frame = zoom_udp4()
        .tag(ETH_P_8021AD, 1)
        .tag(ETH_P_8021AD, 2)
        .tag(ETH_P_8021Q, 3)
        .build();
    assert_unparsable(&frame, reason::TOO_MANY_VLAN_TAGS);
}

#[test]
fn pppoe_session_ipv4() {
    if !vigie_lab::privilege::privileged("pppoe_session_ipv4") {
        return;
    }
    assert_parsed_and_blocked(&zoom_udp4().pppoe().build(), zoom_udp4_key());
    // PPPoE inside a VLAN, as on many access networks.
    assert_parsed_and_blocked(
        &zoom_udp4().vlan(35).pppoe_session(0x1234).build(),
        zoom_udp4_key(),
    );
}

#[test]
fn pppoe_session_ipv6() {
    if !vigie_lab::privilege::privileged("pppoe_session_ipv6") {
        return;
    }
    let key = flow_key6(FINANCE_HOST6, 40000, ZOOM_HOST6, 443, TCP);
    assert_parsed_and_blocked(&zoom_tcp6().pppoe().build(), key);
    assert_parsed_and_blocked(&zoom_tcp6().qinq(10, 20).pppoe().build(), key);
}

#[test]
fn ipv4_with_options() {
    if !vigie_lab::privilege::privileged("ipv4_with_options") {
        return;
    }
    // IHL 15: 40 bytes of options (NOPs), the most IPv4 allows; the ports come after them.
    let frame = zoom_udp4().ipv4_options(&[1; 40]).build();
    assert_eq!(frame[14], 0x4f);
    assert_parsed_and_blocked(&frame, zoom_udp4_key());
    // IHL 6: a router-alert option.
    let frame = Frame::tcp4(FINANCE_HOST, 40000, ZOOM_HOST, 443)
        .ipv4_options(&[0x94, 4, 0, 0])
        .build();
    assert_parsed_and_blocked(&frame, flow_key4(FINANCE_HOST, 40000, ZOOM_HOST, 443, TCP));
}

#[test]
fn ipv4_first_fragment_reads_ports() {
    if !vigie_lab::privilege::privileged("ipv4_first_fragment_reads_ports") {
        return;
    }
    let frame = zoom_udp4().fragment(0, true).payload(&[0; 64]).build();
    assert_parsed_and_blocked(&frame, zoom_udp4_key());
}

/// A policy that blocks Zoom only on UDP port 8801, and watches the rest of Zoom: a fragment
/// without ports cannot match the port rule.
fn zoom_port_policy() -> PolicySpec {
    PolicySpec::new()
        .rule(
            "block-zoom-media",
            rule(action::DROP)
                .services(&[ZOOM])
                .proto(UDP)
                .ports(8801, 8810),
        )
        .rule("watch-zoom", rule(action::MONITOR).services(&[ZOOM]))
}

#[test]
fn ipv4_later_fragment_is_classified_by_address_only() {
    if !vigie_lab::privilege::privileged("ipv4_later_fragment_is_classified_by_address_only") {
        return;
    }
    // Offset 185 (1480 bytes): no UDP header, the payload's first bytes are not ports.
    let frame = zoom_udp4()
        .fragment(185, false)
        .payload(&[0x22, 0x61, 0x22, 0x61, 0, 0, 0, 0])
        .build();
    for hook in OUTBOUND_HOOKS {
        let mut sandbox = sandbox(&block_zoom());
        assert_eq!(
            run(&mut sandbox, hook, &frame),
            Outcome::Drop,
            "{hook:?}: the address rule blocks"
        );
        let (key, entry) = only_flow(&sandbox);
        assert_eq!(
            key,
            flow_key4(FINANCE_HOST, 0, ZOOM_HOST, 0, UDP),
            "{hook:?}: ports unknown"
        );
        assert_eq!(
            (entry.service, entry.rule, entry.action),
            (ZOOM, 0, action::DROP),
            "{hook:?}"
        );
        assert_ne!(entry.flags & flags::FRAGMENT, 0, "{hook:?}: {entry:?}");
        assert_eq!(stat(&sandbox, stat::FRAGMENTS), 1, "{hook:?}");
        assert_no_parse_failure(&sandbox);

        // A rule on ports does not match a fragment: the next rule decides.
        let mut sandbox = support::sandbox(&zoom_port_policy());
        assert_eq!(run(&mut sandbox, hook, &frame), Outcome::Pass, "{hook:?}");
        let (_, entry) = only_flow(&sandbox);
        assert_eq!(
            (entry.rule, entry.action),
            (1, action::MONITOR),
            "{hook:?}: {entry:?}"
        );
        // Whereas the first fragment, with its ports, matches the port rule.
        let first = zoom_udp4().fragment(0, true).payload(&[0; 64]).build();
        assert_eq!(run(&mut sandbox, hook, &first), Outcome::Drop, "{hook:?}");
        assert_eq!(flow_entry(&sandbox, &zoom_udp4_key()).rule, 0, "{hook:?}");
        assert_eq!(
            stat(&sandbox, stat::FRAGMENTS),
            1,
            "{hook:?}: a first fragment is not counted"
        );
    }
}

#[test]
fn ipv4_later_fragment_to_an_allowed_address_passes() {
    if !vigie_lab::privilege::privileged("ipv4_later_fragment_to_an_allowed_address_passes") {
        return;
    }
    let frame = Frame::udp4(FINANCE_HOST, 5000, VISIO_HOST, 443)
        .fragment(100, true)
        .payload(&[1; 40])
        .build();
    for hook in OUTBOUND_HOOKS {
        let mut sandbox = sandbox(&block_zoom());
        assert_eq!(run(&mut sandbox, hook, &frame), Outcome::Pass, "{hook:?}");
        let (key, entry) = only_flow(&sandbox);
        assert_eq!(
            key,
            flow_key4(FINANCE_HOST, 0, VISIO_HOST, 0, UDP),
            "{hook:?}"
        );
        assert_eq!(
            (entry.service, entry.rule),
            (VISIO, rule_no::DEFAULT),
            "{hook:?}"
        );
        assert_eq!(stat(&sandbox, stat::FRAGMENTS), 1, "{hook:?}");
    }
}

#[test]
fn ipv6_hop_by_hop_routing_and_destination_options() {
    if !vigie_lab::privilege::privileged("ipv6_hop_by_hop_routing_and_destination_options") {
        return;
    }
    let key = flow_key6(FINANCE_HOST6, 40000, ZOOM_HOST6, 443, TCP);
    let frame = zoom_tcp6()
        .ext_headers(&[Ext::HopByHop, Ext::DestOpts, Ext::Routing])
        .build();
    assert_parsed_and_blocked(&frame, key);
    // Headers longer than 8 bytes must be skipped by their length field.
    let frame = zoom_tcp6()
        .ext_headers(&[Ext::HopByHop, Ext::Routing, Ext::DestOptsLong(5)])
        .build();
    assert_parsed_and_blocked(&frame, key);
    // The authentication header counts its length in 4-byte units.
    let frame = zoom_tcp6()
        .ext_headers(&[Ext::HopByHop, Ext::Auth, Ext::DestOpts])
        .build();
    assert_parsed_and_blocked(&frame, key);
}

#[test]
fn ipv6_six_extension_headers_are_walked() {
    if !vigie_lab::privilege::privileged("ipv6_six_extension_headers_are_walked") {
        return;
    }
    let six = [
        Ext::HopByHop,
        Ext::DestOpts,
        Ext::Routing,
        Ext::Fragment {
            offset: 0,
            more: true,
        },
        Ext::Auth,
        Ext::DestOpts,
    ];
    let frame = Frame::udp6(FINANCE_HOST6, 5000, ZOOM_HOST6, 8801)
        .ext_headers(&six)
        .build();
    assert_parsed_and_blocked(
        &frame,
        flow_key6(FINANCE_HOST6, 5000, ZOOM_HOST6, 8801, UDP),
    );
}

#[test]
fn ipv6_seven_extension_headers_are_too_many() {
    if !vigie_lab::privilege::privileged("ipv6_seven_extension_headers_are_too_many") {
        return;
    }
    let seven = [
        Ext::HopByHop,
        Ext::DestOpts,
        Ext::Routing,
        Ext::DestOpts,
        Ext::DestOpts,
        Ext::DestOpts,
        Ext::DestOpts,
    ];
    let frame = zoom_tcp6().ext_headers(&seven).build();
    assert_unparsable(&frame, reason::TOO_MANY_IPV6_EXT_HEADERS);
}

#[test]
fn ipv6_first_fragment_reads_ports() {
    if !vigie_lab::privilege::privileged("ipv6_first_fragment_reads_ports") {
        return;
    }
    let frame = Frame::udp6(FINANCE_HOST6, 5000, ZOOM_HOST6, 8801)
        .ext_headers(&[Ext::Fragment {
            offset: 0,
            more: true,
        }])
        .payload(&[0; 64])
        .build();
    assert_parsed_and_blocked(
        &frame,
        flow_key6(FINANCE_HOST6, 5000, ZOOM_HOST6, 8801, UDP),
    );
}

#[test]
fn ipv6_later_fragment_is_classified_by_address_only() {
    if !vigie_lab::privilege::privileged("ipv6_later_fragment_is_classified_by_address_only") {
        return;
    }
    let frame = Frame::udp6(FINANCE_HOST6, 5000, ZOOM_HOST6, 8801)
        .ext_headers(&[
            Ext::HopByHop,
            Ext::Fragment {
                offset: 181,
                more: false,
            },
        ])
        .payload(&[0x22, 0x61, 0x22, 0x61, 0, 0, 0, 0])
        .build();
    for hook in OUTBOUND_HOOKS {
        let mut sandbox = sandbox(&block_zoom());
        assert_eq!(run(&mut sandbox, hook, &frame), Outcome::Drop, "{hook:?}");
        let (key, entry) = only_flow(&sandbox);
        assert_eq!(
            key,
            flow_key6(FINANCE_HOST6, 0, ZOOM_HOST6, 0, UDP),
            "{hook:?}"
        );
        assert_eq!((entry.service, entry.rule), (ZOOM, 0), "{hook:?}");
        assert_ne!(entry.flags & flags::FRAGMENT, 0, "{hook:?}: {entry:?}");
        assert_eq!(stat(&sandbox, stat::FRAGMENTS), 1, "{hook:?}");
        assert_no_parse_failure(&sandbox);

        let mut sandbox = support::sandbox(&zoom_port_policy());
        assert_eq!(run(&mut sandbox, hook, &frame), Outcome::Pass, "{hook:?}");
        assert_eq!(
            only_flow(&sandbox).1.rule,
            1,
            "{hook:?}: the port rule cannot match"
        );
    }
}

/// IPv6 Destination Options.
const IPPROTO_DSTOPTS: u8 = 60;

#[test]
fn ipv6_later_fragment_data_is_not_walked_as_headers() {
    if !vigie_lab::privilege::privileged("ipv6_later_fragment_data_is_not_walked_as_headers") {
        return;
    }
    // A later fragment whose header says a Destination Options header follows (it did, at the
    // start of the packet): its data, `11 ff ...`, would read as a 2,048-byte one.
    let fragment_header = 14 + 40;
    let frame = Frame::udp6(FINANCE_HOST6, 5000, ZOOM_HOST6, 8801)
        .ext_headers(&[Ext::Fragment {
            offset: 181,
            more: false,
        }])
        .payload(&[0; 100])
        .patch(fragment_header, &[IPPROTO_DSTOPTS])
        .patch(fragment_header + 8, &[0x11, 0xff])
        .build();
    for hook in OUTBOUND_HOOKS {
        let mut sandbox = sandbox(&block_zoom());
        assert_eq!(run(&mut sandbox, hook, &frame), Outcome::Drop, "{hook:?}");
        assert_no_parse_failure(&sandbox);
        let (key, entry) = only_flow(&sandbox);
        assert_eq!(
            key,
            flow_key6(FINANCE_HOST6, 0, ZOOM_HOST6, 0, IPPROTO_DSTOPTS),
            "{hook:?}"
        );
        assert_eq!((entry.service, entry.rule), (ZOOM, 0), "{hook:?}");
        assert_ne!(entry.flags & flags::FRAGMENT, 0, "{hook:?}: {entry:?}");
    }
}

#[test]
fn tcp_data_offset_below_five_words_is_unparsable() {
    if !vigie_lab::privilege::privileged("tcp_data_offset_below_five_words_is_unparsable") {
        return;
    }
    // The data offset is the high nibble of the TCP header's 13th byte.
    let offset4 = 14 + 20 + 12;
    let offset6 = 14 + 40 + 12;
    let frames: Vec<Vec<u8>> = [0x00, 0x10, 0x40]
        .into_iter()
        .flat_map(|byte| {
            [
                Frame::tcp4(FINANCE_HOST, 40000, ZOOM_HOST, 443)
                    .payload(b"hello")
                    .patch(offset4, &[byte])
                    .build(),
                zoom_tcp6()
                    .payload(b"hello")
                    .patch(offset6, &[byte])
                    .build(),
            ]
        })
        .collect();
    assert_all_unparsable(&frames, reason::BAD_TCP_HEADER);
}

#[test]
fn non_ip_frames_always_pass() {
    if !vigie_lab::privilege::privileged("non_ip_frames_always_pass") {
        return;
    }
    let arp = Frame::arp(FINANCE_HOST, Ipv4Addr::new(10, 1, 0, 1));
    // A PPP control frame (LCP, 0xc021) in a PPPoE session.
    let lcp = zoom_udp4().pppoe().patch(20, &[0xc0, 0x21]).build();
    let frames = [
        arp.build(),
        arp.clone().vlan(10).build(),
        arp.qinq(1, 2).build(),
        lcp,
    ];
    for hook in [Hook::XdpOutbound, Hook::TcOutbound, Hook::TcReply] {
        // Everything blocked, even what cannot be parsed: ARP still passes.
        let policy = PolicySpec::new()
            .default_action(action::DROP)
            .unparsed(action::DROP);
        let mut sandbox = sandbox(&policy);
        for frame in &frames {
            assert_eq!(
                run(&mut sandbox, hook, frame),
                Outcome::Pass,
                "{hook:?}: {frame:02x?}"
            );
        }
        let n = frames.len() as u64;
        assert_eq!(
            (stat(&sandbox, stat::NOT_IP), stat(&sandbox, stat::PACKETS)),
            (n, n),
            "{hook:?}"
        );
        assert!(sandbox.flows().is_empty(), "{hook:?}");
        assert!(counters(&sandbox).is_empty(), "{hook:?}");
        assert_no_parse_failure(&sandbox);
    }
}

#[test]
fn truncated_ethernet_frames_never_reach_the_program() {
    if !vigie_lab::privilege::privileged("truncated_ethernet_frames_never_reach_the_program") {
        return;
    }
    // BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header (EINVAL) before the
    // program runs, so `truncated_ethernet` cannot be produced here; check that the refusal is
    // the kernel's and that nothing was counted.
    for hook in [Hook::XdpOutbound, Hook::TcOutbound, Hook::TcReply] {
        let mut sandbox = sandbox(&block_zoom());
        for len in 0..packet::ETHERNET_LEN {
            assert_refused(&mut sandbox, hook, &zoom_udp4().truncate(len).build());
        }
        assert_eq!(stat(&sandbox, stat::PACKETS), 0, "{hook:?}");
        assert_no_parse_failure(&sandbox);
    }
}

#[test]
fn truncated_vlan_tag() {
    if !vigie_lab::privilege::privileged("truncated_vlan_tag") {
        return;
    }
    // Cut inside the first tag, then inside the second tag of a QinQ frame.
    assert_each_cut_unparsable(&zoom_udp4().vlan(100), [15, 16, 17], reason::TRUNCATED_VLAN);
    assert_each_cut_unparsable(
        &zoom_udp4().qinq(200, 100),
        [18, 19, 21],
        reason::TRUNCATED_VLAN,
    );
}

#[test]
fn truncated_pppoe_header() {
    if !vigie_lab::privilege::privileged("truncated_pppoe_header") {
        return;
    }
    // The PPPoE header and PPP protocol field take bytes 14..22.
    assert_each_cut_unparsable(&zoom_udp4().pppoe(), [14, 17, 21], reason::TRUNCATED_PPPOE);
    assert_each_cut_unparsable(
        &zoom_udp4().vlan(7).pppoe(),
        [18, 25],
        reason::TRUNCATED_PPPOE,
    );
}

#[test]
fn truncated_ipv4_header() {
    if !vigie_lab::privilege::privileged("truncated_ipv4_header") {
        return;
    }
    // Untagged, the TC hook cannot be given these (see `test_run_refuses`); tagged, it can.
    assert_each_cut_unparsable(&zoom_udp4(), [14, 15, 33], reason::TRUNCATED_IPV4);
    assert_each_cut_unparsable(&zoom_udp4().qinq(1, 2), [22, 41], reason::TRUNCATED_IPV4);
    assert_each_cut_unparsable(&zoom_udp4().pppoe(), [22, 30], reason::TRUNCATED_IPV4);
    // The fixed header is whole but the options are not (IHL 15 asks for 60 bytes).
    let with_options = zoom_udp4().ipv4_options(&[1; 40]);
    assert_each_cut_unparsable(&with_options, [34, 50, 73], reason::TRUNCATED_IPV4);
}

#[test]
fn bad_ipv4_header() {
    if !vigie_lab::privilege::privileged("bad_ipv4_header") {
        return;
    }
    // IHL below 5.
    assert_unparsable(
        &zoom_udp4().patch(14, &[0x44]).build(),
        reason::BAD_IPV4_HEADER,
    );
    // Version 6 under the IPv4 ethertype.
    assert_unparsable(
        &zoom_udp4().patch(14, &[0x65]).build(),
        reason::BAD_IPV4_HEADER,
    );
}

#[test]
fn truncated_ipv6_header() {
    if !vigie_lab::privilege::privileged("truncated_ipv6_header") {
        return;
    }
    assert_each_cut_unparsable(&zoom_tcp6(), [14, 30, 53], reason::TRUNCATED_IPV6);
    assert_each_cut_unparsable(&zoom_tcp6().vlan(3), [18, 57], reason::TRUNCATED_IPV6);
    assert_each_cut_unparsable(&zoom_tcp6().pppoe(), [22, 61], reason::TRUNCATED_IPV6);
}

#[test]
fn truncated_ipv6_extension_header() {
    if !vigie_lab::privilege::privileged("truncated_ipv6_extension_header") {
        return;
    }
    let frame = zoom_tcp6().ext_headers(&[
        Ext::HopByHop,
        Ext::Routing,
        Ext::Fragment {
            offset: 0,
            more: true,
        },
    ]);
    let o = frame.offsets();
    let [hop, routing, fragment] = o.extensions[..] else {
        panic!("{o:?}")
    };
    // Inside the first header's first bytes, inside its options, inside the routing header's
    // address (its length field says 24 bytes), inside the fragment header.
    let cuts = [
        hop + 1,
        hop + 5,
        routing + 2,
        routing + 20,
        fragment,
        fragment + 7,
    ];
    assert_each_cut_unparsable(&frame, cuts, reason::TRUNCATED_IPV6_EXT_HEADER);
}

#[test]
fn truncated_tcp_header() {
    if !vigie_lab::privilege::privileged("truncated_tcp_header") {
        return;
    }
    let v4 = Frame::tcp4(FINANCE_HOST, 40000, ZOOM_HOST, 443);
    let at = v4.offsets().transport;
    // No port, half a port, both ports but not the rest of the 20-byte header.
    assert_each_cut_unparsable(
        &v4,
        [at, at + 1, at + 4, at + 19],
        reason::TRUNCATED_TRANSPORT,
    );
    let v6 = zoom_tcp6().ext_headers(&[Ext::DestOpts]);
    let at = v6.offsets().transport;
    assert_each_cut_unparsable(&v6, [at + 2, at + 12], reason::TRUNCATED_TRANSPORT);
}

#[test]
fn truncated_udp_header() {
    if !vigie_lab::privilege::privileged("truncated_udp_header") {
        return;
    }
    let v4 = zoom_udp4().vlan(5);
    let at = v4.offsets().transport;
    assert_each_cut_unparsable(&v4, [at, at + 3, at + 7], reason::TRUNCATED_TRANSPORT);
    let v6 = Frame::udp6(FINANCE_HOST6, 5000, ZOOM_HOST6, 8801);
    let at = v6.offsets().transport;
    assert_each_cut_unparsable(&v6, [at + 1, at + 6], reason::TRUNCATED_TRANSPORT);
}

#[test]
fn random_garbage_never_crashes_and_passes() {
    if !vigie_lab::privilege::privileged("random_garbage_never_crashes_and_passes") {
        return;
    }
    // Random bytes, and random bytes behind each ethertype the parser follows (with the IP
    // version nibble right half of the time), so that every parser sees junk.
    let ether_types = [0x0800_u16, 0x86dd, ETH_P_8021Q, ETH_P_8021AD, 0x8864];
    for hook in [Hook::XdpOutbound, Hook::TcOutbound, Hook::TcReply] {
        let mut rng = Prng::new(0x5eed_0001);
        let policy = PolicySpec::new().rule("watch-zoom", rule(action::MONITOR).services(&[ZOOM]));
        let mut sandbox = sandbox(&policy);
        let mut ran = 0u64;
        for i in 0..400 {
            let len = rng.below(200) as usize;
            let mut frame = packet::garbage(&mut rng, len);
            if i % 2 == 1 && len >= 16 {
                let ether_type = ether_types[rng.below(ether_types.len() as u64) as usize];
                frame[12..14].copy_from_slice(&ether_type.to_be_bytes());
                if rng.below(2) == 0 {
                    frame[14] = if ether_type == 0x86dd { 0x60 } else { 0x45 };
                }
            }
            match sandbox.run(hook, &frame) {
                Ok(outcome) => {
                    assert_eq!(outcome, Outcome::Pass, "{hook:?} frame {i}: {frame:02x?}");
                    ran += 1;
                }
                Err(e) => assert!(
                    test_run_refuses(hook, &frame),
                    "{hook:?} frame {i} ({len} bytes): {e}"
                ),
            }
        }
        // Every frame the program saw is accounted for: not IP, unparsable, or counted.
        let stats = stats(&sandbox);
        let failed: u64 = parse_failures(&sandbox).iter().sum();
        let counted: u64 = counters(&sandbox).iter().map(|(_, v)| v.packets).sum();
        assert_eq!(stats[stat::PACKETS as usize], ran, "{hook:?}");
        assert_eq!(
            stats[stat::NOT_IP as usize] + failed + counted,
            ran,
            "{hook:?}: {stats:?}"
        );
        assert_eq!(stats[stat::UNPARSED_BLOCKED as usize], 0, "{hook:?}");
        assert!(ran > 300, "{hook:?}: only {ran} frames ran");
        assert!(failed > 0, "{hook:?}: no garbage frame was unparsable");
    }
}
