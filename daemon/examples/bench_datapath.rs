//! Per-packet cost of vigie's kernel programs under `BPF_PROG_TEST_RUN`, beside a bare program
//! that only passes the packet, with 10, 1,000 and 100,000 destination prefixes loaded.
//!
//! - hit: one packet of a known flow, repeated in the kernel (the per-CPU flow cache's path);
//! - known: the same flows again, each run once: found in the flow table, but too many for
//!   the per-CPU flow cache, whose rows they keep replacing;
//! - miss: many distinct flows, each run once (parse, prefix lookups, rule walk, flow insert,
//!   counters, event), averaging the kernel's reported durations; the event ring is read
//!   every 4,096 flows;
//! - read: as miss, with the event ring read after every packet, as the daemon does when it
//!   keeps up: what waking the reader costs the packet.
//!
//! Bare and vigie runs are interleaved round by round so that drift on a shared machine hits
//! both alike; the figure to read is the difference. Beside them, the floor program
//! (`ebpf/src/bin/bare.rs`) only looks each flow up in an LRU table shaped as vigie's and
//! inserts it: what a new flow costs any classifier that keeps such a table. Needs root.
//!
//! Usage: cargo run --release -p vigie --example `bench_datapath` [-- --flows N --rounds R
//! --prefixes P --hits H --unlisted]: H repeats of the hit packet (default 200,000; a profiler
//! run of the misses alone wants 1); P alone instead of 10, 1,000 and 100,000; with `--unlisted`,
//! every flow goes to the /24 after a loaded prefix (almost never loaded itself): no service,
//! the policy's default decides and no event is written.

// Figures are averages of counts far below 2^52: the float conversions lose nothing.
#![allow(
    clippy::cast_precision_loss,
    reason = "counts and durations far below 2^52"
)]

use std::{net::Ipv4Addr, time::Duration};

use ipnet::Ipv4Net;

#[path = "common/udp.rs"]
mod udp;
use vigie::{
    compiled::{CompiledPolicy, RuleInfo, ServiceInfo},
    sandbox::{Bare, Hook, Sandbox},
};
use vigie_common::{
    action,
    policy::{Destination, Rule, Settings, condition},
};

const PREFIX_COUNTS: [usize; 3] = [10, 1_000, 100_000];
const HIT_REPEAT: u32 = 200_000;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let flows = flag(&args, "--flows").unwrap_or(20_000);
    let rounds = flag(&args, "--rounds").unwrap_or(3);
    let counts: Vec<usize> = flag(&args, "--prefixes").map_or(PREFIX_COUNTS.to_vec(), |p| vec![p]);
    let unlisted = args.iter().any(|a| a == "--unlisted");
    let hits = flag(&args, "--hits").map_or(HIT_REPEAT, |h| h as u32);
    println!("vigie datapath benchmark: BPF_PROG_TEST_RUN, ns per packet (kernel-measured)");
    println!(
        "miss and read = {flows} distinct flows each per round, hit = {hits} repeats per round, {rounds} rounds"
    );
    println!();
    println!(
        "{:<5} {:>9} {:<5} {:>9} {:>9} {:>9} {:>9} {:>11}",
        "hook", "prefixes", "case", "bare", "floor", "vigie", "added", "over floor"
    );
    for &count in &counts {
        for (hook, xdp) in [(Hook::XdpOutbound, true), (Hook::TcOutbound, false)] {
            let m = measure(count, hook, xdp, (flows, hits), rounds, unlisted)?;
            let name = if xdp { "xdp" } else { "tc" };
            row(name, count, "hit", m.hit);
            row(name, count, "known", m.known);
            row(name, count, "miss", m.miss);
            row(name, count, "read", m.read);
        }
    }
    Ok(())
}

fn flag(args: &[String], name: &str) -> Option<usize> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

fn row(hook: &str, prefixes: usize, case: &str, [bare, floor, vigie]: [f64; 3]) {
    println!(
        "{hook:<5} {prefixes:>9} {case:<5} {bare:>9.1} {floor:>9.1} {vigie:>9.1} {:>+9.1} {:>+11.1}",
        vigie - bare,
        vigie - floor
    );
}

/// Mean ns per packet of one case: the bare program, the floor program, vigie.
type Case = [f64; 3];

/// The four cases of one hook and prefix count.
struct Figures {
    hit: Case,
    known: Case,
    miss: Case,
    read: Case,
}

