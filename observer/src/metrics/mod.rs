//! Prometheus metrics of a long-running capture (`observer daemon --metrics ADDR:PORT`; every
//! metric, label and bound is in docs/metrics.md).
//!
//! [`Metrics`] is fed every observation right after the correlator has seen it
//! ([`Metrics::observe`]), and written in the exposition format at each scrape
//! ([`Metrics::render`]); [`serve`](mod@serve) answers `GET /metrics`. The daemon owns both the
//! correlator and the metrics, behind one lock, and renders under it: rendering reads the catalog,
//! the open flows and a few hundred counters, never the history.
//!
//! # Counting as it goes
//!
//! The daemon's correlator forgets each flow once it has closed
//! ([`Correlator::forgetting_closed_flows`]): memory follows the open flows, not the days. So
//! counters cannot be recomputed from the correlator at each scrape; they are counted once per
//! event and only ever grow:
//! - a flow is counted when it closes: its outcome, its failure or warning (the report's own
//!   [`classify`] functions, on the correlator's entry for the flow), its slow transfers. The
//!   correlator keeps the one flow it forgot last and hands it out through
//!   [`Correlator::flow`] (a hook of one entry's memory): the entry has what the close event
//!   lacks (the proxy's status line, the transfers `slow_throughput` is judged on). A flow the
//!   correlator never kept (beyond its flow bound) is classified from the close event itself;
//! - bytes are counted at each reading of a flow's counters, and the rest at its close (the
//!   totals already counted per open flow are remembered, within the open flows' bound);
//! - DNS: each answer to a query the capture saw (failure codes and sinkholes), each query the
//!   correlator judges unanswered ([`Correlator::judged_unanswered`]: the timeout table itself
//!   stops growing at its bound), and each rejected response by kind;
//! - capture health from the capture's totals (`capture_stats` events) and the correlator's
//!   drop counters, as differences: a new capture or a new correlator (a catalog reload) that
//!   starts again from zero adds to the counters instead of resetting them.
//!
//! # Statuses
//!
//! The status gauges of groups and documented hosts are judged as the report judges them
//! ([`classify::status`], [`group_status`]), but over a recent window (10 minutes by default,
//! [`MetricsConfig::window_s`]; see [`window`]) of closed flows and DNS outcomes, plus the flows
//! open now: a host fixed at noon reads `ok` again by ten past, and a runner's long poll (one
//! connection open for minutes) keeps its host `ok` while it lasts.
//!
//! # Bounds
//!
//! Every map here is bounded: groups and documented hosts by the catalog (an admin's file), with
//! [`MAX_GROUP_LABELS`] and [`MAX_HOST_WINDOWS`] as a backstop; reasons, outcomes and DNS
//! rejection kinds by the vocabulary; undeclared destinations, which any local process can make
//! up, by the top N by bytes plus `(other)` ([`top`]); the bytes counted per open flow by the
//! correlator's flow bound. Label values from the wire are reduced to host-name characters and
//! bounded in length ([`label_value`]).

pub mod expose;
pub mod serve;
mod top;
mod window;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use prometheus_client::registry::Unit;

use crate::{
    catalog::Catalog,
    pipeline::correlate::{Correlator, FlowEntry, MAX_FLOWS},
    pipeline::dns::normalize_name,
    pipeline::dnsmatch::DnsCheck,
    pipeline::events::{
        CaptureStats, Destination, DestinationClass, DnsObserved, FlowClosed, Observed,
    },
    report::{classify, tally::group_status, vocab::Reason, Status},
};
use expose::{Family, Kind, Snapshot};
pub use serve::{serve, MetricsServer, ServeError, ServeLimits};
pub use top::{label_value, TopDestinations, OTHER};
use window::{Counts, Window, SLOTS};

