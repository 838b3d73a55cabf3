//! Payloads the kernel hands to the daemon: DNS responses (to learn the addresses of catalog
//! names) and the client's first QUIC datagrams (whose ClientHello only userspace can decrypt).
//! They travel in their own ring buffer, apart from flow events, so that a burst of DNS never
//! costs an event and the reader of each keeps its own pace.

use crate::flow::FlowKey;

/// Bytes of a payload copied (QUIC client Initials are 1,200 to about 1,500 bytes; DNS
/// responses over UDP are usually under 1,232, the EDNS size resolvers advertise). What lies
/// beyond is not copied: `PayloadRecord::wire_len` says how much there was.
pub const CAPTURE_BYTES: usize = 1536;

/// `PayloadRecord::kind`.
pub mod kind {
    /// A DNS message from a server (UDP, or one TCP segment with its length prefixes).
    pub const DNS_UDP: u32 = 1;
    pub const DNS_TCP: u32 = 2;
    /// A datagram from the client of a QUIC connection whose server name is not read yet.
    pub const QUIC_CLIENT: u32 = 3;
}

/// One record of the payload ring.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PayloadRecord {
    /// The flow, local side first (as in the flow table).
    pub key: FlowKey,
    /// `bpf_ktime_get_ns` when the packet crossed the hook (monotonic, since boot).
    pub timestamp_ns: u64,
    pub kind: u32,
    /// Bytes of `bytes` that hold the payload.
    pub len: u32,
    /// The payload's length on the wire.
    pub wire_len: u32,
    pub pad: u32,
    pub bytes: [u8; CAPTURE_BYTES],
}

/// The port DNS servers answer from (responses are read in the reply direction only).
pub const DNS_PORT: u16 = 53;
