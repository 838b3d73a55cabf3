//! Countries in rules: country sets, the GeoIP database vigie ships, and the address table
//! they compile into.

use std::{net::IpAddr, path::PathBuf};

use ipnet::IpNet;
use vigie::{
    compiled::CompiledPolicy,
    geoip::GeoIp,
    policy::{self, Compilation},
};
use vigie_common::policy::{Destination, condition};

fn geoip_path() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../policies/geoip/geo-whois-asn-country.mmdb"
    )
    .to_owned()
}

fn zoom() -> (PathBuf, String) {
    (
        PathBuf::from("catalog/zoom.toml"),
        "id = \"zoom\"\nname = \"Zoom\"\noperator = \"Zoom Video Communications, Inc.\"\njurisdiction = \"US\"\n\
         category = \"conferencing\"\nprefixes = [\"3.7.35.0/25\"]\n[source]\nvendor = \"test\"\nretrieved = 2024-06-01\n"
            .to_owned(),
    )
}

fn files(geoip: &str, body: &str) -> Vec<(PathBuf, String)> {
    let settings = format!(
        "[settings]\nmode = \"enforce\"\ndefault = \"allow\"\nunparsed = \"allow\"\n{geoip}\n"
    );
    vec![
        zoom(),
        (PathBuf::from("policy.toml"), format!("{settings}{body}")),
    ]
}

fn compile(files: &[(PathBuf, String)]) -> Compilation {
    policy::load_from_files(files).unwrap_or_else(|e| panic!("does not compile:\n{e}"))
}

fn errors(files: &[(PathBuf, String)]) -> Vec<String> {
    match policy::load_from_files(files) {
        Ok(_) => panic!("compiles"),
        Err(e) => e.to_string().lines().map(str::to_owned).collect(),
    }
}

/// What the longest-prefix match of the compiled table gives an address.
fn lookup(policy: &CompiledPolicy, addr: IpAddr) -> Option<Destination> {
    let v4 = policy
        .destinations_v4
        .iter()
        .map(|(n, d)| (IpNet::V4(*n), *d));
    let v6 = policy
        .destinations_v6
        .iter()
        .map(|(n, d)| (IpNet::V6(*n), *d));
    v4.chain(v6)
        .filter(|(n, _)| n.contains(&addr))
        .max_by_key(|(n, _)| n.prefix_len())
        .map(|(_, d)| d)
}

fn setting() -> String {
    format!("geoip = \"{}\"", geoip_path())
}

#[test]
fn a_country_rule_loads_that_country_and_no_other() {
    let db = GeoIp::open(geoip_path().as_ref()).unwrap();
    let compilation = compile(&files(
        &setting(),
        "[[rule]]\nname = \"keep-zoom\"\nservices = [\"zoom\"]\naction = \"allow\"\n\
         [[rule]]\nname = \"block-cn-ru\"\ncountries = [\"CN\", \"RU\"]\naction = \"block\"\n",
    ));
    let policy = &compilation.policy;
    let rule = &policy.rules[1];
    assert_eq!(rule.conditions & condition::CLASSES, condition::CLASSES);
    assert_eq!(rule.classes, 1 << 1, "the class bit is the rule's index");
    assert!(
        compilation.country_entries.v4 > 100,
        "{:?}",
        compilation.country_entries
    );
    assert!(
        compilation.country_entries.v6 > 100,
        "{:?}",
        compilation.country_entries
    );
    // Every address the table tags is in China or Russia by the database.
    for (net, d) in policy
        .destinations_v4
        .iter()
        .filter(|(_, d)| d.classes != 0)
        .step_by(97)
    {
        let code = db.country(IpAddr::V4(net.network())).unwrap();
        assert!(code == "CN" || code == "RU", "{net} is {code}");
        assert_eq!(d.classes, 1 << 1);
    }
    // And addresses elsewhere are not tagged.
    let fr: IpAddr = "193.51.24.1".parse().unwrap();
    assert_eq!(db.country(fr).as_deref(), Some("FR"));
    assert_eq!(lookup(policy, fr), None);
    let cn: IpAddr = "1.2.4.8".parse().unwrap();
    assert_eq!(db.country(cn).as_deref(), Some("CN"));
    assert_eq!(
        lookup(policy, cn).map(|d| (d.service, d.classes)),
        Some((0, 1 << 1))
    );
}

