//! The datapath's counters, read from the pinned maps at each scrape and summed over CPUs.
//!
//! The maps are opened by pin path rather than borrowed from the daemon's `DatapathMaps`, so
//! that a scrape never waits on a policy write, and counters stay cumulative across daemon
//! restarts (the kernel keeps them): exactly what Prometheus counters expect.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use aya::maps::{HashMap as BpfHashMap, Map, MapData, PerCpuArray, PerCpuHashMap};
use prometheus::{
    IntCounterVec, IntGaugeVec, Opts,
    core::{Collector, Desc},
    proto::MetricFamily,
};
use vigie_common::{
    counters::{CounterKey, CounterRow, CounterValue, parse_failure, stat},
    flow::{FlowEntry, FlowKey},
    limits, maps as names,
};

use super::{LearningView, PolicyView};
use crate::{compiled::CompiledPolicy, events::action_name, pins};

/// One scrape's worth of metric vectors, created fresh so that rows of a previous policy (a
/// rule renamed, a service removed) disappear with it.
struct Families {
    up: IntGaugeVec,
    packets: IntCounterVec,
    bytes: IntCounterVec,
    flows: IntCounterVec,
    parse_failures: IntCounterVec,
    events_lost: IntCounterVec,
    rejects: IntCounterVec,
    server_names: IntCounterVec,
    stun: IntCounterVec,
    blind_spots: IntCounterVec,
    dns_responses: IntCounterVec,
    dns_endpoints: IntCounterVec,
    dns_learned: IntGaugeVec,
    quic: IntCounterVec,
    map_entries: IntGaugeVec,
    map_capacity: IntGaugeVec,
    catalog_age: IntGaugeVec,
    service_info: IntGaugeVec,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
}

impl Families {
    fn new() -> Self {
        let by_decision = ["service", "action", "rule"];
        Self {
            up: gauge(
                "vigie_datapath_up",
                "1 when the datapath's pinned maps could be read at this scrape.",
                &[],
            ),
            packets: counter(
                "vigie_packets_total",
                "Packets by service, effective action and deciding rule.",
                &by_decision,
            ),
            bytes: counter(
                "vigie_bytes_total",
                "Bytes by service, effective action and deciding rule.",
                &by_decision,
            ),
            flows: counter(
                "vigie_flows_total",
                "New flows by service, effective action, deciding rule and source group.",
                &["service", "action", "rule", "group"],
            ),
            parse_failures: counter(
                "vigie_parse_failures_total",
                "Packets that could not be parsed, by reason.",
                &["reason"],
            ),
            events_lost: counter(
                "vigie_events_lost_total",
                "Flow events dropped in the kernel because the ring buffer was full.",
                &[],
            ),
            rejects: counter(
                "vigie_rejects_total",
                "Packets of rejected flows from internal hosts: answered (TCP reset, ICMP \
                 unreachable), or only dropped because no answer applies.",
                &["answer"],
            ),
            server_names: counter(
                "vigie_tls_server_names_total",
                "TLS ClientHellos of flows from the LAN: server name read, absent (or \
                 encrypted), or unreadable (a blind spot).",
                &["result"],
            ),
            stun: counter(
                "vigie_stun_recognised_total",
                "UDP flows that no address explained, told by a vendor's STUN attribute.",
                &[],
            ),
            blind_spots: counter(
                "vigie_blind_spots_total",
                "What vigie saw but could not classify, by kind: TLS hellos unreadable or \
                 with an encrypted inner hello, flows to encrypted DNS resolvers, QUIC of an \
                 unknown version, unreadable or named too late, DNS responses unreadable, \
                 payloads the daemon could not be given.",
                &["kind"],
            ),
            dns_responses: counter(
                "vigie_dns_responses_total",
                "DNS responses handed to the daemon, and how many it could not read.",
                &["result"],
            ),
            dns_endpoints: counter(
                "vigie_dns_endpoints_total",
                "Addresses of catalog names learned from DNS (or renewed), expired, or \
                 evicted to respect dns_max_entries.",
                &["event"],
            ),
            dns_learned: gauge(
                "vigie_dns_learned_endpoints",
                "Addresses learned from DNS in force now.",
                &[],
            ),
            quic: counter(
                "vigie_quic_total",
                "QUIC flows from the LAN: Initials handed over, names read, catalog names, datagrams held.",
                &["event"],
            ),
            map_entries: gauge(
                "vigie_map_entries",
                "Entries in a datapath map (tries: the policy in force).",
                &["map"],
            ),
            map_capacity: gauge(
                "vigie_map_capacity",
                "Capacity of a datapath map (tries: one policy slot of two).",
                &["map"],
            ),
            catalog_age: gauge(
                "vigie_catalog_data_age_seconds",
                "Age of each catalog service's data (since its retrieval date).",
                &["service"],
            ),
            service_info: gauge(
                "vigie_service_info",
                "Each service of the policy in force, with its operator's jurisdiction (ISO 3166-1 alpha-2) and category; always 1.",
                &["service", "jurisdiction", "category"],
            ),
        }
    }

