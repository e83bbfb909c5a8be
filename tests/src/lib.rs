//! A privileged "network lab" for end-to-end tests: two network namespaces
//! joined by a veth pair, a real DNS server (dnsmasq) and real TLS servers,
//! all torn down when the [`Lab`] is dropped (also when a test panics).
//!
//! ```text
//!   runner netns  "obs-<tag>-<pid>-<seq>-run"      internet netns "obs-<tag>-<pid>-<seq>-net"
//!   +---------------------------------+           +-----------------------------------------+
//!   | lo                              |           | lo                                      |
//!   | ov<hash>r 198.18.0.1/24         |<--veth--->| ov<hash>n 198.18.0.2/24, fd00::2/64     |
//!   |           fd00::1/64            |           |   + every declared server/record        |
//!   | routes: 198.18.0.0/15, fd00::/8 |           |     address as /32 or /128              |
//!   |   via the internet end;         |           | dnsmasq on 198.18.0.2:53, [fd00::2]:53  |
//!   |   no default route              |           | tls_server.py on <addr>:443             |
//!   +---------------------------------+           +-----------------------------------------+
//! ```
//!
//! Only addresses from 198.18.0.0/15 (RFC 2544 benchmarking) and fd00::/8
//! (unique local) are ever configured; the builder panics on any other.
//! Neither namespace has a default route or any interface besides `lo` and
//! its veth end, so nothing can leave the lab. dnsmasq has no upstream
//! server, so no query is ever forwarded.
//!
//! Programs run through [`Lab::run_in_runner`] (`ip netns exec`) resolve
//! names through the lab's dnsmasq: the harness writes
//! `/etc/netns/<ns>/resolv.conf` (`nameserver 198.18.0.2`), a minimal
//! `hosts` (localhost, and the machine's host name on 127.0.1.1 so that
//! programs looking it up, like `curl -w '%{json}'`, send no query) and an
//! `nsswitch.conf` whose `hosts:` line is `files dns` (no systemd-resolved
//! or mDNS path out of the lab), which `ip netns exec` bind-mounts over
//! `/etc`. Harness readiness probes run from the internet namespace, so the
//! runner namespace carries only the traffic that the test itself makes.
//! With [`LabConfig::local_stub_resolver`] the runner instead asks a caching
//! dnsmasq on 127.0.0.53 inside its own namespace, which forwards to
//! 198.18.0.2 (a host with systemd-resolved); its readiness probe is the one
//! query the harness makes in the runner namespace, before any observer runs.
//!
//! # DNS behaviour (dnsmasq 2.90, verified by the selftests)
//!
//! | declared with             | dnsmasq options                          | answer |
//! |---------------------------|------------------------------------------|--------|
//! | [`LabConfig::a`]/[`LabConfig::aaaa`] | `--host-record=name,addr` per address + `--local=/name/` | the addresses; NOERROR/NODATA for a type without records |
//! | [`LabConfig::cname`]      | `--cname=alias,target` + `--local=/alias/` | the CNAME chain and the final addresses |
//! | [`LabConfig::nxdomain`]   | `--local=/name/`                         | NXDOMAIN (also for subdomains) |
//! | [`LabConfig::refused`]    | `--server=/name/#` ("the default servers": there are none) | REFUSED |
//! | anything undeclared       | (no upstream: `--no-resolv`, no `--server`) | REFUSED |
//!
//! Without `--local=/name/`, dnsmasq would answer REFUSED (not NODATA) to
//! an AAAA query for a name that only has an A record. A side effect is
//! that undeclared subdomains of a declared name get NXDOMAIN.
//!
//! # Teardown
//!
//! [`Lab::teardown`] (run by `Drop`, so also when a test panics) SIGTERMs
//! then SIGKILLs every process the lab started (through pidfds, so a
//! recycled pid is never hit), then every other process still inside the
//! lab's namespaces, deletes both namespaces (and so the veth pair), and
//! removes `/etc/netns/<ns>` and the work directory. When the test thread is
//! panicking it first prints the tail of the dnsmasq and TLS server logs.
//! A lab whose process was killed (SIGKILL, ^C) cannot clean up; the next
//! [`LabConfig::start`] on the machine removes labs whose owner pid is
//! gone. Do not keep a `Lab` in a `static`: statics are never dropped.
//!
//! # Example
//!
//! ```no_run
//! use observer_tests::{require_root_or_skip, LabConfig};
//!
//! if !require_root_or_skip() {
//!     return;
//! }
//! let lab = LabConfig::new("doc")
//!     .a("api.github.com", "198.18.1.10".parse().unwrap())
//!     .tls_server("198.18.1.10".parse().unwrap())
//!     .start();
//! let r = lab.curl("https://api.github.com/bytes/1000", &[]);
//! r.expect_status(200);
//! assert_eq!(r.size_download, 1000);
//! // `lab` is dropped here: processes killed, namespaces deleted.
//! ```

#![warn(missing_docs)]

mod cert;
mod curl;
mod dns;
pub mod flood;
pub mod observer;
mod sys;

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

pub use curl::CurlResult;
pub use dns::{DnsRecord, DnsResponse, Rcode, RecordType};
pub use sys::pid_alive;

use sys::{NETNS_ETC_DIR, NETNS_RUN_DIR, PROXY_VARS};

/// The runner's IPv4 address (on its veth end).
pub const RUNNER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The internet end's IPv4 address: the DNS server and the runner's gateway.
pub const INTERNET_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The runner's IPv6 address (on its veth end).
pub const RUNNER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
/// The internet end's IPv6 address: the DNS server and the runner's gateway.
pub const INTERNET_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
/// Port of every TLS server.
pub const TLS_PORT: u16 = 443;

/// How long `start()` waits for a server to come up.
const READY_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// How long a lab server may take to answer: 10 s, or `OBSERVER_LAB_READY_TIMEOUT` seconds (the
/// kernel matrix raises it: under qemu without KVM, python's TLS servers start slowly).
fn ready_timeout() -> Duration {
    std::env::var("OBSERVER_LAB_READY_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(READY_TIMEOUT_DEFAULT, Duration::from_secs)
}
/// Grace period between SIGTERM and SIGKILL on teardown.
const TERM_GRACE: Duration = Duration::from_secs(3);
/// Environment variable that keeps the work directory after teardown.
pub const KEEP_WORKDIR_ENV: &str = "OBS_LAB_KEEP_WORKDIR";

/// The python TLS server script, embedded as a fallback in case the source
/// tree is not where it was at build time.
const TLS_SERVER_PY: &str = include_str!("../lab/tls_server.py");

/// True if `addr` is one the lab may use: 198.18.0.0/15 or fd00::/8.
pub fn is_lab_addr(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => {
            let o = a.octets();
            o[0] == 198 && (o[1] & 0xfe) == 18
        }
        IpAddr::V6(a) => a.octets()[0] == 0xfd,
    }
}

/// Decides whether a lab test can run: returns true when running as root
/// (euid 0).
///
/// Otherwise, when the environment variable `CI` is set and non-empty it
/// panics (a CI run must not silently skip the lab tests); when it is not,
/// it prints a skip message on stderr and returns false.
#[track_caller]
pub fn require_root_or_skip() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!(
            "lab tests need root (euid 0) to create network namespaces, and CI is set, \
             so they may not be skipped; run them as root (e.g. sudo -E cargo test -p \
             observer-tests -- --test-threads=1)"
        );
    }
    eprintln!(
        "skipping lab test at {}: needs root (euid 0) to create network namespaces",
        std::panic::Location::caller()
    );
    false
}

/// Builder for a [`Lab`]: DNS records, TLS servers, then [`LabConfig::start`].
///
/// Names are case-insensitive and may carry a trailing dot; addresses must
/// satisfy [`is_lab_addr`] and must not be the runner's own addresses
/// ([`RUNNER_V4`], [`RUNNER_V6`]). Invalid input panics at once.
#[derive(Debug, Clone)]
pub struct LabConfig {
    tag: String,
    a: Vec<(String, Ipv4Addr)>,
    aaaa: Vec<(String, Ipv6Addr)>,
    cnames: Vec<(String, String)>,
    nxdomain: Vec<String>,
    refused: Vec<String>,
    tls_servers: Vec<IpAddr>,
    host_addrs: Vec<IpAddr>,
    sinkholes: Vec<(String, IpAddr)>,
    servfail: Vec<String>,
    unanswered: Vec<String>,
    tls_reset_servers: Vec<IpAddr>,
    idle_cut_servers: Vec<(IpAddr, f64)>,
    resolver_options: Option<String>,
    stub_resolver: bool,
    dns_lab: Option<Vec<String>>,
}

/// The address of the lab's scripted DNS server (see [`LabConfig::dns_lab`]).
pub const DNS_LAB: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 5);

/// The address of the runner's local stub resolver (see [`LabConfig::local_stub_resolver`]), as
/// systemd-resolved listens on it.
pub const STUB_RESOLVER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 53);

