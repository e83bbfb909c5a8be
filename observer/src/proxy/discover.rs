//! Which HTTP proxies to watch, and where each came from.
//!
//! A runner behind an HTTP proxy connects only to the proxy: unless the capture watches the
//! proxy's address and port, every GitHub host looks unseen. So before a capture starts,
//! [`discover`] gathers the proxies a user would expect it to know about, in this order (the
//! first source of an address is the one shown; docs/proxy.md is the reference for users):
//!
//! 1. `--proxy` values ([`DiscoverOptions::explicit`]), always;
//! 2. running runners: processes whose `comm` (or the base name of `argv[0]`) is
//!    `Runner.Listener` or `Runner.Worker`; their environment (`/proc/<pid>/environ`), then
//!    their runner directory (the parent of the `bin/` or `bin.<version>/` directory of their
//!    executable, else their working directory when it holds a `.runner` file), read through
//!    `/proc/<pid>/root` so a runner in a container is read in its own file system;
//! 3. runner directories given by the user ([`DiscoverOptions::runner_dirs`]);
//! 4. the observer's own environment.
//!
//! In an environment (a process's, a `.env` file, the observer's), the HTTPS proxy is
//! `https_proxy`, else `HTTPS_PROXY`, and the HTTP proxy `http_proxy`, else `HTTP_PROXY`, as the
//! runner reads them ([`super::first_set`]). A runner directory holds `.env` (`KEY=VALUE`
//! lines, which `Runner.Listener` loads into its environment when it starts: a value set there
//! is in the environment of the `Runner.Worker` it starts, not in its own `environ`) and, from
//! runners configured before proxies moved to the environment (2019), `.proxy` (the proxy URL
//! on its first line) with `.proxybypass` (names that go direct, one per line).
//! `.proxycredentials` names a key in the runner's credential store: watching needs no
//! credentials, so it is not read. Both a process's environment and its `.env` are watched when
//! they differ: a runner started before `.env` was edited still uses the old proxy.
//!
//! Host names are resolved once, here, in parallel with a deadline ([`RESOLVE_WAIT`]), every
//! address kept. Anything that cannot be used (an unsupported scheme, a bad port, a name that
//! does not resolve, an unreadable file) is one printable line of [`Discovery::problems`].
//!
//! Everything read is hostile: any local user can start a process named `Runner.Listener` with
//! the environment and working directory it likes. So reads are bounded, only regular files are
//! opened (a FIFO would block, a device would never end), files of a directory found from a
//! process are not followed through symbolic links, the number of processes, host names and
//! addresses is capped, and every text shown is made printable ([`crate::sanitize`]). Every
//! root (`/proc`, the environment) is a field of [`DiscoverOptions`], so all of it is tested
//! without root on a fake `/proc`.

use std::{
    collections::{BTreeSet, HashMap},
    fmt, fs,
    io::{self, Read as _},
    net::{IpAddr, SocketAddr, ToSocketAddrs as _},
    os::unix::fs::{MetadataExt as _, OpenOptionsExt as _},
    path::{Component, Path, PathBuf},
    str::FromStr,
    sync::{mpsc, Arc},
    thread,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use super::{first_set, http_url, parse_url, ProxyError};
use crate::sanitize;

/// Where the kernel shows processes.
pub const PROC_ROOT: &str = "/proc";
/// The runner's processes, by executable name.
const RUNNER_PROCESSES: [&str; 2] = ["Runner.Listener", "Runner.Worker"];
/// The most read of a process's environment, or of a `.env` file.
const MAX_ENVIRON: u64 = 1 << 20;
/// The most read of `.proxy` and `.proxybypass`.
const MAX_PROXY_FILE: u64 = 64 << 10;
/// The most read of `comm` and `cmdline` (only `argv[0]` is needed).
const MAX_CMDLINE: u64 = 4096;
/// Runner processes read, lowest pids first.
const MAX_RUNNERS: usize = 64;
/// Distinct proxy host names resolved.
const MAX_HOSTS: usize = 32;
/// Addresses watched.
const MAX_WATCHED: usize = 64;
/// The longest `no_proxy` text kept (in characters).
const MAX_NO_PROXY: usize = 16 << 10;
/// How long all the proxy names together may take to resolve.
pub const RESOLVE_WAIT: Duration = Duration::from_secs(10);

/// A proxy address the capture should watch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchedProxy {
    /// Address and port the proxy is reached at (a name resolved at start; one entry per
    /// address).
    pub addr: SocketAddr,
    /// The proxy URL with credentials removed (what an operator recognises).
    pub url: String,
    /// Where it came from, printable and short: `--proxy`, `process 1234 Runner.Listener
    /// https_proxy`, `/home/runner/actions-runner/.env https_proxy`,
    /// `/home/runner/actions-runner/.proxy`, `environment HTTPS_PROXY`.
    pub source: String,
    /// The `no_proxy` that applied where the proxy was found (as text), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_proxy: Option<String>,
}