#[test]
fn a_service_prefix_keeps_its_service_and_gets_its_country() {
    let db = GeoIp::open(geoip_path().as_ref()).unwrap();
    let zoom: IpAddr = "3.7.35.1".parse().unwrap();
    let country = db.country(zoom).unwrap();
    let compilation = compile(&files(
        &setting(),
        &format!("[[rule]]\nname = \"watch\"\ncountries = [\"{country}\"]\naction = \"monitor\"\n"),
    ));
    let found = lookup(&compilation.policy, zoom).unwrap();
    assert_eq!(compilation.policy.service_name(found.service), Some("zoom"));
    assert_eq!(found.classes, 1);
}

#[test]
fn country_sets_are_defined_once_and_used_for_countries_and_jurisdictions() {
    let compilation = compile(&files(
        &setting(),
        "[country_sets]\nfive-eyes = [\"US\", \"GB\", \"CA\", \"AU\", \"NZ\"]\n\
         [[rule]]\nname = \"operators\"\njurisdictions = [\"five-eyes\"]\naction = \"block\"\n\
         [[rule]]\nname = \"outside-europe\"\ncountries = [\"non-eea\"]\naction = \"monitor\"\n",
    ));
    let policy = &compilation.policy;
    // Zoom's operator is under US jurisdiction: the first rule selects it.
    let zoom_id = (1..policy.services.len() as u32)
        .find(|&id| policy.service_name(id) == Some("zoom"))
        .unwrap();
    assert_ne!(policy.rules[0].services[0] & (1 << zoom_id), 0);
    let db = GeoIp::open(geoip_path().as_ref()).unwrap();
    let fr: IpAddr = "193.51.24.1".parse().unwrap();
    let cn: IpAddr = "1.2.4.8".parse().unwrap();
    assert_eq!(db.country(fr).as_deref(), Some("FR"));
    assert_eq!(
        lookup(policy, fr).map_or(0, |d| d.classes),
        0,
        "France is in the EEA"
    );
    assert_eq!(lookup(policy, cn).map_or(0, |d| d.classes), 1 << 1);
}

#[test]
fn bad_sets_and_a_missing_database_name_their_place() {
    let got = errors(&files(
        &setting(),
        "[country_sets]\neu = [\"FR\"]\nallies = [\"US\", \"nato\"]\n\
         [[rule]]\nname = \"r\"\ncountries = [\"atlantis\"]\naction = \"block\"\n",
    ));
    assert_eq!(
        got,
        [
            "policy.toml:7:1: `eu` is a built-in country set (eu, eea) or starts with `non-`: choose another name",
            "policy.toml:8:17: `nato` is neither a country code (two capital letters) nor a built-in set (eu, eea)",
            "policy.toml:11:14: `atlantis` is neither a country code (two capital letters), a built-in set (eu, eea), a set of [country_sets], nor `non-` and a set",
        ]
    );
    let got = errors(&files(
        "geoip = \"/nonexistent/country.mmdb\"",
        "[[rule]]\nname = \"r\"\ncountries = [\"CN\"]\naction = \"block\"\n",
    ));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("policy.toml:5:9: GeoIP database /nonexistent/country.mmdb: "),
        "{got:?}"
    );
    // Without the setting, the database beside policy.toml is the default, and its absence is
    // reported at the first rule that needs it.
    let got = errors(&files(
        "",
        "[[rule]]\nname = \"r\"\ncountries = [\"CN\"]\naction = \"block\"\n",
    ));
    assert!(
        got[0].starts_with("policy.toml:8:13: GeoIP database geoip/geo-whois-asn-country.mmdb: "),
        "{got:?}"
    );
}