/// Undeclared destinations with a series of their own, by default.
pub const DEFAULT_TOP_N: usize = 20;
/// The most undeclared destinations that may have a series of their own.
pub const MAX_TOP_N: usize = 500;
/// The status window, by default (seconds).
pub const DEFAULT_WINDOW_S: u64 = 600;
/// The shortest and longest status windows (seconds).
pub const MIN_WINDOW_S: u64 = 60;
pub const MAX_WINDOW_S: u64 = 86_400;
/// Group label values kept; beyond, counts go to [`OTHER_GROUP`] (a backstop: groups come from
/// the catalog).
pub const MAX_GROUP_LABELS: usize = 256;
/// (group, host pattern) windows kept (a backstop: they come from the catalog).
pub const MAX_HOST_WINDOWS: usize = 4096;
/// The `group` label of flows and lookups to names no group documents (on that port).
pub const UNDECLARED: &str = "(undeclared)";
/// The `group` label of flows to addresses no DNS answer named.
pub const UNRESOLVED: &str = "(unresolved)";
/// The `group` label beyond [`MAX_GROUP_LABELS`].
pub const OTHER_GROUP: &str = "(other)";

/// A group's id and status over the status window, with its patterns' statuses.
pub type GroupStatus = (String, Status, Vec<(String, Status)>);

/// Settings of the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Undeclared destinations with a series of their own; the others are `(other)`.
    pub top_n: usize,
    /// The window statuses are judged over, in seconds.
    pub window_s: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            top_n: DEFAULT_TOP_N,
            window_s: DEFAULT_WINDOW_S,
        }
    }
}

impl MetricsConfig {
    /// The settings, checked.
    pub fn validated(self) -> Result<Self, MetricsError> {
        if !(1..=MAX_TOP_N).contains(&self.top_n) {
            return Err(MetricsError::TopN(self.top_n));
        }
        if !(MIN_WINDOW_S..=MAX_WINDOW_S).contains(&self.window_s) {
            return Err(MetricsError::Window(self.window_s));
        }
        Ok(self)
    }
}

/// What the metrics refuse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    #[error("unknown job result {0:?}: use one of ok, blocked, undeclared, slow, failed")]
    UnknownJobResult(String),
    #[error("{0} undeclared destinations with a series of their own: choose 1 to {MAX_TOP_N}")]
    TopN(usize),
    #[error("a status window of {0} s: choose {MIN_WINDOW_S} to {MAX_WINDOW_S} seconds")]
    Window(u64),
}

/// How a job ended, as `observer_jobs_total` counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobResult {
    Ok,
    Blocked,
    Undeclared,
    Slow,
    Failed,
}

impl JobResult {
    pub const ALL: [JobResult; 5] = [
        JobResult::Ok,
        JobResult::Blocked,
        JobResult::Undeclared,
        JobResult::Slow,
        JobResult::Failed,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            JobResult::Ok => "ok",
            JobResult::Blocked => "blocked",
            JobResult::Undeclared => "undeclared",
            JobResult::Slow => "slow",
            JobResult::Failed => "failed",
        }
    }

    /// The result of its word; the error quotes (harmlessly, and at most 64 characters of) what
    /// was given.
    pub fn parse(word: &str) -> Result<Self, MetricsError> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == word)
            .ok_or_else(|| {
                let shown: String = word.chars().take(64).collect();
                MetricsError::UnknownJobResult(crate::sanitize::line(&shown).into_owned())
            })
    }
}

/// The statuses a gauge has a series for, in the order they are written.
const STATUSES: [Status; 4] = [
    Status::Ok,
    Status::Degraded,
    Status::Blocked,
    Status::Unseen,
];

/// What the capture and the correlator dropped or could not read, by the `what` label of
/// `observer_dropped_total`, in the order they are written.
const DROPPED: [&str; 12] = [
    "flows",
    "dns_skipped",
    "dns_malformed",
    "dns_tcp_undecodable",
    "dns_queries",
    "dns_timeouts",
    "queries_judged_early",
    "recent_answers",
    "loopback_queries",
    "host_readings",
    "name_cache",
    "payload_unmatched",
];

