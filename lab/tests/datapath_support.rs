//! Shared by the `datapath_*` tests (each includes it with `#[path]`): the test network's
//! addresses, compiled policies built as plain data, and assertions on what the kernel
//! program recorded. The policies are built directly rather than compiled from TOML, so that
//! these tests judge the kernel program alone, whatever the compiler does.
#![allow(dead_code, reason = "each test file uses a part")]
#![allow(clippy::missing_panics_doc, reason = "test helpers panic on purpose")]

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use vigie::{
    compiled::{CompiledPolicy, LearningSettings, Reserved, RuleInfo, ServiceInfo},
    sandbox::{Hook, Outcome, Sandbox},
};
use vigie_common::{
    action::{self, mode},
    counters::{CounterKey, CounterValue, parse_failure, stat},
    flow::{FlowEntry, FlowKey},
    policy::{Destination, Rule, Settings, condition},
    sni::domain_hash,
};
use vigie_lab::packet::Frame;

/// Kernel service ids of the test catalog.
pub const ZOOM: u32 = 1;
pub const VISIO: u32 = 2;
/// Kernel group ids.
pub const FINANCE: u32 = 1;
pub const RESEARCH: u32 = 2;
/// Destination classes (bit numbers): the operator's jurisdiction.
pub const CLASS_US: u32 = 0;
pub const CLASS_FR: u32 = 1;

/// Internal hosts: one per group and one in no group.
pub const FINANCE_HOST: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 5);
pub const RESEARCH_HOST: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 7);
pub const UNGROUPED_HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 9);
pub const FINANCE_HOST6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 5);
pub const RESEARCH_HOST6: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 7);

/// Remote hosts: Zoom (in `3.7.35.0/25` and `2407:30c0::/32`, Zoom's published ranges), the
/// European Visio, and an address of no known service.
pub const ZOOM_HOST: Ipv4Addr = Ipv4Addr::new(3, 7, 35, 10);
pub const ZOOM_HOST6: Ipv6Addr = Ipv6Addr::new(0x2407, 0x30c0, 0, 0, 0, 0, 0, 0x10);
pub const VISIO_HOST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
pub const VISIO_HOST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 5, 0, 0, 0, 0, 0x10);
pub const UNKNOWN_HOST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 50);
pub const UNKNOWN_HOST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);

/// Both outbound hooks: the parsing cases hold on each.
pub const OUTBOUND_HOOKS: [Hook; 3] = [Hook::XdpOutbound, Hook::TcOutbound, Hook::TcLanIngress];

/// A rule that matches everything (any protocol, any port) until narrowed.
#[must_use]
pub fn rule(action: u32) -> Rule {
    Rule {
        action,
        port_min: 0,
        port_max: u16::MAX,
        ..Rule::default()
    }
}

/// Narrowing a rule, in the words of policy.toml.
pub trait RuleExt {
    #[must_use]
    fn services(self, ids: &[u32]) -> Self;
    #[must_use]
    fn groups(self, ids: &[u32]) -> Self;
    #[must_use]
    fn except_groups(self, ids: &[u32]) -> Self;
    #[must_use]
    fn classes(self, bits: &[u32]) -> Self;
    #[must_use]
    fn unknown_service(self) -> Self;
    #[must_use]
    fn proto(self, proto: u8) -> Self;
    #[must_use]
    fn ports(self, min: u16, max: u16) -> Self;
}

fn bits(ids: &[u32]) -> u64 {
    ids.iter().fold(0, |set, id| set | 1 << id)
}

impl RuleExt for Rule {
    fn services(mut self, ids: &[u32]) -> Self {
        for &id in ids {
            self.services[(id / 64) as usize] |= 1 << (id % 64);
        }
        self.conditions |= condition::SERVICES;
        self
    }
    fn groups(mut self, ids: &[u32]) -> Self {
        self.groups |= bits(ids);
        self.conditions |= condition::GROUPS;
        self
    }
    fn except_groups(mut self, ids: &[u32]) -> Self {
        self.except_groups |= bits(ids);
        self
    }
    fn classes(mut self, class_bits: &[u32]) -> Self {
        self.classes |= bits(class_bits);
        self.conditions |= condition::CLASSES;
        self
    }
    fn unknown_service(mut self) -> Self {
        self.conditions |= condition::NO_SERVICE;
        self
    }
    fn proto(mut self, proto: u8) -> Self {
        self.proto = u32::from(proto);
        self
    }
    fn ports(mut self, min: u16, max: u16) -> Self {
        self.port_min = min;
        self.port_max = max;
        self
    }
}

/// A policy over the test catalog (Zoom, Visio) and groups (finance, research).
#[derive(Clone, Debug)]
pub struct PolicySpec {
    pub default_action: u32,
    pub mode: u32,
    pub unparsed_action: u32,
    pub rules: Vec<(String, Rule)>,
    /// Whether Zoom's prefixes are in the address table (a catalog update may drop them).
    pub zoom_prefixes: bool,
}

