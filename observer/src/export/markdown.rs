//! The report in Markdown (GitHub-flavoured), for a job summary (`$GITHUB_STEP_SUMMARY`) or a
//! ticket: the verdict first, then the capture's completeness, the groups, the failing hosts,
//! every documented host, the undeclared destinations and a short summary of the flows.
//!
//! Statuses are words with a symbol, never a symbol alone. Every name is escaped ([`escape`]):
//! names come from DNS answers and catalogs and are treated as hostile. Long lists are cut at
//! [`MAX_ROWS`] rows with a note, so the page stays far below the job summary's 1 MiB limit;
//! the JSON report lists everything.

use std::fmt::Write as _;

use crate::report::{HostReport, Reason, Status};

use super::{
    bytes, capture_facts, flow_is_problem, headline, is_failing, merge::RunnerStatus,
    process_label, status_word, unattached_probes, when, Document, FlowCounts, MAX_RUNNER_COLUMNS,
};

/// Rows shown per table before the rest is summarised.
pub const MAX_ROWS: usize = 100;
/// Problem flows listed in the flows summary.
const MAX_PROBLEM_FLOWS: usize = 20;

/// The Markdown page of a report or of a merge of reports.
pub fn render(doc: &Document) -> String {
    let mut md = String::new();
    verdict(&mut md, doc);
    completeness(&mut md, doc);
    groups(&mut md, doc);
    failing_hosts(&mut md, doc);
    documented_hosts(&mut md, doc);
    undeclared(&mut md, doc);
    flows(&mut md, doc);
    let r = &doc.report;
    let _ = writeln!(
        md,
        "---\n\n{} · report `schema_version` {} · times in UTC · the JSON report \
         (`--format json`) lists every flow.",
        escape(&r.generator),
        r.schema_version
    );
    md
}

/// Escapes text for Markdown, inline and inside table cells: ASCII punctuation that could
/// start markup (emphasis, links, HTML, tables, code, math, mentions, references) gets a
/// backslash, line breaks and other control characters become a space or U+FFFD.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '~' | '&' | '#' | '$' | '@' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// A status as a symbol and a word.
fn status_cell(status: Status) -> String {
    let mark = match status {
        Status::Ok => "✅",
        Status::Degraded => "⚠️",
        Status::Blocked => "⛔",
        Status::Unseen => "➖",
    };
    format!("{mark} {}", status_word(status))
}

/// A per-runner status: its word, or `—` when the runner's report has no such entry.
fn runner_cell(status: Option<Status>) -> String {
    status.map_or_else(|| "— not listed".to_owned(), status_cell)
}

/// A Markdown table; `right` marks the right-aligned (numeric) columns. Cells are escaped by
/// the caller.
fn table(md: &mut String, header: &[(&str, bool)], rows: &[Vec<String>]) {
    let line = |cells: &mut dyn Iterator<Item = String>| {
        let cells: Vec<String> = cells.collect();
        format!("| {} |\n", cells.join(" | "))
    };
    md.push_str(&line(&mut header.iter().map(|(h, _)| escape(h))));
    md.push_str(&line(
        &mut header
            .iter()
            .map(|(_, right)| (if *right { "---:" } else { "---" }).to_owned()),
    ));
    for row in rows {
        md.push_str(&line(&mut row.iter().cloned()));
    }
    md.push('\n');
}

/// `_… and N more not shown_` when a list was cut.
fn more(md: &mut String, shown: usize, total: usize, what: &str) {
    if total > shown {
        let _ = writeln!(
            md,
            "_… and {} more {what} not shown; the JSON report lists them all._\n",
            total - shown
        );
    }
}

/// Per-runner header cells and the cells of one entry, for merged reports: one column per
/// runner, or one column naming the runners where the entry is not ok.
struct RunnerColumns<'a> {
    labels: Vec<&'a str>,
}

impl<'a> RunnerColumns<'a> {
    fn of(doc: &'a Document) -> Self {
        Self {
            labels: doc.runner_labels(),
        }
    }

