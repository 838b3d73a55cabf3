//! The destination address table: each service's prefixes, tagged with its kernel id.
//!
//! A prefix listed by two services keeps the first one (in id order) and gets a warning: the
//! kernel's trie holds one value per prefix. Overlapping prefixes of different services stay
//! apart, so that the longest match decides between them.

use std::collections::{BTreeMap, HashMap, hash_map::Entry};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use vigie_common::policy::Destination;

use super::{
    aggregate::aggregate,
    diagnostic::{Place, Report},
    problem::Problem,
};
use crate::catalog::Catalog;

#[derive(Clone)]
pub(super) struct Destinations {
    pub v4: Vec<(Ipv4Net, Destination)>,
    pub v6: Vec<(Ipv6Net, Destination)>,
}

pub(super) fn compile(catalog: &Catalog, report: &mut Report) -> Destinations {
    let mut claims: HashMap<IpNet, (&str, &Place)> = HashMap::new();
    let mut v4 = BTreeMap::new();
    let mut v6 = BTreeMap::new();
    for (id, service) in catalog.services() {
        for (net, place) in &service.prefixes {
            match claims.entry(*net) {
                Entry::Occupied(first) => {
                    report.warn(place, repeated(*net, service.id.as_str(), *first.get()));
                }
                Entry::Vacant(slot) => {
                    slot.insert((service.id.as_str(), place));
                    let value = Destination {
                        service: id,
                        classes: 0,
                        pad: 0,
                    };
                    match net {
                        IpNet::V4(n) => v4.insert(*n, value),
                        IpNet::V6(n) => v6.insert(*n, value),
                    };
                }
            }
        }
    }
    Destinations {
        v4: aggregate(v4),
        v6: aggregate(v6),
    }
}

fn repeated(net: IpNet, service: &str, (first, first_place): (&str, &Place)) -> Problem {
    if first == service {
        Problem::ListedTwice {
            what: "prefix",
            value: net.to_string(),
        }
    } else {
        Problem::SharedPrefix {
            prefix: net.to_string(),
            first: first.to_owned(),
            first_place: first_place.clone(),
        }
    }
}
