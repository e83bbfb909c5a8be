//! The report in Markdown (GitHub-flavoured), for a job summary (`$GITHUB_STEP_SUMMARY`) or a
//! ticket: the verdict first, then the capture's completeness, the groups, the failing hosts,
//! every documented host, the undeclared destinations and a short summary of the flows.
//!
//! Statuses are words with a symbol, never a symbol alone. Every name is escaped ([`escape`]):
//! names come from DNS answers and catalogs and are treated as hostile. Long lists are cut at
//! [`MAX_ROWS`] rows with a note, so the page stays far below the job summary's 1 MiB limit;
//! the JSON report lists everything.

use std::fmt::Write as _;

use crate::report::Status;

use super::{
    capture_facts, headline,
    table::{self, Cell, ListStyle, Table},
    unattached_probes, Document, FlowCounts,
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

/// Escapes text for Markdown, inline, inside table cells and at the start of a line: ASCII
/// punctuation that could start markup (emphasis, links, images, HTML, tables, code, math,
/// mentions, references, headings) gets a backslash; so do the `:` of `://` and the `.` of a
/// leading `www.` (GitHub turns bare URLs into live links), and a leading `-`, `+`, `=` or
/// `1.` (a list, a setext heading or a rule when the text starts a line); line breaks and other
/// control characters become a space or U+FFFD.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    if starts_block(text) {
        out.push('\\');
    }
    while let Some((i, c)) = chars.next() {
        let rest = &text[i + c.len_utf8()..];
        let word_start = text[..i]
            .chars()
            .next_back()
            .is_none_or(|p| !p.is_alphanumeric());
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '~' | '&' | '#' | '$' | '@' => {
                out.push('\\');
                out.push(c);
            }
            ':' if rest.starts_with("//") => out.push_str("\\:"),
            'w' | 'W'
                if word_start && rest.get(..3).is_some_and(|r| r.eq_ignore_ascii_case("ww.")) =>
            {
                out.push(c);
                out.push_str(&rest[..2]);
                out.push_str("\\.");
                chars.nth(2);
            }
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    // An ordered-list marker `1.`/`1)` escapes its punctuation, not its digits.
    if let Some(marker) = ordered_list_marker(&out) {
        out.insert(marker, '\\');
    }
    out
}

/// Whether text starting a line would open a block: a list item, a setext underline or a
/// thematic break (`-`, `+`, `=`).
fn starts_block(text: &str) -> bool {
    text.starts_with(['-', '+', '='])
}

/// The byte offset of the `.` or `)` of a leading ordered-list marker (`12. `, `3)`), if any.
fn ordered_list_marker(text: &str) -> Option<usize> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let after = text[digits..].chars().nth(1);
    (digits > 0 && text[digits..].starts_with(['.', ')']) && after.is_none_or(char::is_whitespace))
        .then_some(digits)
}

/// A status as a symbol and a word.
fn status_cell(status: Status) -> String {
    let mark = match status {
        Status::Ok => "✅",
        Status::Degraded => "⚠️",
        Status::Blocked => "⛔",
        Status::Unseen => "➖",
    };
    format!("{mark} {}", status.word())
}

/// A per-runner status: its word, or `—` when the runner's report has no such entry.
fn runner_cell(status: Option<Status>) -> String {
    status.map_or_else(|| "— not listed".to_owned(), status_cell)
}

