//! The kernel object loads (the verifier accepts every program) and judges a packet.
use vigie::sandbox::{Hook, Outcome, Sandbox};

#[test]
fn programs_load_and_pass_without_policy() {
    if std::fs::read_to_string("/proc/self/status").is_ok_and(|s| !s.contains("Uid:\t0")) {
        assert!(
            std::env::var("VIGIE_REQUIRE_PRIVILEGED").is_err(),
            "needs root"
        );
        eprintln!("SKIPPED: needs root");
        return;
    }
    let mut sandbox = Sandbox::new().expect("load");
    let mut frame = vec![0u8; 14 + 20 + 8];
    frame[12] = 0x08;
    frame[14] = 0x45;
    frame[14 + 9] = 17;
    frame[14 + 16..14 + 20].copy_from_slice(&[3, 7, 35, 1]);
    for hook in [Hook::XdpOutbound, Hook::TcOutbound, Hook::TcReply] {
        assert_eq!(sandbox.run(hook, &frame).expect("run"), Outcome::Pass);
    }
    assert_eq!(
        sandbox.stats().expect("stats")[vigie_common::counters::stat::NO_POLICY as usize],
        3
    );
}
