//! End-to-end tests of the kernel capture: the real observer binary watches while real clients
//! (curl, glibc's resolver) in a lab namespace talk to real servers (dnsmasq, TLS).
//!
//! Run through `cargo xtask test` (root, one test at a time).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    process::Command,
    time::Duration,
};

use observer_tests::{
    observer::{observer_bin, of_kind, report_host, Observer, Recording},
    require_root_or_skip, LabConfig, RecordType,
};
use serde_json::Value;

const API: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);
const NOBODY_LISTENS: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 11);
const CDN: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 12);
const API_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 1, 0, 0, 0, 0x10);

fn closed_flow_to<'a>(events: &'a [Value], dst: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["event"] == "flow_closed" && e["dst"] == dst)
        .unwrap_or_else(|| panic!("no flow_closed to {dst} in {events:#?}"))
}

fn dns_responses_for<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    of_kind(events, "dns_response")
        .into_iter()
        .filter(|e| {
            e["questions"]
                .as_array()
                .is_some_and(|q| q.iter().any(|q| q["name"] == name))
        })
        .collect()
}

/// A completed exchange ends with a FIN, or with a RST when the server closed before reading the
/// client's TLS close_notify: both are normal ends of a successful flow.
fn assert_successful(closed: &Value) {
    assert_eq!(closed["established"], true, "{closed:#}");
    let outcome = closed["outcome"].as_str().unwrap_or_default();
    assert!(outcome == "closed" || outcome == "reset", "{closed:#}");
    if outcome == "closed" {
        assert!(
            closed["closed_by"] == "local" || closed["closed_by"] == "peer",
            "{closed:#}"
        );
    }
}

fn within(measured: u64, expected: u64, tolerance: f64) -> bool {
    let diff = (measured as f64 - expected as f64).abs();
    diff <= expected as f64 * tolerance
}

#[test]
fn https_flow_and_its_dns_answer_are_captured_with_process_and_bytes() {
    if !require_root_or_skip() {
        return;
    }
    let lab = LabConfig::new("cap4")
        .a("api.github.com", API)
        .tls_server(IpAddr::V4(API))
        .start();
    let upload = lab.work_dir().join("upload.bin");
    std::fs::write(&upload, vec![b'x'; 1_000_000]).expect("write the upload file");
    let observer = Observer::watch(&["--ports", "443"]);

    let data = format!("@{}", upload.display());
    let curl = lab.curl(
        "https://api.github.com/echo",
        &[
            "--data-binary",
            &data,
            "-H",
            "Content-Type: application/octet-stream",
        ],
    );
    assert_eq!(curl.exit_code, 0, "curl failed: {curl:?}");
    let dst = format!("{API}:443");
    observer
        .wait_for(Duration::from_secs(10), |e| {
            e["event"] == "flow_closed" && e["dst"] == dst
        })
        .expect("the flow's close is reported within 10 s");
    let events = observer.stop();

    // DNS: the response the resolver received, with the lab's address, owned by curl.
    let responses = dns_responses_for(&events, "api.github.com");
    let a = responses
        .iter()
        .find(|r| {
            r["answers"]
                .as_array()
                .is_some_and(|a| a.iter().any(|a| a["type"] == "A"))
        })
        .unwrap_or_else(|| panic!("no A response for api.github.com: {responses:#?}"));
    assert_eq!(a["rcode"], "NOERROR");
    assert_eq!(a["server"], "198.18.0.2:53");
    assert_eq!(a["answers"][0]["data"], API.to_string());
    assert_eq!(a["process"]["comm"], "curl", "{a:#}");
    assert!(
        of_kind(&events, "dns_query")
            .iter()
            .any(|q| q["questions"][0]["name"] == "api.github.com"),
        "the query is captured too"
    );

    // TCP: opened, established and closed, by curl, with bytes close to what curl counted.
    let closed = closed_flow_to(&events, &dst);
    assert_eq!(closed["process"]["comm"], "curl");
    assert_successful(closed);
    assert_eq!(closed["established"], true);
    let id = &closed["flow_id"];
    for kind in ["flow_opened", "flow_established"] {
        let e = of_kind(&events, kind)
            .into_iter()
            .find(|e| &e["flow_id"] == id);
        let e = e.unwrap_or_else(|| panic!("no {kind} for flow {id}"));
        assert_eq!(e["process"]["comm"], "curl");
        assert_eq!(e["process"]["pid"], closed["process"]["pid"]);
    }
    let sent = closed["bytes_sent"].as_u64().expect("bytes_sent");
    let received = closed["bytes_received"].as_u64().expect("bytes_received");
    let curl_sent = curl.size_upload + curl.size_request;
    let curl_received = curl.size_download + curl.size_header;
    assert!(
        within(sent, curl_sent, 0.10),
        "sent {sent} vs curl's {curl_sent}"
    );
    assert!(
        within(received, curl_received, 0.10),
        "received {received} vs curl's {curl_received}"
    );
    assert!(
        of_kind(&events, "flow_progress")
            .iter()
            .any(|p| &p["flow_id"] == id)
            || closed["duration_ms"].as_f64() < Some(1000.0),
        "a flow longer than a second reports progress"
    );

    let stats = of_kind(&events, "capture_stats");
    let last = stats.last().expect("capture_stats at the end");
    assert_eq!(last["lost_events"], 0);
    assert_eq!(last["undecodable_events"], 0);
}

