//! How long vigie takes to act on what a payload teaches: the time from a DNS response (or a
//! QUIC client Initial) crossing the hook to the learned endpoint (or the flow's service)
//! being in force in the kernel, p50 and p99.
//!
//! The shipped policy is applied to a private, unattached datapath; the packets run through
//! the real reply (DNS) and XDP (QUIC) programs with `BPF_PROG_TEST_RUN`, which stamp the
//! payload records as an attached program does. A second thread reads the payload ring as the
//! daemon does (a tokio task woken by the ring's descriptor, the same `Learner`), and notes,
//! after each kernel write, the time since the stamp. Packets are spaced 2 ms apart, so that
//! each one wakes an idle reader: the worst case for latency, the usual case on a gateway.
//!
//! Needs root. Usage: cargo run --release -p vigie --example `bench_learning`

#![allow(
    clippy::cast_precision_loss,
    reason = "counts and nanoseconds far below 2^52"
)]

use std::{
    net::Ipv4Addr,
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

#[path = "common/udp.rs"]
mod udp;
use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use vigie::{
    learning::{self, Learner, Lesson},
    policy,
    sandbox::{Hook, Sandbox},
};

const SAMPLES: usize = 2_000;
const SPACING: Duration = Duration::from_millis(2);

fn main() -> Result<()> {
    let compiled = policy::load_embedded().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut sandbox = Sandbox::new().context("loading the datapath (root needed)")?;
    sandbox.apply(&compiled.policy)?;
    let (ring, learner) = sandbox.payload_reader()?;
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || read(ring, learner, &tx));
    println!("vigie learning benchmark: payload crossing the hook -> in force in the kernel");
    println!(
        "({SAMPLES} packets of each kind, {} ms apart)",
        SPACING.as_millis()
    );
    println!();

    let quic = quic_initial();
    // The client's question crosses the gateway first: only answers to one are read.
    sandbox.run(
        Hook::XdpOutbound,
        &udp::frame(CLIENT, 40_000, RESOLVER, 53, &dns("zoom.us", CLIENT)),
    )?;
    let started = Instant::now();
    for i in 0..SAMPLES {
        let host = Ipv4Addr::from(0x6440_0000_u32 + i as u32);
        let name = format!("h{i}.zoom.us");
        sandbox.run(
            Hook::TcReply,
            &udp::frame(RESOLVER, 53, CLIENT, 40_000, &dns(&name, host)),
        )?;
        std::thread::sleep(SPACING);
        // Each QUIC flow from its own port: the daemon reads one reader per flow.
        sandbox.run(
            Hook::XdpOutbound,
            &udp::frame(CLIENT, 20_000 + i as u16, SERVER, 443, &quic),
        )?;
        std::thread::sleep(SPACING);
    }
    let elapsed = started.elapsed();
    let swap = swap_with_learned(&sandbox, &compiled.policy)?;
    drop(sandbox);
    let mut dns = Vec::new();
    let mut quic = Vec::new();
    while let Ok((signal, delay)) = rx.recv_timeout(Duration::from_secs(2)) {
        match signal {
            Signal::Dns => dns.push(delay),
            Signal::Quic => quic.push(delay),
        }
    }
    drop(reader);
    println!(
        "{:<40} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "signal", "count", "p50", "p90", "p99", "max"
    );
    report("DNS answer -> learned endpoint active", &mut dns);
    report("QUIC Initial -> name told to the flow", &mut quic);
    println!();
    println!("({:.1} s in all)", elapsed.as_secs_f64());
    println!();
    println!(
        "a policy swap rewrites the learned addresses into the new slot: {} of them in {:.1} ms",
        LEARNED_AT_SWAP,
        swap.as_secs_f64() * 1e3
    );
    Ok(())
}

/// Learned addresses when the swap is timed: the default `dns_max_entries`.
const LEARNED_AT_SWAP: usize = 50_000;

/// The time a policy swap spends writing `LEARNED_AT_SWAP` learned addresses into the slot it
/// is about to make active (a learner of its own on the sandbox's maps).
fn swap_with_learned(
    sandbox: &Sandbox,
    policy: &vigie::compiled::CompiledPolicy,
) -> Result<Duration> {
    let mut learner = sandbox.maps().learner()?;
    let policy = std::sync::Arc::new(policy.clone());
    learner.policy_written(0, std::sync::Arc::clone(&policy));
    let key = vigie_common::flow::FlowKey::default();
    let now = learning::monotonic_ns();
    for i in 0..LEARNED_AT_SWAP {
        let host = Ipv4Addr::from(0x0a00_0000_u32 + i as u32);
        let message = dns(&format!("s{i}.zoom.us"), host);
        let record =
            learning::record::encode(&key, now, vigie_common::payload::kind::DNS_UDP, &message);
        learner.payload(&record);
    }
    anyhow::ensure!(
        learner.learned_count() == LEARNED_AT_SWAP,
        "learned {} addresses, not {LEARNED_AT_SWAP}",
        learner.learned_count()
    );
    let started = Instant::now();
    learner.policy_written(1, policy);
    Ok(started.elapsed())
}

enum Signal {
    Dns,
    Quic,
}

/// The daemon's payload reader, on its own runtime: woken by the ring, it hands each record
/// to the learner and notes how long after the stamp the kernel was written.
fn read(ring: RingBuf<MapData>, mut learner: Learner, tx: &mpsc::Sender<(Signal, Duration)>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        #[allow(deprecated)]
        let Ok(mut ring) = AsyncFd::new(ring) else {
            return;
        };
        loop {
            let Ok(mut guard) = ring.readable_mut().await else {
                return;
            };
            let inner = guard.get_inner_mut();
            while let Some(item) = inner.next() {
                let Some(stamp) = learning::record::decode(&item).map(|p| p.timestamp_ns) else {
                    continue;
                };
                let signal = match learner.payload(&item) {
                    Lesson::Endpoints { learned } if learned > 0 => Signal::Dns,
                    Lesson::QuicName { .. } => Signal::Quic,
                    _ => continue,
                };
                if tx.send((signal, learning::delay_since(stamp))).is_err() {
                    return;
                }
            }
            guard.clear_ready();
        }
    });
}

fn report(what: &str, delays: &mut [Duration]) {
    delays.sort_unstable();
    let at = |per_mille: usize| {
        delays
            .get(delays.len().saturating_sub(1) * per_mille / 1000)
            .map_or("-".to_owned(), |d| {
                format!("{:.1} us", d.as_secs_f64() * 1e6)
            })
    };
    println!(
        "{what:<40} {:>7} {:>9} {:>9} {:>9} {:>9}",
        delays.len(),
        at(500),
        at(900),
        at(990),
        at(1000)
    );
}

const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
const RESOLVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 53);
const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 80);

/// A DNS response: `name` A `addr`, TTL 300.
fn dns(name: &str, addr: Ipv4Addr) -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&[0, 1, 0, 1]);
    m.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x01, 0x2c, 0, 4]);
    m.extend_from_slice(&addr.octets());
    m
}

/// RFC 9001's client Initial, whose ClientHello names `example.com`: no catalog name, but the
/// daemon does the same work for it as for one (decrypt, read, match, write the flow entry
/// that ends the kernel's wait).
fn quic_initial() -> Vec<u8> {
    include_str!("../src/learning/quic/fixtures/rfc9001_a2_client_initial.hex")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(str::bytes)
        .filter(u8::is_ascii_hexdigit)
        .collect::<Vec<u8>>()
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap_or("00"), 16).unwrap_or(0))
        .collect()
}
