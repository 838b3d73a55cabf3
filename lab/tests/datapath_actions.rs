//! Each action of the kernel program, through `BPF_PROG_TEST_RUN`: what the packet gets, and
//! what the flow entry, the flow event and the counters record.

#[path = "datapath_support.rs"]
mod support;

use support::*;
use vigie::sandbox::{Hook, Outcome, Sandbox};
use vigie_common::{
    action::{self, evidence, rule as rule_no, rule_mode},
    counters::{parse_failure as reason, stat},
    event::FlowEvent,
    flow::{FlowEntry, flags},
};
use vigie_lab::packet::{self, Frame};

const UDP: u8 = packet::IPPROTO_UDP;

fn zoom_frame() -> Vec<u8> {
    Frame::udp4(FINANCE_HOST, 5000, ZOOM_HOST, 8801)
        .payload(b"media")
        .build()
}

/// The one event the sandbox reported since the last drain.
fn only_event(sandbox: &mut Sandbox) -> FlowEvent {
    let events = sandbox.drain_events();
    assert_eq!(events.len(), 1, "expected one event, got {events:#?}");
    events[0]
}

/// Runs the Zoom frame on each outbound hook under `policy`; checks the outcome, the flow
/// entry (rule 0 with `rule_action`, `entry_flags`), the event and the counter row (keyed by
/// `effective` action). Returns nothing: every hook is checked the same way.
fn assert_rule_decides(
    policy: &PolicySpec,
    outcome: Outcome,
    rule_action: u32,
    entry_flags: u32,
    effective: u32,
) {
    let frame = zoom_frame();
    let key = flow_key4(FINANCE_HOST, 5000, ZOOM_HOST, 8801, UDP);
    for hook in OUTBOUND_HOOKS {
        let mut sandbox = sandbox(policy);
        assert_eq!(run(&mut sandbox, hook, &frame), outcome, "{hook:?}");
        let (found, entry) = only_flow(&sandbox);
        assert_eq!(found, key, "{hook:?}");
        let expected = FlowEntry {
            service: ZOOM,
            evidence: evidence::ADDRESS,
            classes: 1 << CLASS_US,
            group: FINANCE,
            generation: 1,
            rule: 0,
            action: rule_action,
            flags: entry_flags,
            sni_seq: 0,
            sni_end: 0,
            pad: 0,
        };
        assert_eq!(entry, expected, "{hook:?}");

        let event = only_event(&mut sandbox);
        assert_eq!(event.key, key, "{hook:?}");
        assert_eq!(
            (
                event.service,
                event.evidence,
                event.group,
                event.rule,
                event.action,
                event.generation
            ),
            (ZOOM, evidence::ADDRESS, FINANCE, 0, rule_action, 1),
            "{hook:?}: {event:?}"
        );
        assert_eq!(
            (event.flags, event.classes),
            (entry_flags, 1 << CLASS_US),
            "{hook:?}: {event:?}"
        );
        assert_eq!(event.packet_len as usize, frame.len(), "{hook:?}");
        assert_ne!(event.timestamp_ns, 0, "{hook:?}");

        let row = counter(&sandbox, 0, ZOOM, FINANCE, effective).unwrap_or_else(|| {
            panic!(
                "{hook:?}: no counter row for (rule 0, zoom, finance, {effective}): {:?}",
                counters(&sandbox)
            )
        });
        assert_eq!(
            (row.packets, row.bytes, row.flows),
            (1, frame.len() as u64, 1),
            "{hook:?}"
        );
        assert_eq!(
            counters(&sandbox).len(),
            1,
            "{hook:?}: {:?}",
            counters(&sandbox)
        );
        assert_eq!(stat(&sandbox, stat::NO_POLICY), 0, "{hook:?}");
    }
}

#[test]
fn allow_rule_passes() {
    if !vigie_lab::privilege::privileged("allow_rule_passes") {
        return;
    }
    // Default drop: only the rule can let Zoom through.
    let policy = PolicySpec::new()
        .default_action(action::DROP)
        .rule("allow-zoom", rule(action::ALLOW).services(&[ZOOM]));
    assert_rule_decides(
        &policy,
        Outcome::Pass,
        action::ALLOW,
        flags::MATCHED,
        action::ALLOW,
    );
}

#[test]
fn block_rule_drops() {
    if !vigie_lab::privilege::privileged("block_rule_drops") {
        return;
    }
    assert_rule_decides(
        &block_zoom(),
        Outcome::Drop,
        action::DROP,
        flags::MATCHED,
        action::DROP,
    );
}

