//! The flow cache, events and counters of the kernel program, through `BPF_PROG_TEST_RUN`:
//! both directions of a connection share one entry oriented local -> remote, a flow opened from
//! outside is judged by its remote address, the first packet of a flow a rule decided is
//! reported once, and counters add up per (rule, service, group, action).

#[path = "datapath_support.rs"]
mod support;

use support::*;
use vigie::sandbox::{Hook, Outcome};
use vigie_common::{
    action::{self, evidence, rule as rule_no},
    counters::{CounterKey, CounterValue},
    flow::flags,
};
use vigie_lab::packet::{self, Frame};

const TCP: u8 = packet::IPPROTO_TCP;
const UDP: u8 = packet::IPPROTO_UDP;

#[test]
fn replies_share_the_flow_and_its_verdict() {
    if !vigie_lab::privilege::privileged("replies_share_the_flow_and_its_verdict") {
        return;
    }
    let policy = block_zoom().rule("allow-visio", rule(action::ALLOW).services(&[VISIO]));
    let zoom = Frame::udp4(FINANCE_HOST, 5000, ZOOM_HOST, 8801).payload(b"media");
    let visio6 = Frame::tcp6(FINANCE_HOST6, 40000, VISIO_HOST6, 443);
    for outbound in OUTBOUND_HOOKS {
        let mut sandbox = sandbox(&policy);
        let (request, reply) = (zoom.build(), zoom.clone().reversed().build());
        assert_eq!(
            run(&mut sandbox, outbound, &request),
            Outcome::Drop,
            "{outbound:?}"
        );
        assert_eq!(
            run(&mut sandbox, Hook::TcReply, &reply),
            Outcome::Drop,
            "{outbound:?}: the reply"
        );
        let (v6_request, v6_reply) = (visio6.build(), visio6.clone().reversed().build());
        assert_eq!(
            run(&mut sandbox, outbound, &v6_request),
            Outcome::Pass,
            "{outbound:?}"
        );
        assert_eq!(
            run(&mut sandbox, Hook::TcReply, &v6_reply),
            Outcome::Pass,
            "{outbound:?}: the reply"
        );

        let flows = sandbox.flows();
        assert_eq!(
            flows.len(),
            2,
            "{outbound:?}: one entry per connection: {flows:#?}"
        );
        let entry = flow_entry(
            &sandbox,
            &flow_key4(FINANCE_HOST, 5000, ZOOM_HOST, 8801, UDP),
        );
        assert_eq!(
            (entry.service, entry.rule, entry.action),
            (ZOOM, 0, action::DROP),
            "{outbound:?}"
        );
        assert_eq!(
            entry.flags,
            flags::MATCHED,
            "{outbound:?}: opened from the local side"
        );
        let entry = flow_entry(
            &sandbox,
            &flow_key6(FINANCE_HOST6, 40000, VISIO_HOST6, 443, TCP),
        );
        assert_eq!(
            (entry.service, entry.rule, entry.action),
            (VISIO, 1, action::ALLOW),
            "{outbound:?}"
        );

        // One event per connection, counters for both directions.
        assert_eq!(sandbox.drain_events().len(), 2, "{outbound:?}");
        let row = counter(&sandbox, 0, ZOOM, FINANCE, action::DROP).expect("zoom row");
        let bytes = (request.len() + reply.len()) as u64;
        assert_eq!(
            row,
            CounterValue {
                packets: 2,
                bytes,
                flows: 1
            },
            "{outbound:?}"
        );
        let row = counter(&sandbox, 1, VISIO, FINANCE, action::ALLOW).expect("visio row");
        let bytes = (v6_request.len() + v6_reply.len()) as u64;
        assert_eq!(
            row,
            CounterValue {
                packets: 2,
                bytes,
                flows: 1
            },
            "{outbound:?}"
        );
    }
}

