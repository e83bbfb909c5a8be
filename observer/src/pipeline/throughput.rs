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
//!
//! The verdict (`slow_throughput`) and the headline rate do not come from those samples but from
//! *transfers*: shapers deliver in lumps (an HTB class releases whole GSO bursts, seconds apart
//! at 40 kbit/s), so one-second slices of a slow transfer read as fast lumps and empty seconds.
//! A transfer is one direction's bytes from the first byte after an idle gap (or after a turn of
//! the conversation) to the last byte before the next: its rate is bytes / duration, lumps and
//! gaps inside it included. See [`FlowTransfers`] and docs/throughput.md for the lab evidence
//! behind [`TRANSFER_GAP_NS`].

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

/// Idle time that ends a transfer. In the lab, an HTB class of 40 kbit/s with GSO on (the
/// default) delivered downloads in lumps (GSO bursts) of up to 34 kB, up to 6.7 s apart; TBF and
/// a policer delivered every second. A whole GSO burst (64 KiB) at 40 kbit/s takes 13 s: 15 s
/// keeps lumps of any size at that rate in one transfer. Request/answer turns, not this gap,
/// split a keep-alive client's exchanges and the long poll's wait.
pub const TRANSFER_GAP_NS: u64 = 15_000_000_000;

/// What says when a transfer's bytes had really moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    /// The process read the bytes: they had arrived (downloads).
    BytesRead,
    /// The process wrote the bytes into its socket, and no answer followed: the kernel may still
    /// have been sending them after the last write, so the rate is an upper bound (uploads).
    BytesWritten,
    /// The process wrote the bytes, and the peer's answer came after them: the transfer runs
    /// until the answer, which the peer sends once it has read everything (uploads).
    Answer,
    /// The peer acknowledged the bytes: they had arrived (uploads, where the byte counts are
    /// the kernel's TCP statistics polled once a second, `tcpi_bytes_acked`).
    BytesAcked,
}

impl Evidence {
    /// How a report's reader reads it, e.g. in a reason's detail.
    pub fn explain(self) -> &'static str {
        match self {
            Self::BytesRead => "bytes read",
            Self::BytesWritten => "bytes written, no answer",
            Self::Answer => "bytes written until the peer's answer",
            Self::BytesAcked => "bytes acknowledged by the peer",
        }
    }
}

/// One transfer of one direction.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transfer {
    /// Wall-clock nanoseconds of the (estimated) first byte and of the last byte.
    pub start_ns: u64,
    pub end_ns: u64,
    pub bytes: u64,
    pub evidence: Evidence,
    /// The bytes before its last lump (the bytes after its last idle second), and when that
    /// lump came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_last: Option<(u64, u64)>,
    /// Pauses of a second or more inside it, and their time (at least).
    #[serde(default)]
    pub pauses: u32,
    #[serde(default)]
    pub paused_ns: u64,
}

impl Transfer {
    /// Seconds from the first byte to the last (at least [`MIN_INTERVAL_NS`]).
    pub fn seconds(&self) -> f64 {
        self.end_ns
            .saturating_sub(self.start_ns)
            .max(MIN_INTERVAL_NS) as f64
            / 1e9
    }

