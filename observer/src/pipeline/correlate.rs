//! Correlation: which documented host (or undeclared destination) each flow is, from the DNS
//! answers seen and the host-group catalog.
//!
//! The correlator is fed the same observations `observer watch --json` prints, with their
//! wall-clock timestamps, so a live capture and an offline replay of its event log
//! (`observer report EVENTS`) reach the same state and the same report.
//!
//! # Bounds
//!
//! Every table here grows with input from the wire (DNS names) or from any local process
//! (connections), so each is bounded by a count and by approximate heap bytes (strings counted by
//! their length: names from the wire are at most 253 characters, but up to about 1,000 after
//! escaping, and an event log can hold anything). What a bound drops is counted in [`Dropped`]
//! and makes the report incomplete, saying what and how much. docs/architecture.md ("What is
//! bounded") lists every bound with its worst-case size:
//! - unanswered names ([`DnsTimeouts`]): [`MAX_TIMEOUT_NAMES`] names and [`MAX_TIMEOUT_BYTES`];
//!   names the catalog documents get [`TIMEOUT_DOCUMENTED_RESERVE`] more, so that a flood of
//!   junk names cannot hide an essential host's timeouts;
//! - queries waiting for their answer: [`MAX_PENDING_QUERIES`] and [`MAX_PENDING_BYTES`]; past
//!   them the oldest are judged early;
//! - latest answer per (name, type), and latest loopback query per name: [`MAX_RECENT`] entries
//!   and [`MAX_RECENT_BYTES`] each, entries past their window swept first;
//! - host rate series: [`MAX_HOST_SERIES_BYTES`] (`watch` forgets hosts idle for
//!   [`SERIES_IDLE_NS`] first); group series are one per catalog group;
//! - flows kept for the report: [`MAX_FLOWS`];
//! - workloads of cgroup ids (`cgroup_seen`): [`MAX_WORKLOADS`] and [`MAX_WORKLOAD_BYTES`]; a
//!   cgroup beyond them is counted in [`Dropped::workloads`] and its flows show no workload.
//! - destinations kept for the next flows to share: 256 slots, each at most
//!   `MAX_SHARED_DESTINATION_BYTES` of names (a cache: what it forgets is only not shared).

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use serde::{Deserialize, Serialize};

use crate::{
    capture::{cgroups::Workload, record::Process, ProbeStatus},
    catalog::Catalog,
    pipeline::dnsmatch::{DnsCheck, DnsCheckStats, QueryTable, Rejections},
    pipeline::events::{
        CaptureStats, ClosedBy, Destination, DestinationClass, NamedBy, Observed, Outcome,
    },
    pipeline::hello::{FirstReceived, FirstSent},
    pipeline::names::{NameCache, Resolution},
    pipeline::throughput::{FlowTransfers, Reading, Series, Throughput, DEFAULT_MIN_BPS},
    proxy::discover::WatchedProxy,
};

/// Flows kept for the report; later flows are counted, not kept.
pub const MAX_FLOWS: usize = 200_000;
/// A DNS query without a response after this long (resolver retries included) timed out.
pub const DNS_TIMEOUT_NS: u64 = 3_000_000_000;
/// Queries waiting for their response; beyond this the oldest are judged early.
pub const MAX_PENDING_QUERIES: usize = 65_536;
/// Approximate bytes the waiting queries may take; beyond this the oldest are judged early.
pub const MAX_PENDING_BYTES: usize = 8 << 20;
/// Names with unanswered queries kept for the report; queries for other names are counted only.
pub const MAX_TIMEOUT_NAMES: usize = 65_536;
/// Approximate bytes the unanswered names may take.
pub const MAX_TIMEOUT_BYTES: usize = 8 << 20;
/// Names the catalog documents kept beyond [`MAX_TIMEOUT_NAMES`] and [`MAX_TIMEOUT_BYTES`].
pub const TIMEOUT_DOCUMENTED_RESERVE: usize = 4096;
/// Record types counted per unanswered name; queries of other types count in the total only.
const MAX_TIMEOUT_TYPES: usize = 8;
/// Entries of the latest-answer and loopback-query tables, each.
pub const MAX_RECENT: usize = 65_536;
/// Approximate bytes of the latest-answer and loopback-query tables, each.
pub const MAX_RECENT_BYTES: usize = 8 << 20;
/// Approximate bytes of the host rate series (each at most `throughput::MAX_SAMPLES` buckets).
pub const MAX_HOST_SERIES_BYTES: usize = 16 << 20;
/// `watch` forgets the rate series of a host idle this long when the series are full.
pub const SERIES_IDLE_NS: u64 = 60_000_000_000;
/// What one entry costs besides its strings (struct, map slot, allocator rounding).
const ENTRY_OVERHEAD: usize = 128;
/// What one bucket of a rate series costs (key, value, tree node share).
const BUCKET_BYTES: usize = 64;
/// Local resolvers remembered (systemd-resolved, dnsmasq, dockerd's embedded DNS, ...).
const MAX_LOCAL_RESOLVERS: usize = 64;
/// Adopted flows still waiting for a DNS answer that names their address.
const MAX_UNNAMED_ADOPTED: usize = 4096;
/// cgroups whose workload is kept (`cgroup_seen`).
pub const MAX_WORKLOADS: usize = 65_536;
/// Approximate bytes of the workloads kept (paths are at most 1,024 characters, but an event
/// log can hold anything).
pub const MAX_WORKLOAD_BYTES: usize = 8 << 20;

/// A DNS query waiting for its response.
#[derive(Clone, Debug)]
struct PendingQuery {
    ts_ns: u64,
    name: String,
    rtype: String,
    process: Option<Process>,
}

impl PendingQuery {
    fn cost(&self) -> usize {
        ENTRY_OVERHEAD
            + self.name.len()
            + self.rtype.len()
            + self.process.as_ref().map_or(0, |p| p.comm.len())
    }
}

/// What the correlator's bounds dropped (see the module documentation); every count non-zero
/// makes the report incomplete.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dropped {
    /// Unanswered queries for names beyond the bound of unanswered names (not reported).
    #[serde(skip_serializing_if = "is_zero")]
    pub dns_timeouts: u64,
    /// Queries judged before [`DNS_TIMEOUT_NS`] because too many were waiting.
    #[serde(skip_serializing_if = "is_zero")]
    pub queries_judged_early: u64,
    /// Answers not remembered for retries on another socket (full table).
    #[serde(skip_serializing_if = "is_zero")]
    pub recent_answers: u64,
    /// Queries to loopback resolvers not remembered for telling forwards apart (full table).
    #[serde(skip_serializing_if = "is_zero")]
    pub loopback_queries: u64,
    /// Byte readings left out of host rate series (full series).
    #[serde(skip_serializing_if = "is_zero")]
    pub host_readings: u64,
    /// Undeclared names only DNS concerned beyond the report's `MAX_DNS_ONLY_UNDECLARED`:
    /// counted, not listed (set by the report builder).
    #[serde(skip_serializing_if = "is_zero")]
    pub dns_only_undeclared: u64,
    /// cgroups whose workload was not kept beyond [`MAX_WORKLOADS`] (or
    /// [`MAX_WORKLOAD_BYTES`]): their flows show no workload.
    #[serde(skip_serializing_if = "is_zero")]
    pub workloads: u64,
}

#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if"
)]
fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Dropped {
    /// Nothing was dropped.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A table of (key → latest time) whose entries matter for `window_ns`, bounded in entries
/// ([`MAX_RECENT`]) and bytes ([`MAX_RECENT_BYTES`]): when full, entries past their window are
/// swept (at most four times per window, so a flood does not sweep on every insert), and a new
/// key that still does not fit is not kept.
#[derive(Clone, Debug)]
struct Recent<K, V> {
    map: HashMap<K, V>,
    bytes: usize,
    swept_ns: u64,
    window_ns: u64,
    /// The bytes an entry costs, and when it was last seen.
    cost: fn(&K) -> usize,
    at: fn(&V) -> u64,
}

impl<K: std::hash::Hash + Eq, V> Recent<K, V> {
    fn new(window_ns: u64, cost: fn(&K) -> usize, at: fn(&V) -> u64) -> Self {
        Self {
            map: HashMap::new(),
            bytes: 0,
            swept_ns: 0,
            window_ns,
            cost,
            at,
        }
    }

    fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.map.get(key)
    }

    /// Inserts or replaces `key` at `now_ns`; returns false when it was not kept.
    fn insert(&mut self, key: K, value: V, now_ns: u64) -> bool {
        if let Some(old) = self.map.get_mut(&key) {
            *old = value;
            return true;
        }
        let cost = (self.cost)(&key);
        let full = |t: &Self| t.map.len() >= MAX_RECENT || t.bytes + cost > MAX_RECENT_BYTES;
        if full(self) && now_ns >= self.swept_ns.saturating_add(self.window_ns / 4) {
            self.swept_ns = now_ns;
            let horizon = now_ns.saturating_sub(self.window_ns);
            let at = self.at;
            self.map.retain(|_, v| at(v) >= horizon);
            self.bytes = self.map.keys().map(self.cost).sum();
        }
        if full(self) {
            return false;
        }
        self.bytes += cost;
        self.map.insert(key, value);
        true
    }
}

fn answered_cost((name, rtype): &(String, String)) -> usize {
    ENTRY_OVERHEAD + name.len() + rtype.len()
}

#[allow(clippy::ptr_arg, reason = "the table's key type: a `fn(&K)`")]
fn ask_cost(name: &String) -> usize {
    ENTRY_OVERHEAD + name.len()
}

/// A host's rate series, with the bytes it is charged for.
#[derive(Clone, Debug, Default)]
struct HostSeries {
    series: Series,
    /// Readings added, up to `throughput::MAX_SAMPLES` (an upper bound of its buckets).
    readings: usize,
    last_ns: u64,
}

impl HostSeries {
    fn cost(key: &str, readings: usize) -> usize {
        ENTRY_OVERHEAD + key.len() + readings * BUCKET_BYTES
    }
}

/// DNS queries that were never answered, per name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsTimeouts {
    pub count: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    pub process: Option<Process>,
    /// The unanswered queries per record type (`A`, `AAAA`, ...).
    pub by_type: Vec<(String, u64)>,
}

/// Everything known about one flow.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowEntry {
    pub flow_id: u64,
    pub process: Process,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// Shared with the flows before it that went to the same destination (a storm's flows all
    /// do): see [`Correlator::shared`].
    pub destination: Arc<Destination>,
    pub opened_ns: u64,
    /// Connected before the capture: `opened_ns` is when it was first seen moving payload.
    pub adopted: bool,
    pub established_ns: Option<u64>,
    pub closed_ns: Option<u64>,
    pub outcome: Option<Outcome>,
    pub closed_by: Option<ClosedBy>,
    pub error: Option<String>,
    pub rst_received: bool,
    pub syn_retransmits: u32,
    pub retransmits: u32,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Active-rate samples of both directions.
    pub throughput: Throughput,
    /// Transfers of both directions: what `slow_throughput` is judged on.
    pub transfers: FlowTransfers,
    /// Counters at the last reading, to turn totals into intervals.
    pub read: (u64, u64),
    /// Readings in which the process sent something (its requests), most recent last.
    pub send_times: Vec<u64>,
    /// Time from the last payload to the close.
    pub idle_ms: Option<f64>,
    /// What the client sent first (TLS hello, CONNECT, HTTP request), when the kernel copied it.
    pub first_sent: Option<FirstSent>,
    /// The status line a proxy answered with (code, reason), for flows to a proxy.
    pub proxy_status: Option<(u16, String)>,
}

