//! Throughput and long-poll health, end to end: real shapers (an HTB class with GSO on, a
//! token bucket, an nftables policer) on the path, real downloads and uploads, a keep-alive
//! client, a real long poll and a middlebox that cuts it, while the observer records.

use std::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use observer_tests::{
    observer::{report_host, Recording},
    require_root_or_skip, Direction, Lab, LabConfig, Shaper,
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

const DOWNLOADS: &str = "objects.githubusercontent.com";
const UPLOADS: &str = "results-receiver.actions.githubusercontent.com";
/// In the same group as `DOWNLOADS` (runner-updates), on an unshaped address.
const FAST: &str = "objects-origin.githubusercontent.com";

/// A lab with a download server (198.18.1.30), an upload server (.31) and a fast server (.32).
fn lab(tag: &str) -> Lab {
    LabConfig::new(tag)
        .a(DOWNLOADS, v4(30))
        .a(UPLOADS, v4(31))
        .a(FAST, v4(32))
        .tls_server(IpAddr::V4(v4(30)))
        .tls_server(IpAddr::V4(v4(31)))
        .tls_server(IpAddr::V4(v4(32)))
        .start()
}

/// Records while downloading `down` bytes from `DOWNLOADS`, uploading `up` bytes to `UPLOADS`
/// and, when `fast` is not 0, downloading `fast` bytes from `FAST`, all at once.
fn transfer(lab: &Lab, down: u64, up: u64, fast: u64) -> Value {
    let file = lab.work_dir().join("upload.bin");
    std::fs::write(&file, vec![b'u'; usize::try_from(up).expect("size")]).expect("upload file");
    let data = format!("@{}", file.display());
    let recording = Recording::start(lab.work_dir(), &[]);
    std::thread::scope(|s| {
        let download = s.spawn(|| {
            lab.curl(
                &format!("https://{DOWNLOADS}/bytes/{down}"),
                &["--max-time", "60"],
            )
        });
        let upload = s.spawn(|| {
            lab.curl(
                &format!("https://{UPLOADS}/discard"),
                &["--max-time", "60", "--data-binary", &data],
            )
        });
        if fast > 0 {
            let curl = lab.curl(&format!("https://{FAST}/bytes/{fast}"), &[]);
            assert_eq!(curl.exit_code, 0, "{curl:?}");
        }
        for curl in [download, upload] {
            let curl = curl.join().expect("curl thread");
            assert_eq!(curl.exit_code, 0, "{curl:?}");
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let (report, stderr) = recording.stop();
    assert_eq!(report["capture"]["complete"], true, "{stderr}");
    report
}

fn flow<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["flows"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == name))
        .unwrap_or_else(|| panic!("no flow to {name}: {:#}", report["flows"]))
}

fn group<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["groups"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["id"] == id))
        .unwrap_or_else(|| panic!("no group {id}"))
}

/// The slowest judged transfer of a flow's direction: (rate, evidence).
fn slowest<'a>(flow: &'a Value, direction: &str) -> (f64, &'a str) {
    let s = &flow["transfers"][direction]["slowest"];
    let rate = s["rate_bps"]
        .as_f64()
        .unwrap_or_else(|| panic!("no judged {direction} transfer: {flow:#}"));
    (rate, s["evidence"].as_str().unwrap_or_default())
}

/// What an upload's rate rests on: the peer's answer, or, where the byte counts are the kernel's
/// TCP statistics polled once a second (kernels before 6.3), the bytes the peer acknowledged.
fn upload_evidence(report: &Value) -> &'static str {
    let polled = report["capture"]["data_sources"]
        .as_array()
        .is_some_and(|s| {
            s.iter()
                .any(|s| s["need"] == "bytes" && s["source"] == "sock_diag_poll")
        });
    if polled {
        "bytes_acked"
    } else {
        "answer"
    }
}

