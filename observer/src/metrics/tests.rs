//! The metrics, fed as the daemon feeds them (a correlator that forgets closed flows, then the
//! metrics), read back from the exposition text.

use std::{
    io::Write as _,
    process::{Command, Stdio},
    sync::Arc,
    time::Duration,
};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{expose::classic_text, serve, *};
use crate::{
    capture::ProbeStatus,
    pipeline::correlate::{
        tests::{closed, hello, opened, payload, response, with_proxy},
        Limits,
    },
    pipeline::events::Observed,
    pipeline::hello::{FirstReceived, FirstSent},
};

const S: u64 = 1_000_000_000;
const MIN: u64 = 60 * S;
/// 2026-11-01T00:00:00Z: windows are in wall-clock slots.
const T0: u64 = 1_793_491_200 * S;

/// The daemon's pair: a correlator that forgets closed flows, and the metrics.
struct Daemon {
    c: Correlator,
    m: Metrics,
}

impl Daemon {
    fn new() -> Self {
        Self::with(
            Correlator::new(Catalog::builtin()),
            MetricsConfig::default(),
        )
    }

    fn with(c: Correlator, config: MetricsConfig) -> Self {
        Self {
            c: c.forgetting_closed_flows(),
            m: Metrics::new(config),
        }
    }

    fn feed(&mut self, ts: u64, mut o: Observed) {
        self.c.observe(ts, &mut o);
        self.m.observe(&self.c, ts, &o);
    }

    /// A DNS response after the query it answers (the same socket, id, question and server).
    fn answered(&mut self, ts: u64, o: Observed) {
        if let Observed::DnsResponse(d) = &o {
            let mut q = d.clone();
            q.rcode = None;
            q.answers.clear();
            self.feed(ts, Observed::DnsQuery(q));
        }
        self.feed(ts, o);
    }

    fn resolve(&mut self, ts: u64, name: &str, addr: &str) {
        self.answered(ts, response(name, &[(name, "A", addr)]));
    }

    fn text(&self, now: u64) -> String {
        self.m.render(&self.c, now)
    }
}

/// The value of one series (its exact text up to the value), or `None` when absent.
fn value(text: &str, series: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?.strip_prefix(' ')?;
        rest.parse().ok()
    })
}

#[track_caller]
fn assert_value(text: &str, series: &str, want: u64) {
    assert_eq!(value(text, series), Some(want), "{series} in\n{text}");
}

fn started(probes: &[bool]) -> Observed {
    Observed::CaptureStarted {
        cgroup: "/".into(),
        ports: vec![443],
        all_ports: false,
        probes: probes
            .iter()
            .enumerate()
            .map(|(i, &attached)| ProbeStatus {
                program: format!("p{i}"),
                hook: "tracepoint".into(),
                attached,
                error: (!attached).then(|| "EPERM".into()),
            })
            .collect(),
        sources: Vec::new(),
        proxies: Vec::new(),
    }
}

fn status(host: &str, group: &str, s: &str) -> String {
    format!("observer_host_status{{host=\"{host}\",group=\"{group}\",status=\"{s}\"}}")
}

fn group_status(group: &str, s: &str) -> String {
    format!("observer_group_status{{group=\"{group}\",status=\"{s}\"}}")
}

