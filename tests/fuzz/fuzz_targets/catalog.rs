//! Catalog files (TOML, `--catalog`) and saved `/meta` responses (JSON, `--meta`): any text is
//! applied or refused with an error, and a catalog applied renders and writes back as TOML that
//! reads back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use observer::catalog::Catalog;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let mut catalog = Catalog::builtin();
    let applied = if kind & 1 == 0 {
        catalog.apply_toml("fuzz.toml", text)
    } else {
        catalog.import_meta_json("fuzz.json", text)
    };
    if applied.is_ok() {
        let _ = catalog.render_text();
        let toml = catalog.to_toml();
        let mut again = Catalog::default();
        if let Err(e) = again.apply_toml("written.toml", &toml) {
            panic!("the catalog written does not read back: {e}\n{toml}");
        }
    }
});
