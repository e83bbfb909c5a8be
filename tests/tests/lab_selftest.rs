//! Tests of the network lab harness itself (root only; run with
//! `--test-threads=1`, although labs with distinct names may run in
//! parallel).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use observer_tests::{
    pid_alive, require_root_or_skip, DnsRecord, LabConfig, Rcode, RecordType, INTERNET_V4,
};

const API: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);
const API_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 1, 0, 0, 0, 0x10);

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn netns_list() -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("run ip netns list");
    stdout(&out)
}

#[test]
fn a_record_and_tls_download() {
    if !require_root_or_skip() {
        return;
    }
    let t = Instant::now();
    let lab = LabConfig::new("selfa")
        .a("api.github.com", API)
        .tls_server(IpAddr::V4(API))
        .start();
    eprintln!("lab started in {:?}", t.elapsed());

    let r = lab.curl("https://api.github.com/bytes/100000", &[]);
    r.expect_status(200);
    assert_eq!(r.size_download, 100_000);
    assert_eq!(r.remote_ip, Some(IpAddr::V4(API)));
    assert_eq!(r.remote_port, 443);
    assert!(r.size_header > 0 && r.size_request > 0, "{r:?}");

    // Upload and download of known sizes on one connection.
    let body = lab.work_dir().join("body.bin");
    std::fs::write(&body, vec![7u8; 250_000]).unwrap();
    let arg = format!("@{}", body.display());
    let r = lab.curl("https://api.github.com/echo", &["--data-binary", &arg]);
    r.expect_status(200);
    assert_eq!(r.size_upload, 250_000);
    assert_eq!(r.size_download, 250_000);

    let r = lab.curl("https://api.github.com/", &[]);
    r.expect_status(200);
    assert_eq!(r.size_download, br#"{"lab":true}"#.len() as u64);
    let r = lab.curl("https://api.github.com/nope", &[]);
    r.expect_status(404);

    // Certificate checks are real: the IP is in the SAN, another name is not.
    lab.curl("https://198.18.1.10/", &[]).expect_status(200);
    let r = lab.curl(
        "https://wrong.example/",
        &["--resolve", "wrong.example:443:198.18.1.10"],
    );
    assert_eq!(r.exit_code, 60, "expected a certificate error: {r:?}");

    // Nothing outside the lab is routable (checked without sending anything).
    let out = lab.run_in_runner("ip", &["route", "get", "192.0.2.1"]);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unreachable"),
        "{out:?}"
    );
    let out = lab.run_in_runner("ip", &["route", "show", "default"]);
    assert_eq!(stdout(&out).trim(), "");

    // The logs show the requests, and the runner asked for nothing else
    // (e.g. not for the machine's own host name).
    assert!(lab.tls_server_log().contains("GET /bytes/100000"));
    let log = lab.dnsmasq_log();
    assert!(
        log.contains("query[A] api.github.com from 198.18.0.1"),
        "{log}"
    );
    for line in log.lines().filter(|l| l.contains("from 198.18.0.1")) {
        assert!(
            line.contains("] api.github.com from"),
            "unexpected query: {line}\n{log}"
        );
    }
}

#[test]
fn ipv6_only_name() {
    if !require_root_or_skip() {
        return;
    }
    let lab = LabConfig::new("self6")
        .aaaa("v6.example.com", API_V6)
        .tls_server(IpAddr::V6(API_V6))
        .start();
    let r = lab.curl("https://v6.example.com/bytes/1234", &["-6"]);
    r.expect_status(200);
    assert_eq!(r.size_download, 1234);
    assert_eq!(r.remote_ip, Some(IpAddr::V6(API_V6)));

    let r = lab.curl("https://[fd00:0:0:1::10]/bytes/10", &["-6"]);
    r.expect_status(200);
    assert_eq!(r.size_download, 10);

    // No A record: NOERROR with no answers (NODATA), not REFUSED.
    let a = lab.dns_query("v6.example.com", RecordType::A);
    assert_eq!(a.rcode, Rcode::NoError, "{a}");
    assert!(a.answers.is_empty(), "{a}");
    let aaaa = lab.dns_query("v6.example.com", RecordType::Aaaa);
    assert_eq!(aaaa.rcode, Rcode::NoError, "{aaaa}");
    assert_eq!(aaaa.addrs(), vec![IpAddr::V6(API_V6)]);

    // dnsmasq also answers on fd00::2.
    let r = lab
        .try_dns_query(
            "fd00::2".parse().unwrap(),
            "v6.example.com",
            RecordType::Aaaa,
        )
        .unwrap();
    assert_eq!(r.addrs(), vec![IpAddr::V6(API_V6)]);

    // glibc sees only the IPv6 address.
    let out = lab.run_in_runner("getent", &["ahosts", "v6.example.com"]);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("fd00:0:0:1::10"));
    assert!(!stdout(&out).contains("198.18."));
}

