//! `[[rule]]`: the ordered rules, compiled into the kernel's rule rows (first match wins).

use std::collections::{BTreeSet, HashMap, hash_map::Entry};

use toml::Spanned;
use vigie_common::{
    action, limits,
    policy::{Rule, condition},
};

use super::countries::{RuleCountries, Sets};
use super::{
    diagnostic::{Place, Report, SourceText},
    file::{Names, RuleTable},
    groups::Groups,
    problem::Problem,
    selection::{self, Selection},
    settings, shadow,
    syntax::{self, PortRange, Proto},
};
use crate::{catalog::Catalog, compiled::RuleInfo};

/// What every rule is compiled against.
pub(super) struct Context<'a, 'b> {
    pub catalog: &'a Catalog,
    pub groups: &'a Groups,
    pub sets: &'a Sets,
    pub src: &'a SourceText<'b>,
}

/// The kernel's rule rows, and what the analyses after compilation need to know of each rule
/// (all indexed like the rows).
pub(super) struct Compiled {
    pub rows: Vec<Rule>,
    pub info: Vec<RuleInfo>,
    pub countries: RuleCountries,
    /// Where the `countries` of each rule of `countries` are written (indexed like it).
    pub country_places: Vec<Place>,
    /// Where each rule's name is written.
    pub places: Vec<Place>,
    /// The kernel ids each rule names in `services`: a rule that blocks one of them means to.
    pub named: Vec<BTreeSet<u32>>,
    /// The (rule, sovereign service) pairs that the port-only check already warns about.
    pub port_warned: BTreeSet<(usize, u32)>,
}

/// The rules in order; a rule that did not read leaves no row (its errors refuse the policy).
pub(super) fn compile(
    tables: &[Spanned<Option<RuleTable>>],
    cx: &Context<'_, '_>,
    report: &mut Report,
) -> Compiled {
    let mut first_use = HashMap::new();
    let mut rules = Vec::with_capacity(tables.len());
    let mut info = Vec::with_capacity(tables.len());
    let mut places = Vec::with_capacity(tables.len());
    let mut named = Vec::with_capacity(tables.len());
    let mut port_warned = BTreeSet::new();
    let mut countries = RuleCountries::new();
    let mut country_places = Vec::new();
    for (index, table) in tables.iter().enumerate() {
        if index == limits::MAX_RULES as usize {
            report.error(
                &cx.src.at(table),
                Problem::TooMany {
                    what: "rules",
                    limit: limits::MAX_RULES,
                },
            );
        }
        let Some(rule) = table.as_ref() else { continue };
        check_name(&rule.name, &mut first_use, cx.src, report);
        let (mut row, sets, sovereign_ports) = compile_rule(rule, cx, report);
        // The rule's own class bit. Past the 64th rule there is none, but that rule is already
        // an error (too many rules): it only needs to compile far enough to show its own errors.
        let bit = rules.len() as u32;
        if let (Some(sets), Some(class)) = (sets, 1u64.checked_shl(bit)) {
            row.classes = class;
            row.conditions |= condition::CLASSES;
            countries.push((bit, sets));
            country_places.extend(rule.countries.as_ref().map(|c| cx.src.at(c)));
        }
        port_warned.extend(sovereign_ports.into_iter().map(|id| (rules.len(), id)));
        named.push(named_services(rule, cx.catalog));
        // Its position until the daemon renumbers the rules after the policy in force.
        row.number = rules.len() as u32;
        rules.push(row);
        let place = cx.src.at(&rule.name);
        info.push(RuleInfo {
            name: rule.name.as_ref().clone(),
            // Relative to the policy directory: the same policy read from elsewhere (or the
            // embedded copy) compiles to the same thing.
            place: Some(format!("{}:{}:{}", cx.src.name, place.line, place.column)),
        });
        places.push(place);
    }
    // Only a policy whose rules all read is worth analysing: a rule left out by an error would
    // make the ones after it look reachable, or not, for the wrong reason.
    if !report.has_errors() {
        warn_shadowed(&rules, &info, &places, &countries, cx, report);
    }
    Compiled {
        rows: rules,
        info,
        countries,
        country_places,
        places,
        named,
        port_warned,
    }
}

/// The kernel ids of the services that `services` names (unknown names are errors elsewhere).
fn named_services(rule: &RuleTable, catalog: &Catalog) -> BTreeSet<u32> {
    rule.services
        .iter()
        .flat_map(Spanned::get_ref)
        .filter_map(|name| catalog.kernel_id(name.as_ref()))
        .collect()
}