#[test]
fn flow_opened_from_the_remote_side_is_judged_by_the_remote_address() {
    if !vigie_lab::privilege::privileged(
        "flow_opened_from_the_remote_side_is_judged_by_the_remote_address",
    ) {
        return;
    }
    // Zoom's server sends first (a SYN to an internal host's port 40000).
    let connection = Frame::tcp4(FINANCE_HOST, 40000, ZOOM_HOST, 443);
    let from_zoom = as_seen_by(Hook::TcReply, &connection);
    for outbound in OUTBOUND_HOOKS {
        let mut sandbox = sandbox(&block_zoom());
        assert_eq!(run(&mut sandbox, Hook::TcReply, &from_zoom), Outcome::Drop);
        let (key, entry) = only_flow(&sandbox);
        assert_eq!(
            key,
            flow_key4(FINANCE_HOST, 40000, ZOOM_HOST, 443, TCP),
            "oriented local -> remote"
        );
        assert_eq!(
            (entry.service, entry.evidence, entry.group),
            (ZOOM, evidence::ADDRESS, FINANCE)
        );
        assert_eq!((entry.rule, entry.action), (0, action::DROP));
        assert_eq!(
            entry.flags,
            flags::MATCHED | flags::FROM_REMOTE,
            "{entry:?}"
        );
        let events = sandbox.drain_events();
        assert_eq!(events.len(), 1, "{events:#?}");
        assert_eq!(
            (events[0].key, events[0].flags),
            (key, flags::MATCHED | flags::FROM_REMOTE)
        );

        // The internal host's answer belongs to the same flow.
        assert_eq!(
            run(&mut sandbox, outbound, &connection.build()),
            Outcome::Drop,
            "{outbound:?}"
        );
        assert_eq!(sandbox.flows().len(), 1, "{outbound:?}");
        assert_eq!(
            counter(&sandbox, 0, ZOOM, FINANCE, action::DROP).map(|r| (r.packets, r.flows)),
            Some((2, 1))
        );
        assert!(sandbox.drain_events().is_empty(), "{outbound:?}");
    }

    // A remote host of no known service opening a flow: the default decides, the local
    // address still gives the group.
    let mut sandbox = sandbox(&block_zoom().default_action(action::DROP));
    let from_unknown = Frame::udp6(RESEARCH_HOST6, 3478, UNKNOWN_HOST6, 3478)
        .reversed()
        .build();
    assert_eq!(
        run(&mut sandbox, Hook::TcReply, &from_unknown),
        Outcome::Drop
    );
    let (key, entry) = only_flow(&sandbox);
    assert_eq!(
        key,
        flow_key6(RESEARCH_HOST6, 3478, UNKNOWN_HOST6, 3478, UDP)
    );
    assert_eq!(
        (entry.service, entry.group, entry.rule),
        (0, RESEARCH, rule_no::DEFAULT)
    );
    // A UDP flow that no address explains is looked at for STUN.
    assert_eq!(
        entry.flags,
        flags::FROM_REMOTE | flags::STUN_PENDING,
        "{entry:?}"
    );
    assert!(
        sandbox.drain_events().is_empty(),
        "a default verdict was reported"
    );
}

#[test]
fn an_event_for_the_first_packet_of_a_rule_decided_flow_only() {
    if !vigie_lab::privilege::privileged(
        "an_event_for_the_first_packet_of_a_rule_decided_flow_only",
    ) {
        return;
    }
    let policy = PolicySpec::new().rule("watch-zoom", rule(action::MONITOR).services(&[ZOOM]));
    let first = Frame::udp4(FINANCE_HOST, 5000, ZOOM_HOST, 8801)
        .payload(&[1; 100])
        .build();
    let second = Frame::udp4(FINANCE_HOST, 5000, ZOOM_HOST, 8801)
        .payload(&[2; 10])
        .build();
    let other_port = Frame::udp4(FINANCE_HOST, 5001, ZOOM_HOST, 8801).build();
    let unknown = Frame::tcp4(FINANCE_HOST, 40000, UNKNOWN_HOST, 443).build();
    for hook in OUTBOUND_HOOKS {
        let mut sandbox = sandbox(&policy);
        assert_eq!(run(&mut sandbox, hook, &first), Outcome::Pass, "{hook:?}");
        let events = sandbox.drain_events();
        assert_eq!(events.len(), 1, "{hook:?}: {events:#?}");
        let event = events[0];
        assert_eq!(
            event.key,
            flow_key4(FINANCE_HOST, 5000, ZOOM_HOST, 8801, UDP),
            "{hook:?}"
        );
        assert_eq!(
            (event.action, event.rule, event.service),
            (action::MONITOR, 0, ZOOM),
            "{hook:?}"
        );
        assert_eq!(
            event.packet_len as usize,
            first.len(),
            "{hook:?}: the first packet's length"
        );

        // The same flow again: nothing new to report.
        assert_eq!(run(&mut sandbox, hook, &second), Outcome::Pass, "{hook:?}");
        assert_eq!(
            run(
                &mut sandbox,
                Hook::TcReply,
                &Frame::udp4(FINANCE_HOST, 5000, ZOOM_HOST, 8801)
                    .reversed()
                    .build()
            ),
            Outcome::Pass
        );
        assert!(
            sandbox.drain_events().is_empty(),
            "{hook:?}: a known flow was reported again"
        );

        // A flow the default decided is never reported, however many packets it has.
        for _ in 0..3 {
            assert_eq!(run(&mut sandbox, hook, &unknown), Outcome::Pass, "{hook:?}");
        }
        assert!(
            sandbox.drain_events().is_empty(),
            "{hook:?}: a default verdict was reported"
        );

        // Another connection to the same service is another flow.
        assert_eq!(
            run(&mut sandbox, hook, &other_port),
            Outcome::Pass,
            "{hook:?}"
        );
        let events = sandbox.drain_events();
        assert_eq!(events.len(), 1, "{hook:?}: {events:#?}");
        assert_eq!(events[0].key.local_port, 5001, "{hook:?}");
        assert_eq!(sandbox.flows().len(), 3, "{hook:?}");
    }
}

