//! Per-CPU counters, summed by the daemon when it is asked.

/// One counter row: packets, bytes and new flows of a (rule, service, group, action).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct CounterKey {
    pub rule: u16,
    pub service: u16,
    pub group: u16,
    /// The effective action: what happened to the packets (`action::*`).
    pub action: u8,
    pub pad: u8,
}

/// A row of the per-CPU counter cache: the key that claimed it, and its counts on that CPU.
///
/// Counting a packet in a hash map costs a hash and a helper call on every packet; a row of a
/// per-CPU array, found by a multiplication, costs neither. Each CPU's copy of a row belongs to
/// the first key that hashes to it there (an all-zero key never occurs: action 0 is never a
/// decision); a key whose row is taken is counted in `COUNTERS` instead. Readers add both.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct CounterRow {
    pub key: CounterKey,
    pub value: CounterValue,
}

#[allow(
    clippy::inline_always,
    reason = "kernel hot path: plain arithmetic, inlined"
)]
impl CounterKey {
    /// The key as one word, to compare and to hash.
    #[inline(always)]
    #[must_use]
    pub const fn word(&self) -> u64 {
        (self.rule as u64)
            | ((self.service as u64) << 16)
            | ((self.group as u64) << 32)
            | ((self.action as u64) << 48)
            | ((self.pad as u64) << 56)
    }

    /// The cache row of this key (Fibonacci hashing of its word).
    #[inline(always)]
    #[must_use]
    pub const fn cache_row(&self) -> u32 {
        let bits = crate::limits::COUNTER_CACHE_ROWS.trailing_zeros();
        (self.word().wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - bits)) as u32
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct CounterValue {
    pub packets: u64,
    pub bytes: u64,
    pub flows: u64,
}

/// Indices of the parse-failure array: why a packet could not be read.
pub mod parse_failure {
    pub const TRUNCATED_ETHERNET: u32 = 0;
    pub const TRUNCATED_VLAN: u32 = 1;
    pub const TOO_MANY_VLAN_TAGS: u32 = 2;
    pub const TRUNCATED_PPPOE: u32 = 3;
    pub const TRUNCATED_IPV4: u32 = 4;
    pub const BAD_IPV4_HEADER: u32 = 5;
    pub const TRUNCATED_IPV6: u32 = 6;
    pub const TOO_MANY_IPV6_EXT_HEADERS: u32 = 7;
    pub const TRUNCATED_IPV6_EXT_HEADER: u32 = 8;
    pub const TRUNCATED_TRANSPORT: u32 = 9;
    /// A TCP data offset below 5 words: the header would overlap what it calls payload.
    pub const BAD_TCP_HEADER: u32 = 10;
    pub const COUNT: u32 = 11;
    /// Prometheus label values, by index.
    pub const NAMES: [&str; COUNT as usize] = [
        "truncated_ethernet",
        "truncated_vlan",
        "too_many_vlan_tags",
        "truncated_pppoe",
        "truncated_ipv4",
        "bad_ipv4_header",
        "truncated_ipv6",
        "too_many_ipv6_ext_headers",
        "truncated_ipv6_ext_header",
        "truncated_transport",
        "bad_tcp_header",
    ];
}

/// Indices of the datapath statistics array.
pub mod stat {
    /// Packets the program looked at.
    pub const PACKETS: u32 = 0;
    /// Frames that are not IP (ARP, LLDP...): always passed.
    pub const NOT_IP: u32 = 1;
    /// Flow events dropped because the ring buffer was full.
    pub const EVENTS_LOST: u32 = 2;
    /// Counter rows that could not be created because the counter map was full.
    pub const COUNTER_ROWS_FULL: u32 = 3;
    /// Flows that could not be remembered (map update failed).
    pub const FLOW_INSERT_FAILED: u32 = 4;
    /// Decisions taken again because a policy swap happened during the decision.
    pub const DECISION_RETRIED: u32 = 5;
    /// Packets seen before any policy was applied (the failure behaviour decided).
    pub const NO_POLICY: u32 = 6;
    /// IP fragments after the first one, classified by address only.
    pub const FRAGMENTS: u32 = 7;
    /// Unparsable packets that the unparsed action blocked.
    pub const UNPARSED_BLOCKED: u32 = 8;
    /// Rejected packets answered (TCP reset, ICMP port unreachable).
    pub const REJECTS_ANSWERED: u32 = 9;
    /// Rejected packets that could only be dropped (see `answer`: not TCP or UDP, a reset,
    /// IP options or extension headers, or the answer could not be written).
    pub const REJECTS_DROPPED: u32 = 10;
    /// TLS server names read from ClientHellos (whether a catalog domain matched or not).
    pub const SNI_READ: u32 = 11;
    /// ClientHellos without a server name, or with an encrypted one (a blind spot).
    pub const SNI_ABSENT: u32 = 12;
    /// ClientHellos vigie could not read (a field split across segments, lengths that do not
    /// add up): a blind spot.
    pub const SNI_UNREADABLE: u32 = 13;
    /// STUN messages whose attributes named a vendor.
    pub const STUN_RECOGNISED: u32 = 14;
    /// ClientHellos that carried an Encrypted Client Hello extension ahead of the server
    /// name (the name read is then only the outer, public one): a blind spot.
    pub const SNI_ENCRYPTED: u32 = 15;
    /// Payloads (DNS responses, QUIC Initials) the daemon could not be given: ring full.
    pub const PAYLOADS_LOST: u32 = 16;
    /// DNS responses handed to the daemon for learning.
    pub const DNS_RESPONSES: u32 = 17;
    /// QUIC client datagrams handed to the daemon for their server name.
    pub const QUIC_INITIALS: u32 = 18;
    /// QUIC flows of a version vigie cannot decrypt: a blind spot.
    pub const QUIC_UNKNOWN_VERSION: u32 = 19;
    /// Datagrams held back while the daemon read a QUIC flow's name: the server's, and the
    /// client's early data (0-RTT).
    pub const QUIC_HELD: u32 = 20;
    /// QUIC flows whose name the daemon did not tell in time: they went on as their address
    /// decided (a blind spot).
    pub const QUIC_TIMED_OUT: u32 = 21;
    /// New flows to a well-known encrypted DNS resolver (DNS over HTTPS, TLS or QUIC): names
    /// vigie cannot learn from (a blind spot).
    pub const ENCRYPTED_DNS: u32 = 22;
    pub const COUNT: u32 = 23;

    /// Names for reports, by index.
    pub const NAMES: [&str; COUNT as usize] = [
        "packets",
        "not_ip",
        "events_lost",
        "counter_rows_full",
        "flow_insert_failed",
        "decisions_retried",
        "no_policy",
        "fragments",
        "unparsed_blocked",
        "rejects_answered",
        "rejects_dropped",
        "sni_read",
        "sni_absent",
        "sni_unreadable",
        "stun_recognised",
        "sni_encrypted",
        "payloads_lost",
        "dns_responses",
        "quic_initials",
        "quic_unknown_version",
        "quic_held",
        "quic_timed_out",
        "encrypted_dns",
    ];
}
