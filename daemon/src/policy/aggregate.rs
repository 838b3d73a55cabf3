//! Fewer prefixes, same answers: a longest-prefix table is simplified without changing what any
//! address looks up to. Only prefixes with equal values are ever merged, so a more specific
//! prefix of another service (or group) keeps its place inside a wider one.

use std::{cmp::Reverse, collections::BTreeMap, hash::Hash};

use ipnet::{Ipv4Net, Ipv6Net};

/// What the simplification needs of a prefix type.
pub(crate) trait Prefix: Copy + Ord + Hash {
    fn len(self) -> u8;
    fn parent(self) -> Option<Self>;
    /// The other half of the parent.
    fn sibling(self) -> Option<Self>;
}

macro_rules! prefix_impl {
    ($net:ty) => {
        impl Prefix for $net {
            fn len(self) -> u8 {
                self.prefix_len()
            }
            fn parent(self) -> Option<Self> {
                self.supernet()
            }
            fn sibling(self) -> Option<Self> {
                self.supernet()?
                    .subnets(self.prefix_len())
                    .ok()?
                    .find(|half| *half != self)
            }
        }
    };
}
prefix_impl!(Ipv4Net);
prefix_impl!(Ipv6Net);

/// The simplified table, sorted by prefix. Two rules, applied until nothing changes:
/// - a prefix whose nearest enclosing prefix has the same value is redundant;
/// - two halves with the same value become their parent, unless the parent is already listed.
pub(crate) fn aggregate<N: Prefix, V: Copy + PartialEq>(mut table: BTreeMap<N, V>) -> Vec<(N, V)> {
    while simplify_once(&mut table) {}
    table.into_iter().collect()
}

fn simplify_once<N: Prefix, V: Copy + PartialEq>(table: &mut BTreeMap<N, V>) -> bool {
    let mut order: Vec<N> = table.keys().copied().collect();
    order.sort_by_key(|net| Reverse(net.len()));
    let mut changed = false;
    for net in order {
        let Some(&value) = table.get(&net) else {
            continue;
        };
        if enclosing(table, net) == Some(value) {
            table.remove(&net);
            changed = true;
        } else if let Some(parent) = mergeable_parent(table, net, &value) {
            table.remove(&net);
            net.sibling().map(|sibling| table.remove(&sibling));
            table.insert(parent, value);
            changed = true;
        }
    }
    changed
}

/// The value of the longest listed prefix that strictly contains `net`.
fn enclosing<N: Prefix, V: Copy>(table: &BTreeMap<N, V>, net: N) -> Option<V> {
    let mut candidate = net.parent();
    while let Some(wider) = candidate {
        if let Some(value) = table.get(&wider) {
            return Some(*value);
        }
        candidate = wider.parent();
    }
    None
}

fn mergeable_parent<N: Prefix, V: PartialEq>(
    table: &BTreeMap<N, V>,
    net: N,
    value: &V,
) -> Option<N> {
    let parent = net.parent()?;
    let same = table.get(&net.sibling()?) == Some(value);
    (same && !table.contains_key(&parent)).then_some(parent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(entries: &[(&str, u32)]) -> Vec<(String, u32)> {
        let table = entries
            .iter()
            .map(|(n, v)| (n.parse::<Ipv4Net>().unwrap(), *v))
            .collect();
        aggregate(table)
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect()
    }

    fn owned(entries: &[(&str, u32)]) -> Vec<(String, u32)> {
        entries.iter().map(|(n, v)| ((*n).to_owned(), *v)).collect()
    }

    #[test]
    fn halves_of_one_value_merge_up() {
        let got = v4(&[("10.0.0.0/25", 1), ("10.0.0.128/25", 1), ("10.0.1.0/24", 1)]);
        assert_eq!(got, owned(&[("10.0.0.0/23", 1)]));
    }

    #[test]
    fn halves_of_different_values_stay() {
        let entries = [("10.0.0.0/25", 1), ("10.0.0.128/25", 2)];
        assert_eq!(v4(&entries), owned(&entries));
    }

    #[test]
    fn contained_prefix_of_the_same_value_goes() {
        let got = v4(&[("52.120.0.0/14", 1), ("52.122.0.0/15", 1)]);
        assert_eq!(got, owned(&[("52.120.0.0/14", 1)]));
    }

    #[test]
    fn a_more_specific_prefix_of_another_value_keeps_its_place() {
        // The /24 of value 1 inside value 2's /16 inside value 1's /8: nothing is redundant.
        let entries = [("10.0.0.0/8", 1), ("10.1.0.0/16", 2), ("10.1.2.0/24", 1)];
        assert_eq!(v4(&entries), owned(&entries));
    }

    #[test]
    fn listed_parent_of_another_value_blocks_a_merge() {
        let entries = [("10.0.0.0/24", 2), ("10.0.0.0/25", 1), ("10.0.0.128/25", 1)];
        assert_eq!(v4(&entries), owned(&entries));
    }

    #[test]
    fn ipv6_merges_too() {
        let table = [("2001:db8::/33", 7), ("2001:db8:8000::/33", 7)]
            .iter()
            .map(|(n, v)| (n.parse::<Ipv6Net>().unwrap(), *v))
            .collect();
        let got: Vec<_> = aggregate(table)
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect();
        assert_eq!(got, vec![("2001:db8::/32".to_owned(), 7)]);
    }
}
