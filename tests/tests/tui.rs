//! `observer tui` end to end: the real binary in a real terminal (tmux), watching real traffic in
//! the lab: a sustained download from api.github.com, an undeclared registry, a refused ghcr.io
//! and a download held below the 70 kbit/s minimum. The screen must show the right hosts,
//! statuses and non-zero rates; `e` writes the report; `q` exits with status 0, the process is
//! gone and the terminal is restored (raw mode off, alternate screen left).

use std::{
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use observer_tests::{observer::observer_bin, require_root_or_skip, Lab, LabConfig};

const API: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);
const NPM: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 14);
const GHCR: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 16);
const OBJECTS: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 30);

/// A tmux server of our own (its own socket), killed with everything in it on every path:
/// what survives the hang-up and mentions `marker` in its command line is killed too.
struct Tmux {
    socket: String,
    session: String,
    marker: String,
}

impl Tmux {
    fn start(width: u16, height: u16, command: &str, marker: &str) -> Self {
        let tmux = Self {
            socket: format!("obs-tui-{}", std::process::id()),
            session: "tui".to_owned(),
            marker: marker.to_owned(),
        };
        let out = tmux
            .command()
            .args(["new-session", "-d", "-s", &tmux.session])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .arg(command)
            .output()
            .expect("tmux runs (Debian package tmux)");
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmux
    }

    fn command(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]).stdin(Stdio::null());
        c
    }

    /// The screen, as text.
    fn screen(&self) -> String {
        let out = self
            .command()
            .args(["capture-pane", "-p", "-t", &self.session])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        let status = self
            .command()
            .args(["send-keys", "-t", &self.session, keys])
            .status()
            .expect("tmux send-keys");
        assert!(status.success(), "tmux send-keys {keys}");
    }

    /// A pane format variable (`alternate_on`, `cursor_flag`, ...), if the session is there.
    fn format(&self, variable: &str) -> Option<String> {
        let out = self
            .command()
            .args(["display-message", "-p", "-t", &self.session])
            .arg(format!("#{{{variable}}}"))
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    fn alive(&self) -> bool {
        self.command()
            .args(["has-session", "-t", &self.session])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Waits until the screen satisfies `ok`; the last screen either way.
    fn wait_for(&self, timeout: Duration, ok: impl Fn(&str) -> bool) -> (bool, String) {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if ok(&screen) {
                return (true, screen);
            }
            if Instant::now() >= deadline {
                return (false, screen);
            }
            thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // SIGHUP to what runs in it: the observer quits on it.
        let _ = self
            .command()
            .arg("kill-server")
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !processes_mentioning(&self.marker).is_empty() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(100));
        }
        for pid in processes_mentioning(&self.marker) {
            eprintln!("killing process {pid}, left behind by the tmux session");
            if let Ok(pid) = i32::try_from(pid) {
                // SAFETY: signalling a process this test started (its command line names the
                // test's own directory).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// Processes whose command line mentions `marker` (the test's own directory).
fn processes_mentioning(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(marker) {
            found.push(pid);
        }
    }
    found
}

/// The tokens of the table row of `name`, from the status before it (the name may be cut with
/// an ellipsis in a narrow column).
fn row<'a>(screen: &'a str, name: &str) -> Option<Vec<&'a str>> {
    let is_name = |t: &str| {
        t == name
            || t.strip_suffix('…')
                .is_some_and(|cut| cut.len() >= 8 && name.starts_with(cut))
    };
    screen.lines().find_map(|line| {
        let tokens: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || c == '║' || c == '│' || c == '▶')
            .filter(|t| !t.is_empty())
            .collect();
        let at = tokens.iter().position(|t| is_name(t))?;
        Some(tokens[at.saturating_sub(1)..].to_vec())
    })
}

