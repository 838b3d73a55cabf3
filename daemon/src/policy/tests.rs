//! Compilation of rules, groups and destinations against a small catalog.

use std::path::PathBuf;

use vigie_common::{
    action,
    policy::{Destination, condition},
};

use super::*;

/// A catalog entry with a fixed layout; `extra` goes after the required keys.
fn service(id: &str, jurisdiction: &str, category: &str, extra: &str) -> (PathBuf, String) {
    let text = format!(
        "id = \"{id}\"\nname = \"{id}\"\noperator = \"op\"\njurisdiction = \"{jurisdiction}\"\n\
         category = \"{category}\"\n{extra}\n[source]\nvendor = \"test\"\nretrieved = 2024-06-01\n"
    );
    (PathBuf::from(format!("catalog/{id}.toml")), text)
}

/// Ids in order: alpha 1, beta 2, chat 3, gamma 4, visio 5.
fn catalog() -> Vec<(PathBuf, String)> {
    vec![
        service(
            "alpha",
            "US",
            "conferencing",
            "prefixes = [\"192.0.2.0/25\", \"2001:db8:a::/48\"]",
        ),
        service(
            "beta",
            "US",
            "conferencing",
            "prefixes = [\"198.51.100.0/24\"]",
        ),
        service("chat", "FR", "messaging", "sovereign = true"),
        service(
            "gamma",
            "DE",
            "conferencing",
            "prefixes = [\"203.0.113.0/24\"]",
        ),
        service(
            "visio",
            "FR",
            "conferencing",
            "sovereign = true\n[[ports]]\nproto = \"udp\"\nrange = 3478",
        ),
    ]
}

const SETTINGS: &str =
    "[settings]\nmode = \"enforce\"\ndefault = \"allow\"\nunparsed = \"allow\"\n";

fn with_policy(policy: &str) -> Vec<(PathBuf, String)> {
    let mut files = catalog();
    files.push((PathBuf::from("policy.toml"), format!("{SETTINGS}{policy}")));
    files
}

fn compile(policy: &str) -> Compilation {
    match load_from_files(&with_policy(policy)) {
        Ok(compilation) => compilation,
        Err(errors) => panic!("does not compile:\n{errors}"),
    }
}

fn rule(policy: &str) -> vigie_common::policy::Rule {
    compile(policy).policy.rules[0]
}

fn bits(ids: &[u32]) -> [u64; 2] {
    let mut set = [0u64; 2];
    for id in ids {
        set[(id / 64) as usize] |= 1 << (id % 64);
    }
    set
}

#[test]
fn services_are_numbered_in_id_order_from_one() {
    let policy = compile("").policy;
    let ids: Vec<&str> = policy.services.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["none", "alpha", "beta", "chat", "gamma", "visio"]);
    assert_eq!(policy.service_name(4), Some("gamma"));
    assert_eq!(policy.services[4].jurisdiction, "DE");
}

#[test]
fn named_services_become_bits() {
    let r = rule("[[rule]]\nname = \"r\"\nservices = [\"alpha\", \"gamma\"]\naction = \"block\"\n");
    assert_eq!(r.services, bits(&[1, 4]));
    assert_eq!(r.conditions, condition::SERVICES);
    assert_eq!(r.action, action::DROP);
    assert_eq!((r.proto, r.port_min, r.port_max), (0, 0, u16::MAX));
}

#[test]
fn categories_join_services_and_jurisdictions_narrow_them() {
    let union = rule(
        "[[rule]]\nname = \"r\"\nservices = [\"chat\"]\ncategories = [\"conferencing\"]\naction = \"allow\"\n",
    );
    assert_eq!(union.services, bits(&[1, 2, 3, 4, 5]));
    let narrowed = rule(
        "[[rule]]\nname = \"r\"\ncategories = [\"conferencing\"]\njurisdictions = [\"US\"]\naction = \"allow\"\n",
    );
    assert_eq!(narrowed.services, bits(&[1, 2]));
    let alone = rule("[[rule]]\nname = \"r\"\njurisdictions = [\"FR\"]\naction = \"allow\"\n");
    assert_eq!(alone.services, bits(&[3, 5]));
}

#[test]
fn jurisdiction_sets_follow_the_member_states() {
    let non_eu = rule("[[rule]]\nname = \"r\"\njurisdictions = [\"non-eu\"]\naction = \"block\"\n");
    assert_eq!(non_eu.services, bits(&[1, 2]));
    let eu = rule("[[rule]]\nname = \"r\"\njurisdictions = [\"eu\"]\naction = \"allow\"\n");
    assert_eq!(eu.services, bits(&[3, 4, 5]));
}

#[test]
fn a_rule_without_services_matches_any_destination() {
    let r = rule(
        "[[rule]]\nname = \"r\"\nproto = \"tcp\"\nports = \"8000-8080\"\naction = \"monitor\"\n",
    );
    assert_eq!(r.conditions, 0);
    assert_eq!(r.services, [0, 0]);
    assert_eq!(
        (r.proto, r.port_min, r.port_max, r.action),
        (6, 8000, 8080, action::MONITOR)
    );
}

#[test]
fn unknown_selects_unrecognised_flows() {
    let r = rule("[[rule]]\nname = \"r\"\nunknown = true\nproto = \"icmp\"\naction = \"block\"\n");
    assert_eq!(r.conditions, condition::NO_SERVICE);
    assert_eq!(r.proto, 1);
    let v6 = rule("[[rule]]\nname = \"r\"\nproto = \"icmpv6\"\naction = \"block\"\n");
    assert_eq!(v6.proto, 58);
}