/// The timing of one reading: its interval, and the time from each direction's last byte to it.
#[derive(Clone, Copy, Debug)]
struct Idle {
    interval_ns: u64,
    sent_ms: Option<f64>,
    received_ms: Option<f64>,
}

/// Milliseconds from an event (never negative, never beyond u64) to nanoseconds.
fn ms_to_ns(ms: f64) -> u64 {
    (ms.max(0.0) * 1e6) as u64
}

/// Send times kept per flow (for the long-poll cadence).
const MAX_SEND_TIMES: usize = 512;

/// The key of a destination's host and group rate series: its name, or its address.
pub fn series_key(destination: &Destination, dst: SocketAddr) -> String {
    destination
        .name
        .clone()
        .filter(|_| destination.named_by != Some(NamedBy::Sni))
        .unwrap_or_else(|| destination.target(dst).ip().to_string())
}

/// What the capture said about itself.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CaptureInfo {
    pub started_ns: Option<u64>,
    pub ended_ns: Option<u64>,
    pub ports: Vec<u16>,
    pub all_ports: bool,
    pub probes: Vec<ProbeStatus>,
    /// Where each need's data came from (capture_started's `sources`).
    pub sources: Vec<crate::capture::kernel_caps::DataSource>,
    pub stats: CaptureStats,
    /// Flows beyond `MAX_FLOWS`, counted but not kept.
    pub flows_dropped: u64,
    /// Event-log lines that could not be read (offline reports only).
    pub unreadable_lines: u64,
    /// What the bounds of the correlator's tables dropped.
    pub dropped: Dropped,
    /// HTTP proxies watched (capture_started's `proxies`).
    pub proxies: Vec<WatchedProxy>,
}

impl CaptureInfo {
    /// The byte counts are the kernel's TCP statistics polled through sock_diag (kernels
    /// without the length tracepoints): bytes sent are bytes the peer acknowledged.
    pub fn bytes_polled(&self) -> bool {
        self.sources
            .iter()
            .any(|s| s.need == "bytes" && s.source == "sock_diag_poll")
    }
}

/// The correlation state of one capture.
pub struct Correlator {
    catalog: Catalog,
    names: NameCache,
    flows: Vec<FlowEntry>,
    index: HashMap<u64, usize>,
    capture: CaptureInfo,
    /// Queries by (socket cookie, DNS id), oldest first by insertion.
    pending: HashMap<(u64, u16), PendingQuery>,
    pending_order: std::collections::VecDeque<(u64, u16)>,
    /// Approximate bytes of `pending`.
    pending_bytes: usize,
    /// Every query seen, to bind each response to its question.
    queries: QueryTable,
    /// Responses that named nothing, and what they claimed.
    rejections: Rejections,
    /// Latest response time per (name, record type), to forgive a query answered on another
    /// socket (retries).
    answered: Recent<(String, String), u64>,
    timeouts: std::collections::BTreeMap<String, DnsTimeouts>,
    /// Approximate bytes of `timeouts`, and the documented names kept beyond its bound.
    timeout_bytes: usize,
    timeout_reserve_used: usize,
    /// Latest query per name sent to a resolver on a loopback address: when, by which pid, to
    /// which server.
    local_asks: Recent<String, (u64, u32, SocketAddr)>,
    /// Processes seen forwarding their clients' queries (see [`Correlator::local_resolvers`]).
    local_resolvers: Vec<Process>,
    /// Adopted flows not named yet: their DNS answer came before the capture, so a later answer
    /// for their address names them.
    unnamed_adopted: Vec<u64>,
    sinkholes: Vec<std::net::IpAddr>,
    /// Bytes per reading instant, per host (name, or address when unresolved) and per group.
    host_series: HashMap<String, HostSeries>,
    /// Approximate bytes of `host_series`, and their bound ([`MAX_HOST_SERIES_BYTES`]).
    host_series_bytes: usize,
    host_series_budget: usize,
    group_series: HashMap<String, Series>,
    limits: Limits,
    /// Drop each flow when it closes (`watch` needs only the open ones; reports need all).
    forget_closed: bool,
    /// Positions (in `flows`) of the flows not closed yet.
    open: std::collections::BTreeSet<usize>,
    /// Positions of the closed flows, in the order they closed (not kept when forgetting them).
    closed_journal: Vec<usize>,
    /// Times a flow changed after it had closed (a late reading, a second close, a late name).
    settled_changes: u64,
    /// The flow forgotten last, kept until the next one is: whoever counts each flow as it
    /// closes (`metrics`) reads it after the close through [`Correlator::flow`].
    forgotten: Option<FlowEntry>,
    /// Names of the queries the last observation judged unanswered (see
    /// [`Correlator::judged_unanswered`]).
    judged_unanswered: Vec<String>,
    /// What each cgroup id seen is (`cgroup_seen`), and the approximate bytes of it.
    workloads: std::collections::BTreeMap<u64, Workload>,
    workload_bytes: usize,
    /// Destinations given to flows lately, for the next flows to share ([`Correlator::shared`]).
    destinations: Vec<Option<Arc<Destination>>>,
}

/// Slots of [`Correlator::shared`]'s cache.
const DESTINATION_SLOTS: usize = 256;
/// The text of a destination that [`Correlator::shared`] keeps for the flows after it.
const MAX_SHARED_DESTINATION_BYTES: usize = 2048;

/// Thresholds of the throughput and long-poll judgements.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// The minimum rate a transfer must reach, in bits per second (70 kbit/s).
    pub min_bps: f64,
    /// How long the runner's long poll waits for an answer (50 s).
    pub long_poll_ns: u64,
    /// Flows kept for the report ([`MAX_FLOWS`]); the others are counted.
    pub max_flows: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            min_bps: DEFAULT_MIN_BPS,
            long_poll_ns: 50_000_000_000,
            max_flows: MAX_FLOWS,
        }
    }
}

impl Correlator {
    pub fn new(catalog: Catalog) -> Self {
        Self {
            catalog,
            names: NameCache::default(),
            flows: Vec::new(),
            index: HashMap::new(),
            capture: CaptureInfo::default(),
            pending: HashMap::new(),
            pending_order: std::collections::VecDeque::new(),
            pending_bytes: 0,
            queries: QueryTable::default(),
            rejections: Rejections::default(),
            answered: Recent::new(2 * DNS_TIMEOUT_NS, answered_cost, |t| *t),
            timeouts: std::collections::BTreeMap::new(),
            timeout_bytes: 0,
            timeout_reserve_used: 0,
            local_asks: Recent::new(DNS_TIMEOUT_NS, ask_cost, |&(at, ..)| at),
            local_resolvers: Vec::new(),
            unnamed_adopted: Vec::new(),
            sinkholes: Vec::new(),
            host_series: HashMap::new(),
            host_series_bytes: 0,
            host_series_budget: MAX_HOST_SERIES_BYTES,
            group_series: HashMap::new(),
            limits: Limits::default(),
            forget_closed: false,
            open: std::collections::BTreeSet::new(),
            closed_journal: Vec::new(),
            settled_changes: 0,
            forgotten: None,
            judged_unanswered: Vec::new(),
            workloads: std::collections::BTreeMap::new(),
            workload_bytes: 0,
            destinations: vec![None; DESTINATION_SLOTS],
        }
    }

    /// `destination`, shared with the flows before it that had an equal one. A storm's flows go
    /// to a few destinations: each flow holds a pointer, not its own copy of the names, chain
    /// and groups (some 500 bytes a flow). The cache holds a slot per name (a collision only
    /// replaces the slot) and only destinations of at most [`MAX_SHARED_DESTINATION_BYTES`]
    /// (a longer one is the flow's own), so it holds at most 256 × 2 KiB however long the
    /// names a resolver gives.
    fn shared(&mut self, destination: Destination) -> Arc<Destination> {
        if destination.text_bytes() > MAX_SHARED_DESTINATION_BYTES {
            return Arc::new(destination);
        }
        let key = destination.name.as_deref().unwrap_or("");
        let hash = crate::hash::fnv1a(key.as_bytes());
        let slot = &mut self.destinations[(hash % DESTINATION_SLOTS as u64) as usize];
        match slot {
            Some(kept) if **kept == destination => kept.clone(),
            _ => {
                let fresh = Arc::new(destination);
                *slot = Some(fresh.clone());
                fresh
            }
        }
    }

    /// Forget each flow once it has closed and been accounted for in the rate series: memory
    /// then follows the open flows, not the history (for `observer watch`, which prints every
    /// flow as it goes and builds no report).
    pub fn forgetting_closed_flows(mut self) -> Self {
        self.forget_closed = true;
        self
    }

    fn forget(&mut self, flow_id: u64) {
        let Some(i) = self.index.remove(&flow_id) else {
            return;
        };
        let last = self.flows.len() - 1;
        self.forgotten = Some(self.flows.swap_remove(i));
        self.open.remove(&i);
        if let Some(moved) = self.flows.get(i) {
            self.index.insert(moved.flow_id, i);
            if self.open.remove(&last) {
                self.open.insert(i);
            }
        }
    }

    /// Throughput and long-poll thresholds.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Rate series of a host (its name, or its address when unresolved).
    pub fn host_series(&self, key: &str) -> Option<&Series> {
        self.host_series.get(key).map(|h| &h.series)
    }

    /// Rate series of a catalog group.
    pub fn group_series(&self, id: &str) -> Option<&Series> {
        self.group_series.get(id)
    }

    /// Adds one reading of flow `i`'s counters: totals `sent`/`received` at `ts_ns`, after
    /// `interval_ns`, with the time since the last byte of each direction when known.
    fn read_counters(&mut self, i: usize, ts_ns: u64, totals: (u64, u64), idle: Idle) {
        let (sent, received) = totals;
        let interval_ns = idle.interval_ns;
        let long_poll_ns = self.limits.long_poll_ns;
        let sent_acked = self.capture.bytes_polled();
        let e = &mut self.flows[i];
        let ds = sent.saturating_sub(e.read.0);
        let dr = received.saturating_sub(e.read.1);
        e.read = (e.read.0.max(sent), e.read.1.max(received));
        e.bytes_sent = e.bytes_sent.max(sent);
        e.bytes_received = e.bytes_received.max(received);
        if ds == 0 && dr == 0 {
            return;
        }
        e.throughput.sent.add(ds, interval_ns);
        e.throughput.received.add(dr, interval_ns);
        e.transfers.read(
            &Reading {
                ts_ns,
                interval_ns,
                sent: ds,
                received: dr,
                sent_idle_ns: idle.sent_ms.map(ms_to_ns),
                received_idle_ns: idle.received_ms.map(ms_to_ns),
                sent_acked,
            },
            long_poll_ns,
        );
        if ds > 0 {
            if e.send_times.len() == MAX_SEND_TIMES {
                e.send_times.remove(0);
            }
            e.send_times.push(ts_ns);
        }
        let key = series_key(&e.destination, e.dst);
        let groups = e.destination.groups.clone();
        self.add_host_reading(key, ts_ns, (ds, dr), interval_ns);
        for g in &groups {
            self.group_series
                .entry(g.clone())
                .or_default()
                .add(ts_ns, ds, dr, interval_ns);
        }
    }

