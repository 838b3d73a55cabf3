//! Countries in rules: named country sets, and the destination's country from GeoIP.
//!
//! A rule's `countries` become one class bit (its index: at most 64 rules, 64 bits). Each
//! network of the GeoIP database whose country some rule names is loaded with the bits of
//! every such rule, and only those: a policy about two countries loads two countries' networks,
//! not the world. The networks are then merged (adjacent ranges with the same bits become as
//! few prefixes as cover them) and laid over the services' prefixes so that one longest-prefix
//! lookup answers both questions, which service and which classes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ipnet::{Ipv4Net, Ipv6Net};
use toml::Spanned;
use vigie_common::policy::Destination;

use super::{
    destinations::Destinations,
    diagnostic::{Report, SourceText},
    problem::Problem,
    ranges,
    selection::EU_MEMBERS,
    syntax,
};
use crate::geoip::{CountryNetworks, GeoIp};

/// The European Economic Area beyond the EU.
const EEA_EXTRA: [&str; 3] = ["IS", "LI", "NO"];

/// A set of countries, possibly as the complement of one (`non-eu`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct CountrySet {
    codes: BTreeSet<String>,
    complement: bool,
}

impl CountrySet {
    fn of(codes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            codes: codes.into_iter().map(Into::into).collect(),
            complement: false,
        }
    }

    #[must_use]
    pub fn contains(&self, code: &str) -> bool {
        self.codes.contains(code) != self.complement
    }
}

/// The sets a policy may name: the built-in `eu` and `eea`, those of `[country_sets]`, and the
/// complement of any of them as `non-NAME`.
#[derive(Clone, Debug, Default)]
pub(super) struct Sets {
    defined: BTreeMap<String, CountrySet>,
}

impl Sets {
    /// Reads `[country_sets]`: each set lists country codes and built-in sets.
    pub fn compile(
        table: &BTreeMap<Spanned<String>, Vec<Spanned<String>>>,
        src: &SourceText<'_>,
        report: &mut Report,
    ) -> Self {
        let mut defined = BTreeMap::new();
        for (name, members) in table {
            let place = src.at(name);
            if report
                .take(
                    &place,
                    syntax::identifier("country set name", name.as_ref()),
                )
                .is_none()
            {
                continue;
            }
            if builtin(name.as_ref()).is_some() || name.as_ref().starts_with("non-") {
                report.error(&place, Problem::ReservedCountrySet(name.as_ref().clone()));
                continue;
            }
            // Empty, it would be about no country, and its `non-` about all of them: never
            // what was meant.
            if members.is_empty() {
                report.error(&place, Problem::EmptyCountrySet(name.as_ref().clone()));
            }
            let mut codes = BTreeSet::new();
            for member in members {
                match member.as_ref().as_str() {
                    code if syntax::is_country_code(code) => {
                        codes.insert(code.to_owned());
                    }
                    other => match builtin(other) {
                        Some(set) => codes.extend(set.codes),
                        None => report.error(
                            &src.at(member),
                            syntax::unassigned_country(other)
                                .unwrap_or_else(|| Problem::BadCountrySetMember(other.to_owned())),
                        ),
                    },
                }
            }
            defined.insert(name.as_ref().clone(), CountrySet::of(codes));
        }
        Self { defined }
    }

    /// A country code, a set, or `non-` and a set.
    pub fn resolve(&self, name: &str) -> Option<CountrySet> {
        if syntax::is_country_code(name) {
            return Some(CountrySet::of([name]));
        }
        let (complement, base) = match name.strip_prefix("non-") {
            Some(base) => (true, base),
            None => (false, name),
        };
        let set = builtin(base).or_else(|| self.defined.get(base).cloned())?;
        Some(CountrySet {
            complement: set.complement != complement,
            ..set
        })
    }

