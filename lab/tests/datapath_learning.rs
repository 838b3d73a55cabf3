//! What the kernel hands to the daemon, and what the daemon's answer changes, through
//! `BPF_PROG_TEST_RUN` with the sandbox's learner fed after each packet (as the daemon's
//! payload reader is): DNS answers teach the addresses of catalog names (CNAME chains
//! followed, expired with their TTL, kept across a policy swap), QUIC client Initials tell
//! their server name while the server's datagrams wait, and the blind spots are counted.

#[path = "datapath_support.rs"]
mod support;

use std::net::Ipv4Addr;

use support::*;
use vigie::{
    compiled::{CompiledPolicy, LearningSettings},
    learning::{Lesson, monotonic_ns},
    sandbox::{Hook, Outcome, Sandbox},
};
use vigie_common::{action::evidence, counters::stat, flow::flags, sni::domain_hash};
use vigie_lab::packet::Frame;

const RESOLVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 53);
const CLIENT_PORT: u16 = 40_000;

/// A DNS response to `question` (type A) with `answers`: (owner, CNAME target or A address,
/// TTL), uncompressed.
fn response(question: &str, answers: &[(&str, Answer, u32)]) -> Vec<u8> {
    fn name(dotted: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for label in dotted.split('.') {
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
        out
    }
    let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1];
    m.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0]);
    m.extend_from_slice(&name(question));
    m.extend_from_slice(&[0, 1, 0, 1]);
    for (owner, answer, ttl) in answers {
        m.extend_from_slice(&name(owner));
        let (kind, data) = match answer {
            Answer::A(addr) => (1u16, addr.octets().to_vec()),
            Answer::Cname(target) => (5u16, name(target)),
        };
        m.extend_from_slice(&kind.to_be_bytes());
        m.extend_from_slice(&[0, 1]);
        m.extend_from_slice(&ttl.to_be_bytes());
        m.extend_from_slice(&(data.len() as u16).to_be_bytes());
        m.extend_from_slice(&data);
    }
    m
}

