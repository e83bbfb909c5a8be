//! Building the report from the correlator's state: one tally of evidence per destination
//! ([`super::tally`]), then hosts, undeclared destinations, groups, the verdict and the capture
//! section.

use crate::{
    pipeline::correlate::{
        Correlator, Dropped, FlowEntry, MAX_HOST_SERIES_BYTES, MAX_PENDING_BYTES,
        MAX_PENDING_QUERIES, MAX_RECENT, MAX_RECENT_BYTES, MAX_TIMEOUT_BYTES, MAX_TIMEOUT_NAMES,
        MAX_WORKLOADS, MAX_WORKLOAD_BYTES,
    },
    pipeline::throughput::{runner_function, ThroughputStats, TransferStats},
};

use super::{
    rfc3339,
    tally::{group_status, runner_can_work, Destinations, Tallies, Tally},
    CaptureSection, FlowReport, GroupReport, GroupVerdict, HostReport, LongPoll, RejectedDnsReport,
    Report, Status, UndeclaredReport, Verdict, WorkloadReport, SCHEMA_VERSION,
};

/// Builds the report of everything the correlator has seen.
pub fn build(c: &Correlator) -> Report {
    build_with(c, c.flows().iter().map(|f| flow_report(f, c)).collect())
}

/// The report of everything `c` saw, with `flows` for its flows (the same flows, given another
/// way: [`build`] makes them a `Vec`).
pub fn build_with<F>(c: &Correlator, flows: F) -> Report<F> {
    let catalog = c.catalog();
    let tallies = Tallies::of(c);

    // Documented exact names first (catalog order), then observed members of wildcards; the
    // undeclared loudest first.
    let Destinations {
        hosts: documented,
        undeclared: others,
    } = tallies.destinations(c);
    let hosts: Vec<HostReport> = documented
        .into_iter()
        .map(|h| host_report(c, h.name, h.pattern, h.groups, h.tally))
        .collect();
    let undeclared: Vec<UndeclaredReport> = others
        .into_iter()
        .map(|u| undeclared_report(c, u.name.map(str::to_owned), &u.key, u.tally))
        .collect();

    let groups: Vec<GroupReport> = catalog
        .groups()
        .iter()
        .map(|g| {
            let members: Vec<&HostReport> =
                hosts.iter().filter(|h| h.groups.contains(&g.id)).collect();
            let failing: Vec<String> = members
                .iter()
                .filter(|h| h.status.is_failing())
                .map(|h| h.name.clone())
                .collect();
            let statuses: Vec<(Status, &str)> = members
                .iter()
                .map(|h| (h.status, h.pattern.as_str()))
                .collect();
            let status = group_status(&statuses);
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
                transfers: members.iter().fold(TransferStats::default(), |mut t, h| {
                    t.merge(&h.transfers);
                    t
                }),
            }
        })
        .collect();

    let mut capture = capture_section(c);
    if tallies.dns_only_undeclared_dropped > 0 {
        capture.dropped.dns_only_undeclared = tallies.dns_only_undeclared_dropped;
        capture.incomplete_because.push(format!(
            "{} undeclared names that only DNS concerned (no flow) beyond the {} listed were \
             counted, not listed",
            thousands(tallies.dns_only_undeclared_dropped),
            thousands(super::tally::MAX_DNS_ONLY_UNDECLARED as u64)
        ));
        capture.complete = false;
    }
    Report {
        schema_version: SCHEMA_VERSION,
        generator: concat!("observer ", env!("CARGO_PKG_VERSION")).to_owned(),
        verdict: verdict(&groups, &hosts),
        capture,
        groups,
        hosts,
        undeclared,
        flows,
        job: None,
        workloads: c
            .workloads()
            .iter()
            .map(|(&cgroup_id, workload)| WorkloadReport {
                cgroup_id,
                workload: workload.clone(),
            })
            .collect(),
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
        .filter(|g| !g.required && !g.summary && g.status.is_failing())
        .map(explain)
        .collect();
    let runner_can_work = runner_can_work(&required.iter().map(|g| g.status).collect::<Vec<_>>());

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
            .map(|f| format!("{} ({})", f.title, f.status.word()))
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
        cname_chain: t.cname_chain().to_vec(),
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
        transfers: t.transfers.clone(),
        via_proxies: t.proxies.iter().map(ToString::to_string).collect(),
        named_by: t.named_by.iter().copied().collect(),
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
        cname_chain: t.cname_chain().to_vec(),
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
        transfers: t.transfers.clone(),
        via_proxies: t.proxies.iter().map(ToString::to_string).collect(),
        named_by: t.named_by.iter().copied().collect(),
        sni: t.sni_names.iter().cloned().collect(),
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

pub fn flow_report(f: &FlowEntry, c: &Correlator) -> FlowReport {
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
        transfers: f.transfers.stats().of_flow(f.flow_id),
        idle_ms: f.idle_ms,
        long_poll: long_poll(f, c),
        named_by: f.destination.named_by,
        via_proxy: f.destination.via_proxy.map(|p| p.to_string()),
        proxy_target: f.destination.proxy_target.clone(),
        proxy_status: f.proxy_status.as_ref().map(|(code, _)| *code),
        sni: f.destination.sni.clone(),
        dns_name: f.destination.dns_name.clone(),
        tls_note: f.destination.tls_note.clone(),
        workload: c.workload(f.process.cgroup_id).cloned(),
    }
}

