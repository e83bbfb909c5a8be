//! Discovery on a fake `/proc` and fake runner directories in a temporary directory, with a
//! resolver that knows a few test names; and once on the real `/proc`, with a real child process
//! named `Runner.Listener`.

use std::{
    net::Ipv4Addr,
    os::unix::fs::symlink,
    process::{Command, Stdio},
};

use super::*;
use crate::proxy::MAX_URL;

/// A fake host: `proc/` and runner directories under one temporary directory.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        fs::create_dir(dir.path().join("proc")).expect("proc");
        Self { dir }
    }

    fn proc_root(&self) -> PathBuf {
        self.dir.path().join("proc")
    }

    /// A process: its `comm`, `argv`, raw `environ`, executable and working directory (links),
    /// and a root that is this host's `/`.
    fn process(
        &self,
        pid: u32,
        comm: &str,
        argv: &[&str],
        environ: &[u8],
        exe: Option<&Path>,
        cwd: Option<&Path>,
    ) -> PathBuf {
        let dir = self.proc_root().join(pid.to_string());
        fs::create_dir(&dir).expect("pid dir");
        fs::write(dir.join("comm"), format!("{comm}\n")).expect("comm");
        fs::write(dir.join("cmdline"), format!("{}\0", argv.join("\0"))).expect("cmdline");
        fs::write(dir.join("environ"), environ).expect("environ");
        if let Some(exe) = exe {
            symlink(exe, dir.join("exe")).expect("exe");
        }
        if let Some(cwd) = cwd {
            symlink(cwd, dir.join("cwd")).expect("cwd");
        }
        symlink("/", dir.join("root")).expect("root");
        dir
    }

    /// A runner directory `name` with a `bin` directory and the files given.
    fn runner_dir(&self, name: &str, bin: &str, files: &[(&str, &str)]) -> PathBuf {
        let root = self.dir.path().join(name);
        fs::create_dir_all(root.join(bin)).expect("runner dir");
        for (file, text) in files {
            fs::write(root.join(file), text).expect("runner file");
        }
        root
    }

    fn options(&self) -> DiscoverOptions {
        DiscoverOptions {
            explicit: Vec::new(),
            runner_dirs: Vec::new(),
            auto: true,
            proc_root: self.proc_root(),
            own_env: Vec::new(),
        }
    }
}

/// `KEY=VALUE` entries as a process's `environ`.
fn environ(entries: &[&str]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in entries {
        bytes.extend_from_slice(entry.as_bytes());
        bytes.push(0);
    }
    bytes
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("socket address")
}

/// The test names: `proxy.corp` (two addresses), `alias.corp` (one of them), `down.corp` (no
/// such name), `empty.corp` (no address), `slow.corp` (2 s), `wide.corp` (200 addresses),
/// `n<i>.corp` (198.18.2.i).
fn resolver() -> Arc<Resolver> {
    Arc::new(|host: &str, port: u16| {
        let v4 = |d: u8, i: u8| SocketAddr::new(Ipv4Addr::new(198, 18, d, i).into(), port);
        match host {
            "proxy.corp" => Ok(vec![
                v4(0, 8),
                SocketAddr::new("fd00::8".parse().expect("v6"), port),
                v4(0, 8),
            ]),
            "alias.corp" => Ok(vec![v4(0, 8)]),
            "down.corp" => Err(io::Error::other("Name or service not known")),
            "empty.corp" => Ok(Vec::new()),
            "slow.corp" => {
                thread::sleep(Duration::from_secs(2));
                Ok(vec![v4(0, 99)])
            }
            "wide.corp" => Ok((0..200).map(|i| v4(1, i)).collect()),
            _ => match host
                .strip_prefix('n')
                .and_then(|h| h.strip_suffix(".corp"))
                .and_then(|i| i.parse::<u8>().ok())
            {
                Some(i) => Ok(vec![v4(2, i)]),
                None => Err(io::Error::other("not a test name")),
            },
        }
    })
}

fn run(opts: &DiscoverOptions) -> Discovery {
    discover_with(opts, &resolver(), Duration::from_millis(500))
}