    /// Bytes × 8 / duration; or, when the transfer ended with a lump on credit, the bytes
    /// before that lump over the time until it came. A queueing shaper releases each lump once
    /// its tokens allow, the last one on credit (HTB sends a whole GSO burst once its tokens
    /// are positive): in the lab, a 160 kB download through HTB 40 kbit/s ended with 40 kB in
    /// two readings after 6 s of silence, and bytes / duration read 49–50 kbit/s where the
    /// bytes before the last lump read 38 kbit/s.
    ///
    /// Only a lumpy transfer ends on credit: one that paused for a second or more at least
    /// twice, for at least a quarter of its time (HTB's lumps come seconds apart all along).
    /// Then the last lump comes after a pause, the bytes before it are at least half of the
    /// transfer, and it arrives at least twice as fast as they did. A steady shaper pauses
    /// too, once in a while, and the time of its pause is really lost: TBF and policers drop,
    /// and a retransmission timeout stops the transfer for a second or more; a reader starved
    /// of CPU stops reading for a second and then catches up in a lump. In CI, a TBF 40 kbit/s
    /// download with one such pause read 31 kbit/s corrected, 40 kbit/s as bytes / duration.
    /// Uploads ended by the answer keep bytes / duration (the answer proves everything
    /// arrived).
    pub fn rate_bps(&self) -> f64 {
        let whole = self.bytes as f64 * 8.0 / self.seconds();
        let Some((before, until_ns)) = self.before_last else {
            return whole;
        };
        let duration_ns = self.end_ns.saturating_sub(self.start_ns);
        let lumpy = self.pauses >= 2 && self.paused_ns.saturating_mul(4) >= duration_ns;
        if !lumpy || self.evidence == Evidence::Answer || before * 2 < self.bytes {
            return whole;
        }
        let secs = until_ns.saturating_sub(self.start_ns).max(MIN_INTERVAL_NS) as f64 / 1e9;
        let rate_before = before as f64 * 8.0 / secs;
        // The lump's bytes over the time they took, at least one reading's worth.
        let lump_secs = self.end_ns.saturating_sub(until_ns).max(PAUSE_NS) as f64 / 1e9;
        let lump_rate = (self.bytes - before) as f64 * 8.0 / lump_secs;
        if lump_rate >= 2.0 * rate_before {
            rate_before
        } else {
            whole
        }
    }

    /// Whether it moved enough for its rate to say something about the path (short exchanges
    /// say more about latency).
    pub fn judged(&self) -> bool {
        self.bytes >= SLOW_MIN_BYTES
    }
}

/// The transfers of one direction: the one in progress, and a summary of the others (memory
/// stays constant however long the flow lives).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Transfers {
    open: Option<Transfer>,
    /// The last byte of this direction in the open transfer (its end may reach the answer).
    last_byte_ns: u64,
    /// The other direction moved after the open transfer's last byte (a request, an answer),
    /// last at this time: the next byte starts a new transfer, not before it.
    turned_ns: Option<u64>,
    done: TransferSummary,
}

/// Idle time inside a transfer after which the next bytes are a new lump (an empty reading).
const PAUSE_NS: u64 = 1_000_000_000;

/// Bytes the peer must send after an upload for them to be its answer: a TLS close alert (24
/// to 31 bytes) before an idle connection's close is not one, an HTTP status line is.
pub const MIN_ANSWER_BYTES: u64 = 32;

/// The transfers of one direction, as reports show them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TransferSummary {
    /// Transfers, short ones included.
    pub count: u64,
    /// Transfers of at least 32 KiB, whose rate is judged.
    pub judged: u64,
    /// Bytes and seconds of the judged transfers.
    pub bytes: u64,
    pub seconds: f64,
    /// The headline rate of the judged transfers: their bytes × 8 over the time they took at
    /// their rates (bytes × 8 / seconds when every one was steady); absent without any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_bps: Option<f64>,
    /// The slowest judged transfer: what `slow_throughput` is judged on. Boxed: every flow
    /// keeps two summaries, and few flows have a judged transfer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slowest: Option<Box<SlowestTransfer>>,
}

/// The slowest judged transfer, with the flow it belongs to (for hosts and groups).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlowestTransfer {
    pub bytes: u64,
    pub seconds: f64,
    pub rate_bps: f64,
    pub evidence: Evidence,
    /// Wall-clock nanoseconds of its first byte.
    pub start_ns: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_id: Option<u64>,
    /// The runner whose report it comes from, in a merged report (`observer report merge`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<String>,
}

impl TransferSummary {
    /// The seconds the judged transfers took at their rates (bytes × 8 / rate, summed).
    fn effective_s(&self) -> f64 {
        self.rate_bps
            .filter(|r| *r > 0.0)
            .map_or(0.0, |r| self.bytes as f64 * 8.0 / r)
    }

