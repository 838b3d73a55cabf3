//! The IPv4 destination table of one slot as the kernel holds it (DIR-24-8, see
//! `vigie_common::policy::DstV4Block`): one entry per /24, groups of 256 entries for the /24
//! networks that hold longer prefixes, and each distinct (service, classes) pair numbered once.
//!
//! The daemon keeps the /24 entries as runs (an entry and where it starts), not as the 2^24
//! entries the kernel holds: a policy's table is a few thousand runs, and the writes of a swap
//! are found by comparing the runs of the slot's old and new tables.

use std::collections::BTreeMap;

use ipnet::Ipv4Net;

use vigie_common::policy::{
    DST_V4_BLOCK, DST_V4_BLOCKS_PER_SLOT, DST_V4_GROUP_BIT, Destination, DstV4Block, DstV4Group,
};

/// /24 networks in the address space: entries of one slot.
const ENTRIES: u32 = 1 << 24;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DstV4Table {
    /// The /24 entries, as runs: `(first /24, entry)`, sorted, the first at 0, no two
    /// neighbours with the same entry. An entry runs until the next run's first /24.
    pub runs: Vec<(u32, u16)>,
    /// Groups of `DST_V4_8` by number, each as runs over its 256 addresses (same form).
    pub groups: Vec<Vec<(u8, u16)>>,
    /// Destination number n is `destinations[n]`; number 0 is "none", all zero.
    pub destinations: Vec<Destination>,
}

impl Default for DstV4Table {
    fn default() -> Self {
        Self {
            runs: vec![(0, 0)],
            groups: Vec::new(),
            destinations: vec![Destination::default()],
        }
    }
}

/// /24 networks holding prefixes longer than /24 among `prefixes`: the groups their table needs.
#[must_use]
pub fn groups_needed(prefixes: &[(Ipv4Net, Destination)]) -> usize {
    let mut networks: Vec<u32> = prefixes
        .iter()
        .filter(|(net, _)| net.prefix_len() > 24)
        .map(|(net, _)| u32::from(net.network()) >> 8)
        .collect();
    networks.sort_unstable();
    networks.dedup();
    networks.len()
}

/// Runs built from entries given in order, over a space of `end` entries.
struct Runs<I, V> {
    runs: Vec<(I, V)>,
}

impl<I: Copy + Ord + Default, V: Copy + PartialEq + Default> Runs<I, V> {
    fn new() -> Self {
        Self { runs: Vec::new() }
    }

    /// Entries `first..end` hold `value` (called with increasing, adjacent ranges).
    fn push(&mut self, first: I, end: I, value: V) {
        if first < end && self.runs.last().is_none_or(|(_, last)| *last != value) {
            self.runs.push((first, value));
        }
    }

    fn finish(mut self) -> Vec<(I, V)> {
        if self.runs.is_empty() {
            self.runs.push((I::default(), V::default()));
        }
        self.runs
    }
}

/// The runs of longest-prefix values over `0..space`, from `(first, end, value)` intervals
/// that are nested or disjoint (prefixes), sorted by first, then widest first.
fn paint<V: Copy + PartialEq + Default>(intervals: &[(u32, u32, V)], space: u32) -> Vec<(u32, V)> {
    let mut out = Runs::new();
    // The enclosing intervals of the current position, innermost last.
    let mut open: Vec<(u32, V)> = vec![(space, V::default())];
    let mut at = 0;
    for &(first, end, value) in intervals {
        while let Some(&(top_end, top_value)) = open.last()
            && top_end <= first
        {
            out.push(at, top_end, top_value);
            at = top_end;
            open.pop();
        }
        if let Some(&(_, top_value)) = open.last() {
            out.push(at, first, top_value);
        }
        at = first;
        open.push((end, value));
    }
    while let Some((top_end, top_value)) = open.pop() {
        out.push(at, top_end, top_value);
        at = top_end;
    }
    out.finish()
}

