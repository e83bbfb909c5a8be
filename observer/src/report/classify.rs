//! Failure classification: whether a flow or a DNS answer is a failure, a warning or a success,
//! with its reason code, and the status of a destination from its counts. Pure functions of
//! one flow or one answer, so that the report, the TUI and tests classify alike.

use std::net::IpAddr;

use crate::{
    pipeline::correlate::{Correlator, FlowEntry},
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

/// The failure a DNS answer shows, if any: an error rcode, an answer that names only sinkhole
/// addresses, or an answer without address for a name no flow reached (`flows` is the number
/// of flows to the name).
pub fn dns_failure(
    record: &NameRecord,
    flows: u64,
    is_sinkhole: impl Fn(IpAddr) -> bool,
) -> Option<&'static str> {
    match record.rcode.as_deref() {
        Some("NXDOMAIN") => Some("dns_nxdomain"),
        Some("SERVFAIL") => Some("dns_servfail"),
        Some("REFUSED") => Some("dns_refused"),
        Some("NOERROR")
            if !record.addresses.is_empty() && record.addresses.iter().all(|a| is_sinkhole(*a)) =>
        {
            Some("dns_sinkhole")
        }
        Some("NOERROR") if record.addresses.is_empty() && flows == 0 => Some("dns_no_address"),
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
