//! The report `observer suggest` works from: read from a report file (`--report`) with
//! [`report::read`] (which checks `schema_version` and reads reports of older builds of schema 1),
//! or built from an event log (`--events`).

use std::path::Path;

use crate::{eventlog, options::CatalogOptions, report};

/// Builds the report of an event log, as `observer report EVENTS` would.
pub fn report_of_events(path: &Path, catalog: &CatalogOptions) -> anyhow::Result<report::Report> {
    let mut correlator = catalog.correlator()?;
    eventlog::replay_file(path, &mut correlator)?;
    correlator.finish();
    Ok(report::build(&correlator))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_a_report_is_said_plainly() {
        let err = |text: &str| report::parse("report.json", text).unwrap_err().to_string();
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
        let r = report::parse(
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
