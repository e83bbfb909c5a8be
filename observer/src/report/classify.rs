//! Failure classification: whether a flow or a DNS answer is a failure, a warning or a success,
//! with its reason code, and the status of a destination from its counts. Pure functions of
//! one flow or one answer, so that the report, the TUI and tests classify alike.

use std::net::IpAddr;

use crate::{
    pipeline::correlate::{Correlator, FlowEntry},
    pipeline::events::{ClosedBy, Outcome},
    pipeline::names::NameRecord,
    pipeline::throughput::TransferSummary,
};

use super::{vocab::Reason, Status};

/// Whether a flow is a failed attempt to reach its destination, and the reason code. A flow
/// that was established and received data reached its destination, however it ended: servers
/// often reset a connection they are done with.
pub fn failure(flow: &FlowEntry) -> Option<Reason> {
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

/// The failure a DNS answer shows, if any: an error rcode, an answer that names only sinkhole
/// addresses, or an answer without address for a name no flow reached (`flows` is the number
/// of flows to the name).
pub fn dns_failure(
    record: &NameRecord,
    flows: u64,
    is_sinkhole: impl Fn(IpAddr) -> bool,
) -> Option<Reason> {
    match record.rcode.as_deref() {
        Some("NXDOMAIN") => Some(Reason::DnsNxdomain),
        Some("SERVFAIL") => Some(Reason::DnsServfail),
        Some("REFUSED") => Some(Reason::DnsRefused),
        Some("NOERROR")
            if !record.addresses.is_empty() && record.addresses.iter().all(|a| is_sinkhole(*a)) =>
        {
            Some(Reason::DnsSinkhole)
        }
        Some("NOERROR") if record.addresses.is_empty() && flows == 0 => Some(Reason::DnsNoAddress),
        _ => None,
    }
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
