//! The recent evidence per documented host, in time slots: what the status gauges are judged
//! on. A daemon's correlator forgets its closed flows, and a status judged over a whole day
//! would stay `blocked` for hours after a firewall was fixed; so each host keeps counts for the
//! last [`SLOTS`] slots of `window / SLOTS` each (one minute each by default), and a status is
//! the counts of the slots still inside the window (between nine and ten minutes of evidence).

use crate::report::{classify, Status};

/// Slots per window.
pub const SLOTS: usize = 10;

/// What one slot (or a sum of slots) saw of a host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Flows that reached the host (established, no failure).
    pub successes: u64,
    /// Flows that failed (a reason of severity failure).
    pub failures: u64,
    /// Flows that worked, but not well (`slow_throughput`, `long_poll_cut`).
    pub warnings: u64,
    /// DNS answers that gave a usable address for the host's name.
    pub dns_usable: u64,
    /// DNS lookups of the name that failed (error code, sinkhole, no answer).
    pub dns_failures: u64,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.successes += other.successes;
        self.failures += other.failures;
        self.warnings += other.warnings;
        self.dns_usable += other.dns_usable;
        self.dns_failures += other.dns_failures;
    }

    /// The host's status from its counts, as the report judges a destination
    /// ([`classify::status`]): a DNS failure counts against the host only when no lookup of it
    /// gave a usable address in the same window (a failed AAAA lookup next to a good A one is
    /// not the host's failure, a name that never resolved is).
    pub fn status(&self) -> Status {
        let dns = if self.dns_usable == 0 {
            self.dns_failures
        } else {
            0
        };
        classify::status(self.successes, self.failures + dns, self.warnings)
    }
}

/// A host's counts in the last [`SLOTS`] slots.
#[derive(Clone, Debug, Default)]
pub struct Window {
    /// Per slot: which slot number (time / slot width) it holds, and its counts.
    slots: [(u64, Counts); SLOTS],
}

impl Window {
    /// Adds evidence at `ts_ns` into its slot (a slot from an older turn is reset first; evidence
    /// older than the slot's current turn is past the window and dropped).
    pub fn add(&mut self, ts_ns: u64, slot_ns: u64, f: impl FnOnce(&mut Counts)) {
        let turn = ts_ns / slot_ns.max(1);
        let slot = &mut self.slots[(turn % SLOTS as u64) as usize];
        if slot.0 < turn {
            *slot = (turn, Counts::default());
        } else if slot.0 > turn {
            return;
        }
        f(&mut slot.1);
    }

    /// The counts of the slots within the window ending at `now_ns`.
    pub fn sum(&self, now_ns: u64, slot_ns: u64) -> Counts {
        let now = now_ns / slot_ns.max(1);
        let oldest = now.saturating_sub(SLOTS as u64 - 1);
        let mut total = Counts::default();
        for (turn, counts) in &self.slots {
            if (oldest..=now).contains(turn) {
                total.add(counts);
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000_000_000;

    #[test]
    fn evidence_leaves_the_window_after_ten_slots() {
        let mut w = Window::default();
        w.add(5 * MIN, MIN, |c| c.failures += 1);
        w.add(7 * MIN + 1, MIN, |c| c.successes += 2);
        assert_eq!(w.sum(7 * MIN, MIN).failures, 1);
        assert_eq!(w.sum(14 * MIN, MIN).failures, 1);
        assert_eq!(w.sum(15 * MIN, MIN).failures, 0, "slot 5 is out at turn 15");
        assert_eq!(w.sum(15 * MIN, MIN).successes, 2);
        // A slot reused by a later turn forgets the old one; older evidence is dropped.
        w.add(15 * MIN, MIN, |c| c.warnings += 1);
        w.add(5 * MIN, MIN, |c| c.failures += 9);
        let want = Counts {
            successes: 2,
            warnings: 1,
            ..Counts::default()
        };
        assert_eq!(w.sum(15 * MIN, MIN), want);
        assert_eq!(w.sum(30 * MIN, MIN), Counts::default());
    }

    #[test]
    fn dns_failures_count_only_when_nothing_resolved() {
        let mut c = Counts {
            dns_failures: 2,
            ..Counts::default()
        };
        assert_eq!(c.status(), Status::Blocked);
        c.dns_usable = 1;
        assert_eq!(c.status(), Status::Unseen, "resolved, never connected");
        c.successes = 1;
        assert_eq!(c.status(), Status::Ok);
        c.warnings = 1;
        assert_eq!(c.status(), Status::Degraded);
    }
}
