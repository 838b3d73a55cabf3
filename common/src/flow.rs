//! The flow cache: what the kernel remembers of each connection.

/// A connection, oriented from the local side (the internal host) to the remote side (the
/// service), whichever direction the packet travels, so that both directions share one entry.
/// IPv4 addresses sit in the first 4 bytes of the 16, the rest zero. Aligned to 8 (the size has
/// no padding either way) so that the kernel program copies it with word moves, not byte loops.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct FlowKey {
    pub local: [u8; 16],
    pub remote: [u8; 16],
    pub local_port: u16,
    pub remote_port: u16,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6).
    pub proto: u8,
    /// 4 or 6.
    pub family: u8,
    pub pad: [u8; 2],
}

/// The evidence (which service, how recognised) is kept apart from the verdict (which rule,
/// which action, under which policy generation): a new policy re-decides from the evidence.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct FlowEntry {
    // Evidence.
    pub service: u32,
    pub evidence: u32,
    /// Destination classes (country, jurisdiction) that came with the service's prefix.
    pub classes: u64,
    pub group: u32,
    // Verdict.
    pub generation: u32,
    pub rule: u32,
    /// The action the rule asked for.
    pub action: u32,
    /// Bits of `flags` below.
    pub flags: u32,
    /// While `flags::SNI_PENDING`: the TCP sequence number of the ClientHello's next extension
    /// header, and of the end of its extensions (see `sni`). UDP flows use them as
    /// `flags::STUN_PENDING` and `flags::QUIC_PENDING` say.
    pub sni_seq: u32,
    pub sni_end: u32,
    pub pad: u32,
}

/// A row of the kernel's per-CPU flow cache: a copy of a flow-table entry whose verdict is
/// settled, the number of packets it may still serve, and the key it belongs to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CachedFlow {
    pub key: FlowKey,
    pub entry: FlowEntry,
    pub credit: u32,
    pub pad: u32,
}

/// `FlowEntry::flags` and `FlowEvent::flags` bits.
pub mod flags {
    /// The verdict lets the packet through although the rule blocks: monitor mode.
    pub const MONITOR_MODE: u32 = 1;
    /// The flow's first packet came from the remote side.
    pub const FROM_REMOTE: u32 = 1 << 1;
    /// The event reports a flow re-decided after a policy swap, not a new flow.
    pub const REDECIDED: u32 = 1 << 2;
    /// The packet was an IP fragment after the first one: ports are unknown (zero).
    pub const FRAGMENT: u32 = 1 << 3;
    /// A rule of the policy decided (not its default, nor the failure behaviour).
    pub const MATCHED: u32 = 1 << 4;
    /// A TCP flow from the LAN whose ClientHello has not been read yet.
    pub const SNI_PENDING: u32 = 1 << 5;
    /// The ClientHello's fixed part was read; `sni_seq` and `sni_end` hold the walk.
    pub const SNI_STARTED: u32 = 1 << 6;
    /// The event reports a flow whose service its TLS server name just told.
    pub const NAMED: u32 = 1 << 7;
    /// A UDP flow whose first datagrams are still looked at for vendor STUN attributes
    /// (`sni_seq` counts them).
    pub const STUN_PENDING: u32 = 1 << 8;
    /// A QUIC flow whose client Initials went to the daemon, which has not told its server
    /// name yet: the server's datagrams are held back until it does, or until `sni_end` (the
    /// deadline, see `quic`). `sni_seq` counts the client datagrams handed over.
    pub const QUIC_PENDING: u32 = 1 << 9;
    /// A TCP flow seen from its SYN: until `SNI_STARTED`, `sni_seq` is the sequence number of
    /// its first payload byte, where the ClientHello must start.
    pub const SNI_FROM_SYN: u32 = 1 << 10;
}
