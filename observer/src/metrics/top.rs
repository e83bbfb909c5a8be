//! Bounded label values for what comes from the wire: undeclared destinations kept as the top N
//! by bytes plus one `(other)` series, and the text of a label value made safe.
//!
//! Any local process can make up destination names (a DNS query, an SNI, a CONNECT target) or
//! connect to any number of addresses, and every distinct label value is a series Prometheus
//! stores for weeks: the names become labels only within a fixed budget.
//!
//! # How the top N stays monotonic
//!
//! A counter series must never go down while it exists. So every tracked destination's series
//! counts the bytes since it was *tracked*, and `(other)` counts every other byte: the series
//! always add up to the undeclared bytes seen, and none ever decreases. A destination that
//! outgrows the smallest tracked one (by [`PROMOTE_FACTOR`], so that two close ones do not swap
//! back and forth at every scrape) takes its place: the demoted destination's bytes move into
//! `(other)` (which only grows by them), and its series ends. The promoted one's series starts
//! at zero (its earlier bytes stay in `(other)`), and it is ranked by all the bytes it was seen
//! with since it became a candidate. Candidates for promotion are remembered within
//! a bound ([`CANDIDATES_PER_SLOT`] per tracked slot); when full, the one with the fewest bytes
//! is forgotten, so a flood of small names cannot keep a heavy newcomer out for long.

use std::collections::HashMap;

/// Longest label value kept, in bytes (a DNS name has at most 253 characters).
pub const MAX_LABEL_BYTES: usize = 253;
/// The label value of the bytes of every destination not in the top N.
pub const OTHER: &str = "(other)";
/// A candidate is promoted when its bytes exceed this many times the smallest tracked one's.
pub const PROMOTE_FACTOR: u64 = 2;
/// Candidates remembered per tracked slot.
pub const CANDIDATES_PER_SLOT: usize = 10;

