//! The kernel maps' sizes, checked when a policy compiles.
//!
//! The map writer checks them too (`maps::check_capacity`), but only when it writes: a policy
//! that passed `vigie check` would then fail at start, or at a reload, with an error that names
//! no file. Here the same needs (`maps::needs`, one definition for both) are checked on the
//! compiled policy, and each table that overflows is an error at the place that makes it
//! overflow: the catalog entry or group prefix past which the table is full, the ASN database
//! whose networks fill it, or the rule whose countries, added to those of the rules before it,
//! do.
//!
//! The tables count prefixes after merging (`aggregate`), so the entry named is the first one
//! past the limit as written: with no merging at all, the table would be full there. The
//! destination tables are built in steps (the catalog's prefixes, its ASNs' networks, the
//! rules' countries) and each step is tried in turn, on the error path only.

use std::{collections::HashSet, hash::Hash, path::Path};

use ipnet::{IpNet, Ipv4Net};

use super::{
    Body,
    countries::overlay,
    destinations::{self, Destinations},
    diagnostic::{Place, Report},
    problem::Problem,
    with_asns,
};
use crate::{
    catalog::Catalog,
    compiled::CompiledPolicy,
    geoip::GeoIp,
    maps::{self, Need, Table},
};

/// What a policy was compiled from, to find where an overflow comes from.
pub(super) struct Origins<'a> {
    pub root: &'a Path,
    pub body: &'a Body,
    pub catalog: &'a Catalog,
}

/// Why the place named is the one.
const CATALOG: &str = "the catalog's entries, in service id order, go past it here";
const GROUPS: &str = "the groups' prefixes, in group name order, go past it here";
const ASNS: &str = "the networks of the catalog's ASNs in this database take it past";
const COUNTRIES: &str =
    "the networks of this rule's countries, with those of the rules before it, take it past";
const RULES: &str = "this rule is past it";
const WHOLE: &str = "the policy as a whole takes it past";

/// An error for each table of the kernel that `policy` overflows.
pub(super) fn check(policy: &CompiledPolicy, origins: &Origins<'_>, report: &mut Report) {
    for need in maps::needs(policy).into_iter().filter(Need::overflows) {
        let (place, cause) = origins.blame(need).unwrap_or_else(|| {
            // Every table has an origin above; this is only a safe default.
            (Place::file(&origins.root.join("policy.toml")), WHOLE)
        });
        report.error(
            &place,
            Problem::Overflow {
                what: need.what,
                needed: need.needed,
                capacity: need.capacity,
                cause,
            },
        );
    }
}

