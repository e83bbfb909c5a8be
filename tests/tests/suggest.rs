//! `observer suggest` against the real tools: its nftables output passes `nft -c` and its
//! ipset/iptables script runs, each in a throwaway network namespace (the host's ruleset is
//! never touched); its squid lines pass `squid -k parse`. Then, end to end in the network lab:
//! a recorded workload, the nftables rules suggested from its report applied in the runner's
//! namespace under a default-drop policy, and the same workload still going through while the
//! undeclared name is blocked.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use observer_tests::{
    observer::{observer_bin, Recording},
    require_root_or_skip, LabConfig,
};

const EVENTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../observer/tests/fixtures/runner-workload.jsonl"
);
const REPORT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../observer/tests/fixtures/suggest-report.json"
);

/// The inputs and options every syntax check runs over.
const CASES: [(&str, &str, &[&str]); 6] = [
    ("--events", EVENTS, &[]),
    ("--events", EVENTS, &["--include-undeclared"]),
    (
        "--events",
        EVENTS,
        &["--follow-cnames", "--include-undeclared"],
    ),
    ("--report", REPORT, &[]),
    ("--report", REPORT, &["--include-undeclared"]),
    (
        "--report",
        REPORT,
        &["--follow-cnames", "--include-undeclared"],
    ),
];

/// Runs `observer suggest ARGS` and returns the rules.
fn suggest(args: &[&str]) -> String {
    let bin = observer_bin();
    assert!(
        bin.exists(),
        "observer binary {} not found: build it with `cargo build --release -p observer`",
        bin.display()
    );
    let out = Command::new(&bin)
        .arg("suggest")
        .args(args)
        .output()
        .expect("run observer suggest");
    assert!(
        out.status.success(),
        "observer suggest {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 rules")
}

/// The rules of every case in one format, written to files in a fresh directory.
fn rule_files(format: &str, dir: &Path) -> Vec<(String, PathBuf)> {
    CASES
        .iter()
        .enumerate()
        .map(|(i, (flag, input, options))| {
            let mut args = vec![*flag, *input, "--format", format];
            args.extend(*options);
            let text = suggest(&args);
            let path = dir.join(format!("case{i}.{format}"));
            std::fs::write(&path, &text).expect("write the rules");
            (format!("{args:?}"), path)
        })
        .collect()
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("obs-suggest-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A network namespace of its own, deleted on drop (also when the test panics). Named like the
/// lab's (`obs-TAG-PID-SEQ-run`), so a namespace left by a killed test is swept by the next lab.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Self {
        static SEQ: AtomicU32 = AtomicU32::new(1000);
        let name = format!(
            "obs-{tag}-{}-{}-run",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("run ip netns add");
        assert!(
            out.status.success(),
            "ip netns add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(name)
    }

    fn exec(&self, program: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0, program])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {} {program}: {e}", self.0))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// Whether a program is installed; when it is not, skips (or, under CI, fails: `cargo xtask
/// setup` installs it).
fn have(program: &str, package: &str) -> bool {
    let found = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .any(|dir| Path::new(dir).join(program).exists());
    if found {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none_or(|v| v.is_empty()),
        "{program} is missing and CI is set: install the Debian package {package} (cargo xtask setup)"
    );
    eprintln!("skipping: {program} is missing (Debian package {package})");
    false
}

#[test]
fn nftables_suggestions_pass_nft_check() {
    if !require_root_or_skip() || !have("nft", "nftables") {
        return;
    }
    let dir = TempDir::new("nft");
    let netns = Netns::new("sgnft");
    for (case, path) in rule_files("nftables", &dir.0) {
        let out = netns.exec("nft", &["-c", "-f", path.to_str().expect("UTF-8 path")]);
        assert!(
            out.status.success(),
            "nft -c rejects the rules of {case}:\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&path).unwrap_or_default()
        );
    }
}

#[test]
fn iptables_suggestions_run_in_a_throwaway_namespace() {
    if !require_root_or_skip() || !have("ipset", "ipset") || !have("iptables", "iptables") {
        return;
    }
    let dir = TempDir::new("ipt");
    for (case, path) in rule_files("iptables", &dir.0) {
        let netns = Netns::new("sgipt");
        // Twice: running it again replaces what the first run made.
        for run in 1..=2 {
            let out = netns.exec("sh", &[path.to_str().expect("UTF-8 path")]);
            assert!(
                out.status.success(),
                "run {run} of the script of {case} failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(&path).unwrap_or_default()
            );
        }
        let rules = netns.exec("iptables", &["-S", "RUNNER_ALLOW"]);
        let rules = String::from_utf8_lossy(&rules.stdout);
        assert!(
            rules.contains("--match-set runner_github_com_v4 dst"),
            "{case}: {rules}"
        );
    }
}

#[test]
fn squid_suggestions_pass_squid_parse() {
    if !have("squid", "squid") {
        return;
    }
    let dir = TempDir::new("squid");
    for (case, path) in rule_files("squid", &dir.0) {
        // A minimal squid.conf around the suggestion; `-k parse` reads it and exits, no daemon.
        let conf = dir.0.join("squid.conf");
        std::fs::write(
            &conf,
            format!(
                "http_port 127.0.0.1:3128\ninclude {}\nhttp_access deny all\n",
                path.display()
            ),
        )
        .expect("write squid.conf");
        let out = Command::new("squid")
            .args(["-k", "parse", "-f"])
            .arg(&conf)
            .output()
            .expect("run squid -k parse");
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "squid -k parse: {case}:\n{log}");
        let complaints: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("ERROR") || l.contains("WARNING") || l.contains("FATAL"))
            .collect();
        assert!(complaints.is_empty(), "{case}: {complaints:#?}");
        assert!(
            log.contains("Processing: acl runner_github"),
            "{case}:\n{log}"
        );
    }
}