/// A count with thousands separators (`12,345`).
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// Why the report is incomplete because of what the correlator's bounds dropped.
fn dropped_reasons(d: &Dropped) -> Vec<String> {
    let n = |v: u64| thousands(v);
    let limit = |v: usize| thousands(v as u64);
    let mut out = Vec::new();
    if d.dns_timeouts > 0 {
        out.push(format!(
            "{} unanswered DNS queries for names beyond the {} unanswered names kept (or their {} \
             MiB) were not reported as timeouts",
            n(d.dns_timeouts),
            limit(MAX_TIMEOUT_NAMES),
            MAX_TIMEOUT_BYTES >> 20
        ));
    }
    if d.queries_judged_early > 0 {
        out.push(format!(
            "{} DNS queries were judged before their timeout because more than {} (or {} MiB) \
             were waiting: a late answer to them was not seen as one",
            n(d.queries_judged_early),
            limit(MAX_PENDING_QUERIES),
            MAX_PENDING_BYTES >> 20
        ));
    }
    if d.recent_answers > 0 {
        out.push(format!(
            "{} DNS answers were not remembered beyond the {} kept (or {} MiB): a retry they \
             answered may show as a timeout",
            n(d.recent_answers),
            limit(MAX_RECENT),
            MAX_RECENT_BYTES >> 20
        ));
    }
    if d.loopback_queries > 0 {
        out.push(format!(
            "{} queries to local resolvers were not remembered beyond the {} kept (or {} MiB): \
             a local resolver's forwards may count as its own lookups",
            n(d.loopback_queries),
            limit(MAX_RECENT),
            MAX_RECENT_BYTES >> 20
        ));
    }
    if d.host_readings > 0 {
        out.push(format!(
            "{} byte readings were left out of the hosts' rate series beyond their {} MiB: some \
             hosts' throughput is partial or missing",
            n(d.host_readings),
            MAX_HOST_SERIES_BYTES >> 20
        ));
    }
    if d.workloads > 0 {
        out.push(format!(
            "{} cgroups' workloads were not kept beyond the {} kept (or {} MiB): their flows \
             show no workload",
            n(d.workloads),
            limit(MAX_WORKLOADS),
            MAX_WORKLOAD_BYTES >> 20
        ));
    }
    out
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
            "{} flows beyond the {} kept for the report were counted, not kept",
            thousands(info.flows_dropped),
            thousands(c.limits().max_flows as u64)
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
    if s.dns_skipped > 0 {
        incomplete.push(format!(
            "{} DNS packets were not copied by the kernel (too large, or the copy failed)",
            s.dns_skipped
        ));
    }
    if s.job_pids_full > 0 {
        incomplete.push(format!(
            "{} processes of followed jobs did not fit in the kernel's job table: their flows \
             are not attributed to their job",
            s.job_pids_full
        ));
    }
    if s.malformed_dns > 0 {
        incomplete.push(format!(
            "{} DNS packets could not be decoded: what they asked or answered is unknown",
            s.malformed_dns
        ));
    }
    incomplete.extend(dropped_reasons(&info.dropped));
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
        dns_repeats: s.dns_repeats,
        dns_tcp_messages: s.dns_tcp_messages,
        dns_tcp_undecodable: s.dns_tcp_undecodable,
        dns_checks: checks,
        dns_rejected,
        dns_rejected_dropped: rejections.groups_dropped,
        flows_dropped: info.flows_dropped,
        unreadable_lines: info.unreadable_lines,
        cgroups_unresolved: s.cgroups_unresolved,
        dropped: info.dropped,
        name_cache: names,
        local_resolvers: c.local_resolvers().to_vec(),
        proxies: c.capture().proxies.clone(),
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
    use std::net::IpAddr;

    use super::*;
    use crate::{
        capture::record::Process,
        catalog::Catalog,
        pipeline::correlate::tests::{
            closed, flood_query, hello, observe_answered, opened, payload, query, response,
            with_proxy,
        },
        pipeline::events::Observed,
        pipeline::hello::{FirstReceived, FirstSent},
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
    fn flows_beyond_max_flows_are_counted_and_make_the_report_incomplete() {
        let limits = crate::pipeline::correlate::Limits {
            max_flows: 3,
            ..Default::default()
        };
        let mut c = Correlator::new(Catalog::builtin()).with_limits(limits);
        for id in 1..=5 {
            c.observe(id * S, &mut opened(id, "198.18.1.1:443"));
        }
        c.finish();
        let r = build(&c);
        assert_eq!((r.flows.len(), r.capture.flows_dropped), (3, 2));
        assert!(!r.capture.complete);
        assert!(
            r.capture
                .incomplete_because
                .iter()
                .any(|w| w == "2 flows beyond the 3 kept for the report were counted, not kept"),
            "{:?}",
            r.capture.incomplete_because
        );
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
            api.reasons[0].process.as_ref().map(|p| &*p.comm),
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
            job: None,
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
                cgroup_id: 3,
                job: None,
            }]
        );
        let api = host(&r, "api.github.com");
        let comms: Vec<&str> = api.processes.iter().map(|p| &*p.comm).collect();
        assert_eq!(comms, ["curl"], "the stub is not a user of the host");
        let ghcr = host(&r, "ghcr.io");
        assert_eq!(ghcr.reasons[0].code, "dns_timeout");
        assert_eq!(
            ghcr.reasons[0].count, 1,
            "curl's one query, not the stub's two"
        );
        assert_eq!(
            ghcr.reasons[0].process.as_ref().map(|p| &*p.comm),
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

    #[test]
    fn a_proxy_s_answer_is_the_verdict_on_the_host_asked_for() {
        let proxy = "198.18.1.5:3128";
        let mut c = Correlator::new(Catalog::builtin());
        with_proxy(&mut c, proxy);
        let cases: [(u64, &str, u16, &str); 4] = [
            (1, "api.github.com", 200, "Connection established"),
            (2, "codeload.github.com", 403, "Forbidden"),
            (
                3,
                "pkg.actions.githubusercontent.com",
                407,
                "Proxy Authentication Required",
            ),
            (
                4,
                "results-receiver.actions.githubusercontent.com",
                503,
                "Service Unavailable",
            ),
        ];
        for (id, host, code, reason) in cases {
            let connect = FirstSent::Connect {
                host: host.into(),
                port: 443,
                credentials: false,
                incomplete: false,
            };
            let status = FirstReceived::HttpStatus {
                code,
                reason: reason.into(),
            };
            for mut o in [
                opened(id, proxy),
                payload(id, proxy, Some(connect), None),
                payload(id, proxy, None, Some(status)),
                closed(id, proxy, true, 2000, 4000),
            ] {
                c.observe(id * S, &mut o);
            }
        }
        c.finish();
        let r = build(&c);
        let ok = host(&r, "api.github.com");
        assert_eq!(ok.status, Status::Ok);
        assert_eq!(ok.via_proxies, vec![proxy.to_owned()]);
        assert!(
            ok.addresses.is_empty(),
            "the proxy's address is not the host's"
        );
        for (name, code) in [
            ("codeload.github.com", "proxy_refused"),
            ("pkg.actions.githubusercontent.com", "proxy_auth_required"),
            (
                "results-receiver.actions.githubusercontent.com",
                "proxy_upstream_failed",
            ),
        ] {
            let h = host(&r, name);
            assert_eq!(
                (h.status, h.reasons[0].code.as_str()),
                (Status::Blocked, code)
            );
            let detail = h.reasons[0].detail.as_deref().unwrap_or_default();
            assert!(
                detail.starts_with(&format!("proxy {proxy} answered ")) && detail.contains(name),
                "{detail}"
            );
        }
        let flow = r.flows.iter().find(|f| f.flow_id == 2).unwrap();
        assert_eq!(flow.proxy_status, Some(403));
        assert_eq!(flow.via_proxy.as_deref(), Some(proxy));
        assert_eq!(
            flow.proxy_target.as_deref(),
            Some("codeload.github.com:443")
        );
        assert!(r.undeclared.is_empty(), "{:?}", r.undeclared);
    }

    #[test]
    fn a_connect_to_an_address_is_reported_by_that_address_not_the_proxy_s() {
        let proxy = "198.18.1.5:3128";
        let mut c = Correlator::new(Catalog::builtin());
        with_proxy(&mut c, proxy);
        let connect = FirstSent::Connect {
            host: "198.18.1.9".into(),
            port: 443,
            credentials: false,
            incomplete: false,
        };
        let status = FirstReceived::HttpStatus {
            code: 403,
            reason: "Forbidden".into(),
        };
        for mut o in [
            opened(1, proxy),
            payload(1, proxy, Some(connect), None),
            payload(1, proxy, None, Some(status)),
            closed(1, proxy, true, 200, 400),
        ] {
            c.observe(S, &mut o);
        }
        c.finish();
        let r = build(&c);
        assert_eq!(r.undeclared.len(), 1, "{:?}", r.undeclared);
        let u = &r.undeclared[0];
        assert_eq!(u.name, None);
        assert_eq!(u.addresses, vec!["198.18.1.9".parse::<IpAddr>().unwrap()]);
        assert_eq!(u.via_proxies, vec![proxy.to_owned()]);
        assert_eq!(u.reasons[0].code, "proxy_refused");
        assert!(c.host_series("198.18.1.5").is_none());
    }

    #[test]
    fn an_sni_alone_never_makes_an_address_a_documented_host() {
        // Found by the hostile review: a process that says "api.github.com" in its hello to its
        // own server read as the documented host reached, and its address became a rule.
        let attacker = "203.0.113.66:443";
        for with_dns in [false, true] {
            let mut events = Vec::new();
            if with_dns {
                events.push((
                    S,
                    response(
                        "exfil.attacker.example",
                        &[("exfil.attacker.example", "A", "203.0.113.66")],
                    ),
                ));
            }
            events.extend([
                (2 * S, opened(1, attacker)),
                (2 * S, payload(1, attacker, hello("api.github.com"), None)),
                (3 * S, closed(1, attacker, true, 50_000_000, 4_000)),
            ]);
            let r = report(events, vec![]);
            let api = host(&r, "api.github.com");
            assert_eq!(api.status, Status::Unseen, "with DNS: {with_dns}");
            assert!(api.addresses.is_empty());
            // The address with the SNI it claimed (and, with DNS, the name DNS gave it).
            assert_eq!(
                r.undeclared.len(),
                1 + usize::from(with_dns),
                "{:?}",
                r.undeclared
            );
            let u = r.undeclared.iter().find(|u| u.name.is_none()).unwrap();
            assert_eq!(u.addresses, vec!["203.0.113.66".parse::<IpAddr>().unwrap()]);
            assert_eq!(u.sni, vec!["api.github.com".to_owned()]);
            assert_eq!(u.bytes_sent, 50_000_000);
            let f = &r.flows[0];
            assert_eq!(f.name.as_deref(), Some("api.github.com"));
            assert_eq!(
                f.class,
                crate::pipeline::events::DestinationClass::Undeclared
            );
            assert_eq!(
                f.dns_name.as_deref(),
                with_dns.then_some("exfil.attacker.example")
            );
            assert!(r.verdict.runner_can_work.is_none(), "{:?}", r.verdict);
        }
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

    #[test]
    fn a_flood_beyond_the_bounds_makes_the_report_incomplete_and_says_how_much() {
        let long = |tag: &str, i: u32| {
            format!("{tag}{i:08}.{}.{}.example", "x".repeat(63), "y".repeat(63))
        };
        let mut events = vec![(
            S,
            response("api.github.com", &[("api.github.com", "A", "198.18.1.10")]),
        )];
        // Answers for unique long names: the name cache evicts the real answer.
        for i in 0..70_000u32 {
            let name = long("a", i);
            let mut r = response(
                &name,
                &[(
                    &name,
                    "A",
                    &format!("198.{}.{}.{}", 18 + (i >> 16), (i >> 8) & 255, i & 255),
                )],
            );
            if let Observed::DnsResponse(d) = &mut r {
                d.socket_cookie = u64::from(i) + 10;
                d.id = Some((i % 65_536) as u16);
                d.client =
                    std::net::SocketAddr::from(([198, 18, 0, 1], 1024 + (i % 60_000) as u16));
            }
            events.push((2 * S + u64::from(i) * 10_000, r));
        }
        // Unanswered queries for unique names, 0.1 ms apart.
        for i in 0..80_000u32 {
            events.push((
                3 * S + u64::from(i) * 100_000,
                flood_query(i + 100_000, &long("u", i)),
            ));
        }
        events.push((
            20 * S,
            Observed::CaptureStats(crate::pipeline::events::CaptureStats {
                dns_skipped: 3,
                malformed_dns: 2,
                ..Default::default()
            }),
        ));
        let r = report(events, vec![]);
        let c = &r.capture;
        assert!(!c.complete);
        let dropped = c.dropped.dns_timeouts;
        assert!(dropped > 0);
        let because = c.incomplete_because.join("\n");
        let expected = format!(
            "{} unanswered DNS queries for names beyond the 65,536 unanswered names kept (or their 8 MiB)",
            thousands(dropped)
        );
        assert!(because.contains(&expected), "{because}");
        assert!(because.contains("the name cache forgot"), "{because}");
        assert!(c.name_cache.evicted_addresses > 0);
        assert!(
            because.contains("3 DNS packets were not copied"),
            "{because}"
        );
        assert!(
            because.contains("2 DNS packets could not be decoded"),
            "{because}"
        );
        // The undeclared destinations follow the bounded tables, not the flood.
        assert!(
            r.undeclared.len() <= crate::report::tally::MAX_DNS_ONLY_UNDECLARED,
            "{}",
            r.undeclared.len()
        );
        let unlisted = c.dropped.dns_only_undeclared;
        assert!(unlisted > 10_000, "{unlisted}");
        let expected = format!(
            "{} undeclared names that only DNS concerned (no flow) beyond the 4,096 listed",
            thousands(unlisted)
        );
        assert!(because.contains(&expected), "{because}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["capture"]["dropped"]["dns_timeouts"], dropped);
    }

    #[test]
    fn flows_and_the_workloads_table_show_what_cgroups_are() {
        use crate::capture::cgroups::{classify, Runtime};
        let pod = "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-poddc380811_8168_4a9e_9b4a_56ded1b6fe9c.slice/cri-containerd-1207db63eaeb133a85d2b614d12d95d4dff3f29af60d7a7b3c7d39abdf4bd119.scope";
        let seen = |cgroup_id, path: &str| Observed::CgroupSeen {
            cgroup_id,
            workload: classify(path),
        };
        // The cgroup may be named after its flow (lookups happen off the capture loop).
        let mut flow = opened(1, "198.18.1.1:443");
        let Observed::FlowOpened { process, .. } = &mut flow else {
            unreachable!()
        };
        process.cgroup_id = 77;
        let r = report(
            vec![
                (S, query(1, "api.github.com")),
                (
                    S,
                    seen(3, "/system.slice/actions.runner.octo.runner-1.service"),
                ),
                (2 * S, closed(2, "198.18.1.2:443", true, 10, 10)),
                (2 * S, flow),
                (3 * S, seen(77, pod)),
            ],
            vec![],
        );
        let on = |id| r.flows.iter().find(|f| f.flow_id == id).expect("flow");
        let w = on(1)
            .workload
            .as_ref()
            .expect("the pod's flow has its workload");
        assert_eq!(
            (w.pod_uid.as_deref(), w.runtime),
            (
                Some("dc380811-8168-4a9e-9b4a-56ded1b6fe9c"),
                Some(Runtime::Containerd)
            )
        );
        assert_eq!(
            on(2).workload.as_ref().and_then(|w| w.unit.as_deref()),
            Some("actions.runner.octo.runner-1.service")
        );
        // The table names the cgroups of the hosts' processes (curl's, cgroup 3), by id.
        let ids: Vec<u64> = r.workloads.iter().map(|w| w.cgroup_id).collect();
        assert_eq!(ids, vec![3, 77]);
        let api = host(&r, "api.github.com");
        assert!(api.processes.iter().all(|p| p.cgroup_id == 3));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["workloads"][1]["cgroup_id"], 77);
        assert_eq!(json["workloads"][1]["cgroup"], pod);
        assert_eq!(json["workloads"][1]["runtime"], "containerd");
        assert_eq!(
            json["flows"][0]["workload"]["unit"],
            "actions.runner.octo.runner-1.service"
        );
        // Read back: the table and the flows' workloads, and a report without them.
        let back: Report = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, r);
        let mut old = json;
        old.as_object_mut().unwrap().remove("workloads");
        let old: Report = serde_json::from_value(old).unwrap();
        assert!(old.workloads.is_empty());
        // Without any cgroup_seen (a log of an older version) nothing new is written.
        let plain = report(
            vec![(2 * S, closed(2, "198.18.1.2:443", true, 10, 10))],
            vec![],
        );
        let json = serde_json::to_string(&plain).unwrap();
        assert!(!json.contains("workload"), "{json}");
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(12_345), "12,345");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
