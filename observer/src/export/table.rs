//! The report's tables, format-neutral: which columns, which rows, and what kind of content
//! each cell holds. The Markdown and HTML pages build every table here, once, and differ only
//! in how they escape and mark up a [`Cell`].

use crate::report::{GroupVerdict, HostReport, Reason, Status};

use super::{
    bytes, flow_is_problem, host_notes,
    merge::{Merged, Runner, RunnerStatus},
    process_label, when, Document, FlowNaming, MAX_RUNNER_COLUMNS,
};

/// A column: its title, and whether it holds numbers (right-aligned).
pub struct Column {
    pub title: String,
    pub numeric: bool,
}

/// How the items of a [`Cell::List`] are run together where they share a line (Markdown);
/// HTML puts each on its own line.
#[derive(Clone, Copy)]
pub enum ListStyle {
    /// Clauses: `a; b`.
    Clauses,
    /// Short items such as addresses: `a, b`.
    Commas,
    /// The first `n` items, `a, b and 3 more`.
    Sample(usize),
}

/// One reason a host failed, its parts ready for either format.
pub struct ReasonCell {
    pub code: String,
    pub count: u64,
    /// When it was last seen ([`when`]).
    pub last: String,
    /// The process of the latest failure ([`process_label`]).
    pub by: Option<String>,
    /// Evidence of the latest occurrence (`proxy 198.18.1.5:3128 answered 403 Forbidden to
    /// CONNECT codeload.github.com:443`), from the report: untrusted.
    pub detail: Option<String>,
}

/// A cell's content, by kind; each format escapes and styles it its own way.
pub enum Cell {
    /// Text (untrusted: escaped by every format).
    Text(String),
    /// A time or time window ([`when`]); from the report, so escaped by every format.
    Time(String),
    /// A cell followed by a parenthesised side note (`name (as pattern)`), muted in HTML.
    Noted(Box<Cell>, String),
    /// A status.
    Status(Status),
    /// One runner's status of an entry; none when its report does not list the entry.
    RunnerStatus(Option<Status>),
    /// The runners where an entry is not ok, with their statuses (for a large fleet).
    NotOkOn(Vec<(String, Option<Status>)>),
    /// Items, or `—` when there are none.
    List(ListStyle, Vec<String>),
    /// The reasons a destination failed, or `—`.
    Reasons(Vec<ReasonCell>),
    /// A runner's verdict: it can work, cannot, or unknown.
    CanWork(Option<bool>),
    /// A runner's capture: complete, or incomplete because of the (joined) reasons.
    Capture { complete: bool, because: String },
}

/// A table: its columns, its rows (cut to a maximum) and how many rows there were in all.
pub struct Table {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Cell>>,
    /// Rows before the cut.
    pub total: usize,
    /// What the rows are, for the note on rows not shown; none when the table has no such note.
    pub noun: Option<&'static str>,
}

impl Table {
    /// The rows not shown, and what they are, when the table was cut and says so.
    pub fn not_shown(&self) -> Option<(usize, &'static str)> {
        self.noun
            .filter(|_| self.total > self.rows.len())
            .map(|noun| (self.total - self.rows.len(), noun))
    }
}

fn columns(list: &[(&str, bool)]) -> Vec<Column> {
    list.iter()
        .map(|(title, numeric)| Column {
            title: (*title).to_owned(),
            numeric: *numeric,
        })
        .collect()
}

/// The per-runner columns of merged reports: one per runner, or one naming the runners where
/// the entry is not ok; none for a single report.
struct RunnerColumns<'a> {
    labels: Vec<&'a str>,
}

impl<'a> RunnerColumns<'a> {
    fn of(doc: &'a Document) -> Self {
        Self {
            labels: doc.runner_labels(),
        }
    }

    /// `base` with the per-runner columns inserted after its first two columns.
    fn columns(&self, base: &[(&str, bool)]) -> Vec<Column> {
        let mut out = columns(&base[..2]);
        if self.labels.len() > MAX_RUNNER_COLUMNS {
            out.extend(columns(&[("Not ok on", false)]));
        } else {
            out.extend(self.labels.iter().map(|l| Column {
                title: format!("On {l}"),
                numeric: false,
            }));
        }
        out.extend(columns(&base[2..]));
        out
    }