/// The wakeups of one event ring, as a reader blocked on it sees them: an edge-triggered epoll
/// on its descriptor reports each wakeup once (while the ring holds something to read).
struct RingWakeups(std::os::fd::OwnedFd);

impl RingWakeups {
    fn watch(ring: std::os::fd::BorrowedFd<'_>) -> Self {
        use std::os::fd::{AsRawFd as _, FromRawFd as _};
        // SAFETY: plain system calls on descriptors this test owns or borrows.
        unsafe {
            let epoll = libc::epoll_create1(libc::EPOLL_CLOEXEC);
            assert!(
                epoll >= 0,
                "epoll_create1: {}",
                std::io::Error::last_os_error()
            );
            let epoll = std::os::fd::OwnedFd::from_raw_fd(epoll);
            let mut interest = libc::epoll_event {
                events: (libc::EPOLLIN | libc::EPOLLET).cast_unsigned(),
                u64: 0,
            };
            let added = libc::epoll_ctl(
                epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                ring.as_raw_fd(),
                &raw mut interest,
            );
            assert_eq!(added, 0, "epoll_ctl: {}", std::io::Error::last_os_error());
            Self(epoll)
        }
    }

    /// Whether the ring woke its readers since the last call.
    fn woken(&self) -> bool {
        use std::os::fd::AsRawFd as _;
        let mut ready = [libc::epoll_event { events: 0, u64: 0 }];
        // SAFETY: a buffer of one event for a wait of no time.
        let n = unsafe { libc::epoll_wait(self.0.as_raw_fd(), ready.as_mut_ptr(), 1, 0) };
        assert!(n >= 0, "epoll_wait: {}", std::io::Error::last_os_error());
        n > 0
    }
}

#[test]
fn a_reader_that_keeps_up_is_not_woken_for_every_event() {
    const FLOWS: u16 = 2_000;
    if !vigie_lab::privilege::privileged("a_reader_that_keeps_up_is_not_woken_for_every_event") {
        return;
    }
    // The ring's own rule wakes a reader that has read everything on each new event (an
    // interrupt per new flow); the programs wake it at most once per tick of the kernel's
    // coarse clock per CPU.
    let mut sandbox = sandbox(&block_zoom());
    let wakeups = RingWakeups::watch(sandbox.events_fd());
    let mut woken = 0u64;
    let started = std::time::Instant::now();
    for port in 0..FLOWS {
        let frame = Frame::udp4(FINANCE_HOST, 10_000 + port, ZOOM_HOST, 8801).build();
        assert_eq!(run(&mut sandbox, Hook::XdpOutbound, &frame), Outcome::Drop);
        woken += u64::from(wakeups.woken());
        // Read at once, as the daemon does when it keeps up.
        assert_eq!(sandbox.drain_events().len(), 1, "flow {port}");
    }
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    // At most once a millisecond (a tick at 1,000 Hz, the fastest) on each CPU.
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get) as u64;
    let allowed = cpus * (elapsed_ms + 1);
    assert!(
        allowed < u64::from(FLOWS) / 2,
        "{FLOWS} flows took {elapsed_ms} ms: too slow to tell one wakeup per event from fewer"
    );
    assert!(
        (1..=allowed).contains(&woken),
        "the ring woke its reader {woken} times for {FLOWS} events read at once in \
         {elapsed_ms} ms"
    );
}