/// Both directions through `shaper` at 40 kbit/s: both hosts `slow_throughput`, each measured
/// within 20 % of 40 kbit/s. Returns the report.
fn slow_both_ways(tag: &str, shaper: &Shaper, size: u64, fast: u64) -> Value {
    let lab = lab(tag);
    lab.shape(Direction::Downloads, shaper, v4(30));
    lab.shape(Direction::Uploads, shaper, v4(31));
    let report = transfer(&lab, size, size, fast);
    for (name, direction, evidence) in [
        (DOWNLOADS, "received", "bytes_read"),
        (UPLOADS, "sent", upload_evidence(&report)),
    ] {
        let host = report_host(&report, name);
        assert_eq!(
            (host["status"].as_str(), codes(host)),
            (Some("degraded"), vec!["slow_throughput"]),
            "{tag}: {host:#}"
        );
        let detail = host["reasons"][0]["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(direction)
                && detail.contains(&match evidence {
                    "bytes_acked" => "bytes acknowledged".to_owned(),
                    other => other.replace('_', " "),
                }),
            "{tag}: {detail}"
        );
        let flow = flow(&report, name);
        let (rate, how) = slowest(flow, direction);
        eprintln!("{tag}: {name} {direction} at {rate} bit/s ({how})");
        assert!(
            (32_000.0..=48_000.0).contains(&rate),
            "{tag}: {name} {direction} at {rate} bit/s through 40 kbit/s: {:#}",
            flow["transfers"]
        );
        assert_eq!(how, evidence, "{tag}: {:#}", flow["transfers"]);
    }
    report
}

#[test]
fn htb_at_40_kbit_per_s_with_gso_is_slow_both_ways_and_the_group_names_the_slow_flow() {
    if !require_root_or_skip() {
        return;
    }
    let shaper = Shaper::Htb {
        rate: "40kbit".into(),
    };
    let report = slow_both_ways("htb40", &shaper, 160_000, 1_000_000);
    // The same group, at full speed meanwhile: fine on its own, and not what the group's
    // verdict is about.
    let fast = report_host(&report, FAST);
    assert_eq!((fast["status"].as_str(), codes(fast)), (Some("ok"), vec![]));
    let slow_flow = flow(&report, DOWNLOADS)["flow_id"]
        .as_u64()
        .expect("flow id");
    let updates = group(&report, "runner-updates");
    assert_eq!(updates["status"], "degraded", "{updates:#}");
    let slowest = &updates["transfers"]["received"]["slowest"];
    assert_eq!(slowest["flow_id"].as_u64(), Some(slow_flow), "{updates:#}");
    assert!(updates["transfers"]["received"]["judged"].as_u64() >= Some(2));
    assert_eq!(updates["failing_hosts"], serde_json::json!([DOWNLOADS]));
    let detail = report_host(&report, DOWNLOADS)["reasons"][0]["detail"]
        .as_str()
        .unwrap_or_default();
    assert!(
        detail.contains(&format!("on flow #{slow_flow}")),
        "the verdict names the slow flow #{slow_flow}: {detail}"
    );
}

#[test]
fn tbf_at_40_kbit_per_s_is_slow_both_ways() {
    if !require_root_or_skip() {
        return;
    }
    let shaper = Shaper::Tbf {
        rate: "40kbit".into(),
        burst: "4kb".into(),
        latency: "500ms".into(),
    };
    slow_both_ways("tbf40", &shaper, 90_000, 0);
}

#[test]
fn a_policer_at_40_kbit_per_s_is_slow_both_ways() {
    if !require_root_or_skip() {
        return;
    }
    let shaper = Shaper::Police {
        bytes_per_s: 5_000,
        burst_bytes: 8_000,
    };
    slow_both_ways("police40", &shaper, 90_000, 0);
}

#[test]
fn two_mbit_per_s_and_unshaped_paths_are_never_flagged() {
    if !require_root_or_skip() {
        return;
    }
    for (tag, shaper) in [
        (
            "htb2m",
            Some(Shaper::Htb {
                rate: "2mbit".into(),
            }),
        ),
        ("open", None),
    ] {
        let lab = lab(tag);
        if let Some(shaper) = &shaper {
            lab.shape(Direction::Downloads, shaper, v4(30));
            lab.shape(Direction::Uploads, shaper, v4(31));
        }
        let report = transfer(&lab, 2_000_000, 2_000_000, 0);
        for (name, direction) in [(DOWNLOADS, "received"), (UPLOADS, "sent")] {
            let host = report_host(&report, name);
            assert_eq!(
                (host["status"].as_str(), codes(host)),
                (Some("ok"), vec![]),
                "{tag}: {host:#}"
            );
            let flow = flow(&report, name);
            let (rate, _) = slowest(flow, direction);
            if shaper.is_some() {
                let off = (rate - 2_000_000.0).abs() / 2_000_000.0;
                assert!(
                    off <= 0.15,
                    "{tag}: {name} {direction} at {rate} bit/s is {:.0}% off 2 Mbit/s: {:#}",
                    off * 100.0,
                    flow["transfers"]
                );
            } else {
                assert!(rate > 2_000_000.0, "{tag}: {name} {direction} at {rate}");
            }
        }
    }
}