#[test]
fn reject_rule_answers() {
    if !vigie_lab::privilege::privileged("reject_rule_answers") {
        return;
    }
    // The answer itself is checked byte for byte in datapath_reject.rs.
    let policy = PolicySpec::new().rule("reject-zoom", rule(action::REJECT).services(&[ZOOM]));
    assert_rule_decides(
        &policy,
        Outcome::Answer,
        action::REJECT,
        flags::MATCHED,
        action::REJECT,
    );
}

#[test]
fn monitor_rule_passes_and_reports() {
    if !vigie_lab::privilege::privileged("monitor_rule_passes_and_reports") {
        return;
    }
    let policy = PolicySpec::new()
        .default_action(action::DROP)
        .rule("watch-zoom", rule(action::MONITOR).services(&[ZOOM]));
    assert_rule_decides(
        &policy,
        Outcome::Pass,
        action::MONITOR,
        flags::MATCHED,
        action::MONITOR,
    );
}

#[test]
fn monitor_mode_turns_a_block_into_a_report() {
    if !vigie_lab::privilege::privileged("monitor_mode_turns_a_block_into_a_report") {
        return;
    }
    // The rule still says drop (the event proves what would have happened); the packet passes
    // and is counted as monitored.
    let policy = block_zoom().monitor_mode();
    assert_rule_decides(
        &policy,
        Outcome::Pass,
        action::DROP,
        flags::MATCHED | flags::MONITOR_MODE,
        action::MONITOR,
    );
}

#[test]
fn a_rule_in_monitor_mode_reports_in_an_enforcing_policy() {
    if !vigie_lab::privilege::privileged("a_rule_in_monitor_mode_reports_in_an_enforcing_policy") {
        return;
    }
    // The rule's own mode wins; the flow entry keeps the plain action, the mode in its flags.
    let policy = PolicySpec::new().rule(
        "trial-block-zoom",
        rule(action::DROP | rule_mode::MONITOR).services(&[ZOOM]),
    );
    assert_rule_decides(
        &policy,
        Outcome::Pass,
        action::DROP,
        flags::MATCHED | flags::MONITOR_MODE,
        action::MONITOR,
    );
}

#[test]
fn a_rule_in_enforce_mode_blocks_in_a_monitoring_policy() {
    if !vigie_lab::privilege::privileged("a_rule_in_enforce_mode_blocks_in_a_monitoring_policy") {
        return;
    }
    let policy = PolicySpec::new().monitor_mode().rule(
        "block-zoom-now",
        rule(action::DROP | rule_mode::ENFORCE).services(&[ZOOM]),
    );
    assert_rule_decides(
        &policy,
        Outcome::Drop,
        action::DROP,
        flags::MATCHED,
        action::DROP,
    );
}

#[test]
fn monitor_mode_leaves_allowed_flows_alone() {
    if !vigie_lab::privilege::privileged("monitor_mode_leaves_allowed_flows_alone") {
        return;
    }
    let policy = PolicySpec::new()
        .monitor_mode()
        .rule("allow-zoom", rule(action::ALLOW).services(&[ZOOM]));
    assert_rule_decides(
        &policy,
        Outcome::Pass,
        action::ALLOW,
        flags::MATCHED | flags::MONITOR_MODE,
        action::ALLOW,
    );
}

#[test]
fn default_action_decides_when_no_rule_matches() {
    if !vigie_lab::privilege::privileged("default_action_decides_when_no_rule_matches") {
        return;
    }
    let frame = Frame::tcp4(FINANCE_HOST, 40000, UNKNOWN_HOST, 443).build();
    for (default, outcome) in [
        (action::DROP, Outcome::Drop),
        (action::ALLOW, Outcome::Pass),
    ] {
        for hook in OUTBOUND_HOOKS {
            let mut sandbox = sandbox(&block_zoom().default_action(default));
            assert_eq!(
                run(&mut sandbox, hook, &frame),
                outcome,
                "{hook:?} default {default}"
            );
            let (key, entry) = only_flow(&sandbox);
            assert_eq!(
                key,
                flow_key4(FINANCE_HOST, 40000, UNKNOWN_HOST, 443, packet::IPPROTO_TCP)
            );
            assert_eq!(
                (
                    entry.service,
                    entry.evidence,
                    entry.rule,
                    entry.action,
                    entry.flags
                ),
                // A TCP flow from the LAN waits for its ClientHello, where its SYN said the
                // stream starts.
                (
                    0,
                    evidence::NONE,
                    rule_no::DEFAULT,
                    default,
                    flags::SNI_PENDING | flags::SNI_FROM_SYN
                ),
                "{hook:?} default {default}: {entry:?}"
            );
            assert!(
                sandbox.drain_events().is_empty(),
                "{hook:?}: the default reported a flow"
            );
            let row = counter(&sandbox, rule_no::DEFAULT, 0, FINANCE, default)
                .unwrap_or_else(|| panic!("{hook:?}: {:?}", counters(&sandbox)));
            assert_eq!(
                (row.packets, row.bytes, row.flows),
                (1, frame.len() as u64, 1),
                "{hook:?}"
            );
        }
    }
}

