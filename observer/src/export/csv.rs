//! The flows of a report as CSV (RFC 4180): a header row, then one row per flow, CRLF line
//! ends, fields quoted when they hold a comma, a double quote or a line break (quotes doubled).
//!
//! Every row carries `capture_complete`, so a filtered or partial extract still says whether the
//! capture behind it was complete. Columns added later go at the end (after `capture_complete`):
//! a consumer that reads columns by position keeps reading the same ones. A merged report has a first column `runner`. Text that a
//! spreadsheet would read as a formula (`=`, `+`, `-`, `@`, tab or CR at the start of the field,
//! or after a character a spreadsheet may split cells on: `;` `,` `|`, tab, line breaks) gets a
//! `'` before it: names come from DNS answers and are treated as hostile.

use crate::{
    pipeline::events::{ClosedBy, DestinationClass},
    report::FlowReport,
};

use super::Document;

/// The columns, in order (after `runner` for merged reports).
pub const COLUMNS: [&str; 30] = [
    "flow_id",
    "opened_at",
    "closed_at",
    "pid",
    "comm",
    "cgroup_id",
    "src",
    "dst",
    "name",
    "cname_chain",
    "class",
    "groups",
    "outcome",
    "closed_by",
    "error",
    "established",
    "rst_received",
    "syn_retransmits",
    "retransmits",
    "bytes_sent",
    "bytes_received",
    "adopted",
    "capture_complete",
    // How the flow was named and what its proxy answered (docs/report.md, flows).
    "named_by",
    "via_proxy",
    "proxy_target",
    "proxy_status",
    "sni",
    "dns_name",
    "tls_note",
];

/// The CSV of a report's (or a merge's) flows.
pub fn render(doc: &Document) -> String {
    let r = &doc.report;
    let merged = doc.merged.as_ref();
    let mut out = String::new();
    let mut header: Vec<&str> = Vec::with_capacity(COLUMNS.len() + 1);
    if merged.is_some() {
        header.push("runner");
    }
    header.extend(COLUMNS);
    row(&mut out, header.iter().map(|h| (*h).to_owned()));
    let complete = r.capture.complete.to_string();
    for (i, f) in r.flows.iter().enumerate() {
        let mut fields = Vec::with_capacity(header.len());
        if let Some(m) = merged {
            fields.push(text(m.runner_of_flow(i).unwrap_or_default()));
        }
        fields.extend(flow_fields(f));
        fields.push(complete.clone());
        fields.extend(naming_fields(f));
        row(&mut out, fields.into_iter());
    }
    out
}

fn flow_fields(f: &FlowReport) -> Vec<String> {
    let opt = |o: Option<&str>| o.map(text).unwrap_or_default();
    vec![
        f.flow_id.to_string(),
        opt(f.opened_at.as_deref()),
        opt(f.closed_at.as_deref()),
        f.process.pid.to_string(),
        text(&f.process.comm),
        f.process.cgroup_id.to_string(),
        text(&f.src),
        text(&f.dst),
        opt(f.name.as_deref()),
        text(&f.cname_chain.join(";")),
        match f.class {
            DestinationClass::Declared => "declared",
            DestinationClass::Undeclared => "undeclared",
            DestinationClass::Unresolved => "unresolved",
        }
        .to_owned(),
        text(&f.groups.join(";")),
        f.outcome.map(|o| o.as_str()).unwrap_or_default().to_owned(),
        match f.closed_by {
            Some(ClosedBy::Local) => "local",
            Some(ClosedBy::Peer) => "peer",
            None => "",
        }
        .to_owned(),
        opt(f.error.as_deref()),
        f.established.to_string(),
        f.rst_received.to_string(),
        f.syn_retransmits.to_string(),
        f.retransmits.to_string(),
        f.bytes_sent.to_string(),
        f.bytes_received.to_string(),
        f.adopted.to_string(),
    ]
}

/// The naming evidence of a flow: how it was named, its proxy and what it asked and got, the
/// TLS server name and the DNS name it disagreed with, and why a TLS hello named nothing.
fn naming_fields(f: &FlowReport) -> [String; 7] {
    let opt = |o: Option<&str>| o.map(text).unwrap_or_default();
    [
        f.named_by
            .map(|n| n.as_str())
            .unwrap_or_default()
            .to_owned(),
        opt(f.via_proxy.as_deref()),
        opt(f.proxy_target.as_deref()),
        f.proxy_status.map(|c| c.to_string()).unwrap_or_default(),
        opt(f.sni.as_deref()),
        opt(f.dns_name.as_deref()),
        opt(f.tls_note.as_deref()),
    ]
}

/// Characters that make a spreadsheet cell a formula when they start it.
const FORMULA: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];
/// Characters a spreadsheet may split a field on (its import dialog offers them as separators),
/// each starting a new cell.
const SPLITS: [char; 6] = [';', ',', '\t', '|', '\r', '\n'];

/// Text that a spreadsheet must not read as a formula: a `'` goes before a formula character
/// that starts the field, or that starts a cell the spreadsheet may split off (`x;=1+1` with
/// `;` as separator becomes `x;'=1+1`).
fn text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut cell_start = true;
    for c in value.chars() {
        if cell_start && FORMULA.contains(&c) {
            out.push('\'');
        }
        out.push(c);
        cell_start = SPLITS.contains(&c);
    }
    out
}

/// One field, quoted when RFC 4180 requires it.
pub fn field(value: &str) -> String {
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// One record, CRLF-terminated.
fn row(out: &mut String, fields: impl Iterator<Item = String>) {
    let fields: Vec<String> = fields.map(|f| field(&f)).collect();
    out.push_str(&fields.join(","));
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_as_rfc_4180_says() {
        assert_eq!(field("api.github.com"), "api.github.com");
        assert_eq!(field(""), "");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
        assert_eq!(field("cr\rhere"), "\"cr\rhere\"");
        assert_eq!(field(" spaced "), " spaced ");
    }

    #[test]
    fn records_end_with_crlf() {
        let mut out = String::new();
        row(&mut out, ["a,b".to_owned(), "c".to_owned()].into_iter());
        assert_eq!(out, "\"a,b\",c\r\n");
    }

    #[test]
    fn formulas_are_defused() {
        assert_eq!(text("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(text("-bash"), "'-bash");
        assert_eq!(text("@evil"), "'@evil");
        assert_eq!(text("curl"), "curl");
        assert_eq!(field(&text("=1+2,3")), "\"'=1+2,3\"");
        // A cell a spreadsheet splits off on another separator is guarded too.
        assert_eq!(text("x;=1+1"), "x;'=1+1");
        assert_eq!(text("a,@SUM(1)|+2\t-3"), "a,'@SUM(1)|'+2\t'-3");
        assert_eq!(text("line\n=cmd"), "line\n'=cmd");
        assert_eq!(text("a;b;c-d"), "a;b;c-d");
        assert_eq!(
            text("github.com;api.github.com"),
            "github.com;api.github.com"
        );
    }
}
