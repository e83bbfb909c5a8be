//! Black-box tests of the report formats (`--format markdown|html|csv`) and of
//! `observer report merge`, on the event log recorded in the network lab and on a proxied
//! capture (tests/fixtures/proxied.jsonl), no root needed.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/runner-workload.jsonl"
);
/// A capture behind an HTTP proxy (198.18.1.5:3128, from `--proxy`): CONNECTs the proxy
/// allowed (200), refused (403), wanted credentials for (407) and could not reach (503); a
/// direct flow named by its SNI alone, one whose SNI disagreed with DNS, one without SNI.
const PROXIED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proxied.jsonl");

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("export-cli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Self(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the observer in `dir` (so that relative paths in its output are stable).
fn observer_in(dir: Option<&Path>, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_observer"));
    cmd.args(args);
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let out = cmd.output().expect("run observer");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn observer(args: &[&str]) -> String {
    let (code, stdout, stderr) = observer_in(None, args);
    assert_eq!(code, 0, "observer {args:?}: {stderr}");
    stdout
}

/// Two runners' reports in `dir`: `runner-a.json` is the fixture's report; `runner-b.json`
/// is the same capture seen through a catalog with an extra group (the npm registry becomes
/// declared) and with api.github.com's address taken for a DNS filter's sinkhole (so the
/// essential group is blocked there).
fn two_runners(dir: &Scratch) {
    let extra = dir.path("registries.toml");
    std::fs::write(
        &extra,
        "[[group]]\nid = \"registries\"\ntitle = \"Our registries\"\nhosts = [\"registry.npmjs.org\"]\n",
    )
    .expect("write catalog");
    let a = dir.path("runner-a.json");
    let b = dir.path("runner-b.json");
    observer(&["report", FIXTURE, "--out", a.to_str().expect("utf-8")]);
    observer(&[
        "report",
        FIXTURE,
        "--catalog",
        extra.to_str().expect("utf-8"),
        "--sinkhole",
        "198.18.1.10",
        "--out",
        b.to_str().expect("utf-8"),
    ]);
}

/// Splits RFC 4180 CSV into records of fields (quoted fields may hold commas, quotes, breaks).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {
                assert_eq!(chars.next(), Some('\n'), "CR without LF");
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, '\n') => panic!("record ended by a bare LF"),
            (false, c) => field.push(c),
        }
    }
    assert!(
        field.is_empty() && record.is_empty(),
        "last record not ended"
    );
    records
}

#[test]
fn markdown_of_the_recorded_workload() {
    let md = observer(&["report", FIXTURE, "--format", "markdown"]);
    // The verdict comes first, then the capture's completeness.
    let verdict = md.find("## Verdict").expect("verdict");
    let completeness = md.find("## Capture completeness").expect("completeness");
    assert!(verdict < completeness && completeness < md.find("## Host groups").unwrap());
    insta::assert_snapshot!("runner_workload_markdown", md);
}

#[test]
fn html_of_the_recorded_workload() {
    let html = observer(&["report", FIXTURE, "--format", "html"]);
    // Self-contained: no script, no external reference.
    assert!(!html.contains("<script"), "a script in the page");
    for external in ["src=", "href=\"http", "url(", "@import"] {
        assert!(!html.contains(external), "{external} in the page");
    }
    insta::assert_snapshot!("runner_workload_html", html);
}

#[test]
fn csv_of_the_recorded_workload() {
    let csv = observer(&["report", FIXTURE, "--format", "csv"]);
    let records = parse_csv(&csv);
    let json: Value = serde_json::from_str(&observer(&["report", FIXTURE])).expect("JSON");
    let flows = json["flows"].as_array().expect("flows");
    assert_eq!(
        records.len(),
        flows.len() + 1,
        "a header and one row per flow"
    );
    assert!(records.iter().all(|r| r.len() == records[0].len()));
    assert_eq!(records[0][0], "flow_id");
    let complete = records[0]
        .iter()
        .position(|h| h == "capture_complete")
        .expect("completeness column");
    assert!(records[1..].iter().all(|r| r[complete] == "true"));
    insta::assert_snapshot!("runner_workload_csv", csv);
}

