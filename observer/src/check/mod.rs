//! `observer check`: the active preflight. "Is my firewall blocking the runner, which host, and
//! how?"
//!
//! For every target (each documented exact name of the catalog, plus representative names for
//! the wildcards, see [`default_targets`]) the check does what the runner will do, step by step,
//! and names the first step that fails with a stable reason code (the codes of the audit report,
//! see [`code`]):
//!
//! 1. DNS: A and AAAA queries over UDP to the resolver (the first `nameserver` of
//!    `/etc/resolv.conf` unless told otherwise), following the CNAME chain of the answer.
//!    Sinkhole answers (`0.0.0.0`, `::`, loopback, or configured addresses) are recognised.
//! 2. TCP: a connection to port 443 of every address, with a timeout.
//! 3. TLS: a rustls handshake with the SNI of the name, against the system's trust store plus an
//!    optional extra CA. A connection the far side resets or closes after the ClientHello and
//!    before sending anything is the signature of an SNI-filtering firewall (`tls_reset`).
//!
//! When an HTTP proxy is configured (`https_proxy`, as the runner reads it) and the name is not
//! in `no_proxy`, the proxy resolves the name: the check connects to the proxy, asks
//! `CONNECT name:443`, and runs the TLS handshake through the tunnel.
//!
//! A host is `ok` when every address worked, `degraded` when some worked (or worked with a
//! certificate that does not verify), `blocked` when none did. [`build_report`] turns the results
//! into per-group statuses and a verdict, [`render_table`] prints them, and [`exit_code`] is the
//! process status. docs/check.md is the reference for users.
//!
//! Everything has a timeout and the work runs with bounded parallelism, so a check of the
//! built-in catalog finishes in seconds even when everything is blocked.

mod probe;
mod proxy;
mod render;
mod resolve;
mod summary;
mod targets;

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use serde::{Serialize, Serializer};
use tokio::{sync::Semaphore, task::JoinSet};

use crate::report::Status;

pub use self::{
    render::render_table,
    summary::{build_report, exit_code, CheckReport},
    targets::{default_targets, target, Target},
};
pub use crate::proxy::{proxy_from_env, ProxyConfig};
use resolve::RESOLV_CONF;

/// Version of the `--json` output; changes only when a field changes meaning.
pub const SCHEMA_VERSION: u32 = 1;

/// The stable reason codes, shared with the audit report (docs/report.md).
pub mod code {
    use crate::report::vocab::Reason;

