//! Vendor STUN attributes through `BPF_PROG_TEST_RUN`: a STUN message carrying Zoom's
//! attribute tells the service of a flow that no address explains, in either direction;
//! it never replaces an address's service nor overrides an explicit allow; malformed
//! messages are not STUN.

#[path = "datapath_support.rs"]
mod support;

use support::*;
use vigie::sandbox::{Hook, Outcome};
use vigie_common::{
    action::{self, evidence},
    counters::stat,
    flow::flags,
};
use vigie_lab::packet::Frame;

/// A STUN binding request with the given attributes (type, value).
fn stun(attributes: &[(u16, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (kind, value) in attributes {
        body.extend_from_slice(&kind.to_be_bytes());
        body.extend_from_slice(&(value.len() as u16).to_be_bytes());
        body.extend_from_slice(value);
        body.resize(body.len().div_ceil(4) * 4, 0);
    }
    let mut m = vec![0x00, 0x01];
    m.extend_from_slice(&(body.len() as u16).to_be_bytes());
    m.extend_from_slice(&0x2112_a442_u32.to_be_bytes());
    m.extend_from_slice(&[7; 12]);
    m.extend_from_slice(&body);
    m
}

fn datagram(dst: std::net::Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    Frame::udp4(FINANCE_HOST, 50000, dst, 3478)
        .payload(payload)
        .build()
}

const ZOOM_ATTRIBUTE: u16 = 0x0101;

#[test]
fn a_vendor_attribute_tells_the_service() {
    if !vigie_lab::privilege::privileged("a_vendor_attribute_tells_the_service") {
        return;
    }
    let plain = stun(&[(0x0006, b"user:name"), (0x8022, b"agent")]);
    let zoom = stun(&[(0x0006, b"user:name"), (ZOOM_ATTRIBUTE, &[0, 0, 0, 1])]);
    for hook in OUTBOUND_HOOKS {
        let mut sandbox = sandbox(&block_zoom());
        // A plain STUN message first: nothing to tell.
        assert_eq!(
            run(&mut sandbox, hook, &datagram(UNKNOWN_HOST, &plain)),
            Outcome::Pass
        );
        assert_eq!(only_flow(&sandbox).1.service, 0, "{hook:?}");
        // The vendor's attribute: the flow is Zoom's, and blocked from this datagram on.
        assert_eq!(
            run(&mut sandbox, hook, &datagram(UNKNOWN_HOST, &zoom)),
            Outcome::Drop
        );
        let entry = only_flow(&sandbox).1;
        assert_eq!(
            (entry.service, entry.evidence),
            (ZOOM, evidence::STUN),
            "{hook:?}"
        );
        assert_eq!(entry.flags & flags::STUN_PENDING, 0, "{hook:?}");
        assert_eq!(stat(&sandbox, stat::STUN_RECOGNISED), 1, "{hook:?}");
        let events = sandbox.drain_events();
        assert!(
            events
                .iter()
                .any(|e| e.flags & flags::NAMED != 0 && e.evidence == evidence::STUN),
            "{hook:?}: {events:?}"
        );
    }
    // The remote side's message counts too (a flow seen from its reply).
    let mut sandbox = sandbox(&block_zoom());
    let reply = Frame::udp4(FINANCE_HOST, 50000, UNKNOWN_HOST, 3478)
        .payload(&zoom)
        .reversed()
        .build();
    assert_eq!(run(&mut sandbox, Hook::TcReply, &reply), Outcome::Drop);
    assert_eq!(only_flow(&sandbox).1.evidence, evidence::STUN);
}

#[test]
fn weaker_than_an_address_and_an_explicit_allow() {
    if !vigie_lab::privilege::privileged("weaker_than_an_address_and_an_explicit_allow") {
        return;
    }
    let zoom = stun(&[(ZOOM_ATTRIBUTE, &[0, 0, 0, 1])]);
    for hook in OUTBOUND_HOOKS {
        // Visio's address: Visio it stays.
        let mut visio = sandbox(&block_zoom());
        assert_eq!(
            run(&mut visio, hook, &datagram(VISIO_HOST, &zoom)),
            Outcome::Pass
        );
        let entry = only_flow(&visio).1;
        assert_eq!(
            (entry.service, entry.evidence),
            (VISIO, evidence::ADDRESS),
            "{hook:?}"
        );

        // A rule that allows the finance department whatever it reaches decided first.
        let policy = PolicySpec::new()
            .rule("finance-may", rule(action::ALLOW).groups(&[FINANCE]))
            .rule("block-zoom", rule(action::DROP).services(&[ZOOM]));
        let mut sandbox = sandbox(&policy);
        assert_eq!(
            run(&mut sandbox, hook, &datagram(UNKNOWN_HOST, &zoom)),
            Outcome::Pass
        );
        assert_eq!(only_flow(&sandbox).1.service, 0, "{hook:?}");
    }
}

#[test]
fn malformed_messages_are_not_stun() {
    if !vigie_lab::privilege::privileged("malformed_messages_are_not_stun") {
        return;
    }
    let good = stun(&[(ZOOM_ATTRIBUTE, &[0, 0, 0, 1])]);
    let mut bad_cookie = good.clone();
    bad_cookie[4] ^= 0xff;
    let mut odd_length = good.clone();
    odd_length[3] += 2;
    let mut too_long = good.clone();
    too_long[2] = 0x40;
    let mut high_bits = good.clone();
    high_bits[0] |= 0x80;
    // An attribute whose length runs far past the message: the walk stops, nothing found.
    let runaway = stun(&[(0x0006, &[0; 4])])
        .into_iter()
        .enumerate()
        .map(|(i, b)| if i == 22 { 0xff } else { b })
        .collect::<Vec<_>>();
    for (what, payload) in [
        ("cookie", bad_cookie),
        ("length not a multiple of four", odd_length),
        ("length past the datagram", too_long),
        ("class bits", high_bits),
        ("runaway attribute", runaway),
    ] {
        for hook in OUTBOUND_HOOKS {
            let mut sandbox = sandbox(&block_zoom());
            assert_eq!(
                run(&mut sandbox, hook, &datagram(UNKNOWN_HOST, &payload)),
                Outcome::Pass,
                "{hook:?} {what}"
            );
            assert_eq!(only_flow(&sandbox).1.service, 0, "{hook:?} {what}");
        }
    }
    // After four datagrams the flow is no longer looked at.
    let mut sandbox = sandbox(&block_zoom());
    let plain = stun(&[(0x0006, b"user")]);
    for _ in 0..4 {
        run(
            &mut sandbox,
            Hook::XdpOutbound,
            &datagram(UNKNOWN_HOST, &plain),
        );
    }
    assert_eq!(only_flow(&sandbox).1.flags & flags::STUN_PENDING, 0);
    let zoom = stun(&[(ZOOM_ATTRIBUTE, &[0, 0, 0, 1])]);
    assert_eq!(
        run(
            &mut sandbox,
            Hook::XdpOutbound,
            &datagram(UNKNOWN_HOST, &zoom)
        ),
        Outcome::Pass
    );
}

#[test]
fn a_vendor_port_is_the_weakest_evidence() {
    if !vigie_lab::privilege::privileged("a_vendor_port_is_the_weakest_evidence") {
        return;
    }
    let media = |dst, payload: &[u8]| {
        Frame::udp4(FINANCE_HOST, 50_000, dst, 8801)
            .payload(payload)
            .build()
    };
    let plain = stun(&[(0x0006, b"user:name")]);
    for hook in OUTBOUND_HOOKS {
        // Zoom's media port at an address nothing explains: Zoom's, by port, and blocked.
        let mut zoom = sandbox(&block_zoom());
        assert_eq!(
            run(&mut zoom, hook, &media(UNKNOWN_HOST, &[0; 40])),
            Outcome::Drop
        );
        let entry = only_flow(&zoom).1;
        assert_eq!(
            (entry.service, entry.evidence),
            (ZOOM, evidence::PORT),
            "{hook:?}"
        );
        // An address says more: Visio's server on that port stays Visio's.
        let mut visio = sandbox(&block_zoom());
        assert_eq!(
            run(&mut visio, hook, &media(VISIO_HOST, &plain)),
            Outcome::Pass
        );
        assert_eq!(only_flow(&visio).1.evidence, evidence::ADDRESS, "{hook:?}");
        // A rule that explicitly allows the source decided first: the port does not override.
        let policy = PolicySpec::new()
            .rule("finance-may", rule(action::ALLOW).groups(&[FINANCE]))
            .rule("block-zoom", rule(action::DROP).services(&[ZOOM]));
        let mut allowed = sandbox(&policy);
        assert_eq!(
            run(&mut allowed, hook, &media(UNKNOWN_HOST, &plain)),
            Outcome::Pass
        );
        assert_eq!(only_flow(&allowed).1.service, 0, "{hook:?}");
        // Another port tells nothing.
        let mut other = sandbox(&block_zoom());
        let frame = Frame::udp4(FINANCE_HOST, 50_000, UNKNOWN_HOST, 8811)
            .payload(&[0; 40])
            .build();
        assert_eq!(run(&mut other, hook, &frame), Outcome::Pass);
        assert_eq!(only_flow(&other).1.evidence, evidence::NONE, "{hook:?}");
    }
}