impl PolicySpec {
    /// Default allow, enforce, unparsed packets allowed, no rule.
    #[must_use]
    pub fn new() -> Self {
        Self {
            default_action: action::ALLOW,
            mode: mode::ENFORCE,
            unparsed_action: action::ALLOW,
            rules: Vec::new(),
            zoom_prefixes: true,
        }
    }

    #[must_use]
    pub fn rule(mut self, name: &str, rule: Rule) -> Self {
        self.rules.push((name.to_owned(), rule));
        self
    }

    #[must_use]
    pub const fn default_action(mut self, action: u32) -> Self {
        self.default_action = action;
        self
    }

    #[must_use]
    pub const fn monitor_mode(mut self) -> Self {
        self.mode = mode::MONITOR;
        self
    }

    #[must_use]
    pub const fn unparsed(mut self, action: u32) -> Self {
        self.unparsed_action = action;
        self
    }

    #[must_use]
    pub const fn without_zoom_prefixes(mut self) -> Self {
        self.zoom_prefixes = false;
        self
    }

    #[must_use]
    pub fn compile(&self) -> CompiledPolicy {
        let service = |id: &str, name: &str, operator: &str, jurisdiction: &str| ServiceInfo {
            id: id.into(),
            name: name.into(),
            operator: operator.into(),
            jurisdiction: jurisdiction.into(),
            category: "video-conferencing".into(),
        };
        let zoom = Destination {
            classes: 1 << CLASS_US,
            service: ZOOM,
            pad: 0,
        };
        let visio = Destination {
            classes: 1 << CLASS_FR,
            service: VISIO,
            pad: 0,
        };
        let mut destinations_v4 = vec![(net4("198.51.100.0/24"), visio)];
        let mut destinations_v6 = vec![(net6("2001:db8:5::/48"), visio)];
        if self.zoom_prefixes {
            destinations_v4.push((net4("3.7.35.0/25"), zoom));
            destinations_v6.push((net6("2407:30c0::/32"), zoom));
        }
        CompiledPolicy {
            settings: Settings {
                generation: 0,
                rule_count: self.rules.len() as u32,
                default_action: self.default_action,
                mode: self.mode,
                unparsed_action: self.unparsed_action,
                holds_quic: 0,
            },
            rules: self
                .rules
                .iter()
                .zip(0u32..)
                .map(|((_, r), number)| Rule { number, ..*r })
                .collect(),
            rule_info: self
                .rules
                .iter()
                .map(|(name, _)| RuleInfo::named(name.clone()))
                .collect(),
            services: vec![
                service("", "", "", ""),
                service("zoom", "Zoom", "Zoom Video Communications", "US"),
                service("visio", "Visio", "DINUM", "FR"),
            ],
            groups: vec![String::new(), "finance".into(), "research".into()],
            reserved: Reserved::default(),
            destinations_v4,
            destinations_v6,
            sources_v4: vec![
                (net4("10.1.0.0/16"), FINANCE),
                (net4("10.2.0.0/16"), RESEARCH),
            ],
            sources_v6: vec![
                (net6("fd00:1::/32"), FINANCE),
                (net6("fd00:2::/32"), RESEARCH),
            ],
            stun_attributes: vec![(0x0101, ZOOM), (0x0103, ZOOM)],
            domains: vec![
                (domain_hash(b"zoom.us"), ZOOM),
                (domain_hash(b"visio.numerique.gouv.fr"), VISIO),
            ],
            port_signals: vec![((17, 8801), ZOOM), ((17, 8802), ZOOM)],
            learning: LearningSettings::DEFAULT,
            digest: "0".repeat(64),
        }
    }
}

impl Default for PolicySpec {
    fn default() -> Self {
        Self::new()
    }
}

