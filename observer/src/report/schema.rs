//! The report's schema (`schema_version` 1, documented in docs/report.md): the serde types every
//! writer and reader of a report shares.
//!
//! Within a schema version fields are added, never re-purposed. So that a report written by an
//! older build still reads, every field a reader can do without is `#[serde(default)]` at the top
//! level and in the capture, verdict, host, undeclared, reason and flow entries: only
//! `schema_version`, a host's `name` and `status`, an undeclared destination's `status`, a
//! reason's `code` and a flow's `dst` are required (docs/report.md). Fields this build does not
//! know (written by a newer one) are ignored.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

/// What a cgroup path says: the systemd unit, container and Kubernetes pod of a process.
pub use crate::capture::cgroups::{Runtime, Workload};
/// The process of a flow or a lookup, as the report gives it (`comm`, `pid`, `cgroup_id`).
pub use crate::capture::record::Process;

use crate::{
    capture::ProbeStatus,
    pipeline::dnsmatch::DnsCheckStats,
    pipeline::events::{ClosedBy, DestinationClass, NamedBy, Outcome},
    pipeline::names::NamesStats,
    pipeline::throughput::{ThroughputStats, TransferStats},
};

pub const SCHEMA_VERSION: u32 = 1;

/// A report. Its flows are a `Vec` everywhere but where a JSON report is written from a
/// correlator (`export::write_report`: `observer record`, `observer report EVENTS`, the TUI's
/// export): there they are serialized one at a time, so that a capture of many flows is not held
/// twice in memory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report<F = Vec<FlowReport>> {
    pub schema_version: u32,
    #[serde(default)]
    pub generator: String,
    #[serde(default)]
    pub verdict: Verdict,
    #[serde(default)]
    pub capture: CaptureSection,
    #[serde(default)]
    pub groups: Vec<GroupReport>,
    #[serde(default)]
    pub hosts: Vec<HostReport>,
    #[serde(default)]
    pub undeclared: Vec<UndeclaredReport>,
    #[serde(default)]
    pub flows: F,
    /// The runner job this report is about (`observer daemon`'s per-job reports); absent in
    /// reports of a whole capture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobSection>,
    /// What each cgroup of the capture is (unit, container, pod), by the `cgroup_id` of the
    /// processes above; absent when no cgroup was named (captures of older versions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<WorkloadReport>,
}

/// One cgroup of the capture and what its path says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadReport {
    pub cgroup_id: u64,
    #[serde(flatten)]
    pub workload: Workload,
}

/// Which job a per-job report covers: the `GITHUB_*` identity its hooks sent, the process that
/// ran it, and when.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSection {
    #[serde(default)]
    pub repository: Option<String>,
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub run_attempt: Option<String>,
    #[serde(default)]
    pub job: Option<String>,
    #[serde(default)]
    pub workflow: Option<String>,
    #[serde(default)]
    pub runner_name: Option<String>,
    /// The `Runner.Worker` process whose tree the job's flows and lookups came from.
    #[serde(default)]
    pub worker_pid: u32,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub completed_at: Option<String>,
    /// Processes listed as the job's when it started (the worker and its descendants then);
    /// the kernel adds their children as they are forked.
    #[serde(default)]
    pub processes_listed: u64,
    /// The job's `Runner.Worker` ended without the job-completed hook (a cancelled job, a
    /// crashed runner): the report covers the job until then.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub abandoned: bool,
    /// Flows and lookups of the job's processes after its first `job completed` (the worker's
    /// own uploads, or job code that called the hook command itself): they are in the report.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub activity_after_completion: u64,
    /// The runner's Docker instance label (six hex digits: the runner labels every container it
    /// creates with it); absent when it could not be read (`containers_note` says why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_label: Option<String>,
    /// Containers the job's runner created while the job ran (`container:` jobs, services,
    /// Docker actions): their flows and lookups are the job's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<JobContainer>,
    /// Why containers could not be attributed (no runner label, the Docker API not reachable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containers_note: Option<String>,
}

/// A container of a job (docs/report.md, `job.containers`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobContainer {
    /// Its full id.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Its cgroup v2 id (the `process.cgroup_id` of its flows).
    #[serde(default)]
    pub cgroup_id: u64,
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// The answer first: can this runner work, and which optional features will fail.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// True when the required groups were reached and none failed, false when one is blocked or
    /// degraded, null when none of their hosts was contacted in the window.
    #[serde(default)]
    pub runner_can_work: Option<bool>,
    /// One sentence for humans.
    #[serde(default)]
    pub summary: String,
    /// Status of each required group (`essential` in the built-in catalog).
    #[serde(default)]
    pub required: Vec<GroupVerdict>,
    /// Optional groups that are blocked or degraded: features that will fail or be unreliable.
    #[serde(default)]
    pub failing_features: Vec<GroupVerdict>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupVerdict {
    pub group: String,
    pub title: String,
    pub status: Status,
    /// Failing members, with their reason codes: `api.github.com (tcp_reset)`.
    pub because: Vec<String>,
}