#[test]
fn counters_add_up_per_rule_service_group_and_action() {
    if !vigie_lab::privilege::privileged("counters_add_up_per_rule_service_group_and_action") {
        return;
    }
    let policy = block_zoom()
        .rule("watch-visio", rule(action::MONITOR).services(&[VISIO]))
        .default_action(action::ALLOW);
    let zoom_a = Frame::udp4(FINANCE_HOST, 5000, ZOOM_HOST, 8801)
        .payload(&[0; 50])
        .build();
    let zoom_b = Frame::tcp4(FINANCE_HOST, 40000, ZOOM_HOST, 443).build();
    let zoom_research = Frame::tcp6(RESEARCH_HOST6, 40000, ZOOM_HOST6, 443).build();
    let visio = Frame::udp6(FINANCE_HOST6, 5000, VISIO_HOST6, 443)
        .payload(&[0; 200])
        .build();
    let unknown = Frame::icmp4(UNGROUPED_HOST, UNKNOWN_HOST).build();
    let sent: [(&[u8], usize); 5] = [
        (&zoom_a, 2),
        (&zoom_b, 1),
        (&zoom_research, 3),
        (&visio, 2),
        (&unknown, 4),
    ];
    for hook in OUTBOUND_HOOKS {
        let mut sandbox = sandbox(&policy);
        for (frame, times) in sent {
            for _ in 0..times {
                run(&mut sandbox, hook, frame);
            }
        }
        let len = |f: &[u8]| f.len() as u64;
        let expected = [
            (
                0,
                ZOOM,
                FINANCE,
                action::DROP,
                CounterValue {
                    packets: 3,
                    bytes: 2 * len(&zoom_a) + len(&zoom_b),
                    flows: 2,
                },
            ),
            (
                0,
                ZOOM,
                RESEARCH,
                action::DROP,
                CounterValue {
                    packets: 3,
                    bytes: 3 * len(&zoom_research),
                    flows: 1,
                },
            ),
            (
                1,
                VISIO,
                FINANCE,
                action::MONITOR,
                CounterValue {
                    packets: 2,
                    bytes: 2 * len(&visio),
                    flows: 1,
                },
            ),
            (
                rule_no::DEFAULT,
                0,
                0,
                action::ALLOW,
                CounterValue {
                    packets: 4,
                    bytes: 4 * len(&unknown),
                    flows: 1,
                },
            ),
        ];
        let rows = counters(&sandbox);
        assert_eq!(rows.len(), expected.len(), "{hook:?}: {rows:#?}");
        for (rule, service, group, action, value) in expected {
            assert_eq!(
                counter(&sandbox, rule, service, group, action),
                Some(value),
                "{hook:?}: row (rule {rule}, service {service}, group {group}, action {action}) in {rows:#?}"
            );
        }
        assert_eq!(sandbox.flows().len(), 5, "{hook:?}");
        // Events: two Zoom flows from finance, one from research, one Visio flow.
        assert_eq!(sandbox.drain_events().len(), 4, "{hook:?}");
    }
}

