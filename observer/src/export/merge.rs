//! `observer report merge A.json B.json …`: one report for a fleet of runners.
//!
//! The merged report is a schema-1 report (every reader of docs/report.md can read it) whose
//! entries combine the runners' entries of the same key (group id, host name, undeclared name or
//! address): status is the worst across runners (`blocked` > `degraded` > `ok` > `unseen`),
//! counts and bytes are summed, lists are united, the capture is complete only when every
//! runner's was. A `merged` section says which runners were merged and, entry by entry, what
//! each runner saw (docs/report-formats.md).
//!
//! Entries are combined from clones of the runners' own entries, never built field by field,
//! so fields this code does not know about (added to the report later) are carried over from
//! the first runner that has the entry.

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
    path::{Path, PathBuf},
};

use anyhow::bail;
use serde::{Deserialize, Serialize};
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

use crate::{
    pipeline::throughput::{RateStats, ThroughputStats, TransferStats},
    report::{
        read::{self, ReadError},
        GroupReport, GroupVerdict, HostReport, Reason, Report, Status, UndeclaredReport, Verdict,
        SCHEMA_VERSION,
    },
};

use super::{Document, Format};

/// The `merged` section of a merged report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Merged {
    /// The merged reports, in the order given.
    pub runners: Vec<Runner>,
    /// One entry per `groups[]` entry, in the same order: the group on each runner.
    pub groups: Vec<Breakdown>,
    /// One entry per `hosts[]` entry, in the same order.
    pub hosts: Vec<Breakdown>,
    /// One entry per `undeclared[]` entry, in the same order.
    pub undeclared: Vec<Breakdown>,
}

/// One merged report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Runner {
    /// `--label`, or the report's file stem (its path when stems collide).
    pub label: String,
    /// The report file as given.
    pub source: String,
    pub generator: String,
    /// The runner's own verdict.
    pub runner_can_work: Option<bool>,
    pub summary: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub duration_s: f64,
    pub complete: bool,
    pub incomplete_because: Vec<String>,
    pub events: u64,
    pub lost_events: u64,
    /// The runner's flows are `flows[first_flow .. first_flow + flows]` of the merged report.
    pub first_flow: usize,
    pub flows: usize,
}

/// One group, host or undeclared destination, runner by runner.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Breakdown {
    /// The group id, host name, or undeclared name (its addresses, comma-separated, when the
    /// name is null).
    pub key: String,
    /// One per runner, in `runners` order.
    pub runners: Vec<RunnerStatus>,
}

/// What one runner's report says of an entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunnerStatus {
    pub runner: String,
    /// Null when the runner's report has no such entry (a group its catalog lacks, a name it
    /// never saw).
    pub status: Option<Status>,
    pub flows: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Reason codes on this runner (for a group: those of its failing members).
    pub reasons: Vec<String>,
}

impl Merged {
    /// The label of the runner whose flow is `flows[index]`.
    pub fn runner_of_flow(&self, index: usize) -> Option<&str> {
        self.runners
            .iter()
            .find(|r| (r.first_flow..r.first_flow + r.flows).contains(&index))
            .map(|r| r.label.as_str())
    }
}

/// One report to merge.
pub struct Input {
    pub label: String,
    pub source: String,
    pub report: Report,
}

/// `observer report merge`: reads, merges, renders and writes.
pub fn run(paths: &[PathBuf], labels: &[String], out: &Path, format: Format) -> anyhow::Result<()> {
    let labels = labels_for(paths, labels)?;
    let mut inputs = Vec::with_capacity(paths.len());
    for (path, label) in paths.iter().zip(labels) {
        inputs.push(Input {
            label,
            source: path.display().to_string(),
            report: read_report(path)?,
        });
    }
    let doc = merge(inputs)?;
    super::write_document(&doc, out, format)
}

/// Reads a JSON report with the report reader ([`crate::report::read`]), refusing another
/// schema version and already merged reports.
pub fn read_report(path: &Path) -> anyhow::Result<Report> {
    let (file, text) =
        read::read_text(path).map_err(|e| merge_error(&path.display().to_string(), e))?;
    parse_report(&file, &text)
}