#[test]
fn cname_chain() {
    if !require_root_or_skip() {
        return;
    }
    let lab = LabConfig::new("selfc")
        .cname("www.example.com", "edge.example.net")
        .cname("edge.example.net", "origin.example.org")
        .a("origin.example.org", API)
        .a("origin.example.org", Ipv4Addr::new(198, 18, 1, 11))
        .aaaa("origin.example.org", API_V6)
        .tls_server(IpAddr::V4(API))
        .start();

    let out = lab.run_in_runner("getent", &["ahosts", "www.example.com"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("198.18.1.10"), "{text}");
    assert!(text.contains("198.18.1.11"), "{text}");
    assert!(text.contains("fd00:0:0:1::10"), "{text}");
    // getent prints the canonical name (end of the chain).
    assert!(text.contains("origin.example.org"), "{text}");

    let r = lab.dns_query("www.example.com", RecordType::A);
    assert_eq!(r.rcode, Rcode::NoError);
    assert_eq!(
        r.cname_targets(),
        ["edge.example.net", "origin.example.org"]
    );
    assert_eq!(
        r.answers[0],
        DnsRecord::Cname {
            name: "www.example.com".into(),
            target: "edge.example.net".into()
        }
    );
    // dnsmasq rotates the order of multiple addresses.
    let mut addrs = r.addrs();
    addrs.sort();
    assert_eq!(
        addrs,
        [IpAddr::V4(API), IpAddr::V4(Ipv4Addr::new(198, 18, 1, 11))]
    );
    let r = lab.dns_query("www.example.com", RecordType::Aaaa);
    assert_eq!(r.addrs(), [IpAddr::V6(API_V6)]);

    // TLS through the alias (the SAN has the alias too).
    let r = lab.curl("https://www.example.com/bytes/5", &["-4"]);
    r.expect_status(200);
    assert_eq!(r.remote_ip, Some(IpAddr::V4(API)));
}

#[test]
fn nxdomain_refused_and_undeclared() {
    if !require_root_or_skip() {
        return;
    }
    let lab = LabConfig::new("selfn")
        .a("ok.example.com", API)
        .nxdomain("missing.example.com")
        .refused("blocked.example.com")
        .start();

    for (name, rcode) in [
        ("missing.example.com", Rcode::NxDomain),
        ("sub.missing.example.com", Rcode::NxDomain),
        ("blocked.example.com", Rcode::Refused),
        ("undeclared.example.org", Rcode::Refused),
        ("sub.ok.example.com", Rcode::NxDomain),
    ] {
        for qtype in [RecordType::A, RecordType::Aaaa] {
            let r = lab.dns_query(name, qtype);
            assert_eq!(r.rcode, rcode, "{name} {qtype:?}: {r}");
            assert!(r.answers.is_empty(), "{name} {qtype:?}: {r}");
        }
        let out = lab.run_in_runner("getent", &["ahosts", name]);
        assert_eq!(out.status.code(), Some(2), "getent ahosts {name}: {out:?}");
    }
    let r = lab.dns_query("ok.example.com", RecordType::A);
    assert_eq!(
        (r.rcode, r.addrs()),
        (Rcode::NoError, vec![IpAddr::V4(API)])
    );
    assert!(r.authoritative);
    let r = lab.dns_query("ok.example.com", RecordType::Aaaa);
    assert_eq!((r.rcode, r.answers.len()), (Rcode::NoError, 0), "{r}");

    // curl fails to resolve (exit 6).
    for name in ["missing.example.com", "blocked.example.com"] {
        let r = lab.curl(&format!("https://{name}/"), &[]);
        assert_eq!(r.exit_code, 6, "{r:?}");
    }
    assert!(lab
        .dnsmasq_log()
        .contains("config missing.example.com is NXDOMAIN"));
}

#[test]
fn teardown_removes_everything_and_labs_coexist() {
    if !require_root_or_skip() {
        return;
    }
    let mut one = LabConfig::new("selft")
        .a("one.test", API)
        .tls_server(IpAddr::V4(API))
        .start();
    let two = LabConfig::new("selft")
        .a("two.test", API)
        .tls_server(IpAddr::V4(API))
        .start();
    assert_ne!(one.runner_ns(), two.runner_ns());
    assert_ne!(one.internet_ns(), two.internet_ns());
    one.curl("https://one.test/", &[]).expect_status(200);
    two.curl("https://two.test/", &[]).expect_status(200);
    // Each lab resolves only its own names.
    assert_eq!(one.curl("https://two.test/", &[]).exit_code, 6);

    // dnsmasq is the process `ip netns exec` became (it execs, no fork).
    let pid_file = one.work_dir().join("dnsmasq.pid");
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, one.dnsmasq_pid());

    // A process started by a test, and one that escaped tracking.
    let sleeper = one.spawn_in_runner("sleep", &["600"]);
    let stray = one.run_in_internet("sh", &["-c", "sleep 600 >/dev/null 2>&1 & echo $!"]);
    let stray_pid: u32 = stdout(&stray).trim().parse().unwrap();

    let pids = [
        one.dnsmasq_pid(),
        one.tls_server_pid().unwrap(),
        sleeper.id(),
        stray_pid,
    ];
    assert!(pids.iter().all(|&p| pid_alive(p)), "{pids:?}");
    let names = [one.runner_ns().to_owned(), one.internet_ns().to_owned()];
    let etc = Path::new("/etc/netns").join(one.runner_ns());
    let work = one.work_dir().to_owned();
    assert!(etc.join("resolv.conf").exists());
    let list = netns_list();
    assert!(names.iter().all(|n| list.contains(n.as_str())), "{list}");

    let t = Instant::now();
    one.teardown();
    eprintln!("teardown took {:?}", t.elapsed());
    one.teardown(); // idempotent

    let list = netns_list();
    for n in &names {
        assert!(
            !list
                .lines()
                .any(|l| l.split_whitespace().next() == Some(n.as_str())),
            "{list}"
        );
    }
    for p in pids {
        assert!(!pid_alive(p), "pid {p} still alive after teardown");
    }
    assert!(!etc.exists());
    assert!(!work.exists());
    drop(sleeper);

    // The other lab is unaffected.
    two.curl("https://two.test/bytes/10", &[])
        .expect_status(200);
    let two_pids = [two.dnsmasq_pid(), two.tls_server_pid().unwrap()];
    let two_names = [two.runner_ns().to_owned(), two.internet_ns().to_owned()];
    drop(two);
    let list = netns_list();
    assert!(
        two_names.iter().all(|n| !list.contains(n.as_str())),
        "{list}"
    );
    assert!(two_pids.iter().all(|&p| !pid_alive(p)));
}