    /// The union of the sets a rule lists; every name that is no set is reported.
    pub fn union(
        &self,
        names: &[Spanned<String>],
        src: &SourceText<'_>,
        report: &mut Report,
    ) -> Vec<CountrySet> {
        names
            .iter()
            .filter_map(|name| {
                let set = self.resolve(name.as_ref());
                if set.is_none() {
                    let problem = syntax::unassigned_country(name.as_ref())
                        .unwrap_or_else(|| Problem::UnknownCountrySet(name.as_ref().clone()));
                    report.error(&src.at(name), problem);
                }
                set
            })
            .collect()
    }
}

fn builtin(name: &str) -> Option<CountrySet> {
    match name {
        "eu" => Some(CountrySet::of(EU_MEMBERS)),
        "eea" => Some(CountrySet::of(EU_MEMBERS.into_iter().chain(EEA_EXTRA))),
        _ => None,
    }
}

/// The class bit of each rule that names countries, with the countries it names.
pub(super) type RuleCountries = Vec<(u32, Vec<CountrySet>)>;

/// Every combination of class bits a destination can carry: one per country code that the
/// rules' sets tell apart (all 676 two-letter codes are tried, so no real country is missed).
pub(super) fn class_combinations(rules: &RuleCountries) -> Vec<u64> {
    let mut combinations = BTreeSet::new();
    for a in b'A'..=b'Z' {
        for b in b'A'..=b'Z' {
            let code = [a, b];
            let code = std::str::from_utf8(&code).unwrap_or_default();
            let bits = rules
                .iter()
                .filter(|(_, sets)| sets.iter().any(|s| s.contains(code)))
                .fold(0u64, |bits, (bit, _)| bits | (1 << bit));
            combinations.insert(bits);
        }
    }
    combinations.into_iter().collect()
}

/// What the GeoIP step added to the address table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CountryEntries {
    pub v4: usize,
    pub v6: usize,
}

/// Lays the networks of the countries the rules name over the services' prefixes.
pub(super) fn overlay(
    destinations: Destinations,
    rules: &[(u32, Vec<CountrySet>)],
    geoip: &GeoIp,
) -> Result<(Destinations, CountryEntries), crate::geoip::GeoIpError> {
    let mut memo: HashMap<String, u64> = HashMap::new();
    let networks = geoip.networks(|code| {
        let classes = *memo.entry(code.to_owned()).or_insert_with(|| {
            rules
                .iter()
                .filter(|(_, sets)| sets.iter().any(|s| s.contains(code)))
                .fold(0u64, |bits, (bit, _)| bits | (1 << bit))
        });
        (classes != 0).then_some(classes)
    })?;
    let CountryNetworks { v4, v6 } = networks;
    let v4 = ranges::merge_v4(&v4);
    let v6 = ranges::merge_v6(&v6);
    let entries = CountryEntries {
        v4: v4.len(),
        v6: v6.len(),
    };
    Ok((
        Destinations {
            v4: lay(destinations.v4, &v4),
            v6: lay(destinations.v6, &v6),
        },
        entries,
    ))
}

/// The union of both tables, each prefix answering as the longest match of each table would:
/// its service from the services' prefixes, its classes from the countries'. Any address then
/// finds, in the union, the longer of its two matches, which carries both answers.
fn lay<N: Net>(services: Vec<(N, Destination)>, countries: &[(N, u64)]) -> Vec<(N, Destination)> {
    let service_of: HashMap<N, Destination> = services.iter().copied().collect();
    let service_lengths = lengths(service_of.keys());
    let mut out: Vec<(N, Destination)> = Vec::with_capacity(services.len() + countries.len());
    for (net, destination) in services {
        let classes = enclosing(countries, net).unwrap_or(0);
        out.push((
            net,
            Destination {
                classes,
                ..destination
            },
        ));
    }
    for &(net, classes) in countries {
        // A prefix that a service lists is already there, with its classes.
        if service_of.contains_key(&net) {
            continue;
        }
        let service = longest(net, &service_lengths, &service_of).map_or(0, |d| d.service);
        out.push((
            net,
            Destination {
                service,
                classes,
                pad: 0,
            },
        ));
    }
    out.sort_unstable_by_key(|(net, _)| *net);
    out
}

