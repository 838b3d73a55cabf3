//! Map names, shared so that the daemon finds what the kernel declared (at most 15 bytes).

pub const ACTIVE_POLICY: &str = "ACTIVE_POLICY";
pub const SETTINGS: &str = "SETTINGS";
pub const RULES: &str = "RULES";
pub const DST_V4_24: &str = "DST_V4_24";
pub const DST_V4_8: &str = "DST_V4_8";
pub const DESTINATIONS: &str = "DESTINATIONS";
pub const DST_V6: &str = "DST_V6";
pub const SRC_V4: &str = "SRC_V4";
pub const SRC_V6: &str = "SRC_V6";
pub const FLOWS: &str = "FLOWS";
pub const FLOW_CACHE: &str = "FLOW_CACHE";
pub const COUNTERS: &str = "COUNTERS";
pub const COUNTER_CACHE: &str = "COUNTER_CACHE";
pub const PARSE_FAILURES: &str = "PARSE_FAILURES";
pub const STATS: &str = "STATS";
pub const EVENTS: &str = "EVENTS";
pub const EVENT_WAKES: &str = "EVENT_WAKES";
pub const SCRATCH: &str = "SCRATCH";
pub const FRAMES: &str = "FRAMES";
pub const DOMAINS: &str = "DOMAINS";
pub const SNI_WORK: &str = "SNI_WORK";
pub const STUN_ATTRS: &str = "STUN_ATTRS";
pub const DECIDING: &str = "DECIDING";
pub const PAYLOADS: &str = "PAYLOADS";
pub const LEARNED: &str = "LEARNED";
pub const LEARNED_FILTER: &str = "LEARNED_FILTER";
pub const RESOLVERS: &str = "RESOLVERS";
pub const PORT_SIGNALS: &str = "PORT_SIGNALS";

/// Every map, in the order the daemon pins them.
pub const ALL: [&str; 28] = [
    ACTIVE_POLICY,
    SETTINGS,
    RULES,
    DST_V4_24,
    DST_V4_8,
    DESTINATIONS,
    DST_V6,
    SRC_V4,
    SRC_V6,
    FLOWS,
    FLOW_CACHE,
    COUNTERS,
    COUNTER_CACHE,
    PARSE_FAILURES,
    STATS,
    EVENTS,
    EVENT_WAKES,
    SCRATCH,
    FRAMES,
    DOMAINS,
    SNI_WORK,
    STUN_ATTRS,
    DECIDING,
    PAYLOADS,
    LEARNED,
    LEARNED_FILTER,
    RESOLVERS,
    PORT_SIGNALS,
];

/// Program names (the Rust function names in the eBPF crate).
pub mod programs {
    /// Outbound traffic on XDP (the LAN-facing interface's ingress).
    pub const XDP_OUTBOUND: &str = "vigie_xdp_outbound";
    /// Outbound traffic on TC, on a WAN-facing interface's egress (answers to rejected packets
    /// go back in through the interface's ingress).
    pub const TC_OUTBOUND: &str = "vigie_tc_outbound";
    /// Outbound traffic on TC, on a LAN-facing interface's ingress (answers to rejected packets
    /// go back out of the interface).
    pub const TC_LAN_INGRESS: &str = "vigie_tc_lan_ingress";
    /// Replies on TC (the opposite direction of the outbound hook).
    pub const TC_REPLY: &str = "vigie_tc_reply";
}

/// Load-time globals.
pub mod globals {
    /// What a packet gets before any policy was applied: `action::ALLOW` or `action::DROP`.
    pub const FAILURE_ACTION: &str = "FAILURE_ACTION";
}
