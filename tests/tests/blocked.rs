//! Blocked destinations, end to end: a real firewall (nftables in the lab's internet namespace,
//! so drops, resets and ICMP errors come back over the wire), real DNS failures (dnsmasq with an
//! upstream that fails, one that never answers, a sinkhole) and an SNI-filtering middlebox, while
//! the real observer records. Each reason code of the report must come out for the host that was
//! configured to fail that way, and nothing else.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    thread::sleep,
    time::Duration,
};

use observer_tests::{
    observer::{observer_bin, Recording},
    require_root_or_skip, Lab, LabConfig,
};
use serde_json::Value;

/// Runs `observer check --json` from the runner's network namespace (only the network one, so
/// the kernel capture finds the host's cgroup and tracefs mounts) against the lab's resolver.
fn check(lab: &Lab, hosts: &[&str]) -> (i32, Value) {
    let mut cmd = std::process::Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{}", lab.runner_ns()))
        .arg(observer_bin())
        .args(["check", "--json", "--resolver", "198.18.0.2", "--ca-file"])
        .arg(lab.ca_file())
        .args([
            "--dns-timeout",
            "1",
            "--connect-timeout",
            "2",
            "--tls-timeout",
            "2",
        ]);
    for h in hosts {
        cmd.args(["--host", h]);
    }
    let out = cmd.output().expect("nsenter runs observer check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "check printed no JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), json)
}

/// The active check and the passive report agree on every host: same status, same reasons.
fn assert_check_agrees(report: &Value, check: &Value, hosts: &[&str]) {
    for name in hosts {
        let c = entry(&check["hosts"], "name", name);
        let check_codes: Vec<&str> = c["reasons"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let (status, codes) = verdict_of(report, name);
        assert_eq!(
            (c["status"].as_str().unwrap_or_default(), check_codes),
            (
                status.as_str(),
                codes.iter().map(String::as_str).collect::<Vec<_>>()
            ),
            "check and report disagree on {name}: check {c:#}"
        );
    }
}

/// What the kernel saw of the check's connections to a host.
fn kernel_flows<'a>(check: &'a Value, name: &str) -> &'a Vec<Value> {
    entry(&check["kernel"]["hosts"], "name", name)["flows"]
        .as_array()
        .unwrap_or_else(|| panic!("no kernel flows for {name}: {:#}", check["kernel"]))
}

fn v4(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 1, last)
}

fn v6(last: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0, 0, 1, 0, 0, 0, last)
}

fn entry<'a>(list: &'a Value, key: &str, name: &str) -> &'a Value {
    list.as_array()
        .and_then(|l| l.iter().find(|e| e[key] == name))
        .unwrap_or_else(|| panic!("no {key} {name} in {list:#}"))
}

/// The host's status and its reason codes.
fn verdict_of(report: &Value, name: &str) -> (String, Vec<String>) {
    let h = entry(&report["hosts"], "name", name);
    // DNS reasons come per record type (`dns_nxdomain` for A and for AAAA): each code once.
    let mut codes: Vec<String> = Vec::new();
    for code in h["reasons"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["code"].as_str())
    {
        if !codes.iter().any(|c| c == code) {
            codes.push(code.to_owned());
        }
    }
    (h["status"].as_str().unwrap_or_default().to_owned(), codes)
}

fn expect(report: &Value, name: &str, status: &str, codes: &[&str]) {
    let (got_status, got_codes) = verdict_of(report, name);
    assert_eq!(
        (
            got_status.as_str(),
            got_codes.iter().map(String::as_str).collect::<Vec<_>>()
        ),
        (status, codes.to_vec()),
        "{name}: {:#}",
        entry(&report["hosts"], "name", name)
    );
}

