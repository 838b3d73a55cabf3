//! Every map of the kernel programs, each with its size constant (see `vigie_common::limits`).
//! Names are the static names: `vigie_common::maps` lists them for the daemon.

use aya_ebpf::{
    Global,
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf},
};
use vigie_common::{
    action,
    answer::Frame,
    counters::{CounterKey, CounterRow, CounterValue, parse_failure, stat},
    flow::{CachedFlow, FlowEntry, FlowKey},
    learned::{self, LearnedEndpoint, LearnedKey},
    limits,
    policy::{
        ActivePolicy, DST_V4_BLOCKS_PER_SLOT, Destination, DstV4Block, DstV4Group, PrefixV4,
        PrefixV6, RuleBlock, Settings, SourceGroup,
    },
    signal::PortKey,
    sni::{DomainKey, SniWork},
    stun::StunKey,
};

/// Which slot holds the policy in force, and its generation (one entry).
#[map]
pub static ACTIVE_POLICY: Array<ActivePolicy> = Array::with_max_entries(1, 0);

/// Settings of each slot.
#[map]
pub static SETTINGS: Array<Settings> = Array::with_max_entries(limits::SLOTS, 0);

/// The ordered rules of each slot.
#[map]
pub static RULES: Array<RuleBlock> = Array::with_max_entries(limits::SLOTS, 0);

/// Remote IPv4 addresses to destination numbers, one entry per slot and /24 (see
/// `policy::DstV4Block`).
#[map]
pub static DST_V4_24: Array<DstV4Block> =
    Array::with_max_entries(limits::SLOTS * DST_V4_BLOCKS_PER_SLOT, 0);

/// Destination numbers of each address of the /24 networks that hold prefixes longer than /24.
#[map]
pub static DST_V4_8: Array<DstV4Group> =
    Array::with_max_entries(limits::SLOTS * limits::DST_V4_GROUPS_PER_SLOT, 0);

/// What each IPv4 destination number stands for, `MAX_DESTINATIONS` rows per slot.
#[map]
pub static DESTINATIONS: Array<Destination> =
    Array::with_max_entries(limits::SLOTS * limits::MAX_DESTINATIONS, 0);

/// Remote IPv6 prefixes to services; the key's first byte is the slot.
#[map]
pub static DST_V6: LpmTrie<PrefixV6, Destination> =
    LpmTrie::with_max_entries(limits::DST_PREFIX_CAPACITY, 0);

/// Local IPv4 prefixes to source groups; the key's first byte is the slot.
#[map]
pub static SRC_V4: LpmTrie<PrefixV4, SourceGroup> =
    LpmTrie::with_max_entries(limits::SRC_PREFIX_CAPACITY, 0);

/// Local IPv6 prefixes to source groups; the key's first byte is the slot.
#[map]
pub static SRC_V6: LpmTrie<PrefixV6, SourceGroup> =
    LpmTrie::with_max_entries(limits::SRC_PREFIX_CAPACITY, 0);

/// The flow cache: evidence and verdict of each connection.
#[map]
pub static FLOWS: LruHashMap<FlowKey, FlowEntry> =
    LruHashMap::with_max_entries(limits::FLOW_CAPACITY, 0);

/// The per-CPU flow cache in front of `FLOWS` (see `flow_cache`).
#[map]
pub static FLOW_CACHE: PerCpuArray<CachedFlow> =
    PerCpuArray::with_max_entries(limits::FLOW_CACHE_ROWS, 0);

/// Packets, bytes and new flows by (rule, service, group, action).
#[map]
pub static COUNTERS: PerCpuHashMap<CounterKey, CounterValue> =
    PerCpuHashMap::with_max_entries(limits::COUNTER_CAPACITY, 0);

/// The per-CPU counter cache in front of `COUNTERS` (see `CounterRow`).
#[map]
pub static COUNTER_CACHE: PerCpuArray<CounterRow> =
    PerCpuArray::with_max_entries(limits::COUNTER_CACHE_ROWS, 0);

