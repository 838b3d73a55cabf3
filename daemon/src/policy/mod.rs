//! Policy directories: `policy.toml` and `catalog/*.toml` in, a [`CompiledPolicy`] out.
//!
//! Compilation is pure (no I/O beyond reading the files) and total: it goes on after each
//! problem and reports every error at once, each with its file, line and column. A directory
//! with an error yields no compiled policy at all, so it can never replace a running one.
//!
//! Kernel ids: services are numbered in catalog-id order from 1, groups in name order from 1;
//! 0 is "none" in both tables. Rules keep their order in `policy.toml`, numbered by position.
//! The daemon then renumbers all three after the policy in force (`crate::numbering`).

mod aggregate;
mod asns;
mod capacity;
mod countries;
mod country_codes;
mod destinations;
pub mod diagnostic;
mod file;
mod groups;
pub(crate) mod problem;
mod ranges;
mod rules;
mod selection;
mod settings;
mod shadow;
mod sources;
mod sovereign;
pub(crate) mod syntax;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

pub use countries::CountryEntries;
pub use diagnostic::{Diagnostic, Place, PolicyErrors};
pub use selection::EU_MEMBERS;
pub use syntax::{PortRange, Proto};
use vigie_common::policy::Settings;

use crate::{
    catalog::{self, Catalog},
    compiled::{CompiledPolicy, LearningSettings, Reserved, ServiceInfo},
    geoip::GeoIp,
};
use destinations::Destinations;
use diagnostic::{Report, SourceText};
use file::PolicyFile;
use groups::Groups;
use problem::Problem;
use sources::Role;

/// A policy that compiled, with what deserves a look without being wrong.
#[derive(Clone, Debug)]
pub struct Compilation {
    pub policy: CompiledPolicy,
    pub warnings: Vec<Diagnostic>,
    /// The validated catalog, for what the kernel tables do not carry (domains, data age).
    pub catalog: Catalog,
    /// Prefixes that the countries of the rules added to the address table (after merging).
    pub country_entries: CountryEntries,
    /// Prefixes the ASN database gave for the catalog's ASNs (after merging; an equal prefix
    /// listed explicitly keeps its own service), with `[settings] asn_db`.
    pub asn_entries: usize,
    /// The country database the rules were compiled with, when some rule names countries.
    pub geoip: Option<PathBuf>,
    /// The country database flow events name countries with: the rules' one, else the one
    /// beside `policy.toml` (`geoip/`) when there is one.
    pub events_geoip: Option<PathBuf>,
    /// Age in days past which catalog data deserves a refresh (`[settings] stale_after_days`).
    pub stale_after_days: u32,
}

impl Compilation {
    /// The compiler's warnings, then one for each catalog entry whose data is older than
    /// `stale_after_days` today (kept apart from the compiler's so that compiling stays a
    /// function of the files alone).
    #[must_use]
    pub fn warnings_today(&self) -> Vec<String> {
        let stale = crate::catalog::listing::stale(
            &self.catalog,
            crate::catalog::listing::today(),
            self.stale_after_days,
        );
        self.warnings
            .iter()
            .map(ToString::to_string)
            .chain(stale)
            .collect()
    }
}

/// How old catalog data may get before vigie says so, when the policy does not say.
pub const DEFAULT_STALE_AFTER_DAYS: u32 = 365;

/// Compiles the policy directory `dir` (`policy.toml` and `catalog/*.toml`).
pub fn load_dir(dir: &Path) -> Result<Compilation, PolicyErrors> {
    let mut report = Report::default();
    let files = sources::read_dir(dir, &mut report);
    compile(dir, &files, report)
}

/// Compiles `dir` as it would be with `name` (relative, e.g. `catalog/zoom.toml`) holding
/// `text`: how a change is validated before it is written.
pub fn load_dir_with(dir: &Path, name: &Path, text: String) -> Result<Compilation, PolicyErrors> {
    let mut report = Report::default();
    let mut files = sources::read_dir(dir, &mut report);
    match files.iter_mut().find(|(n, _)| n == name) {
        Some((_, old)) => *old = text,
        None => files.push((name.to_owned(), text)),
    }
    compile(dir, &files, report)
}

/// Compiles the default policy built into the binary (the repository's `policies/`, without its
/// examples and GeoIP database). Diagnostics name its files `<embedded>/...`.
pub fn load_embedded() -> Result<Compilation, PolicyErrors> {
    compile(
        Path::new(sources::EMBEDDED_ROOT),
        &sources::embedded(),
        Report::default(),
    )
}