    fn add(&mut self, t: &Transfer, flow_id: Option<u64>) {
        self.count += 1;
        if !t.judged() {
            return;
        }
        let rate = t.rate_bps();
        let effective = self.effective_s() + t.bytes as f64 * 8.0 / rate;
        self.judged += 1;
        self.bytes += t.bytes;
        self.seconds += t.seconds();
        self.rate_bps = Some((self.bytes as f64 * 8.0 / effective).round());
        if self.slowest.as_ref().is_none_or(|s| rate < s.rate_bps) {
            self.slowest = Some(Box::new(SlowestTransfer {
                bytes: t.bytes,
                seconds: (t.seconds() * 1e3).round() / 1e3,
                rate_bps: rate.round(),
                evidence: t.evidence,
                start_ns: t.start_ns,
                flow_id,
                runner: None,
            }));
        }
    }

    /// Adds another flow's transfers (a host's or group's summary is that of its flows).
    pub fn merge(&mut self, other: &TransferSummary) {
        let effective = self.effective_s() + other.effective_s();
        self.count += other.count;
        self.judged += other.judged;
        self.bytes += other.bytes;
        self.seconds += other.seconds;
        if effective > 0.0 {
            self.rate_bps = Some((self.bytes as f64 * 8.0 / effective).round());
        }
        if let Some(o) = &other.slowest {
            if self
                .slowest
                .as_ref()
                .is_none_or(|s| o.rate_bps < s.rate_bps)
            {
                self.slowest = Some(o.clone());
            }
        }
    }

    /// Names the flow of the slowest transfer.
    pub fn of_flow(mut self, flow_id: u64) -> Self {
        if let Some(s) = &mut self.slowest {
            s.flow_id = Some(flow_id);
        }
        self
    }
}

impl Transfers {
    /// The summary, the transfer in progress included as it stands.
    pub fn summary(&self) -> TransferSummary {
        let mut s = self.done.clone();
        if let Some(t) = &self.open {
            s.add(t, None);
        }
        s.seconds = (s.seconds * 1e3).round() / 1e3;
        s
    }

    fn finish(&mut self) {
        if let Some(t) = self.open.take() {
            self.done.add(&t, None);
        }
        self.turned_ns = None;
    }

    /// Bytes of this direction: `bytes` moved in the interval (`from_ns`, last byte `last_ns`].
    fn bytes(&mut self, bytes: u64, from_ns: u64, last_ns: u64, evidence: Evidence) {
        if bytes == 0 {
            return;
        }
        let continues = self.turned_ns.is_none()
            && self
                .open
                .is_some_and(|t| from_ns.saturating_sub(t.end_ns) < TRANSFER_GAP_NS);
        match &mut self.open {
            Some(t) if continues => {
                let idle_ns = from_ns.saturating_sub(self.last_byte_ns);
                if idle_ns >= PAUSE_NS {
                    t.before_last = Some((t.bytes, last_ns));
                    t.pauses = t.pauses.saturating_add(1);
                    t.paused_ns = t.paused_ns.saturating_add(idle_ns);
                }
                t.bytes += bytes;
                t.end_ns = t.end_ns.max(last_ns);
                self.last_byte_ns = last_ns;
            }
            _ => {
                let floor = self.turned_ns.unwrap_or(0);
                self.finish();
                self.open = Some(Transfer {
                    start_ns: from_ns.max(floor).min(last_ns),
                    end_ns: last_ns,
                    bytes,
                    evidence,
                    before_last: None,
                    pauses: 0,
                    paused_ns: 0,
                });
                self.last_byte_ns = last_ns;
            }
        }
    }

    /// The other direction moved `bytes`, its last byte at `last_ns`: if that is after this
    /// direction's last byte, the conversation turned. An upload's transfer then runs until the
    /// peer's last words before the process writes again (the peer answers once it has read
    /// everything; a TLS session ticket can come while the upload still waits in the socket),
    /// within `answer_within_ns` of the last write.
    fn other(&mut self, bytes: u64, last_ns: u64, answer_within_ns: Option<u64>) {
        let Some(t) = &mut self.open else {
            return;
        };
        if last_ns <= self.last_byte_ns {
            return;
        }
        self.turned_ns = Some(self.turned_ns.unwrap_or(0).max(last_ns));
        // Bytes the peer acknowledged need no answer to prove they arrived, and end with the
        // last acknowledgement, not the answer.
        let answers = t.evidence != Evidence::BytesAcked
            && answer_within_ns.is_some_and(|within| {
                t.judged() && bytes >= MIN_ANSWER_BYTES && last_ns - self.last_byte_ns <= within
            });
        if answers {
            t.end_ns = t.end_ns.max(last_ns);
            t.evidence = Evidence::Answer;
        }
    }
}

