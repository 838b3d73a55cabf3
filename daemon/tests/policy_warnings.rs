//! Warnings that do not refuse a policy, and the digest that identifies one.

use std::path::PathBuf;

use vigie::policy::{self, Compilation};

fn service(id: &str, jurisdiction: &str, extra: &str) -> (PathBuf, String) {
    let text = format!(
        "id = \"{id}\"\nname = \"{id}\"\noperator = \"op\"\njurisdiction = \"{jurisdiction}\"\ncategory = \"conferencing\"\n\
         {extra}\n[source]\nvendor = \"test\"\nretrieved = 2024-06-01\n"
    );
    (PathBuf::from(format!("catalog/{id}.toml")), text)
}

const SETTINGS: &str =
    "[settings]\nmode = \"enforce\"\ndefault = \"allow\"\nunparsed = \"allow\"\n";

/// Visio (sovereign, TURN on udp 3478 and a test prefix) and Zoom.
fn files(policy: &str) -> Vec<(PathBuf, String)> {
    vec![
        service(
            "visio",
            "FR",
            "sovereign = true\nprefixes = [\"192.0.2.0/28\"]\n[[ports]]\nproto = \"udp\"\nrange = \"3478\"",
        ),
        service(
            "zoom",
            "US",
            "prefixes = [\"198.51.100.0/24\"]\n[[ports]]\nproto = \"udp\"\nrange = \"8801-8810\"",
        ),
        (PathBuf::from("policy.toml"), format!("{SETTINGS}{policy}")),
    ]
}

fn compile(files: &[(PathBuf, String)]) -> Compilation {
    policy::load_from_files(files).unwrap_or_else(|errors| panic!("does not compile:\n{errors}"))
}

