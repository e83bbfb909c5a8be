//! Runners behind an HTTP proxy, end to end: a real squid with access rules between the runner
//! and the lab's servers, real curl through it, the real observer recording. Every flow of the
//! runner goes to the proxy, so names come from the CONNECT requests the kernel copies, and the
//! verdicts from the proxy's status lines:
//! - an allowed CONNECT: the host is ok, named by its CONNECT target, with its bytes;
//! - a denied one (403): `proxy_refused`; one needing credentials (407): `proxy_auth_required`;
//!   one whose upstream refuses (squid answers 503): `proxy_upstream_failed`; each with the
//!   proxy and its answer as evidence;
//! - a `no_proxy` name going direct is named by DNS as before;
//! - the proxy is found in a runner process's environment without `--proxy`.
//!
//! squid itself runs on this host (in the lab's internet namespace), so its own connections to
//! the servers are captured too; the assertions look at curl's flows, and at reasons that only
//! curl's flows can carry.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use observer_tests::{
    observer::{report_host, Recording},
    require_root_or_skip, Lab, LabConfig,
};
use serde_json::Value;

const PROXY: &str = "198.18.0.2:3128";

fn v4(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 1, last)
}

/// Removes a directory when dropped.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child killed and reaped when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real squid on 198.18.0.2:3128 in the lab's internet namespace: CONNECT to 443 allowed,
/// `codeload.github.com` denied, `pkg.actions.githubusercontent.com` only with credentials.
fn squid(lab: &Lab, dir: &Path) -> Reaped {
    // squid drops root for the `proxy` user: its files live in a directory it can write.
    std::fs::create_dir_all(dir).expect("squid dir");
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .expect("chmod");
    let conf = dir.join("squid.conf");
    std::fs::write(
        &conf,
        format!(
            "http_port {PROXY}\n\
             pid_filename {d}/squid.pid\n\
             cache_log {d}/cache.log\n\
             access_log {d}/access.log\n\
             cache deny all\n\
             dns_nameservers 198.18.0.2\n\
             connect_timeout 5 seconds\n\
             auth_param basic program /usr/lib/squid/basic_fake_auth\n\
             auth_param basic realm lab\n\
             acl authed proxy_auth REQUIRED\n\
             acl denied dstdomain codeload.github.com\n\
             acl needauth dstdomain pkg.actions.githubusercontent.com\n\
             acl SSL_ports port 443\n\
             acl CONNECT method CONNECT\n\
             http_access deny denied\n\
             http_access deny needauth !authed\n\
             http_access allow CONNECT SSL_ports\n\
             http_access deny all\n",
            d = dir.display()
        ),
    )
    .expect("squid.conf");
    let conf_arg = conf.to_string_lossy().into_owned();
    let squid = Reaped(lab.spawn_in_internet("squid", &["-N", "-f", &conf_arg]));
    let proxy: std::net::SocketAddr = PROXY.parse().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(20);
    while lab
        .in_internet_ns(|| std::net::TcpStream::connect_timeout(&proxy, Duration::from_millis(200)))
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "squid did not start: {}",
            std::fs::read_to_string(dir.join("cache.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    squid
}

fn lab(tag: &str) -> Lab {
    LabConfig::new(tag)
        .a("api.github.com", v4(10))
        .tls_server(IpAddr::V4(v4(10)))
        .a("codeload.github.com", v4(22))
        .tls_server(IpAddr::V4(v4(22)))
        .a("pkg.actions.githubusercontent.com", v4(23))
        .tls_server(IpAddr::V4(v4(23)))
        // Nothing listens there: squid's connection is refused and it answers 503.
        .a("results-receiver.actions.githubusercontent.com", v4(25))
        .host_addr(IpAddr::V4(v4(25)))
        .a("ghcr.io", v4(24))
        .tls_server(IpAddr::V4(v4(24)))
        .start()
}

/// curl through the proxy (the lab's curl bypasses proxies unless told).
fn via_proxy(lab: &Lab, url: &str) -> observer_tests::CurlResult {
    lab.curl(
        url,
        &[
            "-x",
            &format!("http://{PROXY}"),
            "--noproxy",
            "",
            "--connect-timeout",
            "10",
        ],
    )
}

/// curl's flows in the report, with their names.
fn curl_flows<'a>(report: &'a Value, name: &str) -> Vec<&'a Value> {
    report["flows"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter(|f| f["process"]["comm"] == "curl" && f["name"] == name)
                .collect()
        })
        .unwrap_or_default()
}

