//! Black-box tests of `observer report` and `observer catalog` (no root needed) on an event log
//! recorded from a real capture in the network lab (see tests/examples/record_fixture.rs).

mod common;

use common::observer;
use std::path::PathBuf;

use serde_json::Value;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/runner-workload.jsonl"
);

fn report_of(path: &str) -> Value {
    let (code, stdout, stderr) = observer(&["report", path]);
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&stdout).expect("a JSON report")
}

fn find<'a>(list: &'a Value, key: &str, value: &str) -> &'a Value {
    list.as_array()
        .and_then(|a| a.iter().find(|e| e[key] == value))
        .unwrap_or_else(|| panic!("no {key} = {value}"))
}

#[test]
fn the_report_of_the_recorded_workload_is_stable() {
    let (code, stdout, stderr) = observer(&["report", FIXTURE]);
    assert_eq!(code, 0, "{stderr}");
    insta::assert_snapshot!("runner_workload_report", stdout);
}

#[test]
fn correlation_of_the_recorded_workload() {
    let r = report_of(FIXTURE);
    assert_eq!(r["capture"]["complete"], true);

    // A CNAME chain three deep is attributed to the name the client asked for.
    let pipelines = find(
        &r["hosts"],
        "name",
        "pipelines.actions.githubusercontent.com",
    );
    assert_eq!(pipelines["pattern"], "*.actions.githubusercontent.com");
    assert_eq!(pipelines["cname_chain"].as_array().map(Vec::len), Some(4));
    assert_eq!(pipelines["status"], "ok");

    // Two names on one address: each flow gets the name its own process resolved.
    let codeload = find(&r["hosts"], "name", "codeload.github.com");
    let npm = find(&r["undeclared"], "name", "registry.npmjs.org");
    assert_eq!(codeload["addresses"], npm["addresses"]);
    assert_eq!(
        (codeload["flows"].as_u64(), npm["flows"].as_u64()),
        (Some(1), Some(1))
    );

    // IPv6, answers with TTL 0 (connections after expiry still get their name).
    let objects = find(&r["hosts"], "name", "objects.githubusercontent.com");
    assert_eq!(objects["addresses"][0], "fd00:0:0:1::20");
    assert_eq!(objects["status"], "ok");

    // Blocked: a refused port and an NXDOMAIN, and the groups they break.
    let ghcr = find(&r["hosts"], "name", "ghcr.io");
    assert_eq!(ghcr["status"], "blocked");
    assert_eq!(ghcr["reasons"][0]["code"], "tcp_reset");
    let lfs = find(&r["hosts"], "name", "github-cloud.s3.amazonaws.com");
    assert_eq!(lfs["reasons"][0]["code"], "dns_nxdomain");
    assert_eq!(find(&r["groups"], "id", "lfs")["status"], "blocked");
    assert_eq!(
        find(&r["groups"], "id", "packages")["failing_hosts"][0],
        "ghcr.io"
    );
    assert_eq!(find(&r["groups"], "id", "essential")["status"], "ok");

    // Undeclared: the npm registry and the hard-coded address, nothing else.
    let undeclared = r["undeclared"].as_array().expect("undeclared");
    assert_eq!(undeclared.len(), 2, "{undeclared:#?}");
    assert!(undeclared
        .iter()
        .any(|u| u["name"].is_null() && u["addresses"][0] == "198.18.1.15"));
}

#[test]
fn a_damaged_event_log_still_gives_a_report_that_says_so() {
    let text = std::fs::read_to_string(FIXTURE).expect("fixture");
    let mut lines: Vec<&str> = text.lines().collect();
    let middle = lines.len() / 2;
    lines.insert(middle, "this is not JSON");
    lines.insert(
        middle + 1,
        r#"{"ts":"2026-11-27T07:07:35Z","event":"from_a_newer_version"}"#,
    );
    let mut damaged = lines.join("\n");
    damaged.push_str("\n{\"ts\":\"2026-11-27T07:07:36Z\",\"event\":\"flow_clo"); // cut short
    let path: PathBuf = std::env::temp_dir().join(format!("damaged-{}.jsonl", std::process::id()));
    std::fs::write(&path, damaged).expect("write");
    let (code, stdout, stderr) = observer(&["report", path.to_str().expect("utf-8 path")]);
    let _ = std::fs::remove_file(&path);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("line {}: not JSON", middle + 1)),
        "{stderr}"
    );
    let damaged: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(damaged["capture"]["unreadable_lines"], 3);
    assert_eq!(damaged["capture"]["complete"], false);
    // Nothing that was readable is lost.
    let clean = report_of(FIXTURE);
    assert_eq!(damaged["hosts"], clean["hosts"]);
    assert_eq!(damaged["flows"], clean["flows"]);
}

#[test]
fn errors_name_the_file_and_what_to_do() {
    let (code, _, stderr) = observer(&["report", "/nonexistent/events.jsonl"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("cannot open the event log /nonexistent/events.jsonl"),
        "{stderr}"
    );

    let bad = std::env::temp_dir().join(format!("bad-catalog-{}.toml", std::process::id()));
    std::fs::write(
        &bad,
        "[[group]]\nid = \"x\"\ntitle = \"X\"\nhosts = [\"*.\"]\n",
    )
    .expect("write");
    let (code, _, stderr) = observer(&["catalog", "--catalog", bad.to_str().expect("utf-8")]);
    let _ = std::fs::remove_file(&bad);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("line 4") && stderr.contains("*."),
        "{stderr}"
    );
}

#[test]
fn the_catalog_in_effect_is_printed() {
    let (code, stdout, stderr) = observer(&["catalog"]);
    assert_eq!(code, 0, "{stderr}");
    insta::assert_snapshot!("builtin_catalog", stdout);
    let extra = std::env::temp_dir().join(format!("extra-catalog-{}.toml", std::process::id()));
    std::fs::write(
        &extra,
        "[[group]]\nid = \"registries\"\ntitle = \"Our registries\"\nports = [443, 5000]\nhosts = [\"registry.example.com\"]\n",
    )
    .expect("write");
    let (code, stdout, stderr) =
        observer(&["catalog", "--catalog", extra.to_str().expect("utf-8")]);
    let _ = std::fs::remove_file(&extra);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("registries") && stdout.contains("registry.example.com"),
        "{stdout}"
    );
    assert!(stdout.contains("5000"), "{stdout}");
}
