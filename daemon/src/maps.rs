//! The only writer of the policy maps, and the reader of the datapath's counters.
//!
//! A policy swap writes the inactive slot completely, then flips `ACTIVE_POLICY` in one array
//! update. Before it rewrites a slot that packets may still be reading, it waits out a grace
//! period after the previous flip; the kernel program also re-reads the generation after each
//! decision and decides again if it moved (see `vigie_common::policy`). Together these make
//! sure that no packet mixes two policies.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use aya::maps::{
    Array, HashMap as BpfHashMap, LpmTrie, Map, MapData, MapError, PerCpuArray, PerCpuHashMap,
    lpm_trie::Key,
};
use ipnet::{Ipv4Net, Ipv6Net};
use vigie_common::{
    counters::{CounterKey, CounterRow, CounterValue, parse_failure, stat},
    flow::{FlowEntry, FlowKey},
    learned::{LearnedEndpoint, LearnedKey},
    limits, maps as names,
    policy::{
        ActivePolicy, DST_V4_BLOCKS_PER_SLOT, Destination, DstV4Block, DstV4Group, PrefixV4,
        PrefixV6, RuleBlock, SLOT_PREFIX_BITS, Settings, SourceGroup, destination_index,
        dst_v4_group_index,
    },
    signal::PortKey,
    sni::DomainKey,
    stun::StunKey,
};

use crate::{
    compiled::CompiledPolicy,
    dst_v4::{DstV4Table, groups_needed},
    sorted::SortedTable,
};

/// How long the writer waits after a flip before it rewrites the slot it left. A packet's run
/// through the program lasts microseconds; this leaves a margin of four orders of magnitude.
pub const GRACE_PERIOD: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum MapsError {
    #[error("the kernel object has no map named {0}")]
    Missing(&'static str),
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("the policy needs {needed} {what}, the kernel map holds {capacity}")]
    Capacity {
        what: &'static str,
        needed: usize,
        capacity: u32,
    },
}

fn map_err(name: &'static str) -> impl Fn(MapError) -> MapsError {
    move |source| MapsError::Map { name, source }
}

/// What one slot holds, as the writer last wrote it, so that a swap writes only differences.
#[derive(Clone)]
struct SlotImage {
    dst_v4: DstV4Table,
    dst_v6: SortedTable<PrefixV6Key, Destination>,
    src_v4: SortedTable<PrefixV4Key, SourceGroup>,
    src_v6: SortedTable<PrefixV6Key, SourceGroup>,
    domains: SortedTable<DomainKey, u32>,
    stun_attributes: SortedTable<StunKey, u32>,
    port_signals: SortedTable<PortKey, u32>,
}

type PrefixV4Key = (u32, PrefixV4);
type PrefixV6Key = (u32, PrefixV6);

/// Handles on every map of the kernel program, taken out of the loaded object.
pub struct DatapathMaps {
    active: Array<MapData, ActivePolicy>,
    settings: Array<MapData, Settings>,
    rules: Array<MapData, RuleBlock>,
    dst_v4_24: Array<MapData, DstV4Block>,
    dst_v4_8: Array<MapData, DstV4Group>,
    destinations: Array<MapData, Destination>,
    dst_v6: LpmTrie<MapData, PrefixV6, Destination>,
    src_v4: LpmTrie<MapData, PrefixV4, SourceGroup>,
    src_v6: LpmTrie<MapData, PrefixV6, SourceGroup>,
    domains: BpfHashMap<MapData, DomainKey, u32>,
    stun_attributes: BpfHashMap<MapData, StunKey, u32>,
    port_signals: BpfHashMap<MapData, PortKey, u32>,
    flows: BpfHashMap<MapData, FlowKey, FlowEntry>,
    learned: BpfHashMap<MapData, LearnedKey, LearnedEndpoint>,
    learned_filter: aya::maps::Array<MapData, u64>,
    counters: PerCpuHashMap<MapData, CounterKey, CounterValue>,
    counter_cache: PerCpuArray<MapData, CounterRow>,
    parse_failures: PerCpuArray<MapData, u64>,
    stats: PerCpuArray<MapData, u64>,
    images: [Option<SlotImage>; 2],
    last_flip: Option<Instant>,
}

