//! `cargo xtask bench`: the cost of observing, measured in the network lab, next to the tools an
//! admin would otherwise run.
//!
//! Every phase runs in rounds; in each round it runs back to back without any tool, with the
//! observer (`observer record`, the report written at the end), in the DNS phases also with
//! `observer record --count-dns-repeats`, with `tcpdump` (capturing what we capture: DNS, and
//! SYN/FIN/RST to port 443, written to a file) and with `bandwhich` (a monitor that attributes
//! traffic to processes; skipped when not installed). Each tool's ratio is its
//! with/without rate in the same round, and the table shows the median of the rounds with the
//! spread of the rates without any tool (a phase whose load generator is unstable says so).
//!
//! Phases:
//! - `bulk`: TCP throughput over the veth (iperf3 to port 443, a watched port), 10 s;
//! - `https`: short HTTPS connections (TCP, TLS 1.3 handshake, a request, the answer, close);
//! - `tcp`: short plain-TCP connections (a stress figure: no TLS work to hide the observer's
//!   cost). The client closes first and reuses its TIME_WAIT ports (`tcp_tw_reuse`, full port
//!   range), the server's backlog is deep: without that the generator's rate swung 40-fold
//!   between rounds (SYNs landing on TIME_WAIT tuples waited a second for a retransmit);
//! - `dns-repeat`: a few names asked over and over (a build fetching packages);
//! - `dns-unique`: a new name in every query (a crawler, or an attack).
//!
//! Then, with the observer only, the paced phases: 5,000 new connections/s for 20 s (100,000
//! flows tracked) and 20,000 DNS responses/s of each shape for 5 s, with lost events and peak
//! RSS (VmHWM), and the 5,000 connections/s again with `observer watch` for its peak RSS (it
//! forgets closed flows; `record` keeps them for its report). CPU time of every tool comes from
//! /proc/PID/stat, per phase.
//!
//! `BENCH_PHASES=tcp,dns-repeat` runs only those phases, `BENCH_TOOLS=observer` only those tools,
//! `BENCH_ROUNDS=N` sets the rounds, `BENCH_PACED=0` skips the paced phases (for profiling).
//! Prints a table and writes target/bench.json. Timings are noisy on a shared 2-core machine:
//! compare the ratios, not absolute numbers.

use std::{
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use observer_tests::{flood, observer::observer_bin, Lab, LabConfig};
use serde_json::{json, Value};

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 50);
/// iperf3's address (its own, as the connection server holds :443 on `SERVER`).
const BULK: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 51);
/// The HTTPS server's address.
const HTTPS: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 52);
const PHASE: Duration = Duration::from_secs(4);
/// Length of each bulk-transfer phase: longer than the others, as its budget is the tightest.
const BULK_PHASE: Duration = Duration::from_secs(10);
const ROUNDS: usize = 5;
/// Client threads of the connection and DNS generators.
const CLIENT_THREADS: usize = 4;
/// DNS queries each client thread keeps in flight.
const DNS_WINDOW: usize = 32;
/// The tcpdump filter of what the observer captures (DNS both ways, the TCP flags that open and
/// end a flow on the watched port).
const TCPDUMP_FILTER: &str =
    "port 53 or (tcp port 443 and tcp[tcpflags] & (tcp-syn|tcp-fin|tcp-rst) != 0)";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Bulk,
    Https,
    Tcp,
    DnsRepeat,
    DnsUnique,
}

impl Phase {
    const ALL: [Phase; 5] = [
        Phase::Bulk,
        Phase::Https,
        Phase::Tcp,
        Phase::DnsRepeat,
        Phase::DnsUnique,
    ];

    fn name(self) -> &'static str {
        match self {
            Phase::Bulk => "bulk",
            Phase::Https => "https",
            Phase::Tcp => "tcp",
            Phase::DnsRepeat => "dns-repeat",
            Phase::DnsUnique => "dns-unique",
        }
    }

    /// What one unit of work is, and how many of them the CPU figure is given for.
    fn unit(self) -> (&'static str, f64) {
        match self {
            Phase::Bulk => ("GB", 1e9),
            Phase::Https | Phase::Tcp => ("10k conns", 1e4),
            Phase::DnsRepeat | Phase::DnsUnique => ("100k DNS", 1e5),
        }
    }

    /// The budget of the observer's median ratio, as text and as a check.
    fn budget(self) -> (&'static str, Option<f64>) {
        match self {
            Phase::Bulk => (">= 0.98", Some(0.98)),
            Phase::Https => (">= 0.97", Some(0.97)),
            Phase::Tcp => (">= 0.90", Some(0.90)),
            Phase::DnsRepeat => (">= 0.90", Some(0.90)),
            Phase::DnsUnique => (">= tcpdump", None),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tool {
    None,
    Observer,
    Tcpdump,
    Bandwhich,
    /// `observer watch --json` (only for the memory of the streaming mode).
    Watch,
    /// `observer record --count-dns-repeats` (the DNS phases only).
    ObserverRepeats,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::None => "none",
            Tool::Observer => "observer",
            Tool::Tcpdump => "tcpdump",
            Tool::Bandwhich => "bandwhich",
            Tool::Watch => "watch",
            Tool::ObserverRepeats => "observer-repeats",
        }
    }
}

