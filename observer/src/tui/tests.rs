//! Frames of the TUI, snapshotted: each panel in 80x24 and the dashboard in 160x48, for the
//! recorded runner workload (blocked features, undeclared destinations), an essential host
//! blocked, a degraded runner (a slow download, a long poll cut), a runner behind an HTTP proxy
//! (and flows named by their SNI) and nothing seen yet. States
//! are built by feeding events to a correlator; "now" is the events' time, so every frame is
//! the same on every run. Snapshots live in observer/tests/snapshots/tui_*.snap.

use std::path::PathBuf;

use ratatui::{
    backend::TestBackend,
    buffer::Buffer,
    crossterm::event::{KeyCode, KeyEvent, KeyModifiers},
    style::Color,
    Terminal,
};

use crate::{
    capture::record::Process,
    catalog::Catalog,
    pipeline::correlate::{
        tests::{closed, hello, observe_answered, opened, payload, response},
        Correlator,
    },
    pipeline::events::{ClosedBy, FlowClosed, Observed, Outcome},
    pipeline::hello::{FirstReceived, FirstSent},
};

use super::{
    app::{App, Mode, Msg, Panel, SourceState, SourceStatus},
    ui,
    view::{self, SECOND},
};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/runner-workload.jsonl"
);
const T0: u64 = 1_795_766_400 * SECOND;

macro_rules! snapshot {
    ($name:expr, $frame:expr) => {
        insta::with_settings!({
            snapshot_path => "../../tests/snapshots",
            prepend_module_to_snapshot => false,
            omit_expression => true,
        }, {
            insta::assert_snapshot!($name, $frame);
        })
    };
}

fn frame(app: &App, width: u16, height: u16) -> String {
    buffer(app, width, height).0
}

fn buffer(app: &App, width: u16, height: u16) -> (String, Buffer) {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    terminal
        .draw(|f| ui::draw(f, app))
        .expect("a frame is drawn");
    let text = terminal.backend().to_string();
    (text, terminal.backend().buffer().clone())
}

fn key(app: &mut App, code: KeyCode) {
    app.update(Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)));
}

/// Feeds events (in their order) to the correlator and shows the App a view every `step` from
/// `from` to `until`, as the UI loop does at each tick.
fn play(
    correlator: &mut Correlator,
    events: Vec<(u64, Observed)>,
    mode: Mode,
    (from, until, step): (u64, u64, u64),
) -> App {
    let mut app = App::new(mode, false, PathBuf::from("."), from);
    let mut events = events.into_iter().peekable();
    let mut fed = 0;
    let mut t = from;
    loop {
        while let Some((ts, mut o)) = events.next_if(|(ts, _)| *ts <= t) {
            observe_answered(correlator, ts, &mut o);
            fed += 1;
        }
        app.update(Msg::View(Box::new(view::build(correlator, t, fed))));
        if t >= until {
            break;
        }
        t = (t + step).min(until);
    }
    app
}

/// The recorded workload, replayed to its end at 4 views a second.
fn workload() -> App {
    let mut c = Correlator::new(Catalog::builtin());
    let text = std::fs::read_to_string(FIXTURE).expect("fixture");
    let events: Vec<(u64, Observed)> = text
        .lines()
        .map(|l| crate::eventlog::parse_line(l).expect("a fixture line"))
        .collect();
    let first = events.iter().map(|e| e.0).min().expect("events");
    let last = events.iter().map(|e| e.0).max().expect("events");
    let mode = Mode::Replay {
        source: "runner-workload.jsonl".into(),
        speed: 1.0,
    };
    let mut app = play(&mut c, events, mode, (first, last, SECOND / 4));
    app.update(Msg::Source(SourceStatus {
        state: SourceState::Finished,
        progress: Some(1.0),
    }));
    app
}

/// A live capture of `events` (after its start at T0), a view a second until `until`.
fn live(mut events: Vec<(u64, Observed)>, until: u64) -> App {
    events.insert(0, (T0, started()));
    events.sort_by_key(|(ts, _)| *ts);
    let mut c = Correlator::new(Catalog::builtin());
    play(&mut c, events, Mode::Live, (T0, until, SECOND))
}

