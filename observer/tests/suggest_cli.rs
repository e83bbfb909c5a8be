//! Black-box tests of `observer suggest` (no root needed): every format on the event log recorded
//! in the network lab (tests/fixtures/runner-workload.jsonl) and on a hand-made report with
//! rotating names, CNAME chains, blocked hosts and undeclared names
//! (tests/fixtures/suggest-report.json); squid for a capture behind a proxy
//! (tests/fixtures/proxied.jsonl); `--diff-meta` against a saved `/meta` response; and the
//! errors an admin sees.

mod common;

use common::{observer, FORMATS};
use std::{
    io::Write as _,
    path::PathBuf,
    process::{Command, Stdio},
};

const EVENTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/runner-workload.jsonl"
);
const REPORT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/suggest-report.json"
);
const META: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/suggest-meta.json"
);
/// A capture behind the HTTP proxy 198.18.1.5:3128 (tests/fixtures/proxied.jsonl): it refused
/// codeload.github.com (403), wanted credentials for pkg.actions.githubusercontent.com (407)
/// and could not reach results-receiver.actions.githubusercontent.com (503).
const PROXIED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proxied.jsonl");

fn suggest(args: &[&str]) -> String {
    let mut argv = vec!["suggest"];
    argv.extend(args);
    let (code, stdout, stderr) = observer(&argv);
    assert_eq!(code, 0, "observer {argv:?}: {stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    stdout
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("suggest-{}-{name}", std::process::id()))
}

#[test]
fn every_format_of_the_recorded_workload_is_stable() {
    for format in FORMATS {
        let rules = suggest(&["--events", EVENTS, "--format", format]);
        let name = format!("runner_workload_{}", format.replace('-', "_"));
        insta::assert_snapshot!(name, rules);
    }
}

#[test]
fn every_format_of_the_hand_made_report_is_stable() {
    for format in FORMATS {
        let rules = suggest(&["--report", REPORT, "--format", format, "--follow-cnames"]);
        let name = format!("handmade_{}", format.replace('-', "_"));
        insta::assert_snapshot!(name, rules);
    }
    for format in ["domains", "nftables", "iptables", "cilium"] {
        let rules = suggest(&[
            "--report",
            REPORT,
            "--format",
            format,
            "--include-undeclared",
        ]);
        let name = format!("handmade_{}_include_undeclared", format.replace('-', "_"));
        insta::assert_snapshot!(name, rules);
    }
}

#[test]
fn documented_wildcards_and_rotating_names() {
    let domains = suggest(&["--report", REPORT]);
    let active: Vec<&str> = domains
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    // The documented wildcard, not the observed pipelines names.
    assert!(
        active.contains(&"*.actions.githubusercontent.com"),
        "{domains}"
    );
    assert!(
        !active.iter().any(|l| l.starts_with("pipelinesghubeus")),
        "{domains}"
    );
    // Names under the public suffix blob.core.windows.net: never its wildcard.
    assert!(!active.contains(&"*.blob.core.windows.net"), "{domains}");
    assert!(active.contains(&"productionresultssa3.blob.core.windows.net"));
    assert!(active.contains(&"productionresultssa7.blob.core.windows.net"));
    // Never everything, never a public suffix.
    for line in &active {
        assert!(
            !matches!(*line, "*" | "*.com" | "*.net" | "*.githubusercontent.com"),
            "{line}"
        );
    }
    // Undeclared names are not active by default, and come with their evidence.
    assert!(!active.contains(&"registry.npmjs.org"));
    assert!(domains.contains("#registry.npmjs.org"), "{domains}");
    assert!(
        domains.contains("registry.npmjs.org: 3 flows to port 443; 2.9 KiB sent, 781.2 KiB received; by node[3100]; first seen 2026-11-20T09:01:40Z; ok"),
        "{domains}"
    );

    let cilium = suggest(&["--report", REPORT, "--format", "cilium"]);
    assert!(
        cilium.contains("- matchPattern: \"productionresultssa*.blob.core.windows.net\""),
        "{cilium}"
    );
    let squid = suggest(&["--report", REPORT, "--format", "squid"]);
    assert!(squid.contains(
        "acl runner_github_rotating dstdom_regex -i ^productionresultssa[0-9]+\\.blob\\.core\\.windows\\.net$"
    ));
}

#[test]
fn cname_targets_only_with_follow_cnames() {
    let without = suggest(&["--report", REPORT, "--format", "domains"]);
    assert!(!without
        .lines()
        .any(|l| l == "pipelinesghubeus5.trafficmanager.net"));
    let with = suggest(&["--report", REPORT, "--format", "domains", "--follow-cnames"]);
    assert!(with
        .lines()
        .any(|l| l == "pipelinesghubeus5.trafficmanager.net"));
    assert!(with.contains("may change"), "{with}");
}

