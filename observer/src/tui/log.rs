//! The event log: one line per change of the verdict, of a host's status, per new failure or
//! warning reason and per new undeclared destination, found by comparing each view with the
//! one before ([`diff`]). The operator reads what happened while they looked away.

use std::collections::{HashMap, VecDeque};

use crate::report::Status;

use super::view::{status_word, HostRow, ReasonRow, Snapshot, VerdictState};

/// Entries kept in the event log.
pub const MAX_LOG: usize = 1_000;

/// How bad an event-log entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Bad,
    Warn,
    Good,
    Info,
}

impl Level {
    pub fn word(self) -> &'static str {
        match self {
            Self::Bad => "BAD",
            Self::Warn => "WARN",
            Self::Good => "GOOD",
            Self::Info => "INFO",
        }
    }
}

/// One verdict change.
#[derive(Clone, Debug, PartialEq)]
pub struct LogEntry {
    pub seq: u64,
    pub ts_ns: u64,
    pub level: Level,
    pub text: String,
}

/// The last `MAX_LOG` entries, newest last, numbered from 1.
#[derive(Debug, Default)]
pub struct VerdictLog {
    entries: VecDeque<LogEntry>,
    seq: u64,
}

impl VerdictLog {
    pub fn push(&mut self, ts_ns: u64, level: Level, text: String) {
        self.seq += 1;
        self.entries.push_back(LogEntry {
            seq: self.seq,
            ts_ns,
            level,
            text,
        });
        while self.entries.len() > MAX_LOG {
            self.entries.pop_front();
        }
    }

    /// Oldest first.
    pub fn iter(&self) -> std::collections::vec_deque::Iter<'_, LogEntry> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

fn verdict_level(s: VerdictState) -> Level {
    match s {
        VerdictState::CanWork => Level::Good,
        VerdictState::Blocked => Level::Bad,
        VerdictState::Degraded => Level::Warn,
        VerdictState::Unknown => Level::Info,
    }
}

/// What changed between two views, as event-log lines: the verdict, each host's status, new
/// failure and warning reasons, new undeclared destinations. `None` is the view before
/// anything was seen.
pub fn diff(before: Option<&Snapshot>, after: &Snapshot) -> Vec<(Level, String)> {
    let mut out = Vec::new();
    let old_verdict = before.map_or(VerdictState::Unknown, |b| b.verdict.state);
    if after.verdict.state != old_verdict {
        let mut text = format!("verdict: {}", after.verdict.state.word().to_lowercase());
        if !after.verdict.because.is_empty() {
            text.push_str(&format!(": {}", after.verdict.because.join("; ")));
        }
        out.push((verdict_level(after.verdict.state), text));
    }
    let index = |rows: &[HostRow]| -> HashMap<String, (Status, Vec<String>)> {
        rows.iter()
            .map(|h| {
                (
                    h.label.clone(),
                    (h.status, h.reasons.iter().map(|r| r.code.clone()).collect()),
                )
            })
            .collect()
    };
    let old_hosts = before.map(|b| index(&b.hosts)).unwrap_or_default();
    let old_undeclared = before.map(|b| index(&b.undeclared)).unwrap_or_default();
    for (rows, old, undeclared) in [
        (&after.hosts, &old_hosts, false),
        (&after.undeclared, &old_undeclared, true),
    ] {
        for h in rows {
            let (old_status, old_codes) = old
                .get(&h.label)
                .cloned()
                .unwrap_or((Status::Unseen, Vec::new()));
            let new: Vec<&ReasonRow> = h
                .reasons
                .iter()
                .filter(|r| !old_codes.contains(&r.code))
                .collect();
            let who = |r: &ReasonRow| {
                let mut s = r.code.clone();
                if let Some(p) = &r.process {
                    s.push_str(&format!(" by {p}"));
                }
                if let Some(d) = &r.detail {
                    s.push_str(&format!(": {d}"));
                }
                s
            };
            if undeclared && !old.contains_key(&h.label) && h.flows > 0 {
                let by = h.processes.join(", ");
                out.push((
                    Level::Warn,
                    format!(
                        "undeclared destination {}{}",
                        h.label,
                        if by.is_empty() {
                            String::new()
                        } else {
                            format!(" ({by})")
                        }
                    ),
                ));
            }
            if h.status != old_status && !(undeclared && h.status == Status::Ok) {
                let level = match h.status {
                    Status::Blocked => Level::Bad,
                    Status::Degraded => Level::Warn,
                    Status::Ok => Level::Good,
                    Status::Unseen => Level::Info,
                };
                let word = match (old_status, h.status) {
                    (Status::Unseen, Status::Ok) => "reached".to_owned(),
                    (_, s) => format!("{} → {}", status_word(old_status), status_word(s)),
                };
                let mut text = format!("{}: {word}", h.label);
                if !new.is_empty() {
                    let why: Vec<String> = new.iter().map(|r| who(r)).collect();
                    text.push_str(&format!(" ({})", why.join("; ")));
                }
                out.push((level, text));
            } else {
                for r in new {
                    let level = if h.status == Status::Blocked {
                        Level::Bad
                    } else {
                        Level::Warn
                    };
                    out.push((level, format!("{}: {}", h.label, who(r))));
                }
            }
        }
    }
    out
}