#[test]
fn a_refused_port_is_reported_as_refused_and_unwatched_ports_are_ignored() {
    if !require_root_or_skip() {
        return;
    }
    let lab = LabConfig::new("ref")
        .a("codeload.github.com", NOBODY_LISTENS)
        .start();
    let observer = Observer::watch(&["--ports", "443"]);
    let curl = lab.curl("https://codeload.github.com/", &[]);
    assert_eq!(curl.exit_code, 7, "curl cannot connect: {curl:?}");
    let other = lab.curl("https://codeload.github.com:8443/", &[]);
    assert_eq!(other.exit_code, 7, "{other:?}");
    let dst = format!("{NOBODY_LISTENS}:443");
    observer
        .wait_for(Duration::from_secs(10), |e| {
            e["event"] == "flow_closed" && e["dst"] == dst
        })
        .expect("the refused flow is reported");
    let events = observer.stop();
    let closed = closed_flow_to(&events, &dst);
    assert_eq!(closed["outcome"], "refused", "{closed:#}");
    assert_eq!(closed["error"], "ECONNREFUSED");
    assert_eq!(closed["rst_received"], true);
    assert_eq!(closed["established"], false);
    assert_eq!(closed["process"]["comm"], "curl");
    let port_8443 = format!("{NOBODY_LISTENS}:8443");
    assert!(
        !events.iter().any(|e| e["dst"] == port_8443),
        "port 8443 is not watched, yet it was reported"
    );
}

#[test]
fn an_ipv6_flow_and_its_aaaa_answer_are_captured() {
    if !require_root_or_skip() {
        return;
    }
    let lab = LabConfig::new("v6")
        .aaaa("pkg.actions.githubusercontent.com", API_V6)
        .tls_server(IpAddr::V6(API_V6))
        .start();
    let observer = Observer::watch(&[]);
    let curl = lab.curl(
        "https://pkg.actions.githubusercontent.com/bytes/200000",
        &["-6"],
    );
    assert_eq!(curl.exit_code, 0, "{curl:?}");
    let dst = format!("[{API_V6}]:443");
    observer
        .wait_for(Duration::from_secs(10), |e| {
            e["event"] == "flow_closed" && e["dst"] == dst
        })
        .expect("the IPv6 flow is reported");
    let events = observer.stop();
    let closed = closed_flow_to(&events, &dst);
    assert_successful(closed);
    assert_eq!(closed["process"]["comm"], "curl");
    assert!(
        closed["src"]
            .as_str()
            .is_some_and(|s| s.starts_with("[fd00::1]:")),
        "{closed:#}"
    );
    let received = closed["bytes_received"].as_u64().expect("bytes_received");
    assert!(
        within(received, curl.size_download + curl.size_header, 0.10),
        "{received}"
    );
    let responses = dns_responses_for(&events, "pkg.actions.githubusercontent.com");
    assert!(
        responses
            .iter()
            .any(|r| r["answers"].as_array().is_some_and(|a| a
                .iter()
                .any(|a| a["type"] == "AAAA" && a["data"] == API_V6.to_string()))),
        "no AAAA answer captured: {responses:#?}"
    );
}

