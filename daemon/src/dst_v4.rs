//! The IPv4 destination table of one slot as the kernel holds it (see
//! `vigie_common::policy::DstV4Root`): prefixes of /16 or shorter spread over the root array,
//! longer ones in the hash, and each distinct (service, classes) pair numbered once.

use std::collections::BTreeMap;

use ipnet::Ipv4Net;

use crate::sorted::SortedTable;
use vigie_common::policy::{DST_V4_ROOT_BITS, Destination, DstV4LongKey, DstV4Root};

/// Root entries of one slot.
pub const ROOT_ENTRIES: usize = 1 << DST_V4_ROOT_BITS;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DstV4Table {
    /// `ROOT_ENTRIES` entries, by /16.
    pub root: Vec<DstV4Root>,
    pub long: SortedTable<DstV4LongKey, u32>,
    /// Destination number n is `destinations[n]`; number 0 is "none", all zero.
    pub destinations: Vec<Destination>,
}

impl DstV4Table {
    /// The table of `prefixes` (no two equal) in `slot`.
    #[must_use]
    pub fn build(slot: u32, prefixes: &[(Ipv4Net, Destination)]) -> Self {
        let mut numbers = BTreeMap::new();
        let mut destinations = vec![Destination::default()];
        let mut number_of = |d: &Destination| {
            *numbers.entry((d.service, d.classes)).or_insert_with(|| {
                destinations.push(*d);
                (destinations.len() - 1) as u32
            })
        };
        let mut root = vec![DstV4Root::default(); ROOT_ENTRIES];
        let mut long = Vec::new();
        // Shorter prefixes first, so that a longer one overwrites the root entries it covers.
        let mut sorted: Vec<&(Ipv4Net, Destination)> = prefixes.iter().collect();
        sorted.sort_by_key(|(net, _)| net.prefix_len());
        for (net, destination) in sorted {
            let number = number_of(destination);
            let len = u32::from(net.prefix_len());
            let first = (u32::from(net.network()) >> (32 - DST_V4_ROOT_BITS)) as usize;
            if len <= DST_V4_ROOT_BITS {
                let count = 1usize << (DST_V4_ROOT_BITS - len);
                for entry in &mut root[first..first + count] {
                    entry.destination = number;
                }
            } else {
                root[first].longer |= 1 << (len - DST_V4_ROOT_BITS - 1);
                let key = DstV4LongKey {
                    slot: slot as u8,
                    len: len as u8,
                    pad: [0; 2],
                    network: net.network().octets(),
                };
                long.push((key, number));
            }
        }
        Self {
            root,
            long: long.into_iter().collect(),
            destinations,
        }
    }

    /// The destination of `addr` as the kernel finds it (the tests' model of the lookup).
    #[cfg(test)]
    fn lookup(&self, slot: u8, addr: std::net::Ipv4Addr) -> Destination {
        let addr = u32::from(addr);
        let root = self.root[(addr >> (32 - DST_V4_ROOT_BITS)) as usize];
        let number = (0..32 - DST_V4_ROOT_BITS)
            .rev()
            .filter(|bit| root.longer & (1 << bit) != 0)
            .find_map(|bit| {
                let len = DST_V4_ROOT_BITS + 1 + bit;
                let key = DstV4LongKey {
                    slot,
                    len: len as u8,
                    pad: [0; 2],
                    network: (addr & (u32::MAX << (32 - len))).to_be_bytes(),
                };
                self.long.get(&key).copied()
            })
            .unwrap_or(root.destination);
        self.destinations[number as usize]
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn dest(service: u32, classes: u64) -> Destination {
        Destination {
            classes,
            service,
            pad: 0,
        }
    }

    /// The longest prefix holding `addr`, by brute force.
    fn longest(prefixes: &[(Ipv4Net, Destination)], addr: Ipv4Addr) -> Destination {
        prefixes
            .iter()
            .filter(|(net, _)| net.contains(&addr))
            .max_by_key(|(net, _)| net.prefix_len())
            .map_or_else(Destination::default, |(_, d)| *d)
    }

    #[test]
    fn the_longest_prefix_wins_at_every_length() {
        let prefixes: Vec<(Ipv4Net, Destination)> = [
            ("0.0.0.0/0", dest(1, 0)),
            ("10.0.0.0/8", dest(2, 1)),
            ("10.1.0.0/16", dest(3, 0)),
            ("10.1.128.0/17", dest(4, 0)),
            ("10.1.200.0/24", dest(5, 2)),
            ("10.1.200.7/32", dest(6, 0)),
            ("10.2.0.0/23", dest(2, 1)),
            ("192.168.0.0/15", dest(7, 0)),
        ]
        .iter()
        .map(|(n, d)| (n.parse().unwrap(), *d))
        .collect();
        let table = DstV4Table::build(1, &prefixes);
        for addr in [
            "10.1.200.7",
            "10.1.200.8",
            "10.1.201.1",
            "10.1.127.1",
            "10.1.0.1",
            "10.2.1.255",
            "10.2.2.0",
            "10.3.0.0",
            "192.169.255.255",
            "192.170.0.0",
            "8.8.8.8",
        ] {
            let addr: Ipv4Addr = addr.parse().unwrap();
            assert_eq!(table.lookup(1, addr), longest(&prefixes, addr), "{addr}");
        }
        // (2, 1) is numbered once for both of its prefixes, after "none".
        assert_eq!(table.destinations.len(), 8);
        assert!(table.long.keys().all(|k| k.slot == 1));
    }

    #[test]
    fn no_prefix_means_no_destination() {
        let table = DstV4Table::build(0, &[]);
        assert_eq!(
            table.lookup(0, Ipv4Addr::new(1, 2, 3, 4)),
            Destination::default()
        );
        assert!(table.long.is_empty());
        assert_eq!(table.destinations, vec![Destination::default()]);
    }
}
