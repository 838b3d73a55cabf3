//! The compiled policy as the kernel holds it, twice: slots 0 and 1.
//!
//! The swap is atomic by construction. The daemon writes every map entry of the inactive slot
//! (the slot number is the first byte of each prefix key, and selects the rule rows, the IPv4
//! destination root entries and the destination rows), then flips
//! `ActivePolicy` in one array update. A packet reads `ActivePolicy` before and after deciding
//! and decides again if the generation moved, so it never mixes two policies; and the daemon
//! waits out a grace period after a flip before it rewrites the slot it left.

/// The single entry of the `ACTIVE_POLICY` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct ActivePolicy {
    /// 0 or 1.
    pub slot: u32,
    /// Increases at every swap; 0 means that no policy has been applied yet.
    pub generation: u32,
}

/// Per-slot settings (`SETTINGS` array, index = slot).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct Settings {
    pub generation: u32,
    pub rule_count: u32,
    /// What a flow that no rule matched gets (`action::*`).
    pub default_action: u32,
    /// `action::mode::*`.
    pub mode: u32,
    /// What a packet that cannot be parsed gets: `action::ALLOW` or `action::DROP`.
    pub unparsed_action: u32,
    /// 1 when some rule (or the default) of the slot's policy blocks and enforces: only then
    /// are a QUIC flow's server datagrams held back while its name is read. A policy that only
    /// reports (monitor mode) never holds a packet back. The map writer sets it.
    pub holds_quic: u32,
}

/// `Rule::conditions` bits: which of the rule's fields constrain a match.
pub mod condition {
    /// The flow's service must be in `services`.
    pub const SERVICES: u32 = 1;
    /// The flow's source group must be in `groups`.
    pub const GROUPS: u32 = 1 << 1;
    /// The destination must carry one of `classes`.
    pub const CLASSES: u32 = 1 << 2;
    /// No service may have been recognised (a rule about unknown traffic).
    pub const NO_SERVICE: u32 = 1 << 3;
}

/// One rule of the ordered list (a row of a slot's `RuleBlock`, at its position).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct Rule {
    /// Bit n of word n/64 set: service n matches.
    pub services: [u64; 2],
    /// Bit n set: group n matches.
    pub groups: u64,
    /// Bit n set: a flow from group n never matches (department exceptions).
    pub except_groups: u64,
    /// Bit n set: a destination carrying class n matches.
    pub classes: u64,
    /// `condition::*` bits.
    pub conditions: u32,
    /// `action::*`.
    pub action: u32,
    /// IP protocol number, 0 for any.
    pub proto: u32,
    /// Inclusive range of the remote (service-side) port; 0..=65535 for any.
    pub port_min: u16,
    pub port_max: u16,
    /// The rule's number in counters, flow entries and events: kept by the daemon for the
    /// rule's name across reloads and restarts (see the daemon's `numbering`), unlike its
    /// position, so that inserting a rule never moves what earlier rules counted under
    /// another rule's name.
    pub number: u32,
    pub pad: u32,
}

/// The ordered rules of one policy slot (`RULES` array, index = slot): one lookup gives the
/// rule walk every rule, so that its loop makes no call, which would spill the flow's values
/// to the stack on every rule (the kernel's stack is shared by the whole chain of calls).
/// Rows past the policy's `rule_count` are never read.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct RuleBlock {
    pub rules: [Rule; crate::limits::MAX_RULES as usize],
}

impl Default for RuleBlock {
    fn default() -> Self {
        Self {
            rules: [Rule::default(); crate::limits::MAX_RULES as usize],
        }
    }
}

/// Value of the destination prefix tries: what the address table says of a remote address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct Destination {
    pub classes: u64,
    pub service: u32,
    pub pad: u32,
}

/// Value of the source prefix tries.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct SourceGroup {
    pub group: u32,
}

