//! The report `observer suggest` works from: read from a report file (`--report`) or built from
//! an event log (`--events`), then seen through a tolerant view of schema 1.
//!
//! The view reads only the fields rule generation needs and ignores the others, so a report
//! written by an older or newer build of schema 1 (fields are added, never re-purposed, within a
//! schema version) still reads.

use std::{
    fs::File,
    io::Read as _,
    net::{IpAddr, SocketAddr},
    path::Path,
};

use anyhow::Context as _;
use serde::Deserialize;

use crate::{eventlog, options::CatalogOptions, report};

/// The parts of an audit report (docs/report.md) that rules are made from.
#[derive(Clone, Debug, Deserialize)]
pub struct ReportView {
    #[serde(default)]
    pub generator: String,
    #[serde(default)]
    pub capture: CaptureView,
    #[serde(default)]
    pub hosts: Vec<HostView>,
    #[serde(default)]
    pub undeclared: Vec<UndeclaredView>,
    #[serde(default)]
    pub flows: Vec<FlowView>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct CaptureView {
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub ended_at: Option<String>,
    #[serde(default)]
    pub duration_s: f64,
    /// False when the report does not say.
    #[serde(default)]
    pub complete: bool,
    #[serde(default)]
    pub incomplete_because: Vec<String>,
}

/// A process as the report gives it.
#[derive(Clone, Debug, Deserialize)]
pub struct ProcessView {
    #[serde(default)]
    pub pid: u32,
    #[serde(default)]
    pub comm: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ReasonView {
    pub code: String,
}

/// A documented host, or an observed member of a documented wildcard.
#[derive(Clone, Debug, Deserialize)]
pub struct HostView {
    pub name: String,
    /// The catalog pattern that matched (the name itself for exact names).
    #[serde(default)]
    pub pattern: String,
    #[serde(default)]
    pub groups: Vec<String>,
    pub status: report::Status,
    #[serde(default)]
    pub reasons: Vec<ReasonView>,
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    #[serde(default)]
    pub cname_chain: Vec<String>,
    #[serde(default)]
    pub flows: u64,
    #[serde(default)]
    pub bytes_sent: u64,
    #[serde(default)]
    pub bytes_received: u64,
    #[serde(default)]
    pub processes: Vec<ProcessView>,
    #[serde(default)]
    pub first_seen: Option<String>,
}

/// A destination no group lists; `name` is null for addresses no DNS answer named.
#[derive(Clone, Debug, Deserialize)]
pub struct UndeclaredView {
    pub name: Option<String>,
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    #[serde(default)]
    pub ports: Vec<u16>,
    #[serde(default)]
    pub cname_chain: Vec<String>,
    #[serde(default)]
    pub flows: u64,
    #[serde(default)]
    pub bytes_sent: u64,
    #[serde(default)]
    pub bytes_received: u64,
    #[serde(default)]
    pub processes: Vec<ProcessView>,
    pub status: report::Status,
    #[serde(default)]
    pub reasons: Vec<ReasonView>,
    #[serde(default)]
    pub first_seen: Option<String>,
}

/// A flow: only its name and destination matter here (the ports a name was reached on).
#[derive(Clone, Debug, Deserialize)]
pub struct FlowView {
    #[serde(default)]
    pub name: Option<String>,
    pub dst: String,
}

impl FlowView {
    /// The destination port, when `dst` reads as an address and port.
    pub fn port(&self) -> Option<u16> {
        self.dst.parse::<SocketAddr>().ok().map(|a| a.port())
    }
}

/// The largest report file read (a report of 200,000 flows is about 300 MB).
const MAX_REPORT_BYTES: u64 = 1 << 30;

/// Reads a report file (`-` for stdin). Errors name the file and say what is wrong with it.
pub fn read_report_file(path: &Path) -> anyhow::Result<ReportView> {
    let source = if path == Path::new("-") {
        "stdin".to_owned()
    } else {
        path.display().to_string()
    };
    let mut text = String::new();
    if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(MAX_REPORT_BYTES)
            .read_to_string(&mut text)
            .context("cannot read the report from stdin")?;
    } else {
        File::open(path)
            .with_context(|| format!("cannot open the report {source}"))?
            .take(MAX_REPORT_BYTES)
            .read_to_string(&mut text)
            .with_context(|| format!("cannot read the report {source} (is it a JSON file?)"))?;
    }
    parse_report(&source, &text)
}

/// Parses a report, checking first that it is one (an object with `schema_version` 1).
pub fn parse_report(source: &str, text: &str) -> anyhow::Result<ReportView> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        if is_event_log(text) {
            return anyhow::anyhow!(
                "{source}: an event log, not a report: give it with --events {source}"
            );
        }
        anyhow::anyhow!(
            "{source}: not JSON ({e}); give the report written by `observer record --out` or \
             `observer report`, or the event log with --events"
        )
    })?;
    let Some(object) = value.as_object() else {
        anyhow::bail!("{source}: not an observer report (a JSON object is expected)");
    };
    match object.get("schema_version") {
        None => anyhow::bail!("{source}: not an observer report (schema_version missing)"),
        Some(v) if v.as_u64() == Some(u64::from(report::SCHEMA_VERSION)) => {}
        Some(v) => anyhow::bail!(
            "{source}: report schema_version {v} is not one this observer reads ({}); use the \
             observer that wrote it, or rebuild the report from its event log with --events",
            report::SCHEMA_VERSION
        ),
    }
    serde_json::from_value(value)
        .map_err(|e| anyhow::anyhow!("{source}: not a valid observer report: {e}"))
}