/// Parses a JSON report read from `source` with the report reader, refusing another schema
/// version and already merged reports.
pub fn parse_report(file: &str, text: &str) -> anyhow::Result<Report> {
    let in_merge_words = |e| merge_error(file, e);
    let value = read::checked_value(file, text).map_err(in_merge_words)?;
    if value.get("merged").is_some() {
        bail!("{file} is already a merge of reports: merge the runners' own reports instead");
    }
    read::from_value(file, value).map_err(in_merge_words)
}

/// A reading error in the words of a merge.
fn merge_error(file: &str, e: ReadError) -> anyhow::Error {
    let not_json = || format!("{file} is not a JSON report (write one with --format json)");
    match e {
        ReadError::Stdin(error) | ReadError::Open { error, .. } | ReadError::Read { error, .. } => {
            anyhow::Error::new(error).context(format!("cannot read the report {file}"))
        }
        ReadError::NotJson { error, .. } | ReadError::EventLog { error, .. } => {
            anyhow::Error::new(error).context(not_json())
        }
        ReadError::OtherSchemaVersion { found, .. } if found.as_u64().is_some() => anyhow::anyhow!(
            "{file} has schema_version {found}, but this observer reads schema_version \
             {SCHEMA_VERSION}: reports of different schema versions cannot be merged"
        ),
        ReadError::NotObject { .. }
        | ReadError::NoSchemaVersion { .. }
        | ReadError::OtherSchemaVersion { .. } => {
            anyhow::anyhow!("{file} is not an observer report: it has no schema_version")
        }
        ReadError::Invalid { error, .. } => anyhow::Error::new(error).context(format!(
            "{file} does not follow the report schema (docs/report.md)"
        )),
    }
}

/// One label per report: `--label`s in order, or the file stems (the path where stems
/// collide). Labels must be unique and not empty.
pub fn labels_for(paths: &[PathBuf], given: &[String]) -> anyhow::Result<Vec<String>> {
    let labels: Vec<String> = if given.is_empty() {
        let stem = |p: &PathBuf| {
            p.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string())
        };
        paths
            .iter()
            .map(|p| {
                let collides = paths.iter().filter(|q| stem(q) == stem(p)).count() > 1;
                if collides {
                    p.display().to_string()
                } else {
                    stem(p)
                }
            })
            .collect()
    } else if given.len() == paths.len() {
        given.to_vec()
    } else {
        bail!(
            "{} --label for {} reports: give one label per report, in the same order",
            given.len(),
            paths.len()
        );
    };
    let mut seen = BTreeSet::new();
    for label in &labels {
        if label.trim().is_empty() {
            bail!("a runner label cannot be empty");
        }
        if !seen.insert(label) {
            bail!("the runner label {label:?} is used twice: give each report once, or distinct --label values");
        }
    }
    Ok(labels)
}

/// The entries of every input grouped by key, in order of first appearance: for each key, the
/// entry of each input (None where an input has no such entry).
fn by_key<'a, T>(
    inputs: &'a [Input],
    list: impl Fn(&'a Report) -> &'a [T],
    key: impl Fn(&T) -> String,
) -> Vec<(String, Vec<Option<&'a T>>)> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut out: Vec<(String, Vec<Option<&T>>)> = Vec::new();
    for (n, input) in inputs.iter().enumerate() {
        for entry in list(&input.report) {
            let k = key(entry);
            let slot = *index.entry(k.clone()).or_insert_with(|| {
                out.push((k, vec![None; inputs.len()]));
                out.len() - 1
            });
            // The first of a key within one report wins (keys are unique in a report).
            out[slot].1[n].get_or_insert(entry);
        }
    }
    out
}

/// Items of several lists, each once, in order of first appearance.
fn union<T: Clone + PartialEq>(
    lists: impl IntoIterator<Item = impl IntoIterator<Item = T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for item in lists.into_iter().flatten() {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

fn parse_time(t: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(t, &Rfc3339).ok()
}

/// The earlier (or with `later`, the later) of two optional RFC 3339 times.
fn pick_time(a: Option<String>, b: Option<&String>, later: bool) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => {
            let b_wins = match (parse_time(&a), parse_time(b)) {
                (Some(ta), Some(tb)) => (tb > ta) == later && tb != ta,
                _ => (b.as_str() > a.as_str()) == later && *b != a,
            };
            Some(if b_wins { b.clone() } else { a })
        }
        (a, b) => a.or_else(|| b.cloned()),
    }
}

