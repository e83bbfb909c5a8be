//! The metrics endpoint scraped by a real Prometheus server, in the lab.
//!
//! The real observer (`observer watch --json`, attached to the root cgroup) sees the runner's
//! traffic: a documented host reached, a documented host refused, a documented name that does
//! not exist, an undeclared host. Its events feed the library's correlator and metrics as the
//! daemon will feed them (a correlator that forgets closed flows), and the library's endpoint
//! serves them from a socket in the runner's namespace. Prometheus (the Debian package's server)
//! runs in the same namespace, scrapes the endpoint every second, and its query API must return
//! the series with the values the traffic implies. `promtool check metrics` checks a live scrape.
//! Everything listens on the runner namespace's loopback; the lab's teardown kills Prometheus and
//! removes its data with the work directory.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::Path,
    process::{Command, Stdio},
    sync::{Arc, Mutex, PoisonError},
    thread::{self, sleep},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use observer::{
    catalog::Catalog,
    eventlog,
    metrics::{Metrics, MetricsConfig, MetricsServer},
    pipeline::correlate::Correlator,
};
use observer_tests::{observer::Observer, require_root_or_skip, Lab, LabConfig};
use serde_json::Value;

/// Where the program lives in the Debian package; a missing one fails under CI.
fn have(program: &str) -> bool {
    if Path::new("/usr/bin").join(program).exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none_or(|v| v.is_empty()),
        "{program} is missing and CI is set: install the Debian package prometheus (cargo xtask \
         setup)"
    );
    eprintln!("skipping: {program} is missing (Debian package prometheus)");
    false
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The daemon's state: the correlator, the metrics, and how many events were fed.
struct State {
    c: Correlator,
    m: Metrics,
    fed: usize,
}

