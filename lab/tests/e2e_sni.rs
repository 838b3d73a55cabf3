//! TLS server names with a real client and server (OpenSSL's `s_client` and `s_server`) in the
//! namespace lab, on each hook. The server sits on an address that no catalog service lists,
//! so only the name the client sends can tell the service: a handshake for a Zoom name never
//! completes, one for Visio's name or a name of no service completes, and the daemon reports
//! the blocked flow with `sni` evidence.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use vigie_lab::daemon::{Hook, events_to, events_where};
use vigie_lab::fixtures::{Mode, PolicyDir};
use vigie_lab::scenario::Lab;
use vigie_lab::tempdir::TempDir;

const PEER: &str = env!("CARGO_BIN_EXE_vigie-peer");
/// In no catalog service (TEST-NET-3).
const SERVER: &str = "203.0.113.80";
/// The lab's echo servers hold port 443 of every service address.
const TLS_PORT: u16 = 8443;
const CLIENT_TIMEOUT: &str = "4";

struct Tls {
    lab: Lab,
    _keys: TempDir,
}

fn lab() -> Tls {
    let lab = Lab::with_unlisted(Path::new(PEER), &[SERVER]).unwrap_or_else(|e| panic!("{e:#}"));
    let keys = TempDir::new("tls").unwrap();
    let (cert, key) = (keys.path().join("cert.pem"), keys.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=vigie-lab"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let accept = format!("{SERVER}:{TLS_PORT}");
    let server = lab
        .topo
        .spawn(
            lab.topo.inet(),
            "openssl",
            &[
                "s_server",
                "-accept",
                &accept,
                "-cert",
                cert.to_str().unwrap(),
                "-key",
                key.to_str().unwrap(),
                "-www",
                "-quiet",
            ],
            Stdio::null(),
            Stdio::null(),
        )
        .unwrap();
    // Ready when a handshake completes (no vigie yet).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !handshake(&lab, "ready.example").0 {
        assert!(server.try_wait().unwrap().is_none(), "s_server stopped");
        assert!(Instant::now() < deadline, "s_server never answered");
        std::thread::sleep(Duration::from_millis(200));
    }
    Tls { lab, _keys: keys }
}

/// A TLS handshake from the LAN host with `name` as server name: whether it completed, and
/// what the client said.
fn handshake(lab: &Lab, name: &str) -> (bool, String) {
    handshake_with(lab, name, &[])
}

/// The same, with more `openssl s_client` arguments.
fn handshake_with(lab: &Lab, name: &str, extra: &[&str]) -> (bool, String) {
    let connect = format!("{SERVER}:{TLS_PORT}");
    let mut args = vec![
        CLIENT_TIMEOUT,
        "openssl",
        "s_client",
        "-connect",
        &connect,
        "-servername",
        name,
        "-brief",
    ];
    args.extend_from_slice(extra);
    let out = lab.topo.exec(lab.topo.lan(), "timeout", &args).unwrap();
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (said.contains("CONNECTION ESTABLISHED"), said)
}

fn names_decide(hook: Hook) {
    let tls = lab();
    let policy = PolicyDir::write(Mode::Enforce).unwrap();
    let daemon = tls.lab.start_vigie(hook, Some(policy.path())).unwrap();
    // Allowed names first: s_server serves one connection at a time, and a blocked one never
    // ends on its side (the client's FIN and reset are blocked too).
    for (name, completes) in [
        ("visio.numerique.gouv.fr", true),
        ("www.example.org", true),
        ("zoom.us", false),
        ("eu01web.zoom.us", false),
        ("teams.microsoft.com", false),
    ] {
        let (done, said) = handshake(&tls.lab, name);
        assert_eq!(done, completes, "{hook} {name}: {said}");
    }
    let events = daemon.wait_events(Duration::from_secs(5), |e| {
        events_to(e, SERVER.parse().unwrap())
            .iter()
            .filter(|e| e["evidence"] == "sni")
            .count()
            >= 4
    });
    let named: Vec<_> = events_to(&events, SERVER.parse().unwrap())
        .into_iter()
        .filter(|e| e["evidence"] == "sni")
        .map(|e| {
            (
                e["service"].as_str().unwrap_or("-").to_owned(),
                e["action"].clone(),
            )
        })
        .collect();
    for service in ["zoom", "teams"] {
        assert!(
            named.iter().any(|(s, a)| s == service && a == "block"),
            "{hook}: no sni block event for {service}: {named:?}"
        );
    }
    assert!(
        named.iter().any(|(s, a)| s == "visio" && a == "allow"),
        "{hook}: no sni allow event for visio: {named:?}"
    );
    let stats = &daemon.status().unwrap().raw["stats"];
    assert!(
        stats["sni_read"].as_u64().unwrap_or(0) >= 5,
        "{hook}: {stats}"
    );
}