/// (address, source, no_proxy) of each watched proxy.
fn watched(discovery: &Discovery) -> Vec<(SocketAddr, String, Option<String>)> {
    discovery
        .proxies
        .iter()
        .map(|p| (p.addr, p.source.clone(), p.no_proxy.clone()))
        .collect()
}

fn entry(a: &str, source: &str, no_proxy: Option<&str>) -> (SocketAddr, String, Option<String>) {
    (addr(a), source.to_owned(), no_proxy.map(str::to_owned))
}

fn printable(discovery: &Discovery) {
    for text in discovery.problems.iter().chain(
        discovery
            .proxies
            .iter()
            .flat_map(|p| [&p.source, &p.url].into_iter().chain(&p.no_proxy)),
    ) {
        assert!(!text.chars().any(sanitize::is_unsafe), "{text:?}");
        assert!(!text.contains("secret"), "{text}");
    }
}

#[test]
fn explicit_values_are_watched_even_without_discovery() {
    let host = Host::new();
    host.process(
        100,
        "Runner.Listener",
        &["Runner.Listener"],
        &environ(&["https_proxy=http://198.18.0.50:3128"]),
        None,
        None,
    );
    let mut opts = host.options();
    opts.auto = false;
    opts.own_env = vec![("HTTPS_PROXY".into(), "http://198.18.0.51:3128".into())];
    opts.explicit = [
        "198.18.0.1:3128",
        "[fd00::1]:8080",
        "http://proxy.corp:3128",
        "http://u:secret@198.18.0.2",
        "198.18.0.1",
        "socks5://198.18.0.3:1080",
        "fd00::2",
        "http://u:secret@down.corp:3128",
    ]
    .map(str::to_owned)
    .to_vec();
    let found = run(&opts);
    assert_eq!(
        watched(&found),
        [
            entry("198.18.0.1:3128", "--proxy", None),
            entry("[fd00::1]:8080", "--proxy", None),
            entry("198.18.0.8:3128", "--proxy", None),
            entry("[fd00::8]:3128", "--proxy", None),
            entry("198.18.0.2:80", "--proxy", None),
        ]
    );
    let urls: Vec<&str> = found.proxies.iter().map(|p| p.url.as_str()).collect();
    assert_eq!(
        urls,
        [
            "http://198.18.0.1:3128",
            "http://[fd00::1]:8080",
            "http://proxy.corp:3128",
            "http://proxy.corp:3128",
            "http://198.18.0.2:80",
        ]
    );
    assert_eq!(
        found.problems,
        [
            "--proxy 198.18.0.1: needs a port, e.g. 198.18.0.1:3128",
            "--proxy socks5://198.18.0.3:1080: proxy scheme \"socks5\" is not supported (only \
             http:// proxies, with CONNECT)",
            "--proxy fd00::2: an IPv6 proxy address needs brackets, e.g. [fd00::2]:3128",
            "--proxy http://***@down.corp:3128: down.corp does not resolve: Name or service not \
             known",
        ]
    );
    printable(&found);
}

#[test]
fn explicit_values_parse_with_helpful_errors() {
    for (value, want) in [
        ("198.18.0.1:3128", "198.18.0.1:3128"),
        (" Proxy.Corp:8080 ", "proxy.corp:8080"),
        ("[fd00::1]:3128", "[fd00::1]:3128"),
        ("http://proxy.corp", "proxy.corp:80"),
        ("HTTP://user:pw@[fd00::1]:3128/path", "[fd00::1]:3128"),
    ] {
        let parsed = parse_explicit(value).expect(value);
        assert_eq!(parsed.to_string(), want, "{value}");
        // The text form parses back to the same value.
        assert_eq!(want.parse::<ProxyEndpoint>(), Ok(parsed), "{value}");
    }
    assert_eq!(
        parse_explicit("http://proxy.corp:3128").map(|p| p.url()),
        Ok("http://proxy.corp:3128".to_owned())
    );
    for (value, want) in [
        (
            "",
            "empty: give ADDR:PORT, [IPv6]:PORT or a proxy URL such as http://proxy.example:3128",
        ),
        ("198.18.0.1", "needs a port, e.g. 198.18.0.1:3128"),
        ("proxy.corp", "needs a port, e.g. proxy.corp:3128"),
        ("[fd00::1]", "needs a port, e.g. [fd00::1]:3128"),
        (
            "fd00::1",
            "an IPv6 proxy address needs brackets, e.g. [fd00::1]:3128",
        ),
        ("198.18.0.1:0", "bad port \"0\": a number from 1 to 65535"),
        (
            "198.18.0.1:99999",
            "bad port \"99999\": a number from 1 to 65535",
        ),
        (
            "proxy.corp:http",
            "bad port \"http\": a number from 1 to 65535",
        ),
        (
            "http://proxy.corp:0",
            "bad port in the proxy URL \"http://proxy.corp:0\"",
        ),
        (
            "https://proxy.corp:443",
            "proxy scheme \"https\" is not supported (only http:// proxies, with CONNECT)",
        ),
        (":3128", "no host in the proxy URL \":3128\""),
        (
            "pro\u{1b}xy:3128",
            "the proxy host \"pro\\u{1b}xy\" is not a host name or an IP address",
        ),
    ] {
        let got = parse_explicit(value).expect_err(value).to_string();
        assert_eq!(got, want, "{value:?}");
    }
}