#[test]
fn every_way_of_blocking_ipv4_is_reported_with_its_reason() {
    if !require_root_or_skip() {
        return;
    }
    let lab = LabConfig::new("blk4")
        .resolver_options("timeout:1 attempts:1")
        .a("api.github.com", v4(10))
        .tls_server(IpAddr::V4(v4(10)))
        .a("github.com", v4(21))
        .tls_server(IpAddr::V4(v4(21)))
        .a("codeload.github.com", v4(22))
        .tls_server(IpAddr::V4(v4(22)))
        .a("pkg.actions.githubusercontent.com", v4(23))
        .tls_server(IpAddr::V4(v4(23)))
        .a("ghcr.io", v4(24))
        .tls_reset_server(IpAddr::V4(v4(24)))
        .nxdomain("results-receiver.actions.githubusercontent.com")
        .refused("objects.githubusercontent.com")
        .servfail("objects-origin.githubusercontent.com")
        .unanswered("github-releases.githubusercontent.com")
        .sinkhole(
            "pkg-containers.githubusercontent.com",
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        )
        .sinkhole(
            "pkg-containers.githubusercontent.com",
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        )
        .a("broker.actions.githubusercontent.com", v4(25))
        .a("broker.actions.githubusercontent.com", v4(26))
        .tls_server(IpAddr::V4(v4(25)))
        .tls_server(IpAddr::V4(v4(26)))
        .a("registry.npmjs.org", v4(27))
        .tls_server(IpAddr::V4(v4(27)))
        .start();
    // The firewall on the path: every server above runs, the firewall is what blocks.
    lab.nft_internet(
        "table inet firewall {
            chain in {
                type filter hook input priority 0; policy accept;
                ip daddr 198.18.1.21 tcp dport 443 drop
                ip daddr 198.18.1.22 tcp dport 443 reject with tcp reset
                ip daddr 198.18.1.23 tcp dport 443 reject with icmp type admin-prohibited
                ip daddr 198.18.1.26 tcp dport 443 reject with tcp reset
                ip daddr 198.18.1.27 tcp dport 443 reject with tcp reset
            }
        }",
    );
    let recording = Recording::start(lab.work_dir(), &[]);
    let fast = ["--connect-timeout", "2"];
    // DNS failures first: the unanswered query needs 3 s of capture after it to be judged.
    for name in [
        "github-releases.githubusercontent.com",
        "results-receiver.actions.githubusercontent.com",
        "objects.githubusercontent.com",
        "objects-origin.githubusercontent.com",
        "pkg-containers.githubusercontent.com",
    ] {
        let curl = lab.curl(&format!("https://{name}/"), &fast);
        assert_ne!(curl.exit_code, 0, "{name} must fail: {curl:?}");
    }
    for (url, ok) in [
        ("https://api.github.com/", true),
        ("https://github.com/", false),
        ("https://codeload.github.com/", false),
        ("https://pkg.actions.githubusercontent.com/", false),
        ("https://ghcr.io/", false),
        ("https://registry.npmjs.org/", false),
    ] {
        let curl = lab.curl(url, &fast);
        assert_eq!(curl.exit_code == 0, ok, "{url}: {curl:?}");
    }
    // Degraded: one address of the name works, the other is rejected. The name is resolved
    // once, then each address is tried explicitly.
    let broker = "broker.actions.githubusercontent.com";
    let _ = lab.run_in_runner("getent", &["ahostsv4", broker]);
    for last in [26, 25] {
        let connect_to = format!("{broker}:443:198.18.1.{last}:443");
        let _ = lab.curl(
            &format!("https://{broker}/"),
            &["--connect-to", &connect_to],
        );
    }
    sleep(Duration::from_millis(3200));
    let (report, stderr) = recording.stop();
    assert_eq!(report["capture"]["complete"], true, "{stderr}");

    expect(&report, "api.github.com", "ok", &[]);
    expect(&report, "github.com", "blocked", &["tcp_timeout"]);
    expect(&report, "codeload.github.com", "blocked", &["tcp_reset"]);
    expect(
        &report,
        "pkg.actions.githubusercontent.com",
        "blocked",
        &["tcp_unreachable"],
    );
    expect(&report, "ghcr.io", "blocked", &["tls_reset"]);
    expect(
        &report,
        "results-receiver.actions.githubusercontent.com",
        "blocked",
        &["dns_nxdomain"],
    );
    expect(
        &report,
        "objects.githubusercontent.com",
        "blocked",
        &["dns_refused"],
    );
    expect(
        &report,
        "objects-origin.githubusercontent.com",
        "blocked",
        &["dns_servfail"],
    );
    expect(
        &report,
        "github-releases.githubusercontent.com",
        "blocked",
        &["dns_timeout"],
    );
    expect(
        &report,
        "pkg-containers.githubusercontent.com",
        "blocked",
        &["dns_sinkhole"],
    );
    expect(&report, broker, "degraded", &["tcp_reset"]);

    let timeout = entry(
        &entry(&report["hosts"], "name", "github.com")["reasons"],
        "code",
        "tcp_timeout",
    );
    assert_eq!(timeout["process"]["comm"], "curl");
    assert!(timeout["first_seen"].is_string() && timeout["last_seen"].is_string());
    let flows = report["flows"].as_array().expect("flows");
    let dropped = flows
        .iter()
        .find(|f| f["dst"] == "198.18.1.21:443")
        .expect("the dropped flow");
    assert!(
        dropped["syn_retransmits"].as_u64() >= Some(1),
        "{dropped:#}"
    );
    let prohibited = flows
        .iter()
        .find(|f| f["dst"] == "198.18.1.23:443")
        .expect("icmp flow");
    assert_eq!(prohibited["error"], "EHOSTUNREACH", "{prohibited:#}");

    // The undeclared registry the firewall forgot.
    let npm = entry(&report["undeclared"], "name", "registry.npmjs.org");
    assert_eq!(npm["status"], "blocked");
    assert_eq!(npm["reasons"][0]["code"], "tcp_reset");

    // Groups and the verdict.
    let groups = &report["groups"];
    assert_eq!(entry(groups, "id", "essential")["status"], "blocked");
    assert!(entry(groups, "id", "essential")["failing_hosts"]
        .as_array()
        .is_some_and(|h| h.iter().any(|h| h == "github.com") && h.iter().any(|h| h == broker)));
    for (id, status) in [
        ("actions-download", "blocked"),
        ("immutable-actions", "blocked"),
        ("artifacts-caches-logs", "blocked"),
        ("runner-updates", "blocked"),
        ("packages", "blocked"),
        ("lfs", "unseen"),
        ("dependabot", "unseen"),
    ] {
        assert_eq!(entry(groups, "id", id)["status"], status, "{id}");
    }
    let verdict = &report["verdict"];
    assert_eq!(verdict["runner_can_work"], false);
    let summary = verdict["summary"].as_str().unwrap_or_default();
    assert!(summary.starts_with("The runner cannot work"), "{summary}");
    assert!(summary.contains("github.com (tcp_timeout)"), "{summary}");

    // The preflight finds the same, host by host, and the kernel's view backs it.
    let hosts = [
        "api.github.com",
        "github.com",
        "codeload.github.com",
        "pkg.actions.githubusercontent.com",
        "ghcr.io",
        "results-receiver.actions.githubusercontent.com",
        "objects.githubusercontent.com",
        "objects-origin.githubusercontent.com",
        "github-releases.githubusercontent.com",
        "pkg-containers.githubusercontent.com",
        broker,
    ];
    let (code, check) = check(&lab, &hosts);
    assert_eq!(
        code, 10,
        "an essential host is blocked: {:#}",
        check["verdict"]
    );
    assert_check_agrees(&report, &check, &hosts);
    assert!(check["kernel"]["note"].is_null(), "{:#}", check["kernel"]);
    let dropped = &kernel_flows(&check, "github.com")[0];
    assert!(
        dropped["syn_retransmits"].as_u64() >= Some(1),
        "{dropped:#}"
    );
    assert_eq!(
        kernel_flows(&check, "codeload.github.com")[0]["rst_received"],
        true
    );
    assert_eq!(
        kernel_flows(&check, "pkg.actions.githubusercontent.com")[0]["error"],
        "EHOSTUNREACH"
    );
    let sni = &kernel_flows(&check, "ghcr.io")[0];
    assert_eq!(
        (sni["established"].as_bool(), sni["bytes_received"].as_u64()),
        (Some(true), Some(0))
    );
    assert_eq!(
        kernel_flows(&check, broker).len(),
        2,
        "both addresses were tried"
    );
}

