//! What the observer reports, one record per line in `observer watch`.
//!
//! These are the stable, documented shapes (docs/events.md): JSON with `--json`, aligned text
//! otherwise. Field names never change meaning; new fields may be added.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::{
    capture::{cgroups::Workload, record::Process, ProbeStatus},
    pipeline::dns::{Answer, Question},
    pipeline::dnsmatch::DnsCheck,
    pipeline::hello::{FirstReceived, FirstSent},
};

/// How a TCP flow ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Established, then closed with FIN.
    Closed,
    /// Established, then reset (RST received or ECONNRESET/EPIPE reported).
    Reset,
    /// Answered by a RST to the SYN: nothing listens, or a firewall rejects with tcp reset.
    Refused,
    /// The SYN was never answered.
    Timeout,
    /// ICMP unreachable or administratively prohibited (EHOSTUNREACH, ENETUNREACH, EACCES).
    Unreachable,
    /// The socket reported another error.
    Error,
    /// Closed by the local process before the handshake completed, without an error.
    Aborted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Reset => "reset",
            Self::Refused => "refused",
            Self::Timeout => "timeout",
            Self::Unreachable => "unreachable",
            Self::Error => "error",
            Self::Aborted => "aborted",
        }
    }
}

/// Which side closed an established flow first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClosedBy {
    Local,
    Peer,
}

/// One observation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Observed {
    /// The capture is running; which probes are attached.
    CaptureStarted {
        cgroup: String,
        ports: Vec<u16>,
        all_ports: bool,
        probes: Vec<ProbeStatus>,
        /// Where each need's data comes from on this kernel (bytes, adoption, ...), and what
        /// the kernel lacks; absent in logs of older versions.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sources: Vec<crate::capture::kernel_caps::DataSource>,
        /// HTTP proxies watched, and where each was found: flows to them are named by their
        /// CONNECT target.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        proxies: Vec<crate::proxy::discover::WatchedProxy>,
    },
    /// A process sent a SYN to a watched port, or (`adopted`) moved payload on a connection
    /// established before the capture started.
    FlowOpened {
        flow_id: u64,
        process: Process,
        src: SocketAddr,
        dst: SocketAddr,
        #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
        destination: Option<Destination>,
        /// Connected before the capture: its handshake was not seen, its bytes count from here.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        adopted: bool,
    },
    /// The handshake completed.
    FlowEstablished {
        flow_id: u64,
        process: Process,
        src: SocketAddr,
        dst: SocketAddr,
        connect_ms: f64,
        #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
        destination: Option<Destination>,
    },
    /// Bytes moved since the last report (read from the kernel's flow map every second).
    FlowProgress {
        flow_id: u64,
        dst: SocketAddr,
        /// Totals so far.
        bytes_sent: u64,
        bytes_received: u64,
        /// Time since the previous reading of the flow's counters (about a second).
        #[serde(default)]
        interval_ms: f64,
        /// Rates over that interval, in bits per second.
        #[serde(default)]
        sent_bps: f64,
        #[serde(default)]
        received_bps: f64,
        /// Time from the last byte the process wrote (read) to this reading, from the kernel's
        /// per-flow timestamps: when a transfer really ended, not just in which second. Absent
        /// in event logs of older versions, and for a direction that never moved payload.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sent_idle_ms: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        received_idle_ms: Option<f64>,
    },
    /// The first bytes of a flow in one direction, read: the TLS server name (SNI) or the HTTP
    /// request the client sent, or the status line a proxy answered with. The destination is
    /// named again from them (docs/events.md: how a flow's name is chosen).
    FlowPayload(Box<FlowPayload>),
    /// The flow ended.
    FlowClosed(Box<FlowClosed>),
    /// A socket error the kernel reported for a flow the observer does not track (one that
    /// started before the capture, say).
    SocketError {
        src: SocketAddr,
        dst: SocketAddr,
        error: String,
    },
    /// A DNS query sent by a local process.
    DnsQuery(Box<DnsObserved>),
    /// A DNS response received by a local process.
    DnsResponse(Box<DnsObserved>),
    /// Totals of the capture so far; emitted when events were lost, and when the capture stops.
    CaptureStats(CaptureStats),
    /// A cgroup id seen for the first time in this capture (on a flow's or a DNS packet's
    /// process, or a DNS packet's socket), with what its path says: so that an event log names
    /// the workloads of its flows and lookups offline, after the cgroups are gone.
    CgroupSeen { cgroup_id: u64, workload: Workload },
}