#[test]
fn a_reached_host_is_ok_and_its_flow_counted_after_the_correlator_forgot_it() {
    let mut d = Daemon::new();
    d.feed(T0, started(&[true, true]));
    d.resolve(T0 + S, "api.github.com", "198.18.1.10");
    d.feed(T0 + 2 * S, opened(1, "198.18.1.10:443"));
    d.feed(T0 + 3 * S, closed(1, "198.18.1.10:443", true, 100, 2000));
    assert!(d.c.flows().is_empty(), "the daemon's correlator forgot it");
    let text = d.text(T0 + 5 * S);
    for group in ["essential", "wildcard-summary"] {
        let flows = format!("observer_flows_total{{group=\"{group}\",outcome=\"closed\"}}");
        assert_value(&text, &flows, 1);
        let sent = format!("observer_bytes_total{{group=\"{group}\",direction=\"sent\"}}");
        assert_value(&text, &sent, 100);
        let received = format!("observer_bytes_total{{group=\"{group}\",direction=\"received\"}}");
        assert_value(&text, &received, 2000);
        assert_value(&text, &group_status(group, "ok"), 1);
        assert_value(&text, &group_status(group, "blocked"), 0);
    }
    assert_value(&text, &status("api.github.com", "essential", "ok"), 1);
    assert_value(&text, &status("api.github.com", "essential", "unseen"), 0);
    // Its wildcard-summary membership is judged under the pattern that matched.
    assert_value(&text, &status("*.github.com", "wildcard-summary", "ok"), 1);
    assert_value(&text, &status("github.com", "essential", "unseen"), 1);
    assert_value(&text, "observer_capture_probes{state=\"attached\"}", 2);
    assert_value(&text, "observer_capture_complete", 1);
    assert_value(&text, "observer_status_window_seconds", 600);
    assert!(text.ends_with("# EOF\n"));
    assert!(!text.contains("failures_total{"), "{text}");
}

#[test]
fn a_refused_host_is_blocked_until_the_window_passes_and_its_counters_stay() {
    let mut d = Daemon::new();
    d.resolve(T0, "codeload.github.com", "198.18.1.11");
    d.feed(T0 + S, opened(1, "198.18.1.11:443"));
    d.feed(T0 + S, closed(1, "198.18.1.11:443", false, 0, 0));
    let failures = "observer_failures_total{reason=\"tcp_reset\",group=\"actions-download\"}";
    let text = d.text(T0 + 2 * S);
    assert_value(&text, failures, 1);
    assert_value(
        &text,
        &status("codeload.github.com", "actions-download", "blocked"),
        1,
    );
    assert_value(&text, &group_status("actions-download", "blocked"), 1);
    // A wildcard member blocked only degrades its group: other members may serve.
    assert_value(&text, &group_status("wildcard-summary", "degraded"), 1);
    assert_value(
        &text,
        "observer_flows_total{group=\"actions-download\",outcome=\"refused\"}",
        1,
    );
    // Eleven minutes later the status is back to unseen; the counters stay.
    let later = d.text(T0 + 11 * MIN);
    assert_value(
        &later,
        &status("codeload.github.com", "actions-download", "unseen"),
        1,
    );
    assert_value(&later, failures, 1);
    // A success in the window, with the failure, is degraded.
    d.feed(T0 + 12 * MIN, opened(2, "198.18.1.11:443"));
    d.feed(T0 + 12 * MIN, closed(2, "198.18.1.11:443", false, 0, 0));
    d.feed(T0 + 13 * MIN, opened(3, "198.18.1.11:443"));
    let text = d.text(T0 + 13 * MIN);
    assert_value(
        &text,
        &status("codeload.github.com", "actions-download", "blocked"),
        1,
    );
    d.feed(T0 + 13 * MIN, closed(3, "198.18.1.11:443", true, 100, 5000));
    let text = d.text(T0 + 13 * MIN);
    assert_value(
        &text,
        &status("codeload.github.com", "actions-download", "degraded"),
        1,
    );
    assert_value(&text, failures, 2);
}

#[test]
fn an_open_long_poll_keeps_its_host_ok() {
    let mut d = Daemon::new();
    d.resolve(T0, "api.github.com", "198.18.1.10");
    d.feed(T0 + S, opened(1, "198.18.1.10:443"));
    let Observed::FlowOpened {
        process, src, dst, ..
    } = opened(1, "198.18.1.10:443")
    else {
        unreachable!()
    };
    d.feed(
        T0 + S,
        Observed::FlowEstablished {
            flow_id: 1,
            process,
            src,
            dst,
            connect_ms: 1.0,
            destination: None,
        },
    );
    let text = d.text(T0 + 30 * MIN);
    assert_value(&text, &status("api.github.com", "essential", "ok"), 1);
}

