//! What the TUI shows, built from the correlator at one instant: the verdict, capture health,
//! one row per group, host, undeclared destination and recent flow, with live rates.
//!
//! [`build_with`] is a pure function of the correlator, the [`Digest`] of the closed flows it
//! already read, and "now" (nanoseconds since the Unix epoch: the wall clock when live, the
//! replay's clock otherwise), so every frame can be rebuilt in tests from a recorded event log.
//! It does not build the report (`report::build` reads every flow, and stays for the `e`
//! export): its rows come from per-destination tallies ([`super::digest`]) judged by the
//! report's own rules, so a tick costs the open flows and the groups and names, not the closed
//! flows kept. Text that comes from the network or from processes (DNS
//! names, process names) is made printable here, once: nothing that reaches the terminal can be
//! an escape sequence.

use crate::{
    capture::record::Process,
    pipeline::correlate::{series_key, Correlator, FlowEntry},
    pipeline::events::{ClosedBy, DestinationClass, NamedBy, Outcome},
    pipeline::throughput::{runner_function, Series, ThroughputStats, TransferStats},
    report::{
        self, classify,
        tally::{group_status, runner_can_work, Destinations, HostEvidence, Tally},
        vocab::Reason,
        Status,
    },
};

use super::digest::Digest;

/// One second, in nanoseconds.
pub const SECOND: u64 = 1_000_000_000;
/// The window of the "current" rate.
pub const NOW_WINDOW: u64 = SECOND;
/// The window of the "recent" rate.
pub const RECENT_WINDOW: u64 = 10 * SECOND;
/// Seconds of per-group history behind the sparklines (five minutes).
pub const HISTORY_S: usize = 300;
/// Closed flows kept in the view (the most recent); open flows are always all there.
pub const MAX_CLOSED_FLOWS: usize = 2_000;

/// Can the runner work, at a glance (from the report's verdict).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerdictState {
    /// Every required group was reached and none failed.
    CanWork,
    /// A required group is blocked: the runner cannot work.
    Blocked,
    /// Some attempts to a required group failed: the runner is unreliable.
    Degraded,
    /// No required host was contacted yet.
    Unknown,
}

impl VerdictState {
    pub fn word(self) -> &'static str {
        match self {
            Self::CanWork => "RUNNER CAN WORK",
            Self::Blocked => "ESSENTIAL HOSTS BLOCKED",
            Self::Degraded => "DEGRADED",
            Self::Unknown => "NO ESSENTIAL HOST SEEN YET",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub state: VerdictState,
    /// Required groups that fail, with their failing hosts: `api.github.com (tcp_reset)`.
    pub because: Vec<String>,
    /// Optional groups that are blocked or degraded (their ids).
    pub failing_features: Vec<String>,
}

/// How complete the capture is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CaptureHealth {
    pub started_ns: Option<u64>,
    pub last_event_ns: Option<u64>,
    pub ports: Vec<u16>,
    pub all_ports: bool,
    pub probes_attached: usize,
    pub probes_total: usize,
    /// Probes that failed to attach: `dns_ingress (cgroup_skb ingress ...): error`.
    pub unattached: Vec<String>,
    pub lost_events: u64,
    pub undecodable_events: u64,
    /// Needs served by a fallback on this kernel, in a few words (`bytes polled 1/s`).
    pub fallbacks: Vec<String>,
    /// HTTP proxies watched, and where each was found: flows to them are named by what the
    /// client asked them for.
    pub proxies: Vec<WatchedProxyRow>,
}

/// An HTTP proxy the capture watches.
#[derive(Clone, Debug, PartialEq)]
pub struct WatchedProxyRow {
    /// `198.18.1.5:3128`.
    pub addr: String,
    /// Where it was found (`--proxy`, a runner's environment, ...).
    pub source: String,
}

/// Rates in bits per second.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rates {
    pub now_up: f64,
    pub now_down: f64,
    pub recent_up: f64,
    pub recent_down: f64,
}

