//! Flow events survive a stop: repeats that an aggregation window counted are reported when
//! the daemon stops (SIGTERM), not lost with the process. A sink that takes nothing costs
//! events, counted, never the daemon's answers or its stop.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use vigie_lab::daemon::{Daemon, Hook};
use vigie_lab::fixtures::BLOCKED_SERVICES;
use vigie_lab::peer::{self, BLOCK_TIMEOUT, Proto, UDP_PORT};
use vigie_lab::scenario::Lab;

const PEER: &str = env!("CARGO_BIN_EXE_vigie-peer");

/// The host part of an event's `dst` (`addr:port` or `[v6]:port`).
fn host(event: &Value) -> String {
    let dst = event["dst"].as_str().unwrap_or_default();
    dst.parse::<std::net::SocketAddr>()
        .map_or_else(|_| dst.to_owned(), |a| a.ip().to_string())
}

fn suppressed(event: &Value) -> u64 {
    event["suppressed"].as_u64().unwrap_or(0)
}

#[test]
fn stopping_reports_the_repeats_that_open_windows_counted() {
    if !vigie_lab::privilege::privileged("stopping_reports_the_repeats_that_open_windows_counted") {
        return;
    }
    let vigie = vigie_lab::bins::vigie(Some(Path::new(PEER))).unwrap_or_else(|e| panic!("{e:#}"));
    let lab = Lab::new(Path::new(PEER), vigie).unwrap();
    // A window far longer than the test: only the stop can close it.
    let mut daemon = lab
        .start_vigie_with(Hook::Xdp, None, &["--event-window", "600"])
        .unwrap();

    // UDP, TCP and ICMP to each blocked address: three flows (at least) between the same two
    // hosts, of which the first is written and the others counted.
    let results = lab.probe(&lab.blocked_specs(BLOCK_TIMEOUT));
    let failed = peer::unexpected(&results, false);
    assert!(failed.is_empty(), "not blocked:\n{}", failed.join("\n"));
    let destinations: BTreeSet<String> = results.iter().map(|r| r.spec.addr.to_string()).collect();
    let before = daemon.wait_events(Duration::from_secs(5), |events| {
        destinations
            .iter()
            .all(|d| events.iter().any(|e| host(e) == *d))
    });
    for d in &destinations {
        assert!(
            before.iter().any(|e| host(e) == *d),
            "no event to {d}: {before:#?}"
        );
    }
    assert!(
        before.iter().all(|e| suppressed(e) == 0),
        "a window closed before the stop: {before:#?}"
    );

    let status = daemon.stop().unwrap();
    assert!(status.success(), "vigie run exited with {status}");
    let after = daemon.events();
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "the stop rewrote earlier lines"
    );
    let mut counted: BTreeMap<String, u64> = BTreeMap::new();
    for e in &after[before.len()..] {
        assert!(
            suppressed(e) > 0,
            "a line after the stop that reports no repeat: {e}"
        );
        *counted.entry(host(e)).or_default() += suppressed(e);
        let service = e["service"].as_str().unwrap_or_default();
        assert!(BLOCKED_SERVICES.contains(&service), "{e}");
        assert_eq!(e["action"], "block", "{e}");
    }
    for d in &destinations {
        let repeats = counted.get(d).copied().unwrap_or(0);
        assert!(
            repeats >= 2,
            "{d}: {repeats} repeats reported at the stop, three protocols were sent: {after:#?}"
        );
    }
}

/// Flow events written while no daemon ran (after a SIGKILL) wait in the pinned ring; the next
/// daemon, started on the same policy files, writes them with their names (rule, service), not
/// as an unknown rule of an unknown generation.
#[test]
fn events_left_in_the_ring_are_named_by_the_next_daemon() {
    if !vigie_lab::privilege::privileged("events_left_in_the_ring_are_named_by_the_next_daemon") {
        return;
    }
    let vigie = vigie_lab::bins::vigie(Some(Path::new(PEER))).unwrap_or_else(|e| panic!("{e:#}"));
    let lab = Lab::new(Path::new(PEER), vigie).unwrap();
    let mut daemon = lab
        .start_vigie_with(Hook::Xdp, None, &["--event-window", "0"])
        .unwrap();
    let generation = daemon.status().unwrap().generation;
    daemon.kill().unwrap();

    let results = lab.probe(&lab.specs(&["zoom"], &[Proto::Udp, Proto::Tcp], BLOCK_TIMEOUT));
    let failed = peer::unexpected(&results, false);
    assert!(
        failed.is_empty(),
        "not blocked without the daemon:\n{}",
        failed.join("\n")
    );
    daemon.launch().unwrap();
    let zoom: BTreeSet<String> = results.iter().map(|r| r.spec.addr.to_string()).collect();
    let events = daemon.wait_events(Duration::from_secs(5), |events| {
        zoom.iter().all(|d| events.iter().any(|e| host(e) == *d))
    });
    let left: Vec<&Value> = events
        .iter()
        .filter(|e| e["generation"].as_u64() == Some(generation))
        .collect();
    assert!(
        !left.is_empty(),
        "no event of generation {generation}: {events:#?}"
    );
    for e in left {
        assert_eq!(e["service"], "zoom", "{e}");
        assert_eq!(e["rule"], "block-non-european-conferencing", "{e}");
        assert_eq!(e["action"], "block", "{e}");
    }
}