enum Answer {
    A(Ipv4Addr),
    Cname(&'static str),
}

/// The resolver's answer crossing the gateway towards the LAN host (the reply program).
fn answer_frame(payload: &[u8]) -> Vec<u8> {
    Frame::udp4(RESOLVER, 53, FINANCE_HOST, CLIENT_PORT)
        .payload(payload)
        .build()
}

fn syn(dst: Ipv4Addr, port: u16, src_port: u16) -> Vec<u8> {
    Frame::tcp4(FINANCE_HOST, src_port, dst, port).build()
}

/// The test policy, with `teams.microsoft.com` as one more of Zoom's domains (so that the
/// chain below leads to a service) and `example.com` too (the RFC 9001 QUIC packet's name).
fn policy_with_more_domains() -> CompiledPolicy {
    let mut policy = block_zoom().compile();
    policy
        .domains
        .push((domain_hash(b"teams.microsoft.com"), ZOOM));
    policy.domains.push((domain_hash(b"example.com"), ZOOM));
    policy.domains.sort_unstable();
    policy
}

fn learning_sandbox() -> Sandbox {
    let mut sandbox = Sandbox::new().unwrap_or_else(|e| panic!("loading the kernel programs: {e}"));
    sandbox.apply(&policy_with_more_domains()).unwrap();
    sandbox
}

/// The LAN host's questions to the resolver, over UDP and TCP: only answers to a question
/// that crossed the gateway are read.
fn ask(sandbox: &mut Sandbox) {
    let query = response("zoom.us", &[]);
    let udp = Frame::udp4(FINANCE_HOST, CLIENT_PORT, RESOLVER, 53)
        .payload(&query)
        .build();
    assert_eq!(run(sandbox, Hook::XdpOutbound, &udp), Outcome::Pass);
    let tcp = Frame::tcp4(FINANCE_HOST, CLIENT_PORT, RESOLVER, 53).build();
    assert_eq!(run(sandbox, Hook::XdpOutbound, &tcp), Outcome::Pass);
}

/// A learning sandbox whose LAN host has asked the resolver.
fn asked_sandbox() -> Sandbox {
    let mut sandbox = learning_sandbox();
    ask(&mut sandbox);
    sandbox
}

#[test]
fn a_dns_answer_for_a_catalog_name_teaches_its_address() {
    if !vigie_lab::privilege::privileged("a_dns_answer_for_a_catalog_name_teaches_its_address") {
        return;
    }
    for hook in OUTBOUND_HOOKS {
        let mut sandbox = asked_sandbox();
        assert_eq!(
            run(&mut sandbox, hook, &syn(UNKNOWN_HOST, 443, 50_001)),
            Outcome::Pass
        );
        let dns = response(
            "eu01web.zoom.us",
            &[("eu01web.zoom.us", Answer::A(UNKNOWN_HOST), 300)],
        );
        // The answer itself passes: learning never holds DNS back.
        assert_eq!(
            run(&mut sandbox, Hook::TcReply, &answer_frame(&dns)),
            Outcome::Pass
        );
        assert_eq!(stat(&sandbox, stat::DNS_RESPONSES), 1);
        assert_eq!(sandbox.drain_lessons(), [Lesson::Endpoints { learned: 1 }]);
        // A new flow to the address is Zoom's, by DNS, and blocked.
        assert_eq!(
            run(&mut sandbox, hook, &syn(UNKNOWN_HOST, 443, 50_002)),
            Outcome::Drop,
            "{hook:?}"
        );
        let entry = flow_entry(
            &sandbox,
            &flow_key4(FINANCE_HOST, 50_002, UNKNOWN_HOST, 443, 6),
        );
        assert_eq!(
            (entry.service, entry.evidence),
            (ZOOM, evidence::DNS),
            "{hook:?}"
        );
    }
}

/// A DNS flow stays out of the per-CPU flow cache: however many packets it has, each answer is
/// handed over to the daemon.
#[test]
fn every_answer_of_a_busy_dns_flow_is_read() {
    if !vigie_lab::privilege::privileged("every_answer_of_a_busy_dns_flow_is_read") {
        return;
    }
    stay_on_this_cpu();
    let mut sandbox = learning_sandbox();
    for _ in 0..3 {
        ask(&mut sandbox);
    }
    let dns = response(
        "eu01web.zoom.us",
        &[("eu01web.zoom.us", Answer::A(UNKNOWN_HOST), 300)],
    );
    for _ in 0..3 {
        assert_eq!(
            run(&mut sandbox, Hook::TcReply, &answer_frame(&dns)),
            Outcome::Pass
        );
    }
    assert_eq!(stat(&sandbox, stat::DNS_RESPONSES), 3);
}

#[test]
fn dns_over_tcp_teaches_too() {
    if !vigie_lab::privilege::privileged("dns_over_tcp_teaches_too") {
        return;
    }
    let mut sandbox = asked_sandbox();
    // Two length-prefixed messages in one segment from the resolver's port 53.
    let mut stream = Vec::new();
    for (name, addr) in [
        ("zoom.us", UNKNOWN_HOST),
        ("www.example.org", Ipv4Addr::new(203, 0, 113, 83)),
    ] {
        let message = response(name, &[(name, Answer::A(addr), 300)]);
        stream.extend_from_slice(&(message.len() as u16).to_be_bytes());
        stream.extend_from_slice(&message);
    }
    let segment = Frame::tcp4(RESOLVER, 53, FINANCE_HOST, CLIENT_PORT)
        .payload(&stream)
        .build();
    assert_eq!(run(&mut sandbox, Hook::TcReply, &segment), Outcome::Pass);
    assert_eq!(sandbox.drain_lessons(), [Lesson::Endpoints { learned: 1 }]);
    assert_eq!(
        run(
            &mut sandbox,
            Hook::XdpOutbound,
            &syn(UNKNOWN_HOST, 443, 50_010)
        ),
        Outcome::Drop
    );
}

#[test]
fn a_cname_chain_leads_to_the_service_and_other_names_teach_nothing() {
    if !vigie_lab::privilege::privileged(
        "a_cname_chain_leads_to_the_service_and_other_names_teach_nothing",
    ) {
        return;
    }
    let mut sandbox = asked_sandbox();
    let chained = Ipv4Addr::new(203, 0, 113, 82);
    let other = Ipv4Addr::new(203, 0, 113, 83);
    // dnsmasq's own answer for a `--cname` of a `--host-record` (compressed names).
    let dnsmasq = hex(
        "12348580000100020000000005766964656f04636f727004746573740000010001c00c000500010000\
         00020018026777057465616d73096d6963726f736f667403636f6d00c02d00010001000000020004cb00\
         7152",
    );
    run(&mut sandbox, Hook::TcReply, &answer_frame(&dnsmasq));
    let plain = response(
        "www.example.org",
        &[("www.example.org", Answer::A(other), 300)],
    );
    run(&mut sandbox, Hook::TcReply, &answer_frame(&plain));
    let learned: Vec<_> = sandbox
        .learner()
        .endpoints()
        .map(|(addr, e)| (addr.to_string(), e.service.clone(), e.names.clone()))
        .collect();
    assert_eq!(
        learned,
        [(
            chained.to_string(),
            "zoom".to_owned(),
            vec![
                "video.corp.test".to_owned(),
                "gw.teams.microsoft.com".to_owned()
            ]
        )]
    );
    assert_eq!(
        run(&mut sandbox, Hook::XdpOutbound, &syn(chained, 443, 50_003)),
        Outcome::Drop
    );
    assert_eq!(
        run(&mut sandbox, Hook::XdpOutbound, &syn(other, 443, 50_004)),
        Outcome::Pass
    );
    // A chain that leaves the catalog does not reach it: the name asked is not the service's.
    let alias = response(
        "cdn.example.net",
        &[
            ("cdn.example.net", Answer::Cname("edge.example.org"), 300),
            (
                "edge.example.org",
                Answer::A(Ipv4Addr::new(203, 0, 113, 84)),
                300,
            ),
        ],
    );
    run(&mut sandbox, Hook::TcReply, &answer_frame(&alias));
    assert_eq!(sandbox.learner().learned_count(), 1);
}

#[test]
fn learned_addresses_expire_and_survive_a_policy_swap() {
    if !vigie_lab::privilege::privileged("learned_addresses_expire_and_survive_a_policy_swap") {
        return;
    }
    let mut sandbox = asked_sandbox();
    // A TTL of 5 s is raised to the default lower bound (60 s).
    let dns = response("zoom.us", &[("zoom.us", Answer::A(UNKNOWN_HOST), 5)]);
    run(&mut sandbox, Hook::TcReply, &answer_frame(&dns));
    let expires = sandbox.learner().endpoints().next().unwrap().1.expires_ns;
    let now = monotonic_ns();
    // The filter in front of the kernel's table lets packets look the address up: in the slot
    // in force, and in no slot once it expired.
    let slots_holding = |sandbox: &Sandbox| -> Vec<u32> {
        (0..2)
            .filter(|&slot| {
                sandbox
                    .learner()
                    .filter_holds(slot, UNKNOWN_HOST.into())
                    .unwrap_or_else(|e| panic!("reading the filter: {e}"))
            })
            .collect()
    };
    assert_eq!(slots_holding(&sandbox).len(), 1);
    assert!(
        expires > now + 55_000_000_000 && expires <= now + 60_000_000_000,
        "{expires} {now}"
    );
    // A new generation in the other slot: the learned address is written there before the
    // swap, so the next flow is still Zoom's.
    assert_eq!(sandbox.apply(&policy_with_more_domains()).unwrap(), 2);
    assert_eq!(
        run(
            &mut sandbox,
            Hook::XdpOutbound,
            &syn(UNKNOWN_HOST, 443, 50_005)
        ),
        Outcome::Drop
    );
    assert_eq!(
        slots_holding(&sandbox),
        [0, 1],
        "both slots hold it after the swap"
    );
    // Past its expiry the address is forgotten, in the daemon and the kernel.
    sandbox.sweep(expires);
    assert_eq!(sandbox.learner().learned_count(), 0);
    assert_eq!(slots_holding(&sandbox), [0u32; 0], "its bit outlived it");
    assert_eq!(
        run(
            &mut sandbox,
            Hook::XdpOutbound,
            &syn(UNKNOWN_HOST, 443, 50_006)
        ),
        Outcome::Pass
    );
}

#[test]
fn unreadable_dns_teaches_nothing_and_is_counted() {
    if !vigie_lab::privilege::privileged("unreadable_dns_teaches_nothing_and_is_counted") {
        return;
    }
    let mut sandbox = asked_sandbox();
    let good = response("zoom.us", &[("zoom.us", Answer::A(UNKNOWN_HOST), 300)]);
    // Cut in the answer, a count that lies, and garbage.
    let mut lying = good.clone();
    lying[7] = 9;
    for bad in [good[..good.len() - 3].to_vec(), lying, vec![0xff; 40]] {
        assert_eq!(
            run(&mut sandbox, Hook::TcReply, &answer_frame(&bad)),
            Outcome::Pass
        );
    }
    // Longer than the kernel copies: the end is missing, so it is not read.
    let mut long = response("zoom.us", &[("zoom.us", Answer::A(UNKNOWN_HOST), 300)]);
    long.resize(1700, 0);
    run(&mut sandbox, Hook::TcReply, &answer_frame(&long));
    assert_eq!(sandbox.learner().learned_count(), 0);
    assert_eq!(sandbox.learner().stats.dns_unreadable, 4);
    assert_eq!(
        run(
            &mut sandbox,
            Hook::XdpOutbound,
            &syn(UNKNOWN_HOST, 443, 50_007)
        ),
        Outcome::Pass
    );
}

/// RFC 9001, appendix A.2: a client Initial (1,200 bytes) whose ClientHello names
/// `example.com`.
fn rfc9001_initial() -> Vec<u8> {
    hex(include_str!(
        "../../daemon/src/learning/quic/fixtures/rfc9001_a2_client_initial.hex"
    ))
}

fn quic_client(payload: &[u8]) -> Frame {
    Frame::udp4(FINANCE_HOST, 50_100, UNKNOWN_HOST, 443).payload(payload)
}

#[test]
fn a_quic_initial_tells_its_name_before_the_server_is_heard() {
    if !vigie_lab::privilege::privileged("a_quic_initial_tells_its_name_before_the_server_is_heard")
    {
        return;
    }
    for hook in OUTBOUND_HOOKS {
        let mut sandbox = learning_sandbox();
        let client = quic_client(&rfc9001_initial());
        // The client's Initial passes (the server must see it for an allowed connection);
        // the daemon reads it at once.
        assert_eq!(
            run(&mut sandbox, hook, &client.build()),
            Outcome::Pass,
            "{hook:?}"
        );
        assert_eq!(stat(&sandbox, stat::QUIC_INITIALS), 1);
        assert_eq!(
            sandbox.drain_lessons(),
            [Lesson::QuicName {
                name: Some("example.com".into()),
                service: Some(ZOOM)
            }]
        );
        // The server's answer finds the flow Zoom's, by its QUIC server name: dropped, so
        // the handshake never completes.
        let server = client.clone().reversed().payload(&[0xc3; 1200]).build();
        assert_eq!(
            run(&mut sandbox, Hook::TcReply, &server),
            Outcome::Drop,
            "{hook:?}"
        );
        let (_, entry) = only_flow(&sandbox);
        assert_eq!(
            (entry.service, entry.evidence),
            (ZOOM, evidence::QUIC_SNI),
            "{hook:?}"
        );
        assert_eq!(entry.flags & flags::QUIC_PENDING, 0);
        assert_eq!(
            run(&mut sandbox, hook, &client.build()),
            Outcome::Drop,
            "{hook:?}"
        );
    }
    // A name of no service: the server's answer passes.
    let mut sandbox = Sandbox::new().unwrap();
    sandbox.apply(&block_zoom().compile()).unwrap();
    let client = quic_client(&rfc9001_initial());
    run(&mut sandbox, Hook::XdpOutbound, &client.build());
    let server = client.reversed().payload(&[0xc3; 1200]).build();
    assert_eq!(run(&mut sandbox, Hook::TcReply, &server), Outcome::Pass);
    assert_eq!(only_flow(&sandbox).1.service, 0);
}

#[test]
fn a_silent_daemon_holds_the_server_back_only_for_a_while() {
    if !vigie_lab::privilege::privileged("a_silent_daemon_holds_the_server_back_only_for_a_while") {
        return;
    }
    let mut sandbox = learning_sandbox();
    sandbox.set_learning(false);
    let client = quic_client(&rfc9001_initial());
    run(&mut sandbox, Hook::XdpOutbound, &client.build());
    assert_ne!(only_flow(&sandbox).1.flags & flags::QUIC_PENDING, 0);
    let server = client.clone().reversed().payload(&[0xc3; 1200]).build();
    assert_eq!(run(&mut sandbox, Hook::TcReply, &server), Outcome::Drop);
    assert_eq!(stat(&sandbox, stat::QUIC_HELD), 1);
    // Past the deadline (250 ms) the flow goes on as its address decided, counted.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(run(&mut sandbox, Hook::TcReply, &server), Outcome::Pass);
    assert_eq!(stat(&sandbox, stat::QUIC_TIMED_OUT), 1);
    assert_eq!(only_flow(&sandbox).1.flags & flags::QUIC_PENDING, 0);
}

#[test]
fn quic_of_an_unknown_version_and_encrypted_dns_are_blind_spots() {
    if !vigie_lab::privilege::privileged(
        "quic_of_an_unknown_version_and_encrypted_dns_are_blind_spots",
    ) {
        return;
    }
    let mut sandbox = learning_sandbox();
    let mut initial = rfc9001_initial();
    initial[1..5].copy_from_slice(&0x1a2a_3a4a_u32.to_be_bytes());
    run(
        &mut sandbox,
        Hook::XdpOutbound,
        &quic_client(&initial).build(),
    );
    assert_eq!(stat(&sandbox, stat::QUIC_UNKNOWN_VERSION), 1);
    assert_eq!(stat(&sandbox, stat::QUIC_INITIALS), 0);
    assert_eq!(only_flow(&sandbox).1.flags & flags::QUIC_PENDING, 0);
    // A datagram that only looks like QUIC (short) or is not QUIC at all is left alone.
    let mut sandbox = learning_sandbox();
    run(
        &mut sandbox,
        Hook::XdpOutbound,
        &quic_client(&[0x40; 1300]).build(),
    );
    assert_eq!(
        stat(&sandbox, stat::QUIC_INITIALS) + stat(&sandbox, stat::QUIC_UNKNOWN_VERSION),
        0
    );
    // Flows to a well-known resolver on its encrypted ports are counted; plain DNS is not.
    let cloudflare = Ipv4Addr::new(1, 1, 1, 1);
    run(
        &mut sandbox,
        Hook::XdpOutbound,
        &syn(cloudflare, 443, 50_200),
    );
    run(
        &mut sandbox,
        Hook::XdpOutbound,
        &syn(cloudflare, 853, 50_201),
    );
    run(
        &mut sandbox,
        Hook::XdpOutbound,
        &syn(cloudflare, 53, 50_202),
    );
    assert_eq!(stat(&sandbox, stat::ENCRYPTED_DNS), 2);
}

/// Bytes of hex text; lines starting with `#` are comments.
fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(str::bytes)
        .filter(u8::is_ascii_hexdigit)
        .collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

#[test]
fn an_answer_nobody_asked_for_teaches_nothing() {
    if !vigie_lab::privilege::privileged("an_answer_nobody_asked_for_teaches_nothing") {
        return;
    }
    let mut sandbox = learning_sandbox();
    let dns = response("zoom.us", &[("zoom.us", Answer::A(UNKNOWN_HOST), 300)]);
    assert_eq!(
        run(&mut sandbox, Hook::TcReply, &answer_frame(&dns)),
        Outcome::Pass
    );
    assert_eq!(stat(&sandbox, stat::DNS_RESPONSES), 0);
    assert_eq!(sandbox.learner().learned_count(), 0);
    // Glue the question does not lead to teaches nothing either, even when asked.
    let mut asked = asked_sandbox();
    let glue = response(
        "www.example.org",
        &[
            (
                "www.example.org",
                Answer::A(Ipv4Addr::new(203, 0, 113, 83)),
                300,
            ),
            ("zoom.us", Answer::A(UNKNOWN_HOST), 300),
        ],
    );
    run(&mut asked, Hook::TcReply, &answer_frame(&glue));
    assert_eq!(stat(&asked, stat::DNS_RESPONSES), 1);
    assert_eq!(asked.learner().learned_count(), 0);
}

#[test]
fn the_kernel_ignores_an_expired_address_before_the_sweep() {
    if !vigie_lab::privilege::privileged("the_kernel_ignores_an_expired_address_before_the_sweep") {
        return;
    }
    let mut sandbox = Sandbox::new().unwrap();
    let mut policy = policy_with_more_domains();
    policy.learning = LearningSettings {
        min_ttl: 1,
        max_ttl: 1,
        max_entries: 10,
    };
    sandbox.apply(&policy).unwrap();
    ask(&mut sandbox);
    let dns = response("zoom.us", &[("zoom.us", Answer::A(UNKNOWN_HOST), 300)]);
    run(&mut sandbox, Hook::TcReply, &answer_frame(&dns));
    assert_eq!(
        run(
            &mut sandbox,
            Hook::XdpOutbound,
            &syn(UNKNOWN_HOST, 443, 50_300)
        ),
        Outcome::Drop
    );
    // No sweep: the entry is still in the table, past its second.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(sandbox.learner().learned_count(), 1);
    assert_eq!(
        run(
            &mut sandbox,
            Hook::XdpOutbound,
            &syn(UNKNOWN_HOST, 443, 50_301)
        ),
        Outcome::Pass
    );
}

#[test]
fn a_new_daemon_adopts_the_addresses_in_force() {
    if !vigie_lab::privilege::privileged("a_new_daemon_adopts_the_addresses_in_force") {
        return;
    }
    let mut sandbox = asked_sandbox();
    let dns = response("zoom.us", &[("zoom.us", Answer::A(UNKNOWN_HOST), 300)]);
    run(&mut sandbox, Hook::TcReply, &answer_frame(&dns));
    // A second learner on the same maps, as a restarted daemon has: about to write slot 1
    // (the policy in force is in slot 0), it adopts what slot 0 holds.
    let mut restarted = sandbox.maps().learner().unwrap();
    restarted.policy_written(1, std::sync::Arc::new(policy_with_more_domains()));
    let adopted: Vec<_> = restarted
        .endpoints()
        .map(|(addr, e)| (addr.to_string(), e.service.clone()))
        .collect();
    assert_eq!(adopted, [(UNKNOWN_HOST.to_string(), "zoom".to_owned())]);
}

#[test]
fn a_server_held_back_then_told_gets_the_named_verdict() {
    if !vigie_lab::privilege::privileged("a_server_held_back_then_told_gets_the_named_verdict") {
        return;
    }
    let mut sandbox = learning_sandbox();
    sandbox.set_learning(false);
    let client = quic_client(&rfc9001_initial());
    run(&mut sandbox, Hook::XdpOutbound, &client.build());
    let server = client.clone().reversed().payload(&[0xc3; 1200]).build();
    // The daemon is late: the server's first datagram is held back.
    assert_eq!(run(&mut sandbox, Hook::TcReply, &server), Outcome::Drop);
    assert_eq!(stat(&sandbox, stat::QUIC_HELD), 1);
    // It reads the Initial waiting in the ring: the flow is Zoom's, the server stays unheard.
    sandbox.set_learning(true);
    assert_eq!(run(&mut sandbox, Hook::TcReply, &server), Outcome::Drop);
    let (_, entry) = only_flow(&sandbox);
    assert_eq!((entry.service, entry.evidence), (ZOOM, evidence::QUIC_SNI));
    assert_eq!(
        stat(&sandbox, stat::QUIC_HELD),
        1,
        "dropped by verdict, not held"
    );
    assert_eq!(stat(&sandbox, stat::QUIC_TIMED_OUT), 0);
}

#[test]
fn monitor_mode_holds_no_quic_back() {
    if !vigie_lab::privilege::privileged("monitor_mode_holds_no_quic_back") {
        return;
    }
    let mut sandbox = Sandbox::new().unwrap();
    let mut policy = policy_with_more_domains();
    policy.settings.mode = vigie_common::action::mode::MONITOR;
    sandbox.apply(&policy).unwrap();
    sandbox.set_learning(false);
    let client = quic_client(&rfc9001_initial());
    run(&mut sandbox, Hook::XdpOutbound, &client.build());
    assert_eq!(only_flow(&sandbox).1.flags & flags::QUIC_PENDING, 0);
    let server = client.reversed().payload(&[0xc3; 1200]).build();
    assert_eq!(run(&mut sandbox, Hook::TcReply, &server), Outcome::Pass);
    assert_eq!(stat(&sandbox, stat::QUIC_HELD), 0);
}

#[test]
fn early_data_waits_for_the_name_too() {
    if !vigie_lab::privilege::privileged("early_data_waits_for_the_name_too") {
        return;
    }
    let mut sandbox = learning_sandbox();
    sandbox.set_learning(false);
    let initial = rfc9001_initial();
    run(
        &mut sandbox,
        Hook::XdpOutbound,
        &quic_client(&initial).build(),
    );
    // A 0-RTT packet (long header, type 1, version 1) and a short-header packet from the
    // client while the name is unknown: held back, they would reach a server that may be
    // blocked. Another Initial passes and goes to the daemon.
    let mut zero_rtt = initial.clone();
    zero_rtt[0] = 0xd0;
    let short = [0x40; 300];
    for early in [zero_rtt.as_slice(), short.as_slice()] {
        assert_eq!(
            run(&mut sandbox, Hook::XdpOutbound, &quic_client(early).build()),
            Outcome::Drop
        );
    }
    assert_eq!(stat(&sandbox, stat::QUIC_HELD), 2);
    assert_eq!(
        run(
            &mut sandbox,
            Hook::XdpOutbound,
            &quic_client(&initial).build()
        ),
        Outcome::Pass
    );
    assert_eq!(stat(&sandbox, stat::QUIC_INITIALS), 2);
    assert_eq!(stat(&sandbox, stat::QUIC_UNKNOWN_VERSION), 0);
    // Once the name is told (a service of no rule here would pass), they go on as decided.
    sandbox.set_learning(true);
    assert_eq!(
        run(
            &mut sandbox,
            Hook::XdpOutbound,
            &quic_client(&short).build()
        ),
        Outcome::Drop,
        "example.com is one of Zoom's domains in this policy"
    );
}
