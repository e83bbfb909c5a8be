//! Rates the view does not carry: each flow's current and recent rate, from its byte counters
//! at successive views, and observations per second. The App owns one tracker and feeds it every
//! view it applies; nothing here reads a clock (times are the views' own).

use std::collections::{HashMap, HashSet, VecDeque};

use super::view::{Rates, Snapshot, NOW_WINDOW, RECENT_WINDOW, SECOND};

/// The window of the observations-per-second figure.
const EVENTS_WINDOW: u64 = 5 * SECOND;

/// Byte counters of a flow at one instant.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Mark {
    ts_ns: u64,
    sent: u64,
    received: u64,
}

/// Counters seen at earlier views, and the rates they give.
#[derive(Debug, Default)]
pub struct RateTracker {
    flow_marks: HashMap<u64, VecDeque<Mark>>,
    flow_rates: HashMap<u64, Rates>,
    observation_marks: VecDeque<(u64, u64)>,
}

impl RateTracker {
    /// Takes the counters of `view`'s flows and its observation count; returns the
    /// observations per second, once the views kept span a second.
    pub fn track(&mut self, view: &Snapshot) -> Option<f64> {
        let now = view.now_ns;
        let live: HashSet<u64> = view.flows.iter().map(|f| f.flow_id).collect();
        self.flow_marks.retain(|id, _| live.contains(id));
        self.flow_rates.clear();
        for f in &view.flows {
            let marks = self.flow_marks.entry(f.flow_id).or_default();
            let mark = Mark {
                ts_ns: now,
                sent: f.bytes_sent,
                received: f.bytes_received,
            };
            match marks.back_mut() {
                Some(last) if last.ts_ns >= now => *last = mark,
                _ => marks.push_back(mark),
            }
            // Keep one mark at or before the recent window's start, none older.
            while marks.len() > 2 && marks[1].ts_ns <= now.saturating_sub(RECENT_WINDOW) {
                marks.pop_front();
            }
            let (now_up, now_down) = flow_rate(marks, f.opened_ns, now, NOW_WINDOW);
            let (recent_up, recent_down) = flow_rate(marks, f.opened_ns, now, RECENT_WINDOW);
            self.flow_rates.insert(
                f.flow_id,
                Rates {
                    now_up,
                    now_down,
                    recent_up,
                    recent_down,
                },
            );
        }

        let count = view.observations;
        match self.observation_marks.back_mut() {
            Some(last) if last.0 >= now => *last = (now, count),
            _ => self.observation_marks.push_back((now, count)),
        }
        while self.observation_marks.len() > 2
            && self.observation_marks[1].0 <= now.saturating_sub(EVENTS_WINDOW)
        {
            self.observation_marks.pop_front();
        }
        self.observation_marks.front().and_then(|&(t, n)| {
            let dt = now.saturating_sub(t);
            (dt >= SECOND).then(|| count.saturating_sub(n) as f64 * 1e9 / dt as f64)
        })
    }

    /// Current and recent rates of a flow (zero when unknown).
    pub fn flow(&self, flow_id: u64) -> Rates {
        self.flow_rates.get(&flow_id).copied().unwrap_or_default()
    }
}

/// Rates of one flow over `window` ending at `now`, from its counters at earlier views: the
/// bytes moved since the last mark at or before the window's start, divided by the window (as
/// [`crate::pipeline::throughput::Series::rate`] does). A flow opened inside the window started at zero.
fn flow_rate(marks: &VecDeque<Mark>, opened_ns: u64, now: u64, window: u64) -> (f64, f64) {
    let Some(last) = marks.back() else {
        return (0.0, 0.0);
    };
    let start = now.saturating_sub(window);
    let base = marks.iter().rev().find(|m| m.ts_ns <= start).copied();
    let (base, span) = match base {
        Some(b) => (b, window),
        None if opened_ns >= start => (
            Mark {
                ts_ns: opened_ns,
                sent: 0,
                received: 0,
            },
            window,
        ),
        // Watched for less than the window: measure over what was seen.
        None => match marks.front() {
            Some(first) if now.saturating_sub(first.ts_ns) >= SECOND / 2 => {
                (*first, now - first.ts_ns)
            }
            _ => return (0.0, 0.0),
        },
    };
    let secs = span as f64 / 1e9;
    (
        last.sent.saturating_sub(base.sent) as f64 * 8.0 / secs,
        last.received.saturating_sub(base.received) as f64 * 8.0 / secs,
    )
}