fn warn_shadowed(
    rules: &[Rule],
    info: &[RuleInfo],
    places: &[Place],
    countries: &RuleCountries,
    cx: &Context<'_, '_>,
    report: &mut Report,
) {
    let universe = shadow::Universe {
        services: cx.catalog.len() as u32 + 1,
        groups: cx.groups.names.len() as u32,
        classes: super::countries::class_combinations(countries),
    };
    for found in shadow::find(rules, &universe) {
        let by = found
            .by
            .map(|by| format!("rule `{}` ({})", info[by].name, places[by]));
        report.warn(
            &places[found.rule],
            Problem::Shadowed {
                rule: info[found.rule].name.clone(),
                by: by.unwrap_or_else(|| "the rules before it, together".to_owned()),
            },
        );
    }
}

fn check_name(
    name: &Spanned<String>,
    first_use: &mut HashMap<String, Place>,
    src: &SourceText<'_>,
    report: &mut Report,
) {
    let place = src.at(name);
    if report
        .take(&place, syntax::identifier("rule name", name.as_ref()))
        .is_none()
    {
        return;
    }
    match first_use.entry(name.as_ref().clone()) {
        Entry::Occupied(first) => {
            report.error(
                &place,
                Problem::DuplicateRule {
                    name: name.as_ref().clone(),
                    first: first.get().clone(),
                },
            );
        }
        Entry::Vacant(slot) => {
            slot.insert(place);
        }
    }
}

/// The rule's row, the countries it names (`None` when it names none), and the sovereign
/// services that its ports alone were found to block.
fn compile_rule(
    rule: &RuleTable,
    cx: &Context<'_, '_>,
    report: &mut Report,
) -> (Rule, Option<Vec<super::countries::CountrySet>>, Vec<u32>) {
    let errors_before = report.error_count();
    let selection = selection::select(rule, cx.catalog, cx.sets, cx.src, report);
    let countries = rule.countries.as_ref().map(|list| {
        if list.as_ref().is_empty() {
            report.error(&cx.src.at(list), Problem::EmptyList("countries"));
        }
        cx.sets.union(list.as_ref(), cx.src, report)
    });
    let groups = group_bits(&rule.groups, "groups", cx, report);
    let except_groups = group_bits(&rule.except_groups, "except_groups", cx, report).unwrap_or(0);
    let transport = transport(rule, cx.src, report);
    let action = report.take(
        &cx.src.at(&rule.action),
        settings::rule_action(&rule.action),
    );
    let action = action.unwrap_or(action::ALLOW);
    let own_mode = rule
        .mode
        .as_ref()
        .and_then(|m| report.take(&cx.src.at(m), settings::rule_mode(m.as_ref())));
    let sources = Sources {
        only: groups,
        except: except_groups,
    };
    // Warnings about a rule that has errors would only add noise.
    let mut sovereign_ports = Vec::new();
    if report.error_count() == errors_before {
        sovereign_ports = warn(rule, &selection, &transport, action, cx, report);
        warn_excepted(rule, sources, cx, report);
    }
    (
        row(
            &selection,
            sources,
            &transport,
            action | own_mode.unwrap_or(0),
        ),
        countries,
        sovereign_ports,
    )
}

/// A group both named and excepted: the kernel tests the exception after the groups, so the
/// rule never matches a source of that group, which is not what naming it says.
fn warn_excepted(rule: &RuleTable, sources: Sources, cx: &Context<'_, '_>, report: &mut Report) {
    let both = sources.only.unwrap_or(0) & sources.except;
    let Some(except) = rule.except_groups.as_ref().filter(|_| both != 0) else {
        return;
    };
    for name in except.as_ref() {
        let in_both = cx
            .groups
            .id(name.as_ref())
            .is_some_and(|id| id < limits::MAX_GROUPS && both & (1 << id) != 0);
        if in_both {
            report.warn(
                &cx.src.at(name),
                Problem::GroupExcepted(name.as_ref().clone()),
            );
        }
    }
}

/// The source-group conditions of a rule: `only` is `None` when the rule names no group.
#[derive(Clone, Copy)]
struct Sources {
    only: Option<u64>,
    except: u64,
}

