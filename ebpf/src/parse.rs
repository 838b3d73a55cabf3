//! From an Ethernet frame to the addresses, protocol and ports that classification needs.
//!
//! Fragments: an IPv4 or IPv6 fragment whose offset is not zero carries no transport header;
//! it is classified by its addresses alone, with ports zero, so rules with port conditions do
//! not match it. A first fragment is parsed normally: when it is blocked, the datagram cannot be
//! reassembled, so the later fragments are lost with it whatever they get.

use vigie_common::{answer::Layout, counters::parse_failure as reason, limits};

use crate::{
    cursor::Cursor,
    headers::{
        ETH_P_8021AD, ETH_P_8021Q, ETH_P_IPV4, ETH_P_IPV6, ETH_P_PPPOE_SESSION, Ethernet,
        ExtensionStart, Fragment6, IPPROTO_AH, IPPROTO_DSTOPTS, IPPROTO_FRAGMENT, IPPROTO_HOPOPTS,
        IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_ROUTING, IPPROTO_TCP, IPPROTO_UDP, Ipv4, Ipv6,
        PPP_IPV4, PPP_IPV6, Ports, PppoeSession, TcpRest, UdpRest, VlanTag, be16,
    },
};

/// What the classifier needs of an IP packet. Laid out and aligned so that the addresses are
/// whole words: the compiler then copies and clears them with word moves instead of calling a
/// byte-by-byte `memset`/`memmove` (a BPF function call each).
#[repr(C, align(8))]
pub struct Packet {
    /// IPv4 addresses in the first 4 bytes.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
    /// 4 or 6.
    pub family: u8,
    /// A fragment after the first: no ports.
    pub later_fragment: bool,
    /// TCP: a SYN without ACK, a client opening the connection.
    pub syn: bool,
    /// Where the IP header starts, and whether a PPPoE session carries it: what an answer to
    /// the packet needs (see `vigie_common::answer`).
    pub layout: Layout,
    /// TCP: the sequence number. TCP and UDP: where the payload lies (offset from the frame's
    /// start, length by the IP header's lengths, cut to the frame). Zero for other protocols.
    pub seq: u32,
    pub payload_offset: u32,
    pub payload_len: u32,
    /// Where the IP packet ends by its own length field (offset from the frame's start).
    ip_end: u32,
}

impl Packet {
    /// Extends the payload to the whole packet, `frame_len` bytes from the frame's start: on
    /// TC the parser reads the linear part of the skb (the headers), and the payload may go on
    /// in paged data, which the payload readers' helpers (`bpf_skb_load_bytes`) read too.
    #[inline(always)]
    pub fn reach(&mut self, frame_len: u32) {
        if self.payload_offset != 0 {
            self.payload_len = self
                .ip_end
                .min(frame_len)
                .saturating_sub(self.payload_offset);
        }
    }
}

pub enum Parsed {
    Ip(Packet),
    /// ARP, LLDP, a PPP control frame...: not ours to judge.
    NotIp,
}

const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

/// Parses a frame, or returns the `parse_failure` reason it could not be read.
#[inline(always)]
pub fn frame(data: usize, end: usize) -> Result<Parsed, u32> {
    let mut cursor = Cursor::new(data, end);
    let eth: Ethernet = cursor.read().ok_or(reason::TRUNCATED_ETHERNET)?;
    let mut ether_type = be16(eth.ether_type);
    for _ in 0..limits::MAX_VLAN_TAGS {
        if !is_vlan(ether_type) {
            break;
        }
        let tag: VlanTag = cursor.read().ok_or(reason::TRUNCATED_VLAN)?;
        ether_type = be16(tag.ether_type);
    }
    if is_vlan(ether_type) {
        return Err(reason::TOO_MANY_VLAN_TAGS);
    }
    let pppoe = ether_type == ETH_P_PPPOE_SESSION;
    if pppoe {
        let session: PppoeSession = cursor.read().ok_or(reason::TRUNCATED_PPPOE)?;
        ether_type = match be16(session.ppp_protocol) {
            PPP_IPV4 => ETH_P_IPV4,
            PPP_IPV6 => ETH_P_IPV6,
            _ => return Ok(Parsed::NotIp),
        };
    }
    let layout = Layout {
        l3: cursor.position() - data,
        pppoe,
    };
    match ether_type {
        ETH_P_IPV4 => ipv4(&mut cursor, data, layout).map(Parsed::Ip),
        ETH_P_IPV6 => ipv6(&mut cursor, data, layout).map(Parsed::Ip),
        _ => Ok(Parsed::NotIp),
    }
}

#[inline(always)]
const fn is_vlan(ether_type: u16) -> bool {
    ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD
}

#[inline(always)]
fn ipv4(cursor: &mut Cursor, data: usize, layout: Layout) -> Result<Packet, u32> {
    let ip: Ipv4 = cursor.read().ok_or(reason::TRUNCATED_IPV4)?;
    let header_words = ip.version_ihl & 0x0f;
    if ip.version_ihl >> 4 != 4 || header_words < 5 {
        return Err(reason::BAD_IPV4_HEADER);
    }
    // Options: at most 40 bytes; the mask keeps the bound visible to the verifier.
    let options = ((usize::from(header_words) - 5) * 4) & 0x3f;
    cursor.skip(options).ok_or(reason::TRUNCATED_IPV4)?;
    let mut packet = Packet {
        src: [0; 16],
        dst: [0; 16],
        src_port: 0,
        dst_port: 0,
        proto: ip.protocol,
        family: 4,
        later_fragment: be16(ip.flags_fragment) & 0x1fff != 0,
        syn: false,
        layout,
        seq: 0,
        payload_offset: 0,
        payload_len: 0,
        ip_end: layout.l3 as u32 + u32::from(be16(ip.total_len)),
    };
    packet.src[..4].copy_from_slice(&ip.src);
    packet.dst[..4].copy_from_slice(&ip.dst);
    if !packet.later_fragment {
        transport(cursor, data, &mut packet)?;
    }
    Ok(packet)
}