    /// Adds a reading to the rate series of host `key`, within [`MAX_HOST_SERIES_BYTES`]: when
    /// full, `watch` first forgets the hosts idle for [`SERIES_IDLE_NS`]; a reading that still
    /// does not fit is counted in [`Dropped::host_readings`].
    fn add_host_reading(&mut self, key: String, ts_ns: u64, moved: (u64, u64), interval_ns: u64) {
        let (readings, grows) = match self.host_series.get(&key) {
            Some(h) => (
                h.readings,
                h.readings < crate::pipeline::throughput::MAX_SAMPLES,
            ),
            None => (0, true),
        };
        let cost = if !grows {
            0
        } else if readings == 0 {
            HostSeries::cost(&key, 1)
        } else {
            BUCKET_BYTES
        };
        let budget = self.host_series_budget;
        if cost > 0 && self.host_series_bytes + cost > budget && self.forget_closed {
            let horizon = ts_ns.saturating_sub(SERIES_IDLE_NS);
            let mut freed = 0;
            self.host_series.retain(|k, h| {
                let keep = h.last_ns >= horizon;
                if !keep {
                    freed += HostSeries::cost(k, h.readings);
                }
                keep
            });
            self.host_series_bytes = self.host_series_bytes.saturating_sub(freed);
        }
        if cost > 0 && self.host_series_bytes + cost > budget {
            self.capture.dropped.host_readings += 1;
            return;
        }
        self.host_series_bytes += cost;
        let h = self.host_series.entry(key).or_default();
        if grows {
            h.readings += 1;
        }
        h.last_ns = h.last_ns.max(ts_ns);
        h.series.add(ts_ns, moved.0, moved.1, interval_ns);
    }

    /// Addresses that DNS filters answer instead of the real one (`--sinkhole`), besides
    /// 0.0.0.0, :: and 127.0.0.0/8.
    pub fn with_sinkholes(mut self, sinkholes: Vec<std::net::IpAddr>) -> Self {
        self.names.set_sinkholes(sinkholes.clone());
        self.sinkholes = sinkholes;
        self
    }

    /// Whether an answer is a DNS filter's sinkhole rather than a real address.
    pub fn is_sinkhole(&self, addr: std::net::IpAddr) -> bool {
        crate::pipeline::names::is_sinkhole(addr, &self.sinkholes)
    }

    /// Local resolvers: processes that, within `DNS_TIMEOUT_NS` of another process asking a
    /// resolver on a loopback address for a name, asked for the same name themselves (a stub
    /// such as systemd-resolved on 127.0.0.53 forwarding upstream). Their queries and answers are
    /// on behalf of their clients, so they are not counted as attempts of their own: a name is
    /// blocked or timed out for the client that asked.
    pub fn local_resolvers(&self) -> &[Process] {
        &self.local_resolvers
    }

    fn is_local_resolver(&self, process: &Process) -> bool {
        self.local_resolvers.iter().any(|r| r.pid == process.pid)
    }

    /// Notes a query of `process` for `name` to `server`; returns whether it is a local
    /// resolver's forward of a client's query.
    fn note_query(
        &mut self,
        ts_ns: u64,
        name: &str,
        server: SocketAddr,
        process: Option<&Process>,
    ) -> bool {
        let Some(process) = process else {
            return false;
        };
        // Not another client of the same resolver: a query onwards, to another server.
        let forwards = self
            .local_asks
            .get(name)
            .is_some_and(|&(at, client, asked)| {
                client != process.pid
                    && asked != server
                    && ts_ns.saturating_sub(at) <= DNS_TIMEOUT_NS
            });
        if forwards
            && !self.is_local_resolver(process)
            && self.local_resolvers.len() < MAX_LOCAL_RESOLVERS
        {
            self.local_resolvers.push(process.clone());
        }
        if server.ip().to_canonical().is_loopback() {
            let kept = self
                .local_asks
                .insert(name.to_owned(), (ts_ns, process.pid, server), ts_ns);
            if !kept {
                self.capture.dropped.loopback_queries += 1;
            }
        }
        forwards || self.is_local_resolver(process)
    }

    /// DNS queries never answered, per name, as judged at the last observation.
    pub fn dns_timeouts(&self) -> &std::collections::BTreeMap<String, DnsTimeouts> {
        &self.timeouts
    }

    /// Judges the queries still waiting at the end of the capture: those older than
    /// `DNS_TIMEOUT_NS` timed out, younger ones are left unjudged.
    pub fn finish(&mut self) {
        self.clear_judged();
        if let Some(end) = self.capture.ended_ns {
            self.expire_queries(end);
        }
    }

    fn expire_queries(&mut self, now_ns: u64) {
        while let Some(key) = self.pending_order.front().copied() {
            let Some(query) = self.pending.get(&key) else {
                self.pending_order.pop_front();
                continue;
            };
            let overfull =
                self.pending.len() > MAX_PENDING_QUERIES || self.pending_bytes > MAX_PENDING_BYTES;
            let due = now_ns.saturating_sub(query.ts_ns) >= DNS_TIMEOUT_NS;
            if !overfull && !due {
                break;
            }
            self.pending_order.pop_front();
            let Some(query) = self.pending.remove(&key) else {
                continue;
            };
            self.pending_bytes = self.pending_bytes.saturating_sub(query.cost());
            if !due {
                self.capture.dropped.queries_judged_early += 1;
            }
            let retried_ok = self
                .answered
                .get(&(query.name.clone(), query.rtype.clone()))
                .is_some_and(|&t| t >= query.ts_ns);
            if !retried_ok {
                self.judged_unanswered.push(query.name.clone());
                self.note_timeout(query);
            }
        }
    }