fn measure(
    count: usize,
    hook: Hook,
    xdp: bool,
    (flows, hits): (usize, u32),
    rounds: usize,
    unlisted: bool,
) -> anyhow::Result<Figures> {
    let policy = synthetic_policy(count);
    let mut sandbox = Sandbox::new()?;
    sandbox.apply(&policy)?;
    let mut bare = Bare::new()?;
    let dsts: Vec<Ipv4Addr> = policy
        .destinations_v4
        .iter()
        .map(|(n, _)| {
            let host = host_in(*n);
            if unlisted {
                Ipv4Addr::from(u32::from(host).wrapping_add(256))
            } else {
                host
            }
        })
        .collect();
    let hit_frame = udp::frame(Ipv4Addr::new(10, 0, 0, 1), 40_000, dsts[0], 8801, &[0; 18]);
    sandbox.run(hook, &hit_frame)?;
    let mut sums = Figures {
        hit: [0.0; 3],
        known: [0.0; 3],
        miss: [0.0; 3],
        read: [0.0; 3],
    };
    let mut next_flow = 0u32;
    for _ in 0..rounds {
        add(
            &mut sums.hit,
            [
                ns(bare.run_repeated(xdp, &hit_frame, hits)?),
                ns(bare.run_floor(xdp, &hit_frame, hits)?),
                ns(sandbox.run_repeated(hook, &hit_frame, hits)?.1),
            ],
        );
        let mut once = |sandbox: &mut Sandbox, flow: u32, i: usize| -> anyhow::Result<Case> {
            let frame = miss_frame(flow, &dsts, i);
            Ok([
                ns(bare.run_repeated(xdp, &frame, 1)?),
                ns(bare.run_floor(xdp, &frame, 1)?),
                ns(sandbox.run_repeated(hook, &frame, 1)?.1),
            ])
        };
        // New flows, the event ring read now and then: a reader that has fallen behind,
        // which the ring never wakes.
        let first = next_flow;
        let mut total = [0.0; 3];
        for i in 0..flows {
            add(&mut total, once(&mut sandbox, next_flow, i)?);
            next_flow += 1;
            if i % 4096 == 0 {
                sandbox.drain_events();
            }
        }
        add(&mut sums.miss, total.map(|t| t / flows as f64));
        // The same flows again, each once: known to the flow table, but far more of them than
        // rows in the per-CPU flow cache.
        let mut total = [0.0; 3];
        for i in 0..flows {
            add(&mut total, once(&mut sandbox, first + i as u32, i)?);
        }
        add(&mut sums.known, total.map(|t| t / flows as f64));
        // New flows again, the ring read after each: the daemon, which keeps up, and whom
        // each event may wake (what that costs the packet is the point of this case).
        let mut total = [0.0; 3];
        for i in 0..flows {
            add(&mut total, once(&mut sandbox, next_flow, i)?);
            next_flow += 1;
            sandbox.drain_events();
        }
        add(&mut sums.read, total.map(|t| t / flows as f64));
    }
    let r = rounds as f64;
    Ok(Figures {
        hit: sums.hit.map(|s| s / r),
        known: sums.known.map(|s| s / r),
        miss: sums.miss.map(|s| s / r),
        read: sums.read.map(|s| s / r),
    })
}

fn add(sum: &mut Case, figures: Case) {
    for (s, f) in sum.iter_mut().zip(figures) {
        *s += f;
    }
}

fn ns(d: Duration) -> f64 {
    d.as_nanos() as f64
}

/// A distinct flow: source address and port from the flow number, destination cycling over
/// the loaded prefixes.
fn miss_frame(flow: u32, dsts: &[Ipv4Addr], i: usize) -> Vec<u8> {
    let src = Ipv4Addr::from(0x0a00_0000 | (flow >> 14));
    let port = 1024 + (flow & 0x3fff) as u16;
    udp::frame(
        src,
        port,
        dsts[i.wrapping_mul(7919) % dsts.len()],
        8801,
        &[0; 18],
    )
}

fn host_in(net: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + 1)
}

/// `count` distinct /24 prefixes spread over the address space (a fixed sequence), one
/// service, one rule that blocks it.
fn synthetic_policy(count: usize) -> CompiledPolicy {
    let mut state = 0x9e37_79b9_u32;
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < count {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let net = (state & 0xffff_ff00) | 0x0100_0000;
        seen.insert(net);
    }
    let destinations_v4 = seen
        .into_iter()
        .map(|n| {
            let net = Ipv4Net::new(Ipv4Addr::from(n), 24).expect("valid /24");
            (
                net,
                Destination {
                    service: 1,
                    classes: 0,
                    pad: 0,
                },
            )
        })
        .collect();
    let rule = Rule {
        services: [1 << 1, 0],
        conditions: condition::SERVICES,
        action: action::DROP,
        port_max: u16::MAX,
        ..Rule::default()
    };
    let info = |id: &str| ServiceInfo {
        id: id.into(),
        name: id.into(),
        operator: "bench".into(),
        jurisdiction: "US".into(),
        category: "conferencing".into(),
    };
    CompiledPolicy {
        settings: Settings {
            default_action: action::ALLOW,
            unparsed_action: action::ALLOW,
            ..Settings::default()
        },
        rules: vec![rule],
        rule_info: vec![RuleInfo::named("block-bench")],
        services: vec![info("none"), info("bench")],
        groups: vec!["none".into()],
        reserved: vigie::compiled::Reserved::default(),
        destinations_v4,
        destinations_v6: Vec::new(),
        sources_v4: Vec::new(),
        sources_v6: Vec::new(),
        domains: Vec::new(),
        stun_attributes: Vec::new(),
        port_signals: Vec::new(),
        learning: vigie::compiled::LearningSettings::DEFAULT,
        digest: "bench".into(),
    }
}