const METRICS: &str = "127.0.0.1:9947";
/// New flows sent while the sink takes nothing: their lines (some 400 bytes each) fill the
/// pipe (64 KiB), then the daemon's queue (`events::sink::QUEUE_LINES`), and more.
const FLOWS: u32 = 8000;
const FIRST_PORT: u16 = 20_000;
/// How long a stop may take: the daemon's own bound on the last lines (3 s) and a margin.
const STOP_LIMIT: Duration = Duration::from_secs(10);

/// The `--events` path of the daemon's running process, from its command line.
fn events_path(daemon: &Daemon<'_>) -> PathBuf {
    let pid = daemon.process().expect("the daemon runs").pid();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let at = args
        .iter()
        .position(|a| *a == b"--events")
        .expect("vigie run --events");
    PathBuf::from(String::from_utf8_lossy(args[at + 1]).into_owned())
}

/// One scrape of the daemon's metrics, from inside the gateway namespace, or why it failed.
fn scrape(lab: &Lab) -> Result<String, String> {
    let url = format!("http://{METRICS}/metrics");
    let out = lab
        .topo
        .exec(lab.topo.gw(), "curl", &["-sS", "--max-time", "5", &url])
        .map_err(|e| format!("{e:#}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn dropped_slow(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("vigie_flow_events_dropped_total{reason=\"slow\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Starts the daemon again with a FIFO for its event sink, whose reader (returned, to keep)
/// never reads. The lab gives each start its own event file, `events-<start>.jsonl`: the next
/// start's is made a FIFO before the daemon opens it.
fn relaunch_on_a_fifo(daemon: &mut Daemon<'_>) -> std::fs::File {
    let first = events_path(daemon);
    assert_eq!(
        first.file_name().and_then(|n| n.to_str()),
        Some("events-1.jsonl"),
        "the lab names event files differently now (lab/src/daemon.rs)"
    );
    let fifo = first.with_file_name("events-2.jsonl");
    daemon.kill().unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo {}", fifo.display());
    // Opened for reading without waiting for a writer: the daemon's open for writing succeeds
    // at once, and its writes block once the pipe is full.
    let reader = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    daemon.launch().unwrap();
    assert_eq!(events_path(daemon), fifo, "the daemon writes to the FIFO");
    reader
}

/// `count` datagrams from the LAN to Zoom (blocked by the default policy), each from its own
/// port from `FIRST_PORT` on, `interval_us` apart: as many new flows, each an event.
fn send_new_flows(lab: &Lab, count: u32, interval_us: u32) {
    let zoom = lab
        .topo
        .service_addrs("zoom")
        .into_iter()
        .find(std::net::IpAddr::is_ipv4)
        .expect("an IPv4 address of zoom");
    let target = std::net::SocketAddr::new(zoom, UDP_PORT).to_string();
    let sender = lab
        .topo
        .spawn(
            lab.topo.lan(),
            PEER,
            &[
                "stream",
                "--to",
                &target,
                "--count",
                &count.to_string(),
                "--first-port",
                &FIRST_PORT.to_string(),
                "--interval-us",
                &interval_us.to_string(),
            ],
            Stdio::null(),
            Stdio::null(),
        )
        .unwrap();
    let sent = sender
        .wait_timeout(Duration::from_secs(60))
        .unwrap()
        .expect("the stream ends");
    assert!(sent.success(), "the stream failed");
}

/// The sink is a FIFO whose reader never reads: once the pipe is full, the daemon still
/// answers a scrape, drops and counts the lines it cannot hand over, warns once, and stops on
/// SIGTERM within its bound instead of waiting on a write that never returns.
#[test]
fn a_sink_that_takes_nothing_neither_silences_nor_holds_the_daemon() {
    if !vigie_lab::privilege::privileged(
        "a_sink_that_takes_nothing_neither_silences_nor_holds_the_daemon",
    ) {
        return;
    }
    let vigie = vigie_lab::bins::vigie(Some(Path::new(PEER))).unwrap_or_else(|e| panic!("{e:#}"));
    let lab = Lab::new(Path::new(PEER), vigie).unwrap();
    // Every event written: each new flow is a line for the sink.
    let mut daemon = lab
        .start_vigie_with(
            Hook::Xdp,
            None,
            &["--event-window", "0", "--metrics", METRICS],
        )
        .unwrap();
    let _reader = relaunch_on_a_fifo(&mut daemon);
    send_new_flows(&lab, FLOWS, 50);

    // The pipe is full and the sink thread blocked in write; the daemon answers all the same.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut metrics = scrape(&lab);
    while metrics.as_deref().is_ok_and(|m| dropped_slow(m) == 0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        metrics = scrape(&lab);
    }

    let process = daemon.process().expect("the daemon runs");
    let stopping = Instant::now();
    process.signal(libc::SIGTERM).unwrap();
    let status = process.wait_timeout(STOP_LIMIT).unwrap();
    eprintln!("SIGTERM: {status:?} after {:?}", stopping.elapsed());

    // Every problem at once: the scrape and the stop fail together when a write holds the
    // daemon.
    let log = daemon.log();
    let mut problems = Vec::new();
    match &metrics {
        Err(e) => problems.push(format!("no scrape answered while the pipe was full: {e}")),
        Ok(m) if dropped_slow(m) == 0 => {
            let events: Vec<&str> = m.lines().filter(|l| l.contains("events")).collect();
            problems.push(format!(
                "no line counted as dropped for a slow sink after {FLOWS} flows:\n{}",
                events.join("\n")
            ));
        }
        Ok(m) => eprintln!("{} lines dropped for a slow sink", dropped_slow(m)),
    }
    match status {
        None => problems.push(format!(
            "vigie run still runs {STOP_LIMIT:?} after SIGTERM, its event sink full"
        )),
        Some(status) if !status.success() => {
            problems.push(format!("vigie run exited with {status}"));
        }
        Some(_) => {}
    }
    let warnings = log.matches("the event sink takes no more lines").count();
    if warnings != 1 {
        problems.push(format!(
            "{warnings} warnings about the stall, one was expected"
        ));
    }
    if !log.contains("stopping without them") {
        problems.push("the stop does not say lines were left unwritten".to_owned());
    }
    assert!(
        problems.is_empty(),
        "{}\n{}",
        problems.join("\n"),
        daemon.log_tail()
    );
}

/// A burst of new flows, then nothing: the programs wake the daemon for the first events only
/// (at most once a millisecond per CPU), and the daemon's own poll reads the rest. Every flow
/// is written, none waits for a later flow to wake the daemon.
#[test]
fn a_burst_of_new_flows_is_written_whole() {
    const BURST: u32 = 60;
    if !vigie_lab::privilege::privileged("a_burst_of_new_flows_is_written_whole") {
        return;
    }
    let vigie = vigie_lab::bins::vigie(Some(Path::new(PEER))).unwrap_or_else(|e| panic!("{e:#}"));
    let lab = Lab::new(Path::new(PEER), vigie).unwrap();
    // No aggregation: one line per flow.
    let daemon = lab
        .start_vigie_with(Hook::Xdp, None, &["--event-window", "0"])
        .unwrap();
    // Half a millisecond apart: several flows to a tick of the programs' (coarse) clock, of
    // which only the first wakes the daemon; the last ones are read by its poll alone.
    send_new_flows(&lab, BURST, 500);
    let ports = |events: &[Value]| -> BTreeSet<u16> {
        events
            .iter()
            .filter_map(|e| e["src"].as_str()?.parse::<std::net::SocketAddr>().ok())
            .map(|src| src.port())
            .filter(|port| (FIRST_PORT..FIRST_PORT + BURST as u16).contains(port))
            .collect()
    };
    let events = daemon.wait_events(Duration::from_secs(5), |events| {
        ports(events).len() == BURST as usize
    });
    let written = ports(&events);
    let missing: Vec<u16> = (FIRST_PORT..FIRST_PORT + BURST as u16)
        .filter(|port| !written.contains(port))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {BURST} flows have no line after 5 s, from ports {missing:?}",
        missing.len()
    );
}
