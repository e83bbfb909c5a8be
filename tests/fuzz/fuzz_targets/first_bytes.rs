//! The first bytes of a flow each way (`observer::pipeline::hello`), whole and as the kernel
//! copies them (at most 1,024 bytes, `cut` when there were more): any bytes give a value or a
//! fixed note; every name is a valid host name or an address; a method is a short token and a
//! reason short printable ASCII; the JSON of the value reads back the same.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use observer::pipeline::hello::{self, note, FirstReceived, FirstSent};

/// What the kernel copies of each first payload.
const COPY: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let copied = &data[..data.len().min(COPY)];
    for (payload, cut) in [(data, false), (copied, data.len() > COPY)] {
        check_sent(&hello::parse_first_sent(payload, cut));
        check_received(&hello::parse_first_received(payload, cut));
    }
});

fn valid_host(host: &str) -> bool {
    hello::host_name(host).as_deref() == Some(host)
        || host.parse::<IpAddr>().is_ok_and(|a| a.to_string() == host)
}

fn check_sent(sent: &FirstSent) {
    match sent {
        FirstSent::Tls {
            sni, incomplete, ..
        } => {
            if let Some(sni) = sni {
                // A host name, never an address.
                assert_eq!(
                    hello::host_name(sni).as_deref(),
                    Some(sni.as_str()),
                    "{sni:?}"
                );
                assert!(!incomplete);
            }
        }
        FirstSent::Connect { host, port, .. } => {
            assert!(valid_host(host), "{host:?}");
            assert_ne!(*port, 0);
        }
        FirstSent::Http {
            method, host, port, ..
        } => {
            assert!(method.len() <= 16 && !method.is_empty(), "{method:?}");
            assert!(method.bytes().all(|b| b.is_ascii_graphic()), "{method:?}");
            assert!(host.as_deref().is_none_or(valid_host), "{host:?}");
            assert_ne!(*port, Some(0));
        }
        FirstSent::Other { note } => assert!(note::ALL.contains(&note.as_str()), "{note:?}"),
    }
    let json = serde_json::to_string(sent).expect("serializes");
    assert_eq!(
        &serde_json::from_str::<FirstSent>(&json).expect("reads back"),
        sent
    );
}

fn check_received(received: &FirstReceived) {
    match received {
        FirstReceived::HttpStatus { code, reason } => {
            assert!((100..=999).contains(code));
            assert!(reason.len() <= 64, "{reason:?}");
            assert!(reason.chars().all(|c| matches!(c, ' '..='~')), "{reason:?}");
        }
        FirstReceived::Tls { .. } => {}
        FirstReceived::Other { note } => assert!(note::ALL.contains(&note.as_str()), "{note:?}"),
    }
    let json = serde_json::to_string(received).expect("serializes");
    assert_eq!(
        &serde_json::from_str::<FirstReceived>(&json).expect("reads back"),
        received
    );
}
