//! Failure classification: whether a flow or a DNS answer is a failure, a warning or a success,
//! with its reason code, and the status of a destination from its counts. Pure functions of
//! one flow or one answer, so that the report, the TUI and tests classify alike.

use crate::{
    pipeline::correlate::{Correlator, DnsTimeouts, FlowEntry},
    pipeline::events::{ClosedBy, Outcome},
    pipeline::names::NameRecord,
    pipeline::throughput::TransferSummary,
};

use super::{vocab::Reason, Status};

/// Whether a flow is a failed attempt to reach its destination, and the reason code. A flow
/// that was established and received data reached its destination, however it ended: servers
/// often reset a connection they are done with.
pub fn failure(flow: &FlowEntry) -> Option<Reason> {
    if flow.destination.via_proxy.is_some() {
        // Through a proxy: its status line says whether the target was reached.
        if let Some((code, _)) = &flow.proxy_status {
            return Reason::of_proxy_status(*code);
        }
        if flow.outcome.is_some() && flow.bytes_received == 0 {
            // Asked, and closed without an answer.
            return Some(Reason::ProxyError);
        }
        return None;
    }
    let outcome = flow.outcome?;
    let established = flow.established_ns.is_some();
    match outcome {
        Outcome::Refused => Some(Reason::TcpReset),
        Outcome::Unreachable => Some(Reason::TcpUnreachable),
        Outcome::Timeout if !established => Some(Reason::TcpTimeout),
        Outcome::Error if !established => Some(Reason::TcpError),
        _ if !established || flow.bytes_received > 0 => None,
        // Cut by the far side after the client spoke and before any answer: the signature of
        // SNI-filtering firewalls.
        Outcome::Reset | Outcome::Closed
            if flow.bytes_sent > 0
                && (outcome == Outcome::Reset || flow.closed_by == Some(ClosedBy::Peer)) =>
        {
            Some(Reason::TlsReset)
        }
        Outcome::Reset | Outcome::Timeout | Outcome::Error => Some(Reason::ConnectionReset),
        Outcome::Closed | Outcome::Aborted => None,
    }
}

/// The evidence of a flow's failure, when more than its code says: the proxy that answered and
/// what (`proxy 198.18.1.5:3128 answered 403 Forbidden to CONNECT api.github.com:443`).
pub fn failure_detail(flow: &FlowEntry) -> Option<String> {
    let proxy = flow.destination.via_proxy?;
    let target = flow.destination.proxy_target.as_deref().unwrap_or("?");
    let asked = match flow.destination.named_by {
        Some(crate::pipeline::events::NamedBy::HttpHost) => "HTTP request for",
        _ => "CONNECT",
    };
    Some(match &flow.proxy_status {
        Some((code, reason)) => {
            format!("proxy {proxy} answered {code} {reason} to {asked} {target}")
        }
        None => format!("proxy {proxy} closed without answering {asked} {target}"),
    })
}

/// A successful flow: established, and not a failure.
pub fn success(flow: &FlowEntry) -> bool {
    flow.established_ns.is_some() && failure(flow).is_none()
}

/// A flow that worked, but not well: too slow for the runner, or a long poll cut short.
pub fn warning(flow: &FlowEntry, c: &Correlator) -> Option<(Reason, String)> {
    let limits = c.limits();
    if flow.established_ns.is_none() || failure(flow).is_some() {
        return None;
    }
    // Closed or reset by the far side (or a middlebox) after an idle time well below the long
    // poll's: the runner's long poll would have been cut.
    if let Some(idle_ms) = flow.idle_ms {
        let cut_by_far_side = flow.closed_by == Some(ClosedBy::Peer)
            || matches!(
                flow.outcome,
                Some(Outcome::Reset | Outcome::Timeout | Outcome::Error)
            );
        let long_poll_ms = limits.long_poll_ns as f64 / 1e6;
        if cut_by_far_side
            && c.reaches_required_group(&flow.destination)
            && idle_ms >= long_poll_ms * 0.02
            && idle_ms < long_poll_ms * 0.9
        {
            return Some((
                Reason::LongPollCut,
                format!(
                    "cut after {:.1} s idle by the far side (the runner's long poll waits {:.0} s)",
                    idle_ms / 1e3,
                    long_poll_ms / 1e3
                ),
            ));
        }
    }
    let transfers = flow.transfers.stats();
    for (word, summary) in [("received", &transfers.received), ("sent", &transfers.sent)] {
        if let Some(detail) = slow_transfer(word, summary, flow.flow_id, limits.min_bps) {
            return Some((Reason::SlowThroughput, detail));
        }
    }
    None
}

/// The evidence of `slow_throughput` when the slowest judged transfer of a direction moved below
/// `min_bps` (docs/throughput.md): `received 60.3 KiB in 12.1 s at 40.8 kbit/s (bytes read) on
/// flow #2 (minimum 70.0 kbit/s)`.
pub fn slow_transfer(
    word: &str,
    summary: &TransferSummary,
    flow_id: u64,
    min_bps: f64,
) -> Option<String> {
    let slowest = summary.slowest.as_ref()?;
    (slowest.rate_bps < min_bps).then(|| {
        format!(
            "{word} {} in {:.1} s at {} ({}) on flow #{} (minimum {})",
            crate::format::bytes(slowest.bytes),
            slowest.seconds,
            crate::format::rate(slowest.rate_bps),
            slowest.evidence.explain(),
            slowest.flow_id.unwrap_or(flow_id),
            crate::format::rate(min_bps)
        )
    })
}