#[test]
fn formats_are_written_to_files_atomically() {
    let dir = Scratch::new("files");
    for (format, start) in [
        ("json", "{"),
        ("markdown", "# Runner connectivity report"),
        ("html", "<!DOCTYPE html>"),
        ("csv", "flow_id,"),
    ] {
        let out = dir.path(&format!("report.{format}"));
        let (code, stdout, stderr) = observer_in(
            None,
            &[
                "report",
                FIXTURE,
                "--format",
                format,
                "--out",
                out.to_str().expect("utf-8"),
            ],
        );
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        let text = std::fs::read_to_string(&out).expect("written");
        assert!(text.starts_with(start), "{format}: {}", &text[..80]);
    }
    let names: Vec<String> = std::fs::read_dir(&dir.0)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 4, "temporary files left: {names:?}");
}

#[test]
fn an_incomplete_capture_says_so_in_every_format() {
    let dir = Scratch::new("incomplete");
    let mut log = std::fs::read_to_string(FIXTURE).expect("fixture");
    log.push_str("this line is not JSON\n");
    let damaged = dir.path("damaged.jsonl");
    std::fs::write(&damaged, log).expect("write");
    let damaged = damaged.to_str().expect("utf-8");
    let (code, _, stderr) = observer_in(None, &["report", damaged, "--format", "markdown"]);
    assert_eq!(code, 0);
    assert!(
        stderr.contains("the report is incomplete: 1 event-log lines could not be read"),
        "{stderr}"
    );
    let md = observer(&["report", damaged, "--format", "markdown"]);
    assert!(md.contains("Incomplete capture"), "{md}");
    assert!(md.contains("1 event-log lines could not be read"), "{md}");
    let html = observer(&["report", damaged, "--format", "html"]);
    assert!(html.contains("INCOMPLETE capture"), "{html}");
    let csv = parse_csv(&observer(&["report", damaged, "--format", "csv"]));
    let complete = csv[0].iter().position(|h| h == "capture_complete").unwrap();
    assert!(csv[1..].iter().all(|r| r[complete] == "false"));
}

