//! DNS messages as the kernel copies them (UDP payloads, possibly cut at 512 bytes): any bytes
//! decode to a message or an error, and a decoded message's text is safe to print.
#![no_main]

use libfuzzer_sys::fuzz_target;
use observer::pipeline::dns;

fuzz_target!(|data: &[u8]| {
    // Whole, and cut where the kernel cuts.
    for payload in [data, &data[..data.len().min(512)]] {
        if let Ok(message) = dns::decode_message(payload) {
            for name in message.questions.iter().map(|q| &q.name) {
                let _ = dns::normalize_name(name);
            }
        }
    }
});
