//! Policy swaps and source groups in the kernel program, through `BPF_PROG_TEST_RUN`: a flow
//! decided under one policy is decided again under the next, keeping its service; a rule's
//! groups and exceptions select sources by their address.

#[path = "datapath_support.rs"]
mod support;

use std::net::{Ipv4Addr, Ipv6Addr};

use support::*;
use vigie::sandbox::{Hook, Outcome, Sandbox};
use vigie_common::{
    action::{self, evidence, rule as rule_no},
    flow::{FlowKey, flags},
};
use vigie_lab::packet::{self, Frame};

const UDP: u8 = packet::IPPROTO_UDP;

fn zoom_flow() -> (Frame, FlowKey) {
    (
        Frame::udp4(FINANCE_HOST, 5000, ZOOM_HOST, 8801),
        flow_key4(FINANCE_HOST, 5000, ZOOM_HOST, 8801, UDP),
    )
}

fn apply(sandbox: &mut Sandbox, policy: &PolicySpec, generation: u32) {
    let applied = sandbox
        .apply(&policy.compile())
        .unwrap_or_else(|e| panic!("applying: {e}"));
    assert_eq!(applied, generation);
}

#[test]
fn swap_redecides_a_known_flow_and_keeps_its_service() {
    if !vigie_lab::privilege::privileged("swap_redecides_a_known_flow_and_keeps_its_service") {
        return;
    }
    let block = block_zoom();
    let allow = PolicySpec::new()
        .default_action(action::DROP)
        .rule("allow-visio", rule(action::ALLOW).services(&[VISIO]))
        .rule("allow-zoom", rule(action::ALLOW).services(&[ZOOM]));
    let (frame, key) = zoom_flow();
    for hook in OUTBOUND_HOOKS {
        let frame = frame.build();
        let mut sandbox = sandbox(&block);
        assert_eq!(run(&mut sandbox, hook, &frame), Outcome::Drop, "{hook:?}");
        assert_eq!(sandbox.drain_events().len(), 1, "{hook:?}");

        apply(&mut sandbox, &allow, 2);
        assert_eq!(
            run(&mut sandbox, hook, &frame),
            Outcome::Pass,
            "{hook:?}: policy B allows zoom"
        );
        let entry = flow_entry(&sandbox, &key);
        assert_eq!(entry.generation, 2, "{hook:?}: {entry:?}");
        assert_eq!(
            (entry.service, entry.evidence, entry.classes),
            (ZOOM, evidence::ADDRESS, 1 << CLASS_US),
            "{hook:?}"
        );
        assert_eq!((entry.rule, entry.action), (1, action::ALLOW), "{hook:?}");
        assert_eq!(sandbox.flows().len(), 1, "{hook:?}");
        // The changed verdict is reported, marked as a re-decision.
        let events = sandbox.drain_events();
        assert_eq!(events.len(), 1, "{hook:?}: {events:#?}");
        assert_eq!(events[0].key, key);
        assert_eq!(
            (events[0].action, events[0].rule, events[0].generation),
            (action::ALLOW, 1, 2),
            "{hook:?}"
        );
        assert_ne!(
            events[0].flags & flags::REDECIDED,
            0,
            "{hook:?}: {:?}",
            events[0]
        );
        // Counted under the rule that decided each packet; the flow is counted once.
        assert_eq!(
            counter(&sandbox, 0, ZOOM, FINANCE, action::DROP).map(|r| (r.packets, r.flows)),
            Some((1, 1))
        );
        assert_eq!(
            counter(&sandbox, 1, ZOOM, FINANCE, action::ALLOW).map(|r| (r.packets, r.flows)),
            Some((1, 0))
        );

        // And back.
        apply(&mut sandbox, &block, 3);
        assert_eq!(
            run(&mut sandbox, hook, &frame),
            Outcome::Drop,
            "{hook:?}: policy A again"
        );
        let entry = flow_entry(&sandbox, &key);
        assert_eq!(
            (entry.generation, entry.rule, entry.action),
            (3, 0, action::DROP),
            "{hook:?}"
        );
    }
}