#[test]
fn cname_chains_nxdomain_and_refused_answers_are_decoded() {
    if !require_root_or_skip() {
        return;
    }
    let lab = LabConfig::new("dns")
        .cname(
            "pipelines.actions.githubusercontent.com",
            "star-1.l-msedge.lab",
        )
        .cname("star-1.l-msedge.lab", "x.l-msedge.lab")
        .a("x.l-msedge.lab", CDN)
        .nxdomain("nope.github.com")
        .refused("refused.example.lab")
        .start();
    let observer = Observer::watch(&[]);
    for name in [
        "pipelines.actions.githubusercontent.com",
        "nope.github.com",
        "refused.example.lab",
    ] {
        // glibc's resolver, as any client would use it.
        let _ = lab.run_in_runner("getent", &["ahostsv4", name]);
    }
    observer
        .wait_for(Duration::from_secs(10), |e| {
            e["event"] == "dns_response" && e["questions"][0]["name"] == "refused.example.lab"
        })
        .expect("the REFUSED response is captured");
    let events = observer.stop();

    let chain = dns_responses_for(&events, "pipelines.actions.githubusercontent.com");
    let with_a = chain
        .iter()
        .find(|r| r["questions"][0]["type"] == "A")
        .unwrap_or_else(|| panic!("no A response: {chain:#?}"));
    let answers: Vec<(String, String, String)> = with_a["answers"]
        .as_array()
        .expect("answers")
        .iter()
        .map(|a| {
            let s = |k: &str| a[k].as_str().unwrap_or_default().to_owned();
            (s("name"), s("type"), s("data"))
        })
        .collect();
    let expect = |n: &str, t: &str, d: &str| (n.to_owned(), t.to_owned(), d.to_owned());
    assert_eq!(
        answers,
        [
            expect(
                "pipelines.actions.githubusercontent.com",
                "CNAME",
                "star-1.l-msedge.lab"
            ),
            expect("star-1.l-msedge.lab", "CNAME", "x.l-msedge.lab"),
            expect("x.l-msedge.lab", "A", &CDN.to_string()),
        ]
    );
    assert_eq!(with_a["process"]["comm"], "getent");

    let nx = dns_responses_for(&events, "nope.github.com");
    assert!(
        !nx.is_empty() && nx.iter().all(|r| r["rcode"] == "NXDOMAIN"),
        "{nx:#?}"
    );
    let refused = dns_responses_for(&events, "refused.example.lab");
    assert!(
        !refused.is_empty() && refused.iter().all(|r| r["rcode"] == "REFUSED"),
        "{refused:#?}"
    );
}