/// Reasons of several reports, by code: counts summed, first and last seen widened, the
/// process of the latest kept.
fn merge_reasons<'a>(lists: impl IntoIterator<Item = &'a [Reason]>) -> Vec<Reason> {
    let mut out: Vec<Reason> = Vec::new();
    for reason in lists.into_iter().flatten() {
        match out
            .iter_mut()
            .find(|r| r.code == reason.code && r.record_type == reason.record_type)
        {
            None => out.push(reason.clone()),
            Some(r) => {
                r.count = r.count.saturating_add(reason.count);
                r.first_seen = pick_time(r.first_seen.take(), reason.first_seen.as_ref(), false);
                let latest = pick_time(r.last_seen.clone(), reason.last_seen.as_ref(), true);
                if latest != r.last_seen {
                    r.process.clone_from(&reason.process);
                }
                r.last_seen = latest;
            }
        }
    }
    out.sort_by(|a, b| {
        a.code
            .cmp(&b.code)
            .then_with(|| a.record_type.cmp(&b.record_type))
    });
    out
}

fn runner_status(
    input: &Input,
    entry: Option<(Status, u64, u64, u64, Vec<String>)>,
) -> RunnerStatus {
    let (status, flows, bytes_sent, bytes_received, reasons) = match entry {
        Some((s, f, bs, br, r)) => (Some(s), f, bs, br, r),
        None => (None, 0, 0, 0, vec![]),
    };
    RunnerStatus {
        runner: input.label.clone(),
        status,
        flows,
        bytes_sent,
        bytes_received,
        reasons,
    }
}

fn reason_codes(reasons: &[Reason]) -> Vec<String> {
    crate::report::reason_labels(reasons)
}

/// Merges the reports of several runners into one document.
pub fn merge(mut inputs: Vec<Input>) -> anyhow::Result<Document> {
    // Redacted first, so that nothing taken from them (summaries, reasons) escapes redaction.
    for input in &mut inputs {
        super::sanitize(&mut input.report);
    }
    let Some(first) = inputs.first() else {
        bail!("no report to merge");
    };
    let mut report = first.report.clone();
    report.generator = concat!("observer ", env!("CARGO_PKG_VERSION")).to_owned();

    let (hosts, host_breakdown) = merge_hosts(&inputs);
    let (groups, group_breakdown) = merge_groups(&inputs);
    let (undeclared, undeclared_breakdown) = merge_undeclared(&inputs);

    let mut runners = Vec::with_capacity(inputs.len());
    report.flows.clear();
    // cgroup ids are per host: one runner's table would name another's processes wrongly. Each
    // flow keeps its own `workload`.
    if inputs.len() > 1 {
        report.workloads.clear();
    }
    for input in &inputs {
        let r = &input.report;
        runners.push(Runner {
            label: input.label.clone(),
            source: input.source.clone(),
            generator: r.generator.clone(),
            runner_can_work: r.verdict.runner_can_work,
            summary: r.verdict.summary.clone(),
            started_at: r.capture.started_at.clone(),
            ended_at: r.capture.ended_at.clone(),
            duration_s: r.capture.duration_s,
            complete: r.capture.complete,
            incomplete_because: r.capture.incomplete_because.clone(),
            events: r.capture.events,
            lost_events: r.capture.lost_events,
            first_flow: report.flows.len(),
            flows: r.flows.len(),
        });
        report.flows.extend(r.flows.iter().cloned());
    }

    merge_capture(&mut report, &inputs);
    if inputs.len() > 1 {
        merge_verdict(
            &mut report.verdict,
            &inputs,
            &groups,
            &group_breakdown,
            &hosts,
            &host_breakdown,
        );
    }
    report.groups = groups;
    report.hosts = hosts;
    report.undeclared = undeclared;
    Ok(Document {
        report,
        merged: Some(Merged {
            runners,
            groups: group_breakdown,
            hosts: host_breakdown,
            undeclared: undeclared_breakdown,
        }),
    })
}

