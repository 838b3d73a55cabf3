//! ICMP and ICMPv6 errors through `BPF_PROG_TEST_RUN`: an error gets the verdict of the flow it
//! quotes (path MTU discovery keeps working under a policy that blocks by default), an error
//! about a blocked flow is dropped, and one quoting a flow nobody opened is judged by its own
//! addresses.

#[path = "datapath_support.rs"]
mod support;

use std::net::{Ipv4Addr, Ipv6Addr};

use support::*;
use vigie::sandbox::{Hook, Outcome, Sandbox};
use vigie_common::action;
use vigie_lab::packet::{self, Frame};

const UDP: u8 = packet::IPPROTO_UDP;
/// A router on the way, which no rule names.
const ROUTER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const ROUTER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xeeee, 0, 0, 0, 0, 1);

/// Blocks by default; Visio is allowed.
fn allow_only_visio() -> PolicySpec {
    PolicySpec::new()
        .default_action(action::DROP)
        .rule("allow-visio", rule(action::ALLOW).services(&[VISIO]))
}

/// The IP packet (header and all) of `frame`, as an error quotes it.
fn quoted(frame: &Frame) -> Vec<u8> {
    let (bytes, offsets) = frame.build_with_offsets();
    bytes[offsets.network..].to_vec()
}

/// An ICMP error of `kind`/`code` from `from` to `to`, quoting `about`.
fn error4(from: Ipv4Addr, to: Ipv4Addr, (kind, code): (u8, u8), about: &Frame) -> Vec<u8> {
    let error = Frame::icmp4(from, to).payload(&quoted(about));
    let at = error.offsets().transport;
    error.patch(at, &[kind, code]).build()
}

fn error6(from: Ipv6Addr, to: Ipv6Addr, (kind, code): (u8, u8), about: &Frame) -> Vec<u8> {
    let error = Frame::icmp6(from, to).payload(&quoted(about));
    let at = error.offsets().transport;
    error.patch(at, &[kind, code]).build()
}

/// Fragmentation needed (ICMP 3/4) and packet too big (ICMPv6 2/0).
const FRAG_NEEDED: (u8, u8) = (3, 4);
const TOO_BIG: (u8, u8) = (2, 0);

/// How many flows the table holds of `proto`.
fn flows_of(sandbox: &Sandbox, proto: u8) -> usize {
    sandbox
        .flows()
        .iter()
        .filter(|(k, _)| k.proto == proto)
        .count()
}

#[test]
fn an_error_about_an_allowed_flow_passes_under_a_default_block() {
    if !vigie_lab::privilege::privileged(
        "an_error_about_an_allowed_flow_passes_under_a_default_block",
    ) {
        return;
    }
    let to_visio = Frame::udp4(FINANCE_HOST, 5000, VISIO_HOST, 443).payload(&[0; 1200]);
    let to_visio6 = Frame::udp6(FINANCE_HOST6, 5000, VISIO_HOST6, 443).payload(&[0; 1200]);
    for hook in OUTBOUND_HOOKS {
        let mut sandbox = sandbox(&allow_only_visio());
        assert_eq!(run(&mut sandbox, hook, &to_visio.build()), Outcome::Pass);
        assert_eq!(run(&mut sandbox, hook, &to_visio6.build()), Outcome::Pass);
        // The router's own address would be blocked by default: the error is the flow's.
        let too_big = error4(ROUTER, FINANCE_HOST, FRAG_NEEDED, &to_visio);
        assert_eq!(
            run(&mut sandbox, Hook::TcReply, &too_big),
            Outcome::Pass,
            "{hook:?}: fragmentation needed"
        );
        let too_big6 = error6(ROUTER6, FINANCE_HOST6, TOO_BIG, &to_visio6);
        assert_eq!(
            run(&mut sandbox, Hook::TcReply, &too_big6),
            Outcome::Pass,
            "{hook:?}: packet too big"
        );
        // Counted under the flow it is about: no flow of its own.
        assert_eq!(flows_of(&sandbox, packet::IPPROTO_ICMP), 0, "{hook:?}");
        assert_eq!(flows_of(&sandbox, packet::IPPROTO_ICMPV6), 0, "{hook:?}");
        assert_eq!(sandbox.flows().len(), 2, "{hook:?}");

        // An echo request from the router is no error: judged by its addresses, blocked.
        let ping = Frame::icmp4(ROUTER, FINANCE_HOST)
            .payload(&quoted(&to_visio))
            .build();
        assert_eq!(
            run(&mut sandbox, Hook::TcReply, &ping),
            Outcome::Drop,
            "{hook:?}"
        );
    }
}