/// A second handle on a hash map (a new descriptor of the same kernel map).
fn duplicate<K: aya::Pod, V: aya::Pod>(
    map: &BpfHashMap<MapData, K, V>,
    name: &'static str,
) -> Result<BpfHashMap<MapData, K, V>, MapsError> {
    use aya::maps::IterableMap as _;
    use std::os::fd::AsFd as _;
    reopen(map.map().fd().as_fd(), name)?
        .try_into()
        .map_err(map_err(name))
}

/// The map behind a descriptor, through a new descriptor of its own: a second reader or
/// writer of a map another handle owns.
pub fn reopen(fd: std::os::fd::BorrowedFd<'_>, name: &'static str) -> Result<Map, MapsError> {
    let fd = fd.try_clone_to_owned().map_err(|e| MapsError::Map {
        name,
        source: MapError::SyscallError(aya::sys::SyscallError {
            call: "dup",
            io_error: e,
        }),
    })?;
    let data = MapData::from_fd(fd).map_err(map_err(name))?;
    Map::from_map_data(data).map_err(map_err(name))
}

fn take(ebpf: &mut aya::Ebpf, name: &'static str) -> Result<Map, MapsError> {
    ebpf.take_map(name).ok_or(MapsError::Missing(name))
}

macro_rules! typed {
    ($ebpf:expr, $name:expr) => {
        take($ebpf, $name)?.try_into().map_err(map_err($name))?
    };
}

impl DatapathMaps {
    /// Takes the maps out of a loaded object (the ring buffer stays for the event reader).
    /// `fresh`: the object created its maps (none was adopted from a pin directory), so both
    /// slots are known empty and the first swap writes without reading them back (which, for
    /// the IPv4 table, is 2^19 reads).
    pub fn take(ebpf: &mut aya::Ebpf, fresh: bool) -> Result<Self, MapsError> {
        let mut resolvers: BpfHashMap<MapData, LearnedKey, u32> = typed!(ebpf, names::RESOLVERS);
        crate::resolvers::write(&mut resolvers).map_err(map_err(names::RESOLVERS))?;
        Ok(Self {
            active: typed!(ebpf, names::ACTIVE_POLICY),
            settings: typed!(ebpf, names::SETTINGS),
            rules: typed!(ebpf, names::RULES),
            dst_v4_24: typed!(ebpf, names::DST_V4_24),
            dst_v4_8: typed!(ebpf, names::DST_V4_8),
            destinations: typed!(ebpf, names::DESTINATIONS),
            dst_v6: typed!(ebpf, names::DST_V6),
            src_v4: typed!(ebpf, names::SRC_V4),
            src_v6: typed!(ebpf, names::SRC_V6),
            domains: typed!(ebpf, names::DOMAINS),
            stun_attributes: typed!(ebpf, names::STUN_ATTRS),
            port_signals: typed!(ebpf, names::PORT_SIGNALS),
            flows: typed!(ebpf, names::FLOWS),
            learned: typed!(ebpf, names::LEARNED),
            learned_filter: typed!(ebpf, names::LEARNED_FILTER),
            counters: typed!(ebpf, names::COUNTERS),
            counter_cache: typed!(ebpf, names::COUNTER_CACHE),
            parse_failures: typed!(ebpf, names::PARSE_FAILURES),
            stats: typed!(ebpf, names::STATS),
            images: if fresh {
                [Some(empty_image()), Some(empty_image())]
            } else {
                [None, None]
            },
            last_flip: None,
        })
    }

