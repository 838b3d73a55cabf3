//! Crafted frames for the datapath tests: Ethernet, VLAN tags (802.1Q, 802.1ad), `PPPoE`
//! sessions, IPv4 (options, fragments) and IPv6 (extension headers), then TCP, UDP or ICMP echo.
//!
//! Every length field and checksum is computed, so a frame is what a real host would send; the
//! tests then break it on purpose (`truncate`, `patch`, `garbage`) where they want a bad one.
//!
//! ```
//! use vigie_lab::packet::{Ext, Frame};
//! let frame = Frame::udp4([10, 0, 0, 1], 5000, [3, 7, 35, 1], 8801).qinq(200, 100).pppoe().build();
//! assert_eq!(frame.len(), 14 + 8 + 8 + 20 + 8);
//! let frame = Frame::tcp6("fd00::1".parse::<std::net::Ipv6Addr>().unwrap(), 40000,
//!                         "2407:30c0::1".parse::<std::net::Ipv6Addr>().unwrap(), 443)
//!     .ext_headers(&[Ext::HopByHop, Ext::DestOpts])
//!     .build();
//! assert_eq!(frame.len(), 14 + 40 + 8 + 8 + 20);
//! ```

use std::net::{Ipv4Addr, Ipv6Addr};

pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
pub const ETH_P_PPPOE_SESSION: u16 = 0x8864;
pub const PPP_IPV4: u16 = 0x0021;
pub const PPP_IPV6: u16 = 0x0057;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;

/// TCP flag bits.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

pub const ETHERNET_LEN: usize = 14;
pub const VLAN_TAG_LEN: usize = 4;
/// The `PPPoE` session header and the PPP protocol field.
pub const PPPOE_LEN: usize = 8;
pub const IPV4_LEN: usize = 20;
pub const IPV6_LEN: usize = 40;
pub const TCP_LEN: usize = 20;
pub const UDP_LEN: usize = 8;
pub const ICMP_ECHO_LEN: usize = 8;
/// The largest IPv4 options field (IHL 15).
pub const MAX_IPV4_OPTIONS: usize = 40;

/// An IPv6 extension header, as the builder writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ext {
    /// Hop-by-hop options (0): 8 bytes, one `PadN` option.
    HopByHop,
    /// Routing (43), type 2 with one address: 24 bytes (length field 2).
    Routing,
    /// Destination options (60): 8 bytes, one `PadN` option.
    DestOpts,
    /// Destination options padded to `8 * (1 + units)` bytes (length field `units`).
    DestOptsLong(u8),
    /// Fragment (44): offset in 8-byte units, M flag.
    Fragment { offset: u16, more: bool },
    /// Authentication header (51): 24 bytes (length field 4, in 4-byte units).
    Auth,
}

impl Ext {
    /// The header's protocol number, as the previous header's next-header field names it.
    #[must_use]
    pub const fn protocol(self) -> u8 {
        match self {
            Self::HopByHop => 0,
            Self::Routing => 43,
            Self::DestOpts | Self::DestOptsLong(_) => 60,
            Self::Fragment { .. } => 44,
            Self::Auth => 51,
        }
    }

    /// Bytes the header occupies.
    #[must_use]
    pub const fn size(self) -> usize {
        match self {
            Self::HopByHop | Self::DestOpts | Self::Fragment { .. } => 8,
            Self::DestOptsLong(units) => 8 * (1 + units as usize),
            Self::Routing | Self::Auth => 24,
        }
    }

    /// Whether this header says the packet is a fragment after the first.
    const fn later_fragment(self) -> bool {
        matches!(self, Self::Fragment { offset, .. } if offset != 0)
    }

    fn write(self, next: u8, out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + self.size(), 0);
        let h = &mut out[start..];
        h[0] = next;
        match self {
            Self::HopByHop | Self::DestOpts | Self::DestOptsLong(_) => {
                h[1] = (self.size() / 8 - 1) as u8;
                // One PadN option fills the rest (its length excludes its own two bytes).
                h[2] = 1;
                h[3] = (self.size() - 4) as u8;
            }
            Self::Routing => {
                h[1] = 2;
                h[2] = 2; // routing type 2 (one home address)
                h[3] = 1; // segments left
                h[8..24]
                    .copy_from_slice(&Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x99).octets());
            }
            Self::Fragment { offset, more } => {
                let field = (offset << 3) | u16::from(more);
                h[2..4].copy_from_slice(&field.to_be_bytes());
                h[4..8].copy_from_slice(&0x0bad_cafe_u32.to_be_bytes());
            }
            Self::Auth => {
                h[1] = (self.size() / 4 - 2) as u8;
                h[4..8].copy_from_slice(&0x100_u32.to_be_bytes()); // SPI
                h[8..12].copy_from_slice(&1_u32.to_be_bytes()); // sequence
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Network {
    V4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        options: Vec<u8>,
        /// Fragment offset in 8-byte units.
        fragment_offset: u16,
        more_fragments: bool,
        ttl: u8,
    },
    V6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        extensions: Vec<Ext>,
        hop_limit: u8,
    },
    Arp {
        sender: Ipv4Addr,
        target: Ipv4Addr,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Tcp {
        src: u16,
        dst: u16,
        flags: u8,
    },
    Udp {
        src: u16,
        dst: u16,
    },
    /// ICMP or `ICMPv6` echo request (or reply), with its identifier.
    Echo {
        reply: bool,
        id: u16,
    },
    None,
}

/// Where each layer starts in a built frame.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Offsets {
    /// One per VLAN tag, outermost first (the tag's TCI; its TPID is the 2 bytes before).
    pub vlan_tags: Vec<usize>,
    pub pppoe: Option<usize>,
    /// The IP (or ARP) header.
    pub network: usize,
    /// IPv6 extension headers, in order.
    pub extensions: Vec<usize>,
    /// The transport header (for a later fragment, where it would be: the payload).
    pub transport: usize,
    pub payload: usize,
    /// The frame's length before `truncate`.
    pub end: usize,
}