/// Compiles files given by name relative to a policy directory (`policy.toml`,
/// `catalog/zoom.toml`) and contents. Other names are ignored with a warning.
pub fn load_from_files(files: &[(PathBuf, String)]) -> Result<Compilation, PolicyErrors> {
    compile(Path::new(""), files, Report::default())
}

fn compile(
    root: &Path,
    files: &[(PathBuf, String)],
    mut report: Report,
) -> Result<Compilation, PolicyErrors> {
    let inputs = Inputs::new(root, files, &mut report);
    let digest = sources::digest(inputs.all().map(|src| (src.name.as_str(), src.text)));
    let catalog = catalog::parse(&inputs.catalog, &mut report);
    let destinations = destinations::compile(&catalog, &mut report);
    let body = inputs
        .policy
        .as_ref()
        .and_then(|src| compile_policy(src, &catalog, &mut report));
    let Some(body) = body.filter(|_| !report.has_errors()) else {
        return Err(report.into_errors());
    };
    let (destinations, asn_entries) = match with_asns(root, &body, &catalog, destinations) {
        Ok(done) => done,
        Err((place, problem)) => {
            report.error(&place, problem);
            return Err(report.into_errors());
        }
    };
    let (destinations, country_entries) = match with_countries(root, &body, destinations) {
        Ok(done) => done,
        Err((place, problem)) => {
            report.error(&place, problem);
            return Err(report.into_errors());
        }
    };
    // Last: a sovereign service's destinations carry their classes only now.
    sovereign::warn(&body.decisions(), &catalog, &destinations, &mut report);
    let geoip = body
        .geoip
        .as_ref()
        .filter(|_| !body.rules.countries.is_empty())
        .map(|(path, _)| root.join(path));
    let stale_after_days = body.stale_after_days;
    let events_geoip = geoip.clone().or_else(|| {
        let beside = root.join(DEFAULT_GEOIP);
        beside.is_file().then_some(beside)
    });
    let policy = assemble(&body, &catalog, destinations, digest);
    // Last, on the tables as the kernel gets them: a policy that does not fit is refused here,
    // with its place, rather than when the maps are written.
    let origins = capacity::Origins {
        root,
        body: &body,
        catalog: &catalog,
    };
    capacity::check(&policy, &origins, &mut report);
    if report.has_errors() {
        return Err(report.into_errors());
    }
    Ok(Compilation {
        policy,
        warnings: report.into_warnings(),
        catalog,
        country_entries,
        asn_entries,
        geoip,
        events_geoip,
        stale_after_days,
    })
}

/// The address table with the networks of the catalog's ASNs beside it, when `asn_db` is set.
fn with_asns(
    root: &Path,
    body: &Body,
    catalog: &Catalog,
    destinations: Destinations,
) -> Result<(Destinations, usize), (Place, Problem)> {
    let Some((path, place)) = body.asn_db.as_ref() else {
        return Ok((destinations, 0));
    };
    let failed = |e: crate::geoip::GeoIpError| (place.clone(), Problem::GeoIp(e.to_string()));
    let db = GeoIp::open(&root.join(path)).map_err(failed)?;
    asns::expand(destinations, catalog, &db).map_err(failed)
}

/// The address table with the countries the rules name laid over it, when some rule names
/// countries; the database is read only then.
fn with_countries(
    root: &Path,
    body: &Body,
    destinations: Destinations,
) -> Result<(Destinations, CountryEntries), (Place, Problem)> {
    let Some((path, place)) = body
        .geoip
        .as_ref()
        .filter(|_| !body.rules.countries.is_empty())
    else {
        return Ok((destinations, CountryEntries::default()));
    };
    let failed = |e: crate::geoip::GeoIpError| (place.clone(), Problem::GeoIp(e.to_string()));
    let geoip = GeoIp::open(&root.join(path)).map_err(failed)?;
    countries::overlay(destinations, &body.rules.countries, &geoip).map_err(failed)
}

fn assemble(
    body: &Body,
    catalog: &Catalog,
    destinations: Destinations,
    digest: String,
) -> CompiledPolicy {
    // Copies (at most 64 rules and the groups' prefixes): the capacity check after it still
    // needs the body to say where an overflow comes from.
    CompiledPolicy {
        settings: body.settings,
        rules: body.rules.rows.clone(),
        rule_info: body.rules.info.clone(),
        services: service_table(catalog),
        groups: body.groups.names.clone(),
        // Numbers are positions until the daemon keeps those of the policy in force.
        reserved: Reserved::default(),
        destinations_v4: destinations.v4,
        destinations_v6: destinations.v6,
        sources_v4: body.groups.sources_v4.clone(),
        sources_v6: body.groups.sources_v6.clone(),
        domains: domain_table(catalog),
        stun_attributes: stun_table(catalog),
        port_signals: port_signal_table(catalog),
        learning: body.learning,
        digest,
    }
}