fn started() -> Observed {
    Observed::CaptureStarted {
        cgroup: "/sys/fs/cgroup".into(),
        ports: vec![443],
        all_ports: false,
        probes: vec![crate::capture::ProbeStatus {
            program: "tcp_set_state".into(),
            hook: "tracepoint sock/inet_sock_set_state".into(),
            attached: true,
            error: None,
        }],
        sources: Vec::new(),
        proxies: Vec::new(),
    }
}

fn runner() -> Process {
    Process {
        pid: 700,
        comm: "Runner.Listener".into(),
        cgroup_id: 3,
        job: None,
    }
}

/// github.com answers with a reset to the TLS hello and api.github.com refuses: the runner
/// cannot work.
fn blocked() -> App {
    let s = SECOND;
    let events = vec![
        (
            T0 + s,
            response("github.com", &[("github.com", "A", "198.18.1.1")]),
        ),
        (
            T0 + s,
            response("api.github.com", &[("api.github.com", "A", "198.18.1.10")]),
        ),
        (T0 + 2 * s, opened(1, "198.18.1.1:443")),
        (T0 + 2 * s, closed(1, "198.18.1.1:443", true, 517, 0)),
        (T0 + 3 * s, opened(2, "198.18.1.10:443")),
        (T0 + 3 * s, closed(2, "198.18.1.10:443", false, 0, 0)),
        (T0 + 4 * s, opened(3, "198.18.1.10:443")),
        (T0 + 4 * s, closed(3, "198.18.1.10:443", false, 0, 0)),
        (
            T0 + 5 * s,
            response(
                "registry.npmjs.org",
                &[("registry.npmjs.org", "A", "198.18.2.1")],
            ),
        ),
        (T0 + 5 * s, opened(4, "198.18.2.1:443")),
        (T0 + 6 * s, closed(4, "198.18.2.1:443", true, 700, 90_000)),
    ];
    live(events, T0 + 7 * s)
}

fn progress(id: u64, dst: &str, sent: u64, received: u64) -> Observed {
    Observed::FlowProgress {
        flow_id: id,
        dst: dst.parse().expect("address"),
        bytes_sent: sent,
        bytes_received: received,
        interval_ms: 1000.0,
        sent_bps: 0.0,
        received_bps: 0.0,
        sent_idle_ms: None,
        received_idle_ms: None,
    }
}

/// The runner works, badly: a download at 40 kbit/s from objects.githubusercontent.com, a long
/// poll cut after 12 s idle, and a fast download from codeload still going.
fn degraded() -> App {
    let s = SECOND;
    let objects = "198.18.1.30:443";
    let pipelines = "198.18.1.12:443";
    let codeload = "198.18.1.13:443";
    let mut events = vec![
        (
            T0 + s,
            response(
                "objects.githubusercontent.com",
                &[("objects.githubusercontent.com", "A", "198.18.1.30")],
            ),
        ),
        (
            T0 + s,
            response(
                "pipelines.actions.githubusercontent.com",
                &[
                    (
                        "pipelines.actions.githubusercontent.com",
                        "CNAME",
                        "star-1.l-msedge.net",
                    ),
                    ("star-1.l-msedge.net", "A", "198.18.1.12"),
                ],
            ),
        ),
        (
            T0 + s,
            response(
                "codeload.github.com",
                &[("codeload.github.com", "A", "198.18.1.13")],
            ),
        ),
        (T0 + s, opened(1, objects)),
        (
            T0 + s,
            Observed::FlowEstablished {
                flow_id: 1,
                process: runner(),
                src: "198.18.0.1:40000".parse().expect("address"),
                dst: objects.parse().expect("address"),
                connect_ms: 1.0,
                destination: None,
            },
        ),
        (
            T0 + s,
            Observed::FlowOpened {
                flow_id: 2,
                process: runner(),
                src: "198.18.0.1:0".parse().expect("address"),
                dst: pipelines.parse().expect("address"),
                destination: None,
                adopted: false,
            },
        ),
    ];
    // 5 kB a second for 20 s: 40 kbit/s, below the 70 kbit/s minimum.
    for k in 1..=20 {
        events.push((T0 + (1 + k) * s, progress(1, objects, 600, 5_000 * k)));
    }
    events.push((T0 + 22 * s, closed(1, objects, true, 600, 100_000)));
    events.push((T0 + 2 * s, progress(2, pipelines, 900, 2_000)));
    events.push((
        T0 + 14 * s,
        Observed::FlowClosed(Box::new(FlowClosed {
            flow_id: 2,
            process: runner(),
            src: "198.18.0.1:40100".parse().expect("address"),
            dst: pipelines.parse().expect("address"),
            destination: None,
            adopted: false,
            outcome: Outcome::Closed,
            closed_by: Some(ClosedBy::Peer),
            error: None,
            established: true,
            rst_received: false,
            syn_retransmits: 0,
            retransmits: 0,
            bytes_sent: 900,
            bytes_received: 2_000,
            connect_ms: Some(1.0),
            duration_ms: 13_000.0,
            idle_ms: Some(12_000.0),
            since_poll_ms: 0.0,
            sent_idle_ms: None,
            received_idle_ms: None,
        })),
    ));
    // codeload: 250 kB a second (2 Mbit/s) from 18 s on, still open.
    events.push((T0 + 17 * s, opened(3, codeload)));
    events.push((
        T0 + 17 * s,
        Observed::FlowEstablished {
            flow_id: 3,
            process: runner(),
            src: "198.18.0.1:40200".parse().expect("address"),
            dst: codeload.parse().expect("address"),
            connect_ms: 1.0,
            destination: None,
        },
    ));
    for k in 1..=6 {
        events.push((T0 + (17 + k) * s, progress(3, codeload, 800, 250_000 * k)));
    }
    live(events, T0 + 23 * s)
}