/// One measurement: the rate of a phase's work, and what it was made of.
struct Measured {
    /// Units per second (bits/s for bulk, connections/s, DNS responses/s).
    rate: f64,
    /// Units done (bytes for bulk).
    units: f64,
    /// Attempts that failed (connections refused or timed out, DNS queries unanswered).
    failed: u64,
}

impl Measured {
    /// `done` units of work (and `failed` attempts) in `secs` seconds.
    fn count(done: u64, failed: u64, secs: f64) -> Self {
        Self {
            rate: done as f64 / secs,
            units: done as f64,
            failed,
        }
    }
}

fn env_list(name: &str) -> Option<Vec<String>> {
    std::env::var(name)
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
}

fn main() {
    let phases: Vec<Phase> = match env_list("BENCH_PHASES") {
        Some(names) => Phase::ALL
            .into_iter()
            .filter(|p| names.iter().any(|n| n == p.name()))
            .collect(),
        None => Phase::ALL.to_vec(),
    };
    let bandwhich = find_bandwhich();
    let mut tools = vec![
        Tool::None,
        Tool::Observer,
        Tool::ObserverRepeats,
        Tool::Tcpdump,
    ];
    if bandwhich.is_some() {
        tools.push(Tool::Bandwhich);
    } else {
        eprintln!(
            "bandwhich is not installed (cargo xtask bench installs it): its column is empty"
        );
    }
    if let Some(names) = env_list("BENCH_TOOLS") {
        tools.retain(|t| *t == Tool::None || names.iter().any(|n| n == t.name()));
    }
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ROUNDS);
    let paced = std::env::var("BENCH_PACED").map_or(true, |v| v != "0");

    let lab = LabConfig::new("bench")
        .host_addr(IpAddr::V4(SERVER))
        .host_addr(IpAddr::V4(BULK))
        .host_addr(IpAddr::V4(HTTPS))
        .start();
    tune_lab(&lab);
    let stop = Arc::new(AtomicBool::new(false));
    start_servers(&lab, &stop);
    let client_tls = start_https_server(&lab);
    let capture_dir = std::env::temp_dir().join(format!("observer-bench-{}", std::process::id()));
    std::fs::create_dir_all(&capture_dir).expect("capture directory");

    let mut samples = Vec::new();
    for round in 0..rounds {
        for &phase in &phases {
            for &tool in &tools {
                if tool == Tool::ObserverRepeats
                    && !matches!(phase, Phase::DnsRepeat | Phase::DnsUnique)
                {
                    continue;
                }
                let running = Running::start(tool, &lab, &capture_dir, bandwhich.as_deref());
                let cpu0 = running.as_ref().map_or(0.0, Running::cpu_s);
                let m = run_phase(phase, &lab, &client_tls, None);
                let cpu = running.as_ref().map_or(0.0, |r| r.cpu_s() - cpu0);
                let stopped = running.map(Running::stop).unwrap_or_default();
                eprintln!(
                    "round {round} {:<10} {:<9} rate {:>12.1}{}  cpu {cpu:.2} s{}{}",
                    phase.name(),
                    tool.name(),
                    m.rate,
                    if m.failed > 0 {
                        format!(" ({} failed)", m.failed)
                    } else {
                        String::new()
                    },
                    stopped
                        .lost
                        .map(|l| format!(", {l} lost events"))
                        .unwrap_or_default(),
                    stopped
                        .dropped
                        .map(|d| format!(", {d} dropped by the kernel"))
                        .unwrap_or_default(),
                );
                samples.push(json!({
                    "round": round, "phase": phase.name(), "tool": tool.name(),
                    "rate": m.rate, "units": m.units, "failed": m.failed, "cpu_s": cpu,
                    "lost_events": stopped.lost, "events": stopped.events,
                    "dns_repeats": stopped.repeats,
                    "captured": stopped.captured, "dropped": stopped.dropped,
                }));
            }
        }
    }

    let paced_result = paced.then(|| paced_phases(&lab, &capture_dir));
    stop.store(true, Ordering::Relaxed);
    let _ = std::fs::remove_dir_all(&capture_dir);

    let summary = summarize(&phases, &tools, &samples, paced_result);
    println!("{}", table(&summary));
    let out = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench.json"));
    std::fs::write(&out, serde_json::to_string_pretty(&summary).expect("json")).expect("write");
    eprintln!("wrote {}", out.display());
}