#[test]
fn runner_processes_are_found_by_name_and_read_like_the_runner() {
    let host = Host::new();
    host.process(
        100,
        "Runner.Listener",
        &["/home/runner/actions-runner/bin/Runner.Listener", "run"],
        &environ(&[
            "PATH=/usr/bin",
            "https_proxy=http://proxy.corp:3128",
            // Shadowed by the lower-case one, as in the runner: not used, not watched.
            "HTTPS_PROXY=http://198.18.0.9:1",
            "http_proxy=198.18.0.3:8080",
            "no_proxy=github.com,.corp",
            "NO_PROXY=ignored.example",
        ]),
        None,
        None,
    );
    host.process(
        200,
        "Runner.Worker",
        &["Runner.Worker", "spawnclient", "1", "2"],
        &environ(&[
            "HTTPS_PROXY=http://alias.corp:3128",
            "HTTP_PROXY=http://198.18.0.4:3128",
        ]),
        None,
        None,
    );
    // A main thread renamed: found by argv[0].
    host.process(
        300,
        "dotnet-main",
        &["/opt/runner/bin/Runner.Listener"],
        &environ(&["https_proxy=http://198.18.0.5:3128"]),
        None,
        None,
    );
    // Not runners.
    host.process(
        400,
        "curl",
        &["curl", "Runner.Listener"],
        &environ(&["https_proxy=http://198.18.0.6:3128"]),
        None,
        None,
    );
    host.process(
        401,
        "Runner.Workers",
        &["/x/Runner.Listener.sh"],
        &environ(&["https_proxy=http://198.18.0.7:3128"]),
        None,
        None,
    );
    fs::create_dir(host.proc_root().join("self")).expect("self");
    fs::write(host.proc_root().join("uptime"), "1 1\n").expect("uptime");
    let found = run(&host.options());
    assert_eq!(
        watched(&found),
        [
            entry(
                "198.18.0.8:3128",
                "process 100 Runner.Listener https_proxy",
                Some("github.com,.corp")
            ),
            entry(
                "[fd00::8]:3128",
                "process 100 Runner.Listener https_proxy",
                Some("github.com,.corp")
            ),
            entry(
                "198.18.0.3:8080",
                "process 100 Runner.Listener http_proxy",
                Some("github.com,.corp")
            ),
            // alias.corp is 198.18.0.8, already watched from process 100.
            entry(
                "198.18.0.4:3128",
                "process 200 Runner.Worker HTTP_PROXY",
                None
            ),
            entry(
                "198.18.0.5:3128",
                "process 300 Runner.Listener https_proxy",
                None
            ),
        ]
    );
    assert_eq!(found.problems, Vec::<String>::new());
    assert_eq!(found.proxies[2].url, "http://198.18.0.3:8080");
}

