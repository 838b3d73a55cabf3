//! Flow events: from the kernel's ring buffer records to JSON lines on their own sink.

pub mod aggregate;
pub mod pseudonym;
pub mod sink;
pub mod writer;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, SystemTime},
};

use serde::Serialize;
use vigie_common::{
    action::{self, evidence},
    event::FlowEvent,
    flow::flags,
};

use crate::{compiled::CompiledPolicy, geoip::GeoIp, maps::address};

/// Reads one ring-buffer record; a record too short to be vigie's is skipped, not misread.
#[must_use]
pub fn decode(bytes: &[u8]) -> Option<FlowEvent> {
    let size = std::mem::size_of::<FlowEvent>();
    bytes.get(..size).map(bytemuck::pod_read_unaligned)
}

/// One flow event as written to the sink.
#[derive(Clone, Debug, Serialize)]
pub struct FlowRecord {
    pub time: String,
    /// `address:port`; a pseudonym (without port) when the internal side is pseudonymised.
    pub src: String,
    pub dst: String,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: &'static str,
    pub service: Option<String>,
    pub group: String,
    pub rule: String,
    /// What the rule says: allow, block or monitor.
    pub action: &'static str,
    /// enforce, or monitor when the policy only reports what it would block.
    pub mode: &'static str,
    /// What happened to the packet: passed or dropped.
    pub verdict: &'static str,
    pub evidence: &'static str,
    /// Country of the remote address; null until a GeoIP lookup is wired in.
    pub country: Option<String>,
    pub generation: u32,
    pub policy_digest: String,
    /// The flow existed before and a new policy changed its verdict.
    pub redecided: bool,
    pub direction: &'static str,
    /// Events like this one (same addresses, service, rule, action) left unwritten since the
    /// last line for it; see `aggregate`.
    pub suppressed: u64,
}

#[must_use]
pub const fn action_name(code: u32) -> &'static str {
    match code {
        action::ALLOW => "allow",
        action::DROP | action::REJECT => "block",
        action::MONITOR => "monitor",
        _ => "none",
    }
}

#[must_use]
pub const fn evidence_name(code: u32) -> &'static str {
    match code {
        evidence::ADDRESS => "address",
        evidence::ASN => "asn",
        evidence::DNS => "dns",
        evidence::SNI => "sni",
        evidence::QUIC_SNI => "quic-sni",
        evidence::STUN => "stun",
        evidence::SIGNATURE => "signature",
        evidence::PORT => "port",
        _ => "none",
    }
}

#[must_use]
pub const fn proto_name(proto: u8) -> &'static str {
    match proto {
        1 => "icmp",
        6 => "tcp",
        17 => "udp",
        58 => "icmpv6",
        _ => "other",
    }
}

/// Names service, group and rule numbers with the policy of the event's generation; keeps the
/// last generations because events of a flow decided just before a swap arrive after it.
#[derive(Default)]
pub struct Namer {
    policies: BTreeMap<u32, Arc<CompiledPolicy>>,
    /// Replaces the internal (local) address when set.
    pseudonymiser: Option<pseudonym::Pseudonymiser>,
    /// Gives each event the country of its remote address.
    geoip: Option<Arc<GeoIp>>,
}

/// Generations remembered: enough for events that arrive well after many quick swaps (each
/// costs a pointer)...
const GENERATIONS_KEPT: usize = 4096;
/// ...while distinct policies, which can be large, are few: a generation whose policy equals
/// one already kept shares it, so toggling between two policies keeps two.
const DISTINCT_POLICIES_KEPT: usize = 8;

impl Namer {
    #[must_use]
    pub fn with_pseudonymiser(pseudonymiser: Option<pseudonym::Pseudonymiser>) -> Self {
        Self {
            policies: BTreeMap::new(),
            pseudonymiser,
            geoip: None,
        }
    }

    /// The country database events are told their remote address's country from.
    pub fn set_geoip(&mut self, geoip: Option<Arc<GeoIp>>) {
        self.geoip = geoip;
    }