impl DstV4Table {
    /// The table of `prefixes` (no two equal). The caller checks the capacities first
    /// (`groups_needed`, the number of distinct destinations): past them, numbers would wrap.
    /// Built as runs directly, without the 2^24 entries (32 MiB) the kernel holds.
    #[must_use]
    pub fn build(prefixes: &[(Ipv4Net, Destination)]) -> Self {
        let mut numbers = BTreeMap::new();
        let mut destinations = vec![Destination::default()];
        let mut number_of = |d: &Destination| {
            *numbers.entry((d.service, d.classes)).or_insert_with(|| {
                destinations.push(*d);
                (destinations.len() - 1) as u16
            })
        };
        // Prefixes as intervals, over /24 networks (up to /24) or over the addresses of one /24.
        let mut wide = Vec::new();
        let mut narrow = Vec::new();
        for (net, destination) in prefixes {
            let number = number_of(destination);
            let len = u32::from(net.prefix_len());
            let network = u32::from(net.network());
            if len <= 24 {
                let first = network >> 8;
                wide.push((first, first + (1 << (24 - len)), number));
            } else {
                let host = network & 0xff;
                narrow.push((network >> 8, host, host + (1 << (32 - len)), number));
            }
        }
        wide.sort_unstable_by_key(|&(first, end, _)| (first, std::cmp::Reverse(end)));
        narrow.sort_unstable_by_key(|&(net, first, end, _)| (net, first, std::cmp::Reverse(end)));
        let mut runs = paint(&wide, ENTRIES);
        // Each /24 holding longer prefixes becomes a group that starts from its /24's entry.
        let mut groups = Vec::new();
        let mut grouped: Vec<(u32, u16)> = Vec::new();
        for same in narrow.chunk_by(|a, b| a.0 == b.0) {
            let net = same[0].0;
            let base = entry_at(&runs, net);
            let mut intervals = vec![(0, 256, base)];
            intervals.extend(
                same.iter()
                    .map(|&(_, first, end, number)| (first, end, number)),
            );
            let group: Vec<(u8, u16)> = paint(&intervals, 256)
                .into_iter()
                .map(|(first, value)| (first as u8, value))
                .collect();
            grouped.push((net, DST_V4_GROUP_BIT | groups.len() as u16));
            groups.push(group);
        }
        if !grouped.is_empty() {
            runs = with_points(&runs, &grouped);
        }
        Self {
            runs,
            groups,
            destinations,
        }
    }

    /// The /24 runs of a table read back from the kernel, `DST_V4_24` elements in order.
    #[must_use]
    pub fn runs_from_blocks(blocks: impl Iterator<Item = DstV4Block>) -> Vec<(u32, u16)> {
        let mut out = Runs::new();
        for (index, entry) in blocks.flatten().enumerate() {
            out.push(index as u32, index as u32 + 1, entry);
        }
        out.finish()
    }

    /// A group's runs from its 256 entries as the kernel holds them.
    #[must_use]
    pub fn group_from_kernel(group: &DstV4Group) -> Vec<(u8, u16)> {
        let mut out = Runs::new();
        for (host, &entry) in group.iter().enumerate() {
            out.push(host as u16, host as u16 + 1, entry);
        }
        out.finish()
            .into_iter()
            .map(|(host, entry)| (host as u8, entry))
            .collect()
    }

    /// The groups the entries name, at most: one past the highest group number.
    #[must_use]
    pub fn group_count(runs: &[(u32, u16)]) -> usize {
        runs.iter()
            .filter(|(_, e)| e & DST_V4_GROUP_BIT != 0)
            .map(|(_, e)| usize::from(e & !DST_V4_GROUP_BIT) + 1)
            .max()
            .unwrap_or(0)
    }

    /// The `DST_V4_24` elements (by index within the slot) whose content differs between `old`
    /// and `self`: the writes that turn a slot holding `old` into one holding `self`.
    #[must_use]
    pub fn changed_blocks(&self, old: &Self) -> Vec<u32> {
        let mut dirty: Vec<u32> = Vec::new();
        let (mut i, mut j) = (0, 0);
        let mut at = 0u32;
        // Walk both run lists together, segment by segment, where neither changes.
        while at < ENTRIES {
            let end = run_end(&self.runs, i).min(run_end(&old.runs, j));
            if self.runs[i].1 != old.runs[j].1 {
                let (first, last) = (at / DST_V4_BLOCK as u32, (end - 1) / DST_V4_BLOCK as u32);
                let from = if dirty.last() == Some(&first) {
                    first + 1
                } else {
                    first
                };
                dirty.extend(from..=last);
            }
            at = end;
            if at == run_end(&self.runs, i) {
                i += 1;
            }
            if at == run_end(&old.runs, j) {
                j += 1;
            }
        }
        dirty
    }