fn run_phase(
    phase: Phase,
    lab: &Lab,
    client_tls: &Arc<rustls::ClientConfig>,
    rate: Option<f64>,
) -> Measured {
    match phase {
        Phase::Bulk => bulk(lab),
        Phase::Https => https_connections(lab, client_tls, PHASE),
        Phase::Tcp => connections(lab, rate, PHASE),
        Phase::DnsRepeat => dns(lab, false, rate, PHASE),
        Phase::DnsUnique => dns(lab, true, rate, PHASE),
    }
}

/// With the observer: the paced rates (the budget is 0 lost), and the peak RSS with 100,000 flows.
fn paced_phases(lab: &Lab, dir: &Path) -> Value {
    let observer = Running::start(Tool::Observer, lab, dir, None).expect("observer");
    let mut parts = Vec::new();
    let mut flows_peak_kb = 0;
    for (phase, rate, time) in [
        (Phase::Tcp, 5_000.0, Duration::from_secs(20)),
        (Phase::DnsRepeat, 20_000.0, Duration::from_secs(5)),
        (Phase::DnsUnique, 20_000.0, Duration::from_secs(5)),
    ] {
        let cpu0 = observer.cpu_s();
        let m = match phase {
            Phase::Tcp => connections(lab, Some(rate), time),
            _ => dns(lab, phase == Phase::DnsUnique, Some(rate), time),
        };
        let cpu = observer.cpu_s() - cpu0;
        if phase == Phase::Tcp {
            // The 100,000 flows alone, before the DNS phases grow its DNS tables.
            flows_peak_kb = observer.peak_rss_kb();
        }
        eprintln!(
            "paced {:<10} asked {rate:.0}/s, reached {:.0}/s ({} failed), observer cpu {cpu:.2} s",
            phase.name(),
            m.rate,
            m.failed
        );
        parts.push(json!({
            "phase": phase.name(), "asked_per_s": rate, "reached_per_s": m.rate,
            "units": m.units, "failed": m.failed, "cpu_s": cpu,
        }));
    }
    let start_kb = observer.start_peak_kb;
    let stopped = observer.stop();
    let rss_kb = stopped.peak_rss_kb.unwrap_or(0);
    // `record` keeps every flow for its report (up to --max-flows); `watch` streams and forgets
    // closed flows. Both memories, for the same 100,000 connections.
    let watch = Running::start(Tool::Watch, lab, dir, None).expect("observer watch");
    connections(lab, Some(5_000.0), Duration::from_secs(20));
    let watch_start_kb = watch.start_peak_kb;
    let watch_rss_kb = watch.stop().peak_rss_kb.unwrap_or(0);
    let mb = |kb: u64| kb as f64 / 1024.0;
    eprintln!(
        "peak RSS with 100,000 flows: record {:.1} MB after them, {:.1} MB after the DNS phases \
         and its report, watch {:.1} MB; while loading the programs: {:.1} MB and {:.1} MB",
        mb(flows_peak_kb),
        mb(rss_kb),
        mb(watch_rss_kb),
        mb(start_kb),
        mb(watch_start_kb)
    );
    json!({
        "phases": parts,
        "observer_flows_peak_rss_mb": mb(flows_peak_kb),
        "observer_peak_rss_mb": mb(rss_kb),
        "watch_peak_rss_mb": mb(watch_rss_kb),
        "observer_loading_peak_rss_mb": mb(start_kb),
        "watch_loading_peak_rss_mb": mb(watch_start_kb),
        "lost_events": stopped.lost,
        "events": stopped.events,
        "dns_repeats": stopped.repeats,
    })
}