    /// The resolver answered NXDOMAIN: the name does not exist (for this resolver).
    pub const DNS_NXDOMAIN: &str = Reason::DnsNxdomain.as_str();
    /// The resolver answered SERVFAIL.
    pub const DNS_SERVFAIL: &str = Reason::DnsServfail.as_str();
    /// The resolver answered REFUSED.
    pub const DNS_REFUSED: &str = Reason::DnsRefused.as_str();
    /// No answer within the timeout, retries included.
    pub const DNS_TIMEOUT: &str = Reason::DnsTimeout.as_str();
    /// An answer of `0.0.0.0`, `::`, a loopback address, or a configured sinkhole address.
    pub const DNS_SINKHOLE: &str = Reason::DnsSinkhole.as_str();
    /// NOERROR, but neither A nor AAAA records.
    pub const DNS_NO_ADDRESS: &str = Reason::DnsNoAddress.as_str();
    /// Another DNS failure: another response code, a truncated answer, a local socket error.
    pub const DNS_ERROR: &str = Reason::DnsError.as_str();
    /// The SYN was never answered within the timeout.
    pub const TCP_TIMEOUT: &str = Reason::TcpTimeout.as_str();
    /// RST in answer to the SYN (connection refused).
    pub const TCP_RESET: &str = Reason::TcpReset.as_str();
    /// ICMP unreachable or administratively prohibited, or a local firewall rule
    /// (EHOSTUNREACH, ENETUNREACH, EACCES, EPERM).
    pub const TCP_UNREACHABLE: &str = Reason::TcpUnreachable.as_str();
    /// Another socket error while connecting.
    pub const TCP_ERROR: &str = Reason::TcpError.as_str();
    /// An IPv6 address this machine has no route to (ENETUNREACH, EADDRNOTAVAIL): reported, but
    /// not counted against the host, as the runner falls back to the IPv4 addresses.
    pub const IPV6_UNAVAILABLE: &str = Reason::Ipv6Unavailable.as_str();
    /// Reset or closed by the far side after the ClientHello, before any server byte: the
    /// signature of an SNI-filtering firewall.
    pub const TLS_RESET: &str = Reason::TlsReset.as_str();
    /// The server did not complete the handshake within the timeout.
    pub const TLS_TIMEOUT: &str = Reason::TlsTimeout.as_str();
    /// The server's certificate does not verify for the name: a TLS-intercepting proxy whose CA
    /// is not trusted, or another host answering. The host counts as reached (degraded).
    pub const TLS_CERT_INVALID: &str = Reason::TlsCertInvalid.as_str();
    /// Another handshake failure: an alert from the server, a protocol error, a reset after the
    /// server had answered.
    pub const TLS_ERROR: &str = Reason::TlsError.as_str();
    /// The proxy refused the CONNECT (HTTP 403 or another 4xx).
    pub const PROXY_REFUSED: &str = Reason::ProxyRefused.as_str();
    /// The proxy wants credentials (HTTP 407).
    pub const PROXY_AUTH_REQUIRED: &str = Reason::ProxyAuthRequired.as_str();
    /// The proxy could not reach the host (HTTP 502, 503 or 504).
    pub const PROXY_UPSTREAM_FAILED: &str = Reason::ProxyUpstreamFailed.as_str();
    /// Any other CONNECT failure: another HTTP status, no answer, a proxy that cannot be
    /// resolved or whose scheme is not supported.
    pub const PROXY_ERROR: &str = Reason::ProxyError.as_str();
}

/// How to run the check. [`CheckOptions::default`] reads nothing from the environment; the
/// caller sets `proxy` from [`proxy_from_env`].
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// DNS server to ask; `None`: the first nameserver of `/etc/resolv.conf`.
    pub resolver: Option<SocketAddr>,
    /// Time to wait for an answer to one DNS query attempt.
    pub dns_timeout: Duration,
    /// Attempts per DNS query (the same query is sent again after each timeout).
    pub dns_attempts: u32,
    /// Time to wait for a TCP connection (and, through a proxy, for the CONNECT answer).
    pub connect_timeout: Duration,
    /// Time to wait for the TLS handshake to complete.
    pub tls_timeout: Duration,
    /// TCP port of every target.
    pub port: u16,
    /// Extra PEM file of CA certificates, trusted along with the system's.
    pub extra_ca: Option<PathBuf>,
    /// The HTTP proxy the runner would use, from [`proxy_from_env`].
    pub proxy: Option<ProxyConfig>,
    /// How many addresses are probed (connect, CONNECT, TLS) at once (at least 1). DNS queries
    /// are not limited.
    pub parallelism: usize,
    /// Addresses that mean "blocked" when a resolver answers them, besides `0.0.0.0`, `::` and
    /// loopback addresses.
    pub sinkholes: Vec<IpAddr>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            resolver: None,
            dns_timeout: Duration::from_secs(2),
            dns_attempts: 2,
            connect_timeout: Duration::from_secs(5),
            tls_timeout: Duration::from_secs(5),
            port: 443,
            extra_ca: None,
            proxy: None,
            parallelism: 16,
            sinkholes: Vec::new(),
        }
    }
}