/// How complete the capture behind the report is. A report that does not say is not taken as
/// complete.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CaptureSection {
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub duration_s: f64,
    pub ports: Vec<u16>,
    pub all_ports: bool,
    pub probes: Vec<ProbeStatus>,
    pub events: u64,
    pub lost_events: u64,
    pub undecodable_events: u64,
    pub malformed_dns: u64,
    pub dns_skipped: u64,
    /// DNS exchanges the kernel counted instead of copying: exact repeats, within a second, of
    /// an exchange already read.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dns_repeats: u64,
    /// DNS messages read from TCP streams.
    #[serde(skip_serializing_if = "is_zero")]
    pub dns_tcp_messages: u64,
    /// DNS-over-TCP segments that could not be decoded.
    #[serde(skip_serializing_if = "is_zero")]
    pub dns_tcp_undecodable: u64,
    /// How the DNS responses compared with the queries seen (docs/events.md); absent when no
    /// response was rejected and no query dropped.
    #[serde(skip_serializing_if = "DnsCheckStats::clean")]
    pub dns_checks: DnsCheckStats,
    /// Responses that named nothing, by kind and by the socket they were sent to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_rejected: Vec<RejectedDnsReport>,
    /// Rejected responses beyond the 256 groups kept, counted only.
    #[serde(skip_serializing_if = "is_zero")]
    pub dns_rejected_dropped: u64,
    pub flows_dropped: u64,
    pub unreadable_lines: u64,
    /// cgroup ids whose path was not found (the cgroup was gone before it was looked up):
    /// their processes have no entry in `workloads`.
    #[serde(skip_serializing_if = "is_zero")]
    pub cgroups_unresolved: u64,
    /// What the bounds of the correlator's tables dropped (docs/architecture.md, "What is
    /// bounded"); absent when nothing was.
    #[serde(
        default,
        skip_serializing_if = "crate::pipeline::correlate::Dropped::is_empty"
    )]
    pub dropped: crate::pipeline::correlate::Dropped,
    /// Size of the address-to-name memory, and what its bounds made it forget.
    pub name_cache: NamesStats,
    /// Local resolvers seen forwarding their clients' queries (a stub such as systemd-resolved
    /// on 127.0.0.53): their lookups are counted as their clients', not as their own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub local_resolvers: Vec<Process>,
    /// HTTP proxies watched, and where each was found (docs/proxy.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxies: Vec<crate::proxy::discover::WatchedProxy>,
    /// Where each need's data came from on the capturing kernel (bytes, adoption, ...); absent
    /// in reports of captures that did not record it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_sources: Vec<crate::capture::kernel_caps::DataSource>,
    /// What the capture saw less well than it could on a newer kernel, in an operator's words
    /// (the fallbacks among `data_sources`); the capture can still be complete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// True when nothing was lost and every probe was attached.
    pub complete: bool,
    /// Why the report is not complete.
    pub incomplete_because: Vec<String>,
}

#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// DNS responses (or records) that named nothing, of one kind, sent to one local socket from
/// one server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedDnsReport {
    /// `dns_unsolicited`, `dns_mismatched`, `dns_wrong_server`, `dns_out_of_bailiwick`,
    /// `dns_duplicate`, `dns_late`, `dns_unmatched_before_start`.
    pub code: String,
    /// A sign of forgery (unsolicited, mismatched, wrong server, out of bailiwick) rather than
    /// of the capture's limits.
    #[serde(default)]
    pub forgery: bool,
    #[serde(default)]
    pub count: u64,
    #[serde(default)]
    pub first_seen: Option<String>,
    #[serde(default)]
    pub last_seen: Option<String>,
    /// The process owning the socket the responses were sent to, when known.
    #[serde(default)]
    pub process: Option<Process>,
    /// The local socket's address, and the server's.
    #[serde(default)]
    pub client: String,
    #[serde(default)]
    pub server: String,
    /// Names and addresses the responses claimed (at most 8 each).
    #[serde(default)]
    pub names: Vec<String>,
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
}

/// `ok`: reached, every attempt succeeded; `degraded`: some attempts failed; `blocked`: every
/// attempt failed; `unseen`: no connection was attempted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Degraded,
    Blocked,
    Unseen,
}

impl Reason {
    /// The code with its record type, as the verdict, exports and the TUI show it:
    /// `dns_refused AAAA`, `tcp_reset`.
    pub fn label(&self) -> String {
        match &self.record_type {
            Some(t) => format!("{} {t}", self.code),
            None => self.code.clone(),
        }
    }
}