#[test]
fn dns_failures_and_timeouts_count_by_reason_and_group() {
    let mut d = Daemon::new();
    let mut nx = response("codeload.github.com", &[]);
    if let Observed::DnsResponse(r) = &mut nx {
        r.rcode = Some("NXDOMAIN".into());
    }
    d.answered(T0, nx);
    let mut refused = response("registry.npmjs.org", &[]);
    if let Observed::DnsResponse(r) = &mut refused {
        r.rcode = Some("REFUSED".into());
        r.id = Some(2);
    }
    d.answered(T0, refused);
    // A query never answered, judged at the next observation past the timeout.
    let mut ask = response("api.github.com", &[]);
    if let Observed::DnsResponse(r) = &mut ask {
        r.id = Some(3);
        r.rcode = None;
    }
    let Observed::DnsResponse(q) = ask else {
        unreachable!()
    };
    d.feed(T0 + S, Observed::DnsQuery(q));
    d.feed(T0 + 5 * S, opened(9, "198.18.9.9:443"));
    let text = d.text(T0 + 6 * S);
    for group in ["actions-download", "wildcard-summary"] {
        let series =
            format!("observer_failures_total{{reason=\"dns_nxdomain\",group=\"{group}\"}}");
        assert_value(&text, &series, 1);
    }
    assert_value(
        &text,
        "observer_failures_total{reason=\"dns_refused\",group=\"(undeclared)\"}",
        1,
    );
    assert_value(
        &text,
        "observer_failures_total{reason=\"dns_timeout\",group=\"essential\"}",
        1,
    );
    assert_value(&text, &status("api.github.com", "essential", "blocked"), 1);
    assert_value(
        &text,
        &status("codeload.github.com", "actions-download", "blocked"),
        1,
    );
    // A good answer in the window: the name resolves, the old failure no longer blocks it.
    d.resolve(T0 + 7 * S, "api.github.com", "198.18.1.10");
    let text = d.text(T0 + 8 * S);
    assert_value(&text, &status("api.github.com", "essential", "unseen"), 1);
}

#[test]
fn undeclared_destinations_are_bounded_sanitized_and_add_up() {
    let config = MetricsConfig {
        top_n: 2,
        ..MetricsConfig::default()
    };
    let mut d = Daemon::with(Correlator::new(Catalog::builtin()), config);
    let hostile = "evil\"} 1\nobserver_jobs_total{result=\"ok\"} 99 #.example";
    d.resolve(T0, hostile, "198.18.5.1");
    let mut total = 0;
    for i in 0..50u64 {
        let addr = if i == 0 {
            "198.18.5.1:443".to_owned()
        } else {
            format!("198.18.6.{i}:443")
        };
        d.feed(T0 + S, opened(i + 1, &addr));
        d.feed(T0 + S, closed(i + 1, &addr, true, 10 * i, 1000));
        total += 10 * i + 1000;
    }
    let text = d.text(T0 + 2 * S);
    let series: Vec<(&str, u64)> = text
        .lines()
        .filter(|l| l.starts_with("observer_undeclared_bytes_total{"))
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k, v.parse().unwrap())
        })
        .collect();
    assert_eq!(series.len(), 3, "two destinations and (other): {series:?}");
    assert!(series.iter().any(|(k, _)| k.contains("\"(other)\"")));
    assert_eq!(series.iter().map(|(_, v)| v).sum::<u64>(), total);
    // The hostile name became one plain label value; nothing it carried reads as a series.
    assert!(text.contains("destination=\"evil___1_observer_jobs_total_result__ok___99__.example\""));
    assert_value(&text, "observer_jobs_total{result=\"ok\"}", 0);
    assert!(!text.lines().any(|l| l.ends_with(" 99")), "{text}");
    assert_value(
        &text,
        "observer_flows_total{group=\"(unresolved)\",outcome=\"closed\"}",
        49,
    );
    assert_value(
        &text,
        "observer_flows_total{group=\"(undeclared)\",outcome=\"closed\"}",
        1,
    );
}