/// The DNS upstream that answers SERVFAIL to everything (see [`LabConfig::servfail`]).
pub const SERVFAIL_UPSTREAM: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
/// An upstream address where nothing listens (see [`LabConfig::unanswered`]).
pub const DEAD_UPSTREAM: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 4);

impl LabConfig {
    /// A lab named after `tag` (1–24 characters out of `[A-Za-z0-9_-]`).
    ///
    /// The namespaces are called `obs-{tag}-{pid}-{seq}-run` and
    /// `obs-{tag}-{pid}-{seq}-net`, where `seq` counts labs started by this
    /// process, so any number of labs (same tag or not) can coexist.
    #[track_caller]
    pub fn new(tag: &str) -> Self {
        let ok = !tag.is_empty()
            && tag.len() <= 24
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        assert!(
            ok,
            "network lab: tag {tag:?} must be 1-24 characters of [A-Za-z0-9_-]"
        );
        LabConfig {
            tag: tag.to_owned(),
            a: Vec::new(),
            aaaa: Vec::new(),
            cnames: Vec::new(),
            nxdomain: Vec::new(),
            refused: Vec::new(),
            tls_servers: Vec::new(),
            host_addrs: Vec::new(),
            sinkholes: Vec::new(),
            servfail: Vec::new(),
            unanswered: Vec::new(),
            tls_reset_servers: Vec::new(),
            idle_cut_servers: Vec::new(),
            resolver_options: None,
            stub_resolver: false,
            dns_lab: None,
        }
    }

    /// Gives the runner a local caching stub resolver, as on a host with systemd-resolved: a
    /// dnsmasq in the runner namespace on 127.0.0.53 forwarding to the lab's DNS server, and the
    /// runner's resolv.conf pointing at it. Clients then ask the stub over loopback and the stub
    /// asks upstream, so every answer is received twice: by the stub, then by the client.
    pub fn local_stub_resolver(mut self) -> Self {
        self.stub_resolver = true;
        self
    }

    /// Runs, on `addr:443`, a TLS server that reads one HTTP request and, instead of answering,
    /// resets the connection after `after_s` seconds: a middlebox cutting the runner's long poll.
    #[track_caller]
    pub fn idle_cut_server(mut self, addr: IpAddr, after_s: f64) -> Self {
        check_addr(addr);
        self.idle_cut_servers.push((addr, after_s));
        self
    }

    /// Makes dnsmasq answer `name` with `addr` (0.0.0.0 or `::`, say), as DNS filters such as
    /// Pi-hole do for names they block. Call once per address family.
    #[track_caller]
    pub fn sinkhole(mut self, name: &str, addr: IpAddr) -> Self {
        self.sinkholes.push((normalize_name(name), addr));
        self
    }

    /// Makes dnsmasq forward `name` to an upstream that answers SERVFAIL
    /// ([`SERVFAIL_UPSTREAM`], a real UDP responder in the internet namespace).
    #[track_caller]
    pub fn servfail(mut self, name: &str) -> Self {
        self.servfail.push(normalize_name(name));
        self
    }

    /// Makes dnsmasq forward `name` to an upstream where nothing listens ([`DEAD_UPSTREAM`]):
    /// dnsmasq never answers, so the client's queries time out.
    #[track_caller]
    pub fn unanswered(mut self, name: &str) -> Self {
        self.unanswered.push(normalize_name(name));
        self
    }

    /// Runs, on `addr:443`, a server that completes the TCP handshake, reads the client's first
    /// bytes (its TLS ClientHello) and resets the connection: an SNI-filtering firewall.
    #[track_caller]
    pub fn tls_reset_server(mut self, addr: IpAddr) -> Self {
        check_addr(addr);
        self.tls_reset_servers.push(addr);
        self
    }

    /// The runner asks `tests/lab/dns_lab.py` on [`DNS_LAB`] instead of dnsmasq, a real UDP and
    /// TCP DNS server with per-(name, type) behaviours dnsmasq cannot be configured for:
    /// `name:TYPE:answer:ADDR[,ADDR]`, `refused`, `servfail`, `nodata`, `drop`,
    /// `fail-first:RCODE:ADDR` (the first query fails, a retry answers), `truncate:ADDR` (TC over
    /// UDP, the answer over TCP). Questions without a rule are refused.
    pub fn dns_lab(mut self, rules: &[&str]) -> Self {
        self.dns_lab = Some(rules.iter().map(|r| (*r).to_owned()).collect());
        self.host_addr(IpAddr::V4(DNS_LAB))
    }

    /// An `options` line for the runner's resolv.conf, e.g. `timeout:1 attempts:1` so that
    /// DNS timeouts take a second rather than ten.
    pub fn resolver_options(mut self, options: &str) -> Self {
        self.resolver_options = Some(options.to_owned());
        self
    }

    /// Adds an A record (call again for more addresses of the same name).
    /// The address is also configured in the internet namespace.
    #[track_caller]
    pub fn a(mut self, name: &str, addr: Ipv4Addr) -> Self {
        check_addr(IpAddr::V4(addr));
        self.a.push((normalize_name(name), addr));
        self
    }

    /// Adds an AAAA record (call again for more addresses of the same name).
    /// The address is also configured in the internet namespace.
    #[track_caller]
    pub fn aaaa(mut self, name: &str, addr: Ipv6Addr) -> Self {
        check_addr(IpAddr::V6(addr));
        self.aaaa.push((normalize_name(name), addr));
        self
    }

    /// Adds a CNAME `alias -> target`. The target may itself be an alias
    /// (chains of any length); the chain must end at a name with A/AAAA
    /// records (checked by [`LabConfig::start`]).
    #[track_caller]
    pub fn cname(mut self, alias: &str, target: &str) -> Self {
        self.cnames
            .push((normalize_name(alias), normalize_name(target)));
        self
    }

    /// Makes `name` (and its subdomains) answer NXDOMAIN.
    #[track_caller]
    pub fn nxdomain(mut self, name: &str) -> Self {
        self.nxdomain.push(normalize_name(name));
        self
    }

    /// Makes `name` (and its subdomains) answer REFUSED.
    #[track_caller]
    pub fn refused(mut self, name: &str) -> Self {
        self.refused.push(normalize_name(name));
        self
    }

    /// Runs a TLS (HTTP/1.1) server on `addr:443` in the internet namespace;
    /// see `tests/lab/tls_server.py` for its endpoints.
    #[track_caller]
    pub fn tls_server(mut self, addr: IpAddr) -> Self {
        check_addr(addr);
        self.tls_servers.push(addr);
        self
    }

    /// Configures `addr` in the internet namespace without any DNS record
    /// or server (e.g. to get "connection refused" on it, or for servers a
    /// test runs itself with [`Lab::spawn_in_internet`]).
    #[track_caller]
    pub fn host_addr(mut self, addr: IpAddr) -> Self {
        check_addr(addr);
        self.host_addrs.push(addr);
        self
    }

    /// Builds the lab: namespaces, veth, addresses, routes, resolver files,
    /// certificates, dnsmasq and the TLS servers, and waits until every
    /// server answers. Panics with the failing command and its stderr (or
    /// the server's log) on any failure, after tearing down what was built.
    #[track_caller]
    pub fn start(self) -> Lab {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            panic!("network lab needs root; call require_root_or_skip() first");
        }
        let plan = Plan::new(&self);
        let tools = Tools::find();
        sweep_stale_labs(&tools.ip);