    /// Counts an unanswered query in its name's [`DnsTimeouts`], within the bounds.
    fn note_timeout(&mut self, query: PendingQuery) {
        let cost = |t: &DnsTimeouts, name: &str| {
            ENTRY_OVERHEAD
                + name.len()
                + t.process.as_ref().map_or(0, |p| p.comm.len())
                + t.by_type.iter().map(|(ty, _)| 32 + ty.len()).sum::<usize>()
        };
        let before = match self.timeouts.get(&query.name) {
            Some(t) => cost(t, &query.name),
            None => {
                let fresh = ENTRY_OVERHEAD
                    + query.name.len()
                    + query.process.as_ref().map_or(0, |p| p.comm.len())
                    + 32
                    + query.rtype.len();
                let fits = self.timeouts.len() < MAX_TIMEOUT_NAMES
                    && self.timeout_bytes + fresh <= MAX_TIMEOUT_BYTES;
                if !fits {
                    let documented = !self.catalog.matches(&query.name).is_empty();
                    if documented && self.timeout_reserve_used < TIMEOUT_DOCUMENTED_RESERVE {
                        self.timeout_reserve_used += 1;
                    } else {
                        self.capture.dropped.dns_timeouts += 1;
                        return;
                    }
                }
                0
            }
        };
        let t = self
            .timeouts
            .entry(query.name.clone())
            .or_insert(DnsTimeouts {
                first_ns: query.ts_ns,
                ..DnsTimeouts::default()
            });
        t.count += 1;
        match t.by_type.iter().position(|(ty, _)| *ty == query.rtype) {
            Some(i) => t.by_type[i].1 += 1,
            None if t.by_type.len() < MAX_TIMEOUT_TYPES => t.by_type.push((query.rtype, 1)),
            None => {}
        }
        t.first_ns = t.first_ns.min(query.ts_ns);
        t.last_ns = t.last_ns.max(query.ts_ns);
        if query.process.is_some() {
            t.process = query.process;
        }
        let after = cost(t, &query.name);
        self.timeout_bytes = (self.timeout_bytes + after).saturating_sub(before);
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn names(&self) -> &NameCache {
        &self.names
    }

    pub fn flows(&self) -> &[FlowEntry] {
        &self.flows
    }

    /// The flow `flow_id`: a kept one, or the one forgotten last (a flow that just closed, when
    /// closed flows are forgotten), so that an observer of the close can still classify it.
    pub fn flow(&self, flow_id: u64) -> Option<&FlowEntry> {
        match self.index.get(&flow_id) {
            Some(&i) => self.flows.get(i),
            None => self.forgotten.as_ref().filter(|e| e.flow_id == flow_id),
        }
    }

    /// The names of the DNS queries the last observation (or [`Correlator::finish`]) judged
    /// unanswered, one per query, whether or not the bounds of [`Correlator::dns_timeouts`] kept
    /// them: what a consumer that counts as it goes (`metrics`) adds, since the table itself only
    /// grows until its bound.
    pub fn judged_unanswered(&self) -> &[String] {
        &self.judged_unanswered
    }

    /// Empties [`Correlator::judged_unanswered`] before an observation, giving back the memory
    /// of a burst.
    fn clear_judged(&mut self) {
        self.judged_unanswered.clear();
        self.judged_unanswered.shrink_to(64);
    }

    /// The flows not closed yet, with their positions in [`Correlator::flows`], in the order
    /// they opened.
    pub fn open_flows(&self) -> impl Iterator<Item = (usize, &FlowEntry)> {
        self.open.iter().map(|&i| (i, &self.flows[i]))
    }

    /// Positions in [`Correlator::flows`] of the closed flows, in the order they closed: a live
    /// view folds the ones past its cursor and never reads a closed flow twice. Empty when
    /// closed flows are forgotten.
    pub fn closed_journal(&self) -> &[usize] {
        &self.closed_journal
    }

    /// How many times a flow changed after it had closed (rare: a reading or a name that came
    /// late). A view that folded closed flows once folds them again when this moves.
    pub fn settled_changes(&self) -> u64 {
        self.settled_changes
    }

    /// Notes an event about `flow_id`: a change to a settled flow when it had closed.
    fn touch(&mut self, flow_id: u64) {
        if let Some(&i) = self.index.get(&flow_id) {
            if self.flows[i].closed_ns.is_some() {
                self.settled_changes += 1;
            }
        }
    }

    pub fn capture(&self) -> &CaptureInfo {
        &self.capture
    }

    /// What cgroup `cgroup_id` is, when a `cgroup_seen` said.
    pub fn workload(&self, cgroup_id: u64) -> Option<&Workload> {
        self.workloads.get(&cgroup_id)
    }

    /// Every cgroup's workload known, by id.
    pub fn workloads(&self) -> &std::collections::BTreeMap<u64, Workload> {
        &self.workloads
    }

    /// Keeps (or replaces) what cgroup `cgroup_id` is, within [`MAX_WORKLOADS`] and
    /// [`MAX_WORKLOAD_BYTES`]; what does not fit is counted in [`Dropped::workloads`].
    fn note_workload(&mut self, cgroup_id: u64, workload: &Workload) {
        let cost = |w: &Workload| ENTRY_OVERHEAD + w.heap_bytes();
        let old = self.workloads.get(&cgroup_id).map_or(0, cost);
        let fits = (old > 0 || self.workloads.len() < MAX_WORKLOADS)
            && self.workload_bytes - old + cost(workload) <= MAX_WORKLOAD_BYTES;
        if !fits {
            self.capture.dropped.workloads += 1;
            return;
        }
        self.workload_bytes = self.workload_bytes - old + cost(workload);
        self.workloads.insert(cgroup_id, workload.clone());
    }

    /// Counts an event-log line that could not be read.
    pub fn note_unreadable_line(&mut self) {
        self.capture.unreadable_lines += 1;
    }

    /// Takes one observation at `ts_ns` (nanoseconds since the Unix epoch) and fills in the
    /// destination of flow events.
    pub fn observe(&mut self, ts_ns: u64, observed: &mut Observed) {
        self.clear_judged();
        self.capture.started_ns.get_or_insert(ts_ns);
        self.capture.ended_ns = Some(self.capture.ended_ns.map_or(ts_ns, |t| t.max(ts_ns)));
        match observed {
            Observed::FlowOpened { flow_id, .. }
            | Observed::FlowEstablished { flow_id, .. }
            | Observed::FlowProgress { flow_id, .. } => self.touch(*flow_id),
            Observed::FlowClosed(c) => self.touch(c.flow_id),
            _ => {}
        }
        match observed {
            Observed::CaptureStarted {
                ports,
                all_ports,
                probes,
                sources,
                proxies,
                ..
            } => {
                self.capture.sources.clone_from(sources);
                self.capture.proxies.clone_from(proxies);
                self.capture.started_ns = Some(ts_ns);
                self.queries.started(ts_ns);
                self.capture.ports.clone_from(ports);
                self.capture.all_ports = *all_ports;
                self.capture.probes.clone_from(probes);
            }
            Observed::DnsResponse(d) => {
                // Only the first response to a query the capture saw names anything.
                let (check, matched) = self.queries.response(ts_ns, d);
                d.check = Some(check);
                if matched.is_none() {
                    let claims = crate::pipeline::dnsmatch::claims_of(d);
                    self.rejections.note(ts_ns, check, 1, d, &claims);
                } else {
                    self.answered_response(ts_ns, d);
                }
            }
            Observed::DnsQuery(d) => {
                self.queries.query(ts_ns, d);
                if let (Some(id), Some(q)) = (d.id, d.questions.first()) {
                    let key = (d.socket_cookie, id);
                    // A forward is judged through its client's own query, not counted again.
                    let forwarded = self.note_query(ts_ns, &q.name, d.server, d.process.as_ref());
                    // A resend of the same query keeps the first send time.
                    if !forwarded && !self.pending.contains_key(&key) {
                        let query = PendingQuery {
                            ts_ns,
                            name: q.name.clone(),
                            rtype: q.rtype.clone(),
                            process: d.process.clone(),
                        };
                        self.pending_bytes += query.cost();
                        self.pending_order.push_back(key);
                        self.pending.insert(key, query);
                    }
                }
            }
            Observed::FlowOpened {
                flow_id,
                process,
                src,
                dst,
                destination,
                adopted,
            } => {
                let entry = self.entry(*flow_id, ts_ns, process, *src, *dst);
                let mut unnamed = false;
                *destination = Some(match entry {
                    Some(e) => {
                        if *adopted {
                            e.adopted = true;
                            e.established_ns.get_or_insert(ts_ns);
                            unnamed = e.destination.name.is_none();
                        }
                        (*e.destination).clone()
                    }
                    // Beyond the flows kept, a flow is still named for the event stream.
                    None => self.destination(*dst, ts_ns, process),
                });
                if unnamed && self.unnamed_adopted.len() < MAX_UNNAMED_ADOPTED {
                    self.unnamed_adopted.push(*flow_id);
                }
            }
            Observed::FlowEstablished {
                flow_id,
                process,
                src,
                dst,
                destination,
                ..
            } => {
                let entry = self.entry(*flow_id, ts_ns, process, *src, *dst);
                *destination = Some(match entry {
                    Some(e) => {
                        e.src = *src;
                        e.established_ns.get_or_insert(ts_ns);
                        (*e.destination).clone()
                    }
                    None => self.destination(*dst, ts_ns, process),
                });
            }
            Observed::FlowProgress {
                flow_id,
                bytes_sent,
                bytes_received,
                interval_ms,
                sent_idle_ms,
                received_idle_ms,
                ..
            } => {
                if let Some(&i) = self.index.get(flow_id) {
                    let idle = Idle {
                        interval_ns: ms_to_ns(*interval_ms),
                        sent_ms: *sent_idle_ms,
                        received_ms: *received_idle_ms,
                    };
                    self.read_counters(i, ts_ns, (*bytes_sent, *bytes_received), idle);
                }
            }
            Observed::FlowClosed(c) => {
                let entry = self.entry(c.flow_id, ts_ns, &c.process, c.src, c.dst);
                if let Some(e) = entry {
                    e.src = c.src;
                    e.closed_ns = Some(ts_ns);
                    e.adopted |= c.adopted;
                    if c.established && e.established_ns.is_none() {
                        e.established_ns = Some(ts_ns);
                    }
                    e.outcome = Some(c.outcome);
                    e.closed_by = c.closed_by;
                    e.error.clone_from(&c.error);
                    e.rst_received = c.rst_received;
                    e.syn_retransmits = c.syn_retransmits;
                    e.retransmits = c.retransmits;
                    e.idle_ms = c.idle_ms;
                    c.destination = Some((*e.destination).clone());
                } else {
                    c.destination = Some(self.destination(c.dst, ts_ns, &c.process));
                }
                if let Some(&i) = self.index.get(&c.flow_id) {
                    if self.open.remove(&i) && !self.forget_closed {
                        self.closed_journal.push(i);
                    }
                }
                if let Some(&i) = self.index.get(&c.flow_id) {
                    // The last interval: from the last reading to the close.
                    let idle = Idle {
                        interval_ns: ms_to_ns(c.since_poll_ms),
                        sent_ms: c.sent_idle_ms,
                        received_ms: c.received_idle_ms,
                    };
                    self.read_counters(i, ts_ns, (c.bytes_sent, c.bytes_received), idle);
                }
                if self.forget_closed {
                    self.forget(c.flow_id);
                }
            }
            Observed::FlowPayload(p) => {
                if let Some(&i) = self.index.get(&p.flow_id) {
                    let e = &mut self.flows[i];
                    if let Some(sent) = &p.sent {
                        e.first_sent.get_or_insert_with(|| sent.clone());
                    }
                    if let Some(FirstReceived::HttpStatus { code, reason }) = &p.received {
                        e.proxy_status
                            .get_or_insert_with(|| (*code, reason.clone()));
                    }
                    let named = self.named_by_payload(&self.flows[i], ts_ns);
                    if named != *self.flows[i].destination {
                        if self.flows[i].closed_ns.is_some() {
                            self.settled_changes += 1;
                        }
                        self.flows[i].destination = self.shared(named);
                    }
                    p.destination = Some((*self.flows[i].destination).clone());
                }
            }
            Observed::CaptureStats(stats) => self.capture.stats = *stats,
            Observed::SocketError { .. } => {}
            Observed::CgroupSeen {
                cgroup_id,
                workload,
            } => self.note_workload(*cgroup_id, workload),
        }
        self.expire_queries(ts_ns);
    }

    /// A response that matched its query: it ends the query's wait and names its addresses.
    fn answered_response(&mut self, ts_ns: u64, d: &mut crate::pipeline::events::DnsObserved) {
        if let (Some(id), Some(question)) = (d.id, d.questions.first()) {
            let key = (d.socket_cookie, id);
            let name = crate::pipeline::dns::normalize_name(&question.name);
            if self.pending.get(&key).is_some_and(|q| q.name == name) {
                if let Some(q) = self.pending.remove(&key) {
                    self.pending_bytes = self.pending_bytes.saturating_sub(q.cost());
                }
            }
        }
        for q in &d.questions {
            let key = (q.name.clone(), q.rtype.clone());
            let kept = self.answered.insert(key, ts_ns, ts_ns);
            if !kept {
                self.capture.dropped.recent_answers += 1;
            }
        }
        // A local resolver's answer is its client's: the client receives it next.
        let relayed = d
            .process
            .as_ref()
            .is_some_and(|p| self.is_local_resolver(p));
        let observation = if relayed {
            self.names.observe_relayed_answers(
                ts_ns,
                d.cgroup_id,
                d.rcode.as_deref(),
                &d.questions,
                &d.answers,
            )
        } else {
            self.names.observe_answers(
                ts_ns,
                d.process.as_ref(),
                d.cgroup_id,
                d.rcode.as_deref(),
                &d.questions,
                &d.answers,
            )
        };
        if observation.off_chain > 0 {
            let n = u64::try_from(observation.off_chain).unwrap_or(u64::MAX);
            d.out_of_bailiwick = u32::try_from(observation.off_chain).unwrap_or(u32::MAX);
            self.queries.count_out_of_bailiwick(n);
            self.rejections
                .note(ts_ns, DnsCheck::OutOfBailiwick, n, d, &observation.claims);
        }
        if !self.unnamed_adopted.is_empty() {
            self.name_adopted_flows(ts_ns, &d.answers);
        }
    }

    /// How the DNS responses compared with the queries seen.
    pub fn dns_checks(&self) -> DnsCheckStats {
        self.queries.stats()
    }

    /// Rejected responses, grouped by kind and socket, and the addresses they claimed.
    pub fn rejections(&self) -> &Rejections {
        &self.rejections
    }

    /// The flow `flow_id`, created (and its destination resolved) if it is new. `None` once
    /// `MAX_FLOWS` flows are kept.
    fn entry(
        &mut self,
        flow_id: u64,
        ts_ns: u64,
        process: &Process,
        src: SocketAddr,
        dst: SocketAddr,
    ) -> Option<&mut FlowEntry> {
        if let Some(&i) = self.index.get(&flow_id) {
            return Some(&mut self.flows[i]);
        }
        if self.flows.len() >= self.limits.max_flows {
            self.capture.flows_dropped += 1;
            return None;
        }
        let destination = self.destination(dst, ts_ns, process);
        let destination = self.shared(destination);
        self.index.insert(flow_id, self.flows.len());
        self.open.insert(self.flows.len());
        self.flows.push(FlowEntry {
            flow_id,
            process: process.clone(),
            src,
            dst,
            destination,
            opened_ns: ts_ns,
            adopted: false,
            established_ns: None,
            closed_ns: None,
            outcome: None,
            closed_by: None,
            error: None,
            rst_received: false,
            syn_retransmits: 0,
            retransmits: 0,
            bytes_sent: 0,
            bytes_received: 0,
            throughput: Throughput::default(),
            transfers: FlowTransfers::default(),
            read: (0, 0),
            send_times: Vec::new(),
            idle_ms: None,
            first_sent: None,
            proxy_status: None,
        });
        self.flows.last_mut()
    }

    /// Replaces the catalog (a daemon's SIGHUP): flows named from now on are classified by it.
    pub fn set_catalog(&mut self, catalog: Catalog) {
        self.catalog = catalog;
    }

    /// Whether `dst` is one of the HTTP proxies watched.
    pub fn is_proxy(&self, dst: SocketAddr) -> bool {
        self.capture.proxies.iter().any(|p| p.addr == dst)
    }

    /// The destination of a flow once its first bytes are known (docs/events.md, "How a flow's
    /// name is chosen"):
    /// - to a proxy, the target it asked for (`CONNECT host:port`, or the host of a plain HTTP
    ///   request), classified on the target's port;
    /// - with a TLS server name (SNI): the DNS name when it is the same; else the name DNS gave
    ///   the address that the SNI names (shared addresses); else the SNI, with the DNS name kept
    ///   as the disagreement's evidence. A name only the SNI gives is never documented (the flow
    ///   is undeclared under that name): a local process chooses its SNI as freely as a forger
    ///   its answer. An address a rejected (forged) answer claimed is never named by an SNI;
    /// - ECH, no SNI, a hello cut before its name, or no TLS at all: the DNS name stays, with a
    ///   note.
    fn named_by_payload(&self, e: &FlowEntry, ts_ns: u64) -> Destination {
        let current = (*e.destination).clone();
        let proxy = self.is_proxy(e.dst);
        match &e.first_sent {
            Some(FirstSent::Connect { host, port, .. }) if proxy => {
                self.proxied(e, host, *port, NamedBy::Connect, ts_ns)
            }
            Some(FirstSent::Http {
                host: Some(host),
                port,
                ..
            }) if proxy => self.proxied(e, host, port.unwrap_or(80), NamedBy::HttpHost, ts_ns),
            Some(FirstSent::Tls {
                sni,
                ech,
                incomplete,
            }) if !proxy => {
                let mut d = current;
                if *ech {
                    d.tls_note = Some("ech".to_owned());
                    d.sni.clone_from(sni);
                    return d;
                }
                let Some(sni) = sni else {
                    d.tls_note = Some(
                        if *incomplete {
                            "sni_not_copied"
                        } else {
                            "no_sni"
                        }
                        .to_owned(),
                    );
                    return d;
                };
                d.sni = Some(sni.clone());
                let same = d.name.as_deref() == Some(sni.as_str())
                    || d.cname_chain.iter().any(|n| n == sni);
                if same {
                    return d;
                }
                if let Some(r) = self.names.lookup_name(e.dst.ip(), ts_ns, sni) {
                    let mut named =
                        self.resolved_destination(r, e.dst.port(), d.forged_name.clone());
                    named.sni = Some(sni.clone());
                    return named;
                }
                if d.forged_name.is_some() {
                    return d;
                }
                // The SNI is the client's word only: the flow is named by it, but never
                // documented by it (no DNS answer gave this address to that name), so a process
                // cannot make its own destination read as a GitHub host by saying so.
                let mut named = self.by_name(sni, e.dst.port(), NamedBy::Sni);
                named.class = DestinationClass::Undeclared;
                named.groups.clear();
                named.sni = Some(sni.clone());
                named.dns_name = d.name;
                named
            }
            Some(FirstSent::Other { .. }) if !proxy => {
                let mut d = current;
                d.tls_note = Some("not_tls".to_owned());
                d
            }
            _ => current,
        }
    }

    /// A flow through a proxy to `host:port`: named by the target (an address literal is named
    /// by the DNS answers for it, like a direct flow).
    fn proxied(
        &self,
        e: &FlowEntry,
        host: &str,
        port: u16,
        by: NamedBy,
        ts_ns: u64,
    ) -> Destination {
        let target = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => {
                let mut d = self.destination(SocketAddr::new(ip, port), ts_ns, &e.process);
                d.proxy_target = Some(SocketAddr::new(ip, port).to_string());
                d
            }
            Err(_) => {
                let mut d = self.by_name(host, port, by);
                d.proxy_target = Some(format!("{host}:{port}"));
                d
            }
        };
        Destination {
            via_proxy: Some(e.dst),
            ..target
        }
    }

