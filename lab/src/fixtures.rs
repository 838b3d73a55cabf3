//! What the lab's internet holds and which policies the tests run: service addresses taken
//! from the catalog (one IPv4 and one IPv6 host address per service, each of which the catalog
//! attributes to that service by longest-prefix match), a lab-only European service, `visio`,
//! and policy directories written into temporary directories.
//!
//! The catalog is read as plain TOML, without the daemon's compiler: a service is its `id`
//! (top level or in a `[service]` table, else the file name) and its prefixes are every string
//! of the file that parses as an IP network.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use ipnet::IpNet;

use crate::tempdir::TempDir;

/// The services the default policy blocks (non-European video conferencing).
pub const BLOCKED_SERVICES: [&str; 5] = ["zoom", "teams", "webex", "goto", "google-meet"];

/// The lab's European service: in no catalog list of the shipped policy.
pub const VISIO: &str = "visio";
pub const VISIO_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
pub const VISIO_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 5, 0, 0, 0, 0, 0x10);

/// Overrides where the shipped policy directory is read from.
pub const POLICIES_VAR: &str = "VIGIE_LAB_POLICIES";

/// The shipped policy directory: `$VIGIE_LAB_POLICIES`, else the repository's `policies/`
/// (this crate's sibling).
#[must_use]
pub fn shipped_policy_dir() -> PathBuf {
    std::env::var_os(POLICIES_VAR).map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("policies")
        },
        PathBuf::from,
    )
}

/// One catalog service: its id and prefixes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogService {
    pub id: String,
    pub prefixes: Vec<IpNet>,
    pub file: PathBuf,
}

/// Reads every `*.toml` of a catalog directory.
pub fn read_catalog(dir: &Path) -> anyhow::Result<Vec<CatalogService>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading catalog {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files.iter().map(|f| read_service(f)).collect()
}

fn read_service(file: &Path) -> anyhow::Result<CatalogService> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
    let id = table
        .get("id")
        .or_else(|| table.get("service").and_then(|s| s.get("id")))
        .and_then(toml::Value::as_str)
        .map(str::to_owned)
        .or_else(|| file.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .context("service without an id")?;
    let mut prefixes = Vec::new();
    collect_networks(&toml::Value::Table(table), &mut prefixes);
    Ok(CatalogService {
        id,
        prefixes,
        file: file.to_owned(),
    })
}

fn collect_networks(value: &toml::Value, out: &mut Vec<IpNet>) {
    match value {
        toml::Value::String(s) => {
            if let Ok(net) = s.parse::<IpNet>() {
                out.push(net.trunc());
            }
        }
        toml::Value::Array(items) => items.iter().for_each(|v| collect_networks(v, out)),
        toml::Value::Table(t) => t.values().for_each(|v| collect_networks(v, out)),
        _ => {}
    }
}

/// The service whose prefix is the longest match for `addr`.
#[must_use]
pub fn classify(catalog: &[CatalogService], addr: IpAddr) -> Option<&str> {
    catalog
        .iter()
        .flat_map(|s| s.prefixes.iter().map(move |p| (p, s.id.as_str())))
        .filter(|(p, _)| p.contains(&addr))
        .max_by_key(|(p, _)| p.prefix_len())
        .map(|(_, id)| id)
}

/// The first host address of a network (the network address itself for a /32 or /128).
fn first_host(net: &IpNet) -> IpAddr {
    match net {
        IpNet::V4(n) if n.prefix_len() < 32 => {
            IpAddr::V4(Ipv4Addr::from(n.network().to_bits() + 1))
        }
        IpNet::V6(n) if n.prefix_len() < 128 => {
            IpAddr::V6(Ipv6Addr::from(n.network().to_bits() + 1))
        }
        _ => net.network(),
    }
}

