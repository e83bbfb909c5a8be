//! How flows are named beyond DNS, end to end: the kernel copies the first bytes of each watched
//! flow and the observer reads the TLS server name (SNI) in them. Real curl against the lab's
//! real TLS servers, with and without DNS:
//! - a hard-coded address (no DNS lookup at all) is named by its SNI, and stays undeclared: the
//!   client's word alone documents nothing (the address is listed with the name it claimed);
//! - two names sharing one address (a CDN), one documented and one not: each client is
//!   classified by its own SNI, whichever name DNS answered last;
//! - a client that resolved one name and sent another as SNI: named by the SNI, with the DNS
//!   name kept as the disagreement's evidence.

use std::net::{IpAddr, Ipv4Addr};

use observer_tests::{observer::Recording, require_root_or_skip, LabConfig};
use serde_json::Value;

fn v4(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 1, last)
}

/// The report's flows by curl to `dst`, in order.
fn flows_to<'a>(report: &'a Value, dst: &str) -> Vec<&'a Value> {
    report["flows"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter(|f| f["dst"] == dst && f["process"]["comm"] == "curl")
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn flows_are_named_by_their_sni_where_dns_cannot_tell() {
    if !require_root_or_skip() {
        return;
    }
    let lab = LabConfig::new("sni")
        // One CDN address for a documented name and someone else's.
        .a("objects.githubusercontent.com", v4(20))
        .a("cdn.example.org", v4(20))
        .tls_server(IpAddr::V4(v4(20)))
        // A hard-coded address: no DNS record at all.
        .tls_server(IpAddr::V4(v4(30)))
        // A name DNS answers, reached with another SNI.
        .a("api.github.com", v4(10))
        .tls_server(IpAddr::V4(v4(10)))
        .start();
    let recording = Recording::start(lab.work_dir(), &[]);

    // 1. No DNS: curl connects to 198.18.1.30 and says "api.github.com" in its hello.
    let hard = lab.curl(
        "https://api.github.com/bytes/20000",
        &["-k", "--resolve", "api.github.com:443:198.18.1.30"],
    );
    assert_eq!(hard.exit_code, 0, "{hard:?}");

    // 2. Shared address: each name resolved by DNS, then fetched; the other name was answered
    //    more recently each time, so only the SNI can tell them apart.
    for name in ["objects.githubusercontent.com", "cdn.example.org"] {
        let other = if name == "cdn.example.org" {
            "objects.githubusercontent.com"
        } else {
            "cdn.example.org"
        };
        let _ = lab.run_in_runner("getent", &["ahostsv4", name]);
        let _ = lab.run_in_runner("getent", &["ahostsv4", other]);
        let r = lab.curl(
            &format!("https://{name}/bytes/10000"),
            &["-k", "--resolve", &format!("{name}:443:198.18.1.20")],
        );
        assert_eq!(r.exit_code, 0, "{name}: {r:?}");
    }

    // 3. DNS says api.github.com (curl resolves the --connect-to target), the hello says
    //    front.example.net: the domain-fronting shape.
    let front = lab.curl(
        "https://front.example.net/bytes/5000",
        &[
            "-k",
            "--connect-to",
            "front.example.net:443:api.github.com:443",
        ],
    );
    assert_eq!(front.exit_code, 0, "{front:?}");

    let (report, stderr) = recording.stop();
    assert!(
        report["capture"]["lost_events"] == 0,
        "{:#}\n{stderr}",
        report["capture"]
    );

    // 1. Named by its SNI, but the client's word alone documents nothing: the flow is
    //    undeclared, listed under its address with the name it claimed.
    let hard = flows_to(&report, "198.18.1.30:443");
    assert_eq!(hard.len(), 1, "{:#}", report["flows"]);
    assert_eq!(hard[0]["name"], "api.github.com", "{:#}", hard[0]);
    assert_eq!(hard[0]["named_by"], "sni", "{:#}", hard[0]);
    assert_eq!(hard[0]["class"], "undeclared", "{:#}", hard[0]);
    assert!(
        hard[0]["bytes_received"].as_u64().unwrap_or(0) > 20_000,
        "{:#}",
        hard[0]
    );
    let claimed = report["undeclared"]
        .as_array()
        .and_then(|u| {
            u.iter()
                .find(|u| u["addresses"] == serde_json::json!(["198.18.1.30"]))
        })
        .unwrap_or_else(|| panic!("{:#}", report["undeclared"]));
    assert_eq!(
        claimed["sni"],
        serde_json::json!(["api.github.com"]),
        "{claimed:#}"
    );
    assert!(claimed["name"].is_null(), "{claimed:#}");

    // 2.
    let shared = flows_to(&report, "198.18.1.20:443");
    assert_eq!(shared.len(), 2, "{:#}", report["flows"]);
    assert_eq!(
        shared[0]["name"], "objects.githubusercontent.com",
        "{:#}",
        shared[0]
    );
    assert_eq!(shared[0]["class"], "declared", "{:#}", shared[0]);
    assert!(
        shared[0]["named_by"].is_null(),
        "DNS named it: {:#}",
        shared[0]
    );
    assert_eq!(shared[0]["sni"], "objects.githubusercontent.com");
    assert_eq!(shared[1]["name"], "cdn.example.org", "{:#}", shared[1]);
    assert_eq!(shared[1]["class"], "undeclared", "{:#}", shared[1]);
    assert!(report["undeclared"]
        .as_array()
        .is_some_and(|u| u.iter().any(|u| u["name"] == "cdn.example.org")));

    // 3.
    let fronted = flows_to(&report, "198.18.1.10:443");
    assert_eq!(fronted.len(), 1, "{:#}", report["flows"]);
    assert_eq!(fronted[0]["name"], "front.example.net", "{:#}", fronted[0]);
    assert_eq!(fronted[0]["named_by"], "sni", "{:#}", fronted[0]);
    assert_eq!(fronted[0]["dns_name"], "api.github.com", "{:#}", fronted[0]);
    assert_eq!(fronted[0]["class"], "undeclared", "{:#}", fronted[0]);
}
