//! Prometheus metrics at `/metrics`: datapath counters read from the pinned maps at each
//! scrape, and the daemon's own state (reloads, generation, catalog age, build).
//!
//! Labels are names from the policy (services, rules, groups: bounded by `limits::MAX_*`) or
//! fixed vocabularies (actions, parse-failure reasons, map names); never an address.

mod datapath;
mod server;
mod web_config;

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use prometheus::{Encoder as _, Gauge, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

pub use server::{ServeError, serve};
pub use web_config::{WebConfig, WebConfigError};

use crate::{catalog::Catalog, compiled::CompiledPolicy};
use datapath::DatapathCollector;

/// Outcome label of `vigie_policy_reloads_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadResult {
    Success,
    /// The policy files did not compile; the running policy stays.
    Invalid,
    /// The policy compiled but could not be written into the kernel.
    Failed,
}

impl ReloadResult {
    const fn label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Invalid => "invalid",
            Self::Failed => "failed",
        }
    }
}

/// Why a flow event line never reached the sink (`reason` of `vigie_flow_events_dropped_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The sink fell a whole queue behind (a pipe nobody reads, a stalled disk): the daemon
    /// drops lines rather than wait for it.
    Slow,
    /// Writing to the sink failed (a closed pipe, a full disk); no line is written any more.
    Failed,
}

impl DropReason {
    const ALL: [Self; 2] = [Self::Slow, Self::Failed];

    const fn label(self) -> &'static str {
        match self {
            Self::Slow => "slow",
            Self::Failed => "failed",
        }
    }
}

/// The daemon's metrics; cheap to clone, shared by the daemon and the HTTP server.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    reloads: IntCounterVec,
    generation: IntGauge,
    last_reload: Gauge,
    flow_events: IntCounterVec,
    suppressed: prometheus::IntCounter,
    dropped: IntCounterVec,
    learning_delay: prometheus::HistogramVec,
    policy: Arc<Mutex<Option<PolicyView>>>,
    learning: Arc<Mutex<LearningView>>,
}

/// What the scrape shows of the learner (see `learning`): its counts and table size.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LearningView {
    pub stats: crate::learning::LearningStats,
    pub learned: usize,
}

/// What the scrape needs of the policy in force: names for kernel ids, and data dates.
pub(crate) struct PolicyView {
    pub policy: Arc<CompiledPolicy>,
    /// (service id, day the service's data was retrieved, as Unix seconds).
    pub retrieved: Vec<(String, i64)>,
}

