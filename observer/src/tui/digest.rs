//! The evidence behind the TUI's rows, kept up to date a flow at a time, so that a tick costs
//! the open flows, the flows closed since the last tick, the names and the groups — never the
//! closed flows kept (up to `MAX_FLOWS`). `report::build` reads every flow; the view cannot
//! afford that four times a second on a runner that has been busy for hours.
//!
//! A closed flow no longer changes (the correlator says when one does: a late reading or a late
//! name, and then everything is folded again), so [`Digest`] folds each one once, when it
//! appears in the correlator's closed journal, into per-destination tallies; the open flows are
//! added to a copy at every tick. The tallies are the report's own ([`Tallies`]: each flow
//! brings its position in the list, so the order it is folded in does not matter), so the rows
//! read exactly as the exported report does.

use std::collections::BTreeSet;

use crate::{
    pipeline::correlate::{Correlator, FlowEntry},
    report::tally::Tallies,
};

use super::view::MAX_CLOSED_FLOWS;

/// The closed flows folded so far, and the most recent ones the flow table shows.
#[derive(Debug, Default)]
pub struct Digest {
    /// Entries of the correlator's closed journal folded.
    folded: usize,
    /// The correlator's `settled_changes` when they were.
    changes: u64,
    settled: Tallies,
    /// Positions of the `MAX_CLOSED_FLOWS` closed flows latest in the list.
    recent_closed: BTreeSet<usize>,
    /// Flows read by the last [`Digest::tallies`]: the open ones and those closed since.
    pub flows_read: usize,
}

impl Digest {
    /// Folds the flows closed since the last call (all of them again if a closed flow changed),
    /// then returns the tallies with the open flows, the names and the DNS timeouts added.
    pub fn tallies(&mut self, c: &Correlator) -> Tallies {
        if c.settled_changes() != self.changes || c.closed_journal().len() < self.folded {
            *self = Self::default();
            self.changes = c.settled_changes();
        }
        let flows = c.flows();
        let journal = &c.closed_journal()[self.folded..];
        self.flows_read = journal.len();
        for &i in journal {
            self.settled.add_flow(i, &flows[i], c);
            self.recent_closed.insert(i);
            if self.recent_closed.len() > MAX_CLOSED_FLOWS {
                self.recent_closed.pop_first();
            }
        }
        self.folded = c.closed_journal().len();

        let mut t = self.settled.clone();
        for (i, f) in c.open_flows() {
            self.flows_read += 1;
            t.add_flow(i, f, c);
        }
        t.add_dns(c);
        t
    }