fn warnings(files: &[(PathBuf, String)]) -> Vec<String> {
    compile(files)
        .warnings
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn a_prefix_claimed_by_two_services_names_both() {
    let mut files = files("");
    files[1] = service(
        "zoom",
        "US",
        "prefixes = [\"198.51.100.0/24\", \"192.0.2.0/28\"]",
    );
    assert_eq!(
        warnings(&files),
        [
            "catalog/zoom.toml:6:32: prefix 192.0.2.0/28 is also listed by service `visio` (catalog/visio.toml:7:13): the address table keeps `visio`"
        ]
    );
    let policy = compile(&files).policy;
    let entry = policy
        .destinations_v4
        .iter()
        .find(|(n, _)| n.to_string() == "192.0.2.0/28")
        .unwrap();
    assert_eq!(policy.service_name(entry.1.service), Some("visio"));
}

#[test]
fn overlapping_prefixes_of_two_services_stay_apart() {
    let mut files = files("");
    files[1] = service("zoom", "US", "prefixes = [\"192.0.2.0/24\"]");
    let compilation = compile(&files);
    assert!(
        compilation.warnings.is_empty(),
        "{:?}",
        compilation.warnings
    );
    let table: Vec<(String, Option<&str>)> = compilation
        .policy
        .destinations_v4
        .iter()
        .map(|(n, d)| (n.to_string(), compilation.policy.service_name(d.service)))
        .collect();
    assert_eq!(
        table,
        [
            ("192.0.2.0/24".to_owned(), Some("zoom")),
            ("192.0.2.0/28".to_owned(), Some("visio"))
        ]
    );
}

#[test]
fn a_port_only_block_on_3478_warns_about_visio() {
    let got = warnings(&files(
        "[[rule]]\nname = \"block-stun\"\nproto = \"udp\"\nports = \"3478-3481\"\naction = \"block\"\n",
    ));
    assert_eq!(
        got,
        [
            "policy.toml:8:9: rule `block-stun` blocks udp 3478-3481 by port alone, which also hits sovereign service `visio` (udp 3478): name the services to block instead"
        ]
    );
}

#[test]
fn port_rules_that_cannot_hit_a_sovereign_service_do_not_warn() {
    let cases = [
        // Names the service it blocks.
        "[[rule]]\nname = \"r\"\nservices = [\"zoom\"]\nproto = \"udp\"\nports = 3478\naction = \"block\"\n",
        // Another protocol.
        "[[rule]]\nname = \"r\"\nproto = \"tcp\"\nports = 3478\naction = \"block\"\n",
        // Another port.
        "[[rule]]\nname = \"r\"\nproto = \"udp\"\nports = \"8801-8810\"\naction = \"block\"\n",
        // Only watches.
        "[[rule]]\nname = \"r\"\nproto = \"udp\"\nports = 3478\naction = \"monitor\"\n",
    ];
    for case in cases {
        assert_eq!(warnings(&files(case)), Vec::<String>::new(), "{case}");
    }
}

#[test]
fn a_block_by_category_jurisdiction_or_protocol_warns_about_visio() {
    // Lines 5-9 hold the rule; its name is at 6:8.
    let name = "policy.toml:6:8";
    let cases = [
        (
            "categories = [\"conferencing\"]",
            "udp 3478 from every source",
        ),
        ("jurisdictions = [\"FR\"]", "udp 3478 from every source"),
        ("jurisdictions = [\"eu\"]", "udp 3478 from every source"),
        ("proto = \"udp\"", "udp 3478 from every source"),
    ];
    for (selection, flows) in cases {
        for action in ["block", "reject"] {
            let got = warnings(&files(&format!(
                "[[rule]]\nname = \"r\"\n{selection}\naction = \"{action}\"\n"
            )));
            assert_eq!(
                got,
                [format!(
                    "{name}: rule `r` blocks sovereign service `visio` ({flows}) without naming it: only a rule that names `visio` in `services` should block it; to keep it, allow it by name in an earlier rule"
                )],
                "{selection} {action}"
            );
        }
    }
}

#[test]
fn a_sovereign_service_known_by_its_domains_is_tried_on_443() {
    let mut files = files(
        "[groups.finance]\nprefixes = [\"10.1.0.0/16\"]\n\
         [groups.research]\nprefixes = [\"10.3.0.0/16\"]\n\
         [[rule]]\nname = \"finance-no-tcp\"\ngroups = [\"finance\"]\nproto = \"tcp\"\naction = \"reject\"\n",
    );
    files[0].1 = files[0].1.replace(
        "sovereign = true\n",
        "sovereign = true\ndomains = [\"visio.example.fr\"]\n",
    );
    assert_eq!(
        warnings(&files),
        [
            "policy.toml:10:8: rule `finance-no-tcp` blocks sovereign service `visio` (tcp 443 from group `finance`) without naming it: only a rule that names `visio` in `services` should block it; to keep it, allow it by name in an earlier rule"
        ]
    );
}

#[test]
fn a_blocking_default_warns_about_sovereign_services_no_rule_decides() {
    let with_default = |policy: &str| {
        let mut files = files(policy);
        files[2].1 = files[2]
            .1
            .replace("default = \"allow\"", "default = \"block\"");
        warnings(&files)
    };
    // A block of part of the ports leaves the rest to the default.
    assert_eq!(
        with_default(
            "[groups.finance]\nprefixes = [\"10.1.0.0/16\"]\n\
             [[rule]]\nname = \"allow-zoom\"\nservices = [\"zoom\"]\naction = \"allow\"\n\
             [[rule]]\nname = \"finance-visio\"\nservices = [\"visio\"]\ngroups = [\"finance\"]\naction = \"allow\"\n"
        ),
        [
            "policy.toml:3:11: the default action blocks sovereign service `visio` (udp 3478 from sources in no group), which no rule decides: name `visio` in the `services` of a rule to decide for it (allow to keep it)"
        ]
    );
    // A rule that names Visio decides for it, whatever it does.
    for action in ["allow", "block"] {
        let policy =
            format!("[[rule]]\nname = \"visio\"\nservices = [\"visio\"]\naction = \"{action}\"\n");
        assert_eq!(with_default(&policy), Vec::<String>::new(), "{action}");
    }
}

#[test]
fn only_the_ports_that_are_blocked_are_named() {
    let mut files = files(
        "[[rule]]\nname = \"r\"\njurisdictions = [\"FR\"]\nproto = \"udp\"\nports = \"55000-56000\"\naction = \"block\"\n\
         [[rule]]\nname = \"s\"\nproto = \"udp\"\nports = \"1-3478\"\naction = \"allow\"\n",
    );
    files[0].1 = files[0].1.replace(
        "range = \"3478\"",
        "range = \"3478\"\n[[ports]]\nproto = \"udp\"\nrange = \"50000-60000\"",
    );
    files[2].1 = files[2]
        .1
        .replace("default = \"allow\"", "default = \"reject\"");
    assert_eq!(
        warnings(&files),
        [
            "policy.toml:3:11: the default action blocks sovereign service `visio` (udp 50000-54999, udp 56001-60000 from every source), which no rule decides: name `visio` in the `services` of a rule to decide for it (allow to keep it)",
            "policy.toml:6:8: rule `r` blocks sovereign service `visio` (udp 55000-56000 from every source) without naming it: only a rule that names `visio` in `services` should block it; to keep it, allow it by name in an earlier rule",
        ]
    );
}

#[test]
fn rules_that_name_the_sovereign_service_or_do_not_reach_it_do_not_warn() {
    let cases = [
        // Named with the others: meant.
        "[[rule]]\nname = \"r\"\nservices = [\"visio\", \"zoom\"]\naction = \"block\"\n",
        // Kept first.
        "[[rule]]\nname = \"keep\"\nservices = [\"visio\"]\naction = \"allow\"\n\
         [[rule]]\nname = \"r\"\ncategories = [\"conferencing\"]\naction = \"block\"\n",
        // Another protocol than Visio's.
        "[[rule]]\nname = \"r\"\njurisdictions = [\"FR\"]\nproto = \"tcp\"\naction = \"block\"\n",
        // Unrecognised flows only.
        "[[rule]]\nname = \"r\"\nunknown = true\naction = \"block\"\n",
        // Only watches.
        "[[rule]]\nname = \"r\"\ncategories = [\"conferencing\"]\naction = \"monitor\"\n",
    ];
    for case in cases {
        assert_eq!(warnings(&files(case)), Vec::<String>::new(), "{case}");
    }
}

#[test]
fn a_group_both_named_and_excepted() {
    let got = warnings(&files(
        "[groups.finance]\nprefixes = [\"10.1.0.0/16\"]\n\
         [groups.research]\nprefixes = [\"10.3.0.0/16\"]\n\
         [[rule]]\nname = \"r\"\nservices = [\"zoom\"]\ngroups = [\"finance\", \"research\"]\n\
         except_groups = [\"research\"]\naction = \"block\"\n",
    ));
    assert_eq!(
        got,
        [
            "policy.toml:13:18: group `research` is also in `groups`: the exception wins, so the rule never matches its sources"
        ]
    );
}

#[test]
fn other_warnings() {
    let got = warnings(&files(
        "[groups.empty]\nprefixes = []\n[[rule]]\nname = \"r\"\njurisdictions = [\"CN\"]\naction = \"block\"\n",
    ));
    assert_eq!(
        got,
        [
            "policy.toml:5:9: group `empty` has no prefixes: no source is ever in it",
            "policy.toml:8:8: rule `r` selects no service of the catalog: it never matches",
            "policy.toml:9:18: no service of the catalog has jurisdiction CN",
        ]
    );
    let mut extra = files("");
    extra.push((PathBuf::from("notes.txt"), String::new()));
    assert_eq!(
        warnings(&extra),
        ["notes.txt:1:1: not part of a policy directory (policy.toml, catalog/*.toml): ignored"]
    );
}

#[test]
fn the_digest_follows_every_file() {
    let base = files("");
    let digest = |files: &[(PathBuf, String)]| compile(files).policy.digest;
    let original = digest(&base);
    assert_eq!(original.len(), 64);
    assert!(original.bytes().all(|b| b.is_ascii_hexdigit()));
    // The order in which files are given does not matter.
    let reversed: Vec<_> = base.iter().rev().cloned().collect();
    assert_eq!(digest(&reversed), original);
    // A comment in the policy, or a changed catalog entry, is another policy.
    let mut policy_changed = base.clone();
    policy_changed[2].1.push_str("# reviewed\n");
    assert_ne!(digest(&policy_changed), original);
    let mut catalog_changed = base.clone();
    catalog_changed[1].1 = catalog_changed[1].1.replace(
        "operator = \"op\"",
        "operator = \"Zoom Video Communications, Inc.\"",
    );
    assert_ne!(digest(&catalog_changed), original);
    // A file that is not part of the policy is not in the digest.
    let mut with_notes = base.clone();
    with_notes.push((PathBuf::from("README.md"), "notes".into()));
    assert_eq!(digest(&with_notes), original);
}

#[test]
fn monitor_mode_passes_unparsable_packets_and_says_so() {
    let mut files = files("");
    files[2].1 = files[2]
        .1
        .replace("mode = \"enforce\"", "mode = \"monitor\"")
        .replace("unparsed = \"allow\"", "unparsed = \"block\"");
    let compilation = compile(&files);
    let got: Vec<String> = compilation
        .warnings
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        got,
        [
            "policy.toml:4:12: unparsed = \"block\" has no effect in monitor mode: unparsable packets pass and are counted by reason until the mode is enforce"
        ]
    );
    assert_eq!(
        compilation.policy.settings.unparsed_action,
        vigie_common::action::ALLOW
    );
    // The same file in enforce mode keeps the block.
    files[2].1 = files[2]
        .1
        .replace("mode = \"monitor\"", "mode = \"enforce\"");
    assert_eq!(
        compile(&files).policy.settings.unparsed_action,
        vigie_common::action::DROP
    );
}

