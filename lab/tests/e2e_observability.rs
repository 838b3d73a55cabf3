//! Observability for real: vigie in the lab with traffic to the blocked services and to Visio,
//! Debian's Prometheus scraping it inside the gateway namespace, and every `PromQL` expression
//! of every dashboard panel and every alert rule evaluated through Prometheus's HTTP API.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use vigie_lab::daemon::Hook;
use vigie_lab::dashboards::{self, PROMETHEUS_SERIES};
use vigie_lab::fixtures::{BLOCKED_SERVICES, Mode, PolicyDir};
use vigie_lab::peer::{self, BLOCK_TIMEOUT, PASS_TIMEOUT};
use vigie_lab::prometheus::Prometheus;
use vigie_lab::scenario::Lab;

const PEER: &str = env!("CARGO_BIN_EXE_vigie-peer");
const METRICS: &str = "127.0.0.1:9947";
const SCRAPE_WAIT: Duration = Duration::from_secs(40);

fn traffic(lab: &Lab) {
    let leaked = peer::unexpected(&lab.probe(&lab.blocked_specs(BLOCK_TIMEOUT)), false);
    assert!(
        leaked.is_empty(),
        "blocked services answered:\n{}",
        leaked.join("\n")
    );
    let failed = peer::unexpected(&lab.probe(&lab.visio_specs(PASS_TIMEOUT)), true);
    assert!(
        failed.is_empty(),
        "Visio unreachable:\n{}",
        failed.join("\n")
    );
}

fn check_names(names: &BTreeSet<String>, what: &str, expr: &str) {
    for n in dashboards::metric_names(expr) {
        assert!(
            names.contains(&n) || PROMETHEUS_SERIES.contains(&n.as_str()),
            "{what}: {n} is not a metric vigie exports ({expr})"
        );
    }
}

fn series(answer: &serde_json::Value) -> usize {
    answer["data"]["result"].as_array().map_or(0, Vec::len)
}

#[test]
fn prometheus_evaluates_every_panel_and_rule_against_vigie() {
    if !vigie_lab::privilege::privileged("prometheus_evaluates_every_panel_and_rule_against_vigie")
    {
        return;
    }
    let vigie = vigie_lab::bins::vigie(Some(Path::new(PEER))).unwrap_or_else(|e| panic!("{e:#}"));
    let lab = Lab::new(Path::new(PEER), vigie).unwrap();
    let policy = PolicyDir::write(Mode::Enforce).unwrap();
    let daemon = lab
        .start_vigie_with(
            Hook::Xdp,
            Some(policy.path()),
            &["--metrics", METRICS, "--pseudonymise", "hmac"],
        )
        .unwrap();
    // Traffic before Prometheus creates the series, traffic after makes them increase.
    traffic(&lab);

    check_scrape(&lab);

    let rules = dashboards::dir().join("alerts.yml");
    let prometheus = Prometheus::start(&lab.topo, lab.topo.gw(), METRICS, &rules).unwrap();
    prometheus
        .wait_for("count_over_time(vigie_build_info[1m]) >= 3", SCRAPE_WAIT)
        .unwrap();
    traffic(&lab);
    std::thread::sleep(Duration::from_secs(4));
    prometheus
        .wait_for(
            r#"increase(vigie_flows_total{action="block"}[1m]) > 0"#,
            SCRAPE_WAIT,
        )
        .unwrap();

    let exported: BTreeSet<String> =
        prometheus.api("/api/v1/label/__name__/values").unwrap()["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
    for must in [
        "vigie_packets_total",
        "vigie_flows_total",
        "vigie_map_entries",
    ] {
        assert!(exported.contains(must), "{must} not scraped: {exported:?}");
    }

    check_panels(&prometheus, &exported);
    check_rules(&prometheus, &exported);
    check_events(&daemon);

    // A SIGHUP reload of a changed policy is counted and the new generation exported (an
    // unchanged policy would keep its generation; the daemon's watch may also reload it, and
    // that one, finding nothing new, counts a success without a new generation).
    let file = policy.path().join("policy.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        format!("{text}\n[[rule]]\nname = \"watch-the-rest\"\naction = \"monitor\"\n"),
    )
    .unwrap();
    daemon
        .process()
        .expect("the daemon runs")
        .signal(libc::SIGHUP)
        .unwrap();
    prometheus
        .wait_for(
            r#"vigie_policy_reloads_total{result="success"} >= 1 and on(instance) vigie_policy_generation == 2"#,
            SCRAPE_WAIT,
        )
        .unwrap();
}

/// promtool accepts a real scrape, and no address is a label value.
fn check_scrape(lab: &Lab) {
    let scrape = lab
        .topo
        .exec(
            lab.topo.gw(),
            "curl",
            &["-sS", &format!("http://{METRICS}/metrics")],
        )
        .unwrap();
    let text = String::from_utf8_lossy(&scrape.stdout).into_owned();
    assert!(text.contains("vigie_flows_total{"), "{text}");
    assert!(
        text.contains(&format!(
            r#"vigie_map_capacity{{map="dst_v4_groups"}} {}"#,
            vigie_common::limits::DST_V4_GROUPS_PER_SLOT
        )),
        "the IPv4 table's group capacity is exported: {text}"
    );
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    for address in ["198.51.100.", "2001:db8:"] {
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(!line.contains(address), "an address in a label: {line}");
        }
    }
}

fn check_panels(prometheus: &Prometheus<'_>, exported: &BTreeSet<String>) {
    // Every panel's queries are valid, read only vigie's metrics, and the traffic panels
    // have data.
    let all = dashboards::load().unwrap();
    for q in dashboards::queries(&all) {
        let what = format!("{}/{}", q.dashboard, q.panel);
        let expr = dashboards::substitute(&q.expr);
        check_names(exported, &what, &expr);
        let answer = prometheus.query(&expr).unwrap();
        assert_eq!(answer["status"], "success", "{what}: {expr}: {answer}");
        if q.dashboard.contains("traffic") {
            assert!(series(&answer) > 0, "{what}: no data for {expr}");
        }
    }
}

fn check_rules(prometheus: &Prometheus<'_>, exported: &BTreeSet<String>) {
    // Every alert rule was loaded, evaluates without error, and reads vigie's metrics only.
    let loaded = prometheus.api("/api/v1/rules").unwrap();
    let rules: Vec<_> = loaded["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .collect();
    assert!(rules.len() >= 6, "{loaded}");
    for rule in &rules {
        let name = rule["name"].as_str().unwrap();
        let expr = rule["query"].as_str().unwrap();
        check_names(exported, name, expr);
        let answer = prometheus.query(expr).unwrap();
        assert_eq!(answer["status"], "success", "{name}: {answer}");
        assert_ne!(rule["health"], "err", "{name}: {rule}");
    }
}

fn check_events(daemon: &vigie_lab::daemon::Daemon<'_>) {
    // Flow events carry the new fields; the LAN address is pseudonymised.
    let events = daemon.wait_events(Duration::from_secs(3), |events| {
        BLOCKED_SERVICES
            .iter()
            .all(|s| events.iter().any(|e| e["service"] == *s))
    });
    let outbound: Vec<_> = events
        .iter()
        .filter(|e| e["direction"] == "outbound")
        .collect();
    assert!(!outbound.is_empty());
    for e in outbound {
        let src = e["src"].as_str().unwrap();
        assert!(src.starts_with("anon-"), "not pseudonymised: {e}");
        assert!(e["src_port"].is_u64() && e["dst_port"].is_u64(), "{e}");
        assert!(
            e.get("country").is_some() && e["suppressed"].is_u64(),
            "{e}"
        );
    }
}