/// A cell in Markdown, escaped.
fn cell(cell: &Cell) -> String {
    match cell {
        Cell::Text(text) => escape(text),
        // Times are ISO text normally, but come from the report: escaped like any text.
        Cell::Time(time) => escape(time),
        Cell::Noted(inner, note) => format!("{} ({})", self::cell(inner), escape(note)),
        Cell::Status(status) => status_cell(*status),
        Cell::RunnerStatus(status) => runner_cell(*status),
        Cell::NotOkOn(runners) if runners.is_empty() => "—".to_owned(),
        Cell::NotOkOn(runners) => runners
            .iter()
            .map(|(runner, status)| format!("{} ({})", escape(runner), runner_cell(*status)))
            .collect::<Vec<_>>()
            .join(", "),
        Cell::List(_, items) if items.is_empty() => "—".to_owned(),
        Cell::List(ListStyle::Clauses, items) => list_or_dash(items),
        Cell::List(ListStyle::Commas, items) => items
            .iter()
            .map(|i| escape(i))
            .collect::<Vec<_>>()
            .join(", "),
        Cell::List(ListStyle::Sample(n), items) => few(items, *n),
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
                    "{} ×{} (last {}{by}){detail}",
                    escape(&reason.code),
                    reason.count,
                    escape(&reason.last)
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
        Cell::CanWork(can_work) => match can_work {
            Some(true) => "✅ can work",
            Some(false) => "⛔ cannot work or unreliable",
            None => "❔ unknown",
        }
        .to_owned(),
        Cell::Capture { complete: true, .. } => "complete".to_owned(),
        Cell::Capture { because, .. } => format!("⚠️ incomplete: {}", escape(because)),
    }
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

/// A table of the report, then `_… and N more not shown_` when it was cut and says so.
fn render_table(md: &mut String, t: &Table) {
    let header: Vec<(&str, bool)> = t
        .columns
        .iter()
        .map(|c| (c.title.as_str(), c.numeric))
        .collect();
    let rows: Vec<Vec<String>> = t
        .rows
        .iter()
        .map(|r| r.iter().map(cell).collect())
        .collect();
    table(md, &header, &rows);
    if let Some((more, what)) = t.not_shown() {
        let _ = writeln!(
            md,
            "_… and {more} more {what} not shown; the JSON report lists them all._\n"
        );
    }
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
        render_table(md, &table::runners(merged, "Report", |run| &run.source));
    }
    let required = v.required.iter().map(|g| (g, None));
    render_table(
        md,
        &table::group_verdicts(doc, "Required group", required, false, "Failing hosts"),
    );
    if v.failing_features.is_empty() {
        md.push_str("No optional feature failed.\n\n");
    } else {
        md.push_str("**Features that will fail or be unreliable:**\n\n");
        let features = v.failing_features.iter().map(|g| (g, None));
        render_table(
            md,
            &table::group_verdicts(doc, "Feature", features, false, "Because"),
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
    for note in &r.capture.notes {
        let _ = writeln!(md, "- **On this kernel:** {}", escape(note));
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
    md.push_str("## Host groups\n\n");
    render_table(md, &table::groups(doc));
}

fn failing_hosts(md: &mut String, doc: &Document) {
    md.push_str("## Blocked and degraded hosts\n\n");
    match table::failing_hosts(doc, MAX_ROWS) {
        Some(t) => render_table(md, &t),
        None => md.push_str("None: no documented host was blocked or degraded.\n\n"),
    }
}

fn documented_hosts(md: &mut String, doc: &Document) {
    md.push_str("## Documented hosts\n\n");
    render_table(md, &table::documented_hosts(doc, MAX_ROWS));
}

fn undeclared(md: &mut String, doc: &Document) {
    md.push_str("## Undeclared destinations\n\n");
    let Some(t) = table::undeclared(doc, MAX_ROWS) else {
        md.push_str("None: every destination belongs to a group of the catalog.\n\n");
        return;
    };
    md.push_str(
        "Destinations no group of the catalog lists: a workflow's own registries, hard-coded \
         addresses. Loudest first.\n\n",
    );
    render_table(md, &t);
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
    if let Some(t) = table::problem_flows(doc, MAX_PROBLEM_FLOWS) {
        let _ = writeln!(
            md,
            "**Flows that never completed the handshake, received nothing or got an error from \
             their proxy** ({} of {}):\n",
            t.rows.len(),
            t.total
        );
        render_table(md, &t);
    }
    sni_disagreements(md, doc);
}

/// The flows whose TLS server name disagreed with DNS, when there are any.
fn sni_disagreements(md: &mut String, doc: &Document) {
    let Some(t) = table::sni_disagreements(doc, MAX_PROBLEM_FLOWS) else {
        return;
    };
    md.push_str(
        "**Flows whose TLS server name (SNI) disagreed with DNS**: each is named by its SNI; a \
         CDN address shared by several names, a stale cache, or domain fronting.\n\n",
    );
    render_table(md, &t);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_specials_in_names_are_escaped() {
        assert_eq!(escape("api.github.com"), "api.github.com");
        assert_eq!(escape("a|b"), "a\\|b");
        assert_eq!(escape("*x*_y_"), "\\*x\\*\\_y\\_");
        assert_eq!(escape("[click](http://evil)"), "\\[click\\](http\\://evil)");
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
    fn links_images_headings_and_lists_stay_text() {
        assert_eq!(escape("https://evil.example/x"), "https\\://evil.example/x");
        assert_eq!(escape("see www.evil.example"), "see www\\.evil.example");
        assert_eq!(escape("awww.example"), "awww.example");
        assert_eq!(
            escape("![x](https://e.example/p.png)"),
            "!\\[x\\](https\\://e.example/p.png)"
        );
        assert_eq!(escape("- item"), "\\- item");
        assert_eq!(escape("==="), "\\===");
        assert_eq!(escape("+ x"), "\\+ x");
        assert_eq!(escape("1. first"), "1\\. first");
        assert_eq!(escape("12)"), "12\\)");
        assert_eq!(escape("# heading"), "\\# heading");
        // Names, addresses and times have nothing to escape.
        for plain in [
            "192.0.2.1",
            "1.5 MiB",
            "2026-11-27 07:07:34.720",
            "api.github.com",
        ] {
            assert_eq!(escape(plain), plain);
        }
        // No input panics (multi-byte text after a `w`).
        assert_eq!(escape("wé"), "wé");
        assert_eq!(escape("wwé"), "wwé");
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