#[test]
fn a_rule_behind_a_wider_one_never_decides() {
    let got = warnings(&files(
        "[[rule]]\nname = \"block-zoom\"\nservices = [\"zoom\"]\naction = \"block\"\n\
         [[rule]]\nname = \"zoom-media\"\nservices = [\"zoom\"]\nproto = \"udp\"\nports = \"8801-8810\"\naction = \"monitor\"\n",
    ));
    assert_eq!(
        got,
        [
            "policy.toml:10:8: rule `zoom-media` never decides: every flow it matches is decided first by rule `block-zoom` (policy.toml:6:8)"
        ]
    );
}

#[test]
fn rules_that_together_cover_a_later_one() {
    let got = warnings(&files(
        "[[rule]]\nname = \"zoom-tcp\"\nservices = [\"zoom\"]\nproto = \"tcp\"\naction = \"block\"\n\
         [[rule]]\nname = \"zoom-udp\"\nservices = [\"zoom\"]\nproto = \"udp\"\naction = \"block\"\n\
         [[rule]]\nname = \"zoom-icmp\"\nservices = [\"zoom\"]\nproto = \"icmp\"\naction = \"block\"\n\
         [[rule]]\nname = \"zoom-rest\"\nservices = [\"zoom\"]\naction = \"monitor\"\n",
    ));
    // ICMPv6 and other protocols still reach `zoom-rest`.
    assert!(got.is_empty(), "{got:?}");
    let got = warnings(&files(
        "[[rule]]\nname = \"unknown\"\nunknown = true\naction = \"monitor\"\n\
         [[rule]]\nname = \"catalogued\"\nservices = [\"zoom\", \"visio\"]\naction = \"allow\"\n\
         [[rule]]\nname = \"everything\"\naction = \"block\"\n",
    ));
    assert_eq!(
        got,
        [
            "policy.toml:14:8: rule `everything` never decides: every flow it matches is decided first by the rules before it, together"
        ]
    );
}

