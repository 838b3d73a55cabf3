//! Rejected policies: each error says what is wrong and where (path:line:column), and every
//! error of a directory comes out at once.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use vigie::policy::{self, PolicyErrors};

#[path = "support/files.rs"]
mod files;
use files::{SETTINGS, service};

/// Two services and the policy text after `SETTINGS` (which takes lines 1-4).
fn files(policy: &str) -> Vec<(PathBuf, String)> {
    vec![
        service("alpha", "prefixes = [\"192.0.2.0/25\"]"),
        service("beta", ""),
        (PathBuf::from("policy.toml"), format!("{SETTINGS}{policy}")),
    ]
}

fn errors_of(files: &[(PathBuf, String)]) -> Vec<String> {
    match policy::load_from_files(files) {
        Ok(_) => panic!("compiled"),
        Err(PolicyErrors(errors)) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn errors(policy: &str) -> Vec<String> {
    errors_of(&files(policy))
}

#[test]
fn unknown_service() {
    let got =
        errors("[[rule]]\nname = \"r\"\nservices = [\"alpha\", \"zom\"]\naction = \"block\"\n");
    assert_eq!(
        got,
        ["policy.toml:7:22: unknown service `zom`: no catalog/zom.toml"]
    );
}

#[test]
fn unknown_category_and_bad_jurisdiction() {
    let got = errors(
        "[[rule]]\nname = \"r\"\ncategories = [\"chat\"]\njurisdictions = [\"usa\"]\naction = \"block\"\n",
    );
    assert_eq!(
        got,
        [
            "policy.toml:7:15: unknown category `chat`: no service of the catalog has it",
            "policy.toml:8:18: jurisdiction `usa` is not an ISO 3166-1 alpha-2 code (like \"US\"), a built-in set (eu, eea), a set of [country_sets], nor `non-` and a set",
        ]
    );
}

#[test]
fn unknown_group() {
    let got = errors(
        "[groups.finance]\nprefixes = [\"10.1.0.0/16\"]\n[[rule]]\nname = \"r\"\ngroups = [\"finance\"]\n\
         except_groups = [\"diplomacy\"]\naction = \"block\"\n",
    );
    assert_eq!(
        got,
        ["policy.toml:10:18: unknown group `diplomacy`: define it under [groups.diplomacy]"]
    );
}

#[test]
fn duplicate_rule_name() {
    let got = errors(
        "[[rule]]\nname = \"r\"\naction = \"allow\"\n[[rule]]\nname = \"r\"\naction = \"block\"\n",
    );
    assert_eq!(
        got,
        ["policy.toml:9:8: rule name `r` is already used at policy.toml:6:8"]
    );
}

#[test]
fn bad_names() {
    let got = errors(
        "[groups.none]\nprefixes = []\n[[rule]]\nname = \"Keep Sovereign\"\naction = \"allow\"\n",
    );
    assert_eq!(
        got,
        [
            "policy.toml:5:9: group `none` is reserved: it names the absence of a group",
            "policy.toml:8:8: rule name `Keep Sovereign` may only use a-z, 0-9 and '-'",
        ]
    );
}

#[test]
fn bad_cidr_and_host_bits_and_shared_source_prefix() {
    let got = errors(
        "[groups.a]\nprefixes = [\"10.1.0.0/16\", \"10.1.0/16\"]\n\
         [groups.b]\nprefixes = [\"10.1.0.0/16\", \"fd00:1::1/48\"]\n",
    );
    assert_eq!(
        got,
        [
            "policy.toml:6:28: `10.1.0/16` is not an IPv4 or IPv6 prefix (like 192.0.2.0/24 or 2001:db8::/32)",
            "policy.toml:8:13: prefix 10.1.0.0/16 already belongs to group `a` (policy.toml:6:13)",
            "policy.toml:8:28: prefix `fd00:1::1/48` has host bits set: did you mean `fd00:1::/48`?",
        ]
    );
}

#[test]
fn ipv4_mapped_prefixes_are_refused_with_their_ipv4_form() {
    let mut files =
        files("[groups.diplomacy]\nprefixes = [\"fd00:2::/48\", \"::ffff:10.2.0.0/112\"]\n");
    files[1] = service("beta", "prefixes = [\"::ffff:198.51.100.0/120\"]");
    assert_eq!(
        errors_of(&files),
        [
            "catalog/beta.toml:6:13: prefix `::ffff:198.51.100.0/120` is IPv4-mapped IPv6, which no packet is matched against (IPv4 packets are looked up as IPv4): write `198.51.100.0/24`",
            "policy.toml:6:28: prefix `::ffff:10.2.0.0/112` is IPv4-mapped IPv6, which no packet is matched against (IPv4 packets are looked up as IPv4): write `10.2.0.0/16`",
        ]
    );
}

#[test]
fn catalog_prefix_with_host_bits_names_the_prefix() {
    let mut files = files("");
    files[1] = service(
        "beta",
        "prefixes = [\"198.51.100.0/24\", \"198.51.100.7/24\"]",
    );
    assert_eq!(
        errors_of(&files),
        [
            "catalog/beta.toml:6:32: prefix `198.51.100.7/24` has host bits set: did you mean `198.51.100.0/24`?"
        ]
    );
}

#[test]
fn ports() {
    let got = errors(
        "[[rule]]\nname = \"a\"\nproto = \"udp\"\nports = \"3481-3478\"\naction = \"block\"\n\
         [[rule]]\nname = \"b\"\nports = 443\naction = \"block\"\n\
         [[rule]]\nname = \"c\"\nproto = \"icmp\"\nports = \"1\"\naction = \"block\"\n\
         [[rule]]\nname = \"d\"\nproto = \"sctp\"\nports = \"70000\"\naction = \"block\"\n",
    );
    assert_eq!(
        got,
        [
            "policy.toml:8:9: port range 3481-3478 is reversed: write 3478-3481",
            "policy.toml:12:9: ports need proto = \"tcp\" or \"udp\"",
            "policy.toml:17:9: ports need proto = \"tcp\" or \"udp\"",
            "policy.toml:21:9: protocol `sctp` must be one of tcp, udp, icmp, icmpv6",
            "policy.toml:22:9: `70000` is not a port (0-65535) nor a range like \"8801-8810\"",
        ]
    );
}

#[test]
fn reject_is_a_rule_action_but_not_an_unparsed_one() {
    // An unparsable packet has no flow to answer for: it passes or is dropped.
    let got = errors_of(&[
        service("alpha", ""),
        (
            PathBuf::from("policy.toml"),
            "[settings]\nmode = \"enforce\"\ndefault = \"reject\"\nunparsed = \"reject\"\n\
             [[rule]]\nname = \"r\"\nservices = [\"alpha\"]\naction = \"rejekt\"\n"
                .into(),
        ),
    ]);
    assert_eq!(
        got,
        [
            "policy.toml:4:12: action `reject` must be one of allow, block",
            "policy.toml:8:10: action `rejekt` must be one of allow, block, reject, monitor",
        ]
    );
}

#[test]
fn bad_settings() {
    let got = errors_of(&[
        service("alpha", ""),
        (
            PathBuf::from("policy.toml"),
            "[settings]\nmode = \"audit\"\ndefault = \"drop\"\nunparsed = \"allow\"\n".into(),
        ),
    ]);
    assert_eq!(
        got,
        [
            "policy.toml:2:8: mode `audit` must be \"enforce\" or \"monitor\"",
            "policy.toml:3:11: action `drop` must be one of allow, block, reject, monitor",
        ]
    );
}

#[test]
fn empty_lists_and_contradictions() {
    let got = errors(
        "[[rule]]\nname = \"a\"\nservices = []\naction = \"block\"\n\
         [[rule]]\nname = \"b\"\nunknown = true\ncategories = [\"conferencing\"]\naction = \"block\"\n",
    );
    assert_eq!(
        got,
        [
            "policy.toml:7:12: `services` is empty: remove the key to leave it unconstrained",
            "policy.toml:11:11: unknown = true matches flows whose service was not recognised: it cannot be combined with services, categories or jurisdictions",
        ]
    );
}

#[test]
fn unknown_false_is_refused() {
    // It reads as "recognised flows only", but would match any destination.
    let got = errors(
        "[[rule]]\nname = \"r\"\nunknown = false\nproto = \"udp\"\naction = \"block\"\n\
         [[rule]]\nname = \"s\"\nunknown = false\nservices = [\"zom\"]\naction = \"block\"\n",
    );
    assert_eq!(
        got,
        [
            "policy.toml:7:11: unknown = false means nothing: only unknown = true (flows whose service was not recognised) does; remove the key to match any destination",
            "policy.toml:12:11: unknown = false means nothing: only unknown = true (flows whose service was not recognised) does; remove the key to match any destination",
            "policy.toml:13:13: unknown service `zom`: no catalog/zom.toml",
        ]
    );
}

#[test]
fn unknown_keys_are_refused() {
    let got = errors("[[rule]]\nname = \"r\"\nservice = [\"alpha\"]\naction = \"block\"\n");
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with("policy.toml:7:1: unknown field `service`, expected one of"),
        "{got:?}"
    );
    let mut files = files("");
    files[0].1.push_str("colour = \"blue\"\n");
    let got = errors_of(&files);
    assert!(
        got[0].starts_with("catalog/alpha.toml:10:1: unknown field `colour`"),
        "{got:?}"
    );
}

#[test]
fn a_rule_that_does_not_read_hides_no_other_error() {
    let got = errors(
        "[groups.a]\nprefixes = [\"10.0.0.0/8\"]\nsize = 3\n\
         [[rule]]\nname = \"r\"\nactoin = \"block\"\n\
         [[rule]]\nname = \"s\"\nservices = [\"zom\"]\ngroups = [\"a\"]\naction = \"block\"\n",
    );
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(
        got[0].starts_with(
            "policy.toml:7:1: unknown field `size`, expected `prefixes` or `description`"
        ),
        "{got:?}"
    );
    assert!(
        got[1].starts_with("policy.toml:10:1: unknown field `actoin`"),
        "{got:?}"
    );
    assert_eq!(
        got[2],
        "policy.toml:13:13: unknown service `zom`: no catalog/zom.toml"
    );
}

#[test]
fn sections() {
    let got = errors_of(&[
        service("alpha", ""),
        (
            PathBuf::from("policy.toml"),
            "[rules]\nname = \"r\"\n[rule]\nname = \"s\"\n".into(),
        ),
    ]);
    assert_eq!(
        got,
        [
            "policy.toml:1:1: missing [settings]: mode, default and unparsed are required",
            "policy.toml:1:2: unknown key `rules`, expected one of `settings`, `country_sets`, `groups`, `rule`",
            "policy.toml:3:1: `rule` must be an array of tables: write [[rule]]",
        ]
    );
}

#[test]
fn an_unknown_section_lists_country_sets_among_the_valid_ones() {
    let got = errors("[country-sets]\nallies = [\"eu\"]\n");
    assert_eq!(
        got,
        [
            "policy.toml:5:2: unknown key `country-sets`, expected one of `settings`, `country_sets`, `groups`, `rule`"
        ]
    );
}

#[test]
fn every_syntax_error_of_a_file() {
    let got = errors("[[rule]]\nname = = \"r\"\n[[rule]]\nname = \"s\"\nname = \"t\"\n");
    // The parser goes on after a mistake, and may say more than one thing about it.
    assert_eq!(
        got.first().map(String::as_str),
        Some("policy.toml:6:8: extra `=`, expected nothing")
    );
    assert_eq!(
        got.last().map(String::as_str),
        Some("policy.toml:9:1: duplicate key")
    );
}

#[test]
fn toml_syntax_errors_have_a_place() {
    let got = errors("[[rule]]\nname = \"r\naction = \"block\"\n");
    assert_eq!(got.len(), 1);
    assert!(got[0].starts_with("policy.toml:6:"), "{got:?}");
}

#[test]
fn service_id_must_equal_the_file_stem() {
    let mut files = files("");
    files[1].1 = files[1].1.replace("id = \"beta\"", "id = \"gamma\"");
    assert_eq!(
        errors_of(&files),
        [
            "catalog/beta.toml:1:6: service id `gamma` must equal the file name `beta` (without .toml)"
        ]
    );
}

#[test]
fn a_file_given_twice() {
    let mut files = files("");
    files.push((
        PathBuf::from("./catalog/alpha.toml"),
        service("alpha", "").1,
    ));
    assert_eq!(
        errors_of(&files),
        ["./catalog/alpha.toml:1:1: catalog/alpha.toml is given twice"]
    );
}

#[test]
fn missing_policy_file() {
    assert_eq!(
        errors_of(&[service("alpha", "")]),
        ["policy.toml:1:1: missing policy.toml"]
    );
}

#[test]
fn too_many_rules() {
    let rules = (0..65)
        .map(|i| format!("[[rule]]\nname = \"r{i}\"\naction = \"allow\"\n"))
        .collect::<Vec<_>>()
        .concat();
    // Rule 65 starts on line 4 + 64 * 3 + 1.
    assert_eq!(
        errors(&rules),
        ["policy.toml:197:1: too many rules: the kernel holds at most 64"]
    );
}

#[test]
fn too_many_rules_with_countries_is_an_error_not_a_crash() {
    // Each rule with countries takes the class bit of its index: there is none for the 65th.
    let rules = (0..66)
        .map(|i| format!("[[rule]]\nname = \"r{i}\"\ncountries = [\"CN\"]\naction = \"block\"\n"))
        .collect::<Vec<_>>()
        .concat();
    // Rule 65 starts on line 4 + 64 * 4 + 1.
    assert_eq!(
        errors(&rules),
        ["policy.toml:261:1: too many rules: the kernel holds at most 64"]
    );
}

#[test]
fn too_many_groups() {
    // Names g00..g63 sort in number order: g63 is the 64th group, one past the kernel's 63.
    let groups = (0..64)
        .map(|i| format!("[groups.g{i:02}]\nprefixes = [\"10.{i}.0.0/16\"]\n"))
        .collect::<Vec<_>>()
        .concat();
    assert_eq!(
        errors(&groups),
        ["policy.toml:131:9: too many groups: the kernel holds at most 63"]
    );
}

#[test]
fn too_many_services() {
    let mut files: Vec<_> = (0..128).map(|i| service(&format!("s{i:03}"), "")).collect();
    files.push((PathBuf::from("policy.toml"), SETTINGS.to_owned()));
    assert_eq!(
        errors_of(&files),
        ["catalog/s127.toml:1:6: too many services: the kernel holds at most 127"]
    );
}

#[test]
fn every_error_of_every_file_comes_out_at_once() {
    let mut files = files(
        "[[rule]]\nname = \"a\"\nservices = [\"zom\"]\naction = \"rejekt\"\n\
         [[rule]]\nname = \"a\"\ngroups = [\"nobody\"]\naction = \"block\"\n",
    );
    files[0].1 = files[0].1.replace("\"US\"", "\"U\"");
    files[1].1 = files[1].1.replace("2024-06-01", "2024-06-01T00:00:00Z");
    let got = errors_of(&files);
    assert_eq!(
        got,
        [
            "catalog/alpha.toml:4:16: jurisdiction `U` is not an ISO 3166-1 alpha-2 code (two capital letters, like \"US\")",
            "catalog/beta.toml:9:13: retrieved must be a date like 2024-06-01, without a time",
            "policy.toml:7:13: unknown service `zom`: no catalog/zom.toml",
            "policy.toml:8:10: action `rejekt` must be one of allow, block, reject, monitor",
            "policy.toml:10:8: rule name `a` is already used at policy.toml:6:8",
            "policy.toml:11:11: unknown group `nobody`: define it under [groups.nobody]",
        ]
    );
    let shown = policy::load_from_files(&files).unwrap_err().to_string();
    assert_eq!(shown.lines().count(), 6);
    assert_eq!(shown.lines().next(), Some(got[0].as_str()));
}

/// A fresh directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("vigie-policy-errors-{}-{n}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, text: &str) {
        let path = self.0.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn dir_errors(dir: &Path) -> Vec<String> {
    policy::load_dir(dir)
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn missing_catalog_directory() {
    let dir = TempDir::new();
    dir.write(
        "policy.toml",
        "[settings]\nmode = \"enforce\"\ndefault = \"allow\"\nunparsed = \"allow\"\n",
    );
    let catalog = dir.0.join("catalog");
    assert_eq!(
        dir_errors(&dir.0),
        [format!(
            "{}:1:1: missing catalog directory: each service is described in catalog/<id>.toml",
            catalog.display()
        )]
    );
}

#[test]
fn errors_from_a_directory_name_its_files() {
    let dir = TempDir::new();
    dir.write(
        "policy.toml",
        "[settings]\nmode = \"enforce\"\ndefault = \"allow\"\nunparsed = \"allow\"\nextra = 1\n",
    );
    let (_, text) = service("alpha", "prefixes = [\"192.0.2.1/24\"]");
    dir.write("catalog/alpha.toml", &text);
    dir.write("catalog/README.md", "not a service");
    let got = dir_errors(&dir.0);
    assert_eq!(got.len(), 2, "{got:?}");
    let alpha = dir.0.join("catalog/alpha.toml");
    assert_eq!(
        got[0],
        format!(
            "{}:6:13: prefix `192.0.2.1/24` has host bits set: did you mean `192.0.2.0/24`?",
            alpha.display()
        )
    );
    assert!(
        got[1].starts_with(&format!(
            "{}:5:1: unknown field `extra`",
            dir.0.join("policy.toml").display()
        )),
        "{got:?}"
    );
}

#[test]
fn a_missing_directory_is_two_clear_errors() {
    let dir = TempDir::new();
    let absent = dir.0.join("absent");
    let got = dir_errors(&absent);
    assert_eq!(
        got,
        [
            format!(
                "{}:1:1: missing catalog directory: each service is described in catalog/<id>.toml",
                absent.join("catalog").display()
            ),
            format!(
                "{}:1:1: missing policy.toml",
                absent.join("policy.toml").display()
            ),
        ]
    );
}

#[test]
fn signal_ports_that_cannot_tell_a_service() {
    let mut all = files("");
    let (path, mut text) = service("gamma", "");
    text.push_str(
        "[[ports]]\nproto = \"tcp\"\nrange = \"443\"\nsignal = true\n\
         [[ports]]\nproto = \"udp\"\nrange = \"40000-49999\"\nsignal = true\n\
         [[ports]]\nproto = \"udp\"\nrange = \"8801-8810\"\nsignal = true\n",
    );
    all.push((path, text));
    assert_eq!(
        errors_of(&all),
        [
            "catalog/gamma.toml:13:10: port 443 cannot be a signal: many services use it, the sovereign ones too",
            "catalog/gamma.toml:17:10: a signal range holds 10000 ports; at most 1024 (each is a kernel entry)",
        ]
    );
}

#[test]
fn a_signal_on_the_ports_of_a_sovereign_service_is_refused() {
    let mut all = files("");
    all.push(service(
        "visio",
        "sovereign = true\n[[ports]]\nproto = \"udp\"\nrange = \"50000-60000\"",
    ));
    let (path, mut text) = service("gamma", "");
    text.push_str(
        "[[ports]]\nproto = \"udp\"\nrange = \"59990-60010\"\nsignal = true\n\
         [[ports]]\nproto = \"tcp\"\nrange = \"59990-60010\"\nsignal = true\n",
    );
    all.push((path, text));
    // Only UDP overlaps: TCP 59990-60010 is no port of Visio's.
    assert_eq!(
        errors_of(&all),
        [
            "catalog/gamma.toml:13:10: udp 59990-60010 cannot be a signal: sovereign service `visio` uses udp 50000-60000 (catalog/visio.toml:1:6), and its flows would be taken for this service"
        ]
    );
}

#[test]
fn dns_learning_bounds() {
    let with = |settings: &str| {
        let mut all = files("");
        all.last_mut().unwrap().1 = format!("{SETTINGS}{settings}");
        errors_of(&all)
    };
    assert_eq!(
        with("dns_min_ttl = 600\ndns_max_ttl = 60\n"),
        ["policy.toml:5:15: dns_min_ttl (600 s) is above dns_max_ttl (60 s)"]
    );
    assert_eq!(
        with("dns_max_ttl = 0\n"),
        ["policy.toml:5:15: dns_max_ttl must be at least 1 s"]
    );
    assert_eq!(
        with("dns_max_entries = 100000\n"),
        [
            "policy.toml:5:19: dns_max_entries must be 1 to 52428 (the kernel's learned table holds this many per policy slot)"
        ]
    );
}

#[test]
fn a_sovereign_service_domain_or_stun_attribute_handed_to_another_service_is_refused() {
    let mut all = files("");
    all.push(service(
        "visio",
        "sovereign = true\ndomains = [\"visio.numerique.gouv.fr\"]\nstun_attributes = [0x8054]",
    ));
    // Before visio in id order: the tables would keep teams for both.
    all.push(service(
        "teams",
        "domains = [\"teams.microsoft.com\", \"visio.numerique.gouv.fr\"]\nstun_attributes = [0x8054]",
    ));
    // After visio, but a longer domain wins whatever the order.
    all.push(service(
        "zoom",
        "domains = [\"zoom.us\", \"webconf.visio.numerique.gouv.fr\", \"numerique.gouv.fr\"]",
    ));
    assert_eq!(
        errors_of(&all),
        [
            "catalog/teams.toml:6:35: domain `visio.numerique.gouv.fr` is a domain of sovereign service `visio` (catalog/visio.toml:7:12): `teams` would take its server names, and a policy that blocks `teams` would block `visio`",
            "catalog/teams.toml:7:20: STUN attribute 0x8054 is also listed by sovereign service `visio` (catalog/visio.toml:8:20): the STUN table keeps `teams`, first in id order, and a policy that blocks `teams` would block `visio`",
            "catalog/zoom.toml:6:23: domain `webconf.visio.numerique.gouv.fr` is under `visio.numerique.gouv.fr`, a domain of sovereign service `visio` (catalog/visio.toml:7:12): `zoom` would take its server names, and a policy that blocks `zoom` would block `visio`",
        ]
    );
}
