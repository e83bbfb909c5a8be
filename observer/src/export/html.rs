//! The report as one self-contained HTML page: inline CSS and SVG, no script, no external asset
//! (a Content-Security-Policy of `default-src 'none'` says so to the browser, so even a page
//! whose escaping had failed could neither run a script nor fetch anything).
//!
//! Sections: the verdict, the capture's completeness, (for merges) the runners, the required
//! groups and failing features, the group table, a traffic chart per group, the failing hosts,
//! every documented host, the undeclared destinations and a summary of the flows. Statuses are
//! words in a badge (readable without colour and in print); every text is escaped ([`escape`]).
//!
//! Charts: each group has a `<figure>` ([`group_figure`]) holding SVG panels. Today the only
//! panel is [`bars`], the bytes sent and received on a scale shared by all groups. When the
//! report gains per-group throughput, a time-series panel is one more SVG pushed into the same
//! figure.

use std::fmt::Write as _;

use crate::report::{HostReport, Reason, Status};

use super::{
    bytes, capture_facts, flow_is_problem, headline, is_failing, merge::RunnerStatus,
    process_label, status_word, unattached_probes, when, Document, FlowCounts, MAX_RUNNER_COLUMNS,
};

/// Rows shown per table before the rest is summarised.
const MAX_ROWS: usize = 500;
/// Problem flows listed.
const MAX_PROBLEM_FLOWS: usize = 100;