fn summarize(phases: &[Phase], tools: &[Tool], samples: &[Value], paced: Option<Value>) -> Value {
    let of = |phase: Phase, tool: Tool| -> Vec<&Value> {
        samples
            .iter()
            .filter(|s| s["phase"] == phase.name() && s["tool"] == tool.name())
            .collect()
    };
    let mut rows = Vec::new();
    for &phase in phases {
        let base = of(phase, Tool::None);
        let base_rates: Vec<f64> = base.iter().filter_map(|s| s["rate"].as_f64()).collect();
        let mut row = json!({
            "phase": phase.name(),
            "rate_without": median(&base_rates),
            "spread_without": spread(&base_rates),
        });
        for &tool in tools.iter().filter(|t| **t != Tool::None) {
            let with = of(phase, tool);
            let ratios: Vec<f64> = with
                .iter()
                .filter_map(|w| {
                    let b = base.iter().find(|b| b["round"] == w["round"])?;
                    Some(w["rate"].as_f64()? / b["rate"].as_f64()?)
                })
                .collect();
            let cpu: f64 = with.iter().filter_map(|w| w["cpu_s"].as_f64()).sum();
            let units: f64 = with.iter().filter_map(|w| w["units"].as_f64()).sum();
            let lost: u64 = with.iter().filter_map(|w| w["lost_events"].as_u64()).sum();
            let dropped: u64 = with.iter().filter_map(|w| w["dropped"].as_u64()).sum();
            let captured: u64 = with.iter().filter_map(|w| w["captured"].as_u64()).sum();
            row[tool.name()] = json!({
                "ratio": median(&ratios),
                "ratio_min": ratios.iter().copied().fold(f64::NAN, f64::min),
                "ratio_max": ratios.iter().copied().fold(f64::NAN, f64::max),
                "cpu_s_per_unit": cpu / (units / phase.unit().1),
                "cpu_s": cpu,
                "lost_events": lost,
                "dropped": dropped,
                "captured": captured,
                "cpu_us_per_captured": if captured > 0 { cpu * 1e6 / captured as f64 } else { f64::NAN },
            });
        }
        rows.push(row);
    }
    json!({ "phases": rows, "paced": paced, "samples": samples })
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

/// Half the range of `v` as a share of its median: ±this.
fn spread(v: &[f64]) -> f64 {
    let (lo, hi) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        });
    (hi - lo) / 2.0 / median(v)
}

fn table(s: &Value) -> String {
    let mut out = String::new();
    out.push_str(
        "phase        rate without (spread)     observer  (min-max)       +repeats  tcpdump   bandwhich  budget\n",
    );
    let ratio = |row: &Value, tool: &str| -> String {
        let r = &row[tool];
        match r["ratio"].as_f64() {
            Some(x) if r.is_object() => format!("{x:.3}"),
            _ => "-".into(),
        }
    };
    for row in s["phases"].as_array().into_iter().flatten() {
        let phase = Phase::ALL
            .into_iter()
            .find(|p| row["phase"] == p.name())
            .expect("phase");
        let rate = row["rate_without"].as_f64().unwrap_or(f64::NAN);
        let rate = match phase {
            Phase::Bulk => format!("{:.2} Gbit/s", rate / 1e9),
            Phase::Https | Phase::Tcp => format!("{rate:.0} conn/s"),
            _ => format!("{rate:.0} resp/s"),
        };
        let o = &row["observer"];
        let range = format!(
            "({:.3}-{:.3})",
            o["ratio_min"].as_f64().unwrap_or(f64::NAN),
            o["ratio_max"].as_f64().unwrap_or(f64::NAN)
        );
        out.push_str(&format!(
            "{:<12} {:<15} (±{:>4.1} %)  {:<9} {:<15} {:<9} {:<9} {:<10} {}\n",
            phase.name(),
            rate,
            row["spread_without"].as_f64().unwrap_or(f64::NAN) * 100.0,
            ratio(row, "observer"),
            range,
            ratio(row, "observer-repeats"),
            ratio(row, "tcpdump"),
            ratio(row, "bandwhich"),
            phase.budget().0,
        ));
    }
    out.push_str(
        "\nCPU seconds per unit of work (observer / observer --count-dns-repeats / tcpdump / \
         bandwhich)\n",
    );
    for row in s["phases"].as_array().into_iter().flatten() {
        let phase = Phase::ALL
            .into_iter()
            .find(|p| row["phase"] == p.name())
            .expect("phase");
        let cpu = |tool: &str| {
            row[tool]["cpu_s_per_unit"]
                .as_f64()
                .map_or("-".to_owned(), |x| format!("{x:.3}"))
        };
        out.push_str(&format!(
            "{:<12} per {:<10} {:>8} {:>8} {:>8} {:>8}   lost events {}, tcpdump dropped {}\n",
            phase.name(),
            phase.unit().0,
            cpu("observer"),
            cpu("observer-repeats"),
            cpu("tcpdump"),
            cpu("bandwhich"),
            row["observer"]["lost_events"],
            row["tcpdump"]["dropped"],
        ));
    }
    if let Some(p) = s["paced"].as_object() {
        out.push_str("\nPaced, with the observer\n");
        for part in p["phases"].as_array().into_iter().flatten() {
            let asked = part["asked_per_s"].as_f64().unwrap_or(0.0);
            let reached = part["reached_per_s"].as_f64().unwrap_or(0.0);
            out.push_str(&format!(
                "{:<12} asked {:>6.0}/s  reached {:>6.0}/s  {}\n",
                part["phase"].as_str().unwrap_or(""),
                asked,
                reached,
                if reached >= asked * 0.98 {
                    "ok".to_owned()
                } else {
                    format!("NOT reached ({} failed)", part["failed"])
                }
            ));
        }
        let mb = |key: &str| p[key].as_f64().unwrap_or(f64::NAN);
        out.push_str(&format!(
            "lost events {} (budget 0); peak RSS with 100,000 flows: record {:.1} MB ({:.1} MB \
             once the DNS phases and its report are done), watch {:.1} MB (budget < 64); while \
             loading the programs: {:.1} MB and {:.1} MB\n",
            p["lost_events"],
            mb("observer_flows_peak_rss_mb"),
            mb("observer_peak_rss_mb"),
            mb("watch_peak_rss_mb"),
            mb("observer_loading_peak_rss_mb"),
            mb("watch_loading_peak_rss_mb"),
        ));
    }
    out
}