/// The reasons' labels, one per code, the record types of a code joined:
/// `["dns_nxdomain A/AAAA", "tcp_reset"]`.
pub fn reason_labels(reasons: &[Reason]) -> Vec<String> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for r in reasons {
        let types = match out.iter_mut().find(|(code, _)| *code == r.code) {
            Some((_, types)) => types,
            None => {
                out.push((r.code.clone(), Vec::new()));
                &mut out.last_mut().expect("just pushed").1
            }
        };
        if let Some(t) = &r.record_type {
            if !types.contains(t) {
                types.push(t.clone());
            }
        }
    }
    out.into_iter()
        .map(|(code, types)| {
            if types.is_empty() {
                code
            } else {
                format!("{code} {}", types.join("/"))
            }
        })
        .collect()
}

/// A DNS failure of one record type while another type of the same name answered (a resolver
/// that refuses AAAA but answers A, say): shown on the host, never a reason for its status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsNote {
    /// `dns_refused`, `dns_servfail`, `dns_nxdomain`, `dns_timeout`, `dns_error`.
    pub code: String,
    pub record_type: String,
    #[serde(default)]
    pub count: u64,
    #[serde(default)]
    pub first_seen: Option<String>,
    #[serde(default)]
    pub last_seen: Option<String>,
}