/// The first bytes a flow carried in one direction (the kernel copies a prefix).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowPayload {
    pub flow_id: u64,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// Length of the segment's payload.
    pub payload_len: u32,
    /// Only a prefix of it was copied.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cut: bool,
    /// What the client sent first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<FirstSent>,
    /// What the server (a proxy) answered first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<FirstReceived>,
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Destination>,
}

/// The end of a flow, with everything known about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowClosed {
    pub flow_id: u64,
    pub process: Process,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Destination>,
    /// Connected before the capture (see `FlowOpened::adopted`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopted: bool,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_by: Option<ClosedBy>,
    /// The socket error, as its errno name (`ECONNREFUSED`, `ETIMEDOUT`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub established: bool,
    pub rst_received: bool,
    pub syn_retransmits: u32,
    pub retransmits: u32,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_ms: Option<f64>,
    pub duration_ms: f64,
    /// Time from the last payload moved (either way) to the close; absent when none moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_ms: Option<f64>,
    /// Time from the last reading of the counters to the close (the last, partial interval).
    #[serde(default)]
    pub since_poll_ms: f64,
    /// Time from the last byte written (read) to the close, per direction: where the last
    /// transfer ended, and whether the peer's answer came before the process's last words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_idle_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_idle_ms: Option<f64>,
}

/// What a flow's destination address is, from the DNS answers seen and the host-group catalog.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    /// The name the client asked for when it resolved the address; null when no DNS answer seen
    /// by the observer named the address (resolved before the capture, or a hard-coded address).
    pub name: Option<String>,
    /// From the asked name to the owner of the address record (one name when there was no CNAME).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cname_chain: Vec<String>,
    /// Catalog groups the name belongs to on this port; empty when undeclared.
    #[serde(default)]
    pub groups: Vec<String>,
    /// `declared`, `undeclared` or `unresolved`.
    pub class: DestinationClass,
    /// The DNS answer's TTL had passed when the connection started.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub name_expired: bool,
    /// A forged-name attempt: a DNS response that matched no query (or a record off its
    /// question's chain) claimed this address for this name before the connection. The claim
    /// never names the flow; it is shown so nobody allows the address for that name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forged_name: Option<String>,
    /// How `name` was chosen when not from a DNS answer for the address (absent: DNS):
    /// `sni`, `connect` or `http_host` (docs/events.md: how a flow's name is chosen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub named_by: Option<NamedBy>,
    /// The HTTP proxy the flow went through (the flow's `dst`); `name` is then the host the
    /// client asked the proxy for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via_proxy: Option<SocketAddr>,
    /// The target the client sent the proxy (`CONNECT host:port`, or the host of a plain HTTP
    /// request), as `host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_target: Option<String>,
    /// The TLS server name (SNI) the client sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// The name DNS gave the address when the client's SNI named another host: the flow is
    /// named by its SNI, and this is the disagreement's evidence (a shared CDN address, a stale
    /// cache, or domain fronting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_name: Option<String>,
    /// Why the TLS hello named nothing: `no_sni`, `ech` (the real name is encrypted; the outer
    /// one names only the provider), `sni_not_copied` (beyond the bytes the kernel copies),
    /// `not_tls` (the first bytes were no TLS hello).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_note: Option<String>,
}

impl Destination {
    /// The bytes of its text: every name, the chain and the groups.
    pub fn text_bytes(&self) -> usize {
        [
            &self.name,
            &self.forged_name,
            &self.proxy_target,
            &self.sni,
            &self.dns_name,
            &self.tls_note,
        ]
        .into_iter()
        .map(|s| s.as_ref().map_or(0, String::len))
        .chain(self.cname_chain.iter().map(String::len))
        .chain(self.groups.iter().map(String::len))
        .sum()
    }

