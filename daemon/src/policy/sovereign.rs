//! Sovereign services that a policy blocks without naming them.
//!
//! A sovereign service (`sovereign = true` in the catalog: the state's own) is meant to stay
//! reachable. A block written by category, jurisdiction, protocol or as the default is almost
//! always written with other services in mind, and catches it too; a rule that names the
//! service in `services` is how a policy says that it means to decide for it.
//!
//! The question is put to the kernel's own matching function (`vigie_common::matching`), as
//! the shadowed-rule analysis does, on the flows the catalog says the service makes: each of
//! its port ranges, tried at its start and at every port where some rule's range starts or
//! ends inside it (the verdict can change only there), and TCP and UDP 443 for a service known
//! by its domains (TLS and QUIC); from every source group, to every class its destinations
//! carry. Port-only rules have their own, earlier warning (`rules::warn_sovereign_ports`) and
//! do not get a second one here.

use std::{
    collections::{BTreeMap, BTreeSet},
    ops::Bound,
};

use vigie_common::{
    action::{self, rule_mode},
    matching::{Subject, matches},
    policy::Rule,
};

use super::{
    destinations::Destinations,
    diagnostic::{Place, Report},
    problem::Problem,
    syntax::{PortRange, Proto},
};
use crate::{
    catalog::{Catalog, Service},
    compiled::RuleInfo,
};

/// What decides a flow, in the kernel's order: the rules, then the default action; with what
/// a warning needs to say which rule, and whether the rule meant it.
pub(super) struct Decisions<'a> {
    pub rules: &'a [Rule],
    pub names: &'a [RuleInfo],
    pub places: &'a [Place],
    /// The kernel ids each rule names in `services`.
    pub named: &'a [BTreeSet<u32>],
    /// (rule, service) pairs that the port-only warning already names.
    pub port_warned: &'a BTreeSet<(usize, u32)>,
    /// Index = group id; 0 is "in no group".
    pub groups: &'a [String],
    pub default_action: u32,
    pub default_place: &'a Place,
}

/// What decided a flow: a rule (its index) or, when no rule matched, the default action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Decider {
    Rule(usize),
    Default,
}

/// Ports of one protocol that every rule treats alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Stretch {
    proto: Proto,
    ports: PortRange,
}

/// Warns, for each sovereign service, about each rule (or the default) that blocks some of its
/// flows without naming it: one warning per decider and set of flows, with the groups that lose
/// them.
pub(super) fn warn(
    decisions: &Decisions<'_>,
    catalog: &Catalog,
    destinations: &Destinations,
    report: &mut Report,
) {
    let boundaries = boundaries(decisions.rules);
    for (id, service) in catalog.services().filter(|(_, s)| s.sovereign) {
        let stretches = stretches(service, &boundaries);
        let classes = classes(id, destinations);
        let mut blocked: BTreeMap<Decider, BTreeMap<u32, BTreeSet<Stretch>>> = BTreeMap::new();
        for group in 0..decisions.groups.len() as u32 {
            for &stretch in &stretches {
                for &classes in &classes {
                    let subject = Subject {
                        service: id,
                        classes,
                        group,
                        proto: stretch.proto.number() as u8,
                        remote_port: stretch.ports.min,
                    };
                    let decider = decisions.decide(&subject);
                    if decisions.blocks_unsaid(decider, id) {
                        blocked
                            .entry(decider)
                            .or_default()
                            .entry(group)
                            .or_default()
                            .insert(stretch);
                    }
                }
            }
        }
        for (decider, by_group) in blocked {
            // Groups that lose the same flows to the same decider share one warning.
            let mut by_flows: BTreeMap<Vec<Stretch>, Vec<u32>> = BTreeMap::new();
            for (group, lost) in by_group {
                by_flows.entry(merged(lost)).or_default().push(group);
            }
            for (lost, groups) in by_flows {
                let flows = format!("{} from {}", transports(&lost), decisions.sources(&groups));
                decisions.report(decider, service, flows, report);
            }
        }
    }
}