#[test]
fn a_keep_alive_client_with_3_s_think_time_is_not_slow() {
    if !require_root_or_skip() {
        return;
    }
    let lab = lab("keepalive");
    let recording = Recording::start(lab.work_dir(), &[]);
    // Five requests on one connection, each answered at full speed with 12 kB, 3 s apart: 60 kB
    // over 12 s, 40 kbit/s if the think time counted.
    let script = r"
import http.client, ssl, sys, time
c = http.client.HTTPSConnection(
    sys.argv[2], 443, context=ssl.create_default_context(cafile=sys.argv[1]))
for i in range(5):
    if i:
        time.sleep(3)
    c.request('GET', '/bytes/12000')
    assert len(c.getresponse().read()) == 12000
c.close()
";
    let out = lab
        .runner_command("python3")
        .arg("-c")
        .arg(script)
        .arg(lab.ca_file())
        .arg(DOWNLOADS)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(300));
    let (report, stderr) = recording.stop();
    assert_eq!(report["capture"]["complete"], true, "{stderr}");
    let host = report_host(&report, DOWNLOADS);
    assert_eq!(
        (host["status"].as_str(), codes(host)),
        (Some("ok"), vec![]),
        "{host:#}"
    );
    let flows: Vec<&Value> = report["flows"]
        .as_array()
        .expect("flows")
        .iter()
        .filter(|f| f["name"] == DOWNLOADS)
        .collect();
    assert_eq!(flows.len(), 1, "one keep-alive connection");
    let received = &flows[0]["transfers"]["received"];
    assert_eq!(
        received["count"], 5,
        "one transfer per answer: {received:#}"
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

#[test]
fn a_real_50_s_long_poll_answered_then_a_download_is_healthy_and_the_wait_is_not_transfer_time() {
    if !require_root_or_skip() {
        return;
    }
    let broker = "broker.actions.githubusercontent.com";
    let lab = LabConfig::new("lpoll50")
        .a(broker, v4(42))
        .tls_server(IpAddr::V4(v4(42)))
        .start();
    // The runner's own rhythm at its own scale (the observer's default `--long-poll 50`): a
    // request held 50 s and answered, then 40 kB on the same connection.
    let recording = Recording::start(lab.work_dir(), &[]);
    let out = lab
        .runner_command("curl")
        .args(["-sS", "--max-time", "90", "--cacert"])
        .arg(lab.ca_file())
        .args(["-o", "/dev/null"])
        .arg(format!("https://{broker}/sleep/50"))
        .args(["-o", "/dev/null"])
        .arg(format!("https://{broker}/bytes/40000"))
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(300));
    let (report, stderr) = recording.stop();
    assert_eq!(report["capture"]["complete"], true, "{stderr}");

    let host = report_host(&report, broker);
    assert_eq!(
        (host["status"].as_str(), codes(host)),
        (Some("ok"), vec![]),
        "{host:#}"
    );
    let poll = flow(&report, broker);
    assert_eq!(poll["function"], "job_messages");
    let received = &poll["transfers"]["received"];
    assert_eq!(received["judged"], 1, "the 40 kB answer: {received:#}");
    let seconds = received["slowest"]["seconds"].as_f64().unwrap_or(f64::MAX);
    assert!(
        seconds < 5.0,
        "the 50 s wait is not transfer time: {received:#}"
    );
    let (rate, _) = slowest(poll, "received");
    assert!(rate > 70_000.0, "{received:#}");
}
