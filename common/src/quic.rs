//! QUIC, as far as the kernel reads it: it recognises a client's Initial by its long header
//! and version, hands the datagrams to the daemon (which decrypts the ClientHello, RFC 9001),
//! and holds the server's answers back until the daemon has told the flow's service, so that
//! a blocked connection never completes its handshake.

/// Versions whose Initial packets the daemon can decrypt: 1 (RFC 9000), 2 (RFC 9369) and
/// draft-29 (still sent by older clients).
pub const VERSION_1: u32 = 1;
pub const VERSION_2: u32 = 0x6b33_43cf;
pub const DRAFT_29: u32 = 0xff00_001d;

/// A client's first datagram is padded to at least this size (RFC 9000, section 14.1):
/// smaller UDP datagrams are not looked at.
pub const MIN_CLIENT_DATAGRAM: u32 = 1200;
/// Client datagrams of a flow handed to the daemon before vigie stops waiting for its name.
pub const CLIENT_DATAGRAMS: u32 = 8;
/// How long the server's datagrams are held back, waiting for the daemon's reading, before
/// the flow goes on as its address decided (the daemon may be stopped: enforcement stays,
/// and QUIC must not break). In units of 2^16 ns (about 65.5 us): 3,815 units are 250 ms.
pub const HOLD_UNITS: u32 = 3815;
/// Bits `bpf_ktime_get_ns` is shifted by to give the units above.
pub const UNIT_SHIFT: u32 = 16;

/// What the first bytes of a UDP payload are (`packet_kind`).
pub mod packet {
    /// Not a QUIC long header (a short header, version negotiation, another protocol).
    pub const OTHER: u32 = 0;
    /// A client Initial of a version the daemon reads.
    pub const INITIAL: u32 = 1;
    /// Another long-header packet of such a version (0-RTT, Handshake, Retry).
    pub const NOT_INITIAL: u32 = 2;
    /// A long header of a version the daemon cannot read.
    pub const UNKNOWN_VERSION: u32 = 3;
}

/// The kind of QUIC packet the first byte and the version field of a UDP payload announce
/// (`packet::*`).
#[inline(always)]
#[must_use]
#[allow(
    clippy::inline_always,
    reason = "run by the kernel program: kept in the caller's function"
)]
pub const fn packet_kind(first: u8, version: u32) -> u32 {
    // Long header (bit 7) with the fixed bit (bit 6).
    if first & 0xc0 != 0xc0 {
        return packet::OTHER;
    }
    let packet_type = (first >> 4) & 0x3;
    // Version 2 numbers the long-header types differently: Initial is 1.
    let initial = match version {
        VERSION_2 => 1,
        VERSION_1 | DRAFT_29 => 0,
        // Version negotiation is version 0: no Initial.
        0 => return packet::OTHER,
        _ => return packet::UNKNOWN_VERSION,
    };
    if packet_type == initial {
        packet::INITIAL
    } else {
        packet::NOT_INITIAL
    }
}
