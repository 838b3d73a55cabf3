//! The catalog's autonomous systems, expanded to the prefixes an ASN database lists for them.
//!
//! Vendors that publish no address list (Webex, GoTo) announce their networks from their own
//! autonomous systems. The expansion happens at compile time: the kernel sees prefixes, like
//! any other. A prefix that the catalog lists explicitly keeps its explicit service; an ASN
//! claimed by two services is the first one's (in id order).

use std::collections::{BTreeMap, HashMap};

use vigie_common::policy::Destination;

use super::{destinations::Destinations, ranges};
use crate::{
    catalog::Catalog,
    geoip::{CountryNetworks, GeoIp, GeoIpError},
};

/// Adds the networks of every service's ASNs; returns how many prefixes that made.
pub(super) fn expand(
    destinations: Destinations,
    catalog: &Catalog,
    db: &GeoIp,
) -> Result<(Destinations, usize), GeoIpError> {
    let mut owner: HashMap<u32, u32> = HashMap::new();
    for (id, service) in catalog.services() {
        for &asn in &service.asns {
            owner.entry(asn).or_insert(id);
        }
    }
    let CountryNetworks { v4, v6 } = db.asn_networks(|asn| owner.get(&asn).copied())?;
    let v4 = ranges::merge_v4(&v4);
    let v6 = ranges::merge_v6(&v6);
    let added = v4.len() + v6.len();
    Ok((
        Destinations {
            v4: beside(destinations.v4, v4),
            v6: beside(destinations.v6, v6),
        },
        added,
    ))
}

/// The explicit table with the ASN prefixes beside it; on an equal prefix the explicit entry
/// stays.
fn beside<N: Ord + Copy>(
    explicit: Vec<(N, Destination)>,
    from_asns: Vec<(N, u32)>,
) -> Vec<(N, Destination)> {
    let mut table: BTreeMap<N, Destination> = explicit.into_iter().collect();
    for (net, service) in from_asns {
        table.entry(net).or_insert(Destination {
            service,
            classes: 0,
            pad: 0,
        });
    }
    table.into_iter().collect()
}