/// The correlator's drop counters (those of [`DROPPED`] it keeps), as last seen.
fn correlator_drops(c: &Correlator) -> [(&'static str, u64); 8] {
    let info = c.capture();
    let d = info.dropped;
    let names = c.names().stats();
    [
        ("flows", info.flows_dropped),
        ("dns_queries", c.dns_checks().queries_evicted),
        ("dns_timeouts", d.dns_timeouts),
        ("queries_judged_early", d.queries_judged_early),
        ("recent_answers", d.recent_answers),
        ("loopback_queries", d.loopback_queries),
        ("host_readings", d.host_readings),
        (
            "name_cache",
            names.evicted_addresses + names.evicted_bindings + names.evicted_names,
        ),
    ]
}

/// What grew from `old` to `new` of a counter kept elsewhere; a counter that went down started
/// again from zero (a new capture, a new correlator), so all of it is new.
fn grown(old: u64, new: u64) -> u64 {
    if new >= old {
        new - old
    } else {
        new
    }
}

/// How a flow went: the report's classification of it.
#[derive(Clone, Copy, Debug, Default)]
struct Judgement {
    failure: Option<Reason>,
    success: bool,
    warning: Option<Reason>,
    /// A transfer of it moved below the minimum rate.
    slow: bool,
}

impl Judgement {
    fn of(e: &FlowEntry, c: &Correlator) -> Self {
        let failure = classify::failure(e);
        let success = classify::success(e);
        if !success {
            return Self {
                failure,
                ..Self::default()
            };
        }
        let min_bps = c.limits().min_bps;
        let t = e.transfers.stats();
        let slow = [&t.received, &t.sent]
            .iter()
            .any(|s| s.slowest.as_ref().is_some_and(|x| x.rate_bps < min_bps));
        Self {
            failure,
            success,
            warning: classify::warning(e, c).map(|(r, _)| r),
            slow,
        }
    }

    /// Its weight in a host's window.
    fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        if self.failure.is_some() {
            counts.failures = 1;
        } else if self.success {
            counts.successes = 1;
            counts.warnings = u64::from(self.warning.is_some());
        }
        counts
    }
}

/// The (group, catalog pattern) pairs a name counts for: per group, the most specific pattern
/// that matched (the exact name before a wildcard); only `groups` when given (a flow: the
/// groups of its port), every group that documents the name otherwise (DNS has no port).
fn host_keys(catalog: &Catalog, name: &str, groups: Option<&[String]>) -> Vec<(String, String)> {
    let matches = catalog.matches(name);
    let mut keys: Vec<(String, String)> = Vec::new();
    for m in &matches {
        let wanted = groups.is_none_or(|g| g.contains(&m.group.id));
        if !wanted || keys.iter().any(|(g, _)| *g == m.group.id) {
            continue;
        }
        let best = matches
            .iter()
            .filter(|x| x.group.id == m.group.id)
            .max_by_key(|x| (!x.pattern.is_wildcard(), x.pattern.as_str().len()))
            .map_or(m.pattern, |x| x.pattern);
        keys.push((m.group.id.clone(), best.as_str().to_owned()));
    }
    keys
}

/// The host keys of a flow's destination: documented names only.
fn flow_keys(catalog: &Catalog, d: &Destination) -> Vec<(String, String)> {
    match (&d.name, d.class) {
        (Some(name), DestinationClass::Declared) => host_keys(catalog, name, Some(&d.groups)),
        _ => Vec::new(),
    }
}

/// A flow the correlator did not keep (beyond its flow bound), from its close event: everything
/// but the transfers and a proxy's answer, which only the correlator's entry has.
fn entry_of(ts_ns: u64, closed: &FlowClosed) -> FlowEntry {
    let opened_ns = ts_ns.saturating_sub((closed.duration_ms.max(0.0) * 1e6) as u64);
    FlowEntry {
        flow_id: closed.flow_id,
        process: closed.process.clone(),
        src: closed.src,
        dst: closed.dst,
        destination: closed.destination.clone().unwrap_or_default().into(),
        opened_ns,
        adopted: closed.adopted,
        established_ns: closed.established.then_some(opened_ns),
        closed_ns: Some(ts_ns),
        outcome: Some(closed.outcome),
        closed_by: closed.closed_by,
        error: closed.error.clone(),
        rst_received: closed.rst_received,
        syn_retransmits: closed.syn_retransmits,
        retransmits: closed.retransmits,
        bytes_sent: closed.bytes_sent,
        bytes_received: closed.bytes_received,
        throughput: Default::default(),
        transfers: Default::default(),
        read: (closed.bytes_sent, closed.bytes_received),
        send_times: Vec::new(),
        idle_ms: closed.idle_ms,
        first_sent: None,
        proxy_status: None,
    }
}