#[test]
fn swap_to_the_same_verdict_reports_nothing() {
    if !vigie_lab::privilege::privileged("swap_to_the_same_verdict_reports_nothing") {
        return;
    }
    let (frame, key) = zoom_flow();
    let mut sandbox = sandbox(&block_zoom());
    assert_eq!(
        run(&mut sandbox, Hook::XdpOutbound, &frame.build()),
        Outcome::Drop
    );
    assert_eq!(sandbox.drain_events().len(), 1);
    apply(
        &mut sandbox,
        &block_zoom().rule("allow-visio", rule(action::ALLOW).services(&[VISIO])),
        2,
    );
    assert_eq!(
        run(&mut sandbox, Hook::TcReply, &frame.reversed().build()),
        Outcome::Drop
    );
    assert_eq!(flow_entry(&sandbox, &key).generation, 2);
    assert!(
        sandbox.drain_events().is_empty(),
        "an unchanged verdict was reported"
    );
}

#[test]
fn swap_to_monitor_mode_lets_a_blocked_flow_through() {
    if !vigie_lab::privilege::privileged("swap_to_monitor_mode_lets_a_blocked_flow_through") {
        return;
    }
    let (frame, key) = zoom_flow();
    for hook in OUTBOUND_HOOKS {
        let frame = frame.build();
        let mut sandbox = sandbox(&block_zoom());
        assert_eq!(run(&mut sandbox, hook, &frame), Outcome::Drop, "{hook:?}");
        apply(&mut sandbox, &block_zoom().monitor_mode(), 2);
        assert_eq!(run(&mut sandbox, hook, &frame), Outcome::Pass, "{hook:?}");
        let entry = flow_entry(&sandbox, &key);
        assert_eq!(
            (entry.action, entry.generation),
            (action::DROP, 2),
            "{hook:?}"
        );
        assert_eq!(
            entry.flags,
            flags::MATCHED | flags::MONITOR_MODE,
            "{hook:?}"
        );
        assert_eq!(
            counter(&sandbox, 0, ZOOM, FINANCE, action::MONITOR).map(|r| r.packets),
            Some(1),
            "{hook:?}"
        );
        apply(&mut sandbox, &block_zoom(), 3);
        assert_eq!(
            run(&mut sandbox, hook, &frame),
            Outcome::Drop,
            "{hook:?}: enforcing again"
        );
        assert_eq!(
            flow_entry(&sandbox, &key).flags & flags::MONITOR_MODE,
            0,
            "{hook:?}"
        );
    }
}

#[test]
fn swap_looks_address_evidence_up_again() {
    if !vigie_lab::privilege::privileged("swap_looks_address_evidence_up_again") {
        return;
    }
    // The catalog's update dropped Zoom's prefixes: the address no longer names Zoom.
    let (frame, key) = zoom_flow();
    let frame = frame.build();
    let mut sandbox = sandbox(&block_zoom());
    assert_eq!(run(&mut sandbox, Hook::XdpOutbound, &frame), Outcome::Drop);
    sandbox.drain_events();
    apply(&mut sandbox, &block_zoom().without_zoom_prefixes(), 2);
    assert_eq!(run(&mut sandbox, Hook::XdpOutbound, &frame), Outcome::Pass);
    let entry = flow_entry(&sandbox, &key);
    assert_eq!(
        (entry.service, entry.evidence, entry.rule),
        (0, evidence::NONE, rule_no::DEFAULT),
        "{entry:?}"
    );
    assert_eq!(entry.flags & flags::MATCHED, 0, "{entry:?}");
    assert!(
        sandbox.drain_events().is_empty(),
        "a default verdict was reported"
    );
}

