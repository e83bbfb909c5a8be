//! Writing the audit report for people and tools: JSON (docs/report.md), Markdown, a
//! self-contained HTML page and CSV of flows (docs/report-formats.md), and merging the reports
//! of several runners into one (`observer report merge`).
//!
//! Every format is rendered from the same [`Document`]: a schema-1 [`Report`], plus the
//! `merged` section when it combines several runners. Each format states the capture's
//! completeness, so a partial report never passes for a complete one. Before anything is
//! written, the text that comes from processes is redacted ([`redact::redact`]).

mod csv;
mod html;
mod markdown;
pub use markdown::escape as escape_markdown;
pub mod merge;
mod redact;
mod table;

use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::{
    capture::record::Process,
    outfile::{write_out, write_with},
    pipeline::correlate::Correlator,
    pipeline::events::NamedBy,
    report::{self, Report, Status},
};

pub use merge::Merged;

/// Up to this many runners, the tables of a merged report have one status column per runner;
/// beyond, one column names the runners where the entry is blocked or degraded.
pub const MAX_RUNNER_COLUMNS: usize = 8;

/// How the report is written (`--format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The JSON report (docs/report.md), for tools and for `observer report merge`.
    #[default]
    Json,
    /// Markdown for a GitHub job summary or a ticket.
    #[value(alias = "md")]
    Markdown,
    /// One self-contained HTML page (inline CSS and SVG, no script, no external asset).
    Html,
    /// One CSV row per flow (RFC 4180).
    Csv,
}

/// A report as written: the schema-1 report, and for a merge of several runners' reports the
/// `merged` section (docs/report-formats.md) that says which runner saw what.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "F: Deserialize<'de> + Default"))]
pub struct Document<F = Vec<report::FlowReport>> {
    #[serde(flatten)]
    pub report: Report<F>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged: Option<Merged>,
}

impl Document {
    /// The document of one runner's report, redacted.
    pub fn single(mut report: Report) -> Self {
        sanitize(&mut report);
        Self {
            report,
            merged: None,
        }
    }

    /// The runners' labels when the document merges several reports; empty otherwise.
    pub fn runner_labels(&self) -> Vec<&str> {
        self.merged
            .iter()
            .flat_map(|m| m.runners.iter().map(|r| r.label.as_str()))
            .collect()
    }
}

/// The document in `format`.
pub fn render(doc: &Document, format: Format) -> anyhow::Result<String> {
    Ok(match format {
        Format::Json => {
            let mut json = serde_json::to_string_pretty(doc)?;
            json.push('\n');
            json
        }
        Format::Markdown => markdown::render(doc),
        Format::Html => html::render(doc),
        Format::Csv => csv::render(doc),
    })
}

/// Writes the report of everything the correlator saw in `format` to `out` (`-` for stdout),
/// atomically. The JSON report's flows are serialized one at a time from the correlator
/// ([`StreamedFlows`]), so that a capture of 100,000 flows is not held a second time (as
/// reports) nor a third (as text) while it is written.
pub fn write_report(correlator: &mut Correlator, out: &Path, format: Format) -> anyhow::Result<()> {
    correlator.finish();
    let c = &*correlator;
    if format != Format::Json {
        return write_document(&Document::single(report::build(c)), out, format);
    }
    let mut report = report::build::build_with(c, StreamedFlows(c));
    sanitize_sections(&mut report);
    let doc = Document {
        report,
        merged: None,
    };
    say_incomplete(&doc.report.capture);
    Ok(write_with(out, "the report", |w| {
        serde_json::to_writer_pretty(&mut *w, &doc)?;
        w.write_all(b"\n")
    })?)
}

/// The flows of a correlator as the report's `flows`: each made a [`report::FlowReport`] and
/// redacted as it is serialized.
pub struct StreamedFlows<'a>(&'a Correlator);

impl Serialize for StreamedFlows<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let c = self.0;
        serializer.collect_seq(c.flows().iter().map(|f| {
            let mut flow = report::build::flow_report(f, c);
            sanitize_flow(&mut flow);
            flow
        }))
    }
}