#[test]
fn every_way_of_blocking_ipv6_is_reported_with_its_reason() {
    if !require_root_or_skip() {
        return;
    }
    let lab = LabConfig::new("blk6")
        .aaaa("api.github.com", v6(0x10))
        .tls_server(IpAddr::V6(v6(0x10)))
        .aaaa("github.com", v6(0x21))
        .tls_server(IpAddr::V6(v6(0x21)))
        .aaaa("codeload.github.com", v6(0x22))
        .tls_server(IpAddr::V6(v6(0x22)))
        .aaaa("pkg.actions.githubusercontent.com", v6(0x23))
        .tls_server(IpAddr::V6(v6(0x23)))
        .aaaa("ghcr.io", v6(0x24))
        .tls_reset_server(IpAddr::V6(v6(0x24)))
        .start();
    lab.nft_internet(
        "table inet firewall {
            chain in {
                type filter hook input priority 0; policy accept;
                ip6 daddr fd00:0:0:1::21 tcp dport 443 drop
                ip6 daddr fd00:0:0:1::22 tcp dport 443 reject with tcp reset
                ip6 daddr fd00:0:0:1::23 tcp dport 443 reject with icmpv6 type admin-prohibited
            }
        }",
    );
    let recording = Recording::start(lab.work_dir(), &[]);
    for (name, ok) in [
        ("api.github.com", true),
        ("github.com", false),
        ("codeload.github.com", false),
        ("pkg.actions.githubusercontent.com", false),
        ("ghcr.io", false),
    ] {
        let curl = lab.curl(
            &format!("https://{name}/"),
            &["-6", "--connect-timeout", "2"],
        );
        assert_eq!(curl.exit_code == 0, ok, "{name}: {curl:?}");
    }
    sleep(Duration::from_millis(300));
    let (report, stderr) = recording.stop();
    assert_eq!(report["capture"]["complete"], true, "{stderr}");
    expect(&report, "api.github.com", "ok", &[]);
    expect(&report, "github.com", "blocked", &["tcp_timeout"]);
    expect(&report, "codeload.github.com", "blocked", &["tcp_reset"]);
    expect(
        &report,
        "pkg.actions.githubusercontent.com",
        "blocked",
        &["tcp_unreachable"],
    );
    expect(&report, "ghcr.io", "blocked", &["tls_reset"]);
    let flows = report["flows"].as_array().expect("flows");
    let prohibited = flows
        .iter()
        .find(|f| f["dst"] == "[fd00:0:0:1::23]:443")
        .expect("the ICMPv6-rejected flow");
    assert_eq!(prohibited["outcome"], "unreachable", "{prohibited:#}");
    assert_eq!(report["verdict"]["runner_can_work"], false);

    let hosts = [
        "api.github.com",
        "github.com",
        "codeload.github.com",
        "pkg.actions.githubusercontent.com",
        "ghcr.io",
    ];
    let (code, check) = check(&lab, &hosts);
    assert_eq!(code, 10, "{:#}", check["verdict"]);
    assert_check_agrees(&report, &check, &hosts);
    assert_eq!(
        kernel_flows(&check, "pkg.actions.githubusercontent.com")[0]["outcome"],
        "unreachable"
    );
}

