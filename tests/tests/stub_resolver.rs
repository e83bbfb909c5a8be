//! A runner host with a local caching stub resolver (systemd-resolved's shape: clients ask
//! 127.0.0.53, the stub asks upstream). Every answer is then received twice, by the stub and by
//! the client; the report must still name the client's flows, show the client as the process,
//! and count each failed lookup once per client attempt.

use std::net::{IpAddr, Ipv4Addr};

use observer_tests::{
    observer::{report_host, Recording},
    require_root_or_skip, LabConfig,
};

const API: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);
const CDN: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 12);
const PIPELINES: &str = "pipelines.actions.githubusercontent.com";

#[test]
fn behind_a_local_stub_resolver_the_report_speaks_of_the_clients() {
    if !require_root_or_skip() {
        return;
    }
    let lab = LabConfig::new("stub")
        .local_stub_resolver()
        .a("api.github.com", API)
        .cname(PIPELINES, "star-1.l-msedge.lab")
        .a("star-1.l-msedge.lab", CDN)
        .nxdomain("ghcr.io")
        .unanswered("results-receiver.actions.githubusercontent.com")
        .servfail("codeload.github.com")
        .resolver_options("timeout:1 attempts:1")
        .tls_server(IpAddr::V4(API))
        .tls_server(IpAddr::V4(CDN))
        .start();
    let recording = Recording::start(lab.work_dir(), &[]);
    for url in [
        "https://api.github.com/",
        &format!("https://{PIPELINES}/bytes/5000"),
    ] {
        let curl = lab.curl(url, &[]);
        assert_eq!(curl.exit_code, 0, "{curl:?}");
    }
    let curl = lab.curl("https://ghcr.io/", &[]);
    assert_eq!(curl.exit_code, 6, "curl cannot resolve ghcr.io: {curl:?}");
    for name in [
        "results-receiver.actions.githubusercontent.com",
        "codeload.github.com",
    ] {
        let curl = lab.curl(&format!("https://{name}/"), &[]);
        assert_ne!(curl.exit_code, 0, "{curl:?}");
    }
    std::thread::sleep(std::time::Duration::from_millis(3500));
    let (report, stderr) = recording.stop();
    assert_eq!(report["capture"]["lost_events"], 0, "{stderr}");

    // The stub is named as a local resolver, and is not a user of any host. The lab's own DNS
    // server forwards too (to its failing upstreams) and runs on this host: it is one as well.
    let stub_pid = lab.stub_resolver_pid().expect("the lab has a stub");
    let mut resolvers: Vec<u64> = report["capture"]["local_resolvers"]
        .as_array()
        .unwrap_or_else(|| panic!("no local resolver in {:#}", report["capture"]))
        .iter()
        .filter_map(|p| p["pid"].as_u64())
        .collect();
    resolvers.sort_unstable();
    let mut expected = vec![u64::from(stub_pid), u64::from(lab.dnsmasq_pid())];
    expected.sort_unstable();
    assert_eq!(resolvers, expected, "{:#}", report["capture"]);
    for name in [
        "api.github.com",
        PIPELINES,
        "ghcr.io",
        "codeload.github.com",
    ] {
        let h = report_host(&report, name);
        let processes = h["processes"].as_array().expect("processes");
        assert!(
            !processes.is_empty() && processes.iter().all(|p| p["comm"] == "curl"),
            "{name}: {h:#}"
        );
    }

    // Names, chains and groups as without a stub.
    let api = report_host(&report, "api.github.com");
    assert_eq!(api["status"], "ok");
    assert_eq!(api["flows"], 1);
    let pipelines = report_host(&report, PIPELINES);
    assert_eq!(pipelines["status"], "ok");
    assert_eq!(
        pipelines["cname_chain"],
        serde_json::json!([PIPELINES, "star-1.l-msedge.lab"])
    );
    let flows = report["flows"].as_array().expect("flows");
    assert_eq!(flows.len(), 2, "{flows:#?}");
    assert!(flows
        .iter()
        .all(|f| f["process"]["comm"] == "curl" && f["class"] == "declared"));

    // Each failure once, for curl: the answer the stub relayed, or curl's own unanswered
    // queries (A and AAAA, one attempt each), not the stub's retries upstream.
    let reason = |name: &str| report_host(&report, name)["reasons"][0].clone();
    for (name, code) in [
        ("ghcr.io", "dns_nxdomain"),
        ("codeload.github.com", "dns_servfail"),
    ] {
        let r = reason(name);
        assert_eq!(
            (r["code"].as_str(), r["count"].as_u64()),
            (Some(code), Some(1)),
            "{r:#}"
        );
        assert_eq!(r["process"]["comm"], "curl", "{r:#}");
    }
    // curl's two unanswered queries, one per record type (A and AAAA, one attempt each).
    let timeouts = report_host(&report, "results-receiver.actions.githubusercontent.com")
        ["reasons"]
        .as_array()
        .expect("reasons")
        .clone();
    let got: Vec<(&str, &str, u64, &str)> = timeouts
        .iter()
        .map(|r| {
            (
                r["code"].as_str().unwrap_or_default(),
                r["record_type"].as_str().unwrap_or_default(),
                r["count"].as_u64().unwrap_or_default(),
                r["process"]["comm"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("dns_timeout", "A", 1, "curl"),
            ("dns_timeout", "AAAA", 1, "curl")
        ],
        "{timeouts:#?}"
    );
}
