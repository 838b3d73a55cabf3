//! Policies written in TOML, compiled by `vigie::policy`, judged by the kernel program through
//! `BPF_PROG_TEST_RUN`: the whole chain from a policy file to a verdict, with a small inline
//! catalog (Zoom with two of its published prefixes, the sovereign Visio at a lab address).

#[path = "datapath_support.rs"]
mod support;

use std::{net::Ipv4Addr, path::PathBuf};

use support::*;
use vigie::{
    compiled::CompiledPolicy,
    sandbox::{Hook, Outcome, Sandbox},
};
use vigie_common::{
    action::{self, evidence, rule as rule_no},
    counters::{parse_failure as reason, stat},
    flow::{FlowEntry, flags},
};
use vigie_lab::packet::{self, Frame};

const UDP: u8 = packet::IPPROTO_UDP;

const ZOOM_CATALOG: &str = r#"
id = "zoom"
name = "Zoom Meetings"
operator = "Zoom Video Communications, Inc."
jurisdiction = "US"
category = "conferencing"
prefixes = ["3.7.35.0/25", "2407:30c0::/32"]

[source]
vendor = "Zoom's published IP ranges (two of them)"
retrieved = 2024-06-01
"#;

const VISIO_CATALOG: &str = r#"
id = "visio"
name = "Visio"
operator = "French State (DINUM)"
jurisdiction = "FR"
category = "conferencing"
sovereign = true
prefixes = ["198.51.100.0/24", "2001:db8:5::/48"]

[source]
vendor = "the lab's deployment"
retrieved = 2024-06-01
"#;

const GROUPS: &str = r#"
[groups.finance]
prefixes = ["10.1.0.0/16", "fd00:1::/32"]

[groups.research]
prefixes = ["10.2.0.0/16", "fd00:2::/32"]
"#;

/// `settings` and `rules` (TOML) with the groups above and the inline catalog, compiled.
fn compile(settings: &str, rules: &str) -> CompiledPolicy {
    let policy = format!("[settings]\n{settings}\n{GROUPS}\n{rules}");
    let files = [
        (PathBuf::from("policy.toml"), policy.clone()),
        (PathBuf::from("catalog/zoom.toml"), ZOOM_CATALOG.to_owned()),
        (
            PathBuf::from("catalog/visio.toml"),
            VISIO_CATALOG.to_owned(),
        ),
    ];
    match vigie::policy::load_from_files(&files) {
        Ok(compilation) => compilation.policy,
        Err(errors) => panic!("the test policy does not compile: {errors:?}\n{policy}"),
    }
}

const ENFORCE: &str = "mode = \"enforce\"\ndefault = \"allow\"\nunparsed = \"allow\"";

const BLOCK_ZOOM: &str = r#"
[[rule]]
name = "keep-sovereign"
services = ["visio"]
action = "allow"

[[rule]]
name = "block-non-eu-conferencing"
categories = ["conferencing"]
jurisdictions = ["non-eu"]
action = "block"
"#;

/// The kernel id of a catalog service.
fn service_id(policy: &CompiledPolicy, id: &str) -> u32 {
    policy
        .services
        .iter()
        .position(|s| s.id == id)
        .unwrap_or_else(|| panic!("no service {id}")) as u32
}

fn group_id(policy: &CompiledPolicy, name: &str) -> u32 {
    policy
        .groups
        .iter()
        .position(|g| g == name)
        .unwrap_or_else(|| panic!("no group {name}")) as u32
}

/// Runs a datagram from `host` to Zoom on `hook`, checks its outcome, and returns its flow.
fn zoom_flow_from(
    sandbox: &mut Sandbox,
    hook: Hook,
    host: Ipv4Addr,
    outcome: Outcome,
) -> FlowEntry {
    let frame = Frame::udp4(host, 5000, ZOOM_HOST, 8801).build();
    assert_eq!(run(sandbox, hook, &frame), outcome, "{hook:?} from {host}");
    flow_entry(sandbox, &flow_key4(host, 5000, ZOOM_HOST, 8801, UDP))
}

fn loaded(policy: &CompiledPolicy) -> Sandbox {
    let mut sandbox = Sandbox::new().unwrap_or_else(|e| panic!("loading the kernel programs: {e}"));
    assert_eq!(
        sandbox
            .apply(policy)
            .unwrap_or_else(|e| panic!("applying: {e}")),
        1
    );
    sandbox
}

