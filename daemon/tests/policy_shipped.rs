//! The shipped default policy, its catalog and its examples compile, and say what they mean.

use std::{
    fs,
    net::IpAddr,
    path::{Path, PathBuf},
};

use vigie::{
    compiled::CompiledPolicy,
    policy::{self, Compilation},
};
use vigie_common::{action, policy::condition};

fn policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

fn load(dir: &Path) -> Compilation {
    policy::load_dir(dir)
        .unwrap_or_else(|errors| panic!("{} does not compile:\n{errors}", dir.display()))
}

fn bits(policy: &CompiledPolicy, ids: &[&str]) -> [u64; 2] {
    let mut set = [0u64; 2];
    for id in ids {
        let n = policy
            .services
            .iter()
            .position(|s| s.id == *id)
            .unwrap_or_else(|| panic!("no service {id}"));
        set[n / 64] |= 1 << (n % 64);
    }
    set
}

/// The service that the longest matching destination prefix names, as the kernel's trie does.
fn service_of(policy: &CompiledPolicy, address: &str) -> Option<String> {
    let address: IpAddr = address.parse().unwrap();
    let best = match address {
        IpAddr::V4(a) => policy
            .destinations_v4
            .iter()
            .filter(|(n, _)| n.contains(&a))
            .max_by_key(|(n, _)| n.prefix_len())
            .map(|(_, d)| d.service),
        IpAddr::V6(a) => policy
            .destinations_v6
            .iter()
            .filter(|(n, _)| n.contains(&a))
            .max_by_key(|(n, _)| n.prefix_len())
            .map(|(_, d)| d.service),
    };
    best.and_then(|id| policy.service_name(id))
        .map(str::to_owned)
}

const SOVEREIGN: [&str; 3] = ["visio", "tchap", "webinaire"];
const NON_EUROPEAN: [&str; 5] = ["zoom", "teams", "webex", "goto", "google-meet"];

#[test]
fn the_default_keeps_sovereign_services_and_blocks_the_five() {
    let compilation = load(&policies());
    assert!(
        compilation.warnings.is_empty(),
        "{:?}",
        compilation.warnings
    );
    let p = &compilation.policy;
    assert_eq!(p.settings.mode, action::mode::ENFORCE);
    assert_eq!(p.settings.default_action, action::ALLOW);
    assert_eq!(p.settings.unparsed_action, action::ALLOW);
    assert_eq!(p.rules.len(), 2);
    assert_eq!(p.rule_info[0].name, "keep-sovereign");
    assert_eq!(
        (p.rules[0].action, p.rules[0].services),
        (action::ALLOW, bits(p, &SOVEREIGN))
    );
    assert_eq!(
        (p.rules[1].action, p.rules[1].services),
        (action::DROP, bits(p, &NON_EUROPEAN))
    );
    assert!(
        p.rules
            .iter()
            .all(|r| r.conditions == condition::SERVICES && r.port_max == u16::MAX)
    );
    assert_eq!(p.groups, ["none"]);
}

#[test]
fn the_catalog_has_the_eight_services() {
    let compilation = load(&policies());
    let ids: Vec<&str> = compilation
        .policy
        .services
        .iter()
        .skip(1)
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "google-meet",
            "goto",
            "tchap",
            "teams",
            "visio",
            "webex",
            "webinaire",
            "zoom"
        ]
    );
    for (_, service) in compilation.catalog.services() {
        let sovereign = SOVEREIGN.contains(&service.id.as_str());
        assert_eq!(service.sovereign, sovereign, "{}", service.id);
        assert_eq!(
            service.jurisdiction,
            if sovereign { "FR" } else { "US" },
            "{}",
            service.id
        );
        // Sovereign services publish no address list; the non-European ones are 2024 snapshots.
        assert_eq!(service.prefixes.is_empty(), sovereign, "{}", service.id);
        assert!(
            !service.domains.is_empty() && !service.ports.is_empty(),
            "{}",
            service.id
        );
        if !sovereign {
            assert_eq!(service.source.retrieved.year, 2024, "{}", service.id);
        }
    }
}