fn merge_groups(inputs: &[Input]) -> (Vec<GroupReport>, Vec<Breakdown>) {
    let mut groups = Vec::new();
    let mut breakdown = Vec::new();
    for (id, entries) in by_key(inputs, |r| &r.groups, |g| g.id.clone()) {
        let present = || entries.iter().flatten().copied();
        let Some(mut group) = present().next().cloned() else {
            continue;
        };
        group.status = Status::worst(present().map(|g| g.status));
        group.hosts = union(present().map(|g| g.hosts.iter().cloned()));
        group.failing_hosts = union(present().map(|g| g.failing_hosts.iter().cloned()));
        group.flows = total(present().map(|g| g.flows));
        group.bytes_sent = total(present().map(|g| g.bytes_sent));
        group.bytes_received = total(present().map(|g| g.bytes_received));
        group.throughput = combine_throughput(present().map(|g| &g.throughput));
        group.transfers = combine_transfers(inputs, &entries, |g| &g.transfers);
        let runners = inputs
            .iter()
            .zip(&entries)
            .map(|(input, g)| {
                runner_status(
                    input,
                    g.map(|g| {
                        // The reason codes of the group's failing members on this runner.
                        let codes = union(g.failing_hosts.iter().map(|name| {
                            input
                                .report
                                .hosts
                                .iter()
                                .find(|h| &h.name == name)
                                .map(|h| reason_codes(&h.reasons))
                                .unwrap_or_default()
                        }));
                        (g.status, g.flows, g.bytes_sent, g.bytes_received, codes)
                    }),
                )
            })
            .collect();
        groups.push(group);
        breakdown.push(Breakdown { key: id, runners });
    }
    (groups, breakdown)
}

fn merge_hosts(inputs: &[Input]) -> (Vec<HostReport>, Vec<Breakdown>) {
    let mut hosts = Vec::new();
    let mut breakdown = Vec::new();
    for (name, entries) in by_key(inputs, |r| &r.hosts, |h| h.name.clone()) {
        let present = || entries.iter().flatten().copied();
        let Some(mut host) = present().next().cloned() else {
            continue;
        };
        host.status = Status::worst(present().map(|h| h.status));
        host.groups = union(present().map(|h| h.groups.iter().cloned()));
        host.reasons = merge_reasons(present().map(|h| h.reasons.as_slice()));
        host.addresses = sorted_union(present().map(|h| h.addresses.iter().copied()));
        host.via_proxies = union(present().map(|h| h.via_proxies.iter().cloned()));
        host.named_by = sorted_union(present().map(|h| h.named_by.iter().copied()));
        host.cname_chain = present()
            .map(|h| h.cname_chain.clone())
            .find(|c| !c.is_empty())
            .unwrap_or_default();
        host.flows = total(present().map(|h| h.flows));
        host.bytes_sent = total(present().map(|h| h.bytes_sent));
        host.bytes_received = total(present().map(|h| h.bytes_received));
        host.throughput = combine_throughput(present().map(|h| &h.throughput));
        host.transfers = combine_transfers(inputs, &entries, |h| &h.transfers);
        host.processes = sorted_union(present().map(|h| h.processes.iter().cloned()));
        host.first_seen = present().fold(None, |t, h| pick_time(t, h.first_seen.as_ref(), false));
        host.last_seen = present().fold(None, |t, h| pick_time(t, h.last_seen.as_ref(), true));
        let runners = inputs
            .iter()
            .zip(&entries)
            .map(|(input, h)| {
                runner_status(
                    input,
                    h.map(|h| {
                        let codes = reason_codes(&h.reasons);
                        (h.status, h.flows, h.bytes_sent, h.bytes_received, codes)
                    }),
                )
            })
            .collect();
        hosts.push(host);
        breakdown.push(Breakdown { key: name, runners });
    }
    (hosts, breakdown)
}

/// An entry's throughput across runners. Extremes, samples, active time and bytes combine
/// exactly; medians do not add up, so `median_bps` and `p95_bps` are those of the runner with the
/// lowest median: the slowest runner, by which a fleet is judged.
fn combine_throughput<'a>(all: impl Iterator<Item = &'a ThroughputStats>) -> ThroughputStats {
    let (sent, received): (Vec<_>, Vec<_>) = all.map(|t| (&t.sent, &t.received)).unzip();
    ThroughputStats {
        sent: combine_rates(sent.into_iter().flatten()),
        received: combine_rates(received.into_iter().flatten()),
    }
}

/// An entry's transfers across runners: counts, bytes and seconds add up (so does the headline
/// rate), the slowest is the slowest of all and names its runner and flow.
fn combine_transfers<T>(
    inputs: &[Input],
    entries: &[Option<&T>],
    transfers: impl Fn(&T) -> &TransferStats,
) -> TransferStats {
    let mut all = TransferStats::default();
    for (input, entry) in inputs.iter().zip(entries) {
        if let Some(e) = entry {
            all.merge(&transfers(e).clone().of_runner(&input.label));
        }
    }
    all
}

