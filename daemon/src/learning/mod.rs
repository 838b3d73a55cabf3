//! What the daemon learns from the payloads the kernel hands over (see
//! `vigie_common::payload`), and writes back for the kernel to use:
//!
//! - DNS responses: the A and AAAA answers for names under a catalog domain (CNAME chains
//!   followed) become learned endpoints, with the TTL clamped to the policy's bounds, bounded
//!   in number, removed when expired (`table`), and written into the kernel's `LEARNED` table
//!   in the active policy slot, and in the next one before a swap.
//! - QUIC client Initials: decrypted (RFC 9001, `quic`), their ClientHello's server name
//!   matched to the catalog domains like a TLS server name (`names`); the flow's entry then
//!   gets the service as evidence and is decided again by the kernel, which meanwhile held
//!   the server's datagrams back.
//!
//! One learner serves the daemon (fed by the ring's reader task) and `vigie replay` (fed after
//! each packet), so that both learn exactly alike.

pub mod dns;
mod filter;
pub mod names;
pub mod quic;
pub mod record;
pub mod table;

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
    sync::Arc,
    time::Duration,
};

use aya::maps::{HashMap as BpfHashMap, MapData};
use tracing::debug;
use vigie_common::{
    action::evidence,
    flow::{FlowEntry, FlowKey, flags},
    learned::{LearnedEndpoint, LearnedKey},
    payload::kind,
};

use crate::compiled::CompiledPolicy;
pub use filter::LearnedFilter;
use quic::{InitialReader, Progress};
use table::{Change, LearnedTable};

/// QUIC connections whose ClientHello is being read at once; beyond, the oldest is dropped
/// (its flow then goes on as its address decided, when the kernel's deadline passes).
const MAX_QUIC_READERS: usize = 4096;
/// A reader left without news this long is dropped (the kernel stopped waiting long before).
const QUIC_READER_LIFETIME_NS: u64 = 10_000_000_000;

/// Counts of what the learner did, for metrics and reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LearningStats {
    pub dns_responses: u64,
    /// Responses that do not parse (or that the kernel copied only in part).
    pub dns_unreadable: u64,
    /// Addresses learned or renewed for a catalog service.
    pub addresses_learned: u64,
    /// Learned addresses evicted to respect `dns_max_entries`.
    pub addresses_evicted: u64,
    pub addresses_expired: u64,
    /// QUIC ClientHellos read, and how many named a catalog service.
    pub quic_names_read: u64,
    pub quic_services: u64,
    /// QUIC ClientHellos with an Encrypted Client Hello extension (the name read is the
    /// outer one): a blind spot.
    pub quic_encrypted_hellos: u64,
    /// QUIC Initials that did not decrypt or parse: a blind spot.
    pub quic_unreadable: u64,
    /// Kernel writes that failed (a full table, a flow forgotten in between).
    pub kernel_writes_failed: u64,
}

/// What one payload taught, for whoever watches (metrics, benchmarks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lesson {
    Nothing,
    /// DNS: this many addresses of catalog services became active in the kernel.
    Endpoints {
        learned: usize,
    },
    /// QUIC: the flow's server name was read (service id if the catalog knows it).
    QuicName {
        name: Option<String>,
        service: Option<u32>,
    },
}

/// The policy the learner writes for: its slot and its tables.
struct Written {
    slot: u32,
    policy: Arc<CompiledPolicy>,
}

pub struct Learner {
    flows: BpfHashMap<MapData, FlowKey, FlowEntry>,
    learned: BpfHashMap<MapData, LearnedKey, LearnedEndpoint>,
    filter: LearnedFilter,
    active: Option<Written>,
    table: LearnedTable,
    /// The addresses written in each slot, to clear a slot before it is written again.
    in_slot: [BTreeSet<IpAddr>; 2],
    quic: HashMap<FlowKey, (InitialReader, u64)>,
    /// Whether the kernel table was read once (what an earlier daemon left there).
    adopted: bool,
    /// Addresses left the table since the last sweep other than by expiry.
    evicted_since_sweep: bool,
    pub stats: LearningStats,
}

impl Learner {
    /// A learner over its own handles on the flow and learned tables and the learned
    /// table's filter.
    #[must_use]
    pub fn new(
        flows: BpfHashMap<MapData, FlowKey, FlowEntry>,
        learned: BpfHashMap<MapData, LearnedKey, LearnedEndpoint>,
        filter: LearnedFilter,
    ) -> Self {
        Self {
            flows,
            learned,
            filter,
            active: None,
            table: LearnedTable::default(),
            in_slot: [BTreeSet::new(), BTreeSet::new()],
            quic: HashMap::new(),
            adopted: false,
            evicted_since_sweep: false,
            stats: LearningStats::default(),
        }
    }