#[test]
fn the_runner_directory_of_a_process_gives_env_and_proxy_files() {
    let host = Host::new();
    // After a self-update the executable is in bin.<version>.
    let runner = host.runner_dir(
        "actions-runner",
        "bin.2.320.0",
        &[
            (
                ".env",
                "LANG=C.UTF-8\nhttps_proxy=http://198.18.0.10:3128\r\nno_proxy=example.com\n\
                 HTTP_PROXY=http://198.18.0.11:3128\nHTTP_PROXY=\nnot a variable\n=x\n",
            ),
            (
                ".proxy",
                "  http://proxy.corp:8080  \nsecond line ignored\n",
            ),
            (".proxybypass", "github\\.com\n\n  .*\\.corp  \n"),
            (".proxycredentials", "A-LOOKUP-KEY\n"),
        ],
    );
    let exe = runner.join("bin.2.320.0/Runner.Listener");
    host.process(
        100,
        "Runner.Listener",
        &["Runner.Listener"],
        &environ(&["NO_PROXY=from.process"]),
        Some(&exe),
        None,
    );
    // A second runner in a plain bin/, whose .env has no no_proxy: the process's applies; a
    // quoted value is what the runner would not use.
    let second = host.runner_dir(
        "second-runner",
        "bin",
        &[(
            ".env",
            "https_proxy=\"http://198.18.0.12:3128\"\nhttp_proxy=http://198.18.0.13:3128\n",
        )],
    );
    let second_exe = second.join("bin/Runner.Worker");
    let deleted = format!("{} (deleted)", second_exe.display());
    host.process(
        200,
        "Runner.Worker",
        &["Runner.Worker"],
        &environ(&["no_proxy=from.worker"]),
        Some(Path::new(&deleted)),
        None,
    );
    // The same directory from another process: read once.
    host.process(
        201,
        "Runner.Worker",
        &["Runner.Worker"],
        &environ(&[]),
        Some(&second_exe),
        None,
    );
    let found = run(&host.options());
    let env_file = format!("{}/.env", runner.display());
    let proxy_file = format!("{}/.proxy", runner.display());
    let second_env = format!("{}/.env", second.display());
    assert_eq!(
        watched(&found),
        [
            entry(
                "198.18.0.10:3128",
                &format!("{env_file} https_proxy"),
                Some("example.com")
            ),
            entry(
                "198.18.0.8:8080",
                &proxy_file,
                Some("github\\.com,.*\\.corp")
            ),
            entry(
                "[fd00::8]:8080",
                &proxy_file,
                Some("github\\.com,.*\\.corp")
            ),
            entry(
                "198.18.0.13:3128",
                &format!("{second_env} http_proxy"),
                Some("from.worker")
            ),
        ]
    );
    assert_eq!(
        found.problems,
        [format!(
            "{second_env} https_proxy: the value is in quotes, which the runner keeps as part of \
             the URL: it uses no proxy (remove the quotes)"
        )]
    );
}

#[test]
fn a_working_directory_counts_only_when_it_is_a_runners() {
    let host = Host::new();
    let runner = host.runner_dir(
        "runner",
        "bin",
        &[
            (".runner", "{}"),
            (".env", "https_proxy=http://198.18.0.14:3128\n"),
        ],
    );
    let other = host.runner_dir(
        "elsewhere",
        "bin",
        &[(".env", "https_proxy=http://198.18.0.15:3128\n")],
    );
    let dotnet = host.dir.path().join("usr/bin/dotnet");
    // Started through dotnet: the executable says nothing, the working directory does.
    host.process(
        100,
        "Runner.Listener",
        &["Runner.Listener"],
        &[],
        Some(&dotnet),
        Some(&runner),
    );
    // A process named like the runner, in a directory that is not one.
    host.process(
        101,
        "Runner.Listener",
        &["Runner.Listener"],
        &[],
        Some(&dotnet),
        Some(&other),
    );
    let found = run(&host.options());
    assert_eq!(
        watched(&found),
        [entry(
            "198.18.0.14:3128",
            &format!("{}/.env https_proxy", runner.display()),
            None
        )]
    );
    assert_eq!(found.problems, Vec::<String>::new());
}