/// An Ethernet frame under construction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    /// (TPID, VLAN id), outermost first.
    vlans: Vec<(u16, u16)>,
    pppoe_session: Option<u16>,
    network: Network,
    transport: Transport,
    payload: Vec<u8>,
    truncate: Option<usize>,
    patches: Vec<(usize, Vec<u8>)>,
}

const DEFAULT_SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const DEFAULT_DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

impl Frame {
    fn new(network: Network, transport: Transport) -> Self {
        Self {
            src_mac: DEFAULT_SRC_MAC,
            dst_mac: DEFAULT_DST_MAC,
            vlans: Vec::new(),
            pppoe_session: None,
            network,
            transport,
            payload: Vec::new(),
            truncate: None,
            patches: Vec::new(),
        }
    }

    fn v4(src: impl Into<Ipv4Addr>, dst: impl Into<Ipv4Addr>, transport: Transport) -> Self {
        let network = Network::V4 {
            src: src.into(),
            dst: dst.into(),
            options: Vec::new(),
            fragment_offset: 0,
            more_fragments: false,
            ttl: 64,
        };
        Self::new(network, transport)
    }

    fn v6(src: impl Into<Ipv6Addr>, dst: impl Into<Ipv6Addr>, transport: Transport) -> Self {
        let network = Network::V6 {
            src: src.into(),
            dst: dst.into(),
            extensions: Vec::new(),
            hop_limit: 64,
        };
        Self::new(network, transport)
    }

    /// A UDP datagram over IPv4.
    pub fn udp4(
        src: impl Into<Ipv4Addr>,
        sport: u16,
        dst: impl Into<Ipv4Addr>,
        dport: u16,
    ) -> Self {
        Self::v4(
            src,
            dst,
            Transport::Udp {
                src: sport,
                dst: dport,
            },
        )
    }

    /// A TCP SYN over IPv4.
    pub fn tcp4(
        src: impl Into<Ipv4Addr>,
        sport: u16,
        dst: impl Into<Ipv4Addr>,
        dport: u16,
    ) -> Self {
        Self::v4(
            src,
            dst,
            Transport::Tcp {
                src: sport,
                dst: dport,
                flags: tcp_flags::SYN,
            },
        )
    }

    /// An ICMP echo request.
    pub fn icmp4(src: impl Into<Ipv4Addr>, dst: impl Into<Ipv4Addr>) -> Self {
        Self::v4(
            src,
            dst,
            Transport::Echo {
                reply: false,
                id: 0x4242,
            },
        )
    }

    /// An IPv4 packet of any protocol, without a transport header of the builder's making.
    pub fn ip4(src: impl Into<Ipv4Addr>, dst: impl Into<Ipv4Addr>) -> Self {
        Self::v4(src, dst, Transport::None)
    }

    /// A UDP datagram over IPv6.
    pub fn udp6(
        src: impl Into<Ipv6Addr>,
        sport: u16,
        dst: impl Into<Ipv6Addr>,
        dport: u16,
    ) -> Self {
        Self::v6(
            src,
            dst,
            Transport::Udp {
                src: sport,
                dst: dport,
            },
        )
    }

    /// A TCP SYN over IPv6.
    pub fn tcp6(
        src: impl Into<Ipv6Addr>,
        sport: u16,
        dst: impl Into<Ipv6Addr>,
        dport: u16,
    ) -> Self {
        Self::v6(
            src,
            dst,
            Transport::Tcp {
                src: sport,
                dst: dport,
                flags: tcp_flags::SYN,
            },
        )
    }

    /// An `ICMPv6` echo request.
    pub fn icmp6(src: impl Into<Ipv6Addr>, dst: impl Into<Ipv6Addr>) -> Self {
        Self::v6(
            src,
            dst,
            Transport::Echo {
                reply: false,
                id: 0x4242,
            },
        )
    }

