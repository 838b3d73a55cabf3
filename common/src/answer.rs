//! The answer to a rejected packet: a TCP reset for TCP, an ICMP or ICMPv6 port unreachable for
//! UDP, so that the application fails at once instead of waiting for a timeout.
//!
//! The kernel copies the first bytes of the rejected frame into a buffer, this module writes
//! the answer frame into another, and the hook sends it back where the packet came from. Pure
//! functions on two fixed-size buffers, so the daemon's tests check them byte for byte and the
//! kernel runs the very same code. Every index is masked to the buffer, which proves to both
//! the compiler and the verifier that no access leaves it.
//!
//! What gets no answer (the packet is only dropped): protocols other than TCP and UDP, a TCP
//! segment that is itself a reset, IPv4 packets with options, IPv6 packets with extension
//! headers, fragments after the first, and frames whose headers do not fit in the buffer.

#![allow(
    clippy::inline_always,
    reason = "run by the kernel program: the verifier tracks buffer bounds within one function"
)]

/// Bytes of each buffer: the longest answer is 30 bytes of link layer (Ethernet, two VLAN tags,
/// PPPoE) plus an IPv6 header, an ICMPv6 header and the quoted IPv6 and UDP headers (126).
pub const FRAME_BYTES: usize = 128;
const MASK: usize = FRAME_BYTES - 1;

/// Link-layer bytes before the IP header that the answer can carry.
pub const MAX_LINK_BYTES: usize = 30;

/// Set by the TC programs on the answers they send, so that vigie's program in the other
/// direction lets its own answer through (and clears the mark); "vig" and 1.
pub const MARK: u32 = 0x7669_6701;

/// A frame buffer (a per-CPU map value in the kernel).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    pub bytes: [u8; FRAME_BYTES],
}

impl Default for Frame {
    fn default() -> Self {
        Self {
            bytes: [0; FRAME_BYTES],
        }
    }
}

/// Where the rejected frame's IP header starts, and whether a PPPoE session header precedes it
/// (its length field then changes with the answer's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub l3: usize,
    pub pppoe: bool,
}

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_ICMP: u8 = 1;
const PROTO_ICMPV6: u8 = 58;

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

/// Bytes of the rejected frame quoted in an ICMP error after its IP header: the UDP header,
/// which is what the sender's kernel needs to find the socket.
const QUOTED_TRANSPORT: usize = 8;

// These helpers are the module's only accesses to the buffers; the mask bounds each of them.
#[inline(always)]
const fn get(b: &[u8; FRAME_BYTES], i: usize) -> u8 {
    b[i & MASK]
}

#[inline(always)]
fn set(b: &mut [u8; FRAME_BYTES], i: usize, v: u8) {
    b[i & MASK] = v;
}

#[inline(always)]
const fn get16(b: &[u8; FRAME_BYTES], i: usize) -> u16 {
    ((get(b, i) as u16) << 8) | get(b, i + 1) as u16
}

#[inline(always)]
const fn get32(b: &[u8; FRAME_BYTES], i: usize) -> u32 {
    ((get16(b, i) as u32) << 16) | get16(b, i + 2) as u32
}

#[inline(always)]
fn set16(b: &mut [u8; FRAME_BYTES], i: usize, v: u16) {
    set(b, i, (v >> 8) as u8);
    set(b, i + 1, v as u8);
}

#[inline(always)]
fn set32(b: &mut [u8; FRAME_BYTES], i: usize, v: u32) {
    set16(b, i, (v >> 16) as u16);
    set16(b, i + 2, v as u16);
}

/// Copies `len` bytes (at most `max`, a constant that bounds the loop) from `from` to `to`.
#[inline(always)]
fn copy(
    out: &mut [u8; FRAME_BYTES],
    to: usize,
    original: &[u8; FRAME_BYTES],
    from: usize,
    len: usize,
    max: usize,
) {
    for i in 0..max {
        if i >= len {
            break;
        }
        set(out, to + i, get(original, from + i));
    }
}

/// The one's-complement sum of `len` bytes (even, at most `max`) starting at `start`.
#[inline(always)]
fn sum(b: &[u8; FRAME_BYTES], start: usize, len: usize, max: usize) -> u32 {
    let mut total = 0u32;
    for i in 0..max / 2 {
        if i * 2 >= len {
            break;
        }
        total += u32::from(get16(b, start + i * 2));
    }
    total
}

/// Folds a 32-bit one's-complement sum into the 16-bit checksum field value.
#[inline(always)]
const fn fold(mut total: u32) -> u16 {
    total = (total & 0xffff) + (total >> 16);
    total = (total & 0xffff) + (total >> 16);
    !(total as u16)
}

/// The sum of the pseudo-header that TCP, UDP and ICMPv6 checksums cover: the answer's
/// addresses (already written at `l3`), its protocol and its transport length.
#[inline(always)]
fn pseudo_sum(out: &[u8; FRAME_BYTES], l3: usize, v6: bool, proto: u8, len: usize) -> u32 {
    let addresses = if v6 {
        sum(out, l3 + 8, 32, 32)
    } else {
        sum(out, l3 + 12, 8, 8)
    };
    addresses + u32::from(proto) + len as u32
}