#[inline(always)]
fn ipv6(cursor: &mut Cursor, data: usize, layout: Layout) -> Result<Packet, u32> {
    let ip: Ipv6 = cursor.read().ok_or(reason::TRUNCATED_IPV6)?;
    let mut packet = Packet {
        src: ip.src,
        dst: ip.dst,
        src_port: 0,
        dst_port: 0,
        proto: ip.next_header,
        family: 6,
        later_fragment: false,
        syn: false,
        layout,
        seq: 0,
        payload_offset: 0,
        payload_len: 0,
        ip_end: layout.l3 as u32 + 40 + u32::from(be16(ip.payload_len)),
    };
    let mut next = ip.next_header;
    // The walk stops at a fragment header that is not the first fragment: what follows it is
    // data of the middle of the packet, not headers, whatever the next-header value says.
    for _ in 0..limits::MAX_IPV6_EXT_HEADERS {
        if !is_extension(next) || packet.later_fragment {
            break;
        }
        next = extension(cursor, next, &mut packet)?;
    }
    if is_extension(next) && !packet.later_fragment {
        return Err(reason::TOO_MANY_IPV6_EXT_HEADERS);
    }
    packet.proto = next;
    if !packet.later_fragment {
        transport(cursor, data, &mut packet)?;
    }
    Ok(packet)
}

#[inline(always)]
pub const fn is_extension(next: u8) -> bool {
    matches!(
        next,
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_FRAGMENT | IPPROTO_AH | IPPROTO_DSTOPTS
    )
}

/// Moves past one extension header and returns the next header's protocol.
#[inline(always)]
fn extension(cursor: &mut Cursor, kind: u8, packet: &mut Packet) -> Result<u8, u32> {
    if kind == IPPROTO_FRAGMENT {
        let fragment: Fragment6 = cursor.read().ok_or(reason::TRUNCATED_IPV6_EXT_HEADER)?;
        if be16(fragment.offset_flags) >> 3 != 0 {
            packet.later_fragment = true;
        }
        return Ok(fragment.next_header);
    }
    let start: ExtensionStart = cursor.read().ok_or(reason::TRUNCATED_IPV6_EXT_HEADER)?;
    // Length in 8-byte units not counting the first 8 (AH: 4-byte units not counting the
    // first 8); both fit in 11 bits, the mask shows the verifier.
    let total = if kind == IPPROTO_AH {
        (usize::from(start.length) + 2) * 4
    } else {
        (usize::from(start.length) + 1) * 8
    };
    cursor
        .skip((total - 2) & 0x7ff)
        .ok_or(reason::TRUNCATED_IPV6_EXT_HEADER)?;
    Ok(start.next_header)
}

/// The payload starts at `offset`; its length is what the IP length leaves after it, and no
/// more than the frame (ending at `frame_end`) holds.
#[inline(always)]
fn set_payload(packet: &mut Packet, offset: u32, frame_end: u32) {
    packet.payload_offset = offset;
    packet.payload_len = packet.ip_end.min(frame_end).saturating_sub(offset);
}

#[inline(always)]
fn transport(cursor: &mut Cursor, data: usize, packet: &mut Packet) -> Result<(), u32> {
    match packet.proto {
        IPPROTO_TCP => {
            let start = (cursor.position() - data) as u32;
            let ports: Ports = cursor.read().ok_or(reason::TRUNCATED_TRANSPORT)?;
            let rest: TcpRest = cursor.read().ok_or(reason::TRUNCATED_TRANSPORT)?;
            packet.src_port = be16(ports.src);
            packet.dst_port = be16(ports.dst);
            packet.seq = u32::from_be_bytes(rest.seq);
            packet.syn = rest.offset_flags[1] & (TCP_SYN | TCP_ACK) == TCP_SYN;
            // Data offset in 32-bit words, at least 5: below that the "payload" would start
            // inside the header (and a segment the receiver discards could make the
            // ClientHello reader give up on the flow before the real hello).
            let header = u32::from(rest.offset_flags[0] >> 4) * 4;
            if header < 20 {
                return Err(reason::BAD_TCP_HEADER);
            }
            set_payload(packet, start + header, (cursor.end() - data) as u32);
        }
        IPPROTO_UDP => {
            let start = (cursor.position() - data) as u32;
            let ports: Ports = cursor.read().ok_or(reason::TRUNCATED_TRANSPORT)?;
            let _: UdpRest = cursor.read().ok_or(reason::TRUNCATED_TRANSPORT)?;
            packet.src_port = be16(ports.src);
            packet.dst_port = be16(ports.dst);
            set_payload(packet, start + 8, (cursor.end() - data) as u32);
        }
        // An ICMP error quotes the packet it is about (see `icmp`): its message is the payload.
        // Other ICMP messages (an echo) and other protocols are classified by address only,
        // and have none: the classifier copies no payload for them.
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            let start = (cursor.position() - data) as u32;
            if let Some(kind) = cursor.read::<u8>()
                && crate::icmp::is_error(packet.proto, kind)
            {
                set_payload(packet, start, (cursor.end() - data) as u32);
            }
        }
        _ => {}
    }
    Ok(())
}