impl Decisions<'_> {
    /// The first rule that matches, as the kernel's rule walk finds it.
    fn decide(&self, subject: &Subject) -> Decider {
        self.rules
            .iter()
            .position(|rule| matches(rule, subject))
            .map_or(Decider::Default, Decider::Rule)
    }

    /// Whether `decider` blocks `service` without the policy saying so by name. A rule's own
    /// mode does not matter: a block that only reports today is the block of tomorrow.
    fn blocks_unsaid(&self, decider: Decider, service: u32) -> bool {
        match decider {
            Decider::Rule(index) => {
                action::blocks(self.rules[index].action & rule_mode::ACTION_MASK)
                    && !self.named[index].contains(&service)
                    && !self.port_warned.contains(&(index, service))
            }
            Decider::Default => action::blocks(self.default_action),
        }
    }

    /// The source groups, as a reader knows them.
    fn sources(&self, groups: &[u32]) -> String {
        if groups.len() == self.groups.len() {
            return "every source".to_owned();
        }
        let name = |&group: &u32| match self.groups.get(group as usize) {
            Some(name) if group != 0 => format!("group `{name}`"),
            _ => "sources in no group".to_owned(),
        };
        groups.iter().map(name).collect::<Vec<_>>().join(", ")
    }

    fn report(&self, decider: Decider, service: &Service, flows: String, report: &mut Report) {
        match decider {
            Decider::Rule(index) => report.warn(
                &self.places[index],
                Problem::SovereignBlocked {
                    rule: self.names[index].name.clone(),
                    service: service.id.clone(),
                    flows,
                },
            ),
            Decider::Default => report.warn(
                self.default_place,
                Problem::SovereignDefault {
                    service: service.id.clone(),
                    flows,
                },
            ),
        }
    }
}

/// Every port where some rule's range starts, or starts no longer.
fn boundaries(rules: &[Rule]) -> BTreeSet<u16> {
    rules
        .iter()
        .flat_map(|r| [Some(r.port_min), r.port_max.checked_add(1)])
        .flatten()
        .collect()
}

/// The service's flows, cut where a rule's port range starts or ends: the catalog's port
/// ranges, and TCP and UDP 443 when the service is known by its domains.
fn stretches(service: &Service, boundaries: &BTreeSet<u16>) -> Vec<Stretch> {
    let https = PortRange { min: 443, max: 443 };
    let by_name = [(Proto::Tcp, https), (Proto::Udp, https)];
    let by_name = if service.domains.is_empty() {
        &by_name[..0]
    } else {
        &by_name[..]
    };
    let listed = service.ports.iter().map(|p| (p.proto, p.range));
    let mut out = Vec::new();
    for (proto, range) in listed.chain(by_name.iter().copied()) {
        let inside = (Bound::Excluded(range.min), Bound::Included(range.max));
        let starts: Vec<u16> = std::iter::once(range.min)
            .chain(boundaries.range(inside).copied())
            .collect();
        for (i, &min) in starts.iter().enumerate() {
            let max = starts.get(i + 1).map_or(range.max, |next| next - 1);
            out.push(Stretch {
                proto,
                ports: PortRange { min, max },
            });
        }
    }
    out
}

/// The classes the service's own destinations carry (the countries of its addresses), and
/// none: a flow the service's domains explain may go to an address no prefix lists.
fn classes(service: u32, destinations: &Destinations) -> BTreeSet<u64> {
    let v4 = destinations.v4.iter().map(|(_, d)| d);
    let v6 = destinations.v6.iter().map(|(_, d)| d);
    v4.chain(v6)
        .filter(|d| d.service == service)
        .map(|d| d.classes)
        .chain([0])
        .collect()
}

/// Adjacent and overlapping stretches of one protocol as one.
fn merged(stretches: BTreeSet<Stretch>) -> Vec<Stretch> {
    let mut out: Vec<Stretch> = Vec::new();
    for stretch in stretches {
        match out.last_mut() {
            Some(last)
                if last.proto == stretch.proto
                    && u32::from(stretch.ports.min) <= u32::from(last.ports.max) + 1 =>
            {
                last.ports.max = last.ports.max.max(stretch.ports.max);
            }
            _ => out.push(stretch),
        }
    }
    out
}

fn transports(stretches: &[Stretch]) -> String {
    stretches
        .iter()
        .map(|s| format!("{} {}", s.proto.name(), s.ports))
        .collect::<Vec<_>>()
        .join(", ")
}