/// One kind of failure, counted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// Stable code: `dns_nxdomain`, `dns_servfail`, `dns_refused`, `dns_timeout`,
    /// `dns_sinkhole`, `dns_no_address`,
    /// `tcp_timeout`, `tcp_reset`, `tcp_unreachable`, `tcp_error`, `tls_reset`,
    /// `connection_reset`; and, for hosts that work but not well, `slow_throughput` and
    /// `long_poll_cut`.
    pub code: String,
    /// For DNS codes: the record type whose queries failed (`A`, `AAAA`); absent otherwise and
    /// for `dns_no_address`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_type: Option<String>,
    #[serde(default)]
    pub count: u64,
    #[serde(default)]
    pub first_seen: Option<String>,
    #[serde(default)]
    pub last_seen: Option<String>,
    /// The process of the latest failure, when known.
    #[serde(default)]
    pub process: Option<Process>,
    /// Evidence of the latest occurrence, for codes that measure something (the rate of a
    /// slow transfer, the idle time at which a long poll was cut).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupReport {
    pub id: String,
    pub title: String,
    pub required: bool,
    /// The group summarises others (not a feature of its own).
    #[serde(default)]
    pub summary: bool,
    pub status: Status,
    /// Host entries of this group (documented names and observed wildcard members).
    pub hosts: Vec<String>,
    /// Members that are blocked or degraded, which explain the status.
    pub failing_hosts: Vec<String>,
    pub flows: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Active-rate statistics of the group's flows together.
    #[serde(default)]
    pub throughput: ThroughputStats,
    /// Transfers of the group's flows; `slowest` names its flow (docs/throughput.md): what `slow_throughput` is judged on, and
    /// the headline rate.
    #[serde(default, skip_serializing_if = "TransferStats::is_empty")]
    pub transfers: TransferStats,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostReport {
    pub name: String,
    /// The catalog pattern the name was matched by (the name itself for exact names).
    #[serde(default)]
    pub pattern: String,
    #[serde(default)]
    pub groups: Vec<String>,
    pub status: Status,
    #[serde(default)]
    pub reasons: Vec<Reason>,
    /// DNS failures of one record type while another answered (not reasons).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_notes: Vec<DnsNote>,
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    #[serde(default)]
    pub cname_chain: Vec<String>,
    #[serde(default)]
    pub flows: u64,
    #[serde(default)]
    pub bytes_sent: u64,
    #[serde(default)]
    pub bytes_received: u64,
    #[serde(default)]
    pub processes: Vec<Process>,
    #[serde(default)]
    pub first_seen: Option<String>,
    #[serde(default)]
    pub last_seen: Option<String>,
    /// What the runner uses the host for, when its name tells (`job_messages`, ...).
    #[serde(default)]
    pub function: Option<String>,
    /// Active-rate statistics of the host's flows together (docs/throughput.md).
    #[serde(default)]
    pub throughput: ThroughputStats,
    /// Transfers of the host's flows; `slowest` names its flow (docs/throughput.md): what `slow_throughput` is judged on, and
    /// the headline rate.
    #[serde(default, skip_serializing_if = "TransferStats::is_empty")]
    pub transfers: TransferStats,
    /// HTTP proxies its flows went through (`host:port`); `addresses` then holds only the
    /// addresses of direct flows and DNS answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub via_proxies: Vec<String>,
    /// How its flows were named when not by a DNS answer: `sni`, `connect`, `http_host`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub named_by: Vec<NamedBy>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UndeclaredReport {
    /// The name asked for; null for flows to an address no DNS answer named (`unresolved`).
    pub name: Option<String>,
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    #[serde(default)]
    pub ports: Vec<u16>,
    #[serde(default)]
    pub cname_chain: Vec<String>,
    #[serde(default)]
    pub flows: u64,
    #[serde(default)]
    pub bytes_sent: u64,
    #[serde(default)]
    pub bytes_received: u64,
    #[serde(default)]
    pub processes: Vec<Process>,
    pub status: Status,
    #[serde(default)]
    pub reasons: Vec<Reason>,
    /// DNS failures of one record type while another answered (not reasons).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_notes: Vec<DnsNote>,
    #[serde(default)]
    pub first_seen: Option<String>,
    #[serde(default)]
    pub last_seen: Option<String>,
    #[serde(default)]
    pub throughput: ThroughputStats,
    /// Transfers of the destination's flows; `slowest` names its flow (docs/throughput.md): what `slow_throughput` is judged on, and
    /// the headline rate.
    #[serde(default, skip_serializing_if = "TransferStats::is_empty")]
    pub transfers: TransferStats,
    /// HTTP proxies its flows went through (`host:port`); `addresses` then holds only the
    /// addresses of direct flows and DNS answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub via_proxies: Vec<String>,
    /// How its flows were named when not by a DNS answer: `sni`, `connect`, `http_host`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub named_by: Vec<NamedBy>,
    /// For an address no DNS answer named: the TLS server names its clients sent (their claim,
    /// not evidence of the address's name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sni: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowReport {
    #[serde(default)]
    pub flow_id: u64,
    #[serde(default = "unknown_process")]
    pub process: Process,
    #[serde(default)]
    pub src: String,
    pub dst: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub cname_chain: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub class: DestinationClass,
    /// Null while the flow was still open when the capture ended.
    #[serde(default)]
    pub outcome: Option<Outcome>,
    #[serde(default)]
    pub closed_by: Option<ClosedBy>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub established: bool,
    #[serde(default)]
    pub rst_received: bool,
    #[serde(default)]
    pub syn_retransmits: u32,
    #[serde(default)]
    pub retransmits: u32,
    #[serde(default)]
    pub bytes_sent: u64,
    #[serde(default)]
    pub bytes_received: u64,
    #[serde(default)]
    pub opened_at: Option<String>,
    #[serde(default)]
    pub closed_at: Option<String>,
    /// Connected before the capture started: `opened_at` is when it was first seen moving
    /// payload, and bytes count from there.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopted: bool,
    /// A rejected DNS response claimed this address for this name (a forged-name attempt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forged_name: Option<String>,
    /// What the runner uses the destination for, when its name tells.
    #[serde(default)]
    pub function: Option<String>,
    #[serde(default)]
    pub throughput: ThroughputStats,
    /// Transfers of the flow (docs/throughput.md): what `slow_throughput` is judged on, and
    /// the headline rate.
    #[serde(default, skip_serializing_if = "TransferStats::is_empty")]
    pub transfers: TransferStats,
    /// Time from the last payload to the close.
    #[serde(default)]
    pub idle_ms: Option<f64>,
    /// The rhythm of requests on a long-lived connection to a required group: the runner's long
    /// poll sends one about every 50 s.
    #[serde(default)]
    pub long_poll: Option<LongPoll>,
    /// How `name` was chosen when not by a DNS answer: `sni`, `connect`, `http_host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub named_by: Option<NamedBy>,
    /// The HTTP proxy the flow went through (`dst` is the proxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via_proxy: Option<String>,
    /// What the client asked the proxy for, `host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_target: Option<String>,
    /// The proxy's HTTP status code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_status: Option<u16>,
    /// The TLS server name the client sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// The name DNS gave the address, when the SNI named another host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_name: Option<String>,
    /// Why the TLS hello named nothing: `no_sni`, `ech`, `sni_not_copied`, `not_tls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_note: Option<String>,
    /// What the process's cgroup is (unit, container, pod), when its path was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
}

impl FlowReport {
    /// The destination port, when `dst` reads as an address and port.
    pub fn port(&self) -> Option<u16> {
        self.dst.parse::<SocketAddr>().ok().map(|a| a.port())
    }
}

/// The process of a flow whose report does not name it.
fn unknown_process() -> Process {
    Process {
        pid: 0,
        comm: "".into(),
        cgroup_id: 0,
        job: None,
    }
}

/// Requests on a long-lived connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LongPoll {
    /// Readings in which the client sent something.
    pub requests: usize,
    /// Median time between them, in seconds.
    pub cadence_s: f64,
}

/// RFC 3339 time of a Unix-epoch nanosecond timestamp.
pub fn rfc3339(ns: u64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .ok()?
        .format(&Rfc3339)
        .ok()
}