/// Whether a text looks like an event log: JSON lines, the first one an event.
fn is_event_log(text: &str) -> bool {
    text.lines()
        .next()
        .and_then(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .is_some_and(|first| first.get("event").is_some() && first.get("ts").is_some())
}

/// Builds the report of an event log, as `observer report EVENTS` would.
pub fn report_of_events(path: &Path, catalog: &CatalogOptions) -> anyhow::Result<ReportView> {
    let mut correlator = catalog.correlator()?;
    eventlog::replay_file(path, &mut correlator)?;
    correlator.finish();
    let built = report::build(&correlator);
    let value = serde_json::to_value(&built).context("cannot serialise the report")?;
    serde_json::from_value(value).context("the report built from the event log does not read back")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_a_report_is_said_plainly() {
        let err = |text: &str| parse_report("report.json", text).unwrap_err().to_string();
        assert_eq!(
            err(r#"{"hosts": []}"#),
            "report.json: not an observer report (schema_version missing)"
        );
        assert_eq!(
            err("[1, 2]"),
            "report.json: not an observer report (a JSON object is expected)"
        );
        assert!(
            err("{").starts_with("report.json: not JSON ("),
            "{}",
            err("{")
        );
        assert!(
            err(r#"{"schema_version": 2}"#)
                .contains("schema_version 2 is not one this observer reads (1)"),
            "{}",
            err(r#"{"schema_version": 2}"#)
        );
        let bad_host = r#"{"schema_version": 1, "hosts": [{"name": "a.example"}]}"#;
        assert!(
            err(bad_host)
                .starts_with("report.json: not a valid observer report: missing field `status`"),
            "{}",
            err(bad_host)
        );
    }

    #[test]
    fn a_minimal_report_reads_and_unknown_fields_are_ignored() {
        let r = parse_report(
            "r.json",
            r#"{"schema_version": 1, "future_field": {"x": 1},
                "hosts": [{"name": "api.github.com", "status": "ok", "throughput": {}}],
                "flows": [{"name": "api.github.com", "dst": "[fd00::1]:8443"}]}"#,
        )
        .unwrap();
        assert_eq!(r.hosts[0].name, "api.github.com");
        // A report that does not say it is complete is not taken as complete.
        assert!(!r.capture.complete);
        assert_eq!(r.flows[0].port(), Some(8443));
    }
}
