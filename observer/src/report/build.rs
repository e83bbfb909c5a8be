//! Building the report from the correlator's state: one tally of evidence per destination,
//! then hosts, undeclared destinations, groups, the verdict and the capture section.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use crate::{
    capture::record::Process,
    pipeline::correlate::{Correlator, DnsTimeouts, FlowEntry},
    pipeline::events::DestinationClass,
    pipeline::names::NameRecord,
    pipeline::throughput::{runner_function, ThroughputStats},
};

use super::{
    classify::{self, failure, success, warning, DnsWeight},
    rfc3339, CaptureSection, DnsNote, FlowReport, GroupReport, GroupVerdict, HostReport, LongPoll,
    Reason, RejectedDnsReport, Report, Status, UndeclaredReport, Verdict, SCHEMA_VERSION,
};

/// The occurrences of one reason.
#[derive(Clone, Debug)]
struct Occurrences {
    count: u64,
    first_ns: u64,
    last_ns: u64,
    process: Option<Process>,
    detail: Option<String>,
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
    /// Reasons by (code, record type).
    reasons: BTreeMap<(&'static str, Option<String>), Occurrences>,
    /// DNS failures of one record type while another type answered: notes, not reasons.
    dns_notes: Vec<DnsNote>,
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
        self.typed_occurrence(code, None, count, first, last, process, detail);
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "one occurrence's fields, named at each call"
    )]
    fn typed_occurrence(
        &mut self,
        code: &'static str,
        rtype: Option<String>,
        count: u64,
        first: u64,
        last: u64,
        process: Option<Process>,
        detail: Option<String>,
    ) {
        let r = self.reasons.entry((code, rtype)).or_insert(Occurrences {
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

    /// What DNS said about the name: its answers per record type and its unanswered queries,
    /// weighed as a client's lookups (see [`classify::dns_findings`]).
    fn add_dns(&mut self, record: Option<&NameRecord>, timeouts: Option<&DnsTimeouts>) {
        if let Some(record) = record {
            self.addresses.extend(record.addresses.iter().copied());
            self.processes.extend(record.processes.iter().cloned());
            if !record.cname_chain.is_empty() {
                self.cname_chain.clone_from(&record.cname_chain);
            }
            self.seen(record.first_seen_ns);
            self.seen(record.last_seen_ns);
        }
        if let Some(t) = timeouts {
            self.seen(t.first_ns);
            self.seen(t.last_ns);
        }
        for finding in classify::dns_findings(record, timeouts, self.flows) {
            let timeout = finding.code == "dns_timeout";
            let (first, last, process) = match (timeout, timeouts, record) {
                (true, Some(t), _) => (t.first_ns, t.last_ns, t.process.clone()),
                (_, _, Some(r)) => {
                    let o = r
                        .outcomes
                        .iter()
                        .find(|o| Some(&o.rtype) == finding.rtype.as_ref());
                    (
                        o.and_then(|o| o.first_failure_ns)
                            .unwrap_or(r.first_seen_ns),
                        o.and_then(|o| o.last_failure_ns).unwrap_or(r.last_seen_ns),
                        r.processes.first().cloned(),
                    )
                }
                _ => continue,
            };
            match finding.weight {
                DnsWeight::Failure => {
                    self.failures += finding.count;
                    self.typed_occurrence(
                        finding.code,
                        finding.rtype,
                        finding.count,
                        first,
                        last,
                        process,
                        None,
                    );
                }
                DnsWeight::Retried => {
                    self.warnings += 1;
                    self.typed_occurrence(
                        finding.code,
                        finding.rtype,
                        finding.count,
                        first,
                        last,
                        process,
                        Some("a retry of the same type answered".to_owned()),
                    );
                }
                DnsWeight::Note => self.dns_notes.push(DnsNote {
                    code: finding.code.to_owned(),
                    record_type: finding.rtype.unwrap_or_default(),
                    count: finding.count,
                    first_seen: rfc3339(first),
                    last_seen: rfc3339(last),
                }),
            }
        }
    }

    fn status(&self) -> Status {
        classify::status(self.successes, self.failures, self.warnings)
    }

    fn reasons(&self) -> Vec<Reason> {
        self.reasons
            .iter()
            .map(|((code, rtype), o)| Reason {
                code: (*code).to_owned(),
                record_type: rtype.clone(),
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
        tally.add_dns(Some(record), c.dns_timeouts().get(&record.name));
    }
    for (name, timeouts) in c.dns_timeouts() {
        if c.names().name(name).is_none() {
            by_name
                .entry(name.clone())
                .or_default()
                .add_dns(None, Some(timeouts));
        }
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
                let codes: Vec<String> = hosts
                    .iter()
                    .find(|h| &h.name == name)
                    .map(|h| super::reason_labels(&h.reasons))
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

fn series_stats(series: Option<&crate::pipeline::throughput::Series>) -> ThroughputStats {
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
        dns_notes: t.dns_notes.clone(),
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
        dns_notes: t.dns_notes.clone(),
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
        forged_name: f.destination.forged_name.clone(),
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
    let names = c.names().stats();
    let dropped_names = names.evicted_addresses + names.evicted_bindings + names.evicted_names;
    if dropped_names > 0 {
        incomplete.push(format!(
            "the name cache forgot {} addresses, {} names of shared addresses and {} per-name \
             records to stay within its bounds: some flows may be unresolved and some lookups \
             missing",
            names.evicted_addresses, names.evicted_bindings, names.evicted_names
        ));
    }
    let checks = c.dns_checks();
    if checks.queries_evicted > 0 {
        incomplete.push(format!(
            "{} DNS queries were dropped from the query table to stay within its bound: their \
             answers named nothing",
            checks.queries_evicted
        ));
    }
    if s.dns_tcp_undecodable > 0 {
        incomplete.push(format!(
            "{} DNS-over-TCP segments could not be decoded (a segment missed before them)",
            s.dns_tcp_undecodable
        ));
    }
    let rejections = c.rejections();
    let dns_rejected: Vec<RejectedDnsReport> = rejections
        .groups()
        .iter()
        .map(|g| RejectedDnsReport {
            code: g.check.code().to_owned(),
            forgery: g.check.suspicious(),
            count: g.count,
            first_seen: rfc3339(g.first_ns),
            last_seen: rfc3339(g.last_ns),
            process: g.process.clone(),
            client: g.client.to_string(),
            server: g.server.to_string(),
            names: g.names.clone(),
            addresses: g.addresses.clone(),
        })
        .collect();
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
        dns_tcp_messages: s.dns_tcp_messages,
        dns_tcp_undecodable: s.dns_tcp_undecodable,
        dns_checks: checks,
        dns_rejected,
        dns_rejected_dropped: rejections.groups_dropped,
        flows_dropped: info.flows_dropped,
        unreadable_lines: info.unreadable_lines,
        name_cache: names,
        local_resolvers: c.local_resolvers().to_vec(),
        complete: incomplete.is_empty(),
        incomplete_because: incomplete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        catalog::Catalog,
        pipeline::correlate::tests::{closed, observe_answered, opened, query, response},
        pipeline::events::Observed,
    };

    const S: u64 = 1_000_000_000;

    fn host<'a>(r: &'a Report, name: &str) -> &'a HostReport {
        r.hosts.iter().find(|h| h.name == name).expect("host")
    }

    fn report(events: Vec<(u64, Observed)>, sinkholes: Vec<IpAddr>) -> Report {
        let mut c = Correlator::new(Catalog::builtin()).with_sinkholes(sinkholes);
        for (ts, mut o) in events {
            observe_answered(&mut c, ts, &mut o);
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
            r.verdict.summary.contains("api.github.com (dns_timeout A)"),
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

    /// A response for `name` of type `rtype` with `rcode` and A/AAAA `answers`.
    fn typed(name: &str, rtype: &str, rcode: &str, answers: &[&str]) -> Observed {
        let recs: Vec<(&str, &str, &str)> = answers
            .iter()
            .map(|a| (name, if a.contains(':') { "AAAA" } else { "A" }, *a))
            .collect();
        let mut o = response(name, &recs);
        if let Observed::DnsResponse(d) = &mut o {
            d.questions[0].rtype = rtype.to_owned();
            d.rcode = Some(rcode.to_owned());
            d.id = Some(if rtype == "A" { 1 } else { 2 });
        }
        o
    }

    #[test]
    fn one_record_type_failing_while_the_other_answers_is_a_note_not_a_reason() {
        let r = report(
            vec![
                (S, typed("api.github.com", "A", "NOERROR", &["198.18.1.10"])),
                (S, typed("api.github.com", "AAAA", "REFUSED", &[])),
                (2 * S, opened(1, "198.18.1.10:443")),
                (3 * S, closed(1, "198.18.1.10:443", true, 100, 5000)),
            ],
            vec![],
        );
        let api = host(&r, "api.github.com");
        assert_eq!(api.status, Status::Ok, "{api:#?}");
        assert!(api.reasons.is_empty());
        assert_eq!(
            api.dns_notes
                .iter()
                .map(|n| (n.code.as_str(), n.record_type.as_str(), n.count))
                .collect::<Vec<_>>(),
            [("dns_refused", "AAAA", 1)]
        );
        assert_eq!(
            r.verdict.runner_can_work,
            Some(true),
            "{}",
            r.verdict.summary
        );
    }

    #[test]
    fn a_sinkhole_answer_blocks_whatever_the_other_type_returned() {
        let r = report(
            vec![
                (S, typed("api.github.com", "A", "NOERROR", &["0.0.0.0"])),
                (S, typed("api.github.com", "AAAA", "REFUSED", &[])),
                (2 * S, opened(1, "0.0.0.0:443")),
                (2 * S, closed(1, "0.0.0.0:443", false, 0, 0)),
            ],
            vec![],
        );
        let api = host(&r, "api.github.com");
        assert_eq!(api.status, Status::Blocked);
        let reasons: Vec<String> = api
            .reasons
            .iter()
            .map(super::super::Reason::label)
            .collect();
        assert_eq!(reasons, ["dns_refused AAAA", "dns_sinkhole A"]);
        assert!(
            r.verdict
                .summary
                .contains("api.github.com (dns_refused AAAA, dns_sinkhole A)"),
            "{}",
            r.verdict.summary
        );
    }

    #[test]
    fn a_retry_that_answered_after_a_failure_of_the_same_type_is_degraded() {
        let mut failed = typed("api.github.com", "A", "SERVFAIL", &[]);
        if let Observed::DnsResponse(d) = &mut failed {
            d.id = Some(7);
        }
        let r = report(
            vec![
                (S, failed),
                (
                    2 * S,
                    typed("api.github.com", "A", "NOERROR", &["198.18.1.10"]),
                ),
                (2 * S, typed("api.github.com", "AAAA", "NOERROR", &[])),
                (3 * S, opened(1, "198.18.1.10:443")),
                (4 * S, closed(1, "198.18.1.10:443", true, 100, 5000)),
            ],
            vec![],
        );
        let api = host(&r, "api.github.com");
        assert_eq!(api.status, Status::Degraded, "{api:#?}");
        assert_eq!(api.reasons[0].label(), "dns_servfail A");
        assert!(api.dns_notes.is_empty());
        assert_eq!(r.verdict.runner_can_work, Some(false));
        assert!(
            r.verdict
                .summary
                .contains("api.github.com (dns_servfail A)"),
            "{}",
            r.verdict.summary
        );
    }

    #[test]
    fn both_types_failing_is_a_failed_lookup_with_both_types() {
        let r = report(
            vec![
                (S, typed("api.github.com", "A", "SERVFAIL", &[])),
                (S, typed("api.github.com", "AAAA", "SERVFAIL", &[])),
            ],
            vec![],
        );
        let api = host(&r, "api.github.com");
        assert_eq!(api.status, Status::Blocked);
        assert_eq!(
            super::super::reason_labels(&api.reasons),
            ["dns_servfail A/AAAA"]
        );
    }

    #[test]
    fn forged_answers_are_in_the_capture_section_and_never_name_a_host() {
        let mut forged = response("api.github.com", &[("api.github.com", "A", "198.18.66.1")]);
        if let Observed::DnsResponse(d) = &mut forged {
            d.socket_cookie = 99;
            d.client = "198.18.0.1:7777".parse().unwrap();
        }
        let mut c = Correlator::new(Catalog::builtin());
        c.observe(S, &mut forged);
        c.observe(2 * S, &mut opened(1, "198.18.66.1:443"));
        c.observe(3 * S, &mut closed(1, "198.18.66.1:443", true, 10, 10));
        let r = build(&c);
        assert_eq!(host(&r, "api.github.com").status, Status::Unseen);
        assert_eq!(r.undeclared[0].name, None);
        assert_eq!(r.flows[0].name, None);
        assert_eq!(r.capture.dns_checks.unsolicited, 1);
        let rejected = &r.capture.dns_rejected[0];
        assert_eq!(
            (rejected.code.as_str(), rejected.forgery, rejected.count),
            ("dns_unsolicited", true, 1)
        );
        assert_eq!(rejected.client, "198.18.0.1:7777");
        assert_eq!(rejected.names, ["api.github.com"]);
    }
}