#[test]
fn a_policy_without_countries_never_reads_the_database() {
    let compilation = compile(&files(
        "geoip = \"/nonexistent/country.mmdb\"",
        "[[rule]]\nname = \"r\"\nservices = [\"zoom\"]\naction = \"block\"\n",
    ));
    assert_eq!(
        compilation.country_entries,
        policy::CountryEntries::default()
    );
    assert_eq!(compilation.policy.destinations_v4.len(), 1);
}

#[test]
fn a_country_block_over_a_sovereign_service_address_warns() {
    let visio = (
        PathBuf::from("catalog/visio.toml"),
        "id = \"visio\"\nname = \"Visio\"\noperator = \"DINUM\"\njurisdiction = \"FR\"\n\
         category = \"conferencing\"\nsovereign = true\nprefixes = [\"193.51.24.0/24\"]\n\
         [source]\nvendor = \"test\"\nretrieved = 2024-06-01\n[[ports]]\nproto = \"udp\"\nrange = \"3478\"\n"
            .to_owned(),
    );
    let warnings = |country: &str| {
        let mut files = files(
            &setting(),
            &format!("[[rule]]\nname = \"r\"\ncountries = [\"{country}\"]\naction = \"block\"\n"),
        );
        files.push(visio.clone());
        let compilation = compile(&files);
        compilation
            .warnings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    // Visio's prefix is in France by the database: its flows carry the rule's class.
    assert_eq!(
        warnings("FR"),
        [
            "policy.toml:7:8: rule `r` blocks sovereign service `visio` (udp 3478 from every source) without naming it: only a rule that names `visio` in `services` should block it; to keep it, allow it by name in an earlier rule"
        ]
    );
    assert_eq!(warnings("CN"), Vec::<String>::new());
}

#[test]
fn country_codes_that_no_country_has_are_refused_with_the_fix() {
    let got = errors(&files(
        &setting(),
        "[country_sets]\nallies = [\"UK\", \"FR\", \"EL\"]\npartners = []\n\
         [[rule]]\nname = \"r\"\ncountries = [\"UK\", \"GB\"]\njurisdictions = [\"EU\", \"QQ\"]\n\
         action = \"block\"\n",
    ));
    assert_eq!(
        got,
        [
            "policy.toml:7:11: `UK` is not an assigned ISO 3166-1 alpha-2 country code: the United Kingdom's code is GB",
            "policy.toml:7:23: `EL` is not an assigned ISO 3166-1 alpha-2 country code: Greece's code is GR (EL is the European Union's abbreviation)",
            "policy.toml:8:1: country set `partners` is empty: a rule would match no country with it, and every country with `non-partners`; list its countries or remove it",
            "policy.toml:11:14: `UK` is not an assigned ISO 3166-1 alpha-2 country code: the United Kingdom's code is GB",
            "policy.toml:12:18: `EU` is not an assigned ISO 3166-1 alpha-2 country code: for the member states of the European Union, write the set `eu`",
            "policy.toml:12:24: `QQ` is not an assigned ISO 3166-1 alpha-2 country code: no country has it",
        ]
    );
    // In the catalog too.
    let mut files = files("", "");
    files[0].1 = files[0].1.replace("\"US\"", "\"UK\"");
    assert_eq!(
        errors(&files),
        [
            "catalog/zoom.toml:4:16: `UK` is not an assigned ISO 3166-1 alpha-2 country code: the United Kingdom's code is GB"
        ]
    );
}

#[test]
fn assigned_codes_and_kosovo_are_countries() {
    // XK is no ISO assignment, but it is Kosovo's code in the registries and the database.
    let compilation = compile(&files(
        &setting(),
        "[country_sets]\nallies = [\"GB\", \"GR\", \"XK\", \"eu\"]\n\
         [[rule]]\nname = \"r\"\ncountries = [\"allies\", \"SS\"]\naction = \"monitor\"\n",
    ));
    let db = GeoIp::open(geoip_path().as_ref()).unwrap();
    let kosovo = compilation.policy.destinations_v4.iter().find(|(n, d)| {
        d.classes != 0 && db.country(IpAddr::V4(n.network())).as_deref() == Some("XK")
    });
    assert!(kosovo.is_some(), "no network of Kosovo was loaded");
}