    /// A daemon that starts over pinned maps finds the learned addresses of the one before:
    /// those in force in the other slot (the one packets read now) are adopted, unexpired,
    /// with their services named by `policy` (the ids of an unchanged catalog); the slot about
    /// to be written is cleared of whatever an older policy left there.
    fn adopt(&mut self, slot: u32, policy: &CompiledPolicy) {
        let now = monotonic_ns();
        let keys: Vec<LearnedKey> = self.learned.keys().filter_map(Result::ok).collect();
        for key in keys {
            let addr = maps_address(&key);
            let in_force = u32::from(key.slot) != slot;
            let kept = in_force
                && self.learned.get(&key, 0).is_ok_and(|value| {
                    value.expires_ns > now
                        && value.service != 0
                        && policy
                            .services
                            .get(value.service as usize)
                            // A number no service holds now (a removed service's) is not
                            // adopted under the empty name of the gap.
                            .filter(|s| !s.id.is_empty())
                            .is_some_and(|s| {
                                self.table.adopt(
                                    addr,
                                    &s.id,
                                    value.expires_ns,
                                    policy.learning.max_entries as usize,
                                )
                            })
                });
            if kept {
                self.in_slot[usize::from(key.slot & 1)].insert(addr);
            } else {
                let _ = self.learned.remove(&key);
            }
        }
    }

    /// Whether the kernel's filter lets a packet of `slot` look `addr` up in the learned
    /// table (a set bit: maybe learned; clear: certainly not).
    pub fn filter_holds(&self, slot: u32, addr: IpAddr) -> Result<bool, aya::maps::MapError> {
        self.filter.holds(slot, addr)
    }

    /// Learned endpoints kept now.
    #[must_use]
    pub fn learned_count(&self) -> usize {
        self.table.len()
    }

    /// The learned endpoints, for reports: address, service, expiry (monotonic ns), names.
    pub fn endpoints(&self) -> impl Iterator<Item = (&IpAddr, &table::Endpoint)> {
        self.table.iter()
    }

    /// A policy was written into `slot` and is about to be made active: its learned table
    /// is filled there first (services by catalog id, so a changed catalog maps them anew),
    /// so that the swap changes no learned verdict it does not have to.
    pub fn policy_written(&mut self, slot: u32, policy: Arc<CompiledPolicy>) {
        let slot = slot & 1;
        if !self.adopted {
            self.adopted = true;
            self.adopt(slot, &policy);
        }
        let gone = self.table.shrink_to(policy.learning.max_entries as usize);
        self.stats.addresses_evicted += gone.len() as u64;
        for addr in std::mem::take(&mut self.in_slot[slot as usize]) {
            let _ = self.learned.remove(&learned_key(slot, addr));
        }
        // The slot is not the one packets read: its filter is cleared, then set anew below.
        if self.filter.rebuild(slot, &BTreeSet::new()).is_err() {
            self.stats.kernel_writes_failed += 1;
        }
        let written = Written { slot, policy };
        let entries: Vec<(IpAddr, String, u64)> = self
            .table
            .iter()
            .map(|(addr, e)| (*addr, e.service.clone(), e.expires_ns))
            .collect();
        for (addr, service, expires_ns) in entries {
            self.write_endpoint(&written, addr, &service, expires_ns);
        }
        // The slot the previous policy used is cleared when it is written again.
        self.active = Some(written);
    }

    /// Reads one record of the payload ring.
    pub fn payload(&mut self, record: &[u8]) -> Lesson {
        let Some(payload) = record::decode(record) else {
            return Lesson::Nothing;
        };
        match payload.kind {
            kind::DNS_UDP | kind::DNS_TCP => self.dns(&payload),
            kind::QUIC_CLIENT => self.quic_datagram(&payload),
            _ => Lesson::Nothing,
        }
    }