/// Where to look.
#[derive(Clone, Debug)]
pub struct DiscoverOptions {
    /// `--proxy` values: `ADDR:PORT`, `[v6]:PORT`, or a URL ([`parse_explicit`]).
    pub explicit: Vec<String>,
    /// `--runner-dir` values: runner directories to read `.env` and `.proxy` from.
    pub runner_dirs: Vec<PathBuf>,
    /// Look at runner processes, the runner directories and the environment; `false` with
    /// `--no-proxy-discovery`: only `explicit` is used.
    pub auto: bool,
    /// Where the processes are: `/proc` ([`PROC_ROOT`]).
    pub proc_root: PathBuf,
    /// The observer's environment.
    pub own_env: Vec<(String, String)>,
}

impl DiscoverOptions {
    /// On this host: `/proc`, and the environment of this process.
    pub fn on_this_host(explicit: Vec<String>, runner_dirs: Vec<PathBuf>, auto: bool) -> Self {
        Self {
            explicit,
            runner_dirs,
            auto,
            proc_root: PathBuf::from(PROC_ROOT),
            own_env: std::env::vars_os()
                .map(|(k, v)| {
                    (
                        k.to_string_lossy().into_owned(),
                        v.to_string_lossy().into_owned(),
                    )
                })
                .collect(),
        }
    }
}

/// What [`discover`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Discovery {
    /// The proxies to watch, one per address, in the order of their sources.
    pub proxies: Vec<WatchedProxy>,
    /// What could not be used, one printable line each (`process 1234 Runner.Listener
    /// https_proxy: proxy.corp does not resolve: ...`).
    pub problems: Vec<String>,
}

/// A proxy as `--proxy` gives it: a host (name or address) and a port. Its text form
/// (`proxy.corp:3128`, `[fd00::1]:3128`) parses back to the same value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProxyEndpoint {
    /// Host name (lower case) or address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

impl ProxyEndpoint {
    /// `http://host:port`.
    pub fn url(&self) -> String {
        http_url(&self.host, self.port)
    }
}

impl fmt::Display for ProxyEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for ProxyEndpoint {
    type Err = ProxyError;

    fn from_str(value: &str) -> Result<Self, ProxyError> {
        parse_explicit(value)
    }
}

/// Parses a `--proxy` value: `ADDR:PORT` or `[v6]:PORT` (a host name is allowed for `ADDR`,
/// the port is required), or a URL (`http://proxy.corp:3128`; port 80 when the URL has none).
/// Credentials in a URL are accepted and dropped. For clap's `value_parser`: the error says
/// what is wrong and shows the fix (`needs a port, e.g. 10.0.0.1:3128`).
pub fn parse_explicit(value: &str) -> Result<ProxyEndpoint, ProxyError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ProxyError::Empty);
    }
    let is_url = value.contains("://");
    let parsed = parse_url(value);
    match parsed.problem {
        Some(ProxyError::BadPort { .. }) if !is_url => {
            let port = value.rsplit(':').next().unwrap_or("");
            return Err(ProxyError::BadPortNumber {
                port: port.chars().take(20).collect(),
            });
        }
        Some(problem) => return Err(problem),
        None => {}
    }
    let port = match parsed.port {
        Some(port) => port,
        None if is_url => 80,
        None => {
            let example = ProxyEndpoint {
                host: parsed.host,
                port: 3128,
            };
            return Err(ProxyError::NeedsPort {
                example: example.to_string(),
            });
        }
    };
    Ok(ProxyEndpoint {
        host: parsed.host,
        port,
    })
}