#[test]
fn an_error_about_a_blocked_or_unknown_flow_is_not_let_through() {
    if !vigie_lab::privilege::privileged(
        "an_error_about_a_blocked_or_unknown_flow_is_not_let_through",
    ) {
        return;
    }
    for hook in OUTBOUND_HOOKS {
        // Default allow, Zoom blocked: an error about the blocked flow is dropped, although
        // its router's address is allowed.
        let to_zoom = Frame::udp4(FINANCE_HOST, 5000, ZOOM_HOST, 8801).payload(&[0; 100]);
        let mut sandbox = sandbox(&block_zoom());
        assert_eq!(run(&mut sandbox, hook, &to_zoom.build()), Outcome::Drop);
        let unreachable = error4(ROUTER, FINANCE_HOST, (3, 1), &to_zoom);
        assert_eq!(
            run(&mut sandbox, Hook::TcReply, &unreachable),
            Outcome::Drop,
            "{hook:?}"
        );

        // A flow nobody opened: the error is judged by its own addresses (blocked by default),
        // and makes a flow of its own.
        let mut sandbox = support::sandbox(&allow_only_visio());
        let never_sent = Frame::udp4(FINANCE_HOST, 6000, VISIO_HOST, 443).payload(&[0; 100]);
        let forged = error4(ROUTER, FINANCE_HOST, FRAG_NEEDED, &never_sent);
        assert_eq!(
            run(&mut sandbox, Hook::TcReply, &forged),
            Outcome::Drop,
            "{hook:?}"
        );
        assert_eq!(flows_of(&sandbox, packet::IPPROTO_ICMP), 1, "{hook:?}");
    }
}

#[test]
fn an_error_the_internal_host_sends_is_about_the_flow_it_received() {
    if !vigie_lab::privilege::privileged(
        "an_error_the_internal_host_sends_is_about_the_flow_it_received",
    ) {
        return;
    }
    // Visio's server opened a flow towards the host (allowed); the host answers with a port
    // unreachable that quotes it: the remote side is the quoted packet's source.
    let from_visio = Frame::udp4(VISIO_HOST, 443, FINANCE_HOST, 7000).payload(&[0; 100]);
    for hook in OUTBOUND_HOOKS {
        let mut sandbox = sandbox(&allow_only_visio());
        assert_eq!(
            run(&mut sandbox, Hook::TcReply, &from_visio.build()),
            Outcome::Pass
        );
        let _ = flow_entry(
            &sandbox,
            &flow_key4(FINANCE_HOST, 7000, VISIO_HOST, 443, UDP),
        );
        let unreachable = error4(FINANCE_HOST, VISIO_HOST, (3, 3), &from_visio);
        assert_eq!(
            run(&mut sandbox, hook, &unreachable),
            Outcome::Pass,
            "{hook:?}"
        );
        assert_eq!(flows_of(&sandbox, packet::IPPROTO_ICMP), 0, "{hook:?}");
    }
}

#[test]
fn a_truncated_or_odd_quote_is_judged_by_its_own_addresses() {
    if !vigie_lab::privilege::privileged("a_truncated_or_odd_quote_is_judged_by_its_own_addresses")
    {
        return;
    }
    let to_visio = Frame::udp4(FINANCE_HOST, 5000, VISIO_HOST, 443).payload(&[0; 100]);
    let whole = quoted(&to_visio);
    for hook in OUTBOUND_HOOKS {
        let mut sandbox = sandbox(&allow_only_visio());
        assert_eq!(run(&mut sandbox, hook, &to_visio.build()), Outcome::Pass);
        // The IP header without the ports; a version that is neither 4 nor 6; a header
        // length below 20 bytes.
        let mut odd_version = whole.clone();
        odd_version[0] = 0x55;
        let mut short_header = whole.clone();
        short_header[0] = 0x44;
        for quote in [&whole[..22], &odd_version[..], &short_header[..]] {
            let error = Frame::icmp4(ROUTER, FINANCE_HOST).payload(quote);
            let at = error.offsets().transport;
            let error = error.patch(at, &[3, 4]).build();
            assert_eq!(
                run(&mut sandbox, Hook::TcReply, &error),
                Outcome::Drop,
                "{hook:?}: {:02x?}",
                &quote[..4]
            );
        }
    }
}