    /// A learner with its own handles on the flow and learned tables (see `learning`): it
    /// runs beside the policy writer, in another task.
    pub fn learner(&self) -> Result<crate::learning::Learner, MapsError> {
        use aya::maps::IterableMap as _;
        use std::os::fd::AsFd as _;
        let filter = reopen(
            self.learned_filter.map().fd().as_fd(),
            names::LEARNED_FILTER,
        )?
        .try_into()
        .map_err(map_err(names::LEARNED_FILTER))?;
        Ok(crate::learning::Learner::new(
            duplicate(&self.flows, names::FLOWS)?,
            duplicate(&self.learned, names::LEARNED)?,
            crate::learning::LearnedFilter::open(filter).map_err(map_err(names::LEARNED_FILTER))?,
        ))
    }

    /// The policy in force: slot and generation (generation 0: none yet).
    pub fn active(&self) -> Result<ActivePolicy, MapsError> {
        self.active
            .get(&0, 0)
            .map_err(map_err(names::ACTIVE_POLICY))
    }

    /// Writes `policy` into the inactive slot and makes it the active one. Returns the new
    /// generation. On error the policy in force is untouched.
    pub fn apply(&mut self, policy: &CompiledPolicy) -> Result<u32, MapsError> {
        self.apply_announcing(policy, |_, _| {})
    }

    /// `apply`, telling `announce` the new generation and slot once the slot is written and
    /// before any packet can be decided under it: whoever names events by generation must
    /// know it first, and the learner writes its endpoints into the slot then.
    pub fn apply_announcing(
        &mut self,
        policy: &CompiledPolicy,
        announce: impl FnOnce(u32, u32),
    ) -> Result<u32, MapsError> {
        check_capacity(policy)?;
        let active = self.active()?;
        let slot = if active.generation == 0 {
            0
        } else {
            1 - (active.slot & 1)
        };
        let generation = active.generation.wrapping_add(1).max(1);
        self.wait_grace_period();
        self.write_slot(slot, policy)?;
        let mut settings = policy.settings;
        settings.generation = generation;
        // The rule count is what was written, whatever the compiler put there.
        settings.rule_count = policy.rules.len() as u32;
        settings.holds_quic = u32::from(policy.enforces_a_block());
        self.settings
            .set(slot, &settings, 0)
            .map_err(map_err(names::SETTINGS))?;
        announce(generation, slot);
        self.active
            .set(0, &ActivePolicy { slot, generation }, 0)
            .map_err(map_err(names::ACTIVE_POLICY))?;
        self.last_flip = Some(Instant::now());
        Ok(generation)
    }

    fn wait_grace_period(&self) {
        // After a restart the previous flip's time is unknown: wait a whole period.
        let elapsed = self.last_flip.map_or(Duration::ZERO, |t| t.elapsed());
        if let Some(rest) = GRACE_PERIOD.checked_sub(elapsed) {
            std::thread::sleep(rest);
        }
    }

    fn write_slot(&mut self, slot: u32, policy: &CompiledPolicy) -> Result<(), MapsError> {
        let old = match self.images[slot as usize].take() {
            Some(image) => image,
            None => self.read_slot(slot)?,
        };
        let new = image_of(slot, policy);
        self.sync_dst_v4(slot, &old.dst_v4, &new.dst_v4)?;
        sync_trie(&mut self.dst_v6, &old.dst_v6, &new.dst_v6, names::DST_V6)?;
        sync_trie(&mut self.src_v4, &old.src_v4, &new.src_v4, names::SRC_V4)?;
        sync_trie(&mut self.src_v6, &old.src_v6, &new.src_v6, names::SRC_V6)?;
        sync_hash(
            &mut self.domains,
            &old.domains,
            &new.domains,
            names::DOMAINS,
        )?;
        sync_hash(
            &mut self.stun_attributes,
            &old.stun_attributes,
            &new.stun_attributes,
            names::STUN_ATTRS,
        )?;
        sync_hash(
            &mut self.port_signals,
            &old.port_signals,
            &new.port_signals,
            names::PORT_SIGNALS,
        )?;
        let mut block = RuleBlock::default();
        for (row, rule) in block.rules.iter_mut().zip(&policy.rules) {
            *row = *rule;
        }
        self.rules
            .set(slot, &block, 0)
            .map_err(map_err(names::RULES))?;
        self.images[slot as usize] = Some(new);
        Ok(())
    }