#[test]
fn given_runner_directories_and_the_observers_environment() {
    let host = Host::new();
    let runner = host.runner_dir("given", "bin", &[]);
    let real_env = host.dir.path().join("managed.env");
    fs::write(&real_env, "https_proxy=http://198.18.0.20:3128\n").expect("env");
    // Named by the user: a link is followed.
    symlink(&real_env, runner.join(".env")).expect("link");
    let file = host.dir.path().join("a-file");
    fs::write(&file, "").expect("file");
    let mut opts = host.options();
    opts.runner_dirs = vec![
        runner.clone(),
        host.dir.path().join("missing"),
        file.clone(),
    ];
    opts.own_env = vec![
        ("https_proxy".into(), " ".into()),
        ("HTTPS_PROXY".into(), "http://198.18.0.21:3128".into()),
        ("NO_PROXY".into(), "github.com".into()),
    ];
    let found = run(&opts);
    let runner = fs::canonicalize(&runner).expect("canonical");
    assert_eq!(
        watched(&found),
        [
            entry(
                "198.18.0.20:3128",
                &format!("{}/.env https_proxy", runner.display()),
                None
            ),
            entry(
                "198.18.0.21:3128",
                "environment HTTPS_PROXY",
                Some("github.com")
            ),
        ]
    );
    assert_eq!(
        found.problems,
        [
            format!(
                "runner directory {}: No such file or directory (os error 2)",
                host.dir.path().join("missing").display()
            ),
            format!("runner directory {}: not a directory", file.display()),
        ]
    );
}

#[test]
fn the_first_source_of_an_address_wins() {
    let host = Host::new();
    host.process(
        100,
        "Runner.Listener",
        &["Runner.Listener"],
        &environ(&["https_proxy=http://proxy.corp:3128"]),
        None,
        None,
    );
    let mut opts = host.options();
    opts.explicit = vec!["198.18.0.8:3128".into()];
    opts.own_env = vec![("https_proxy".into(), "http://proxy.corp:3128".into())];
    let found = run(&opts);
    assert_eq!(
        watched(&found),
        [
            entry("198.18.0.8:3128", "--proxy", None),
            entry(
                "[fd00::8]:3128",
                "process 100 Runner.Listener https_proxy",
                None
            ),
        ]
    );
    // Without discovery, only --proxy.
    opts.auto = false;
    assert_eq!(
        watched(&run(&opts)),
        [entry("198.18.0.8:3128", "--proxy", None)]
    );
}

#[test]
fn hostile_values_are_problems_and_printable() {
    let host = Host::new();
    let mut bytes = environ(&[
        "https_proxy=http://\u{1b}[2Jevil:3128",
        "http_proxy=http://down.corp:3128",
        "no_proxy=a.example,\u{1b}]0;title\u{7}",
    ]);
    bytes.extend_from_slice(b"\xff\xfe=\xff\0=novalue\0noequals\0");
    host.process(
        100,
        "Runner.Listener",
        &["Runner.Listener"],
        &bytes,
        None,
        None,
    );
    let long = format!("https_proxy=http://{}.corp:3128", "a".repeat(MAX_URL));
    host.process(
        101,
        "Runner.Listener",
        &["Runner.Listener"],
        &environ(&[&long, "http_proxy=http://u:secret@198.18.0.31:0"]),
        None,
        None,
    );
    // An environment over the limit: the variable cut at the end is not used.
    let mut huge = environ(&["https_proxy=http://198.18.0.30:3128"]);
    let padding = usize::try_from(MAX_ENVIRON).expect("size") - huge.len() - 10;
    huge.extend_from_slice(format!("PAD={}\0", "x".repeat(padding)).as_bytes());
    huge.extend_from_slice(b"http_proxy=http://198.18.0.32:3128\0");
    host.process(
        102,
        "Runner.Listener",
        &["Runner.Listener"],
        &huge,
        None,
        None,
    );
    // A runner directory whose name holds an escape sequence.
    let runner = host.runner_dir(
        "evil\u{1b}[31mdir",
        "bin",
        &[(".env", "https_proxy=http://198.18.0.33:3128\n")],
    );
    host.process(
        103,
        "Runner.Worker",
        &["Runner.Worker"],
        &[],
        Some(&runner.join("bin/Runner.Worker")),
        None,
    );
    let found = run(&host.options());
    printable(&found);
    let sources: Vec<&str> = found.proxies.iter().map(|p| p.source.as_str()).collect();
    let shown_dir = sanitize::line(&runner.display().to_string()).into_owned();
    assert_eq!(
        sources,
        [
            "process 102 Runner.Listener https_proxy".to_owned(),
            format!("{shown_dir}/.env https_proxy"),
        ]
    );
    assert!(shown_dir.contains("evil\\x1b[31mdir"), "{shown_dir}");
    assert_eq!(
        found.problems,
        [
            "process 102 Runner.Listener: its environment is larger than 1 MiB; only the start \
             was read",
            "process 100 Runner.Listener https_proxy: the proxy host \"\\u{1b}[2jevil\" is not a \
             host name or an IP address",
            "process 101 Runner.Listener https_proxy: longer than 2048 bytes (2065): not a proxy \
             URL",
            "process 101 Runner.Listener http_proxy: bad port in the proxy URL \
             \"http://***@198.18.0.31:0\"",
            "process 100 Runner.Listener http_proxy: down.corp does not resolve: Name or service \
             not known",
        ]
    );
}

