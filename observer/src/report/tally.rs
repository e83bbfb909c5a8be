//! The evidence about each destination, tallied from flows, DNS answers and DNS timeouts: what
//! the report's hosts and undeclared destinations are made of, and what the TUI's rows show.
//!
//! One implementation serves both: `report::build` folds every flow in list order, the TUI's
//! digest folds each closed flow once and adds the open ones at every tick. So a tally must not
//! depend on the order flows are added in: each flow brings its position in the correlator's
//! list, and where the report takes "the latest" (a reason's process and detail among
//! occurrences at the same instant, the first flow's CNAME chain), the position decides, as it
//! would in list order. DNS evidence is added after the flows and counts as later than any.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    sync::LazyLock,
};

use crate::{
    capture::record::Process,
    pipeline::correlate::{Correlator, DnsTimeouts, FlowEntry},
    pipeline::events::DestinationClass,
    pipeline::names::NameRecord,
    pipeline::throughput::{runner_function, TransferStats},
};

use super::{
    classify::{self, failure, success, warning, DnsWeight},
    rfc3339,
    vocab::Reason as Code,
    DnsNote, Reason, Status,
};

/// SNI names kept per address.
const MAX_SNI_NAMES: usize = 16;

/// The position DNS evidence takes: after every flow.
const AFTER_FLOWS: usize = usize::MAX;

/// The occurrences of one reason.
#[derive(Clone, Debug)]
pub struct Occurrences {
    pub count: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    /// Position of the latest occurrence ([`AFTER_FLOWS`] once DNS set it).
    last_at: usize,
    pub process: Option<Process>,
    pub detail: Option<String>,
}

/// The evidence about one destination (a name, or an address no DNS answer named).
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub flows: u64,
    successes: u64,
    failures: u64,
    /// Attempts that worked, but not well (slow, cut long polls).
    warnings: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub addresses: BTreeSet<IpAddr>,
    pub ports: BTreeSet<u16>,
    /// HTTP proxies its flows went through (their addresses are not the host's).
    pub proxies: BTreeSet<std::net::SocketAddr>,
    /// How its flows were named when not by DNS (SNI, CONNECT, HTTP host).
    pub named_by: BTreeSet<crate::pipeline::events::NamedBy>,
    /// The TLS server names its flows claimed when no DNS answer gave the address to them.
    pub sni_names: BTreeSet<String>,
    pub processes: BTreeSet<Process>,
    /// The chain of the first flow (in list order) that had one; DNS overrides it.
    cname: Option<(usize, Vec<String>)>,
    pub first_ns: Option<u64>,
    pub last_ns: Option<u64>,
    /// By wire code and record type (DNS reasons carry the type: `A`, `AAAA`, ...).
    pub reasons: BTreeMap<(&'static str, Option<String>), Occurrences>,
    /// DNS failures of one record type while another type answered: notes, not reasons.
    pub dns_notes: Vec<DnsNote>,
    pub function: Option<&'static str>,
    /// The transfers of all its flows.
    pub transfers: TransferStats,
}

impl Tally {
    fn seen(&mut self, ns: u64) {
        self.first_ns = Some(self.first_ns.map_or(ns, |f| f.min(ns)));
        self.last_ns = Some(self.last_ns.map_or(ns, |l| l.max(ns)));
    }

