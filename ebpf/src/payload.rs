//! Payloads handed to the daemon through their own ring (see `vigie_common::payload`): DNS
//! responses, which it learns endpoints from, and QUIC client datagrams, whose server name it
//! decrypts. A full ring never holds a packet back: the payload is counted lost.
//!
//! The hand-over is a global BPF function per kind of context (the context is its only
//! pointer argument, which the kernel allows): verified once, its stack apart from the
//! classifier's, instead of once per path of the classifier that hands a payload over.

use core::{ptr::NonNull, ptr::read_volatile};

use aya_ebpf::{
    bindings::{__sk_buff, xdp_md},
    helpers::bpf_ktime_get_ns,
    programs::{TcContext, XdpContext},
};
use vigie_common::{
    counters::stat,
    payload::{CAPTURE_BYTES, PayloadRecord, kind},
    quic,
};

use crate::{
    maps::{PAYLOADS, SCRATCH, STATS, bump},
    parse::Packet,
    sni::LoadBytes,
};

/// What handing a datagram over came to (the global functions' results).
pub mod handed {
    /// Handed over: the daemon will read it.
    pub const HANDED: u32 = 0;
    /// Not a QUIC client Initial (only asked of a flow's first datagram).
    pub const NOT_QUIC: u32 = 1;
    /// A QUIC Initial of a version the daemon cannot decrypt.
    pub const UNKNOWN_VERSION: u32 = 2;
    /// The ring was full, or the packet shorter than it said.
    pub const LOST: u32 = 3;
    /// A long-header packet of a readable version that is no Initial (0-RTT, say).
    pub const NOT_INITIAL: u32 = 4;
}

/// Set in the kind given to the hand-over: handed over only if the datagram is a QUIC client
/// Initial of a version the daemon reads.
const FIRST_DATAGRAM: u32 = 1 << 8;

/// Hands a DNS message from a server (UDP datagram or TCP segment) to the daemon.
#[inline(always)]
pub fn dns(ctx: &impl LoadBytes, packet: &Packet, tcp: bool) {
    let what = if tcp { kind::DNS_TCP } else { kind::DNS_UDP };
    match ctx.hand_over(packet.payload_offset, packet.payload_len, what) {
        handed::HANDED => bump(&STATS, stat::DNS_RESPONSES),
        _ => bump(&STATS, stat::PAYLOADS_LOST),
    }
}

/// Hands a client datagram of a flow whose QUIC server name is not known yet to the daemon, if
/// it is a client Initial of a readable version.
#[inline(always)]
pub fn quic(ctx: &impl LoadBytes, packet: &Packet) -> u32 {
    let what = kind::QUIC_CLIENT | FIRST_DATAGRAM;
    let result = ctx.hand_over(packet.payload_offset, packet.payload_len, what);
    match result {
        handed::HANDED => bump(&STATS, stat::QUIC_INITIALS),
        handed::UNKNOWN_VERSION => bump(&STATS, stat::QUIC_UNKNOWN_VERSION),
        handed::LOST => bump(&STATS, stat::PAYLOADS_LOST),
        _ => {}
    }
    result
}

/// `hand_over` for XDP (see the module's comment).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn vigie_xdp_hand_over(ctx: *mut xdp_md, offset: u64, len: u64, what: u64) -> u64 {
    u64::from(hand_over(
        &XdpContext::new(ctx),
        offset as u32,
        len as u32,
        what as u32,
    ))
}

/// `hand_over` for TC.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn vigie_tc_hand_over(skb: *mut __sk_buff, offset: u64, len: u64, what: u64) -> u64 {
    let Some(skb) = NonNull::new(skb) else {
        return u64::from(handed::LOST);
    };
    u64::from(hand_over(
        &TcContext::new(skb),
        offset as u32,
        len as u32,
        what as u32,
    ))
}

/// Copies `len` payload bytes at `offset` into a ring record for the flow in `SCRATCH`, and
/// submits it; with `FIRST_DATAGRAM`, only if it is a QUIC client Initial of a version the
/// daemon reads.
#[inline(always)]
fn hand_over(ctx: &impl LoadBytes, offset: u32, len: u32, what: u32) -> u32 {
    let Some(key) = SCRATCH.get_ptr(0) else {
        return handed::LOST;
    };
    let Some(mut record) = PAYLOADS.reserve::<PayloadRecord>(0) else {
        return handed::LOST;
    };
    let r = record.as_mut_ptr();
    // SAFETY: `r` points at the reserved record, ours until submitted or discarded. The length
    // goes through the record and is read back so that the helper's size argument is checked
    // on the register it gets (see `sni::copy_payload`).
    let copied = unsafe {
        (*r).len = len.min(CAPTURE_BYTES as u32);
        let len = read_volatile(&raw const (*r).len);
        if len == 0 || len > CAPTURE_BYTES as u32 {
            false
        } else {
            ctx.load(offset, (*r).bytes.as_mut_ptr(), len)
        }
    };
    if !copied {
        record.discard(0);
        return handed::LOST;
    }
    if what & FIRST_DATAGRAM != 0 {
        // SAFETY: as above.
        let (first, version) = unsafe {
            let b = &(*r).bytes;
            (b[0], u32::from_be_bytes([b[1], b[2], b[3], b[4]]))
        };
        let verdict = match quic::packet_kind(first, version) {
            quic::packet::INITIAL => handed::HANDED,
            quic::packet::NOT_INITIAL => handed::NOT_INITIAL,
            quic::packet::UNKNOWN_VERSION => handed::UNKNOWN_VERSION,
            _ => handed::NOT_QUIC,
        };
        if verdict != handed::HANDED {
            record.discard(0);
            return verdict;
        }
    }
    // SAFETY: as above; `key` is this CPU's scratch entry.
    unsafe {
        (*r).key = *key;
        (*r).timestamp_ns = bpf_ktime_get_ns();
        (*r).kind = what & 0xff;
        (*r).wire_len = len;
        (*r).pad = 0;
    }
    record.submit(0);
    handed::HANDED
}

/// Now, in the units of a QUIC flow's deadline (`vigie_common::quic::UNIT_SHIFT`).
#[inline(always)]
pub fn now_units() -> u32 {
    // SAFETY: a helper call without preconditions.
    (unsafe { bpf_ktime_get_ns() } >> quic::UNIT_SHIFT) as u32
}
