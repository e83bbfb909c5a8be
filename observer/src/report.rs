//! The audit report (`schema_version` 1, documented in docs/report.md): per group, per
//! documented host, per undeclared destination and per flow, built from the correlator's state.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use serde::{Deserialize, Serialize};
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

use crate::{
    correlate::{Correlator, DnsTimeouts, FlowEntry},
    events::{ClosedBy, DestinationClass, Outcome, ProbeStatus},
    kernel::Process,
    names::{NameRecord, NamesStats},
    throughput::{runner_function, ThroughputStats, SLOW_MIN_BYTES},
};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    pub generator: String,
    pub verdict: Verdict,
    pub capture: CaptureSection,
    pub groups: Vec<GroupReport>,
    pub hosts: Vec<HostReport>,
    pub undeclared: Vec<UndeclaredReport>,
    pub flows: Vec<FlowReport>,
}

/// The answer first: can this runner work, and which optional features will fail.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// True when the required groups were reached and none failed, false when one is blocked or
    /// degraded, null when none of their hosts was contacted in the window.
    pub runner_can_work: Option<bool>,
    /// One sentence for humans.
    pub summary: String,
    /// Status of each required group (`essential` in the built-in catalog).
    pub required: Vec<GroupVerdict>,
    /// Optional groups that are blocked or degraded: features that will fail or be unreliable.
    pub failing_features: Vec<GroupVerdict>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupVerdict {
    pub group: String,
    pub title: String,
    pub status: Status,
    /// Failing members, with their reason codes: `api.github.com (tcp_reset)`.
    pub because: Vec<String>,
}

/// How complete the capture behind the report is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaptureSection {
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub duration_s: f64,
    pub ports: Vec<u16>,
    pub all_ports: bool,
    pub probes: Vec<ProbeStatus>,
    pub events: u64,
    pub lost_events: u64,
    pub undecodable_events: u64,
    pub malformed_dns: u64,
    pub dns_skipped: u64,
    pub flows_dropped: u64,
    pub unreadable_lines: u64,
    /// Size of the address-to-name memory, and what its bounds made it forget.
    pub name_cache: NamesStats,
    /// Local resolvers seen forwarding their clients' queries (a stub such as systemd-resolved
    /// on 127.0.0.53): their lookups are counted as their clients', not as their own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub local_resolvers: Vec<Process>,
    /// Where each need's data came from on the capturing kernel (bytes, adoption, ...); absent
    /// in reports of captures that did not record it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_sources: Vec<crate::kernel_caps::DataSource>,
    /// What the capture saw less well than it could on a newer kernel, in an operator's words
    /// (the fallbacks among `data_sources`); the capture can still be complete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// True when nothing was lost and every probe was attached.
    pub complete: bool,
    /// Why the report is not complete.
    pub incomplete_because: Vec<String>,
}

/// `ok`: reached, every attempt succeeded; `degraded`: some attempts failed; `blocked`: every
/// attempt failed; `unseen`: no connection was attempted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Degraded,
    Blocked,
    Unseen,
}