#[test]
fn first_matching_rule_wins() {
    if !vigie_lab::privilege::privileged("first_matching_rule_wins") {
        return;
    }
    // Rule 0 watches Zoom's TCP 443 only, rule 1 blocks Zoom, rule 2 (never reached for Zoom)
    // allows it; a rule on US-jurisdiction destinations would also match but comes last.
    let policy = PolicySpec::new()
        .rule(
            "watch-zoom-web",
            rule(action::MONITOR)
                .services(&[ZOOM])
                .proto(packet::IPPROTO_TCP)
                .ports(443, 443),
        )
        .rule("block-zoom", rule(action::DROP).services(&[ZOOM]))
        .rule("allow-zoom", rule(action::ALLOW).services(&[ZOOM]))
        .rule("block-us", rule(action::DROP).classes(&[CLASS_US]));
    let web = Frame::tcp4(FINANCE_HOST, 40000, ZOOM_HOST, 443).build();
    let media = zoom_frame();
    for hook in OUTBOUND_HOOKS {
        let mut sandbox = sandbox(&policy);
        assert_eq!(run(&mut sandbox, hook, &web), Outcome::Pass, "{hook:?}");
        assert_eq!(run(&mut sandbox, hook, &media), Outcome::Drop, "{hook:?}");
        let web_key = flow_key4(FINANCE_HOST, 40000, ZOOM_HOST, 443, packet::IPPROTO_TCP);
        let media_key = flow_key4(FINANCE_HOST, 5000, ZOOM_HOST, 8801, UDP);
        assert_eq!(flow_entry(&sandbox, &web_key).rule, 0, "{hook:?}");
        assert_eq!(flow_entry(&sandbox, &media_key).rule, 1, "{hook:?}");
    }
}

#[test]
fn class_and_unknown_service_rules() {
    if !vigie_lab::privilege::privileged("class_and_unknown_service_rules") {
        return;
    }
    // Block what is under US jurisdiction, watch what no catalog entry names, allow the rest.
    let policy = PolicySpec::new()
        .default_action(action::ALLOW)
        .rule("block-us", rule(action::DROP).classes(&[CLASS_US]))
        .rule("watch-unknown", rule(action::MONITOR).unknown_service());
    let cases = [
        (
            Frame::udp4(FINANCE_HOST, 1000, ZOOM_HOST, 8801),
            flow_key4(FINANCE_HOST, 1000, ZOOM_HOST, 8801, UDP),
            Outcome::Drop,
            0,
            ZOOM,
        ),
        (
            Frame::udp6(FINANCE_HOST6, 1000, ZOOM_HOST6, 8801),
            flow_key6(FINANCE_HOST6, 1000, ZOOM_HOST6, 8801, UDP),
            Outcome::Drop,
            0,
            ZOOM,
        ),
        (
            Frame::udp4(FINANCE_HOST, 1000, UNKNOWN_HOST, 53),
            flow_key4(FINANCE_HOST, 1000, UNKNOWN_HOST, 53, UDP),
            Outcome::Pass,
            1,
            0,
        ),
        (
            Frame::udp6(FINANCE_HOST6, 1000, UNKNOWN_HOST6, 53),
            flow_key6(FINANCE_HOST6, 1000, UNKNOWN_HOST6, 53, UDP),
            Outcome::Pass,
            1,
            0,
        ),
        (
            Frame::udp4(FINANCE_HOST, 1000, VISIO_HOST, 443),
            flow_key4(FINANCE_HOST, 1000, VISIO_HOST, 443, UDP),
            Outcome::Pass,
            rule_no::DEFAULT,
            VISIO,
        ),
    ];
    for hook in OUTBOUND_HOOKS {
        let mut sandbox = sandbox(&policy);
        for (i, (frame, key, outcome, rule, service)) in cases.iter().enumerate() {
            assert_eq!(
                run(&mut sandbox, hook, &frame.build()),
                *outcome,
                "{hook:?} case {i}"
            );
            let entry = flow_entry(&sandbox, key);
            assert_eq!(
                (entry.rule, entry.service),
                (*rule, *service),
                "{hook:?} case {i}: {entry:?}"
            );
        }
        // The four flows a rule decided were reported; the one the default decided was not.
        assert_eq!(sandbox.drain_events().len(), 4, "{hook:?}");
    }
}