#[test]
fn unreadable_files_are_problems_and_never_block() {
    let host = Host::new();
    let runner = host.runner_dir("runner", "bin", &[(".proxybypass", "x\n")]);
    // A FIFO would block a plain read for ever; a directory is not a file.
    let status = Command::new("mkfifo")
        .arg(runner.join(".env"))
        .status()
        .expect("mkfifo");
    assert!(status.success());
    fs::create_dir(runner.join(".proxy")).expect(".proxy dir");
    host.process(
        100,
        "Runner.Listener",
        &["Runner.Listener"],
        &[],
        Some(&runner.join("bin/Runner.Listener")),
        None,
    );
    // Found from a process: a link is not followed.
    let linked = host.runner_dir("linked", "bin", &[]);
    let target = host.dir.path().join("target.env");
    fs::write(&target, "https_proxy=http://198.18.0.40:3128\n").expect("target");
    symlink(&target, linked.join(".env")).expect("link");
    symlink(&target, linked.join(".proxy")).expect("link");
    host.process(
        101,
        "Runner.Listener",
        &["Runner.Listener"],
        &[],
        Some(&linked.join("bin/Runner.Listener")),
        None,
    );
    // An environ that cannot be read as a file.
    let pid_dir = host.process(102, "Runner.Worker", &["Runner.Worker"], &[], None, None);
    fs::remove_file(pid_dir.join("environ")).expect("rm");
    fs::create_dir(pid_dir.join("environ")).expect("environ dir");
    let started = Instant::now();
    let found = run(&host.options());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(found.proxies.is_empty(), "{:?}", found.proxies);
    let link_problem = "it is a symbolic link, not followed in a runner directory found from a \
                        process (name the directory as a runner directory to follow it)";
    assert_eq!(
        found.problems,
        [
            format!("cannot read {}/.env: not a regular file", runner.display()),
            format!(
                "cannot read {}/.proxy: not a regular file",
                runner.display()
            ),
            format!("cannot read {}/.env: {link_problem}", linked.display()),
            format!("cannot read {}/.proxy: {link_problem}", linked.display()),
            format!(
                "process 102 Runner.Worker: cannot read {}: not a regular file",
                pid_dir.join("environ").display()
            ),
        ]
    );
    // Without a /proc to read.
    let mut opts = host.options();
    opts.proc_root = host.dir.path().join("no-proc");
    let found = run(&opts);
    assert_eq!(found.proxies, []);
    assert_eq!(found.problems.len(), 1);
    assert!(
        found.problems[0].starts_with(&format!(
            "cannot list {}: No such file or directory",
            opts.proc_root.display()
        )),
        "{:?}",
        found.problems
    );
}