/// One kind of failure, counted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// Stable code: `dns_nxdomain`, `dns_servfail`, `dns_refused`, `dns_timeout`,
    /// `dns_sinkhole`, `dns_no_address`,
    /// `tcp_timeout`, `tcp_reset`, `tcp_unreachable`, `tcp_error`, `tls_reset`,
    /// `connection_reset`; and, for hosts that work but not well, `slow_throughput` and
    /// `long_poll_cut`.
    pub code: String,
    pub count: u64,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    /// The process of the latest failure, when known.
    pub process: Option<Process>,
    /// Evidence of the latest occurrence, for codes that measure something (the rate of a
    /// slow transfer, the idle time at which a long poll was cut).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupReport {
    pub id: String,
    pub title: String,
    pub required: bool,
    /// The group summarises others (not a feature of its own).
    #[serde(default)]
    pub summary: bool,
    pub status: Status,
    /// Host entries of this group (documented names and observed wildcard members).
    pub hosts: Vec<String>,
    /// Members that are blocked or degraded, which explain the status.
    pub failing_hosts: Vec<String>,
    pub flows: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Active-rate statistics of the group's flows together.
    #[serde(default)]
    pub throughput: ThroughputStats,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostReport {
    pub name: String,
    /// The catalog pattern the name was matched by (the name itself for exact names).
    pub pattern: String,
    pub groups: Vec<String>,
    pub status: Status,
    pub reasons: Vec<Reason>,
    pub addresses: Vec<IpAddr>,
    pub cname_chain: Vec<String>,
    pub flows: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub processes: Vec<Process>,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    /// What the runner uses the host for, when its name tells (`job_messages`, ...).
    pub function: Option<String>,
    /// Active-rate statistics of the host's flows together (docs/throughput.md).
    #[serde(default)]
    pub throughput: ThroughputStats,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UndeclaredReport {
    /// The name asked for; null for flows to an address no DNS answer named (`unresolved`).
    pub name: Option<String>,
    pub addresses: Vec<IpAddr>,
    pub ports: Vec<u16>,
    pub cname_chain: Vec<String>,
    pub flows: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub processes: Vec<Process>,
    pub status: Status,
    pub reasons: Vec<Reason>,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    #[serde(default)]
    pub throughput: ThroughputStats,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowReport {
    pub flow_id: u64,
    pub process: Process,
    pub src: String,
    pub dst: String,
    pub name: Option<String>,
    pub cname_chain: Vec<String>,
    pub groups: Vec<String>,
    pub class: DestinationClass,
    /// Null while the flow was still open when the capture ended.
    pub outcome: Option<Outcome>,
    pub closed_by: Option<ClosedBy>,
    pub error: Option<String>,
    pub established: bool,
    pub rst_received: bool,
    pub syn_retransmits: u32,
    pub retransmits: u32,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub opened_at: Option<String>,
    pub closed_at: Option<String>,
    /// Connected before the capture started: `opened_at` is when it was first seen moving
    /// payload, and bytes count from there.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopted: bool,
    /// What the runner uses the destination for, when its name tells.
    pub function: Option<String>,
    #[serde(default)]
    pub throughput: ThroughputStats,
    /// Time from the last payload to the close.
    pub idle_ms: Option<f64>,
    /// The rhythm of requests on a long-lived connection to a required group: the runner's long
    /// poll sends one about every 50 s.
    pub long_poll: Option<LongPoll>,
}

/// Requests on a long-lived connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LongPoll {
    /// Readings in which the client sent something.
    pub requests: usize,
    /// Median time between them, in seconds.
    pub cadence_s: f64,
}

/// RFC 3339 time of a Unix-epoch nanosecond timestamp.
pub fn rfc3339(ns: u64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .ok()?
        .format(&Rfc3339)
        .ok()
}

/// Whether a flow is a failed attempt to reach its destination, and the reason code. A flow
/// that was established and received data reached its destination, however it ended: servers
/// often reset a connection they are done with.
pub fn failure(flow: &FlowEntry) -> Option<&'static str> {
    let outcome = flow.outcome?;
    let established = flow.established_ns.is_some();
    match outcome {
        Outcome::Refused => Some("tcp_reset"),
        Outcome::Unreachable => Some("tcp_unreachable"),
        Outcome::Timeout if !established => Some("tcp_timeout"),
        Outcome::Error if !established => Some("tcp_error"),
        _ if !established || flow.bytes_received > 0 => None,
        // Cut by the far side after the client spoke and before any answer: the signature of
        // SNI-filtering firewalls.
        Outcome::Reset | Outcome::Closed
            if flow.bytes_sent > 0
                && (outcome == Outcome::Reset || flow.closed_by == Some(ClosedBy::Peer)) =>
        {
            Some("tls_reset")
        }
        Outcome::Reset | Outcome::Timeout | Outcome::Error => Some("connection_reset"),
        Outcome::Closed | Outcome::Aborted => None,
    }
}

/// A successful flow: established, and not a failure.
fn success(flow: &FlowEntry) -> bool {
    flow.established_ns.is_some() && failure(flow).is_none()
}

/// The occurrences of one reason.
#[derive(Clone, Debug)]
struct Occurrences {
    count: u64,
    first_ns: u64,
    last_ns: u64,
    process: Option<Process>,
    detail: Option<String>,
}