impl State {
    /// Feeds the events the observer printed since the last call.
    fn pull(&mut self, observer: &Observer) {
        let events = observer.events();
        for event in &events[self.fed..] {
            let (ts, mut observed) = eventlog::parse_line(&event.to_string())
                .unwrap_or_else(|e| panic!("an event the library cannot read ({e}): {event}"));
            self.c.observe(ts, &mut observed);
            self.m.observe(&self.c, ts, &observed);
        }
        self.fed = events.len();
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `GET` in the runner namespace (curl), the body.
fn get(lab: &Lab, url: &str, extra: &[&str]) -> String {
    let mut args = vec!["-sS", "--max-time", "5"];
    args.extend_from_slice(extra);
    args.push(url);
    let out = lab.run_in_runner("curl", &args);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An instant query of Prometheus's HTTP API: the value of each series, by its labels.
fn query(lab: &Lab, promql: &str) -> Vec<(Value, f64)> {
    let q = format!("query={promql}");
    let body = get(
        lab,
        "http://127.0.0.1:9090/api/v1/query",
        &["-G", "--data-urlencode", &q],
    );
    let Ok(json) = serde_json::from_str::<Value>(&body) else {
        return Vec::new();
    };
    json["data"]["result"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|s| {
                    let v = s["value"][1].as_str()?.parse().ok()?;
                    Some((s["metric"].clone(), v))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `promql` returns one series whose value satisfies `ok`, feeding the events
/// meanwhile; panics with what Prometheus last said.
#[track_caller]
fn eventually(
    lab: &Lab,
    observer: &Observer,
    state: &Mutex<State>,
    promql: &str,
    ok: impl Fn(f64) -> bool,
) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        lock(state).pull(observer);
        let result = query(lab, promql);
        if let [(_, v)] = result.as_slice() {
            if ok(*v) {
                return *v;
            }
        }
        if Instant::now() > deadline {
            let text = {
                let s = lock(state);
                s.m.render(&s.c, now_ns())
            };
            panic!(
                "Prometheus never returned the wanted {promql}: last {result:?}\nmetrics:\n{text}"
            );
        }
        sleep(Duration::from_millis(500));
    }
}

#[test]
fn prometheus_scrapes_the_metrics_of_real_traffic() {
    if !require_root_or_skip() || !have("prometheus") || !have("promtool") {
        return;
    }
    let api = Ipv4Addr::new(198, 18, 1, 10);
    let refused = Ipv4Addr::new(198, 18, 1, 11);
    let npm = Ipv4Addr::new(198, 18, 1, 12);
    let lab = LabConfig::new("metrics")
        .a("api.github.com", api)
        .tls_server(IpAddr::V4(api))
        .a("codeload.github.com", refused)
        .host_addr(IpAddr::V4(refused))
        .a("registry.npmjs.org", npm)
        .tls_server(IpAddr::V4(npm))
        .nxdomain("objects.githubusercontent.com")
        .start();
    let observer = Observer::watch(&["--ports", "443"]);
    let state = Arc::new(Mutex::new(State {
        c: Correlator::new(Catalog::builtin()).forgetting_closed_flows(),
        m: Metrics::new(MetricsConfig::default()),
        fed: 0,
    }));

    // The endpoint, on the runner namespace's loopback.
    let listener = lab
        .in_runner_ns(|| std::net::TcpListener::bind("127.0.0.1:0"))
        .expect("a listener in the runner namespace");
    let port = listener.local_addr().expect("its port").port();
    let shared = Arc::clone(&state);
    let render: observer::metrics::serve::Render = Arc::new(move || {
        let s = lock(&shared);
        s.m.render(&s.c, now_ns())
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(async move {
            let server = MetricsServer::from_std(listener).expect("serve the listener");
            tokio::select! {
                r = server.run(render) => r.expect("the endpoint runs"),
                _ = stopped => {}
            }
        });
    });

    // Prometheus, scraping it every second.
    let work = lab.work_dir();
    let config = work.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: \
             observer\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ),
    )
    .expect("write prometheus.yml");
    let log = std::fs::File::create(work.join("prometheus.log")).expect("prometheus.log");
    let mut cmd = lab.runner_command("prometheus");
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            work.join("tsdb").display()
        ))
        .arg("--web.listen-address=127.0.0.1:9090")
        .current_dir(work)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log);
    let mut prometheus = lab.spawn(&mut cmd);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !get(&lab, "http://127.0.0.1:9090/-/ready", &[]).contains("Ready") {
        assert!(
            Instant::now() < deadline,
            "Prometheus did not start within 60 s:\n{}",
            std::fs::read_to_string(work.join("prometheus.log")).unwrap_or_default()
        );
        sleep(Duration::from_millis(250));
    }

    // The runner's traffic.
    lab.curl("https://api.github.com/bytes/3000", &[])
        .expect_status(200);
    let r = lab.curl("https://codeload.github.com/", &["--max-time", "5"]);
    assert_ne!(r.exit_code, 0, "codeload.github.com must be refused");
    let r = lab.curl(
        "https://objects.githubusercontent.com/",
        &["--max-time", "5"],
    );
    assert_ne!(
        r.exit_code, 0,
        "objects.githubusercontent.com must not resolve"
    );
    lab.curl("https://registry.npmjs.org/bytes/20000", &[])
        .expect_status(200);

    // What Prometheus stored.
    eventually(&lab, &observer, &state, "up{job=\"observer\"}", |v| {
        v == 1.0
    });
    eventually(
        &lab,
        &observer,
        &state,
        "observer_capture_probes{state=\"attached\"}",
        |v| v > 0.0,
    );
    eventually(
        &lab,
        &observer,
        &state,
        "sum(observer_flows_total{group=\"essential\"})",
        |v| v >= 1.0,
    );
    eventually(
        &lab,
        &observer,
        &state,
        "observer_bytes_total{group=\"essential\",direction=\"received\"}",
        |v| v >= 3000.0,
    );
    eventually(
        &lab,
        &observer,
        &state,
        "observer_failures_total{reason=\"tcp_reset\",group=\"actions-download\"}",
        |v| v >= 1.0,
    );
    eventually(
        &lab,
        &observer,
        &state,
        "sum(observer_failures_total{reason=\"dns_nxdomain\",group=\"runner-updates\"})",
        |v| v >= 1.0,
    );
    eventually(
        &lab,
        &observer,
        &state,
        "observer_undeclared_bytes_total{destination=\"registry.npmjs.org\"}",
        |v| v >= 20_000.0,
    );
    eventually(
        &lab,
        &observer,
        &state,
        "observer_host_status{host=\"api.github.com\",group=\"essential\",status=\"ok\"}",
        |v| v == 1.0,
    );
    eventually(
        &lab,
        &observer,
        &state,
        "observer_host_status{host=\"codeload.github.com\",group=\"actions-download\",\
         status=\"blocked\"}",
        |v| v == 1.0,
    );
    eventually(
        &lab,
        &observer,
        &state,
        "observer_group_status{group=\"actions-download\",status=\"blocked\"}",
        |v| v == 1.0,
    );

    // A live scrape in both formats: promtool accepts the classic one.
    let url = format!("http://127.0.0.1:{port}/metrics");
    let classic = get(&lab, &url, &[]);
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    std::io::Write::write_all(
        &mut promtool.stdin.take().expect("stdin"),
        classic.as_bytes(),
    )
    .expect("feed promtool");
    let out = promtool.wait_with_output().expect("promtool ends");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}\n{classic}"
    );
    let headers = get(
        &lab,
        &url,
        &[
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-H",
            "Accept: application/openmetrics-text; version=1.0.0",
        ],
    );
    assert!(
        headers.contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{headers}"
    );
    assert!(get(&lab, &format!("http://127.0.0.1:{port}/"), &["-i"]).starts_with("HTTP/1.1 404"));

    let _ = stop.send(());
    server.join().expect("the endpoint's thread");
    observer.stop();
    // Prometheus by its pid (the lab's teardown would, after a panic); its data goes with the
    // lab's work directory.
    let _ = prometheus.kill();
    let _ = prometheus.wait();
}