        static SEQ: AtomicU32 = AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let base = format!("obs-{}-{}-{seq}", self.tag, std::process::id());
        let work_dir = std::env::temp_dir().join(format!("{base}-work"));
        // Anything already named like this was left by a dead process that
        // had our pid (this process never reuses a sequence number).
        let _ = remove_dir_all_if_exists(&work_dir);
        if let Err(e) = std::fs::DirBuilder::new().mode(0o700).create(&work_dir) {
            panic!("network lab: cannot create {}: {e}", work_dir.display());
        }
        let hash = fnv1a(&base);
        let mut lab = Lab {
            runner_ns: format!("{base}-run"),
            internet_ns: format!("{base}-net"),
            runner_veth: format!("ov{hash:08x}r"),
            internet_veth: format!("ov{hash:08x}n"),
            ca_file: work_dir.join("ca.pem"),
            server_cert: work_dir.join("server.pem"),
            server_key: work_dir.join("server.key"),
            work_dir,
            internet_addrs: plan.internet_addrs.clone(),
            tools,
            created_ns: Vec::new(),
            etc_dirs: Vec::new(),
            procs: Mutex::new(Vec::new()),
            dnsmasq_pid: 0,
            stub_resolver_pid: None,
            tls_server_pid: None,
            keep_work_dir: std::env::var_os(KEEP_WORKDIR_ENV).is_some_and(|v| !v.is_empty()),
            torn_down: false,
        };
        // From here on, a panic drops `lab`, which tears down what exists.
        lab.setup_network();
        lab.write_etc_netns(plan.resolver_options.as_deref(), plan.stub_resolver);
        if self.dns_lab.is_some() {
            lab.point_runner_at(IpAddr::V4(DNS_LAB), plan.resolver_options.as_deref());
        }
        let mut cert_addrs = plan.internet_addrs.clone();
        cert_addrs.extend([IpAddr::V4(INTERNET_V4), IpAddr::V6(INTERNET_V6)]);
        let pki = cert::generate(
            &lab.tools.openssl,
            &lab.work_dir,
            &plan.all_names,
            &cert_addrs,
        );
        lab.ca_file = pki.ca_cert;
        lab.server_cert = pki.server_cert;
        lab.server_key = pki.server_key;
        lab.start_dnsmasq(&plan.dnsmasq_args);
        if plan.stub_resolver {
            lab.start_stub_resolver();
        }
        if !plan.tls_servers.is_empty() {
            lab.start_tls_server(&plan.tls_servers);
        }
        if plan.servfail_upstream {
            lab.start_misbehaving("servfail", &[IpAddr::V4(SERVFAIL_UPSTREAM)], &[]);
        }
        if let Some(rules) = &self.dns_lab {
            lab.start_dns_lab(rules);
        }
        if !plan.tls_reset_servers.is_empty() {
            lab.start_misbehaving("tls-reset", &plan.tls_reset_servers, &[]);
        }
        for (addr, after) in &plan.idle_cut_servers {
            let extra = [
                "--after".to_owned(),
                after.to_string(),
                "--cert".to_owned(),
                lab.server_cert.to_string_lossy().into_owned(),
                "--key".to_owned(),
                lab.server_key.to_string_lossy().into_owned(),
            ];
            lab.start_misbehaving("idle-cut", &[*addr], &extra);
        }
        lab
    }
}

/// Validated configuration, turned into what `start` needs.
struct Plan {
    /// Addresses configured on the internet veth (besides 198.18.0.2 and
    /// fd00::2), in declaration order.
    internet_addrs: Vec<IpAddr>,
    tls_servers: Vec<IpAddr>,
    /// Every declared name (for the certificate's SAN).
    all_names: Vec<String>,
    /// Record options for dnsmasq.
    dnsmasq_args: Vec<String>,
    servfail_upstream: bool,
    tls_reset_servers: Vec<IpAddr>,
    idle_cut_servers: Vec<(IpAddr, f64)>,
    resolver_options: Option<String>,
    stub_resolver: bool,
}

impl Plan {
    #[track_caller]
    fn new(c: &LabConfig) -> Plan {
        let mut dnsmasq_args = Vec::new();
        let mut record_names: Vec<String> = Vec::new();
        let mut seen = BTreeSet::new();
        for (name, addr) in
            c.a.iter()
                .map(|(n, a)| (n, IpAddr::V4(*a)))
                .chain(c.aaaa.iter().map(|(n, a)| (n, IpAddr::V6(*a))))
        {
            if seen.insert((name.clone(), addr)) {
                dnsmasq_args.push(format!("--host-record={name},{addr}"));
            }
            push_unique(&mut record_names, name.clone());
        }

        let mut aliases: HashMap<&str, &str> = HashMap::new();
        for (alias, target) in &c.cnames {
            if let Some(old) = aliases.insert(alias, target) {
                assert!(
                    old == target,
                    "network lab: CNAME {alias} declared with two targets ({old}, {target})"
                );
            }
            assert!(
                !record_names.contains(alias),
                "network lab: {alias} has both a CNAME and A/AAAA records"
            );
        }
        for alias in aliases.keys() {
            // Follow the chain: it must end at a name with records.
            let mut name = *alias;
            let mut hops = 0;
            while let Some(next) = aliases.get(name) {
                hops += 1;
                assert!(
                    hops <= 16,
                    "network lab: CNAME loop or chain too long from {alias}"
                );
                name = next;
            }
            assert!(
                record_names.iter().any(|n| n == name),
                "network lab: CNAME chain from {alias} ends at {name}, which has no A/AAAA \
                 record (dnsmasq only serves CNAMEs whose target it knows)"
            );
        }
        for (alias, target) in &c.cnames {
            let arg = format!("--cname={alias},{target}");
            if !dnsmasq_args.contains(&arg) {
                dnsmasq_args.push(arg);
            }
        }
        let mut resolvable = record_names.clone();
        for (alias, _) in &c.cnames {
            push_unique(&mut resolvable, alias.clone());
        }
        // `--local` makes dnsmasq answer NOERROR/NODATA (instead of REFUSED)
        // for a declared name's missing record types.
        for name in &resolvable {
            dnsmasq_args.push(format!("--local=/{name}/"));
        }
        for name in &c.nxdomain {
            assert!(
                !resolvable.contains(name),
                "network lab: {name} is declared both with records and as NXDOMAIN"
            );
            dnsmasq_args.push(format!("--local=/{name}/"));
        }
        for name in &c.refused {
            assert!(
                !resolvable.contains(name) && !c.nxdomain.contains(name),
                "network lab: {name} is declared as REFUSED and also as something else"
            );
            dnsmasq_args.push(format!("--server=/{name}/#"));
        }
        for (name, addr) in &c.sinkholes {
            dnsmasq_args.push(format!("--address=/{name}/{addr}"));
        }
        for name in &c.servfail {
            dnsmasq_args.push(format!("--server=/{name}/{SERVFAIL_UPSTREAM}"));
        }
        for name in &c.unanswered {
            dnsmasq_args.push(format!("--server=/{name}/{DEAD_UPSTREAM}"));
        }
        let mut unique = Vec::with_capacity(dnsmasq_args.len());
        for arg in dnsmasq_args {
            push_unique(&mut unique, arg);
        }
        let dnsmasq_args = unique;

        let special = [IpAddr::V4(INTERNET_V4), IpAddr::V6(INTERNET_V6)];
        let mut internet_addrs = Vec::new();
        for addr in c
            .tls_servers
            .iter()
            .copied()
            .chain(c.a.iter().map(|(_, a)| IpAddr::V4(*a)))
            .chain(c.aaaa.iter().map(|(_, a)| IpAddr::V6(*a)))
            .chain(c.host_addrs.iter().copied())
            .chain(c.tls_reset_servers.iter().copied())
            .chain(c.idle_cut_servers.iter().map(|(a, _)| *a))
            .chain((!c.servfail.is_empty()).then_some(IpAddr::V4(SERVFAIL_UPSTREAM)))
            .chain((!c.unanswered.is_empty()).then_some(IpAddr::V4(DEAD_UPSTREAM)))
        {
            if !special.contains(&addr) {
                push_unique(&mut internet_addrs, addr);
            }
        }
        let mut tls_servers = Vec::new();
        for addr in &c.tls_servers {
            push_unique(&mut tls_servers, *addr);
        }
        let mut all_names = resolvable;
        for n in c
            .nxdomain
            .iter()
            .chain(&c.refused)
            .chain(&c.servfail)
            .chain(&c.unanswered)
            .chain(c.sinkholes.iter().map(|(n, _)| n))
        {
            push_unique(&mut all_names, n.clone());
        }
        Plan {
            internet_addrs,
            tls_servers,
            all_names,
            dnsmasq_args,
            servfail_upstream: !c.servfail.is_empty(),
            tls_reset_servers: c.tls_reset_servers.clone(),
            idle_cut_servers: c.idle_cut_servers.clone(),
            resolver_options: c.resolver_options.clone(),
            stub_resolver: c.stub_resolver,
        }
    }
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

#[track_caller]
fn check_addr(addr: IpAddr) {
    assert!(
        is_lab_addr(addr),
        "network lab: {addr} is outside 198.18.0.0/15 and fd00::/8; only those may be used"
    );
    assert!(
        addr != IpAddr::V4(RUNNER_V4) && addr != IpAddr::V6(RUNNER_V6),
        "network lab: {addr} is the runner's own address"
    );
    if let IpAddr::V4(a) = addr {
        assert!(
            a != Ipv4Addr::new(198, 18, 0, 0) && a != Ipv4Addr::new(198, 18, 0, 255),
            "network lab: {addr} is the network/broadcast address of the veth subnet"
        );
    }
}

/// Lower-cases `name`, strips one trailing dot and checks it is a valid
/// host name (letters, digits, '-', '_'; labels of 1–63 characters).
#[track_caller]
fn normalize_name(name: &str) -> String {
    let n = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let ok = !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    assert!(ok, "network lab: {name:?} is not a valid DNS name");
    n
}

fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Absolute paths of the external programs the lab needs.
#[derive(Debug, Clone)]
struct Tools {
    ip: PathBuf,
    dnsmasq: PathBuf,
    openssl: PathBuf,
    python3: PathBuf,
}

impl Tools {
    #[track_caller]
    fn find() -> Tools {
        let mut missing = Vec::new();
        let mut get = |name: &str, pkg: &str| {
            sys::find_program(name).unwrap_or_else(|| {
                missing.push(format!("{name} (Debian package {pkg})"));
                PathBuf::new()
            })
        };
        let tools = Tools {
            ip: get("ip", "iproute2"),
            dnsmasq: get("dnsmasq", "dnsmasq-base"),
            openssl: get("openssl", "openssl"),
            python3: get("python3", "python3"),
        };
        assert!(
            missing.is_empty(),
            "network lab: missing programs: {}",
            missing.join(", ")
        );
        tools
    }
}

/// A process started by the lab, killed on teardown.
struct Tracked {
    what: String,
    pid: u32,
    /// Present when the lab owns the process (and so reaps it).
    child: Option<Child>,
    /// Stable handle, immune to pid reuse.
    pidfd: Option<OwnedFd>,
}

/// Which direction of the path [`Lab::shape`] shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// What the runner receives.
    Downloads,
    /// What the runner sends.
    Uploads,
}