    /// Removes what expired at `now_ns` (`CLOCK_MONOTONIC`), here and in the kernel, and
    /// forgets QUIC readers left without news.
    pub fn sweep(&mut self, now_ns: u64) {
        let mut expired = false;
        for addr in self.table.expire(now_ns) {
            expired = true;
            self.stats.addresses_expired += 1;
            for slot in 0..2 {
                if self.in_slot[slot].remove(&addr) {
                    let _ = self.learned.remove(&learned_key(slot as u32, addr));
                }
            }
        }
        // Also after evictions (by `dns_max_entries`), which leave their bits until here.
        if expired || self.evicted_since_sweep {
            self.evicted_since_sweep = false;
            for slot in 0..2 {
                if self
                    .filter
                    .rebuild(slot, &self.in_slot[slot as usize])
                    .is_err()
                {
                    self.stats.kernel_writes_failed += 1;
                }
            }
        }
        self.quic
            .retain(|_, (_, seen)| now_ns.saturating_sub(*seen) < QUIC_READER_LIFETIME_NS);
    }

    fn dns(&mut self, payload: &record::Payload<'_>) -> Lesson {
        self.stats.dns_responses += 1;
        let responses = if payload.kind == kind::DNS_TCP {
            dns::parse_tcp(payload.bytes)
        } else if payload.cut() {
            Err(dns::DnsError::Truncated {
                what: "message (longer than the kernel copies)",
                offset: payload.bytes.len(),
            })
        } else {
            dns::parse(payload.bytes).map(|r| vec![r])
        };
        let responses = match responses {
            Ok(r) => r,
            Err(e) => {
                self.stats.dns_unreadable += 1;
                debug!("unreadable DNS response: {e}");
                return Lesson::Nothing;
            }
        };
        let Some(active) = self.active.take() else {
            return Lesson::Nothing;
        };
        let mut learned = 0;
        for response in &responses {
            for answer in response.addresses() {
                // The last name that a catalog domain holds along the chain decides: the
                // address belongs to that service (a vendor's name behind a customer's alias).
                // An answer record the question does not lead to (unrelated glue a hostile
                // server could add) teaches nothing.
                if answer.names.first().map(String::as_str) != response.question() {
                    continue;
                }
                let matched = answer.names.iter().rev().find_map(|name| {
                    names::service_of(&active.policy, name).map(|service| (service, name))
                });
                let Some((service, matched)) = matched else {
                    continue;
                };
                // The question and the name that matched, no more: what a report needs, in
                // bounded memory whatever the chain's length.
                let mut kept_names = answer.names[..1].to_vec();
                if matched != &answer.names[0] {
                    kept_names.push(matched.clone());
                }
                let Some(info) = active.policy.services.get(service as usize) else {
                    continue;
                };
                let catalog_id = info.id.clone();
                let change = self.table.learn(
                    answer.address,
                    &catalog_id,
                    answer.ttl,
                    kept_names,
                    payload.timestamp_ns,
                    &active.policy.learning,
                );
                if let Change::Added {
                    evicted: Some(victim),
                } = change
                {
                    self.stats.addresses_evicted += 1;
                    self.evicted_since_sweep = true;
                    for slot in 0..2 {
                        if self.in_slot[slot].remove(&victim) {
                            let _ = self.learned.remove(&learned_key(slot as u32, victim));
                        }
                    }
                }
                let expires_ns = self.table.get(&answer.address).map_or(0, |e| e.expires_ns);
                if self.write_endpoint(&active, answer.address, &catalog_id, expires_ns) {
                    self.stats.addresses_learned += 1;
                    learned += 1;
                }
            }
        }
        self.active = Some(active);
        Lesson::Endpoints { learned }
    }

    /// Writes one endpoint into the kernel's table in `written`'s slot; false if the service
    /// is not in that policy or the write failed.
    fn write_endpoint(
        &mut self,
        written: &Written,
        addr: IpAddr,
        service: &str,
        expires_ns: u64,
    ) -> bool {
        let Some(id) = written.policy.services.iter().position(|s| s.id == service) else {
            return false;
        };
        let value = LearnedEndpoint {
            service: id as u32,
            pad: 0,
            expires_ns,
        };
        // The bit before the entry: a packet that finds the entry finds its bit.
        if self.filter.mark(written.slot, addr).is_err() {
            self.stats.kernel_writes_failed += 1;
            return false;
        }
        if self
            .learned
            .insert(&learned_key(written.slot, addr), &value, 0)
            .is_err()
        {
            self.stats.kernel_writes_failed += 1;
            return false;
        }
        self.in_slot[written.slot as usize].insert(addr);
        true
    }