/// Each vendor STUN attribute with its service; one listed by two services goes to the first.
fn stun_table(catalog: &Catalog) -> Vec<(u16, u32)> {
    let mut table: Vec<(u16, u32)> = catalog
        .services()
        .flat_map(|(id, s)| s.stun_attributes.iter().map(move |&a| (a, id)))
        .collect();
    table.sort_unstable();
    table.dedup_by_key(|&mut (attribute, _)| attribute);
    table
}

/// Each vendor signal port with its service; a port two services mark goes to the first.
fn port_signal_table(catalog: &Catalog) -> Vec<((u8, u16), u32)> {
    let mut table: Vec<((u8, u16), u32)> = catalog
        .services()
        .flat_map(|(id, s)| {
            s.ports.iter().filter(|p| p.signal).flat_map(move |p| {
                (p.range.min..=p.range.max).map(move |port| ((p.proto.number() as u8, port), id))
            })
        })
        .collect();
    table.sort_unstable();
    table.dedup_by_key(|&mut (port, _)| port);
    table
}

/// Each catalog domain's hash with its service; a domain two services list goes to the first.
fn domain_table(catalog: &Catalog) -> Vec<(u64, u32)> {
    let mut table: Vec<(u64, u32)> = catalog
        .services()
        .flat_map(|(id, s)| {
            s.domains
                .iter()
                .map(move |d| (vigie_common::sni::domain_hash(d.as_bytes()), id))
        })
        .collect();
    table.sort_by_key(|&(hash, id)| (hash, id));
    table.dedup_by_key(|&mut (hash, _)| hash);
    table
}

/// The files of a policy directory, by role, in name order.
struct Inputs<'a> {
    policy: Option<SourceText<'a>>,
    catalog: Vec<SourceText<'a>>,
}

impl<'a> Inputs<'a> {
    fn new(root: &Path, files: &'a [(PathBuf, String)], report: &mut Report) -> Self {
        let mut inputs = Self {
            policy: None,
            catalog: Vec::new(),
        };
        for (name, (role, text)) in by_name(root, files, report) {
            let src = SourceText::new(root.join(&name), name, text);
            match role {
                Role::Policy => inputs.policy = Some(src),
                Role::Catalog => inputs.catalog.push(src),
            }
        }
        if inputs.policy.is_none() {
            report.error(
                &Place::file(&root.join("policy.toml")),
                Problem::MissingPolicyFile,
            );
        }
        inputs
    }

    /// Every file in name order (`catalog/...` sorts before `policy.toml`).
    fn all(&self) -> impl Iterator<Item = &SourceText<'a>> {
        self.catalog.iter().chain(self.policy.as_ref())
    }
}

/// The files by normalised name, each once.
fn by_name<'a>(
    root: &Path,
    files: &'a [(PathBuf, String)],
    report: &mut Report,
) -> BTreeMap<String, (Role, &'a str)> {
    let mut by_name = BTreeMap::new();
    for (name, text) in files {
        let place = Place::file(&root.join(name));
        match sources::role(name) {
            None => report.warn(&place, Problem::IgnoredFile),
            Some((_, name)) if by_name.contains_key(&name) => {
                report.error(&place, Problem::DuplicateFile(name));
            }
            Some((role, name)) => {
                by_name.insert(name, (role, text.as_str()));
            }
        }
    }
    by_name
}

/// What `policy.toml` compiles into.
struct Body {
    settings: Settings,
    /// Where the default action is written.
    default_place: Place,
    groups: Groups,
    rules: rules::Compiled,
    /// The GeoIP database (relative to the policy directory) and where it is asked for.
    geoip: Option<(String, Place)>,
    /// The ASN database and where it is named.
    asn_db: Option<(String, Place)>,
    stale_after_days: u32,
    learning: LearningSettings,
}

impl Body {
    fn decisions(&self) -> sovereign::Decisions<'_> {
        sovereign::Decisions {
            rules: &self.rules.rows,
            names: &self.rules.info,
            places: &self.rules.places,
            named: &self.rules.named,
            port_warned: &self.rules.port_warned,
            groups: &self.groups.names,
            default_action: self.settings.default_action,
            default_place: &self.default_place,
        }
    }
}

/// The database `countries` use when `[settings] geoip` does not name one: the one vigie ships.
const DEFAULT_GEOIP: &str = "geoip/geo-whois-asn-country.mmdb";