    fn header(&self) -> Vec<(String, bool)> {
        if self.labels.is_empty() {
            vec![]
        } else if self.labels.len() <= MAX_RUNNER_COLUMNS {
            self.labels
                .iter()
                .map(|l| (format!("On {l}"), false))
                .collect()
        } else {
            vec![("Not ok on".to_owned(), false)]
        }
    }

    fn cells(&self, per_runner: Option<&[RunnerStatus]>) -> Vec<String> {
        if self.labels.is_empty() {
            return vec![];
        }
        let per_runner = per_runner.unwrap_or_default();
        if self.labels.len() <= MAX_RUNNER_COLUMNS {
            return self
                .labels
                .iter()
                .map(|label| {
                    runner_cell(
                        per_runner
                            .iter()
                            .find(|r| r.runner == *label)
                            .and_then(|r| r.status),
                    )
                })
                .collect();
        }
        let not_ok: Vec<String> = per_runner
            .iter()
            .filter(|r| r.status.is_some_and(is_failing))
            .map(|r| format!("{} ({})", escape(&r.runner), runner_cell(r.status)))
            .collect();
        vec![if not_ok.is_empty() {
            "—".to_owned()
        } else {
            not_ok.join(", ")
        }]
    }
}

/// A header with the per-runner columns inserted after the first `at` columns.
fn header_with_runners<'h>(
    base: &[(&'h str, bool)],
    at: usize,
    runners: &'h [(String, bool)],
) -> Vec<(&'h str, bool)> {
    let mut header: Vec<(&str, bool)> = base[..at].to_vec();
    header.extend(runners.iter().map(|(h, r)| (h.as_str(), *r)));
    header.extend_from_slice(&base[at..]);
    header
}

fn verdict(md: &mut String, doc: &Document) {
    let r = &doc.report;
    let v = &r.verdict;
    let mark = match v.runner_can_work {
        Some(true) => "✅",
        Some(false) => "⛔",
        None => "❔",
    };
    let _ = writeln!(md, "# Runner connectivity report\n");
    let _ = writeln!(md, "## Verdict: {mark} {}\n", headline(doc));
    let _ = writeln!(md, "{}\n", escape(&v.summary));
    if !r.capture.complete {
        let _ = writeln!(
            md,
            "> ⚠️ **Incomplete capture:** this verdict rests on partial evidence; see \
             [Capture completeness](#capture-completeness).\n"
        );
    }
    if let Some(merged) = &doc.merged {
        let rows: Vec<Vec<String>> = merged
            .runners
            .iter()
            .map(|run| {
                vec![
                    escape(&run.label),
                    match run.runner_can_work {
                        Some(true) => "✅ can work".to_owned(),
                        Some(false) => "⛔ cannot work or unreliable".to_owned(),
                        None => "❔ unknown".to_owned(),
                    },
                    if run.complete {
                        "complete".to_owned()
                    } else {
                        format!(
                            "⚠️ incomplete: {}",
                            escape(&run.incomplete_because.join("; "))
                        )
                    },
                    format!(
                        "{} to {}",
                        when(run.started_at.as_deref()),
                        when(run.ended_at.as_deref())
                    ),
                    run.flows.to_string(),
                    escape(&run.source),
                ]
            })
            .collect();
        table(
            md,
            &[
                ("Runner", false),
                ("Verdict", false),
                ("Capture", false),
                ("Window (UTC)", false),
                ("Flows", true),
                ("Report", false),
            ],
            &rows,
        );
    }
    let runners = RunnerColumns::of(doc);
    let runner_header = runners.header();
    let group_cells = |id: &str| {
        runners.cells(doc.merged.as_ref().and_then(|m| {
            m.groups
                .iter()
                .find(|g| g.key == id)
                .map(|g| g.runners.as_slice())
        }))
    };
    let rows: Vec<Vec<String>> = v
        .required
        .iter()
        .map(|g| {
            let mut row = vec![
                format!("{} ({})", escape(&g.title), escape(&g.group)),
                status_cell(g.status),
            ];
            row.extend(group_cells(&g.group));
            row.push(list_or_dash(&g.because));
            row
        })
        .collect();
    table(
        md,
        &header_with_runners(
            &[
                ("Required group", false),
                ("Status", false),
                ("Failing hosts", false),
            ],
            2,
            &runner_header,
        ),
        &rows,
    );
    if v.failing_features.is_empty() {
        md.push_str("No optional feature failed.\n\n");
    } else {
        md.push_str("**Features that will fail or be unreliable:**\n\n");
        let rows: Vec<Vec<String>> = v
            .failing_features
            .iter()
            .map(|g| {
                let mut row = vec![
                    format!("{} ({})", escape(&g.title), escape(&g.group)),
                    status_cell(g.status),
                ];
                row.extend(group_cells(&g.group));
                row.push(list_or_dash(&g.because));
                row
            })
            .collect();
        table(
            md,
            &header_with_runners(
                &[("Feature", false), ("Status", false), ("Because", false)],
                2,
                &runner_header,
            ),
            &rows,
        );
    }
}

/// Escaped items joined by `; `, or `—`.
fn list_or_dash(items: &[String]) -> String {
    if items.is_empty() {
        "—".to_owned()
    } else {
        items
            .iter()
            .map(|i| escape(i))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn completeness(md: &mut String, doc: &Document) {
    let r = &doc.report;
    md.push_str("## Capture completeness\n\n");
    if r.capture.complete {
        md.push_str(
            "✅ **Complete:** no kernel event was lost, every probe was attached and nothing was \
             dropped.\n\n",
        );
    } else {
        md.push_str(
            "> ⚠️ **Incomplete capture: this report does not show everything that happened.** \
             Do not read a missing flow as \"nothing else happened\".\n>\n",
        );
        for reason in &r.capture.incomplete_because {
            let _ = writeln!(md, "> - {}", escape(reason));
        }
        md.push('\n');
    }
    for (what, value) in capture_facts(r) {
        let _ = writeln!(md, "- **{what}:** {}", escape(&value));
    }
    let unattached = unattached_probes(r);
    if !unattached.is_empty() {
        let _ = writeln!(
            md,
            "- **Probes not attached:** {}",
            list_or_dash(&unattached)
        );
    }
    md.push('\n');
}

fn groups(md: &mut String, doc: &Document) {
    let r = &doc.report;
    md.push_str("## Host groups\n\n");
    let runners = RunnerColumns::of(doc);
    let runner_header = runners.header();
    let rows: Vec<Vec<String>> = r
        .groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let mut row = vec![
                format!("{} ({})", escape(&g.title), escape(&g.id)),
                status_cell(g.status),
            ];
            row.extend(
                runners.cells(
                    doc.merged
                        .as_ref()
                        .and_then(|m| m.groups.get(i).map(|b| b.runners.as_slice())),
                ),
            );
            row.extend([
                (if g.required {
                    "yes"
                } else if g.summary {
                    "no (summary)"
                } else {
                    "no"
                })
                .to_owned(),
                g.flows.to_string(),
                bytes(g.bytes_sent),
                bytes(g.bytes_received),
                list_or_dash(&g.failing_hosts),
            ]);
            row
        })
        .collect();
    table(
        md,
        &header_with_runners(
            &[
                ("Group", false),
                ("Status", false),
                ("Required", false),
                ("Flows", true),
                ("Sent", true),
                ("Received", true),
                ("Failing hosts", false),
            ],
            2,
            &runner_header,
        ),
        &rows,
    );
}

/// `tcp_reset ×2 (last 2026-… by curl[42])` for each reason.
fn reasons_text(reasons: &[Reason]) -> String {
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
                "{} ×{} (last {}{by})",
                escape(&reason.code),
                reason.count,
                when(reason.last_seen.as_deref())
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn addresses_text(addresses: &[std::net::IpAddr]) -> String {
    if addresses.is_empty() {
        return "—".to_owned();
    }
    addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn failing_hosts(md: &mut String, doc: &Document) {
    let r = &doc.report;
    md.push_str("## Blocked and degraded hosts\n\n");
    let failing: Vec<(usize, &HostReport)> = r
        .hosts
        .iter()
        .enumerate()
        .filter(|(_, h)| is_failing(h.status))
        .collect();
    if failing.is_empty() {
        md.push_str("None: no documented host was blocked or degraded.\n\n");
        return;
    }
    let runners = RunnerColumns::of(doc);
    let runner_header = runners.header();
    let rows: Vec<Vec<String>> = failing
        .iter()
        .take(MAX_ROWS)
        .map(|(i, h)| {
            let mut row = vec![escape(&h.name), status_cell(h.status)];
            row.extend(runners.cells(host_runners(doc, *i)));
            row.extend([
                reasons_text(&h.reasons),
                escape(&h.groups.join(", ")),
                addresses_text(&h.addresses),
            ]);
            row
        })
        .collect();
    table(
        md,
        &header_with_runners(
            &[
                ("Host", false),
                ("Status", false),
                ("Reasons", false),
                ("Groups", false),
                ("Addresses", false),
            ],
            2,
            &runner_header,
        ),
        &rows,
    );
    more(md, rows.len(), failing.len(), "failing hosts");
}

fn host_runners(doc: &Document, i: usize) -> Option<&[RunnerStatus]> {
    doc.merged
        .as_ref()
        .and_then(|m| m.hosts.get(i).map(|b| b.runners.as_slice()))
}

fn documented_hosts(md: &mut String, doc: &Document) {
    let r = &doc.report;
    md.push_str("## Documented hosts\n\n");
    let runners = RunnerColumns::of(doc);
    let runner_header = runners.header();
    let rows: Vec<Vec<String>> = r
        .hosts
        .iter()
        .enumerate()
        .take(MAX_ROWS)
        .map(|(i, h)| {
            let name = if h.pattern == h.name {
                escape(&h.name)
            } else {
                format!("{} (as {})", escape(&h.name), escape(&h.pattern))
            };
            let mut row = vec![name, status_cell(h.status)];
            row.extend(runners.cells(host_runners(doc, i)));
            row.extend([
                escape(&h.groups.join(", ")),
                h.flows.to_string(),
                bytes(h.bytes_sent),
                bytes(h.bytes_received),
                addresses_text(&h.addresses),
            ]);
            row
        })
        .collect();
    table(
        md,
        &header_with_runners(
            &[
                ("Host", false),
                ("Status", false),
                ("Groups", false),
                ("Flows", true),
                ("Sent", true),
                ("Received", true),
                ("Addresses", false),
            ],
            2,
            &runner_header,
        ),
        &rows,
    );
    more(md, rows.len(), r.hosts.len(), "hosts");
}

fn undeclared(md: &mut String, doc: &Document) {
    let r = &doc.report;
    md.push_str("## Undeclared destinations\n\n");
    if r.undeclared.is_empty() {
        md.push_str("None: every destination belongs to a group of the catalog.\n\n");
        return;
    }
    md.push_str(
        "Destinations no group of the catalog lists: a workflow's own registries, hard-coded \
         addresses. Loudest first.\n\n",
    );
    let runners = RunnerColumns::of(doc);
    let runner_header = runners.header();
    let rows: Vec<Vec<String>> = r
        .undeclared
        .iter()
        .enumerate()
        .take(MAX_ROWS)
        .map(|(i, u)| {
            let destination = match &u.name {
                Some(name) => escape(name),
                None => format!("{} (no DNS name seen)", addresses_text(&u.addresses)),
            };
            let mut row = vec![destination, status_cell(u.status)];
            row.extend(
                runners.cells(
                    doc.merged
                        .as_ref()
                        .and_then(|m| m.undeclared.get(i).map(|b| b.runners.as_slice())),
                ),
            );
            let processes: Vec<String> = u.processes.iter().map(process_label).collect();
            row.extend([
                u.ports
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                u.flows.to_string(),
                bytes(u.bytes_sent),
                bytes(u.bytes_received),
                few(&processes, 3),
                reasons_text(&u.reasons),
            ]);
            row
        })
        .collect();
    table(
        md,
        &header_with_runners(
            &[
                ("Destination", false),
                ("Status", false),
                ("Ports", false),
                ("Flows", true),
                ("Sent", true),
                ("Received", true),
                ("Processes", false),
                ("Reasons", false),
            ],
            2,
            &runner_header,
        ),
        &rows,
    );
    more(md, rows.len(), r.undeclared.len(), "destinations");
}

/// The first `n` items escaped, and how many more.
fn few(items: &[String], n: usize) -> String {
    if items.is_empty() {
        return "—".to_owned();
    }
    let mut text = items
        .iter()
        .take(n)
        .map(|i| escape(i))
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > n {
        let _ = write!(text, " and {} more", items.len() - n);
    }
    text
}

fn flows(md: &mut String, doc: &Document) {
    let r = &doc.report;
    md.push_str("## Flows\n\n");
    let counts = FlowCounts::of(r);
    let _ = writeln!(md, "{}\n", escape(&counts.sentence()));
    let problems: Vec<(usize, &crate::report::FlowReport)> = r
        .flows
        .iter()
        .enumerate()
        .filter(|(_, f)| flow_is_problem(f))
        .collect();
    if problems.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "**Flows that never completed the handshake or received nothing** ({} of {}):\n",
        problems.len().min(MAX_PROBLEM_FLOWS),
        problems.len()
    );
    let merged = doc.merged.as_ref();
    let mut header = vec![("Flow", true)];
    if merged.is_some() {
        header.push(("Runner", false));
    }
    header.extend([
        ("Opened (UTC)", false),
        ("Process", false),
        ("Destination", false),
        ("Name", false),
        ("Outcome", false),
        ("Error", false),
        ("Sent", true),
    ]);
    let rows: Vec<Vec<String>> = problems
        .iter()
        .take(MAX_PROBLEM_FLOWS)
        .map(|(i, f)| {
            let mut row = vec![f.flow_id.to_string()];
            if let Some(m) = merged {
                row.push(escape(m.runner_of_flow(*i).unwrap_or("—")));
            }
            row.extend([
                when(f.opened_at.as_deref()),
                escape(&process_label(&f.process)),
                escape(&f.dst),
                f.name.as_deref().map_or_else(|| "—".to_owned(), escape),
                f.outcome.map_or("open", |o| o.as_str()).to_owned(),
                f.error.as_deref().map_or_else(|| "—".to_owned(), escape),
                bytes(f.bytes_sent),
            ]);
            row
        })
        .collect();
    table(md, &header, &rows);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_specials_in_names_are_escaped() {
        assert_eq!(escape("api.github.com"), "api.github.com");
        assert_eq!(escape("a|b"), "a\\|b");
        assert_eq!(escape("*x*_y_"), "\\*x\\*\\_y\\_");
        assert_eq!(escape("[click](http://evil)"), "\\[click\\](http://evil)");
        assert_eq!(
            escape("<script>alert(1)</script>"),
            "\\<script\\>alert(1)\\</script\\>"
        );
        assert_eq!(
            escape("`code` $x$ @team #12"),
            "\\`code\\` \\$x\\$ \\@team \\#12"
        );
        assert_eq!(escape("a\\b"), "a\\\\b");
        assert_eq!(escape("line\nbreak\u{7}"), "line break\u{FFFD}");
        assert_eq!(escape("&amp;"), "\\&amp;");
    }

    #[test]
    fn a_hostile_name_cannot_break_a_table_row() {
        let mut md = String::new();
        table(
            &mut md,
            &[("A", false), ("B", true)],
            &[vec![escape("x | y\n| z"), "1".to_owned()]],
        );
        let rows: Vec<&str> = md.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(rows.len(), 3, "{md}");
        assert_eq!(rows[1], "| --- | ---: |");
        assert_eq!(rows[2], "| x \\| y \\| z | 1 |");
    }
}