/// The IPv4 destination table, laid out as DIR-24-8 (the layout of DPDK's `rte_lpm`): any
/// address is answered in one array read, two for an address under a prefix longer than /24,
/// whatever the number of prefixes. No hash to compute, no key to compare, no helper call: the
/// verifier inlines array reads. The earlier layouts (an LPM trie, then a /16 array plus one
/// hash probe per longer length) cost a cache miss per trie node or per probe once 100,000
/// prefixes were loaded.
///
/// - `DST_V4_24` has one 16-bit entry per slot and /24, packed `DST_V4_BLOCK` to an array
///   element (one cache line; `dst_v4_block_index`, `dst_v4_block_offset`): the destination
///   number of the longest prefix of /24 or shorter covering that /24, or, with
///   `DST_V4_GROUP_BIT`, the number of a group in `DST_V4_8`: the /24 holds longer prefixes;
/// - `DST_V4_8` has groups of 256 entries, one per address of such a /24
///   (`dst_v4_group_index`), each the destination number of the longest prefix covering it.
///
/// Entries give destination numbers: rows of `DESTINATIONS` (`destination_index`), where number
/// 0 is "no destination" (an all-zero row). Many prefixes share a few (service, classes) pairs.
/// Memory: 32 MiB per slot for `DST_V4_24`, allocated whatever the prefixes (as `rte_lpm`'s
/// 64 MiB table); the price of a lookup that does not grow with the table.
pub type DstV4Block = [u16; DST_V4_BLOCK];

/// Entries of `DST_V4_24` per array element: 64 bytes, one cache line.
pub const DST_V4_BLOCK: usize = 32;

/// `DST_V4_24` elements per slot: 2^24 /24 networks, `DST_V4_BLOCK` to an element.
pub const DST_V4_BLOCKS_PER_SLOT: u32 = (1 << 24) / DST_V4_BLOCK as u32;

/// A `DST_V4_24` entry with this bit names a group of `DST_V4_8` (the low bits), not a
/// destination.
pub const DST_V4_GROUP_BIT: u16 = 0x8000;

/// One group of `DST_V4_8`: the destination number of each address of one /24.
pub type DstV4Group = [u16; 256];

// Destination and group numbers live in the 15 bits below `DST_V4_GROUP_BIT`.
const _: () = assert!(crate::limits::MAX_DESTINATIONS <= DST_V4_GROUP_BIT as u32);
const _: () = assert!(crate::limits::DST_V4_GROUPS_PER_SLOT <= DST_V4_GROUP_BIT as u32);

/// Index of the `DST_V4_24` element that holds an IPv4 address (host order) in a slot.
#[must_use]
pub const fn dst_v4_block_index(slot: u32, addr: u32) -> u32 {
    (slot & 1) * DST_V4_BLOCKS_PER_SLOT + (addr >> 13)
}

/// Position of an IPv4 address's entry within its `DST_V4_24` element.
#[must_use]
pub const fn dst_v4_block_offset(addr: u32) -> usize {
    ((addr >> 8) as usize) % DST_V4_BLOCK
}

/// Index of group `group` of `DST_V4_8` in a slot.
#[must_use]
pub const fn dst_v4_group_index(slot: u32, group: u32) -> u32 {
    (slot & 1) * crate::limits::DST_V4_GROUPS_PER_SLOT
        + (group % crate::limits::DST_V4_GROUPS_PER_SLOT)
}

/// Index of the `DESTINATIONS` row of destination number `number` in a slot.
#[must_use]
pub const fn destination_index(slot: u32, number: u32) -> u32 {
    (slot & 1) * crate::limits::MAX_DESTINATIONS + (number % crate::limits::MAX_DESTINATIONS)
}

/// Key data of the IPv4 source prefix trie: the slot byte, then the address. The prefix length
/// counts the slot byte's 8 bits, so both slots live in one trie without meeting.
pub type PrefixV4 = [u8; 5];
/// Key data of the IPv6 prefix tries: the slot byte, then the address.
pub type PrefixV6 = [u8; 17];
/// Bits of the slot byte in a prefix length.
pub const SLOT_PREFIX_BITS: u32 = 8;