fn empty() -> App {
    live(Vec::new(), T0)
}

fn focus(app: &mut App, panel: Panel) {
    let n = char::from(b'1' + u8::try_from(panel.index()).expect("five panels"));
    key(app, KeyCode::Char(n));
}

#[test]
fn workload_panels_in_80x24() {
    let mut app = workload();
    for panel in Panel::ALL {
        focus(&mut app, panel);
        let name = format!("tui_workload_{}_80x24", panel.title().to_lowercase());
        snapshot!(name, frame(&app, 80, 24));
    }
}

#[test]
fn workload_dashboard_in_160x48() {
    let mut app = workload();
    focus(&mut app, Panel::Hosts);
    snapshot!("tui_workload_dashboard_160x48", frame(&app, 160, 48));
}

#[test]
fn blocked_runner() {
    let mut app = blocked();
    snapshot!("tui_blocked_groups_80x24", frame(&app, 80, 24));
    focus(&mut app, Panel::Hosts);
    snapshot!("tui_blocked_hosts_80x24", frame(&app, 80, 24));
    snapshot!("tui_blocked_dashboard_160x48", frame(&app, 160, 48));
    key(&mut app, KeyCode::Enter);
    snapshot!("tui_blocked_host_zoomed_80x24", frame(&app, 80, 24));
}

#[test]
fn degraded_runner() {
    let mut app = degraded();
    snapshot!("tui_degraded_groups_80x24", frame(&app, 80, 24));
    focus(&mut app, Panel::Hosts);
    snapshot!("tui_degraded_hosts_80x24", frame(&app, 80, 24));
    focus(&mut app, Panel::Flows);
    snapshot!("tui_degraded_flows_80x24", frame(&app, 80, 24));
    focus(&mut app, Panel::Groups);
    snapshot!("tui_degraded_dashboard_160x48", frame(&app, 160, 48));
}

#[test]
fn nothing_seen_yet() {
    let app = empty();
    snapshot!("tui_empty_groups_80x24", frame(&app, 80, 24));
    snapshot!("tui_empty_dashboard_160x48", frame(&app, 160, 48));
}

#[test]
fn help_and_filter() {
    let mut app = workload();
    key(&mut app, KeyCode::Char('?'));
    snapshot!("tui_help_80x24", frame(&app, 80, 24));
    key(&mut app, KeyCode::Esc);
    focus(&mut app, Panel::Flows);
    key(&mut app, KeyCode::Char('/'));
    for c in "ghcr".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    snapshot!("tui_filter_flows_80x24", frame(&app, 80, 24));
}