/// Lab settings that keep the generators stable: the client reuses TIME_WAIT ports over the full
/// range; the server namespace takes deep listen backlogs.
fn tune_lab(lab: &Lab) {
    for (ns_runner, args) in [
        (true, "net.ipv4.tcp_tw_reuse=1"),
        (true, "net.ipv4.ip_local_port_range=1024 65000"),
        (false, "net.core.somaxconn=8192"),
        (false, "net.ipv4.tcp_max_syn_backlog=8192"),
    ] {
        let out = if ns_runner {
            lab.run_in_runner("sysctl", &["-qw", args])
        } else {
            lab.run_in_internet("sysctl", &["-qw", args])
        };
        assert!(
            out.status.success(),
            "sysctl {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Deepens a listener's backlog (listen again on a listening socket only changes it).
fn deep_backlog(l: &TcpListener) {
    // SAFETY: plain syscall on an open listening socket.
    unsafe { libc::listen(l.as_raw_fd(), 4096) };
}

/// Sets a socket's receive buffer beyond rmem_max (root).
fn big_rcvbuf(fd: i32) {
    let size: libc::c_int = 8 << 20;
    // SAFETY: setsockopt on an open socket with a c_int value.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

/// The servers, in the internet namespace: a TCP server on :443 that answers a small request and
/// closes after the client did, and a DNS responder on :53 that answers every A query with an
/// address.
fn start_servers(lab: &Lab, stop: &Arc<AtomicBool>) {
    let (listener, udp) = lab.in_internet_ns(|| {
        let l = TcpListener::bind(SocketAddr::new(IpAddr::V4(SERVER), 443)).expect("bind 443");
        deep_backlog(&l);
        let u = UdpSocket::bind(SocketAddr::new(IpAddr::V4(SERVER), 53)).expect("bind 53");
        big_rcvbuf(u.as_raw_fd());
        (l, u)
    });
    for _ in 0..4 {
        let listener = listener.try_clone().expect("clone listener");
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut buf = [0u8; 64];
                if conn.read(&mut buf).is_ok() && conn.write_all(b"ok").is_ok() {
                    // The client closes first (its TIME_WAIT is reused); wait for its FIN.
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                    let _ = conn.read(&mut buf);
                }
            }
        });
    }
    for _ in 0..2 {
        let udp = udp.try_clone().expect("clone udp");
        let stop = Arc::clone(stop);
        thread::spawn(move || {
            let _ = udp.set_read_timeout(Some(Duration::from_millis(200)));
            let mut buf = [0u8; 600];
            while !stop.load(Ordering::Relaxed) {
                let Ok((n, peer)) = udp.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(len) = flood::answer(&mut buf, n) {
                    let _ = udp.send_to(&buf[..len], peer);
                }
            }
        });
    }
}

/// A TLS server on HTTPS:443 in the internet namespace with the lab's certificate (2 threads);
/// returns the client configuration that trusts the lab's CA.
fn start_https_server(lab: &Lab) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::{pem::PemObject as _, CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(lab.server_cert_file())
        .expect("server certificate")
        .collect::<Result<_, _>>()
        .expect("server certificate");
    let key = PrivateKeyDer::from_pem_file(lab.server_key_file()).expect("server key");
    let server = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config"),
    );
    let listener = lab.in_internet_ns(|| {
        let l = TcpListener::bind(SocketAddr::new(IpAddr::V4(HTTPS), 443)).expect("bind HTTPS");
        deep_backlog(&l);
        l
    });
    for _ in 0..2 {
        let listener = listener.try_clone().expect("clone listener");
        let server = Arc::clone(&server);
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(tcp) = conn else { continue };
                let Ok(tls) = rustls::ServerConnection::new(Arc::clone(&server)) else {
                    continue;
                };
                let mut stream = rustls::StreamOwned::new(tls, tcp);
                let mut buf = [0u8; 64];
                if stream.read(&mut buf).is_ok() {
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                    stream.conn.send_close_notify();
                    let _ = stream.flush();
                }
            }
        });
    }
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(lab.ca_file()).expect("lab CA") {
        roots.add(ca.expect("lab CA")).expect("lab CA");
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Runs `work(thread index)` on `CLIENT_THREADS` threads in the runner namespace; each returns
/// (done, failed). Returns the totals and the seconds taken.
fn in_clients<F>(lab: &Lab, work: F) -> (u64, u64, f64)
where
    F: Fn(usize) -> (u64, u64) + Send + Sync,
{
    let done = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let start = Instant::now();
    lab.in_runner_ns(|| {
        thread::scope(|s| {
            for i in 0..CLIENT_THREADS {
                let (work, done, failed) = (&work, &done, &failed);
                s.spawn(move || {
                    let (d, f) = work(i);
                    done.fetch_add(d, Ordering::Relaxed);
                    failed.fetch_add(f, Ordering::Relaxed);
                });
            }
        });
    });
    (
        done.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64(),
    )
}

/// Sleeps until the `n`th event of a thread paced at `per_s` is due.
fn pace(t0: Instant, n: u64, per_s: Option<f64>) {
    if let Some(r) = per_s {
        let due = Duration::from_secs_f64(n as f64 / r);
        if let Some(wait) = due.checked_sub(t0.elapsed()) {
            thread::sleep(wait);
        }
    }
}

/// Short HTTPS connections from the runner namespace: TCP, TLS handshake, a request, the answer,
/// close.
fn https_connections(lab: &Lab, client: &Arc<rustls::ClientConfig>, time: Duration) -> Measured {
    let (done, failed, secs) = in_clients(lab, |_| {
        let name = rustls::pki_types::ServerName::IpAddress(IpAddr::V4(HTTPS).into());
        let t0 = Instant::now();
        let (mut n, mut failed) = (0u64, 0u64);
        while t0.elapsed() < time {
            let addr = SocketAddr::new(IpAddr::V4(HTTPS), 443);
            let Ok(tcp) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
                failed += 1;
                continue;
            };
            let tls = rustls::ClientConnection::new(Arc::clone(client), name.clone())
                .expect("client connection");
            let mut stream = rustls::StreamOwned::new(tls, tcp);
            let mut buf = [0u8; 256];
            if stream
                .write_all(b"GET / HTTP/1.1\r\nhost: lab\r\n\r\n")
                .is_ok()
                && stream.read(&mut buf).is_ok_and(|n| n > 0)
            {
                n += 1;
            } else {
                failed += 1;
            }
        }
        (n, failed)
    });
    Measured::count(done, failed, secs)
}