#[test]
fn compiled_policy_blocks_zoom_and_keeps_visio() {
    if !vigie_lab::privilege::privileged("compiled_policy_blocks_zoom_and_keeps_visio") {
        return;
    }
    let policy = compile(ENFORCE, BLOCK_ZOOM);
    let (zoom, visio, finance) = (
        service_id(&policy, "zoom"),
        service_id(&policy, "visio"),
        group_id(&policy, "finance"),
    );
    let cases = [
        (
            Frame::udp4(FINANCE_HOST, 5000, ZOOM_HOST, 8801),
            flow_key4(FINANCE_HOST, 5000, ZOOM_HOST, 8801, UDP),
            Outcome::Drop,
            "block-non-eu-conferencing",
            zoom,
        ),
        (
            Frame::udp6(FINANCE_HOST6, 5000, ZOOM_HOST6, 8801),
            flow_key6(FINANCE_HOST6, 5000, ZOOM_HOST6, 8801, UDP),
            Outcome::Drop,
            "block-non-eu-conferencing",
            zoom,
        ),
        (
            Frame::udp4(FINANCE_HOST, 5000, VISIO_HOST, 443),
            flow_key4(FINANCE_HOST, 5000, VISIO_HOST, 443, UDP),
            Outcome::Pass,
            "keep-sovereign",
            visio,
        ),
        (
            Frame::udp6(FINANCE_HOST6, 5000, VISIO_HOST6, 443),
            flow_key6(FINANCE_HOST6, 5000, VISIO_HOST6, 443, UDP),
            Outcome::Pass,
            "keep-sovereign",
            visio,
        ),
        (
            Frame::udp4(FINANCE_HOST, 5000, UNKNOWN_HOST, 443),
            flow_key4(FINANCE_HOST, 5000, UNKNOWN_HOST, 443, UDP),
            Outcome::Pass,
            "default",
            0,
        ),
    ];
    for hook in [Hook::XdpOutbound, Hook::TcOutbound, Hook::TcReply] {
        let mut sandbox = loaded(&policy);
        for (frame, key, outcome, rule, service) in &cases {
            assert_eq!(
                run(&mut sandbox, hook, &as_seen_by(hook, frame)),
                *outcome,
                "{hook:?} {key:?}"
            );
            let entry = flow_entry(&sandbox, key);
            assert_eq!(policy.rule_name(entry.rule), *rule, "{hook:?}: {entry:?}");
            assert_eq!(
                (entry.service, entry.group),
                (*service, finance),
                "{hook:?}: {entry:?}"
            );
        }
        // The four flows a rule decided were reported.
        let events = sandbox.drain_events();
        assert_eq!(events.len(), 4, "{hook:?}: {events:#?}");
        assert!(
            events.iter().all(|e| e.evidence == evidence::ADDRESS),
            "{hook:?}: {events:#?}"
        );
    }
}

#[test]
fn compiled_groups_and_exceptions() {
    if !vigie_lab::privilege::privileged("compiled_groups_and_exceptions") {
        return;
    }
    let policy = compile(ENFORCE, GROUP_RULES);
    let cases = [
        (FINANCE_HOST, Outcome::Drop, 0, action::DROP),
        (UNGROUPED_HOST, Outcome::Pass, 1, action::MONITOR),
        (
            RESEARCH_HOST,
            Outcome::Pass,
            rule_no::DEFAULT,
            action::ALLOW,
        ),
    ];
    for hook in OUTBOUND_HOOKS {
        let mut sandbox = loaded(&policy);
        for (host, outcome, rule, rule_action) in cases {
            let entry = zoom_flow_from(&mut sandbox, hook, host, outcome);
            assert_eq!(
                (entry.rule, entry.action),
                (rule, rule_action),
                "{hook:?} from {host}: {entry:?}"
            );
        }
    }
}

/// Rules on the groups: finance may not use Zoom, others but research are watched.
const GROUP_RULES: &str = r#"
[[rule]]
name = "finance-no-zoom"
services = ["zoom"]
groups = ["finance"]
action = "block"

[[rule]]
name = "others-watch-zoom"
services = ["zoom"]
except_groups = ["research"]
action = "monitor"
"#;

#[test]
fn kept_rule_and_group_numbers_reach_the_kernel() {
    if !vigie_lab::privilege::privileged("kept_rule_and_group_numbers_reach_the_kernel") {
        return;
    }
    // A group that sorts first and a rule inserted first, renumbered after the policy before
    // them as the daemon does: the kernel reports the kept numbers, and the moved group bits
    // and source prefixes still match each host to its own rule.
    let before = compile(ENFORCE, GROUP_RULES);
    let accounting = r#"
[groups.accounting]
prefixes = ["10.3.0.0/16"]

[[rule]]
name = "accounting-no-zoom"
services = ["zoom"]
groups = ["accounting"]
action = "block"
"#;
    let mut policy = compile(ENFORCE, &format!("{accounting}{GROUP_RULES}"));
    assert_eq!(group_id(&policy, "accounting"), 1, "compiled by name order");
    assert!(policy.keep_group_numbers(&before.group_numbering()));
    assert!(policy.keep_rule_numbers(&before.rule_numbering()));
    let accounting_host = std::net::Ipv4Addr::new(10, 3, 0, 9);
    let cases = [
        (FINANCE_HOST, Outcome::Drop, "finance-no-zoom", 0, "finance"),
        (
            UNGROUPED_HOST,
            Outcome::Pass,
            "others-watch-zoom",
            1,
            "none",
        ),
        (
            RESEARCH_HOST,
            Outcome::Pass,
            "default",
            rule_no::DEFAULT,
            "research",
        ),
        (
            accounting_host,
            Outcome::Drop,
            "accounting-no-zoom",
            2,
            "accounting",
        ),
    ];
    for hook in OUTBOUND_HOOKS {
        let mut sandbox = loaded(&policy);
        for (host, outcome, rule, number, group) in cases {
            let entry = zoom_flow_from(&mut sandbox, hook, host, outcome);
            assert_eq!(entry.rule, number, "{hook:?} from {host}: {entry:?}");
            assert_eq!(policy.rule_name(entry.rule), rule, "{hook:?} from {host}");
            assert_eq!(
                policy.group_name(entry.group),
                group,
                "{hook:?} from {host}"
            );
            assert_eq!(
                (before.rule_name(entry.rule), before.group_name(entry.group)),
                if number == 2 {
                    ("unknown", "none")
                } else {
                    (rule, group)
                },
                "{hook:?} from {host}: the earlier policy's names"
            );
        }
    }
}