/// A proxy setting as found, before it is parsed and resolved.
struct Candidate {
    /// The value (it may hold credentials: never shown as is).
    value: String,
    /// [`WatchedProxy::source`].
    source: String,
    /// `--proxy`: `ADDR` needs a port. Elsewhere a value without one is on port 80, as the
    /// runner takes it.
    explicit: bool,
    no_proxy: Option<String>,
}

impl Candidate {
    /// How problems with this setting begin.
    fn label(&self) -> String {
        if self.explicit {
            let shown: String = super::redact(&self.value).chars().take(100).collect();
            format!("--proxy {shown}")
        } else {
            self.source.clone()
        }
    }

    fn endpoint(&self) -> Result<ProxyEndpoint, String> {
        if self.explicit {
            return parse_explicit(&self.value).map_err(|e| e.to_string());
        }
        if self.value.starts_with(['"', '\'']) {
            return Err(
                "the value is in quotes, which the runner keeps as part of the URL: it uses no \
                 proxy (remove the quotes)"
                    .to_owned(),
            );
        }
        let parsed = parse_url(&self.value);
        match parsed.problem {
            Some(problem) => Err(problem.to_string()),
            None => Ok(ProxyEndpoint {
                host: parsed.host,
                port: parsed.port.unwrap_or(80),
            }),
        }
    }
}

/// Turns a host name and port into addresses (the system resolver, or a test's).
type Resolver = dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync;

/// Finds the proxies to watch (see the module documentation for the sources and their order).
/// Blocks while host names resolve, at most [`RESOLVE_WAIT`]; never fails: what cannot be used
/// is in [`Discovery::problems`].
pub fn discover(opts: &DiscoverOptions) -> Discovery {
    let system: Arc<Resolver> = Arc::new(|host: &str, port: u16| {
        (host, port)
            .to_socket_addrs()
            .map(Iterator::collect::<Vec<_>>)
    });
    discover_with(opts, &system, RESOLVE_WAIT)
}

fn discover_with(opts: &DiscoverOptions, resolver: &Arc<Resolver>, wait: Duration) -> Discovery {
    let mut found = Found::default();
    for value in &opts.explicit {
        found.candidates.push(Candidate {
            value: value.clone(),
            source: "--proxy".to_owned(),
            explicit: true,
            no_proxy: None,
        });
    }
    if opts.auto {
        let mut dirs_read = BTreeSet::new();
        for process in runner_processes(&opts.proc_root, &mut found) {
            found.read_process(&opts.proc_root, &process, &mut dirs_read);
        }
        let our_root = fs::metadata("/").map(|m| (m.dev(), m.ino())).ok();
        for dir in &opts.runner_dirs {
            let dir = match fs::canonicalize(dir) {
                Ok(dir) if dir.is_dir() => dir,
                Ok(_) => {
                    found.problem(format!(
                        "runner directory {}: not a directory",
                        dir.display()
                    ));
                    continue;
                }
                Err(e) => {
                    found.problem(format!("runner directory {}: {e}", dir.display()));
                    continue;
                }
            };
            if dirs_read.insert((our_root, dir.clone())) {
                let shown = dir.display().to_string();
                found.read_runner_dir(&shown, &dir, true, None);
            }
        }
        found.read_vars(|key| first_value(&opts.own_env, key), "environment", None);
    }
    let Found {
        candidates,
        mut problems,
    } = found;
    let proxies = resolve_all(&candidates, &mut problems, resolver, wait);
    Discovery { proxies, problems }
}

/// What the sources gave, in order, and what went wrong reading them.
#[derive(Default)]
struct Found {
    candidates: Vec<Candidate>,
    problems: Vec<String>,
}

impl Found {
    fn problem(&mut self, text: impl AsRef<str>) {
        add_problem(&mut self.problems, text.as_ref());
    }