    /// `count` occurrences of `code` (for a record type, DNS reasons) between `first` and
    /// `last`, by the flow at position `at` (or by DNS, [`AFTER_FLOWS`]).
    fn occurrence(
        &mut self,
        code: (&'static str, Option<String>),
        count: u64,
        (first, last, at): (u64, u64, usize),
        process: Option<Process>,
        detail: Option<String>,
    ) {
        let r = self.reasons.entry(code).or_insert(Occurrences {
            count: 0,
            first_ns: first,
            last_ns: last,
            last_at: at,
            process: None,
            detail: None,
        });
        r.count += count;
        r.first_ns = r.first_ns.min(first);
        let newer = (last, at) >= (r.last_ns, r.last_at);
        if newer || r.process.is_none() {
            if newer {
                (r.last_ns, r.last_at) = (last, at);
            }
            if process.is_some() {
                r.process = process;
            }
            if detail.is_some() {
                r.detail = detail;
            }
        }
    }

    /// The flow at position `at` of the correlator's list.
    pub fn add_flow(&mut self, at: usize, f: &FlowEntry, sinkhole: bool, c: &Correlator) {
        self.flows += 1;
        self.transfers
            .merge(&f.transfers.stats().of_flow(f.flow_id));
        self.function = self
            .function
            .or(f.destination.name.as_deref().and_then(runner_function));
        self.bytes_sent += f.bytes_sent;
        self.bytes_received += f.bytes_received;
        match f.destination.via_proxy {
            Some(proxy) => {
                self.proxies.insert(proxy);
                // A CONNECT to an address literal names the address; a name's addresses are
                // the proxy's business.
                let target = f.destination.target(f.dst);
                if target != f.dst {
                    self.addresses.insert(target.ip());
                }
                if let Some(port) = f
                    .destination
                    .proxy_target
                    .as_deref()
                    .and_then(|t| t.rsplit_once(':'))
                    .and_then(|(_, p)| p.parse().ok())
                {
                    self.ports.insert(port);
                }
            }
            None => {
                self.addresses.insert(f.dst.ip());
                self.ports.insert(f.dst.port());
            }
        }
        if let Some(by) = f.destination.named_by {
            self.named_by.insert(by);
        }
        self.processes.insert(f.process.clone());
        if !f.destination.cname_chain.is_empty() && self.cname.as_ref().is_none_or(|(i, _)| at < *i)
        {
            self.cname = Some((at, f.destination.cname_chain.clone()));
        }
        self.seen(f.opened_ns);
        if let Some(closed) = f.closed_ns {
            self.seen(closed);
        }
        if sinkhole {
            // A connection to a DNS filter's sinkhole proves nothing about the real host; the
            // answer itself is counted as `dns_sinkhole`.
            return;
        }
        let when = f.closed_ns.unwrap_or(f.opened_ns);
        if let Some(code) = failure(f) {
            self.failures += 1;
            let code = (code.as_str(), None);
            let detail = classify::failure_detail(f);
            self.occurrence(code, 1, (when, when, at), Some(f.process.clone()), detail);
        } else if success(f) {
            self.successes += 1;
            if let Some((code, detail)) = warning(f, c) {
                self.warnings += 1;
                let process = Some(f.process.clone());
                let code = (code.as_str(), None);
                self.occurrence(code, 1, (when, when, at), process, Some(detail));
            }
        }
    }

    /// What DNS said about the name: its answers per record type and its unanswered queries,
    /// weighed as a client's lookups (see [`classify::dns_findings`]).
    pub fn add_dns(&mut self, record: Option<&NameRecord>, timeouts: Option<&DnsTimeouts>) {
        if let Some(record) = record {
            self.addresses.extend(record.addresses.iter().copied());
            self.processes.extend(record.processes.iter().cloned());
            if !record.cname_chain.is_empty() {
                self.cname = Some((AFTER_FLOWS, record.cname_chain.clone()));
            }
            self.seen(record.first_seen_ns);
            self.seen(record.last_seen_ns);
        }
        if let Some(t) = timeouts {
            self.seen(t.first_ns);
            self.seen(t.last_ns);
        }
        for finding in classify::dns_findings(record, timeouts, self.flows) {
            let timeout = finding.code == Code::DnsTimeout.as_str();
            let (first, last, process) = match (timeout, timeouts, record) {
                (true, Some(t), _) => (t.first_ns, t.last_ns, t.process.clone()),
                (_, _, Some(r)) => {
                    let o = r
                        .outcomes
                        .iter()
                        .find(|o| Some(&o.rtype) == finding.rtype.as_ref());
                    (
                        o.and_then(|o| o.first_failure_ns)
                            .unwrap_or(r.first_seen_ns),
                        o.and_then(|o| o.last_failure_ns).unwrap_or(r.last_seen_ns),
                        r.processes.first().cloned(),
                    )
                }
                _ => continue,
            };
            let span = (first, last, AFTER_FLOWS);
            match finding.weight {
                DnsWeight::Failure => {
                    self.failures += finding.count;
                    let code = (finding.code, finding.rtype);
                    self.occurrence(code, finding.count, span, process, None);
                }
                DnsWeight::Retried => {
                    self.warnings += 1;
                    let code = (finding.code, finding.rtype);
                    let detail = Some("a retry of the same type answered".to_owned());
                    self.occurrence(code, finding.count, span, process, detail);
                }
                DnsWeight::Note => self.dns_notes.push(DnsNote {
                    code: finding.code.to_owned(),
                    record_type: finding.rtype.unwrap_or_default(),
                    count: finding.count,
                    first_seen: rfc3339(first),
                    last_seen: rfc3339(last),
                }),
            }
        }
    }

    /// The destination's status from its attempts.
    pub fn status(&self) -> Status {
        classify::status(self.successes, self.failures, self.warnings)
    }

    /// The CNAME chain shown for the destination.
    pub fn cname_chain(&self) -> &[String] {
        self.cname.as_ref().map_or(&[], |(_, chain)| chain)
    }

    /// The reasons as the report lists them.
    pub fn reasons(&self) -> Vec<Reason> {
        self.reasons
            .iter()
            .map(|((code, rtype), o)| Reason {
                code: (*code).to_owned(),
                record_type: rtype.clone(),
                count: o.count,
                first_seen: rfc3339(o.first_ns),
                last_seen: rfc3339(o.last_ns),
                process: o.process.clone(),
                detail: o.detail.clone(),
            })
            .collect()
    }
}

/// Tallies per destination, keyed as the report keys them.
#[derive(Clone, Debug, Default)]
pub struct Tallies {
    /// By the name flows reached (and names DNS answered or timed out).
    pub by_name: BTreeMap<String, Tally>,
    /// Flows to addresses no DNS answer named.
    pub unresolved: BTreeMap<IpAddr, Tally>,
    /// Names at least one flow reached on a port a group lists.
    pub declared_names: BTreeSet<String>,
    /// Undeclared names with DNS evidence only (no flow), tallied so far.
    dns_only_undeclared: usize,
    /// Undeclared names with DNS evidence only beyond [`MAX_DNS_ONLY_UNDECLARED`]: counted, not
    /// listed.
    pub dns_only_undeclared_dropped: u64,
}

/// Undeclared names that only DNS concerned (answers or timeouts, no flow) listed in a report;
/// the others are counted. A flood of unique names would otherwise make a report (and the memory
/// that builds it, a few KiB per destination) as large as the name tables allow.
pub const MAX_DNS_ONLY_UNDECLARED: usize = 4096;

impl Tallies {
    /// Every flow of the correlator in list order, then the names and the timeouts.
    pub fn of(c: &Correlator) -> Self {
        let mut t = Self::default();
        for (at, f) in c.flows().iter().enumerate() {
            t.add_flow(at, f, c);
        }
        t.add_dns(c);
        t
    }

