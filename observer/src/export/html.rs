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

use crate::{
    format::rate,
    pipeline::throughput::{
        RateStats, ThroughputStats, TransferStats, TransferSummary, DEFAULT_MIN_BPS,
    },
    report::Status,
};

use super::{
    bytes, capture_facts, headline,
    table::{self, Cell, Table},
    unattached_probes, Document, FlowCounts,
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
    let word = status.word();
    format!("<span class=\"status {word}\">{word}</span>")
}

/// A per-runner status badge, or "not listed" when the runner's report has no such entry.
fn runner_badge(status: Option<Status>) -> String {
    status.map_or_else(
        || "<span class=\"status absent\">not listed</span>".to_owned(),
        badge,
    )
}

/// A cell in HTML, escaped and marked up.
fn cell(cell: &Cell) -> String {
    match cell {
        Cell::Text(text) | Cell::Time(text) => escape(text),
        Cell::Noted(inner, note) => format!(
            "{} <span class=\"muted\">({})</span>",
            self::cell(inner),
            escape(note)
        ),
        Cell::Status(status) => badge(*status),
        Cell::RunnerStatus(status) => runner_badge(*status),
        Cell::NotOkOn(runners) if runners.is_empty() => "—".to_owned(),
        Cell::NotOkOn(runners) => runners
            .iter()
            .map(|(runner, status)| format!("{} {}", escape(runner), runner_badge(*status)))
            .collect::<Vec<_>>()
            .join("<br>"),
        // One item a line, all of them, whatever the Markdown style.
        Cell::List(_, items) => list_or_dash(items),
        Cell::Reasons(reasons) if reasons.is_empty() => "—".to_owned(),
        Cell::Reasons(reasons) => reasons
            .iter()
            .map(|reason| {
                let by = reason
                    .by
                    .as_ref()
                    .map(|p| format!(" by {}", escape(p)))
                    .unwrap_or_default();
                let detail = reason
                    .detail
                    .as_ref()
                    .map(|d| format!(": {}", escape(d)))
                    .unwrap_or_default();
                format!(
                    "<code>{}</code> ×{} <span class=\"muted\">(last {}{by}){detail}</span>",
                    escape(&reason.code),
                    reason.count,
                    escape(&reason.last)
                )
            })
            .collect::<Vec<_>>()
            .join("<br>"),
        Cell::CanWork(can_work) => match can_work {
            Some(true) => "can work",
            Some(false) => "CANNOT WORK or unreliable",
            None => "unknown",
        }
        .to_owned(),
        Cell::Capture { complete: true, .. } => "complete".to_owned(),
        Cell::Capture { because, .. } => format!("INCOMPLETE: {}", escape(because)),
    }
}