#[test]
fn an_error_aimed_elsewhere_than_the_quoted_sender_is_judged_by_its_own_addresses() {
    if !vigie_lab::privilege::privileged(
        "an_error_aimed_elsewhere_than_the_quoted_sender_is_judged_by_its_own_addresses",
    ) {
        return;
    }
    // An allowed flow to Visio; then the host "answers" a packet Visio never sent, to a third
    // address the policy blocks: an error goes to the quoted packet's sender, so this one is
    // no error but data on the allowed flow's name. Judged by its own addresses: blocked.
    let to_visio = Frame::udp4(FINANCE_HOST, 5000, VISIO_HOST, 443).payload(&[0; 100]);
    let from_visio = Frame::udp4(VISIO_HOST, 443, FINANCE_HOST, 5000).payload(&[0; 100]);
    for hook in OUTBOUND_HOOKS {
        let mut sandbox = sandbox(&allow_only_visio());
        assert_eq!(run(&mut sandbox, hook, &to_visio.build()), Outcome::Pass);
        let smuggled = error4(FINANCE_HOST, UNKNOWN_HOST, (3, 3), &from_visio);
        assert_eq!(
            run(&mut sandbox, hook, &smuggled),
            Outcome::Drop,
            "{hook:?}: to a third address"
        );
        // The same from outside: an "error" to the host quoting a packet of another host.
        let elsewhere = Frame::udp4(RESEARCH_HOST, 5000, VISIO_HOST, 443).payload(&[0; 100]);
        let _ = run(&mut sandbox, hook, &elsewhere.build());
        let misdirected = error4(ROUTER, FINANCE_HOST, FRAG_NEEDED, &elsewhere);
        assert_eq!(
            run(&mut sandbox, Hook::TcReply, &misdirected),
            Outcome::Drop,
            "{hook:?}: quoting another host's packet"
        );
        // An ICMP message quoting IPv6, or ICMPv6 quoting IPv4: not read.
        let to_visio6 = Frame::udp6(FINANCE_HOST6, 5000, VISIO_HOST6, 443).payload(&[0; 100]);
        let crossed = Frame::icmp4(ROUTER, FINANCE_HOST).payload(&quoted(&to_visio6));
        let at = crossed.offsets().transport;
        let crossed = crossed.patch(at, &[3, 4]).build();
        assert_eq!(
            run(&mut sandbox, Hook::TcReply, &crossed),
            Outcome::Drop,
            "{hook:?}: ICMP quoting IPv6"
        );
    }
}

#[test]
fn an_error_about_a_flow_not_decided_since_a_swap_gets_the_verdict_of_the_policy_in_force() {
    if !vigie_lab::privilege::privileged(
        "an_error_about_a_flow_not_decided_since_a_swap_gets_the_verdict_of_the_policy_in_force",
    ) {
        return;
    }
    // The flow's entry holds the previous policy's verdict until its next packet: the error
    // gets what the policy in force gives the flow, neither that stale verdict nor its own
    // addresses'.
    let to_visio = Frame::udp4(FINANCE_HOST, 5000, VISIO_HOST, 443).payload(&[0; 100]);
    let too_big = error4(ROUTER, FINANCE_HOST, FRAG_NEEDED, &to_visio);
    // Allows by default (the router too), blocks Visio.
    let block_visio = PolicySpec::new().rule("block-visio", rule(action::DROP).services(&[VISIO]));
    for hook in OUTBOUND_HOOKS {
        // The same policy again: the flow is still allowed, the router still blocked.
        let mut sandbox = sandbox(&allow_only_visio());
        assert_eq!(run(&mut sandbox, hook, &to_visio.build()), Outcome::Pass);
        sandbox
            .apply(&allow_only_visio().compile())
            .unwrap_or_else(|e| panic!("applying: {e}"));
        assert_eq!(
            run(&mut sandbox, Hook::TcReply, &too_big),
            Outcome::Pass,
            "{hook:?}: the flow is allowed under the new policy too"
        );

        // A policy that blocks the flow and allows the router: the error is dropped.
        let mut sandbox = support::sandbox(&allow_only_visio());
        assert_eq!(run(&mut sandbox, hook, &to_visio.build()), Outcome::Pass);
        let before = sandbox.flows();
        sandbox.drain_events();
        sandbox
            .apply(&block_visio.compile())
            .unwrap_or_else(|e| panic!("applying: {e}"));
        assert_eq!(
            run(&mut sandbox, Hook::TcReply, &too_big),
            Outcome::Drop,
            "{hook:?}: the flow is blocked under the new policy"
        );
        // The entry is the flow's own packets' to change (and to report).
        assert_eq!(sandbox.flows(), before, "{hook:?}");
        assert!(sandbox.drain_events().is_empty(), "{hook:?}");
        assert_eq!(run(&mut sandbox, hook, &to_visio.build()), Outcome::Drop);
        assert_eq!(
            sandbox.drain_events().len(),
            1,
            "{hook:?}: the flow's own packet"
        );
    }
}
