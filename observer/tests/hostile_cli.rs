//! Black-box tests of what reports and event logs from elsewhere can put on an admin's screen
//! (no root needed): nothing in them acts on the terminal, and nothing becomes live Markdown.

mod common;

use common::observer;
use std::{fs, path::PathBuf};

use serde_json::Value;

const REPORT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/suggest-report.json"
);

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("observer-hostile-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn has_controls(text: &str) -> bool {
    text.chars().any(|c| c.is_control() && c != '\n')
}

/// A report whose capture is incomplete for a hostile reason, and whose failure times are links.
fn hostile_report() -> Value {
    let mut r: Value =
        serde_json::from_str(&fs::read_to_string(REPORT).expect("fixture")).expect("JSON");
    r["capture"]["complete"] = Value::Bool(false);
    r["capture"]["incomplete_because"] =
        serde_json::json!(["\u{1b}[2J\u{1b}]0;owned\u{7}screen wiped"]);
    for host in r["hosts"].as_array_mut().expect("hosts") {
        for reason in host["reasons"].as_array_mut().expect("reasons") {
            reason["last_seen"] =
                Value::from("[click](https://evil.example/x) ![i](https://evil.example/i.png)");
        }
    }
    r
}

#[test]
fn merge_shows_a_hostile_incomplete_reason_harmlessly() {
    let dir = scratch("merge");
    let a = dir.join("a.json");
    let b = dir.join("b.json");
    fs::write(&a, hostile_report().to_string()).expect("write");
    fs::copy(REPORT, &b).expect("copy");
    for format in ["json", "markdown"] {
        let (code, stdout, stderr) = observer(&[
            "report",
            "merge",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--format",
            format,
        ]);
        assert_eq!(code, 0, "{stderr}");
        assert!(!has_controls(&stderr), "{stderr:?}");
        assert!(stderr.contains("\\x1b[2J"), "{stderr}");
        if format == "markdown" {
            // Malformed times are text: no live link, no image.
            assert!(stdout.contains("\\[click\\]"), "{stdout}");
            assert!(!stdout.contains("](https://"), "{stdout}");
            assert!(!stdout.contains("https://evil"), "{stdout}");
            assert!(!has_controls(&stdout), "{stdout:?}");
        }
    }
    fs::remove_dir_all(dir).ok();
}

#[test]
fn a_single_report_in_markdown_escapes_the_times_too() {
    let dir = scratch("suggest");
    let a = dir.join("a.json");
    fs::write(&a, hostile_report().to_string()).expect("write");
    let (code, stdout, stderr) =
        observer(&["report", "merge", a.to_str().unwrap(), "--format", "md"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.contains("](https://"), "{stdout}");
    fs::remove_dir_all(dir).ok();
}

#[test]
fn an_event_log_line_cannot_act_on_the_terminal() {
    let dir = scratch("eventlog");
    let log = dir.join("e.jsonl");
    fs::write(
        &log,
        "{\"ts\":\"2026-11-27T08:00:00Z\",\"event\":\"\\u001b[2J\\u001b]0;owned\\u0007\"}\n",
    )
    .expect("write");
    let (code, _, stderr) = observer(&["report", log.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("line 1"), "{stderr}");
    assert!(!has_controls(&stderr), "{stderr:?}");
    fs::remove_dir_all(dir).ok();
}