    fn cells(&self, per_runner: Option<&[RunnerStatus]>) -> Vec<Cell> {
        if self.labels.is_empty() {
            return vec![];
        }
        let per_runner = per_runner.unwrap_or_default();
        if self.labels.len() > MAX_RUNNER_COLUMNS {
            return vec![Cell::NotOkOn(
                per_runner
                    .iter()
                    .filter(|r| r.status.is_some_and(Status::is_failing))
                    .map(|r| (r.runner.clone(), r.status))
                    .collect(),
            )];
        }
        self.labels
            .iter()
            .map(|label| {
                Cell::RunnerStatus(
                    per_runner
                        .iter()
                        .find(|r| r.runner == *label)
                        .and_then(|r| r.status),
                )
            })
            .collect()
    }
}

fn noted(text: &str, note: String) -> Cell {
    Cell::Noted(Box::new(Cell::Text(text.to_owned())), note)
}

fn text(value: impl ToString) -> Cell {
    Cell::Text(value.to_string())
}

fn reasons(reasons: &[Reason]) -> Cell {
    Cell::Reasons(
        reasons
            .iter()
            .map(|r| ReasonCell {
                code: r.label(),
                count: r.count,
                last: when(r.last_seen.as_deref()),
                by: r.process.as_ref().map(process_label),
                detail: r.detail.clone(),
            })
            .collect(),
    )
}

/// A cell with its side notes joined (`name (as *.x; via proxy 198.18.1.5:3128)`), or the cell
/// alone when there are none.
fn with_notes(cell: Cell, notes: Vec<String>) -> Cell {
    if notes.is_empty() {
        cell
    } else {
        Cell::Noted(Box::new(cell), notes.join("; "))
    }
}

fn addresses(addresses: &[std::net::IpAddr]) -> Cell {
    Cell::List(
        ListStyle::Commas,
        addresses.iter().map(ToString::to_string).collect(),
    )
}

/// The runners of a merge; the last column is titled `last_title` and holds `last` of each.
pub fn runners(merged: &Merged, last_title: &str, last: fn(&Runner) -> &str) -> Table {
    let rows: Vec<Vec<Cell>> = merged
        .runners
        .iter()
        .map(|run| {
            vec![
                text(&run.label),
                Cell::CanWork(run.runner_can_work),
                Cell::Capture {
                    complete: run.complete,
                    because: run.incomplete_because.join("; "),
                },
                Cell::Time(format!(
                    "{} to {}",
                    when(run.started_at.as_deref()),
                    when(run.ended_at.as_deref())
                )),
                text(run.flows),
                text(last(run)),
            ]
        })
        .collect();
    Table {
        columns: columns(&[
            ("Runner", false),
            ("Verdict", false),
            ("Capture", false),
            ("Window (UTC)", false),
            ("Flows", true),
            (last_title, false),
        ]),
        total: rows.len(),
        rows,
        noun: None,
    }
}

/// Groups of the verdict (required groups, failing features): title, status, per-runner
/// statuses, optionally a `Required` column holding each row's word, and the reasons titled
/// `last_title`.
pub fn group_verdicts<'g>(
    doc: &Document,
    first_title: &str,
    groups: impl Iterator<Item = (&'g GroupVerdict, Option<&'static str>)>,
    with_required: bool,
    last_title: &str,
) -> Table {
    let runners = RunnerColumns::of(doc);
    let rows: Vec<Vec<Cell>> = groups
        .map(|(g, required)| {
            let mut row = vec![noted(&g.title, g.group.clone()), Cell::Status(g.status)];
            row.extend(runners.cells(doc.merged.as_ref().and_then(|m| {
                m.groups
                    .iter()
                    .find(|b| b.key == g.group)
                    .map(|b| b.runners.as_slice())
            })));
            row.extend(required.map(text));
            row.push(Cell::List(ListStyle::Clauses, g.because.clone()));
            row
        })
        .collect();
    let mut base = vec![(first_title, false), ("Status", false)];
    if with_required {
        base.push(("Required", false));
    }
    base.push((last_title, false));
    Table {
        columns: runners.columns(&base),
        total: rows.len(),
        rows,
        noun: None,
    }
}