fn codes(host: &Value) -> Vec<String> {
    host["reasons"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|r| r["code"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_runner_behind_squid_is_judged_by_what_the_proxy_answered() {
    if !require_root_or_skip() {
        return;
    }
    let lab = lab("proxy14");
    let dir = std::env::temp_dir().join(format!("observer-squid14-{}", std::process::id()));
    let _cleanup = RemoveDir(dir.clone());
    let squid = squid(&lab, &dir);
    let recording = Recording::start(lab.work_dir(), &["--proxy", PROXY]);

    let ok = via_proxy(&lab, "https://api.github.com/bytes/200000");
    assert_eq!((ok.exit_code, ok.http_code), (0, 200), "{ok:?}");
    for url in [
        "https://codeload.github.com/",
        "https://pkg.actions.githubusercontent.com/",
        "https://results-receiver.actions.githubusercontent.com/",
    ] {
        let r = via_proxy(&lab, url);
        assert_ne!(r.exit_code, 0, "{url} must fail through the proxy: {r:?}");
    }
    // no_proxy: direct, named by DNS.
    let direct = lab.curl("https://ghcr.io/bytes/1000", &[]);
    assert_eq!(direct.exit_code, 0, "{direct:?}");

    let (report, stderr) = recording.stop();
    drop(squid);
    let access = std::fs::read_to_string(dir.join("access.log")).unwrap_or_default();

    let proxies = &report["capture"]["proxies"];
    assert_eq!(
        proxies[0]["addr"], PROXY,
        "{:#}\n{stderr}",
        report["capture"]
    );
    assert_eq!(proxies[0]["source"], "--proxy", "{proxies:#}");

    // Allowed: named by the CONNECT target, bytes as curl counted them.
    let api = report_host(&report, "api.github.com");
    assert_eq!(api["status"], "ok", "{api:#}\n{access}");
    assert!(
        api["via_proxies"]
            .as_array()
            .is_some_and(|p| p.contains(&Value::from(PROXY))),
        "{api:#}"
    );
    let flows = curl_flows(&report, "api.github.com");
    assert_eq!(flows.len(), 1, "{:#}", report["flows"]);
    let f = flows[0];
    assert_eq!(f["named_by"], "connect", "{f:#}");
    assert_eq!(f["via_proxy"], PROXY, "{f:#}");
    assert_eq!(f["dst"], PROXY, "{f:#}");
    assert_eq!(f["proxy_target"], "api.github.com:443", "{f:#}");
    assert_eq!(f["proxy_status"], 200, "{f:#}");
    let received = f["bytes_received"].as_u64().unwrap_or(0);
    assert!(
        (200_000..=230_000).contains(&received),
        "bytes received through the tunnel: {received} for a 200,000-byte body: {f:#}"
    );

    for (name, code, status) in [
        ("codeload.github.com", "proxy_refused", 403),
        (
            "pkg.actions.githubusercontent.com",
            "proxy_auth_required",
            407,
        ),
        (
            "results-receiver.actions.githubusercontent.com",
            "proxy_upstream_failed",
            503,
        ),
    ] {
        let host = report_host(&report, name);
        assert_eq!(host["status"], "blocked", "{host:#}\n{access}");
        assert!(codes(host).contains(&code.to_owned()), "{host:#}\n{access}");
        let reason = host["reasons"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["code"] == code))
            .expect("reason");
        let detail = reason["detail"].as_str().unwrap_or_default();
        assert!(
            detail.starts_with(&format!("proxy {PROXY} answered {status}"))
                && detail.contains(&format!("CONNECT {name}:443")),
            "{detail}"
        );
        let flows = curl_flows(&report, name);
        assert_eq!(flows.len(), 1, "{name}: {:#}", report["flows"]);
        assert_eq!(flows[0]["proxy_status"], status, "{:#}", flows[0]);
    }

    let ghcr = report_host(&report, "ghcr.io");
    assert_eq!(ghcr["status"], "ok", "{ghcr:#}");
    assert!(ghcr["via_proxies"].is_null(), "{ghcr:#}");
    let direct = curl_flows(&report, "ghcr.io");
    assert_eq!(direct[0]["dst"], "198.18.1.24:443", "{:#}", direct[0]);
    assert!(direct[0]["named_by"].is_null(), "{:#}", direct[0]);
}

#[test]
fn the_proxy_is_found_in_a_runner_process_environment() {
    if !require_root_or_skip() {
        return;
    }
    let lab = lab("proxyenv");
    let dir = std::env::temp_dir().join(format!("observer-squidenv-{}", std::process::id()));
    let _cleanup = RemoveDir(dir.clone());
    let squid = squid(&lab, &dir.join("squid"));
    // A process named like the runner's listener, with the runner's proxy settings.
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let listener = bin.join("Runner.Listener");
    std::fs::copy("/bin/sleep", &listener).expect("copy sleep");
    let runner = Reaped(
        Command::new(&listener)
            .arg("300")
            .env_clear()
            .env("https_proxy", format!("http://{PROXY}"))
            .env("no_proxy", "ghcr.io")
            .spawn()
            .expect("spawn the fake Runner.Listener"),
    );
    let recording = Recording::start(lab.work_dir(), &[]);
    let ok = via_proxy(&lab, "https://api.github.com/bytes/1000");
    assert_eq!(ok.exit_code, 0, "{ok:?}");
    let (report, stderr) = recording.stop();
    drop(squid);

    let proxies = report["capture"]["proxies"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let found = proxies
        .iter()
        .find(|p| p["addr"] == PROXY)
        .unwrap_or_else(|| panic!("proxy not discovered: {proxies:#?}\n{stderr}"));
    let source = found["source"].as_str().unwrap_or_default();
    assert!(
        source.contains(&runner.0.id().to_string()) && source.contains("Runner.Listener"),
        "{found:#}"
    );
    let flows = curl_flows(&report, "api.github.com");
    assert_eq!(flows.len(), 1, "{:#}", report["flows"]);
    assert_eq!(flows[0]["named_by"], "connect", "{:#}", flows[0]);
}
