//! Enforcement outlives the daemon: after SIGKILL the traffic stays blocked; a new daemon adopts
//! what is pinned (the same attachments, one per interface and direction, no duplicate program
//! in the kernel); `vigie detach` removes it all and the traffic passes again.
//!
//! BPF links are global objects: the tests of this file run one at a time, so that the
//! kernel-wide link count they take is theirs.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;

use vigie_lab::census;
use vigie_lab::daemon::{Attachment, Daemon, Hook};
use vigie_lab::fixtures::{Mode, PolicyDir};
use vigie_lab::peer::{self, BLOCK_TIMEOUT, PASS_TIMEOUT, Proto};
use vigie_lab::scenario::Lab;

const PEER: &str = env!("CARGO_BIN_EXE_vigie-peer");
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// What the kernel and vigie say is attached on the hook's interface.
#[derive(Debug, PartialEq, Eq)]
struct Census {
    attachments: BTreeSet<Attachment>,
    net: Vec<(String, String)>,
    links: Vec<(String, String)>,
}

fn census(lab: &Lab, daemon: &Daemon<'_>, hook: Hook) -> Census {
    let status = daemon.status().unwrap();
    let per = status.per_iface_direction();
    assert!(
        per.values().all(|&n| n == 1),
        "{hook}: duplicate attachments: {status:#?}"
    );
    let dev = hook.iface();
    let net: Vec<(String, String)> = census::net_programs(&lab.topo, dev)
        .unwrap()
        .into_iter()
        .map(|p| (p.kind, p.name))
        .collect();
    let pinned = census::pinned_links(&lab.topo, daemon.pin_dir()).unwrap();
    let names: Vec<String> = pinned.iter().map(|l| l.prog_name.clone()).collect();
    let links: Vec<(String, String)> = census::links_on(&lab.topo, dev, &names)
        .unwrap()
        .into_iter()
        .map(|l| (format!("{}/{}", l.kind, l.attach_type), l.prog_name))
        .collect();
    let census = Census {
        attachments: status.attachments.into_iter().collect(),
        net,
        links,
    };
    for list in [&census.net, &census.links] {
        let unique: BTreeSet<_> = list.iter().collect();
        assert_eq!(
            unique.len(),
            list.len(),
            "{hook}: a program is attached twice: {census:#?}"
        );
    }
    census
}

fn restart_keeps_enforcement(hook: Hook) {
    let _serial = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let vigie = vigie_lab::bins::vigie(Some(Path::new(PEER))).unwrap_or_else(|e| panic!("{e:#}"));
    let lab = Lab::new(Path::new(PEER), vigie).unwrap();
    let policy = PolicyDir::write(Mode::Enforce).unwrap();
    let mut daemon = lab.start_vigie(hook, Some(policy.path())).unwrap();
    let zoom = |timeout| lab.specs(&["zoom"], &Proto::ALL, timeout);
    let assert_blocked = |when: &str| {
        let (mark, specs) = (lab.peers.arrivals().len(), zoom(BLOCK_TIMEOUT));
        let leaked = peer::unexpected(&lab.probe(&specs), false);
        assert!(
            leaked.is_empty(),
            "{hook} {when}: Zoom answered:\n{}",
            leaked.join("\n")
        );
        let arrived = lab.peers.arrived_since(mark, &specs);
        assert!(
            arrived.is_empty(),
            "{hook} {when}: arrived:\n{}",
            arrived.join("\n")
        );
    };

    assert_blocked("with the daemon");
    let first = census(&lab, &daemon, hook);
    println!("{hook} before the restart: {first:#?}");
    assert!(!first.attachments.is_empty(), "{hook}: nothing attached");

    daemon.kill().unwrap();
    assert_blocked("after SIGKILL");

    daemon.launch().unwrap();
    let second = census(&lab, &daemon, hook);
    assert_eq!(
        first, second,
        "{hook}: the restarted daemon changed the attachments"
    );
    assert_blocked("after the restart");

    daemon.stop().unwrap();
    daemon.detach().unwrap();
    let status = daemon.status().unwrap();
    assert!(
        status.attachments.is_empty(),
        "{hook}: attachments left: {status:#?}"
    );
    let net = census::net_programs(&lab.topo, hook.iface()).unwrap();
    assert!(
        net.is_empty(),
        "{hook}: programs left on {}: {net:?}",
        hook.iface()
    );
    let passed = peer::unexpected(&lab.probe(&zoom(PASS_TIMEOUT)), true);
    assert!(
        passed.is_empty(),
        "{hook}: Zoom still blocked after detach:\n{}",
        passed.join("\n")
    );
}

#[test]
fn xdp_restart_keeps_enforcement() {
    if !vigie_lab::privilege::privileged("xdp_restart_keeps_enforcement") {
        return;
    }
    restart_keeps_enforcement(Hook::Xdp);
}

