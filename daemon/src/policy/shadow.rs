//! Rules that can never decide: every flow they match is decided by an earlier rule.
//!
//! The question is answered on the kernel's own matching function (`vigie_common::matching`)
//! over a finite set of representative flows. Two flows that no rule tells apart get the same
//! verdict, so it is enough to try one flow per class: every service id, every group id, each
//! protocol a rule names plus one that none names, and for TCP and UDP each port where some
//! rule's range starts or ends. A rule is reachable if one of its representatives reaches it.

use vigie_common::{
    matching::{Subject, matches},
    policy::{Rule, condition},
};

/// A protocol that no rule names (GRE), to stand for all of them.
const OTHER_PROTO: u8 = 47;
const PORTED: [u8; 2] = [6, 17];
/// Above this many representatives for one rule the analysis gives up on that rule rather than
/// slow `vigie check` down (it needs a policy with very many services, groups and port rules).
const BUDGET: usize = 2_000_000;

/// A rule that never decides, and what decides in its place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Shadowed {
    pub rule: usize,
    /// The one earlier rule that matches every flow this one matches, if a single one does;
    /// `None` when it takes several earlier rules together.
    pub by: Option<usize>,
}

/// The universe the rules are judged in: how many service and group ids exist (0 included),
/// and every combination of class bits that a destination can carry.
#[derive(Clone, Debug)]
pub(super) struct Universe {
    pub services: u32,
    pub groups: u32,
    pub classes: Vec<u64>,
}

pub(super) fn find(rules: &[Rule], universe: &Universe) -> Vec<Shadowed> {
    let marks = Marks::of(rules, &universe.classes);
    let mut found = Vec::new();
    for (index, rule) in rules.iter().enumerate() {
        let Some(flows) = representatives(rule, universe, &marks) else {
            continue;
        };
        let mine: Vec<Subject> = flows.into_iter().filter(|f| matches(rule, f)).collect();
        // A rule that matches nothing at all is another diagnostic's business.
        if mine.is_empty() {
            continue;
        }
        let earlier = &rules[..index];
        let reached = mine
            .iter()
            .any(|flow| !earlier.iter().any(|e| matches(e, flow)));
        if !reached {
            let by = earlier
                .iter()
                .position(|e| mine.iter().all(|flow| matches(e, flow)));
            found.push(Shadowed { rule: index, by });
        }
    }
    found
}

/// What the rules name: protocols, port boundaries; and the class combinations that exist.
struct Marks {
    protos: Vec<u8>,
    ports: Vec<u16>,
    classes: Vec<u64>,
}

impl Marks {
    fn of(rules: &[Rule], classes: &[u64]) -> Self {
        let mut protos: Vec<u8> = rules
            .iter()
            .filter_map(|r| u8::try_from(r.proto).ok().filter(|&p| p != 0))
            .chain([1, 6, 17, 58, OTHER_PROTO])
            .collect();
        protos.sort_unstable();
        protos.dedup();
        let mut ports: Vec<u16> = rules
            .iter()
            .flat_map(|r| [Some(r.port_min), r.port_max.checked_add(1)])
            .flatten()
            .chain([0])
            .collect();
        ports.sort_unstable();
        ports.dedup();
        let mut classes: Vec<u64> = classes.iter().copied().chain([0]).collect();
        classes.sort_unstable();
        classes.dedup();
        Self {
            protos,
            ports,
            classes,
        }
    }
}