#[test]
fn before_any_policy_failure_action_allow_passes() {
    if !vigie_lab::privilege::privileged("before_any_policy_failure_action_allow_passes") {
        return;
    }
    let unparsable = Frame::udp4(FINANCE_HOST, 5000, ZOOM_HOST, 8801)
        .qinq(1, 2)
        .vlan(3)
        .build();
    let zoom = Frame::udp4(FINANCE_HOST, 5000, ZOOM_HOST, 8801);
    for hook in [Hook::XdpOutbound, Hook::TcOutbound, Hook::TcReply] {
        let mut sandbox = Sandbox::with_failure_action(action::ALLOW).expect("loading");
        assert_eq!(
            run(&mut sandbox, hook, &as_seen_by(hook, &zoom)),
            Outcome::Pass,
            "{hook:?}"
        );
        assert_eq!(
            run(&mut sandbox, hook, &unparsable),
            Outcome::Pass,
            "{hook:?}"
        );
        assert_eq!(stat(&sandbox, stat::NO_POLICY), 1, "{hook:?}");
        assert_eq!(stat(&sandbox, stat::UNPARSED_BLOCKED), 0, "{hook:?}");
        assert_parse_failures(&sandbox, reason::TOO_MANY_VLAN_TAGS, 1);
        assert!(
            sandbox.flows().is_empty(),
            "{hook:?}: a flow decided by no policy was kept"
        );
        assert!(sandbox.drain_events().is_empty(), "{hook:?}");
    }
    // `new` is the same as a failure action of allow.
    let mut sandbox = Sandbox::new().expect("loading");
    assert_eq!(
        run(&mut sandbox, Hook::XdpOutbound, &zoom_frame()),
        Outcome::Pass
    );
}

#[test]
fn before_any_policy_failure_action_drop_drops() {
    if !vigie_lab::privilege::privileged("before_any_policy_failure_action_drop_drops") {
        return;
    }
    let unparsable = Frame::udp4(FINANCE_HOST, 5000, ZOOM_HOST, 8801)
        .qinq(1, 2)
        .vlan(3)
        .build();
    let arp = Frame::arp(FINANCE_HOST, UNKNOWN_HOST).build();
    let zoom = Frame::udp4(FINANCE_HOST, 5000, ZOOM_HOST, 8801);
    let visio = Frame::tcp4(FINANCE_HOST, 40000, VISIO_HOST, 443);
    for hook in [Hook::XdpOutbound, Hook::TcOutbound, Hook::TcReply] {
        let (zoom, visio) = (as_seen_by(hook, &zoom), as_seen_by(hook, &visio));
        let mut sandbox = Sandbox::with_failure_action(action::DROP).expect("loading");
        assert_eq!(run(&mut sandbox, hook, &zoom), Outcome::Drop, "{hook:?}");
        assert_eq!(run(&mut sandbox, hook, &visio), Outcome::Drop, "{hook:?}");
        assert_eq!(
            run(&mut sandbox, hook, &unparsable),
            Outcome::Drop,
            "{hook:?}"
        );
        // Not IP: not ours to judge, even closed.
        assert_eq!(run(&mut sandbox, hook, &arp), Outcome::Pass, "{hook:?}");
        assert_eq!(stat(&sandbox, stat::NO_POLICY), 2, "{hook:?}");
        assert_eq!(stat(&sandbox, stat::UNPARSED_BLOCKED), 1, "{hook:?}");
        assert_eq!(stat(&sandbox, stat::NOT_IP), 1, "{hook:?}");
        assert!(sandbox.flows().is_empty(), "{hook:?}");

        // Once a policy is in force, it decides.
        assert_eq!(sandbox.apply(&block_zoom().compile()).expect("applying"), 1);
        assert_eq!(run(&mut sandbox, hook, &visio), Outcome::Pass, "{hook:?}");
        assert_eq!(run(&mut sandbox, hook, &zoom), Outcome::Drop, "{hook:?}");
        assert_eq!(stat(&sandbox, stat::NO_POLICY), 2, "{hook:?}");
        assert_eq!(sandbox.flows().len(), 2, "{hook:?}");
    }
}