fn row(selection: &Selection, sources: Sources, transport: &Transport, action: u32) -> Rule {
    let (mut conditions, services) = match selection {
        Selection::Any => (0, [0; 2]),
        Selection::Services(set) => (condition::SERVICES, service_bits(set)),
        Selection::Unrecognised => (condition::NO_SERVICE, [0; 2]),
    };
    if sources.only.is_some() {
        conditions |= condition::GROUPS;
    }
    let ports = transport.ports.unwrap_or(PortRange::ANY);
    Rule {
        services,
        groups: sources.only.unwrap_or(0),
        except_groups: sources.except,
        classes: 0,
        conditions,
        action,
        proto: transport.proto.map_or(0, Proto::number),
        port_min: ports.min,
        port_max: ports.max,
        ..Rule::default()
    }
}

/// Bit n of word n/64 for each kernel service id n.
fn service_bits(set: &BTreeSet<u32>) -> [u64; 2] {
    let mut bits = [0u64; 2];
    // Ids past the kernel's limit are already an error of the catalog.
    for &id in set.iter().filter(|&&id| id < limits::MAX_SERVICES) {
        bits[(id / 64) as usize] |= 1 << (id % 64);
    }
    bits
}

fn group_bits(
    list: &Names,
    key: &'static str,
    cx: &Context<'_, '_>,
    report: &mut Report,
) -> Option<u64> {
    let list = list.as_ref()?;
    if list.as_ref().is_empty() {
        report.error(&cx.src.at(list), Problem::EmptyList(key));
    }
    let mut bits = 0u64;
    for name in list.as_ref() {
        match cx.groups.id(name.as_ref()) {
            Some(id) if id < limits::MAX_GROUPS => bits |= 1 << id,
            // Past the kernel's limit: already an error at the group's definition.
            Some(_) => {}
            None => report.error(
                &cx.src.at(name),
                Problem::UnknownGroup(name.as_ref().clone()),
            ),
        }
    }
    Some(bits)
}

/// The protocol, and the remote port range when the rule names one.
fn transport(rule: &RuleTable, src: &SourceText<'_>, report: &mut Report) -> Transport {
    let proto = rule
        .proto
        .as_ref()
        .and_then(|p| report.take(&src.at(p), syntax::proto(p.as_ref(), true)));
    let Some(spec) = &rule.ports else {
        return Transport { proto, ports: None };
    };
    let range = report.take(&src.at(spec), syntax::port_range(spec.as_ref()));
    if rule.proto.is_none() || proto.is_some_and(|p| !p.has_ports()) {
        report.error(&src.at(spec), Problem::PortsWithoutProto);
    }
    Transport {
        proto,
        ports: range,
    }
}

struct Transport {
    proto: Option<Proto>,
    ports: Option<PortRange>,
}

/// Warnings about the rule alone; gives the sovereign services its ports alone block.
fn warn(
    rule: &RuleTable,
    selection: &Selection,
    transport: &Transport,
    action: u32,
    cx: &Context<'_, '_>,
    report: &mut Report,
) -> Vec<u32> {
    if matches!(selection, Selection::Services(set) if set.is_empty()) {
        report.warn(
            &cx.src.at(&rule.name),
            Problem::SelectsNothing {
                rule: rule.name.as_ref().clone(),
            },
        );
    }
    if let (Some(proto), Some(ports)) = (transport.proto, transport.ports)
        && action::blocks(action)
        && !rule.selects_services()
    {
        return warn_sovereign_ports(rule, proto, ports, cx, report);
    }
    Vec::new()
}

/// A rule that blocks by port alone also blocks the sovereign services that use the port (Visio's
/// TURN relays listen on 3478, like Zoom's and Teams' STUN): ports do not identify a service.
/// Gives the kernel ids of the services it warns about.
fn warn_sovereign_ports(
    rule: &RuleTable,
    proto: Proto,
    ports: PortRange,
    cx: &Context<'_, '_>,
    report: &mut Report,
) -> Vec<u32> {
    let mut warned = Vec::new();
    let Some(place) = rule.ports.as_ref().map(|p| cx.src.at(p)) else {
        return warned;
    };
    for (id, service) in cx.catalog.services().filter(|(_, s)| s.sovereign) {
        let hit = service
            .ports
            .iter()
            .find(|p| p.proto == proto && p.range.overlaps(ports));
        if let Some(hit) = hit {
            let problem = Problem::SovereignPort {
                rule: rule.name.as_ref().clone(),
                proto: proto.name(),
                ports: ports.to_string(),
                service: service.id.clone(),
                service_ports: hit.range.to_string(),
            };
            report.warn(&place, problem);
            warned.push(id);
        }
    }
    warned
}