/// How a DNS finding weighs on its host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsWeight {
    /// The name produced no usable address (of any type): the lookup failed.
    Failure,
    /// A query of this type failed, and a retry of the same type answered: the host is
    /// `degraded` when it was reached.
    Retried,
    /// This type failed while another type answered: a note on the host, never a reason.
    Note,
}

/// One DNS finding of a name: a reason code for one record type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsFinding {
    pub code: &'static str,
    /// `A`, `AAAA`, ...; `None` for `dns_no_address` (no type gave an address).
    pub rtype: Option<String>,
    pub count: u64,
    pub weight: DnsWeight,
}

/// The reason code of a DNS response code that is a failure.
pub fn rcode_reason(rcode: &str) -> &'static str {
    match rcode {
        "NXDOMAIN" => Reason::DnsNxdomain.as_str(),
        "SERVFAIL" => Reason::DnsServfail.as_str(),
        "REFUSED" => Reason::DnsRefused.as_str(),
        _ => Reason::DnsError.as_str(),
    }
}

/// What DNS says about a name, per record type, as a client experiences its lookups
/// (getaddrinfo asks A and AAAA together; resolvers retry):
/// - an answer whose addresses are all sinkholes is `dns_sinkhole` for its type, whatever the
///   other type returned;
/// - a failure (error code or no response) of a type that later answered is `Retried`;
/// - a failure of a type while another type gave usable addresses is a `Note`;
/// - otherwise the name produced no usable address and the failure is a `Failure`; a name that
///   resolved (NOERROR) to no address and was not connected to is `dns_no_address`.
///
/// `flows` is the number of flows to the name.
pub fn dns_findings(
    record: Option<&NameRecord>,
    timeouts: Option<&DnsTimeouts>,
    flows: u64,
) -> Vec<DnsFinding> {
    let outcomes = record.map_or(&[][..], |r| &r.outcomes[..]);
    let usable_any = outcomes.iter().any(|o| o.answered > 0);
    let mut types: Vec<&str> = outcomes.iter().map(|o| o.rtype.as_str()).collect();
    for (t, _) in timeouts.map_or(&[][..], |t| &t.by_type[..]) {
        if !types.contains(&t.as_str()) {
            types.push(t);
        }
    }
    let mut out = Vec::new();
    for t in types {
        let outcome = outcomes.iter().find(|o| o.rtype == t);
        let answered = outcome.is_some_and(|o| o.answered > 0);
        let recovered = outcome.is_some_and(|o| o.answered_after_failure);
        if let Some(o) = outcome.filter(|o| o.sinkholed > 0) {
            out.push(DnsFinding {
                code: Reason::DnsSinkhole.as_str(),
                rtype: Some(t.to_owned()),
                count: o.sinkholed,
                weight: DnsWeight::Failure,
            });
        }
        let mut failures: Vec<(&'static str, u64)> = Vec::new();
        for (rcode, n) in outcome.map_or(&[][..], |o| &o.errors[..]) {
            let code = rcode_reason(rcode);
            match failures.iter_mut().find(|(c, _)| *c == code) {
                Some((_, m)) => *m += n,
                None => failures.push((code, *n)),
            }
        }
        let timed_out = timeouts
            .and_then(|x| x.by_type.iter().find(|(ty, _)| ty == t))
            .map_or(0, |(_, n)| *n);
        if timed_out > 0 {
            failures.push((Reason::DnsTimeout.as_str(), timed_out));
        }
        for (code, count) in failures {
            let weight = if recovered || (code == Reason::DnsTimeout.as_str() && answered) {
                DnsWeight::Retried
            } else if usable_any {
                DnsWeight::Note
            } else {
                DnsWeight::Failure
            };
            out.push(DnsFinding {
                code,
                rtype: Some(t.to_owned()),
                count,
                weight,
            });
        }
    }
    let sinkholed = outcomes.iter().any(|o| o.sinkholed > 0);
    let empty = outcomes.iter().any(|o| o.empty > 0);
    if !usable_any && !sinkholed && empty && out.is_empty() && flows == 0 {
        out.push(DnsFinding {
            code: Reason::DnsNoAddress.as_str(),
            rtype: None,
            count: 1,
            weight: DnsWeight::Failure,
        });
    }
    out
}

/// The status of a destination from its attempts: successes, failures, and successes that
/// worked but not well (warnings).
pub fn status(successes: u64, failures: u64, warnings: u64) -> Status {
    match (successes, failures) {
        (0, 0) => Status::Unseen,
        (0, _) => Status::Blocked,
        (_, 0) if warnings == 0 => Status::Ok,
        _ => Status::Degraded,
    }
}