    /// Writes the differences between two IPv4 destination tables of a slot. Destination rows
    /// and groups come first, so that no entry ever names a row or group not yet written (the
    /// slot is inactive, but this keeps the order right whatever reads it).
    fn sync_dst_v4(
        &mut self,
        slot: u32,
        old: &DstV4Table,
        new: &DstV4Table,
    ) -> Result<(), MapsError> {
        for (number, destination) in new.destinations.iter().enumerate() {
            if old.destinations.get(number) != Some(destination) {
                self.destinations
                    .set(destination_index(slot, number as u32), destination, 0)
                    .map_err(map_err(names::DESTINATIONS))?;
            }
        }
        for (number, group) in new.groups.iter().enumerate() {
            if old.groups.get(number) != Some(group) {
                self.dst_v4_8
                    .set(
                        dst_v4_group_index(slot, number as u32),
                        &new.group(number),
                        0,
                    )
                    .map_err(map_err(names::DST_V4_8))?;
            }
        }
        let base = slot * DST_V4_BLOCKS_PER_SLOT;
        for block in new.changed_blocks(old) {
            self.dst_v4_24
                .set(base + block, &new.block(block), 0)
                .map_err(map_err(names::DST_V4_24))?;
        }
        Ok(())
    }

    /// What a slot holds in the kernel, for a writer that did not write it (after a restart).
    fn read_slot(&self, slot: u32) -> Result<SlotImage, MapsError> {
        Ok(SlotImage {
            dst_v4: self.read_dst_v4(slot)?,
            dst_v6: read_trie(&self.dst_v6, slot, names::DST_V6)?,
            src_v4: read_trie(&self.src_v4, slot, names::SRC_V4)?,
            src_v6: read_trie(&self.src_v6, slot, names::SRC_V6)?,
            domains: read_hash(&self.domains, names::DOMAINS, |k| k.slot == slot)?,
            stun_attributes: read_hash(&self.stun_attributes, names::STUN_ATTRS, |k| {
                k.slot == slot
            })?,
            port_signals: read_hash(&self.port_signals, names::PORT_SIGNALS, |k| {
                u32::from(k.slot) == slot
            })?,
        })
    }

    /// A slot's IPv4 table as the kernel holds it: every element of its half of `DST_V4_24`
    /// (2^19 reads: only after a restart, when the writer does not know what it wrote).
    fn read_dst_v4(&self, slot: u32) -> Result<DstV4Table, MapsError> {
        let base = slot * DST_V4_BLOCKS_PER_SLOT;
        // Read block by block into runs: the slot's 32 MiB are never held at once.
        let mut failure = None;
        let runs = DstV4Table::runs_from_blocks((0..DST_V4_BLOCKS_PER_SLOT).map_while(|block| {
            self.dst_v4_24
                .get(&(base + block), 0)
                .map_err(|e| failure = Some(e))
                .ok()
        }));
        if let Some(source) = failure {
            return Err(map_err(names::DST_V4_24)(source));
        }
        let groups = (0..DstV4Table::group_count(&runs) as u32)
            .map(|number| {
                self.dst_v4_8
                    .get(&dst_v4_group_index(slot, number), 0)
                    .map(|group| DstV4Table::group_from_kernel(&group))
                    .map_err(map_err(names::DST_V4_8))
            })
            .collect::<Result<_, _>>()?;
        let destinations = (0..limits::MAX_DESTINATIONS)
            .map(|number| {
                self.destinations
                    .get(&destination_index(slot, number), 0)
                    .map_err(map_err(names::DESTINATIONS))
            })
            .collect::<Result<_, _>>()?;
        Ok(DstV4Table {
            runs,
            groups,
            destinations,
        })
    }

    /// Counter rows summed over CPUs: the cache rows and the hash map together.
    pub fn counters(&self) -> Result<Vec<(CounterKey, CounterValue)>, MapsError> {
        sum_counters(&self.counters, &self.counter_cache)
    }

    pub fn parse_failures(&self) -> Result<[u64; parse_failure::COUNT as usize], MapsError> {
        sum_array(&self.parse_failures, names::PARSE_FAILURES)
    }