/// Bulk TCP throughput with iperf3 to port 443.
fn bulk(lab: &Lab) -> Measured {
    let mut cmd = lab.internet_command("iperf3");
    cmd.args(["-s", "-1", "-B", "198.18.1.51", "-p", "443"])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let mut server = lab.spawn(&mut cmd);
    thread::sleep(Duration::from_millis(300));
    let secs = BULK_PHASE.as_secs().to_string();
    let out = lab.run_in_runner(
        "iperf3",
        &["-c", "198.18.1.51", "-p", "443", "-t", &secs, "-J"],
    );
    let _ = server.wait();
    let report: Value = serde_json::from_slice(&out.stdout).expect("iperf3 -J prints JSON");
    let bps = report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .expect("iperf3 result");
    Measured {
        rate: bps,
        units: report["end"]["sum_received"]["bytes"]
            .as_f64()
            .unwrap_or(bps / 8.0 * BULK_PHASE.as_secs_f64()),
        failed: 0,
    }
}

/// Short plain-TCP connections to :443 from the runner namespace, paced at `rate`/s when given:
/// connect, send, read the answer, close (the client first).
fn connections(lab: &Lab, rate: Option<f64>, time: Duration) -> Measured {
    let per_thread = rate.map(|r| r / CLIENT_THREADS as f64);
    let (done, failed, secs) = in_clients(lab, |_| {
        let t0 = Instant::now();
        let (mut n, mut failed) = (0u64, 0u64);
        while t0.elapsed() < time {
            pace(t0, n + failed, per_thread);
            let addr = SocketAddr::new(IpAddr::V4(SERVER), 443);
            let ok =
                TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok_and(|mut s| {
                    let mut buf = [0u8; 8];
                    s.write_all(b"GET").is_ok() && s.read(&mut buf).is_ok_and(|n| n > 0)
                });
            if ok {
                n += 1;
            } else {
                failed += 1;
            }
        }
        (n, failed)
    });
    Measured::count(done, failed, secs)
}

