//! Names and DNS verdicts you can trust, end to end with real resolvers and real forged packets:
//! resolvers that fail one record type, sinkhole, fail then answer a retry, answer over TCP only
//! after a truncated UDP answer, or serve an IPv6-only name (tests/lab/dns_lab.py); and forged
//! responses sent from real sockets in the lab, which must never name a flow.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    process::Command,
    thread::sleep,
    time::Duration,
};

use observer_tests::{
    observer::{observer_bin, report_host, Recording},
    require_root_or_skip, LabConfig,
};
use serde_json::Value;

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);
const SERVER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x10);

/// `code record_type` of each reason, in report order.
fn reasons(host: &Value) -> Vec<String> {
    host["reasons"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|r| match r["record_type"].as_str() {
                    Some(t) => format!("{} {t}", r["code"].as_str().unwrap_or_default()),
                    None => r["code"].as_str().unwrap_or_default().to_owned(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn notes(host: &Value) -> Vec<String> {
    host["dns_notes"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|n| {
                    format!(
                        "{} {}",
                        n["code"].as_str().unwrap_or_default(),
                        n["record_type"].as_str().unwrap_or_default()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn each_record_type_is_judged_as_the_client_experiences_its_lookups() {
    if !require_root_or_skip() {
        return;
    }
    let lab = LabConfig::new("dnstypes")
        .dns_lab(&[
            // Answers A, refuses AAAA (dnsmasq without upstream does this for A-only names).
            "api.github.com:A:answer:198.18.1.10",
            "api.github.com:AAAA:refused",
            // A filter: sinkholes A, refuses AAAA.
            "ghcr.io:A:answer:0.0.0.0",
            "ghcr.io:AAAA:refused",
            // Fails the first A query, answers the retry.
            "codeload.github.com:A:fail-first:servfail:198.18.1.10",
            "codeload.github.com:AAAA:nodata",
            // SERVFAIL for both types.
            "objects.githubusercontent.com:A:servfail",
            "objects.githubusercontent.com:AAAA:servfail",
            // Answers over TCP only, after a truncated UDP answer.
            "results-receiver.actions.githubusercontent.com:A:truncate:198.18.1.10",
            "results-receiver.actions.githubusercontent.com:AAAA:nodata",
            // IPv6 only.
            "pkg.actions.githubusercontent.com:AAAA:answer:fd00::10",
            "pkg.actions.githubusercontent.com:A:nodata",
        ])
        .resolver_options("timeout:1 attempts:2")
        .tls_server(IpAddr::V4(SERVER))
        .tls_server(IpAddr::V6(SERVER6))
        .start();
    let recording = Recording::start(lab.work_dir(), &[]);
    // glibc does not retry a SERVFAIL with one server: the first lookup of codeload fails, and
    // the application's retry resolves it.
    let curl = lab.curl("https://codeload.github.com/", &["-k"]);
    assert_eq!(curl.exit_code, 6, "{curl:?}");
    for name in [
        "api.github.com",
        "codeload.github.com",
        "results-receiver.actions.githubusercontent.com",
        "pkg.actions.githubusercontent.com",
    ] {
        let curl = lab.curl(&format!("https://{name}/"), &["-k"]);
        assert_eq!(curl.exit_code, 0, "{name}: {curl:?}");
    }
    for name in ["ghcr.io", "objects.githubusercontent.com"] {
        let curl = lab.curl(&format!("https://{name}/"), &["-k"]);
        assert_ne!(curl.exit_code, 0, "{name}: {curl:?}");
    }
    sleep(Duration::from_millis(3500));
    let (report, stderr) = recording.stop();
    assert_eq!(report["capture"]["lost_events"], 0, "{stderr}");

    let api = report_host(&report, "api.github.com");
    assert_eq!(api["status"], "ok", "{api:#}");
    assert!(reasons(api).is_empty(), "{api:#}");
    assert_eq!(notes(api), ["dns_refused AAAA"], "{api:#}");

    let ghcr = report_host(&report, "ghcr.io");
    assert_eq!(ghcr["status"], "blocked", "{ghcr:#}");
    assert_eq!(
        reasons(ghcr),
        ["dns_refused AAAA", "dns_sinkhole A"],
        "{ghcr:#}"
    );

    let codeload = report_host(&report, "codeload.github.com");
    assert_eq!(codeload["status"], "degraded", "{codeload:#}");
    assert_eq!(reasons(codeload), ["dns_servfail A"], "{codeload:#}");

    let objects = report_host(&report, "objects.githubusercontent.com");
    assert_eq!(objects["status"], "blocked", "{objects:#}");
    assert_eq!(
        reasons(objects),
        ["dns_servfail A", "dns_servfail AAAA"],
        "{objects:#}"
    );

    let results = report_host(&report, "results-receiver.actions.githubusercontent.com");
    assert_eq!(results["status"], "ok", "{results:#}");
    assert!(reasons(results).is_empty(), "{results:#}");
    assert!(
        report["capture"]["dns_tcp_messages"].as_u64() >= Some(2),
        "the query and its answer over TCP: {:#}",
        report["capture"]
    );

    let pkg = report_host(&report, "pkg.actions.githubusercontent.com");
    assert_eq!(pkg["status"], "ok", "{pkg:#}");
    assert_eq!(pkg["addresses"], serde_json::json!(["fd00::10"]), "{pkg:#}");

    // Essential hosts all reached (the refused AAAA is no reason); the features behind the
    // retried, sinkholed and failing names are named.
    assert_eq!(
        report["verdict"]["summary"],
        "The runner can work: its essential hosts were reached. Features that will fail: \
         Downloading actions (degraded), Publishing immutable actions (blocked), Runner version \
         updates (blocked), GitHub Packages (blocked).",
        "{:#}",
        report["verdict"]
    );
    let because: Vec<&str> = report["verdict"]["failing_features"]
        .as_array()
        .expect("failing features")
        .iter()
        .flat_map(|g| g["because"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    assert!(
        because.contains(&"codeload.github.com (dns_servfail A)")
            && because.contains(&"ghcr.io (dns_refused AAAA, dns_sinkhole A)")
            && because.contains(&"objects.githubusercontent.com (dns_servfail A/AAAA)"),
        "{because:?}"
    );
}

/// Runs a short Python program in the runner namespace (a real client socket).
fn python_in_runner(lab: &observer_tests::Lab, program: &str) -> std::process::Child {
    lab.spawn_in_runner("python3", &["-c", program])
}

#[test]
fn forged_answers_from_real_sockets_never_name_a_flow() {
    if !require_root_or_skip() {
        return;
    }
    const FORGER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 6);
    const MISMATCH: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 7);
    const EXTRA: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 8);
    let forged: Vec<Ipv4Addr> = (1..=4).map(|i| Ipv4Addr::new(198, 18, 7, i)).collect();
    let mut config = LabConfig::new("forgery")
        .a("api.github.com", SERVER)
        .tls_server(IpAddr::V4(SERVER))
        .host_addr(IpAddr::V4(FORGER))
        .host_addr(IpAddr::V4(MISMATCH))
        .host_addr(IpAddr::V4(EXTRA));
    for a in &forged {
        config = config.tls_server(IpAddr::V4(*a));
    }
    let lab = config.start();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/lab/dns_lab.py");
    // Servers that lie: one answers another question with the right id, one slips a record for
    // a documented name into a true answer.
    let mut liars = vec![
        lab.spawn_in_internet(
            "python3",
            &[
                script,
                "server",
                "--addr",
                "198.18.0.7",
                "--mismatch",
                "api.github.com:198.18.7.2",
            ],
        ),
        lab.spawn_in_internet(
            "python3",
            &[
                script,
                "server",
                "--addr",
                "198.18.0.8",
                "--rule",
                "x.attacker.lab:A:answer:198.18.7.9",
                "--extra",
                "api.github.com:198.18.7.3",
            ],
        ),
    ];
    let recording = Recording::start(lab.work_dir(), &[]);
    // Past the start-up grace: a response without a query is unsolicited from here on.
    sleep(Duration::from_secs(11));

    // The runner's sockets: one that sends nothing, two lookups to the lying servers, and a
    // real lookup of api.github.com (id 4242, port 40054) to the lab's resolver.
    let client = python_in_runner(
        &lab,
        r#"
import socket, struct, time
def q(i, name):
    return struct.pack("!HHHHHH", i, 0x0100, 1, 0, 0, 0) + b"".join(
        bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0" + struct.pack("!HH", 1, 1)
silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); silent.bind(("198.18.0.1", 40053))
real = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); real.bind(("198.18.0.1", 40054))
a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); a.bind(("198.18.0.1", 40055))
b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); b.bind(("198.18.0.1", 40056))
a.sendto(q(77, "x.attacker.lab"), ("198.18.0.7", 53))
b.sendto(q(78, "x.attacker.lab"), ("198.18.0.8", 53))
real.sendto(q(4242, "api.github.com"), ("198.18.0.2", 53))
time.sleep(25)
"#,
    );
    // The flood must find the silent socket bound: on a slow guest (qemu without KVM) Python
    // took more than a second to start, and the first tens of thousands of answers met no
    // socket (nothing receives them, so nothing could count them).
    let bound = |port: &str| {
        let out = lab.run_in_runner("ss", &["-H", "-uln", "src", &format!("198.18.0.1:{port}")]);
        !String::from_utf8_lossy(&out.stdout).trim().is_empty()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !(bound("40053") && bound("40056")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the runner's sockets never bound"
        );
        sleep(Duration::from_millis(100));
    }
    sleep(Duration::from_secs(1));
    let send = |to: &str, count: &str, addr: &str, id: Option<&str>| {
        let mut args = vec![
            script,
            "send",
            "--to",
            to,
            "--source",
            "198.18.0.6",
            "--count",
            count,
            "--name",
            "api.github.com",
            "--addr",
            addr,
        ];
        if let Some(id) = id {
            args.extend(["--id", id]);
        }
        let out = lab.run_in_internet("python3", &args);
        assert!(out.status.success(), "{out:?}");
    };
    // The right id and question for the real lookup, from another server.
    send("198.18.0.1:40054", "1", "198.18.7.4", Some("4242"));
    // A flood of unsolicited answers to the socket that asked nothing.
    send("198.18.0.1:40053", "100000", "198.18.7.1", None);
    sleep(Duration::from_secs(2));
    for a in &forged {
        let curl = lab.curl(
            "https://api.github.com/",
            &["-k", "--resolve", &format!("api.github.com:443:{a}")],
        );
        assert_eq!(curl.exit_code, 0, "{a}: {curl:?}");
    }
    let curl = lab.curl("https://api.github.com/", &["-k"]);
    assert_eq!(curl.exit_code, 0, "{curl:?}");
    sleep(Duration::from_millis(1500));
    let (report, stderr) = recording.stop();
    let mut client = client;
    let _ = client.kill();
    let _ = client.wait();
    for l in &mut liars {
        let _ = l.kill();
        let _ = l.wait();
    }

    let capture = &report["capture"];
    let checks = &capture["dns_checks"];
    let lost = capture["lost_events"].as_u64().unwrap_or(0);
    assert_eq!(checks["mismatched"], 1, "{capture:#} {stderr}");
    assert_eq!(checks["out_of_bailiwick"], 1, "{capture:#}");
    assert_eq!(checks["wrong_server"], 1, "{capture:#}");
    let unsolicited = checks["unsolicited"].as_u64().unwrap_or(0);
    assert!(
        unsolicited + lost >= 100_000 && unsolicited > 0,
        "the flood is counted ({unsolicited} unsolicited, {lost} lost): {capture:#}"
    );
    let rejected = capture["dns_rejected"].as_array().expect("dns_rejected");
    let flood = rejected
        .iter()
        .find(|r| r["code"] == "dns_unsolicited" && r["client"] == "198.18.0.1:40053")
        .unwrap_or_else(|| panic!("the flood's socket: {rejected:#?}"));
    assert_eq!(flood["names"], serde_json::json!(["api.github.com"]));
    assert_eq!(flood["forgery"], true);
    // Memory stayed bounded: the name cache holds the real names only.
    assert!(
        capture["name_cache"]["addresses"].as_u64() <= Some(4),
        "{capture:#}"
    );

    // Every flow to a forged address is unresolved and marked; the real one is documented.
    let flows = report["flows"].as_array().expect("flows");
    for a in &forged {
        let dst = format!("{a}:443");
        let f = flows
            .iter()
            .find(|f| f["dst"] == dst)
            .unwrap_or_else(|| panic!("no flow to {dst}: {flows:#?}"));
        assert_eq!(f["class"], "unresolved", "{f:#}");
        assert_eq!(f["name"], Value::Null, "{f:#}");
        assert_eq!(f["forged_name"], "api.github.com", "{f:#}");
    }
    let real = flows
        .iter()
        .find(|f| f["dst"] == format!("{SERVER}:443"))
        .expect("the real flow");
    assert_eq!(real["name"], "api.github.com");
    assert_eq!(real["class"], "declared");
    let api = report_host(&report, "api.github.com");
    assert_eq!(api["status"], "ok", "{api:#}");
    assert_eq!(
        api["addresses"],
        serde_json::json!([SERVER.to_string()]),
        "{api:#}"
    );

    // suggest never allows a forged address.
    let path = lab.work_dir().join("report.json");
    for format in ["nftables", "domains"] {
        let out = Command::new(observer_bin())
            .args(["suggest", "--report"])
            .arg(&path)
            .args(["--format", format])
            .output()
            .expect("observer suggest");
        assert!(out.status.success(), "{out:?}");
        let rules = String::from_utf8_lossy(&out.stdout);
        // Listed at most in comments (unresolved, for the admin to judge), never in a rule.
        let active: Vec<&str> = rules
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect();
        for a in &forged {
            let a = a.to_string();
            assert!(
                !active.iter().any(|l| l.contains(&a)),
                "{format} allows {a}:\n{rules}"
            );
        }
    }
}

/// One process asks the same names over and over from one socket (a build fetching packages):
/// the kernel counts the exact repeats instead of copying them, and every verdict stays what
/// each lookup earned: answers, the one failure of a name that fails once, and each timeout of a
/// name never answered (held queries are taken back by user space and judged).
#[test]
fn repeated_lookups_are_counted_in_the_kernel_and_every_verdict_stays_exact() {
    if !require_root_or_skip() {
        return;
    }
    let long_answer = format!(
        "objects.githubusercontent.com:A:answer:{}",
        (20..40)
            .map(|i| format!("198.18.1.{i}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let lab = LabConfig::new("dnsrepeat")
        .dns_lab(&[
            "api.github.com:A:answer:198.18.1.10",
            "codeload.github.com:A:fail-first:servfail:198.18.1.10",
            "github-releases.githubusercontent.com:A:drop",
            // 20 addresses: an answer too long to be compared (over 256 bytes).
            &long_answer,
        ])
        .start();
    let recording = Recording::start(lab.work_dir(), &["--count-dns-repeats"]);
    let program = format!(
        r#"
import random, socket, struct
def query(name, qid):
    head = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    labels = b"".join(bytes([len(l)]) + l.encode() for l in name.split("."))
    return head + labels + b"\0" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("{server}", 53))
def ask(name, n, timeout):
    got = 0
    s.settimeout(timeout)
    for _ in range(n):
        qid = random.randrange(65536)
        s.send(query(name, qid))
        try:
            while s.recv(600)[:2] != struct.pack(">H", qid):
                pass
            got += 1
        except socket.timeout:
            pass
    return got
print(ask("api.github.com", 1000, 1.0), ask("codeload.github.com", 50, 1.0),
      ask("github-releases.githubusercontent.com", 10, 0.3),
      ask("objects.githubusercontent.com", 30, 1.0))
"#,
        server = observer_tests::DNS_LAB
    );
    let out = lab.run_in_runner("python3", &["-c", &program]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1000 50 0 30",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sleep(Duration::from_millis(3000));
    let (report, stderr) = recording.stop();
    let capture = &report["capture"];
    assert_eq!(capture["lost_events"], 0, "{stderr}");
    // Most repeats never left the kernel (those before user space read the first answer, up to
    // 100 ms later, did); what did was judged like any exchange: nothing was rejected (a held
    // query released after its answer, e.g. an answer too long to compare, would make that
    // answer unsolicited).
    let repeats = capture["dns_repeats"].as_u64().unwrap_or(0);
    assert!(repeats >= 600, "{repeats} repeats counted: {capture:#}");
    assert!(capture["dns_checks"].is_null(), "{capture:#}");
    assert!(capture["dns_rejected"].is_null(), "{capture:#}");

    // Answered every time: its address known, nothing against it (no connection was made).
    let api = report_host(&report, "api.github.com");
    assert_eq!(
        api["addresses"],
        serde_json::json!(["198.18.1.10"]),
        "{api:#}"
    );
    assert!(reasons(api).is_empty(), "{api:#}");

    // The one SERVFAIL is one, however many answers followed it.
    let codeload = report_host(&report, "codeload.github.com");
    assert_eq!(reasons(codeload), ["dns_servfail A"], "{codeload:#}");
    assert_eq!(codeload["reasons"][0]["count"], 1, "{codeload:#}");

    let objects = report_host(&report, "objects.githubusercontent.com");
    assert!(reasons(objects).is_empty(), "{objects:#}");
    // (A host lists ten of its addresses.)
    assert!(
        objects["addresses"].as_array().map_or(0, Vec::len) >= 10,
        "{objects:#}"
    );

    // Ten queries never answered: ten timeouts, the held ones included.
    let releases = report_host(&report, "github-releases.githubusercontent.com");
    assert_eq!(releases["status"], "blocked", "{releases:#}");
    assert_eq!(reasons(releases), ["dns_timeout A"], "{releases:#}");
    assert_eq!(releases["reasons"][0]["count"], 10, "{releases:#}");
}