#[test]
fn addresses_of_the_reference_lists_find_their_service() {
    let p = load(&policies()).policy;
    assert_eq!(service_of(&p, "3.7.35.1").as_deref(), Some("zoom"));
    assert_eq!(service_of(&p, "2407:30c0::1").as_deref(), Some("zoom"));
    // 52.122.0.0/15 lies inside 52.120.0.0/14: both Teams, one entry is enough.
    assert_eq!(service_of(&p, "52.122.9.9").as_deref(), Some("teams"));
    assert_eq!(service_of(&p, "62.109.200.1").as_deref(), Some("webex"));
    assert_eq!(service_of(&p, "78.108.117.1").as_deref(), Some("goto"));
    assert_eq!(
        service_of(&p, "2001:4860:4864:6::1").as_deref(),
        Some("google-meet")
    );
    assert_eq!(service_of(&p, "192.0.2.1"), None);
    let teams = p
        .destinations_v4
        .iter()
        .filter(|(n, _)| n.to_string().starts_with("52.12"))
        .count();
    assert_eq!(teams, 1, "52.120.0.0/14 absorbs 52.122.0.0/15");
}

#[test]
fn the_embedded_default_is_the_shipped_directory() {
    let embedded = policy::load_embedded().unwrap_or_else(|e| panic!("{e}"));
    let shipped = load(&policies());
    assert_eq!(embedded.policy, shipped.policy);
    assert_eq!(embedded.policy.digest.len(), 64);
}

fn examples() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(policies().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn every_example_compiles_without_warnings() {
    let names: Vec<String> = examples()
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["department-exceptions", "monitor-rollout"]);
    for dir in examples() {
        let compilation = load(&dir);
        assert!(
            compilation.warnings.is_empty(),
            "{}: {:?}",
            dir.display(),
            compilation.warnings
        );
    }
}

#[test]
fn monitor_rollout_only_reports() {
    let p = load(&policies().join("examples/monitor-rollout")).policy;
    assert_eq!(p.settings.mode, action::mode::MONITOR);
    // Conferencing services outside the EU: the five, and neither Visio nor Webinaire.
    assert_eq!(p.rules[1].services, bits(&p, &NON_EUROPEAN));
    assert_eq!(p.rules[1].action, action::DROP);
}

#[test]
fn department_exceptions_except_diplomacy_from_the_block() {
    let p = load(&policies().join("examples/department-exceptions")).policy;
    assert_eq!(p.groups, ["none", "diplomacy", "finance", "research"]);
    let block = p.rules[1];
    assert_eq!(
        (block.action, block.except_groups, block.conditions),
        (action::DROP, 1 << 1, condition::SERVICES)
    );
    let watch = p.rules[2];
    assert_eq!((watch.action, watch.groups), (action::MONITOR, 1 << 1));
    assert_eq!(watch.conditions, condition::SERVICES | condition::GROUPS);
    let turn = p.rules[3];
    assert_eq!(turn.conditions, condition::NO_SERVICE | condition::GROUPS);
    assert_eq!((turn.proto, turn.port_min, turn.port_max), (17, 3478, 3481));
    assert!(
        p.sources_v4
            .iter()
            .any(|(n, g)| n.to_string() == "10.20.0.0/14" && *g == 1)
    );
}

#[test]
fn example_catalogs_are_the_shipped_catalog() {
    // A link, not a copy: the examples can never drift from the data vigie ships.
    let shipped = fs::canonicalize(policies().join("catalog")).unwrap();
    for dir in examples() {
        let catalog = dir.join("catalog");
        assert!(
            fs::symlink_metadata(&catalog)
                .unwrap()
                .file_type()
                .is_symlink(),
            "{} is not a link to policies/catalog",
            catalog.display()
        );
        assert_eq!(fs::canonicalize(&catalog).unwrap(), shipped);
    }
}

#[test]
fn the_geoip_database_ships_with_its_attribution() {
    let geoip = policies().join("geoip");
    let size = fs::metadata(geoip.join("geo-whois-asn-country.mmdb"))
        .unwrap()
        .len();
    assert!(size > 1_000_000, "{size}");
    let readme = fs::read_to_string(geoip.join("README.md")).unwrap();
    for needle in [
        "CC0-1.0",
        "ip-location-db",
        "geo-whois-asn-country-mmdb",
        "2.3.2026061719",
        "nro.net",
        "CC BY 4.0",
    ] {
        assert!(readme.contains(needle), "README lacks {needle}");
    }
    assert!(
        fs::read_to_string(geoip.join("NRO_LICENSE"))
            .unwrap()
            .contains("nro.net")
    );
}
