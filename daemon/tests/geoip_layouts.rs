//! The GeoIP2 layout (`country.iso_code`, falling back to `registered_country.iso_code`), on a
//! database written for the test, and what a policy makes of it.

mod support;

use std::{net::IpAddr, path::PathBuf};

use support::mmdb::{self, Value};
use vigie::{geoip::GeoIp, policy};

struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn geoip2_country_database(name: &str) -> TempFile {
    let iso = |code: &str| Value::map([("iso_code", Value::str(code))]);
    let entries = [
        (
            "192.0.2.0/24",
            Value::map([("country", iso("FR")), ("registered_country", iso("FR"))]),
        ),
        // Anycast: no physical country, the registrant's stands in.
        (
            "198.51.100.0/24",
            Value::map([("registered_country", iso("US"))]),
        ),
        (
            "203.0.113.0/25",
            Value::map([("continent", Value::map([("code", Value::str("EU"))]))]),
        ),
        ("203.0.113.128/25", Value::map([("country", iso("US"))])),
    ];
    let entries: Vec<_> = entries
        .into_iter()
        .map(|(n, v)| (n.parse().unwrap(), v))
        .collect();
    let path = std::env::temp_dir().join(format!("vigie-{name}-{}.mmdb", std::process::id()));
    std::fs::write(&path, mmdb::write("GeoIP2-Country", &entries)).unwrap();
    TempFile(path)
}

#[test]
fn geoip2_records_give_their_country() {
    let file = geoip2_country_database("layout");
    let db = GeoIp::open(&file.0).unwrap();
    let country = |a: &str| db.country(a.parse::<IpAddr>().unwrap());
    assert_eq!(country("192.0.2.7").as_deref(), Some("FR"));
    assert_eq!(country("198.51.100.7").as_deref(), Some("US"));
    assert_eq!(country("203.0.113.7"), None);
    assert_eq!(country("203.0.113.200").as_deref(), Some("US"));
    assert_eq!(country("10.0.0.1"), None);
}

#[test]
fn a_policy_loads_the_networks_of_its_countries_from_a_geoip2_database() {
    let file = geoip2_country_database("policy");
    let files = vec![
        (
            PathBuf::from("catalog/zoom.toml"),
            "id = \"zoom\"\nname = \"Zoom\"\noperator = \"Zoom\"\njurisdiction = \"US\"\ncategory = \"conferencing\"\n\
             [source]\nvendor = \"test\"\nretrieved = 2024-06-01\n"
                .to_owned(),
        ),
        (
            PathBuf::from("policy.toml"),
            format!(
                "[settings]\nmode = \"enforce\"\ndefault = \"allow\"\nunparsed = \"allow\"\ngeoip = \"{}\"\n\
                 [[rule]]\nname = \"us\"\ncountries = [\"US\"]\naction = \"block\"\n",
                file.0.display()
            ),
        ),
    ];
    let compilation = policy::load_from_files(&files).unwrap_or_else(|e| panic!("{e}"));
    let table: Vec<(String, u64)> = compilation
        .policy
        .destinations_v4
        .iter()
        .map(|(n, d)| (n.to_string(), d.classes))
        .collect();
    assert_eq!(
        table,
        [
            ("198.51.100.0/24".to_owned(), 1),
            ("203.0.113.128/25".to_owned(), 1)
        ]
    );
    assert_eq!(compilation.country_entries.v4, 2);
}

#[test]
fn a_database_without_countries_is_refused_with_its_path() {
    let entries = vec![(
        "192.0.2.0/24".parse().unwrap(),
        Value::map([("autonomous_system_number", Value::U32(64_500))]),
    )];
    let path = std::env::temp_dir().join(format!("vigie-asn-only-{}.mmdb", std::process::id()));
    std::fs::write(&path, mmdb::write("GeoLite2-ASN", &entries)).unwrap();
    let file = TempFile(path);
    let db = GeoIp::open(&file.0).unwrap();
    let err = db.networks(|_| Some(())).err().unwrap().to_string();
    assert_eq!(
        err,
        format!(
            "GeoIP database {}: no record has a country (country_code or country.iso_code)",
            file.0.display()
        )
    );
}

#[test]
fn catalog_asns_become_prefixes_beside_the_listed_ones() {
    let asn = |n: u32, org: &str| {
        Value::map([
            ("autonomous_system_number", Value::U32(n)),
            ("autonomous_system_organization", Value::str(org)),
        ])
    };
    let entries: Vec<_> = [
        ("198.51.100.0/25", asn(64_500, "Conf Inc")),
        ("198.51.100.128/25", asn(64_500, "Conf Inc")),
        ("203.0.113.0/24", asn(64_501, "Other Conf")),
        ("192.0.2.0/24", asn(64_502, "Unrelated")),
        // Announced by Conf's AS, but listed explicitly for another service.
        ("100.64.0.0/24", asn(64_500, "Conf Inc")),
    ]
    .into_iter()
    .map(|(n, v)| (n.parse().unwrap(), v))
    .collect();
    let path = std::env::temp_dir().join(format!("vigie-asn-{}.mmdb", std::process::id()));
    std::fs::write(&path, mmdb::write("GeoLite2-ASN", &entries)).unwrap();
    let file = TempFile(path);
    let service = |id: &str, extra: &str| {
        (
            PathBuf::from(format!("catalog/{id}.toml")),
            format!(
                "id = \"{id}\"\nname = \"{id}\"\noperator = \"op\"\njurisdiction = \"US\"\ncategory = \"conferencing\"\n\
                 {extra}\n[source]\nvendor = \"test\"\nretrieved = 2024-06-01\n"
            ),
        )
    };
    let files = vec![
        service("conf", "asns = [64500, 64501]"),
        service("relay", "prefixes = [\"100.64.0.0/24\"]"),
        (
            PathBuf::from("policy.toml"),
            format!(
                "[settings]\nmode = \"enforce\"\ndefault = \"allow\"\nunparsed = \"allow\"\nasn_db = \"{}\"\n\
                 [[rule]]\nname = \"block-conf\"\nservices = [\"conf\"]\naction = \"block\"\n",
                file.0.display()
            ),
        ),
    ];
    let compilation = policy::load_from_files(&files).unwrap_or_else(|e| panic!("{e}"));
    let policy = &compilation.policy;
    let table: Vec<(String, Option<&str>)> = policy
        .destinations_v4
        .iter()
        .map(|(n, d)| (n.to_string(), policy.service_name(d.service)))
        .collect();
    assert_eq!(
        table,
        [
            ("100.64.0.0/24".to_owned(), Some("relay")),
            ("198.51.100.0/24".to_owned(), Some("conf")),
            ("203.0.113.0/24".to_owned(), Some("conf")),
        ]
    );
    assert_eq!(compilation.asn_entries, 3);

    // A country database where an ASN database is expected is refused at the setting.
    let wrong = geoip2_country_database("not-asn");
    let mut files = files;
    files[2].1 = files[2].1.replace(
        &file.0.display().to_string(),
        &wrong.0.display().to_string(),
    );
    let err = policy::load_from_files(&files).err().unwrap().to_string();
    assert!(
        err.starts_with("policy.toml:5:10: ASN database ")
            && err.contains("no record has an autonomous_system_number"),
        "{err}"
    );
}