    pub fn stats(&self) -> Result<[u64; stat::COUNT as usize], MapsError> {
        sum_array(&self.stats, names::STATS)
    }

    /// Every remembered flow (a snapshot; the kernel keeps changing it).
    pub fn flows(&self) -> Vec<(FlowKey, FlowEntry)> {
        self.flows.iter().filter_map(Result::ok).collect()
    }

    /// Writes one flow's entry, as the learner does when it tells a QUIC server name.
    pub fn write_flow(&mut self, key: &FlowKey, entry: &FlowEntry) -> Result<(), MapsError> {
        self.flows
            .insert(key, entry, 0)
            .map_err(map_err(names::FLOWS))
    }

    /// Number of flows remembered, against `limits::FLOW_CAPACITY`.
    #[must_use]
    pub fn flow_count(&self) -> usize {
        self.flows.keys().flatten().count()
    }
}

/// Counter rows summed over CPUs, from the hash map and the per-CPU cache in front of it (a
/// key may have counts in both: in the cache on a CPU where it claimed its row, in the hash on
/// one where another key had).
pub fn sum_counters(
    counters: &PerCpuHashMap<MapData, CounterKey, CounterValue>,
    cache: &PerCpuArray<MapData, CounterRow>,
) -> Result<Vec<(CounterKey, CounterValue)>, MapsError> {
    let mut sums: BTreeMap<CounterKey, CounterValue> = BTreeMap::new();
    let mut add = |key: CounterKey, v: &CounterValue| {
        let sum = sums.entry(key).or_default();
        sum.packets += v.packets;
        sum.bytes += v.bytes;
        sum.flows += v.flows;
    };
    for item in counters {
        let (key, per_cpu) = item.map_err(map_err(names::COUNTERS))?;
        for v in per_cpu.iter() {
            add(key, v);
        }
    }
    for index in 0..limits::COUNTER_CACHE_ROWS {
        let per_cpu = cache
            .get(&index, 0)
            .map_err(map_err(names::COUNTER_CACHE))?;
        for row in per_cpu.iter().filter(|r| r.key.word() != 0) {
            add(row.key, &row.value);
        }
    }
    Ok(sums.into_iter().collect())
}

/// The kernel maps, or parts of one, whose size bounds a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    Rules,
    Destinations,
    DstV4Prefixes,
    DstV4Groups,
    DstV6Prefixes,
    StunAttributes,
    PortSignals,
    Domains,
    SrcV4Prefixes,
    SrcV6Prefixes,
}

/// What a policy needs of one table, against what one policy slot of it may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Need {
    pub table: Table,
    pub what: &'static str,
    pub needed: usize,
    pub capacity: u32,
}

impl Need {
    #[must_use]
    pub fn overflows(&self) -> bool {
        self.needed > self.capacity as usize
    }
}

/// What `policy` needs of each table with a fixed size. Pure: the policy compiler asks it too,
/// so that `vigie check` and a reload refuse a policy that would not fit, with the place that
/// makes it overflow, before any map is written.
#[must_use]
pub fn needs(policy: &CompiledPolicy) -> [Need; 10] {
    // Each slot may use half of a trie or hash map, so that the other slot always fits beside it.
    let half = |c: u32| c / limits::SLOTS;
    let need = |table, what, needed, capacity| Need {
        table,
        what,
        needed,
        capacity,
    };
    let [destinations, v4, groups, v6] =
        destination_needs(&policy.destinations_v4, &policy.destinations_v6);
    [
        need(Table::Rules, "rules", policy.rules.len(), limits::MAX_RULES),
        destinations,
        v4,
        groups,
        v6,
        need(
            Table::StunAttributes,
            "vendor STUN attributes",
            policy.stun_attributes.len(),
            half(limits::STUN_ATTRIBUTE_CAPACITY),
        ),
        need(
            Table::PortSignals,
            "vendor signal ports",
            policy.port_signals.len(),
            half(limits::PORT_SIGNAL_CAPACITY),
        ),
        need(
            Table::Domains,
            "catalog domains",
            policy.domains.len(),
            half(limits::DOMAIN_CAPACITY),
        ),
        need(
            Table::SrcV4Prefixes,
            "IPv4 source prefixes",
            policy.sources_v4.len(),
            half(limits::SRC_PREFIX_CAPACITY),
        ),
        need(
            Table::SrcV6Prefixes,
            "IPv6 source prefixes",
            policy.sources_v6.len(),
            half(limits::SRC_PREFIX_CAPACITY),
        ),
    ]
}

