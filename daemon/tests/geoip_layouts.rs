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
