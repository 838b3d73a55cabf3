//! Server names from TLS ClientHellos: the kernel walks the ClientHello's extensions segment by
//! segment and matches the `server_name` against catalog domains by hash; the daemon writes
//! those hashes. One hash function for both, here.
//!
//! A name matches a domain when it equals it or ends with "." and the domain ("zoom.us"
//! matches "zoom.us" and "eu01web.zoom.us", not "notzoom.us"); the longest matching domain
//! wins. Names are compared without case.

#![allow(
    clippy::inline_always,
    reason = "run by the kernel program: the verifier tracks buffer bounds within one function"
)]

/// Bytes of a segment's payload the kernel copies to read the ClientHello (a power of two).
/// A ClientHello segment is at most one MSS; what lies beyond is not read.
pub const PAYLOAD_BYTES: usize = 2048;
/// The longest host name (RFC 1035).
pub const MAX_NAME: usize = 253;
/// Slots for the suffixes of a name tried against the domains: a domain of up to
/// `MAX_SUFFIXES - 1` labels can match.
pub const MAX_SUFFIXES: usize = 8;
/// Extensions walked per segment.
pub const MAX_EXTENSIONS_PER_SEGMENT: u32 = 40;

const MULTIPLIER: u64 = 0x0000_0100_0000_01b3;

/// The hash of a domain or name suffix, built from its last byte towards its first, so that
/// one pass over a name from its end yields the hash of each of its suffixes. Never 0 (0 marks
/// an unused suffix slot in the kernel).
#[inline(always)]
#[must_use]
pub const fn extend(hash: u64, power: u64, byte: u8) -> u64 {
    hash.wrapping_add((lower(byte) as u64 + 1).wrapping_mul(power))
}

/// The next power of the multiplier, for the byte before.
#[inline(always)]
#[must_use]
pub const fn next_power(power: u64) -> u64 {
    power.wrapping_mul(MULTIPLIER)
}

/// Letters to lower case, without a branch (the kernel's loop stays straight): host names
/// are letters, digits, "-" and ".", which the bit leaves alone or lowers.
#[inline(always)]
#[must_use]
pub const fn lower(byte: u8) -> u8 {
    byte | 0x20
}

/// The hash of a whole domain (userspace: the catalog's domains).
#[must_use]
pub fn domain_hash(domain: &[u8]) -> u64 {
    let mut hash = 0;
    let mut power = 1;
    for &b in domain.iter().rev() {
        hash = extend(hash, power, b);
        power = next_power(power);
    }
    hash
}

/// Key of the domain table: the policy slot and a domain's hash.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct DomainKey {
    pub slot: u32,
    pub pad: u32,
    pub hash: u64,
}

/// What one step of the ClientHello walk concluded (`SniWork::status`).
pub mod status {
    /// The server name lies in a later segment: the flow stays pending.
    pub const NEED_MORE: u32 = 0;
    /// The server name was read; `service` is the matching service, 0 for none.
    pub const NAME: u32 = 1;
    /// The ClientHello ended without a server name (or with an encrypted one).
    pub const NO_NAME: u32 = 2;
    /// A ClientHello vigie cannot read (a field split across segments, lengths that do not
    /// add up): a blind spot, counted.
    pub const UNREADABLE: u32 = 3;
    /// The flow's first payload is not a TLS ClientHello: another protocol.
    pub const NOT_TLS: u32 = 4;
    /// The segment is not the stream's first (the flow was seen from its SYN, so where the
    /// stream starts is known): the walk waits for the one that is. A client that sent the
    /// rest of its hello first would otherwise end the walk as "not TLS", its name unread.
    pub const WAIT_START: u32 = 5;
}

/// The kernel's per-CPU working area for one segment: the payload copy, the suffix hashes of
/// the name, and the step's inputs and results.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SniWork {
    pub payload: [u8; PAYLOAD_BYTES],
    pub suffixes: [u64; MAX_SUFFIXES],
    /// Bytes of `payload` copied from the segment.
    pub len: u32,
    /// Bytes of payload the segment has: more than `len` when it is longer than the copy.
    pub segment_len: u32,
    pub pad: u32,
    /// Sequence number of the segment's first payload byte.
    pub segment_seq: u32,
    /// In and out: sequence number of the next extension header, and of the extensions' end.
    pub next_seq: u32,
    pub end_seq: u32,
    /// In: bit 0, the walk has read the ClientHello's fixed part; bit 1, the flow was seen
    /// from its SYN and `next_seq` is where the stream starts.
    pub started: u32,
    pub slot: u32,
    /// Out: `status::*`, and the matching service for `status::NAME`.
    pub status: u32,
    pub service: u32,
    /// Label starts seen so far in the name being matched (the suffix ring's count).
    pub kept: u32,
    /// Out: 1 if an Encrypted Client Hello extension came before the server name.
    pub ech: u32,
}