    /// The address the client meant to reach: through a proxy, the address it asked the proxy
    /// for (`CONNECT 198.18.1.9:443`), else `dst` itself.
    pub fn target(&self, dst: SocketAddr) -> SocketAddr {
        self.via_proxy
            .and(self.proxy_target.as_deref())
            .and_then(|t| t.parse().ok())
            .unwrap_or(dst)
    }
}

/// Where a flow's name came from when not from DNS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NamedBy {
    /// The TLS server name the client sent.
    Sni,
    /// The `CONNECT host:port` the client sent its proxy.
    Connect,
    /// The host of a plain HTTP request sent to a proxy.
    HttpHost,
}

impl NamedBy {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sni => "sni",
            Self::Connect => "connect",
            Self::HttpHost => "http_host",
        }
    }
}

/// Whether a destination is one the documentation lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationClass {
    /// The name belongs to at least one catalog group on this port.
    Declared,
    /// The name belongs to no catalog group (on this port).
    Undeclared,
    /// No DNS answer named the address.
    #[default]
    Unresolved,
}

/// A DNS packet with its decoded message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DnsObserved {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<Process>,
    pub cgroup_id: u64,
    /// Kernel cookie of the local socket: a query and its response share it.
    pub socket_cookie: u64,
    /// The DNS server's address.
    pub server: SocketAddr,
    /// The local socket's address.
    pub client: SocketAddr,
    pub payload_len: u32,
    /// The kernel copied only the first 512 bytes of the payload (over TCP: of a segment of
    /// the message).
    pub capture_cut: bool,
    /// The message came over TCP (absent for UDP).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tcp: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rcode: Option<String>,
    pub tc: bool,
    pub questions: Vec<Question>,
    pub answers: Vec<Answer>,
    /// Why (part of) the message could not be decoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decode_error: Option<String>,
    /// Responses only: how the response compares with the queries seen (`matched`, or why it
    /// names nothing: `unsolicited`, `mismatched`, `wrong_server`, `duplicate`, `late`,
    /// `before_start`). Filled by the correlator; absent in the tracker's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<DnsCheck>,
    /// Answer records of a matched response ignored because they are not on the question's
    /// CNAME chain.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub out_of_bailiwick: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Capture health counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureStats {
    /// Records read from the kernel.
    pub events: u64,
    /// Records the kernel could not deliver (ring buffer full).
    pub lost_events: u64,
    /// Records user space could not decode.
    pub undecodable_events: u64,
    /// DNS payloads that were not DNS messages.
    pub malformed_dns: u64,
    /// DNS packets the kernel saw but could not copy.
    pub dns_skipped: u64,
    /// DNS exchanges (a query and its answer) the kernel counted instead of copying: exact
    /// repeats, within a second, of an exchange already read (see docs/events.md).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub dns_repeats: u64,
    /// DNS messages read from TCP streams.
    #[serde(default)]
    pub dns_tcp_messages: u64,
    /// TCP segments to or from port 53 that could not be placed in their stream (a segment
    /// missed before them, or a stream joined in the middle), or streams dropped to stay within
    /// the reassembly's bounds.
    #[serde(default)]
    pub dns_tcp_undecodable: u64,
    /// First payloads copied by the kernel that matched no tracked flow (a flow evicted, or
    /// one that connected before the capture).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub payload_unmatched: u64,
    /// Children of a followed job's processes that the kernel's job table had no room for:
    /// their flows are not attributed to the job (`observer daemon`).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub job_pids_full: u64,
    /// cgroup ids whose path no walk of the cgroup2 tree found (the cgroup was gone before it
    /// was looked up): their flows and lookups have no workload.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub cgroups_unresolved: u64,
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// Name of an errno value, for reports (`ECONNREFUSED`); unknown values as `errno 123`.
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ECONNRESET => "ECONNRESET",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::EPIPE => "EPIPE",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::EPROTO => "EPROTO",
        libc::ENOPROTOOPT => "ENOPROTOOPT",
        libc::EHOSTDOWN => "EHOSTDOWN",
        libc::ENETDOWN => "ENETDOWN",
        libc::EMSGSIZE => "EMSGSIZE",
        _ => return format!("errno {errno}"),
    };
    name.to_owned()
}