    fn all(&self) -> [&dyn Collector; 18] {
        [
            &self.up,
            &self.packets,
            &self.bytes,
            &self.flows,
            &self.parse_failures,
            &self.events_lost,
            &self.rejects,
            &self.server_names,
            &self.stun,
            &self.blind_spots,
            &self.dns_responses,
            &self.dns_endpoints,
            &self.dns_learned,
            &self.quic,
            &self.map_entries,
            &self.map_capacity,
            &self.catalog_age,
            &self.service_info,
        ]
    }
}

pub(super) struct DatapathCollector {
    pin_dir: PathBuf,
    policy: Arc<Mutex<Option<PolicyView>>>,
    learning: Arc<Mutex<LearningView>>,
    descs: Vec<Desc>,
}

impl DatapathCollector {
    pub(super) fn new(
        pin_dir: PathBuf,
        policy: Arc<Mutex<Option<PolicyView>>>,
        learning: Arc<Mutex<LearningView>>,
    ) -> Self {
        let descs = Families::new()
            .all()
            .iter()
            .flat_map(|c| c.desc().into_iter().cloned())
            .collect();
        Self {
            pin_dir,
            policy,
            learning,
            descs,
        }
    }

    fn open(&self, name: &str) -> Option<Map> {
        let data = MapData::from_pin(pins::map_path(&self.pin_dir, name)).ok()?;
        let map = match name {
            names::COUNTERS => Map::PerCpuHashMap(data),
            names::PARSE_FAILURES | names::STATS | names::COUNTER_CACHE => Map::PerCpuArray(data),
            names::FLOWS => Map::LruHashMap(data),
            _ => return None,
        };
        Some(map)
    }