#[test]
fn counters_are_exact_when_two_keys_share_a_cache_row() {
    if !vigie_lab::privilege::privileged("counters_are_exact_when_two_keys_share_a_cache_row") {
        return;
    }
    // Rule k matches Zoom on UDP port 9000 + k. Two keys (rule, Zoom, group, action) that
    // share a cache row are found first, so that the second to arrive is counted by the hash map.
    let key = |rule: u16, group: u32, action: u32| CounterKey {
        rule,
        service: ZOOM as u16,
        group: group as u16,
        action: action as u8,
        pad: 0,
    };
    let hosts = [
        (FINANCE, FINANCE_HOST),
        (RESEARCH, RESEARCH_HOST),
        (0, UNGROUPED_HOST),
    ];
    let actions = [action::ALLOW, action::MONITOR, action::DROP];
    let mut keys = Vec::new();
    for rule in 0..64u16 {
        for &(group, host) in &hosts {
            for act in actions {
                keys.push((rule, group, host, act));
            }
        }
    }
    let mut by_row = std::collections::HashMap::new();
    let (first, second) = keys
        .iter()
        .find_map(|&k| {
            let row = key(k.0, k.1, k.3).cache_row();
            match by_row.insert(row, k) {
                // Two rules, so that each can carry its own action.
                Some(other) if other.0 != k.0 => Some((other, k)),
                _ => None,
            }
        })
        .expect("two keys sharing a cache row");
    let mut policy = PolicySpec::new();
    for k in 0..=second.0 {
        let act = [first, second]
            .iter()
            .find(|p| p.0 == k)
            .map_or(action::ALLOW, |p| p.3);
        let r = rule(act)
            .services(&[ZOOM])
            .proto(UDP)
            .ports(9000 + k, 9000 + k);
        policy = policy.rule(&format!("port-{k}"), r);
    }
    let mut sandbox = sandbox(&policy);
    for round in 0..3u16 {
        for (rule, _, host, _) in [first, second] {
            let frame = Frame::udp4(host, 5000 + round, ZOOM_HOST, 9000 + rule).build();
            run(&mut sandbox, Hook::XdpOutbound, &frame);
        }
    }
    for (rule, group, _, act) in [first, second] {
        let value = counter(&sandbox, u32::from(rule), ZOOM, group, act)
            .unwrap_or_else(|| panic!("no counter for rule {rule}: {:?}", counters(&sandbox)));
        assert_eq!((value.packets, value.flows), (3, 3), "rule {rule}");
    }
}

/// The per-CPU flow cache answers packets of a settled flow without the flow table, for at most
/// `FLOW_CACHE_CREDIT` packets: what the daemon writes into the table meanwhile (here, a QUIC
/// name that makes the flow Zoom) shows at the packet after, exactly. A policy swap shows at
/// once, and every packet is counted.
#[test]
fn the_flow_cache_serves_a_settled_verdict_for_its_credit_only() {
    if !vigie_lab::privilege::privileged(
        "the_flow_cache_serves_a_settled_verdict_for_its_credit_only",
    ) {
        return;
    }
    stay_on_this_cpu();
    let credit = vigie_common::limits::FLOW_CACHE_CREDIT;
    let visio = Frame::udp4(FINANCE_HOST, 5000, VISIO_HOST, 5004).payload(b"media");
    for hook in OUTBOUND_HOOKS {
        let mut sandbox = sandbox(&block_zoom());
        let frame = visio.build();
        // The first packet makes the flow, the second finds it in the table and caches it.
        for _ in 0..2 {
            assert_eq!(run(&mut sandbox, hook, &frame), Outcome::Pass, "{hook:?}");
        }
        let flows = sandbox.flows();
        assert_eq!(flows.len(), 1, "{hook:?}: {flows:#?}");
        let (key, mut entry) = flows[0];
        entry.service = ZOOM;
        entry.evidence = evidence::QUIC_SNI;
        entry.generation = 0;
        sandbox
            .write_flow(&key, &entry)
            .unwrap_or_else(|e| panic!("{hook:?}: writing the flow: {e}"));
        let first_drop = (1..=credit + 5)
            .find(|_| run(&mut sandbox, hook, &frame) == Outcome::Drop)
            .unwrap_or_else(|| panic!("{hook:?}: the written entry never took effect"));
        assert_eq!(
            first_drop,
            credit + 1,
            "{hook:?}: packets served by the cache, then the table"
        );
        // Cached again with the new verdict; a swap to a policy that blocks nothing shows at once.
        assert_eq!(run(&mut sandbox, hook, &frame), Outcome::Drop, "{hook:?}");
        assert_eq!(run(&mut sandbox, hook, &frame), Outcome::Drop, "{hook:?}");
        sandbox
            .apply(&PolicySpec::new().compile())
            .unwrap_or_else(|e| panic!("{hook:?}: applying: {e}"));
        assert_eq!(
            run(&mut sandbox, hook, &frame),
            Outcome::Pass,
            "{hook:?}: after the swap"
        );
        let sent = 2 + u64::from(first_drop) + 2 + 1;
        let counted: u64 = counters(&sandbox).iter().map(|(_, v)| v.packets).sum();
        assert_eq!(
            counted, sent,
            "{hook:?}: every packet counted, cached or not"
        );
    }
}