#[test]
fn the_screen_reads_the_same_without_colour() {
    let mono = blocked();
    let mut colour = blocked();
    colour.colour = true;
    let (mono_text, mono_buffer) = buffer(&mono, 80, 24);
    let (colour_text, colour_buffer) = buffer(&colour, 80, 24);
    assert_eq!(mono_text, colour_text, "colour changes no character");
    let colours = |b: &Buffer| {
        b.content()
            .iter()
            .filter(|c| !matches!(c.fg, Color::Reset))
            .count()
    };
    assert_eq!(colours(&mono_buffer), 0, "NO_COLOR: no colour at all");
    assert!(colours(&colour_buffer) > 0);
    assert!(mono_text.contains("BLOCKED") && mono_text.contains("ESSENTIAL HOSTS BLOCKED"));
}

#[test]
fn small_and_odd_sizes_do_not_panic() {
    let mut app = degraded();
    for (w, h) in [
        (1, 1),
        (39, 11),
        (40, 12),
        (80, 24),
        (100, 30),
        (140, 40),
        (300, 90),
    ] {
        for panel in Panel::ALL {
            focus(&mut app, panel);
            let text = frame(&app, w, h);
            assert_eq!(text.lines().count(), usize::from(h));
        }
    }
    assert!(frame(&app, 30, 8).contains("needs at least"));
}

#[test]
fn an_adopted_flow_says_when_it_was_first_seen() {
    let s = 1_000_000_000;
    let broker = "198.18.1.20:443";
    let mut app = live(
        vec![
            (
                T0 + s,
                Observed::FlowOpened {
                    flow_id: 1,
                    process: runner(),
                    src: "198.18.0.1:40000".parse().expect("address"),
                    dst: broker.parse().expect("address"),
                    destination: None,
                    adopted: true,
                },
            ),
            (T0 + 2 * s, progress(1, broker, 700, 3_000)),
        ],
        T0 + 3 * s,
    );
    focus(&mut app, Panel::Flows);
    key(&mut app, KeyCode::Enter);
    let screen = frame(&app, 160, 48);
    assert!(
        screen.contains("connected before the capture, seen from"),
        "{screen}"
    );
    assert!(!screen.contains("established +"), "{screen}");
}

#[test]
fn a_flow_s_details_name_its_container_and_the_filter_finds_it() {
    let s = 1_000_000_000;
    let id = "293f758723d0c7a1e4b5f6a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f7a8b";
    let mut in_container = runner();
    in_container.comm = "nc".into();
    in_container.cgroup_id = 9;
    let flow = |flow_id: u64, process: Process| Observed::FlowOpened {
        flow_id,
        process,
        src: "198.18.0.1:40000".parse().expect("address"),
        dst: "198.18.1.20:443".parse().expect("address"),
        destination: None,
        adopted: false,
    };
    let mut app = live(
        vec![
            (T0 + s, flow(1, in_container)),
            (T0 + s, flow(2, runner())),
            (
                T0 + s,
                Observed::CgroupSeen {
                    cgroup_id: 9,
                    workload: crate::capture::cgroups::classify(&format!("/docker/{id}")),
                },
            ),
            (
                T0 + s,
                Observed::CgroupSeen {
                    cgroup_id: 3,
                    workload: crate::capture::cgroups::classify("/"),
                },
            ),
        ],
        T0 + 2 * s,
    );
    focus(&mut app, Panel::Flows);
    filter(&mut app, "293f7587");
    key(&mut app, KeyCode::Enter);
    let screen = frame(&app, 160, 48);
    assert!(
        screen.contains(&format!("workload docker 293f758723d0 (/docker/{id})")),
        "{screen}"
    );
    assert!(screen.contains("#1 nc[700]"), "{screen}");
    assert!(
        !screen.contains("Runner.Listener[700]"),
        "only the container's flow: {screen}"
    );
}

#[test]
fn a_slow_hosts_details_show_the_transfer_the_verdict_judged() {
    let mut app = degraded();
    focus(&mut app, Panel::Hosts);
    key(&mut app, KeyCode::Enter);
    let screen = frame(&app, 160, 48);
    let line = screen
        .lines()
        .find(|l| l.contains("transfers"))
        .unwrap_or_else(|| panic!("no transfers line:\n{screen}"));
    assert!(
        line.contains("↓ slowest 40.0 kbit/s (97.7 KiB in 20.0 s, bytes read, #1) of 1"),
        "{line}"
    );
}