/// Writes into `out` the answer to the rejected frame whose first `copied` bytes are in
/// `original`; returns the answer's length, or None when the packet gets no answer.
#[inline(always)]
pub fn build(
    original: &[u8; FRAME_BYTES],
    copied: usize,
    layout: Layout,
    out: &mut [u8; FRAME_BYTES],
) -> Option<usize> {
    let l3 = layout.l3;
    if !(14..=MAX_LINK_BYTES).contains(&l3) || copied > FRAME_BYTES {
        return None;
    }
    let v6 = match get(original, l3) >> 4 {
        4 => false,
        6 => true,
        _ => return None,
    };
    let (ip_len, proto, ip_payload) = if v6 {
        (
            40,
            get(original, l3 + 6),
            usize::from(get16(original, l3 + 4)),
        )
    } else {
        // Options or a later fragment: no answer.
        if get(original, l3) & 0x0f != 5 || get16(original, l3 + 6) & 0x1fff != 0 {
            return None;
        }
        let total = usize::from(get16(original, l3 + 2));
        (20, get(original, l3 + 9), total.saturating_sub(20))
    };
    let l4 = l3 + ip_len;
    let (answer_proto, transport_len) = match proto {
        PROTO_TCP => (PROTO_TCP, 20),
        PROTO_UDP if v6 => (PROTO_ICMPV6, 8 + ip_len + QUOTED_TRANSPORT),
        PROTO_UDP => (PROTO_ICMP, 8 + ip_len + QUOTED_TRANSPORT),
        _ => return None,
    };
    // The rejected frame's headers must all be in the copy.
    let needed = l4
        + if proto == PROTO_TCP {
            20
        } else {
            QUOTED_TRANSPORT
        };
    if copied < needed {
        return None;
    }
    if proto == PROTO_TCP && get(original, l4 + 13) & TCP_RST != 0 {
        return None;
    }

    // Link layer: the same tags and session, the addresses swapped.
    copy(out, 0, original, 0, l3, MAX_LINK_BYTES);
    copy(out, 0, original, 6, 6, 6);
    copy(out, 6, original, 0, 6, 6);
    let answer_ip_total = ip_len + transport_len;
    if layout.pppoe {
        // PPPoE's length counts the PPP protocol field (2 bytes) and the IP packet.
        set16(out, l3 - 4, (answer_ip_total + 2) as u16);
    }

    // IP header, from the rejected packet's destination back to its source.
    if v6 {
        set32(out, l3, 0x6000_0000);
        set16(out, l3 + 4, transport_len as u16);
        set(out, l3 + 6, answer_proto);
        set(out, l3 + 7, 64);
        copy(out, l3 + 8, original, l3 + 24, 16, 16);
        copy(out, l3 + 24, original, l3 + 8, 16, 16);
    } else {
        set(out, l3, 0x45);
        set(out, l3 + 1, 0);
        set16(out, l3 + 2, answer_ip_total as u16);
        set32(out, l3 + 4, 0x0000_4000); // identification 0, don't fragment
        set(out, l3 + 8, 64);
        set(out, l3 + 9, answer_proto);
        set16(out, l3 + 10, 0);
        copy(out, l3 + 12, original, l3 + 16, 4, 4);
        copy(out, l3 + 16, original, l3 + 12, 4, 4);
        let checksum = fold(sum(out, l3, 20, 20));
        set16(out, l3 + 10, checksum);
    }

    if proto == PROTO_TCP {
        tcp_reset(original, l4, ip_payload, out, l4);
        let total = pseudo_sum(out, l3, v6, PROTO_TCP, 20) + sum(out, l4, 20, 20);
        set16(out, l4 + 16, fold(total));
    } else {
        // Destination unreachable, port unreachable (ICMP 3/3, ICMPv6 1/4), then the rejected
        // packet's IP header and UDP header.
        let (kind, code) = if v6 { (1, 4) } else { (3, 3) };
        set(out, l4, kind);
        set(out, l4 + 1, code);
        set16(out, l4 + 2, 0);
        set32(out, l4 + 4, 0);
        copy(
            out,
            l4 + 8,
            original,
            l3,
            ip_len + QUOTED_TRANSPORT,
            40 + QUOTED_TRANSPORT,
        );
        let mut total = sum(out, l4, transport_len, 8 + 40 + QUOTED_TRANSPORT);
        if v6 {
            total += pseudo_sum(out, l3, true, PROTO_ICMPV6, transport_len);
        }
        set16(out, l4 + 2, fold(total));
    }
    Some(l4 + transport_len)
}

/// Writes the reset for the TCP segment at `from` (checksum left zero). RFC 9293 3.10.7.1: a
/// segment that acknowledges gets a reset at the sequence it acknowledged; one that does not
/// (a SYN) gets a reset that acknowledges it, with sequence zero.
#[inline(always)]
fn tcp_reset(
    original: &[u8; FRAME_BYTES],
    from: usize,
    ip_payload: usize,
    out: &mut [u8; FRAME_BYTES],
    at: usize,
) {
    let flags = get(original, from + 13);
    let header = usize::from(get(original, from + 12) >> 4) * 4;
    let data = ip_payload.saturating_sub(header) as u32;
    set16(out, at, get16(original, from + 2));
    set16(out, at + 2, get16(original, from));
    if flags & TCP_ACK != 0 {
        set32(out, at + 4, get32(original, from + 8));
        set32(out, at + 8, 0);
        set(out, at + 13, TCP_RST);
    } else {
        let consumed = data + u32::from(flags & TCP_SYN != 0) + u32::from(flags & TCP_FIN != 0);
        set32(out, at + 4, 0);
        set32(
            out,
            at + 8,
            get32(original, from + 4).wrapping_add(consumed),
        );
        set(out, at + 13, TCP_RST | TCP_ACK);
    }
    set(out, at + 12, 5 << 4);
    set32(out, at + 14, 0); // window 0, checksum 0 (filled by the caller)
    set16(out, at + 18, 0);
}