#[test]
fn tc_ingress_restart_keeps_enforcement() {
    if !vigie_lab::privilege::privileged("tc_ingress_restart_keeps_enforcement") {
        return;
    }
    restart_keeps_enforcement(Hook::TcIngress);
}

#[test]
fn tc_egress_restart_keeps_enforcement() {
    if !vigie_lab::privilege::privileged("tc_egress_restart_keeps_enforcement") {
        return;
    }
    restart_keeps_enforcement(Hook::TcEgress);
}

/// A lab for one test of this file, holding the file's lock; None (the test skips, and fails
/// under `VIGIE_REQUIRE_PRIVILEGED`) without the privileges.
fn lab_alone(test: &str) -> Option<(std::sync::MutexGuard<'static, ()>, Lab)> {
    if !vigie_lab::privilege::privileged(test) {
        return None;
    }
    let one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let vigie = vigie_lab::bins::vigie(Some(Path::new(PEER))).unwrap_or_else(|e| panic!("{e:#}"));
    Some((one, Lab::new(Path::new(PEER), vigie).unwrap()))
}

/// One daemon per pin directory: a second `vigie run` on the same pins is refused before it
/// touches the kernel, naming the daemon in charge, and the first one's policy stays in force.
#[test]
fn a_second_daemon_on_the_same_pins_is_refused() {
    let Some((_one, lab)) = lab_alone("a_second_daemon_on_the_same_pins_is_refused") else {
        return;
    };
    let daemon = lab.start_vigie(Hook::Xdp, None).unwrap();
    let before = daemon.status().unwrap();
    let pid = daemon.process().unwrap().pid();

    let (status, log) = daemon
        .run_another(std::time::Duration::from_secs(20))
        .unwrap();
    let status = status.unwrap_or_else(|| panic!("the second daemon kept running:\n{log}"));
    assert!(!status.success(), "the second daemon succeeded:\n{log}");
    assert!(
        log.contains("another `vigie run`") && log.contains(&format!("pid {pid}")),
        "{log}"
    );
    assert!(!log.contains("loading the datapath"), "it went on:\n{log}");

    let after = daemon.status().unwrap();
    assert_eq!(
        after.generation, before.generation,
        "the policy was swapped"
    );
    assert!(
        daemon.process().unwrap().try_wait().unwrap().is_none(),
        "the first daemon stopped"
    );
    let results = lab.probe(&lab.specs(&["zoom"], &[Proto::Udp], BLOCK_TIMEOUT));
    assert!(peer::unexpected(&results, false).is_empty(), "{results:?}");
}

/// A SIGHUP while the daemon loads (a reload asked for just after a start) does not end it: it
/// starts, and reloads.
#[test]
fn a_sighup_while_starting_does_not_end_the_daemon() {
    let Some((_one, lab)) = lab_alone("a_sighup_while_starting_does_not_end_the_daemon") else {
        return;
    };
    let mut daemon = lab.start_vigie(Hook::Xdp, None).unwrap();
    daemon.stop().unwrap();
    daemon
        .launch_signalled(Some(libc::SIGHUP))
        .unwrap_or_else(|e| panic!("{e:#}"));
    // The reload is served once the daemon is up: wait for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !daemon.log().contains("reloading the policy after SIGHUP")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let log = daemon.log();
    assert!(log.contains("reloading the policy after SIGHUP"), "{log}");
    let results = lab.probe(&lab.specs(&["zoom"], &[Proto::Udp], BLOCK_TIMEOUT));
    assert!(peer::unexpected(&results, false).is_empty(), "{results:?}");
    assert!(
        daemon.process().unwrap().try_wait().unwrap().is_none(),
        "the daemon ended:\n{log}"
    );
}

/// `vigie detach` after a SIGKILL does not signal the pid the killed daemon left in its state
/// file: that number may belong to another process by now (here, a `sleep` given it on
/// purpose), and only a daemon holding the pin directory's claim is stopped.
#[test]
fn detach_after_a_kill_signals_no_stale_pid() {
    let Some((_one, lab)) = lab_alone("detach_after_a_kill_signals_no_stale_pid") else {
        return;
    };
    let mut daemon = lab.start_vigie(Hook::Xdp, None).unwrap();
    daemon.kill().unwrap();
    let mut bystander = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let mut state = vigie::pins::read_state(daemon.pin_dir())
        .unwrap()
        .expect("the daemon wrote its state");
    state.daemon_pid = Some(bystander.id());
    vigie::pins::write_state(daemon.pin_dir(), &state).unwrap();

    daemon.detach().unwrap();
    let alive = bystander.try_wait().unwrap().is_none();
    let _ = bystander.kill();
    let _ = bystander.wait();
    assert!(alive, "vigie detach signalled the stale pid's new owner");
}