#[test]
fn the_header_says_which_needs_this_kernel_serves_by_a_fallback() {
    // Debian 12's 6.1: no send/recv length tracepoints, so bytes are polled and flows open
    // before the capture are adopted at start-up only.
    let caps = crate::capture::kernel_caps::KernelCaps {
        release: "6.1.0-50-amd64".into(),
        tracepoints: [
            "sock/inet_sock_set_state",
            "tcp/tcp_retransmit_skb",
            "tcp/tcp_receive_reset",
            "sock/inet_sk_error_report",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect(),
        tracefs: true,
        btf: true,
        kprobes: true,
    };
    let plan = crate::capture::kernel_caps::plan(&caps, false);
    let Observed::CaptureStarted {
        cgroup,
        ports,
        all_ports,
        probes,
        ..
    } = started()
    else {
        unreachable!("started() is a CaptureStarted");
    };
    let app = live(
        vec![(
            T0,
            Observed::CaptureStarted {
                cgroup,
                ports,
                all_ports,
                probes,
                sources: plan.sources,
                proxies: Vec::new(),
            },
        )],
        T0 + SECOND,
    );
    let screen = frame(&app, 200, 30);
    assert!(
        screen.contains("kernel: bytes polled 1/s, adoption at start only"),
        "{screen}"
    );
    // On a kernel with every source, nothing is said.
    assert!(!frame(&workload(), 200, 30).contains("kernel:"));
}

/// The proxy of [`proxied`], and where it was found.
const PROXY: &str = "198.18.1.5:3128";
const PROXY_SOURCE: &str = "/home/runner/actions-runner/.env (https_proxy)";

/// A runner behind an HTTP proxy: CONNECTs the proxy allowed (api.github.com), refused
/// (codeload.github.com, 403) and wanted credentials for (pkg.actions.githubusercontent.com,
/// 407); beside it, a direct flow named only by its SNI and one whose SNI disagreed with DNS.
fn proxied() -> App {
    let s = SECOND;
    let Observed::CaptureStarted {
        cgroup,
        all_ports,
        probes,
        ..
    } = started()
    else {
        unreachable!("started() is a CaptureStarted");
    };
    let start = Observed::CaptureStarted {
        cgroup,
        ports: vec![443, 3128],
        all_ports,
        probes,
        sources: Vec::new(),
        proxies: vec![crate::proxy::discover::WatchedProxy {
            addr: PROXY.parse().expect("address"),
            url: format!("http://{PROXY}"),
            source: PROXY_SOURCE.into(),
            no_proxy: None,
        }],
    };
    let connect = |host: &str| {
        Some(FirstSent::Connect {
            host: host.into(),
            port: 443,
            credentials: false,
            incomplete: false,
        })
    };
    let status = |code: u16, reason: &str| {
        Some(FirstReceived::HttpStatus {
            code,
            reason: reason.into(),
        })
    };
    let mut events = vec![(T0, start)];
    for (id, host, (code, reason), received) in [
        (1, "api.github.com", (200, "Connection established"), 48_000),
        (2, "codeload.github.com", (403, "Forbidden"), 3_400),
        (
            3,
            "pkg.actions.githubusercontent.com",
            (407, "Proxy Authentication Required"),
            3_800,
        ),
    ] {
        let at = T0 + id * s;
        events.extend([
            (at, opened(id, PROXY)),
            (at, payload(id, PROXY, connect(host), None)),
            (at, payload(id, PROXY, None, status(code, reason))),
            (at + s / 2, closed(id, PROXY, true, 600, received)),
        ]);
    }
    // Direct: an address no DNS answer named, named by its SNI.
    let broker = "198.18.1.12:443";
    events.extend([
        (T0 + 4 * s, opened(4, broker)),
        (
            T0 + 4 * s,
            payload(
                4,
                broker,
                hello("broker.actions.githubusercontent.com"),
                None,
            ),
        ),
        (T0 + 4 * s + s / 2, closed(4, broker, true, 700, 5_000)),
    ]);
    // DNS said objects.githubusercontent.com, the SNI another name.
    let objects = "198.18.1.30:443";
    events.extend([
        (
            T0 + 5 * s,
            response(
                "objects.githubusercontent.com",
                &[("objects.githubusercontent.com", "A", "198.18.1.30")],
            ),
        ),
        (T0 + 5 * s, opened(5, objects)),
        (
            T0 + 5 * s,
            payload(5, objects, hello("front.example.net"), None),
        ),
        (T0 + 6 * s, closed(5, objects, true, 900, 4_000)),
    ]);
    live(events, T0 + 7 * s)
}

/// Types `text` into the filter and keeps it.
fn filter(app: &mut App, text: &str) {
    key(app, KeyCode::Char('/'));
    for c in text.chars() {
        key(app, KeyCode::Char(c));
    }
    key(app, KeyCode::Enter);
}

#[test]
fn a_runner_behind_a_proxy() {
    let mut app = proxied();
    focus(&mut app, Panel::Hosts);
    let hosts = frame(&app, 80, 24);
    // Capture health names the proxy and where it was found, cut short.
    assert!(
        hosts.contains(" · proxy 198.18.1.5:3128 (/home/ru"),
        "{hosts}"
    );
    let header = frame(&app, 200, 24);
    assert!(
        header.contains(" · proxy 198.18.1.5:3128 (/home/runner/actions-ru…) · 5 flows"),
        "{header}"
    );
    assert!(hosts.contains("codeload.github.com via pr"), "{hosts}");
    snapshot!("tui_proxied_hosts_80x24", hosts);
    snapshot!("tui_proxied_dashboard_160x48", frame(&app, 160, 48));
    // Where the column has room, the host row names the proxy.
    let wide = frame(&app, 320, 48);
    assert!(
        wide.contains("codeload.github.com via proxy 198.18.1.5:3128 "),
        "{wide}"
    );

    // The refused host: through which proxy, and the proxy's answer as the evidence.
    filter(&mut app, "codeload");
    key(&mut app, KeyCode::Enter);
    let zoomed = frame(&app, 160, 30);
    for text in [
        "proxy_refused ×1",
        "proxy 198.18.1.5:3128 answered 403 Forbidden to CONNECT",
        "via proxy 198.18.1.5:3128",
        "named by CONNECT",
    ] {
        assert!(zoomed.contains(text), "{text}:\n{zoomed}");
    }
    snapshot!("tui_proxied_host_zoomed_160x30", zoomed);
    key(&mut app, KeyCode::Enter);

    // Its flow: how it was named, what the proxy was asked and answered.
    focus(&mut app, Panel::Flows);
    let flows = frame(&app, 160, 30);
    assert!(
        flows.contains("codeload.github.com via proxy (403)") && flows.contains("proxy_refused"),
        "{flows}"
    );
    key(&mut app, KeyCode::Enter);
    let flow = frame(&app, 120, 30);
    for text in [
        "named by CONNECT to proxy 198.18.1.5:3128",
        "proxy 198.18.1.5:3128 · asked CONNECT codeload.github.com:443 · answered 403 Forbidden",
    ] {
        assert!(flow.contains(text), "{text}:\n{flow}");
    }
    snapshot!("tui_proxied_flow_zoomed_120x30", flow);
    key(&mut app, KeyCode::Enter);

    // The flows named by their SNI: against DNS, and alone.
    // Named by their SNI alone: known by their address (the SNI is their claim, not evidence).
    for (name, addr, named) in [
        (
            "front.example.net",
            "198.18.1.30",
            "named by SNI (DNS said objects.githubusercontent.com)",
        ),
        (
            "broker.actions.githubusercontent.com",
            "198.18.1.12",
            "named by SNI (no DNS answer named the address)",
        ),
    ] {
        key(&mut app, KeyCode::Esc);
        filter(&mut app, name);
        let row = frame(&app, 160, 30);
        assert!(row.contains(&format!("{addr} (SNI)")), "{row}");
        key(&mut app, KeyCode::Enter);
        let zoomed = frame(&app, 160, 30);
        assert!(zoomed.contains(named), "{zoomed}");
        key(&mut app, KeyCode::Enter);
    }
}