#[test]
fn a_proxy_refusal_is_classified_from_the_forgotten_entry() {
    let mut d = Daemon::new();
    with_proxy(&mut d.c, "198.18.1.5:3128");
    d.feed(T0, opened(1, "198.18.1.5:3128"));
    let connect = Some(FirstSent::Connect {
        host: "api.github.com".into(),
        port: 443,
        credentials: false,
        incomplete: false,
    });
    d.feed(T0, payload(1, "198.18.1.5:3128", connect, None));
    let forbidden = Some(FirstReceived::HttpStatus {
        code: 403,
        reason: "Forbidden".into(),
    });
    d.feed(T0, payload(1, "198.18.1.5:3128", None, forbidden));
    // The proxy answered (bytes came back) and closed: only the entry knows it said 403.
    d.feed(T0 + S, closed(1, "198.18.1.5:3128", true, 120, 300));
    let text = d.text(T0 + 2 * S);
    assert_value(
        &text,
        "observer_failures_total{reason=\"proxy_refused\",group=\"essential\"}",
        1,
    );
    assert_value(&text, &status("api.github.com", "essential", "blocked"), 1);
}

#[test]
fn bytes_count_as_they_move_and_slow_transfers_are_warnings() {
    let limits = Limits {
        min_bps: 1e9,
        ..Limits::default()
    };
    let mut d = Daemon::with(
        Correlator::new(Catalog::builtin()).with_limits(limits),
        MetricsConfig::default(),
    );
    d.resolve(T0, "api.github.com", "198.18.1.10");
    d.feed(T0 + S, opened(1, "198.18.1.10:443"));
    let reading = |received: u64| Observed::FlowProgress {
        flow_id: 1,
        dst: "198.18.1.10:443".parse().unwrap(),
        bytes_sent: 500,
        bytes_received: received,
        interval_ms: 1000.0,
        sent_bps: 0.0,
        received_bps: 0.0,
        sent_idle_ms: Some(900.0),
        received_idle_ms: Some(0.0),
    };
    d.feed(T0 + 2 * S, reading(40_000));
    let received = "observer_bytes_total{group=\"essential\",direction=\"received\"}";
    assert_value(&d.text(T0 + 2 * S), received, 40_000);
    d.feed(T0 + 3 * S, reading(80_000));
    d.feed(T0 + 4 * S, closed(1, "198.18.1.10:443", true, 500, 90_000));
    let text = d.text(T0 + 5 * S);
    assert_value(&text, received, 90_000);
    assert_value(
        &text,
        "observer_bytes_total{group=\"essential\",direction=\"sent\"}",
        500,
    );
    assert_value(
        &text,
        "observer_slow_transfers_total{group=\"essential\"}",
        1,
    );
    assert_value(
        &text,
        "observer_warnings_total{reason=\"slow_throughput\",group=\"essential\"}",
        1,
    );
    assert_value(&text, &status("api.github.com", "essential", "degraded"), 1);
}

#[test]
fn forged_answers_are_counted_by_kind() {
    let mut d = Daemon::new();
    d.feed(T0, started(&[true]));
    let api = "api.github.com";
    d.feed(T0 + 20 * S, response(api, &[(api, "A", "198.18.66.1")]));
    let text = d.text(T0 + 21 * S);
    assert_value(
        &text,
        "observer_dns_rejected_total{kind=\"dns_unsolicited\"}",
        1,
    );
    assert_value(
        &text,
        "observer_dns_rejected_total{kind=\"dns_mismatched\"}",
        0,
    );
    assert!(
        !text.contains("reason=\"dns_"),
        "a forgery is no failure of the host"
    );
}

