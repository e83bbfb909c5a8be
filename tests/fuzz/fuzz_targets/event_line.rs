//! Event-log lines (`watch --json`, `record --events`): a line parses or is refused with a
//! reason; a parsed line prints as one safe text line and writes back as JSON that reads back
//! the same; a whole log replays into a report without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use observer::{eventlog, options::CatalogOptions, sanitize};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for line in text.lines() {
            if let Ok((ts, observed)) = eventlog::parse_line(line) {
                let shown = eventlog::text_line(ts, &observed);
                assert!(!shown.chars().any(sanitize::is_unsafe), "{shown:?}");
                let json = eventlog::json_line(ts, &observed);
                assert_eq!(
                    eventlog::parse_line(&json).map(|(t, _)| t),
                    Ok(ts),
                    "{json}"
                );
            }
        }
    }
    // The whole input as a log, invalid UTF-8 included.
    let mut correlator = CatalogOptions::default()
        .correlator()
        .expect("the built-in catalog");
    eventlog::replay(data, "fuzz", &mut correlator).expect("replay never fails on content");
    correlator.finish();
    let _ = observer::report::build(&correlator);
});