#[test]
fn catalog_data_older_than_the_policy_allows_is_named() {
    use toml::value::Date;
    use vigie::catalog::listing::stale;
    let mut files = files("");
    files[2].1 = files[2]
        .1
        .replace("[settings]\n", "[settings]\nstale_after_days = 30\n");
    let compilation = compile(&files);
    assert_eq!(compilation.stale_after_days, 30);
    let day = |year, month, day| Date { year, month, day };
    // Both test services were retrieved on 2024-06-01.
    assert!(stale(&compilation.catalog, day(2024, 7, 1), 30).is_empty());
    assert_eq!(
        stale(&compilation.catalog, day(2024, 7, 2), 30),
        [
            "catalog/visio.toml:1:6: the data of `visio` was retrieved 2024-06-01 (31 days ago, more than the 30 of stale_after_days): refresh it from the vendor (vigie catalog import)",
            "catalog/zoom.toml:1:6: the data of `zoom` was retrieved 2024-06-01 (31 days ago, more than the 30 of stale_after_days): refresh it from the vendor (vigie catalog import)",
        ]
    );
    // Without the setting, a year.
    assert_eq!(
        compile(&self::files("")).stale_after_days,
        policy::DEFAULT_STALE_AFTER_DAYS
    );
}

#[test]
fn a_rule_may_set_its_own_mode() {
    use vigie_common::action::{self, rule_mode};
    let compilation = compile(&files(
        "[[rule]]\nname = \"trial\"\nservices = [\"zoom\"]\naction = \"block\"\nmode = \"monitor\"\n\
         [[rule]]\nname = \"rest\"\naction = \"allow\"\nmode = \"enforce\"\n",
    ));
    let rules = &compilation.policy.rules;
    assert_eq!(rules[0].action, action::DROP | rule_mode::MONITOR);
    assert_eq!(rules[1].action, action::ALLOW | rule_mode::ENFORCE);
    let errors = policy::load_from_files(&files(
        "[[rule]]\nname = \"trial\"\naction = \"block\"\nmode = \"sometimes\"\n",
    ))
    .err()
    .unwrap()
    .to_string();
    assert_eq!(
        errors,
        "policy.toml:8:8: mode `sometimes` must be \"enforce\" or \"monitor\""
    );
}