/// One reading of a flow's counters, for [`FlowTransfers::read`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    /// When it was taken, and the time since the previous one.
    pub ts_ns: u64,
    pub interval_ns: u64,
    /// Bytes moved in the interval.
    pub sent: u64,
    pub received: u64,
    /// Time from the last byte written (read) to the reading, when the kernel said.
    pub sent_idle_ns: Option<u64>,
    pub received_idle_ns: Option<u64>,
    /// `sent` counts bytes the peer acknowledged (polled TCP statistics), not bytes written.
    pub sent_acked: bool,
}

/// A flow's transfers, per direction.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlowTransfers {
    pub sent: Transfers,
    pub received: Transfers,
    /// The start of the flow's first reading (its SYN, for a flow seen from the start).
    first_ns: Option<u64>,
}

/// Bytes within this time of a flow's start are its handshake (a TLS server's certificate and
/// session tickets, the client's Finished): they never turn the conversation. In the lab, a TLS
/// session ticket reached the client 0.1–0.2 s after the handshake, while an upload through 40
/// kbit/s still had 60 kB waiting in its socket; taking it for the answer split the upload.
pub const HANDSHAKE_NS: u64 = 1_000_000_000;

/// The transfers of both directions, as reports show them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TransferStats {
    pub sent: TransferSummary,
    pub received: TransferSummary,
}

impl TransferStats {
    pub fn is_empty(&self) -> bool {
        self.sent.count == 0 && self.received.count == 0
    }

    /// Names the flow of the slowest transfers.
    pub fn of_flow(self, flow_id: u64) -> Self {
        Self {
            sent: self.sent.of_flow(flow_id),
            received: self.received.of_flow(flow_id),
        }
    }

    /// Adds another flow's transfers.
    pub fn merge(&mut self, other: &TransferStats) {
        self.sent.merge(&other.sent);
        self.received.merge(&other.received);
    }

    /// Names the runner of the slowest transfers (before merging runners' reports).
    pub fn of_runner(mut self, runner: &str) -> Self {
        for s in [&mut self.sent.slowest, &mut self.received.slowest]
            .into_iter()
            .flatten()
        {
            s.runner = Some(runner.to_owned());
        }
        self
    }
}

impl FlowTransfers {
    /// Adds one reading. Within it, whichever direction's last byte came first is taken first:
    /// a request then its answer turns the conversation, an answer then a close alert does not
    /// cut the answer. An upload waits for its answer at most `answer_within_ns` (the long
    /// poll's time: a longer wait is not an answer).
    pub fn read(&mut self, r: &Reading, answer_within_ns: u64) {
        let from = r.ts_ns.saturating_sub(r.interval_ns);
        let handshake_until = self
            .first_ns
            .get_or_insert(from)
            .saturating_add(HANDSHAKE_NS);
        let last = |idle: Option<u64>| r.ts_ns.saturating_sub(idle.unwrap_or(0)).max(from);
        let (last_sent, mut last_received) = (last(r.sent_idle_ns), last(r.received_idle_ns));
        // Polled TCP statistics stamp the last send and receive to the jiffy (4 ms at HZ=250):
        // a request and its answer can share one. And the bytes that moved between the last
        // poll and the close are not timed at all (a keep-alive client's last exchange and its
        // close often fall between two polls). A client speaks first (a request, then its
        // answer; an upload, then the answer), so the received bytes come after. Event logs of
        // older versions (no times, bytes written rather than acknowledged) keep the rule below.
        let known = r.sent_idle_ns.is_some() && r.received_idle_ns.is_some();
        if (known || r.sent_acked) && r.sent > 0 && r.received > 0 && last_sent == last_received {
            last_received += 1;
        }
        let sent_evidence = if r.sent_acked {
            Evidence::BytesAcked
        } else {
            Evidence::BytesWritten
        };
        // Without the kernel's timestamps (older event logs), both directions end at the reading;
        // then a direction that moved alone is what turns the conversation.
        let concurrent = r.sent > 0 && r.received > 0 && last_sent == last_received;
        let turns = |last_ns: u64| !concurrent && last_ns > handshake_until;
        let sent_then = |t: &mut Self| {
            if r.sent > 0 {
                t.sent.bytes(r.sent, from, last_sent, sent_evidence);
                if turns(last_sent) {
                    t.received.other(r.sent, last_sent, None);
                }
            }
        };
        let received_then = |t: &mut Self| {
            if r.received > 0 {
                t.received
                    .bytes(r.received, from, last_received, Evidence::BytesRead);
                if turns(last_received) {
                    t.sent
                        .other(r.received, last_received, Some(answer_within_ns));
                }
            }
        };
        if last_sent < last_received {
            sent_then(self);
            received_then(self);
        } else {
            received_then(self);
            sent_then(self);
        }
    }