    /// The content of one `DST_V4_24` element.
    #[must_use]
    pub fn block(&self, block: u32) -> DstV4Block {
        debug_assert!(block < DST_V4_BLOCKS_PER_SLOT);
        let first = block * DST_V4_BLOCK as u32;
        let mut run = self.runs.partition_point(|(start, _)| *start <= first) - 1;
        let mut out = [0u16; DST_V4_BLOCK];
        for (offset, entry) in out.iter_mut().enumerate() {
            let at = first + offset as u32;
            while run + 1 < self.runs.len() && self.runs[run + 1].0 <= at {
                run += 1;
            }
            *entry = self.runs[run].1;
        }
        out
    }

    /// The 256 entries of group `number` as the kernel holds them.
    #[must_use]
    pub fn group(&self, number: usize) -> DstV4Group {
        let runs = &self.groups[number];
        let mut out = [0u16; 256];
        for (i, &(first, value)) in runs.iter().enumerate() {
            let end = runs.get(i + 1).map_or(256, |(next, _)| usize::from(*next));
            out[usize::from(first)..end].fill(value);
        }
        out
    }

    /// The destination of `addr` as the kernel finds it (the tests' model of the lookup).
    #[cfg(test)]
    fn lookup(&self, addr: std::net::Ipv4Addr) -> Destination {
        let addr = u32::from(addr);
        let entry = self.block(addr >> 13)[(addr >> 8) as usize % DST_V4_BLOCK];
        let number = if entry & DST_V4_GROUP_BIT == 0 {
            entry
        } else {
            self.group(usize::from(entry & !DST_V4_GROUP_BIT))[(addr & 0xff) as usize]
        };
        self.destinations[usize::from(number)]
    }
}

/// The entry of /24 network `net` in `runs`.
fn entry_at(runs: &[(u32, u16)], net: u32) -> u16 {
    runs[runs.partition_point(|(start, _)| *start <= net) - 1].1
}

/// `runs` with single /24 networks set to other entries (`points` sorted by network).
fn with_points(runs: &[(u32, u16)], points: &[(u32, u16)]) -> Vec<(u32, u16)> {
    let mut out = Runs::new();
    let mut at = 0;
    let mut run = 0;
    for &(net, entry) in points {
        // The runs up to the point, then the point.
        while run_end(runs, run) <= net {
            out.push(at, run_end(runs, run), runs[run].1);
            at = run_end(runs, run);
            run += 1;
        }
        out.push(at, net, runs[run].1);
        out.push(net, net + 1, entry);
        at = net + 1;
        if run_end(runs, run) == at {
            run += 1;
        }
    }
    while run < runs.len() {
        out.push(at, run_end(runs, run), runs[run].1);
        at = run_end(runs, run);
        run += 1;
    }
    out.finish()
}