    /// Fills `f`; false when a map could not be read (the datapath is not loaded).
    fn read(&self, f: &Families, view: Option<&PolicyView>) -> bool {
        let policy = view.map(|v| v.policy.as_ref());
        let Some(counters) = self
            .open(names::COUNTERS)
            .and_then(|m| PerCpuHashMap::<MapData, CounterKey, CounterValue>::try_from(m).ok())
        else {
            return false;
        };
        let Some(cache) = self
            .open(names::COUNTER_CACHE)
            .and_then(|m| PerCpuArray::<MapData, CounterRow>::try_from(m).ok())
        else {
            return false;
        };
        // The hash map's own rows, for its use against its capacity.
        let rows = counters.keys().flatten().count();
        let Ok(sums) = crate::maps::sum_counters(&counters, &cache) else {
            return false;
        };
        for (
            key,
            CounterValue {
                packets,
                bytes,
                flows,
            },
        ) in sums
        {
            // Rows are named after the policy in force: before the daemon has one (the first
            // moments of a restart, over maps that already count), they are left out rather
            // than exported under placeholder names that then go stale.
            if policy.is_none() {
                break;
            }
            let [service, action, rule, group] = row_labels(policy, key);
            let labels = [service, action, rule];
            f.packets.with_label_values(&labels).inc_by(packets);
            f.bytes.with_label_values(&labels).inc_by(bytes);
            f.flows
                .with_label_values(&[service, action, rule, group])
                .inc_by(flows);
        }
        set_entries(f, "counters", rows, limits::COUNTER_CAPACITY);

        let Some(failures) = self.sum(names::PARSE_FAILURES, parse_failure::COUNT) else {
            return false;
        };
        for (reason, n) in parse_failure::NAMES.iter().zip(failures) {
            f.parse_failures.with_label_values(&[reason]).inc_by(n);
        }
        let Some(stats) = self.sum(names::STATS, stat::COUNT) else {
            return false;
        };
        f.events_lost
            .with_label_values::<&str>(&[])
            .inc_by(stats[stat::EVENTS_LOST as usize]);
        f.rejects
            .with_label_values(&["sent"])
            .inc_by(stats[stat::REJECTS_ANSWERED as usize]);
        f.rejects
            .with_label_values(&["none"])
            .inc_by(stats[stat::REJECTS_DROPPED as usize]);
        f.stun
            .with_label_values::<&str>(&[])
            .inc_by(stats[stat::STUN_RECOGNISED as usize]);
        for (result, index) in [
            ("read", stat::SNI_READ),
            ("absent", stat::SNI_ABSENT),
            ("unreadable", stat::SNI_UNREADABLE),
        ] {
            f.server_names
                .with_label_values(&[result])
                .inc_by(stats[index as usize]);
        }
        self.read_learning(f, &stats);

        if let Some(flows) = self
            .open(names::FLOWS)
            .and_then(|m| BpfHashMap::<MapData, FlowKey, FlowEntry>::try_from(m).ok())
        {
            set_entries(
                f,
                "flows",
                flows.keys().flatten().count(),
                limits::FLOW_CAPACITY,
            );
        }
        if let Some(p) = policy {
            let dst = limits::DST_PREFIX_CAPACITY / limits::SLOTS;
            let src = limits::SRC_PREFIX_CAPACITY / limits::SLOTS;
            let dst_v4 = limits::MAX_DST_V4_PREFIXES;
            set_entries(f, "dst_v4", p.destinations_v4.len(), dst_v4);
            // The IPv4 table's real limit: /24 networks that hold longer prefixes.
            set_entries(
                f,
                "dst_v4_groups",
                crate::dst_v4::groups_needed(&p.destinations_v4),
                limits::DST_V4_GROUPS_PER_SLOT,
            );
            set_entries(f, "dst_v6", p.destinations_v6.len(), dst);
            set_entries(f, "src_v4", p.sources_v4.len(), src);
            set_entries(f, "src_v6", p.sources_v6.len(), src);
            set_entries(f, "rules", p.rules.len(), limits::MAX_RULES);
        }
        true
    }

    /// The blind spots, DNS learning and QUIC: kernel counts beside the learner's (which
    /// restart from zero with the daemon: a counter reset Prometheus handles).
    fn read_learning(&self, f: &Families, stats: &[u64]) {
        let learner = self.learning.lock().map(|l| *l).unwrap_or_default();
        let s = learner.stats;
        let kernel = |i: u32| stats[i as usize];
        for (kind, n) in crate::learning::blind_spots(stats, &s) {
            f.blind_spots.with_label_values(&[kind]).inc_by(n);
        }
        f.dns_responses
            .with_label_values(&["handed"])
            .inc_by(kernel(stat::DNS_RESPONSES));
        f.dns_responses
            .with_label_values(&["unreadable"])
            .inc_by(s.dns_unreadable);
        for (event, n) in [
            ("learned", s.addresses_learned),
            ("expired", s.addresses_expired),
            ("evicted", s.addresses_evicted),
        ] {
            f.dns_endpoints.with_label_values(&[event]).inc_by(n);
        }
        f.dns_learned
            .with_label_values::<&str>(&[])
            .set(i64::try_from(learner.learned).unwrap_or(i64::MAX));
        for (event, n) in [
            ("initial-handed", kernel(stat::QUIC_INITIALS)),
            ("name-read", s.quic_names_read),
            ("catalog-service", s.quic_services),
            ("datagram-held", kernel(stat::QUIC_HELD)),
        ] {
            f.quic.with_label_values(&[event]).inc_by(n);
        }
    }