    /// A destination named without DNS evidence (by SNI or a proxy target).
    fn by_name(&self, name: &str, port: u16, by: NamedBy) -> Destination {
        let groups = self.groups_for(name, Some(port));
        Destination {
            class: if groups.is_empty() {
                DestinationClass::Undeclared
            } else {
                DestinationClass::Declared
            },
            name: Some(name.to_owned()),
            groups,
            named_by: Some(by),
            ..Destination::default()
        }
    }

    fn resolved_destination(
        &self,
        resolution: Resolution,
        port: u16,
        forged_name: Option<String>,
    ) -> Destination {
        let groups = self.groups_for(&resolution.name, Some(port));
        Destination {
            class: if groups.is_empty() {
                DestinationClass::Undeclared
            } else {
                DestinationClass::Declared
            },
            name: Some(resolution.name),
            cname_chain: resolution.cname_chain,
            groups,
            name_expired: resolution.expired,
            forged_name,
            ..Destination::default()
        }
    }

    /// Names the destination of a connection from `process` to `dst` at `ts_ns`.
    pub fn destination(&self, dst: SocketAddr, ts_ns: u64, process: &Process) -> Destination {
        let forged_name = self
            .rejections
            .claim(dst.ip())
            .filter(|c| c.at_ns <= ts_ns)
            .map(|c| c.name.clone());
        let Some(resolution) =
            self.names
                .lookup(dst.ip(), ts_ns, Some(process.pid), Some(process.cgroup_id))
        else {
            return Destination {
                forged_name,
                ..Destination::default()
            };
        };
        self.resolved_destination(resolution, dst.port(), forged_name)
    }

    /// Names the adopted flows whose address a DNS answer just gave. Their rates before count
    /// under the address; the host's and groups' rates count them from here.
    fn name_adopted_flows(&mut self, ts_ns: u64, answers: &[crate::pipeline::dns::Answer]) {
        let addresses: Vec<std::net::IpAddr> = answers
            .iter()
            .filter(|a| a.rtype == "A" || a.rtype == "AAAA")
            .filter_map(|a| a.data.parse().ok())
            .collect();
        if addresses.is_empty() {
            return;
        }
        let mut still = Vec::with_capacity(self.unnamed_adopted.len());
        for flow_id in std::mem::take(&mut self.unnamed_adopted) {
            let Some(&i) = self.index.get(&flow_id) else {
                continue;
            };
            let (dst, process) = (self.flows[i].dst, self.flows[i].process.clone());
            if !addresses.contains(&dst.ip().to_canonical()) {
                still.push(flow_id);
                continue;
            }
            let destination = self.destination(dst, ts_ns, &process);
            if destination.name.is_some() {
                if self.flows[i].closed_ns.is_some() {
                    self.settled_changes += 1;
                }
                self.flows[i].destination = self.shared(destination);
            } else {
                still.push(flow_id);
            }
        }
        self.unnamed_adopted = still;
    }

    /// Whether a destination belongs to a group the runner cannot work without (`required` in
    /// the catalog: `essential` in the built-in one), the groups that carry its long poll.
    pub fn reaches_required_group(&self, destination: &Destination) -> bool {
        self.catalog
            .groups()
            .iter()
            .any(|g| g.required && destination.groups.contains(&g.id))
    }

    /// Ids of the groups `name` belongs to, each once, in catalog order; with a port, only groups
    /// reached on that port.
    pub fn groups_for(&self, name: &str, port: Option<u16>) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for m in self.catalog.matches(name) {
            let on_port = port.is_none_or(|p| m.group.ports.contains(&p));
            if on_port && !ids.contains(&m.group.id) {
                ids.push(m.group.id.clone());
            }
        }
        ids
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{
        pipeline::dns::{Answer, Question},
        pipeline::events::{DnsObserved, FlowClosed},
    };

    const S: u64 = 1_000_000_000;

    fn curl() -> Process {
        Process {
            pid: 10,
            comm: "curl".into(),
            cgroup_id: 3,
            job: None,
        }
    }

    pub(crate) fn response(name: &str, answers: &[(&str, &str, &str)]) -> Observed {
        Observed::DnsResponse(Box::new(DnsObserved {
            process: Some(curl()),
            cgroup_id: 3,
            socket_cookie: 1,
            server: "198.18.0.2:53".parse().unwrap(),
            client: "198.18.0.1:5000".parse().unwrap(),
            payload_len: 100,
            capture_cut: false,
            tcp: false,
            id: Some(1),
            rcode: Some("NOERROR".into()),
            tc: false,
            questions: vec![Question {
                name: name.into(),
                rtype: "A".into(),
                class: None,
            }],
            answers: answers
                .iter()
                .map(|(n, t, d)| Answer {
                    name: (*n).into(),
                    rtype: (*t).into(),
                    ttl: 60,
                    data: (*d).into(),
                })
                .collect(),
            decode_error: None,
            check: None,
            out_of_bailiwick: 0,
        }))
    }

    /// Observes `o`, first the query it answers when it is a DNS response (the same socket, id,
    /// question and server: what the client sent), as the capture sees a real lookup.
    pub(crate) fn observe_answered(c: &mut Correlator, ts: u64, o: &mut Observed) {
        if let Observed::DnsResponse(d) = o {
            let mut q = d.clone();
            q.rcode = None;
            q.answers.clear();
            q.check = None;
            c.observe(ts, &mut Observed::DnsQuery(q));
        }
        c.observe(ts, o);
    }

    pub(crate) fn query(cookie: u64, name: &str) -> Observed {
        let Observed::DnsResponse(mut d) = response(name, &[]) else {
            unreachable!()
        };
        d.socket_cookie = cookie;
        d.rcode = None;
        Observed::DnsQuery(d)
    }

    /// A flow's close: `established` with `sent`/`received` bytes, or refused.
    pub(crate) fn closed(
        id: u64,
        dst: &str,
        established: bool,
        sent: u64,
        received: u64,
    ) -> Observed {
        Observed::FlowClosed(Box::new(FlowClosed {
            flow_id: id,
            process: curl(),
            src: "198.18.0.1:40000".parse().unwrap(),
            dst: dst.parse().unwrap(),
            destination: None,
            adopted: false,
            outcome: if !established {
                Outcome::Refused
            } else if received == 0 {
                Outcome::Reset
            } else {
                Outcome::Closed
            },
            closed_by: None,
            error: (!established).then(|| "ECONNREFUSED".to_owned()),
            established,
            rst_received: !established || received == 0,
            syn_retransmits: 0,
            retransmits: 0,
            bytes_sent: sent,
            bytes_received: received,
            connect_ms: None,
            duration_ms: 1.0,
            idle_ms: None,
            since_poll_ms: 0.0,
            sent_idle_ms: None,
            received_idle_ms: None,
        }))
    }

    pub(crate) fn opened(id: u64, dst: &str) -> Observed {
        Observed::FlowOpened {
            flow_id: id,
            process: curl(),
            src: "198.18.0.1:0".parse().unwrap(),
            dst: dst.parse().unwrap(),
            destination: None,
            adopted: false,
        }
    }

    fn destination_of(o: &Observed) -> Destination {
        match o {
            Observed::FlowOpened { destination, .. } => destination.clone().unwrap(),
            Observed::FlowClosed(c) => c.destination.clone().unwrap(),
            other => panic!("not a flow event: {other:?}"),
        }
    }

    pub(crate) fn payload(
        id: u64,
        dst: &str,
        sent: Option<FirstSent>,
        received: Option<FirstReceived>,
    ) -> Observed {
        Observed::FlowPayload(Box::new(crate::pipeline::events::FlowPayload {
            flow_id: id,
            src: "198.18.0.1:40000".parse().unwrap(),
            dst: dst.parse().unwrap(),
            payload_len: 200,
            cut: false,
            sent,
            received,
            destination: None,
        }))
    }

    pub(crate) fn hello(sni: &str) -> Option<FirstSent> {
        Some(FirstSent::Tls {
            sni: Some(sni.to_owned()),
            ech: false,
            incomplete: false,
        })
    }

    pub(crate) fn with_proxy(c: &mut Correlator, addr: &str) {
        let mut start = Observed::CaptureStarted {
            cgroup: "/".into(),
            ports: vec![443, 3128],
            all_ports: false,
            probes: Vec::new(),
            sources: Vec::new(),
            proxies: vec![WatchedProxy {
                addr: addr.parse().unwrap(),
                url: format!("http://{addr}"),
                source: "--proxy".into(),
                no_proxy: None,
            }],
        };
        c.observe(0, &mut start);
    }

    fn payload_destination(o: &Observed) -> Destination {
        match o {
            Observed::FlowPayload(p) => p.destination.clone().unwrap(),
            other => panic!("not a payload: {other:?}"),
        }
    }

    #[test]
    fn a_hard_coded_address_is_named_by_its_sni() {
        let mut c = Correlator::new(Catalog::builtin());
        c.observe(S, &mut opened(1, "198.18.1.10:443"));
        assert_eq!(c.flows()[0].destination.class, DestinationClass::Unresolved);
        let mut p = payload(1, "198.18.1.10:443", hello("api.github.com"), None);
        c.observe(S, &mut p);
        let d = payload_destination(&p);
        assert_eq!(d.name.as_deref(), Some("api.github.com"));
        assert_eq!(d.named_by, Some(NamedBy::Sni));
        // The client's word only: named, never documented by it.
        assert_eq!(d.class, DestinationClass::Undeclared);
        assert!(d.groups.is_empty(), "{:?}", d.groups);
        assert_eq!(d.dns_name, None);
        assert_eq!(*c.flows()[0].destination, d);
    }

