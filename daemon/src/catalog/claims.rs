//! Values that two services of the catalog claim: a domain, a STUN attribute, signal ports.
//!
//! The kernel's tables hold one service per domain, per STUN attribute and per signal port,
//! and the compiler keeps the first claimant in id order, as it does for a prefix (which
//! `policy::destinations` warns about). Without a word here, the later service would lose the
//! value silently, and which one loses would depend on how the files are named.
//!
//! A claim that takes server names or evidence away from a sovereign service is an error, not
//! a warning: the flows would be taken for the other service, and a policy that blocks the
//! other one would block the state's own service. A domain under a sovereign service's domain
//! takes its names whatever the order (the longest domain wins). Signal ports over a sovereign
//! service's ports are already refused (`check_signals`).

use std::collections::{HashMap, hash_map::Entry};

use super::{Service, ServicePorts};
use crate::policy::{Place, PortRange, diagnostic::Report, problem::Problem, syntax::Proto};

pub(super) fn check(services: &[Service], report: &mut Report) {
    domains(services, report);
    stun_attributes(services, report);
    signals(services, report);
}

/// What to say about a value claimed by `owner` first (in id order), then by `later`.
enum Verdict {
    /// The same service lists it twice.
    Twice,
    /// The table keeps a non-sovereign owner: the sovereign service loses its own value.
    TakenFromSovereign,
    /// The table keeps the owner: the later service loses it.
    Shared,
}

fn verdict(owner: &Service, later: &Service) -> Verdict {
    if owner.id == later.id {
        Verdict::Twice
    } else if later.sovereign && !owner.sovereign {
        Verdict::TakenFromSovereign
    } else {
        Verdict::Shared
    }
}

fn domains(services: &[Service], report: &mut Report) {
    let mut first: HashMap<&str, (&Service, &Place)> = HashMap::new();
    for service in services {
        for (domain, place) in service.domains.iter().zip(&service.places.domains) {
            let (owner, owner_place) = match first.entry(domain) {
                Entry::Vacant(slot) => {
                    slot.insert((service, place));
                    continue;
                }
                Entry::Occupied(entry) => *entry.get(),
            };
            match verdict(owner, service) {
                Verdict::Twice => report.warn(
                    place,
                    Problem::ListedTwice {
                        what: "domain",
                        value: domain.clone(),
                    },
                ),
                // Said at the non-sovereign entry: that is the one to remove.
                Verdict::TakenFromSovereign => report.error(
                    owner_place,
                    Problem::SovereignDomain {
                        domain: domain.clone(),
                        relation: "a domain of".to_owned(),
                        service: service.id.clone(),
                        place: place.clone(),
                        claimant: owner.id.clone(),
                    },
                ),
                Verdict::Shared => report.warn(
                    place,
                    Problem::SharedDomain {
                        domain: domain.clone(),
                        first: owner.id.clone(),
                        first_place: owner_place.clone(),
                    },
                ),
            }
        }
    }
    under_sovereign_domains(services, report);
}

/// A domain under a sovereign service's domain wins its server names there (the longest
/// domain decides), whichever service comes first.
fn under_sovereign_domains(services: &[Service], report: &mut Report) {
    let sovereign: Vec<_> = services
        .iter()
        .filter(|s| s.sovereign)
        .flat_map(listed)
        .collect();
    for (claimant, domain, place) in services.iter().filter(|s| !s.sovereign).flat_map(listed) {
        let under = |(_, own, _): &&(&Service, &String, &Place)| {
            domain
                .strip_suffix(own.as_str())
                .is_some_and(|head| head.ends_with('.'))
        };
        if let Some((service, own, own_place)) = sovereign.iter().find(under) {
            report.error(
                place,
                Problem::SovereignDomain {
                    domain: domain.clone(),
                    relation: format!("under `{own}`, a domain of"),
                    service: service.id.clone(),
                    place: (*own_place).clone(),
                    claimant: claimant.id.clone(),
                },
            );
        }
    }
}

/// The service's domains with their places.
fn listed(service: &Service) -> impl Iterator<Item = (&Service, &String, &Place)> {
    let places = &service.places.domains;
    service
        .domains
        .iter()
        .zip(places)
        .map(move |(d, p)| (service, d, p))
}

fn stun_attributes(services: &[Service], report: &mut Report) {
    let mut first: HashMap<u16, (&Service, &Place)> = HashMap::new();
    for service in services {
        let places = &service.places.stun_attributes;
        for (&attribute, place) in service.stun_attributes.iter().zip(places) {
            let (owner, owner_place) = match first.entry(attribute) {
                Entry::Vacant(slot) => {
                    slot.insert((service, place));
                    continue;
                }
                Entry::Occupied(entry) => *entry.get(),
            };
            // As the catalog writes them.
            let shown = format!("{attribute:#06x}");
            match verdict(owner, service) {
                Verdict::Twice => report.warn(
                    place,
                    Problem::ListedTwice {
                        what: "STUN attribute",
                        value: shown,
                    },
                ),
                Verdict::TakenFromSovereign => report.error(
                    owner_place,
                    Problem::SovereignStun {
                        attribute: shown,
                        service: service.id.clone(),
                        place: place.clone(),
                        claimant: owner.id.clone(),
                    },
                ),
                Verdict::Shared => report.warn(
                    place,
                    Problem::SharedStun {
                        attribute: shown,
                        first: owner.id.clone(),
                        first_place: owner_place.clone(),
                    },
                ),
            }
        }
    }
}

/// Signal ports of a later service that an earlier one marks too: one warning per pair of
/// entries, naming the ports they share.
fn signals(services: &[Service], report: &mut Report) {
    let mut earlier: Vec<(&Service, ServicePorts, &Place)> = Vec::new();
    for service in services {
        for (ports, place) in &service.places.signals {
            let shared = earlier
                .iter()
                .filter(|(_, p, _)| p.proto == ports.proto && p.range.overlaps(ports.range));
            for (owner, owner_ports, owner_place) in shared {
                let overlap = PortRange {
                    min: owner_ports.range.min.max(ports.range.min),
                    max: owner_ports.range.max.min(ports.range.max),
                };
                report.warn(
                    place,
                    Problem::SharedSignal {
                        proto: Proto::name(ports.proto),
                        ports: overlap.to_string(),
                        first: owner.id.clone(),
                        first_place: (*owner_place).clone(),
                    },
                );
            }
        }
        // Added after the service's own entries: overlaps within one service lose nothing.
        earlier.extend(
            service
                .places
                .signals
                .iter()
                .map(|(p, place)| (service, *p, place)),
        );
    }
}