#[test]
fn capture_health_adds_up_across_captures() {
    let mut d = Daemon::new();
    d.feed(T0, started(&[true, false]));
    let stats = |lost: u64, undecodable: u64| {
        Observed::CaptureStats(CaptureStats {
            lost_events: lost,
            undecodable_events: undecodable,
            dns_skipped: lost,
            ..CaptureStats::default()
        })
    };
    d.feed(T0 + S, stats(5, 1));
    d.feed(T0 + 2 * S, stats(7, 1));
    let text = d.text(T0 + 3 * S);
    assert_value(&text, "observer_capture_lost_events_total", 7);
    assert_value(&text, "observer_capture_undecodable_events_total", 1);
    assert_value(&text, "observer_dropped_total{what=\"dns_skipped\"}", 7);
    assert_value(&text, "observer_capture_probes{state=\"failed\"}", 1);
    assert_value(&text, "observer_capture_complete", 0);
    // A new capture (the daemon restarted it) counts from zero again: its totals add.
    d.feed(T0 + 4 * S, started(&[true, true]));
    d.feed(T0 + 5 * S, stats(2, 0));
    let text = d.text(T0 + 6 * S);
    assert_value(&text, "observer_capture_lost_events_total", 9);
    assert_value(&text, "observer_capture_complete", 0);
    // Ten quiet minutes later, with every probe attached, the capture is complete.
    assert_value(&d.text(T0 + 16 * MIN), "observer_capture_complete", 1);
}

#[test]
fn flows_beyond_the_correlators_bound_are_still_counted() {
    let limits = Limits {
        max_flows: 1,
        ..Limits::default()
    };
    let mut d = Daemon::with(
        Correlator::new(Catalog::builtin()).with_limits(limits),
        MetricsConfig::default(),
    );
    d.resolve(T0, "api.github.com", "198.18.1.10");
    d.feed(T0 + S, opened(1, "198.18.1.10:443"));
    d.feed(T0 + S, opened(2, "198.18.1.10:443"));
    d.feed(T0 + 2 * S, closed(2, "198.18.1.10:443", false, 0, 0));
    let text = d.text(T0 + 3 * S);
    assert_value(
        &text,
        "observer_failures_total{reason=\"tcp_reset\",group=\"essential\"}",
        1,
    );
    assert!(value(&text, "observer_dropped_total{what=\"flows\"}").unwrap() >= 1);
}

#[test]
fn jobs_are_counted_by_a_known_result() {
    let mut m = Metrics::default();
    m.job_finished("ok").unwrap();
    m.job_finished("ok").unwrap();
    m.job_finished("blocked").unwrap();
    let err = m.job_finished("pwned\u{1b}[2J").unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown job result \"pwned\\\\x1b[2J\": use one of ok, blocked, undeclared, slow, failed"
    );
    let c = Correlator::new(Catalog::builtin());
    let text = m.render(&c, T0);
    assert_value(&text, "observer_jobs_total{result=\"ok\"}", 2);
    assert_value(&text, "observer_jobs_total{result=\"blocked\"}", 1);
    assert_value(&text, "observer_jobs_total{result=\"failed\"}", 0);
    assert!(MetricsConfig {
        top_n: 0,
        ..MetricsConfig::default()
    }
    .validated()
    .is_err());
    assert!(MetricsConfig {
        window_s: 5,
        ..MetricsConfig::default()
    }
    .validated()
    .is_err());
    assert!(MetricsConfig::default().validated().is_ok());
}