/// Every host group.
pub fn groups(doc: &Document) -> Table {
    let runners = RunnerColumns::of(doc);
    let rows: Vec<Vec<Cell>> = doc
        .report
        .groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let mut row = vec![noted(&g.title, g.id.clone()), Cell::Status(g.status)];
            row.extend(
                runners.cells(
                    doc.merged
                        .as_ref()
                        .and_then(|m| m.groups.get(i).map(|b| b.runners.as_slice())),
                ),
            );
            row.extend([
                text(if g.required {
                    "yes"
                } else if g.summary {
                    "no (summary)"
                } else {
                    "no"
                }),
                text(g.flows),
                text(bytes(g.bytes_sent)),
                text(bytes(g.bytes_received)),
                Cell::List(ListStyle::Clauses, g.failing_hosts.clone()),
            ]);
            row
        })
        .collect();
    Table {
        columns: runners.columns(&[
            ("Group", false),
            ("Status", false),
            ("Required", false),
            ("Flows", true),
            ("Sent", true),
            ("Received", true),
            ("Failing hosts", false),
        ]),
        total: rows.len(),
        rows,
        noun: None,
    }
}

fn host_runners(doc: &Document, i: usize) -> Option<&[RunnerStatus]> {
    doc.merged
        .as_ref()
        .and_then(|m| m.hosts.get(i).map(|b| b.runners.as_slice()))
}

/// The blocked and degraded hosts, at most `max_rows`; none when no host failed.
pub fn failing_hosts(doc: &Document, max_rows: usize) -> Option<Table> {
    let failing: Vec<(usize, &HostReport)> = doc
        .report
        .hosts
        .iter()
        .enumerate()
        .filter(|(_, h)| h.status.is_failing())
        .collect();
    if failing.is_empty() {
        return None;
    }
    let runners = RunnerColumns::of(doc);
    let rows: Vec<Vec<Cell>> = failing
        .iter()
        .take(max_rows)
        .map(|(i, h)| {
            let name = with_notes(text(&h.name), host_notes(&h.via_proxies, &h.named_by));
            let mut row = vec![name, Cell::Status(h.status)];
            row.extend(runners.cells(host_runners(doc, *i)));
            row.extend([
                reasons(&h.reasons),
                text(h.groups.join(", ")),
                addresses(&h.addresses),
            ]);
            row
        })
        .collect();
    Some(Table {
        columns: runners.columns(&[
            ("Host", false),
            ("Status", false),
            ("Reasons", false),
            ("Groups", false),
            ("Addresses", false),
        ]),
        rows,
        total: failing.len(),
        noun: Some("failing hosts"),
    })
}

/// Every documented host, at most `max_rows`.
pub fn documented_hosts(doc: &Document, max_rows: usize) -> Table {
    let runners = RunnerColumns::of(doc);
    let hosts = &doc.report.hosts;
    let rows: Vec<Vec<Cell>> = hosts
        .iter()
        .enumerate()
        .take(max_rows)
        .map(|(i, h)| {
            let mut notes = Vec::new();
            if h.pattern != h.name {
                notes.push(format!("as {}", h.pattern));
            }
            notes.extend(host_notes(&h.via_proxies, &h.named_by));
            let name = with_notes(text(&h.name), notes);
            let mut row = vec![name, Cell::Status(h.status)];
            row.extend(runners.cells(host_runners(doc, i)));
            row.extend([
                text(h.groups.join(", ")),
                text(h.flows),
                text(bytes(h.bytes_sent)),
                text(bytes(h.bytes_received)),
                addresses(&h.addresses),
            ]);
            row
        })
        .collect();
    Table {
        columns: runners.columns(&[
            ("Host", false),
            ("Status", false),
            ("Groups", false),
            ("Flows", true),
            ("Sent", true),
            ("Received", true),
            ("Addresses", false),
        ]),
        rows,
        total: hosts.len(),
        noun: Some("hosts"),
    }
}

