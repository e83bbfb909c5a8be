//! Kernel ring-buffer records: any bytes decode to an event or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use observer::capture::record;

fuzz_target!(|data: &[u8]| {
    let _ = record::decode(data);
});
