//! Throughput: rates from the kernel's per-flow byte counters, read about once a second.
//!
//! Every reading of a flow's counters gives, per direction, the bytes moved since the previous
//! reading and the time between the two: one *interval*. An interval in which bytes moved is
//! *active*; its rate is bytes × 8 / interval. Idle intervals (keep-alive, a long poll waiting
//! for its answer) are not samples at all, so waiting never reads as a slow link. The first
//! interval of a flow starts at its SYN, the last ends at its close, so a transfer that starts
//! and ends between two readings is measured over the time it really took.
//!
//! A host's (or group's) samples add up the bytes of all its flows read at the same instant
//! (all flows are read together), divided by the interval.
//!
//! Statistics of the active rate: minimum, median, 95th percentile and maximum of the samples,
//! with the bytes and the active seconds behind them. Memory is bounded: the most recent
//! `MAX_SAMPLES` samples per flow, host and group are kept.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

/// Samples kept per flow, host or group and direction (over an hour at one a second).
pub const MAX_SAMPLES: usize = 4096;
/// Intervals shorter than this are too noisy to be samples (their bytes still count).
pub const MIN_INTERVAL_NS: u64 = 20_000_000;
/// The document's minimum: 70 kbit/s up and down.
pub const DEFAULT_MIN_BPS: f64 = 70_000.0;
/// A direction must move at least this much for its rate to be judged slow.
pub const SLOW_MIN_BYTES: u64 = 32 * 1024;

/// Active-rate samples of one direction.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Samples {
    rates: VecDeque<f64>,
    bytes: u64,
    active_ns: u64,
}

impl Samples {
    /// Adds one interval: `bytes` moved in `interval_ns`.
    pub fn add(&mut self, bytes: u64, interval_ns: u64) {
        if bytes == 0 {
            return;
        }
        self.bytes += bytes;
        if interval_ns < MIN_INTERVAL_NS {
            return;
        }
        self.active_ns += interval_ns;
        if self.rates.len() == MAX_SAMPLES {
            self.rates.pop_front();
        }
        self.rates
            .push_back(bytes as f64 * 8e9 / interval_ns as f64);
    }

    #[cfg(test)]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Statistics of the active rate; `None` without samples.
    pub fn stats(&self) -> Option<RateStats> {
        if self.rates.is_empty() {
            return None;
        }
        let mut sorted: Vec<f64> = self.rates.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
        Some(RateStats {
            min_bps: sorted[0].round(),
            median_bps: at(0.5).round(),
            p95_bps: at(0.95).round(),
            max_bps: sorted[sorted.len() - 1].round(),
            samples: sorted.len(),
            active_s: (self.active_ns as f64 / 1e6).round() / 1e3,
            bytes: self.bytes,
        })
    }
}

/// Statistics of one direction's active rate, in bits per second.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RateStats {
    pub min_bps: f64,
    pub median_bps: f64,
    pub p95_bps: f64,
    pub max_bps: f64,
    /// Active intervals measured.
    pub samples: usize,
    /// Seconds in which the direction was transferring.
    pub active_s: f64,
    /// Bytes moved.
    pub bytes: u64,
}

/// Both directions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Throughput {
    pub sent: Samples,
    pub received: Samples,
}

/// Throughput statistics of both directions, as reports show them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ThroughputStats {
    pub sent: Option<RateStats>,
    pub received: Option<RateStats>,
}

impl Throughput {
    pub fn stats(&self) -> ThroughputStats {
        ThroughputStats {
            sent: self.sent.stats(),
            received: self.received.stats(),
        }
    }
}

/// Bytes moved by a set of flows per reading instant, for host and group rates.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    /// Reading instant -> (bytes sent, bytes received, interval).
    buckets: BTreeMap<u64, (u64, u64, u64)>,
}

impl Series {
    /// Adds one flow's interval ending at `ts_ns`.
    pub fn add(&mut self, ts_ns: u64, sent: u64, received: u64, interval_ns: u64) {
        let b = self.buckets.entry(ts_ns).or_insert((0, 0, interval_ns));
        b.0 += sent;
        b.1 += received;
        b.2 = b.2.max(interval_ns);
        while self.buckets.len() > MAX_SAMPLES {
            self.buckets.pop_first();
        }
    }

    /// The samples of the whole series.
    pub fn throughput(&self) -> Throughput {
        let mut t = Throughput::default();
        for &(sent, received, interval) in self.buckets.values() {
            t.sent.add(sent, interval);
            t.received.add(received, interval);
        }
        t
    }