    /// An ARP request (not IP: the datapath lets it through).
    pub fn arp(sender: impl Into<Ipv4Addr>, target: impl Into<Ipv4Addr>) -> Self {
        let mut frame = Self::new(
            Network::Arp {
                sender: sender.into(),
                target: target.into(),
            },
            Transport::None,
        );
        frame.dst_mac = [0xff; 6];
        frame
    }

    /// The same packet travelling the other way: addresses, ports and MACs swapped, and an
    /// echo request turned into a reply (a SYN into a SYN-ACK).
    #[must_use]
    pub fn reversed(mut self) -> Self {
        std::mem::swap(&mut self.src_mac, &mut self.dst_mac);
        match &mut self.network {
            Network::V4 { src, dst, .. } => std::mem::swap(src, dst),
            Network::V6 { src, dst, .. } => std::mem::swap(src, dst),
            Network::Arp { sender, target } => std::mem::swap(sender, target),
        }
        self.transport = match self.transport {
            Transport::Tcp { src, dst, flags } => {
                let flags = if flags == tcp_flags::SYN {
                    tcp_flags::SYN | tcp_flags::ACK
                } else {
                    flags
                };
                Transport::Tcp {
                    src: dst,
                    dst: src,
                    flags,
                }
            }
            Transport::Udp { src, dst } => Transport::Udp { src: dst, dst: src },
            Transport::Echo { id, .. } => Transport::Echo { reply: true, id },
            Transport::None => Transport::None,
        };
        self
    }

    #[must_use]
    pub const fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Self {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    /// Adds an 802.1Q tag inside those already present.
    #[must_use]
    pub fn vlan(self, id: u16) -> Self {
        self.tag(ETH_P_8021Q, id)
    }

    /// Adds a VLAN tag of any TPID inside those already present.
    #[must_use]
    pub fn tag(mut self, tpid: u16, id: u16) -> Self {
        self.vlans.push((tpid, id & 0x0fff));
        self
    }

    /// Replaces the tags with an 802.1ad service tag around an 802.1Q customer tag.
    #[must_use]
    pub fn qinq(mut self, outer: u16, inner: u16) -> Self {
        self.vlans.clear();
        self.tag(ETH_P_8021AD, outer).vlan(inner)
    }

    /// Carries the IP packet in a `PPPoE` session (session id 1).
    #[must_use]
    pub const fn pppoe(self) -> Self {
        self.pppoe_session(1)
    }

    #[must_use]
    pub const fn pppoe_session(mut self, session: u16) -> Self {
        self.pppoe_session = Some(session);
        self
    }

    /// IPv4 options, padded with end-of-list bytes to a multiple of 4 (at most 40 bytes).
    ///
    /// # Panics
    /// On IPv6 or ARP, or when the options exceed 40 bytes.
    #[must_use]
    pub fn ipv4_options(mut self, bytes: &[u8]) -> Self {
        let Network::V4 { options, .. } = &mut self.network else {
            panic!("IPv4 options on a frame that is not IPv4");
        };
        assert!(
            bytes.len() <= MAX_IPV4_OPTIONS,
            "IPv4 options are at most {MAX_IPV4_OPTIONS} bytes"
        );
        options.clear();
        options.extend_from_slice(bytes);
        options.resize(bytes.len().div_ceil(4) * 4, 0);
        self
    }

    /// Makes the IPv4 packet a fragment: `offset` in 8-byte units, `more` the MF flag. A
    /// fragment after the first carries no transport header, only payload.
    ///
    /// # Panics
    /// On a frame that is not IPv4.
    #[must_use]
    pub fn fragment(mut self, offset: u16, more: bool) -> Self {
        let Network::V4 {
            fragment_offset,
            more_fragments,
            ..
        } = &mut self.network
        else {
            panic!("an IPv4 fragment on a frame that is not IPv4 (use Ext::Fragment)");
        };
        *fragment_offset = offset & 0x1fff;
        *more_fragments = more;
        self
    }

    /// IPv6 extension headers, in order, between the IPv6 header and the transport header.
    ///
    /// # Panics
    /// On a frame that is not IPv6.
    #[must_use]
    pub fn ext_headers(mut self, headers: &[Ext]) -> Self {
        let Network::V6 { extensions, .. } = &mut self.network else {
            panic!("IPv6 extension headers on a frame that is not IPv6");
        };
        extensions.clear();
        extensions.extend_from_slice(headers);
        self
    }

    /// Sets the TCP flags (`tcp_flags::*`).
    ///
    /// # Panics
    /// On a frame that is not TCP.
    #[must_use]
    pub fn tcp_flags(mut self, bits: u8) -> Self {
        let Transport::Tcp { flags, .. } = &mut self.transport else {
            panic!("TCP flags on a frame that is not TCP");
        };
        *flags = bits;
        self
    }

    #[must_use]
    pub fn payload(mut self, bytes: &[u8]) -> Self {
        self.payload = bytes.to_vec();
        self
    }

    /// Keeps only the first `len` bytes of the built frame (lengths and checksums stay those
    /// of the whole frame, as when a capture or a broken sender cuts a packet).
    #[must_use]
    pub const fn truncate(mut self, len: usize) -> Self {
        self.truncate = Some(len);
        self
    }

    /// Overwrites bytes of the built frame at `offset` (before truncation), e.g. to break a
    /// header field on purpose.
    #[must_use]
    pub fn patch(mut self, offset: usize, bytes: &[u8]) -> Self {
        self.patches.push((offset, bytes.to_vec()));
        self
    }

    /// The frame's bytes.
    #[must_use]
    pub fn build(&self) -> Vec<u8> {
        self.build_with_offsets().0
    }

    /// Where each layer starts, in the frame `build` returns.
    #[must_use]
    pub fn offsets(&self) -> Offsets {
        self.build_with_offsets().1
    }

    /// The frame's bytes and where each layer starts.
    ///
    /// # Panics
    /// When a patch reaches beyond the frame.
    #[must_use]
    pub fn build_with_offsets(&self) -> (Vec<u8>, Offsets) {
        let mut offsets = Offsets::default();
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&self.dst_mac);
        out.extend_from_slice(&self.src_mac);
        for &(tpid, id) in &self.vlans {
            out.extend_from_slice(&tpid.to_be_bytes());
            offsets.vlan_tags.push(out.len());
            out.extend_from_slice(&id.to_be_bytes());
        }
        let ether_type = match (&self.network, self.pppoe_session) {
            (Network::Arp { .. }, _) => ETH_P_ARP,
            (_, Some(_)) => ETH_P_PPPOE_SESSION,
            (Network::V4 { .. }, None) => ETH_P_IPV4,
            (Network::V6 { .. }, None) => ETH_P_IPV6,
        };
        out.extend_from_slice(&ether_type.to_be_bytes());
        let packet = self.network_packet(&mut offsets);
        if let (Some(session), false) = (
            self.pppoe_session,
            matches!(self.network, Network::Arp { .. }),
        ) {
            offsets.pppoe = Some(out.len());
            out.extend_from_slice(&pppoe_header(session, &self.network, packet.len()));
        }
        let base = out.len();
        shift(&mut offsets, base);
        out.extend_from_slice(&packet);
        offsets.end = out.len();
        for (at, bytes) in &self.patches {
            out[*at..*at + bytes.len()].copy_from_slice(bytes);
        }
        if let Some(len) = self.truncate {
            out.truncate(len);
        }
        (out, offsets)
    }