impl Rates {
    fn of(series: Option<&Series>, now_ns: u64) -> Self {
        let Some(s) = series else {
            return Self::default();
        };
        let (now_up, now_down) = s.rate(now_ns, NOW_WINDOW);
        let (recent_up, recent_down) = s.rate(now_ns, RECENT_WINDOW);
        Self {
            now_up,
            now_down,
            recent_up,
            recent_down,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct GroupRow {
    pub id: String,
    pub title: String,
    pub required: bool,
    pub summary: bool,
    pub status: Status,
    /// Host entries of the group.
    pub members: usize,
    /// Members reached (ok or degraded).
    pub reached: usize,
    /// Members blocked.
    pub blocked: usize,
    /// Members blocked or degraded.
    pub failing: Vec<String>,
    pub flows: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub rates: Rates,
    /// The higher of the up and down rates in each of the last `HISTORY_S` seconds, oldest
    /// first.
    pub history: Vec<f64>,
    pub throughput: ThroughputStats,
    /// Transfers (docs/throughput.md): what `slow_throughput` judges.
    pub transfers: TransferStats,
}

/// One failure (or warning) reason of a host, with its timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct ReasonRow {
    pub code: String,
    /// For DNS codes, the record type that failed.
    pub record_type: Option<String>,
    pub count: u64,
    pub first_ns: Option<u64>,
    pub last_ns: Option<u64>,
    pub process: Option<String>,
    pub detail: Option<String>,
}

/// A documented host, an observed member of a documented wildcard, or an undeclared
/// destination (by name, or by address when no DNS answer named it).
#[derive(Clone, Debug, PartialEq)]
pub struct HostRow {
    /// The name, or the address of an unresolved destination: what the row is known by.
    pub label: String,
    pub unresolved: bool,
    /// The catalog pattern that matched (documented hosts only).
    pub pattern: Option<String>,
    pub groups: Vec<String>,
    pub status: Status,
    pub reasons: Vec<ReasonRow>,
    /// DNS failures of one record type while another answered: `dns_refused AAAA ×2`.
    pub notes: Vec<String>,
    pub addresses: Vec<String>,
    /// HTTP proxies its flows went through (their addresses are not the host's).
    pub via_proxies: Vec<String>,
    /// How its flows were named when not by a DNS answer (SNI, CONNECT, HTTP host).
    pub named_by: Vec<NamedBy>,
    pub ports: Vec<u16>,
    pub cname_chain: Vec<String>,
    pub flows: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub processes: Vec<String>,
    pub function: Option<String>,
    pub first_ns: Option<u64>,
    pub last_ns: Option<u64>,
    pub rates: Rates,
    pub throughput: ThroughputStats,
    /// Transfers (docs/throughput.md): what `slow_throughput` judges.
    pub transfers: TransferStats,
}

impl HostRow {
    /// The name column in `width` characters: the label, and the proxy its flows went through
    /// (`api.github.com via proxy 198.18.1.5:3128`), without its address when that does not
    /// fit (the details have it).
    pub fn name_cell(&self, width: usize) -> String {
        let long = match self.via_proxies.as_slice() {
            [] => return self.label.clone(),
            [one] => format!("{} via proxy {one}", self.label),
            several => format!("{} via proxies {}", self.label, several.join(", ")),
        };
        if long.chars().count() <= width {
            long
        } else {
            format!("{} via proxy", self.label)
        }
    }

    /// `tcp_reset×3, dns_nxdomain A/AAAA×2` (the record types of a DNS code joined).
    pub fn reason_codes(&self) -> String {
        let mut grouped: Vec<(String, Vec<String>, u64)> = Vec::new();
        for r in &self.reasons {
            match grouped.iter_mut().find(|(code, ..)| *code == r.code) {
                Some((_, types, count)) => {
                    types.extend(r.record_type.clone());
                    *count += r.count;
                }
                None => grouped.push((
                    r.code.clone(),
                    r.record_type.clone().into_iter().collect(),
                    r.count,
                )),
            }
        }
        grouped
            .into_iter()
            .map(|(code, types, count)| {
                let label = if types.is_empty() {
                    code
                } else {
                    format!("{code} {}", types.join("/"))
                };
                if count > 1 {
                    format!("{label}×{count}")
                } else {
                    label
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Where a flow is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FlowState {
    /// SYN sent, no handshake yet.
    Connecting,
    Open,
    Closed,
    /// Closed without reaching its destination (see `failure`).
    Failed,
}

impl FlowState {
    pub fn word(self) -> &'static str {
        match self {
            Self::Connecting => "syn",
            Self::Open => "open",
            Self::Closed => "closed",
            Self::Failed => "FAILED",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct FlowRow {
    pub flow_id: u64,
    /// `curl[4420]`.
    pub process: String,
    /// `curl`.
    pub comm: String,
    /// What the process's cgroup is (a container, a pod, a systemd unit) and its path, when it
    /// is not the root cgroup: `docker 293f758723d0 (/docker/293f…)`.
    pub workload: Option<String>,
    pub src: String,
    pub dst: String,
    /// The name, or the destination address when unresolved.
    pub label: String,
    pub cname_chain: Vec<String>,
    pub groups: Vec<String>,
    pub class: DestinationClass,
    pub name_expired: bool,
    /// How `label` was chosen when not by a DNS answer: SNI, CONNECT, HTTP host.
    pub named_by: Option<NamedBy>,
    /// The HTTP proxy the flow went through (`dst`).
    pub via_proxy: Option<String>,
    /// What the client asked the proxy for, `host:port`.
    pub proxy_target: Option<String>,
    /// The proxy's status line: code and reason phrase.
    pub proxy_status: Option<(u16, String)>,
    /// The TLS server name the client sent.
    pub sni: Option<String>,
    /// The name DNS gave the address when the SNI named another host.
    pub dns_name: Option<String>,
    /// Why the TLS hello named nothing (`no_sni`, `ech`, ...).
    pub tls_note: Option<String>,
    pub state: FlowState,
    pub opened_ns: u64,
    /// Connected before the capture: `opened_ns` is its adoption.
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
    /// The reason code when the flow failed to reach its destination.
    pub failure: Option<Reason>,
    /// A flow that worked, but not well: `slow_throughput` or `long_poll_cut`, with evidence.
    pub warning: Option<(Reason, String)>,
    pub idle_ms: Option<f64>,
    pub throughput: ThroughputStats,
    /// Transfers (docs/throughput.md): what `slow_throughput` judges.
    pub transfers: TransferStats,
}

impl FlowRow {
    /// The group column: the first group, or the class when the destination is in none.
    pub fn group(&self) -> &str {
        match (self.groups.first(), self.class) {
            (Some(g), _) => g,
            (None, DestinationClass::Unresolved) => "unresolved",
            (None, _) => "undeclared",
        }
    }

    /// The name column: the label, and how the flow reached it when not directly by a name
    /// DNS gave: through a proxy, with the status it answered (`codeload.github.com via proxy
    /// (403)`), or named by its SNI (`front.example.net (SNI)`).
    pub fn name_cell(&self) -> String {
        if self.via_proxy.is_some() {
            match &self.proxy_status {
                Some((code, _)) => format!("{} via proxy ({code})", self.label),
                None => format!("{} via proxy", self.label),
            }
        } else if self.named_by == Some(NamedBy::Sni) {
            format!("{} (SNI)", self.label)
        } else {
            self.label.clone()
        }
    }

    /// How the name was chosen when not by a DNS answer alone, after `named by`:
    /// `CONNECT to proxy 198.18.1.5:3128`, `SNI (DNS said api.github.com)`.
    pub fn named_by_words(&self) -> Option<String> {
        let proxy = self.via_proxy.as_deref().unwrap_or("?");
        Some(match self.named_by? {
            NamedBy::Connect => format!("CONNECT to proxy {proxy}"),
            NamedBy::HttpHost => format!("the HTTP request to proxy {proxy}"),
            NamedBy::Sni => match &self.dns_name {
                Some(dns) => format!("SNI (DNS said {dns})"),
                None => "SNI (no DNS answer named the address)".to_owned(),
            },
        })
    }

    /// The outcome column: the failure or warning code, else how the flow ended.
    pub fn outcome_word(&self) -> String {
        if let Some(code) = self.failure {
            return code.as_str().to_owned();
        }
        if let Some((code, _)) = &self.warning {
            return code.as_str().to_owned();
        }
        match self.outcome {
            None => "-".to_owned(),
            Some(Outcome::Closed) => "ok".to_owned(),
            Some(o) => format!("ok, {}", o.as_str()),
        }
    }
}

/// Everything one frame shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// The instant the rates are computed at.
    pub now_ns: u64,
    /// Observations fed to the correlator so far (kernel events, or event-log lines).
    pub observations: u64,
    pub verdict: Verdict,
    pub capture: CaptureHealth,
    /// The minimum rate a transfer must reach (`--min-throughput`), in bits per second.
    pub min_bps: f64,
    pub groups: Vec<GroupRow>,
    /// Documented names (catalog order), then observed wildcard members.
    pub hosts: Vec<HostRow>,
    /// Loudest first.
    pub undeclared: Vec<HostRow>,
    /// Open flows and the most recent closed ones, in the order they opened.
    pub flows: Vec<FlowRow>,
    /// Flows the correlator holds (the view keeps only the recent closed ones).
    pub flows_total: usize,
}

impl Snapshot {
    /// The view before anything was observed.
    pub fn empty(now_ns: u64) -> Self {
        Self {
            now_ns,
            observations: 0,
            verdict: Verdict {
                state: VerdictState::Unknown,
                because: Vec::new(),
                failing_features: Vec::new(),
            },
            capture: CaptureHealth::default(),
            min_bps: crate::pipeline::throughput::DEFAULT_MIN_BPS,
            groups: Vec::new(),
            hosts: Vec::new(),
            undeclared: Vec::new(),
            flows: Vec::new(),
            flows_total: 0,
        }
    }
}

/// Builds the view of everything the correlator has seen, with rates at `now_ns`, from
/// scratch (reading every flow once): what tests compare frames and kept digests with. The UI
/// loop keeps a [`Digest`] and calls [`build_with`], so that a tick reads only the flows open or
/// closed since the last.
#[cfg(test)]
pub fn build(c: &Correlator, now_ns: u64, observations: u64) -> Snapshot {
    build_with(&mut Digest::default(), c, now_ns, observations)
}

/// Builds the view from `digest` brought up to date with the correlator: the rows read as the
/// report's (`report::build`) do, from the same classification, without building it.
pub fn build_with(digest: &mut Digest, c: &Correlator, now_ns: u64, observations: u64) -> Snapshot {
    let tallies = digest.tallies(c);
    let catalog = c.catalog();

    // Documented hosts and undeclared destinations, sorted as in the report.
    let Destinations { hosts, undeclared } = tallies.destinations(c);

    let groups: Vec<GroupRow> = catalog
        .groups()
        .iter()
        .map(|g| {
            let members: Vec<&HostEvidence> =
                hosts.iter().filter(|h| h.groups.contains(&g.id)).collect();
            let count = |wanted: &[Status]| {
                members
                    .iter()
                    .filter(|h| wanted.contains(&h.tally.status()))
                    .count()
            };
            let failing: Vec<String> = members
                .iter()
                .filter(|h| matches!(h.tally.status(), Status::Blocked | Status::Degraded))
                .map(|h| clean(h.name))
                .collect();
            let statuses: Vec<(Status, &str)> = members
                .iter()
                .map(|h| (h.tally.status(), h.pattern.as_str()))
                .collect();
            let status = group_status(&statuses);
            let series = c.group_series(&g.id);
            let transfers = members.iter().fold(TransferStats::default(), |mut t, h| {
                t.merge(&h.tally.transfers);
                t
            });
            GroupRow {
                id: clean(&g.id),
                title: clean(&g.title),
                required: g.required,
                summary: g.summary,
                status,
                members: members.len(),
                reached: count(&[Status::Ok, Status::Degraded]),
                blocked: count(&[Status::Blocked]),
                failing,
                flows: members.iter().map(|h| h.tally.flows).sum(),
                bytes_sent: members.iter().map(|h| h.tally.bytes_sent).sum(),
                bytes_received: members.iter().map(|h| h.tally.bytes_received).sum(),
                rates: Rates::of(series, now_ns),
                history: judged_history(
                    history(series, now_ns),
                    &transfers,
                    c.limits().min_bps,
                    now_ns,
                ),
                throughput: series.map(|s| s.throughput().stats()).unwrap_or_default(),
                transfers,
            }
        })
        .collect();

    let verdict = verdict(
        &catalog.groups().iter().zip(&groups).collect::<Vec<_>>(),
        &hosts,
    );
    let info = c.capture();
    let capture = CaptureHealth {
        started_ns: info.started_ns,
        last_event_ns: info.ended_ns,
        ports: info.ports.clone(),
        all_ports: info.all_ports,
        probes_attached: info.probes.iter().filter(|p| p.attached).count(),
        probes_total: info.probes.len(),
        unattached: info
            .probes
            .iter()
            .filter(|p| !p.attached)
            .map(|p| {
                clean(&format!(
                    "{} ({}): {}",
                    p.program,
                    p.hook,
                    p.error.as_deref().unwrap_or("unknown error")
                ))
            })
            .collect(),
        fallbacks: info
            .sources
            .iter()
            .filter(|s| s.fallback)
            .map(|s| clean(&s.short()))
            .collect(),
        lost_events: info.stats.lost_events,
        undecodable_events: info.stats.undecodable_events,
        proxies: info
            .proxies
            .iter()
            .map(|p| WatchedProxyRow {
                addr: p.addr.to_string(),
                source: clean(&p.source.to_string()),
            })
            .collect(),
    };

    let hosts = hosts
        .iter()
        .map(|h| HostRow {
            pattern: Some(clean(&h.pattern)),
            groups: h.groups.clone(),
            function: h
                .tally
                .function
                .or_else(|| runner_function(h.name))
                .map(str::to_owned),
            ..host_row(c, h.name, h.tally, now_ns)
        })
        .collect();
    let undeclared = undeclared
        .iter()
        .map(|u| HostRow {
            unresolved: u.name.is_none(),
            ports: u.tally.ports.iter().copied().collect(),
            ..host_row(c, &u.key, u.tally, now_ns)
        })
        .collect();

    let flows = digest
        .shown_flows(c)
        .into_iter()
        .map(|f| flow_row(f, c))
        .collect();
    Snapshot {
        now_ns,
        observations,
        verdict,
        capture,
        min_bps: c.limits().min_bps,
        groups,
        hosts,
        undeclared,
        flows,
        flows_total: c.flows().len(),
    }
}

/// The verdict from the groups' statuses, as the report judges it: can the runner work, which
/// required hosts fail and why, which optional features fail.
fn verdict(groups: &[(&crate::catalog::Group, &GroupRow)], hosts: &[HostEvidence]) -> Verdict {
    let required: Vec<&GroupRow> = groups
        .iter()
        .filter(|(g, _)| g.required)
        .map(|(_, row)| *row)
        .collect();
    let failed = |s: Status| matches!(s, Status::Blocked | Status::Degraded);
    let state = match runner_can_work(&required.iter().map(|g| g.status).collect::<Vec<_>>()) {
        Some(false) if required.iter().any(|g| g.status == Status::Blocked) => {
            VerdictState::Blocked
        }
        Some(false) => VerdictState::Degraded,
        Some(true) => VerdictState::CanWork,
        None => VerdictState::Unknown,
    };
    let because = groups
        .iter()
        .filter(|(g, _)| g.required)
        .flat_map(|(g, _)| {
            hosts
                .iter()
                .filter(|h| h.groups.contains(&g.id) && failed(h.tally.status()))
                .map(|h| {
                    let labels = report::reason_labels(&h.tally.reasons());
                    clean(&format!("{} ({})", h.name, labels.join(", ")))
                })
        })
        .collect();
    let failing_features = groups
        .iter()
        .filter(|(g, row)| !g.required && !g.summary && failed(row.status))
        .map(|(g, _)| clean(&g.id))
        .collect();
    Verdict {
        state,
        because,
        failing_features,
    }
}

/// The row of a destination known by `key` (its name, or its address), as an undeclared one.
fn host_row(c: &Correlator, key: &str, t: &Tally, now_ns: u64) -> HostRow {
    let series = c.host_series(key);
    HostRow {
        label: clean(key),
        unresolved: false,
        pattern: None,
        groups: Vec::new(),
        status: t.status(),
        reasons: t
            .reasons
            .iter()
            .map(|((code, rtype), o)| ReasonRow {
                code: clean(code),
                record_type: rtype.as_deref().map(clean),
                count: o.count,
                first_ns: Some(o.first_ns),
                last_ns: Some(o.last_ns),
                process: o.process.as_ref().map(process_label),
                detail: o.detail.as_deref().map(clean),
            })
            .collect(),
        notes: notes(&t.dns_notes),
        addresses: t.addresses.iter().map(ToString::to_string).collect(),
        via_proxies: t.proxies.iter().map(ToString::to_string).collect(),
        named_by: t.named_by.iter().copied().collect(),
        ports: Vec::new(),
        cname_chain: t.cname_chain().iter().map(|n| clean(n)).collect(),
        flows: t.flows,
        bytes_sent: t.bytes_sent,
        bytes_received: t.bytes_received,
        processes: t.processes.iter().map(process_label).collect(),
        function: None,
        first_ns: t.first_ns,
        last_ns: t.last_ns,
        rates: Rates::of(series, now_ns),
        throughput: series.map(|s| s.throughput().stats()).unwrap_or_default(),
        transfers: t.transfers.clone(),
    }
}

fn flow_row(f: &FlowEntry, c: &Correlator) -> FlowRow {
    let failure = classify::failure(f);
    let state = match (f.closed_ns, f.established_ns) {
        (Some(_), _) if failure.is_some() => FlowState::Failed,
        (Some(_), _) => FlowState::Closed,
        (None, Some(_)) => FlowState::Open,
        (None, None) => FlowState::Connecting,
    };
    FlowRow {
        flow_id: f.flow_id,
        process: process_label(&f.process),
        comm: clean(&f.process.comm),
        workload: c
            .workload(f.process.cgroup_id)
            .filter(|w| w.cgroup != "/")
            .map(|w| {
                let label = w.label();
                clean(&if label == w.cgroup {
                    label
                } else {
                    format!("{label} ({})", w.cgroup)
                })
            }),
        src: f.src.to_string(),
        dst: f.dst.to_string(),
        label: clean(&series_key(&f.destination, f.dst)),
        cname_chain: f.destination.cname_chain.iter().map(|n| clean(n)).collect(),
        groups: f.destination.groups.clone(),
        class: f.destination.class,
        name_expired: f.destination.name_expired,
        named_by: f.destination.named_by,
        via_proxy: f.destination.via_proxy.map(|p| p.to_string()),
        proxy_target: f.destination.proxy_target.as_deref().map(clean),
        proxy_status: f
            .proxy_status
            .as_ref()
            .map(|(code, reason)| (*code, clean(reason))),
        sni: f.destination.sni.as_deref().map(clean),
        dns_name: f.destination.dns_name.as_deref().map(clean),
        tls_note: f.destination.tls_note.as_deref().map(clean),
        state,
        opened_ns: f.opened_ns,
        adopted: f.adopted,
        established_ns: f.established_ns,
        closed_ns: f.closed_ns,
        outcome: f.outcome,
        closed_by: f.closed_by,
        error: f.error.clone(),
        rst_received: f.rst_received,
        syn_retransmits: f.syn_retransmits,
        retransmits: f.retransmits,
        bytes_sent: f.bytes_sent,
        bytes_received: f.bytes_received,
        failure,
        warning: classify::warning(f, c).map(|(code, detail)| (code, clean(&detail))),
        idle_ms: f.idle_ms,
        throughput: f.throughput.stats(),
        transfers: f.transfers.stats().of_flow(f.flow_id),
    }
}

/// The higher of the two directions' rates in each of the last `HISTORY_S` seconds.
fn history(series: Option<&Series>, now_ns: u64) -> Vec<f64> {
    let Some(series) = series else {
        return vec![0.0; HISTORY_S];
    };
    (0..HISTORY_S as u64)
        .rev()
        .map(|k| {
            let (up, down) = series.rate(now_ns.saturating_sub(k * SECOND), SECOND);
            up.max(down)
        })
        .collect()
}

/// The history as the verdict reads it: the seconds of a slow transfer (the slowest judged one
/// of each direction, under `min_bps`) show that transfer's rate, not the lumps a shaper
/// delivered them in (docs/throughput.md): a 40 kbit/s path through HTB reads as one-second
/// lumps above 70 kbit/s and empty seconds, and the sparkline would contradict the verdict.
fn judged_history(
    mut history: Vec<f64>,
    transfers: &TransferStats,
    min_bps: f64,
    now_ns: u64,
) -> Vec<f64> {
    let len = history.len() as u64;
    for slow in [&transfers.sent.slowest, &transfers.received.slowest]
        .into_iter()
        .flatten()
        .filter(|t| t.rate_bps < min_bps)
    {
        let end_ns = slow.start_ns.saturating_add((slow.seconds * 1e9) as u64);
        // History index i is the second ending at now - (len - 1 - i) s.
        for (i, v) in history.iter_mut().enumerate() {
            let at = now_ns.saturating_sub((len - 1 - i as u64) * SECOND);
            if at > slow.start_ns && at.saturating_sub(SECOND) < end_ns {
                *v = slow.rate_bps;
            }
        }
    }
    history
}

fn notes(list: &[crate::report::DnsNote]) -> Vec<String> {
    list.iter()
        .map(|n| {
            format!(
                "{} {} ×{}: failed while another record type answered",
                clean(&n.code),
                clean(&n.record_type),
                n.count
            )
        })
        .collect()
}

/// `curl[4420]`.
pub fn process_label(p: &Process) -> String {
    clean(&format!("{}[{}]", p.comm, p.pid))
}

/// Text safe to put on a terminal: what [`crate::sanitize::is_unsafe`] names (control
/// characters, escape sequences, newlines, bidirectional overrides) becomes `?`, one cell each.
pub fn clean(text: &str) -> String {
    text.chars()
        .map(|c| {
            if crate::sanitize::is_unsafe(c) {
                '?'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        catalog::Catalog,
        pipeline::correlate::tests::{closed, observe_answered, opened, response},
        pipeline::events::Observed,
    };

    const T0: u64 = 1_795_766_400 * SECOND;

    fn progress(id: u64, dst: &str, sent: u64, received: u64) -> Observed {
        Observed::FlowProgress {
            flow_id: id,
            dst: dst.parse().unwrap(),
            bytes_sent: sent,
            bytes_received: received,
            interval_ms: 1000.0,
            sent_bps: 0.0,
            received_bps: 0.0,
            sent_idle_ms: None,
            received_idle_ms: None,
        }
    }

    #[test]
    fn a_slow_transfer_reads_at_its_own_rate_in_the_history() {
        use crate::pipeline::throughput::{Evidence, SlowestTransfer, TransferSummary};
        // HTB at 40 kbit/s: lumps of 120 kbit/s and empty seconds, from 10 s to 4 s ago.
        let now = T0 + 300 * SECOND;
        let mut history = vec![0.0; 20];
        for i in [10, 12, 15] {
            history[i] = 120_000.0;
        }
        history[19] = 5_000_000.0; // a fast transfer since
        let slow = SlowestTransfer {
            bytes: 30_000,
            seconds: 6.0,
            rate_bps: 40_000.0,
            evidence: Evidence::BytesRead,
            start_ns: now - 10 * SECOND,
            flow_id: Some(1),
            runner: None,
        };
        let transfers = TransferStats {
            received: TransferSummary {
                slowest: Some(Box::new(slow.clone())),
                ..TransferSummary::default()
            },
            ..TransferStats::default()
        };
        let judged = judged_history(history.clone(), &transfers, 70_000.0, now);
        assert!(judged[10..16].iter().all(|v| *v == 40_000.0), "{judged:?}");
        assert_eq!((judged[9], judged[16], judged[19]), (0.0, 0.0, 5_000_000.0));
        // A judged transfer at or above the minimum changes nothing.
        let fast = TransferStats {
            received: TransferSummary {
                slowest: Some(Box::new(SlowestTransfer {
                    rate_bps: 80_000.0,
                    ..slow
                })),
                ..TransferSummary::default()
            },
            ..TransferStats::default()
        };
        assert_eq!(
            judged_history(history.clone(), &fast, 70_000.0, now),
            history
        );
    }

    #[test]
    fn rates_and_history_come_from_the_series_at_now() {
        let mut c = Correlator::new(Catalog::builtin());
        let api = "198.18.1.10:443";
        let mut events = vec![
            (
                T0,
                response("api.github.com", &[("api.github.com", "A", "198.18.1.10")]),
            ),
            (T0, opened(1, api)),
        ];
        // 125 kB a second for ten seconds: 1 Mbit/s down.
        for s in 1..=10 {
            events.push((T0 + s * SECOND, progress(1, api, 100 * s, 125_000 * s)));
        }
        for (ts, mut o) in events {
            observe_answered(&mut c, ts, &mut o);
        }
        let v = build(&c, T0 + 10 * SECOND, 12);
        let essential = &v.groups[0];
        assert_eq!(essential.id, "essential");
        assert_eq!(essential.status, Status::Unseen, "the flow is still open");
        assert_eq!(essential.rates.now_down, 1_000_000.0);
        assert_eq!(essential.rates.recent_down, 1_000_000.0);
        assert_eq!(essential.rates.now_up, 800.0);
        assert_eq!(essential.history.len(), HISTORY_S);
        assert_eq!(essential.history[HISTORY_S - 1], 1_000_000.0);
        assert_eq!(essential.history[HISTORY_S - 11], 0.0);
        let host = v
            .hosts
            .iter()
            .find(|h| h.label == "api.github.com")
            .unwrap();
        assert_eq!(host.rates.now_down, 1_000_000.0);
        assert_eq!(v.flows.len(), 1);
        assert_eq!(v.flows[0].state, FlowState::Connecting);
        assert_eq!(v.flows[0].group(), "essential");

        // Five seconds later nothing moved: the current rate is zero, the recent one half.
        let later = build(&c, T0 + 15 * SECOND, 12);
        assert_eq!(later.groups[0].rates.now_down, 0.0);
        assert_eq!(later.groups[0].rates.recent_down, 500_000.0);
    }

    #[test]
    fn failures_and_undeclared_destinations() {
        let mut c = Correlator::new(Catalog::builtin());
        for (ts, mut o) in [
            (T0, response("ghcr.io", &[("ghcr.io", "A", "198.18.1.16")])),
            (T0, opened(1, "198.18.1.16:443")),
            (T0 + SECOND, closed(1, "198.18.1.16:443", false, 0, 0)),
            (T0 + SECOND, opened(2, "198.18.9.9:443")),
            (T0 + 2 * SECOND, closed(2, "198.18.9.9:443", true, 10, 2000)),
        ] {
            observe_answered(&mut c, ts, &mut o);
        }
        let v = build(&c, T0 + 2 * SECOND, 5);
        let ghcr = v.hosts.iter().find(|h| h.label == "ghcr.io").unwrap();
        assert_eq!(ghcr.status, Status::Blocked);
        assert_eq!(ghcr.reason_codes(), "tcp_reset");
        assert_eq!(ghcr.reasons[0].first_ns, Some(T0 + SECOND));
        assert_eq!(v.undeclared.len(), 1);
        assert!(v.undeclared[0].unresolved);
        assert_eq!(v.undeclared[0].label, "198.18.9.9");
        assert_eq!(v.flows[0].state, FlowState::Failed);
        assert_eq!(v.flows[0].outcome_word(), "tcp_reset");
        assert_eq!(v.flows[1].group(), "unresolved");
        let packages = v.groups.iter().find(|g| g.id == "packages").unwrap();
        assert_eq!((packages.blocked, packages.reached), (1, 0));
    }

    #[test]
    fn a_proxy_s_answer_and_a_server_name_reach_the_terminal_clean() {
        use crate::pipeline::correlate::tests::{hello, payload, with_proxy};
        use crate::pipeline::hello::{FirstReceived, FirstSent};
        let proxy = "198.18.1.5:3128";
        let mut c = Correlator::new(Catalog::builtin());
        with_proxy(&mut c, proxy);
        let connect = FirstSent::Connect {
            host: "codeload.github.com".into(),
            port: 443,
            credentials: false,
            incomplete: false,
        };
        let status = FirstReceived::HttpStatus {
            code: 403,
            reason: "Forbidden\x1b]0;pwned\x07".into(),
        };
        let objects = "198.18.1.30:443";
        for (ts, mut o) in [
            (T0, opened(1, proxy)),
            (T0, payload(1, proxy, Some(connect), None)),
            (T0, payload(1, proxy, None, Some(status))),
            (T0 + SECOND, closed(1, proxy, true, 100, 300)),
            (
                T0 + SECOND,
                response(
                    "objects.githubusercontent.com",
                    &[("objects.githubusercontent.com", "A", "198.18.1.30")],
                ),
            ),
            (T0 + SECOND, opened(2, objects)),
            (
                T0 + SECOND,
                payload(2, objects, hello("evil\u{202e}moc.example"), None),
            ),
        ] {
            observe_answered(&mut c, ts, &mut o);
        }
        let v = build(&c, T0 + 2 * SECOND, 7);
        let refused = &v.flows[0];
        assert_eq!(refused.via_proxy.as_deref(), Some(proxy));
        assert_eq!(
            refused.proxy_status,
            Some((403, "Forbidden?]0;pwned?".to_owned()))
        );
        assert_eq!(
            refused.named_by_words().as_deref(),
            Some("CONNECT to proxy 198.18.1.5:3128")
        );
        let codeload = v
            .hosts
            .iter()
            .find(|h| h.label == "codeload.github.com")
            .unwrap();
        assert_eq!(codeload.via_proxies, [proxy]);
        assert!(codeload.addresses.is_empty(), "the proxy is not the host");
        let detail = codeload.reasons[0].detail.as_deref().unwrap_or_default();
        assert!(
            detail.ends_with("answered 403 Forbidden?]0;pwned? to CONNECT codeload.github.com:443"),
            "{detail}"
        );
        let fronted = &v.flows[1];
        assert_eq!(fronted.sni.as_deref(), Some("evil?moc.example"));
        // Named by its SNI alone: known by its address (the SNI is its claim, shown beside).
        assert_eq!(fronted.label, "198.18.1.30");
        assert_eq!(
            fronted.named_by_words().as_deref(),
            Some("SNI (DNS said objects.githubusercontent.com)")
        );
        assert_eq!(v.capture.proxies[0].source, "--proxy");
    }

    #[test]
    fn text_from_the_network_cannot_reach_the_terminal_raw() {
        assert_eq!(clean("evil\x1b]0;title\x07name\n"), "evil?]0;title?name?");
        assert_eq!(clean("räksmörgås.example"), "räksmörgås.example");
    }
}
