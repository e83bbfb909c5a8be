//! Reports as `report merge` and `suggest --report` read them (they travel between machines):
//! any text is read or refused, and a report read renders in every format, alone and merged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use observer::export::{self, merge, Document, Format};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(report) = merge::parse_report("fuzz", text) else {
        return;
    };
    let formats = [Format::Json, Format::Markdown, Format::Html, Format::Csv];
    let single = Document::single(report.clone());
    for format in formats {
        let _ = export::render(&single, format);
    }
    let inputs = ["a", "b"]
        .into_iter()
        .map(|label| merge::Input {
            label: label.to_owned(),
            source: format!("{label}.json"),
            report: report.clone(),
        })
        .collect();
    if let Ok(merged) = merge::merge(inputs) {
        for format in formats {
            let _ = export::render(&merged, format);
        }
    }
});