    /// Two names answered with the same CDN address, 198.18.1.20: a documented one, then
    /// (more recent) someone else's.
    fn two_names_on_one_address(c: &mut Correlator) {
        let mut a = response(
            "objects.githubusercontent.com",
            &[("objects.githubusercontent.com", "A", "198.18.1.20")],
        );
        observe_answered(c, S, &mut a);
        let mut b = response(
            "cdn.example.org",
            &[("cdn.example.org", "A", "198.18.1.20")],
        );
        if let Observed::DnsResponse(d) = &mut b {
            d.id = Some(2);
        }
        observe_answered(c, 2 * S, &mut b);
    }

    #[test]
    fn on_a_shared_address_the_sni_picks_among_the_dns_names() {
        let mut c = Correlator::new(Catalog::builtin());
        two_names_on_one_address(&mut c);
        let mut github = opened(1, "198.18.1.20:443");
        c.observe(3 * S, &mut github);
        let mut other = opened(2, "198.18.1.20:443");
        c.observe(3 * S, &mut other);
        let mut p1 = payload(
            1,
            "198.18.1.20:443",
            hello("objects.githubusercontent.com"),
            None,
        );
        c.observe(3 * S, &mut p1);
        let mut p2 = payload(2, "198.18.1.20:443", hello("cdn.example.org"), None);
        c.observe(3 * S, &mut p2);
        let d1 = payload_destination(&p1);
        assert_eq!(d1.name.as_deref(), Some("objects.githubusercontent.com"));
        assert_eq!(d1.class, DestinationClass::Declared);
        assert_eq!(d1.named_by, None, "DNS named it; the SNI only chose");
        assert_eq!(d1.dns_name, None);
        let d2 = payload_destination(&p2);
        assert_eq!(d2.name.as_deref(), Some("cdn.example.org"));
        assert_eq!(d2.class, DestinationClass::Undeclared);
    }

    #[test]
    fn an_sni_that_disagrees_with_dns_names_the_flow_and_keeps_the_dns_name() {
        let mut c = Correlator::new(Catalog::builtin());
        let mut a = response("api.github.com", &[("api.github.com", "A", "198.18.1.10")]);
        observe_answered(&mut c, S, &mut a);
        c.observe(2 * S, &mut opened(1, "198.18.1.10:443"));
        let mut p = payload(1, "198.18.1.10:443", hello("front.example.net"), None);
        c.observe(2 * S, &mut p);
        let d = payload_destination(&p);
        assert_eq!(d.name.as_deref(), Some("front.example.net"));
        assert_eq!(d.named_by, Some(NamedBy::Sni));
        assert_eq!(d.dns_name.as_deref(), Some("api.github.com"));
        assert_eq!(d.class, DestinationClass::Undeclared);
        // The same name: DNS stays, the SNI is only recorded.
        c.observe(3 * S, &mut opened(2, "198.18.1.10:443"));
        let mut same = payload(2, "198.18.1.10:443", hello("api.github.com"), None);
        c.observe(3 * S, &mut same);
        let d = payload_destination(&same);
        assert_eq!(
            (d.named_by, d.sni.as_deref()),
            (None, Some("api.github.com"))
        );
    }

    #[test]
    fn ech_no_sni_and_non_tls_keep_the_dns_name_with_a_note() {
        let mut c = Correlator::new(Catalog::builtin());
        let mut a = response("api.github.com", &[("api.github.com", "A", "198.18.1.10")]);
        observe_answered(&mut c, S, &mut a);
        let cases = [
            (
                FirstSent::Tls {
                    sni: Some("public.example".into()),
                    ech: true,
                    incomplete: false,
                },
                "ech",
            ),
            (
                FirstSent::Tls {
                    sni: None,
                    ech: false,
                    incomplete: false,
                },
                "no_sni",
            ),
            (
                FirstSent::Tls {
                    sni: None,
                    ech: false,
                    incomplete: true,
                },
                "sni_not_copied",
            ),
            (
                FirstSent::Other {
                    note: "not TLS or HTTP".into(),
                },
                "not_tls",
            ),
        ];
        for (i, (sent, note)) in cases.into_iter().enumerate() {
            let id = i as u64 + 1;
            c.observe(2 * S, &mut opened(id, "198.18.1.10:443"));
            let mut p = payload(id, "198.18.1.10:443", Some(sent), None);
            c.observe(2 * S, &mut p);
            let d = payload_destination(&p);
            assert_eq!(d.name.as_deref(), Some("api.github.com"), "{note}");
            assert_eq!(d.tls_note.as_deref(), Some(note));
        }
    }

    #[test]
    fn a_forged_claim_is_not_confirmed_by_an_sni_alone() {
        let mut c = Correlator::new(Catalog::builtin());
        let mut start = Observed::CaptureStarted {
            cgroup: "/".into(),
            ports: vec![443],
            all_ports: false,
            probes: Vec::new(),
            sources: Vec::new(),
            proxies: Vec::new(),
        };
        c.observe(0, &mut start);
        // An answer nobody asked for claims the attacker's address for api.github.com.
        let mut forged = response("api.github.com", &[("api.github.com", "A", "198.18.9.9")]);
        c.observe(10 * S, &mut forged);
        c.observe(11 * S, &mut opened(1, "198.18.9.9:443"));
        let mut p = payload(1, "198.18.9.9:443", hello("api.github.com"), None);
        c.observe(11 * S, &mut p);
        let d = payload_destination(&p);
        assert_eq!(d.name, None, "{d:?}");
        assert_eq!(d.class, DestinationClass::Unresolved);
        assert_eq!(d.forged_name.as_deref(), Some("api.github.com"));
        assert_eq!(d.sni.as_deref(), Some("api.github.com"));
    }

    #[test]
    fn a_flow_to_a_proxy_is_named_by_its_connect_target() {
        let mut c = Correlator::new(Catalog::builtin());
        with_proxy(&mut c, "198.18.1.5:3128");
        c.observe(S, &mut opened(1, "198.18.1.5:3128"));
        let connect = Some(FirstSent::Connect {
            host: "api.github.com".into(),
            port: 443,
            credentials: false,
            incomplete: false,
        });
        c.observe(S, &mut payload(1, "198.18.1.5:3128", connect, None));
        let status = Some(FirstReceived::HttpStatus {
            code: 200,
            reason: "Connection established".into(),
        });
        let mut p = payload(1, "198.18.1.5:3128", None, status);
        c.observe(S, &mut p);
        let d = payload_destination(&p);
        assert_eq!(d.name.as_deref(), Some("api.github.com"));
        assert!(d.groups.contains(&"essential".to_owned()), "{:?}", d.groups);
        assert_eq!(d.named_by, Some(NamedBy::Connect));
        assert_eq!(d.via_proxy, Some("198.18.1.5:3128".parse().unwrap()));
        assert_eq!(d.proxy_target.as_deref(), Some("api.github.com:443"));
        assert_eq!(
            c.flows()[0].proxy_status,
            Some((200, "Connection established".into()))
        );
        // The same port on another address is no proxy: a TLS hello there names by SNI.
        c.observe(S, &mut opened(2, "198.18.1.6:3128"));
        let mut other = payload(2, "198.18.1.6:3128", hello("example.org"), None);
        c.observe(S, &mut other);
        assert_eq!(payload_destination(&other).via_proxy, None);
    }

    #[test]
    fn an_adopted_flow_is_named_by_a_later_answer_for_its_address() {
        let mut c = Correlator::new(Catalog::builtin());
        let Observed::FlowOpened {
            flow_id,
            process,
            src,
            dst,
            ..
        } = opened(1, "198.18.1.12:443")
        else {
            unreachable!()
        };
        let mut adopted = Observed::FlowOpened {
            flow_id,
            process,
            src,
            dst,
            destination: None,
            adopted: true,
        };
        c.observe(S, &mut adopted);
        assert_eq!(destination_of(&adopted).class, DestinationClass::Unresolved);
        assert!(c.flows()[0].adopted && c.flows()[0].established_ns == Some(S));
        // An answer for another address changes nothing; one for its address names it.
        let name = "broker.actions.githubusercontent.com";
        observe_answered(
            &mut c,
            2 * S,
            &mut response(name, &[(name, "A", "198.18.1.99")]),
        );
        assert_eq!(c.flows()[0].destination.name, None);
        observe_answered(
            &mut c,
            3 * S,
            &mut response(name, &[(name, "A", "198.18.1.12")]),
        );
        let d = &c.flows()[0].destination;
        assert_eq!(d.name.as_deref(), Some(name));
        assert_eq!(d.class, DestinationClass::Declared);
        let mut close = closed(1, "198.18.1.12:443", true, 10, 10);
        c.observe(4 * S, &mut close);
        assert_eq!(destination_of(&close).name.as_deref(), Some(name));
    }

    #[test]
    fn a_flow_behind_a_cname_chain_is_the_name_the_client_asked_for() {
        let mut c = Correlator::new(Catalog::builtin());
        let name = "pipelines.actions.githubusercontent.com";
        observe_answered(
            &mut c,
            S,
            &mut response(
                name,
                &[
                    (name, "CNAME", "star-1.l-msedge.net"),
                    ("star-1.l-msedge.net", "CNAME", "x.l-msedge.net"),
                    ("x.l-msedge.net", "A", "198.18.1.12"),
                ],
            ),
        );
        let mut flow = opened(1, "198.18.1.12:443");
        c.observe(2 * S, &mut flow);
        let d = destination_of(&flow);
        assert_eq!(d.name.as_deref(), Some(name));
        assert_eq!(
            d.cname_chain,
            [name, "star-1.l-msedge.net", "x.l-msedge.net"]
        );
        assert_eq!(d.groups, ["essential", "oidc", "wildcard-summary"]);
        assert_eq!(d.class, DestinationClass::Declared);
    }

    #[test]
    fn undeclared_unresolved_and_other_ports() {
        let mut c = Correlator::new(Catalog::builtin());
        observe_answered(
            &mut c,
            S,
            &mut response(
                "registry.npmjs.org",
                &[("registry.npmjs.org", "A", "198.18.2.1")],
            ),
        );
        observe_answered(
            &mut c,
            S,
            &mut response("api.github.com", &[("api.github.com", "A", "198.18.1.10")]),
        );
        let mut npm = opened(1, "198.18.2.1:443");
        let mut bare = opened(2, "198.18.9.9:443");
        let mut api_other_port = opened(3, "198.18.1.10:8443");
        for (i, f) in [&mut npm, &mut bare, &mut api_other_port]
            .into_iter()
            .enumerate()
        {
            c.observe((2 + i as u64) * S, f);
        }
        let npm = destination_of(&npm);
        assert_eq!(npm.class, DestinationClass::Undeclared);
        assert!(npm.groups.is_empty());
        let bare = destination_of(&bare);
        assert_eq!(bare, Destination::default());
        assert_eq!(bare.class, DestinationClass::Unresolved);
        let other = destination_of(&api_other_port);
        assert_eq!(other.name.as_deref(), Some("api.github.com"));
        assert_eq!(
            other.class,
            DestinationClass::Undeclared,
            "the catalog lists port 443 only"
        );
    }