/// Renders a report (or a merge of reports) in `format` and writes it to `out` (`-` for
/// stdout), atomically: a temporary file beside it, then a rename, so a reader never sees half
/// a report. An incomplete capture is also said on stderr, whatever the format.
pub fn write_document(doc: &Document, out: &Path, format: Format) -> anyhow::Result<()> {
    let text = render(doc, format).context("cannot render the report")?;
    say_incomplete(&doc.report.capture);
    Ok(write_out(out, &text, "the report")?)
}

/// Says on stderr that the report is incomplete, and why, when it is.
fn say_incomplete(capture: &report::CaptureSection) {
    if !capture.complete {
        // The reasons come from the report, which may come from anywhere (a merge): sanitized.
        eprintln!(
            "observer: the report is incomplete: {}",
            crate::sanitize::line(&capture.incomplete_because.join("; "))
        );
    }
}

/// Redacts, in place, the report's text that comes from processes and sockets: task names and
/// error strings.
pub fn sanitize(report: &mut Report) {
    sanitize_sections(report);
    report.flows.iter_mut().for_each(sanitize_flow);
}

fn sanitize_process(p: &mut Process) {
    if let std::borrow::Cow::Owned(clean) = redact::redact(&p.comm) {
        p.comm = clean.into();
    }
}

fn sanitize_text(t: &mut String) {
    if let std::borrow::Cow::Owned(clean) = redact::redact(t) {
        *t = clean;
    }
}

/// cgroup names below a delegated subtree are chosen by its owner, as task names are.
fn sanitize_workload(w: &mut crate::report::Workload) {
    sanitize_text(&mut w.cgroup);
    w.unit.iter_mut().for_each(sanitize_text);
}

/// Redacts one flow of a report.
fn sanitize_flow(flow: &mut report::FlowReport) {
    sanitize_process(&mut flow.process);
    flow.error.iter_mut().for_each(sanitize_text);
    flow.workload.iter_mut().for_each(sanitize_workload);
}

/// Redacts every part of a report but its flows.
fn sanitize_sections<F>(report: &mut Report<F>) {
    let process = sanitize_process;
    let text = sanitize_text;
    for probe in &mut report.capture.probes {
        probe.error.iter_mut().for_each(text);
    }
    report.capture.incomplete_because.iter_mut().for_each(text);
    // A proxy URL from an environment can carry its credentials (`http://user:pass@proxy`).
    for proxy in &mut report.capture.proxies {
        text(&mut proxy.url);
    }
    for host in &mut report.hosts {
        host.processes.iter_mut().for_each(process);
        for reason in &mut host.reasons {
            reason.process.iter_mut().for_each(process);
        }
    }
    for u in &mut report.undeclared {
        u.processes.iter_mut().for_each(process);
        for reason in &mut u.reasons {
            reason.process.iter_mut().for_each(process);
        }
    }
    for w in &mut report.workloads {
        sanitize_workload(&mut w.workload);
    }
}

/// The verdict in a few words, for a title line.
pub fn headline(doc: &Document) -> &'static str {
    let verdict = &doc.report.verdict;
    let blocked = verdict.required.iter().any(|g| g.status == Status::Blocked);
    match (doc.merged.is_some(), verdict.runner_can_work) {
        (false, Some(true)) => "The runner can work",
        (false, Some(false)) if blocked => "The runner cannot work",
        (false, Some(false)) => "The runner is unreliable",
        (false, None) => "Unknown: no essential host was contacted",
        (true, Some(true)) => "Every runner can work",
        (true, Some(false)) => "Not every runner can work",
        (true, None) => "Unknown for some runners: no essential host was contacted",
    }
}