/// A real squid on the path, as corporate networks have: `observer check` goes through it with
/// `https_proxy` (CONNECT), sees the proxy refuse a denied name, and goes direct for `no_proxy`.
#[test]
fn check_goes_through_a_real_proxy_and_names_its_refusals() {
    if !require_root_or_skip() {
        return;
    }
    let lab = LabConfig::new("proxy")
        .a("api.github.com", v4(10))
        .tls_server(IpAddr::V4(v4(10)))
        .a("ghcr.io", v4(24))
        .tls_server(IpAddr::V4(v4(24)))
        .start();
    // squid drops root for the `proxy` user: its files live in a directory it can write.
    let dir = std::env::temp_dir().join(format!("observer-squid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("squid dir");
    let _cleanup = RemoveDir(dir.clone());
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .expect("chmod");
    let conf = dir.join("squid.conf");
    std::fs::write(
        &conf,
        format!(
            "http_port 198.18.0.2:3128\n\
             pid_filename {d}/squid.pid\n\
             cache_log {d}/cache.log\n\
             access_log {d}/access.log\n\
             cache deny all\n\
             dns_nameservers 198.18.0.2\n\
             acl denied dstdomain ghcr.io\n\
             acl SSL_ports port 443\n\
             acl CONNECT method CONNECT\n\
             http_access deny denied\n\
             http_access allow CONNECT SSL_ports\n\
             http_access deny all\n",
            d = dir.display()
        ),
    )
    .expect("squid.conf");
    let conf_arg = conf.to_string_lossy().into_owned();
    let mut squid = lab.spawn_in_internet("squid", &["-N", "-f", &conf_arg]);
    let proxy: std::net::SocketAddr = "198.18.0.2:3128".parse().expect("addr");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while lab
        .in_internet_ns(|| std::net::TcpStream::connect_timeout(&proxy, Duration::from_millis(200)))
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "squid did not start: {}",
            std::fs::read_to_string(dir.join("cache.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let through_proxy = |no_proxy: &str| {
        let mut cmd = std::process::Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", lab.runner_ns()))
            .arg(observer_bin())
            .args([
                "check",
                "--json",
                "--no-capture",
                "--resolver",
                "198.18.0.2",
                "--ca-file",
            ])
            .arg(lab.ca_file())
            .args(["--host", "api.github.com", "--host", "ghcr.io"])
            .env("https_proxy", "http://198.18.0.2:3128")
            .env("no_proxy", no_proxy);
        let out = cmd.output().expect("observer check runs");
        let json: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
        json
    };
    let check = through_proxy("");
    let api = entry(&check["hosts"], "name", "api.github.com");
    assert_eq!(api["status"], "ok", "{api:#}");
    assert_eq!(api["proxy"]["url"], "http://198.18.0.2:3128", "{api:#}");
    let ghcr = entry(&check["hosts"], "name", "ghcr.io");
    assert_eq!(ghcr["status"], "blocked", "{ghcr:#}");
    assert_eq!(
        ghcr["reasons"],
        serde_json::json!(["proxy_refused"]),
        "{ghcr:#}"
    );
    let log = std::fs::read_to_string(dir.join("access.log")).unwrap_or_default();
    assert!(
        log.contains("CONNECT api.github.com:443"),
        "squid saw the tunnel: {log}"
    );

    // no_proxy: ghcr.io goes direct, and the lab's server answers.
    let check = through_proxy("ghcr.io");
    let ghcr = entry(&check["hosts"], "name", "ghcr.io");
    assert_eq!(ghcr["status"], "ok", "{ghcr:#}");
    assert!(ghcr["proxy"].is_null(), "{ghcr:#}");
    let _ = squid.kill();
    let _ = squid.wait();
}

/// Removes a directory when dropped.
struct RemoveDir(std::path::PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