/// A real shaper, with its parameters as `tc` writes them (`40kbit`, `2mbit`, `4kb`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shaper {
    /// An HTB class (the usual router or host shaper), with its default burst and queue.
    Htb {
        /// As tc writes it: `40kbit`, `2mbit`.
        rate: String,
    },
    /// A token-bucket filter.
    #[allow(missing_docs, reason = "tc's own parameters")]
    Tbf {
        rate: String,
        burst: String,
        latency: String,
    },
    /// A policer: what exceeds the rate is dropped, not queued (ISP and cloud limits).
    Police {
        /// 5,000 bytes/s is 40 kbit/s.
        bytes_per_s: u32,
        /// What may pass at once (at least a packet).
        burst_bytes: u32,
    },
}

/// A running network lab; see the [crate docs](crate). Everything it
/// created is removed by [`Lab::teardown`], which `Drop` calls.
pub struct Lab {
    runner_ns: String,
    internet_ns: String,
    runner_veth: String,
    internet_veth: String,
    work_dir: PathBuf,
    ca_file: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    internet_addrs: Vec<IpAddr>,
    tools: Tools,
    /// Namespaces created so far (deleted on teardown).
    created_ns: Vec<String>,
    /// `/etc/netns/<ns>` directories created so far.
    etc_dirs: Vec<PathBuf>,
    procs: Mutex<Vec<Tracked>>,
    dnsmasq_pid: u32,
    stub_resolver_pid: Option<u32>,
    tls_server_pid: Option<u32>,
    keep_work_dir: bool,
    torn_down: bool,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("runner_ns", &self.runner_ns)
            .field("internet_ns", &self.internet_ns)
            .field("work_dir", &self.work_dir)
            .field("internet_addrs", &self.internet_addrs)
            .finish_non_exhaustive()
    }
}

impl Lab {
    // ------------------------------------------------------------------
    // Accessors
    // ------------------------------------------------------------------

    /// Name of the runner network namespace (as used by `ip netns`).
    pub fn runner_ns(&self) -> &str {
        &self.runner_ns
    }

    /// Name of the internet network namespace (as used by `ip netns`).
    pub fn internet_ns(&self) -> &str {
        &self.internet_ns
    }

    /// Name of the veth interface inside the runner namespace.
    pub fn runner_veth(&self) -> &str {
        &self.runner_veth
    }

    /// Name of the veth interface inside the internet namespace.
    pub fn internet_veth(&self) -> &str {
        &self.internet_veth
    }

    /// The runner's resolver: 198.18.0.2 (dnsmasq also listens on fd00::2).
    pub fn dns_server(&self) -> IpAddr {
        IpAddr::V4(INTERNET_V4)
    }

    /// The CA certificate (PEM) to trust, e.g. `curl --cacert`. It signed
    /// the servers' certificate, whose SAN has every declared name and
    /// every internet-side address.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The TLS servers' certificate (PEM, CN `lab`).
    pub fn server_cert_file(&self) -> &Path {
        &self.server_cert
    }

    /// The TLS servers' private key (PEM).
    pub fn server_key_file(&self) -> &Path {
        &self.server_key
    }

    /// Temporary directory (mode 0700) holding certificates and logs;
    /// removed on teardown unless `OBS_LAB_KEEP_WORKDIR` is set.
    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    /// Addresses configured in the internet namespace besides 198.18.0.2
    /// and fd00::2 (servers and A/AAAA records), in declaration order.
    pub fn internet_addrs(&self) -> &[IpAddr] {
        &self.internet_addrs
    }

    /// Pid of the dnsmasq process.
    pub fn dnsmasq_pid(&self) -> u32 {
        self.dnsmasq_pid
    }

    /// The runner's stub resolver, when the lab has one ([`LabConfig::local_stub_resolver`]).
    pub fn stub_resolver_pid(&self) -> Option<u32> {
        self.stub_resolver_pid
    }

    /// Pid of the TLS server process (one process serves every address),
    /// if any server was declared.
    pub fn tls_server_pid(&self) -> Option<u32> {
        self.tls_server_pid
    }

    /// dnsmasq's query log so far (`--log-queries`).
    pub fn dnsmasq_log(&self) -> String {
        std::fs::read_to_string(self.work_dir.join("dnsmasq.log")).unwrap_or_default()
    }

    /// The TLS server's output so far (one line per request).
    pub fn tls_server_log(&self) -> String {
        std::fs::read_to_string(self.work_dir.join("tls_server.log")).unwrap_or_default()
    }

    // ------------------------------------------------------------------
    // Running things
    // ------------------------------------------------------------------

    fn netns_command(&self, ns: &str, program: &str) -> Command {
        let mut cmd = Command::new(&self.tools.ip);
        cmd.args(["netns", "exec", ns, program]);
        for v in PROXY_VARS {
            cmd.env_remove(v);
        }
        cmd
    }

    /// A `Command` for `ip netns exec <runner> program` (proxy variables
    /// removed) to customise and run; start it with [`Lab::spawn`] to have
    /// it killed on teardown (teardown kills every process left in the lab's
    /// namespaces anyway).
    pub fn runner_command(&self, program: &str) -> Command {
        self.netns_command(&self.runner_ns, program)
    }

    /// Like [`Lab::runner_command`], in the internet namespace.
    pub fn internet_command(&self, program: &str) -> Command {
        self.netns_command(&self.internet_ns, program)
    }

    /// Runs `program args...` in the runner namespace to completion
    /// (stdin empty, stdout/stderr captured), whatever its exit status.
    /// Panics only if `ip` cannot be started.
    #[track_caller]
    pub fn run_in_runner(&self, program: &str, args: &[&str]) -> Output {
        let mut cmd = self.runner_command(program);
        cmd.args(args);
        output_or_panic(&mut cmd)
    }

    /// Like [`Lab::run_in_runner`], in the internet namespace.
    #[track_caller]
    pub fn run_in_internet(&self, program: &str, args: &[&str]) -> Output {
        let mut cmd = self.internet_command(program);
        cmd.args(args);
        output_or_panic(&mut cmd)
    }

    /// Starts `program args...` in the runner namespace (stdin null,
    /// stdout/stderr inherited) and returns it; teardown kills it if it
    /// still runs. The caller may wait for or kill it earlier.
    #[track_caller]
    pub fn spawn_in_runner(&self, program: &str, args: &[&str]) -> Child {
        let mut cmd = self.runner_command(program);
        cmd.args(args).stdin(Stdio::null());
        self.spawn(&mut cmd)
    }

    /// Like [`Lab::spawn_in_runner`], in the internet namespace.
    #[track_caller]
    pub fn spawn_in_internet(&self, program: &str, args: &[&str]) -> Child {
        let mut cmd = self.internet_command(program);
        cmd.args(args).stdin(Stdio::null());
        self.spawn(&mut cmd)
    }