/// Unparsable packets by reason.
#[map]
pub static PARSE_FAILURES: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(parse_failure::COUNT, 0);

/// Datapath statistics (`stat::*`).
#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

/// Flow events for the daemon.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(limits::EVENT_RING_BYTES, 0);

/// When this CPU last woke the daemon for flow events (coarse clock, ns; see `report`).
#[map]
pub static EVENT_WAKES: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// One flow key per CPU. The classifier stores the parsed key here and works from the map's
/// copy: the verifier then forgets which parsing path produced it, so the rest of the program
/// is verified once instead of once per kind of packet.
#[map]
pub static SCRATCH: PerCpuArray<FlowKey> = PerCpuArray::with_max_entries(1, 0);

/// Two frame buffers per CPU for answering a rejected packet: the copy of its first bytes
/// (`frame::ORIGINAL`) and the answer (`frame::ANSWER`).
#[map]
pub static FRAMES: PerCpuArray<Frame> = PerCpuArray::with_max_entries(2, 0);

/// Catalog domains by slot and hash, to their service (see `vigie_common::sni`).
#[map]
pub static DOMAINS: HashMap<DomainKey, u32> =
    HashMap::with_max_entries(limits::DOMAIN_CAPACITY, BPF_F_NO_PREALLOC);

/// Vendor STUN attribute types by slot, to their service.
#[map]
pub static STUN_ATTRS: HashMap<StunKey, u32> =
    HashMap::with_max_entries(limits::STUN_ATTRIBUTE_CAPACITY, BPF_F_NO_PREALLOC);

/// The ClientHello walk's work area (one per CPU).
#[map]
pub static SNI_WORK: PerCpuArray<SniWork> = PerCpuArray::with_max_entries(1, 0);

/// The flow entry being decided (one per CPU), in and out of `vigie_decide`.
#[map]
pub static DECIDING: PerCpuArray<FlowEntry> = PerCpuArray::with_max_entries(1, 0);

/// DNS responses and QUIC client datagrams for the daemon (see `vigie_common::payload`).
#[map]
pub static PAYLOADS: RingBuf = RingBuf::with_byte_size(limits::PAYLOAD_RING_BYTES, 0);

/// Endpoints learned from DNS, by slot and address (see `vigie_common::learned`).
#[map]
pub static LEARNED: LruHashMap<LearnedKey, LearnedEndpoint> =
    LruHashMap::with_max_entries(limits::LEARNED_CAPACITY, 0);

/// The filter in front of `LEARNED`: a set bit means an address of it may be there (see
/// `vigie_common::learned::filter_position`).
#[map]
pub static LEARNED_FILTER: Array<u64> =
    Array::with_max_entries(limits::SLOTS * learned::FILTER_WORDS, 0);

/// Well-known encrypted DNS resolvers (the key's slot is 0): flows to them are counted.
#[map]
pub static RESOLVERS: HashMap<LearnedKey, u32> =
    HashMap::with_max_entries(limits::RESOLVER_CAPACITY, BPF_F_NO_PREALLOC);

/// Vendor signal ports by slot, protocol and port, to their service.
#[map]
pub static PORT_SIGNALS: HashMap<PortKey, u32> =
    HashMap::with_max_entries(limits::PORT_SIGNAL_CAPACITY, BPF_F_NO_PREALLOC);

/// Indices of `FRAMES`.
pub mod frame {
    pub const ORIGINAL: u32 = 0;
    pub const ANSWER: u32 = 1;
}

const BPF_F_NO_PREALLOC: u32 = 1;

/// What a packet gets before any policy has been applied; set at load time.
#[unsafe(no_mangle)]
pub static FAILURE_ACTION: Global<u32> = Global::new(action::ALLOW);

#[inline(always)]
pub fn bump(map: &PerCpuArray<u64>, index: u32) {
    if let Some(counter) = map.get_ptr_mut(index) {
        // SAFETY: per-CPU storage: only this CPU writes it while the program runs.
        unsafe { *counter += 1 };
    }
}
