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

/// One rule of the ordered list (`RULES` array, index = slot * `MAX_RULES` + position).
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

/// The IPv4 destination table. The kernel's LPM trie walks up to 40 nodes per lookup, each a
/// cache miss once it holds 100,000 prefixes; this table answers in one array read, plus one hash
/// probe per prefix length longer than /16 that exists under the address's /16:
///
/// - `DST_V4_ROOT` has one entry per slot and /16 (`dst_v4_root_index`): the destination of
///   the longest prefix of /16 or shorter covering it, and which longer lengths exist below it;
/// - `DST_V4_LONG` holds the prefixes longer than /16, keyed by slot, length and network, and is
///   probed longest first.
///
/// Both give destination numbers: rows of `DESTINATIONS` (`destination_index`), where number 0
/// is "no destination" (an all-zero row). Many prefixes share a few (service, classes) pairs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct DstV4Root {
    /// Destination number of the longest prefix of /16 or shorter, 0 if none.
    pub destination: u32,
    /// Bit `n` set: prefixes of length `DST_V4_ROOT_BITS + 1 + n` exist under this /16.
    pub longer: u32,
}

/// Key of `DST_V4_LONG`: a prefix longer than /16 in one slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct DstV4LongKey {
    pub slot: u8,
    /// Prefix length, above `DST_V4_ROOT_BITS`.
    pub len: u8,
    pub pad: [u8; 2],
    /// The network address, host bits zero.
    pub network: [u8; 4],
}

/// Address bits that index `DST_V4_ROOT` within a slot.
pub const DST_V4_ROOT_BITS: u32 = 16;

/// Index of the `DST_V4_ROOT` entry of an IPv4 address (host order) in a slot.
#[must_use]
pub const fn dst_v4_root_index(slot: u32, addr: u32) -> u32 {
    ((slot & 1) << DST_V4_ROOT_BITS) | (addr >> (32 - DST_V4_ROOT_BITS))
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