/// The metrics of a capture: counters that only grow, and the recent evidence statuses are
/// judged on. See the module documentation.
#[derive(Clone, Debug)]
pub struct Metrics {
    config: MetricsConfig,
    /// Group label values admitted (at most [`MAX_GROUP_LABELS`]).
    groups: BTreeSet<String>,
    /// By (group, outcome).
    flows: BTreeMap<(String, &'static str), u64>,
    /// By (reason code, group).
    failures: BTreeMap<(&'static str, String), u64>,
    warnings: BTreeMap<(&'static str, String), u64>,
    /// By group: sent, received.
    bytes: BTreeMap<String, [u64; 2]>,
    slow: BTreeMap<String, u64>,
    undeclared: TopDestinations,
    /// By rejection code (`dns_unsolicited`, ...).
    dns_rejected: BTreeMap<&'static str, u64>,
    lost_events: u64,
    undecodable_events: u64,
    /// By the `what` label ([`DROPPED`]).
    dropped: BTreeMap<&'static str, u64>,
    /// The capture's totals and the correlator's drop counters as last seen.
    last_stats: CaptureStats,
    last_drops: [(&'static str, u64); 8],
    /// When something was last lost or dropped.
    last_loss_ns: Option<u64>,
    jobs: [u64; JobResult::ALL.len()],
    /// Recent evidence per (group, catalog pattern).
    hosts: HashMap<(String, String), Window>,
    /// Bytes counted so far per open flow: (sent, received).
    counted: HashMap<u64, (u64, u64)>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(MetricsConfig::default())
    }
}

impl Metrics {
    /// Metrics with these settings (see [`MetricsConfig::validated`]; values out of range are
    /// clamped).
    pub fn new(config: MetricsConfig) -> Self {
        let config = MetricsConfig {
            top_n: config.top_n.clamp(1, MAX_TOP_N),
            window_s: config.window_s.clamp(MIN_WINDOW_S, MAX_WINDOW_S),
        };
        Self {
            config,
            groups: BTreeSet::new(),
            flows: BTreeMap::new(),
            failures: BTreeMap::new(),
            warnings: BTreeMap::new(),
            bytes: BTreeMap::new(),
            slow: BTreeMap::new(),
            undeclared: TopDestinations::new(config.top_n),
            dns_rejected: DnsCheck::REJECTIONS.iter().map(|k| (k.code(), 0)).collect(),
            lost_events: 0,
            undecodable_events: 0,
            dropped: DROPPED.iter().map(|w| (*w, 0)).collect(),
            last_stats: CaptureStats::default(),
            last_drops: [("", 0); 8],
            last_loss_ns: None,
            jobs: [0; JobResult::ALL.len()],
            hosts: HashMap::new(),
            counted: HashMap::new(),
        }
    }

    pub fn config(&self) -> MetricsConfig {
        self.config
    }

    fn window_ns(&self) -> u64 {
        self.config.window_s * 1_000_000_000
    }

    fn slot_ns(&self) -> u64 {
        self.window_ns() / SLOTS as u64
    }

    /// Counts a finished job (`ok`, `blocked`, `undeclared`, `slow` or `failed`).
    pub fn job_finished(&mut self, result: &str) -> Result<(), MetricsError> {
        let result = JobResult::parse(result)?;
        if let Some(i) = JobResult::ALL.iter().position(|r| *r == result) {
            self.jobs[i] += 1;
        }
        Ok(())
    }

    /// Takes one observation at `ts_ns`, after `c` has seen it (so flow events carry their
    /// destination and DNS responses their check).
    pub fn observe(&mut self, c: &Correlator, ts_ns: u64, observed: &Observed) {
        match observed {
            Observed::FlowProgress {
                flow_id,
                bytes_sent,
                bytes_received,
                ..
            } => {
                if let Some(e) = c.flow(*flow_id) {
                    self.progress(e, (*bytes_sent, *bytes_received));
                }
            }
            Observed::FlowClosed(closed) => self.closed(c, ts_ns, closed),
            Observed::DnsResponse(d) => self.dns_response(c, ts_ns, d),
            Observed::CaptureStats(stats) => self.capture_stats(ts_ns, stats),
            _ => {}
        }
        for name in c.judged_unanswered() {
            self.dns_failed(c, ts_ns, name, Reason::DnsTimeout);
        }
        let drops = correlator_drops(c);
        for (i, (what, now)) in drops.iter().enumerate() {
            let last = self.last_drops[i].1;
            if *now != last {
                self.note_dropped(what, grown(last, *now), ts_ns);
            }
        }
        self.last_drops = drops;
    }

    fn note_dropped(&mut self, what: &'static str, n: u64, ts_ns: u64) {
        if n > 0 {
            *self.dropped.entry(what).or_default() += n;
            self.last_loss_ns = Some(ts_ns);
        }
    }

    /// The `group` label values of a destination: its groups, or where it stands.
    fn group_labels(&mut self, d: &Destination) -> Vec<String> {
        let mut labels: Vec<String> = match d.class {
            DestinationClass::Declared if !d.groups.is_empty() => {
                d.groups.iter().map(|g| self.group_label(g)).collect()
            }
            DestinationClass::Unresolved => vec![UNRESOLVED.to_owned()],
            _ => vec![UNDECLARED.to_owned()],
        };
        labels.dedup();
        labels
    }

    fn group_label(&mut self, id: &str) -> String {
        let id = label_value(id);
        if self.groups.contains(&id) {
            return id;
        }
        if self.groups.len() < MAX_GROUP_LABELS {
            self.groups.insert(id.clone());
            return id;
        }
        OTHER_GROUP.to_owned()
    }

    /// Bytes moved to a destination.
    fn count_bytes(&mut self, e: &FlowEntry, (sent, received): (u64, u64)) {
        if sent == 0 && received == 0 {
            return;
        }
        for g in self.group_labels(&e.destination) {
            let b = self.bytes.entry(g).or_default();
            b[0] += sent;
            b[1] += received;
        }
        if e.destination.class != DestinationClass::Declared {
            let key = match &e.destination.name {
                Some(name) => label_value(name),
                None => label_value(&e.dst.ip().to_string()),
            };
            self.undeclared.add(&key, sent + received);
        }
    }

    /// A reading of an open flow's counters: the bytes since the last one counted.
    fn progress(&mut self, e: &FlowEntry, totals: (u64, u64)) {
        let before = match self.counted.get(&e.flow_id) {
            Some(b) => *b,
            // Within the correlator's flow bound; beyond, the flow's bytes count at its close.
            None if self.counted.len() >= MAX_FLOWS => return,
            None => (0, 0),
        };
        let now = (before.0.max(totals.0), before.1.max(totals.1));
        self.counted.insert(e.flow_id, now);
        self.count_bytes(e, (now.0 - before.0, now.1 - before.1));
    }

    /// A flow closed: counted once, with the correlator's entry for it when it has one.
    fn closed(&mut self, c: &Correlator, ts_ns: u64, closed: &FlowClosed) {
        let built;
        let e = match c.flow(closed.flow_id) {
            Some(e) => e,
            None => {
                built = entry_of(ts_ns, closed);
                &built
            }
        };
        let groups = self.group_labels(&e.destination);
        for g in &groups {
            *self
                .flows
                .entry((g.clone(), closed.outcome.as_str()))
                .or_default() += 1;
        }
        let before = self.counted.remove(&closed.flow_id).unwrap_or_default();
        let last = (
            closed.bytes_sent.saturating_sub(before.0),
            closed.bytes_received.saturating_sub(before.1),
        );
        self.count_bytes(e, last);
        // A connection to a DNS filter's sinkhole proves nothing about the host (the report's
        // rule); the answer itself was counted as `dns_sinkhole`.
        if c.is_sinkhole(e.dst.ip()) {
            return;
        }
        let judged = Judgement::of(e, c);
        for g in &groups {
            if let Some(r) = judged.failure {
                *self.failures.entry((r.as_str(), g.clone())).or_default() += 1;
            }
            if let Some(r) = judged.warning {
                *self.warnings.entry((r.as_str(), g.clone())).or_default() += 1;
            }
            if judged.slow {
                *self.slow.entry(g.clone()).or_default() += 1;
            }
        }
        let keys = flow_keys(c.catalog(), &e.destination);
        self.add_evidence(c.catalog(), keys, ts_ns, judged.counts());
    }

    /// Adds evidence to the windows of `keys`.
    fn add_evidence(
        &mut self,
        catalog: &Catalog,
        keys: Vec<(String, String)>,
        ts_ns: u64,
        delta: Counts,
    ) {
        let slot_ns = self.slot_ns();
        for key in keys {
            if !self.hosts.contains_key(&key) && self.hosts.len() >= MAX_HOST_WINDOWS {
                // Hosts of a catalog since reloaded go first.
                self.hosts.retain(|(g, p), _| {
                    catalog
                        .groups()
                        .iter()
                        .any(|x| x.id == *g && x.hosts.iter().any(|h| h.as_str() == p))
                });
                if self.hosts.len() >= MAX_HOST_WINDOWS {
                    continue;
                }
            }
            self.hosts
                .entry(key)
                .or_default()
                .add(ts_ns, slot_ns, |c| c.add(&delta));
        }
    }

    /// A DNS response: rejected ones by kind; a matched one's failure code or sinkhole, or its
    /// usable addresses.
    fn dns_response(&mut self, c: &Correlator, ts_ns: u64, d: &DnsObserved) {
        match d.check {
            Some(DnsCheck::Matched) => {}
            Some(kind) => {
                *self.dns_rejected.entry(kind.code()).or_default() += 1;
                return;
            }
            None => return,
        }
        if d.out_of_bailiwick > 0 {
            *self
                .dns_rejected
                .entry(DnsCheck::OutOfBailiwick.code())
                .or_default() += u64::from(d.out_of_bailiwick);
        }
        // A local resolver's answer is relayed to its client, whose own answer counts.
        let relayed = d
            .process
            .as_ref()
            .is_some_and(|p| c.local_resolvers().iter().any(|r| r.pid == p.pid));
        let Some(question) = d.questions.first() else {
            return;
        };
        let name = normalize_name(&question.name);
        if relayed || name.is_empty() {
            return;
        }
        match d.rcode.as_deref() {
            Some("NOERROR") | None => {
                let addresses: Vec<std::net::IpAddr> = d
                    .answers
                    .iter()
                    .filter(|a| {
                        a.rtype == question.rtype && matches!(a.rtype.as_str(), "A" | "AAAA")
                    })
                    .filter_map(|a| a.data.parse().ok())
                    .collect();
                if addresses.is_empty() {
                    return;
                }
                if addresses.iter().all(|a| c.is_sinkhole(*a)) {
                    self.dns_failed(c, ts_ns, &name, Reason::DnsSinkhole);
                } else {
                    let keys = host_keys(c.catalog(), &name, None);
                    let usable = Counts {
                        dns_usable: 1,
                        ..Counts::default()
                    };
                    self.add_evidence(c.catalog(), keys, ts_ns, usable);
                }
            }
            Some(code) => {
                let reason =
                    Reason::from_code(classify::rcode_reason(code)).unwrap_or(Reason::DnsError);
                self.dns_failed(c, ts_ns, &name, reason);
            }
        }
    }

    /// A lookup of `name` failed for `reason`.
    fn dns_failed(&mut self, c: &Correlator, ts_ns: u64, name: &str, reason: Reason) {
        let keys = host_keys(c.catalog(), name, None);
        let mut groups: Vec<String> = keys.iter().map(|(g, _)| self.group_label(g)).collect();
        groups.dedup();
        if groups.is_empty() {
            groups.push(UNDECLARED.to_owned());
        }
        for g in groups {
            *self.failures.entry((reason.as_str(), g)).or_default() += 1;
        }
        let failed = Counts {
            dns_failures: 1,
            ..Counts::default()
        };
        self.add_evidence(c.catalog(), keys, ts_ns, failed);
    }

    /// The capture's totals: what grew since the last ones.
    fn capture_stats(&mut self, ts_ns: u64, s: &CaptureStats) {
        let old = self.last_stats;
        let lost = grown(old.lost_events, s.lost_events);
        let undecodable = grown(old.undecodable_events, s.undecodable_events);
        self.lost_events += lost;
        self.undecodable_events += undecodable;
        if lost + undecodable > 0 {
            self.last_loss_ns = Some(ts_ns);
        }
        self.note_dropped("dns_skipped", grown(old.dns_skipped, s.dns_skipped), ts_ns);
        self.note_dropped(
            "dns_malformed",
            grown(old.malformed_dns, s.malformed_dns),
            ts_ns,
        );
        let tcp = grown(old.dns_tcp_undecodable, s.dns_tcp_undecodable);
        self.note_dropped("dns_tcp_undecodable", tcp, ts_ns);
        let unmatched = grown(old.payload_unmatched, s.payload_unmatched);
        self.note_dropped("payload_unmatched", unmatched, ts_ns);
        self.last_stats = *s;
    }

    /// The recent evidence per (group, pattern) at `now_ns`, with the flows open now.
    fn recent(&self, c: &Correlator, now_ns: u64) -> HashMap<(String, String), Counts> {
        let slot_ns = self.slot_ns();
        let mut counts: HashMap<(String, String), Counts> = self
            .hosts
            .iter()
            .map(|(k, w)| (k.clone(), w.sum(now_ns, slot_ns)))
            .collect();
        for (_, f) in c.open_flows() {
            if c.is_sinkhole(f.dst.ip()) {
                continue;
            }
            let judged = Judgement::of(f, c);
            if judged.failure.is_none() && !judged.success {
                continue;
            }
            for key in flow_keys(c.catalog(), &f.destination) {
                counts.entry(key).or_default().add(&judged.counts());
            }
        }
        counts
    }

    /// Every metric at `now_ns` (wall-clock nanoseconds), in the OpenMetrics text format
    /// ([`expose::classic_text`] turns it into the classic one).
    pub fn render(&self, c: &Correlator, now_ns: u64) -> String {
        expose::openmetrics(self.snapshot(c, now_ns))
    }

    fn snapshot(&self, c: &Correlator, now_ns: u64) -> Snapshot {
        let mut families = self.status_families(c, now_ns);
        families.push(
            Family::new(
                Kind::Gauge,
                "status_window",
                "How far back the status gauges look (the flows open now count too).",
            )
            .unit(Unit::Seconds)
            .single(self.config.window_s),
        );
        families.extend(self.traffic_families());
        families.extend(self.health_families(c, now_ns));
        let mut jobs = Family::new(
            Kind::Counter,
            "jobs",
            "Jobs finished, by result (ok, blocked, undeclared, slow, failed).",
        );
        for (r, n) in JobResult::ALL.iter().zip(self.jobs) {
            jobs.push(&[("result", r.as_str())], n);
        }
        families.push(jobs);
        Snapshot(families)
    }

    /// `observer_group_status` and `observer_host_status`, for every group and pattern of the
    /// catalog.
    /// Each catalog group's status over the status window, with the statuses of its patterns
    /// (what `observer job started --require` gates on).
    pub fn group_statuses(&self, c: &Correlator, now_ns: u64) -> Vec<GroupStatus> {
        let recent = self.recent(c, now_ns);
        c.catalog()
            .groups()
            .iter()
            .map(|g| {
                let members: Vec<(Status, &str)> = g
                    .hosts
                    .iter()
                    .map(|pattern| {
                        let status = recent
                            .get(&(g.id.clone(), pattern.as_str().to_owned()))
                            .map_or(Status::Unseen, Counts::status);
                        (status, pattern.as_str())
                    })
                    .collect();
                (
                    g.id.clone(),
                    group_status(&members),
                    members.iter().map(|(s, p)| ((*p).to_owned(), *s)).collect(),
                )
            })
            .collect()
    }

    fn status_families(&self, c: &Correlator, now_ns: u64) -> Vec<Family> {
        let mut groups = Family::new(
            Kind::Gauge,
            "group_status",
            "1 for the status of each catalog group over the status window (ok, degraded, \
             blocked, unseen), 0 for the others.",
        );
        let mut hosts = Family::new(
            Kind::Gauge,
            "host_status",
            "1 for the status of each documented host (catalog pattern) in each of its groups \
             over the status window, 0 for the others.",
        );
        for (id, status, members) in self.group_statuses(c, now_ns) {
            let group = label_value(&id);
            for (pattern, member) in &members {
                let host = label_value(pattern);
                for s in STATUSES {
                    let labels = [
                        ("host", host.as_str()),
                        ("group", &group),
                        ("status", s.word()),
                    ];
                    hosts.push(&labels, u64::from(s == *member));
                }
            }
            for s in STATUSES {
                let labels = [("group", group.as_str()), ("status", s.word())];
                groups.push(&labels, u64::from(s == status));
            }
        }
        vec![groups, hosts]
    }

    /// Flows, failures, warnings, bytes, slow transfers and undeclared destinations.
    fn traffic_families(&self) -> Vec<Family> {
        let mut flows = Family::new(
            Kind::Counter,
            "flows",
            "TCP flows closed, by group and outcome.",
        );
        for ((group, outcome), n) in &self.flows {
            flows.push(&[("group", group), ("outcome", outcome)], *n);
        }
        let mut failures = Family::new(
            Kind::Counter,
            "failures",
            "Failed attempts (flows and DNS lookups), by reason code and group.",
        );
        for ((reason, group), n) in &self.failures {
            failures.push(&[("reason", reason), ("group", group)], *n);
        }
        let mut warnings = Family::new(
            Kind::Counter,
            "warnings",
            "Flows that worked but not well (slow_throughput, long_poll_cut), by reason and group.",
        );
        for ((reason, group), n) in &self.warnings {
            warnings.push(&[("reason", reason), ("group", group)], *n);
        }
        let mut bytes = Family::new(
            Kind::Counter,
            "bytes",
            "Payload bytes of TCP flows, by group and direction (sent, received).",
        );
        for (group, [sent, received]) in &self.bytes {
            bytes.push(&[("group", group), ("direction", "sent")], *sent);
            bytes.push(&[("group", group), ("direction", "received")], *received);
        }
        let mut slow = Family::new(
            Kind::Counter,
            "slow_transfers",
            "Flows with a transfer below the minimum rate, by group.",
        );
        for (group, n) in &self.slow {
            slow.push(&[("group", group)], *n);
        }
        let mut undeclared = Family::new(
            Kind::Counter,
            "undeclared",
            "Payload bytes to destinations no group documents: the top destinations by bytes, \
             the rest in (other).",
        )
        .unit(Unit::Bytes);
        for (destination, n) in self.undeclared.series() {
            undeclared.push(&[("destination", destination)], n);
        }
        vec![flows, failures, warnings, bytes, slow, undeclared]
    }

    /// DNS rejections, lost and undecodable events, probes, drops and completeness.
    fn health_families(&self, c: &Correlator, now_ns: u64) -> Vec<Family> {
        let mut rejected = Family::new(
            Kind::Counter,
            "dns_rejected",
            "DNS responses that named nothing, by kind (unsolicited, mismatched, wrong_server \
             and out_of_bailiwick records are signs of forgery).",
        );
        for kind in DnsCheck::REJECTIONS {
            let n = self.dns_rejected.get(kind.code()).copied().unwrap_or(0);
            rejected.push(&[("kind", kind.code())], n);
        }
        let probes = &c.capture().probes;
        let attached = probes.iter().filter(|p| p.attached).count() as u64;
        let mut probe_family = Family::new(
            Kind::Gauge,
            "capture_probes",
            "eBPF programs of the capture, by state (attached, failed).",
        );
        probe_family.push(&[("state", "attached")], attached);
        probe_family.push(&[("state", "failed")], probes.len() as u64 - attached);
        let mut dropped = Family::new(
            Kind::Counter,
            "dropped",
            "What the capture could not read or the correlator's bounds dropped, by kind.",
        );
        for what in DROPPED {
            dropped.push(
                &[("what", what)],
                self.dropped.get(what).copied().unwrap_or(0),
            );
        }
        let quiet = self
            .last_loss_ns
            .is_none_or(|t| now_ns.saturating_sub(t) >= self.window_ns());
        let complete = !probes.is_empty() && attached == probes.len() as u64 && quiet;
        vec![
            rejected,
            Family::new(
                Kind::Counter,
                "capture_lost_events",
                "Kernel events lost (ring buffer full).",
            )
            .single(self.lost_events),
            Family::new(
                Kind::Counter,
                "capture_undecodable_events",
                "Kernel events user space could not decode.",
            )
            .single(self.undecodable_events),
            probe_family,
            dropped,
            Family::new(
                Kind::Gauge,
                "capture_complete",
                "1 when the capture runs with every probe attached and nothing was lost or \
                 dropped within the status window.",
            )
            .single(u64::from(complete)),
        ]
    }
}

#[cfg(test)]
mod tests;