    /// The flow at position `at` of the correlator's list.
    pub fn add_flow(&mut self, at: usize, f: &FlowEntry, c: &Correlator) {
        // A name only the client's TLS server name gives is its claim, not the name's evidence:
        // such flows are tallied by their address, their SNI kept beside it.
        let sni_only = f.destination.named_by == Some(crate::pipeline::events::NamedBy::Sni);
        match f.destination.name.as_ref().filter(|_| !sni_only) {
            Some(name) => {
                if f.destination.class == DestinationClass::Declared {
                    self.declared_names.insert(name.clone());
                }
                let sinkhole = c.is_sinkhole(f.dst.ip());
                self.by_name
                    .entry(name.clone())
                    .or_default()
                    .add_flow(at, f, sinkhole, c);
            }
            None => {
                let t = self
                    .unresolved
                    .entry(f.destination.target(f.dst).ip())
                    .or_default();
                t.add_flow(at, f, false, c);
                if let (true, Some(sni)) = (sni_only, &f.destination.sni) {
                    if t.sni_names.len() < MAX_SNI_NAMES {
                        t.sni_names.insert(sni.clone());
                    }
                }
            }
        }
    }

    /// The correlator's DNS evidence (once, after the flows): every name's answers with its
    /// unanswered queries, then the names that only timed out.
    pub fn add_dns(&mut self, c: &Correlator) {
        for record in c.names().names() {
            if self.admit(c, &record.name) {
                let tally = self.by_name.entry(record.name.clone()).or_default();
                tally.add_dns(Some(record), c.dns_timeouts().get(&record.name));
            }
        }
        for (name, timeouts) in c.dns_timeouts() {
            if c.names().name(name).is_none() && self.admit(c, name) {
                self.by_name
                    .entry(name.clone())
                    .or_default()
                    .add_dns(None, Some(timeouts));
            }
        }
    }

    /// Whether DNS evidence about `name` is tallied: always for a name flows reached or the
    /// catalog documents; for other names, up to [`MAX_DNS_ONLY_UNDECLARED`].
    fn admit(&mut self, c: &Correlator, name: &str) -> bool {
        if self.by_name.contains_key(name) || !c.catalog().matches(name).is_empty() {
            return true;
        }
        if self.dns_only_undeclared < MAX_DNS_ONLY_UNDECLARED {
            self.dns_only_undeclared += 1;
            return true;
        }
        self.dns_only_undeclared_dropped += 1;
        false
    }
}

/// A documented host (an exact name of the catalog, or an observed member of a documented
/// wildcard) with its evidence.
#[derive(Debug)]
pub struct HostEvidence<'t> {
    pub name: &'t str,
    /// The catalog pattern that matched it (the name itself for exact names; the most specific
    /// wildcard otherwise).
    pub pattern: String,
    pub groups: Vec<String>,
    pub tally: &'t Tally,
}