/// An interface deleted and made again while no daemon ran (a PPP reconnect, a recreated veth)
/// is enforced again at the next start: the pinned link held the old interface, so it is
/// replaced, not adopted.
#[test]
fn a_recreated_interface_is_attached_again() {
    if !vigie_lab::privilege::privileged("a_recreated_interface_is_attached_again") {
        return;
    }
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for hook in [Hook::Xdp, Hook::TcIngress] {
        let vigie =
            vigie_lab::bins::vigie(Some(Path::new(PEER))).unwrap_or_else(|e| panic!("{e:#}"));
        let lab = Lab::new(Path::new(PEER), vigie).unwrap();
        let mut daemon = lab.start_vigie(hook, None).unwrap();
        daemon.stop().unwrap();
        lab.topo.recreate_lan_link().unwrap();
        daemon.launch().unwrap();
        let log = daemon.log();
        assert!(log.contains("attaching again"), "{hook}: {log}");
        let blocked = lab.probe(&lab.specs(&["zoom"], &[Proto::Udp, Proto::Tcp], BLOCK_TIMEOUT));
        let failed = peer::unexpected(&blocked, false);
        assert!(
            failed.is_empty(),
            "{hook}: not blocked:\n{}",
            failed.join("\n")
        );
        let passed = lab.probe(&lab.visio_specs(PASS_TIMEOUT));
        let failed = peer::unexpected(&passed, true);
        assert!(
            failed.is_empty(),
            "{hook}: Visio not reached:\n{}",
            failed.join("\n")
        );
        // The links that held the old interface are gone with their pins: one link per
        // direction, the new ones.
        let census = census(&lab, &daemon, hook);
        assert_eq!(census.links.len(), 2, "{hook}: {census:#?}");
    }
}

/// A start on maps pinned by a version whose layout differs (here: the rule table replaced by
/// one with rows of another size) is refused with what to do, and the enforcement those maps
/// hold stays in force.
#[test]
fn maps_of_another_layout_are_refused_and_enforcement_stays() {
    let Some((_one, lab)) = lab_alone("maps_of_another_layout_are_refused_and_enforcement_stays")
    else {
        return;
    };
    let mut daemon = lab.start_vigie(Hook::Xdp, None).unwrap();
    daemon.kill().unwrap();
    let rules = vigie::pins::map_path(daemon.pin_dir(), vigie_common::maps::RULES);
    std::fs::remove_file(&rules).unwrap();
    let made = std::process::Command::new("bpftool")
        .args(["map", "create"])
        .arg(&rules)
        .args([
            "type", "array", "key", "4", "value", "56", "entries", "128", "name", "RULES",
        ])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");

    let (status, log) = daemon
        .run_another(std::time::Duration::from_secs(30))
        .unwrap();
    let status = status.unwrap_or_else(|| panic!("the daemon kept running:\n{log}"));
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("maps from another version")
            && log.contains("RULES: value_size is 56")
            && log.contains("vigie detach --pin-dir"),
        "{log}"
    );
    let results = lab.probe(&lab.specs(&["zoom"], &[Proto::Udp], BLOCK_TIMEOUT));
    assert!(peer::unexpected(&results, false).is_empty(), "{results:?}");
}

/// A start that cannot finish is refused before it touches the kernel: a mistyped second
/// interface, or a metrics address already taken, leaves the first interface as it was (no
/// program attached with no policy, whose failure behaviour would drop everything here).
#[test]
fn a_start_that_cannot_finish_attaches_nothing() {
    let Some((_one, lab)) = lab_alone("a_start_that_cannot_finish_attaches_nothing") else {
        return;
    };
    let pins = vigie_lab::bpffs::PinDir::new().unwrap();
    let pin_dir = pins.path().to_string_lossy().into_owned();
    let lan = Hook::Xdp.iface();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "--iface",
            lan,
            "--hook",
            "xdp",
            "--pin-dir",
            &pin_dir,
            "--on-failure",
            "block",
        ];
        args.extend_from_slice(extra);
        lab.topo.exec(lab.topo.gw(), &lab.vigie, &args).unwrap()
    };
    // A listener on the metrics address, in the gateway's namespace.
    let taken = lab
        .topo
        .spawn(
            lab.topo.gw(),
            "nc",
            &["-l", "127.0.0.1", "9947"],
            std::process::Stdio::null(),
            std::process::Stdio::null(),
        )
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    for (extra, says) in [
        (&["--iface", "nosuch0"][..], "no interface nosuch0"),
        (&[][..], "127.0.0.1:9947"),
    ] {
        let out = run(extra);
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra:?}: {log}");
        assert!(log.contains(says), "{extra:?}: {log}");
        assert!(!log.contains("loading the datapath"), "{extra:?}: {log}");
        let programs = census::net_programs(&lab.topo, lan).unwrap();
        assert!(programs.is_empty(), "{extra:?}: {programs:?}");
    }
    drop(taken);
    let results = lab.probe(&lab.visio_specs(PASS_TIMEOUT));
    assert!(peer::unexpected(&results, true).is_empty(), "{results:?}");
}