#[test]
fn compiled_policy_swap_allows_what_was_blocked() {
    if !vigie_lab::privilege::privileged("compiled_policy_swap_allows_what_was_blocked") {
        return;
    }
    let a = compile(ENFORCE, BLOCK_ZOOM);
    let b = compile(
        ENFORCE,
        &BLOCK_ZOOM.replace("action = \"block\"", "action = \"allow\""),
    );
    let zoom = service_id(&b, "zoom");
    let frame = Frame::tcp6(FINANCE_HOST6, 40000, ZOOM_HOST6, 443);
    let key = flow_key6(FINANCE_HOST6, 40000, ZOOM_HOST6, 443, packet::IPPROTO_TCP);
    for hook in OUTBOUND_HOOKS {
        let mut sandbox = loaded(&a);
        assert_eq!(
            run(&mut sandbox, hook, &frame.build()),
            Outcome::Drop,
            "{hook:?}"
        );
        assert_eq!(sandbox.apply(&b).expect("applying B"), 2);
        assert_eq!(
            run(
                &mut sandbox,
                Hook::TcReply,
                &frame.clone().reversed().build()
            ),
            Outcome::Pass,
            "{hook:?}"
        );
        assert_eq!(
            run(&mut sandbox, hook, &frame.build()),
            Outcome::Pass,
            "{hook:?}"
        );
        let entry = flow_entry(&sandbox, &key);
        assert_eq!(
            (entry.generation, entry.service, entry.action),
            (2, zoom, action::ALLOW),
            "{hook:?}: {entry:?}"
        );
        assert_eq!(
            b.rule_name(entry.rule),
            "block-non-eu-conferencing",
            "{hook:?}: the same rule, now allowing"
        );
    }
}

#[test]
fn compiled_monitor_mode_reports_blocks() {
    if !vigie_lab::privilege::privileged("compiled_monitor_mode_reports_blocks") {
        return;
    }
    let policy = compile(
        "mode = \"monitor\"\ndefault = \"allow\"\nunparsed = \"allow\"",
        BLOCK_ZOOM,
    );
    for hook in OUTBOUND_HOOKS {
        let mut sandbox = loaded(&policy);
        let frame = Frame::udp4(FINANCE_HOST, 5000, ZOOM_HOST, 8801).build();
        assert_eq!(
            run(&mut sandbox, hook, &frame),
            Outcome::Pass,
            "{hook:?}: monitor mode"
        );
        let events = sandbox.drain_events();
        assert_eq!(events.len(), 1, "{hook:?}");
        assert_eq!(
            events[0].action,
            action::DROP,
            "{hook:?}: the rule's own action is reported"
        );
        assert_eq!(
            events[0].flags,
            flags::MATCHED | flags::MONITOR_MODE,
            "{hook:?}"
        );
        let zoom = service_id(&policy, "zoom");
        let finance = group_id(&policy, "finance");
        let row = counter(&sandbox, 1, zoom, finance, action::MONITOR).map(|r| r.packets);
        assert_eq!(
            row,
            Some(1),
            "{hook:?}: counted as monitored: {:?}",
            counters(&sandbox)
        );
    }
}

#[test]
fn compiled_unparsed_block_drops_unparsable_packets() {
    if !vigie_lab::privilege::privileged("compiled_unparsed_block_drops_unparsable_packets") {
        return;
    }
    let policy = compile(
        "mode = \"enforce\"\ndefault = \"allow\"\nunparsed = \"block\"",
        BLOCK_ZOOM,
    );
    let three_tags = Frame::udp4(FINANCE_HOST, 5000, VISIO_HOST, 443)
        .qinq(1, 2)
        .vlan(3)
        .build();
    let visio = Frame::udp4(FINANCE_HOST, 5000, VISIO_HOST, 443)
        .qinq(1, 2)
        .build();
    for hook in OUTBOUND_HOOKS {
        let mut sandbox = loaded(&policy);
        assert_eq!(
            run(&mut sandbox, hook, &three_tags),
            Outcome::Drop,
            "{hook:?}: unparsed = block"
        );
        assert_eq!(
            run(&mut sandbox, hook, &visio),
            Outcome::Pass,
            "{hook:?}: two tags parse"
        );
        assert_parse_failures(&sandbox, reason::TOO_MANY_VLAN_TAGS, 1);
        assert_eq!(stat(&sandbox, stat::UNPARSED_BLOCKED), 1, "{hook:?}");
    }
}