    #[test]
    fn watch_forgets_closed_flows_but_keeps_their_rates() {
        let mut c = Correlator::new(Catalog::builtin()).forgetting_closed_flows();
        observe_answered(
            &mut c,
            S,
            &mut response("github.com", &[("github.com", "A", "198.18.1.1")]),
        );
        for id in 1..=3 {
            c.observe(2 * S, &mut opened(id, "198.18.1.1:443"));
        }
        c.observe(3 * S, &mut closed(1, "198.18.1.1:443", true, 100, 50_000));
        let ids: Vec<u64> = c.flows().iter().map(|f| f.flow_id).collect();
        assert_eq!(
            ids,
            [3, 2],
            "flow 1 forgotten, the last one moved into its slot"
        );
        c.observe(4 * S, &mut closed(3, "198.18.1.1:443", true, 100, 50_000));
        assert_eq!(c.flows().iter().map(|f| f.flow_id).collect::<Vec<_>>(), [2]);
        assert_eq!(c.index.get(&2), Some(&0));
        assert!(
            c.host_series("github.com").is_some(),
            "the host's rates outlive its flows"
        );
    }

    #[test]
    fn the_flow_just_forgotten_and_the_queries_just_judged_are_handed_out() {
        let mut c = Correlator::new(Catalog::builtin()).forgetting_closed_flows();
        c.observe(S, &mut opened(1, "198.18.1.1:443"));
        c.observe(S, &mut opened(2, "198.18.1.1:443"));
        c.observe(2 * S, &mut closed(1, "198.18.1.1:443", false, 0, 0));
        assert!(c.flows().iter().all(|f| f.flow_id != 1));
        let gone = c.flow(1).expect("the flow forgotten last");
        assert_eq!(gone.outcome, Some(Outcome::Refused));
        assert_eq!(c.flow(2).map(|f| f.flow_id), Some(2));
        c.observe(2 * S, &mut closed(2, "198.18.1.1:443", false, 0, 0));
        assert!(c.flow(1).is_none(), "only the last one is kept");
        // Unanswered queries: named once, by the observation that judged them.
        c.observe(3 * S, &mut query(7, "a.example"));
        c.observe(4 * S, &mut opened(3, "198.18.1.1:443"));
        assert!(c.judged_unanswered().is_empty());
        c.observe(7 * S, &mut opened(4, "198.18.1.1:443"));
        assert_eq!(c.judged_unanswered(), ["a.example"]);
        c.observe(8 * S, &mut opened(5, "198.18.1.1:443"));
        assert!(c.judged_unanswered().is_empty());
    }

    #[test]
    fn a_close_fills_the_flow_and_keeps_its_destination() {
        let mut c = Correlator::new(Catalog::builtin());
        observe_answered(
            &mut c,
            S,
            &mut response("github.com", &[("github.com", "A", "198.18.1.1")]),
        );
        c.observe(2 * S, &mut opened(7, "198.18.1.1:443"));
        // A later answer for the same address does not rename a flow already named.
        observe_answered(
            &mut c,
            3 * S,
            &mut response("other.example", &[("other.example", "A", "198.18.1.1")]),
        );
        let mut closed = Observed::FlowClosed(Box::new(FlowClosed {
            flow_id: 7,
            process: curl(),
            src: "198.18.0.1:40000".parse().unwrap(),
            dst: "198.18.1.1:443".parse().unwrap(),
            destination: None,
            adopted: false,
            outcome: Outcome::Closed,
            closed_by: Some(ClosedBy::Local),
            error: None,
            established: true,
            rst_received: false,
            syn_retransmits: 0,
            retransmits: 0,
            bytes_sent: 100,
            bytes_received: 2000,
            connect_ms: Some(1.0),
            duration_ms: 2000.0,
            idle_ms: None,
            since_poll_ms: 0.0,
            sent_idle_ms: None,
            received_idle_ms: None,
        }));
        c.observe(4 * S, &mut closed);
        assert_eq!(destination_of(&closed).name.as_deref(), Some("github.com"));
        let f = &c.flows()[0];
        assert_eq!((f.bytes_sent, f.bytes_received), (100, 2000));
        assert_eq!(f.outcome, Some(Outcome::Closed));
        assert_eq!(f.src.port(), 40000);
        assert_eq!(f.established_ns, Some(4 * S));
    }

    #[test]
    fn forged_answers_name_nothing_and_mark_the_flows_that_follow_them() {
        let mut c = Correlator::new(Catalog::builtin());
        let api = "api.github.com";
        let mut start = Observed::CaptureStarted {
            cgroup: "/".into(),
            ports: vec![443],
            all_ports: false,
            probes: vec![],
            sources: vec![],
            proxies: Vec::new(),
        };
        c.observe(S, &mut start);
        let checked = |o: &Observed| match o {
            Observed::DnsResponse(d) => (d.check, d.out_of_bailiwick),
            _ => unreachable!(),
        };
        // 1. An answer to a socket that asked nothing (after the start-up grace).
        let mut forged = response(api, &[(api, "A", "198.18.66.1")]);
        c.observe(20 * S, &mut forged);
        assert_eq!(checked(&forged), (Some(DnsCheck::Unsolicited), 0));
        // 2. The right id on a socket that asked, but another question.
        c.observe(21 * S, &mut query(1, "x.attacker.example"));
        let mut other = response(api, &[(api, "A", "198.18.66.2")]);
        c.observe(21 * S, &mut other);
        assert_eq!(checked(&other), (Some(DnsCheck::Mismatched), 0));
        // 3. The right question from another server.
        let mut wrong = response(
            "x.attacker.example",
            &[("x.attacker.example", "A", "198.18.66.3")],
        );
        if let Observed::DnsResponse(d) = &mut wrong {
            d.server = "198.18.0.66:53".parse().unwrap();
        }
        c.observe(21 * S, &mut wrong);
        assert_eq!(checked(&wrong), (Some(DnsCheck::WrongServer), 0));
        // 4. The real answer, with a record for a documented name slipped in.
        let mut real = response(
            "x.attacker.example",
            &[
                ("x.attacker.example", "A", "198.18.66.4"),
                (api, "A", "198.18.66.5"),
            ],
        );
        c.observe(22 * S, &mut real);
        assert_eq!(checked(&real), (Some(DnsCheck::Matched), 1));
        // 5. A second answer to the same query.
        let mut again = response(
            "x.attacker.example",
            &[("x.attacker.example", "A", "198.18.66.6")],
        );
        c.observe(22 * S, &mut again);
        assert_eq!(checked(&again), (Some(DnsCheck::Duplicate), 0));

        for (i, (addr, claimed)) in [
            ("198.18.66.1", api),
            ("198.18.66.2", api),
            ("198.18.66.3", "x.attacker.example"),
            ("198.18.66.5", api),
        ]
        .into_iter()
        .enumerate()
        {
            let mut flow = opened(i as u64 + 1, &format!("{addr}:443"));
            c.observe(30 * S, &mut flow);
            let d = destination_of(&flow);
            assert_eq!(d.class, DestinationClass::Unresolved, "{addr}: {d:?}");
            assert_eq!(d.name, None, "{addr}");
            assert_eq!(d.forged_name.as_deref(), Some(claimed), "{addr}");
        }
        let mut flow = opened(9, "198.18.66.4:443");
        c.observe(30 * S, &mut flow);
        let d = destination_of(&flow);
        assert_eq!(d.name.as_deref(), Some("x.attacker.example"));
        assert_eq!(d.class, DestinationClass::Undeclared);
        assert_eq!(d.forged_name, None);
        // A duplicate is not a forgery claim: its address is merely unresolved.
        let mut dup = opened(10, "198.18.66.6:443");
        c.observe(30 * S, &mut dup);
        assert_eq!(destination_of(&dup), Destination::default());

        let stats = c.dns_checks();
        assert_eq!(
            (
                stats.matched,
                stats.unsolicited,
                stats.mismatched,
                stats.wrong_server,
                stats.out_of_bailiwick,
                stats.duplicate
            ),
            (1, 1, 1, 1, 1, 1)
        );
        let kinds: Vec<DnsCheck> = c.rejections().groups().iter().map(|g| g.check).collect();
        assert_eq!(
            kinds,
            [
                DnsCheck::Unsolicited,
                DnsCheck::Mismatched,
                DnsCheck::WrongServer,
                DnsCheck::OutOfBailiwick,
                DnsCheck::Duplicate
            ]
        );
        let g = &c.rejections().groups()[0];
        assert_eq!(g.process.as_ref().map(|p| &*p.comm), Some("curl"));
        assert_eq!(g.names, [api]);
        assert_eq!(g.client, "198.18.0.1:5000".parse().unwrap());
        assert!(c.names().name(api).is_none(), "no record of api.github.com");
    }

    #[test]
    fn answers_before_the_start_grace_name_nothing_and_are_not_forgeries() {
        let mut c = Correlator::new(Catalog::builtin());
        let mut start = Observed::CaptureStarted {
            cgroup: "/".into(),
            ports: vec![443],
            all_ports: false,
            probes: vec![],
            sources: vec![],
            proxies: Vec::new(),
        };
        c.observe(S, &mut start);
        let api = "api.github.com";
        let mut early = response(api, &[(api, "A", "198.18.1.10")]);
        c.observe(2 * S, &mut early);
        let mut flow = opened(1, "198.18.1.10:443");
        c.observe(3 * S, &mut flow);
        assert_eq!(destination_of(&flow), Destination::default());
        assert_eq!(c.dns_checks().unmatched_before_start, 1);
    }

    #[test]
    fn a_flood_of_forged_answers_stays_bounded_and_names_stay_right() {
        let mut c = Correlator::new(Catalog::builtin());
        let api = "api.github.com";
        observe_answered(&mut c, S, &mut response(api, &[(api, "A", "198.18.1.10")]));
        for i in 0..100_000u32 {
            let mut forged = response(api, &[(api, "A", "198.18.200.1")]);
            if let Observed::DnsResponse(d) = &mut forged {
                d.id = Some((i % 65_536) as u16);
                d.client = format!("198.18.0.1:{}", 1024 + i % 60_000).parse().unwrap();
                d.socket_cookie = u64::from(i) + 100;
            }
            c.observe(2 * S + u64::from(i), &mut forged);
        }
        let mut flow = opened(1, "198.18.1.10:443");
        c.observe(3 * S, &mut flow);
        assert_eq!(destination_of(&flow).name.as_deref(), Some(api));
        let mut forged_flow = opened(2, "198.18.200.1:443");
        c.observe(3 * S, &mut forged_flow);
        let d = destination_of(&forged_flow);
        assert_eq!((d.name, d.forged_name.as_deref()), (None, Some(api)));
        // Duplicates of the real answer's id on its socket, and unsolicited the rest.
        let stats = c.dns_checks();
        assert_eq!(stats.matched, 1);
        assert_eq!(stats.rejected(), 100_000);
        let kept: u64 = c.rejections().groups().iter().map(|g| g.count).sum();
        assert!(c.rejections().groups().len() <= crate::pipeline::dnsmatch::MAX_REJECTED_GROUPS);
        assert_eq!(kept + c.rejections().groups_dropped, 100_000);
    }

    /// A query of its own socket, client port and id (as a flood's would be: one table entry
    /// each, not one long list of equal keys).
    pub(crate) fn flood_query(i: u32, name: &str) -> Observed {
        let mut q = query(u64::from(i) + 1_000, name);
        if let Observed::DnsQuery(d) = &mut q {
            d.id = Some((i % 65_536) as u16);
            d.client = SocketAddr::from(([198, 18, 0, 1], 1024 + (i % 60_000) as u16));
        }
        q
    }

