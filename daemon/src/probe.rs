//! The one packet `explain` hands to the kernel program: Ethernet, IPv4 or IPv6, then a UDP
//! datagram, a TCP SYN or an ICMP echo request, as the first packet of a connection looks.
//!
//! Lengths and checksums are filled in, so that the frame is what a host would really send;
//! the datapath does not check them, but a frame that passes for real keeps `explain` honest.

use std::net::IpAddr;

/// What the packet carries above IP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp {
        port: u16,
    },
    Tcp {
        port: u16,
    },
    /// An echo request (ICMP for IPv4, `ICMPv6` for IPv6): a packet judged by address alone.
    Echo,
}

impl Transport {
    /// The remote port, 0 for an echo.
    #[must_use]
    pub const fn port(self) -> u16 {
        match self {
            Self::Udp { port } | Self::Tcp { port } => port,
            Self::Echo => 0,
        }
    }
}

/// The source port of probe connections: an ephemeral one, as a client would pick.
pub const SOURCE_PORT: u16 = 49_152;

const ETH_P_IPV4: [u8; 2] = [0x08, 0x00];
const ETH_P_IPV6: [u8; 2] = [0x86, 0xdd];
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMPV6_ECHO_REQUEST: u8 = 128;

/// The sequence number of a probe SYN; the ClientHello segment follows it.
const PROBE_ISN: u32 = 1;

/// A frame from `src` to `dst`; `None` when the two addresses are not of one family.
#[must_use]
pub fn frame(src: IpAddr, dst: IpAddr, transport: Transport) -> Option<Vec<u8>> {
    let mut l4 = transport_header(transport);
    if transport == Transport::Echo {
        l4[0] = if src.is_ipv6() {
            ICMPV6_ECHO_REQUEST
        } else {
            ICMP_ECHO_REQUEST
        };
    }
    assemble(src, dst, transport, l4)
}

/// The TCP segment after the probe SYN that carries `payload` (a ClientHello), to `port`.
#[must_use]
pub fn segment(src: IpAddr, dst: IpAddr, port: u16, payload: &[u8]) -> Option<Vec<u8>> {
    let transport = Transport::Tcp { port };
    let mut l4 = transport_header(transport);
    l4[4..8].copy_from_slice(&(PROBE_ISN + 1).to_be_bytes());
    l4[13] = 0x18; // ACK, PSH
    l4.extend_from_slice(payload);
    assemble(src, dst, transport, l4)
}

/// The internal host `client`'s DNS question (`payload`) to a resolver at a documentation
/// address of its family (`192.0.2.53`, `2001:db8::53`): the kernel reads only the answers
/// to questions that crossed it.
#[must_use]
pub fn dns_query(client: IpAddr, payload: &[u8]) -> Option<Vec<u8>> {
    let resolver = resolver_of(client)?;
    dns_datagram(client, DNS_CLIENT_PORT, resolver, 53, payload)
}

/// The resolver's answer (`payload`, a DNS message) to `dns_query`.
#[must_use]
pub fn dns_answer(client: IpAddr, payload: &[u8]) -> Option<Vec<u8>> {
    let resolver = resolver_of(client)?;
    dns_datagram(resolver, 53, client, DNS_CLIENT_PORT, payload)
}

/// The client port of the DNS exchange `explain --dns-name` plays.
const DNS_CLIENT_PORT: u16 = SOURCE_PORT.wrapping_add(1);

fn resolver_of(client: IpAddr) -> Option<IpAddr> {
    match client {
        IpAddr::V4(_) => Some(IpAddr::from([192, 0, 2, 53])),
        IpAddr::V6(_) => "2001:db8::53".parse().ok(),
    }
}

fn dns_datagram(
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    payload: &[u8],
) -> Option<Vec<u8>> {
    let mut l4 = Vec::with_capacity(8 + payload.len());
    l4.extend_from_slice(&sport.to_be_bytes());
    l4.extend_from_slice(&dport.to_be_bytes());
    l4.extend_from_slice(&u16::try_from(8 + payload.len()).ok()?.to_be_bytes());
    l4.extend_from_slice(&[0, 0]);
    l4.extend_from_slice(payload);
    assemble(src, dst, Transport::Udp { port: dport }, l4)
}

/// The frame around a transport header and payload: checksum, IP header, Ethernet.
fn assemble(src: IpAddr, dst: IpAddr, transport: Transport, mut l4: Vec<u8>) -> Option<Vec<u8>> {
    let v6 = match (src, dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) => false,
        (IpAddr::V6(_), IpAddr::V6(_)) => true,
        _ => return None,
    };
    let proto = match transport {
        Transport::Udp { .. } => IPPROTO_UDP,
        Transport::Tcp { .. } => IPPROTO_TCP,
        Transport::Echo if v6 => IPPROTO_ICMPV6,
        Transport::Echo => IPPROTO_ICMP,
    };
    let (src_bytes, dst_bytes) = (octets(src), octets(dst));
    let pseudo = pseudo_header(&src_bytes, &dst_bytes, proto, l4.len(), v6);
    // ICMP for IPv4 has no pseudo-header; UDP, TCP and ICMPv6 do.
    let sum = if proto == IPPROTO_ICMP {
        checksum(&[&l4])
    } else {
        checksum(&[&pseudo, &l4])
    };
    let at = checksum_offset(transport);
    l4[at..at + 2].copy_from_slice(&sum.to_be_bytes());

    // Locally administered MAC addresses: the probe never leaves the process.
    let mut out = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01];
    if v6 {
        out.extend_from_slice(&ETH_P_IPV6);
        out.extend_from_slice(&[0x60, 0, 0, 0]);
        out.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        out.extend_from_slice(&[proto, 64]);
        out.extend_from_slice(&src_bytes);
        out.extend_from_slice(&dst_bytes);
    } else {
        out.extend_from_slice(&ETH_P_IPV4);
        let start = out.len();
        out.extend_from_slice(&[0x45, 0]);
        out.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        // Identification, don't-fragment, TTL, protocol, checksum (filled below).
        out.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
        out.extend_from_slice(&src_bytes[12..]);
        out.extend_from_slice(&dst_bytes[12..]);
        let sum = checksum(&[&out[start..]]);
        out[start + 10..start + 12].copy_from_slice(&sum.to_be_bytes());
    }
    out.extend_from_slice(&l4);
    Some(out)
}

