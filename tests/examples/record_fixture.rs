//! Records the event-log fixture of the root-free report tests
//! (`observer/tests/fixtures/runner-workload.jsonl`) from a real capture in the network lab:
//!
//! ```sh
//! cargo xtask build && sudo cargo run -p observer-tests --example record_fixture -- \
//!     observer/tests/fixtures/runner-workload.jsonl
//! ```
//!
//! The workload covers what correlation must get right: a CNAME chain three deep, two names on
//! one address, a name asked in mixed case, IPv6, TTL 0 answers (connections after expiry), a
//! refused port, an NXDOMAIN, an undeclared name and a hard-coded address.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    time::Duration,
};

use observer_tests::{observer::Recording, LabConfig};

fn main() {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("usage: record_fixture OUT.jsonl"),
    );
    let api = Ipv4Addr::new(198, 18, 1, 10);
    let cdn = Ipv4Addr::new(198, 18, 1, 12);
    let shared = Ipv4Addr::new(198, 18, 1, 13);
    let hard_coded = Ipv4Addr::new(198, 18, 1, 15);
    let nobody = Ipv4Addr::new(198, 18, 1, 16);
    let objects_v6 = Ipv6Addr::new(0xfd00, 0, 0, 1, 0, 0, 0, 0x20);
    let pipelines = "pipelines.actions.githubusercontent.com";
    let lab = LabConfig::new("fixture")
        .a("api.github.com", api)
        .cname(pipelines, "star-1.l-msedge.lab")
        .cname("star-1.l-msedge.lab", "star-2.l-msedge.lab")
        .cname("star-2.l-msedge.lab", "x.l-msedge.lab")
        .a("x.l-msedge.lab", cdn)
        .a("codeload.github.com", shared)
        .a("registry.npmjs.org", shared)
        .aaaa("objects.githubusercontent.com", objects_v6)
        .a("ghcr.io", nobody)
        .nxdomain("github-cloud.s3.amazonaws.com")
        .tls_server(IpAddr::V4(api))
        .tls_server(IpAddr::V4(cdn))
        .tls_server(IpAddr::V4(shared))
        .tls_server(IpAddr::V4(hard_coded))
        .tls_server(IpAddr::V6(objects_v6))
        .start();
    let recording = Recording::start(lab.work_dir(), &[]);
    let _ = lab.run_in_runner("getent", &["ahostsv4", "Api.GitHub.COM"]);
    for (url, extra) in [
        ("https://api.github.com/bytes/2000".to_owned(), vec![]),
        (format!("https://{pipelines}/bytes/8000"), vec![]),
        ("https://codeload.github.com/bytes/30000".to_owned(), vec![]),
        ("https://registry.npmjs.org/bytes/4000".to_owned(), vec![]),
        (
            "https://objects.githubusercontent.com/bytes/50000".to_owned(),
            vec!["-6"],
        ),
        ("https://ghcr.io/".to_owned(), vec![]),
        ("https://github-cloud.s3.amazonaws.com/".to_owned(), vec![]),
        (format!("https://{hard_coded}/"), vec![]),
    ] {
        let curl = lab.curl(&url, &extra);
        eprintln!("{url}: curl exit {}", curl.exit_code);
    }
    std::thread::sleep(Duration::from_millis(500));
    let events = recording.events.clone();
    let _ = recording.stop();
    std::fs::copy(&events, &out).expect("copy the event log");
    eprintln!("wrote {}", out.display());
}