/// A flow that worked, but not well: too slow for the runner, or a long poll cut short.
pub fn warning(flow: &FlowEntry, c: &Correlator) -> Option<(&'static str, String)> {
    let limits = c.limits();
    if flow.established_ns.is_none() || failure(flow).is_some() {
        return None;
    }
    // Closed or reset by the far side (or a middlebox) after an idle time well below the long
    // poll's: the runner's long poll would have been cut.
    if let Some(idle_ms) = flow.idle_ms {
        let cut_by_far_side = flow.closed_by == Some(ClosedBy::Peer)
            || matches!(
                flow.outcome,
                Some(Outcome::Reset | Outcome::Timeout | Outcome::Error)
            );
        let long_poll_ms = limits.long_poll_ns as f64 / 1e6;
        if cut_by_far_side
            && c.reaches_required_group(&flow.destination)
            && idle_ms >= long_poll_ms * 0.02
            && idle_ms < long_poll_ms * 0.9
        {
            return Some((
                "long_poll_cut",
                format!(
                    "cut after {:.1} s idle by the far side (the runner's long poll waits {:.0} s)",
                    idle_ms / 1e3,
                    long_poll_ms / 1e3
                ),
            ));
        }
    }
    for (word, samples) in [
        ("received", &flow.throughput.received),
        ("sent", &flow.throughput.sent),
    ] {
        let Some(stats) = samples.stats() else {
            continue;
        };
        if stats.bytes >= SLOW_MIN_BYTES && stats.median_bps < limits.min_bps {
            return Some((
                "slow_throughput",
                format!(
                    "{word} {} at a median {} over {:.1} s (minimum {})",
                    crate::output::bytes(stats.bytes),
                    crate::output::rate(stats.median_bps),
                    stats.active_s,
                    crate::output::rate(limits.min_bps)
                ),
            ));
        }
    }
    None
}

/// Accumulates the evidence about one destination.
#[derive(Default)]
struct Tally {
    flows: u64,
    successes: u64,
    failures: u64,
    bytes_sent: u64,
    bytes_received: u64,
    addresses: BTreeSet<IpAddr>,
    ports: BTreeSet<u16>,
    processes: BTreeSet<Process>,
    cname_chain: Vec<String>,
    first_ns: Option<u64>,
    last_ns: Option<u64>,
    reasons: BTreeMap<&'static str, Occurrences>,
    /// Attempts that worked, but not well (slow, cut long polls).
    warnings: u64,
    function: Option<&'static str>,
}

impl Tally {
    fn seen(&mut self, ns: u64) {
        self.first_ns = Some(self.first_ns.map_or(ns, |f| f.min(ns)));
        self.last_ns = Some(self.last_ns.map_or(ns, |l| l.max(ns)));
    }

    fn reason(&mut self, code: &'static str, ns: u64, process: Option<&Process>) {
        self.occurrence(code, 1, ns, ns, process.cloned(), None);
    }

    fn occurrence(
        &mut self,
        code: &'static str,
        count: u64,
        first: u64,
        last: u64,
        process: Option<Process>,
        detail: Option<String>,
    ) {
        let r = self.reasons.entry(code).or_insert(Occurrences {
            count: 0,
            first_ns: first,
            last_ns: last,
            process: None,
            detail: None,
        });
        r.count += count;
        r.first_ns = r.first_ns.min(first);
        if last >= r.last_ns || r.process.is_none() {
            r.last_ns = r.last_ns.max(last);
            if process.is_some() {
                r.process = process;
            }
            if detail.is_some() {
                r.detail = detail;
            }
        }
    }

    fn add_flow(&mut self, f: &FlowEntry, sinkhole: bool, c: &Correlator) {
        self.flows += 1;
        self.function = self
            .function
            .or(f.destination.name.as_deref().and_then(runner_function));
        self.bytes_sent += f.bytes_sent;
        self.bytes_received += f.bytes_received;
        self.addresses.insert(f.dst.ip());
        self.ports.insert(f.dst.port());
        self.processes.insert(f.process.clone());
        if self.cname_chain.is_empty() {
            self.cname_chain.clone_from(&f.destination.cname_chain);
        }
        self.seen(f.opened_ns);
        if let Some(closed) = f.closed_ns {
            self.seen(closed);
        }
        if sinkhole {
            // A connection to a DNS filter's sinkhole proves nothing about the real host; the
            // answer itself is counted as `dns_sinkhole`.
            return;
        }
        if let Some(code) = failure(f) {
            self.failures += 1;
            self.reason(code, f.closed_ns.unwrap_or(f.opened_ns), Some(&f.process));
        } else if success(f) {
            self.successes += 1;
            if let Some((code, detail)) = warning(f, c) {
                self.warnings += 1;
                let at = f.closed_ns.unwrap_or(f.opened_ns);
                self.occurrence(code, 1, at, at, Some(f.process.clone()), Some(detail));
            }
        }
    }

    fn add_timeouts(&mut self, t: &DnsTimeouts) {
        self.seen(t.first_ns);
        self.seen(t.last_ns);
        self.failures += t.count;
        self.occurrence(
            "dns_timeout",
            t.count,
            t.first_ns,
            t.last_ns,
            t.process.clone(),
            None,
        );
    }