/// One IPv4 and one IPv6 host address of service `id` (network address + 1 of the first of
/// its prefixes that the catalog does not attribute to another, more specific, service). A
/// family the catalog lists no prefix of for this service is left out (the shipped `goto` has
/// no IPv6 range); a service with neither is an error.
pub fn service_hosts(catalog: &[CatalogService], id: &str) -> anyhow::Result<Vec<IpAddr>> {
    let service = catalog
        .iter()
        .find(|s| s.id == id)
        .with_context(|| format!("no service {id:?} in the catalog"))?;
    let pick = |v4: bool| {
        service
            .prefixes
            .iter()
            .filter(|p| matches!(p, IpNet::V4(_)) == v4)
            .map(first_host)
            .find(|a| classify(catalog, *a) == Some(id))
    };
    let hosts: Vec<IpAddr> = [pick(true), pick(false)].into_iter().flatten().collect();
    if hosts.is_empty() {
        bail!(
            "service {id:?} ({}) has no prefix of its own",
            service.file.display()
        );
    }
    Ok(hosts)
}

/// The lab's services: each blocked service's two host addresses, then Visio's.
pub fn lab_services(catalog_dir: &Path) -> anyhow::Result<Vec<(String, Vec<IpAddr>)>> {
    let catalog = read_catalog(catalog_dir)?;
    let mut services = Vec::new();
    for id in BLOCKED_SERVICES {
        services.push((id.to_owned(), service_hosts(&catalog, id)?));
    }
    services.push((
        VISIO.to_owned(),
        vec![IpAddr::V4(VISIO_V4), IpAddr::V6(VISIO_V6)],
    ));
    Ok(services)
}

/// Whether the policy enforces or only watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Monitor,
}

/// A policy directory in a temporary directory: the shipped `policy.toml` (its mode set as
/// asked), the shipped catalog, and a catalog entry for the lab's Visio (a French service, which
/// the shipped policy allows).
#[derive(Debug)]
pub struct PolicyDir {
    dir: TempDir,
}

impl PolicyDir {
    pub fn write(mode: Mode) -> anyhow::Result<Self> {
        Self::write_from(&shipped_policy_dir(), mode)
    }