/// One past the last /24 of run `i`.
fn run_end(runs: &[(u32, u16)], i: usize) -> u32 {
    runs.get(i + 1).map_or(ENTRIES, |(start, _)| *start)
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

    fn parse(list: &[(&str, Destination)]) -> Vec<(Ipv4Net, Destination)> {
        list.iter().map(|(n, d)| (n.parse().unwrap(), *d)).collect()
    }

    #[test]
    fn the_longest_prefix_wins_at_every_length() {
        let prefixes = parse(&[
            ("0.0.0.0/0", dest(1, 0)),
            ("10.0.0.0/8", dest(2, 1)),
            ("10.1.0.0/16", dest(3, 0)),
            ("10.1.128.0/17", dest(4, 0)),
            ("10.1.200.0/24", dest(5, 2)),
            ("10.1.200.7/32", dest(6, 0)),
            ("10.1.200.128/25", dest(7, 0)),
            ("10.2.0.0/23", dest(2, 1)),
            ("192.168.0.0/15", dest(7, 0)),
            ("203.0.113.64/26", dest(8, 0)),
        ]);
        let table = DstV4Table::build(&prefixes);
        for addr in [
            "10.1.200.7",
            "10.1.200.8",
            "10.1.200.127",
            "10.1.200.128",
            "10.1.200.255",
            "10.1.201.1",
            "10.1.127.1",
            "10.1.0.1",
            "10.2.1.255",
            "10.2.2.0",
            "10.3.0.0",
            "192.169.255.255",
            "192.170.0.0",
            "203.0.113.63",
            "203.0.113.64",
            "203.0.113.127",
            "203.0.113.128",
            "8.8.8.8",
            "255.255.255.255",
            "0.0.0.0",
        ] {
            let addr: Ipv4Addr = addr.parse().unwrap();
            assert_eq!(table.lookup(addr), longest(&prefixes, addr), "{addr}");
        }
        // (2, 1) is numbered once for both of its prefixes, after "none".
        assert_eq!(table.destinations.len(), 9);
        // Two /24 networks hold longer prefixes: two groups.
        assert_eq!(table.groups.len(), 2);
        assert_eq!(groups_needed(&prefixes), 2);
    }

    #[test]
    fn random_prefixes_agree_with_brute_force() {
        let mut state = 0x2545_f491_u32;
        let mut random = move || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        // Prefixes clustered in 10.0.0.0/12, so that they nest and overlap at every length.
        let mut prefixes: Vec<(Ipv4Net, Destination)> = Vec::new();
        while prefixes.len() < 300 {
            let len = 8 + (random() % 25) as u8;
            let addr = 0x0a00_0000 | (random() & 0x000f_ffff);
            let net = Ipv4Net::new(Ipv4Addr::from(addr), len).unwrap().trunc();
            if prefixes.iter().all(|(n, _)| *n != net) {
                prefixes.push((net, dest(random() % 5 + 1, u64::from(random() % 3))));
            }
        }
        let table = DstV4Table::build(&prefixes);
        assert_eq!(table.groups.len(), groups_needed(&prefixes));
        for _ in 0..20_000 {
            let addr = Ipv4Addr::from(0x0a00_0000 | (random() & 0x001f_ffff));
            assert_eq!(table.lookup(addr), longest(&prefixes, addr), "{addr}");
        }
        for (net, _) in &prefixes {
            for addr in [net.network(), net.broadcast()] {
                assert_eq!(table.lookup(addr), longest(&prefixes, addr), "{addr}");
            }
        }
    }

    #[test]
    fn no_prefix_means_no_destination() {
        let table = DstV4Table::build(&[]);
        assert_eq!(
            table.lookup(Ipv4Addr::new(1, 2, 3, 4)),
            Destination::default()
        );
        assert_eq!(table, DstV4Table::default());
        assert!(table.changed_blocks(&DstV4Table::default()).is_empty());
    }

    /// The changed blocks are exactly those whose content differs.
    #[test]
    fn changed_blocks_are_exactly_the_differences() {
        let old = DstV4Table::build(&parse(&[
            ("10.0.0.0/8", dest(1, 0)),
            ("10.1.2.0/24", dest(2, 0)),
            ("172.16.0.0/12", dest(3, 0)),
        ]));
        let new = DstV4Table::build(&parse(&[
            ("10.0.0.0/8", dest(1, 0)),
            ("10.1.3.0/24", dest(2, 0)),
            ("10.1.4.5/32", dest(4, 0)),
            ("198.51.100.0/22", dest(3, 0)),
        ]));
        let changed = new.changed_blocks(&old);
        for block in 0..DST_V4_BLOCKS_PER_SLOT {
            let differs = old.block(block) != new.block(block);
            assert_eq!(
                differs,
                changed.binary_search(&block).is_ok(),
                "block {block}"
            );
        }
        // 172.16/12 cleared (4,096 /24 networks: 128 blocks), 198.51.100/22 written (one
        // block), and the block of 10.1.2, 10.1.3 and 10.1.4 (one).
        assert_eq!(changed.len(), 128 + 1 + 1);
        assert!(new.changed_blocks(&new).is_empty());
    }

    #[test]
    fn a_table_read_back_from_the_kernel_is_the_same() {
        let table = DstV4Table::build(&parse(&[
            ("10.0.0.0/8", dest(1, 0)),
            ("10.1.4.5/32", dest(4, 0)),
            ("10.1.4.64/26", dest(2, 0)),
            ("10.1.9.0/25", dest(3, 0)),
        ]));
        let runs =
            DstV4Table::runs_from_blocks((0..DST_V4_BLOCKS_PER_SLOT).map(|b| table.block(b)));
        assert_eq!(runs, table.runs);
        let count = DstV4Table::group_count(&runs);
        assert_eq!(count, 2);
        let groups: Vec<Vec<(u8, u16)>> = (0..count)
            .map(|g| DstV4Table::group_from_kernel(&table.group(g)))
            .collect();
        assert_eq!(groups, table.groups);
    }
}