const API: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);
const CDN: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 12);
const CODELOAD: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 13);
const NPM: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 14);
const PIPELINES: &str = "pipelines.actions.githubusercontent.com";

#[test]
fn suggested_nftables_rules_let_the_recorded_workload_through_and_nothing_else() {
    if !require_root_or_skip() {
        return;
    }
    let started = Instant::now();
    let lab = LabConfig::new("suggest")
        .a("api.github.com", API)
        .cname(PIPELINES, "star-1.l-msedge.lab")
        .cname("star-1.l-msedge.lab", "x.l-msedge.lab")
        .a("x.l-msedge.lab", CDN)
        .a("codeload.github.com", CODELOAD)
        .a("registry.npmjs.org", NPM)
        .tls_server(IpAddr::V4(API))
        .tls_server(IpAddr::V4(CDN))
        .tls_server(IpAddr::V4(CODELOAD))
        .tls_server(IpAddr::V4(NPM))
        .start();
    let workload = [
        "https://api.github.com/".to_owned(),
        format!("https://{PIPELINES}/bytes/5000"),
        "https://codeload.github.com/bytes/20000".to_owned(),
    ];
    let undeclared = "https://registry.npmjs.org/bytes/3000";

    let recording = Recording::start(lab.work_dir(), &[]);
    for url in workload.iter().map(String::as_str).chain([undeclared]) {
        let curl = lab.curl(url, &[]);
        assert_eq!(curl.exit_code, 0, "before the rules: {curl:?}");
    }
    std::thread::sleep(Duration::from_millis(500));
    let report_path = recording.report.clone();
    let (report, stderr) = recording.stop();
    assert_eq!(report["capture"]["complete"], true, "{stderr}");

    let rules = suggest(&[
        "--report",
        report_path.to_str().expect("UTF-8 path"),
        "--format",
        "nftables",
    ]);
    // The documented wildcard, not the name behind the CNAME chain; npm only as a suggestion.
    assert!(
        rules.contains("*.actions.githubusercontent.com: documented wildcard"),
        "{rules}"
    );
    assert!(
        rules.contains(&format!("{CDN} comment \"{PIPELINES}\"")),
        "{rules}"
    );
    assert!(
        rules.contains(&format!("#{NPM} comment \"registry.npmjs.org\"")),
        "{rules}"
    );

    lab.nft_runner(&rules);
    // The admin's base policy: loopback and DNS to the resolver, then the suggestion; drop the rest.
    lab.nft_runner(
        "table inet observer_runner {
            chain output {
                type filter hook output priority filter; policy drop;
                oif \"lo\" accept
                ip daddr 198.18.0.2 meta l4proto { tcp, udp } th dport 53 accept
                jump runner_allow
            }
        }",
    );
    for url in &workload {
        let curl = lab.curl(url, &["--connect-timeout", "3"]);
        assert_eq!(
            curl.exit_code, 0,
            "the workload must still go through: {curl:?}"
        );
    }
    let blocked = lab.curl(undeclared, &["--connect-timeout", "3"]);
    // Dropped in the output hook: connect() fails at once (EPERM, curl 7), or times out (28).
    assert!(
        matches!(blocked.exit_code, 7 | 28),
        "the undeclared name must be blocked with a connect error: {blocked:?}"
    );
    eprintln!("suggest lab test: {:.1} s", started.elapsed().as_secs_f64());
}
