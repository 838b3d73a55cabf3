//! The service catalog: one TOML file per service under `catalog/`, saying who operates the
//! service, under which jurisdiction, and how to recognise its traffic (domain suffixes,
//! address prefixes, ports). Operators describe their own services the same way.

mod claims;
mod file;
pub mod import;
pub mod listing;

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use toml::{Spanned, value::Date};

use crate::policy::{
    Place, PortRange, Proto,
    diagnostic::{Report, SourceText},
    problem::Problem,
    syntax,
};
use file::{PortsTable, ServiceFile};
use vigie_common::limits;

/// One service of the catalog, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// `[a-z0-9-]+`, equal to the file's stem.
    pub id: String,
    pub name: String,
    pub operator: String,
    /// ISO 3166-1 alpha-2 code of the operator's country.
    pub jurisdiction: String,
    pub category: String,
    /// One of the state's own services, which a policy must never block by accident.
    pub sovereign: bool,
    pub domains: Vec<String>,
    pub asns: Vec<u32>,
    /// STUN attribute types only this vendor's clients send (weaker evidence than an address
    /// or a server name).
    pub stun_attributes: Vec<u16>,
    pub source: Provenance,
    pub ports: Vec<ServicePorts>,
    /// Each prefix with the place it is written, for diagnostics that name both claimants.
    pub prefixes: Vec<(IpNet, Place)>,
    /// Where the id is written.
    pub place: Place,
    /// Where the other values are written.
    pub(crate) places: Places,
}

/// Where a service's values are written, for the diagnostics about them that come after
/// validation (two services that claim the same one, a kernel table they overflow).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Places {
    /// Indexed like `Service::domains`.
    pub domains: Vec<Place>,
    /// Indexed like `Service::stun_attributes`.
    pub stun_attributes: Vec<Place>,
    /// Each port entry marked `signal = true`, with where the mark is written.
    pub signals: Vec<(ServicePorts, Place)>,
    /// The date in `[source] retrieved`.
    pub retrieved: Place,
}

/// Where a service's data came from, and how old it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provenance {
    pub vendor: String,
    pub retrieved: Date,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServicePorts {
    pub proto: Proto,
    pub range: PortRange,
    /// The ports alone suggest the service (see `vigie_common::signal`).
    pub signal: bool,
}

/// The services in id order; a service's kernel id is its position plus one (0 is "none").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalog {
    services: Vec<Service>,
    /// Stems of catalog files that did not compile: a rule naming one of them gets no second,
    /// misleading "unknown service" error.
    broken: BTreeSet<String>,
}

impl Catalog {
    /// `(kernel id, service)` in id order.
    pub fn services(&self) -> impl Iterator<Item = (u32, &Service)> {
        (1..).zip(self.services.iter())
    }

    #[must_use]
    pub fn kernel_id(&self, id: &str) -> Option<u32> {
        self.services
            .binary_search_by(|s| s.id.as_str().cmp(id))
            .ok()
            .map(|i| i as u32 + 1)
    }

