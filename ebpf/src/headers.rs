//! Wire layouts of the headers the parser reads, as UAPI defines them (network byte order).

pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
pub const ETH_P_PPPOE_SESSION: u16 = 0x8864;
pub const PPP_IPV4: u16 = 0x0021;
pub const PPP_IPV6: u16 = 0x0057;

pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ROUTING: u8 = 43;
pub const IPPROTO_FRAGMENT: u8 = 44;
pub const IPPROTO_AH: u8 = 51;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_DSTOPTS: u8 = 60;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Ethernet {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub ether_type: [u8; 2],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct VlanTag {
    pub tci: [u8; 2],
    pub ether_type: [u8; 2],
}

/// PPPoE session header followed by the PPP protocol field.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PppoeSession {
    pub version_type: u8,
    pub code: u8,
    pub session: [u8; 2],
    pub length: [u8; 2],
    pub ppp_protocol: [u8; 2],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Ipv4 {
    pub version_ihl: u8,
    pub tos: u8,
    pub total_len: [u8; 2],
    pub id: [u8; 2],
    pub flags_fragment: [u8; 2],
    pub ttl: u8,
    pub protocol: u8,
    pub checksum: [u8; 2],
    pub src: [u8; 4],
    pub dst: [u8; 4],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Ipv6 {
    pub version_class_flow: [u8; 4],
    pub payload_len: [u8; 2],
    pub next_header: u8,
    pub hop_limit: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

/// The first two bytes of every IPv6 extension header.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExtensionStart {
    pub next_header: u8,
    pub length: u8,
}

/// The IPv6 fragment header.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Fragment6 {
    pub next_header: u8,
    pub reserved: u8,
    pub offset_flags: [u8; 2],
    pub id: [u8; 4],
}

/// Source and destination ports, common to TCP and UDP.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Ports {
    pub src: [u8; 2],
    pub dst: [u8; 2],
}

/// The rest of a TCP header after the ports (a TCP header is at least 20 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TcpRest {
    pub seq: [u8; 4],
    pub ack: [u8; 4],
    pub offset_flags: [u8; 2],
    pub window: [u8; 2],
    pub checksum: [u8; 2],
    pub urgent: [u8; 2],
}

/// The rest of a UDP header after the ports.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct UdpRest {
    pub len: [u8; 2],
    pub checksum: [u8; 2],
}

#[inline(always)]
pub const fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}