    fn long_name(tag: &str, i: u32) -> String {
        // 253 characters, the longest a DNS name has on the wire.
        let name = format!("{tag}{i:08}.{}", "x".repeat(63));
        format!(
            "{name}.{}.{}.{}",
            "y".repeat(63),
            "z".repeat(63),
            "w".repeat(51)
        )
    }

    #[test]
    fn unanswered_names_are_bounded_and_documented_names_keep_a_reserve() {
        let mut c = Correlator::new(Catalog::builtin());
        assert_eq!(long_name("u", 0).len(), 253);
        let flood = 70_000u32;
        // 0.2 ms apart: about 15,000 waiting at a time, within the pending bounds.
        for i in 0..flood {
            c.observe(
                S + u64::from(i) * 200_000,
                &mut flood_query(i, &long_name("u", i)),
            );
        }
        // Then essential hosts time out, and one more junk name.
        let t = S + u64::from(flood) * 200_000;
        let documented = [
            "api.github.com",
            "github.com",
            "codeload.github.com",
            "ghcr.io",
        ];
        for (i, name) in documented.iter().chain(&["junk.example"]).enumerate() {
            c.observe(t, &mut flood_query(flood + i as u32, name));
        }
        c.observe(t + 10 * S, &mut opened(1, "198.18.1.1:443"));
        c.finish();
        let kept = c.dns_timeouts().len();
        assert!(
            kept <= MAX_TIMEOUT_NAMES + TIMEOUT_DOCUMENTED_RESERVE,
            "{kept}"
        );
        assert!(
            c.timeout_bytes <= MAX_TIMEOUT_BYTES + 1024,
            "the bytes, and the reserve's few names"
        );
        let dropped = c.capture().dropped.dns_timeouts;
        // Each name was asked once: kept names and dropped queries add up.
        assert_eq!(kept as u64 + dropped, u64::from(flood) + 5);
        assert!(dropped > 20_000, "{dropped}: the byte bound binds first");
        assert_eq!(c.capture().dropped.queries_judged_early, 0);
        // The essential hosts' timeouts are kept beyond the bound; the junk name is not.
        for name in documented {
            assert_eq!(
                c.dns_timeouts().get(name).map(|t| t.count),
                Some(1),
                "{name}"
            );
        }
        assert!(!c.dns_timeouts().contains_key("junk.example"));
        assert!(c.timeout_reserve_used >= 2, "{}", c.timeout_reserve_used);
    }

    #[test]
    fn waiting_queries_are_bounded_and_those_judged_early_counted() {
        let mut c = Correlator::new(Catalog::builtin());
        let flood = MAX_PENDING_QUERIES as u32 + 4_464;
        for i in 0..flood {
            c.observe(S, &mut flood_query(i, &format!("n{i}.example")));
            assert!(c.pending.len() <= MAX_PENDING_QUERIES);
            assert!(c.pending_bytes <= MAX_PENDING_BYTES);
        }
        // The count bound, or the byte bound first (the names' bytes, the entries' overhead).
        let early = c.capture().dropped.queries_judged_early;
        assert_eq!(early + c.pending.len() as u64, u64::from(flood));
        assert!(early >= 4_464, "{early}");
        // Long names: the byte bound.
        let mut c = Correlator::new(Catalog::builtin());
        for i in 0..50_000u32 {
            c.observe(S, &mut flood_query(i, &long_name("p", i)));
            assert!(c.pending_bytes <= MAX_PENDING_BYTES);
        }
        let early = c.capture().dropped.queries_judged_early;
        assert_eq!(early + c.pending.len() as u64, 50_000);
        assert!(early > 5_000, "{early}");
        // Everything waiting is judged at the end, and the table given back.
        c.observe(10 * S, &mut opened(1, "198.18.1.1:443"));
        assert_eq!((c.pending.len(), c.pending_bytes), (0, 0));
    }

    #[test]
    fn recent_answers_and_loopback_queries_are_bounded() {
        let mut c = Correlator::new(Catalog::builtin());
        let flood = MAX_RECENT as u32 + 1_000;
        for i in 0..flood {
            let name = format!("r{i}.example");
            let mut r = response(&name, &[(&name, "A", "198.18.3.1")]);
            if let Observed::DnsResponse(d) = &mut r {
                d.socket_cookie = u64::from(i) + 10;
                d.id = Some((i % 65_536) as u16);
                d.client = SocketAddr::from(([198, 18, 0, 1], 1024 + (i % 60_000) as u16));
            }
            observe_answered(&mut c, S, &mut r);
        }
        assert!(c.answered.map.len() <= MAX_RECENT);
        assert!(c.answered.bytes <= MAX_RECENT_BYTES);
        let dropped = c.capture().dropped.recent_answers;
        assert_eq!(dropped + c.answered.map.len() as u64, u64::from(flood));
        assert!(dropped >= 1_000, "{dropped}");
        // Past the window the old entries are swept and new ones kept again.
        let mut r = response("late.example", &[("late.example", "A", "198.18.3.2")]);
        if let Observed::DnsResponse(d) = &mut r {
            d.socket_cookie = 5;
        }
        observe_answered(&mut c, 20 * S, &mut r);
        assert_eq!(c.capture().dropped.recent_answers, dropped);
        assert_eq!(c.answered.map.len(), 1);
        assert_eq!(
            c.answered.bytes,
            answered_cost(&("late.example".into(), "A".into()))
        );

        let mut c = Correlator::new(Catalog::builtin());
        for i in 0..flood {
            let mut q = flood_query(i, &format!("l{i}.example"));
            if let Observed::DnsQuery(d) = &mut q {
                d.server = "127.0.0.53:53".parse().unwrap();
            }
            c.observe(S, &mut q);
        }
        assert!(c.local_asks.map.len() <= MAX_RECENT);
        let dropped = c.capture().dropped.loopback_queries;
        assert_eq!(dropped + c.local_asks.map.len() as u64, u64::from(flood));
        assert!(dropped >= 1_000, "{dropped}");
    }

    #[test]
    fn host_series_are_bounded_in_bytes_and_watch_forgets_idle_hosts() {
        for watch in [false, true] {
            let mut c = Correlator::new(Catalog::builtin());
            if watch {
                c = c.forgetting_closed_flows();
            }
            c.host_series_budget = 64 << 10;
            for i in 0..2_000u32 {
                c.add_host_reading(format!("198.18.{}.{}", i / 256, i % 256), S, (10, 10), S);
                assert!(c.host_series_bytes <= 64 << 10);
            }
            let kept = c.host_series.len() as u64;
            assert_eq!(kept + c.capture().dropped.host_readings, 2_000);
            // A minute later: `watch` forgot the idle hosts; a report keeps them and counts.
            c.add_host_reading("late.example".into(), 2 * S + SERIES_IDLE_NS, (1, 1), S);
            assert_eq!(c.host_series("late.example").is_some(), watch);
            let dropped = c.capture().dropped.host_readings;
            assert_eq!(dropped, 2_000 - kept + u64::from(!watch));
            assert_eq!(
                c.host_series_bytes,
                c.host_series
                    .iter()
                    .map(|(k, h)| HostSeries::cost(k, h.readings))
                    .sum::<usize>()
            );
        }
    }

    #[test]
    fn workloads_are_kept_by_cgroup_and_bounded_in_bytes() {
        use crate::capture::cgroups::{classify, Workload};
        let mut c = Correlator::new(Catalog::builtin());
        let docker = classify(
            "/system.slice/docker-293f758723d0652a0b9fa869106e600079e56dae362ca84de12942d38524a272.scope",
        );
        c.observe(
            S,
            &mut Observed::CgroupSeen {
                cgroup_id: 3,
                workload: docker.clone(),
            },
        );
        assert_eq!(c.workload(3), Some(&docker));
        assert_eq!(c.workload(4), None);
        // Seen again (a new capture of the same host, say): replaced, not counted twice.
        let root = classify("/");
        c.observe(
            S,
            &mut Observed::CgroupSeen {
                cgroup_id: 3,
                workload: root.clone(),
            },
        );
        assert_eq!((c.workloads().len(), c.workload(3)), (1, Some(&root)));

        // An event log can hold paths of any length: the table stops at its bytes.
        let huge = |i: u64| Workload {
            cgroup: format!("/{i}{}", "x".repeat(200_000)),
            ..Workload::default()
        };
        for i in 10..100 {
            c.observe(
                S,
                &mut Observed::CgroupSeen {
                    cgroup_id: i,
                    workload: huge(i),
                },
            );
        }
        let kept = c.workloads().len() as u64;
        assert!(kept > 30 && kept < 50, "{kept}");
        assert_eq!(c.capture().dropped.workloads, 91 - kept);
        assert!(c.workload_bytes <= MAX_WORKLOAD_BYTES);
        // A kept cgroup can still be replaced by a smaller workload.
        c.observe(
            S,
            &mut Observed::CgroupSeen {
                cgroup_id: 10,
                workload: root.clone(),
            },
        );
        assert_eq!(c.workload(10), Some(&root));
        assert_eq!(c.capture().dropped.workloads, 91 - kept);
    }

    /// Two flows to one address share its destination; one renamed by its SNI leaves the
    /// other's as it was (a hostile review's test).
    #[test]
    fn a_shared_destination_is_not_changed_under_another_flow() {
        let mut c = Correlator::new(Catalog::builtin());
        two_names_on_one_address(&mut c);
        c.observe(3 * S, &mut opened(1, "198.18.1.20:443"));
        c.observe(3 * S, &mut opened(2, "198.18.1.20:443"));
        assert!(Arc::ptr_eq(
            &c.flows()[0].destination,
            &c.flows()[1].destination
        ));
        let before = (*c.flows()[1].destination).clone();
        let mut p1 = payload(
            1,
            "198.18.1.20:443",
            hello("objects.githubusercontent.com"),
            None,
        );
        c.observe(3 * S, &mut p1);
        assert_eq!(
            c.flows()[0].destination.name.as_deref(),
            Some("objects.githubusercontent.com")
        );
        assert_eq!(*c.flows()[1].destination, before);
        assert_eq!(before.name.as_deref(), Some("cdn.example.org"));
    }

    /// A destination of long names is the flow's own: the cache keeps only short ones.
    #[test]
    fn a_destination_of_long_names_is_not_kept_for_the_flows_after_it() {
        let mut c = Correlator::new(Catalog::builtin());
        let label = "a".repeat(60);
        let long = format!("{label}.{label}.{label}.example.org");
        // Within the chain a resolver may give (16 names), over 2 KiB of names.
        let chain: Vec<String> = (0..12).map(|i| format!("c{i}.{long}")).collect();
        let mut records: Vec<(&str, &str, &str)> =
            vec![(long.as_str(), "CNAME", chain[0].as_str())];
        for pair in chain.windows(2) {
            records.push((pair[0].as_str(), "CNAME", pair[1].as_str()));
        }
        records.push((chain[chain.len() - 1].as_str(), "A", "198.18.1.21"));
        let mut r = response(&long, &records);
        observe_answered(&mut c, S, &mut r);
        c.observe(2 * S, &mut opened(1, "198.18.1.21:443"));
        c.observe(2 * S, &mut opened(2, "198.18.1.21:443"));
        let (a, b) = (&c.flows()[0].destination, &c.flows()[1].destination);
        assert_eq!(a, b);
        assert!(!a.cname_chain.is_empty(), "{a:?}");
        assert!(
            !Arc::ptr_eq(a, b),
            "not shared: {} bytes of chain",
            a.cname_chain.concat().len()
        );
    }
}