/// A capture with a bit of everything, rendered.
fn busy() -> String {
    let mut d = Daemon::new();
    d.feed(T0, started(&[true, false]));
    d.resolve(T0 + S, "api.github.com", "198.18.1.10");
    d.resolve(T0 + S, "registry.npmjs.org", "198.18.2.1");
    d.resolve(T0 + S, "codeload.github.com", "198.18.1.11");
    d.feed(T0 + 2 * S, opened(1, "198.18.1.10:443"));
    d.feed(
        T0 + 2 * S,
        payload(1, "198.18.1.10:443", hello("api.github.com"), None),
    );
    d.feed(T0 + 3 * S, closed(1, "198.18.1.10:443", true, 100, 2000));
    d.feed(T0 + 3 * S, opened(2, "198.18.2.1:443"));
    d.feed(T0 + 4 * S, closed(2, "198.18.2.1:443", true, 300, 40_000));
    d.feed(T0 + 4 * S, opened(3, "198.18.1.11:443"));
    d.feed(T0 + 4 * S, closed(3, "198.18.1.11:443", false, 0, 0));
    d.feed(T0 + 4 * S, opened(4, "198.18.7.7:443"));
    d.feed(T0 + 5 * S, closed(4, "198.18.7.7:443", true, 10, 0));
    d.feed(
        T0 + 30 * S,
        response("ghcr.io", &[("ghcr.io", "A", "198.18.9.1")]),
    );
    d.feed(
        T0 + 31 * S,
        Observed::CaptureStats(CaptureStats {
            lost_events: 3,
            ..CaptureStats::default()
        }),
    );
    d.m.job_finished("slow").unwrap();
    d.text(T0 + 40 * S)
}

#[test]
fn promtool_accepts_the_exposition() {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        assert!(
            std::env::var_os("CI").is_none_or(|v| v.is_empty()),
            "promtool is missing and CI is set: install the Debian package prometheus \
             (cargo xtask setup)"
        );
        eprintln!("skipping: promtool is missing (Debian package prometheus)");
        return;
    };
    let text = classic_text(&busy());
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{text}"
    );
}

#[test]
fn every_series_is_named_by_the_conventions() {
    let text = busy();
    let mut families = 0;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            families += 1;
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(name.starts_with("observer_"), "{name}");
            assert!(
                !name.ends_with("_total"),
                "{name}: prometheus-client adds the suffix"
            );
            assert!(["counter", "gauge"].contains(&kind), "{rest}");
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(name.starts_with("observer_"), "{line}");
        }
    }
    assert_eq!(families, 16);
}

// The endpoint, over an in-memory stream (the lab test serves it over TCP to a real Prometheus).

async fn exchange(request: &str, limits: ServeLimits) -> String {
    let render: serve::Render = Arc::new(busy);
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let serving = tokio::spawn(serve::connection(server, render, limits));
    client.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut answer)).await;
    serving.await.unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

fn get(path: &str, accept: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nConnection: close\r\n\r\n")
}

#[tokio::test]
async fn the_endpoint_serves_both_formats_at_metrics_only() {
    let limits = ServeLimits::default();
    let prometheus =
        "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3";
    let open = exchange(&get("/metrics", prometheus), limits).await;
    assert!(open.starts_with("HTTP/1.1 200 OK\r\n"), "{open}");
    assert!(
        open.contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(open.ends_with("# EOF\n"));
    let classic = exchange(&get("/metrics", "*/*"), limits).await;
    assert!(
        classic.contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{classic}"
    );
    assert!(classic.contains("# TYPE observer_flows_total counter"));
    assert!(!classic.contains("# EOF"));
    let missing = exchange(&get("/", "*/*"), limits).await;
    assert!(
        missing.starts_with("HTTP/1.1 404 Not Found\r\n"),
        "{missing}"
    );
    let post = exchange(
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        limits,
    )
    .await;
    assert!(
        post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{post}"
    );
    assert!(post.contains("allow: GET, HEAD"));
}

#[tokio::test]
async fn an_oversized_or_slow_request_is_cut_off() {
    let limits = ServeLimits {
        head_timeout: Duration::from_millis(300),
        connection_timeout: Duration::from_secs(2),
        ..ServeLimits::default()
    };
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Junk: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let answer = exchange(&huge, limits).await;
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    // Half a request, then silence: the connection ends at the head timeout.
    let started = std::time::Instant::now();
    let answer = exchange("GET /metrics HTTP/1.1\r\nHost:", limits).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(!answer.contains("200 OK"), "{answer}");
}
