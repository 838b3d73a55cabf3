//! A flood never floods the sink: the first event of a (source, destination, service, rule,
//! action) is written at once, the repeats within a window are only counted, and one line with
//! `suppressed` set reports them when the window closes.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use super::FlowRecord;

/// Distinct keys tracked at once; past it, new keys fold into one per (service, rule, action)
/// with `*` addresses, so that a scan across many addresses stays bounded too.
pub const MAX_KEYS: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    src: String,
    dst: String,
    service: Option<String>,
    rule: String,
    action: &'static str,
}

struct Window {
    opened: Instant,
    suppressed: u64,
    last: FlowRecord,
}

pub struct Aggregator {
    window: Duration,
    open: HashMap<Key, Window>,
}

impl Aggregator {
    #[must_use]
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            open: HashMap::new(),
        }
    }

    /// The record to write now, if any; a repeat within the window is only counted.
    pub fn offer(&mut self, record: FlowRecord, now: Instant) -> Option<FlowRecord> {
        if self.window.is_zero() {
            return Some(record);
        }
        let mut key = Key {
            src: host(&record.src),
            dst: host(&record.dst),
            service: record.service.clone(),
            rule: record.rule.clone(),
            action: record.action,
        };
        if !self.open.contains_key(&key) && self.open.len() >= MAX_KEYS {
            key.src = "*".into();
            key.dst = "*".into();
        }
        if let Some(w) = self.open.get_mut(&key) {
            w.suppressed += 1;
            w.last = record;
            return None;
        }
        self.open.insert(
            key,
            Window {
                opened: now,
                suppressed: 0,
                last: record.clone(),
            },
        );
        Some(record)
    }

    /// Closes the windows older than the window length; returns one summary line for each
    /// that suppressed something (the last event seen, with the count).
    pub fn expire(&mut self, now: Instant) -> Vec<FlowRecord> {
        let window = self.window;
        self.close(|w| now.duration_since(w.opened) >= window)
    }

    /// Closes every window, as the daemon stops: the repeats counted so far are reported
    /// rather than lost with the process.
    pub fn close_all(&mut self) -> Vec<FlowRecord> {
        self.close(|_| true)
    }

    fn close(&mut self, closes: impl Fn(&Window) -> bool) -> Vec<FlowRecord> {
        let mut summaries = Vec::new();
        self.open.retain(|_, w| {
            if !closes(w) {
                return true;
            }
            if w.suppressed > 0 {
                let mut last = w.last.clone();
                last.suppressed = w.suppressed;
                summaries.push(last);
            }
            false
        });
        summaries
    }
}

/// The address part of `addr:port`, `[v6]:port` or a pseudonym.
fn host(endpoint: &str) -> String {
    endpoint
        .parse::<std::net::SocketAddr>()
        .map_or_else(|_| endpoint.to_owned(), |s| s.ip().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(src: &str, dst: &str) -> FlowRecord {
        FlowRecord {
            time: "t".into(),
            src: src.into(),
            dst: dst.into(),
            src_port: 0,
            dst_port: 0,
            proto: "udp",
            service: Some("zoom".into()),
            group: "staff".into(),
            rule: "block-zoom".into(),
            action: "block",
            mode: "enforce",
            verdict: "dropped",
            evidence: "address",
            country: None,
            generation: 1,
            policy_digest: String::new(),
            redecided: false,
            direction: "outbound",
            suppressed: 0,
        }
    }

    #[test]
    fn repeats_within_the_window_are_counted_then_reported_once() {
        let mut agg = Aggregator::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(
            agg.offer(record("10.0.0.1:1000", "1.2.3.4:443"), t0)
                .is_some()
        );
        for port in 1001..1101 {
            let r = record(&format!("10.0.0.1:{port}"), "1.2.3.4:443");
            assert!(agg.offer(r, t0).is_none());
        }
        // Another destination is another key.
        assert!(
            agg.offer(record("10.0.0.1:1000", "1.2.3.5:443"), t0)
                .is_some()
        );
        assert!(agg.expire(t0 + Duration::from_secs(5)).is_empty());
        let summaries = agg.expire(t0 + Duration::from_secs(10));
        assert_eq!(summaries.len(), 1);
        assert_eq!(summaries[0].suppressed, 100);
        // The window is closed: the next event is written again.
        let t1 = t0 + Duration::from_secs(11);
        assert!(agg.offer(record("10.0.0.1:1", "1.2.3.4:443"), t1).is_some());
    }

    #[test]
    fn closing_all_reports_what_open_windows_counted() {
        let mut agg = Aggregator::new(Duration::from_secs(600));
        let t0 = Instant::now();
        for port in 1..=3 {
            let _ = agg.offer(record(&format!("10.0.0.1:{port}"), "1.2.3.4:443"), t0);
        }
        // A window that counted nothing has nothing to report.
        let _ = agg.offer(record("10.0.0.1:1", "1.2.3.5:443"), t0);
        assert!(agg.expire(t0 + Duration::from_secs(1)).is_empty());
        let summaries = agg.close_all();
        assert_eq!(summaries.len(), 1, "{summaries:?}");
        assert_eq!(
            (
                summaries[0].dst.as_str(),
                summaries[0].src.as_str(),
                summaries[0].suppressed
            ),
            ("1.2.3.4:443", "10.0.0.1:3", 2)
        );
        // Every window is closed: the next event of either key is written at once.
        assert!(agg.offer(record("10.0.0.1:4", "1.2.3.4:443"), t0).is_some());
        assert!(agg.offer(record("10.0.0.1:2", "1.2.3.5:443"), t0).is_some());
    }

    #[test]
    fn distinct_keys_are_bounded() {
        let mut agg = Aggregator::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let written = (0..MAX_KEYS + 1000)
            .filter(|i| {
                let dst = format!("[2001:db8::{i:x}]:443");
                agg.offer(record("10.0.0.1:1", &dst), t0).is_some()
            })
            .count();
        assert_eq!(written, MAX_KEYS + 1);
        let summaries = agg.expire(t0 + Duration::from_secs(10));
        assert_eq!(summaries.iter().map(|s| s.suppressed).sum::<u64>(), 999);
    }

    #[test]
    fn a_zero_window_writes_everything() {
        let mut agg = Aggregator::new(Duration::ZERO);
        let t0 = Instant::now();
        assert!(agg.offer(record("10.0.0.1:1", "1.2.3.4:443"), t0).is_some());
        assert!(agg.offer(record("10.0.0.1:1", "1.2.3.4:443"), t0).is_some());
    }
}