    fn add_dns(&mut self, record: &NameRecord, is_sinkhole: impl Fn(IpAddr) -> bool) {
        self.addresses.extend(record.addresses.iter().copied());
        self.processes.extend(record.processes.iter().cloned());
        if !record.cname_chain.is_empty() {
            self.cname_chain.clone_from(&record.cname_chain);
        }
        self.seen(record.first_seen_ns);
        self.seen(record.last_seen_ns);
        let code = match record.rcode.as_deref() {
            Some("NXDOMAIN") => Some("dns_nxdomain"),
            Some("SERVFAIL") => Some("dns_servfail"),
            Some("REFUSED") => Some("dns_refused"),
            Some("NOERROR")
                if !record.addresses.is_empty()
                    && record.addresses.iter().all(|a| is_sinkhole(*a)) =>
            {
                Some("dns_sinkhole")
            }
            Some("NOERROR") if record.addresses.is_empty() && self.flows == 0 => {
                Some("dns_no_address")
            }
            _ => None,
        };
        if let Some(code) = code {
            self.failures += 1;
            self.reason(code, record.last_seen_ns, record.processes.first());
        }
    }

    fn status(&self) -> Status {
        match (self.successes, self.failures) {
            (0, 0) => Status::Unseen,
            (0, _) => Status::Blocked,
            (_, 0) if self.warnings == 0 => Status::Ok,
            _ => Status::Degraded,
        }
    }

    fn reasons(&self) -> Vec<Reason> {
        self.reasons
            .iter()
            .map(|(code, o)| Reason {
                code: (*code).to_owned(),
                count: o.count,
                first_seen: rfc3339(o.first_ns),
                last_seen: rfc3339(o.last_ns),
                process: o.process.clone(),
                detail: o.detail.clone(),
            })
            .collect()
    }
}

/// Builds the report of everything the correlator has seen.
pub fn build(c: &Correlator) -> Report {
    let catalog = c.catalog();
    // Flows by the name they reached, and by address for unresolved ones.
    let mut by_name: BTreeMap<String, Tally> = BTreeMap::new();
    let mut unresolved: BTreeMap<IpAddr, Tally> = BTreeMap::new();
    let mut declared_names: BTreeSet<String> = BTreeSet::new();
    for f in c.flows() {
        match &f.destination.name {
            Some(name) => {
                if f.destination.class == DestinationClass::Declared {
                    declared_names.insert(name.clone());
                }
                let sinkhole = c.is_sinkhole(f.dst.ip());
                by_name
                    .entry(name.clone())
                    .or_default()
                    .add_flow(f, sinkhole, c);
            }
            None => unresolved
                .entry(f.dst.ip())
                .or_default()
                .add_flow(f, false, c),
        }
    }
    for record in c.names().names() {
        let tally = by_name.entry(record.name.clone()).or_default();
        tally.add_dns(record, |a| c.is_sinkhole(a));
    }
    for (name, timeouts) in c.dns_timeouts() {
        by_name
            .entry(name.clone())
            .or_default()
            .add_timeouts(timeouts);
    }

    // Documented exact names first (catalog order), then observed members of wildcards.
    let mut hosts: Vec<HostReport> = Vec::new();
    let empty = Tally::default();
    for name in catalog.exact_names() {
        let tally = by_name.get(name).unwrap_or(&empty);
        hosts.push(host_report(
            c,
            name,
            name.to_owned(),
            c.groups_for(name, None),
            tally,
        ));
    }
    let mut undeclared = Vec::new();
    for (name, tally) in &by_name {
        let groups = c.groups_for(name, None);
        let is_exact = catalog.exact_names().contains(&name.as_str());
        if is_exact {
            continue;
        }
        let patterns: Vec<String> = catalog
            .matches(name)
            .iter()
            .map(|m| m.pattern.as_str().to_owned())
            .collect();
        // Declared by name, but every flow went to a port no group lists: still undeclared.
        let only_other_ports = tally.flows > 0 && !declared_names.contains(name);
        if groups.is_empty() || only_other_ports {
            undeclared.push(undeclared_report(c, Some(name.clone()), name, tally));
            continue;
        }
        // The most specific wildcard that matched.
        let pattern = patterns
            .iter()
            .max_by_key(|p| p.len())
            .cloned()
            .unwrap_or_default();
        hosts.push(host_report(c, name, pattern, groups, tally));
    }
    for (addr, tally) in &unresolved {
        undeclared.push(undeclared_report(c, None, &addr.to_string(), tally));
    }
    undeclared.sort_by(|a, b| {
        (b.flows, b.bytes_sent + b.bytes_received, &a.name)
            .cmp(&(a.flows, a.bytes_sent + a.bytes_received, &b.name))
            .then_with(|| a.addresses.cmp(&b.addresses))
    });

    let groups: Vec<GroupReport> = catalog
        .groups()
        .iter()
        .map(|g| {
            let members: Vec<&HostReport> =
                hosts.iter().filter(|h| h.groups.contains(&g.id)).collect();
            let failing: Vec<String> = members
                .iter()
                .filter(|h| matches!(h.status, Status::Blocked | Status::Degraded))
                .map(|h| h.name.clone())
                .collect();
            let exact_blocked = members
                .iter()
                .any(|h| h.status == Status::Blocked && !crate::catalog::is_wildcard(&h.pattern));
            let status = if exact_blocked {
                Status::Blocked
            } else if !failing.is_empty() {
                Status::Degraded
            } else if members.iter().any(|h| h.status == Status::Ok) {
                Status::Ok
            } else {
                Status::Unseen
            };
            GroupReport {
                id: g.id.clone(),
                title: g.title.clone(),
                required: g.required,
                summary: g.summary,
                status,
                hosts: members.iter().map(|h| h.name.clone()).collect(),
                failing_hosts: failing,
                flows: members.iter().map(|h| h.flows).sum(),
                bytes_sent: members.iter().map(|h| h.bytes_sent).sum(),
                bytes_received: members.iter().map(|h| h.bytes_received).sum(),
                throughput: series_stats(c.group_series(&g.id)),
            }
        })
        .collect();

    Report {
        schema_version: SCHEMA_VERSION,
        generator: concat!("observer ", env!("CARGO_PKG_VERSION")).to_owned(),
        verdict: verdict(&groups, &hosts),
        capture: capture_section(c),
        groups,
        hosts,
        undeclared,
        flows: c.flows().iter().map(|f| flow_report(f, c)).collect(),
    }
}