    /// Rates (sent, received) in bits per second over the `window_ns` ending at `now_ns`: the
    /// current rate with a window of one reading, the recent rate with ten seconds.
    pub fn rate(&self, now_ns: u64, window_ns: u64) -> (f64, f64) {
        let from = now_ns.saturating_sub(window_ns);
        let (mut sent, mut received) = (0u64, 0u64);
        for (_, &(s, r, _)) in self.buckets.range(from.saturating_add(1)..=now_ns) {
            sent += s;
            received += r;
        }
        let secs = window_ns as f64 / 1e9;
        (sent as f64 * 8.0 / secs, received as f64 * 8.0 / secs)
    }
}

/// What a runner uses a host for, from its name (GitHub's names are stable; their CDN targets
/// are not). `None` when the name says nothing.
pub fn runner_function(name: &str) -> Option<&'static str> {
    const ACTIONS: &str = ".actions.githubusercontent.com";
    let name = name.trim_end_matches('.');
    let sub = name.strip_suffix(ACTIONS);
    Some(match sub {
        Some("broker") => "job_messages",
        Some(s) if s.starts_with("pipelines") => "job_messages",
        Some(s) if s.starts_with("run-actions") => "job_lifecycle",
        Some("results-receiver") => "logs_and_results",
        Some("token") => "oidc",
        Some("pkg") => "action_downloads",
        _ if name.ends_with(".blob.core.windows.net") => "logs_and_results",
        _ => match name {
            "codeload.github.com" => "action_downloads",
            "objects.githubusercontent.com"
            | "objects-origin.githubusercontent.com"
            | "github-releases.githubusercontent.com"
            | "github-registry-files.githubusercontent.com" => "self_update",
            "api.github.com" | "github.com" => "api",
            _ => return None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn idle_intervals_are_not_samples_and_stats_are_exact() {
        let mut s = Samples::default();
        for kb in [10u64, 0, 0, 20, 30, 0, 40] {
            s.add(kb * 1000, S);
        }
        let st = s.stats().unwrap();
        assert_eq!(st.samples, 4);
        assert_eq!((st.min_bps, st.max_bps), (80_000.0, 320_000.0));
        assert_eq!(
            st.median_bps, 240_000.0,
            "index round(3 * 0.5) = 2 of [80, 160, 240, 320]k"
        );
        assert_eq!(st.p95_bps, 320_000.0);
        assert_eq!((st.active_s, st.bytes), (4.0, 100_000));
        assert!(Samples::default().stats().is_none());
    }

    #[test]
    fn short_intervals_count_bytes_but_not_rates() {
        let mut s = Samples::default();
        s.add(5000, MIN_INTERVAL_NS - 1);
        assert_eq!(s.bytes(), 5000);
        assert!(s.stats().is_none());
    }

    #[test]
    fn series_add_flows_read_at_the_same_instant() {
        let mut series = Series::default();
        series.add(10 * S, 1000, 10_000, S);
        series.add(10 * S, 1000, 30_000, S);
        series.add(11 * S, 0, 5_000, S);
        let t = series.throughput();
        assert_eq!(t.received.stats().unwrap().max_bps, 320_000.0);
        assert_eq!(series.rate(11 * S, S), (0.0, 40_000.0));
        assert_eq!(series.rate(11 * S, 10 * S), (1600.0, 36_000.0));
    }

    #[test]
    fn samples_are_bounded() {
        let mut s = Samples::default();
        for _ in 0..MAX_SAMPLES + 10 {
            s.add(1, S);
        }
        assert_eq!(s.stats().unwrap().samples, MAX_SAMPLES);
        let mut series = Series::default();
        for i in 0..MAX_SAMPLES as u64 + 10 {
            series.add(i * S, 1, 1, S);
        }
        assert_eq!(series.buckets.len(), MAX_SAMPLES);
    }

    #[test]
    fn runner_functions_from_names() {
        for (name, f) in [
            ("broker.actions.githubusercontent.com", Some("job_messages")),
            (
                "pipelinesghubeus5.actions.githubusercontent.com",
                Some("job_messages"),
            ),
            (
                "run-actions-3-azure-eastus.actions.githubusercontent.com",
                Some("job_lifecycle"),
            ),
            (
                "results-receiver.actions.githubusercontent.com",
                Some("logs_and_results"),
            ),
            (
                "productionresultssa12.blob.core.windows.net",
                Some("logs_and_results"),
            ),
            ("codeload.github.com", Some("action_downloads")),
            (
                "pkg.actions.githubusercontent.com",
                Some("action_downloads"),
            ),
            ("token.actions.githubusercontent.com", Some("oidc")),
            ("objects.githubusercontent.com", Some("self_update")),
            ("api.github.com", Some("api")),
            ("registry.npmjs.org", None),
            ("actions.githubusercontent.com", None),
        ] {
            assert_eq!(runner_function(name), f, "{name}");
        }
    }
}