fn combine_rates<'a>(rates: impl Iterator<Item = &'a RateStats>) -> Option<RateStats> {
    let rates: Vec<&RateStats> = rates.collect();
    let slowest = rates
        .iter()
        .min_by(|a, b| a.median_bps.total_cmp(&b.median_bps))?;
    Some(RateStats {
        min_bps: rates
            .iter()
            .map(|r| r.min_bps)
            .fold(f64::INFINITY, f64::min),
        median_bps: slowest.median_bps,
        p95_bps: slowest.p95_bps,
        max_bps: rates.iter().map(|r| r.max_bps).fold(0.0, f64::max),
        samples: rates.iter().map(|r| r.samples).sum(),
        active_s: (rates.iter().map(|r| r.active_s).sum::<f64>() * 1e3).round() / 1e3,
        bytes: rates.iter().map(|r| r.bytes).sum(),
    })
}

fn sorted_union<T: Ord>(lists: impl IntoIterator<Item = impl IntoIterator<Item = T>>) -> Vec<T> {
    lists
        .into_iter()
        .flatten()
        .collect::<BTreeSet<T>>()
        .into_iter()
        .collect()
}

fn undeclared_key(u: &UndeclaredReport) -> String {
    u.name.clone().unwrap_or_else(|| {
        u.addresses
            .iter()
            .map(IpAddr::to_string)
            .collect::<Vec<_>>()
            .join(",")
    })
}

fn merge_undeclared(inputs: &[Input]) -> (Vec<UndeclaredReport>, Vec<Breakdown>) {
    let mut merged: Vec<(UndeclaredReport, Breakdown)> = Vec::new();
    for (key, entries) in by_key(inputs, |r| &r.undeclared, undeclared_key) {
        let present = || entries.iter().flatten().copied();
        let Some(mut u) = present().next().cloned() else {
            continue;
        };
        u.status = Status::worst(present().map(|u| u.status));
        u.reasons = merge_reasons(present().map(|u| u.reasons.as_slice()));
        u.addresses = sorted_union(present().map(|u| u.addresses.iter().copied()));
        u.ports = sorted_union(present().map(|u| u.ports.iter().copied()));
        u.via_proxies = union(present().map(|u| u.via_proxies.iter().cloned()));
        u.named_by = sorted_union(present().map(|u| u.named_by.iter().copied()));
        u.cname_chain = present()
            .map(|u| u.cname_chain.clone())
            .find(|c| !c.is_empty())
            .unwrap_or_default();
        u.flows = total(present().map(|u| u.flows));
        u.bytes_sent = total(present().map(|u| u.bytes_sent));
        u.bytes_received = total(present().map(|u| u.bytes_received));
        u.throughput = combine_throughput(present().map(|u| &u.throughput));
        u.transfers = combine_transfers(inputs, &entries, |u| &u.transfers);
        u.processes = sorted_union(present().map(|u| u.processes.iter().cloned()));
        u.first_seen = present().fold(None, |t, e| pick_time(t, e.first_seen.as_ref(), false));
        u.last_seen = present().fold(None, |t, e| pick_time(t, e.last_seen.as_ref(), true));
        let runners = inputs
            .iter()
            .zip(&entries)
            .map(|(input, e)| {
                runner_status(
                    input,
                    e.map(|e| {
                        let codes = reason_codes(&e.reasons);
                        (e.status, e.flows, e.bytes_sent, e.bytes_received, codes)
                    }),
                )
            })
            .collect();
        merged.push((u, Breakdown { key, runners }));
    }
    // As in one runner's report: loudest first.
    merged.sort_by(|(a, _), (b, _)| {
        (b.flows, b.bytes_sent + b.bytes_received, &a.name)
            .cmp(&(a.flows, a.bytes_sent + a.bytes_received, &b.name))
            .then_with(|| a.addresses.cmp(&b.addresses))
    });
    merged.into_iter().unzip()
}

