//! Disjoint networks (as a GeoIP or ASN database lists them) to the fewest prefixes that cover
//! them with the same values.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

/// Disjoint networks to the fewest prefixes: contiguous ranges with the same classes are
/// joined, then each range is cut into the largest aligned blocks that fill it.
/// `networks` sorted by address and disjoint.
pub(super) fn merge_v4<V: Copy + PartialEq>(networks: &[(Ipv4Net, V)]) -> Vec<(Ipv4Net, V)> {
    let ranges = networks.iter().map(|&(n, c)| {
        (
            u128::from(u32::from(n.network())),
            u128::from(u32::from(n.broadcast())),
            c,
        )
    });
    join(ranges)
        .into_iter()
        .flat_map(|(start, end, classes)| {
            blocks(start, end, 32).map(move |(base, len)| {
                let net = Ipv4Net::new(Ipv4Addr::from(base as u32), len).expect("length within 32");
                (net, classes)
            })
        })
        .collect()
}

/// `networks` sorted by address and disjoint.
pub(super) fn merge_v6<V: Copy + PartialEq>(networks: &[(Ipv6Net, V)]) -> Vec<(Ipv6Net, V)> {
    let ranges = networks
        .iter()
        .map(|&(n, c)| (u128::from(n.network()), u128::from(n.broadcast()), c));
    join(ranges)
        .into_iter()
        .flat_map(|(start, end, classes)| {
            blocks(start, end, 128).map(move |(base, len)| {
                let net = Ipv6Net::new(Ipv6Addr::from(base), len).expect("length within 128");
                (net, classes)
            })
        })
        .collect()
}

/// Joins ranges (sorted, disjoint) that touch and carry the same classes.
fn join<V: Copy + PartialEq>(
    ranges: impl Iterator<Item = (u128, u128, V)>,
) -> Vec<(u128, u128, V)> {
    let mut out: Vec<(u128, u128, V)> = Vec::new();
    for (start, end, classes) in ranges {
        match out.last_mut() {
            Some(last) if last.2 == classes && last.1.checked_add(1) == Some(start) => last.1 = end,
            _ => out.push((start, end, classes)),
        }
    }
    out
}

/// The largest aligned blocks that exactly cover `start..=end`, as (base, prefix length), in
/// an address space of `bits` bits.
fn blocks(start: u128, end: u128, bits: u8) -> impl Iterator<Item = (u128, u8)> {
    let mut next = Some(start);
    std::iter::from_fn(move || {
        let base = next?;
        // The block may be as large as the alignment of `base` allows and the range holds.
        let mut size_bits = if base == 0 {
            u32::from(bits)
        } else {
            base.trailing_zeros().min(u32::from(bits))
        };
        // The offset of a block's last address: 2^size - 1 (all of IPv6 for size 128).
        let span = |size: u32| 1u128.checked_shl(size).map_or(u128::MAX, |v| v - 1);
        while size_bits > 0 && base.saturating_add(span(size_bits)) > end {
            size_bits -= 1;
        }
        let last = base + span(size_bits);
        next = if last >= end { None } else { Some(last + 1) };
        Some((base, bits - size_bits as u8))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_become_the_fewest_aligned_blocks() {
        let got: Vec<(u128, u8)> = blocks(0x0a00_0000, 0x0a00_02ff, 32).collect();
        assert_eq!(got, [(0x0a00_0000, 23), (0x0a00_0200, 24)]);
        let whole: Vec<(u128, u8)> = blocks(0, u128::from(u32::MAX), 32).collect();
        assert_eq!(whole, [(0, 0)]);
        let all_v6: Vec<(u128, u8)> = blocks(0, u128::MAX, 128).collect();
        assert_eq!(all_v6, [(0, 0)]);
        let one: Vec<(u128, u8)> = blocks(5, 5, 32).collect();
        assert_eq!(one, [(5, 32)]);
    }

    #[test]
    fn adjacent_networks_with_the_same_classes_merge() {
        let nets: Vec<(Ipv4Net, u64)> = [
            ("10.0.0.0/24", 1),
            ("10.0.1.0/24", 1),
            ("10.0.2.0/23", 1),
            ("10.0.4.0/24", 2),
            ("10.0.6.0/24", 2),
        ]
        .into_iter()
        .map(|(n, c)| (n.parse().unwrap(), c))
        .collect();
        let merged: Vec<(String, u64)> = merge_v4(&nets)
            .into_iter()
            .map(|(n, c)| (n.to_string(), c))
            .collect();
        assert_eq!(
            merged,
            [
                ("10.0.0.0/22".to_owned(), 1),
                ("10.0.4.0/24".to_owned(), 2),
                ("10.0.6.0/24".to_owned(), 2)
            ]
        );
    }
}
