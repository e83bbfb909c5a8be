//! Throughput and long-poll health, end to end: a real token-bucket shaper (tc tbf) on the
//! path, real downloads, a real long poll and a middlebox that cuts it, while the observer
//! records.

use std::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use observer_tests::{
    observer::{report_host, Recording},
    require_root_or_skip, LabConfig,
};
use serde_json::Value;

fn v4(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 1, last)
}

fn codes(h: &Value) -> Vec<&str> {
    h["reasons"]
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["code"].as_str()).collect())
        .unwrap_or_default()
}

/// Downloads `bytes` from a host behind a `rate` shaper and returns (report, flow).
fn shaped_download(tag: &str, rate: &str, bytes: u64) -> (Value, Value) {
    let name = "objects.githubusercontent.com";
    let lab = LabConfig::new(tag)
        .a(name, v4(30))
        .tls_server(IpAddr::V4(v4(30)))
        .start();
    lab.throttle_downloads(rate, "4kb", "500ms");
    let recording = Recording::start(lab.work_dir(), &[]);
    let curl = lab.curl(
        &format!("https://{name}/bytes/{bytes}"),
        &["--max-time", "60"],
    );
    assert_eq!(curl.exit_code, 0, "{curl:?}");
    std::thread::sleep(Duration::from_millis(300));
    let (report, stderr) = recording.stop();
    assert_eq!(report["capture"]["complete"], true, "{stderr}");
    let flow = report["flows"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == name))
        .cloned()
        .expect("the download's flow");
    (report, flow)
}

#[test]
fn a_download_at_40_kbit_per_s_is_slow_throughput() {
    if !require_root_or_skip() {
        return;
    }
    let (report, flow) = shaped_download("slow", "40kbit", 40_000);
    let objects = report_host(&report, "objects.githubusercontent.com");
    assert_eq!(objects["status"], "degraded", "{objects:#}");
    assert_eq!(codes(objects), ["slow_throughput"]);
    let detail = objects["reasons"][0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("received") && detail.contains("kbit/s"),
        "{detail}"
    );
    let median = flow["throughput"]["received"]["median_bps"]
        .as_f64()
        .expect("median");
    // Below the 70 kbit/s minimum and near the shaped rate (TBF lets a first burst through).
    assert!(
        (20_000.0..=60_000.0).contains(&median),
        "median {median} bit/s at 40 kbit/s"
    );
    assert_eq!(flow["function"], "self_update");
    let group = report["groups"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["id"] == "runner-updates"))
        .expect("group");
    assert_eq!(group["status"], "degraded");
    assert!(
        group["throughput"]["received"]["samples"].as_u64() >= Some(3),
        "{group:#}"
    );
}

#[test]
fn a_download_at_2_mbit_per_s_is_measured_within_15_percent_and_not_flagged() {
    if !require_root_or_skip() {
        return;
    }
    let (report, flow) = shaped_download("fast", "2mbit", 1_500_000);
    let objects = report_host(&report, "objects.githubusercontent.com");
    assert_eq!(objects["status"], "ok", "{objects:#}");
    let median = flow["throughput"]["received"]["median_bps"]
        .as_f64()
        .expect("median");
    let off = (median - 2_000_000.0).abs() / 2_000_000.0;
    assert!(
        off <= 0.15,
        "median {median} bit/s is {:.0}% off 2 Mbit/s: {:#}",
        off * 100.0,
        flow["throughput"]
    );
    assert!(flow["throughput"]["received"]["samples"].as_u64() >= Some(4));
    let host_median = objects["throughput"]["received"]["median_bps"]
        .as_f64()
        .expect("host median");
    assert!(
        (host_median - median).abs() / median < 0.05,
        "one flow: host rate = flow rate"
    );
}

#[test]
fn a_long_poll_answered_is_healthy_and_one_cut_short_is_long_poll_cut() {
    if !require_root_or_skip() {
        return;
    }
    let broker = "broker.actions.githubusercontent.com";
    let pipelines = "pipelines.actions.githubusercontent.com";
    let lab = LabConfig::new("lpoll")
        .a(broker, v4(40))
        .tls_server(IpAddr::V4(v4(40)))
        .a(pipelines, v4(41))
        .idle_cut_server(IpAddr::V4(v4(41)), 1.5)
        .start();
    // A scaled-down runner: its long poll waits 4 s (the real one 50 s).
    let recording = Recording::start(lab.work_dir(), &["--long-poll", "4"]);
    // Three long polls on one connection, each answered after 2 s: the runner's rhythm.
    let url = format!("https://{broker}/sleep/2");
    let out = lab
        .runner_command("curl")
        .args(["-sS", "--cacert"])
        .arg(lab.ca_file())
        .args([
            "-o",
            "/dev/null",
            &url,
            "-o",
            "/dev/null",
            &url,
            "-o",
            "/dev/null",
            &url,
        ])
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A long poll cut by a middlebox after 1.5 s idle.
    let cut = lab.curl(&format!("https://{pipelines}/"), &["--max-time", "10"]);
    assert_ne!(cut.exit_code, 0, "the middlebox cuts it: {cut:?}");
    std::thread::sleep(Duration::from_millis(300));
    let (report, stderr) = recording.stop();
    assert_eq!(report["capture"]["complete"], true, "{stderr}");

    let healthy = report_host(&report, broker);
    assert_eq!(
        (healthy["status"].as_str(), codes(healthy)),
        (Some("ok"), vec![]),
        "{healthy:#}"
    );
    let flows = report["flows"].as_array().expect("flows");
    let poll = flows
        .iter()
        .find(|f| f["name"] == broker)
        .expect("the long-poll flow");
    assert_eq!(poll["function"], "job_messages");
    let cadence = poll["long_poll"]["cadence_s"].as_f64().unwrap_or_default();
    assert!(
        (1.5..=3.0).contains(&cadence),
        "cadence {cadence} s: {poll:#}"
    );
    assert!(poll["long_poll"]["requests"].as_u64() >= Some(2));

    let cut = report_host(&report, pipelines);
    assert_eq!(cut["status"], "degraded", "{cut:#}");
    assert_eq!(codes(cut), ["long_poll_cut"]);
    let detail = cut["reasons"][0]["detail"].as_str().unwrap_or_default();
    let idle: f64 = detail
        .split_whitespace()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no idle time in {detail:?}"));
    assert!(
        (1.2..=2.2).contains(&idle),
        "cut at {idle} s, configured 1.5 s: {detail}"
    );
    let essential = report["groups"]
        .as_array()
        .and_then(|g| g.first())
        .expect("essential");
    assert_eq!(essential["status"], "degraded");
    assert_eq!(
        report["verdict"]["runner_can_work"], false,
        "{:#}",
        report["verdict"]
    );
}