#[test]
fn resolution_failures_and_limits() {
    let host = Host::new();
    let mut opts = host.options();
    opts.explicit = [
        "http://empty.corp:1",
        "http://slow.corp:1",
        "http://wide.corp:3128",
        "198.18.0.60:3128",
    ]
    .map(str::to_owned)
    .to_vec();
    let found = discover_with(&opts, &resolver(), Duration::from_millis(200));
    assert_eq!(found.proxies.len(), MAX_WATCHED);
    assert_eq!(found.proxies[0].addr, addr("198.18.1.0:3128"));
    assert_eq!(
        found.problems,
        [
            "--proxy http://empty.corp:1: empty.corp has no address",
            "--proxy http://slow.corp:1: slow.corp did not resolve within 200 ms",
            "--proxy http://wide.corp:3128: 198.18.1.64:3128 not watched: at most 64 proxy \
             addresses are",
        ]
    );
    // Names past the limit are not resolved.
    opts.explicit = (0..40).map(|i| format!("n{i}.corp:3128")).collect();
    let found = run(&opts);
    assert_eq!(found.proxies.len(), MAX_HOSTS);
    assert_eq!(found.proxies[31].addr, addr("198.18.2.31:3128"));
    assert_eq!(found.problems.len(), 8);
    assert_eq!(
        found.problems[0],
        "--proxy n32.corp:3128: n32.corp not resolved: at most 32 proxy names are"
    );
}

#[test]
fn the_real_resolver_knows_addresses_and_localhost() {
    let host = Host::new();
    let mut opts = host.options();
    opts.explicit = vec!["198.18.0.70:3128".into(), "http://localhost:3128".into()];
    let found = discover(&opts);
    assert_eq!(found.problems, Vec::<String>::new());
    assert_eq!(found.proxies[0].addr, addr("198.18.0.70:3128"));
    assert!(
        found.proxies[1..].iter().all(|p| p.addr.ip().is_loopback()
            && p.addr.port() == 3128
            && p.url == "http://localhost:3128"),
        "{:?}",
        found.proxies
    );
    assert!(found.proxies.len() >= 2);
}

#[test]
fn watched_proxies_serialize_without_an_absent_no_proxy() {
    let proxy = WatchedProxy {
        addr: addr("198.18.0.8:3128"),
        url: "http://proxy.corp:3128".into(),
        source: "--proxy".into(),
        no_proxy: None,
    };
    let json = serde_json::to_string(&proxy).expect("json");
    assert_eq!(
        json,
        r#"{"addr":"198.18.0.8:3128","url":"http://proxy.corp:3128","source":"--proxy"}"#
    );
    assert_eq!(
        serde_json::from_str::<WatchedProxy>(&json).expect("back"),
        proxy
    );
}

/// A real process: a copy of `sleep` named `Runner.Listener` in a runner directory's `bin/`,
/// with a proxy in its environment and another in the directory's `.env`, found on the real
/// `/proc` (a process's own children are readable without root).
#[test]
fn a_real_runner_process_is_found() {
    let host = Host::new();
    let runner = host.runner_dir(
        "actions-runner",
        "bin",
        &[(".env", "http_proxy=http://198.18.0.81:3128\n")],
    );
    let exe = runner.join("bin/Runner.Listener");
    fs::copy("/bin/sleep", &exe).expect("copy sleep");
    let mut child = Command::new(&exe)
        .arg("30")
        .env_clear()
        .env("https_proxy", "http://198.18.0.80:3128")
        .env("no_proxy", "github.com")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the runner stand-in");
    let pid = child.id();
    // Wait until it has exec'd under its new name.
    let comm = PathBuf::from(format!("/proc/{pid}/comm"));
    let started = Instant::now();
    while fs::read_to_string(&comm).unwrap_or_default().trim() != "Runner.Listener" {
        assert!(started.elapsed() < Duration::from_secs(10), "no exec");
        thread::sleep(Duration::from_millis(10));
    }
    let mut opts = DiscoverOptions::on_this_host(Vec::new(), Vec::new(), true);
    opts.own_env.clear();
    let found = discover(&opts);
    child.kill().expect("kill");
    child.wait().expect("wait");
    let runner = fs::canonicalize(&runner).expect("canonical");
    let want = [
        WatchedProxy {
            addr: addr("198.18.0.80:3128"),
            url: "http://198.18.0.80:3128".into(),
            source: format!("process {pid} Runner.Listener https_proxy"),
            no_proxy: Some("github.com".into()),
        },
        WatchedProxy {
            addr: addr("198.18.0.81:3128"),
            url: "http://198.18.0.81:3128".into(),
            source: format!("{}/.env http_proxy", runner.display()),
            no_proxy: Some("github.com".into()),
        },
    ];
    for proxy in &want {
        assert!(found.proxies.contains(proxy), "{proxy:?} in {found:?}");
    }
}
