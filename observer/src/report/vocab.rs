//! The vocabulary every output shares: reason codes and statuses, each an enum with its wire
//! string, its severity and its words, so that no code or status is a string literal matched in
//! several files. The wire strings are those of docs/report.md and docs/check.md.

use serde::{Deserialize, Serialize};

use super::Status;

/// How much a reason weighs against a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The attempt failed.
    Failure,
    /// The attempt worked, but not well (slow, cut): the host is degraded, not blocked.
    Warning,
    /// Reported, but not counted against the host.
    Notice,
}

/// A reason code: why an attempt failed (or worked badly), in `observer report` and
/// `observer check`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    DnsNxdomain,
    DnsServfail,
    DnsRefused,
    DnsTimeout,
    DnsSinkhole,
    DnsNoAddress,
    DnsError,
    TcpTimeout,
    TcpReset,
    TcpUnreachable,
    TcpError,
    Ipv6Unavailable,
    TlsReset,
    TlsTimeout,
    TlsCertInvalid,
    TlsError,
    ProxyRefused,
    ProxyAuthRequired,
    ProxyUpstreamFailed,
    ProxyError,
    ConnectionReset,
    SlowThroughput,
    LongPollCut,
}

impl Reason {
    /// Every code, in declaration order.
    pub const ALL: [Reason; 23] = [
        Reason::DnsNxdomain,
        Reason::DnsServfail,
        Reason::DnsRefused,
        Reason::DnsTimeout,
        Reason::DnsSinkhole,
        Reason::DnsNoAddress,
        Reason::DnsError,
        Reason::TcpTimeout,
        Reason::TcpReset,
        Reason::TcpUnreachable,
        Reason::TcpError,
        Reason::Ipv6Unavailable,
        Reason::TlsReset,
        Reason::TlsTimeout,
        Reason::TlsCertInvalid,
        Reason::TlsError,
        Reason::ProxyRefused,
        Reason::ProxyAuthRequired,
        Reason::ProxyUpstreamFailed,
        Reason::ProxyError,
        Reason::ConnectionReset,
        Reason::SlowThroughput,
        Reason::LongPollCut,
    ];

    /// The code on the wire (the same string serde writes).
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::DnsNxdomain => "dns_nxdomain",
            Reason::DnsServfail => "dns_servfail",
            Reason::DnsRefused => "dns_refused",
            Reason::DnsTimeout => "dns_timeout",
            Reason::DnsSinkhole => "dns_sinkhole",
            Reason::DnsNoAddress => "dns_no_address",
            Reason::DnsError => "dns_error",
            Reason::TcpTimeout => "tcp_timeout",
            Reason::TcpReset => "tcp_reset",
            Reason::TcpUnreachable => "tcp_unreachable",
            Reason::TcpError => "tcp_error",
            Reason::Ipv6Unavailable => "ipv6_unavailable",
            Reason::TlsReset => "tls_reset",
            Reason::TlsTimeout => "tls_timeout",
            Reason::TlsCertInvalid => "tls_cert_invalid",
            Reason::TlsError => "tls_error",
            Reason::ProxyRefused => "proxy_refused",
            Reason::ProxyAuthRequired => "proxy_auth_required",
            Reason::ProxyUpstreamFailed => "proxy_upstream_failed",
            Reason::ProxyError => "proxy_error",
            Reason::ConnectionReset => "connection_reset",
            Reason::SlowThroughput => "slow_throughput",
            Reason::LongPollCut => "long_poll_cut",
        }
    }

    /// The code of a wire string; `None` for a code this build does not know (a report of a
    /// newer build may carry one).
    pub fn from_code(code: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == code)
    }

    pub fn severity(self) -> Severity {
        match self {
            Reason::SlowThroughput | Reason::LongPollCut => Severity::Warning,
            Reason::Ipv6Unavailable => Severity::Notice,
            _ => Severity::Failure,
        }
    }

    /// Whether a wire code is a warning (a host that works, but not well): `slow_throughput`,
    /// `long_poll_cut`. Unknown codes are not.
    pub fn is_warning_code(code: &str) -> bool {
        Reason::from_code(code).is_some_and(|r| r.severity() == Severity::Warning)
    }

    /// What the code means, in one line (docs/report.md, docs/check.md).
    pub fn explain(self) -> &'static str {
        match self {
            Reason::TcpReset => {
                "RST in answer to the SYN: nothing listens, or a firewall rejects with tcp reset"
            }
            Reason::TcpTimeout => {
                "the SYN was never answered: a firewall drops it, or the route is broken"
            }
            Reason::TcpUnreachable => "ICMP unreachable or administratively prohibited",
            Reason::TcpError => "another socket error before the handshake completed",
            Reason::TlsReset => {
                "the far side cut the connection right after the client's TLS hello: an \
                 SNI-filtering firewall"
            }
            Reason::ConnectionReset => {
                "established, then reset or timed out before any data came back"
            }
            Reason::DnsNxdomain => {
                "the DNS answer was NXDOMAIN: the name does not exist for this resolver"
            }
            Reason::DnsServfail => "the DNS answer was SERVFAIL",
            Reason::DnsRefused => "the DNS server refused to answer",
            Reason::DnsTimeout => "DNS queries were never answered",
            Reason::DnsSinkhole => {
                "the DNS answer was a filter's sinkhole address (0.0.0.0, ::, or --sinkhole)"
            }
            Reason::DnsNoAddress => "the name resolved to no address and no connection was made",
            Reason::SlowThroughput => "a transfer moved below the minimum rate",
            Reason::LongPollCut => {
                "an idle connection was cut by the far side before the long poll's answer"
            }
            Reason::DnsError => {
                "another DNS failure: another response code, a truncated answer, a local socket \
                 error"
            }
            Reason::Ipv6Unavailable => {
                "an IPv6 address this machine has no route to: the runner falls back to IPv4"
            }
            Reason::TlsTimeout => "the server did not complete the TLS handshake in time",
            Reason::TlsCertInvalid => {
                "the server's certificate does not verify for the name: a TLS-intercepting \
                 proxy, or another host answering"
            }
            Reason::TlsError => "another TLS handshake failure (an alert, a protocol error)",
            Reason::ProxyRefused => {
                "the proxy refused the request (HTTP 403 or another 4xx): its access rules do not \
                 allow the host"
            }
            Reason::ProxyAuthRequired => {
                "the proxy wants credentials (HTTP 407) the client did not give, or gave wrong"
            }
            Reason::ProxyUpstreamFailed => {
                "the proxy could not reach the host (HTTP 502, 503 or 504): its DNS or its own \
                 connection failed"
            }
            Reason::ProxyError => {
                "another proxy failure: another HTTP status, or the proxy closed without answering"
            }
        }
    }
}