    fn quic_datagram(&mut self, payload: &record::Payload<'_>) -> Lesson {
        if self.quic.len() >= MAX_QUIC_READERS && !self.quic.contains_key(&payload.key) {
            let oldest = self
                .quic
                .iter()
                .min_by_key(|(_, (_, seen))| *seen)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                self.quic.remove(&oldest);
            }
        }
        let (reader, seen) = self
            .quic
            .entry(payload.key)
            .or_insert_with(|| (InitialReader::new(), payload.timestamp_ns));
        *seen = payload.timestamp_ns;
        let progress = reader.push(payload.bytes);
        let hello = match progress {
            Ok(Progress::NeedMore) => return Lesson::Nothing,
            Ok(Progress::Hello(hello)) => hello,
            Err(e) => {
                debug!("unreadable QUIC Initial: {e}");
                self.quic.remove(&payload.key);
                self.stats.quic_unreadable += 1;
                self.release(&payload.key, None);
                return Lesson::QuicName {
                    name: None,
                    service: None,
                };
            }
        };
        self.quic.remove(&payload.key);
        self.stats.quic_names_read += 1;
        if hello.ech {
            self.stats.quic_encrypted_hellos += 1;
        }
        let service = match (&self.active, &hello.server_name) {
            (Some(active), Some(name)) => names::service_of(&active.policy, name),
            _ => None,
        };
        if service.is_some() {
            self.stats.quic_services += 1;
        }
        self.release(&payload.key, service);
        Lesson::QuicName {
            name: hello.server_name,
            service,
        }
    }

    /// Ends the kernel's wait on a QUIC flow: with a `service`, the flow gets it as evidence
    /// and is decided again at its next packet (its generation is made stale); without, it
    /// goes on as its address decided.
    fn release(&mut self, key: &FlowKey, service: Option<u32>) {
        let Ok(mut entry) = self.flows.get(key, 0) else {
            self.stats.kernel_writes_failed += 1;
            return;
        };
        entry.flags &= !flags::QUIC_PENDING;
        if let Some(service) = service {
            entry.service = service;
            entry.evidence = evidence::QUIC_SNI;
            entry.generation = 0;
        }
        if self.flows.insert(key, &entry, 0).is_err() {
            self.stats.kernel_writes_failed += 1;
        }
    }
}

/// The address of a kernel key.
fn maps_address(key: &LearnedKey) -> IpAddr {
    crate::maps::address(key.family, &key.addr)
}

/// The kernel key of an address in a slot.
#[must_use]
pub fn learned_key(slot: u32, addr: IpAddr) -> LearnedKey {
    let (family, bytes) = match addr {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            (4, b)
        }
        IpAddr::V6(a) => (6, a.octets()),
    };
    LearnedKey {
        slot: slot as u8,
        family,
        pad: [0; 2],
        addr: bytes,
    }
}

/// What vigie saw but could not classify, by kind: the kernel's counts (`stat::*`, summed over
/// CPUs) beside the learner's. Metrics and replay report the same list.
#[must_use]
pub fn blind_spots(kernel: &[u64], learner: &LearningStats) -> [(&'static str, u64); 9] {
    use vigie_common::counters::stat;
    let k = |i: u32| kernel.get(i as usize).copied().unwrap_or(0);
    [
        ("tls-unreadable", k(stat::SNI_UNREADABLE)),
        ("tls-encrypted-hello", k(stat::SNI_ENCRYPTED)),
        ("encrypted-dns", k(stat::ENCRYPTED_DNS)),
        ("quic-unknown-version", k(stat::QUIC_UNKNOWN_VERSION)),
        ("quic-timed-out", k(stat::QUIC_TIMED_OUT)),
        ("quic-unreadable", learner.quic_unreadable),
        ("quic-encrypted-hello", learner.quic_encrypted_hellos),
        ("dns-unreadable", learner.dns_unreadable),
        ("payloads-lost", k(stat::PAYLOADS_LOST)),
    ]
}

/// `CLOCK_MONOTONIC` now, in ns: the kernel's clock (`bpf_ktime_get_ns`).
#[must_use]
pub fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        t.tv_sec().cast_unsigned() * 1_000_000_000 + t.tv_nsec().cast_unsigned()
    })
}

/// How long after it crossed the hook a payload's lesson became active in the kernel.
#[must_use]
pub fn delay_since(timestamp_ns: u64) -> Duration {
    Duration::from_nanos(monotonic_ns().saturating_sub(timestamp_ns))
}
