//! Compile and apply times of policies with 1,000, 10,000 and 100,000 prefixes and with the
//! whole country database in play, the kernel entries they make, and the daemon's memory.
//!
//! - compile: `policy::load_dir` on a policy directory written to disk (read, parse, validate,
//!   aggregate, GeoIP);
//! - apply: `Sandbox::apply` into a private, unattached datapath: the first apply writes a whole
//!   slot, the second the other slot, the third changes one prefix (only the difference is
//!   written, after the 20 ms grace period that every swap waits out);
//! - daemon memory: `vigie run` on a veth in a private network namespace with the country
//!   policy, its resident set once the policy is applied.
//!
//! Needs root. Usage: cargo run --release -p vigie --example `bench_policy`

#![allow(
    clippy::cast_precision_loss,
    reason = "durations and sizes far below 2^52"
)]

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use vigie::{policy, sandbox::Sandbox};

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];

fn main() -> Result<()> {
    let root = std::env::temp_dir().join(format!("vigie-bench-policy-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    println!("vigie policy benchmark: compile (load_dir) and apply (into a private datapath)");
    println!();
    println!(
        "{:<28} {:>9} {:>9} {:>10} {:>10} {:>10} {:>11}",
        "policy", "v4 ents", "v6 ents", "compile", "apply 1st", "apply 2nd", "apply 1 chg"
    );
    for size in SIZES {
        let dir = root.join(format!("prefixes-{size}"));
        write_prefix_policy(&dir, size, 0)?;
        row(&format!("{size} prefixes"), &dir, |d| {
            write_prefix_policy(d, size, 1)
        })?;
    }
    let dir = root.join("countries");
    write_country_policy(&dir)?;
    row("every country (eea/non-eea)", &dir, |d| {
        let text = std::fs::read_to_string(d.join("policy.toml"))?;
        std::fs::write(d.join("policy.toml"), text.replace("monitor", "allow"))?;
        Ok(())
    })?;
    println!();
    let (rss, hwm) = daemon_memory(&dir)?;
    println!(
        "vigie run with the country policy: resident {:.1} MiB, peak {:.1} MiB",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    std::fs::remove_dir_all(&root)?;
    Ok(())
}

fn row(name: &str, dir: &Path, change: impl Fn(&Path) -> Result<()>) -> Result<()> {
    let started = Instant::now();
    let compilation = policy::load_dir(dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let compile = started.elapsed();
    let compiled = compilation.policy;
    let mut sandbox = Sandbox::new()?;
    let first = timed(|| sandbox.apply(&compiled))?;
    let second = timed(|| sandbox.apply(&compiled))?;
    change(dir)?;
    let changed = policy::load_dir(dir)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .policy;
    // The slot written now is the one the first apply wrote: only the difference goes in.
    let third = timed(|| sandbox.apply(&changed))?;
    println!(
        "{name:<28} {:>9} {:>9} {:>8.0}ms {:>8.0}ms {:>8.0}ms {:>9.0}ms",
        compiled.destinations_v4.len(),
        compiled.destinations_v6.len(),
        ms(compile),
        ms(first),
        ms(second),
        ms(third)
    );
    Ok(())
}

fn timed<T, E: Into<anyhow::Error>>(f: impl FnOnce() -> Result<T, E>) -> Result<Duration> {
    let started = Instant::now();
    f().map_err(Into::into)?;
    Ok(started.elapsed())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

const SETTINGS: &str =
    "[settings]\nmode = \"enforce\"\ndefault = \"allow\"\nunparsed = \"allow\"\n";

/// A catalog of one service with `count` distinct /24 prefixes spread over the address space
/// (a fixed sequence; `variant` 1 replaces the first prefix), and a rule that blocks it.
fn write_prefix_policy(dir: &Path, count: usize, variant: u32) -> Result<()> {
    std::fs::create_dir_all(dir.join("catalog"))?;
    let mut state = 0x9e37_79b9_u32;
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < count {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        // Every other /24 only, so that no two listed prefixes merge.
        seen.insert((state & 0xffff_fe00) | 0x0100_0000);
    }
    let mut prefixes = String::new();
    for (i, net) in seen.into_iter().enumerate() {
        let net = if i == 0 && variant == 1 {
            net | 0x100
        } else {
            net
        };
        let [a, b, c, _] = net.to_be_bytes();
        let _ = writeln!(prefixes, "    \"{a}.{b}.{c}.0/24\",");
    }
    std::fs::write(
        dir.join("catalog/bench.toml"),
        format!(
            "id = \"bench\"\nname = \"Bench\"\noperator = \"Bench\"\njurisdiction = \"US\"\ncategory = \"conferencing\"\n\
             prefixes = [\n{prefixes}]\n[source]\nvendor = \"synthetic\"\nretrieved = 2026-11-01\n"
        ),
    )?;
    std::fs::write(
        dir.join("policy.toml"),
        format!(
            "{SETTINGS}[[rule]]\nname = \"block-bench\"\nservices = [\"bench\"]\naction = \"block\"\n"
        ),
    )?;
    Ok(())
}

/// The shipped catalog and database, and two rules that between them name every country with
/// different actions: every network of the database is loaded (merged by class).
fn write_country_policy(dir: &Path) -> Result<()> {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    std::fs::create_dir_all(dir)?;
    let link = |name: &str| -> Result<()> {
        std::os::unix::fs::symlink(shipped.join(name), dir.join(name))
            .with_context(|| format!("linking {name}"))
    };
    link("catalog")?;
    link("geoip")?;
    let shipped_policy = std::fs::read_to_string(shipped.join("policy.toml"))?;
    std::fs::write(
        dir.join("policy.toml"),
        format!(
            "{shipped_policy}\n[[rule]]\nname = \"watch-europe\"\ncountries = [\"eea\"]\naction = \"monitor\"\n\
             [[rule]]\nname = \"block-elsewhere\"\ncountries = [\"non-eea\"]\naction = \"block\"\n"
        ),
    )?;
    Ok(())
}

/// Resident and peak memory (KiB) of `vigie run` with `policy`, in a namespace of its own.
fn daemon_memory(policy: &Path) -> Result<(u64, u64)> {
    let vigie = std::env::current_exe()?
        .ancestors()
        .nth(2)
        .map(|dir| dir.join("vigie"))
        .filter(|p| p.is_file())
        .context(
            "the vigie binary is not built beside this example (cargo build --release -p vigie)",
        )?;
    let ns = format!("vigie-bench-{}", std::process::id());
    let pins = PathBuf::from(format!("/run/vigie-bench-{}", std::process::id()));
    sh(&["ip", "netns", "add", &ns])?;
    let result = (|| -> Result<(u64, u64)> {
        sh(&[
            "ip", "-n", &ns, "link", "add", "bench0", "type", "veth", "peer", "name", "bench1",
        ])?;
        sh(&["ip", "-n", &ns, "link", "set", "bench0", "up"])?;
        sh(&["ip", "-n", &ns, "link", "set", "bench1", "up"])?;
        let log = pins.with_extension("log");
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(&vigie)
            .args([
                "run",
                "--iface",
                "bench0",
                "--hook",
                "xdp",
                "--events",
                "/dev/null",
            ])
            .arg("--policy")
            .arg(policy)
            .arg("--pin-dir")
            .arg(&pins)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !std::fs::read_to_string(&log)?.contains("policy applied") {
            if Instant::now() > deadline || child.try_wait()?.is_some() {
                let _ = child.kill();
                bail!(
                    "vigie run did not apply the policy:\n{}",
                    std::fs::read_to_string(&log)?
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))?;
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let memory = (field("VmRSS:"), field("VmHWM:"));
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        let _ = child.wait();
        let _ = Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(&vigie)
            .args(["detach", "--pin-dir"])
            .arg(&pins)
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_file(&log);
        Ok(memory)
    })();
    sh(&["ip", "netns", "del", &ns])?;
    result
}

fn sh(args: &[&str]) -> Result<()> {
    let status = Command::new(args[0]).args(&args[1..]).status()?;
    if !status.success() {
        bail!("{} failed", args.join(" "));
    }
    Ok(())
}