#[test]
fn blocked_hosts_are_allowed_and_marked() {
    let rules = suggest(&["--events", EVENTS, "--format", "domains"]);
    assert!(rules.lines().any(|l| l == "ghcr.io"), "{rules}");
    assert!(rules.contains("BLOCKED (tcp_reset)"), "{rules}");
    assert!(rules.lines().any(|l| l == "github-cloud.s3.amazonaws.com"));
    assert!(rules.contains("BLOCKED (dns_nxdomain A/AAAA)"));
}

#[test]
fn unresolved_addresses_only_in_address_rules() {
    let nft = suggest(&["--events", EVENTS, "--format", "nftables"]);
    assert!(
        nft.contains("\t\t\t#198.18.1.15 comment \"unresolved\""),
        "{nft}"
    );
    let nft = suggest(&[
        "--events",
        EVENTS,
        "--format",
        "nftables",
        "--include-undeclared",
    ]);
    assert!(
        nft.contains("\t\t\t198.18.1.15 comment \"unresolved\""),
        "{nft}"
    );
    assert!(
        nft.contains("\t\tip daddr @unresolved_v4 tcp dport 443 accept"),
        "{nft}"
    );
    let squid = suggest(&[
        "--events",
        EVENTS,
        "--format",
        "squid",
        "--include-undeclared",
    ]);
    assert!(!squid
        .lines()
        .any(|l| !l.starts_with('#') && l.contains("198.18.1.15")));
    assert!(
        squid.contains("Left out: this syntax filters by name"),
        "{squid}"
    );
}

#[test]
fn squid_for_the_proxy_the_runner_went_through() {
    let squid = suggest(&["--events", PROXIED, "--format", "squid"]);
    // The header names the proxy, where it was found, and what it refused.
    let header: Vec<&str> = squid.lines().take_while(|l| l.starts_with('#')).collect();
    let said = |text: &str| header.iter().any(|l| l.contains(text));
    assert!(
        said("# For the HTTP proxy the runner went through: 198.18.1.5:3128 (from --proxy)."),
        "{squid}"
    );
    assert!(
        said("The proxy refused (proxy_refused) what the runner needs; allowed below: codeload.github.com."),
        "{squid}"
    );
    assert!(
        said("The proxy wanted credentials (proxy_auth_required) for: pkg.actions.githubusercontent.com."),
        "{squid}"
    );
    assert!(
        said("The proxy could not reach (proxy_upstream_failed): results-receiver.actions.githubusercontent.com."),
        "{squid}"
    );
    // What it refused is allowed, like every blocked documented host the runner used.
    let active: Vec<&str> = squid
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    for line in [
        "acl runner_github dstdomain api.github.com",
        "acl runner_github dstdomain codeload.github.com",
        "acl runner_github dstdomain pkg.actions.githubusercontent.com",
        "acl runner_github dstdomain results-receiver.actions.githubusercontent.com",
        "http_access allow runner_github runner_ports",
    ] {
        assert!(active.contains(&line), "{line}:\n{squid}");
    }
    // The port the runner asked the proxy for, not the proxy's own.
    assert!(active.contains(&"acl runner_ports port 443"), "{squid}");
    assert!(!active.iter().any(|l| l.contains("3128")), "{squid}");
    // An undeclared host reached through the proxy stays a suggestion, with its evidence.
    assert!(squid.contains("#acl runner_undeclared dstdomain registry.npmjs.org"));
    assert!(
        squid.contains("registry.npmjs.org: 1 flow to port 443 via proxy 198.18.1.5:3128;"),
        "{squid}"
    );
    insta::assert_snapshot!("proxied_squid", squid);

    // Every format takes the proxied capture; endpoints keep the port asked for.
    for format in FORMATS {
        suggest(&["--events", PROXIED, "--format", format]);
    }
    let endpoints = suggest(&["--events", PROXIED, "--format", "harden-runner"]);
    assert!(endpoints.contains("codeload.github.com:443"), "{endpoints}");
    assert!(
        !endpoints
            .lines()
            .any(|l| !l.trim_start().starts_with('#') && l.contains(":3128")),
        "{endpoints}"
    );

    // Without a proxy, squid says nothing of one.
    let direct = suggest(&["--events", EVENTS, "--format", "squid"]);
    assert!(!direct.contains("proxy"), "{direct}");
}