impl Origins<'_> {
    fn blame(&self, need: Need) -> Option<(Place, &'static str)> {
        let capacity = need.capacity as usize;
        match need.table {
            Table::Rules => {
                let place = self.body.rules.places.get(capacity)?;
                Some((place.clone(), RULES))
            }
            Table::Domains => {
                let domains = self.catalog.services().flat_map(|(_, s)| {
                    let hashes = s
                        .domains
                        .iter()
                        .map(|d| vigie_common::sni::domain_hash(d.as_bytes()));
                    hashes.zip(&s.places.domains)
                });
                first_past(domains, capacity).map(|place| (place, CATALOG))
            }
            Table::StunAttributes => {
                let attributes = self
                    .catalog
                    .services()
                    .flat_map(|(_, s)| s.stun_attributes.iter().zip(&s.places.stun_attributes));
                first_past(attributes, capacity).map(|place| (place, CATALOG))
            }
            Table::PortSignals => self.signal_past(capacity).map(|place| (place, CATALOG)),
            Table::SrcV4Prefixes | Table::SrcV6Prefixes => {
                let v4 = need.table == Table::SrcV4Prefixes;
                let written = self.body.groups.written.iter();
                let prefixes = written
                    .filter(|(net, _)| matches!(net, IpNet::V4(_)) == v4)
                    .map(|(net, place)| (net, place));
                first_past(prefixes, capacity).map(|place| (place, GROUPS))
            }
            Table::Destinations
            | Table::DstV4Prefixes
            | Table::DstV4Groups
            | Table::DstV6Prefixes => self.destination_step(need.table),
        }
    }

    /// The signal entry whose ports, with those of the entries before it, are one more than
    /// the table holds.
    fn signal_past(&self, capacity: usize) -> Option<Place> {
        let mut ports = HashSet::new();
        for (_, service) in self.catalog.services() {
            for (entry, place) in &service.places.signals {
                let range = entry.range.min..=entry.range.max;
                ports.extend(range.map(|port| (entry.proto, port)));
                if ports.len() > capacity {
                    return Some(place.clone());
                }
            }
        }
        None
    }

    /// Which step of the destination tables overflows `table` first, and its place.
    fn destination_step(&self, table: Table) -> Option<(Place, &'static str)> {
        let overflows = |d: &Destinations| {
            maps::destination_needs(&d.v4, &d.v6)
                .into_iter()
                .any(|n| n.table == table && n.overflows())
        };
        // The steps of `super::compile` again: they compiled once, they compile the same now.
        let catalog_only = destinations::compile(self.catalog, &mut Report::default());
        if overflows(&catalog_only) {
            return self
                .catalog_prefix_past(table)
                .map(|place| (place, CATALOG));
        }
        let with_asns = with_asns(self.root, self.body, self.catalog, catalog_only)
            .ok()?
            .0;
        if overflows(&with_asns) {
            let (_, place) = self.body.asn_db.as_ref()?;
            return Some((place.clone(), ASNS));
        }
        self.rule_past(&with_asns, overflows)
            .map(|place| (place, COUNTRIES))
    }

    /// The catalog prefix past which `table` is full, counting each prefix as written.
    fn catalog_prefix_past(&self, table: Table) -> Option<Place> {
        let capacity = maps::destination_needs(&[], &[])
            .into_iter()
            .find(|n| n.table == table)?
            .capacity as usize;
        let prefixes = self.catalog.services().flat_map(|(_, s)| s.prefixes.iter());
        // What each prefix adds to the table: itself, or its /24 when it is longer (a group of
        // the IPv4 table). The catalog alone numbers one destination per service, far fewer
        // than the table holds: `Destinations` never overflows at this step.
        let keys = prefixes.filter_map(|(net, place)| {
            let key = match (table, net) {
                (Table::DstV4Prefixes, IpNet::V4(_)) | (Table::DstV6Prefixes, IpNet::V6(_)) => *net,
                (Table::DstV4Groups, IpNet::V4(v4)) if v4.prefix_len() > 24 => {
                    IpNet::V4(Ipv4Net::new(v4.network(), 24).ok()?.trunc())
                }
                _ => return None,
            };
            Some((key, place))
        });
        first_past(keys, capacity)
    }

    /// The rule whose countries, added to those of the rules before it, make `overflows` true
    /// of the table, when the table without any country (`base`) does not overflow.
    fn rule_past(
        &self,
        base: &Destinations,
        overflows: impl Fn(&Destinations) -> bool,
    ) -> Option<Place> {
        let rules = &self.body.rules;
        let (path, _) = self.body.geoip.as_ref()?;
        let geoip = GeoIp::open(&self.root.join(path)).ok()?;
        let with_first = |k: usize| -> Option<bool> {
            let laid = overlay(base.clone(), &rules.countries[..k], &geoip).ok()?;
            Some(overflows(&laid.0))
        };
        // Without countries it fits, with all of them it does not: halve the rules between,
        // keeping a count that fits below and one that does not above (each try reads the
        // database, so not one rule at a time).
        let (mut fits, mut full) = (0, rules.countries.len());
        while full - fits > 1 {
            let middle = fits + (full - fits) / 2;
            if with_first(middle)? {
                full = middle;
            } else {
                fits = middle;
            }
        }
        rules.country_places.get(full.checked_sub(1)?).cloned()
    }
}

/// The place of the first value that makes the distinct values seen more than `capacity`.
fn first_past<'a, K: Eq + Hash>(
    values: impl Iterator<Item = (K, &'a Place)>,
    capacity: usize,
) -> Option<Place> {
    let mut seen = HashSet::new();
    for (value, place) in values {
        seen.insert(value);
        if seen.len() > capacity {
            return Some(place.clone());
        }
    }
    None
}