/// A curl in the runner namespace, in the background.
fn download(lab: &Lab, url: &str) -> std::process::Child {
    let mut cmd = lab.runner_command("curl");
    cmd.args(["-q", "-sS", "-o", "/dev/null", "--noproxy", "*", "--cacert"])
        .arg(lab.ca_file())
        .args(["--max-time", "60", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    lab.spawn(&mut cmd)
}

#[test]
fn the_tui_shows_a_live_runner_and_quits_cleanly() {
    if !require_root_or_skip() {
        return;
    }
    let bin = observer_bin();
    assert!(
        bin.exists(),
        "observer binary {} not found: build it with `cargo xtask build` or set OBSERVER_BIN",
        bin.display()
    );
    let started = Instant::now();
    let lab = LabConfig::new("tui")
        .a("api.github.com", API)
        .a("registry.npmjs.org", NPM)
        .a("ghcr.io", GHCR)
        .a("objects.githubusercontent.com", OBJECTS)
        .tls_server(IpAddr::V4(API))
        .tls_server(IpAddr::V4(NPM))
        .tls_server(IpAddr::V4(OBJECTS))
        .host_addr(IpAddr::V4(GHCR))
        .start();
    let dir: PathBuf = lab.work_dir().join("tui");
    std::fs::create_dir_all(&dir).expect("a directory for the exports");
    let status_file = dir.join("exit-status");
    let stty_file = dir.join("stty-after");
    // After the observer: its exit status, the terminal's modes, a moment to look at the pane.
    let command = format!(
        "cd {dir} && {bin} tui --export-dir {dir}; echo $? > {status}; stty -a > {stty}; sleep 3",
        dir = dir.display(),
        bin = bin.display(),
        status = status_file.display(),
        stty = stty_file.display(),
    );
    let tmux = Tmux::start(160, 48, &command, &dir.display().to_string());

    let (up, screen) = tmux.wait_for(Duration::from_secs(30), |s| s.contains("LIVE"));
    assert!(up, "the TUI did not start within 30 s:\n{screen}");
    assert_eq!(tmux.format("alternate_on").as_deref(), Some("1"));
    let live_at = started.elapsed();

    // An undeclared registry and a refused port; then, shaped to 2 Mbit/s (tc tbf), a
    // sustained download from an essential host (3 MB, about 12 s).
    lab.curl("https://registry.npmjs.org/bytes/3000", &[])
        .expect_status(200);
    let refused = lab.curl("https://ghcr.io/", &["--max-time", "5"]);
    assert_eq!(refused.exit_code, 7, "ghcr.io refuses: {refused:?}");
    lab.throttle_downloads("2mbit", "16kb", "500ms");
    let mut api = download(&lab, "https://api.github.com/bytes/3000000");

    let (seen, screen) = tmux.wait_for(Duration::from_secs(10), |s| {
        let moving = |name: &str, column: usize| {
            row(s, name).is_some_and(|r| r.get(column).is_some_and(|v| *v != "0"))
        };
        let api_ok = row(s, "api.github.com").is_some_and(|r| r[0] == "ok");
        let ghcr_blocked =
            row(s, "ghcr.io").is_some_and(|r| r[0] == "BLOCKED" && r.contains(&"tcp_reset"));
        let npm_undeclared = row(s, "registry.npmjs.org").is_some_and(|r| r[0] == "ok");
        // ↓NOW: after status, group, reach, blocked; after status, name, flows for hosts.
        moving("essential*", 4)
            && moving("api.github.com", 3)
            && api_ok
            && ghcr_blocked
            && npm_undeclared
    });
    assert!(
        seen,
        "expected api.github.com ok and downloading (essential ↓NOW not 0), ghcr.io BLOCKED \
         (tcp_reset), registry.npmjs.org undeclared:\n{screen}"
    );
    assert!(
        screen.contains("RUNNER CAN WORK"),
        "the verdict in the header:\n{screen}"
    );
    let essential = row(&screen, "essential*").expect("the essential row");
    let seen_at = started.elapsed();
    let _ = api.wait();

    // Then shaped to 40 kbit/s, below the 70 kbit/s minimum: once the download ends, its host
    // is degraded, with the reason.
    let tc = lab
        .internet_command("tc")
        .args(["qdisc", "change", "dev", lab.internet_veth(), "root", "tbf"])
        .args(["rate", "40kbit", "burst", "4kb", "latency", "500ms"])
        .status()
        .expect("tc runs");
    assert!(tc.success(), "tc qdisc change");
    let mut slow = download(&lab, "https://objects.githubusercontent.com/bytes/40000");
    let _ = slow.wait();
    let (slow_seen, screen) = tmux.wait_for(Duration::from_secs(10), |s| {
        row(s, "objects.githubusercontent.com")
            .is_some_and(|r| r[0] == "DEGRADED" && r.contains(&"slow_throughput"))
    });
    assert!(
        slow_seen,
        "objects.githubusercontent.com should be DEGRADED (slow_throughput):\n{screen}"
    );
    assert!(
        screen.contains("objects.githubusercontent.com: ok → degraded (slow"),
        "the event log says so too:\n{screen}"
    );

    // `e` writes the report where the screen says.
    tmux.keys("e");
    let (written, screen) = tmux.wait_for(Duration::from_secs(10), |s| s.contains("(report)"));
    assert!(written, "no export message:\n{screen}");
    let report = std::fs::read_dir(&dir)
        .expect("the export directory")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("observer-report-") && n.ends_with(".json"))
        })
        .expect("a report file");
    let name = report.file_name().and_then(|n| n.to_str()).unwrap_or("");
    assert!(
        screen.contains(name),
        "the file name is on screen:\n{screen}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("the report"))
            .expect("the report is JSON");
    let hosts = json["hosts"].as_array().expect("hosts");
    let ghcr = hosts
        .iter()
        .find(|h| h["name"] == "ghcr.io")
        .expect("ghcr.io");
    assert_eq!(ghcr["status"], "blocked", "{ghcr:#}");

    // `q`: the observer exits 0, the terminal is restored, the session ends, nothing is left.
    tmux.keys("q");
    let deadline = Instant::now() + Duration::from_secs(15);
    // The file exists as soon as the shell opens it, its line a moment later.
    let mut status = String::new();
    while !status.contains('\n') && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
        status = std::fs::read_to_string(&status_file).unwrap_or_default();
    }
    assert_eq!(
        status.trim(),
        "0",
        "exit status; screen:\n{}",
        tmux.screen()
    );
    assert_eq!(
        tmux.format("alternate_on").as_deref(),
        Some("0"),
        "the alternate screen was left"
    );
    assert_eq!(
        tmux.format("cursor_flag").as_deref(),
        Some("1"),
        "the cursor is shown"
    );
    // The shell writes the status, then runs `stty -a`: its output may come a moment later.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stty = String::new();
    while Instant::now() < deadline {
        stty = std::fs::read_to_string(&stty_file).unwrap_or_default();
        if stty.contains('\n') {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert!(
        stty.contains(" icanon") && stty.contains(" echo "),
        "raw mode was left: {stty}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while tmux.alive() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    assert!(!tmux.alive(), "the tmux session ended with the command");
    let left = processes_mentioning(&dir.display().to_string());
    assert!(left.is_empty(), "processes left behind: {left:?}");
    eprintln!(
        "tui e2e: live after {live_at:?}, hosts and rates on screen after {seen_at:?}, \
         done after {:?}; essential row {essential:?}",
        started.elapsed()
    );
}

/// An SSH session that drops hangs the terminal up: the TUI must end by itself (the kernel's
/// SIGHUP), not linger with its probes attached. A replay is enough to show it.
#[test]
fn the_tui_ends_when_its_terminal_hangs_up() {
    if !require_root_or_skip() {
        return;
    }
    let bin = observer_bin();
    assert!(bin.exists(), "observer binary {} not found", bin.display());
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../observer/tests/fixtures/runner-workload.jsonl"
    );
    let dir = std::env::temp_dir().join(format!("obs-tui-hangup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let marker = dir.display().to_string();
    let command = format!(
        "{} tui --replay {fixture} --speed 0 --export-dir {marker}",
        bin.display()
    );
    let tmux = Tmux::start(80, 24, &command, &marker);
    let (done, screen) = tmux.wait_for(Duration::from_secs(20), |s| s.contains("replay done"));
    assert!(done, "the replay did not finish:\n{screen}");
    assert!(screen.contains("RUNNER CAN WORK"), "{screen}");
    assert!(
        !processes_mentioning(&marker).is_empty(),
        "the observer runs (under tmux's shell)"
    );
    let _ = tmux
        .command()
        .arg("kill-server")
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_mentioning(&marker).is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    let left = processes_mentioning(&marker);
    drop(tmux);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        left.is_empty(),
        "the observer outlived its terminal: {left:?}"
    );
}