    fn sum(&self, name: &str, count: u32) -> Option<Vec<u64>> {
        let array = PerCpuArray::<MapData, u64>::try_from(self.open(name)?).ok()?;
        // Indexes past the map's end read 0: a map pinned by an earlier version, adopted with
        // fewer entries than this one counts, still reports what it has.
        Some(
            (0..count)
                .map(|i| array.get(&i, 0).map_or(0, |v| v.iter().sum()))
                .collect(),
        )
    }
}

/// Label values of a counter row: service, action, rule, group, named by the policy in
/// force. Rows a previous policy left behind are named by this one's tables: the daemon keeps
/// each rule's, group's and service's number across reloads and restarts, and reserves the
/// numbers of removed rules and groups with their names (an unknown number reads "unknown" or
/// "none").
fn row_labels(policy: Option<&CompiledPolicy>, key: CounterKey) -> [&str; 4] {
    let service = policy
        .and_then(|p| p.service_name(key.service.into()))
        .unwrap_or("none");
    let rule = policy.map_or("unknown", |p| p.rule_name(key.rule.into()));
    let group = policy.map_or("unknown", |p| p.group_name(key.group.into()));
    [service, action_name(key.action.into()), rule, group]
}

fn set_entries(f: &Families, map: &str, entries: usize, capacity: u32) {
    f.map_entries
        .with_label_values(&[map])
        .set(i64::try_from(entries).unwrap_or(i64::MAX));
    f.map_capacity
        .with_label_values(&[map])
        .set(i64::from(capacity));
}

impl Collector for DatapathCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let f = Families::new();
        let view = self.policy.lock();
        let view = view.as_deref().ok().and_then(Option::as_ref);
        let up = self.read(&f, view);
        f.up.with_label_values::<&str>(&[]).set(i64::from(up));
        if let Some(view) = view {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs().cast_signed());
            for s in view
                .policy
                .services
                .iter()
                .skip(1)
                .filter(|s| !s.id.is_empty())
            {
                f.service_info
                    .with_label_values(&[&s.id, &s.jurisdiction, &s.category])
                    .set(1);
            }
            for (service, retrieved) in &view.retrieved {
                f.catalog_age
                    .with_label_values(&[service])
                    .set((now - retrieved).max(0));
            }
        }
        f.all().iter().flat_map(|c| c.collect()).collect()
    }
}

#[cfg(test)]
mod tests {
    use vigie_common::action::{self, rule};

    use super::*;

    #[test]
    fn counter_rows_are_labelled_with_names_never_numbers() {
        let policy = crate::policy::load_embedded().unwrap().policy;
        let zoom =
            u16::try_from(policy.services.iter().position(|s| s.id == "zoom").unwrap()).unwrap();
        let key = CounterKey {
            rule: 1,
            service: zoom,
            group: 0,
            action: action::DROP as u8,
            pad: 0,
        };
        assert_eq!(
            row_labels(Some(&policy), key),
            ["zoom", "block", policy.rule_name(1), "none"]
        );
        let default = CounterKey {
            rule: rule::DEFAULT as u16,
            action: action::ALLOW as u8,
            ..CounterKey::default()
        };
        assert_eq!(
            row_labels(Some(&policy), default),
            ["none", "allow", "default", "none"]
        );
        assert_eq!(row_labels(None, key)[2], "unknown");
    }
}
