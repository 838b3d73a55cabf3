//! vigie-lab: vigie's main job on its embedded defaults, in a lab of network namespaces.
//!
//! Builds the lab (a LAN host, a gateway, an "internet" holding an address of each blocked
//! service and of the lab's Visio), runs `vigie run` on the gateway with the policy built into
//! the binary (or `--policy DIR`), sends UDP, TCP and ICMP from the LAN host to every address,
//! prints what passed and what was blocked and the flow events vigie reported, and removes
//! everything (also on Ctrl-C or a panic). Exits 0 when the results are what the default
//! policy says (the five non-European services blocked, Visio reached), 1 when not, 2 when the
//! lab could not run, 130 when interrupted.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use serde_json::Value;
use vigie_lab::daemon::{Daemon, Hook};
use vigie_lab::fixtures::{self, BLOCKED_SERVICES, VISIO};
use vigie_lab::peer::{ProbeResult, Proto};
use vigie_lab::scenario::Lab;

#[derive(Debug, Parser)]
#[command(
    name = "vigie-lab",
    about = "Run vigie on a gateway of network namespaces and show what it blocks"
)]
struct Args {
    /// Where vigie classifies outbound traffic: xdp or tc-ingress (on the gateway's LAN side),
    /// tc-egress (on its internet side).
    #[arg(long, default_value = "xdp")]
    hook: Hook,
    /// A policy directory for vigie; by default it uses the policy built into it.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// The catalog the service addresses are taken from.
    #[arg(long, default_value_os_t = fixtures::shipped_policy_dir().join("catalog"))]
    catalog: PathBuf,
    /// How long each probe waits for its answer.
    #[arg(long, default_value_t = 700)]
    timeout_ms: u64,
    /// The vigie binary (default: next to this program).
    #[arg(long)]
    vigie: Option<PathBuf>,
}

/// `println!` that survives a closed stdout (`vigie-lab | head`): a panic there is harmless,
/// but one in a cleanup path would abort before the lab is removed.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that survives a closed stderr.
macro_rules! err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// SIGINT and SIGTERM set a flag that the steps check, so that the lab is removed by the normal
/// drop path rather than left behind. Children get the default handlers back when they exec.
fn catch_interrupts() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(signal, handler) };
    }
}

fn check_interrupted() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(reason) = vigie_lab::privilege::missing_privilege() {
        err!("vigie-lab: cannot build the lab: {reason}");
        return ExitCode::from(2);
    }
    catch_interrupts();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) if INTERRUPTED.load(Ordering::SeqCst) => {
            err!("vigie-lab: interrupted; the lab has been removed (last step: {e:#})");
            ExitCode::from(130)
        }
        Err(e) => {
            err!("vigie-lab: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> anyhow::Result<bool> {
    let vigie = match &args.vigie {
        Some(path) => path.clone(),
        None => vigie_lab::bins::vigie(None)?,
    };
    let peer = vigie_lab::bins::peer()?;
    let services = fixtures::lab_services(&args.catalog)
        .with_context(|| format!("taking service addresses from {}", args.catalog.display()))?;
    err!("vigie-lab: building the lab (namespaces, veth, echo servers)");
    let lab = Lab::with_services(&peer, vigie, &services)?;
    out!(
        "lab: LAN host in {}, gateway in {}, internet in {}",
        lab.topo.lan(),
        lab.topo.gw(),
        lab.topo.inet()
    );
    check_interrupted()?;

    let policy = args.policy.as_deref();
    let (hook, iface) = (args.hook, args.hook.iface());
    err!("vigie-lab: starting vigie on the gateway ({hook} on {iface})");
    let daemon = lab.start_vigie(hook, policy)?;
    let policy_name = policy.map_or_else(
        || "embedded default".to_owned(),
        |p| p.display().to_string(),
    );
    let pins = daemon.pin_dir().display();
    out!("vigie: hook {hook} on {iface}, policy {policy_name}, pins in {pins}");
    check_interrupted()?;

    let mut labels: Vec<&str> = BLOCKED_SERVICES.to_vec();
    labels.push(VISIO);
    let timeout = Duration::from_millis(args.timeout_ms);
    let results = lab.probe(&lab.specs(&labels, &Proto::ALL, timeout));
    check_interrupted()?;

    let as_expected = print_results(&results);
    let events = wait_for_events(&daemon)?;
    print_events(&events);
    if as_expected {
        out!("\nresult: as the default policy says (non-European services blocked, Visio reached)");
    } else {
        out!("\nresult: NOT as the default policy says (see the rows marked !!)");
        err!("{}", daemon.log_tail());
    }
    Ok(as_expected)
}

fn expected_pass(label: &str) -> bool {
    !BLOCKED_SERVICES.contains(&label)
}

fn word(passed: bool) -> &'static str {
    if passed { "passed" } else { "blocked" }
}

/// Prints the table; true when every row is as expected.
fn print_results(results: &[ProbeResult]) -> bool {
    out!(
        "\n{:<12} {:<28} {:<5} {:<9} {:<9}",
        "service",
        "address",
        "proto",
        "expected",
        "result"
    );
    out!("{}", "-".repeat(68));
    let mut all_ok = true;
    for r in results {
        let expected = expected_pass(&r.spec.label);
        let ok = r.passed == expected;
        all_ok &= ok;
        let note = if ok {
            String::new()
        } else {
            format!("  !! {}", r.detail)
        };
        out!(
            "{:<12} {:<28} {:<5} {:<9} {:<9}{note}",
            r.spec.label,
            r.spec.addr.to_string(),
            r.spec.proto.name(),
            word(expected),
            word(r.passed),
        );
    }
    all_ok
}

/// The events, once every blocked service has one and a short pause brought no more (the
/// daemon writes them as the kernel reports them, a little after the packets).
fn wait_for_events(daemon: &Daemon<'_>) -> anyhow::Result<Vec<Value>> {
    let mut seen = 0;
    let events = daemon.wait_events(Duration::from_secs(3), |events| {
        let settled = events.len() == seen
            && BLOCKED_SERVICES
                .iter()
                .all(|s| events.iter().any(|e| e["service"] == *s));
        seen = events.len();
        settled || INTERRUPTED.load(Ordering::SeqCst)
    });
    check_interrupted()?;
    Ok(events)
}

fn field(event: &Value, key: &str) -> String {
    match event.get(key) {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

fn print_events(events: &[Value]) {
    out!("\nflow events reported by vigie ({}):", events.len());
    for e in events {
        out!(
            "  {} {} -> {} {:<6} service={} rule={} action={} mode={} evidence={}",
            field(e, "time"),
            field(e, "src"),
            field(e, "dst"),
            field(e, "proto"),
            field(e, "service"),
            field(e, "rule"),
            field(e, "action"),
            field(e, "mode"),
            field(e, "evidence"),
        );
    }
}