#[test]
fn domains_stun_attributes_and_signals_claimed_twice_name_both_services() {
    let mut files = files("");
    files[1] = service(
        "zoom",
        "US",
        "domains = [\"zoom.us\", \"zoomgov.com\", \"zoom.us\"]\nstun_attributes = [0x0101]\n\
         [[ports]]\nproto = \"udp\"\nrange = \"8801-8810\"\nsignal = true",
    );
    // Later in id order than zoom, and than visio.
    files.push(service(
        "zz-clone",
        "US",
        "domains = [\"zoomgov.com\", \"visio.example.fr\"]\nstun_attributes = [0x0101, 0x0102]\n\
         [[ports]]\nproto = \"udp\"\nrange = \"8805-8900\"\nsignal = true\n\
         [[ports]]\nproto = \"tcp\"\nrange = \"8805-8900\"\nsignal = true",
    ));
    files[0].1 = files[0].1.replace(
        "sovereign = true\n",
        "sovereign = true\ndomains = [\"visio.example.fr\"]\n",
    );
    assert_eq!(
        warnings(&files),
        [
            "catalog/zoom.toml:6:38: domain zoom.us is listed twice",
            "catalog/zz-clone.toml:6:12: domain `zoomgov.com` is also listed by service `zoom` (catalog/zoom.toml:6:23): the name table keeps `zoom`",
            "catalog/zz-clone.toml:6:27: domain `visio.example.fr` is also listed by service `visio` (catalog/visio.toml:7:12): the name table keeps `visio`",
            "catalog/zz-clone.toml:7:20: STUN attribute 0x0101 is also listed by service `zoom` (catalog/zoom.toml:7:20): the STUN table keeps `zoom`",
            "catalog/zz-clone.toml:11:10: udp 8805-8810 is also a signal of service `zoom` (catalog/zoom.toml:11:10): the signal table keeps `zoom`",
        ]
    );
}

#[test]
fn a_retrieved_date_in_the_future_is_named_at_the_date() {
    use toml::value::Date;
    use vigie::catalog::listing::stale;
    let mut files = files("");
    files[1].1 = files[1].1.replace("2024-06-01", "2042-06-01");
    let compilation = compile(&files);
    let day = |year, month, day| Date { year, month, day };
    assert_eq!(
        stale(&compilation.catalog, day(2024, 6, 1), 365),
        [
            "catalog/zoom.toml:12:13: the data of `zoom` was retrieved 2042-06-01, 6574 days from today (2024-06-01): a date in the future is a mistake, and its data would never be found stale; write the day it was retrieved"
        ]
    );
    // From the day it was retrieved on, it is not in the future (Visio's data is stale then).
    let later = stale(&compilation.catalog, day(2042, 6, 1), 365);
    assert!(later.iter().all(|w| !w.contains("`zoom`")), "{later:?}");
    // `vigie check` and the daemon say it today.
    let today: Vec<String> = compilation
        .warnings_today()
        .into_iter()
        .filter(|w| w.contains("`zoom`"))
        .collect();
    assert_eq!(today.len(), 1, "{today:?}");
    assert!(
        today[0]
            .starts_with("catalog/zoom.toml:12:13: the data of `zoom` was retrieved 2042-06-01, "),
        "{today:?}"
    );
}