/// The address as 16 bytes (IPv4 in the last four, as `pseudo_header` and the IPv4 header
/// read it).
fn octets(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

fn transport_header(transport: Transport) -> Vec<u8> {
    let sport = SOURCE_PORT.to_be_bytes();
    match transport {
        Transport::Udp { port } => {
            let mut h = Vec::with_capacity(8);
            h.extend_from_slice(&sport);
            h.extend_from_slice(&port.to_be_bytes());
            h.extend_from_slice(&8u16.to_be_bytes());
            h.extend_from_slice(&[0, 0]);
            h
        }
        Transport::Tcp { port } => {
            let mut h = Vec::with_capacity(20);
            h.extend_from_slice(&sport);
            h.extend_from_slice(&port.to_be_bytes());
            // Sequence PROBE_ISN, no acknowledgement, header of five words, SYN, window 64240.
            h.extend_from_slice(&PROBE_ISN.to_be_bytes());
            h.extend_from_slice(&[0, 0, 0, 0, 0x50, 0x02, 0xfa, 0xf0]);
            h.extend_from_slice(&[0, 0, 0, 0]);
            h
        }
        // Both echo requests share the layout: type (set by the family), code, checksum,
        // identifier, sequence.
        Transport::Echo => vec![0, 0, 0, 0, 0x76, 0x67, 0, 1],
    }
}

const fn checksum_offset(transport: Transport) -> usize {
    match transport {
        Transport::Udp { .. } => 6,
        Transport::Tcp { .. } => 16,
        Transport::Echo => 2,
    }
}

fn pseudo_header(src: &[u8; 16], dst: &[u8; 16], proto: u8, len: usize, v6: bool) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    if v6 {
        p.extend_from_slice(src);
        p.extend_from_slice(dst);
        p.extend_from_slice(&(len as u32).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, proto]);
    } else {
        p.extend_from_slice(&src[12..]);
        p.extend_from_slice(&dst[12..]);
        p.extend_from_slice(&[0, proto]);
        p.extend_from_slice(&(len as u16).to_be_bytes());
    }
    p
}

/// The Internet checksum (RFC 1071) over the concatenation of `parts`.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    let mut odd: Option<u8> = None;
    for &byte in parts.iter().flat_map(|p| p.iter()) {
        match odd.take() {
            Some(high) => sum += u32::from(u16::from_be_bytes([high, byte])),
            None => odd = Some(byte),
        }
    }
    if let Some(high) = odd {
        sum += u32::from(u16::from_be_bytes([high, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifies(parts: &[&[u8]]) -> bool {
        checksum(parts) == 0
    }

    #[test]
    fn udp_over_ipv4_has_valid_checksums() {
        let f = frame(
            "10.0.0.1".parse().unwrap(),
            "3.7.35.1".parse().unwrap(),
            Transport::Udp { port: 8801 },
        )
        .unwrap();
        assert_eq!(f.len(), 14 + 20 + 8);
        assert!(verifies(&[&f[14..34]]), "IPv4 header checksum");
        let pseudo = pseudo_header(
            &octets("10.0.0.1".parse().unwrap()),
            &octets("3.7.35.1".parse().unwrap()),
            IPPROTO_UDP,
            8,
            false,
        );
        assert!(verifies(&[&pseudo, &f[34..]]), "UDP checksum");
        assert_eq!(&f[36..38], &8801u16.to_be_bytes());
    }

    #[test]
    fn tcp_syn_over_ipv6_has_a_valid_checksum() {
        let (src, dst): (IpAddr, IpAddr) =
            ("fd00::1".parse().unwrap(), "2407:30c0::1".parse().unwrap());
        let f = frame(src, dst, Transport::Tcp { port: 443 }).unwrap();
        assert_eq!(f.len(), 14 + 40 + 20);
        assert_eq!(f[14 + 6], IPPROTO_TCP);
        let pseudo = pseudo_header(&octets(src), &octets(dst), IPPROTO_TCP, 20, true);
        assert!(verifies(&[&pseudo, &f[54..]]));
        assert_eq!(f[54 + 13], 0x02, "SYN");
    }

    #[test]
    fn echo_uses_the_family_protocol() {
        let v4 = frame(
            "10.0.0.1".parse().unwrap(),
            "192.0.2.1".parse().unwrap(),
            Transport::Echo,
        )
        .unwrap();
        assert_eq!(v4[14 + 9], IPPROTO_ICMP);
        assert_eq!(v4[34], ICMP_ECHO_REQUEST);
        assert!(verifies(&[&v4[34..]]), "ICMP checksum");
        let v6 = frame(
            "fd00::1".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
            Transport::Echo,
        )
        .unwrap();
        assert_eq!(v6[14 + 6], IPPROTO_ICMPV6);
        assert_eq!(v6[54], ICMPV6_ECHO_REQUEST);
    }

    #[test]
    fn mixed_families_are_refused() {
        assert!(
            frame(
                "10.0.0.1".parse().unwrap(),
                "2001:db8::1".parse().unwrap(),
                Transport::Echo
            )
            .is_none()
        );
    }
}