/// Why the check could not start. Problems with the hosts themselves are results, not errors.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(
        "no DNS server to ask: {file} lists no usable `nameserver` (give one with --resolver)"
    )]
    NoResolver { file: String },
    #[error("cannot read {file} to find the DNS server (give one with --resolver)")]
    ResolvConf {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the CA file {file}")]
    ReadCa {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the CA file {file} is not usable: {problem}")]
    BadCa { file: String, problem: String },
    #[error("no trusted CA certificate: the system trust store is empty or unreadable ({problem}); give one with --ca-file")]
    NoTrustAnchors { problem: String },
    #[error("cannot set up TLS: {0}")]
    Tls(String),
}

/// One name to check.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HostCheck {
    pub name: String,
    /// Ids of the catalog groups the name belongs to, in catalog order.
    pub groups: Vec<String>,
    /// The wildcard pattern the name stands for, when it is a representative name.
    pub representative_of: Option<String>,
    /// `ok`, `degraded` or `blocked`.
    pub status: Status,
    /// Reason codes (see [`code`]), each once, the DNS one first.
    pub reasons: Vec<String>,
    /// One entry per address tried: the name's addresses, or the proxy's.
    pub addresses: Vec<AddrCheck>,
    pub dns: DnsCheck,
    /// The proxy used for this name, when one was.
    pub proxy: Option<ProxyUse>,
    /// Wall time of the whole check of this name, in milliseconds.
    #[serde(serialize_with = "serialize_ms")]
    pub elapsed_ms: f64,
}

impl HostCheck {
    /// Whether the host answered only with certificates that do not verify: reached, but the
    /// runner's TLS would refuse it unless it trusts the CA that signed them.
    pub fn untrusted(&self) -> bool {
        let reached: Vec<&AddrCheck> = self.addresses.iter().filter(|a| a.reached()).collect();
        !reached.is_empty()
            && reached
                .iter()
                .all(|a| a.failure() == Some(code::TLS_CERT_INVALID))
    }

    /// Whether the runner can use this host: not blocked, and not [`HostCheck::untrusted`].
    pub fn usable(&self) -> bool {
        self.status != Status::Blocked && !self.untrusted()
    }
}

/// The proxy a name was checked through.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProxyUse {
    /// The proxy URL, without credentials.
    pub url: String,
    /// Why the proxy could not be used at all (no address, unsupported scheme).
    pub error: Option<String>,
}

/// One address, step by step.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AddrCheck {
    /// The address connected to: the name's, or the proxy's when `through_proxy`.
    pub addr: IpAddr,
    pub port: u16,
    pub through_proxy: bool,
    pub tcp: Step,
    /// The CONNECT request; `skipped` without a proxy.
    pub proxy: Step,
    pub tls: Step,
    /// What went wrong, in words: the system error, the rustls error (a certificate problem),
    /// the proxy's status line.
    pub detail: Option<String>,
    /// Time to connect, in milliseconds, when the connection was made.
    #[serde(serialize_with = "serialize_opt_ms")]
    pub connect_ms: Option<f64>,
    /// Time of the TLS handshake, in milliseconds, when the server completed its part.
    #[serde(serialize_with = "serialize_opt_ms")]
    pub tls_ms: Option<f64>,
}

impl AddrCheck {
    fn new(addr: SocketAddr, through_proxy: bool) -> Self {
        Self {
            addr: addr.ip(),
            port: addr.port(),
            through_proxy,
            tcp: Step::Skipped,
            proxy: Step::Skipped,
            tls: Step::Skipped,
            detail: None,
            connect_ms: None,
            tls_ms: None,
        }
    }

    /// The reason code of the first step that failed.
    pub fn failure(&self) -> Option<&str> {
        [&self.tcp, &self.proxy, &self.tls]
            .into_iter()
            .find_map(Step::failure)
    }

    /// Whether the server was reached: every step worked, or the only problem is the
    /// certificate.
    pub fn reached(&self) -> bool {
        self.tcp == Step::Ok
            && !matches!(self.proxy, Step::Failed(_))
            && (self.tls == Step::Ok || self.tls.failure() == Some(code::TLS_CERT_INVALID))
    }

    /// The address as people write it with its port: `192.0.2.1:443`, `[2001:db8::1]:443`.
    fn endpoint(&self) -> String {
        SocketAddr::new(self.addr, self.port).to_string()
    }
}

/// One step of a connection. In JSON: `"ok"`, `"skipped"`, or the reason code of the failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Ok,
    Failed(String),
    Skipped,
}

impl Step {
    fn failed(code: &str) -> Self {
        Self::Failed(code.to_owned())
    }

    /// The reason code, for a failed step.
    pub fn failure(&self) -> Option<&str> {
        match self {
            Self::Failed(code) => Some(code),
            Self::Ok | Self::Skipped => None,
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ok => f.write_str("ok"),
            Self::Skipped => f.write_str("skipped"),
            Self::Failed(code) => f.write_str(code),
        }
    }
}

