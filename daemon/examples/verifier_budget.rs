//! How much of the verifier's budget each kernel program uses: the instructions the kernel's
//! verifier processed to prove it safe, against its limit of 1,000,000 per program (global
//! functions included). A program over the limit does not load at all, so a change that adds
//! paths to the classifier should be checked here before it is trusted.
//!
//! Needs root. Usage: cargo run --release -p vigie --example `verifier_budget`

use vigie::sandbox::Sandbox;
use vigie_common::maps::programs;

/// The kernel's limit of processed instructions per program (`BPF_COMPLEXITY_LIMIT_INSNS`).
const LIMIT: u32 = 1_000_000;

fn main() -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let sandbox = Sandbox::new()?;
    let load = started.elapsed();
    println!("{:<24} {:>12} {:>8}", "program", "verified", "budget");
    for name in [
        programs::XDP_OUTBOUND,
        programs::TC_OUTBOUND,
        programs::TC_LAN_INGRESS,
        programs::TC_REPLY,
    ] {
        let count = sandbox
            .program_info(name)?
            .verified_instruction_count()
            .unwrap_or(0);
        println!(
            "{name:<24} {count:>12} {:>7.1}%",
            f64::from(count) * 100.0 / f64::from(LIMIT)
        );
    }
    println!();
    println!(
        "loading and verifying the four programs took {:.1} s",
        load.as_secs_f64()
    );
    Ok(())
}