fn net4(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn net6(s: &str) -> Ipv6Net {
    s.parse().unwrap()
}

/// A policy that blocks Zoom (rule 0, drop) and allows everything else by default.
#[must_use]
pub fn block_zoom() -> PolicySpec {
    PolicySpec::new().rule("block-zoom", rule(action::DROP).services(&[ZOOM]))
}

/// A fresh sandbox (failure action allow) with `policy` applied as generation 1.
#[must_use]
pub fn sandbox(policy: &PolicySpec) -> Sandbox {
    let mut sandbox = Sandbox::new().unwrap_or_else(|e| panic!("loading the kernel programs: {e}"));
    let generation = sandbox
        .apply(&policy.compile())
        .unwrap_or_else(|e| panic!("applying: {e}"));
    assert_eq!(generation, 1);
    sandbox
}

/// A packet of the flow that `outbound` opens, as `hook` sees it: outbound hooks see it as is,
/// the reply hook sees the remote side's answer (addresses and ports swapped).
#[must_use]
pub fn as_seen_by(hook: Hook, outbound: &Frame) -> Vec<u8> {
    match hook {
        Hook::XdpOutbound | Hook::TcOutbound | Hook::TcLanIngress => outbound.build(),
        Hook::TcReply => outbound.clone().reversed().build(),
    }
}

/// Keeps the calling thread on the CPU it runs on: the flow cache is per CPU, and
/// `BPF_PROG_TEST_RUN` runs the program on the caller's CPU.
pub fn stay_on_this_cpu() {
    // SAFETY: plain libc calls on a local, zeroed CPU set; pid 0 is the calling thread.
    unsafe {
        let cpu = usize::try_from(libc::sched_getcpu())
            .unwrap_or_else(|_| panic!("sched_getcpu: {}", std::io::Error::last_os_error()));
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let done = libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set);
        assert_eq!(
            done,
            0,
            "sched_setaffinity: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Runs one frame and returns the verdict.
pub fn run(sandbox: &mut Sandbox, hook: Hook, frame: &[u8]) -> Outcome {
    sandbox
        .run(hook, frame)
        .unwrap_or_else(|e| panic!("{hook:?} on a {}-byte frame: {e}", frame.len()))
}

/// An address as the flow key holds it.
#[must_use]
pub fn key_v4(addr: Ipv4Addr) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&addr.octets());
    out
}

#[must_use]
pub const fn key_v6(addr: Ipv6Addr) -> [u8; 16] {
    addr.octets()
}

/// The flow key the kernel should record for IPv4, oriented local -> remote.
#[must_use]
pub fn flow_key4(
    local: Ipv4Addr,
    local_port: u16,
    remote: Ipv4Addr,
    remote_port: u16,
    proto: u8,
) -> FlowKey {
    FlowKey {
        local: key_v4(local),
        remote: key_v4(remote),
        local_port,
        remote_port,
        proto,
        family: 4,
        pad: [0; 2],
    }
}

/// The flow key the kernel should record for IPv6, oriented local -> remote.
#[must_use]
pub const fn flow_key6(
    local: Ipv6Addr,
    local_port: u16,
    remote: Ipv6Addr,
    remote_port: u16,
    proto: u8,
) -> FlowKey {
    FlowKey {
        local: key_v6(local),
        remote: key_v6(remote),
        local_port,
        remote_port,
        proto,
        family: 6,
        pad: [0; 2],
    }
}

/// The only flow the sandbox remembers.
#[must_use]
pub fn only_flow(sandbox: &Sandbox) -> (FlowKey, FlowEntry) {
    let flows = sandbox.flows();
    assert_eq!(
        flows.len(),
        1,
        "expected exactly one flow, found {flows:#?}"
    );
    flows[0]
}

/// The entry of one flow.
#[must_use]
pub fn flow_entry(sandbox: &Sandbox, key: &FlowKey) -> FlowEntry {
    let flows = sandbox.flows();
    flows
        .iter()
        .find(|(k, _)| k == key)
        .map_or_else(|| panic!("no flow {key:?} among {flows:#?}"), |(_, e)| *e)
}

#[must_use]
pub fn parse_failures(sandbox: &Sandbox) -> [u64; parse_failure::COUNT as usize] {
    sandbox
        .parse_failures()
        .unwrap_or_else(|e| panic!("reading parse failures: {e}"))
}

#[must_use]
pub fn stats(sandbox: &Sandbox) -> [u64; stat::COUNT as usize] {
    sandbox
        .stats()
        .unwrap_or_else(|e| panic!("reading stats: {e}"))
}

#[must_use]
pub fn stat(sandbox: &Sandbox, index: u32) -> u64 {
    stats(sandbox)[index as usize]
}

#[must_use]
pub fn counters(sandbox: &Sandbox) -> Vec<(CounterKey, CounterValue)> {
    let mut rows = sandbox
        .counters()
        .unwrap_or_else(|e| panic!("reading counters: {e}"));
    rows.sort_by_key(|(k, _)| (k.rule, k.service, k.group, k.action));
    rows
}

/// The counter row of (rule, service, group, action), if any.
#[must_use]
pub fn counter(
    sandbox: &Sandbox,
    rule: u32,
    service: u32,
    group: u32,
    action: u32,
) -> Option<CounterValue> {
    let key = CounterKey {
        rule: rule as u16,
        service: service as u16,
        group: group as u16,
        action: action as u8,
        pad: 0,
    };
    counters(sandbox)
        .into_iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// Asserts that no packet failed to parse.
pub fn assert_no_parse_failure(sandbox: &Sandbox) {
    let failures = parse_failures(sandbox);
    assert!(
        failures.iter().all(|n| *n == 0),
        "unexpected parse failures: {}",
        describe(&failures)
    );
}

/// Asserts that exactly `n` packets failed to parse, all for `reason`.
pub fn assert_parse_failures(sandbox: &Sandbox, reason: u32, n: u64) {
    let failures = parse_failures(sandbox);
    let mut expected = [0u64; parse_failure::COUNT as usize];
    expected[reason as usize] = n;
    assert_eq!(
        failures,
        expected,
        "expected {n} x {}, got {}",
        parse_failure::NAMES[reason as usize],
        describe(&failures)
    );
}

/// Parse-failure counts by name, for messages.
#[must_use]
pub fn describe(failures: &[u64]) -> String {
    let named: Vec<String> = failures
        .iter()
        .enumerate()
        .filter(|(_, n)| **n != 0)
        .map(|(i, n)| format!("{}={n}", parse_failure::NAMES[i]))
        .collect();
    if named.is_empty() {
        "none".into()
    } else {
        named.join(", ")
    }
}
