//! The dashboards' structure, as far as it can be checked without Grafana (which Debian does
//! not package), and the alert rules through promtool.

use std::process::Command;

use serde_json::Value;
use vigie_lab::dashboards::{self, PROMETHEUS_SERIES};

const DATASOURCE: &str = "${datasource}";

fn dashboards() -> Vec<(String, Value)> {
    let all = dashboards::load().unwrap();
    assert!(all.len() >= 2, "expected the traffic and health dashboards");
    all
}

#[test]
fn every_dashboard_has_the_datasource_and_instance_variables() {
    for (name, d) in dashboards() {
        let vars = d["templating"]["list"].as_array().unwrap();
        let var = |n: &str| vars.iter().find(|v| v["name"] == n);
        let ds = var("datasource").unwrap_or_else(|| panic!("{name}: no datasource variable"));
        assert_eq!(ds["type"], "datasource", "{name}");
        assert_eq!(ds["query"], "prometheus", "{name}");
        let instance = var("instance").unwrap_or_else(|| panic!("{name}: no instance variable"));
        assert_eq!(instance["type"], "query", "{name}");
        assert_eq!(instance["datasource"]["uid"], DATASOURCE, "{name}");
        let q = instance["query"]["query"].as_str().unwrap();
        assert!(
            q.starts_with("label_values(vigie_") && q.ends_with(", instance)"),
            "{name}: {q}"
        );
        for key in ["uid", "title", "schemaVersion", "panels", "time"] {
            assert!(!d[key].is_null(), "{name}: no {key}");
        }
    }
}

#[test]
fn every_panel_queries_the_datasource_variable_per_instance() {
    for (name, d) in dashboards() {
        let panels = d["panels"].as_array().unwrap();
        assert!(!panels.is_empty(), "{name}: no panels");
        let mut ids = std::collections::BTreeSet::new();
        for p in panels {
            let title = p["title"].as_str().unwrap_or_default();
            assert!(!title.is_empty(), "{name}: a panel has no title");
            assert!(
                ids.insert(p["id"].as_u64().unwrap()),
                "{name}: duplicate panel id"
            );
            assert!(p["type"].is_string(), "{name}/{title}: no type");
            let grid = &p["gridPos"];
            assert!(
                ["x", "y", "w", "h"].iter().all(|k| grid[k].is_u64()),
                "{name}/{title}: gridPos"
            );
            assert!(grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 24);
            assert_eq!(p["datasource"]["uid"], DATASOURCE, "{name}/{title}");
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{name}/{title}: no targets");
            let mut refs = std::collections::BTreeSet::new();
            for t in targets {
                assert_eq!(t["datasource"]["uid"], DATASOURCE, "{name}/{title}");
                assert!(refs.insert(t["refId"].as_str().unwrap()), "{name}/{title}");
                let expr = t["expr"].as_str().unwrap();
                assert!(
                    expr.contains("instance=~\"$instance\""),
                    "{name}/{title}: not filtered by the gateway variable: {expr}"
                );
                let names = dashboards::metric_names(expr);
                assert!(!names.is_empty(), "{name}/{title}: reads no metric");
                for n in names {
                    assert!(
                        n.starts_with("vigie_") || PROMETHEUS_SERIES.contains(&n.as_str()),
                        "{name}/{title}: reads {n}"
                    );
                }
            }
        }
    }
}

#[test]
fn the_dashboards_cover_the_issue() {
    let all = dashboards();
    let exprs: Vec<_> = dashboards::queries(&all)
        .into_iter()
        .map(|q| q.expr)
        .collect();
    let reads = |m: &str| exprs.iter().any(|e| e.contains(m));
    for metric in [
        "vigie_flows_total",
        "vigie_flow_events_total",
        "vigie_policy_reloads_total",
        "vigie_events_lost_total",
        "vigie_map_entries",
        "vigie_catalog_data_age_seconds",
        "vigie_blind_spots_total",
        "vigie_dns_learned_endpoints",
        "vigie_quic_total",
        "vigie_learning_delay_seconds_bucket",
    ] {
        assert!(reads(metric), "no panel reads {metric}");
    }
    // The Visio share counts only flows recognised by address, DNS or server name.
    assert!(
        exprs.iter().any(|e| e.contains("service=\"visio\"")
            && e.contains("evidence=~\"address|dns|sni|quic-sni\""))
    );
}

#[test]
fn promtool_accepts_the_alert_rules() {
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(dashboards::dir().join("alerts.yml"))
        .output()
        .expect("promtool (Debian package prometheus, installed by scripts/setup.sh)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dashboards::dir().join("alerts.yml")).unwrap();
    for alert in [
        "VigieDown",
        "VigieReloadFailing",
        "VigieEventsLost",
        "VigieEventSinkDropping",
        "VigieMapNearCapacity",
        "VigieCatalogStale",
        "VigieBlockedSurge",
    ] {
        assert!(text.contains(&format!("alert: {alert}")), "no {alert}");
    }
}