    /// The HTTPS and HTTP proxies of one environment (`vars` returns a variable's value), as
    /// `{prefix} {variable}`; `no_proxy` from the same environment, else `fallback_no_proxy`.
    /// Returns the `no_proxy` used.
    fn read_vars(
        &mut self,
        vars: impl Fn(&str) -> Option<String>,
        prefix: &str,
        fallback_no_proxy: Option<String>,
    ) -> Option<String> {
        let no_proxy = first_set(&vars, ["no_proxy", "NO_PROXY"])
            .map(|(_, list)| shown_no_proxy(&list))
            .or(fallback_no_proxy);
        for names in [["https_proxy", "HTTPS_PROXY"], ["http_proxy", "HTTP_PROXY"]] {
            if let Some((name, value)) = first_set(&vars, names) {
                self.candidates.push(Candidate {
                    value,
                    source: format!("{prefix} {name}"),
                    explicit: false,
                    no_proxy: no_proxy.clone(),
                });
            }
        }
        no_proxy
    }

    /// A runner process: its environment, then its runner directory.
    fn read_process(
        &mut self,
        proc_root: &Path,
        process: &RunnerProcess,
        dirs_read: &mut BTreeSet<(Option<(u64, u64)>, PathBuf)>,
    ) {
        let pid_dir = proc_root.join(process.pid.to_string());
        let prefix = format!("process {} {}", process.pid, process.name);
        let environ = pid_dir.join("environ");
        let no_proxy = match read_regular(&environ, MAX_ENVIRON, true) {
            // Gone since it was listed.
            Ok(None) => return,
            Err(e) => {
                self.problem(format!("{prefix}: cannot read {}: {e}", environ.display()));
                None
            }
            Ok(Some((bytes, cut))) => {
                if cut {
                    self.problem(format!(
                        "{prefix}: its environment is larger than {} MiB; only the start was read",
                        MAX_ENVIRON >> 20
                    ));
                }
                let vars = parse_environ(&bytes, cut);
                self.read_vars(|key| first_value(&vars, key), &prefix, None)
            }
        };
        let Some(dir) = runner_dir_of(&pid_dir) else {
            return;
        };
        // Its files, in its own file system (a container's), without following links.
        let root = pid_dir.join("root");
        let Ok(root_meta) = fs::metadata(&root) else {
            return;
        };
        let root_id = Some((root_meta.dev(), root_meta.ino()));
        if !dirs_read.insert((root_id, dir.clone())) {
            return;
        }
        let same_root = fs::metadata("/").is_ok_and(|m| Some((m.dev(), m.ino())) == root_id);
        let shown = if same_root {
            dir.display().to_string()
        } else {
            format!("process {} {}", process.pid, dir.display())
        };
        let read_at = root.join(dir.strip_prefix("/").unwrap_or(&dir));
        self.read_runner_dir(&shown, &read_at, false, no_proxy);
    }

    /// A runner directory's `.env`, then its `.proxy` (with `.proxybypass`). `shown` is the
    /// directory as the runner sees it, `dir` where to read it; `follow`: whether its files may
    /// be symbolic links.
    fn read_runner_dir(
        &mut self,
        shown: &str,
        dir: &Path,
        follow: bool,
        fallback_no_proxy: Option<String>,
    ) {
        let env_file = format!("{shown}/.env");
        match read_regular(&dir.join(".env"), MAX_ENVIRON, follow) {
            Ok(None) => {}
            Err(e) => self.problem(format!("cannot read {env_file}: {e}")),
            Ok(Some((bytes, cut))) => {
                if cut {
                    self.problem(format!(
                        "{env_file} is larger than {} MiB; only the start was read",
                        MAX_ENVIRON >> 20
                    ));
                }
                let vars = parse_env_file(&bytes, cut);
                self.read_vars(|key| vars.get(key).cloned(), &env_file, fallback_no_proxy);
            }
        }
        let proxy_file = format!("{shown}/.proxy");
        let url = match read_regular(&dir.join(".proxy"), MAX_PROXY_FILE, follow) {
            Ok(None) => return,
            Err(e) => {
                self.problem(format!("cannot read {proxy_file}: {e}"));
                return;
            }
            Ok(Some((bytes, _))) => String::from_utf8_lossy(&bytes)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned(),
        };
        if url.is_empty() {
            return;
        }
        let bypass = match read_regular(&dir.join(".proxybypass"), MAX_PROXY_FILE, follow) {
            Ok(None) => None,
            Err(e) => {
                self.problem(format!("cannot read {shown}/.proxybypass: {e}"));
                None
            }
            Ok(Some((bytes, _))) => {
                let entries: Vec<String> = String::from_utf8_lossy(&bytes)
                    .lines()
                    .map(str::trim)
                    .filter(|line| !line.is_empty())
                    .map(str::to_owned)
                    .collect();
                (!entries.is_empty()).then(|| shown_no_proxy(&entries.join(",")))
            }
        };
        self.candidates.push(Candidate {
            value: url,
            source: proxy_file,
            explicit: false,
            no_proxy: bypass,
        });
    }
}