impl Serialize for Step {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// What the resolver said about a name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DnsCheck {
    /// The server asked; `None` when the proxy resolves the name.
    pub resolver: Option<SocketAddr>,
    /// The proxy resolves the name: no query was sent.
    pub by_proxy: bool,
    /// Response code of the A query (of the AAAA query when the A query got no answer):
    /// `NOERROR`, `NXDOMAIN`, ...; `None` without any answer.
    pub rcode: Option<String>,
    /// The names the answer's CNAME records lead through, in order, without the name itself.
    pub cname_chain: Vec<String>,
    /// Every address answered (A, then AAAA), sinkhole addresses included.
    pub addresses: Vec<IpAddr>,
    /// The DNS reason code, when something was wrong.
    pub reason: Option<String>,
    /// Both answers in words, when something was wrong.
    pub detail: Option<String>,
}

/// The context every check of one run shares.
struct Context {
    resolver: SocketAddr,
    dns_timeout: Duration,
    dns_attempts: u32,
    connect_timeout: Duration,
    tls_timeout: Duration,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
    proxy: Option<ProxyConfig>,
    /// The proxy's addresses, or why there are none.
    proxy_addrs: Result<Vec<SocketAddr>, String>,
    sinkholes: Vec<IpAddr>,
    /// Loopback answers are sinkholes (false only in tests, whose servers live on loopback).
    loopback_is_sinkhole: bool,
    limit: Semaphore,
}

impl Context {
    async fn new(options: &CheckOptions) -> Result<Self, CheckError> {
        let resolver = match options.resolver {
            Some(addr) => addr,
            None => resolve::system_resolver(Path::new(RESOLV_CONF))?,
        };
        let tls = probe::tls_config(options.extra_ca.as_deref())?;
        let proxy_addrs = match &options.proxy {
            Some(proxy) => proxy.addresses().await,
            None => Ok(Vec::new()),
        };
        Ok(Self {
            resolver,
            dns_timeout: options.dns_timeout,
            dns_attempts: options.dns_attempts.max(1),
            connect_timeout: options.connect_timeout,
            tls_timeout: options.tls_timeout,
            port: options.port,
            tls,
            proxy: options.proxy.clone(),
            proxy_addrs,
            sinkholes: options.sinkholes.clone(),
            loopback_is_sinkhole: true,
            limit: Semaphore::new(options.parallelism.max(1)),
        })
    }

    /// Waits for a slot among the `parallelism` address probes allowed at once.
    async fn permit(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        // The semaphore is never closed; without a permit the operation would simply run.
        self.limit.acquire().await.ok()
    }

    /// The proxy to use for `name`, unless `no_proxy` exempts it.
    fn proxy_for(&self, name: &str) -> Option<&ProxyConfig> {
        self.proxy
            .as_ref()
            .filter(|proxy| !proxy.bypasses(name, self.port))
    }
}

/// Checks every target, with bounded parallelism; the results are in the order of `targets`.
pub async fn check(
    targets: &[Target],
    options: &CheckOptions,
) -> Result<Vec<HostCheck>, CheckError> {
    let context = Context::new(options).await?;
    Ok(run(targets, Arc::new(context)).await)
}

async fn run(targets: &[Target], context: Arc<Context>) -> Vec<HostCheck> {
    let mut tasks = JoinSet::new();
    for (index, target) in targets.iter().enumerate() {
        let context = Arc::clone(&context);
        let target = target.clone();
        tasks.spawn(async move { (index, check_host(target, &context).await) });
    }
    let mut results: Vec<Option<HostCheck>> = vec![None; targets.len()];
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, host)) => results[index] = Some(host),
            // A panic in a check is a bug: let it surface as one.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => {}
        }
    }
    results.into_iter().flatten().collect()
}

