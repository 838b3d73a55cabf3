//! The daemon follows its policy directory: an edit that compiles is in force within moments,
//! without a signal; an edit that does not compile changes nothing that flows, and the log says
//! where the file is wrong. What the kernel counted stays under its rule's name when a rule is
//! inserted before it, across the reload and a restart.

use std::{
    collections::BTreeMap,
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

/// The rule the insertion test puts before every other (on a service it never probes).
const INSERTED: &str = "block-webex-first";

/// One sample of `vigie_flows_total`: its labels (service, action, rule, group) and value.
type Sample = (BTreeMap<String, String>, u64);

/// `vigie_flows_total` as the daemon exports it now (its default metrics address, in the
/// gateway namespace); empty while nothing answers there.
fn flows_total(lab: &Lab) -> Vec<Sample> {
    let scrape = lab
        .topo
        .exec(
            lab.topo.gw(),
            "curl",
            &["-sS", "--max-time", "5", "http://127.0.0.1:9947/metrics"],
        )
        .unwrap();
    String::from_utf8_lossy(&scrape.stdout)
        .lines()
        .filter_map(|line| {
            let (labels, value) = line.strip_prefix("vigie_flows_total{")?.split_once("} ")?;
            let labels = labels
                .split(',')
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
                .collect();
            Some((labels, value.trim().parse().ok()?))
        })
        .collect()
}

/// Flows counted where every (label, value) of `wanted` holds.
fn counted(samples: &[Sample], wanted: &[(&str, &str)]) -> u64 {
    samples
        .iter()
        .filter(|(labels, _)| {
            wanted
                .iter()
                .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, n)| n)
        .sum()
}

/// Scrapes until `done` holds (the metrics server may still be starting); the last scrape
/// either way.
fn scrape_until(lab: &Lab, done: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let samples = flows_total(lab);
        if done(&samples) || Instant::now() >= deadline {
            return samples;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn counts_stay_with_their_rule_when_a_rule_is_inserted_before_it() {
    if !vigie_lab::privilege::privileged(
        "counts_stay_with_their_rule_when_a_rule_is_inserted_before_it",
    ) {
        return;
    }
    let vigie = vigie_lab::bins::vigie(Some(Path::new(PEER))).unwrap_or_else(|e| panic!("{e:#}"));
    let lab = Lab::new(Path::new(PEER), vigie).unwrap();
    let policy = PolicyDir::write(Mode::Enforce).unwrap();
    let mut daemon = lab.start_vigie(Hook::Xdp, Some(policy.path())).unwrap();
    let block_zoom = || {
        let results = lab.probe(&lab.specs(&["zoom"], &[Proto::Tcp], BLOCK_TIMEOUT));
        let leaked = peer::unexpected(&results, false);
        assert!(leaked.is_empty(), "Zoom answered:\n{}", leaked.join("\n"));
    };

    // Zoom counted under the shipped rule that blocks it; Visio under the one that keeps it
    // (the first rule: the number an inserted rule would take by position).
    block_zoom();
    let visio = peer::unexpected(&lab.probe(&lab.visio_specs(PASS_TIMEOUT)), true);
    assert!(visio.is_empty(), "Visio unreachable:\n{}", visio.join("\n"));
    let zoom_blocked = [("service", "zoom"), ("action", "block")];
    let first = scrape_until(&lab, |s| {
        counted(s, &zoom_blocked) > 0 && counted(s, &[("service", "visio")]) > 0
    });
    let rule_of = |service: &str| {
        first
            .iter()
            .find(|(labels, _)| labels["service"] == service)
            .map_or_else(
                || panic!("no {service} flow counted: {first:?}"),
                |(labels, _)| labels["rule"].clone(),
            )
    };
    let (blocking, keeping) = (rule_of("zoom"), rule_of("visio"));
    let zoom_count = counted(&first, &zoom_blocked);
    assert_eq!(
        counted(&first, &[("rule", &blocking)]),
        zoom_count,
        "{first:?}"
    );

    // An editor inserts a rule before every other.
    let file = policy.path().join("policy.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let rule =
        format!("[[rule]]\nname = \"{INSERTED}\"\nservices = [\"webex\"]\naction = \"block\"\n\n");
    let inserted = text.replacen("[[rule]]", &format!("{rule}[[rule]]"), 1);
    assert_ne!(text, inserted);
    let generation = daemon.status().unwrap().generation;
    save(policy.path(), &inserted);
    let deadline = Instant::now() + Duration::from_secs(10);
    while daemon.status().unwrap().generation == generation {
        assert!(
            Instant::now() < deadline,
            "the edit was not applied:\n{}",
            daemon.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let held = |samples: &[Sample], when: &str| {
        assert!(
            counted(samples, &[("service", "zoom"), ("rule", &blocking)]) >= zoom_count,
            "{when}: Zoom's flows are no longer {blocking}'s: {samples:?}"
        );
        assert_eq!(
            counted(samples, &[("service", "zoom"), ("rule", &blocking)]),
            counted(samples, &[("service", "zoom")]),
            "{when}: Zoom's flows counted under another rule: {samples:?}"
        );
        assert_eq!(
            counted(samples, &[("rule", INSERTED)]),
            0,
            "{when}: the inserted rule inherited counts: {samples:?}"
        );
        assert!(
            counted(samples, &[("service", "visio"), ("rule", &keeping)]) > 0,
            "{when}: Visio's flows are no longer {keeping}'s: {samples:?}"
        );
    };
    let reloaded = flows_total(&lab);
    held(&reloaded, "after the reload");

    // New flows count under the same rule, and the numbers outlive the daemon.
    block_zoom();
    let after = counted(
        &flows_total(&lab),
        &[("service", "zoom"), ("rule", &blocking)],
    );
    assert!(
        after > zoom_count,
        "new Zoom flows not counted under {blocking}"
    );
    daemon.kill().unwrap();
    daemon.launch().unwrap();
    let restarted = scrape_until(&lab, |s| !s.is_empty());
    held(&restarted, "after a restart");
    assert!(
        counted(&restarted, &[("service", "zoom"), ("rule", &blocking)]) >= after,
        "{restarted:?}"
    );
}

/// A directory where a file is to be written, removed when dropped (also by a failing test).
struct InTheWay(std::path::PathBuf);

impl InTheWay {
    fn at(path: std::path::PathBuf) -> Self {
        std::fs::create_dir_all(path.join("in-the-way")).unwrap();
        Self(path)
    }
}

impl Drop for InTheWay {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The daemon saves a policy's numbering before the policy goes into the kernel: when it cannot
/// (here the state's temporary file is a directory), the policy is refused and the running one
/// stays, in the kernel and in the log's words. Saved after the swap, the same failure left
/// the new policy in force under a log line saying that the running policy stayed.
#[test]
fn a_policy_whose_numbering_cannot_be_saved_is_refused() {
    if !vigie_lab::privilege::privileged("a_policy_whose_numbering_cannot_be_saved_is_refused") {
        return;
    }
    let vigie = vigie_lab::bins::vigie(Some(Path::new(PEER))).unwrap_or_else(|e| panic!("{e:#}"));
    let lab = Lab::new(Path::new(PEER), vigie).unwrap();
    let policy = PolicyDir::write(Mode::Monitor).unwrap();
    let daemon = lab.start_vigie(Hook::Xdp, Some(policy.path())).unwrap();
    let generation = daemon.status().unwrap().generation;
    let tcp = |timeout| lab.specs(&BLOCKED_SERVICES, &[Proto::Tcp], timeout);

    // `pins::write_state` writes `<state>.json.tmp`, then renames it.
    let blocker =
        InTheWay::at(vigie::pins::state_path(daemon.pin_dir()).with_extension("json.tmp"));
    let text = std::fs::read_to_string(policy.path().join("policy.toml")).unwrap();
    let enforcing = text.replace("mode = \"monitor\"", "mode = \"enforce\"");
    assert_ne!(text, enforcing);
    save(policy.path(), &enforcing);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !daemon
        .log()
        .contains("reload failed, the running policy stays")
    {
        assert!(
            Instant::now() < deadline,
            "no failure logged:\n{}",
            daemon.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = daemon.log();
    assert!(log.contains("saving the policy's numbering"), "{log}");
    assert_eq!(daemon.status().unwrap().generation, generation, "{log}");
    let monitored = lab.probe(&tcp(PASS_TIMEOUT));
    let failed = peer::unexpected(&monitored, true);
    assert!(
        failed.is_empty(),
        "the refused policy blocks:\n{}",
        failed.join("\n")
    );

    // Out of the way, the same file saved again is applied.
    drop(blocker);
    save(policy.path(), &enforcing);
    let deadline = Instant::now() + Duration::from_secs(10);
    while daemon.status().unwrap().generation == generation {
        assert!(
            Instant::now() < deadline,
            "not applied once the state could be saved:\n{}",
            daemon.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let enforced = lab.probe(&tcp(BLOCK_TIMEOUT));
    let failed = peer::unexpected(&enforced, false);
    assert!(failed.is_empty(), "not enforcing:\n{}", failed.join("\n"));
}