    pub fn insert(&mut self, generation: u32, policy: Arc<CompiledPolicy>) {
        let shared = self
            .policies
            .values()
            .find(|kept| kept.digest == policy.digest && **kept == policy)
            .map_or(policy, Arc::clone);
        self.policies.insert(generation, shared);
        while self.policies.len() > GENERATIONS_KEPT || self.distinct() > DISTINCT_POLICIES_KEPT {
            self.policies.pop_first();
        }
    }

    fn distinct(&self) -> usize {
        let mut seen: Vec<*const CompiledPolicy> =
            self.policies.values().map(Arc::as_ptr).collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    }

    #[must_use]
    pub fn record(&self, event: &FlowEvent) -> FlowRecord {
        let policy = self.policies.get(&event.generation);
        let key = &event.key;
        let local = SocketAddr::new(address(key.family, &key.local), key.local_port);
        let remote = SocketAddr::new(address(key.family, &key.remote), key.remote_port);
        let from_remote = event.flags & flags::FROM_REMOTE != 0;
        let local_text = self
            .pseudonymiser
            .as_ref()
            .map_or_else(|| local.to_string(), |p| p.pseudonym(local.ip()));
        let remote_text = remote.to_string();
        let ((src, src_port), (dst, dst_port)) = if from_remote {
            ((remote_text, remote.port()), (local_text, local.port()))
        } else {
            ((local_text, local.port()), (remote_text, remote.port()))
        };
        let monitor = event.flags & flags::MONITOR_MODE != 0;
        let dropped = action::blocks(event.action) && !monitor;
        FlowRecord {
            time: humantime::format_rfc3339_millis(wall_time(event.timestamp_ns)).to_string(),
            src,
            dst,
            src_port,
            dst_port,
            proto: proto_name(key.proto),
            service: policy
                .and_then(|p| p.service_name(event.service))
                .map(str::to_owned),
            group: policy
                .map_or("unknown", |p| p.group_name(event.group))
                .to_owned(),
            rule: policy
                .map_or("unknown", |p| p.rule_name(event.rule))
                .to_owned(),
            action: action_name(event.action),
            mode: if monitor { "monitor" } else { "enforce" },
            verdict: if dropped { "dropped" } else { "passed" },
            evidence: evidence_name(event.evidence),
            country: self.geoip.as_ref().and_then(|db| db.country(remote.ip())),
            generation: event.generation,
            policy_digest: policy.map_or_else(String::new, |p| p.digest.clone()),
            redecided: event.flags & flags::REDECIDED != 0,
            direction: if from_remote { "inbound" } else { "outbound" },
            suppressed: 0,
        }
    }
}

/// The kernel stamps events with `CLOCK_MONOTONIC`: convert to wall-clock time.
fn wall_time(monotonic_ns: u64) -> SystemTime {
    let now_wall = SystemTime::now();
    let now_mono = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        t.tv_sec().cast_unsigned() * 1_000_000_000 + t.tv_nsec().cast_unsigned()
    });
    let age = Duration::from_nanos(now_mono.saturating_sub(monotonic_ns));
    now_wall.checked_sub(age).unwrap_or(now_wall)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use vigie_common::flow::FlowKey;

    use super::*;

    #[test]
    fn events_carry_the_country_of_their_remote_address() {
        let mut remote = [0u8; 16];
        remote[..4].copy_from_slice(&[193, 51, 24, 1]);
        let mut local = [0u8; 16];
        local[..4].copy_from_slice(&[10, 0, 0, 1]);
        let event = FlowEvent {
            key: FlowKey {
                local,
                remote,
                local_port: 40_000,
                remote_port: 443,
                proto: 6,
                family: 4,
                ..FlowKey::default()
            },
            action: action::ALLOW,
            generation: 1,
            ..FlowEvent::default()
        };
        let mut namer = Namer::default();
        assert_eq!(
            namer.record(&event).country,
            None,
            "no database, no country"
        );
        let db = GeoIp::open(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../policies/geoip/geo-whois-asn-country.mmdb"),
        )
        .unwrap();
        namer.set_geoip(Some(Arc::new(db)));
        let record = namer.record(&event);
        assert_eq!(record.country.as_deref(), Some("FR"));
        assert_eq!(record.dst, "193.51.24.1:443");
    }
}