    /// Spawns `cmd` (typically from [`Lab::runner_command`]) and records it
    /// (through a pidfd, so a recycled pid is never signalled) to be killed
    /// on teardown.
    #[track_caller]
    pub fn spawn(&self, cmd: &mut Command) -> Child {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("network lab: cannot spawn {cmd:?}: {e}"));
        let pid = child.id();
        let tracked = Tracked {
            what: format!("{cmd:?}"),
            pid,
            child: None,
            pidfd: sys::pidfd_open(pid),
        };
        self.procs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(tracked);
        child
    }

    /// Runs `curl` in the runner namespace:
    /// `curl -q --cacert <ca> -sS -o /dev/null -w '%{json}' --noproxy '*'
    /// --connect-timeout 10 --max-time 60 <extra...> <url>`.
    ///
    /// `extra` comes after the defaults, so it can override them (curl uses
    /// the last value), e.g. `&["-6"]`, `&["--data-binary", "@file"]`,
    /// `&["-X", "POST"]` or `&["--max-time", "5"]`. If `extra` has its own
    /// `-o`/`--output` (curl applies one per URL), `-o /dev/null` is left
    /// out so the body lands in that file. Do not override `-w`: the result
    /// fields come from its JSON.
    ///
    /// Never panics because curl failed: check [`CurlResult::exit_code`]
    /// (or use [`CurlResult::expect_status`]).
    #[track_caller]
    pub fn curl(&self, url: &str, extra: &[&str]) -> CurlResult {
        let curl = curl_program();
        let ca = self.ca_file.to_string_lossy().into_owned();
        let mut args: Vec<&str> = vec!["-q", "--cacert", &ca, "-sS"];
        if !extra.iter().any(|a| *a == "-o" || *a == "--output") {
            args.extend_from_slice(&["-o", "/dev/null"]);
        }
        args.extend_from_slice(&[
            "-w",
            "%{json}",
            "--noproxy",
            "*",
            "--connect-timeout",
            "10",
            "--max-time",
            "60",
        ]);
        args.extend_from_slice(extra);
        args.push(url);
        let mut cmd = self.runner_command(&curl.to_string_lossy());
        cmd.args(&args);
        let out = output_or_panic(&mut cmd);
        let line = format!(
            "ip netns exec {} {}",
            self.runner_ns,
            sys::display_cmd(curl, &args)
        );
        CurlResult::from_output(line, &out)
    }

    /// Sends one DNS query (UDP) for `name`/`qtype` from the runner
    /// namespace to the lab's DNS server and returns the parsed answer.
    /// Panics if no answer arrives within 2 s.
    #[track_caller]
    pub fn dns_query(&self, name: &str, qtype: RecordType) -> DnsResponse {
        let server = self.dns_server();
        self.try_dns_query(server, name, qtype)
            .unwrap_or_else(|e| panic!("network lab: DNS query {name} {qtype:?} to {server}: {e}"))
    }

    /// Like [`Lab::dns_query`] but to any server address, returning errors.
    pub fn try_dns_query(
        &self,
        server: IpAddr,
        name: &str,
        qtype: RecordType,
    ) -> io::Result<DnsResponse> {
        let server = SocketAddr::new(server, 53);
        sys::in_netns(&self.runner_ns, || {
            dns::query(server, name, qtype, Duration::from_secs(2))
        })?
    }

    /// Runs `f` on a new thread inside the runner namespace and returns its
    /// result (a panic in `f` is propagated). Sockets created in `f` live
    /// in the runner namespace, so Rust code can talk to the lab directly.
    /// Use IP addresses there: name resolution in that thread would use the
    /// host's `/etc/resolv.conf`, not the lab's (it fails, as the host's
    /// resolver is unreachable from the lab).
    #[track_caller]
    pub fn in_runner_ns<T: Send, F: FnOnce() -> T + Send>(&self, f: F) -> T {
        sys::in_netns(&self.runner_ns, f)
            .unwrap_or_else(|e| panic!("network lab: cannot enter {}: {e}", self.runner_ns))
    }

    /// Like [`Lab::in_runner_ns`], in the internet namespace.
    #[track_caller]
    pub fn in_internet_ns<T: Send, F: FnOnce() -> T + Send>(&self, f: F) -> T {
        sys::in_netns(&self.internet_ns, f)
            .unwrap_or_else(|e| panic!("network lab: cannot enter {}: {e}", self.internet_ns))
    }

    // ------------------------------------------------------------------
    // Setup
    // ------------------------------------------------------------------

    fn ip(&self, args: &[&str]) {
        sys::run_or_panic(&self.tools.ip, args);
    }

    fn setup_network(&mut self) {
        let (run, net) = (self.runner_ns.clone(), self.internet_ns.clone());
        let (rv, nv) = (self.runner_veth.clone(), self.internet_veth.clone());
        for ns in [&run, &net] {
            if Path::new(NETNS_RUN_DIR).join(ns).exists() {
                // Stale, from a dead process that had our pid.
                sys::kill_netns_processes(ns, Duration::from_millis(500));
                if let Err(e) = delete_netns(&self.tools.ip, ns) {
                    panic!("network lab: cannot remove stale namespace {ns}: {e}");
                }
            }
            self.ip(&["netns", "add", ns]);
            self.created_ns.push(ns.clone());
            // No duplicate address detection, so that IPv6 addresses
            // (link-local ones included) are usable at once.
            let _ = sys::in_netns(ns, || {
                for conf in ["all", "default"] {
                    let p = format!("/proc/sys/net/ipv6/conf/{conf}/accept_dad");
                    let _ = std::fs::write(p, "0");
                }
            });
        }
        // Both ends are created directly inside their namespaces: nothing
        // ever appears in the host's namespace.
        self.ip(&[
            "link", "add", &rv, "netns", &run, "type", "veth", "peer", "name", &nv, "netns", &net,
        ]);
        for (ns, dev) in [(&run, &rv), (&net, &nv)] {
            self.ip(&["-n", ns, "link", "set", "lo", "up"]);
            self.ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        let r4 = format!("{RUNNER_V4}/24");
        let r6 = format!("{RUNNER_V6}/64");
        let n4 = format!("{INTERNET_V4}/24");
        let n6 = format!("{INTERNET_V6}/64");
        self.ip(&["-n", &run, "addr", "add", &r4, "dev", &rv]);
        self.ip(&["-n", &run, "addr", "add", &r6, "dev", &rv, "nodad"]);
        self.ip(&["-n", &net, "addr", "add", &n4, "dev", &nv]);
        self.ip(&["-n", &net, "addr", "add", &n6, "dev", &nv, "nodad"]);
        for addr in self.internet_addrs.clone() {
            match addr {
                IpAddr::V4(a) => {
                    self.ip(&["-n", &net, "addr", "add", &format!("{a}/32"), "dev", &nv])
                }
                IpAddr::V6(a) => self.ip(&[
                    "-n",
                    &net,
                    "addr",
                    "add",
                    &format!("{a}/128"),
                    "dev",
                    &nv,
                    "nodad",
                ]),
            }
        }
        let gw4 = INTERNET_V4.to_string();
        let gw6 = INTERNET_V6.to_string();
        self.ip(&[
            "-n",
            &run,
            "route",
            "add",
            "198.18.0.0/15",
            "via",
            &gw4,
            "dev",
            &rv,
        ]);
        self.ip(&[
            "-n", &run, "-6", "route", "add", "fd00::/8", "via", &gw6, "dev", &rv,
        ]);
        self.wait_links_ready();
    }

    /// Waits until both veth ends have carrier and no address is tentative.
    fn wait_links_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut pending = Vec::new();
            for (ns, dev) in [
                (&self.runner_ns, &self.runner_veth),
                (&self.internet_ns, &self.internet_veth),
            ] {
                let link = sys::run_or_panic(
                    &self.tools.ip,
                    &["-n", ns, "-o", "link", "show", "dev", dev],
                );
                if !String::from_utf8_lossy(&link.stdout).contains("LOWER_UP") {
                    pending.push(format!("{ns}/{dev}: no carrier"));
                }
                let tent = sys::run_or_panic(
                    &self.tools.ip,
                    &["-n", ns, "-6", "-o", "addr", "show", "tentative"],
                );
                let tent = String::from_utf8_lossy(&tent.stdout);
                if !tent.trim().is_empty() {
                    pending.push(format!("{ns}: tentative addresses: {}", tent.trim()));
                }
            }
            if pending.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "network lab: links not ready after 5 s: {}",
                pending.join("; ")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Writes `/etc/netns/<ns>/{resolv.conf,hosts,nsswitch.conf}` for both
    /// namespaces, so that programs run with `ip netns exec` resolve through
    /// the lab's dnsmasq and only through it.
    fn write_etc_netns(&mut self, resolver_options: Option<&str>, stub_resolver: bool) {
        assert!(
            Path::new("/etc/resolv.conf").exists(),
            "network lab: /etc/resolv.conf does not exist (or is a dangling symlink); \
             `ip netns exec` needs it as the bind-mount target for the lab's resolver \
             configuration"
        );
        let nsswitch = std::fs::read_to_string("/etc/nsswitch.conf").ok().map(|s| {
            let mut out: String = s
                .lines()
                .filter(|l| !l.trim_start().starts_with("hosts:"))
                .map(|l| format!("{l}\n"))
                .collect();
            out.push_str("hosts: files dns\n");
            out
        });
        // The machine's own name maps to loopback, as in Debian's default
        // /etc/hosts: some programs look it up (e.g. `curl -w '%{json}'`),
        // and that must not show up as DNS traffic in the lab.
        let mut hosts =
            String::from("127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n");
        if let Some(h) = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty() && h != "localhost")
        {
            hosts.push_str(&format!("127.0.1.1 {h}\n"));
        }
        let namespaces = [
            (self.runner_ns.clone(), stub_resolver),
            (self.internet_ns.clone(), false),
        ];
        for (ns, stub) in namespaces {
            let nameserver = if stub {
                IpAddr::V4(STUB_RESOLVER)
            } else {
                IpAddr::V4(INTERNET_V4)
            };
            let dir = Path::new(NETNS_ETC_DIR).join(&ns);
            if let Err(e) = std::fs::create_dir_all(&dir) {
                panic!("network lab: cannot create {}: {e}", dir.display());
            }
            self.etc_dirs.push(dir.clone());
            let mut files = vec![
                (
                    "resolv.conf",
                    match resolver_options {
                        Some(o) => format!("nameserver {nameserver}\noptions {o}\n"),
                        None => format!("nameserver {nameserver}\n"),
                    },
                ),
                ("hosts", hosts.clone()),
            ];
            if let Some(n) = &nsswitch {
                files.push(("nsswitch.conf", n.clone()));
            }
            for (name, content) in files {
                let p = dir.join(name);
                if let Err(e) = std::fs::write(&p, content) {
                    panic!("network lab: cannot write {}: {e}", p.display());
                }
            }
        }
    }

    /// Spawns a lab-owned server in the internet namespace with stdout and
    /// stderr going to `work_dir/<log>`.
    fn spawn_server(&mut self, what: &str, log: &str, program: &Path, args: &[String]) -> u32 {
        let cmd = self.internet_command(&program.to_string_lossy());
        self.spawn_logged(cmd, what, log, args)
    }

    /// Spawns `cmd args...` as a lab-owned process with stdout and stderr going to
    /// `work_dir/<log>`.
    fn spawn_logged(&mut self, mut cmd: Command, what: &str, log: &str, args: &[String]) -> u32 {
        let log_path = self.work_dir.join(log);
        let file = File::create(&log_path)
            .unwrap_or_else(|e| panic!("network lab: cannot create {}: {e}", log_path.display()));
        let err = file
            .try_clone()
            .unwrap_or_else(|e| panic!("network lab: cannot dup log fd: {e}"));
        cmd.args(args).stdin(Stdio::null()).stdout(file).stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("network lab: cannot start {what} ({cmd:?}): {e}"));
        let pid = child.id();
        self.procs
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Tracked {
                what: what.to_owned(),
                pid,
                pidfd: sys::pidfd_open(pid),
                child: Some(child),
            });
        pid
    }

    /// Panics with the server's log if the lab-owned process `pid` exited.
    fn check_alive(&mut self, pid: u32, what: &str, logs: &[&str]) {
        let procs = self.procs.get_mut().unwrap_or_else(PoisonError::into_inner);
        let Some(t) = procs.iter_mut().find(|t| t.pid == pid) else {
            return;
        };
        if let Some(Ok(Some(status))) = t.child.as_mut().map(Child::try_wait) {
            let logs: Vec<String> = logs
                .iter()
                .map(|l| {
                    let text = std::fs::read_to_string(self.work_dir.join(l)).unwrap_or_default();
                    format!("--- {l} ---\n{}", text.trim_end())
                })
                .collect();
            panic!(
                "network lab: {what} exited during startup ({status}); command: {}\n{}",
                t.what,
                logs.join("\n")
            );
        }
    }

    fn start_dnsmasq(&mut self, records: &[String]) {
        let w = |f: &str| self.work_dir.join(f).to_string_lossy().into_owned();
        let mut args: Vec<String> = [
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            "--bind-dynamic",
            "--port=53",
            "--user=root",
            "--group=root",
            "--log-queries",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(format!("--listen-address={INTERNET_V4}"));
        args.push(format!("--listen-address={INTERNET_V6}"));
        args.push(format!("--pid-file={}", w("dnsmasq.pid")));
        args.push(format!("--log-facility={}", w("dnsmasq.log")));
        args.extend_from_slice(records);
        std::fs::write(self.work_dir.join("dnsmasq.args"), args.join("\n") + "\n").ok();
        let program = self.tools.dnsmasq.clone();
        let pid = self.spawn_server("dnsmasq", "dnsmasq.stderr", &program, &args);
        self.dnsmasq_pid = pid;

        let ready = ready_timeout();
        let deadline = Instant::now() + ready;
        let servers = [
            SocketAddr::new(IpAddr::V4(INTERNET_V4), 53),
            SocketAddr::new(IpAddr::V6(INTERNET_V6), 53),
        ];
        // Probe from the internet namespace so the runner sees no harness traffic.
        let ns = self.internet_ns.clone();
        for server in servers {
            self.wait_dns_ready((pid, "dnsmasq", "dnsmasq"), &ns, server, deadline);
        }
    }

    /// Waits until the lab-owned DNS server `pid` (`what`, logging to `<log>.stderr` and
    /// `<log>.log` in the work directory) answers a probe sent to `server` from namespace `ns`;
    /// panics with its logs if it exits or is still silent at `deadline`.
    fn wait_dns_ready(
        &mut self,
        (pid, what, log): (u32, &str, &str),
        ns: &str,
        server: SocketAddr,
        deadline: Instant,
    ) {
        let (stderr, log) = (format!("{log}.stderr"), format!("{log}.log"));
        let ready = ready_timeout();
        loop {
            self.check_alive(pid, what, &[&stderr, &log]);
            let r = sys::in_netns(ns, || {
                dns::query(
                    server,
                    "lab-readiness-probe.invalid",
                    RecordType::A,
                    Duration::from_millis(200),
                )
            });
            let last_err = match r {
                Ok(Ok(_)) => return,
                Ok(Err(e)) | Err(e) => e,
            };
            assert!(
                Instant::now() < deadline,
                "network lab: {what} does not answer on {server} after {ready:?} (last \
                 error: {last_err}); stderr: {}; log: {}",
                std::fs::read_to_string(self.work_dir.join(&stderr)).unwrap_or_default(),
                std::fs::read_to_string(self.work_dir.join(&log)).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The runner's caching stub resolver on 127.0.0.53, forwarding to the lab's dnsmasq.
    fn start_stub_resolver(&mut self) {
        let w = |f: &str| self.work_dir.join(f).to_string_lossy().into_owned();
        let args: Vec<String> = vec![
            "--keep-in-foreground".into(),
            "--conf-file=/dev/null".into(),
            "--no-resolv".into(),
            "--no-hosts".into(),
            "--no-poll".into(),
            "--bind-interfaces".into(),
            format!("--listen-address={STUB_RESOLVER}"),
            "--port=53".into(),
            format!("--server={INTERNET_V4}"),
            "--user=root".into(),
            "--group=root".into(),
            "--log-queries".into(),
            format!("--pid-file={}", w("stub.pid")),
            format!("--log-facility={}", w("stub.log")),
        ];
        let cmd = self.runner_command(&self.tools.dnsmasq.to_string_lossy());
        let pid = self.spawn_logged(cmd, "stub resolver", "stub.stderr", &args);
        self.stub_resolver_pid = Some(pid);
        let server = SocketAddr::new(IpAddr::V4(STUB_RESOLVER), 53);
        // Before any observer starts: this probe is the only harness traffic in the runner.
        let ns = self.runner_ns.clone();
        let ready = ready_timeout();
        let deadline = Instant::now() + ready;
        self.wait_dns_ready((pid, "stub resolver", "stub"), &ns, server, deadline);
    }

    fn start_tls_server(&mut self, addrs: &[IpAddr]) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/tls_server.py");
        let script = if script.is_file() {
            script
        } else {
            let copy = self.work_dir.join("tls_server.py");
            if let Err(e) = std::fs::write(&copy, TLS_SERVER_PY) {
                panic!("network lab: cannot write {}: {e}", copy.display());
            }
            copy
        };
        let mut args = vec![
            "-u".to_owned(),
            script.to_string_lossy().into_owned(),
            "--cert".into(),
            self.server_cert.to_string_lossy().into_owned(),
            "--key".into(),
            self.server_key.to_string_lossy().into_owned(),
            "--port".into(),
            TLS_PORT.to_string(),
        ];
        for a in addrs {
            args.push("--addr".into());
            args.push(a.to_string());
        }
        let program = self.tools.python3.clone();
        let pid = self.spawn_server("tls_server.py", "tls_server.log", &program, &args);
        self.tls_server_pid = Some(pid);

        let ready = ready_timeout();
        let deadline = Instant::now() + ready;
        for addr in addrs {
            let sa = SocketAddr::new(*addr, TLS_PORT);
            loop {
                self.check_alive(pid, "TLS server", &["tls_server.log"]);
                let r = sys::in_netns(&self.internet_ns, || {
                    TcpStream::connect_timeout(&sa, Duration::from_millis(200))
                });
                let err = match r {
                    Ok(Ok(_)) => break,
                    Ok(Err(e)) | Err(e) => e,
                };
                if Instant::now() >= deadline {
                    panic!(
                        "network lab: TLS server not accepting on {sa} after {ready:?} \
                         (last error: {err}); log:\n{}",
                        self.tls_server_log()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Rewrites the runner's resolv.conf to ask `server`.
    fn point_runner_at(&mut self, server: IpAddr, options: Option<&str>) {
        let path = Path::new(NETNS_ETC_DIR)
            .join(&self.runner_ns)
            .join("resolv.conf");
        let text = match options {
            Some(o) => format!("nameserver {server}\noptions {o}\n"),
            None => format!("nameserver {server}\n"),
        };
        if let Err(e) = std::fs::write(&path, text) {
            panic!("network lab: cannot write {}: {e}", path.display());
        }
    }

    /// Starts `tests/lab/dns_lab.py server` on [`DNS_LAB`] with `rules` and waits until it serves.
    fn start_dns_lab(&mut self, rules: &[String]) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/dns_lab.py");
        let mut args = vec![
            "-u".to_owned(),
            script.to_string_lossy().into_owned(),
            "server".into(),
            "--addr".into(),
            DNS_LAB.to_string(),
        ];
        for r in rules {
            args.push("--rule".into());
            args.push(r.clone());
        }
        let log = "dns_lab.log";
        let program = self.tools.python3.clone();
        let pid = self.spawn_server("dns_lab", log, &program, &args);
        let deadline = Instant::now() + ready_timeout();
        loop {
            self.check_alive(pid, "dns_lab", &[log]);
            if std::fs::read_to_string(self.work_dir.join(log)).is_ok_and(|t| !t.is_empty()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "network lab: dns_lab server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts `tests/lab/misbehaving.py MODE` on `addrs` and waits until it serves.
    fn start_misbehaving(&mut self, mode: &str, addrs: &[IpAddr], extra: &[String]) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/misbehaving.py");
        let mut args = vec![
            "-u".to_owned(),
            script.to_string_lossy().into_owned(),
            mode.into(),
        ];
        for a in addrs {
            args.push("--addr".into());
            args.push(a.to_string());
        }
        args.extend(extra.iter().cloned());
        let log = format!(
            "{mode}-{}.log",
            addrs.first().map(|a| a.to_string()).unwrap_or_default()
        );
        let program = self.tools.python3.clone();
        let pid = self.spawn_server(mode, &log, &program, &args);
        let ready = ready_timeout();
        let deadline = Instant::now() + ready;
        loop {
            self.check_alive(pid, mode, &[&log]);
            let ready = std::fs::read_to_string(self.work_dir.join(&log))
                .is_ok_and(|text| text.lines().count() >= addrs.len());
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "network lab: {mode} server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Shapes the traffic the internet namespace sends to the runner (downloads) with a token
    /// bucket: `rate` as tc writes it (`40kbit`, `2mbit`). No netem here: TBF is what there is.
    pub fn throttle_downloads(&self, rate: &str, burst: &str, latency: &str) {
        let out = self
            .internet_command("tc")
            .args(["qdisc", "add", "dev", &self.internet_veth, "root", "tbf"])
            .args(["rate", rate, "burst", burst, "latency", latency])
            .output()
            .unwrap_or_else(|e| panic!("network lab: cannot run tc: {e}"));
        assert!(
            out.status.success(),
            "network lab: tc tbf {rate}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Shapes one direction of the path to and from `server` with a real shaper of the kind
    /// routers and hosts use; other traffic passes unshaped (so the runner's SYNs and ACKs do not
    /// wait behind a shaped transfer in the other direction). Downloads are shaped where the
    /// internet namespace sends (a policer: where the runner receives), uploads where the runner
    /// sends (a policer: where the internet receives). GSO/TSO stay on, as on any Linux host: a
    /// queueing shaper then releases whole GSO bursts, in lumps. One shaper per direction.
    pub fn shape(&self, direction: Direction, shaper: &Shaper, server: Ipv4Addr) {
        let (sender_ns, dev, receiver_ns, field) = match direction {
            Direction::Downloads => (
                &self.internet_ns,
                &self.internet_veth,
                &self.runner_ns,
                "src",
            ),
            Direction::Uploads => (&self.runner_ns, &self.runner_veth, &self.internet_ns, "dst"),
        };
        let root = [
            format!("qdisc add dev {dev} root handle 1: htb default 20"),
            format!("class add dev {dev} parent 1: classid 1:20 htb rate 10gbit"),
        ];
        let filter = format!(
            "filter add dev {dev} parent 1: protocol ip prio 1 u32 match ip {field} {server}/32 \
             flowid 1:10"
        );
        let commands: Vec<String> = match shaper {
            Shaper::Htb { rate } => [
                root[0].clone(),
                root[1].clone(),
                format!("class add dev {dev} parent 1: classid 1:10 htb rate {rate}"),
                filter,
            ]
            .into(),
            Shaper::Tbf {
                rate,
                burst,
                latency,
            } => [
                root[0].clone(),
                root[1].clone(),
                format!("class add dev {dev} parent 1: classid 1:10 htb rate 10gbit"),
                format!(
                    "qdisc add dev {dev} parent 1:10 handle 10: tbf rate {rate} burst {burst} \
                     latency {latency}"
                ),
                filter,
            ]
            .into(),
            Shaper::Police {
                bytes_per_s,
                burst_bytes,
            } => {
                // This kernel has no tc police action; nftables' limit is the same token-bucket
                // policer (what exceeds is dropped), as firewalls apply it.
                let ruleset = format!(
                    "table ip lab_police {{\n  chain pre {{\n    type filter hook prerouting \
                     priority -300;\n    ip {field}addr {server} limit rate over {bytes_per_s} \
                     bytes/second burst {burst_bytes} bytes drop\n  }}\n}}\n",
                    field = &field[..1],
                );
                self.nft(self.netns_command(receiver_ns, "nft"), &ruleset);
                Vec::new()
            }
        };
        for command in commands {
            let out = self
                .netns_command(sender_ns, "tc")
                .args(command.split_whitespace())
                .output()
                .unwrap_or_else(|e| panic!("network lab: cannot run tc: {e}"));
            assert!(
                out.status.success(),
                "network lab: tc {command}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Applies an nftables ruleset (`nft -f -` syntax) in the runner namespace: a host
    /// firewall on the runner. It goes with the namespace at teardown.
    pub fn nft_runner(&self, ruleset: &str) {
        self.nft(self.runner_command("nft"), ruleset);
    }

    /// Applies an nftables ruleset in the internet namespace: a firewall or middlebox on the
    /// path, whose drops, resets and ICMP errors reach the runner over the wire.
    pub fn nft_internet(&self, ruleset: &str) {
        self.nft(self.internet_command("nft"), ruleset);
    }

    fn nft(&self, mut cmd: Command, ruleset: &str) {
        use std::io::Write as _;
        let mut child = cmd
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("network lab: cannot run nft: {e}"));
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(ruleset.as_bytes());
        }
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("network lab: nft: {e}"));
        assert!(
            out.status.success(),
            "network lab: nft rejected the ruleset:\n{ruleset}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // ------------------------------------------------------------------
    // Teardown
    // ------------------------------------------------------------------

    /// Removes everything the lab created: kills every process it started
    /// (SIGTERM, then SIGKILL after a grace period) and any other process
    /// still inside its namespaces, deletes both namespaces (and so the
    /// veth pair), removes `/etc/netns/<ns>` and the work directory.
    ///
    /// Idempotent, never panics; problems are reported on stderr. Called by
    /// `Drop`; call it directly to check the cleanup itself.
    pub fn teardown(&mut self) {
        if std::mem::replace(&mut self.torn_down, true) {
            return;
        }
        let mut problems = Vec::new();
        if std::thread::panicking() {
            self.dump_logs();
        }
        let procs = std::mem::take(self.procs.get_mut().unwrap_or_else(PoisonError::into_inner));
        problems.extend(stop_processes(procs));
        for ns in &self.created_ns {
            problems.extend(sys::kill_netns_processes(ns, Duration::from_secs(1)));
        }
        for ns in self.created_ns.iter().rev() {
            if let Err(e) = delete_netns(&self.tools.ip, ns) {
                problems.push(e);
            }
        }
        self.created_ns.clear();
        for dir in self.etc_dirs.drain(..) {
            if let Err(e) = remove_dir_all_if_exists(&dir) {
                problems.push(format!("remove {}: {e}", dir.display()));
            }
        }
        if self.keep_work_dir {
            eprintln!("network lab: keeping work dir {}", self.work_dir.display());
        } else if let Err(e) = remove_dir_all_if_exists(&self.work_dir) {
            problems.push(format!("remove {}: {e}", self.work_dir.display()));
        }
        if !problems.is_empty() {
            eprintln!("network lab teardown problems: {}", problems.join("; "));
        }
    }

    /// On a failing test, prints the tail of the server logs (the work dir
    /// is about to be removed).
    fn dump_logs(&self) {
        for log in ["dnsmasq.stderr", "dnsmasq.log", "tls_server.log"] {
            let Ok(text) = std::fs::read_to_string(self.work_dir.join(log)) else {
                continue;
            };
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(30)..];
            if !tail.is_empty() {
                eprintln!(
                    "--- network lab {log} (last {} lines) ---\n{}",
                    tail.len(),
                    tail.join("\n")
                );
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.teardown()));
        if r.is_err() {
            eprintln!("network lab: teardown panicked (ignored)");
        }
    }
}

/// Runs `cmd`, capturing its output; panics only if it cannot be started.
#[track_caller]
fn output_or_panic(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("network lab: cannot run {cmd:?}: {e}"))
}

/// Path of `curl`, checked once to support `-w '%{json}'` (curl >= 7.70).
#[track_caller]
fn curl_program() -> &'static Path {
    static CURL: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let r = CURL.get_or_init(|| {
        let path = sys::find_program("curl").ok_or("curl not found (Debian package curl)")?;
        let out = sys::run(&path, &["--version"])?;
        let text = String::from_utf8_lossy(&out.stdout);
        match curl::parse_version(&text) {
            Some(v) if v >= (7, 70) => Ok(path),
            _ => Err(format!(
                "curl >= 7.70 is needed for -w '%{{json}}', found: {}",
                text.lines().next().unwrap_or("")
            )),
        }
    });
    match r {
        Ok(p) => p,
        Err(e) => panic!("network lab: {e}"),
    }
}

/// SIGTERM every tracked process, wait up to [`TERM_GRACE`], SIGKILL the
/// rest, and reap the lab's own children. Returns problems.
fn stop_processes(mut procs: Vec<Tracked>) -> Vec<String> {
    let mut problems = Vec::new();
    for t in &mut procs {
        let exited = matches!(t.child.as_mut().map(Child::try_wait), Some(Ok(Some(_))));
        if exited {
            continue;
        }
        match (&t.pidfd, &t.child) {
            (Some(fd), _) => {
                sys::pidfd_signal(fd, libc::SIGTERM);
            }
            // Our own unreaped child: its pid cannot have been reused.
            (None, Some(_)) => {
                // SAFETY: plain kill(2) on our own unreaped child.
                unsafe { libc::kill(t.pid as libc::pid_t, libc::SIGTERM) };
            }
            // No handle and not ours: leave it to the namespace sweep.
            (None, None) => {}
        }
    }
    let deadline = Instant::now() + TERM_GRACE;
    for t in &mut procs {
        if !wait_tracked(t, deadline) {
            if let Some(fd) = &t.pidfd {
                sys::pidfd_signal(fd, libc::SIGKILL);
            } else if t.child.is_some() {
                // SAFETY: as above.
                unsafe { libc::kill(t.pid as libc::pid_t, libc::SIGKILL) };
            }
            if !wait_tracked(t, Instant::now() + Duration::from_secs(2)) {
                problems.push(format!("pid {} ({}) survived SIGKILL", t.pid, t.what));
            }
        }
    }
    problems
}

/// Waits until `t` exited (reaping it if it is ours); false on timeout.
fn wait_tracked(t: &mut Tracked, deadline: Instant) -> bool {
    if let Some(child) = &mut t.child {
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return true,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Ok(None) => return false,
                Err(_) => return true, // already reaped
            }
        }
    }
    match &t.pidfd {
        Some(fd) => sys::pidfd_wait_exit(fd, deadline.saturating_duration_since(Instant::now())),
        None => true,
    }
}

fn delete_netns(ip: &Path, ns: &str) -> Result<(), String> {
    let handle = Path::new(NETNS_RUN_DIR).join(ns);
    if !handle.exists() {
        return Ok(());
    }
    match sys::run(ip, &["netns", "del", ns]) {
        Ok(_) => Ok(()),
        Err(_) if !handle.exists() => Ok(()),
        Err(e) => Err(e),
    }
}

fn remove_dir_all_if_exists(p: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(p) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Parses a lab object name `obs-<tag>-<pid>-<seq>-<role>` into
/// (pid, role).
fn parse_lab_name(name: &str) -> Option<(u32, &str)> {
    let rest = name.strip_prefix("obs-")?;
    let mut it = rest.rsplitn(4, '-');
    let role = it.next()?;
    let _seq: u32 = it.next()?.parse().ok()?;
    let pid: u32 = it.next()?.parse().ok()?;
    let tag = it.next()?;
    (!tag.is_empty()).then_some((pid, role))
}

/// Removes what labs of dead processes (killed before their `Drop` ran)
/// left behind: their namespaces (after killing the processes inside), their
/// `/etc/netns` directories and work directories. Labs of live processes
/// are left alone. Best effort, never panics.
fn sweep_stale_labs(ip: &Path) {
    let me = std::process::id();
    let dead = |pid: u32| pid != me && !Path::new(&format!("/proc/{pid}")).exists();
    if let Ok(entries) = std::fs::read_dir(NETNS_RUN_DIR) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some((pid, role)) = parse_lab_name(&name) else {
                continue;
            };
            if matches!(role, "run" | "net") && dead(pid) {
                eprintln!("network lab: removing stale namespace {name} (pid {pid} is gone)");
                sys::kill_netns_processes(&name, Duration::from_millis(500));
                if let Err(err) = delete_netns(ip, &name) {
                    eprintln!("network lab: {err}");
                }
            }
        }
    }
    for (dir, role) in [
        (PathBuf::from(NETNS_ETC_DIR), None),
        (std::env::temp_dir(), Some("work")),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some((pid, r)) = parse_lab_name(&name) else {
                continue;
            };
            let role_ok = match role {
                Some(want) => r == want,
                None => matches!(r, "run" | "net"),
            };
            if role_ok && dead(pid) {
                let _ = remove_dir_all_if_exists(&e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_addresses() {
        assert!(is_lab_addr("198.18.0.1".parse().unwrap()));
        assert!(is_lab_addr("198.19.255.255".parse().unwrap()));
        assert!(!is_lab_addr("198.20.0.1".parse().unwrap()));
        assert!(!is_lab_addr("10.0.0.1".parse().unwrap()));
        assert!(is_lab_addr("fd00:0:0:1::10".parse().unwrap()));
        assert!(!is_lab_addr("fe80::1".parse().unwrap()));
        assert!(!is_lab_addr("2001:db8::1".parse().unwrap()));
    }

    #[test]
    #[should_panic(expected = "outside 198.18.0.0/15")]
    fn rejects_foreign_address() {
        let _ = LabConfig::new("x").a("a.test", Ipv4Addr::new(8, 8, 8, 8));
    }

    #[test]
    fn names_are_normalized() {
        assert_eq!(normalize_name("Api.GitHub.com."), "api.github.com");
    }

    #[test]
    #[should_panic(expected = "not a valid DNS name")]
    fn rejects_bad_name() {
        let _ = LabConfig::new("x").nxdomain("a..b");
    }

    #[test]
    fn plan_dnsmasq_options() {
        let c = LabConfig::new("x")
            .a("c.test", Ipv4Addr::new(198, 18, 1, 10))
            .a("c.test", Ipv4Addr::new(198, 18, 1, 11))
            .aaaa("c.test", "fd00:0:0:1::10".parse().unwrap())
            .cname("a.test", "b.test")
            .cname("b.test", "c.test")
            .nxdomain("nx.test")
            .refused("ref.test")
            .tls_server("198.18.1.10".parse().unwrap())
            .tls_server("198.18.0.2".parse().unwrap());
        let p = Plan::new(&c);
        assert_eq!(
            p.dnsmasq_args,
            [
                "--host-record=c.test,198.18.1.10",
                "--host-record=c.test,198.18.1.11",
                "--host-record=c.test,fd00:0:0:1::10",
                "--cname=a.test,b.test",
                "--cname=b.test,c.test",
                "--local=/c.test/",
                "--local=/a.test/",
                "--local=/b.test/",
                "--local=/nx.test/",
                "--server=/ref.test/#",
            ]
        );
        let addrs: Vec<String> = p.internet_addrs.iter().map(|a| a.to_string()).collect();
        assert_eq!(addrs, ["198.18.1.10", "198.18.1.11", "fd00:0:0:1::10"]);
        assert_eq!(p.tls_servers.len(), 2);
        assert_eq!(
            p.all_names,
            ["c.test", "a.test", "b.test", "nx.test", "ref.test"]
        );
    }

    #[test]
    #[should_panic(expected = "has no A/AAAA record")]
    fn rejects_dangling_cname() {
        let c = LabConfig::new("x").cname("a.test", "b.test");
        let _ = Plan::new(&c);
    }

    #[test]
    #[should_panic(expected = "CNAME loop")]
    fn rejects_cname_loop() {
        let c = LabConfig::new("x")
            .cname("a.test", "b.test")
            .cname("b.test", "a.test");
        let _ = Plan::new(&c);
    }

    #[test]
    fn parses_lab_names() {
        assert_eq!(parse_lab_name("obs-my-tag-123-0-run"), Some((123, "run")));
        assert_eq!(parse_lab_name("obs-t-9-12-work"), Some((9, "work")));
        assert_eq!(parse_lab_name("obs-123-0-run"), None);
        assert_eq!(parse_lab_name("other-t-1-0-run"), None);
    }
}