/// The needs of the destination tables alone: `Destinations`, `DstV4Prefixes`, `DstV4Groups`,
/// `DstV6Prefixes`, in this order (for a compiler that tries the tables it builds in steps).
#[must_use]
pub fn destination_needs(
    v4: &[(Ipv4Net, Destination)],
    v6: &[(Ipv6Net, Destination)],
) -> [Need; 4] {
    [
        Need {
            table: Table::Destinations,
            what: "distinct IPv4 destinations (service and classes), \"none\" included",
            needed: destination_count(v4),
            capacity: limits::MAX_DESTINATIONS,
        },
        Need {
            table: Table::DstV4Prefixes,
            what: "IPv4 destination prefixes",
            needed: v4.len(),
            capacity: limits::MAX_DST_V4_PREFIXES,
        },
        Need {
            table: Table::DstV4Groups,
            what: "IPv4 /24 networks holding longer destination prefixes",
            needed: groups_needed(v4),
            capacity: limits::DST_V4_GROUPS_PER_SLOT,
        },
        Need {
            table: Table::DstV6Prefixes,
            what: "IPv6 destination prefixes",
            needed: v6.len(),
            capacity: limits::DST_PREFIX_CAPACITY / limits::SLOTS,
        },
    ]
}

/// The first table `policy` overflows, as an error: checked again where the maps are written,
/// whoever compiled the policy.
pub fn check_capacity(policy: &CompiledPolicy) -> Result<(), MapsError> {
    match needs(policy).into_iter().find(Need::overflows) {
        Some(need) => Err(MapsError::Capacity {
            what: need.what,
            needed: need.needed,
            capacity: need.capacity,
        }),
        None => Ok(()),
    }
}

/// Destination numbers an IPv4 table needs (see `DstV4Table`).
fn destination_count(v4: &[(Ipv4Net, Destination)]) -> usize {
    let distinct: BTreeSet<(u32, u64)> = v4.iter().map(|(_, d)| (d.service, d.classes)).collect();
    distinct.len() + 1
}

fn v4_key(slot: u32, net: Ipv4Net) -> PrefixV4Key {
    let mut data = [0u8; 5];
    data[0] = slot as u8;
    data[1..].copy_from_slice(&net.network().octets());
    (SLOT_PREFIX_BITS + u32::from(net.prefix_len()), data)
}

fn v6_key(slot: u32, net: &Ipv6Net) -> PrefixV6Key {
    let mut data = [0u8; 17];
    data[0] = slot as u8;
    data[1..].copy_from_slice(&net.network().octets());
    (SLOT_PREFIX_BITS + u32::from(net.prefix_len()), data)
}

/// What a slot of newly created maps holds: nothing.
fn empty_image() -> SlotImage {
    SlotImage {
        dst_v4: DstV4Table::default(),
        dst_v6: SortedTable::default(),
        src_v4: SortedTable::default(),
        src_v6: SortedTable::default(),
        domains: SortedTable::default(),
        stun_attributes: SortedTable::default(),
        port_signals: SortedTable::default(),
    }
}