    pub fn stats(&self) -> TransferStats {
        TransferStats {
            sent: self.sent.summary(),
            received: self.received.summary(),
        }
    }
}

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

    /// A reading: seconds after the SYN, interval, sent, received, sent idle, received idle.
    type Row = (f64, f64, u64, u64, Option<f64>, Option<f64>);

    fn replay(readings: &[Row]) -> FlowTransfers {
        replay_counters(readings, false)
    }

    /// As [`replay`], with the byte counts of polled TCP statistics (bytes sent acknowledged).
    fn replay_counters(readings: &[Row], sent_acked: bool) -> FlowTransfers {
        let ns = |s: f64| (s * 1e9) as u64;
        let mut t = FlowTransfers::default();
        for &(at, interval, sent, received, sent_idle, received_idle) in readings {
            t.read(
                &Reading {
                    ts_ns: 100 * S + ns(at),
                    interval_ns: ns(interval),
                    sent,
                    received,
                    sent_idle_ns: sent_idle.map(ns),
                    received_idle_ns: received_idle.map(ns),
                    sent_acked,
                },
                50 * S,
            );
        }
        t
    }

    #[test]
    fn a_lumpy_download_is_one_transfer_at_the_shaped_rate() {
        // The lab's HTB 40 kbit/s download of 60 kB (GSO on): lumps with empty seconds between.
        let r = |at, received, idle| (at, 1.0, 0, received, None, Some(idle));
        let t = replay(&[
            (0.925, 0.925, 723, 10_157, Some(0.918), Some(0.884)),
            r(1.925, 7_240, 0.067),
            r(3.925, 14_480, 0.250),
            r(6.925, 17_376, 0.522),
            r(10.925, 4_344, 0.285),
            (11.925, 1.0, 24, 8_124, Some(0.676), Some(0.680)),
        ]);
        let stats = t.stats();
        let received = &stats.received;
        assert_eq!((received.count, received.judged), (1, 1));
        let slowest = received.slowest.as_ref().expect("judged");
        assert_eq!(slowest.bytes, 61_721);
        assert_eq!(slowest.evidence, Evidence::BytesRead);
        assert!(
            (32_000.0..=48_000.0).contains(&slowest.rate_bps),
            "{slowest:?}"
        );
        assert_eq!(received.rate_bps, Some(slowest.rate_bps));
        // The one-second slices of the same download: every active one above 57 kbit/s.
        let mut samples = Samples::default();
        for kb in [
            10_157, 7_240, 0, 14_480, 0, 0, 17_376, 0, 0, 0, 4_344, 8_124,
        ] {
            samples.add(kb, S);
        }
        assert!(samples.stats().expect("samples").median_bps > 70_000.0);
    }

    #[test]
    fn a_steady_download_that_paused_once_keeps_bytes_over_duration() {
        // CI's TBF 40 kbit/s download of 92 kB, as a reader short of CPU (or a retransmission
        // timeout) makes it: 5 kB a second, nothing for two readings, then the bytes that
        // waited in the socket read at once and the rest at the shaped rate.
        let r = |at, received| (at, 1.0, 0, received, None, Some(0.1));
        let mut readings = vec![(1.0, 1.0, 400, 5_000, Some(0.9), Some(0.1))];
        for i in 2..=11 {
            readings.push(r(f64::from(i), 5_000));
        }
        readings.push(r(14.0, 15_000));
        for i in 15..=18 {
            readings.push(r(f64::from(i), 5_000));
        }
        let received = replay(&readings).stats().received;
        let slowest = received.slowest.expect("judged");
        assert_eq!(slowest.bytes, 90_000);
        assert!(
            (38_000.0..=42_000.0).contains(&slowest.rate_bps),
            "bytes over duration, not the bytes before the pause: {slowest:?}"
        );
    }

    #[test]
    fn polled_counters_judge_uploads_on_acknowledged_bytes_and_split_exchanges_in_one_jiffy() {
        // Debian 12's 6.1, HTB 40 kbit/s upload of 160 kB: acknowledged at 5 kB a second; the
        // last acknowledgement, the answer and the close in one reading, stamped to the jiffy.
        let mut readings = vec![(1.0, 1.0, 5_000, 1_500, Some(0.1), Some(0.9))];
        for i in 2..32 {
            readings.push((f64::from(i), 1.0, 5_000, 0, Some(0.1), None));
        }
        readings.push((32.0, 1.0, 5_000, 300, Some(0.2), Some(0.2)));
        let sent = replay_counters(&readings, true).stats().sent;
        let slowest = sent.slowest.expect("judged");
        assert_eq!(
            (slowest.bytes, slowest.evidence),
            (160_000, Evidence::BytesAcked)
        );
        assert!(
            (38_000.0..=42_000.0).contains(&slowest.rate_bps),
            "{slowest:?}"
        );
        // A keep-alive client: each request and its 12 kB answer in one reading, both stamped
        // 0.3 s before it (one jiffy), 3 s apart: five exchanges, not one 60 kB transfer.
        let mut readings = Vec::new();
        for i in 0..5 {
            let at = 1.0 + 3.0 * f64::from(i);
            readings.push((at, 1.0, 400, 12_000, Some(0.3), Some(0.3)));
        }
        let received = replay_counters(&readings, true).stats().received;
        assert_eq!((received.count, received.judged), (5, 0));
        // The last exchange and the close between two polls: the close's final counts are not
        // timed, and still a turn.
        readings.pop();
        readings.push((13.5, 0.5, 400, 12_000, None, None));
        let received = replay_counters(&readings, true).stats().received;
        assert_eq!((received.count, received.judged), (5, 0));
    }

    #[test]
    fn an_upload_runs_until_the_answer() {
        // The lab's HTB 40 kbit/s upload of 60 kB: written into the socket within a second, the
        // server's answer 10 s later.
        let t = replay(&[
            (0.938, 0.938, 60_875, 1_470, Some(0.930), Some(0.722)),
            (10.938, 10.0, 0, 153, None, Some(0.334)),
            (11.5, 0.562, 24, 24, Some(0.0), Some(0.1)),
        ]);
        let sent = t.stats().sent;
        let slowest = sent.slowest.expect("judged");
        assert_eq!(
            (slowest.bytes, slowest.evidence),
            (60_875, Evidence::Answer)
        );
        assert!((10.5..=10.7).contains(&slowest.seconds), "{slowest:?}");
        assert_eq!(sent.count, 2, "the close alert is a transfer of its own");
        // The policer's upload of 90 kB: 66 kB fill the socket, a TLS session ticket comes 0.1 s
        // later, the rest is written as the socket drains, the answer comes at 18 s: one upload.
        let t = replay(&[
            (0.9, 0.9, 66_433, 1_500, Some(0.85), Some(0.75)),
            (4.9, 1.0, 24_500, 0, Some(0.4), None),
            (18.9, 1.0, 0, 190, None, Some(0.5)),
        ]);
        let slowest = t.stats().sent.slowest.expect("judged");
        assert_eq!(
            (slowest.bytes, slowest.evidence),
            (90_933, Evidence::Answer)
        );
        assert!((18.3..=18.5).contains(&slowest.seconds), "{slowest:?}");
        // Without an answer, the last byte written ends it.
        let t = replay(&[(0.938, 0.938, 60_875, 0, Some(0.930), None)]);
        let slowest = t.stats().sent.slowest.expect("judged");
        assert_eq!(slowest.evidence, Evidence::BytesWritten);
        assert!(slowest.rate_bps > 1e6);
    }

    #[test]
    fn requests_split_a_keep_alive_clients_exchanges() {
        // Ten requests, each answered with 10 kB at once, 3 s apart: ten short transfers, none
        // judged; merged over their think time they would read as 27 kbit/s.
        let mut readings = Vec::new();
        for i in 0..10 {
            let at = 1.0 + 3.0 * f64::from(i);
            readings.push((at, 1.0, 400, 10_000, Some(0.5), Some(0.45)));
            readings.push((at + 1.0, 1.0, 0, 0, None, None));
        }
        let received = replay(&readings).stats().received;
        assert_eq!((received.count, received.judged), (10, 0));
        // With 40 kB answers, each is judged at its own (full) speed.
        for r in &mut readings {
            if r.3 > 0 {
                r.3 = 40_000;
            }
        }
        let received = replay(&readings).stats().received;
        assert_eq!((received.count, received.judged), (10, 10));
        assert!(received.slowest.expect("judged").rate_bps > 500_000.0);
    }

    #[test]
    fn a_long_polls_wait_is_never_transfer_time_and_idle_gaps_end_transfers() {
        // Two long polls answered after 50 s with 40 kB each (readings every second, only
        // those with bytes shown).
        let t = replay(&[
            (1.0, 1.0, 1_200, 3_000, Some(0.9), Some(0.95)),
            (51.0, 1.0, 0, 40_000, None, Some(0.2)),
            (53.0, 1.0, 1_200, 0, Some(0.5), None),
            (103.0, 1.0, 0, 40_000, None, Some(0.5)),
        ]);
        let stats = t.stats();
        assert_eq!((stats.received.count, stats.received.judged), (3, 2));
        let slowest = stats.received.slowest.expect("judged");
        assert!(
            slowest.seconds < 1.0,
            "the wait is not transfer time: {slowest:?}"
        );
        assert_eq!(stats.sent.judged, 0);
        // No turn, but an idle gap of 16 s: two transfers.
        let t = replay(&[
            (1.0, 1.0, 0, 40_000, None, Some(0.5)),
            (17.5, 1.0, 0, 40_000, None, Some(0.5)),
        ]);
        assert_eq!(t.stats().received.judged, 2);
    }

    #[test]
    fn without_the_kernels_timestamps_both_directions_end_at_the_reading() {
        // An event log of an older version: no idle times. Concurrent bytes do not turn.
        let r = |at, sent, received| (at, 1.0, sent, received, None, None);
        let t = replay(&[r(1.0, 500, 10_000), r(2.0, 100, 10_000), r(4.0, 0, 20_000)]);
        let received = t.stats().received;
        assert_eq!((received.count, received.judged), (1, 1));
        let slowest = received.slowest.expect("judged");
        assert!((4.0..=4.0).contains(&slowest.seconds), "{slowest:?}");
    }

    #[test]
    fn summaries_merge_and_name_the_slowest_flow() {
        let slow = replay(&[(12.0, 12.0, 0, 60_000, None, Some(0.0))])
            .stats()
            .of_flow(7);
        let fast = replay(&[(1.0, 1.0, 0, 600_000, None, Some(0.0))])
            .stats()
            .of_flow(8);
        let mut host = TransferStats::default();
        host.merge(&fast);
        host.merge(&slow);
        let slowest = host.received.slowest.clone().expect("judged");
        assert_eq!((slowest.flow_id, slowest.rate_bps), (Some(7), 40_000.0));
        assert_eq!(host.received.judged, 2);
        assert_eq!(host.received.rate_bps, Some(406_154.0), "660 kB in 13 s");
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