/// An RFC 3339 time as `2026-11-27 07:07:34.720` (UTC, milliseconds); `—` when unknown.
pub fn when(time: Option<&str>) -> String {
    let Some(time) = time else {
        return "—".to_owned();
    };
    let b = time.as_bytes();
    if b.len() >= 20 && b[10] == b'T' && time.ends_with('Z') && time.is_ascii() {
        let fraction: String = time[19..time.len() - 1]
            .trim_start_matches('.')
            .chars()
            .chain(std::iter::repeat('0'))
            .take(3)
            .collect();
        format!("{} {}.{fraction}", &time[..10], &time[11..19])
    } else {
        time.to_owned()
    }
}

/// `comm[pid]`.
pub fn process_label(p: &Process) -> String {
    format!("{}[{}]", p.comm, p.pid)
}

/// Byte counts as people read them (`1.5 KiB`).
pub fn bytes(n: u64) -> String {
    crate::format::bytes(n)
}

/// One line per fact about the capture's completeness, for every human-readable format.
pub fn capture_facts(report: &Report) -> Vec<(&'static str, String)> {
    let c = &report.capture;
    let attached = c.probes.iter().filter(|p| p.attached).count();
    let ports = if c.all_ports {
        "all TCP ports".to_owned()
    } else {
        c.ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    vec![
        (
            "Window",
            format!(
                "{} to {} UTC ({} s)",
                when(c.started_at.as_deref()),
                when(c.ended_at.as_deref()),
                c.duration_s
            ),
        ),
        ("Watched ports", ports),
        ("HTTP proxies watched", proxies(report)),
        (
            "Events",
            format!(
                "{} read, {} lost, {} undecodable, {} malformed DNS, {} DNS packets not copied{}",
                c.events,
                c.lost_events,
                c.undecodable_events,
                c.malformed_dns,
                c.dns_skipped,
                if c.dns_repeats > 0 {
                    format!(
                        ", {} repeated DNS exchanges counted (exact repeats within a second)",
                        c.dns_repeats
                    )
                } else {
                    String::new()
                }
            ),
        ),
        (
            "Probes",
            format!("{attached} of {} attached", c.probes.len()),
        ),
        (
            "Flows not kept",
            format!("{} (beyond the report's limit)", c.flows_dropped),
        ),
        ("Unreadable event-log lines", c.unreadable_lines.to_string()),
        (
            "Local resolvers",
            if c.local_resolvers.is_empty() {
                "none seen".to_owned()
            } else {
                c.local_resolvers
                    .iter()
                    .map(process_label)
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ),
    ]
}

/// The proxies watched, each with where it was found and the names it lets go direct:
/// `198.18.1.5:3128 from --proxy (no_proxy localhost,.corp.example)`; `none` when no proxy was
/// watched (flows through an unwatched proxy go to a port the capture may not watch at all).
pub fn proxies(report: &Report) -> String {
    let list = &report.capture.proxies;
    if list.is_empty() {
        return "none".to_owned();
    }
    list.iter()
        .map(|p| {
            let mut text = format!("{} from {}", p.addr, p.source);
            if let Some(no_proxy) = p.no_proxy.as_deref().filter(|n| !n.is_empty()) {
                text.push_str(&format!(" (no_proxy {no_proxy})"));
            }
            text
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// What a host's or destination's flows say of how they were reached and named, as side notes
/// of its name: `via proxy 198.18.1.5:3128`, `named by SNI`. (CONNECT and HTTP naming go with
/// a proxy, which says it.)
pub fn host_notes(via_proxies: &[String], named_by: &[NamedBy]) -> Vec<String> {
    let mut notes = Vec::new();
    match via_proxies {
        [] => {}
        [one] => notes.push(format!("via proxy {one}")),
        several => notes.push(format!("via proxies {}", several.join(", "))),
    }
    if named_by.contains(&NamedBy::Sni) {
        notes.push("named by SNI".to_owned());
    }
    notes
}

/// How a flow was named when not by a DNS answer alone, and how it went through a proxy: the
/// evidence fields of a flow (docs/report.md), from a report's flow or the correlator's.
#[derive(Clone, Copy, Debug, Default)]
pub struct FlowNaming<'a> {
    pub named_by: Option<NamedBy>,
    pub via_proxy: Option<&'a str>,
    pub proxy_target: Option<&'a str>,
    pub sni: Option<&'a str>,
    pub dns_name: Option<&'a str>,
    pub tls_note: Option<&'a str>,
}

impl<'a> FlowNaming<'a> {
    pub fn of_report(f: &'a crate::report::FlowReport) -> Self {
        Self {
            named_by: f.named_by,
            via_proxy: f.via_proxy.as_deref(),
            proxy_target: f.proxy_target.as_deref(),
            sni: f.sni.as_deref(),
            dns_name: f.dns_name.as_deref(),
            tls_note: f.tls_note.as_deref(),
        }
    }

    /// `named by CONNECT api.github.com:443 to proxy 198.18.1.5:3128`, `named by SNI (DNS said
    /// objects.githubusercontent.com)`, `TLS hello without SNI`; none for a flow DNS named
    /// with nothing to add. The text is raw: each format escapes it.
    pub fn words(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(proxy) = self.via_proxy {
            let target = self.proxy_target.unwrap_or("?");
            parts.push(match self.named_by {
                Some(NamedBy::HttpHost) => {
                    format!("named by the HTTP request for {target} to proxy {proxy}")
                }
                Some(_) => format!("named by CONNECT {target} to proxy {proxy}"),
                // An address asked of the proxy: named like a direct flow to it.
                None => format!("CONNECT {target} to proxy {proxy}"),
            });
        } else if self.named_by == Some(NamedBy::Sni) {
            parts.push(match self.dns_name {
                Some(dns) => format!("named by SNI (DNS said {dns})"),
                None => "named by SNI (no DNS answer named the address)".to_owned(),
            });
        }
        if let Some(note) = self.tls_note {
            parts.push(tls_note_words(note, self.sni));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// A flow's `tls_note` in words.
pub fn tls_note_words(note: &str, sni: Option<&str>) -> String {
    match (note, sni) {
        ("no_sni", _) => "TLS hello without SNI".to_owned(),
        ("ech", Some(outer)) => format!("ECH: the real name is encrypted (outer SNI {outer})"),
        ("ech", None) => "ECH: the real name is encrypted".to_owned(),
        ("sni_not_copied", _) => "SNI beyond the bytes copied".to_owned(),
        ("not_tls", _) => "first bytes not TLS".to_owned(),
        (other, _) => other.to_owned(),
    }
}

/// Whether a flow through a proxy failed there: the proxy answered with an error status, or
/// closed without answering (as the report classifies it, docs/report.md).
pub fn proxy_failed(f: &crate::report::FlowReport) -> bool {
    f.via_proxy.is_some()
        && match f.proxy_status {
            Some(code) => crate::report::vocab::Reason::of_proxy_status(code).is_some(),
            None => f.outcome.is_some() && f.bytes_received == 0,
        }
}

/// Probes that were not attached, as `program (hook): error`.
pub fn unattached_probes(report: &Report) -> Vec<String> {
    report
        .capture
        .probes
        .iter()
        .filter(|p| !p.attached)
        .map(|p| match &p.error {
            Some(e) => format!("{} ({}): {e}", p.program, p.hook),
            None => format!("{} ({})", p.program, p.hook),
        })
        .collect()
}

/// Counts of the flows for the flows summary: by outcome and by class, and how many never
/// completed the handshake or received nothing.
pub struct FlowCounts {
    pub total: usize,
    pub open: usize,
    pub not_established: usize,
    pub nothing_received: usize,
    pub by_outcome: Vec<(&'static str, usize)>,
    pub by_class: Vec<(&'static str, usize)>,
    /// Through an HTTP proxy, and of those, the ones the proxy failed ([`proxy_failed`]).
    pub proxied: usize,
    pub proxy_failed: usize,
}

/// Whether a flow deserves a line in a summary of problems: it ended without completing the
/// handshake, was established and received nothing, or its proxy answered with an error.
pub fn flow_is_problem(f: &crate::report::FlowReport) -> bool {
    (f.outcome.is_some() && (!f.established || f.bytes_received == 0)) || proxy_failed(f)
}

impl FlowCounts {
    pub fn of(report: &Report) -> Self {
        use crate::pipeline::events::{DestinationClass, Outcome};
        let flows = &report.flows;
        let outcomes = [
            Outcome::Closed,
            Outcome::Reset,
            Outcome::Refused,
            Outcome::Timeout,
            Outcome::Unreachable,
            Outcome::Error,
            Outcome::Aborted,
        ];
        let classes = [
            (DestinationClass::Declared, "declared"),
            (DestinationClass::Undeclared, "undeclared"),
            (DestinationClass::Unresolved, "unresolved"),
        ];
        Self {
            total: flows.len(),
            open: flows.iter().filter(|f| f.outcome.is_none()).count(),
            not_established: flows
                .iter()
                .filter(|f| f.outcome.is_some() && !f.established)
                .count(),
            nothing_received: flows
                .iter()
                .filter(|f| f.outcome.is_some() && f.established && f.bytes_received == 0)
                .count(),
            by_outcome: outcomes
                .iter()
                .map(|o| {
                    let n = flows.iter().filter(|f| f.outcome == Some(*o)).count();
                    (o.as_str(), n)
                })
                .filter(|(_, n)| *n > 0)
                .collect(),
            by_class: classes
                .iter()
                .map(|(c, word)| (*word, flows.iter().filter(|f| f.class == *c).count()))
                .filter(|(_, n)| *n > 0)
                .collect(),
            proxied: flows.iter().filter(|f| f.via_proxy.is_some()).count(),
            proxy_failed: flows.iter().filter(|f| proxy_failed(f)).count(),
        }
    }

    /// `N flows: … by outcome …; … by class …` in one sentence.
    pub fn sentence(&self) -> String {
        if self.total == 0 {
            return "No TCP flow to a watched port was seen.".to_owned();
        }
        let list = |items: &[(&str, usize)]| {
            items
                .iter()
                .map(|(w, n)| format!("{n} {w}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut s = format!(
            "{} flow{}: {}",
            self.total,
            if self.total == 1 { "" } else { "s" },
            list(&self.by_class)
        );
        if !self.by_outcome.is_empty() {
            s.push_str(&format!("; ended {}", list(&self.by_outcome)));
        }
        if self.open > 0 {
            s.push_str(&format!(
                "; {} still open when the capture ended",
                self.open
            ));
        }
        s.push_str(&format!(
            ". {} never completed the handshake, {} were established but received nothing.",
            self.not_established, self.nothing_received
        ));
        if self.proxied > 0 {
            s.push_str(&format!(
                " {} went through an HTTP proxy, which answered {} of them with an error or not at all.",
                self.proxied, self.proxy_failed
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON that `write_report` streams from the correlator is, byte for byte, the JSON of
    /// the report built whole and redacted (the way every other format and `report merge` get
    /// it), task names that carry a credential included.
    #[test]
    fn the_streamed_json_report_is_the_report_built_whole() {
        let fixture = include_str!("../../tests/fixtures/runner-workload.jsonl")
            .replacen(r#""comm":"curl""#, r#""comm":"ghp_abcdefghijk""#, 3)
            .replacen(r#""comm":"getent""#, r#""comm":"x\u001b[2J""#, 1);
        let mut c = Correlator::new(crate::catalog::Catalog::builtin());
        crate::eventlog::replay(fixture.as_bytes(), "fixture", &mut c).expect("replays");
        let dir = std::env::temp_dir().join(format!("observer-stream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let out = dir.join("report.json");
        write_report(&mut c, &out, Format::Json).expect("writes");
        let streamed = std::fs::read_to_string(&out).expect("reads");
        std::fs::remove_dir_all(&dir).expect("cleans up");
        let whole = render(&Document::single(report::build(&c)), Format::Json).expect("renders");
        assert!(c.flows().len() >= 5, "the fixture has flows");
        assert!(streamed.contains("[redacted]") && !streamed.contains("ghp_abcdefghijk"));
        assert_eq!(streamed, whole);
    }

    #[test]
    fn times_are_shortened_to_milliseconds() {
        assert_eq!(
            when(Some("2026-11-27T07:07:34.720404394Z")),
            "2026-11-27 07:07:34.720"
        );
        assert_eq!(
            when(Some("2026-11-27T07:07:34Z")),
            "2026-11-27 07:07:34.000"
        );
        assert_eq!(
            when(Some("2026-11-27T07:07:34.5Z")),
            "2026-11-27 07:07:34.500"
        );
        assert_eq!(when(Some("yesterday")), "yesterday");
        assert_eq!(when(None), "—");
    }

    #[test]
    fn how_a_flow_was_named_reads_as_its_evidence() {
        let proxy = Some("198.18.1.5:3128");
        let words = |n: FlowNaming<'_>| n.words();
        assert_eq!(
            words(FlowNaming::default()),
            None,
            "DNS alone: nothing to add"
        );
        assert_eq!(
            words(FlowNaming {
                named_by: Some(NamedBy::Connect),
                via_proxy: proxy,
                proxy_target: Some("api.github.com:443"),
                ..FlowNaming::default()
            })
            .as_deref(),
            Some("named by CONNECT api.github.com:443 to proxy 198.18.1.5:3128")
        );
        assert_eq!(
            words(FlowNaming {
                named_by: Some(NamedBy::HttpHost),
                via_proxy: proxy,
                proxy_target: Some("deb.example.org:80"),
                ..FlowNaming::default()
            })
            .as_deref(),
            Some("named by the HTTP request for deb.example.org:80 to proxy 198.18.1.5:3128")
        );
        // An address asked of the proxy is named as a direct flow to it would be.
        assert_eq!(
            words(FlowNaming {
                via_proxy: proxy,
                proxy_target: Some("198.18.1.10:443"),
                ..FlowNaming::default()
            })
            .as_deref(),
            Some("CONNECT 198.18.1.10:443 to proxy 198.18.1.5:3128")
        );
        let sni = |dns_name| FlowNaming {
            named_by: Some(NamedBy::Sni),
            sni: Some("front.example.net"),
            dns_name,
            ..FlowNaming::default()
        };
        assert_eq!(
            words(sni(Some("objects.githubusercontent.com"))).as_deref(),
            Some("named by SNI (DNS said objects.githubusercontent.com)")
        );
        assert_eq!(
            words(sni(None)).as_deref(),
            Some("named by SNI (no DNS answer named the address)")
        );
        let noted = |note, sni| {
            words(FlowNaming {
                tls_note: Some(note),
                sni,
                ..FlowNaming::default()
            })
        };
        assert_eq!(
            noted("ech", Some("cloudflare-ech.com")).as_deref(),
            Some("ECH: the real name is encrypted (outer SNI cloudflare-ech.com)")
        );
        assert_eq!(
            noted("no_sni", None).as_deref(),
            Some("TLS hello without SNI")
        );
        assert_eq!(
            noted("sni_not_copied", None).as_deref(),
            Some("SNI beyond the bytes copied")
        );
        assert_eq!(
            noted("not_tls", None).as_deref(),
            Some("first bytes not TLS")
        );
    }

    #[test]
    fn local_resolvers_are_named_like_every_other_process() {
        let mut report = crate::report::build(&crate::pipeline::correlate::Correlator::new(
            crate::catalog::Catalog::builtin(),
        ));
        let fact = |r: &Report| {
            capture_facts(r)
                .into_iter()
                .find(|(what, _)| *what == "Local resolvers")
                .map(|(_, value)| value)
        };
        assert_eq!(fact(&report).as_deref(), Some("none seen"));
        report.capture.local_resolvers = vec![
            Process {
                pid: 512,
                comm: "systemd-resolve".into(),
                cgroup_id: 1,
                job: None,
            },
            Process {
                pid: 900,
                comm: "dnsmasq".into(),
                cgroup_id: 1,
                job: None,
            },
        ];
        assert_eq!(
            fact(&report).as_deref(),
            Some("systemd-resolve[512], dnsmasq[900]")
        );
    }

    #[test]
    fn cgroup_names_are_redacted_like_task_names() {
        let mut c = crate::pipeline::correlate::Correlator::new(crate::catalog::Catalog::builtin());
        // A delegated subtree's owner names its cgroups as it likes.
        let path = "/user.slice/user-1000.slice/user@1000.service/GITHUB_TOKEN=ghs_abcdef.service";
        c.observe(
            1,
            &mut crate::pipeline::events::Observed::CgroupSeen {
                cgroup_id: 3,
                workload: crate::capture::cgroups::classify(path),
            },
        );
        c.observe(
            1,
            &mut crate::pipeline::correlate::tests::opened(1, "198.18.1.1:443"),
        );
        let doc = Document::single(crate::report::build(&c));
        let json = render(&doc, Format::Json).expect("renders");
        assert!(!json.contains("ghs_abcdef"), "{json}");
        let w = doc.report.flows[0]
            .workload
            .as_ref()
            .expect("the flow's workload");
        assert_eq!(
            w.cgroup,
            "/user.slice/user-1000.slice/user@1000.service/GITHUB_TOKEN=[redacted]"
        );
        assert_eq!(doc.report.workloads[0].workload.unit, w.unit);
    }

    /// The same, with no flow at all, and with credentials in a socket error and in a
    /// workload's cgroup and unit (a hostile review's test).
    #[test]
    fn the_streamed_json_report_is_redacted_everywhere_and_empty_flows_read_alike() {
        let streamed_and_whole = |c: &mut Correlator, tag: &str| {
            let dir =
                std::env::temp_dir().join(format!("observer-stream-{tag}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("scratch dir");
            let out = dir.join("report.json");
            write_report(c, &out, Format::Json).expect("writes");
            let streamed = std::fs::read_to_string(&out).expect("reads");
            std::fs::remove_dir_all(&dir).expect("cleans up");
            let whole = render(&Document::single(report::build(c)), Format::Json).expect("renders");
            (streamed, whole)
        };
        let mut empty = Correlator::new(crate::catalog::Catalog::builtin());
        let (s, w) = streamed_and_whole(&mut empty, "empty");
        assert!(s.contains("\"flows\": []"), "{s}");
        assert_eq!(s, w);
        let fixture = include_str!("../../tests/fixtures/runner-workload.jsonl");
        assert!(fixture.contains("ECONNREFUSED"));
        let mut fixture = fixture
            .replace("ECONNREFUSED", "token=hunter2hunter2")
            .replacen(r#""comm":"curl""#, r#""comm":"ghp_abcdefghijk""#, 3);
        fixture.insert_str(
            fixture.find('\n').expect("a line") + 1,
            concat!(
                r#"{"ts":"2026-11-27T07:29:20Z","event":"cgroup_seen","cgroup_id":1,"#,
                r#""workload":{"cgroup":"/ghp_0123456789abcdefghij","#,
                r#""unit":"password=swordfish.scope"}}"#,
                "\n"
            ),
        );
        let mut c = Correlator::new(crate::catalog::Catalog::builtin());
        crate::eventlog::replay(fixture.as_bytes(), "fixture", &mut c).expect("replays");
        assert!(c.workload(1).is_some());
        let (s, w) = streamed_and_whole(&mut c, "secrets");
        for secret in [
            "hunter2hunter2",
            "ghp_abcdefghijk",
            "ghp_0123456789",
            "swordfish",
        ] {
            assert!(!s.contains(secret), "{secret} left in the streamed report");
        }
        assert_eq!(s, w);
    }
}