/// An undeclared destination with its evidence: a name no group documents (or reached only on
/// ports no group lists), or an address no DNS answer named.
#[derive(Debug)]
pub struct UndeclaredEvidence<'t> {
    /// The name asked for; `None` for an unresolved address.
    pub name: Option<&'t str>,
    /// The name, or the address.
    pub key: String,
    pub tally: &'t Tally,
}

/// The destinations as the report lists them: documented hosts (exact names in catalog order,
/// then observed wildcard members by name) and undeclared ones, loudest first.
#[derive(Debug)]
pub struct Destinations<'t> {
    pub hosts: Vec<HostEvidence<'t>>,
    pub undeclared: Vec<UndeclaredEvidence<'t>>,
}

/// The evidence of a documented name no flow, answer or timeout concerned.
static NOTHING: LazyLock<Tally> = LazyLock::new(Tally::default);

impl Tallies {
    /// Sorts the tallied destinations into documented hosts and undeclared ones.
    pub fn destinations<'t>(&'t self, c: &'t Correlator) -> Destinations<'t> {
        let catalog = c.catalog();
        let exact = catalog.exact_names();
        let mut hosts: Vec<HostEvidence> = exact
            .iter()
            .map(|&name| HostEvidence {
                name,
                pattern: name.to_owned(),
                groups: c.groups_for(name, None),
                tally: self.by_name.get(name).unwrap_or(&*NOTHING),
            })
            .collect();
        let mut undeclared = Vec::new();
        for (name, tally) in &self.by_name {
            if exact.contains(&name.as_str()) {
                continue;
            }
            let groups = c.groups_for(name, None);
            // Declared by name, but every flow went to a port no group lists: still undeclared.
            let only_other_ports = tally.flows > 0 && !self.declared_names.contains(name);
            if groups.is_empty() || only_other_ports {
                undeclared.push(UndeclaredEvidence {
                    name: Some(name),
                    key: name.clone(),
                    tally,
                });
                continue;
            }
            // The most specific wildcard that matched.
            let pattern = catalog
                .matches(name)
                .iter()
                .map(|m| m.pattern.as_str())
                .max_by_key(|p| p.len())
                .unwrap_or_default()
                .to_owned();
            hosts.push(HostEvidence {
                name,
                pattern,
                groups,
                tally,
            });
        }
        for (addr, tally) in &self.unresolved {
            undeclared.push(UndeclaredEvidence {
                name: None,
                key: addr.to_string(),
                tally,
            });
        }
        // Loudest first (flows, then bytes), then by name and addresses.
        undeclared.sort_by(|a, b| {
            let loud = |t: &Tally| (t.flows, t.bytes_sent + t.bytes_received);
            (loud(b.tally), &a.name)
                .cmp(&(loud(a.tally), &b.name))
                .then_with(|| a.tally.addresses.cmp(&b.tally.addresses))
        });
        Destinations { hosts, undeclared }
    }
}

/// A group's status from its members' statuses and patterns: blocked when an exact name of it
/// is blocked (a wildcard member blocked only degrades it: other members may serve), degraded
/// when a member failed, ok when one was reached, unseen otherwise.
pub fn group_status(members: &[(Status, &str)]) -> Status {
    if members
        .iter()
        .any(|&(s, pattern)| s == Status::Blocked && !crate::catalog::is_wildcard(pattern))
    {
        Status::Blocked
    } else if members.iter().any(|(s, _)| s.is_failing()) {
        Status::Degraded
    } else if members.iter().any(|(s, _)| *s == Status::Ok) {
        Status::Ok
    } else {
        Status::Unseen
    }
}

/// Whether the runner can work, from the statuses of the required groups: `Some(false)` when
/// one failed, `Some(true)` when all were reached without trouble, `None` (unknown) otherwise.
pub fn runner_can_work(required: &[Status]) -> Option<bool> {
    if required.iter().any(|s| s.is_failing()) {
        Some(false)
    } else if !required.is_empty() && required.iter().all(|s| *s == Status::Ok) {
        Some(true)
    } else {
        None
    }
}