    pub fn write_from(shipped: &Path, mode: Mode) -> anyhow::Result<Self> {
        let dir = TempDir::new("policy")?;
        let catalog = dir.path().join("catalog");
        std::fs::create_dir(&catalog)?;
        let services = read_catalog(&shipped.join("catalog"))?;
        for service in &services {
            let name = service
                .file
                .file_name()
                .context("catalog file without a name")?;
            std::fs::copy(&service.file, catalog.join(name))?;
        }
        let shipped_visio = services.iter().find(|s| s.id == VISIO);
        let visio = match shipped_visio {
            Some(entry) => with_lab_prefixes(&entry.file)?,
            None => visio_entry(&conferencing_category(&services)),
        };
        std::fs::write(catalog.join(format!("{VISIO}.toml")), visio)?;
        let policy = std::fs::read_to_string(shipped.join("policy.toml"))
            .with_context(|| format!("reading {}/policy.toml", shipped.display()))?;
        std::fs::write(dir.path().join("policy.toml"), set_mode(&policy, mode)?)?;
        Ok(Self { dir })
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// The policy text with its `mode` setting replaced.
fn set_mode(policy: &str, mode: Mode) -> anyhow::Result<String> {
    let value = match mode {
        Mode::Enforce => "enforce",
        Mode::Monitor => "monitor",
    };
    let mut found = false;
    let lines: Vec<String> = policy
        .lines()
        .map(|l| {
            let key = l.split('=').next().unwrap_or_default().trim();
            if key == "mode" && !found {
                found = true;
                format!("mode = \"{value}\"")
            } else {
                l.to_owned()
            }
        })
        .collect();
    if !found {
        bail!("the shipped policy.toml has no `mode = ...` line to set");
    }
    Ok(lines.join("\n") + "\n")
}

/// The catalog entry of the lab's Visio: a French, sovereign service in `category` (that of
/// the blocked services, so that only its jurisdiction sets it apart).
#[must_use]
pub fn visio_entry(category: &str) -> String {
    format!(
        r#"# Lab-only service: the French State's video conferencing, at documentation addresses.
id = "{VISIO}"
name = "Visio (lab)"
operator = "DINUM"
jurisdiction = "FR"
category = "{category}"
sovereign = true
domains = ["visio.lab.example"]
prefixes = ["{VISIO_V4}/32", "{VISIO_V6}/128"]

[source]
vendor = "vigie lab"
retrieved = 2025-01-01
"#
    )
}

/// The shipped Visio entry (no addresses: the deployment's are not published) with the lab's
/// Visio addresses as its prefixes.
fn with_lab_prefixes(file: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let mut table: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
    let prefixes = [format!("{VISIO_V4}/32"), format!("{VISIO_V6}/128")];
    table.insert("prefixes".to_owned(), toml::Value::from(prefixes.to_vec()));
    Ok(toml::to_string(&table)?)
}

/// The category of the catalog's Zoom entry ("conferencing" if it has none).
fn conferencing_category(catalog: &[CatalogService]) -> String {
    catalog
        .iter()
        .find(|s| s.id == "zoom")
        .and_then(|s| std::fs::read_to_string(&s.file).ok())
        .and_then(|text| toml::from_str::<toml::Table>(&text).ok())
        .and_then(|t| {
            t.get("category")
                .and_then(toml::Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "conferencing".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(id: &str, prefixes: &[&str]) -> CatalogService {
        CatalogService {
            id: id.to_owned(),
            prefixes: prefixes.iter().map(|p| p.parse().unwrap()).collect(),
            file: PathBuf::from(format!("{id}.toml")),
        }
    }

    #[test]
    fn hosts_avoid_prefixes_of_more_specific_services() {
        let catalog = [
            service("wide", &["10.0.0.0/8", "2001:db8::/32"]),
            service(
                "narrow",
                &["10.0.0.0/24", "2001:db8::/48", "2001:db8:1::5/128"],
            ),
        ];
        assert_eq!(
            classify(&catalog, "10.0.0.1".parse().unwrap()),
            Some("narrow")
        );
        assert!(
            service_hosts(&catalog, "wide").is_err(),
            "every wide host is narrow's"
        );
        let hosts = service_hosts(&catalog, "narrow").unwrap();
        assert_eq!(
            hosts,
            [
                "10.0.0.1".parse::<IpAddr>().unwrap(),
                "2001:db8::1".parse().unwrap()
            ]
        );
    }

    #[test]
    fn networks_are_found_wherever_the_file_puts_them() {
        let text = r#"id = "x"
prefixes = ["192.0.2.0/24"]
[[ranges]]
cidr = "2001:db8::/32"
note = "not a network"
"#;
        let mut out = Vec::new();
        collect_networks(&toml::from_str::<toml::Value>(text).unwrap(), &mut out);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn the_mode_line_is_replaced() {
        let text = "[settings]\nmode = \"enforce\"\ndefault = \"allow\"\n";
        assert!(
            set_mode(text, Mode::Monitor)
                .unwrap()
                .contains("mode = \"monitor\"")
        );
        assert!(set_mode("default = 1\n", Mode::Monitor).is_err());
    }

    #[test]
    fn the_shipped_visio_gets_the_lab_addresses_and_keeps_the_rest() {
        let dir = TempDir::new("fixture").unwrap();
        let file = dir.path().join("visio.toml");
        let shipped = "id = \"visio\"\nprefixes = []\n[source]\nretrieved = 2026-11-28\n\
                       [[ports]]\nproto = \"udp\"\nrange = \"3478\"\n";
        std::fs::write(&file, shipped).unwrap();
        let table: toml::Table = toml::from_str(&with_lab_prefixes(&file).unwrap()).unwrap();
        let mut nets = Vec::new();
        collect_networks(&toml::Value::Table(table.clone()), &mut nets);
        assert_eq!(nets.len(), 2);
        assert!(table["source"]["retrieved"].is_datetime());
        assert_eq!(table["ports"][0]["range"].as_str(), Some("3478"));
    }

    #[test]
    fn visio_is_valid_toml_with_its_two_prefixes() {
        let table: toml::Value = toml::from_str(&visio_entry("conferencing")).unwrap();
        let mut nets = Vec::new();
        collect_networks(&table, &mut nets);
        assert_eq!(nets.len(), 2);
    }
}
