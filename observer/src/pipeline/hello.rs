//! PLACEHOLDER replaced by the hello14 branch (parsers of first payloads).
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FirstSent {
    Tls {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sni: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        ech: bool,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        incomplete: bool,
    },
    Connect {
        host: String,
        port: u16,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        credentials: bool,
    },
    Http {
        method: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        absolute: bool,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        credentials: bool,
    },
    Other {
        note: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FirstReceived {
    HttpStatus {
        code: u16,
        reason: String,
    },
    Tls {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        alert: Option<u8>,
    },
    Other {
        note: String,
    },
}

pub fn parse_first_sent(_bytes: &[u8], _cut: bool) -> FirstSent {
    FirstSent::Other {
        note: "placeholder".into(),
    }
}

pub fn parse_first_received(_bytes: &[u8], _cut: bool) -> FirstReceived {
    FirstReceived::Other {
        note: "placeholder".into(),
    }
}