/// The undeclared destinations, at most `max_rows`; none when there are none.
pub fn undeclared(doc: &Document, max_rows: usize) -> Option<Table> {
    let undeclared = &doc.report.undeclared;
    if undeclared.is_empty() {
        return None;
    }
    let runners = RunnerColumns::of(doc);
    let rows: Vec<Vec<Cell>> = undeclared
        .iter()
        .enumerate()
        .take(max_rows)
        .map(|(i, u)| {
            let destination = match &u.name {
                Some(name) => text(name),
                None => Cell::Noted(
                    Box::new(addresses(&u.addresses)),
                    "no DNS name seen".to_owned(),
                ),
            };
            let destination = with_notes(destination, host_notes(&u.via_proxies, &u.named_by));
            let mut row = vec![destination, Cell::Status(u.status)];
            row.extend(
                runners.cells(
                    doc.merged
                        .as_ref()
                        .and_then(|m| m.undeclared.get(i).map(|b| b.runners.as_slice())),
                ),
            );
            row.extend([
                text(
                    u.ports
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
                text(u.flows),
                text(bytes(u.bytes_sent)),
                text(bytes(u.bytes_received)),
                Cell::List(
                    ListStyle::Sample(3),
                    u.processes.iter().map(process_label).collect(),
                ),
                reasons(&u.reasons),
            ]);
            row
        })
        .collect();
    Some(Table {
        columns: runners.columns(&[
            ("Destination", false),
            ("Status", false),
            ("Ports", false),
            ("Flows", true),
            ("Sent", true),
            ("Received", true),
            ("Processes", false),
            ("Reasons", false),
        ]),
        rows,
        total: undeclared.len(),
        noun: Some("destinations"),
    })
}

/// The flows that never completed the handshake, received nothing or got an error from their
/// proxy, at most `max_rows`; none when there are none.
pub fn problem_flows(doc: &Document, max_rows: usize) -> Option<Table> {
    let problems: Vec<(usize, &crate::report::FlowReport)> = doc
        .report
        .flows
        .iter()
        .enumerate()
        .filter(|(_, f)| flow_is_problem(f))
        .collect();
    if problems.is_empty() {
        return None;
    }
    let merged = doc.merged.as_ref();
    let mut base = vec![("Flow", true)];
    if merged.is_some() {
        base.push(("Runner", false));
    }
    base.extend([
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
        .take(max_rows)
        .map(|(i, f)| {
            let mut row = vec![text(f.flow_id)];
            if let Some(m) = merged {
                row.push(text(m.runner_of_flow(*i).unwrap_or("—")));
            }
            row.extend([
                Cell::Time(when(f.opened_at.as_deref())),
                text(process_label(&f.process)),
                text(&f.dst),
                with_notes(
                    text(f.name.as_deref().unwrap_or("—")),
                    FlowNaming::of_report(f).words().into_iter().collect(),
                ),
                text(outcome(f)),
                text(f.error.as_deref().unwrap_or("—")),
                text(bytes(f.bytes_sent)),
            ]);
            row
        })
        .collect();
    Some(Table {
        columns: columns(&base),
        rows,
        total: problems.len(),
        noun: None,
    })
}

/// The flows whose TLS server name named another host than the DNS answer for their address
/// (a CDN address shared by several names, a stale cache, or domain fronting), at most
/// `max_rows`; none when there are none.
pub fn sni_disagreements(doc: &Document, max_rows: usize) -> Option<Table> {
    let flows: Vec<(usize, &crate::report::FlowReport)> = doc
        .report
        .flows
        .iter()
        .enumerate()
        .filter(|(_, f)| f.dns_name.is_some())
        .collect();
    if flows.is_empty() {
        return None;
    }
    let merged = doc.merged.as_ref();
    let mut base = vec![("Flow", true)];
    if merged.is_some() {
        base.push(("Runner", false));
    }
    base.extend([
        ("Opened (UTC)", false),
        ("Process", false),
        ("Destination", false),
        ("SNI (the flow's name)", false),
        ("DNS said", false),
    ]);
    let rows: Vec<Vec<Cell>> = flows
        .iter()
        .take(max_rows)
        .map(|(i, f)| {
            let mut row = vec![text(f.flow_id)];
            if let Some(m) = merged {
                row.push(text(m.runner_of_flow(*i).unwrap_or("—")));
            }
            row.extend([
                Cell::Time(when(f.opened_at.as_deref())),
                text(process_label(&f.process)),
                text(&f.dst),
                text(f.sni.as_deref().or(f.name.as_deref()).unwrap_or("—")),
                text(f.dns_name.as_deref().unwrap_or("—")),
            ]);
            row
        })
        .collect();
    Some(Table {
        columns: columns(&base),
        rows,
        total: flows.len(),
        noun: Some("flows"),
    })
}

/// How a flow ended, with its proxy's answer when it went through one: `closed`, `closed,
/// proxy answered 403`, `open`.
fn outcome(f: &crate::report::FlowReport) -> String {
    let ended = f.outcome.map_or("open", |o| o.as_str());
    match (f.via_proxy.is_some(), f.proxy_status) {
        (true, Some(code)) => format!("{ended}, proxy answered {code}"),
        (true, None) if f.outcome.is_some() => format!("{ended}, no answer from the proxy"),
        _ => ended.to_owned(),
    }
}