/// DNS responses per second received from the responder, each client thread keeping
/// `DNS_WINDOW` queries in flight, or paced at `rate`/s. `unique`: a new name in every query;
/// else the `flood::REPEATED_NAMES` in turn.
fn dns(lab: &Lab, unique: bool, rate: Option<f64>, time: Duration) -> Measured {
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let per_thread = rate.map(|r| r / CLIENT_THREADS as f64);
    // Names stay unique across phases and runs.
    let stamp = CALLS.fetch_add(1, Ordering::Relaxed) ^ (std::process::id() << 8);
    let (done, failed, secs) = in_clients(lab, |i| {
        let sock = UdpSocket::bind("0.0.0.0:0").expect("udp");
        sock.connect(SocketAddr::new(IpAddr::V4(SERVER), 53))
            .expect("connect");
        big_rcvbuf(sock.as_raw_fd());
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let t0 = Instant::now();
        let (mut sent, mut got, mut lost) = (0u64, 0u64, 0u64);
        let mut query = Vec::with_capacity(128);
        let mut buf = [0u8; 600];
        let mut name = String::with_capacity(64);
        while t0.elapsed() < time {
            let mut in_flight = 0u64;
            for _ in 0..DNS_WINDOW {
                pace(t0, sent, per_thread);
                name.clear();
                if unique {
                    use std::fmt::Write as _;
                    let _ = write!(name, "u{sent}-{i}-{stamp:x}.flood.example");
                } else {
                    name.push_str(
                        flood::REPEATED_NAMES[sent as usize % flood::REPEATED_NAMES.len()],
                    );
                }
                flood::query(sent as u16, &name, &mut query);
                if sock.send(&query).is_ok() {
                    sent += 1;
                    in_flight += 1;
                }
            }
            while in_flight > 0 {
                if sock.recv(&mut buf).is_err() {
                    // Not answered within the timeout: counted, and a new window starts.
                    lost += in_flight;
                    break;
                }
                got += 1;
                in_flight -= 1;
            }
        }
        (got, lost)
    });
    Measured::count(done, failed, secs)
}

/// Whether a tool started is ready (given its output file).
type Ready = Box<dyn Fn(&Path) -> bool>;

/// A tool running during a phase: its process, and where its output goes.
struct Running {
    tool: Tool,
    child: Child,
    out: PathBuf,
    /// The peak resident memory until the tool was ready (the observer's loading of its
    /// programs), in kB; the peak is reset there, so the one at exit is that of the work.
    start_peak_kb: u64,
}

impl Drop for Running {
    /// A bench that fails half-way leaves no observer attached to the root cgroup.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: signalling our own child, still running (not reaped).
            unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
            let _ = self.child.wait();
        }
    }
}

/// What a tool said when it stopped.
#[derive(Default)]
struct Stopped {
    /// The observer's lost kernel events.
    lost: Option<u64>,
    /// The observer's kernel events.
    events: Option<u64>,
    /// DNS exchanges the observer's kernel side counted instead of copying.
    repeats: Option<u64>,
    /// tcpdump: packets captured.
    captured: Option<u64>,
    /// tcpdump: packets dropped by the kernel.
    dropped: Option<u64>,
    /// The peak resident memory from the tool being ready to its exit (the observer's report
    /// written included, to within the last 10 ms), in kB.
    peak_rss_kb: Option<u64>,
}

fn find_bandwhich() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("BENCH_BANDWHICH").map(PathBuf::from),
        Some(PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../target/tools/bin/bandwhich"
        ))),
    ];
    candidates.into_iter().flatten().find(|p| p.exists())
}