/// Adds a problem line, printable, once.
fn add_problem(problems: &mut Vec<String>, text: &str) {
    let line = sanitize::line(text).into_owned();
    if !problems.contains(&line) {
        problems.push(line);
    }
}

/// A `no_proxy` list as kept in [`WatchedProxy::no_proxy`]: printable and bounded.
fn shown_no_proxy(list: &str) -> String {
    let list: String = list.trim().chars().take(MAX_NO_PROXY).collect();
    sanitize::line(&list).into_owned()
}

/// The first value of `key`, as `getenv` finds it.
fn first_value(vars: &[(String, String)], key: &str) -> Option<String> {
    vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

/// `KEY=VALUE` entries separated by NUL bytes. A read `cut` at the limit loses its last,
/// partial, entry.
fn parse_environ(bytes: &[u8], cut: bool) -> Vec<(String, String)> {
    let mut entries: Vec<&[u8]> = bytes.split(|&b| b == 0).collect();
    if cut {
        entries.pop();
    }
    entries
        .into_iter()
        .filter_map(|entry| {
            let entry = String::from_utf8_lossy(entry);
            let (key, value) = entry.split_once('=')?;
            (!key.is_empty()).then(|| (key.to_owned(), value.to_owned()))
        })
        .collect()
}

/// A `.env` file as the runner loads it: a line `KEY=VALUE` (split at the first `=`, nothing
/// trimmed, no quotes removed) sets `KEY`; a later line wins; `KEY=` unsets it.
fn parse_env_file(bytes: &[u8], cut: bool) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines: Vec<&str> = text.split(['\n', '\r']).collect();
    if cut {
        lines.pop();
    }
    let mut vars = HashMap::new();
    for line in lines {
        match line.split_once('=') {
            Some((key, value)) if !key.is_empty() => {
                if value.is_empty() {
                    vars.remove(key);
                } else {
                    vars.insert(key.to_owned(), value.to_owned());
                }
            }
            _ => {}
        }
    }
    vars
}

/// A running runner process.
struct RunnerProcess {
    pid: u32,
    name: &'static str,
}

/// The runner processes under `proc_root`, lowest pid first, at most [`MAX_RUNNERS`].
fn runner_processes(proc_root: &Path, found: &mut Found) -> Vec<RunnerProcess> {
    let entries = match fs::read_dir(proc_root) {
        Ok(entries) => entries,
        Err(e) => {
            found.problem(format!(
                "cannot list {}: {e}; running runners were not looked for",
                proc_root.display()
            ));
            return Vec::new();
        }
    };
    let mut processes: Vec<RunnerProcess> = entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let name = runner_name(&entry.path())?;
            Some(RunnerProcess { pid, name })
        })
        .collect();
    processes.sort_by_key(|p| p.pid);
    if processes.len() > MAX_RUNNERS {
        found.problem(format!(
            "{} processes are named like the runner; only the first {MAX_RUNNERS} were read",
            processes.len()
        ));
        processes.truncate(MAX_RUNNERS);
    }
    processes
}

/// `Runner.Listener` or `Runner.Worker` when the process in `pid_dir` is one: by its `comm`,
/// else by the base name of its `argv[0]` (a process may rename its main thread).
fn runner_name(pid_dir: &Path) -> Option<&'static str> {
    let named = |name: &[u8]| RUNNER_PROCESSES.into_iter().find(|n| n.as_bytes() == name);
    if let Ok(Some((comm, _))) = read_regular(&pid_dir.join("comm"), MAX_CMDLINE, true) {
        let comm = comm.strip_suffix(b"\n").unwrap_or(&comm);
        if let Some(name) = named(comm) {
            return Some(name);
        }
    }
    let (cmdline, _) = read_regular(&pid_dir.join("cmdline"), MAX_CMDLINE, true)
        .ok()
        .flatten()?;
    let argv0 = cmdline.split(|&b| b == 0).next()?;
    named(argv0.rsplit(|&b| b == b'/').next()?)
}