fn verdict(groups: &[GroupReport], hosts: &[HostReport]) -> Verdict {
    let explain = |g: &GroupReport| GroupVerdict {
        group: g.id.clone(),
        title: g.title.clone(),
        status: g.status,
        because: g
            .failing_hosts
            .iter()
            .map(|name| {
                let codes: Vec<&str> = hosts
                    .iter()
                    .find(|h| &h.name == name)
                    .map(|h| h.reasons.iter().map(|r| r.code.as_str()).collect())
                    .unwrap_or_default();
                format!("{name} ({})", codes.join(", "))
            })
            .collect(),
    };
    let required: Vec<GroupVerdict> = groups.iter().filter(|g| g.required).map(explain).collect();
    let failing_features: Vec<GroupVerdict> = groups
        .iter()
        .filter(|g| {
            !g.required && !g.summary && matches!(g.status, Status::Blocked | Status::Degraded)
        })
        .map(explain)
        .collect();
    let failed = |g: &GroupVerdict| matches!(g.status, Status::Blocked | Status::Degraded);
    let runner_can_work = if required.iter().any(failed) {
        Some(false)
    } else if !required.is_empty() && required.iter().all(|g| g.status == Status::Ok) {
        Some(true)
    } else {
        None
    };

    let failing: Vec<String> = required
        .iter()
        .filter(|g| g.status != Status::Ok)
        .flat_map(|g| g.because.clone())
        .collect();
    let mut summary = match runner_can_work {
        Some(true) => "The runner can work: its essential hosts were reached.".to_owned(),
        Some(false) if required.iter().any(|g| g.status == Status::Blocked) => {
            format!(
                "The runner cannot work: essential hosts are blocked: {}.",
                failing.join("; ")
            )
        }
        Some(false) => format!(
            "The runner is unreliable: some attempts to essential hosts failed: {}.",
            failing.join("; ")
        ),
        None => "Unknown: no essential host was contacted in the capture window.".to_owned(),
    };
    if !failing_features.is_empty() {
        let titles: Vec<String> = failing_features
            .iter()
            .map(|f| format!("{} ({})", f.title, status_word(f.status)))
            .collect();
        summary.push_str(&format!(" Features that will fail: {}.", titles.join(", ")));
    }
    Verdict {
        runner_can_work,
        summary,
        required,
        failing_features,
    }
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Ok => "ok",
        Status::Degraded => "degraded",
        Status::Blocked => "blocked",
        Status::Unseen => "unseen",
    }
}

fn series_stats(series: Option<&crate::throughput::Series>) -> ThroughputStats {
    series.map(|s| s.throughput().stats()).unwrap_or_default()
}