/// Sources: (hook, frame, flow key, group) for each kind of internal host, IPv4 and IPv6, each
/// talking to Zoom (the reply hook sees Zoom's side).
fn zoom_sources() -> Vec<(&'static str, Hook, Vec<u8>, FlowKey, u32)> {
    let v4 = |name, host: Ipv4Addr, group, hook| {
        let frame = Frame::udp4(host, 5000, ZOOM_HOST, 8801);
        (
            name,
            hook,
            as_seen_by(hook, &frame),
            flow_key4(host, 5000, ZOOM_HOST, 8801, UDP),
            group,
        )
    };
    let v6 = |name, host: Ipv6Addr, group, hook| {
        let frame = Frame::udp6(host, 5000, ZOOM_HOST6, 8801);
        (
            name,
            hook,
            as_seen_by(hook, &frame),
            flow_key6(host, 5000, ZOOM_HOST6, 8801, UDP),
            group,
        )
    };
    vec![
        v4("finance", FINANCE_HOST, FINANCE, Hook::XdpOutbound),
        v4("research", RESEARCH_HOST, RESEARCH, Hook::TcOutbound),
        v4("ungrouped", UNGROUPED_HOST, 0, Hook::XdpOutbound),
        v6("finance v6", FINANCE_HOST6, FINANCE, Hook::TcReply),
        v6("research v6", RESEARCH_HOST6, RESEARCH, Hook::XdpOutbound),
        v6("research v6 reply", RESEARCH_HOST6, RESEARCH, Hook::TcReply),
    ]
}

/// Runs every source under `policy` in one sandbox; `blocked(group)` says which must drop.
fn assert_groups(policy: &PolicySpec, blocked: impl Fn(u32) -> bool) {
    let mut sandbox = sandbox(policy);
    for (name, hook, frame, key, group) in zoom_sources() {
        let expected = if blocked(group) {
            Outcome::Drop
        } else {
            Outcome::Pass
        };
        assert_eq!(
            run(&mut sandbox, hook, &frame),
            expected,
            "{name} on {hook:?}"
        );
        let entry = flow_entry(&sandbox, &key);
        assert_eq!(entry.group, group, "{name}: {entry:?}");
        let rule = if blocked(group) { 0 } else { rule_no::DEFAULT };
        assert_eq!(
            (entry.service, entry.rule),
            (ZOOM, rule),
            "{name}: {entry:?}"
        );
    }
}

#[test]
fn a_rule_with_groups_matches_only_their_sources() {
    if !vigie_lab::privilege::privileged("a_rule_with_groups_matches_only_their_sources") {
        return;
    }
    let policy = PolicySpec::new().rule(
        "finance-no-zoom",
        rule(action::DROP).services(&[ZOOM]).groups(&[FINANCE]),
    );
    assert_groups(&policy, |group| group == FINANCE);
    let policy = PolicySpec::new().rule(
        "no-zoom",
        rule(action::DROP)
            .services(&[ZOOM])
            .groups(&[FINANCE, RESEARCH]),
    );
    assert_groups(&policy, |group| group != 0);
}

#[test]
fn except_groups_exempts_their_sources() {
    if !vigie_lab::privilege::privileged("except_groups_exempts_their_sources") {
        return;
    }
    let policy = PolicySpec::new().rule(
        "no-zoom-but-research",
        rule(action::DROP)
            .services(&[ZOOM])
            .except_groups(&[RESEARCH]),
    );
    assert_groups(&policy, |group| group != RESEARCH);
    // An exception wins over the same group listed in `groups`.
    let policy = PolicySpec::new().rule(
        "finance-but-not-research",
        rule(action::DROP)
            .services(&[ZOOM])
            .groups(&[FINANCE, RESEARCH])
            .except_groups(&[RESEARCH]),
    );
    assert_groups(&policy, |group| group == FINANCE);
}

#[test]
fn swap_moves_a_flow_between_group_rules() {
    if !vigie_lab::privilege::privileged("swap_moves_a_flow_between_group_rules") {
        return;
    }
    let finance_blocked = PolicySpec::new().rule(
        "finance",
        rule(action::DROP).services(&[ZOOM]).groups(&[FINANCE]),
    );
    let research_blocked = PolicySpec::new().rule(
        "research",
        rule(action::DROP).services(&[ZOOM]).groups(&[RESEARCH]),
    );
    let (frame, key) = zoom_flow();
    let frame = frame.build();
    let mut sandbox = sandbox(&finance_blocked);
    assert_eq!(run(&mut sandbox, Hook::TcOutbound, &frame), Outcome::Drop);
    apply(&mut sandbox, &research_blocked, 2);
    assert_eq!(run(&mut sandbox, Hook::TcOutbound, &frame), Outcome::Pass);
    let entry = flow_entry(&sandbox, &key);
    assert_eq!(
        (entry.group, entry.rule, entry.generation),
        (FINANCE, rule_no::DEFAULT, 2),
        "{entry:?}"
    );
}