fn image_of(slot: u32, policy: &CompiledPolicy) -> SlotImage {
    let group = |g: &u32| SourceGroup { group: *g };
    SlotImage {
        dst_v4: DstV4Table::build(&policy.destinations_v4),
        dst_v6: policy
            .destinations_v6
            .iter()
            .map(|(n, d)| (v6_key(slot, n), *d))
            .collect(),
        src_v4: policy
            .sources_v4
            .iter()
            .map(|(n, g)| (v4_key(slot, *n), group(g)))
            .collect(),
        src_v6: policy
            .sources_v6
            .iter()
            .map(|(n, g)| (v6_key(slot, n), group(g)))
            .collect(),
        domains: policy
            .domains
            .iter()
            .map(|&(hash, service)| {
                let key = DomainKey { slot, pad: 0, hash };
                (key, service)
            })
            .collect(),
        stun_attributes: policy
            .stun_attributes
            .iter()
            .map(|&(attribute, service)| {
                let key = StunKey {
                    slot,
                    attribute: u32::from(attribute),
                };
                (key, service)
            })
            .collect(),
        port_signals: policy
            .port_signals
            .iter()
            .map(|&((proto, port), service)| {
                let key = PortKey {
                    slot: slot as u8,
                    proto,
                    port,
                };
                (key, service)
            })
            .collect(),
    }
}

/// Writes the differences between two images of a hash map's slot entries.
fn sync_hash<K: aya::Pod + Ord>(
    map: &mut BpfHashMap<MapData, K, u32>,
    old: &SortedTable<K, u32>,
    new: &SortedTable<K, u32>,
    name: &'static str,
) -> Result<(), MapsError> {
    let (removed, written) = old.changes(new);
    for key in removed {
        map.remove(key).map_err(map_err(name))?;
    }
    for (key, value) in written {
        map.insert(key, value, 0).map_err(map_err(name))?;
    }
    Ok(())
}

/// The entries of a hash map that `of_slot` keeps.
fn read_hash<K: aya::Pod + Ord>(
    map: &BpfHashMap<MapData, K, u32>,
    name: &'static str,
    of_slot: impl Fn(&K) -> bool,
) -> Result<SortedTable<K, u32>, MapsError> {
    let mut entries = Vec::new();
    for item in map {
        let (key, value) = item.map_err(map_err(name))?;
        if of_slot(&key) {
            entries.push((key, value));
        }
    }
    Ok(entries.into_iter().collect())
}

fn sync_trie<K: aya::Pod + Ord, V: aya::Pod + PartialEq>(
    trie: &mut LpmTrie<MapData, K, V>,
    old: &SortedTable<(u32, K), V>,
    new: &SortedTable<(u32, K), V>,
    name: &'static str,
) -> Result<(), MapsError> {
    let (removed, written) = old.changes(new);
    for (prefix, data) in removed {
        trie.remove(&Key::new(*prefix, *data))
            .map_err(map_err(name))?;
    }
    for ((prefix, data), value) in written {
        trie.insert(&Key::new(*prefix, *data), value, 0)
            .map_err(map_err(name))?;
    }
    Ok(())
}

/// Entries of one slot: the slot is the key's first byte.
fn read_trie<K: aya::Pod + Ord + AsRef<[u8]>, V: aya::Pod>(
    trie: &LpmTrie<MapData, K, V>,
    slot: u32,
    name: &'static str,
) -> Result<SortedTable<(u32, K), V>, MapsError> {
    let mut entries = Vec::new();
    for item in trie {
        let (key, value) = item.map_err(map_err(name))?;
        let data = key.data();
        if data.as_ref().first() == Some(&(slot as u8)) {
            entries.push(((key.prefix_len(), data), value));
        }
    }
    Ok(entries.into_iter().collect())
}

fn sum_array<const N: usize>(
    array: &PerCpuArray<MapData, u64>,
    name: &'static str,
) -> Result<[u64; N], MapsError> {
    let mut sums = [0u64; N];
    for (index, sum) in sums.iter_mut().enumerate() {
        let per_cpu = array.get(&(index as u32), 0).map_err(map_err(name))?;
        *sum = per_cpu.iter().sum();
    }
    Ok(sums)
}

/// An IPv4 or IPv6 address from the 16 bytes of a flow key.
#[must_use]
pub fn address(family: u8, bytes: &[u8; 16]) -> std::net::IpAddr {
    if family == 4 {
        Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).into()
    } else {
        Ipv6Addr::from(*bytes).into()
    }
}