    /// The IP (or ARP) packet; offsets relative to its start.
    fn network_packet(&self, offsets: &mut Offsets) -> Vec<u8> {
        match &self.network {
            Network::V4 {
                src,
                dst,
                options,
                fragment_offset,
                more_fragments,
                ttl,
            } => {
                let later = *fragment_offset != 0;
                let transport =
                    self.transport_bytes(later, &|l4| pseudo_v4(*src, *dst, self.protocol(), l4));
                let mut ip = vec![0u8; IPV4_LEN];
                let header_len = IPV4_LEN + options.len();
                ip[0] = 0x40 | (header_len / 4) as u8;
                ip[2..4].copy_from_slice(&((header_len + transport.len()) as u16).to_be_bytes());
                ip[4..6].copy_from_slice(&0x1234_u16.to_be_bytes());
                let flags = (u16::from(*more_fragments) << 13) | fragment_offset;
                ip[6..8].copy_from_slice(&flags.to_be_bytes());
                ip[8] = *ttl;
                ip[9] = self.protocol();
                ip[12..16].copy_from_slice(&src.octets());
                ip[16..20].copy_from_slice(&dst.octets());
                ip.extend_from_slice(options);
                let sum = checksum(&[&ip]);
                ip[10..12].copy_from_slice(&sum.to_be_bytes());
                offsets.transport = ip.len();
                offsets.payload = ip.len() + self.transport_header_len(later);
                ip.extend_from_slice(&transport);
                ip
            }
            Network::V6 {
                src,
                dst,
                extensions,
                hop_limit,
            } => {
                let later = extensions.iter().any(|e| e.later_fragment());
                let transport =
                    self.transport_bytes(later, &|l4| pseudo_v6(*src, *dst, self.protocol(), l4));
                let mut ip = vec![0u8; IPV6_LEN];
                ip[0] = 0x60;
                let ext_len: usize = extensions.iter().map(|e| e.size()).sum();
                ip[4..6].copy_from_slice(&((ext_len + transport.len()) as u16).to_be_bytes());
                ip[6] = extensions.first().map_or(self.protocol(), |e| e.protocol());
                ip[7] = *hop_limit;
                ip[8..24].copy_from_slice(&src.octets());
                ip[24..40].copy_from_slice(&dst.octets());
                for (i, ext) in extensions.iter().enumerate() {
                    offsets.extensions.push(ip.len());
                    let next = extensions
                        .get(i + 1)
                        .map_or(self.protocol(), |e| e.protocol());
                    ext.write(next, &mut ip);
                }
                offsets.transport = ip.len();
                offsets.payload = ip.len() + self.transport_header_len(later);
                ip.extend_from_slice(&transport);
                ip
            }
            Network::Arp { sender, target } => {
                let mut arp = vec![0u8; 28];
                arp[0..2].copy_from_slice(&1_u16.to_be_bytes()); // Ethernet
                arp[2..4].copy_from_slice(&ETH_P_IPV4.to_be_bytes());
                arp[4] = 6;
                arp[5] = 4;
                arp[6..8].copy_from_slice(&1_u16.to_be_bytes()); // request
                arp[8..14].copy_from_slice(&self.src_mac);
                arp[14..18].copy_from_slice(&sender.octets());
                arp[24..28].copy_from_slice(&target.octets());
                offsets.transport = arp.len();
                offsets.payload = arp.len();
                arp
            }
        }
    }