impl Reason {
    /// The reason of a proxy's HTTP status when it is a failure: 407 wants credentials,
    /// 502/503/504 could not reach the host, other 4xx refused, other non-2xx another error.
    pub fn of_proxy_status(code: u16) -> Option<Reason> {
        match code {
            200..=299 => None,
            407 => Some(Reason::ProxyAuthRequired),
            502..=504 => Some(Reason::ProxyUpstreamFailed),
            400..=499 => Some(Reason::ProxyRefused),
            _ => Some(Reason::ProxyError),
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Status {
    /// The status as a word, as the report writes it (every format shows the word, not only a
    /// colour or a symbol).
    pub const fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Degraded => "degraded",
            Status::Blocked => "blocked",
            Status::Unseen => "unseen",
        }
    }

    /// The word with problems in capitals, for plain text read without colour: `ok`,
    /// `DEGRADED`, `BLOCKED`, `unseen`.
    pub const fn shouted(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Degraded => "DEGRADED",
            Status::Blocked => "BLOCKED",
            Status::Unseen => "unseen",
        }
    }

    /// How bad the status is, the one order every caller uses: `unseen` (no evidence) <
    /// `ok` < `degraded` < `blocked`. "Worst" is the highest; "worst first" sorts by it,
    /// highest first.
    pub const fn severity(self) -> u8 {
        match self {
            Status::Unseen => 0,
            Status::Ok => 1,
            Status::Degraded => 2,
            Status::Blocked => 3,
        }
    }

    /// Blocked or degraded.
    pub const fn is_failing(self) -> bool {
        matches!(self, Status::Blocked | Status::Degraded)
    }

    /// The worst of some statuses (`unseen` when there are none).
    pub fn worst(statuses: impl IntoIterator<Item = Status>) -> Status {
        statuses
            .into_iter()
            .max_by_key(|s| s.severity())
            .unwrap_or(Status::Unseen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_strings_are_serde_strings_and_read_back() {
        for r in Reason::ALL {
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.as_str()));
            assert_eq!(Reason::from_code(r.as_str()), Some(r));
            assert!(!r.explain().is_empty(), "{r}");
        }
        assert_eq!(Reason::from_code("a_future_code"), None);
        for s in [
            Status::Ok,
            Status::Degraded,
            Status::Blocked,
            Status::Unseen,
        ] {
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.word())
            );
            assert_eq!(s.shouted().to_lowercase(), s.word());
        }
    }

    #[test]
    fn worst_ignores_unseen_and_warnings_are_warnings() {
        assert_eq!(Status::worst([Status::Unseen, Status::Ok]), Status::Ok);
        assert_eq!(
            Status::worst([Status::Degraded, Status::Blocked, Status::Ok]),
            Status::Blocked
        );
        assert_eq!(Status::worst([]), Status::Unseen);
        assert!(Reason::is_warning_code("slow_throughput"));
        assert!(Reason::is_warning_code("long_poll_cut"));
        assert!(!Reason::is_warning_code("tcp_reset"));
    }
}