/// The runner directory of a process, as the process sees it: the parent of the `bin` (or
/// `bin.<version>`, after an update) directory of its executable (`bin/Runner.Listener`), as
/// the runner finds its `.env`; else (a runner started through `dotnet`, say) its working
/// directory when that holds the runner's `.runner` file.
pub(crate) fn runner_dir_of(pid_dir: &Path) -> Option<PathBuf> {
    let plain = |path: &Path| {
        path.is_absolute()
            && path
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
    };
    if let Ok(exe) = fs::read_link(pid_dir.join("exe")) {
        // An executable replaced while running reads `... (deleted)`.
        let text = exe.to_string_lossy();
        let exe = PathBuf::from(text.strip_suffix(" (deleted)").unwrap_or(&text));
        let is_runner = exe
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| RUNNER_PROCESSES.contains(&n));
        let bin = exe.parent().filter(|bin| {
            is_runner
                && bin
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n == "bin" || n.starts_with("bin."))
        });
        if let Some(dir) = bin.and_then(Path::parent) {
            if plain(dir) && dir != Path::new("/") {
                return Some(dir.to_owned());
            }
        }
    }
    let cwd = fs::read_link(pid_dir.join("cwd")).ok()?;
    if !plain(&cwd) {
        return None;
    }
    let in_root = pid_dir
        .join("root")
        .join(cwd.strip_prefix("/").unwrap_or(&cwd));
    fs::symlink_metadata(in_root.join(".runner"))
        .is_ok_and(|m| m.is_file())
        .then_some(cwd)
}

/// The first `limit` bytes of a regular file, and whether there was more; `None` when it does
/// not exist. Anything but a regular file is refused before it is opened (a FIFO would block,
/// a device never end); `follow: false` refuses a symbolic link too.
pub(crate) fn read_regular(
    path: &Path,
    limit: u64,
    follow: bool,
) -> Result<Option<(Vec<u8>, bool)>, String> {
    let describe = |e: &io::Error| match e.kind() {
        io::ErrorKind::PermissionDenied => {
            "permission denied (run the observer as root to read other users' runners)".to_owned()
        }
        _ if !follow && e.raw_os_error() == Some(libc::ELOOP) => {
            "it is a symbolic link, not followed in a runner directory found from a process \
             (name the directory as a runner directory to follow it)"
                .to_owned()
        }
        _ => e.to_string(),
    };
    let meta = if follow {
        fs::metadata(path)
    } else {
        fs::symlink_metadata(path)
    };
    match meta {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(describe(&e)),
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(describe(&io::Error::from_raw_os_error(libc::ELOOP)))
        }
        Ok(meta) if !meta.is_file() => return Err("not a regular file".to_owned()),
        Ok(_) => {}
    }
    let mut flags = libc::O_NONBLOCK;
    if !follow {
        flags |= libc::O_NOFOLLOW;
    }
    let file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(describe(&e)),
    };
    // Swapped between the look and the open: still only a regular file is read.
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Err("not a regular file".to_owned());
    }
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| describe(&e))?;
    let cut = bytes.len() as u64 > limit;
    bytes.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(Some((bytes, cut)))
}