impl Metrics {
    /// Registers every metric; `pin_dir` is where the datapath's maps are pinned.
    ///
    /// # Panics
    /// Never: the metric names and labels are constants, valid and unique.
    #[must_use]
    pub fn new(pin_dir: PathBuf) -> Self {
        let registry = Registry::new();
        let reloads = IntCounterVec::new(
            Opts::new(
                "vigie_policy_reloads_total",
                "Policy reloads (SIGHUP) by result: success, invalid (did not compile) or failed (kernel write).",
            ),
            &["result"],
        )
        .expect("valid metric");
        let generation = IntGauge::new(
            "vigie_policy_generation",
            "Generation of the policy in force in the kernel.",
        )
        .expect("valid metric");
        let last_reload = Gauge::new(
            "vigie_policy_last_reload_timestamp_seconds",
            "Unix time of the last successful policy application (start or reload).",
        )
        .expect("valid metric");
        let build = IntGauge::with_opts(
            Opts::new(
                "vigie_build_info",
                "Build information; the value is always 1.",
            )
            .const_label("version", env!("CARGO_PKG_VERSION")),
        )
        .expect("valid metric");
        build.set(1);
        // Evidence is a label here (not in the kernel counters): it tells flows recognised by
        // address, DNS or server name from those matched by port alone, which other apps share.
        let flow_events = IntCounterVec::new(
            Opts::new(
                "vigie_flow_events_total",
                "Flow events read from the kernel (before aggregation), by service, action and evidence.",
            ),
            &["service", "action", "evidence"],
        )
        .expect("valid metric");
        let suppressed = prometheus::IntCounter::new(
            "vigie_flow_events_suppressed_total",
            "Flow events counted into an aggregated line instead of being written.",
        )
        .expect("valid metric");
        let dropped = dropped_counter();
        // From microseconds (the daemon's usual pace) to the kernel's QUIC deadline and beyond.
        let learning_delay = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new(
                "vigie_learning_delay_seconds",
                "Time from a payload crossing the hook (a DNS response, a QUIC client Initial) \
                 to what it taught being in force in the kernel, by signal.",
            )
            .buckets(vec![
                0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
                0.1, 0.25, 1.0,
            ]),
            &["signal"],
        )
        .expect("valid metric");
        for signal in ["dns", "quic"] {
            // Exported from the start, so that the dashboard's quantile has series to read.
            learning_delay.with_label_values(&[signal]);
        }
        let policy = Arc::new(Mutex::new(None));
        let learning = Arc::new(Mutex::new(LearningView::default()));
        for result in [
            ReloadResult::Success,
            ReloadResult::Invalid,
            ReloadResult::Failed,
        ] {
            // Every result exists from the start, so that rate() and alerts see a zero.
            reloads.with_label_values(&[result.label()]);
        }
        let collectors: [Box<dyn prometheus::core::Collector>; 9] = [
            Box::new(flow_events.clone()),
            Box::new(learning_delay.clone()),
            Box::new(suppressed.clone()),
            Box::new(dropped.clone()),
            Box::new(reloads.clone()),
            Box::new(generation.clone()),
            Box::new(last_reload.clone()),
            Box::new(build),
            Box::new(DatapathCollector::new(
                pin_dir,
                Arc::clone(&policy),
                Arc::clone(&learning),
            )),
        ];
        for collector in collectors {
            registry.register(collector).expect("unique metric names");
        }
        Self {
            registry,
            reloads,
            generation,
            last_reload,
            flow_events,
            suppressed,
            dropped,
            learning_delay,
            policy,
            learning,
        }
    }

    /// The learner's counts and table size, for the next scrape.
    pub fn learning(&self, stats: crate::learning::LearningStats, learned: usize) {
        if let Ok(mut view) = self.learning.lock() {
            *view = LearningView { stats, learned };
        }
    }

    /// One lesson in force in the kernel `delay` after its payload crossed the hook.
    pub fn learning_delay(&self, signal: &str, delay: std::time::Duration) {
        self.learning_delay
            .with_label_values(&[signal])
            .observe(delay.as_secs_f64());
    }

    /// Records a policy now in force in the kernel as `generation`.
    pub fn applied(&self, generation: u32, policy: Arc<CompiledPolicy>, catalog: &Catalog) {
        self.generation.set(i64::from(generation));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last_reload.set(now);
        let retrieved = catalog
            .services()
            .map(|(_, s)| {
                let d = &s.source.retrieved;
                (
                    s.id.clone(),
                    unix_day(i64::from(d.year), d.month.into(), d.day.into()) * 86_400,
                )
            })
            .collect();
        if let Ok(mut view) = self.policy.lock() {
            *view = Some(PolicyView { policy, retrieved });
        }
    }

    /// Counts one flow event as read from the ring (the sink may aggregate it).
    pub fn flow_event(&self, record: &crate::events::FlowRecord) {
        let service = record.service.as_deref().unwrap_or("none");
        self.flow_events
            .with_label_values(&[service, record.action, record.evidence])
            .inc();
    }

    /// Counts events an aggregated line reports instead of writing them.
    pub fn suppressed(&self, count: u64) {
        self.suppressed.inc_by(count);
    }

    /// Counts flow event lines that never reached the sink.
    pub fn flow_events_dropped(&self, reason: DropReason, count: u64) {
        self.dropped
            .with_label_values(&[reason.label()])
            .inc_by(count);
    }

    pub fn reloaded(&self, result: ReloadResult) {
        self.reloads.with_label_values(&[result.label()]).inc();
    }

    /// The text exposition of every metric.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail on I/O; a metric family error would be a bug here.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!("encoding metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// `vigie_flow_events_dropped_total`, with every reason at zero from the start, so that
/// `rate()` and alerts see a zero rather than no series.
fn dropped_counter() -> IntCounterVec {
    let dropped = IntCounterVec::new(
        Opts::new(
            "vigie_flow_events_dropped_total",
            "Flow event lines never written, by reason: slow (the sink fell a whole queue behind) or failed (writing to the sink failed).",
        ),
        &["reason"],
    )
    .expect("valid metric");
    for reason in DropReason::ALL {
        dropped.with_label_values(&[reason.label()]);
    }
    dropped
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn unix_day(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_day_matches_known_dates() {
        assert_eq!(unix_day(1970, 1, 1), 0);
        assert_eq!(unix_day(2000, 3, 1), 11_017);
        assert_eq!(unix_day(2024, 6, 1), 19_875);
    }

    #[test]
    fn renders_daemon_metrics_without_a_datapath() {
        let metrics = Metrics::new(PathBuf::from("/nonexistent/vigie-pins"));
        metrics.reloaded(ReloadResult::Invalid);
        let text = metrics.render();
        assert!(
            text.contains("vigie_policy_reloads_total{result=\"invalid\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("vigie_policy_reloads_total{result=\"success\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE vigie_policy_generation gauge"),
            "{text}"
        );
        assert!(text.contains("vigie_build_info{"), "{text}");
        // Both reasons from the start: an alert on drops sees a zero, not an absent series.
        for reason in ["slow", "failed"] {
            assert!(
                text.contains(&format!(
                    "vigie_flow_events_dropped_total{{reason=\"{reason}\"}} 0"
                )),
                "{text}"
            );
        }
        // No datapath: the datapath is reported down, not an error page.
        assert!(text.contains("vigie_datapath_up 0"), "{text}");
    }
}