/// The capture section of the merge: the widest window, counters summed, proxies united,
/// probes attached only where attached on every runner, complete only when every runner's
/// capture was, with each runner's reasons prefixed by its label.
fn merge_capture(report: &mut Report, inputs: &[Input]) {
    let c = &mut report.capture;
    let captures = || inputs.iter().map(|i| &i.report.capture);
    c.started_at = captures().fold(None, |t, x| pick_time(t, x.started_at.as_ref(), false));
    c.ended_at = captures().fold(None, |t, x| pick_time(t, x.ended_at.as_ref(), true));
    c.duration_s = match (
        c.started_at.as_deref().and_then(parse_time),
        c.ended_at.as_deref().and_then(parse_time),
    ) {
        (Some(a), Some(b)) => ((b - a).as_seconds_f64() * 1e3).round() / 1e3,
        _ => captures().map(|x| x.duration_s).fold(0.0, f64::max),
    };
    c.ports = sorted_union(captures().map(|x| x.ports.iter().copied()));
    // The same proxy found the same way on several runners once; found another way, again.
    c.proxies = union(captures().map(|x| x.proxies.iter().cloned()));
    c.all_ports = captures().any(|x| x.all_ports);
    c.events = total(captures().map(|x| x.events));
    c.lost_events = total(captures().map(|x| x.lost_events));
    c.undecodable_events = total(captures().map(|x| x.undecodable_events));
    c.malformed_dns = total(captures().map(|x| x.malformed_dns));
    c.dns_skipped = total(captures().map(|x| x.dns_skipped));
    c.dns_repeats = total(captures().map(|x| x.dns_repeats));
    c.flows_dropped = total(captures().map(|x| x.flows_dropped));
    c.unreadable_lines = total(captures().map(|x| x.unreadable_lines));
    let names = &mut c.name_cache;
    names.addresses = captures()
        .map(|x| x.name_cache.addresses)
        .fold(0, usize::saturating_add);
    names.names = captures()
        .map(|x| x.name_cache.names)
        .fold(0, usize::saturating_add);
    names.evicted_addresses = total(captures().map(|x| x.name_cache.evicted_addresses));
    names.evicted_bindings = total(captures().map(|x| x.name_cache.evicted_bindings));
    names.expired_bindings = total(captures().map(|x| x.name_cache.expired_bindings));
    names.evicted_names = total(captures().map(|x| x.name_cache.evicted_names));
    c.probes.clear();
    for input in inputs {
        for probe in &input.report.capture.probes {
            let labelled = probe
                .error
                .as_ref()
                .map(|e| format!("{}: {e}", input.label));
            match c
                .probes
                .iter_mut()
                .find(|p| p.program == probe.program && p.hook == probe.hook)
            {
                None => {
                    let mut p = probe.clone();
                    p.error = labelled;
                    c.probes.push(p);
                }
                Some(p) => {
                    p.attached &= probe.attached;
                    if p.error.is_none() {
                        p.error = labelled;
                    }
                }
            }
        }
    }
    c.complete = captures().all(|x| x.complete);
    c.incomplete_because = inputs
        .iter()
        .flat_map(|i| {
            i.report
                .capture
                .incomplete_because
                .iter()
                .map(move |why| format!("{}: {why}", i.label))
        })
        .collect();
    if !c.complete && c.incomplete_because.is_empty() {
        c.incomplete_because
            .push("a merged report's capture was not complete".to_owned());
    }
}

