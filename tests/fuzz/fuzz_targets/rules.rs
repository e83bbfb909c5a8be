//! Rule renderers (`observer suggest`) fed arbitrary reports: every format renders or the
//! report is refused, without a panic. Whether the output re-parses (`nft -c`, `squid -k parse`,
//! `sh -n`, YAML) is checked on this target's corpus by observer/tests/rules_reparse.rs.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use observer::{catalog::Catalog, suggest};

fuzz_target!(|data: &[u8]| {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    let catalog = CATALOG.get_or_init(Catalog::builtin);
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    use clap::ValueEnum as _;
    for &format in suggest::Format::value_variants() {
        let _ = suggest::rules_of_report_text(
            "fuzz.json",
            text,
            catalog,
            format,
            flags & 1 != 0,
            flags & 2 != 0,
        );
    }
});
