//! `vigie explain` as an operator runs it: the real binary, the shipped policies, the kernel
//! program deciding on a crafted first packet.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;

const PEER: &str = env!("CARGO_BIN_EXE_vigie-peer");

fn policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

fn vigie(args: &[&str]) -> Output {
    let vigie = vigie_lab::bins::vigie(Some(Path::new(PEER))).unwrap_or_else(|e| panic!("{e:#}"));
    Command::new(vigie).args(args).output().unwrap()
}

/// `vigie explain --json` under the policy directory `dir` (relative to `policies/`).
/// A report of a probe that nothing names: no service, no evidence, and the packet passes.
fn assert_no_service_passes(report: &Value) {
    assert_eq!(
        (report["service"].clone(), report["evidence"].as_str()),
        (Value::Null, Some("none")),
        "{report}"
    );
    assert_eq!(report["packet"], "passes", "{report}");
}

fn explain(dir: &str, args: &[&str]) -> Value {
    let policy = policies().join(dir);
    let mut all = vec!["explain", "--json", "--policy", policy.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = vigie(&all);
    assert!(
        out.status.success(),
        "vigie {all:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_zoom_address_is_blocked_by_the_shipped_rule() {
    if !vigie_lab::privilege::privileged("a_zoom_address_is_blocked_by_the_shipped_rule") {
        return;
    }
    let got = explain(
        "",
        &[
            "--dst", "3.7.35.1", "--port", "8801/udp", "--src", "10.1.2.3",
        ],
    );
    assert_eq!(got["service"], "zoom");
    assert_eq!(got["jurisdiction"], "US");
    assert_eq!(got["evidence"], "address");
    assert_eq!(got["prefix"], "3.7.35.0/25");
    assert_eq!(got["rule"], "block-non-european-conferencing");
    assert!(
        got["rule_place"]
            .as_str()
            .is_some_and(|p| p.ends_with("policy.toml:17:8")),
        "{got}"
    );
    assert_eq!(got["action"], "block");
    assert_eq!(got["mode"], "enforce");
    assert_eq!(got["packet"], "dropped");
    assert_eq!(got["proto"], "udp");
    assert_eq!(got["port"], 8801);
}

#[test]
fn ipv6_tcp_and_icmp_probes_are_judged_too() {
    if !vigie_lab::privilege::privileged("ipv6_tcp_and_icmp_probes_are_judged_too") {
        return;
    }
    let tcp = explain("", &["--dst", "2603:1027::1", "--port", "443/tcp"]);
    assert_eq!(tcp["service"], "teams");
    assert_eq!(tcp["packet"], "dropped");
    assert_eq!(tcp["src"], "::");
    let echo = explain("", &["--dst", "8.38.216.1"]);
    assert_eq!(echo["service"], "webex");
    assert_eq!(echo["proto"], "icmp");
    assert_eq!(echo["port"], Value::Null);
    assert_eq!(echo["packet"], "dropped");
}

#[test]
fn an_unknown_destination_gets_the_default() {
    if !vigie_lab::privilege::privileged("an_unknown_destination_gets_the_default") {
        return;
    }
    let got = explain("", &["--dst", "192.0.2.9", "--port", "443/tcp"]);
    assert_eq!(got["service"], Value::Null);
    assert_eq!(got["evidence"], "none");
    assert_eq!(got["rule"], "default");
    assert_eq!(got["rule_place"], Value::Null);
    assert_eq!(got["action"], "allow");
    assert_eq!(got["packet"], "passes");
}

#[test]
fn department_exceptions_follow_the_source_group() {
    if !vigie_lab::privilege::privileged("department_exceptions_follow_the_source_group") {
        return;
    }
    let dir = "examples/department-exceptions";
    let diplomacy = explain(
        dir,
        &[
            "--dst",
            "3.7.35.1",
            "--port",
            "443/tcp",
            "--src",
            "10.20.0.5",
        ],
    );
    assert_eq!(diplomacy["group"], "diplomacy");
    assert_eq!(diplomacy["group_prefix"], "10.20.0.0/14");
    assert_eq!(diplomacy["action"], "monitor");
    assert_eq!(diplomacy["packet"], "passes");
    let other = explain(
        dir,
        &[
            "--dst",
            "3.7.35.1",
            "--port",
            "443/tcp",
            "--src",
            "192.168.77.7",
        ],
    );
    assert_eq!(other["group"], "none");
    assert_eq!(other["action"], "block");
    assert_eq!(other["packet"], "dropped");
}

#[test]
fn monitor_mode_reports_the_block_and_passes_the_packet() {
    if !vigie_lab::privilege::privileged("monitor_mode_reports_the_block_and_passes_the_packet") {
        return;
    }
    let got = explain(
        "examples/monitor-rollout",
        &["--dst", "13.107.64.1", "--port", "443/tcp"],
    );
    assert_eq!(got["service"], "teams");
    assert_eq!(got["action"], "block");
    assert_eq!(got["mode"], "monitor");
    assert_eq!(got["packet"], "passes");
}

#[test]
fn the_text_form_says_why() {
    if !vigie_lab::privilege::privileged("the_text_form_says_why") {
        return;
    }
    let policy = policies();
    let out = vigie(&[
        "explain",
        "--policy",
        policy.to_str().unwrap(),
        "--dst",
        "74.125.250.1",
        "--port",
        "3478/udp",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "udp 0.0.0.0 -> 74.125.250.1 port 3478",
        "service   google-meet",
        "evidence  address: 74.125.250.0/24 in the address table",
        "rule      block-non-european-conferencing (",
        "packet    dropped",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
}

#[test]
fn bad_questions_are_refused_with_their_reason() {
    // Refused before anything is loaded: no privilege needed.
    let out = vigie(&["explain", "--dst", "3.7.35.1", "--port", "8801"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected PORT/udp or PORT/tcp"));
    let out = vigie(&["explain", "--dst", "not-an-address"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not-an-address"));

    let dir = vigie_lab::tempdir::TempDir::new("explain").unwrap();
    let broken = dir.path();
    std::fs::create_dir_all(broken.join("catalog")).unwrap();
    std::fs::write(
        broken.join("policy.toml"),
        "[settings]\nmode = \"sometimes\"\ndefault = \"allow\"\nunparsed = \"allow\"\n",
    )
    .unwrap();
    let out = vigie(&[
        "explain",
        "--policy",
        broken.to_str().unwrap(),
        "--dst",
        "3.7.35.1",
    ]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("policy.toml:2:8"), "{err}");
}

#[test]
fn mixed_address_families_are_refused() {
    // Refused before the kernel program is loaded: no privilege needed.
    let out = vigie(&["explain", "--dst", "2001:db8::1", "--src", "10.0.0.1"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not of one address family"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_country_rule_decides_in_the_kernel() {
    if !vigie_lab::privilege::privileged("a_country_rule_decides_in_the_kernel") {
        return;
    }
    let dir = vigie_lab::tempdir::TempDir::new("explain-countries").unwrap();
    let shipped = policies();
    std::os::unix::fs::symlink(shipped.join("catalog"), dir.path().join("catalog")).unwrap();
    std::os::unix::fs::symlink(shipped.join("geoip"), dir.path().join("geoip")).unwrap();
    let policy = std::fs::read_to_string(shipped.join("policy.toml")).unwrap()
        + "\n[[rule]]\nname = \"block-outside-eea\"\ncountries = [\"non-eea\"]\naction = \"block\"\n";
    std::fs::write(dir.path().join("policy.toml"), policy).unwrap();
    let args = |dst: &'static str| {
        let mut a = vec![
            "explain".to_owned(),
            "--json".to_owned(),
            "--policy".to_owned(),
            dir.path().to_str().unwrap().to_owned(),
            "--dst".to_owned(),
            dst.to_owned(),
        ];
        a.extend(["--port".to_owned(), "443/tcp".to_owned()]);
        a
    };
    let run = |dst| {
        let args = args(dst);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = vigie(&refs);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let cn = run("1.2.4.8");
    assert_eq!(cn["country"], "CN");
    assert_eq!(cn["rule"], "block-outside-eea");
    assert_eq!(cn["packet"], "dropped");
    let fr = run("193.51.24.1");
    assert_eq!(fr["country"], "FR");
    assert_eq!(fr["rule"], "default");
    assert_eq!(fr["packet"], "passes");
    // A service rule earlier in the file still decides for the service's own addresses.
    let zoom = run("3.7.35.1");
    assert_eq!(zoom["service"], "zoom");
    assert_eq!(zoom["rule"], "block-non-european-conferencing");
}

#[test]
fn a_server_name_decides_where_the_address_says_nothing() {
    if !vigie_lab::privilege::privileged("a_server_name_decides_where_the_address_says_nothing") {
        return;
    }
    // 203.0.113.7 is in no service: the ClientHello after the SYN tells.
    let zoom = explain("", &["--dst", "203.0.113.7", "--sni", "EU01WEB.zoom.us"]);
    assert_eq!(zoom["service"], "zoom", "{zoom}");
    assert_eq!(zoom["evidence"], "sni", "{zoom}");
    assert_eq!(zoom["sni"], "EU01WEB.zoom.us", "{zoom}");
    assert_eq!(
        (zoom["proto"].as_str(), zoom["port"].as_u64()),
        (Some("tcp"), Some(443))
    );
    assert_eq!(zoom["rule"], "block-non-european-conferencing");
    assert_eq!(zoom["packet"], "dropped");

    let visio = explain(
        "",
        &[
            "--dst",
            "203.0.113.7",
            "--port",
            "8443/tcp",
            "--sni",
            "visio.numerique.gouv.fr",
        ],
    );
    assert_eq!(
        (visio["service"].as_str(), visio["evidence"].as_str()),
        (Some("visio"), Some("sni"))
    );
    assert_eq!(visio["rule"], "keep-sovereign");
    assert_eq!(visio["packet"], "passes");

    let other = explain("", &["--dst", "203.0.113.7", "--sni", "notzoom.us"]);
    assert_no_service_passes(&other);

    // A name needs TCP.
    let out = vigie(&[
        "explain",
        "--dst",
        "203.0.113.7",
        "--sni",
        "zoom.us",
        "--port",
        "3478/udp",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--sni needs TCP"));
}

#[test]
fn a_dns_name_decides_where_the_address_says_nothing() {
    if !vigie_lab::privilege::privileged("a_dns_name_decides_where_the_address_says_nothing") {
        return;
    }
    // The answer tying the name to 203.0.113.7 crosses the gateway first, as when the client
    // looked it up; the probe then finds the address learned.
    for (dst, port) in [("203.0.113.7", "9999/udp"), ("2001:db8:77::7", "443/tcp")] {
        let zoom = explain(
            "",
            &[
                "--dst",
                dst,
                "--port",
                port,
                "--dns-name",
                "meetings.zoom.us",
            ],
        );
        assert_eq!(
            (zoom["service"].as_str(), zoom["evidence"].as_str()),
            (Some("zoom"), Some("dns")),
            "{zoom}"
        );
        assert_eq!(zoom["dns_name"], "meetings.zoom.us");
        assert_eq!(zoom["packet"], "dropped", "{zoom}");
    }
    let other = explain(
        "",
        &[
            "--dst",
            "203.0.113.7",
            "--port",
            "443/tcp",
            "--dns-name",
            "www.example.org",
        ],
    );
    assert_no_service_passes(&other);
    // The text says where the evidence came from.
    let out = vigie(&[
        "explain",
        "--dst",
        "203.0.113.7",
        "--port",
        "443/tcp",
        "--dns-name",
        "meetings.zoom.us",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("dns: a DNS answer tied it to meetings.zoom.us"),
        "{text}"
    );
    // A name that is not one is refused, with the reason.
    let out = vigie(&["explain", "--dst", "203.0.113.7", "--dns-name", "bad..name"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--dns-name `bad..name` is not a host name"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