/// The representative flows within `rule`'s own reach, or `None` past the budget.
fn representatives(rule: &Rule, universe: &Universe, marks: &Marks) -> Option<Vec<Subject>> {
    let services: Vec<u32> = if rule.conditions & condition::NO_SERVICE != 0 {
        vec![0]
    } else if rule.conditions & condition::SERVICES != 0 {
        (1..universe.services)
            .filter(|&id| id < 128 && rule.services[(id / 64) as usize] & (1 << (id % 64)) != 0)
            .collect()
    } else {
        (0..universe.services).collect()
    };
    let protos: Vec<u8> = match u8::try_from(rule.proto) {
        Ok(0) | Err(_) => marks.protos.clone(),
        Ok(p) => vec![p],
    };
    let ported = marks
        .ports
        .iter()
        .filter(|&&p| p >= rule.port_min && p <= rule.port_max)
        .count();
    let per_proto: usize = protos
        .iter()
        .map(|p| if PORTED.contains(p) { ported } else { 1 })
        .sum();
    let total = services.len() * universe.groups as usize * per_proto * marks.classes.len();
    if total > BUDGET {
        return None;
    }
    let mut flows = Vec::with_capacity(total);
    for &service in &services {
        for group in 0..universe.groups {
            for &proto in &protos {
                // Only TCP and UDP packets carry ports; the kernel reads 0 for the others.
                let ports: &[u16] = if PORTED.contains(&proto) {
                    &marks.ports
                } else {
                    &[0]
                };
                for &remote_port in ports {
                    for &classes in &marks.classes {
                        flows.push(Subject {
                            service,
                            classes,
                            group,
                            proto,
                            remote_port,
                        });
                    }
                }
            }
        }
    }
    Some(flows)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANY: Rule = Rule {
        services: [0; 2],
        groups: 0,
        except_groups: 0,
        classes: 0,
        conditions: 0,
        action: 0,
        proto: 0,
        port_min: 0,
        port_max: u16::MAX,
        number: 0,
        pad: 0,
    };
    const UNIVERSE: Universe = Universe {
        services: 4,
        groups: 3,
        classes: Vec::new(),
    };

    fn services(ids: &[u32]) -> Rule {
        let mut rule = Rule {
            conditions: condition::SERVICES,
            ..ANY
        };
        for id in ids {
            rule.services[0] |= 1 << id;
        }
        rule
    }

    #[test]
    fn a_narrower_rule_after_a_wider_one_is_shadowed_by_it() {
        let wide = services(&[1, 2]);
        let narrow = Rule {
            proto: 17,
            port_min: 3478,
            port_max: 3481,
            ..services(&[1])
        };
        assert_eq!(
            find(&[wide, narrow], &UNIVERSE),
            [Shadowed {
                rule: 1,
                by: Some(0)
            }]
        );
        assert!(find(&[narrow, wide], &UNIVERSE).is_empty());
    }

    #[test]
    fn rules_that_cover_a_later_one_together() {
        let in_group_1 = Rule {
            groups: 0b010,
            conditions: condition::SERVICES | condition::GROUPS,
            ..services(&[1])
        };
        let outside_group_1 = Rule {
            except_groups: 0b010,
            ..services(&[1])
        };
        let zoom = services(&[1]);
        assert_eq!(
            find(&[in_group_1, outside_group_1, zoom], &UNIVERSE),
            [Shadowed { rule: 2, by: None }]
        );
    }

    #[test]
    fn a_port_gap_keeps_a_rule_reachable() {
        let low = Rule {
            proto: 6,
            port_min: 0,
            port_max: 442,
            ..ANY
        };
        let high = Rule {
            proto: 6,
            port_min: 444,
            ..ANY
        };
        let https = Rule {
            proto: 6,
            port_min: 443,
            port_max: 443,
            ..ANY
        };
        assert!(find(&[low, high, https], &UNIVERSE).is_empty());
        let all_tcp = Rule { proto: 6, ..ANY };
        assert_eq!(
            find(&[low, high, https, all_tcp], &UNIVERSE),
            [Shadowed { rule: 3, by: None }]
        );
    }

    #[test]
    fn unknown_traffic_and_services_do_not_shadow_each_other() {
        let unknown = Rule {
            conditions: condition::NO_SERVICE,
            ..ANY
        };
        let all = services(&[1, 2, 3]);
        assert!(find(&[unknown, all], &UNIVERSE).is_empty());
        assert_eq!(
            find(&[unknown, all, ANY], &UNIVERSE),
            [Shadowed { rule: 2, by: None }]
        );
    }
}