/// Parses every candidate, resolves each distinct host once (in parallel, within `wait`), and
/// lists one [`WatchedProxy`] per new address, in the candidates' order.
fn resolve_all(
    candidates: &[Candidate],
    problems: &mut Vec<String>,
    resolver: &Arc<Resolver>,
    wait: Duration,
) -> Vec<WatchedProxy> {
    let endpoints: Vec<Option<ProxyEndpoint>> = candidates
        .iter()
        .map(|candidate| match candidate.endpoint() {
            Ok(endpoint) => Some(endpoint),
            Err(problem) => {
                add_problem(problems, &format!("{}: {problem}", candidate.label()));
                None
            }
        })
        .collect();
    let mut distinct: Vec<ProxyEndpoint> = Vec::new();
    for endpoint in endpoints.iter().flatten() {
        if !distinct.contains(endpoint) {
            distinct.push(endpoint.clone());
        }
    }
    let resolved = resolve_endpoints(&distinct, resolver, wait);
    let mut proxies: Vec<WatchedProxy> = Vec::new();
    let mut full = false;
    for (candidate, endpoint) in candidates.iter().zip(&endpoints) {
        let Some(endpoint) = endpoint else { continue };
        let addrs = match resolved.get(endpoint) {
            Some(Ok(addrs)) => addrs,
            Some(Err(problem)) => {
                add_problem(problems, &format!("{}: {problem}", candidate.label()));
                continue;
            }
            None => continue,
        };
        for &addr in addrs {
            if proxies.iter().any(|p| p.addr == addr) {
                continue;
            }
            if proxies.len() >= MAX_WATCHED {
                if !full {
                    full = true;
                    add_problem(
                        problems,
                        &format!(
                            "{}: {addr} not watched: at most {MAX_WATCHED} proxy addresses are",
                            candidate.label()
                        ),
                    );
                }
                continue;
            }
            proxies.push(WatchedProxy {
                addr,
                url: endpoint.url(),
                source: sanitize::line(&candidate.source).into_owned(),
                no_proxy: candidate.no_proxy.clone(),
            });
        }
    }
    proxies
}

/// The addresses of each endpoint, or why there are none. Addresses need no resolver; names
/// are resolved each on its own thread, all within `wait`, at most [`MAX_HOSTS`] of them.
fn resolve_endpoints(
    endpoints: &[ProxyEndpoint],
    resolver: &Arc<Resolver>,
    wait: Duration,
) -> HashMap<ProxyEndpoint, Result<Vec<SocketAddr>, String>> {
    let mut results: HashMap<ProxyEndpoint, Result<Vec<SocketAddr>, String>> = HashMap::new();
    let (sender, receiver) = mpsc::channel();
    let mut pending = 0usize;
    let mut names = 0usize;
    for endpoint in endpoints {
        if let Ok(ip) = endpoint.host.parse::<IpAddr>() {
            results.insert(
                endpoint.clone(),
                Ok(vec![SocketAddr::new(ip, endpoint.port)]),
            );
            continue;
        }
        names += 1;
        if names > MAX_HOSTS {
            results.insert(
                endpoint.clone(),
                Err(format!(
                    "{} not resolved: at most {MAX_HOSTS} proxy names are",
                    endpoint.host
                )),
            );
            continue;
        }
        let sender = sender.clone();
        let resolver = Arc::clone(resolver);
        let job = endpoint.clone();
        let spawned = thread::Builder::new()
            .name("proxy-resolve".to_owned())
            .spawn(move || {
                let answer = resolver(&job.host, job.port);
                let _ = sender.send((job, answer));
            });
        match spawned {
            Ok(_) => pending += 1,
            Err(e) => {
                results.insert(
                    endpoint.clone(),
                    Err(format!("cannot start resolving {}: {e}", endpoint.host)),
                );
            }
        }
    }
    drop(sender);
    let deadline = Instant::now() + wait;
    while pending > 0 {
        let Ok((endpoint, answer)) =
            receiver.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        else {
            break;
        };
        pending -= 1;
        let result = match answer {
            Ok(addrs) => {
                let mut unique: Vec<SocketAddr> = Vec::new();
                for addr in addrs {
                    if !unique.contains(&addr) {
                        unique.push(addr);
                    }
                }
                if unique.is_empty() {
                    Err(format!("{} has no address", endpoint.host))
                } else {
                    Ok(unique)
                }
            }
            Err(e) => Err(format!("{} does not resolve: {e}", endpoint.host)),
        };
        results.insert(endpoint, result);
    }
    // The threads still resolving are left to finish on their own; their answers are dropped.
    for endpoint in endpoints {
        results.entry(endpoint.clone()).or_insert_with(|| {
            let within = if wait.subsec_millis() == 0 {
                format!("{} s", wait.as_secs())
            } else {
                format!("{} ms", wait.as_millis())
            };
            Err(format!("{} did not resolve within {within}", endpoint.host))
        });
    }
    results
}

#[cfg(test)]
mod tests;
