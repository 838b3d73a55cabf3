//! Sizes of the kernel maps and bounds of the kernel's loops, in one place so that the daemon
//! validates a policy against exactly what the kernel can hold.

/// Rules per policy; the kernel walks them in a loop bounded by this constant.
pub const MAX_RULES: u32 = 64;
/// Service identifiers are 1..MAX_SERVICES-1; 0 means "no service recognised".
pub const MAX_SERVICES: u32 = 128;
/// Source-group identifiers are 1..MAX_GROUPS-1; 0 means "in no group".
pub const MAX_GROUPS: u32 = 64;
/// Country or jurisdiction classes a destination can carry (bits of a u64).
pub const MAX_CLASSES: u32 = 64;
/// Two policy slots: one active, one being written (see `policy::ActivePolicy`).
pub const SLOTS: u32 = 2;

/// IPv6 destination prefixes over both slots (the IPv4 table has its own limit,
/// `MAX_DST_V4_PREFIXES`).
pub const DST_PREFIX_CAPACITY: u32 = 1 << 19;
/// Groups of `DST_V4_8` per slot: /24 networks that hold prefixes longer than /24 (see
/// `policy::DstV4Block`); 512 bytes each. Every country of the shipped database but one
/// (`countries = ["non-fr"]`: 451,498 IPv4 networks) needs 15,876; group numbers have 15 bits.
pub const DST_V4_GROUPS_PER_SLOT: u32 = 1 << 15;
/// IPv4 destination prefixes per slot. The table's lookup does not depend on their number:
/// the limit bounds a policy's compile time.
pub const MAX_DST_V4_PREFIXES: u32 = 1 << 20;
/// Distinct (service, classes) pairs of IPv4 destinations per slot, number 0 ("none") included.
pub const MAX_DESTINATIONS: u32 = 1 << 12;
/// Catalog domains over both slots (the server names of TLS ClientHellos are matched to them).
pub const DOMAIN_CAPACITY: u32 = 1 << 13;
/// Vendor STUN attribute types over both slots.
pub const STUN_ATTRIBUTE_CAPACITY: u32 = 512;
/// Source-group prefixes over both slots, IPv4 and IPv6 each.
pub const SRC_PREFIX_CAPACITY: u32 = 1 << 14;
/// Flows remembered at once; the least recently used is forgotten first.
pub const FLOW_CAPACITY: u32 = 1 << 18;
/// Distinct (rule, service, group, action) counter rows.
pub const COUNTER_CAPACITY: u32 = 1 << 14;
/// Rows of the per-CPU counter cache, each claimed by the first key that hashes to it (a power
/// of two).
pub const COUNTER_CACHE_ROWS: u32 = 1 << 12;
/// Rows of the per-CPU flow cache in front of the flow table (a power of two; 96 bytes each).
pub const FLOW_CACHE_ROWS: u32 = 1 << 10;
/// Packets a flow-cache row serves before the next one goes through the flow table again.
pub const FLOW_CACHE_CREDIT: u32 = 64;
/// Bytes of the flow-event ring buffer (a power of two, a multiple of the page size).
pub const EVENT_RING_BYTES: u32 = 1 << 20;
/// Unread flow-event bytes at each multiple of which the daemon is woken at once, whatever
/// `EVENT_WAKE_INTERVAL_NS` says: a burst wakes it 15 times before the ring is full.
pub const EVENT_WAKE_BYTES: u64 = EVENT_RING_BYTES as u64 / 16;
/// The least time between two wakeups of the daemon for flow events by one CPU, on the kernel's
/// coarse clock: in effect once per scheduler tick (4 ms at 250 Hz). Waking the reader costs
/// the writing CPU an interrupt (some 10 µs on this project's nested virtual machines): paid
/// on every event, a flood of new flows would cost more than the packets. An event written
/// without a wakeup is read at the next wakeup or at the daemon's own poll (`events::writer`).
pub const EVENT_WAKE_INTERVAL_NS: u64 = 1_000_000;

/// Bytes of the payload ring (DNS responses and QUIC Initials for the daemon; a power of two).
pub const PAYLOAD_RING_BYTES: u32 = 1 << 22;
/// Endpoints learned from DNS, over both slots; the least recently used is forgotten first
/// when full (the daemon keeps each slot under its configured bound well before that).
pub const LEARNED_CAPACITY: u32 = 1 << 17;
/// Vendor signal ports over both slots.
pub const PORT_SIGNAL_CAPACITY: u32 = 4096;
/// Ports one signal range of a catalog entry may hold.
pub const MAX_SIGNAL_RANGE: u32 = 1024;
/// Well-known encrypted DNS resolver addresses.
pub const RESOLVER_CAPACITY: u32 = 256;

/// VLAN tags parsed (802.1Q and 802.1ad, QinQ).
pub const MAX_VLAN_TAGS: u32 = 2;
/// IPv6 extension headers walked before the packet counts as unparsable.
pub const MAX_IPV6_EXT_HEADERS: u32 = 6;
/// Times a packet re-decides when a policy swap happened while it was deciding.
pub const MAX_DECIDE_ATTEMPTS: u32 = 3;
