//! ICMP and ICMPv6 errors (unreachable, packet too big, time exceeded, parameter problem) are
//! about a flow: the packet they quote. They get that flow's verdict, not one of their own by
//! their outer addresses: those are often a router's, which no rule names, and under a policy
//! that blocks by default a "packet too big" for an allowed flow would be dropped, breaking
//! path MTU discovery. An error quoting a flow the table does not know is judged as any other
//! packet.

use vigie_common::{
    flow::{FlowEntry, FlowKey},
    sni::{PAYLOAD_BYTES, SniWork},
};

use crate::{
    headers::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP},
    maps::{DECIDING, FLOWS, SCRATCH, SNI_WORK},
    parse::is_extension,
    sni::byte,
};

/// The error's own header (8 bytes), then at least the quoted IPv4 header (20).
pub const MIN_ERROR_LEN: u32 = 8 + 20;

/// Whether an ICMP(v6) type is an error that quotes the packet it is about (the parser gives
/// only those a payload).
#[inline(always)]
pub const fn is_error(proto: u8, kind: u8) -> bool {
    if proto == IPPROTO_ICMP {
        // Destination unreachable (fragmentation needed among them), time exceeded,
        // parameter problem.
        matches!(kind, 3 | 11 | 12)
    } else {
        // Destination unreachable, packet too big, time exceeded, parameter problem.
        matches!(kind, 1..=4)
    }
}

/// The flow an ICMP error in this CPU's work area (copied from its ICMP header on) is about,
/// seen from the internal host. `message`: the error's protocol (bits 0-7), 1 in bit 8 when the
/// error travels towards the internal host (it quotes a packet the host sent; 0 when the host
/// sends it, quoting one it received), and the generation of the policy in force (bits 32-63).
/// `to_a`, `to_b`: the error's destination address (its two halves, as the flow key holds it).
///
/// Copies the flow's entry into `DECIDING` and returns `FOUND` if the flow table holds it,
/// decided under the policy in force, and the error goes where an error about it must go: to
/// the sender of the quoted packet, in the same IP version (the parser gives only error
/// messages a payload, so the message is one); `STALE` for such a flow decided under an
/// earlier policy (the caller decides it again). 0 otherwise: a quote that cannot be read, a
/// flow nobody opened (the error is then judged by its own addresses), or an "error" aimed
/// elsewhere than the quoted sender, which is no error but a way to carry data past the rules
/// on an allowed flow's name. The quoted flow's key is built in `SCRATCH` (the classifier
/// writes the packet's own key there afterwards).
///
/// A global BPF function: verified once, off the classifier's stack.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn vigie_icmp_error(message: u64, to_a: u64, to_b: u64) -> u64 {
    let (Some(work), Some(key)) = (SNI_WORK.get_ptr(0), SCRATCH.get_ptr_mut(0)) else {
        return 0;
    };
    // SAFETY: this CPU's work area and scratch key, valid for the program run.
    let (w, key) = unsafe { (&*work, &mut *key) };
    let len = (w.len as usize).min(PAYLOAD_BYTES);
    let proto = (message & 0xff) as u8;
    let reply = message & (1 << 8) != 0;
    if !quoted_flow(w, len, proto, reply, key) {
        return 0;
    }
    // The quoted packet's sender: the local side of a packet the host sent, the remote side
    // of one it received.
    let sender = if reply { &key.local } else { &key.remote };
    if half(sender, 0) != to_a || half(sender, 8) != to_b {
        return 0;
    }
    let (Some(entry), Some(out)) = (FLOWS.get_ptr(key), DECIDING.get_ptr_mut(0)) else {
        return 0;
    };
    // SAFETY: a value of the flow map and this CPU's entry, valid for this program run.
    unsafe {
        *out = *entry;
        if u64::from((*entry).generation) != message >> 32 {
            return STALE;
        }
    }
    FOUND
}

/// `vigie_icmp_error` found the quoted flow, decided under the policy in force.
pub const FOUND: u64 = 1;
/// `vigie_icmp_error` found the quoted flow, decided under an earlier policy.
pub const STALE: u64 = 2;

/// Eight bytes of an address, as `vigie_icmp_error`'s caller packs them.
#[inline(always)]
pub fn half(addr: &[u8; 16], from: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&addr[from..from + 8]);
    u64::from_ne_bytes(bytes)
}

/// Writes the key of the quoted packet's flow into `key`; false if it cannot be read. Only
/// what a flow key is made of is read: the quoted IP header, and the ports of TCP and UDP (the
/// first 4 bytes after it, which every error quotes). A quoted IPv6 packet with extension
/// headers, a quoted later fragment, or a quote of the other IP version, is not read.
#[inline(always)]
fn quoted_flow(w: &SniWork, len: usize, outer: u8, reply: bool, key: &mut FlowKey) -> bool {
    const IP: usize = 8;
    let version = byte(w, IP) >> 4;
    // ICMP quotes IPv4, ICMPv6 quotes IPv6.
    let (proto, header, src_at, dst_at, addr_len) = if version == 4 && outer == IPPROTO_ICMP {
        let header = usize::from(byte(w, IP) & 0x0f) * 4;
        // A later fragment has no ports to read: its flow is not the one of the first.
        let fragment_offset =
            (usize::from(byte(w, IP + 6) & 0x1f) << 8) | usize::from(byte(w, IP + 7));
        if header < 20 || fragment_offset != 0 {
            return false;
        }
        (byte(w, IP + 9), header, IP + 12, IP + 16, 4)
    } else if version == 6 && outer == IPPROTO_ICMPV6 {
        (byte(w, IP + 6), 40, IP + 8, IP + 24, 16)
    } else {
        return false;
    };
    let ports_at = IP + header;
    let (mut src_port, mut dst_port) = (0u16, 0u16);
    if proto == IPPROTO_TCP || proto == IPPROTO_UDP {
        if ports_at + 4 > len {
            return false;
        }
        src_port = u16::from_be_bytes([byte(w, ports_at), byte(w, ports_at + 1)]);
        dst_port = u16::from_be_bytes([byte(w, ports_at + 2), byte(w, ports_at + 3)]);
    } else if (addr_len == 16 && is_extension(proto)) || ports_at > len {
        // An IPv6 extension header first: where the protocol is, is not read here. Every other
        // protocol's flows are keyed without ports, as the parser keys them.
        return false;
    }
    // An error towards the internal host quotes what the host sent (local to remote); one the
    // host sends quotes what it received.
    let (local_at, remote_at) = if reply {
        (src_at, dst_at)
    } else {
        (dst_at, src_at)
    };
    for i in 0..16 {
        let inside = i < addr_len;
        key.local[i] = if inside { byte(w, local_at + i) } else { 0 };
        key.remote[i] = if inside { byte(w, remote_at + i) } else { 0 };
    }
    (key.local_port, key.remote_port) = if reply {
        (src_port, dst_port)
    } else {
        (dst_port, src_port)
    };
    key.proto = proto;
    key.family = if addr_len == 4 { 4 } else { 6 };
    key.pad = [0; 2];
    true
}

/// The entry `vigie_icmp_error` found, if it found one.
#[inline(always)]
pub fn found_entry() -> Option<FlowEntry> {
    // SAFETY: this CPU's entry, valid for the program run.
    DECIDING.get_ptr(0).map(|e| unsafe { *e })
}