/// A label value from the wire (a DNS name, an address), made harmless and bounded: ASCII
/// letters, digits and `. - _ : *` are kept (every character of a host name, an address or a
/// catalog pattern), anything else becomes `_`; longer than [`MAX_LABEL_BYTES`], it is cut and
/// ends with `~`, which no kept value contains. A value can then never be `(other)` or one of the
/// `(undeclared)`-style values, and never needs escaping (the encoder escapes anyway).
pub fn label_value(raw: &str) -> String {
    let keep = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '*');
    let mut out: String = raw
        .chars()
        .take(MAX_LABEL_BYTES + 1)
        .map(|c| if keep(c) { c } else { '_' })
        .collect();
    if out.len() > MAX_LABEL_BYTES {
        out.truncate(MAX_LABEL_BYTES - 1);
        out.push('~');
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// A tracked destination: the bytes its series shows, and the bytes it is ranked by.
#[derive(Clone, Copy, Debug, Default)]
struct Tracked {
    exposed: u64,
    rank: u64,
}

/// Undeclared bytes per destination: the top N by bytes, and everything else in `(other)`.
#[derive(Clone, Debug)]
pub struct TopDestinations {
    n: usize,
    tracked: HashMap<String, Tracked>,
    /// Destinations not tracked, with the bytes seen since they became candidates.
    candidates: HashMap<String, u64>,
    other: u64,
}

impl TopDestinations {
    pub fn new(n: usize) -> Self {
        Self {
            n: n.max(1),
            tracked: HashMap::new(),
            candidates: HashMap::new(),
            other: 0,
        }
    }

    /// Adds `bytes` for `destination` (already a [`label_value`]).
    pub fn add(&mut self, destination: &str, bytes: u64) {
        if bytes == 0 {
            return;
        }
        if let Some(t) = self.tracked.get_mut(destination) {
            t.exposed += bytes;
            t.rank += bytes;
            return;
        }
        if self.tracked.len() < self.n {
            let t = Tracked {
                exposed: bytes,
                rank: bytes,
            };
            self.tracked.insert(destination.to_owned(), t);
            return;
        }
        self.other += bytes;
        let rank = match self.candidates.get_mut(destination) {
            Some(r) => {
                *r += bytes;
                *r
            }
            None => {
                if self.candidates.len() >= self.n * CANDIDATES_PER_SLOT {
                    let smallest = self
                        .candidates
                        .iter()
                        .min_by(|a, b| a.1.cmp(b.1).then_with(|| a.0.cmp(b.0)))
                        .map(|(k, _)| k.clone());
                    if let Some(k) = smallest {
                        self.candidates.remove(&k);
                    }
                }
                self.candidates.insert(destination.to_owned(), bytes);
                bytes
            }
        };
        let smallest = self
            .tracked
            .iter()
            .min_by(|a, b| a.1.rank.cmp(&b.1.rank).then_with(|| a.0.cmp(b.0)))
            .map(|(k, t)| (k.clone(), *t));
        if let Some((demoted, t)) = smallest {
            if rank > t.rank.saturating_mul(PROMOTE_FACTOR) {
                self.tracked.remove(&demoted);
                self.other += t.exposed;
                self.candidates.remove(destination);
                self.candidates.insert(demoted, t.rank);
                let promoted = Tracked { exposed: 0, rank };
                self.tracked.insert(destination.to_owned(), promoted);
            }
        }
    }

    /// The series: tracked destinations by name, then `(other)`.
    pub fn series(&self) -> Vec<(&str, u64)> {
        let mut out: Vec<(&str, u64)> = self
            .tracked
            .iter()
            .map(|(k, t)| (k.as_str(), t.exposed))
            .collect();
        out.sort_unstable();
        out.push((OTHER, self.other));
        out
    }

    /// Every undeclared byte seen (the sum of the series).
    pub fn total(&self) -> u64 {
        self.other + self.tracked.values().map(|t| t.exposed).sum::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_bounded_and_plain() {
        assert_eq!(label_value("registry.npmjs.org"), "registry.npmjs.org");
        assert_eq!(label_value("fd00::1"), "fd00::1");
        assert_eq!(label_value("*.github.com"), "*.github.com");
        assert_eq!(label_value("a\"b\\c\nd\u{1b}[2J é"), "a_b_c_d__2J__");
        assert_eq!(label_value("(other)"), "_other_");
        assert_eq!(label_value(""), "_");
        let long = "x".repeat(1000);
        let v = label_value(&long);
        assert_eq!(v.len(), MAX_LABEL_BYTES);
        assert!(v.ends_with('~'));
        assert_eq!(label_value(&"é".repeat(400)).len(), MAX_LABEL_BYTES);
    }

    /// Every series is monotonic while it exists, and they add up to every byte.
    fn check_monotonic(
        top: &TopDestinations,
        before: &HashMap<String, u64>,
    ) -> HashMap<String, u64> {
        let now: HashMap<String, u64> = top
            .series()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        for (k, v) in &now {
            if let Some(old) = before.get(k) {
                assert!(v >= old, "{k} went from {old} to {v}");
            }
        }
        now
    }

    #[test]
    fn a_flood_of_names_stays_in_n_series_and_other_and_heavy_ones_rise() {
        let mut top = TopDestinations::new(3);
        let mut seen = HashMap::new();
        let mut total = 0;
        for (name, bytes) in [("a", 100), ("b", 200), ("c", 300)] {
            top.add(name, bytes);
            total += bytes;
        }
        seen = check_monotonic(&top, &seen);
        // 10,000 junk names of 10 bytes each: all in (other), the series count stays at 4.
        for i in 0..10_000u64 {
            top.add(&format!("junk{i}.example"), 10);
            total += 10;
            if i % 500 == 0 {
                seen = check_monotonic(&top, &seen);
            }
        }
        assert_eq!(top.series().len(), 4);
        assert!(top.candidates.len() <= 3 * CANDIDATES_PER_SLOT);
        assert_eq!(top.total(), total);
        // A heavy newcomer takes the smallest one's place, and its series starts at zero.
        top.add("big.example", 1_000);
        total += 1_000;
        seen = check_monotonic(&top, &seen);
        let names: Vec<&str> = top.series().iter().map(|(k, _)| *k).collect();
        assert_eq!(names, ["b", "big.example", "c", OTHER]);
        assert_eq!(top.series()[1].1, 0);
        top.add("big.example", 50);
        total += 50;
        seen = check_monotonic(&top, &seen);
        assert_eq!(top.series()[1].1, 50);
        assert_eq!(top.total(), total);
        // The demoted one comes back heavy: it is promoted again, from zero.
        top.add("a", 5_000);
        let _ = check_monotonic(&top, &seen);
        assert!(top.series().iter().any(|(k, v)| *k == "a" && *v == 0));
        assert_eq!(top.total(), total + 5_000);
    }
}