#[test]
fn report_merge_combines_runners() {
    let dir = Scratch::new("merge");
    two_runners(&dir);
    let merge = |format: &str| {
        let (code, stdout, stderr) = observer_in(
            Some(&dir.0),
            &[
                "report",
                "merge",
                "runner-a.json",
                "runner-b.json",
                "--format",
                format,
            ],
        );
        assert_eq!(code, 0, "{stderr}");
        stdout
    };
    let merged: Value = serde_json::from_str(&merge("json")).expect("JSON");
    let a: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path("runner-a.json")).unwrap()).unwrap();

    // A schema-1 report, with the merge section.
    assert_eq!(merged["schema_version"], 1);
    let runners = merged["merged"]["runners"].as_array().expect("runners");
    let labels: Vec<&str> = runners.iter().filter_map(|r| r["label"].as_str()).collect();
    assert_eq!(labels, ["runner-a", "runner-b"]);
    // Worst across runners: essential is ok on a and blocked on b.
    let essential = &merged["groups"][0];
    assert_eq!(
        (&essential["id"], &essential["status"]),
        (&Value::from("essential"), &Value::from("blocked"))
    );
    let per_runner: Vec<&Value> = merged["merged"]["groups"][0]["runners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["status"])
        .collect();
    assert_eq!(per_runner, [&Value::from("ok"), &Value::from("blocked")]);
    assert_eq!(merged["verdict"]["runner_can_work"], false);
    // Counts summed, flows concatenated, completeness of all.
    assert_eq!(
        merged["capture"]["events"].as_u64(),
        a["capture"]["events"].as_u64().map(|e| e * 2)
    );
    assert_eq!(
        merged["flows"].as_array().map(Vec::len),
        a["flows"].as_array().map(|f| f.len() * 2)
    );
    assert_eq!(merged["capture"]["complete"], true);
    // Transfers add up across runners; the slowest names its runner and flow.
    let judged = merged["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .find(|h| h["transfers"]["received"]["judged"].as_u64() > Some(0))
        .expect("a host with a judged transfer");
    let received = &judged["transfers"]["received"];
    assert_eq!(received["judged"], 2, "one per runner: {received:#}");
    assert!(
        ["runner-a", "runner-b"].contains(&received["slowest"]["runner"].as_str().unwrap_or("")),
        "{received:#}"
    );
    assert!(received["slowest"]["flow_id"].is_u64(), "{received:#}");
    // A group only one runner's catalog has: not listed on the other.
    let registries = merged["groups"]
        .as_array()
        .unwrap()
        .iter()
        .position(|g| g["id"] == "registries")
        .expect("registries group");
    assert_eq!(
        merged["merged"]["groups"][registries]["runners"][0]["status"],
        Value::Null
    );
    let mut sections = serde_json::Map::new();
    for key in ["verdict", "merged"] {
        sections.insert(key.to_owned(), merged[key].clone());
    }
    insta::assert_snapshot!(
        "merge_verdict_and_section",
        serde_json::to_string_pretty(&sections).unwrap()
    );
    insta::assert_snapshot!("merge_markdown", merge("markdown"));
    let csv = merge("csv");
    let records = parse_csv(&csv);
    assert_eq!(records[0][0], "runner");
    assert_eq!(records.len(), runners.len() * 7 + 1);
    insta::assert_snapshot!("merge_csv", csv);
    let html = merge("html");
    assert!(html.contains("On runner-b") && html.contains("Not every runner can work"));
}

#[test]
fn merge_labels_and_output_file() {
    let dir = Scratch::new("labels");
    two_runners(&dir);
    let out = dir.path("fleet.json");
    let (code, _, stderr) = observer_in(
        Some(&dir.0),
        &[
            "report",
            "merge",
            "runner-a.json",
            "runner-b.json",
            "--label",
            "linux-x64",
            "--label",
            "arm|64",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let merged: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(merged["merged"]["runners"][1]["label"], "arm|64");
    assert_eq!(merged["merged"]["runners"][1]["source"], "runner-b.json");
    // A label is escaped like any other name.
    let (_, md, _) = observer_in(
        Some(&dir.0),
        &[
            "report",
            "merge",
            "runner-a.json",
            "runner-b.json",
            "--label",
            "a",
            "--label",
            "arm|64",
            "--format",
            "markdown",
        ],
    );
    assert!(md.contains("| On arm\\|64 |"), "{md}");
}

#[test]
fn merge_errors_name_the_file() {
    let dir = Scratch::new("errors");
    two_runners(&dir);
    let mut newer: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path("runner-b.json")).unwrap()).unwrap();
    newer["schema_version"] = Value::from(2);
    std::fs::write(dir.path("newer.json"), newer.to_string()).unwrap();
    std::fs::write(dir.path("notes.json"), "not json").unwrap();
    let (_, merged, _) = observer_in(
        Some(&dir.0),
        &["report", "merge", "runner-a.json", "runner-b.json"],
    );
    std::fs::write(dir.path("fleet.json"), merged).unwrap();

    let fails = |args: &[&str], expected: &str| {
        let mut argv = vec!["report", "merge"];
        argv.extend(args);
        let (code, stdout, stderr) = observer_in(Some(&dir.0), &argv);
        assert_eq!(code, 1, "{args:?}: {stdout}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    };
    fails(
        &["runner-a.json", "newer.json"],
        "newer.json has schema_version 2, but this observer reads schema_version 1",
    );
    fails(
        &["runner-a.json", "notes.json"],
        "notes.json is not a JSON report",
    );
    fails(
        &["runner-a.json", "missing.json"],
        "cannot read the report missing.json",
    );
    fails(
        &["runner-a.json", "fleet.json"],
        "fleet.json is already a merge",
    );
    fails(
        &["runner-a.json", "runner-b.json", "--label", "x"],
        "1 --label for 2 reports",
    );
    fails(&["runner-a.json", "runner-a.json"], "used twice");
    // No file: a usage error.
    let (code, _, _) = observer_in(Some(&dir.0), &["report", "merge"]);
    assert_eq!(code, 2);
}

#[test]
fn hostile_names_are_escaped_and_credentials_redacted_in_every_format() {
    let dir = Scratch::new("hostile");
    two_runners(&dir);
    let mut report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path("runner-a.json")).unwrap()).unwrap();
    let hostile = "<script>alert(1)</script>|*x*,\"q\".example";
    report["undeclared"][0]["name"] = Value::from(hostile);
    report["undeclared"][0]["processes"][0]["comm"] = Value::from("ghp_abcdef123");
    report["flows"][0]["name"] = Value::from(hostile);
    report["flows"][0]["process"]["comm"] = Value::from("token=hunter2");
    report["flows"][1]["process"]["comm"] = Value::from("=cmd|' /C calc'!A0");
    std::fs::write(dir.path("hostile.json"), report.to_string()).unwrap();
    let render = |format: &str| {
        let (code, stdout, stderr) = observer_in(
            Some(&dir.0),
            &["report", "merge", "hostile.json", "--format", format],
        );
        assert_eq!(code, 0, "{stderr}");
        stdout
    };
    for format in ["json", "markdown", "html", "csv"] {
        let text = render(format);
        for secret in ["ghp_abcdef123", "hunter2"] {
            assert!(!text.contains(secret), "{format}: {secret} not redacted");
        }
        assert!(text.contains("redacted"), "{format}");
    }
    let html = render("html");
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;|*x*,&quot;q&quot;.example"));
    let md = render("markdown");
    assert!(!md.contains("<script>"), "{md}");
    assert!(
        md.contains("\\<script\\>alert(1)\\</script\\>\\|\\*x\\*,\"q\".example"),
        "{md}"
    );
    let csv = parse_csv(&render("csv"));
    let name = csv[0].iter().position(|h| h == "name").unwrap();
    assert_eq!(csv[1][name], hostile, "a quoted field comes back intact");
    let comm = csv[0].iter().position(|h| h == "comm").unwrap();
    assert_eq!(csv[1][comm], "token=[redacted]");
    assert_eq!(csv[2][comm], "'=cmd|' /C calc'!A0", "a formula is defused");
    assert!(csv.iter().all(|r| r.len() == csv[0].len()));
}

#[test]
fn a_large_fleet_gets_one_column_of_failing_runners() {
    let dir = Scratch::new("fleet");
    two_runners(&dir);
    let mut args = vec!["report".to_owned(), "merge".to_owned()];
    for n in 1..=8 {
        let name = format!("ok-{n}.json");
        std::fs::copy(dir.path("runner-a.json"), dir.path(&name)).expect("copy");
        args.push(name);
    }
    args.push("runner-b.json".to_owned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let render = |format: &str| {
        let mut argv = args.clone();
        argv.extend(["--format", format]);
        let (code, stdout, stderr) = observer_in(Some(&dir.0), &argv);
        assert_eq!(code, 0, "{stderr}");
        stdout
    };
    let md = render("markdown");
    assert!(!md.contains("On ok-1"), "{md}");
    let essential = md
        .lines()
        .find(|l| l.starts_with("| Essential operations (essential) | ⛔ blocked |"))
        .expect("the essential group's row");
    assert!(
        essential.contains("| runner-b (⛔ blocked) |"),
        "{essential}"
    );
    assert!(md.contains("8 of 9 runners can work"), "{md}");
    let html = render("html");
    assert!(html.contains("<th scope=\"col\">Not ok on</th>"));
    assert!(!html.contains("On ok-1"));
}

/// The columns of the CSV before the naming evidence was added: they keep their places.
const CSV_COLUMNS_BEFORE_NAMING: [&str; 23] = [
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
];

#[test]
fn a_proxied_capture_in_every_format() {
    let md = observer(&["report", PROXIED, "--format", "markdown"]);
    // The proxy watched and where it came from; hosts say through which proxy, reasons what it
    // answered; flows how they were named.
    assert!(
        md.contains(
            "- **HTTP proxies watched:** 198.18.1.5:3128 from --proxy (no\\_proxy \
             localhost,127.0.0.1,.corp.example)"
        ),
        "{md}"
    );
    assert!(
        md.contains(
            "| codeload.github.com (via proxy 198.18.1.5:3128) | ⛔ blocked | proxy\\_refused ×1 \
             (last 2026-11-27 08:00:02.012 by Runner.Worker\\[1020\\]): proxy 198.18.1.5:3128 \
             answered 403 Forbidden to CONNECT codeload.github.com:443 |"
        ),
        "{md}"
    );
    assert!(
        // Named by its SNI alone: an undeclared address, never the documented host.
        md.contains("| 198.18.1.12 (no DNS name seen) (named by SNI) | ✅ ok | 443 | 1 |"),
        "{md}"
    );
    assert!(
        md.contains("(named by CONNECT pkg.actions.githubusercontent.com:443 to proxy 198.18.1.5:3128) | closed, proxy answered 407 |"),
        "{md}"
    );
    assert!(
        md.contains("| front.example.net | objects.githubusercontent.com |"),
        "the SNI that disagreed with DNS: {md}"
    );
    insta::assert_snapshot!("proxied_markdown", md);

    let html = observer(&["report", PROXIED, "--format", "html"]);
    assert!(!html.contains("<script"), "a script in the page");
    assert!(
        html.contains("<dt>HTTP proxies watched</dt><dd>198.18.1.5:3128 from --proxy"),
        "{html}"
    );
    assert!(
        html.contains(
            "codeload.github.com <span class=\"muted\">(via proxy 198.18.1.5:3128)</span>"
        ),
        "{html}"
    );
    insta::assert_snapshot!("proxied_html", html);

    // CSV: the columns consumers read keep their places; the evidence comes after them.
    let csv = parse_csv(&observer(&["report", PROXIED, "--format", "csv"]));
    assert_eq!(csv[0][..23], CSV_COLUMNS_BEFORE_NAMING);
    assert_eq!(
        csv[0][23..],
        [
            "named_by",
            "via_proxy",
            "proxy_target",
            "proxy_status",
            "sni",
            "dns_name",
            "tls_note"
        ]
    );
    assert!(csv.iter().all(|r| r.len() == csv[0].len()));
    let refused = csv.iter().find(|r| r[0] == "2").expect("flow 2");
    assert_eq!(
        refused[23..27],
        [
            "connect",
            "198.18.1.5:3128",
            "codeload.github.com:443",
            "403"
        ]
    );
    let fronted = csv.iter().find(|r| r[0] == "7").expect("flow 7");
    assert_eq!(
        fronted[27..],
        ["front.example.net", "objects.githubusercontent.com", ""]
    );
    let no_sni = csv.iter().find(|r| r[0] == "8").expect("flow 8");
    assert_eq!(no_sni[29], "no_sni");
}

#[test]
fn a_merge_unites_proxies_and_how_hosts_were_reached() {
    let dir = Scratch::new("merge-proxied");
    let proxied = dir.path("proxied.json");
    let direct = dir.path("direct.json");
    observer(&["report", PROXIED, "--out", proxied.to_str().expect("utf-8")]);
    observer(&["report", FIXTURE, "--out", direct.to_str().expect("utf-8")]);
    let (code, stdout, stderr) = observer_in(
        Some(&dir.0),
        &[
            "report",
            "merge",
            "direct.json",
            "proxied.json",
            "proxied.json",
            "--label",
            "a",
            "--label",
            "b",
            "--label",
            "c",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let merged: Value = serde_json::from_str(&stdout).expect("JSON");
    // The same proxy found the same way on two runners: once.
    let proxies = merged["capture"]["proxies"].as_array().expect("proxies");
    assert_eq!(proxies.len(), 1, "{proxies:?}");
    assert_eq!(proxies[0]["addr"], "198.18.1.5:3128");
    // api.github.com: direct on one runner, through the proxy on the others.
    let api = merged["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "api.github.com")
        .expect("api.github.com");
    assert_eq!(api["via_proxies"], serde_json::json!(["198.18.1.5:3128"]));
    assert_eq!(api["named_by"], serde_json::json!(["connect"]));
    assert_eq!(api["addresses"], serde_json::json!(["198.18.1.10"]));
    let npm = merged["undeclared"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "registry.npmjs.org")
        .expect("registry.npmjs.org");
    assert_eq!(npm["via_proxies"], serde_json::json!(["198.18.1.5:3128"]));
    assert_eq!(npm["named_by"], serde_json::json!(["connect"]));
}

#[test]
fn hostile_proxy_evidence_is_escaped_and_credentials_redacted() {
    let dir = Scratch::new("hostile-proxy");
    let clean = dir.path("proxied.json");
    observer(&["report", PROXIED, "--out", clean.to_str().expect("utf-8")]);
    let mut report: Value =
        serde_json::from_str(&std::fs::read_to_string(&clean).unwrap()).unwrap();
    let hostile = "<script>alert(1)</script>|*x*";
    report["capture"]["proxies"][0]["url"] = Value::from("http://runner:hunter2@198.18.1.5:3128");
    report["capture"]["proxies"][0]["source"] = Value::from(hostile);
    let codeload = report["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .position(|h| h["name"] == "codeload.github.com")
        .unwrap();
    report["hosts"][codeload]["reasons"][0]["detail"] = Value::from(hostile);
    report["hosts"][codeload]["via_proxies"][0] = Value::from(hostile);
    let fronted = report["flows"]
        .as_array()
        .unwrap()
        .iter()
        .position(|f| f["flow_id"] == 7)
        .unwrap();
    report["flows"][fronted]["sni"] = Value::from(hostile);
    report["flows"][fronted]["dns_name"] = Value::from("=cmd|' /C calc'!A0");
    std::fs::write(dir.path("hostile.json"), report.to_string()).unwrap();
    let render = |format: &str| {
        let (code, stdout, stderr) = observer_in(
            Some(&dir.0),
            &["report", "merge", "hostile.json", "--format", format],
        );
        assert_eq!(code, 0, "{stderr}");
        stdout
    };
    for format in ["json", "markdown", "html", "csv"] {
        assert!(
            !render(format).contains("hunter2"),
            "{format}: the proxy's password"
        );
    }
    let html = render("html");
    assert!(!html.contains("<script>"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;|*x*"),
        "{html}"
    );
    let md = render("markdown");
    assert!(!md.contains("<script>"), "{md}");
    for line in md.lines().filter(|l| l.contains("alert(1)")) {
        assert!(
            line.contains("\\<script\\>alert(1)\\</script\\>\\|\\*x\\*"),
            "{line}"
        );
    }
    let csv = parse_csv(&render("csv"));
    let column = |name: &str| csv[0].iter().position(|h| h == name).unwrap();
    let (flow_id, dns_name) = (column("flow_id"), column("dns_name"));
    let row = csv.iter().find(|r| r[flow_id] == "7").unwrap();
    assert_eq!(row[dns_name], "'=cmd|' /C calc'!A0", "a formula is defused");
}
