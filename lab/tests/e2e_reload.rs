//! The daemon follows its policy directory: an edit that compiles is in force within moments,
//! without a signal; an edit that does not compile changes nothing that flows, and the log says
//! where the file is wrong.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use vigie_lab::daemon::Hook;
use vigie_lab::fixtures::{BLOCKED_SERVICES, Mode, PolicyDir};
use vigie_lab::peer::{self, BLOCK_TIMEOUT, PASS_TIMEOUT, Proto};
use vigie_lab::scenario::Lab;

const PEER: &str = env!("CARGO_BIN_EXE_vigie-peer");

/// Replaces `policy.toml` as an editor saves it: a new file renamed over the old one.
fn save(dir: &Path, text: &str) {
    let tmp = dir.join(".policy.toml.swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("policy.toml")).unwrap();
}

#[test]
fn edits_to_the_policy_take_effect_and_broken_ones_are_refused() {
    if !vigie_lab::privilege::privileged(
        "edits_to_the_policy_take_effect_and_broken_ones_are_refused",
    ) {
        return;
    }
    let vigie = vigie_lab::bins::vigie(Some(Path::new(PEER))).unwrap_or_else(|e| panic!("{e:#}"));
    let lab = Lab::new(Path::new(PEER), vigie).unwrap();
    let policy = PolicyDir::write(Mode::Monitor).unwrap();
    let daemon = lab.start_vigie(Hook::Xdp, Some(policy.path())).unwrap();
    let tcp = |timeout| lab.specs(&BLOCKED_SERVICES, &[Proto::Tcp], timeout);

    let monitored = lab.probe(&tcp(PASS_TIMEOUT));
    let failed = peer::unexpected(&monitored, true);
    assert!(
        failed.is_empty(),
        "monitor mode blocked:\n{}",
        failed.join("\n")
    );

    // Switch to enforce by editing the file, and nothing else.
    let text = std::fs::read_to_string(policy.path().join("policy.toml")).unwrap();
    let enforcing = text.replace("mode = \"monitor\"", "mode = \"enforce\"");
    assert_ne!(text, enforcing);
    let saved = Instant::now();
    save(policy.path(), &enforcing);
    let deadline = saved + Duration::from_secs(10);
    loop {
        let results = lab.probe(&tcp(BLOCK_TIMEOUT));
        if peer::unexpected(&results, false).is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still passing 10 s after the edit; log:\n{}",
            daemon.log_tail()
        );
    }
    eprintln!("enforcing {:?} after the edit", saved.elapsed());
    let log = daemon.log();
    assert!(log.contains("a change in the policy directory"), "{log}");
    let generation = daemon.status().unwrap().generation;

    // A broken file: the running policy stays, the log names the place.
    save(
        policy.path(),
        &format!("{enforcing}\n[[rule]]\nname = \"half-written\"\n"),
    );
    let refused = Instant::now() + Duration::from_secs(10);
    while !daemon.log().contains("reload refused") {
        assert!(
            Instant::now() < refused,
            "no refusal logged:\n{}",
            daemon.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = daemon.log();
    assert!(
        log.contains("policy.toml:"),
        "the refusal names no place:\n{log}"
    );
    let results = lab.probe(&lab.blocked_specs(BLOCK_TIMEOUT));
    let failed = peer::unexpected(&results, false);
    assert!(
        failed.is_empty(),
        "a broken file let traffic through:\n{}",
        failed.join("\n")
    );
    let visio = lab.probe(&lab.visio_specs(PASS_TIMEOUT));
    let failed = peer::unexpected(&visio, true);
    assert!(
        failed.is_empty(),
        "Visio unreachable:\n{}",
        failed.join("\n")
    );
    assert_eq!(
        daemon.status().unwrap().generation,
        generation,
        "nothing was applied"
    );

    // Saving the same policy again changes nothing in the kernel.
    save(policy.path(), &enforcing);
    let settled = Instant::now() + Duration::from_secs(10);
    while !daemon.log().contains("the policy is unchanged") {
        assert!(
            Instant::now() < settled,
            "no reload after the fix:\n{}",
            daemon.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(daemon.status().unwrap().generation, generation);
}