    #[must_use]
    pub fn get(&self, id: &str) -> Option<&Service> {
        self.kernel_id(id).map(|k| &self.services[k as usize - 1])
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.services.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    pub(crate) fn is_broken(&self, id: &str) -> bool {
        self.broken.contains(id)
    }

    pub(crate) fn has_broken(&self) -> bool {
        !self.broken.is_empty()
    }
}

/// Parses and validates the catalog files (`catalog/<stem>.toml`), reporting every problem.
pub(crate) fn parse(files: &[SourceText<'_>], report: &mut Report) -> Catalog {
    let mut by_id: BTreeMap<String, Service> = BTreeMap::new();
    let mut broken = BTreeSet::new();
    for src in files {
        let stem = stem(&src.name);
        let Some(service) = parse_file(src, stem, report) else {
            broken.insert(stem.to_owned());
            continue;
        };
        if let Some(first) = by_id.get(&service.id) {
            let problem = Problem::DuplicateService {
                id: service.id.clone(),
                first: first.place.clone(),
            };
            report.error(&service.place, problem);
        } else {
            by_id.insert(service.id.clone(), service);
        }
    }
    let services: Vec<Service> = by_id.into_values().collect();
    check_capacity(&services, report);
    check_signals(&services, report);
    claims::check(&services, report);
    Catalog { services, broken }
}

/// A signal tags a flow that nothing stronger explains with its service: on the ports of a
/// sovereign service it would tag that service's own flows (its media, when its addresses are
/// not listed) as the other one, and a policy that blocks the other would block it.
fn check_signals(services: &[Service], report: &mut Report) {
    let signals = services
        .iter()
        .flat_map(|s| s.places.signals.iter().map(move |signal| (s, signal)));
    for (service, (ports, place)) in signals {
        let (proto, range) = (ports.proto, ports.range);
        for sovereign in services
            .iter()
            .filter(|s| s.sovereign && s.id != service.id)
        {
            let hit = sovereign
                .ports
                .iter()
                .find(|p| p.proto == proto && p.range.overlaps(range));
            if let Some(hit) = hit {
                let problem = Problem::SovereignSignal {
                    proto: proto.name(),
                    ports: range.to_string(),
                    service: sovereign.id.clone(),
                    service_ports: hit.range.to_string(),
                    place: sovereign.place.clone(),
                };
                report.error(place, problem);
            }
        }
    }
}

fn stem(name: &str) -> &str {
    let file = name.rsplit('/').next().unwrap_or(name);
    file.strip_suffix(".toml").unwrap_or(file)
}

/// Kernel ids 1..MAX_SERVICES-1: the first service past them is the error's place.
fn check_capacity(services: &[Service], report: &mut Report) {
    let limit = limits::MAX_SERVICES - 1;
    if let Some(extra) = services.get(limit as usize) {
        report.error(
            &extra.place,
            Problem::TooMany {
                what: "services",
                limit,
            },
        );
    }
}

/// The service, or `None` when the file has errors (all of them reported).
fn parse_file(src: &SourceText<'_>, stem: &str, report: &mut Report) -> Option<Service> {
    let file: ServiceFile = src.parse(report)?;
    let errors_before = report.error_count();
    let service = validate(file, src, stem, report);
    service.filter(|_| report.error_count() == errors_before)
}

fn validate(
    file: ServiceFile,
    src: &SourceText<'_>,
    stem: &str,
    report: &mut Report,
) -> Option<Service> {
    check_identity(&file, src, stem, report);
    let domains = valid(&file.domains, src, report, |d| {
        syntax::domain(d).map(|()| d.to_owned())
    });
    let (domains, domain_places) = domains.into_iter().unzip();
    let prefixes = valid(&file.prefixes, src, report, syntax::prefix);
    let ports: Vec<(ServicePorts, Option<Place>)> = file
        .ports
        .iter()
        .filter_map(|p| ports(p, src, report))
        .collect();
    let signals = ports
        .iter()
        .filter_map(|(p, place)| Some((*p, place.clone()?)))
        .collect();
    let retrieved_place = src.at(&file.source.retrieved);
    let retrieved = report.take(
        &retrieved_place,
        syntax::date(file.source.retrieved.as_ref()),
    )?;
    let places = Places {
        domains: domain_places,
        stun_attributes: file.stun_attributes.iter().map(|a| src.at(a)).collect(),
        signals,
        retrieved: retrieved_place,
    };
    Some(Service {
        place: src.at(&file.id),
        id: file.id.into_inner(),
        name: file.name.into_inner(),
        operator: file.operator.into_inner(),
        jurisdiction: file.jurisdiction.into_inner(),
        category: file.category.into_inner(),
        sovereign: file.sovereign,
        domains,
        asns: file.asns,
        stun_attributes: file
            .stun_attributes
            .into_iter()
            .map(Spanned::into_inner)
            .collect(),
        source: Provenance {
            vendor: file.source.vendor.into_inner(),
            retrieved,
        },
        ports: ports.into_iter().map(|(p, _)| p).collect(),
        prefixes,
        places,
    })
}

/// Each value that passes `check`, with its place; the others are reported.
fn valid<T>(
    values: &[Spanned<String>],
    src: &SourceText<'_>,
    report: &mut Report,
    check: impl Fn(&str) -> Result<T, Problem>,
) -> Vec<(T, Place)> {
    let each = |v: &Spanned<String>| Some((report.take(&src.at(v), check(v.as_ref()))?, src.at(v)));
    values.iter().filter_map(each).collect()
}

/// The id, names, jurisdiction and category.
fn check_identity(file: &ServiceFile, src: &SourceText<'_>, stem: &str, report: &mut Report) {
    let id = file.id.as_ref();
    let id_ok = report
        .take(&src.at(&file.id), syntax::identifier("service id", id))
        .is_some();
    if id_ok && id != stem {
        report.error(
            &src.at(&file.id),
            Problem::IdMismatch {
                id: id.clone(),
                stem: stem.to_owned(),
            },
        );
    }
    report.take(
        &src.at(&file.name),
        syntax::non_empty("name", file.name.as_ref()),
    );
    report.take(
        &src.at(&file.operator),
        syntax::non_empty("operator", file.operator.as_ref()),
    );
    report.take(
        &src.at(&file.source.vendor),
        syntax::non_empty("source.vendor", file.source.vendor.as_ref()),
    );
    report.take(
        &src.at(&file.jurisdiction),
        syntax::jurisdiction(file.jurisdiction.as_ref()),
    );
    report.take(
        &src.at(&file.category),
        syntax::category(file.category.as_ref()),
    );
}

/// The entry, and where its `signal = true` is written when it is a signal.
fn ports(
    table: &PortsTable,
    src: &SourceText<'_>,
    report: &mut Report,
) -> Option<(ServicePorts, Option<Place>)> {
    let proto = report.take(
        &src.at(&table.proto),
        syntax::proto(table.proto.as_ref(), false),
    );
    let range = report.take(
        &src.at(&table.range),
        syntax::port_range(table.range.as_ref()),
    );
    let (proto, range) = (proto?, range?);
    let signal = match &table.signal {
        Some(flag) if *flag.as_ref() => {
            let place = src.at(flag);
            report.take(&place, signal_ports(proto, range))?;
            Some(place)
        }
        _ => None,
    };
    let ports = ServicePorts {
        proto,
        range,
        signal: signal.is_some(),
    };
    Some((ports, signal))
}

/// Ports many services share (DNS, HTTP, TLS, STUN/TURN, which the sovereign services use
/// too) cannot tell a service; a signal range is kept small (each port is a kernel entry).
fn signal_ports(proto: Proto, range: PortRange) -> Result<(), Problem> {
    const SHARED: [u16; 4] = [53, 80, 443, 3478];
    if !proto.has_ports() {
        return Err(Problem::SignalWithoutPorts);
    }
    if let Some(port) = SHARED.iter().find(|&&p| range.min <= p && p <= range.max) {
        return Err(Problem::SharedSignalPort(*port));
    }
    let ports = u32::from(range.max - range.min) + 1;
    if ports > vigie_common::limits::MAX_SIGNAL_RANGE {
        return Err(Problem::SignalRangeTooLarge {
            ports,
            max: vigie_common::limits::MAX_SIGNAL_RANGE,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    const ZOOM: &str = r#"id = "zoom"
name = "Zoom"
operator = "Zoom Video Communications, Inc."
jurisdiction = "US"
category = "conferencing"
domains = ["zoom.us"]
prefixes = ["192.0.2.0/25", "2001:db8::/32"]
[source]
vendor = "test"
retrieved = 2024-06-01
[[ports]]
proto = "udp"
range = "8801-8810"
"#;

    fn src<'a>(name: &str, text: &'a str) -> SourceText<'a> {
        SourceText::new(PathBuf::from(name), name.to_owned(), text)
    }

    fn parse_one(name: &str, text: &str) -> (Catalog, Vec<String>) {
        let mut report = Report::default();
        let catalog = parse(&[src(name, text)], &mut report);
        let errors = report
            .into_errors()
            .0
            .iter()
            .map(ToString::to_string)
            .collect();
        (catalog, errors)
    }

    #[test]
    fn a_valid_service() {
        let (catalog, errors) = parse_one("catalog/zoom.toml", ZOOM);
        assert!(errors.is_empty(), "{errors:?}");
        let zoom = catalog.get("zoom").unwrap();
        assert_eq!(catalog.kernel_id("zoom"), Some(1));
        assert_eq!(zoom.jurisdiction, "US");
        assert_eq!(
            zoom.ports,
            vec![ServicePorts {
                proto: Proto::Udp,
                range: PortRange {
                    min: 8801,
                    max: 8810
                },
                signal: false,
            }]
        );
        assert_eq!(zoom.prefixes.len(), 2);
        assert_eq!(zoom.prefixes[1].1.to_string(), "catalog/zoom.toml:7:29");
        assert_eq!(zoom.source.retrieved.to_string(), "2024-06-01");
    }

    #[test]
    fn every_problem_of_a_file_is_reported() {
        let text = ZOOM
            .replace("\"zoom\"", "\"zoom2\"")
            .replace("\"US\"", "\"usa\"")
            .replace("192.0.2.0/25", "192.0.2.1/25")
            .replace("8801-8810", "8810-8801");
        let (catalog, errors) = parse_one("catalog/zoom.toml", &text);
        assert_eq!(
            errors,
            vec![
                "catalog/zoom.toml:1:6: service id `zoom2` must equal the file name `zoom` (without .toml)",
                "catalog/zoom.toml:4:16: jurisdiction `usa` is not an ISO 3166-1 alpha-2 code (two capital letters, like \"US\")",
                "catalog/zoom.toml:7:13: prefix `192.0.2.1/25` has host bits set: did you mean `192.0.2.0/25`?",
                "catalog/zoom.toml:13:9: port range 8810-8801 is reversed: write 8801-8810",
            ]
        );
        assert!(catalog.is_empty());
        assert!(catalog.is_broken("zoom"));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let text = ZOOM
            .replace("sovereign", "x")
            .replace("category =", "colour = \"red\"\ncategory =");
        let (_, errors) = parse_one("catalog/zoom.toml", &text);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("catalog/zoom.toml:5:1: unknown field `colour`"),
            "{errors:?}"
        );
    }

    #[test]
    fn retrieved_must_be_a_date() {
        let (_, errors) = parse_one(
            "catalog/zoom.toml",
            &ZOOM.replace("2024-06-01", "2024-06-01T10:00:00"),
        );
        assert_eq!(
            errors,
            vec![
                "catalog/zoom.toml:10:13: retrieved must be a date like 2024-06-01, without a time"
            ]
        );
    }
}