fn compile_policy(src: &SourceText<'_>, catalog: &Catalog, report: &mut Report) -> Option<Body> {
    let file = PolicyFile::read(src, report)?;
    let settings = file
        .settings
        .as_ref()
        .map(|table| settings::compile(table, src, report));
    let mut settings = settings.unwrap_or_default();
    let groups = groups::compile(&file.groups, src, report);
    let sets = countries::Sets::compile(&file.country_sets, src, report);
    let cx = rules::Context {
        catalog,
        groups: &groups,
        sets: &sets,
        src,
    };
    let rules = rules::compile(&file.rules, &cx, report);
    settings.rule_count = rules.rows.len() as u32;
    // `default` is required: without it the settings do not read and the policy is refused,
    // so the start of the file is only a fallback.
    let default_place = file
        .settings
        .as_ref()
        .map_or_else(|| src.place(0..0), |s| src.at(&s.default));
    // Where a GeoIP problem is reported: the setting that names the database, else the first
    // rule that needs one.
    let configured = file
        .settings
        .as_ref()
        .and_then(|s| s.geoip.as_ref())
        .map(|g| (g.as_ref().clone(), src.at(g)));
    let first_countries = file
        .rules
        .iter()
        .filter_map(|r| r.as_ref().as_ref())
        .find_map(|r| r.countries.as_ref())
        .map(|c| src.at(c));
    let geoip =
        configured.or_else(|| first_countries.map(|place| (DEFAULT_GEOIP.to_owned(), place)));
    let stale_after_days = file
        .settings
        .as_ref()
        .and_then(|s| s.stale_after_days.as_ref())
        .map_or(DEFAULT_STALE_AFTER_DAYS, |d| *d.as_ref());
    let asn_db = file
        .settings
        .as_ref()
        .and_then(|s| s.asn_db.as_ref())
        .map(|a| (a.as_ref().clone(), src.at(a)));
    let learning = file
        .settings
        .as_ref()
        .map(|table| learning_settings(table, src, report))
        .unwrap_or_default();
    Some(Body {
        settings,
        default_place,
        groups,
        rules,
        geoip,
        asn_db,
        stale_after_days,
        learning,
    })
}

/// The DNS learning bounds, checked against each other and the kernel's table.
fn learning_settings(
    table: &file::SettingsTable,
    src: &SourceText<'_>,
    report: &mut Report,
) -> LearningSettings {
    let default = LearningSettings::DEFAULT;
    let value = |v: Option<&toml::Spanned<u32>>, d: u32| v.map_or(d, |v| *v.as_ref());
    let min_ttl = value(table.dns_min_ttl.as_ref(), default.min_ttl);
    let max_ttl = value(table.dns_max_ttl.as_ref(), default.max_ttl);
    let max_entries = value(table.dns_max_entries.as_ref(), default.max_entries);
    // Two slots share the kernel's LRU table, which may evict before it is full (its free
    // entries sit in per-CPU lists): each slot gets two fifths of it.
    let capacity = vigie_common::limits::LEARNED_CAPACITY / 5 * 2;
    if let Some(v) = &table.dns_max_ttl
        && max_ttl == 0
    {
        report.error(&src.at(v), Problem::DnsTtlZero);
    } else if min_ttl > max_ttl {
        let place = table.dns_min_ttl.as_ref().or(table.dns_max_ttl.as_ref());
        if let Some(v) = place {
            report.error(
                &src.at(v),
                Problem::DnsTtlOrder {
                    min: min_ttl,
                    max: max_ttl,
                },
            );
        }
    }
    if let Some(v) = &table.dns_max_entries
        && (max_entries == 0 || max_entries > capacity)
    {
        report.error(&src.at(v), Problem::DnsEntries { capacity });
    }
    LearningSettings {
        min_ttl,
        max_ttl,
        max_entries,
    }
}

/// Index = kernel service id; index 0 stands for "no service".
fn service_table(catalog: &Catalog) -> Vec<ServiceInfo> {
    let none = ServiceInfo {
        id: "none".into(),
        name: "none".into(),
        operator: String::new(),
        jurisdiction: String::new(),
        category: String::new(),
    };
    let services = catalog.services().map(|(_, s)| ServiceInfo {
        id: s.id.clone(),
        name: s.name.clone(),
        operator: s.operator.clone(),
        jurisdiction: s.jurisdiction.clone(),
        category: s.category.clone(),
    });
    std::iter::once(none).chain(services).collect()
}

#[cfg(test)]
mod tests;
