//! Failure classification: whether a flow or a DNS answer is a failure, a warning or a success,
//! with its reason code, and the status of a destination from its counts. Pure functions of
//! one flow or one answer, so that the report, the TUI and tests classify alike.

use crate::{
    pipeline::correlate::{Correlator, DnsTimeouts, FlowEntry},
    pipeline::events::{ClosedBy, Outcome},
    pipeline::names::NameRecord,
    pipeline::throughput::SLOW_MIN_BYTES,
};

use super::Status;

/// Whether a flow is a failed attempt to reach its destination, and the reason code. A flow
/// that was established and received data reached its destination, however it ended: servers
/// often reset a connection they are done with.
pub fn failure(flow: &FlowEntry) -> Option<&'static str> {
    let outcome = flow.outcome?;
    let established = flow.established_ns.is_some();
    match outcome {
        Outcome::Refused => Some("tcp_reset"),
        Outcome::Unreachable => Some("tcp_unreachable"),
        Outcome::Timeout if !established => Some("tcp_timeout"),
        Outcome::Error if !established => Some("tcp_error"),
        _ if !established || flow.bytes_received > 0 => None,
        // Cut by the far side after the client spoke and before any answer: the signature of
        // SNI-filtering firewalls.
        Outcome::Reset | Outcome::Closed
            if flow.bytes_sent > 0
                && (outcome == Outcome::Reset || flow.closed_by == Some(ClosedBy::Peer)) =>
        {
            Some("tls_reset")
        }
        Outcome::Reset | Outcome::Timeout | Outcome::Error => Some("connection_reset"),
        Outcome::Closed | Outcome::Aborted => None,
    }
}

/// A successful flow: established, and not a failure.
pub fn success(flow: &FlowEntry) -> bool {
    flow.established_ns.is_some() && failure(flow).is_none()
}

/// A flow that worked, but not well: too slow for the runner, or a long poll cut short.
pub fn warning(flow: &FlowEntry, c: &Correlator) -> Option<(&'static str, String)> {
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
                "long_poll_cut",
                format!(
                    "cut after {:.1} s idle by the far side (the runner's long poll waits {:.0} s)",
                    idle_ms / 1e3,
                    long_poll_ms / 1e3
                ),
            ));
        }
    }
    for (word, samples) in [
        ("received", &flow.throughput.received),
        ("sent", &flow.throughput.sent),
    ] {
        let Some(stats) = samples.stats() else {
            continue;
        };
        if stats.bytes >= SLOW_MIN_BYTES && stats.median_bps < limits.min_bps {
            return Some((
                "slow_throughput",
                format!(
                    "{word} {} at a median {} over {:.1} s (minimum {})",
                    crate::format::bytes(stats.bytes),
                    crate::format::rate(stats.median_bps),
                    stats.active_s,
                    crate::format::rate(limits.min_bps)
                ),
            ));
        }
    }
    None
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
fn rcode_reason(rcode: &str) -> &'static str {
    match rcode {
        "NXDOMAIN" => "dns_nxdomain",
        "SERVFAIL" => "dns_servfail",
        "REFUSED" => "dns_refused",
        _ => "dns_error",
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
                code: "dns_sinkhole",
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
            failures.push(("dns_timeout", timed_out));
        }
        for (code, count) in failures {
            let weight = if recovered || (code == "dns_timeout" && answered) {
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
            code: "dns_no_address",
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