fn host_report(
    c: &Correlator,
    name: &str,
    pattern: String,
    groups: Vec<String>,
    t: &Tally,
) -> HostReport {
    HostReport {
        name: name.to_owned(),
        pattern,
        groups,
        status: t.status(),
        reasons: t.reasons(),
        addresses: t.addresses.iter().copied().collect(),
        cname_chain: t.cname_chain.clone(),
        flows: t.flows,
        bytes_sent: t.bytes_sent,
        bytes_received: t.bytes_received,
        processes: t.processes.iter().cloned().collect(),
        first_seen: t.first_ns.and_then(rfc3339),
        last_seen: t.last_ns.and_then(rfc3339),
        function: t
            .function
            .or_else(|| runner_function(name))
            .map(str::to_owned),
        throughput: series_stats(c.host_series(name)),
    }
}

fn undeclared_report(
    c: &Correlator,
    name: Option<String>,
    key: &str,
    t: &Tally,
) -> UndeclaredReport {
    UndeclaredReport {
        name,
        addresses: t.addresses.iter().copied().collect(),
        ports: t.ports.iter().copied().collect(),
        cname_chain: t.cname_chain.clone(),
        flows: t.flows,
        bytes_sent: t.bytes_sent,
        bytes_received: t.bytes_received,
        processes: t.processes.iter().cloned().collect(),
        status: t.status(),
        reasons: t.reasons(),
        first_seen: t.first_ns.and_then(rfc3339),
        last_seen: t.last_ns.and_then(rfc3339),
        throughput: series_stats(c.host_series(key)),
    }
}

/// The request rhythm of a long-lived flow to a required group, when it has one.
fn long_poll(f: &FlowEntry, c: &Correlator) -> Option<LongPoll> {
    if !c.reaches_required_group(&f.destination) || f.send_times.len() < 2 {
        return None;
    }
    let mut gaps: Vec<u64> = f
        .send_times
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .collect();
    gaps.sort_unstable();
    let median = gaps[gaps.len() / 2];
    // Requests at least a few seconds apart: a poll, not a transfer.
    (median >= 1_500_000_000).then(|| LongPoll {
        requests: f.send_times.len(),
        cadence_s: (median as f64 / 1e8).round() / 10.0,
    })
}

fn flow_report(f: &FlowEntry, c: &Correlator) -> FlowReport {
    FlowReport {
        flow_id: f.flow_id,
        process: f.process.clone(),
        src: f.src.to_string(),
        dst: f.dst.to_string(),
        name: f.destination.name.clone(),
        cname_chain: f.destination.cname_chain.clone(),
        groups: f.destination.groups.clone(),
        class: f.destination.class,
        outcome: f.outcome,
        closed_by: f.closed_by,
        error: f.error.clone(),
        established: f.established_ns.is_some(),
        rst_received: f.rst_received,
        syn_retransmits: f.syn_retransmits,
        retransmits: f.retransmits,
        bytes_sent: f.bytes_sent,
        bytes_received: f.bytes_received,
        opened_at: rfc3339(f.opened_ns),
        closed_at: f.closed_ns.and_then(rfc3339),
        adopted: f.adopted,
        function: f
            .destination
            .name
            .as_deref()
            .and_then(runner_function)
            .map(str::to_owned),
        throughput: f.throughput.stats(),
        idle_ms: f.idle_ms,
        long_poll: long_poll(f, c),
    }
}

