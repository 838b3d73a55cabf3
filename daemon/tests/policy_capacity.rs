//! Policies that the kernel's maps cannot hold are refused when they compile (by `vigie check`,
//! and by a reload before the kernel is touched), at the place that makes them overflow.

mod support;

use std::{fmt::Write as _, path::PathBuf};

use support::mmdb::{self, Value};
use vigie::policy::{self, PolicyErrors};

#[path = "support/files.rs"]
mod files;
use files::{SETTINGS, service};

fn policy(text: &str) -> (PathBuf, String) {
    (PathBuf::from("policy.toml"), format!("{SETTINGS}{text}"))
}

fn errors_of(files: &[(PathBuf, String)]) -> Vec<String> {
    match policy::load_from_files(files) {
        Ok(_) => panic!("compiled"),
        Err(PolicyErrors(errors)) => errors.iter().map(ToString::to_string).collect(),
    }
}

/// A TOML array of `values`, one a line, from the line after `key = [`.
fn lines(key: &str, values: impl Iterator<Item = String>) -> String {
    let mut out = format!("{key} = [\n");
    for value in values {
        let _ = writeln!(out, "    {value},");
    }
    out.push(']');
    out
}

fn signal(range: &str) -> String {
    format!("[[ports]]\nproto = \"udp\"\nrange = \"{range}\"\nsignal = true")
}

#[test]
fn signal_ports_past_the_table_are_refused_at_the_entry_that_overflows_it() {
    let files = [
        service("alpha", &signal("10000-10999")),
        service("beta", &signal("20000-20999")),
        service(
            "gamma",
            &format!("{}\n{}", signal("30000-30039"), signal("31000-31999")),
        ),
        policy(""),
    ];
    // 2,000 ports, then 2,040, then 3,040: the kernel's table holds 2,048 per slot. Gamma's second entry
    // (its `signal = true` on line 13) is past it.
    assert_eq!(
        errors_of(&files),
        [
            "catalog/gamma.toml:13:10: too many vendor signal ports: the policy needs 3040, the kernel holds 2048 per policy slot; the catalog's entries, in service id order, go past it here"
        ]
    );
}

#[test]
fn domains_and_stun_attributes_past_their_tables() {
    // 4,096 domains and 256 STUN attributes per slot; each value on its own line from line 7.
    let domains = lines(
        "domains",
        (0..4097).map(|i| format!("\"d{i}.example.org\"")),
    );
    let stun = lines(
        "stun_attributes",
        (0..257).map(|i| format!("{}", 0x9000 + i)),
    );
    let files = [
        service("alpha", &domains),
        service("beta", &stun),
        policy(""),
    ];
    assert_eq!(
        errors_of(&files),
        [
            "catalog/alpha.toml:4103:5: too many catalog domains: the policy needs 4097, the kernel holds 4096 per policy slot; the catalog's entries, in service id order, go past it here",
            "catalog/beta.toml:263:5: too many vendor STUN attributes: the policy needs 257, the kernel holds 256 per policy slot; the catalog's entries, in service id order, go past it here",
        ]
    );
}

#[test]
fn group_prefixes_past_the_source_table() {
    // Every other /24: no two merge. 8,192 IPv4 source prefixes per slot.
    let prefixes = lines(
        "prefixes",
        (0..8193u32).map(|i| format!("\"10.{}.{}.0/24\"", i / 128, i % 128 * 2)),
    );
    let files = [
        service("alpha", ""),
        policy(&format!("[groups.finance]\n{prefixes}\n")),
    ];
    // `[groups.finance]` on line 5, the prefixes from line 7.
    assert_eq!(
        errors_of(&files),
        [
            "policy.toml:8199:5: too many IPv4 source prefixes: the policy needs 8193, the kernel holds 8192 per policy slot; the groups' prefixes, in group name order, go past it here"
        ]
    );
}

/// /25 networks in `count` different /24s from 10.0.0.0: each needs a group of the IPv4 table.
fn halves(count: u32) -> impl Iterator<Item = String> {
    (0..count).map(|i| format!("10.{}.{}.0/25", i / 256 % 256, i % 256))
}

#[test]
fn catalog_prefixes_past_the_ipv4_groups() {
    // 32,768 groups of the IPv4 table per slot.
    let v4 = lines("prefixes", halves(32_769).map(|p| format!("\"{p}\"")));
    let files = [service("alpha", &v4), policy("")];
    assert_eq!(
        errors_of(&files),
        [
            "catalog/alpha.toml:32775:5: too many IPv4 /24 networks holding longer destination prefixes: the policy needs 32769, the kernel holds 32768 per policy slot; the catalog's entries, in service id order, go past it here"
        ]
    );
}

struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn database(name: &str, kind: &str, entries: Vec<(String, Value)>) -> TempFile {
    let entries: Vec<_> = entries
        .into_iter()
        .map(|(n, v)| (n.parse().unwrap(), v))
        .collect();
    let path = std::env::temp_dir().join(format!("vigie-{name}-{}.mmdb", std::process::id()));
    std::fs::write(&path, mmdb::write(kind, &entries)).unwrap();
    TempFile(path)
}

#[test]
fn the_rule_whose_countries_overflow_the_ipv4_groups_is_named() {
    let country =
        |code: &str| Value::map([("country", Value::map([("iso_code", Value::str(code))]))]);
    // France and Germany have a network each, China a /25 in 32,769 /24s.
    let mut entries = vec![
        ("192.0.2.0/24".to_owned(), country("FR")),
        ("198.51.100.0/24".to_owned(), country("DE")),
    ];
    entries.extend(halves(32_769).map(|p| (p, country("CN"))));
    let db = database("capacity-countries", "GeoIP2-Country", entries);
    let rule = |name: &str, code: &str| {
        format!("[[rule]]\nname = \"{name}\"\ncountries = [\"{code}\"]\naction = \"block\"\n")
    };
    let files = [
        service("alpha", ""),
        policy(&format!(
            "geoip = \"{}\"\n{}{}{}{}",
            db.0.display(),
            rule("fr", "FR"),
            rule("cn", "CN"),
            rule("de", "DE"),
            rule("cn-again", "CN"),
        )),
    ];
    // Rule `cn` starts on line 10: its countries are on line 12.
    assert_eq!(
        errors_of(&files),
        [
            "policy.toml:12:13: too many IPv4 /24 networks holding longer destination prefixes: the policy needs 32769, the kernel holds 32768 per policy slot; the networks of this rule's countries, with those of the rules before it, take it past"
        ]
    );
}

#[test]
fn the_asn_database_whose_networks_overflow_the_ipv4_groups_is_named() {
    let asn = Value::map([("autonomous_system_number", Value::U32(64_500))]);
    let entries = halves(32_769).map(|p| (p, asn.clone())).collect();
    let db = database("capacity-asns", "GeoLite2-ASN", entries);
    let files = [
        service("alpha", "asns = [64500]"),
        policy(&format!("asn_db = \"{}\"\n", db.0.display())),
    ];
    assert_eq!(
        errors_of(&files),
        [
            "policy.toml:5:10: too many IPv4 /24 networks holding longer destination prefixes: the policy needs 32769, the kernel holds 32768 per policy slot; the networks of the catalog's ASNs in this database take it past"
        ]
    );
}
