//! End-to-end correlation: a runner-like workload in the lab, recorded by the real observer,
//! gives a report whose hosts, groups, undeclared and unresolved entries are exactly right, and
//! the offline report rebuilt from the event log is the same.

use std::{
    net::{IpAddr, Ipv4Addr},
    process::Command,
};

use observer_tests::{
    observer::{observer_bin, report_host, Recording},
    require_root_or_skip, LabConfig,
};
use serde_json::Value;

const API: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);
const CDN: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 12);
const CODELOAD: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 13);
const NPM: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 14);
const HARD_CODED: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 15);
const PIPELINES: &str = "pipelines.actions.githubusercontent.com";

fn group<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["groups"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["id"] == id))
        .unwrap_or_else(|| panic!("no group {id}"))
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn a_runner_workload_is_named_grouped_and_reported_exactly() {
    if !require_root_or_skip() {
        return;
    }
    let lab = LabConfig::new("corr")
        .a("api.github.com", API)
        .cname(PIPELINES, "star-1.l-msedge.lab")
        .cname("star-1.l-msedge.lab", "x.l-msedge.lab")
        .a("x.l-msedge.lab", CDN)
        .a("codeload.github.com", CODELOAD)
        .a("registry.npmjs.org", NPM)
        .tls_server(IpAddr::V4(API))
        .tls_server(IpAddr::V4(CDN))
        .tls_server(IpAddr::V4(CODELOAD))
        .tls_server(IpAddr::V4(NPM))
        .tls_server(IpAddr::V4(HARD_CODED))
        .start();
    let recording = Recording::start(lab.work_dir(), &[]);
    for url in [
        "https://api.github.com/",
        &format!("https://{PIPELINES}/bytes/5000"),
        "https://codeload.github.com/bytes/20000",
        "https://registry.npmjs.org/bytes/3000",
        &format!("https://{HARD_CODED}/"),
    ] {
        let curl = lab.curl(url, &[]);
        assert_eq!(curl.exit_code, 0, "{curl:?}");
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let events = recording.events.clone();
    let (report, stderr) = recording.stop();
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["capture"]["lost_events"], 0, "{stderr}");
    assert_eq!(
        report["capture"]["complete"], true,
        "{:#}",
        report["capture"]
    );

    let api = report_host(&report, "api.github.com");
    assert_eq!(api["status"], "ok");
    assert_eq!(api["pattern"], "api.github.com");
    assert_eq!(strings(&api["groups"]), ["essential", "wildcard-summary"]);
    assert_eq!(strings(&api["addresses"]), [API.to_string()]);
    assert_eq!(api["flows"], 1);
    assert!(api["bytes_received"].as_u64() > Some(0));
    assert_eq!(api["processes"][0]["comm"], "curl");

    let pipelines = report_host(&report, PIPELINES);
    assert_eq!(pipelines["status"], "ok");
    assert_eq!(pipelines["pattern"], "*.actions.githubusercontent.com");
    assert_eq!(
        strings(&pipelines["groups"]),
        ["essential", "oidc", "wildcard-summary"]
    );
    assert_eq!(
        strings(&pipelines["cname_chain"]),
        [PIPELINES, "star-1.l-msedge.lab", "x.l-msedge.lab"]
    );
    assert_eq!(strings(&pipelines["addresses"]), [CDN.to_string()]);

    let codeload = report_host(&report, "codeload.github.com");
    assert_eq!(codeload["status"], "ok");
    assert_eq!(
        strings(&codeload["groups"]),
        ["actions-download", "wildcard-summary"]
    );
    assert!(codeload["bytes_received"].as_u64() >= Some(20_000));

    for unseen in [
        "github.com",
        "ghcr.io",
        "results-receiver.actions.githubusercontent.com",
    ] {
        assert_eq!(report_host(&report, unseen)["status"], "unseen", "{unseen}");
        assert_eq!(report_host(&report, unseen)["flows"], 0);
    }
    // Every documented exact name has an entry, observed or not; wildcard members only when seen.
    let names: Vec<&str> = report["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .filter_map(|h| h["name"].as_str())
        .collect();
    assert_eq!(
        names.len(),
        14 + 1,
        "14 documented exact names and one wildcard member: {names:?}"
    );
    assert!(
        !names.contains(&"x.l-msedge.lab"),
        "CNAME targets are evidence, not hosts"
    );

    assert_eq!(group(&report, "essential")["status"], "ok");
    // Firewall semantics: documented names of other groups that match `*.actions...` are members
    // of essential too.
    assert_eq!(
        strings(&group(&report, "essential")["hosts"]),
        [
            "github.com",
            "api.github.com",
            "pkg.actions.githubusercontent.com",
            "results-receiver.actions.githubusercontent.com",
            PIPELINES
        ]
    );
    assert_eq!(group(&report, "actions-download")["status"], "ok");
    assert_eq!(group(&report, "oidc")["status"], "ok");
    assert_eq!(group(&report, "lfs")["status"], "unseen");

    let undeclared = report["undeclared"].as_array().expect("undeclared");
    let npm = undeclared
        .iter()
        .find(|u| u["name"] == "registry.npmjs.org")
        .expect("npm entry");
    assert_eq!(npm["status"], "ok");
    assert_eq!(npm["flows"], 1);
    assert_eq!(strings(&npm["addresses"]), [NPM.to_string()]);
    assert_eq!(npm["ports"], serde_json::json!([443]));
    let bare = undeclared
        .iter()
        .find(|u| u["name"].is_null())
        .expect("unresolved entry");
    assert_eq!(strings(&bare["addresses"]), [HARD_CODED.to_string()]);
    assert_eq!(bare["flows"], 1);
    assert_eq!(
        undeclared.len(),
        2,
        "only npm and the hard-coded address: {undeclared:#?}"
    );

    let flows = report["flows"].as_array().expect("flows");
    assert_eq!(flows.len(), 5);
    // Servers may reset a connection they are done with: still a success.
    assert!(
        flows.iter().all(|f| f["established"] == true
            && (f["outcome"] == "closed" || f["outcome"] == "reset")
            && f["bytes_received"].as_u64() > Some(0)
            && f["process"]["comm"] == "curl"),
        "{flows:#?}"
    );
    let classes: Vec<&str> = flows.iter().filter_map(|f| f["class"].as_str()).collect();
    assert_eq!(
        classes,
        [
            "declared",
            "declared",
            "declared",
            "undeclared",
            "unresolved"
        ]
    );

    // The same report, rebuilt offline (no root needed) from the event log.
    let readable =
        std::env::temp_dir().join(format!("observer-events-{}.jsonl", std::process::id()));
    std::fs::copy(&events, &readable).expect("copy the event log");
    let offline = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(observer_bin())
        .arg("report")
        .arg(&readable)
        .output()
        .expect("observer report runs");
    let _ = std::fs::remove_file(&readable);
    assert!(
        offline.status.success(),
        "{}",
        String::from_utf8_lossy(&offline.stderr)
    );
    let rebuilt: Value = serde_json::from_slice(&offline.stdout).expect("report JSON on stdout");
    assert_eq!(rebuilt, report, "the offline report equals the live one");
}