async fn check_host(target: Target, context: &Arc<Context>) -> HostCheck {
    let started = Instant::now();
    let name = target.name.clone();
    let mut dns = DnsCheck::default();
    let mut proxy_use = None;
    let mut to_probe: Vec<(SocketAddr, bool)> = Vec::new();
    if let Some(proxy) = context.proxy_for(&name) {
        dns.by_proxy = true;
        let error = match &context.proxy_addrs {
            Ok(addrs) => {
                to_probe.extend(addrs.iter().map(|&a| (a, true)));
                None
            }
            Err(e) => Some(e.clone()),
        };
        proxy_use = Some(ProxyUse {
            url: proxy.url(),
            error,
        });
    } else {
        dns = resolve::resolve(&name, context).await;
        to_probe.extend(
            dns.addresses
                .iter()
                .filter(|&&ip| !resolve::is_sinkhole(ip, context))
                .map(|&ip| (SocketAddr::new(ip, context.port), false)),
        );
    }

    let mut tasks = JoinSet::new();
    for (index, (addr, through_proxy)) in to_probe.iter().copied().enumerate() {
        let context = Arc::clone(context);
        let name = name.clone();
        tasks.spawn(async move {
            let check = if through_proxy {
                probe::through_proxy(&name, addr, &context).await
            } else {
                probe::direct(&name, addr, &context).await
            };
            (index, check)
        });
    }
    let mut addresses: Vec<Option<AddrCheck>> = vec![None; to_probe.len()];
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, check)) => addresses[index] = Some(check),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => {}
        }
    }
    let addresses: Vec<AddrCheck> = addresses.into_iter().flatten().collect();
    let proxy_failed = proxy_use.as_ref().is_some_and(|p| p.error.is_some());
    let (status, reasons) = aggregate(&dns, proxy_failed, &addresses);
    HostCheck {
        name,
        groups: target.groups,
        representative_of: target.representative_of,
        status,
        reasons,
        addresses,
        dns,
        proxy: proxy_use,
        elapsed_ms: millis(started.elapsed()),
    }
}

/// A host's status and reason codes from its DNS answer and its addresses.
///
/// `blocked` when no address was reached (or there was none to try); `degraded` when some
/// address failed, an address was reached only with an invalid certificate, or the DNS answer
/// was partly wrong (a sinkhole address, one of the two queries failing); `ok` otherwise.
/// Addresses that failed with `ipv6_unavailable` do not count, and their code is listed only
/// when nothing else worked.
fn aggregate(dns: &DnsCheck, proxy_failed: bool, addresses: &[AddrCheck]) -> (Status, Vec<String>) {
    let mut reasons: Vec<String> = Vec::new();
    let mut add = |code: &str| {
        if !reasons.iter().any(|r| r == code) {
            reasons.push(code.to_owned());
        }
    };
    if let Some(reason) = &dns.reason {
        add(reason);
    }
    if proxy_failed {
        add(code::PROXY_ERROR);
    }
    let counted: Vec<&AddrCheck> = addresses
        .iter()
        .filter(|a| a.failure() != Some(code::IPV6_UNAVAILABLE))
        .collect();
    for failure in counted.iter().filter_map(|a| a.failure()) {
        add(failure);
    }
    let reached = counted.iter().filter(|a| a.reached()).count();
    let status = if reached == 0 {
        Status::Blocked
    } else if dns.reason.is_some() || counted.iter().any(|a| a.failure().is_some()) {
        Status::Degraded
    } else {
        Status::Ok
    };
    if status == Status::Blocked && counted.len() < addresses.len() {
        add(code::IPV6_UNAVAILABLE);
    }
    (status, reasons)
}

/// Milliseconds, to a tenth.
fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 10_000.0).round() / 10.0
}

fn serialize_ms<S: Serializer>(ms: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64((ms * 10.0).round() / 10.0)
}

fn serialize_opt_ms<S: Serializer>(ms: &Option<f64>, serializer: S) -> Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => serialize_ms(ms, serializer),
        None => serializer.serialize_none(),
    }
}

/// A duration as people say it: `5 s`, `1.5 s`, `200 ms`.
fn seconds(duration: Duration) -> String {
    if duration.subsec_millis() == 0 && duration.as_secs() > 0 {
        format!("{} s", duration.as_secs())
    } else if duration.as_secs() == 0 {
        format!("{} ms", duration.as_millis())
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}

#[cfg(test)]
mod tests;