#[test]
fn xdp_reads_server_names() {
    if !vigie_lab::privilege::privileged("xdp_reads_server_names") {
        return;
    }
    names_decide(Hook::Xdp);
}

#[test]
fn tc_ingress_reads_server_names() {
    if !vigie_lab::privilege::privileged("tc_ingress_reads_server_names") {
        return;
    }
    names_decide(Hook::TcIngress);
}

#[test]
fn tc_egress_reads_server_names() {
    if !vigie_lab::privilege::privileged("tc_egress_reads_server_names") {
        return;
    }
    names_decide(Hook::TcEgress);
}

/// A name deep in the hello (every cipher suite offered: some 300 bytes of them before the
/// extensions), which TCP sends in paged data: the TC programs read the payload past the
/// linear part of the skb (the headers they pull), as XDP reads the whole frame.
#[test]
fn a_name_deep_in_the_hello_is_read_on_every_hook() {
    if !vigie_lab::privilege::privileged("a_name_deep_in_the_hello_is_read_on_every_hook") {
        return;
    }
    let policy = PolicyDir::write(Mode::Enforce).unwrap();
    let every_suite = ["-tls1_2", "-cipher", "ALL:COMPLEMENTOFALL:@SECLEVEL=0"];
    for hook in [Hook::TcIngress, Hook::TcEgress, Hook::Xdp] {
        // A lab each: the server serves one connection at a time, and a blocked one holds it.
        let tls = lab();
        let daemon = tls.lab.start_vigie(hook, Some(policy.path())).unwrap();
        let (done, said) = handshake_with(&tls.lab, "visio.numerique.gouv.fr", &every_suite);
        assert!(done, "{hook}: the allowed handshake failed: {said}");
        let (done, said) = handshake_with(&tls.lab, "zoom.us", &every_suite);
        assert!(!done, "{hook}: zoom.us completed: {said}");
        let events = daemon.wait_events(Duration::from_secs(5), |e| {
            events_where(e, "evidence", "sni")
                .iter()
                .any(|e| e["service"] == "zoom")
        });
        assert!(
            events_where(&events, "evidence", "sni")
                .iter()
                .any(|e| e["service"] == "zoom" && e["action"] == "block"),
            "{hook}: {events:?}"
        );
    }
}

/// A flow known by its server name keeps its service when a reload changes the catalog: the
/// kernel keeps the service as a number, and a service added in front (here `aaa`, which sorts
/// first) must not shift the numbers of the others. Before, the retransmitted ClientHello of a
/// blocked Zoom handshake was decided again as the service that took Zoom's old number (a
/// sovereign one, allowed), and the handshake completed.
#[test]
fn a_named_flow_keeps_its_service_across_a_catalog_change() {
    if !vigie_lab::privilege::privileged("a_named_flow_keeps_its_service_across_a_catalog_change") {
        return;
    }
    let tls = lab();
    let policy = PolicyDir::write(Mode::Enforce).unwrap();
    let daemon = tls.lab.start_vigie(Hook::Xdp, Some(policy.path())).unwrap();
    let added = "id = \"aaa\"\nname = \"A test service\"\noperator = \"Test\"\n\
                 jurisdiction = \"US\"\ncategory = \"messaging\"\n\
                 prefixes = [\"192.0.2.128/25\"]\n\
                 [source]\nvendor = \"test\"\nretrieved = 2026-11-01\n";
    let (done, said) = std::thread::scope(|scope| {
        let client = scope.spawn(|| handshake(&tls.lab, "zoom.us"));
        // The hello is read and the flow blocked at once; the reload lands while the client
        // retransmits it (the handshake gives up after CLIENT_TIMEOUT seconds).
        std::thread::sleep(Duration::from_millis(500));
        std::fs::write(policy.path().join("catalog/aaa.toml"), added).unwrap();
        client.join().unwrap()
    });
    let log = daemon.log();
    assert_eq!(
        log.matches("policy applied").count(),
        2,
        "the catalog change was not applied during the handshake:\n{log}"
    );
    assert!(
        !done,
        "the Zoom handshake completed after the reload: {said}"
    );
}