/// The fleet's verdict: a runner can work only where its own report says so; groups and
/// failing hosts are named with the runners they fail on.
fn merge_verdict(
    verdict: &mut Verdict,
    inputs: &[Input],
    groups: &[GroupReport],
    group_breakdown: &[Breakdown],
    hosts: &[HostReport],
    host_breakdown: &[Breakdown],
) {
    let failing_on = |runners: &[RunnerStatus]| -> Vec<String> {
        runners
            .iter()
            .filter(|r| r.status.is_some_and(Status::is_failing))
            .map(|r| r.runner.clone())
            .collect()
    };
    let templates: Vec<&GroupVerdict> = inputs
        .iter()
        .flat_map(|i| {
            i.report
                .verdict
                .required
                .iter()
                .chain(&i.report.verdict.failing_features)
        })
        .collect();
    let explain = |g: &GroupReport| -> Option<GroupVerdict> {
        let mut v = (*templates.iter().find(|t| t.group == g.id)?).clone();
        v.title.clone_from(&g.title);
        v.status = g.status;
        v.because = g
            .failing_hosts
            .iter()
            .map(|name| {
                let index = hosts.iter().position(|h| &h.name == name);
                let codes: Vec<String> = index
                    .map(|i| crate::report::reason_labels(&hosts[i].reasons))
                    .unwrap_or_default();
                let on = index
                    .and_then(|i| host_breakdown.get(i))
                    .map(|b| failing_on(&b.runners))
                    .unwrap_or_default();
                format!("{name} ({}) on {}", codes.join(", "), on.join(", "))
            })
            .collect();
        Some(v)
    };
    verdict.required = groups
        .iter()
        .filter(|g| g.required)
        .filter_map(explain)
        .collect();
    verdict.failing_features = groups
        .iter()
        .filter(|g| !g.required && !g.summary && g.status.is_failing())
        .filter_map(explain)
        .collect();

    let labels = |want: Option<bool>| -> Vec<&str> {
        inputs
            .iter()
            .filter(|i| i.report.verdict.runner_can_work == want)
            .map(|i| i.label.as_str())
            .collect()
    };
    let (can, cannot, unknown) = (labels(Some(true)), labels(Some(false)), labels(None));
    let n = inputs.len();
    verdict.runner_can_work = if !cannot.is_empty() {
        Some(false)
    } else if unknown.is_empty() {
        Some(true)
    } else {
        None
    };
    let mut sentences = Vec::new();
    if can.len() == n {
        sentences.push(format!(
            "All {n} runners can work: their essential hosts were reached."
        ));
    } else {
        if !cannot.is_empty() {
            let because: Vec<String> = verdict
                .required
                .iter()
                .flat_map(|g| g.because.iter().cloned())
                .collect();
            sentences.push(format!(
                "{} of {n} runners cannot work or are unreliable ({}): essential hosts failed: {}.",
                cannot.len(),
                cannot.join(", "),
                because.join("; ")
            ));
        }
        if !unknown.is_empty() {
            sentences.push(format!(
                "Unknown for {} of {n} runners ({}): no essential host was contacted in their \
                 capture windows.",
                unknown.len(),
                unknown.join(", ")
            ));
        }
        if !can.is_empty() {
            sentences.push(format!(
                "{} of {n} runners can work ({}).",
                can.len(),
                can.join(", ")
            ));
        }
    }
    if !verdict.failing_features.is_empty() {
        let features: Vec<String> = verdict
            .failing_features
            .iter()
            .map(|f| {
                let on = groups
                    .iter()
                    .position(|g| g.id == f.group)
                    .and_then(|i| group_breakdown.get(i))
                    .map(|b| failing_on(&b.runners))
                    .unwrap_or_default();
                format!("{} ({} on {})", f.title, f.status.word(), on.join(", "))
            })
            .collect();
        sentences.push(format!("Features that will fail: {}.", features.join(", ")));
    }
    verdict.summary = sentences.join(" ");
}