    /// The flows the table shows: every open flow and the most recent closed ones, in list
    /// (opening) order.
    pub fn shown_flows<'c>(&self, c: &'c Correlator) -> Vec<&'c FlowEntry> {
        let flows = c.flows();
        let mut positions: Vec<usize> = c.open_flows().map(|(i, _)| i).collect();
        positions.extend(self.recent_closed.iter().copied());
        positions.sort_unstable();
        positions.into_iter().map(|i| &flows[i]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        catalog::Catalog,
        pipeline::correlate::tests::{closed, opened, query, response},
        pipeline::events::Observed,
        report::{self, Report, Status},
        tui::view::{build, build_with, HostRow, Rates, Snapshot, VerdictState, SECOND},
    };

    const T0: u64 = 1_795_766_400 * SECOND;

    /// Every row the view shows says what the report says about the same destination.
    fn agrees(v: &Snapshot, r: &Report) {
        let same = |row: &HostRow, name: &str, reasons: &[report::Reason], what: &str| {
            assert_eq!(row.label, name, "{what}");
            let codes: Vec<(&str, u64)> = row
                .reasons
                .iter()
                .map(|x| (x.code.as_str(), x.count))
                .collect();
            let want: Vec<(&str, u64)> =
                reasons.iter().map(|x| (x.code.as_str(), x.count)).collect();
            assert_eq!(codes, want, "{what} {name}");
            for (x, y) in row.reasons.iter().zip(reasons) {
                assert_eq!(x.first_ns.and_then(report::rfc3339), y.first_seen);
                assert_eq!(x.last_ns.and_then(report::rfc3339), y.last_seen);
                let process = y.process.as_ref().map(super::super::view::process_label);
                assert_eq!(x.process, process, "{what} {name} {}", x.code);
                assert_eq!(x.detail, y.detail);
            }
        };
        assert_eq!(v.hosts.len(), r.hosts.len());
        for (row, h) in v.hosts.iter().zip(&r.hosts) {
            same(row, &h.name, &h.reasons, "host");
            assert_eq!(row.status, h.status, "{}", h.name);
            assert_eq!(row.pattern.as_deref(), Some(h.pattern.as_str()));
            assert_eq!(row.groups, h.groups);
            assert_eq!((row.flows, row.bytes_sent), (h.flows, h.bytes_sent));
            assert_eq!(row.bytes_received, h.bytes_received);
            assert_eq!(row.cname_chain, h.cname_chain);
            assert_eq!(row.function, h.function);
            assert_eq!(row.first_ns.and_then(report::rfc3339), h.first_seen);
            assert_eq!(row.last_ns.and_then(report::rfc3339), h.last_seen);
            assert_eq!(row.addresses.len(), h.addresses.len());
            assert_eq!(row.processes.len(), h.processes.len());
            assert_eq!(row.throughput, h.throughput);
        }
        assert_eq!(v.undeclared.len(), r.undeclared.len());
        for (row, u) in v.undeclared.iter().zip(&r.undeclared) {
            let key = u.name.clone().unwrap_or_else(|| u.addresses[0].to_string());
            same(row, &key, &u.reasons, "undeclared");
            assert_eq!(row.status, u.status);
            assert_eq!(row.unresolved, u.name.is_none());
            assert_eq!((row.flows, row.ports.clone()), (u.flows, u.ports.clone()));
            assert_eq!(row.cname_chain, u.cname_chain);
        }
        assert_eq!(v.groups.len(), r.groups.len());
        for (row, g) in v.groups.iter().zip(&r.groups) {
            assert_eq!((&row.id, row.status), (&g.id, g.status));
            assert_eq!(row.failing, g.failing_hosts);
            assert_eq!((row.members, row.flows), (g.hosts.len(), g.flows));
            assert_eq!(row.throughput, g.throughput);
        }
        let because: Vec<String> = r
            .verdict
            .required
            .iter()
            .flat_map(|g| g.because.clone())
            .collect();
        assert_eq!(v.verdict.because, because);
        let features: Vec<&str> = r
            .verdict
            .failing_features
            .iter()
            .map(|g| g.group.as_str())
            .collect();
        assert_eq!(v.verdict.failing_features, features);
        let state = match r.verdict.runner_can_work {
            Some(true) => VerdictState::CanWork,
            Some(false)
                if r.verdict
                    .required
                    .iter()
                    .any(|g| g.status == Status::Blocked) =>
            {
                VerdictState::Blocked
            }
            Some(false) => VerdictState::Degraded,
            None => VerdictState::Unknown,
        };
        assert_eq!(v.verdict.state, state);
        let shown: Vec<u64> = v.flows.iter().map(|f| f.flow_id).collect();
        let all: Vec<u64> = r.flows.iter().map(|f| f.flow_id).collect();
        assert_eq!(shown, all, "few flows: the view shows them all, in order");
    }

    /// Feeds `events` one at a time; after each, the view kept up to date tick by tick equals
    /// the view built from scratch, and both agree with the report.
    fn replay_checking(events: Vec<(u64, Observed)>) -> Correlator {
        let mut c = Correlator::new(Catalog::builtin());
        let mut digest = Digest::default();
        for (ts, mut o) in events {
            c.observe(ts, &mut o);
            let kept = build_with(&mut digest, &c, ts, 1);
            assert_eq!(kept, build(&c, ts, 1), "at {ts}");
            agrees(&kept, &report::build(&c));
        }
        c
    }

    #[test]
    fn the_recorded_workload_reads_as_its_report_at_every_event() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/runner-workload.jsonl"
        ))
        .unwrap();
        let events: Vec<(u64, Observed)> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| crate::eventlog::parse_line(l).unwrap())
            .collect();
        let c = replay_checking(events);
        assert!(c.closed_journal().len() > 3, "the fixture closes flows");
    }

    #[test]
    fn failures_dns_errors_and_late_changes_read_as_the_report() {
        let nx = {
            let Observed::DnsResponse(mut d) = response("ghcr.io", &[]) else {
                unreachable!()
            };
            d.rcode = Some("NXDOMAIN".into());
            Observed::DnsResponse(d)
        };
        let late = Observed::FlowProgress {
            flow_id: 2,
            dst: "198.18.1.10:443".parse().unwrap(),
            bytes_sent: 900,
            bytes_received: 9_000,
            interval_ms: 1000.0,
            sent_bps: 0.0,
            received_bps: 0.0,
            sent_idle_ms: None,
            received_idle_ms: None,
        };
        let c = replay_checking(vec![
            (
                T0,
                response("api.github.com", &[("api.github.com", "A", "198.18.1.10")]),
            ),
            (T0, opened(1, "198.18.1.10:443")),
            // Two failures at the same instant: the later in the list names the process.
            (T0 + SECOND, closed(1, "198.18.1.10:443", false, 0, 0)),
            (T0 + SECOND, opened(2, "198.18.1.10:443")),
            (T0 + SECOND, opened(3, "198.18.1.10:443")),
            (T0 + 2 * SECOND, closed(3, "198.18.1.10:443", false, 0, 0)),
            (
                T0 + 2 * SECOND,
                closed(2, "198.18.1.10:443", true, 10, 2000),
            ),
            // A reading after the close: folded again.
            (T0 + 3 * SECOND, late),
            (T0 + 3 * SECOND, nx),
            (
                T0 + 3 * SECOND,
                query(7, "results-receiver.actions.githubusercontent.com"),
            ),
            (T0 + 4 * SECOND, opened(4, "198.18.9.9:443")),
            (T0 + 5 * SECOND, closed(4, "198.18.9.9:443", true, 10, 0)),
            (T0 + 9 * SECOND, opened(5, "198.18.9.8:80")),
        ]);
        assert!(c.settled_changes() > 0);
    }

    /// A correlator holding `closed` closed flows to api.github.com and one open flow.
    fn holding(closed_flows: u64) -> Correlator {
        let mut c = Correlator::new(Catalog::builtin());
        let api = "198.18.1.10:443";
        c.observe(T0, &mut query(1, "api.github.com"));
        let mut o = response("api.github.com", &[("api.github.com", "A", "198.18.1.10")]);
        c.observe(T0, &mut o);
        for id in 1..=closed_flows {
            c.observe(T0 + id, &mut opened(id, api));
            c.observe(T0 + id, &mut closed(id, api, true, 100, 1000));
        }
        c.observe(T0 + SECOND, &mut opened(u64::MAX, api));
        c
    }

    #[test]
    fn a_tick_reads_the_open_flows_not_the_closed_ones() {
        let mut rows = Vec::new();
        for closed_flows in [10, 10_000] {
            let c = holding(closed_flows);
            let mut digest = Digest::default();
            let first = build_with(&mut digest, &c, T0 + SECOND, 1);
            assert_eq!(digest.flows_read, closed_flows as usize + 1, "folded once");
            // The next tick: nothing closed since, only the open flow is read.
            let next = build_with(&mut digest, &c, T0 + 2 * SECOND, 1);
            assert_eq!(digest.flows_read, 1);
            let api = next
                .hosts
                .iter()
                .find(|h| h.label == "api.github.com")
                .unwrap();
            assert_eq!(
                api.flows,
                closed_flows + 1,
                "every closed flow still counts"
            );
            // The same rows (but for the rates, taken at another instant).
            let still = |v: &Snapshot| -> Vec<HostRow> {
                v.hosts
                    .iter()
                    .map(|h| HostRow {
                        rates: Rates::default(),
                        ..h.clone()
                    })
                    .collect()
            };
            assert_eq!(still(&first), still(&next));
            rows.push((next.groups.len(), next.hosts.len(), next.undeclared.len()));
            assert_eq!(
                next.flows.len(),
                (closed_flows as usize).min(MAX_CLOSED_FLOWS) + 1,
                "the table keeps the recent closed flows and the open one"
            );
            assert_eq!(next.flows.last().map(|f| f.flow_id), Some(u64::MAX));
        }
        assert_eq!(rows[0], rows[1], "as many group, host and undeclared rows");
    }
}