fn capture_section(c: &Correlator) -> CaptureSection {
    let info = c.capture();
    let s = info.stats;
    let mut incomplete = Vec::new();
    if s.lost_events > 0 {
        incomplete.push(format!(
            "{} kernel events were lost (ring buffer full)",
            s.lost_events
        ));
    }
    for p in info.probes.iter().filter(|p| !p.attached) {
        incomplete.push(format!("probe {} ({}) was not attached", p.program, p.hook));
    }
    if info.probes.is_empty() {
        incomplete.push("the capture's start was not recorded (no capture_started event)".into());
    }
    if s.undecodable_events > 0 {
        incomplete.push(format!(
            "{} kernel events could not be decoded",
            s.undecodable_events
        ));
    }
    if info.flows_dropped > 0 {
        incomplete.push(format!(
            "{} flows beyond the report's limit were not kept",
            info.flows_dropped
        ));
    }
    if info.unreadable_lines > 0 {
        incomplete.push(format!(
            "{} event-log lines could not be read",
            info.unreadable_lines
        ));
    }
    let duration_ns = match (info.started_ns, info.ended_ns) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => 0,
    };
    CaptureSection {
        started_at: info.started_ns.and_then(rfc3339),
        ended_at: info.ended_ns.and_then(rfc3339),
        duration_s: (duration_ns as f64 / 1e6).round() / 1e3,
        ports: info.ports.clone(),
        all_ports: info.all_ports,
        probes: info.probes.clone(),
        events: s.events,
        lost_events: s.lost_events,
        undecodable_events: s.undecodable_events,
        malformed_dns: s.malformed_dns,
        dns_skipped: s.dns_skipped,
        flows_dropped: info.flows_dropped,
        unreadable_lines: info.unreadable_lines,
        name_cache: c.names().stats(),
        local_resolvers: c.local_resolvers().to_vec(),
        data_sources: info.sources.clone(),
        notes: info
            .sources
            .iter()
            .filter(|s| s.fallback)
            .map(|s| s.detail.clone())
            .collect(),
        complete: incomplete.is_empty(),
        incomplete_because: incomplete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        catalog::Catalog,
        correlate::tests::{closed, opened, query, response},
        events::Observed,
    };

    const S: u64 = 1_000_000_000;

    fn host<'a>(r: &'a Report, name: &str) -> &'a HostReport {
        r.hosts.iter().find(|h| h.name == name).expect("host")
    }

    fn report(events: Vec<(u64, Observed)>, sinkholes: Vec<IpAddr>) -> Report {
        let mut c = Correlator::new(Catalog::builtin()).with_sinkholes(sinkholes);
        for (ts, mut o) in events {
            c.observe(ts, &mut o);
        }
        c.finish();
        build(&c)
    }

    #[test]
    fn unanswered_queries_are_dns_timeouts_and_retries_are_forgiven() {
        let r = report(
            vec![
                (S, query(1, "api.github.com")),
                (S, query(2, "github.com")),
                // github.com's resolver retried on another socket and got an answer.
                (2 * S, query(3, "github.com")),
                (
                    2 * S,
                    response("github.com", &[("github.com", "A", "198.18.1.1")]),
                ),
                (10 * S, query(4, "codeload.github.com")), // too recent to judge
                (11 * S, query(5, "ghcr.io")),
            ],
            vec![],
        );
        let api = host(&r, "api.github.com");
        assert_eq!(api.status, Status::Blocked);
        assert_eq!(api.reasons[0].code, "dns_timeout");
        assert_eq!(api.reasons[0].count, 1);
        assert_eq!(
            api.reasons[0].process.as_ref().map(|p| p.comm.as_str()),
            Some("curl")
        );
        assert!(host(&r, "github.com").reasons.is_empty());
        assert_eq!(host(&r, "codeload.github.com").status, Status::Unseen);
        assert_eq!(r.verdict.runner_can_work, Some(false));
        assert!(
            r.verdict.summary.contains("api.github.com (dns_timeout)"),
            "{}",
            r.verdict.summary
        );
    }

    /// A DNS packet of `comm` (pid `pid`) on socket `cookie`, to or from `server`.
    fn via(mut o: Observed, comm: &str, pid: u32, cookie: u64, server: &str) -> Observed {
        let (Observed::DnsQuery(d) | Observed::DnsResponse(d)) = &mut o else {
            unreachable!()
        };
        d.process = Some(Process {
            pid,
            comm: comm.into(),
            cgroup_id: 3,
        });
        d.socket_cookie = cookie;
        d.server = server.parse().unwrap();
        o
    }

    #[test]
    fn behind_a_local_stub_resolver_lookups_are_the_clients() {
        const STUB: &str = "127.0.0.53:53";
        const UPSTREAM: &str = "198.18.0.2:53";
        let api = [("api.github.com", "A", "198.18.1.10")];
        let r = report(
            vec![
                // curl asks the stub, the stub asks upstream, both get the answer.
                (S, via(query(1, "api.github.com"), "curl", 10, 1, STUB)),
                (
                    S,
                    via(query(1, "api.github.com"), "resolved", 5, 2, UPSTREAM),
                ),
                (
                    S,
                    via(response("api.github.com", &api), "resolved", 5, 2, UPSTREAM),
                ),
                (
                    S,
                    via(response("api.github.com", &api), "curl", 10, 1, STUB),
                ),
                // A name upstream never answers: the stub retries, curl gives up once.
                (2 * S, via(query(3, "ghcr.io"), "curl", 10, 3, STUB)),
                (2 * S, via(query(4, "ghcr.io"), "resolved", 5, 4, UPSTREAM)),
                (3 * S, via(query(5, "ghcr.io"), "resolved", 5, 5, UPSTREAM)),
                // Two clients of the same stub asking for one name are both clients.
                (4 * S, via(query(6, "github.com"), "git", 20, 6, STUB)),
                (4 * S, via(query(7, "github.com"), "curl", 10, 7, STUB)),
                (20 * S, opened(1, "198.18.1.10:443")),
            ],
            vec![],
        );
        assert_eq!(
            r.capture.local_resolvers,
            [Process {
                pid: 5,
                comm: "resolved".into(),
                cgroup_id: 3
            }]
        );
        let api = host(&r, "api.github.com");
        let comms: Vec<&str> = api.processes.iter().map(|p| p.comm.as_str()).collect();
        assert_eq!(comms, ["curl"], "the stub is not a user of the host");
        let ghcr = host(&r, "ghcr.io");
        assert_eq!(ghcr.reasons[0].code, "dns_timeout");
        assert_eq!(
            ghcr.reasons[0].count, 1,
            "curl's one query, not the stub's two"
        );
        assert_eq!(
            ghcr.reasons[0].process.as_ref().map(|p| p.comm.as_str()),
            Some("curl")
        );
        let github = host(&r, "github.com");
        assert_eq!(github.reasons[0].count, 2, "git and curl each timed out");
    }

    #[test]
    fn sinkhole_answers_block_the_name_and_connections_to_them_prove_nothing() {
        let r = report(
            vec![
                (S, response("ghcr.io", &[("ghcr.io", "A", "0.0.0.0")])),
                (
                    S,
                    response(
                        "codeload.github.com",
                        &[("codeload.github.com", "A", "198.18.9.9")],
                    ),
                ),
                (2 * S, opened(1, "0.0.0.0:443")),
                (3 * S, closed(1, "0.0.0.0:443", true, 100, 100)),
            ],
            vec!["198.18.9.9".parse().unwrap()],
        );
        let ghcr = host(&r, "ghcr.io");
        assert_eq!(ghcr.status, Status::Blocked);
        assert_eq!(ghcr.reasons[0].code, "dns_sinkhole");
        assert_eq!(
            host(&r, "codeload.github.com").reasons[0].code,
            "dns_sinkhole"
        );
        let packages = r.groups.iter().find(|g| g.id == "packages").unwrap();
        assert_eq!(packages.status, Status::Blocked);
        assert_eq!(r.verdict.runner_can_work, None, "{}", r.verdict.summary);
        let features: Vec<&str> = r
            .verdict
            .failing_features
            .iter()
            .map(|f| f.group.as_str())
            .collect();
        assert_eq!(
            features,
            ["actions-download", "immutable-actions", "packages"]
        );
        assert!(
            r.verdict.summary.starts_with("Unknown: no essential host"),
            "{}",
            r.verdict.summary
        );
    }

    #[test]
    fn some_addresses_failing_make_a_host_degraded_and_the_verdict_says_so() {
        let r = report(
            vec![
                (
                    S,
                    response(
                        "api.github.com",
                        &[
                            ("api.github.com", "A", "198.18.1.10"),
                            ("api.github.com", "A", "198.18.1.11"),
                        ],
                    ),
                ),
                (2 * S, opened(1, "198.18.1.11:443")),
                (2 * S, closed(1, "198.18.1.11:443", false, 0, 0)),
                (2 * S, opened(2, "198.18.1.10:443")),
                (3 * S, closed(2, "198.18.1.10:443", true, 500, 4000)),
            ],
            vec![],
        );
        let api = host(&r, "api.github.com");
        assert_eq!(api.status, Status::Degraded);
        assert_eq!(api.reasons[0].code, "tcp_reset");
        let essential = &r.groups[0];
        assert_eq!(
            (essential.id.as_str(), essential.status),
            ("essential", Status::Degraded)
        );
        assert_eq!(essential.failing_hosts, ["api.github.com"]);
        assert_eq!(r.verdict.runner_can_work, Some(false));
        assert!(
            r.verdict.summary.starts_with("The runner is unreliable"),
            "{}",
            r.verdict.summary
        );
    }

    #[test]
    fn a_reset_right_after_the_client_hello_is_tls_reset() {
        let r = report(
            vec![
                (
                    S,
                    response("github.com", &[("github.com", "A", "198.18.1.1")]),
                ),
                (2 * S, opened(1, "198.18.1.1:443")),
                (2 * S, closed(1, "198.18.1.1:443", true, 517, 0)),
            ],
            vec![],
        );
        let gh = host(&r, "github.com");
        assert_eq!(
            (gh.status, gh.reasons[0].code.as_str()),
            (Status::Blocked, "tls_reset")
        );
        assert!(
            r.verdict.summary.starts_with("The runner cannot work"),
            "{}",
            r.verdict.summary
        );
    }
}