/// The value of the network of `disjoint` (sorted, non-overlapping) that contains `net`.
fn enclosing<N: Net>(disjoint: &[(N, u64)], net: N) -> Option<u64> {
    // The only candidate is the last network that starts at or before `net`.
    let after = disjoint.partition_point(|(n, _)| *n <= net);
    let (candidate, value) = *disjoint.get(after.checked_sub(1)?)?;
    (candidate.len() <= net.len() && net.truncated(candidate.len()) == candidate).then_some(value)
}

/// The prefix lengths present in a table, longest first.
fn lengths<'a, N: Net + 'a>(nets: impl Iterator<Item = &'a N>) -> Vec<u8> {
    let set: BTreeSet<u8> = nets.map(|n| n.len()).collect();
    set.into_iter().rev().collect()
}

/// The value of the longest prefix of `table` that contains `net` (or is `net`).
fn longest<N: Net, V: Copy>(net: N, lengths: &[u8], table: &HashMap<N, V>) -> Option<V> {
    lengths
        .iter()
        .filter(|&&len| len <= net.len())
        .find_map(|&len| table.get(&net.truncated(len)).copied())
}

/// What `lay` needs of a prefix type.
trait Net: Copy + Ord + std::hash::Hash {
    fn len(self) -> u8;
    /// The prefix of length `len` that contains this one.
    fn truncated(self, len: u8) -> Self;
}

impl Net for Ipv4Net {
    fn len(self) -> u8 {
        self.prefix_len()
    }
    fn truncated(self, len: u8) -> Self {
        Self::new(self.network(), len).map_or(self, |n| n.trunc())
    }
}

impl Net for Ipv6Net {
    fn len(self) -> u8 {
        self.prefix_len()
    }
    fn truncated(self, len: u8) -> Self {
        Self::new(self.network(), len).map_or(self, |n| n.trunc())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complements_and_builtins() {
        let sets = Sets::default();
        assert!(sets.resolve("eu").unwrap().contains("FR"));
        assert!(!sets.resolve("eu").unwrap().contains("NO"));
        assert!(sets.resolve("eea").unwrap().contains("NO"));
        assert!(sets.resolve("non-eu").unwrap().contains("US"));
        assert!(!sets.resolve("non-eu").unwrap().contains("DE"));
        assert!(sets.resolve("CN").unwrap().contains("CN"));
        assert!(sets.resolve("cn").is_none());
        assert!(sets.resolve("UK").is_none());
        assert!(sets.resolve("non-UK").is_none());
        assert!(sets.resolve("five-eyes").is_none());
    }

    #[test]
    fn services_and_countries_answer_together() {
        let service = |id| Destination {
            service: id,
            classes: 0,
            pad: 0,
        };
        let net = |s: &str| s.parse::<Ipv4Net>().unwrap();
        let services = vec![
            (net("10.0.0.0/16"), service(1)),
            (net("10.1.2.0/25"), service(2)),
        ];
        let countries = vec![(net("10.0.3.0/24"), 4), (net("10.1.0.0/16"), 8)];
        let table: Vec<(String, u32, u64)> = lay(services, &countries)
            .into_iter()
            .map(|(n, d)| (n.to_string(), d.service, d.classes))
            .collect();
        assert_eq!(
            table,
            [
                // The service's /16 has no single country; its US /24 carries both answers.
                ("10.0.0.0/16".to_owned(), 1, 0),
                ("10.0.3.0/24".to_owned(), 1, 4),
                // A country's /16 with a service inside it.
                ("10.1.0.0/16".to_owned(), 0, 8),
                ("10.1.2.0/25".to_owned(), 2, 8),
            ]
        );
    }
}
