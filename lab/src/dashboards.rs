//! The Grafana dashboards and Prometheus rules of `dashboards/`, read the way the tests check
//! them: every `PromQL` expression, with Grafana's variables replaced by values Prometheus
//! accepts.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::Value;

/// The repository's `dashboards/` folder.
#[must_use]
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards")
}

/// Every `*.json` dashboard, by file name.
pub fn load() -> anyhow::Result<Vec<(String, Value)>> {
    let mut dashboards = Vec::new();
    for entry in std::fs::read_dir(dir())? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path)?;
            let json = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            dashboards.push((name.into_owned(), json));
        }
    }
    dashboards.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(dashboards)
}

/// One query of one panel.
#[derive(Clone, Debug)]
pub struct PanelQuery {
    pub dashboard: String,
    pub panel: String,
    pub expr: String,
}

/// Every target expression of every panel.
#[must_use]
pub fn queries(dashboards: &[(String, Value)]) -> Vec<PanelQuery> {
    let mut out = Vec::new();
    for (name, dashboard) in dashboards {
        for panel in dashboard["panels"].as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                out.push(PanelQuery {
                    dashboard: name.clone(),
                    panel: panel["title"].as_str().unwrap_or_default().to_owned(),
                    expr: target["expr"].as_str().unwrap_or_default().to_owned(),
                });
            }
        }
    }
    out
}

/// Replaces Grafana's variables with what Grafana would send: every gateway, a rate window
/// of a few scrapes, and a range covering the test.
#[must_use]
pub fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "15s")
        .replace("$__range", "5m")
        .replace("$instance", ".*")
}

/// The metric names an expression reads: every `vigie_*` token, and every other identifier
/// written just before a label matcher (`up{...}`).
#[must_use]
pub fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let starts = (c.is_ascii_alphabetic() || c == b'_')
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'))
            && !inside_quotes(&bytes[..i]);
        if !starts {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
            i += 1;
        }
        let word = &expr[start..i];
        let before_matcher = expr[i..].trim_start().starts_with('{');
        if word.starts_with("vigie_") || before_matcher {
            names.push(word.to_owned());
        }
    }
    names.sort();
    names.dedup();
    names
}

fn inside_quotes(before: &[u8]) -> bool {
    before.iter().fold(false, |inside, &b| inside ^ (b == b'"'))
}

/// Names of Prometheus's own series that rules may read besides vigie's.
pub const PROMETHEUS_SERIES: [&str; 1] = ["up"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_skip_functions_labels_and_strings() {
        let names = metric_names(
            r#"sum by (service) (rate(vigie_flows_total{service="vigie_x", instance=~".*"}[5m])) / up{job="vigie"} * on(service) group_left() vigie_service_info"#,
        );
        assert_eq!(names, ["up", "vigie_flows_total", "vigie_service_info"]);
    }
}