impl Running {
    fn start(tool: Tool, lab: &Lab, dir: &Path, bandwhich: Option<&Path>) -> Option<Self> {
        let out = dir.join(format!("{}.out", tool.name()));
        let (child, ready): (Child, Ready) = match tool {
            Tool::None => return None,
            Tool::Observer | Tool::ObserverRepeats => {
                let log = dir.join("observer.log");
                let child = Command::new(observer_bin())
                    .args(["record", "--ports", "443", "--out"])
                    .arg(&out)
                    .args(
                        (tool == Tool::ObserverRepeats)
                            .then_some("--count-dns-repeats")
                            .as_slice(),
                    )
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(&log).expect("observer log"))
                    .spawn()
                    .expect("start the observer");
                (
                    child,
                    Box::new(move |_: &Path| {
                        let started = std::fs::read_to_string(&log)
                            .is_ok_and(|s| s.contains("observer: recording"));
                        if started {
                            // A probe that did not attach makes every figure a lie.
                            let warnings = std::fs::read_to_string(&log).unwrap_or_default();
                            assert!(
                                !warnings.contains("not attached"),
                                "the observer did not attach everything:\n{warnings}"
                            );
                        }
                        started
                    }),
                )
            }
            Tool::Tcpdump => {
                let log = dir.join("tcpdump.log");
                let mut cmd = lab.runner_command("tcpdump");
                cmd.args([
                    "-i",
                    lab.runner_veth(),
                    "-n",
                    "-s",
                    "600",
                    "-B",
                    "4096",
                    "-w",
                ])
                .arg(&out)
                .arg(TCPDUMP_FILTER)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("tcpdump log"));
                let child = lab.spawn(&mut cmd);
                (
                    child,
                    Box::new(move |_: &Path| {
                        std::fs::read_to_string(&log).is_ok_and(|s| s.contains("listening on"))
                    }),
                )
            }
            Tool::Watch => {
                let child = Command::new(observer_bin())
                    .args(["watch", "--json", "--ports", "443"])
                    .stdout(std::fs::File::create(&out).expect("create output"))
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start observer watch");
                (
                    child,
                    Box::new(|out: &Path| {
                        std::fs::read_to_string(out).is_ok_and(|s| s.contains("capture_started"))
                    }),
                )
            }
            Tool::Bandwhich => {
                let mut cmd = lab.runner_command(bandwhich?.to_str()?);
                cmd.args(["-i", lab.runner_veth(), "--raw", "-n"])
                    .stdin(Stdio::null())
                    .stdout(std::fs::File::create(&out).expect("bandwhich output"))
                    .stderr(Stdio::null());
                let child = lab.spawn(&mut cmd);
                (
                    child,
                    // bandwhich prints nothing until traffic flows: give it its start-up time.
                    Box::new(|_: &Path| true),
                )
            }
        };
        let mut running = Self {
            tool,
            child,
            out: out.clone(),
            start_peak_kb: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready(&out) {
            assert!(Instant::now() < deadline, "{} did not start", tool.name());
            thread::sleep(Duration::from_millis(50));
        }
        running.start_peak_kb = running.peak_rss_kb();
        // Writing 5 resets the peak to the current resident memory (Linux 4.0 and later).
        if let Err(e) = std::fs::write(format!("/proc/{}/clear_refs", running.child.id()), "5") {
            eprintln!(
                "cannot reset {}'s peak memory ({e}): its peak includes its start",
                tool.name()
            );
        }
        if tool == Tool::Bandwhich {
            thread::sleep(Duration::from_secs(1));
        }
        Some(running)
    }

    /// User + system CPU seconds so far.
    fn cpu_s(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
            .sum();
        // SAFETY: sysconf has no preconditions.
        ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
    }

    fn peak_rss_kb(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    fn stop(mut self) -> Stopped {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        // A tool that ignores SIGINT (bandwhich, started from a shell that ignores it for
        // background jobs) is killed after 10 s rather than waited for forever.
        // The peak is read until the tool exits (the observer writes its report then). Not
        // the child's `ru_maxrss`: that counts the memory of the bench itself, which the child
        // was forked from.
        let mut peak_kb = self.peak_rss_kb();
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
            peak_kb = peak_kb.max(self.peak_rss_kb());
        }
        if let Ok(None) = self.child.try_wait() {
            eprintln!("{} ignored SIGINT: killed", self.tool.name());
            // SAFETY: signalling our own child, still running (not reaped).
            unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        }
        let _ = self.child.wait();
        let mut stopped = Stopped {
            peak_rss_kb: Some(peak_kb),
            ..Stopped::default()
        };
        match self.tool {
            Tool::Observer | Tool::ObserverRepeats => {
                let report: Value = std::fs::read(&self.out)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
                let c = &report["capture"];
                stopped.lost = Some(c["lost_events"].as_u64().unwrap_or(u64::MAX));
                stopped.events = c["events"].as_u64();
                stopped.repeats = Some(c["dns_repeats"].as_u64().unwrap_or(0));
                let _ = std::fs::remove_file(self.out.with_file_name("observer.log"));
            }
            Tool::Tcpdump => {
                let log = self.out.with_file_name("tcpdump.log");
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let count = |what: &str| {
                    text.lines()
                        .find(|l| l.ends_with(what))
                        .and_then(|l| l.split_whitespace().next()?.parse().ok())
                };
                stopped.captured = count("packets captured");
                stopped.dropped = count("packets dropped by kernel");
                let _ = std::fs::remove_file(log);
            }
            Tool::Bandwhich | Tool::Watch | Tool::None => {}
        }
        let _ = std::fs::remove_file(&self.out);
        stopped
    }
}