#[test]
fn groups_are_numbered_in_name_order_and_become_bits() {
    let compilation = compile(
        "[groups.sales]\nprefixes = [\"10.9.0.0/16\"]\n\
         [groups.finance]\nprefixes = [\"10.1.0.0/16\", \"fd00:1::/48\"]\n\
         [groups.diplomacy]\nprefixes = [\"10.2.0.0/16\"]\n\
         [[rule]]\nname = \"r\"\nservices = [\"alpha\"]\ngroups = [\"finance\", \"sales\"]\n\
         except_groups = [\"diplomacy\"]\naction = \"block\"\n",
    );
    let policy = &compilation.policy;
    assert_eq!(policy.groups, ["none", "diplomacy", "finance", "sales"]);
    let r = policy.rules[0];
    assert_eq!(r.groups, (1 << 2) | (1 << 3));
    assert_eq!(r.except_groups, 1 << 1);
    assert_eq!(r.conditions, condition::SERVICES | condition::GROUPS);
    let v4: Vec<(String, u32)> = policy
        .sources_v4
        .iter()
        .map(|(n, g)| (n.to_string(), *g))
        .collect();
    assert_eq!(
        v4,
        [
            ("10.1.0.0/16".into(), 2),
            ("10.2.0.0/16".into(), 1),
            ("10.9.0.0/16".into(), 3)
        ]
    );
    assert_eq!(policy.sources_v6.len(), 1);
    assert_eq!(policy.sources_v6[0].1, 2);
}

#[test]
fn settings_rules_and_names_are_kept() {
    let text = "[[rule]]\nname = \"first\"\naction = \"allow\"\n[[rule]]\nname = \"second\"\naction = \"block\"\n";
    let settings = "[settings]\nmode = \"monitor\"\ndefault = \"allow\"\nunparsed = \"block\"\n";
    let mut files = catalog();
    files.push((PathBuf::from("policy.toml"), format!("{settings}{text}")));
    let policy = load_from_files(&files).unwrap().policy;
    assert_eq!(policy.settings.mode, action::mode::MONITOR);
    assert_eq!(policy.settings.default_action, action::ALLOW);
    // Monitor mode drops nothing: unparsed = "block" compiles to allow, with a warning.
    assert_eq!(policy.settings.unparsed_action, action::ALLOW);
    assert_eq!(policy.settings.rule_count, 2);
    assert_eq!(policy.settings.generation, 0);
    assert_eq!(policy.rule_name(1), "second");
}

#[test]
fn destinations_carry_the_service_id() {
    let policy = compile("").policy;
    let v4: Vec<(String, Destination)> = policy
        .destinations_v4
        .iter()
        .map(|(n, d)| (n.to_string(), *d))
        .collect();
    let dest = |service| Destination {
        service,
        classes: 0,
        pad: 0,
    };
    assert_eq!(
        v4,
        [
            ("192.0.2.0/25".into(), dest(1)),
            ("198.51.100.0/24".into(), dest(2)),
            ("203.0.113.0/24".into(), dest(4))
        ]
    );
    assert_eq!(policy.destinations_v6.len(), 1);
    assert_eq!(policy.destinations_v6[0].1, dest(1));
}

#[test]
fn a_rule_that_selects_nothing_is_a_warning() {
    let compilation = compile(
        "[[rule]]\nname = \"r\"\nservices = [\"chat\"]\njurisdictions = [\"US\"]\naction = \"block\"\n",
    );
    assert_eq!(compilation.policy.rules[0].services, [0, 0]);
    assert_eq!(compilation.policy.rules[0].conditions, condition::SERVICES);
    let warnings: Vec<String> = compilation
        .warnings
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        warnings,
        ["policy.toml:6:8: rule `r` selects no service of the catalog: it never matches"]
    );
}

#[test]
fn a_broken_catalog_file_does_not_make_its_service_unknown() {
    let mut files =
        with_policy("[[rule]]\nname = \"r\"\nservices = [\"alpha\"]\naction = \"block\"\n");
    files[0].1 = files[0].1.replace("\"US\"", "\"usa\"");
    let errors = load_from_files(&files).unwrap_err();
    assert_eq!(errors.0.len(), 1, "{errors}");
    assert_eq!(errors.0[0].path, PathBuf::from("catalog/alpha.toml"));
}

#[test]
fn embedded_files_are_named_under_embedded() {
    let mut files =
        with_policy("[[rule]]\nname = \"r\"\nservices = [\"zom\"]\naction = \"block\"\n");
    files[0].1.push_str("colour = 1\n");
    let errors = compile_files(Path::new(sources::EMBEDDED_ROOT), &files)
        .unwrap_err()
        .to_string();
    let lines: Vec<&str> = errors.lines().collect();
    assert_eq!(lines.len(), 2, "{errors}");
    assert!(
        lines[0].starts_with("<embedded>/catalog/alpha.toml:10:1: unknown field `colour`"),
        "{errors}"
    );
    assert_eq!(
        lines[1],
        "<embedded>/policy.toml:7:13: unknown service `zom`: no catalog/zom.toml"
    );
}

fn compile_files(root: &Path, files: &[(PathBuf, String)]) -> Result<Compilation, PolicyErrors> {
    super::compile(root, files, Report::default())
}