const STYLE: &str = r#"
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  color: #1f2328; background: #fff; max-width: 1180px; margin: 0 auto; padding: 24px; }
h1 { font-size: 1.7em; margin: .2em 0; }
h2 { font-size: 1.3em; border-bottom: 1px solid #d0d7de; padding-bottom: .2em; margin-top: 1.6em; }
.kicker { text-transform: uppercase; letter-spacing: .06em; font-size: .8em; color: #57606a; margin: 0; }
.verdict { border: 2px solid #57606a; border-left-width: 10px; padding: 12px 18px; border-radius: 6px; }
.verdict.works { border-color: #1a7f37; }
.verdict.fails { border-color: #cf222e; }
.banner { font-weight: 600; padding: 8px 12px; border: 2px solid; border-radius: 6px; }
.banner.complete { border-color: #1a7f37; }
.banner.incomplete { border-color: #bf8700; background: #fff8c5; }
table { border-collapse: collapse; width: 100%; margin: .6em 0 1em; font-size: .93em; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; white-space: nowrap; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.scroll { overflow-x: auto; }
.status { display: inline-block; min-width: 5.6em; text-align: center; font-weight: 600;
  border: 1px solid; border-radius: 4px; padding: 0 .4em; font-size: .9em; white-space: nowrap; }
.status.ok { color: #116329; background: #dafbe1; border-color: #1a7f37; }
.status.degraded { color: #7d4e00; background: #fff8c5; border-color: #bf8700; }
.status.blocked { color: #a40e26; background: #ffebe9; border-color: #cf222e; text-transform: uppercase; }
.status.unseen { color: #57606a; background: #f6f8fa; border-color: #8c959f; }
.status.absent { color: #57606a; border-style: dashed; font-weight: normal; }
.muted { color: #57606a; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(430px, 1fr)); gap: 12px; }
figure.chart { margin: 0; border: 1px solid #d0d7de; border-radius: 6px; padding: 8px 10px; break-inside: avoid; }
figure.chart figcaption { font-weight: 600; margin-bottom: 4px; }
svg { max-width: 100%; height: auto; }
svg text { font: 12px system-ui, "DejaVu Sans", sans-serif; fill: #1f2328; }
svg .sent { fill: #0969da; }
svg .received { fill: #ffffff; stroke: #0969da; stroke-width: 1.5; }
svg .axis { stroke: #8c959f; stroke-width: 1; }
footer { margin-top: 2em; color: #57606a; font-size: .85em; border-top: 1px solid #d0d7de; padding-top: .6em; }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .92em; }
@media print {
  body { max-width: none; padding: 0; font-size: 11pt; }
  .scroll { overflow: visible; }
  tr, figure.chart, .verdict, .banner { break-inside: avoid; }
  h2 { break-after: avoid; }
  .status { background: none !important; }
}
"#;

/// Escapes text for HTML element content and quoted attribute values (and so for SVG `text`);
/// control characters other than line breaks and tabs become U+FFFD.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' | '\t' => out.push(c),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// The page of a report or of a merge of reports.
pub fn render(doc: &Document) -> String {
    let r = &doc.report;
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; img-src data:\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <meta name=\"generator\" content=\"{}\">\n\
         <title>Runner connectivity report: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(&r.generator),
        escape(headline(doc))
    );
    verdict(&mut html, doc);
    completeness(&mut html, doc);
    runners(&mut html, doc);
    required(&mut html, doc);
    groups(&mut html, doc);
    traffic(&mut html, doc);
    failing_hosts(&mut html, doc);
    documented_hosts(&mut html, doc);
    undeclared(&mut html, doc);
    flows(&mut html, doc);
    let _ = write!(
        html,
        "<footer>{} · report <code>schema_version</code> {} · times in UTC · the JSON report \
         (<code>--format json</code>) lists every flow.</footer>\n</body>\n</html>\n",
        escape(&r.generator),
        r.schema_version
    );
    html
}

/// A status badge: the word, styled.
fn badge(status: Status) -> String {
    let word = status_word(status);
    format!("<span class=\"status {word}\">{word}</span>")
}

/// A per-runner status badge, or "not listed" when the runner's report has no such entry.
fn runner_badge(status: Option<Status>) -> String {
    status.map_or_else(
        || "<span class=\"status absent\">not listed</span>".to_owned(),
        badge,
    )
}

/// A table cell: `(html, numeric)`.
type Cell = (String, bool);

fn text_cell(html: String) -> Cell {
    (html, false)
}

fn num_cell(html: String) -> Cell {
    (html, true)
}

/// A table with its header; cells are HTML already.
fn table(html: &mut String, header: &[(String, bool)], rows: &[Vec<Cell>]) {
    html.push_str("<div class=\"scroll\"><table>\n<thead><tr>");
    for (h, numeric) in header {
        let class = if *numeric { " class=\"n\"" } else { "" };
        let _ = write!(html, "<th scope=\"col\"{class}>{}</th>", escape(h));
    }
    html.push_str("</tr></thead>\n<tbody>\n");
    for row in rows {
        html.push_str("<tr>");
        for (cell, numeric) in row {
            let class = if *numeric { " class=\"n\"" } else { "" };
            let _ = write!(html, "<td{class}>{cell}</td>");
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</tbody>\n</table></div>\n");
}

fn header(columns: &[(&str, bool)]) -> Vec<(String, bool)> {
    columns.iter().map(|(h, n)| ((*h).to_owned(), *n)).collect()
}

/// The header with the per-runner columns inserted after the first `at` columns: one per
/// runner, or for a large fleet one naming the runners where the entry is not ok.
fn with_runner_columns(doc: &Document, columns: &[(&str, bool)], at: usize) -> Vec<(String, bool)> {
    let labels = doc.runner_labels();
    let mut h = header(&columns[..at]);
    if labels.len() > MAX_RUNNER_COLUMNS {
        h.push(("Not ok on".to_owned(), false));
    } else {
        h.extend(labels.into_iter().map(|l| (format!("On {l}"), false)));
    }
    h.extend(header(&columns[at..]));
    h
}

/// The per-runner cells of an entry, for a merged document (none otherwise).
fn runner_cells(doc: &Document, per_runner: Option<&[RunnerStatus]>) -> Vec<Cell> {
    let per_runner = per_runner.unwrap_or_default();
    let labels = doc.runner_labels();
    if labels.len() > MAX_RUNNER_COLUMNS {
        let not_ok: Vec<String> = per_runner
            .iter()
            .filter(|r| r.status.is_some_and(is_failing))
            .map(|r| format!("{} {}", escape(&r.runner), runner_badge(r.status)))
            .collect();
        return vec![text_cell(if not_ok.is_empty() {
            "—".to_owned()
        } else {
            not_ok.join("<br>")
        })];
    }
    labels
        .into_iter()
        .map(|label| {
            text_cell(runner_badge(
                per_runner
                    .iter()
                    .find(|r| r.runner == label)
                    .and_then(|r| r.status),
            ))
        })
        .collect()
}

fn more(html: &mut String, shown: usize, total: usize, what: &str) {
    if total > shown {
        let _ = writeln!(
            html,
            "<p class=\"muted\">… and {} more {what} not shown; the JSON report lists them all.</p>",
            total - shown
        );
    }
}

fn list_or_dash(items: &[String]) -> String {
    if items.is_empty() {
        "—".to_owned()
    } else {
        items
            .iter()
            .map(|i| escape(i))
            .collect::<Vec<_>>()
            .join("<br>")
    }
}

fn verdict(html: &mut String, doc: &Document) {
    let v = &doc.report.verdict;
    let class = match v.runner_can_work {
        Some(true) => "works",
        Some(false) => "fails",
        None => "unknown",
    };
    let _ = write!(
        html,
        "<header class=\"verdict {class}\" id=\"verdict\">\n<p class=\"kicker\">Runner connectivity \
         report</p>\n<h1>Verdict: {}</h1>\n<p>{}</p>\n",
        escape(headline(doc)),
        escape(&v.summary)
    );
    if !doc.report.capture.complete {
        html.push_str(
            "<p class=\"banner incomplete\">Incomplete capture: this verdict rests on partial \
             evidence (see <a href=\"#completeness\">Capture completeness</a>).</p>\n",
        );
    }
    html.push_str("</header>\n");
}

fn completeness(html: &mut String, doc: &Document) {
    let r = &doc.report;
    html.push_str("<section id=\"completeness\">\n<h2>Capture completeness</h2>\n");
    if r.capture.complete {
        html.push_str(
            "<p class=\"banner complete\">Complete: no kernel event was lost, every probe was \
             attached and nothing was dropped.</p>\n",
        );
    } else {
        html.push_str(
            "<div class=\"banner incomplete\"><p>INCOMPLETE capture: this report does not show \
             everything that happened. Do not read a missing flow as “nothing else \
             happened”.</p>\n<ul>\n",
        );
        for reason in &r.capture.incomplete_because {
            let _ = writeln!(html, "<li>{}</li>", escape(reason));
        }
        html.push_str("</ul></div>\n");
    }
    html.push_str("<dl class=\"facts\">\n");
    for (what, value) in capture_facts(r) {
        let _ = writeln!(html, "<dt>{what}</dt><dd>{}</dd>", escape(&value));
    }
    let unattached = unattached_probes(r);
    if !unattached.is_empty() {
        let _ = writeln!(
            html,
            "<dt>Probes not attached</dt><dd>{}</dd>",
            list_or_dash(&unattached)
        );
    }
    html.push_str("</dl>\n</section>\n");
}

fn runners(html: &mut String, doc: &Document) {
    let Some(merged) = &doc.merged else {
        return;
    };
    html.push_str("<section id=\"runners\">\n<h2>Runners</h2>\n");
    let rows: Vec<Vec<Cell>> = merged
        .runners
        .iter()
        .map(|run| {
            vec![
                text_cell(escape(&run.label)),
                text_cell(
                    match run.runner_can_work {
                        Some(true) => "can work",
                        Some(false) => "CANNOT WORK or unreliable",
                        None => "unknown",
                    }
                    .to_owned(),
                ),
                text_cell(if run.complete {
                    "complete".to_owned()
                } else {
                    format!("INCOMPLETE: {}", escape(&run.incomplete_because.join("; ")))
                }),
                text_cell(format!(
                    "{} to {}",
                    escape(&when(run.started_at.as_deref())),
                    escape(&when(run.ended_at.as_deref()))
                )),
                num_cell(run.flows.to_string()),
                text_cell(escape(&run.summary)),
            ]
        })
        .collect();
    table(
        html,
        &header(&[
            ("Runner", false),
            ("Verdict", false),
            ("Capture", false),
            ("Window (UTC)", false),
            ("Flows", true),
            ("Its own summary", false),
        ]),
        &rows,
    );
    html.push_str("</section>\n");
}

fn group_breakdown<'a>(doc: &'a Document, id: &str) -> Option<&'a [RunnerStatus]> {
    doc.merged.as_ref().and_then(|m| {
        m.groups
            .iter()
            .find(|g| g.key == id)
            .map(|g| g.runners.as_slice())
    })
}

fn required(html: &mut String, doc: &Document) {
    let v = &doc.report.verdict;
    html.push_str("<section id=\"required\">\n<h2>Required groups and failing features</h2>\n");
    let columns = [
        ("Group", false),
        ("Status", false),
        ("Required", false),
        ("Failing hosts", false),
    ];
    let rows: Vec<Vec<Cell>> = v
        .required
        .iter()
        .map(|g| (g, "yes"))
        .chain(v.failing_features.iter().map(|g| (g, "no")))
        .map(|(g, required)| {
            let mut row = vec![
                text_cell(format!(
                    "{} <span class=\"muted\">({})</span>",
                    escape(&g.title),
                    escape(&g.group)
                )),
                text_cell(badge(g.status)),
            ];
            row.extend(runner_cells(doc, group_breakdown(doc, &g.group)));
            row.push(text_cell(required.to_owned()));
            row.push(text_cell(list_or_dash(&g.because)));
            row
        })
        .collect();
    table(html, &with_runner_columns(doc, &columns, 2), &rows);
    if v.failing_features.is_empty() {
        html.push_str("<p>No optional feature failed.</p>\n");
    }
    html.push_str("</section>\n");
}

fn groups(html: &mut String, doc: &Document) {
    let r = &doc.report;
    html.push_str("<section id=\"groups\">\n<h2>Host groups</h2>\n");
    let columns = [
        ("Group", false),
        ("Status", false),
        ("Required", false),
        ("Flows", true),
        ("Sent", true),
        ("Received", true),
        ("Failing hosts", false),
    ];
    let rows: Vec<Vec<Cell>> = r
        .groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let mut row = vec![
                text_cell(format!(
                    "{} <span class=\"muted\">({})</span>",
                    escape(&g.title),
                    escape(&g.id)
                )),
                text_cell(badge(g.status)),
            ];
            row.extend(runner_cells(
                doc,
                doc.merged
                    .as_ref()
                    .and_then(|m| m.groups.get(i).map(|b| b.runners.as_slice())),
            ));
            row.extend([
                text_cell(
                    (if g.required {
                        "yes"
                    } else if g.summary {
                        "no (summary)"
                    } else {
                        "no"
                    })
                    .to_owned(),
                ),
                num_cell(g.flows.to_string()),
                num_cell(escape(&bytes(g.bytes_sent))),
                num_cell(escape(&bytes(g.bytes_received))),
                text_cell(list_or_dash(&g.failing_hosts)),
            ]);
            row
        })
        .collect();
    table(html, &with_runner_columns(doc, &columns, 2), &rows);
    html.push_str("</section>\n");
}

/// Width of the bar area of a chart, in SVG units.
const BAR_WIDTH: f64 = 320.0;

/// Horizontal bars of bytes sent and received, on a scale whose full width is `scale_max`
/// bytes. Each bar is labelled with its direction and value, so colour is not needed.
fn bars(label: &str, sent: u64, received: u64, scale_max: u64) -> String {
    let width = |v: u64| {
        if scale_max == 0 {
            0.0
        } else {
            (v as f64 / scale_max as f64 * BAR_WIDTH).max(if v > 0 { 1.0 } else { 0.0 })
        }
    };
    let (left, row) = (70.0, 22.0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 480 {h}\" width=\"480\" \
         height=\"{h}\" role=\"img\" aria-label=\"{title}\"><title>{title}</title>",
        h = row * 2.0 + 4.0,
        title = escape(&format!(
            "{label}: sent {}, received {}",
            bytes(sent),
            bytes(received)
        ))
    );
    for (n, (class, word, value)) in [("sent", "sent", sent), ("received", "received", received)]
        .into_iter()
        .enumerate()
    {
        let y = n as f64 * row + 2.0;
        let w = width(value);
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{ty}\">{word}</text>\
             <rect class=\"{class}\" x=\"{left}\" y=\"{y}\" width=\"{w:.1}\" height=\"16\"/>\
             <text x=\"{vx:.1}\" y=\"{ty}\">{value}</text>",
            ty = y + 12.5,
            vx = left + w + 6.0,
            value = escape(&bytes(value)),
        );
    }
    let _ = write!(
        svg,
        "<line class=\"axis\" x1=\"{left}\" y1=\"0\" x2=\"{left}\" y2=\"{}\"/></svg>",
        row * 2.0 + 4.0
    );
    svg
}

/// One group's figure: a caption with its status, and its chart panels.
fn group_figure(title: &str, id: &str, status: Status, panels: &[String]) -> String {
    format!(
        "<figure class=\"chart\"><figcaption>{} <span class=\"muted\">({})</span> {}</figcaption>{}</figure>\n",
        escape(title),
        escape(id),
        badge(status),
        panels.concat()
    )
}

fn traffic(html: &mut String, doc: &Document) {
    let r = &doc.report;
    html.push_str(
        "<section id=\"traffic\">\n<h2>Traffic by group</h2>\n<p class=\"muted\">TCP payload \
         bytes of the flows to each group's hosts over the capture window, on one scale. A name \
         in several groups counts in each.</p>\n<div class=\"charts\">\n",
    );
    let scale_max = r
        .groups
        .iter()
        .map(|g| g.bytes_sent.max(g.bytes_received))
        .max()
        .unwrap_or(0);
    for g in &r.groups {
        let panels = [bars(&g.title, g.bytes_sent, g.bytes_received, scale_max)];
        html.push_str(&group_figure(&g.title, &g.id, g.status, &panels));
    }
    html.push_str("</div>\n</section>\n");
}

fn reasons_html(reasons: &[Reason]) -> String {
    if reasons.is_empty() {
        return "—".to_owned();
    }
    reasons
        .iter()
        .map(|reason| {
            let by = reason
                .process
                .as_ref()
                .map(|p| format!(" by {}", escape(&process_label(p))))
                .unwrap_or_default();
            format!(
                "<code>{}</code> ×{} <span class=\"muted\">(last {}{by})</span>",
                escape(&reason.code),
                reason.count,
                escape(&when(reason.last_seen.as_deref()))
            )
        })
        .collect::<Vec<_>>()
        .join("<br>")
}

fn addresses_html(addresses: &[std::net::IpAddr]) -> String {
    if addresses.is_empty() {
        return "—".to_owned();
    }
    addresses
        .iter()
        .map(|a| escape(&a.to_string()))
        .collect::<Vec<_>>()
        .join("<br>")
}

fn host_breakdown(doc: &Document, i: usize) -> Option<&[RunnerStatus]> {
    doc.merged
        .as_ref()
        .and_then(|m| m.hosts.get(i).map(|b| b.runners.as_slice()))
}

fn failing_hosts(html: &mut String, doc: &Document) {
    let r = &doc.report;
    html.push_str("<section id=\"failing\">\n<h2>Blocked and degraded hosts</h2>\n");
    let failing: Vec<(usize, &HostReport)> = r
        .hosts
        .iter()
        .enumerate()
        .filter(|(_, h)| is_failing(h.status))
        .collect();
    if failing.is_empty() {
        html.push_str("<p>None: no documented host was blocked or degraded.</p>\n</section>\n");
        return;
    }
    let columns = [
        ("Host", false),
        ("Status", false),
        ("Reasons", false),
        ("Groups", false),
        ("Addresses", false),
    ];
    let rows: Vec<Vec<Cell>> = failing
        .iter()
        .take(MAX_ROWS)
        .map(|(i, h)| {
            let mut row = vec![text_cell(escape(&h.name)), text_cell(badge(h.status))];
            row.extend(runner_cells(doc, host_breakdown(doc, *i)));
            row.extend([
                text_cell(reasons_html(&h.reasons)),
                text_cell(escape(&h.groups.join(", "))),
                text_cell(addresses_html(&h.addresses)),
            ]);
            row
        })
        .collect();
    table(html, &with_runner_columns(doc, &columns, 2), &rows);
    more(html, rows.len(), failing.len(), "failing hosts");
    html.push_str("</section>\n");
}

fn documented_hosts(html: &mut String, doc: &Document) {
    let r = &doc.report;
    html.push_str("<section id=\"hosts\">\n<h2>Documented hosts</h2>\n");
    let columns = [
        ("Host", false),
        ("Status", false),
        ("Groups", false),
        ("Flows", true),
        ("Sent", true),
        ("Received", true),
        ("Addresses", false),
    ];
    let rows: Vec<Vec<Cell>> = r
        .hosts
        .iter()
        .enumerate()
        .take(MAX_ROWS)
        .map(|(i, h)| {
            let name = if h.pattern == h.name {
                escape(&h.name)
            } else {
                format!(
                    "{} <span class=\"muted\">(as {})</span>",
                    escape(&h.name),
                    escape(&h.pattern)
                )
            };
            let mut row = vec![text_cell(name), text_cell(badge(h.status))];
            row.extend(runner_cells(doc, host_breakdown(doc, i)));
            row.extend([
                text_cell(escape(&h.groups.join(", "))),
                num_cell(h.flows.to_string()),
                num_cell(escape(&bytes(h.bytes_sent))),
                num_cell(escape(&bytes(h.bytes_received))),
                text_cell(addresses_html(&h.addresses)),
            ]);
            row
        })
        .collect();
    table(html, &with_runner_columns(doc, &columns, 2), &rows);
    more(html, rows.len(), r.hosts.len(), "hosts");
    html.push_str("</section>\n");
}

fn undeclared(html: &mut String, doc: &Document) {
    let r = &doc.report;
    html.push_str("<section id=\"undeclared\">\n<h2>Undeclared destinations</h2>\n");
    if r.undeclared.is_empty() {
        html.push_str(
            "<p>None: every destination belongs to a group of the catalog.</p>\n</section>\n",
        );
        return;
    }
    html.push_str(
        "<p>Destinations no group of the catalog lists: a workflow's own registries, hard-coded \
         addresses. Loudest first.</p>\n",
    );
    let columns = [
        ("Destination", false),
        ("Status", false),
        ("Ports", false),
        ("Flows", true),
        ("Sent", true),
        ("Received", true),
        ("Processes", false),
        ("Reasons", false),
    ];
    let rows: Vec<Vec<Cell>> = r
        .undeclared
        .iter()
        .enumerate()
        .take(MAX_ROWS)
        .map(|(i, u)| {
            let destination = match &u.name {
                Some(name) => escape(name),
                None => format!(
                    "{} <span class=\"muted\">(no DNS name seen)</span>",
                    addresses_html(&u.addresses)
                ),
            };
            let mut row = vec![text_cell(destination), text_cell(badge(u.status))];
            row.extend(runner_cells(
                doc,
                doc.merged
                    .as_ref()
                    .and_then(|m| m.undeclared.get(i).map(|b| b.runners.as_slice())),
            ));
            let processes: Vec<String> = u.processes.iter().map(process_label).collect();
            row.extend([
                text_cell(
                    u.ports
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
                num_cell(u.flows.to_string()),
                num_cell(escape(&bytes(u.bytes_sent))),
                num_cell(escape(&bytes(u.bytes_received))),
                text_cell(list_or_dash(&processes)),
                text_cell(reasons_html(&u.reasons)),
            ]);
            row
        })
        .collect();
    table(html, &with_runner_columns(doc, &columns, 2), &rows);
    more(html, rows.len(), r.undeclared.len(), "destinations");
    html.push_str("</section>\n");
}

fn flows(html: &mut String, doc: &Document) {
    let r = &doc.report;
    html.push_str("<section id=\"flows\">\n<h2>Flows</h2>\n");
    let _ = writeln!(html, "<p>{}</p>", escape(&FlowCounts::of(r).sentence()));
    let problems: Vec<(usize, &crate::report::FlowReport)> = r
        .flows
        .iter()
        .enumerate()
        .filter(|(_, f)| flow_is_problem(f))
        .collect();
    if !problems.is_empty() {
        let _ = writeln!(
            html,
            "<p>Flows that never completed the handshake or received nothing ({} of {}):</p>",
            problems.len().min(MAX_PROBLEM_FLOWS),
            problems.len()
        );
        let merged = doc.merged.as_ref();
        let mut columns = vec![("Flow", true)];
        if merged.is_some() {
            columns.push(("Runner", false));
        }
        columns.extend([
            ("Opened (UTC)", false),
            ("Process", false),
            ("Destination", false),
            ("Name", false),
            ("Outcome", false),
            ("Error", false),
            ("Sent", true),
        ]);
        let rows: Vec<Vec<Cell>> = problems
            .iter()
            .take(MAX_PROBLEM_FLOWS)
            .map(|(i, f)| {
                let mut row = vec![num_cell(f.flow_id.to_string())];
                if let Some(m) = merged {
                    row.push(text_cell(escape(m.runner_of_flow(*i).unwrap_or("—"))));
                }
                row.extend([
                    text_cell(escape(&when(f.opened_at.as_deref()))),
                    text_cell(escape(&process_label(&f.process))),
                    text_cell(escape(&f.dst)),
                    text_cell(f.name.as_deref().map_or_else(|| "—".to_owned(), escape)),
                    text_cell(f.outcome.map_or("open", |o| o.as_str()).to_owned()),
                    text_cell(f.error.as_deref().map_or_else(|| "—".to_owned(), escape)),
                    num_cell(escape(&bytes(f.bytes_sent))),
                ]);
                row
            })
            .collect();
        table(html, &header(&columns), &rows);
    }
    html.push_str("</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_is_escaped() {
        assert_eq!(
            escape("<script>alert('x')</script>"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
        );
        assert_eq!(escape("a&b \"c\""), "a&amp;b &quot;c&quot;");
        assert_eq!(escape("bell\u{7}"), "bell\u{FFFD}");
        assert_eq!(escape("api.github.com"), "api.github.com");
    }

    #[test]
    fn bars_are_scaled_and_labelled() {
        let svg = bars("Essential <x>", 512, 1024, 1024);
        assert!(svg.contains("width=\"160.0\""), "{svg}");
        assert!(svg.contains("width=\"320.0\""), "{svg}");
        assert!(
            svg.contains(">512 B<") && svg.contains(">1.0 KiB<"),
            "{svg}"
        );
        assert!(svg.contains("Essential &lt;x&gt;"), "{svg}");
        assert!(!svg.contains("<x>"), "{svg}");
        // Nothing moved anywhere: empty bars, no division by zero.
        assert!(bars("g", 0, 0, 0).contains("width=\"0.0\""));
    }
}
