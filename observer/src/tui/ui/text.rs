//! Short forms for narrow columns: rates and byte counts in five characters, cut text, clock
//! times and ages. The long forms (bytes, rates, dates) are [`crate::format`]'s.

use crate::{format::datetime, tui::view::SECOND};

/// A rate in at most five characters, bits per second: `0`, `950b`, `70k`, `1.2M`.
pub fn short_rate(bps: f64) -> String {
    if bps <= 0.0 || !bps.is_finite() {
        return "0".to_owned();
    }
    let (v, unit) = if bps >= 1e9 {
        (bps / 1e9, "G")
    } else if bps >= 1e6 {
        (bps / 1e6, "M")
    } else if bps >= 1e3 {
        (bps / 1e3, "k")
    } else {
        (bps, "b")
    };
    if v >= 10.0 || unit == "b" {
        format!("{v:.0}{unit}")
    } else {
        format!("{v:.1}{unit}")
    }
}

/// Bytes in at most five characters: `980B`, `51K`, `1.2M`.
pub(super) fn short_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 || v >= 10.0 {
        format!("{v:.0}{}", UNITS[unit])
    } else {
        format!("{v:.1}{}", UNITS[unit])
    }
}

/// Cuts text to `width` characters, ending with `…` when cut.
pub(super) fn fit(text: &str, width: u16) -> String {
    let width = usize::from(width);
    if text.chars().count() <= width {
        return text.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let mut s: String = text.chars().take(width - 1).collect();
    s.push('…');
    s
}

/// `07:29:23` (UTC).
pub fn clock(ns: u64) -> String {
    let t = datetime(ns);
    format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
}

/// `07:29:23.497` (UTC).
pub(super) fn clock_ms(ns: u64) -> String {
    let t = datetime(ns);
    format!("{}.{:03}", clock(ns), t.millisecond())
}

/// `850ms`, `3.2s`.
pub(super) fn millis(ns: u64) -> String {
    if ns < SECOND {
        format!("{:.0} ms", ns as f64 / 1e6)
    } else {
        format!("{:.1} s", ns as f64 / 1e9)
    }
}

/// `3s`, `2m05`, `1h02`.
pub(super) fn age(ns: u64) -> String {
    let s = ns / SECOND;
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}", s / 60, s % 60)
    } else {
        format!("{}h{:02}", s / 3600, (s % 3600) / 60)
    }
}

/// `0:12`, `1:02:03`.
pub(super) fn duration(ns: u64) -> String {
    let s = ns / SECOND;
    if s < 3600 {
        format!("{}:{:02}", s / 60, s % 60)
    } else {
        format!("{}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_rates_fit_five_characters() {
        for (bps, text) in [
            (0.0, "0"),
            (950.0, "950b"),
            (70_000.0, "70k"),
            (8_500.0, "8.5k"),
            (1_234_567.0, "1.2M"),
            (123_000_000.0, "123M"),
            (2.5e9, "2.5G"),
        ] {
            assert_eq!(short_rate(bps), text);
            assert!(short_rate(bps).chars().count() <= 5);
        }
        for (n, text) in [
            (0, "0B"),
            (980, "980B"),
            (52_633, "51K"),
            (1_258_291, "1.2M"),
            (999_999, "977K"),
        ] {
            assert_eq!(short_bytes(n), text);
        }
    }

    #[test]
    fn text_is_cut_with_an_ellipsis_and_times_read_well() {
        assert_eq!(fit("results-receiver.actions", 10), "results-r…");
        assert_eq!(fit("short", 10), "short");
        assert_eq!(age(125 * SECOND), "2m05");
        assert_eq!(age(3 * 3600 * SECOND + 120 * SECOND), "3h02");
        assert_eq!(duration(3723 * SECOND), "1:02:03");
    }
}