#[test]
fn teardown_runs_on_panic() {
    if !require_root_or_skip() {
        return;
    }
    let mut seen = None;
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lab = LabConfig::new("selfp")
            .a("p.test", API)
            .tls_server(IpAddr::V4(API))
            .start();
        seen = Some((
            lab.runner_ns().to_owned(),
            lab.dnsmasq_pid(),
            lab.tls_server_pid().unwrap(),
        ));
        panic!("deliberate");
    }));
    assert!(r.is_err());
    let (ns, dns_pid, tls_pid) = seen.unwrap();
    assert!(!netns_list().contains(&ns));
    assert!(!pid_alive(dns_pid) && !pid_alive(tls_pid));
}

#[test]
fn tls_server_extras_and_rust_sockets() {
    if !require_root_or_skip() {
        return;
    }
    let lab = LabConfig::new("selfx")
        .a("api.test", API)
        .tls_server(IpAddr::V4(API))
        .tls_server(IpAddr::V4(INTERNET_V4))
        .host_addr(IpAddr::V4(Ipv4Addr::new(198, 18, 1, 99)))
        .start();

    // Chunked upload to /discard (curl counts the chunk framing in
    // size_upload; the server reports the body length).
    let answer = lab.work_dir().join("answer.json");
    let answer_arg = answer.display().to_string();
    let r = lab.curl(
        "https://api.test/discard",
        &[
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            "0123456789",
            "-o",
            &answer_arg,
        ],
    );
    r.expect_status(200);
    assert_eq!(
        std::fs::read_to_string(&answer).unwrap(),
        r#"{"received":10}"#
    );

    // A server on the DNS address too.
    lab.curl("https://198.18.0.2/", &[]).expect_status(200);

    // A host address without a server refuses connections at once.
    let t = Instant::now();
    let r = lab.curl("https://198.18.1.99/", &[]);
    assert_eq!(r.exit_code, 7, "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(5));

    // /close-after-idle: the server closes the connection after 0.5 s of
    // idleness (s_client -quiet ignores stdin EOF and waits for the close).
    let ca = lab.ca_file().display().to_string();
    let script = format!(
        "printf 'GET /close-after-idle/0.5 HTTP/1.1\\r\\nHost: api.test\\r\\n\\r\\n' \\
         | timeout 5 openssl s_client -quiet -verify_return_error -CAfile {ca} \\
           -servername api.test -connect 198.18.1.10:443"
    );
    let t = Instant::now();
    let out = lab.run_in_runner("sh", &["-c", &script]);
    let took = t.elapsed();
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains(r#"{"idle":0.5}"#), "{out:?}");
    assert!(
        took > Duration::from_millis(400) && took < Duration::from_secs(4),
        "{took:?}"
    );

    // Rust sockets inside the runner namespace.
    let connected = lab.in_runner_ns(|| {
        std::net::TcpStream::connect_timeout(&(API, 443).into(), Duration::from_secs(2)).is_ok()
    });
    assert!(connected);
}