/// A table of the report, then a note on the rows not shown when it was cut and says so.
fn render_table(html: &mut String, t: &Table) {
    let class = |numeric: bool| if numeric { " class=\"n\"" } else { "" };
    html.push_str("<div class=\"scroll\"><table>\n<thead><tr>");
    for c in &t.columns {
        let _ = write!(
            html,
            "<th scope=\"col\"{}>{}</th>",
            class(c.numeric),
            escape(&c.title)
        );
    }
    html.push_str("</tr></thead>\n<tbody>\n");
    for row in &t.rows {
        html.push_str("<tr>");
        for (c, column) in row.iter().zip(&t.columns) {
            let _ = write!(html, "<td{}>{}</td>", class(column.numeric), cell(c));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</tbody>\n</table></div>\n");
    if let Some((more, what)) = t.not_shown() {
        let _ = writeln!(
            html,
            "<p class=\"muted\">… and {more} more {what} not shown; the JSON report lists them all.</p>"
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
    render_table(
        html,
        &table::runners(merged, "Its own summary", |run| &run.summary),
    );
    html.push_str("</section>\n");
}

fn required(html: &mut String, doc: &Document) {
    let v = &doc.report.verdict;
    html.push_str("<section id=\"required\">\n<h2>Required groups and failing features</h2>\n");
    let groups = (v.required.iter().map(|g| (g, Some("yes"))))
        .chain(v.failing_features.iter().map(|g| (g, Some("no"))));
    render_table(
        html,
        &table::group_verdicts(doc, "Group", groups, true, "Failing hosts"),
    );
    if v.failing_features.is_empty() {
        html.push_str("<p>No optional feature failed.</p>\n");
    }
    html.push_str("</section>\n");
}

fn groups(html: &mut String, doc: &Document) {
    html.push_str("<section id=\"groups\">\n<h2>Host groups</h2>\n");
    render_table(html, &table::groups(doc));
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

/// The lowest rate on the throughput scale (1 kbit/s); lower rates sit at its left edge.
const RATE_SCALE_MIN: f64 = 1e3;

/// The throughput scale's top: the next power of ten above the fastest rate, at least 10 Mbit/s.
fn rate_scale_max(fastest_bps: f64) -> f64 {
    10f64
        .powf(fastest_bps.max(1e7).log10().ceil())
        .max(RATE_SCALE_MIN * 10.0)
}

/// Horizontal position of a rate on a logarithmic scale from `RATE_SCALE_MIN` to `max`.
fn rate_x(bps: f64, max: f64, left: f64) -> f64 {
    let span = max.log10() - RATE_SCALE_MIN.log10();
    let at = (bps.max(RATE_SCALE_MIN).log10() - RATE_SCALE_MIN.log10()) / span;
    left + at.clamp(0.0, 1.0) * BAR_WIDTH
}

/// Each direction's rates (docs/throughput.md) on a logarithmic scale: a thin line from the
/// slowest to the fastest one-second interval, a box from the median to the 95th percentile, a
/// tick at the median, a diamond at the slowest transfer of 32 KiB or more (what
/// `slow_throughput` judges), and a dashed line at GitHub's 70 kbit/s minimum. Each row says its
/// figures in words, so the chart needs neither colour nor hovering.
fn rate_ranges(label: &str, t: &ThroughputStats, x: &TransferStats, scale_max: f64) -> String {
    let (left, row) = (70.0, 22.0);
    let height = row * 2.0 + 18.0;
    let transfer_words = |x: &TransferSummary| match &x.slowest {
        Some(s) => format!(
            "; slowest transfer {} ({} in {:.1} s, {}) of {} judged",
            rate(s.rate_bps),
            crate::format::bytes(s.bytes),
            s.seconds,
            s.evidence.explain(),
            x.judged
        ),
        None => "; no transfer of 32 KiB or more".to_owned(),
    };
    let words = |word: &str, r: Option<&RateStats>, x: &TransferSummary| match r {
        Some(r) => format!(
            "{word}: median {}, p95 {} ({} intervals){}",
            rate(r.median_bps),
            rate(r.p95_bps),
            r.samples,
            transfer_words(x)
        ),
        None => format!("{word}: no active interval measured"),
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 480 {height}\" width=\"480\" \
         height=\"{height}\" role=\"img\" aria-label=\"{title}\"><title>{title}</title>",
        title = escape(&format!(
            "{label} throughput: {}; {}",
            words("sent", t.sent.as_ref(), &x.sent),
            words("received", t.received.as_ref(), &x.received)
        ))
    );
    for (n, (class, word, stats, transfers)) in [
        ("sent", "sent", t.sent.as_ref(), &x.sent),
        ("received", "received", t.received.as_ref(), &x.received),
    ]
    .into_iter()
    .enumerate()
    {
        let y = n as f64 * row + 2.0;
        let _ = write!(svg, "<text x=\"0\" y=\"{:.1}\">{word}</text>", y + 12.5);
        let Some(r) = stats else {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\">no active interval</text>",
                left + 6.0,
                y + 12.5
            );
            continue;
        };
        let at = |bps: f64| rate_x(bps, scale_max, left);
        let (lo, med, p95, hi) = (
            at(r.min_bps),
            at(r.median_bps),
            at(r.p95_bps),
            at(r.max_bps),
        );
        let _ = write!(
            svg,
            "<line class=\"axis\" x1=\"{lo:.1}\" y1=\"{mid:.1}\" x2=\"{hi:.1}\" y2=\"{mid:.1}\"/>\
             <rect class=\"{class}\" x=\"{med:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"16\"/>\
             <line class=\"axis\" x1=\"{med:.1}\" y1=\"{y:.1}\" x2=\"{med:.1}\" y2=\"{bottom:.1}\" \
             stroke-width=\"2\"/>\
             <text x=\"{tx:.1}\" y=\"{ty:.1}\">{median}</text>",
            mid = y + 8.0,
            w = (p95 - med).max(2.0),
            bottom = y + 16.0,
            tx = (hi + 6.0).min(left + BAR_WIDTH + 6.0),
            ty = y + 12.5,
            median = escape(&rate(r.median_bps)),
        );
        if let Some(s) = &transfers.slowest {
            let (cx, cy) = (at(s.rate_bps), y + 8.0);
            let _ = write!(
                svg,
                "<polygon class=\"axis\" points=\"{:.1},{:.1} {:.1},{:.1} {:.1},{:.1} {:.1},{:.1}\"/>",
                cx,
                cy - 6.0,
                cx + 5.0,
                cy,
                cx,
                cy + 6.0,
                cx - 5.0,
                cy
            );
        }
    }
    let axis_y = row * 2.0 + 4.0;
    let minimum = rate_x(DEFAULT_MIN_BPS, scale_max, left);
    let _ = write!(
        svg,
        "<line class=\"axis\" x1=\"{left}\" y1=\"{axis_y}\" x2=\"{right}\" y2=\"{axis_y}\"/>\
         <line class=\"axis\" x1=\"{minimum:.1}\" y1=\"0\" x2=\"{minimum:.1}\" y2=\"{axis_y}\" \
         stroke-dasharray=\"3 3\"/>\
         <text x=\"0\" y=\"{ty}\">rate</text><text x=\"{left}\" y=\"{ty}\">{lo}</text>\
         <text x=\"{minimum:.1}\" y=\"{ty}\" text-anchor=\"middle\">70 kbit/s</text>\
         <text x=\"{right}\" y=\"{ty}\" text-anchor=\"end\">{hi}</text></svg>",
        right = left + BAR_WIDTH,
        ty = axis_y + 13.0,
        lo = escape(&rate(RATE_SCALE_MIN)),
        hi = escape(&rate(scale_max)),
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
        "<section id=\"traffic\">\n<h2>Traffic by group</h2>\n<p class=\"muted\">For each \
         group: the TCP payload bytes of the flows to its hosts over the capture window (all \
         groups on one scale), and their throughput while transferring (active rate, \
         docs/throughput.md) on a logarithmic scale: the line spans the slowest to the fastest \
         interval, the box the median to the 95th percentile, the diamond is the slowest \
         transfer of 32 KiB or more (what the verdict judges), the dashed line is GitHub's \
         70 kbit/s minimum. A name in several groups counts in each.</p>\n<div \
         class=\"charts\">\n",
    );
    let scale_max = r
        .groups
        .iter()
        .map(|g| g.bytes_sent.max(g.bytes_received))
        .max()
        .unwrap_or(0);
    let fastest = r
        .groups
        .iter()
        .flat_map(|g| [&g.throughput.sent, &g.throughput.received])
        .flatten()
        .map(|s| s.max_bps)
        .fold(0.0, f64::max);
    let rate_max = rate_scale_max(fastest);
    for g in &r.groups {
        let panels = [
            bars(&g.title, g.bytes_sent, g.bytes_received, scale_max),
            rate_ranges(&g.title, &g.throughput, &g.transfers, rate_max),
        ];
        html.push_str(&group_figure(&g.title, &g.id, g.status, &panels));
    }
    html.push_str("</div>\n</section>\n");
}

fn failing_hosts(html: &mut String, doc: &Document) {
    html.push_str("<section id=\"failing\">\n<h2>Blocked and degraded hosts</h2>\n");
    match table::failing_hosts(doc, MAX_ROWS) {
        Some(t) => render_table(html, &t),
        None => html.push_str("<p>None: no documented host was blocked or degraded.</p>\n"),
    }
    html.push_str("</section>\n");
}

fn documented_hosts(html: &mut String, doc: &Document) {
    html.push_str("<section id=\"hosts\">\n<h2>Documented hosts</h2>\n");
    render_table(html, &table::documented_hosts(doc, MAX_ROWS));
    html.push_str("</section>\n");
}

fn undeclared(html: &mut String, doc: &Document) {
    html.push_str("<section id=\"undeclared\">\n<h2>Undeclared destinations</h2>\n");
    match table::undeclared(doc, MAX_ROWS) {
        Some(t) => {
            html.push_str(
                "<p>Destinations no group of the catalog lists: a workflow's own registries, \
                 hard-coded addresses. Loudest first.</p>\n",
            );
            render_table(html, &t);
        }
        None => {
            html.push_str("<p>None: every destination belongs to a group of the catalog.</p>\n")
        }
    }
    html.push_str("</section>\n");
}

fn flows(html: &mut String, doc: &Document) {
    html.push_str("<section id=\"flows\">\n<h2>Flows</h2>\n");
    let _ = writeln!(
        html,
        "<p>{}</p>",
        escape(&FlowCounts::of(&doc.report).sentence())
    );
    if let Some(t) = table::problem_flows(doc, MAX_PROBLEM_FLOWS) {
        let _ = writeln!(
            html,
            "<p>Flows that never completed the handshake, received nothing or got an error from \
             their proxy ({} of {}):</p>",
            t.rows.len(),
            t.total
        );
        render_table(html, &t);
    }
    if let Some(t) = table::sni_disagreements(doc, MAX_PROBLEM_FLOWS) {
        html.push_str(
            "<p>Flows whose TLS server name (SNI) disagreed with DNS: each is named by its SNI; \
             a CDN address shared by several names, a stale cache, or domain fronting.</p>\n",
        );
        render_table(html, &t);
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
    fn throughput_ranges_sit_on_a_log_scale_and_say_their_figures() {
        let stats = |min: f64, median: f64, p95: f64, max: f64| RateStats {
            min_bps: min,
            median_bps: median,
            p95_bps: p95,
            max_bps: max,
            samples: 7,
            active_s: 1.0,
            bytes: 1000,
        };
        let t = ThroughputStats {
            sent: None,
            received: Some(stats(1e4, 1e5, 1e6, 1e7)),
        };
        let max = rate_scale_max(1e7);
        assert_eq!(max, 1e7, "1 kbit/s to 10 Mbit/s: four decades");
        let transfers = TransferStats {
            received: serde_json::from_value(serde_json::json!({
                "count": 3, "judged": 2, "bytes": 100_000, "seconds": 5.0, "rate_bps": 160_000.0,
                "slowest": {"bytes": 60_000, "seconds": 12.0, "rate_bps": 40_000.0,
                            "evidence": "bytes_read", "start_ns": 0, "flow_id": 2}
            }))
            .expect("a transfer summary"),
            ..TransferStats::default()
        };
        let svg = rate_ranges("Essential <x>", &t, &transfers, max);
        assert!(
            svg.contains(
                "slowest transfer 40.0 kbit/s (58.6 KiB in 12.0 s, bytes read) of 2 judged"
            ),
            "{svg}"
        );
        // The diamond at 40 kbit/s: 70 + 320 * log10(40) / 4.
        assert!(
            svg.contains("<polygon class=\"axis\" points=\"198.2,"),
            "{svg}"
        );
        // 70 + 320 * (decades above 1 kbit/s) / 4.
        for x in [
            "x1=\"150.0\"",
            "x=\"230.0\" y=\"24.0\" width=\"80.0\"",
            "x2=\"390.0\"",
        ] {
            assert!(svg.contains(x), "{x} in {svg}");
        }
        assert!(
            svg.contains("received: median 100.0 kbit/s, p95 1.0 Mbit/s (7 intervals)"),
            "{svg}"
        );
        assert!(svg.contains("sent: no active interval measured"), "{svg}");
        assert!(
            svg.contains(">70 kbit/s<") && svg.contains("stroke-dasharray"),
            "{svg}"
        );
        assert!(
            svg.contains("Essential &lt;x&gt;") && !svg.contains("<x>"),
            "{svg}"
        );
        assert_eq!(rate_scale_max(2.3e10), 1e11);
        assert_eq!(
            rate_x(10.0, 1e7, 70.0),
            70.0,
            "below the scale: its left edge"
        );
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