#[test]
fn the_report_and_its_event_log_give_the_same_rules() {
    let (code, report, stderr) = observer(&["report", EVENTS]);
    assert_eq!(code, 0, "{stderr}");
    let path = temp("report.json");
    std::fs::write(&path, &report).expect("write the report");
    let from_report = suggest(&[
        "--report",
        path.to_str().expect("utf-8"),
        "--format",
        "squid",
    ]);
    let _ = std::fs::remove_file(&path);
    let from_events = suggest(&["--events", EVENTS, "--format", "squid"]);
    let body = |text: &str| -> String {
        text.lines()
            .filter(|l| !l.starts_with("# Suggested by"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(body(&from_report), body(&from_events));

    // From stdin too.
    let mut child = Command::new(env!("CARGO_BIN_EXE_observer"))
        .args(["suggest", "--report", "-", "--format", "squid"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run observer");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(report.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("observer output");
    assert!(out.status.success());
    assert_eq!(
        body(&String::from_utf8_lossy(&out.stdout)),
        body(&from_events)
    );
}

#[test]
fn out_writes_a_file() {
    let path = temp("rules.nft");
    let stdout = suggest(&[
        "--events",
        EVENTS,
        "--format",
        "nftables",
        "--out",
        path.to_str().expect("utf-8"),
    ]);
    assert!(stdout.is_empty());
    let written = std::fs::read_to_string(&path).expect("the rules file");
    let _ = std::fs::remove_file(&path);
    assert_eq!(
        written,
        suggest(&["--events", EVENTS, "--format", "nftables"])
    );
}

#[test]
fn diff_meta_shows_both_directions() {
    let diff = suggest(&["--report", REPORT, "--diff-meta", META]);
    insta::assert_snapshot!("handmade_diff_meta", diff);
    let diff = suggest(&["--events", EVENTS, "--diff-meta", META]);
    insta::assert_snapshot!("runner_workload_diff_meta", diff);
    assert!(diff.contains("registry.npmjs.org"), "{diff}");
    assert!(diff.contains("*.pkg.github.com"), "{diff}");
}

#[test]
fn errors_say_what_is_wrong_and_what_to_do() {
    let not_a_report = temp("not-a-report.json");
    std::fs::write(&not_a_report, r#"{"hosts": []}"#).expect("write");
    let (code, _, stderr) =
        observer(&["suggest", "--report", not_a_report.to_str().expect("utf-8")]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("not-a-report.json: not an observer report (schema_version missing)"),
        "{stderr}"
    );
    std::fs::write(&not_a_report, "schema_version: 1\n").expect("write");
    let (code, _, stderr) =
        observer(&["suggest", "--report", not_a_report.to_str().expect("utf-8")]);
    assert_eq!(code, 1);
    assert!(stderr.contains("not-a-report.json: not JSON ("), "{stderr}");
    assert!(stderr.contains("--events"), "{stderr}");

    // The event log given as a report.
    let (code, _, stderr) = observer(&["suggest", "--report", EVENTS]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("runner-workload.jsonl: an event log, not a report: give it with --events"),
        "{stderr}"
    );

    let (code, _, stderr) = observer(&["suggest", "--report", "/nonexistent/report.json"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("cannot open the report /nonexistent/report.json"),
        "{stderr}"
    );
    let (code, _, stderr) = observer(&["suggest", "--events", "/nonexistent/events.jsonl"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot open the event log"), "{stderr}");

    // Usage errors.
    let (code, _, stderr) = observer(&["suggest"]);
    assert_eq!(code, 2, "{stderr}");
    let (code, _, _) = observer(&["suggest", "--report", REPORT, "--events", EVENTS]);
    assert_eq!(code, 2);
    let (code, _, stderr) = observer(&["suggest", "--report", REPORT, "--format", "pf"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("nftables"), "{stderr}");
    let (code, _, _) = observer(&[
        "suggest",
        "--report",
        REPORT,
        "--diff-meta",
        META,
        "--format",
        "squid",
    ]);
    assert_eq!(code, 2);

    // A /meta file without the section.
    std::fs::write(&not_a_report, r#"{"domains": {}}"#).expect("write");
    let (code, _, stderr) = observer(&[
        "suggest",
        "--report",
        REPORT,
        "--diff-meta",
        not_a_report.to_str().expect("utf-8"),
    ]);
    let _ = std::fs::remove_file(&not_a_report);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("not-a-report.json: no domains.actions_inbound section"),
        "{stderr}"
    );
}

#[test]
fn a_hostile_report_cannot_inject_configuration() {
    let text = std::fs::read_to_string(REPORT).expect("fixture");
    let mut report: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    report["undeclared"][0]["processes"][0]["comm"] = "x\nhttp_access allow all\n\"; drop".into();
    report["undeclared"][1]["name"] = "evil.example\nhttp_access allow all".into();
    let path = temp("hostile.json");
    std::fs::write(&path, report.to_string()).expect("write");
    let (code, squid, stderr) = observer(&[
        "suggest",
        "--report",
        path.to_str().expect("utf-8"),
        "--format",
        "squid",
        "--include-undeclared",
    ]);
    let _ = std::fs::remove_file(&path);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !squid
            .lines()
            .any(|l| l.starts_with("http_access allow all")),
        "{squid}"
    );
    assert!(stderr.contains("left out: not a host name"), "{stderr}");
}