/// The sum of counts from several reports: a hostile report's counts near `u64::MAX` saturate
/// rather than overflow.
fn total(counts: impl Iterator<Item = u64>) -> u64 {
    counts.fold(0, u64::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_near_the_limit_saturate_instead_of_overflowing() {
        // A hostile report's counts (found by attacking `report merge`: a panic before).
        let mut report: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/suggest-report.json"))
                .expect("fixture");
        report["hosts"][0]["flows"] = serde_json::json!(1u64 << 63);
        report["capture"]["lost_events"] = serde_json::json!(1u64 << 63);
        let report = crate::report::parse("r.json", &report.to_string()).expect("report");
        let input = |label: &str| Input {
            label: label.into(),
            source: format!("{label}.json"),
            report: report.clone(),
        };
        let doc = merge(vec![input("a"), input("b")]).expect("merged");
        assert_eq!(doc.report.hosts[0].flows, u64::MAX);
        assert_eq!(doc.report.capture.lost_events, u64::MAX);
    }

    #[test]
    fn worst_status_ignores_unseen() {
        assert_eq!(Status::worst([Status::Ok, Status::Unseen]), Status::Ok);
        assert_eq!(
            Status::worst([Status::Ok, Status::Blocked]),
            Status::Blocked
        );
        assert_eq!(
            Status::worst([Status::Degraded, Status::Blocked]),
            Status::Blocked
        );
        assert_eq!(
            Status::worst([Status::Unseen, Status::Degraded]),
            Status::Degraded
        );
        assert_eq!(Status::worst([]), Status::Unseen);
    }

    #[test]
    fn times_compare_as_times() {
        let a = "2026-11-27T07:07:34.72Z".to_owned();
        let b = "2026-11-27T07:07:34.7247Z".to_owned();
        assert_eq!(pick_time(Some(a.clone()), Some(&b), true), Some(b.clone()));
        assert_eq!(pick_time(Some(a.clone()), Some(&b), false), Some(a.clone()));
        assert_eq!(pick_time(None, Some(&b), false), Some(b));
        assert_eq!(pick_time(Some(a.clone()), None, true), Some(a));
    }

    #[test]
    fn labels_are_stems_or_given_and_unique() {
        let paths = |ps: &[&str]| ps.iter().map(PathBuf::from).collect::<Vec<_>>();
        assert_eq!(
            labels_for(&paths(&["r/a.json", "b.json"]), &[]).unwrap(),
            ["a", "b"]
        );
        assert_eq!(
            labels_for(&paths(&["x/report.json", "y/report.json", "c.json"]), &[]).unwrap(),
            ["x/report.json", "y/report.json", "c"]
        );
        assert_eq!(
            labels_for(&paths(&["a.json", "b.json"]), &["one".into(), "two".into()]).unwrap(),
            ["one", "two"]
        );
        assert!(labels_for(&paths(&["a.json", "b.json"]), &["one".into()]).is_err());
        assert!(labels_for(&paths(&["a.json", "a.json"]), &[]).is_err());
        assert!(labels_for(&paths(&["a.json", "b.json"]), &["x".into(), "x".into()]).is_err());
        assert!(labels_for(&paths(&["a.json"]), &[" ".into()]).is_err());
    }

    #[test]
    fn throughput_combines_exactly_where_it_can_and_keeps_the_slowest_median() {
        let rates = |min: f64, median: f64, max: f64, samples: usize, bytes: u64| RateStats {
            min_bps: min,
            median_bps: median,
            p95_bps: median * 1.5,
            max_bps: max,
            samples,
            active_s: 1.25,
            bytes,
        };
        let fast = ThroughputStats {
            sent: None,
            received: Some(rates(900.0, 2000.0, 5000.0, 10, 40_000)),
        };
        let slow = ThroughputStats {
            sent: Some(rates(10.0, 20.0, 30.0, 2, 100)),
            received: Some(rates(500.0, 800.0, 6000.0, 4, 9_000)),
        };
        let merged = combine_throughput([&fast, &slow].into_iter());
        let received = merged.received.expect("received");
        assert_eq!(
            (received.min_bps, received.max_bps),
            (500.0, 6000.0),
            "extremes over runners"
        );
        assert_eq!((received.median_bps, received.p95_bps), (800.0, 1200.0));
        assert_eq!(
            (received.samples, received.active_s, received.bytes),
            (14, 2.5, 49_000)
        );
        assert_eq!(merged.sent, slow.sent, "one runner sent: its figures");
        assert_eq!(
            combine_throughput(std::iter::empty()),
            ThroughputStats::default()
        );
    }

    #[test]
    fn reasons_add_up_by_code() {
        let reason = |code: &str, count: u64, first: &str, last: &str| -> Reason {
            serde_json::from_value(serde_json::json!({
                "code": code, "count": count, "first_seen": first, "last_seen": last,
                "process": null,
            }))
            .expect("a reason")
        };
        let a = [reason(
            "tcp_reset",
            2,
            "2026-01-01T00:00:02Z",
            "2026-01-01T00:00:05Z",
        )];
        let b = [
            reason(
                "tcp_reset",
                1,
                "2026-01-01T00:00:01Z",
                "2026-01-01T00:00:03Z",
            ),
            reason(
                "dns_nxdomain",
                1,
                "2026-01-01T00:00:01Z",
                "2026-01-01T00:00:01Z",
            ),
        ];
        let merged = merge_reasons([a.as_slice(), b.as_slice()]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].code, "dns_nxdomain");
        let reset = &merged[1];
        assert_eq!(reset.count, 3);
        assert_eq!(reset.first_seen.as_deref(), Some("2026-01-01T00:00:01Z"));
        assert_eq!(reset.last_seen.as_deref(), Some("2026-01-01T00:00:05Z"));
    }
}