    /// The protocol number the IP header (or last extension header) names.
    fn protocol(&self) -> u8 {
        let v6 = matches!(self.network, Network::V6 { .. });
        match self.transport {
            Transport::Tcp { .. } => IPPROTO_TCP,
            Transport::Udp { .. } => IPPROTO_UDP,
            Transport::Echo { .. } if v6 => IPPROTO_ICMPV6,
            Transport::Echo { .. } => IPPROTO_ICMP,
            // "No next header": the payload is opaque.
            Transport::None => 59,
        }
    }

    fn transport_header_len(&self, later_fragment: bool) -> usize {
        match self.transport {
            _ if later_fragment => 0,
            Transport::Tcp { .. } => TCP_LEN,
            Transport::Udp { .. } => UDP_LEN,
            Transport::Echo { .. } => ICMP_ECHO_LEN,
            Transport::None => 0,
        }
    }

    /// Transport header and payload, with the checksum (`pseudo` gives the pseudo-header of a
    /// transport segment of the given length). A later fragment is payload only.
    fn transport_bytes(&self, later_fragment: bool, pseudo: &dyn Fn(usize) -> Vec<u8>) -> Vec<u8> {
        let mut l4 = vec![0u8; self.transport_header_len(later_fragment)];
        let v6 = matches!(self.network, Network::V6 { .. });
        let checksum_at = match self.transport {
            _ if later_fragment => None,
            Transport::Tcp { src, dst, flags } => {
                l4[0..2].copy_from_slice(&src.to_be_bytes());
                l4[2..4].copy_from_slice(&dst.to_be_bytes());
                l4[4..8].copy_from_slice(&0x0100_0000_u32.to_be_bytes());
                l4[12] = 5 << 4;
                l4[13] = flags;
                l4[14..16].copy_from_slice(&64240_u16.to_be_bytes());
                Some(16)
            }
            Transport::Udp { src, dst } => {
                l4[0..2].copy_from_slice(&src.to_be_bytes());
                l4[2..4].copy_from_slice(&dst.to_be_bytes());
                l4[4..6].copy_from_slice(&((UDP_LEN + self.payload.len()) as u16).to_be_bytes());
                Some(6)
            }
            Transport::Echo { reply, id } => {
                l4[0] = match (v6, reply) {
                    (false, false) => 8,
                    (false, true) => 0,
                    (true, false) => 128,
                    (true, true) => 129,
                };
                l4[4..6].copy_from_slice(&id.to_be_bytes());
                l4[6..8].copy_from_slice(&1_u16.to_be_bytes());
                Some(2)
            }
            Transport::None => None,
        };
        l4.extend_from_slice(&self.payload);
        if let Some(at) = checksum_at {
            // ICMPv4 alone has no pseudo-header.
            let header = if matches!(self.transport, Transport::Echo { .. }) && !v6 {
                Vec::new()
            } else {
                pseudo(l4.len())
            };
            let mut sum = checksum(&[&header, &l4]);
            if sum == 0 && matches!(self.transport, Transport::Udp { .. }) {
                sum = 0xffff; // zero means "no checksum" in UDP
            }
            l4[at..at + 2].copy_from_slice(&sum.to_be_bytes());
        }
        l4
    }
}

fn shift(offsets: &mut Offsets, base: usize) {
    offsets.network = base;
    offsets.extensions.iter_mut().for_each(|o| *o += base);
    offsets.transport += base;
    offsets.payload += base;
}

fn pppoe_header(session: u16, network: &Network, packet_len: usize) -> [u8; PPPOE_LEN] {
    let protocol = if matches!(network, Network::V6 { .. }) {
        PPP_IPV6
    } else {
        PPP_IPV4
    };
    let mut h = [0u8; PPPOE_LEN];
    h[0] = 0x11; // version 1, type 1
    h[2..4].copy_from_slice(&session.to_be_bytes());
    // The PPPoE length counts the PPP protocol field and what follows.
    h[4..6].copy_from_slice(&((packet_len + 2) as u16).to_be_bytes());
    h[6..8].copy_from_slice(&protocol.to_be_bytes());
    h
}

/// The IPv4 pseudo-header that TCP and UDP checksums cover.
#[must_use]
pub fn pseudo_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, l4_len: usize) -> Vec<u8> {
    let mut h = Vec::with_capacity(12);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(&[0, protocol]);
    h.extend_from_slice(&(l4_len as u16).to_be_bytes());
    h
}

