//! Privileged tests need root and BPF. Outside CI they skip with a printed reason; under
//! `VIGIE_REQUIRE_PRIVILEGED=1` (which `.ci/run` sets) a skip is a failure, so that CI can never
//! pass without running them.

/// The variable that turns a skip into a failure.
pub const REQUIRE_VAR: &str = "VIGIE_REQUIRE_PRIVILEGED";

/// Why this process cannot run privileged tests, if it cannot.
#[must_use]
pub fn missing_privilege() -> Option<String> {
    if !is_root() {
        return Some("not running as root (BPF, XDP and network namespaces need it)".into());
    }
    if !std::path::Path::new("/sys/fs/bpf").exists() {
        return Some("/sys/fs/bpf is missing: no BPF filesystem support".into());
    }
    None
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Returns true when the test may go on. Prints why it skips.
///
/// # Panics
/// When the test cannot run and `VIGIE_REQUIRE_PRIVILEGED=1` forbids skipping it.
#[must_use]
pub fn privileged(test: &str) -> bool {
    let Some(reason) = missing_privilege() else {
        return true;
    };
    let required = std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{test}: cannot run privileged test ({reason}) and {REQUIRE_VAR}=1"
    );
    eprintln!("SKIPPED {test}: {reason}");
    false
}