#[test]
fn without_privileges_the_error_says_to_run_as_root() {
    if !require_root_or_skip() {
        return;
    }
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(observer_bin())
        .args(["watch", "--duration", "1"])
        .output()
        .expect("setpriv (util-linux) runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "exit status 3 (capture cannot start); stderr: {stderr}"
    );
    assert!(
        stderr.contains("CAP_BPF") && stderr.contains("run as root"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing on stdout");
}

#[test]
fn the_observer_detaches_everything_when_interrupted() {
    if !require_root_or_skip() {
        return;
    }
    let ours = ["tcp_set_state", "dns_ingress", "owner_connect4"];
    let loaded = || {
        let out = Command::new("bpftool")
            .args(["-j", "prog", "show"])
            .output()
            .expect("bpftool runs");
        let progs: Value = serde_json::from_slice(&out.stdout).expect("bpftool prints JSON");
        progs
            .as_array()
            .map(|p| {
                p.iter()
                    .filter_map(|p| p["name"].as_str())
                    .filter(|n| ours.contains(n))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    assert!(
        loaded().is_empty(),
        "programs of an earlier run are still loaded: {:?}",
        loaded()
    );
    let observer = Observer::watch(&[]);
    assert_eq!(
        loaded().len(),
        ours.len(),
        "the probes are loaded while watching"
    );
    let events = observer.stop();
    let started = &of_kind(&events, "capture_started")[0];
    assert!(
        started["probes"]
            .as_array()
            .is_some_and(|p| p.iter().all(|p| p["attached"] == true)),
        "every probe attaches on this kernel: {started:#}"
    );
    // Program teardown is asynchronous in the kernel (RCU); give it a moment.
    for _ in 0..50 {
        if loaded().is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "programs still loaded after the observer exited: {:?}",
        loaded()
    );
}

#[test]
fn a_flow_open_before_the_capture_is_adopted_when_it_moves_payload() {
    if !require_root_or_skip() {
        return;
    }
    let lab = LabConfig::new("adopt")
        .a("api.github.com", API)
        .tls_server(IpAddr::V4(API))
        .start();
    let dst = format!("{API}:443");
    // The runner's pattern: one kept-alive connection carrying request after request. The first
    // exchange and the second request happen before the capture starts (which takes well under
    // the 8 s the second answer waits, even in an emulated guest of the kernel matrix on a busy
    // machine, where 4 s were once not enough); that answer and the rest come after.
    let base = "https://api.github.com";
    let urls = [
        format!("{base}/"),
        format!("{base}/sleep/8"),
        format!("{base}/bytes/100000"),
        format!("{base}/sleep/1.5"),
        format!("{base}/bytes/150000"),
    ];
    let ca = lab.ca_file().to_string_lossy().into_owned();
    let mut args: Vec<&str> = vec!["-q", "--cacert", &ca, "-sS", "--noproxy", "*"];
    args.extend_from_slice(&["-w", "%{num_connects} "]);
    for url in &urls {
        args.extend_from_slice(&["-o", "/dev/null", url]);
    }
    let (curl, events, stderr) = std::thread::scope(|s| {
        let client = s.spawn(|| lab.run_in_runner("curl", &args));
        std::thread::sleep(Duration::from_millis(500));
        let observer = Observer::watch(&["--ports", "443"]);
        // Once adopted, a later DNS answer for its address names it.
        let adopted = observer.wait_for(Duration::from_secs(15), |e| {
            e["event"] == "flow_opened" && e["adopted"] == true
        });
        if adopted.is_some() {
            let answer = lab.dns_query("api.github.com", RecordType::A);
            assert!(!answer.answers.is_empty(), "{answer:?}");
        }
        let curl = client.join().expect("the client thread");
        observer.wait_for(Duration::from_secs(10), |e| {
            e["event"] == "flow_closed" && e["dst"] == dst
        });
        let (events, stderr) = observer.stop_with_stderr();
        (curl, events, stderr)
    });
    let out = String::from_utf8_lossy(&curl.stdout);
    assert!(curl.status.success(), "curl failed: {curl:?}");
    assert_eq!(out.trim(), "1 0 0 0 0", "one connection for every request");

    let opened = of_kind(&events, "flow_opened");
    assert_eq!(opened.len(), 1, "{events:#?}\n{stderr}");
    assert_eq!(opened[0]["adopted"], true, "{:#}", opened[0]);
    assert_eq!(opened[0]["process"]["comm"], "curl");
    assert_eq!(opened[0]["dst"], dst);
    assert!(
        of_kind(&events, "flow_established").is_empty(),
        "its handshake was before the capture"
    );
    let closed = closed_flow_to(&events, &dst);
    assert_eq!(closed["adopted"], true, "{closed:#}");
    assert_successful(closed);
    assert!(closed.get("connect_ms").is_none(), "{closed:#}");
    assert_eq!(closed["flow_id"], opened[0]["flow_id"]);
    assert_eq!(
        opened[0]["class"], "unresolved",
        "its DNS answer came before the capture"
    );
    assert_eq!(
        closed["name"], "api.github.com",
        "named by the later answer: {closed:#}"
    );
    assert_eq!(closed["class"], "declared");
    // Bytes count from the adoption: the second answer, the later requests and their answers,
    // not the first exchange or the second request (before the capture).
    let received = closed["bytes_received"].as_u64().unwrap_or_default();
    assert!(
        (250_000..260_000).contains(&received),
        "received {received}: {closed:#}"
    );
    let sent = closed["bytes_sent"].as_u64().unwrap_or_default();
    assert!(sent > 0, "the later requests: {closed:#}");
}

/// Downloads `/bytes/300000` over one kept-alive TLS connection, says `read N` once the body is
/// in, and keeps the connection open (like the runner's connections between requests).
const READ_AND_HOLD: &str = r#"
import socket, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[1])
s = ctx.wrap_socket(socket.create_connection(("api.github.com", 443)), server_hostname="api.github.com")
s.sendall(b"GET /bytes/300000 HTTP/1.1\r\nHost: api.github.com\r\n\r\n")
data = b""
while b"\r\n\r\n" not in data:
    data += s.recv(65536)
head, body = data.split(b"\r\n\r\n", 1)
length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1])
while len(body) < length:
    body += s.recv(65536)
print("read", len(body), flush=True)
time.sleep(60)
"#;

#[test]
fn bytes_moved_just_before_the_stop_are_in_the_report() {
    if !require_root_or_skip() {
        return;
    }
    let lab = LabConfig::new("laststop")
        .a("api.github.com", API)
        .tls_server(IpAddr::V4(API))
        .start();
    let recording = Recording::start(lab.work_dir(), &["--ports", "443"]);
    let ca = lab.ca_file().to_string_lossy().into_owned();
    let mut cmd = lab.runner_command("python3");
    cmd.args(["-c", READ_AND_HOLD, &ca])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped());
    let mut client = lab.spawn(&mut cmd);
    let mut line = String::new();
    let stdout = client.stdout.take().expect("the client's stdout");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
        .expect("the client's line");
    assert_eq!(line.trim(), "read 300000", "the client read the body");
    // Stopped at once: the counters are read once a second, the body came milliseconds ago.
    let (report, stderr) = recording.stop();
    let _ = client.kill();
    let _ = client.wait();
    let flows = report["flows"].as_array().expect("flows");
    let flow = flows
        .iter()
        .find(|f| f["dst"] == format!("{API}:443"))
        .unwrap_or_else(|| panic!("no flow to {API}: {report:#}\n{stderr}"));
    assert!(
        flow["closed_at"].is_null(),
        "still open at the stop: {flow:#}"
    );
    let received = flow["bytes_received"].as_u64().unwrap_or_default();
    assert!(
        received >= 300_000,
        "the body read just before the stop counts: received {received}: {flow:#}"
    );
    let host = report_host(&report, "api.github.com");
    assert_eq!(host["bytes_received"].as_u64(), Some(received), "{host:#}");
}

#[test]
fn a_sigterm_while_the_programs_load_stops_cleanly() {
    if !require_root_or_skip() {
        return;
    }
    // `systemctl stop` right after a start: the signal comes while the programs load (a second
    // or more). Its default action would kill the process with nothing written. The signal is
    // sent as soon as the process catches SIGTERM (its handler is set before the programs load):
    // a fixed delay was before that in an emulated guest, and after the load on a fast host.
    let dir = std::env::temp_dir().join(format!("observer-early-term-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let out = dir.join("report.json");
    let child = Command::new(observer_bin())
        .args(["record", "--out"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("observer record");
    let catches_sigterm = || {
        std::fs::read_to_string(format!("/proc/{}/status", child.id()))
            .ok()
            .and_then(|status| {
                let mask = status.lines().find_map(|l| l.strip_prefix("SigCgt:"))?;
                u64::from_str_radix(mask.trim(), 16).ok()
            })
            .is_some_and(|mask| mask & (1 << (libc::SIGTERM - 1)) != 0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !catches_sigterm() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let output = child.wait_with_output().expect("wait");
    let written = std::fs::read_to_string(&out);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        output.status.success(),
        "{:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(&written.expect("a report")).expect("JSON");
    assert!(report["capture"].is_object(), "{report:#}");
}