/// The IPv6 pseudo-header that TCP, UDP and ICMPv6 checksums cover.
#[must_use]
pub fn pseudo_v6(src: Ipv6Addr, dst: Ipv6Addr, protocol: u8, l4_len: usize) -> Vec<u8> {
    let mut h = Vec::with_capacity(40);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(&(l4_len as u32).to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, protocol]);
    h
}

/// The Internet checksum (RFC 1071) over the concatenation of `parts`, each of even length
/// except possibly the last.
#[must_use]
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for byte in parts.iter().flat_map(|p| p.iter().copied()) {
        match odd.take() {
            None => odd = Some(byte),
            Some(high) => sum += u32::from(u16::from_be_bytes([high, byte])),
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

/// A small deterministic generator (splitmix64), so that random frames are the same at every
/// run and a failure can be replayed.
#[derive(Clone, Debug)]
pub struct Prng(u64);

impl Prng {
    #[must_use]
    pub const fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub const fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0).
    pub const fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// `len` random bytes: a frame that means nothing.
pub fn garbage(rng: &mut Prng, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    rng.fill(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 5);
    const ZOOM: Ipv4Addr = Ipv4Addr::new(3, 7, 35, 10);
    const LOCAL6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 5);
    const ZOOM6: Ipv6Addr = Ipv6Addr::new(0x2407, 0x30c0, 0, 0, 0, 0, 0, 1);

    fn be16(b: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    /// A checksum over data that includes its own correct checksum field sums to zero.
    fn verifies(parts: &[&[u8]]) -> bool {
        checksum(parts) == 0
    }

    fn l4_pseudo_v4(f: &[u8], ip: usize, proto: u8) -> Vec<u8> {
        let total = usize::from(be16(f, ip + 2));
        let ihl = usize::from(f[ip] & 0x0f) * 4;
        let mut h = f[ip + 12..ip + 20].to_vec();
        h.extend_from_slice(&[0, proto]);
        h.extend_from_slice(&((total - ihl) as u16).to_be_bytes());
        h
    }

    #[test]
    fn udp4_layout_lengths_and_checksums() {
        let frame = Frame::udp4(LOCAL, 5000, ZOOM, 8801).payload(b"hello");
        let (f, o) = frame.build_with_offsets();
        assert_eq!(f.len(), ETHERNET_LEN + IPV4_LEN + UDP_LEN + 5);
        assert_eq!(be16(&f, 12), ETH_P_IPV4);
        assert_eq!(
            (o.network, o.transport, o.payload, o.end),
            (14, 34, 42, f.len())
        );
        assert_eq!(f[14], 0x45);
        assert_eq!(usize::from(be16(&f, 16)), IPV4_LEN + UDP_LEN + 5);
        assert_eq!(f[14 + 9], IPPROTO_UDP);
        assert_eq!(f[26..30], LOCAL.octets());
        assert_eq!(f[30..34], ZOOM.octets());
        assert!(verifies(&[&f[14..34]]), "IPv4 header checksum");
        assert_eq!((be16(&f, 34), be16(&f, 36), be16(&f, 38)), (5000, 8801, 13));
        assert!(
            verifies(&[&l4_pseudo_v4(&f, 14, IPPROTO_UDP), &f[34..]]),
            "UDP checksum"
        );
        assert_eq!(&f[42..], b"hello");
    }

    #[test]
    fn tcp4_is_a_syn_with_a_valid_checksum() {
        let f = Frame::tcp4(LOCAL, 40000, ZOOM, 443).build();
        assert_eq!(f.len(), 14 + 20 + 20);
        assert_eq!(f[23], IPPROTO_TCP);
        assert_eq!(f[34 + 12], 0x50);
        assert_eq!(f[34 + 13], tcp_flags::SYN);
        assert!(verifies(&[&l4_pseudo_v4(&f, 14, IPPROTO_TCP), &f[34..]]));
        let ack = Frame::tcp4(LOCAL, 40000, ZOOM, 443)
            .tcp_flags(tcp_flags::ACK)
            .build();
        assert_eq!(ack[34 + 13], tcp_flags::ACK);
    }

    #[test]
    fn icmp_echo_v4_and_v6() {
        let f = Frame::icmp4(LOCAL, ZOOM).payload(&[7; 16]).build();
        assert_eq!(f.len(), 14 + 20 + 8 + 16);
        assert_eq!((f[23], f[34]), (IPPROTO_ICMP, 8));
        assert!(verifies(&[&f[34..]]), "ICMP checksum");
        let f = Frame::icmp6(LOCAL6, ZOOM6).build();
        assert_eq!(f.len(), 14 + 40 + 8);
        assert_eq!(
            (be16(&f, 12), f[20], f[54]),
            (ETH_P_IPV6, IPPROTO_ICMPV6, 128)
        );
        let mut pseudo = f[22..54].to_vec();
        pseudo.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, IPPROTO_ICMPV6]);
        assert!(verifies(&[&pseudo, &f[54..]]), "ICMPv6 checksum");
    }

    #[test]
    fn udp6_layout() {
        let f = Frame::udp6(LOCAL6, 5000, ZOOM6, 8801)
            .payload(&[1, 2, 3])
            .build();
        assert_eq!(f.len(), 14 + 40 + 8 + 3);
        assert_eq!(f[14] >> 4, 6);
        assert_eq!(be16(&f, 18), 11, "payload length");
        assert_eq!(f[20], IPPROTO_UDP);
        assert_eq!(f[22..38], LOCAL6.octets());
        assert_eq!(f[38..54], ZOOM6.octets());
        let mut pseudo = f[22..54].to_vec();
        pseudo.extend_from_slice(&[0, 0, 0, 11, 0, 0, 0, IPPROTO_UDP]);
        assert!(verifies(&[&pseudo, &f[54..]]), "UDP over IPv6 checksum");
    }

    #[test]
    fn vlan_tags_and_qinq() {
        let f = Frame::udp4(LOCAL, 1, ZOOM, 2).vlan(100).build();
        assert_eq!(
            (be16(&f, 12), be16(&f, 14), be16(&f, 16)),
            (ETH_P_8021Q, 100, ETH_P_IPV4)
        );
        assert_eq!(f[18], 0x45);
        let (f, o) = Frame::udp4(LOCAL, 1, ZOOM, 2)
            .qinq(200, 100)
            .build_with_offsets();
        assert_eq!(o.vlan_tags, vec![14, 18]);
        assert_eq!(be16(&f, 12), ETH_P_8021AD);
        assert_eq!((be16(&f, 14), be16(&f, 16)), (200, ETH_P_8021Q));
        assert_eq!((be16(&f, 18), be16(&f, 20)), (100, ETH_P_IPV4));
        assert_eq!(o.network, 22);
        let three = Frame::udp4(LOCAL, 1, ZOOM, 2).qinq(1, 2).vlan(3).build();
        assert_eq!(three.len(), 14 + 12 + 20 + 8);
        assert_eq!(be16(&three, 24), ETH_P_IPV4);
        assert_eq!(be16(&three, 20), ETH_P_8021Q);
    }

    #[test]
    fn pppoe_session_v4_and_v6() {
        let (f, o) = Frame::udp4(LOCAL, 1, ZOOM, 2)
            .vlan(7)
            .pppoe_session(0x55)
            .build_with_offsets();
        assert_eq!(be16(&f, 16), ETH_P_PPPOE_SESSION);
        assert_eq!(o.pppoe, Some(18));
        assert_eq!((f[18], f[19], be16(&f, 20)), (0x11, 0, 0x55));
        assert_eq!(usize::from(be16(&f, 22)), 2 + 20 + 8);
        assert_eq!(be16(&f, 24), PPP_IPV4);
        assert_eq!(o.network, 26);
        assert_eq!(f[26], 0x45);
        let f = Frame::tcp6(LOCAL6, 1, ZOOM6, 2).pppoe().build();
        assert_eq!(be16(&f, 12), ETH_P_PPPOE_SESSION);
        assert_eq!(be16(&f, 20), PPP_IPV6);
        assert_eq!(usize::from(be16(&f, 18)), 2 + 40 + 20);
        assert_eq!(f[22] >> 4, 6);
    }

    #[test]
    fn ipv4_options_set_ihl_and_checksum() {
        let (f, o) = Frame::udp4(LOCAL, 1, ZOOM, 2)
            .ipv4_options(&[1; 40])
            .build_with_offsets();
        assert_eq!(f[14], 0x4f, "IHL 15");
        assert_eq!(o.transport, 14 + 60);
        assert_eq!(usize::from(be16(&f, 16)), 60 + 8);
        assert!(verifies(&[&f[14..74]]));
        assert_eq!(be16(&f, 74), 1, "source port after the options");
        let padded = Frame::udp4(LOCAL, 1, ZOOM, 2)
            .ipv4_options(&[1, 1, 1, 1, 1])
            .build();
        assert_eq!(padded[14], 0x47, "5 bytes of options round up to 8");
        assert_eq!(padded[34..42], [1, 1, 1, 1, 1, 0, 0, 0]);
    }

    #[test]
    fn ipv4_fragments() {
        let f = Frame::udp4(LOCAL, 5000, ZOOM, 8801)
            .fragment(0, true)
            .payload(&[0; 16])
            .build();
        assert_eq!(be16(&f, 20), 0x2000, "MF, offset 0");
        assert_eq!(be16(&f, 36), 8801, "a first fragment carries the ports");
        let (f, o) = Frame::udp4(LOCAL, 5000, ZOOM, 8801)
            .fragment(3, false)
            .payload(&[0xee; 16])
            .build_with_offsets();
        assert_eq!(be16(&f, 20), 3);
        assert_eq!(f.len(), 14 + 20 + 16, "a later fragment has no UDP header");
        assert_eq!((o.transport, o.payload), (34, 34));
        assert_eq!(f[23], IPPROTO_UDP);
        assert!(verifies(&[&f[14..34]]));
        let f = Frame::udp4(LOCAL, 1, ZOOM, 2)
            .fragment(0x1fff, true)
            .build();
        assert_eq!(be16(&f, 20), 0x3fff);
    }

    #[test]
    fn ipv6_extension_chain() {
        let exts = [
            Ext::HopByHop,
            Ext::Routing,
            Ext::DestOpts,
            Ext::Fragment {
                offset: 0,
                more: true,
            },
            Ext::Auth,
        ];
        let (f, o) = Frame::tcp6(LOCAL6, 40000, ZOOM6, 443)
            .ext_headers(&exts)
            .build_with_offsets();
        let ext_len = 8 + 24 + 8 + 8 + 24;
        assert_eq!(f.len(), 14 + 40 + ext_len + 20);
        assert_eq!(usize::from(be16(&f, 18)), ext_len + 20);
        assert_eq!(o.extensions, vec![54, 62, 86, 94, 102]);
        assert_eq!(o.transport, 126);
        // The chain: IPv6 -> 0 -> 43 -> 60 -> 44 -> 51 -> TCP.
        assert_eq!(f[20], 0);
        let nexts: Vec<u8> = o.extensions.iter().map(|&at| f[at]).collect();
        assert_eq!(nexts, vec![43, 60, 44, 51, IPPROTO_TCP]);
        // Length fields: options and routing in 8-byte units past the first 8, AH in 4-byte
        // units minus 2.
        assert_eq!((f[55], f[63], f[87], f[103]), (0, 2, 0, 4));
        assert_eq!(be16(&f, 96), 1, "fragment offset 0, M set");
        assert_eq!(be16(&f, 128), 443);
        let mut pseudo = f[22..54].to_vec();
        pseudo.extend_from_slice(&[0, 0, 0, 20, 0, 0, 0, IPPROTO_TCP]);
        assert!(
            verifies(&[&pseudo, &f[126..]]),
            "TCP checksum over the upper-layer length"
        );
    }

    #[test]
    fn long_destination_options_and_later_ipv6_fragment() {
        let (f, o) = Frame::udp6(LOCAL6, 1, ZOOM6, 2)
            .ext_headers(&[Ext::DestOptsLong(3)])
            .build_with_offsets();
        assert_eq!(f[55], 3);
        assert_eq!(o.transport, 54 + 32);
        let f = Frame::udp6(LOCAL6, 1, ZOOM6, 2)
            .ext_headers(&[Ext::Fragment {
                offset: 185,
                more: false,
            }])
            .payload(&[9; 24])
            .build();
        assert_eq!(
            f.len(),
            14 + 40 + 8 + 24,
            "a later fragment has no UDP header"
        );
        assert_eq!(be16(&f, 56), 185 << 3);
        assert_eq!(f[54], IPPROTO_UDP);
    }

    #[test]
    fn reversed_swaps_both_ends() {
        let f = Frame::udp4(LOCAL, 5000, ZOOM, 8801).reversed().build();
        assert_eq!(f[26..30], ZOOM.octets());
        assert_eq!(f[30..34], LOCAL.octets());
        assert_eq!((be16(&f, 34), be16(&f, 36)), (8801, 5000));
        assert_eq!(
            (&f[0..6], &f[6..12]),
            (&DEFAULT_SRC_MAC[..], &DEFAULT_DST_MAC[..])
        );
        let syn_ack = Frame::tcp4(LOCAL, 1, ZOOM, 2).reversed().build();
        assert_eq!(syn_ack[34 + 13], tcp_flags::SYN | tcp_flags::ACK);
        let reply = Frame::icmp6(LOCAL6, ZOOM6).reversed().build();
        assert_eq!(reply[54], 129);
    }

    #[test]
    fn arp_truncate_patch_and_garbage() {
        let f = Frame::arp(LOCAL, ZOOM).build();
        assert_eq!((f.len(), be16(&f, 12)), (14 + 28, ETH_P_ARP));
        assert_eq!(f[0..6], [0xff; 6]);
        let whole = Frame::tcp4(LOCAL, 1, ZOOM, 2).build();
        let cut = Frame::tcp4(LOCAL, 1, ZOOM, 2).truncate(40).build();
        assert_eq!(cut, whole[..40]);
        let patched = Frame::tcp4(LOCAL, 1, ZOOM, 2).patch(14, &[0x44]).build();
        assert_eq!(patched[14], 0x44);
        let mut a = Prng::new(7);
        let mut b = Prng::new(7);
        assert_eq!(garbage(&mut a, 33), garbage(&mut b, 33));
        assert_eq!(garbage(&mut a, 0), Vec::<u8>::new());
        assert!((0..100).all(|_| a.below(10) < 10));
    }

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 section 3: the sum of these words is ddf2, its complement 220d.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&[&data]), !0xddf2);
        assert_eq!(
            checksum(&[&data[..3], &data[3..]]),
            checksum(&[&data]),
            "odd split"
        );
    }
}
