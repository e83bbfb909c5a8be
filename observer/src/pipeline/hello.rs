//! The first bytes of a watched TCP flow, each way: what they say about where the client is going
//! and what the other end answered.
//!
//! Why: names from DNS miss flows to hard-coded or cached addresses, DNS over HTTPS, and CDN
//! addresses shared by many names; and a runner behind an HTTP proxy sends every flow to the
//! proxy's address. The client says where it is going in its first bytes anyway: the server_name
//! (SNI) of a TLS ClientHello, the target of an HTTP `CONNECT host:port` to a proxy, the absolute
//! URI or the Host header of plain HTTP. The other end's first bytes say how that went: a
//! proxy's status line (`403`, `407`, `503`), a TLS ServerHello, or a TLS alert.
//!
//! The kernel copies a bounded prefix (1,024 bytes) of the first payload each way of a watched
//! flow and user space reads it here: [`parse_first_sent`] and [`parse_first_received`], pure
//! functions over bytes, fuzzed (`tests/fuzz`, target `first_bytes`).
//!
//! What is trusted: nothing. The bytes come from any process on the runner, or from any server
//! it reached, and are copied mid-stream:
//! - **cut anywhere**: a ClientHello with a post-quantum key share (X25519MLKEM768: 1,216
//!   bytes of it, ~2 kB in all) is longer than the copy, and a handshake may be split over
//!   several TLS records. The record and handshake headers are read first (tls-parser), the
//!   fragments joined, the fixed part of the ClientHello parsed by tls-parser, and the
//!   extensions walked here one by one with their lengths checked (tls-parser's own walk stops
//!   silently at the first extension it cannot read whole), so an SNI before the cut is found;
//!   `incomplete` says only that the SNI was not in the copied part. The HTTP head is parsed by httparse; when it is cut, the lines that
//!   ended before the cut are parsed again on their own, and a line the cut went through is never
//!   read as a value (`Host: exa` cut from `Host: example.com` names nothing).
//! - **names**: every name (SNI, CONNECT target, absolute URI, Host header) must be a DNS host
//!   name as the catalog accepts it ([`HostPattern`]: labels of 1..63 letters, digits, `-` and
//!   `_`, none starting or ending with `-`, at most 253 characters, trailing dot removed, lower
//!   case; no wildcard) whose last label is not all digits (`127.1` or `1.2.3.999` are
//!   addresses to some resolvers and names to none), or an IP literal (IPv4 dotted quad; IPv6 in
//!   brackets, kept without them). Underscores are tolerated, as in the catalog: real names
//!   carry them (service labels, some CDN and bucket host names), OpenSSL and curl send them,
//!   and the names DNS answers bring in already do; the one output where `_` means something
//!   (Markdown) escapes it. An SNI must not be an address (RFC 6066). Anything else gives
//!   [`FirstSent::Other`] with a fixed note ([`note`]): no byte from the wire is ever kept
//!   except a validated name, a validated method token, and a status line's reason reduced to at
//!   most 64 printable ASCII characters.
//! - **secrets**: a `Proxy-Authorization` header is noted as present; its value, and the
//!   `user:password@` of an absolute URI, are never kept.
//! - **bounded work**: one pass over at most the bytes given, no recursion, no allocation
//!   larger than the input plus a few bytes.
//!
//! `ech`: a ClientHello carrying `encrypted_client_hello` (0xfe0d) hides its real name; its SNI
//! is then only the public (outer) name. Browsers send a GREASE one (random bytes, same form)
//! when they have no ECH configuration, so `ech` says the extension was there, not that a
//! name was hidden.

use std::net::{Ipv4Addr, Ipv6Addr};

use httparse::{Header, Status, EMPTY_HEADER};
use serde::{Deserialize, Serialize};
use tls_parser::{
    parse_tls_extension_sni_content, parse_tls_extension_sni_hostname,
    parse_tls_handshake_client_hello, parse_tls_message_alert, parse_tls_message_handshake,
    parse_tls_record_header, SNIType, TlsExtension, TlsHandshakeType, TlsMessage,
    TlsMessageHandshake, TlsRecordType,
};

use crate::catalog::HostPattern;

/// What the first bytes a client sent on a flow say about where it is going.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FirstSent {
    /// A TLS ClientHello.
    Tls {
        /// The server_name (host_name type) the client asked for, validated and lower-cased;
        /// None when the hello has no SNI.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sni: Option<String>,
        /// The hello carries an encrypted_client_hello extension (0xfe0d): `sni` is then only
        /// the outer, public name (or the extension is a browser's GREASE one).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        ech: bool,
        /// The hello went on beyond the bytes copied and no SNI was found in the part copied
        /// (so "no SNI" is not known).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        incomplete: bool,
    },
    /// An HTTP CONNECT request (a client talking to a proxy): `CONNECT host:port HTTP/1.1`.
    Connect {
        /// A validated host name (lower case) or IP literal (IPv6 without brackets).
        host: String,
        port: u16,
        /// A Proxy-Authorization header was sent (its value is never kept).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        credentials: bool,
        /// The request head went on beyond the bytes copied: a Proxy-Authorization header
        /// after them is not known.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        incomplete: bool,
    },
    /// Another HTTP/1.x request: absolute-form (`GET http://host/...`, plain HTTP through a
    /// proxy) or origin-form with a Host header.
    Http {
        /// A validated token, at most 16 characters.
        method: String,
        /// From the absolute URI, else from the Host header; a validated host name (lower case)
        /// or IP literal (IPv6 without brackets).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        /// The port the request names, or the default of an absolute URI's scheme (http 80,
        /// https 443).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
        /// The request target was absolute-form (how clients talk to an HTTP proxy).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        absolute: bool,
        /// A Proxy-Authorization header was sent (its value is never kept).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        credentials: bool,
        /// The request line or head went on beyond the bytes copied: a Host or
        /// Proxy-Authorization header after them is not known.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        incomplete: bool,
    },
    /// Neither a TLS ClientHello nor an HTTP request, or one too broken to read: a short, fixed,
    /// printable note from [`note`] (never bytes from the wire).
    Other { note: String },
}

/// What the first bytes the server sent say.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FirstReceived {
    /// An HTTP/1.x status line (a proxy's answer to CONNECT, or an HTTP server's).
    HttpStatus {
        /// 100..=999.
        code: u16,
        /// The reason phrase, printable ASCII only, at most 64 characters.
        reason: String,
    },
    /// A TLS record: a ServerHello (`alert` None) or an alert.
    Tls {
        /// The alert's description code (40 handshake_failure, 112 unrecognized_name, ...)
        /// when the record is an alert.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        alert: Option<u8>,
    },
    /// Neither, or too broken to read: a fixed note from [`note`].
    Other { note: String },
}

/// The notes of [`FirstSent::Other`] and [`FirstReceived::Other`]: fixed, printable, never
/// bytes from the wire.
pub mod note {
    pub const EMPTY: &str = "empty payload";
    pub const TOO_SHORT: &str = "too short to tell what it is";
    pub const UNKNOWN: &str = "neither TLS nor HTTP/1.x";
    pub const HTTP2_PREFACE: &str = "HTTP/2 connection preface (prior knowledge)";
    pub const TLS_NOT_HANDSHAKE: &str = "TLS record that is not a handshake";
    pub const TLS_MALFORMED_RECORD: &str = "malformed TLS record header";
    pub const TLS_NOT_CLIENT_HELLO: &str = "TLS handshake that is not a ClientHello";
    pub const TLS_MALFORMED_HELLO: &str = "malformed TLS ClientHello";
    pub const TLS_MALFORMED_SNI: &str = "malformed server_name extension in TLS ClientHello";
    pub const TLS_INVALID_SNI: &str = "invalid name in TLS server_name";
    pub const TLS_NOT_SERVER_HELLO: &str = "TLS handshake that is not a ServerHello";
    pub const TLS_MALFORMED_SERVER_HELLO: &str = "malformed TLS ServerHello";
    pub const TLS_MALFORMED_ALERT: &str = "malformed TLS alert";
    pub const HTTP_MALFORMED: &str = "malformed HTTP request";
    pub const HTTP_LINE_CUT: &str = "HTTP request line cut at the copy bound";
    pub const HTTP_LINE_UNFINISHED: &str = "HTTP request line not finished in the first payload";
    pub const HTTP_METHOD_TOO_LONG: &str = "HTTP method longer than 16 characters";
    pub const HTTP_TOO_MANY_HEADERS: &str = "HTTP request with too many headers";
    pub const HTTP_TWO_HOSTS: &str = "HTTP request with more than one Host header";
    pub const HTTP_INVALID_TARGET: &str = "invalid name in HTTP request target";
    pub const HTTP_INVALID_HOST: &str = "invalid name in HTTP Host header";
    pub const CONNECT_INVALID_TARGET: &str = "invalid CONNECT target";
    pub const CONNECT_INVALID_NAME: &str = "invalid name in CONNECT target";
    pub const STATUS_MALFORMED: &str = "malformed HTTP status line";
    pub const STATUS_CUT: &str = "HTTP status line cut at the copy bound";
    pub const STATUS_UNFINISHED: &str = "HTTP status line not finished in the first payload";

    /// Every note, for tests and the fuzz target.
    pub const ALL: [&str; 26] = [
        EMPTY,
        TOO_SHORT,
        UNKNOWN,
        HTTP2_PREFACE,
        TLS_NOT_HANDSHAKE,
        TLS_MALFORMED_RECORD,
        TLS_NOT_CLIENT_HELLO,
        TLS_MALFORMED_HELLO,
        TLS_MALFORMED_SNI,
        TLS_INVALID_SNI,
        TLS_NOT_SERVER_HELLO,
        TLS_MALFORMED_SERVER_HELLO,
        TLS_MALFORMED_ALERT,
        HTTP_MALFORMED,
        HTTP_LINE_CUT,
        HTTP_LINE_UNFINISHED,
        HTTP_METHOD_TOO_LONG,
        HTTP_TOO_MANY_HEADERS,
        HTTP_TWO_HOSTS,
        HTTP_INVALID_TARGET,
        HTTP_INVALID_HOST,
        CONNECT_INVALID_TARGET,
        CONNECT_INVALID_NAME,
        STATUS_MALFORMED,
        STATUS_CUT,
        STATUS_UNFINISHED,
    ];
}

/// What the client's first bytes say. `cut`: the payload was longer than the bytes copied
/// (truncation inside a TLS record or HTTP head is also seen from the lengths and line ends the
/// bytes declare; `cut` picks the note of a request line that did not end).
pub fn parse_first_sent(bytes: &[u8], cut: bool) -> FirstSent {
    first_sent(bytes, cut).unwrap_or_else(|note| FirstSent::Other {
        note: note.to_owned(),
    })
}

/// What the server's first bytes say. `cut`: the payload was longer than the bytes copied.
pub fn parse_first_received(bytes: &[u8], cut: bool) -> FirstReceived {
    first_received(bytes, cut).unwrap_or_else(|note| FirstReceived::Other {
        note: note.to_owned(),
    })
}

/// A note from [`note`] when the bytes say nothing usable.
type Parsed<T> = Result<T, &'static str>;

/// The largest TLS plaintext fragment (RFC 8446 §5.1); a longer record is not TLS.
const MAX_FRAGMENT: usize = 1 << 14;
/// encrypted_client_hello (draft-ietf-tls-esni, the code point in use).
const EXT_ECH: u16 = 0xfe0d;
/// server_name (RFC 6066).
const EXT_SERVER_NAME: u16 = 0;
/// Headers read from a request head: a 1,024-byte copy holds fewer real ones.
const MAX_HEADERS: usize = 64;
const MAX_METHOD_LEN: usize = 16;
const MAX_REASON_LEN: usize = 64;

fn first_sent(bytes: &[u8], cut: bool) -> Parsed<FirstSent> {
    let Some(&first) = bytes.first() else {
        return Err(note::EMPTY);
    };
    if is_tls_record_start(bytes) {
        if first == TlsRecordType::Handshake.0 {
            return client_hello(bytes);
        }
        return Err(note::TLS_NOT_HANDSHAKE);
    }
    if bytes.starts_with(b"PRI * HTTP/2.0") {
        return Err(note::HTTP2_PREFACE);
    }
    if first.is_ascii_alphabetic() || first == b'\r' || first == b'\n' {
        return http_request(bytes, cut);
    }
    Err(note::UNKNOWN)
}

fn first_received(bytes: &[u8], cut: bool) -> Parsed<FirstReceived> {
    if bytes.is_empty() {
        return Err(note::EMPTY);
    }
    if bytes.starts_with(b"HTTP/") {
        return status_line(bytes, cut);
    }
    if is_tls_record_start(bytes) {
        return server_tls(bytes);
    }
    if b"HTTP/".starts_with(bytes) {
        return Err(note::TOO_SHORT);
    }
    Err(note::UNKNOWN)
}

/// A TLS record's first bytes: a content type in use (change_cipher_spec, alert, handshake,
/// application_data) and, when copied, protocol version 3.x.
fn is_tls_record_start(bytes: &[u8]) -> bool {
    let content_type = bytes.first().copied();
    matches!(content_type, Some(0x14..=0x17)) && bytes.get(1).is_none_or(|&major| major == 3)
}

// ---- TLS, client side ----

/// The handshake bytes of the leading handshake records joined (a message may be split over
/// several records), as far as they were copied.
fn handshake_bytes(bytes: &[u8]) -> Parsed<Vec<u8>> {
    let mut joined = Vec::new();
    let mut rest = bytes;
    let mut first = true;
    while !rest.is_empty() {
        let Ok((body, header)) = parse_tls_record_header(rest) else {
            // A record header cut by the copy.
            if first {
                return Err(note::TOO_SHORT);
            }
            break;
        };
        if header.record_type != TlsRecordType::Handshake || header.version.0 >> 8 != 3 {
            if first {
                return Err(note::TLS_NOT_HANDSHAKE);
            }
            break;
        }
        let len = usize::from(header.len);
        if len == 0 || len > MAX_FRAGMENT {
            return Err(note::TLS_MALFORMED_RECORD);
        }
        let (fragment, after) = body.split_at(len.min(body.len()));
        joined.extend_from_slice(fragment);
        rest = after;
        first = false;
        // Stop once the first message is whole.
        if let Some(message_len) = handshake_len(&joined) {
            if joined.len() >= message_len.saturating_add(4) {
                break;
            }
        }
    }
    Ok(joined)
}

/// The length a handshake message declares (its 24-bit length after the type byte).
fn handshake_len(message: &[u8]) -> Option<usize> {
    let &[_, a, b, c] = message.get(..4)? else {
        return None;
    };
    Some(usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c))
}

fn client_hello(bytes: &[u8]) -> Parsed<FirstSent> {
    let handshake = handshake_bytes(bytes)?;
    let Some(&message_type) = handshake.first() else {
        return Err(note::TOO_SHORT);
    };
    if message_type != TlsHandshakeType::ClientHello.0 {
        return Err(note::TLS_NOT_CLIENT_HELLO);
    }
    let Some(len) = handshake_len(&handshake) else {
        // The copy ended inside the handshake header of a ClientHello.
        return Ok(tls(None, false, true));
    };
    let body = handshake.get(4..).unwrap_or_default();
    let truncated = body.len() < len;
    hello_body(body.get(..len).unwrap_or(body), truncated)
}

fn tls(sni: Option<String>, ech: bool, incomplete: bool) -> FirstSent {
    FirstSent::Tls {
        sni,
        ech,
        incomplete,
    }
}

/// A ClientHello's body (after its handshake header); `truncated`: it declares more bytes than
/// were copied.
fn hello_body(body: &[u8], truncated: bool) -> Parsed<FirstSent> {
    let (rest, hello) = match parse_tls_handshake_client_hello(body) {
        Ok(parsed) => parsed,
        // Cut inside the fixed part (ciphers, session id): the extensions were not copied.
        Err(_) if truncated => return Ok(tls(None, false, true)),
        Err(_) => return Err(note::TLS_MALFORMED_HELLO),
    };
    let (extensions, extensions_cut) = match hello.ext {
        Some(extensions) if rest.is_empty() || truncated => (extensions, false),
        // Bytes after the extensions the message declares.
        Some(_) => return Err(note::TLS_MALFORMED_HELLO),
        // No extensions at all (an old client), or cut right before them.
        None if rest.is_empty() => return Ok(tls(None, false, truncated)),
        // The extensions' length runs past the bytes copied: walk those that were.
        None if truncated => (rest.get(2..).unwrap_or_default(), true),
        None => return Err(note::TLS_MALFORMED_HELLO),
    };
    let mut sni = None;
    let mut seen_sni = false;
    let mut ech = false;
    let mut rest = extensions;
    while !rest.is_empty() {
        let Some(&[t0, t1, l0, l1]) = rest.get(..4) else {
            if extensions_cut {
                break;
            }
            return Err(note::TLS_MALFORMED_HELLO);
        };
        let ext_type = u16::from_be_bytes([t0, t1]);
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        let data = rest.get(4..).unwrap_or_default();
        if data.len() < len {
            if !extensions_cut {
                return Err(note::TLS_MALFORMED_HELLO);
            }
            // The extension the copy cut: a server_name whose name is whole still counts.
            if ext_type == EXT_SERVER_NAME && !seen_sni {
                if let Some(name) = cut_server_name(data) {
                    sni = Some(sni_name(name)?);
                    seen_sni = true;
                }
            }
            break;
        }
        let (data, after) = data.split_at(len);
        rest = after;
        match ext_type {
            EXT_SERVER_NAME if seen_sni => return Err(note::TLS_MALFORMED_SNI),
            EXT_SERVER_NAME => {
                sni = Some(server_name(data)?);
                seen_sni = true;
            }
            EXT_ECH => ech = true,
            _ => {}
        }
    }
    Ok(tls(sni, ech, extensions_cut && !seen_sni))
}

/// The host_name of a whole server_name extension: exactly one (RFC 6066 §3).
fn server_name(data: &[u8]) -> Parsed<String> {
    let Ok((_, TlsExtension::SNI(list))) = parse_tls_extension_sni_content(data) else {
        return Err(note::TLS_MALFORMED_SNI);
    };
    let mut names = list.iter().filter(|(t, _)| *t == SNIType::HostName);
    match (names.next(), names.next()) {
        (Some((_, name)), None) => sni_name(name),
        _ => Err(note::TLS_MALFORMED_SNI),
    }
}

/// The first host_name of a server_name extension the copy cut, when its name is whole.
fn cut_server_name(data: &[u8]) -> Option<&[u8]> {
    let (_, (name_type, name)) = parse_tls_extension_sni_hostname(data.get(2..)?).ok()?;
    (name_type == SNIType::HostName).then_some(name)
}

/// An SNI: a host name, never an address (RFC 6066 §3).
fn sni_name(name: &[u8]) -> Parsed<String> {
    std::str::from_utf8(name)
        .ok()
        .and_then(host_name)
        .ok_or(note::TLS_INVALID_SNI)
}

// ---- TLS, server side ----

fn server_tls(bytes: &[u8]) -> Parsed<FirstReceived> {
    let Ok((body, header)) = parse_tls_record_header(bytes) else {
        return Err(note::TOO_SHORT);
    };
    let len = usize::from(header.len);
    if len == 0 || len > MAX_FRAGMENT {
        return Err(note::TLS_MALFORMED_RECORD);
    }
    let body = body.get(..len).unwrap_or(body);
    match header.record_type {
        TlsRecordType::Alert => match parse_tls_message_alert(body) {
            Ok((_, TlsMessage::Alert(alert))) if len == 2 => Ok(FirstReceived::Tls {
                alert: Some(alert.code.0),
            }),
            _ => Err(note::TLS_MALFORMED_ALERT),
        },
        TlsRecordType::Handshake => {
            match body.first() {
                None => return Err(note::TOO_SHORT),
                Some(&t) if t != TlsHandshakeType::ServerHello.0 => {
                    return Err(note::TLS_NOT_SERVER_HELLO)
                }
                Some(_) => {}
            }
            // Checked when whole (a ServerHello is ~100 bytes; what follows it in the record,
            // certificates in TLS 1.2, is often cut).
            let whole = handshake_len(body).is_some_and(|n| body.len() >= n.saturating_add(4));
            if whole {
                match parse_tls_message_handshake(body) {
                    Ok((_, TlsMessage::Handshake(TlsMessageHandshake::ServerHello(_)))) => {}
                    _ => return Err(note::TLS_MALFORMED_SERVER_HELLO),
                }
            }
            Ok(FirstReceived::Tls { alert: None })
        }
        _ => Err(note::TLS_NOT_HANDSHAKE),
    }
}

// ---- HTTP, client side ----

fn http_request(bytes: &[u8], cut: bool) -> Parsed<FirstSent> {
    // httparse skips empty lines before the request line too; skipped here so that the line's
    // end is where this module looks for it.
    let start = bytes
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(bytes.len());
    let bytes = bytes.get(start..).unwrap_or_default();
    let mut headers = [EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let parsed = request.parse(bytes);
    let (method, target, version) = (request.method, request.path, request.version);
    match parsed {
        Ok(Status::Complete(_)) => {
            let (Some(method), Some(target)) = (method, target) else {
                return Err(note::HTTP_MALFORMED);
            };
            classify(method, target, request.headers, false, false)
        }
        Ok(Status::Partial) => match (method, target, version) {
            (Some(method), Some(target), Some(_)) => cut_head(bytes, method, target),
            (Some(method), target, _) => cut_line(bytes, method, target, cut),
            (None, ..) => Err(note::TOO_SHORT),
        },
        Err(httparse::Error::TooManyHeaders) => Err(note::HTTP_TOO_MANY_HEADERS),
        Err(_) if version.is_some() => Err(note::HTTP_MALFORMED),
        Err(_) => Err(note::UNKNOWN),
    }
}

/// A request whose line ended but whose head did not: the header lines that ended are parsed on
/// their own; the line the cut went through only says whether it was a Proxy-Authorization.
fn cut_head(bytes: &[u8], method: &str, target: &str) -> Parsed<FirstSent> {
    let head = bytes
        .iter()
        .position(|&b| b == b'\n')
        .and_then(|i| bytes.get(i + 1..))
        .unwrap_or_default();
    let whole = head.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let (lines, last) = head.split_at(whole);
    let mut copy = Vec::with_capacity(lines.len() + 2);
    copy.extend_from_slice(lines);
    copy.extend_from_slice(b"\r\n");
    let mut headers = [EMPTY_HEADER; MAX_HEADERS];
    let parsed = match httparse::parse_headers(&copy, &mut headers) {
        Ok(Status::Complete((_, parsed))) => parsed,
        Err(httparse::Error::TooManyHeaders) => return Err(note::HTTP_TOO_MANY_HEADERS),
        Ok(Status::Partial) | Err(_) => return Err(note::HTTP_MALFORMED),
    };
    let cut_credentials = last
        .get(..b"proxy-authorization:".len())
        .is_some_and(|name| name.eq_ignore_ascii_case(b"proxy-authorization:"));
    classify(method, target, parsed, true, cut_credentials)
}

/// A request line the copy (or the end of the first payload) cut: a target that ended, or an
/// absolute URI whose authority ended, still names where the request goes.
fn cut_line(bytes: &[u8], method: &str, target: Option<&str>, cut: bool) -> Parsed<FirstSent> {
    let unfinished = if cut {
        note::HTTP_LINE_CUT
    } else {
        note::HTTP_LINE_UNFINISHED
    };
    check_method(method)?;
    let (target, target_whole) = match target {
        Some(target) => (target, true),
        None => {
            // What follows "METHOD " (httparse checked it holds only URI characters).
            let rest = bytes.get(method.len() + 1..).unwrap_or_default();
            (
                std::str::from_utf8(rest).map_err(|_| note::HTTP_MALFORMED)?,
                false,
            )
        }
    };
    let http = |host, port, absolute| FirstSent::Http {
        method: method.to_owned(),
        host,
        port,
        absolute,
        credentials: false,
        incomplete: true,
    };
    if method == "CONNECT" {
        if !target_whole {
            return Err(unfinished);
        }
        let (host, port) = connect_target(target)?;
        return Ok(FirstSent::Connect {
            host,
            port,
            credentials: false,
            incomplete: true,
        });
    }
    if let Some(absolute) = absolute_target(target, target_whole) {
        return match absolute? {
            Some((host, port)) => Ok(http(Some(host), port, true)),
            None => Err(unfinished),
        };
    }
    if target.starts_with('/') || target == "*" {
        return Ok(http(None, None, false));
    }
    Err(unfinished)
}

fn check_method(method: &str) -> Parsed<()> {
    if method.len() > MAX_METHOD_LEN {
        return Err(note::HTTP_METHOD_TOO_LONG);
    }
    Ok(())
}

/// A request whose line was read: CONNECT, absolute-form, or origin-form with its Host header.
fn classify(
    method: &str,
    target: &str,
    headers: &[Header<'_>],
    incomplete: bool,
    cut_credentials: bool,
) -> Parsed<FirstSent> {
    check_method(method)?;
    let credentials = cut_credentials
        || headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("proxy-authorization"));
    if method == "CONNECT" {
        let (host, port) = connect_target(target)?;
        return Ok(FirstSent::Connect {
            host,
            port,
            credentials,
            incomplete,
        });
    }
    let http = |host, port, absolute| FirstSent::Http {
        method: method.to_owned(),
        host,
        port,
        absolute,
        credentials,
        incomplete,
    };
    if let Some(absolute) = absolute_target(target, true) {
        // A proxy takes the target from the URI and ignores Host (RFC 9112 §3.2.2).
        let (host, port) = absolute?.ok_or(note::HTTP_MALFORMED)?;
        return Ok(http(Some(host), port, true));
    }
    if !(target.starts_with('/') || target == "*") {
        return Err(note::HTTP_MALFORMED);
    }
    let mut hosts = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"));
    let (host, port) = match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err(note::HTTP_TWO_HOSTS),
        (None, _) => (None, None),
        (Some(header), None) => {
            let value = std::str::from_utf8(header.value)
                .map_err(|_| note::HTTP_INVALID_HOST)?
                .trim_matches([' ', '\t']);
            if value.is_empty() {
                (None, None)
            } else {
                let (host, port) = authority(value).ok_or(note::HTTP_INVALID_HOST)?;
                (Some(host), port)
            }
        }
    };
    Ok(http(host, port, false))
}

/// `host:port` of a CONNECT (authority-form, RFC 9112 §3.2.3): the port is required.
fn connect_target(target: &str) -> Parsed<(String, u16)> {
    let (host, port) = authority(target).ok_or_else(|| {
        // Say whether the name or the form was wrong.
        let host = target.rsplit_once(':').map_or(target, |(host, _)| host);
        if host.is_empty() || host.starts_with('[') || host.contains(':') {
            note::CONNECT_INVALID_TARGET
        } else if host_name(host).is_none() && host.parse::<Ipv4Addr>().is_err() {
            note::CONNECT_INVALID_NAME
        } else {
            note::CONNECT_INVALID_TARGET
        }
    })?;
    let port = port.ok_or(note::CONNECT_INVALID_TARGET)?;
    Ok((host, port))
}

/// The host and port of an absolute-form target (`scheme://[userinfo@]host[:port]/...`); None
/// when the target is not absolute-form, `Ok(None)` when its authority did not end in the bytes
/// copied. The userinfo is dropped.
#[allow(clippy::type_complexity)]
fn absolute_target(
    target: &str,
    target_whole: bool,
) -> Option<Parsed<Option<(String, Option<u16>)>>> {
    let (scheme, rest) = target.split_once("://")?;
    let scheme_ok = scheme.len() <= 16
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return None;
    }
    let authority_text = match rest.find(['/', '?', '#']) {
        Some(end) => rest.get(..end).unwrap_or_default(),
        None if target_whole => rest,
        None => return Some(Ok(None)),
    };
    let without_userinfo = authority_text
        .rsplit_once('@')
        .map_or(authority_text, |(_, hostport)| hostport);
    let Some((host, port)) = authority(without_userinfo) else {
        return Some(Err(note::HTTP_INVALID_TARGET));
    };
    let port = port.or(match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    });
    Some(Ok(Some((host, port))))
}

/// `host[:port]`, `[v6][:port]`: the host validated ([`host_name`] or an IP literal), the
/// port 1..=65535 in decimal digits.
fn authority(text: &str) -> Option<(String, Option<u16>)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let address: Ipv6Addr = inside.parse().ok()?;
        let port = match after {
            "" => None,
            _ => Some(port(after.strip_prefix(':')?)?),
        };
        return Some((address.to_string(), port));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, digits)) => (host, Some(port(digits)?)),
        None => (text, None),
    };
    let host = match host.parse::<Ipv4Addr>() {
        Ok(address) => address.to_string(),
        Err(_) => host_name(host)?,
    };
    Some((host, port))
}

fn port(digits: &str) -> Option<u16> {
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&p| p != 0)
}

/// A DNS host name as the catalog accepts it, lower case without its trailing dot, whose last
/// label is not all digits; None for anything else (addresses included).
pub fn host_name(text: &str) -> Option<String> {
    // 253 characters and a trailing dot; checked first to bound the work on hostile input.
    if text.len() > 254 {
        return None;
    }
    let pattern = HostPattern::parse(text).ok()?;
    if pattern.is_wildcard() {
        return None;
    }
    let name = pattern.as_str();
    let last = name.rsplit('.').next()?;
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(name.to_owned())
}

// ---- HTTP, server side ----

fn status_line(bytes: &[u8], cut: bool) -> Parsed<FirstReceived> {
    let Some(end) = bytes.iter().position(|&b| b == b'\n') else {
        return Err(if cut {
            note::STATUS_CUT
        } else {
            note::STATUS_UNFINISHED
        });
    };
    // The status line alone, ended by an empty line, so that headers cut by the copy do not
    // matter.
    let line = bytes.get(..=end).unwrap_or_default();
    let mut copy = Vec::with_capacity(line.len() + 2);
    copy.extend_from_slice(line);
    copy.extend_from_slice(b"\r\n");
    let mut no_headers: [Header<'_>; 0] = [];
    let mut response = httparse::Response::new(&mut no_headers);
    match response.parse(&copy) {
        Ok(Status::Complete(_)) => {}
        _ => return Err(note::STATUS_MALFORMED),
    }
    let code = response
        .code
        .filter(|c| (100..=999).contains(c))
        .ok_or(note::STATUS_MALFORMED)?;
    let reason: String = response
        .reason
        .unwrap_or_default()
        .chars()
        .filter(|c| matches!(c, ' '..='~'))
        .take(MAX_REASON_LEN)
        .collect();
    Ok(FirstReceived::HttpStatus {
        code,
        reason: reason.trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    //! Real first bytes captured in a throwaway network namespace (testdata/hello/README.md says
    //! how), cut where the kernel cuts; hostile variants built from them.

    use super::*;

    /// What the kernel copies of each first payload.
    const COPY: usize = 1024;

    macro_rules! fixture {
        ($name:literal) => {
            include_bytes!(concat!("testdata/hello/", $name)).as_slice()
        };
    }

    /// The client's first payload as the kernel hands it over: at most COPY bytes, `cut` when
    /// there were more.
    fn sent(payload: &[u8]) -> FirstSent {
        parse_first_sent(&payload[..payload.len().min(COPY)], payload.len() > COPY)
    }

    fn received(payload: &[u8]) -> FirstReceived {
        parse_first_received(&payload[..payload.len().min(COPY)], payload.len() > COPY)
    }

    fn sni(name: &str, ech: bool) -> FirstSent {
        tls(Some(name.to_owned()), ech, false)
    }

    fn other(note: &str) -> FirstSent {
        FirstSent::Other {
            note: note.to_owned(),
        }
    }

    fn connect(host: &str, port: u16, credentials: bool) -> FirstSent {
        FirstSent::Connect {
            host: host.to_owned(),
            port,
            credentials,
            incomplete: false,
        }
    }

    fn http(host: Option<&str>, port: Option<u16>, absolute: bool, credentials: bool) -> FirstSent {
        FirstSent::Http {
            method: "GET".to_owned(),
            host: host.map(str::to_owned),
            port,
            absolute,
            credentials,
            incomplete: false,
        }
    }

    fn status(code: u16, reason: &str) -> FirstReceived {
        FirstReceived::HttpStatus {
            code,
            reason: reason.to_owned(),
        }
    }

    /// Every real ClientHello (whole payloads), with the name it asks for.
    const HELLOS: [(&str, &[u8], Option<&str>); 9] = [
        (
            "curl",
            fixture!("client_curl_sni.bin"),
            Some("api.github.com"),
        ),
        (
            "openssl trailing dot",
            fixture!("client_openssl_sni_dot.bin"),
            Some("objects.githubusercontent.com"),
        ),
        ("openssl no SNI", fixture!("client_openssl_nosni.bin"), None),
        (
            "openssl ffdhe8192",
            fixture!("client_openssl_ffdhe8192.bin"),
            Some("codeload.github.com"),
        ),
        (
            "python",
            fixture!("client_python_sni.bin"),
            Some("pipelines.actions.githubusercontent.com"),
        ),
        (
            "chrome ech early",
            fixture!("client_chrome_ech_early.bin"),
            Some("results-receiver.actions.githubusercontent.com"),
        ),
        (
            "chrome sni early",
            fixture!("client_chrome_sni_early.bin"),
            Some("results-receiver.actions.githubusercontent.com"),
        ),
        (
            "chrome sni late",
            fixture!("client_chrome_sni_late.bin"),
            Some("results-receiver.actions.githubusercontent.com"),
        ),
        (
            "firefox",
            fixture!("client_firefox.bin"),
            Some("results-receiver.actions.githubusercontent.com"),
        ),
    ];

    #[test]
    fn real_hellos_whole_name_their_server() {
        for (what, hello, name) in HELLOS {
            let FirstSent::Tls {
                sni, incomplete, ..
            } = parse_first_sent(hello, false)
            else {
                panic!("{what}: not read as TLS");
            };
            assert_eq!(sni.as_deref(), name, "{what}");
            assert!(!incomplete, "{what}");
        }
    }

    #[test]
    fn real_hellos_cut_at_the_copy_bound() {
        // OpenSSL (curl, python, s_client) puts server_name first.
        assert_eq!(
            sent(fixture!("client_curl_sni.bin")),
            sni("api.github.com", false)
        );
        assert_eq!(
            sent(fixture!("client_openssl_sni_dot.bin")),
            sni("objects.githubusercontent.com", false)
        );
        assert_eq!(
            sent(fixture!("client_openssl_nosni.bin")),
            tls(None, false, false)
        );
        // A 1,030-byte ffdhe8192 key share makes the hello 1,301 bytes: the name comes first.
        let ffdhe = fixture!("client_openssl_ffdhe8192.bin");
        assert!(ffdhe.len() > COPY);
        assert_eq!(sent(ffdhe), sni("codeload.github.com", false));
        // Chrome (BoringSSL, X25519MLKEM768, ~2 kB) shuffles its extensions on every
        // connection: the name and the GREASE encrypted_client_hello before the cut ...
        let results = "results-receiver.actions.githubusercontent.com";
        assert_eq!(
            sent(fixture!("client_chrome_ech_early.bin")),
            sni(results, true)
        );
        // ... the name before the cut, encrypted_client_hello after it ...
        assert_eq!(
            sent(fixture!("client_chrome_sni_early.bin")),
            sni(results, false)
        );
        assert_eq!(
            parse_first_sent(fixture!("client_chrome_sni_early.bin"), false),
            sni(results, true)
        );
        // ... or both after it: no name, and not known that there is none.
        assert_eq!(
            sent(fixture!("client_chrome_sni_late.bin")),
            tls(None, false, true)
        );
        // Firefox: the name first, encrypted_client_hello last.
        assert_eq!(sent(fixture!("client_firefox.bin")), sni(results, false));
        assert_eq!(
            parse_first_sent(fixture!("client_firefox.bin"), false),
            sni(results, true)
        );
    }

    /// Every prefix of every hello: the right name, or none and `incomplete`, never another
    /// name or a panic.
    #[test]
    fn every_prefix_of_a_hello_gives_its_name_or_says_incomplete() {
        for (what, hello, name) in HELLOS {
            for n in 0..=hello.len() {
                let cut = n < hello.len();
                match parse_first_sent(&hello[..n], cut) {
                    FirstSent::Tls {
                        sni: Some(found), ..
                    } => assert_eq!(Some(found.as_str()), name, "{what} cut at {n}"),
                    FirstSent::Tls {
                        sni: None,
                        incomplete,
                        ..
                    } => assert!(incomplete || name.is_none(), "{what} cut at {n}"),
                    FirstSent::Other { note } => {
                        assert!(n < 10, "{what} cut at {n}: {note}");
                        assert!(note::ALL.contains(&note.as_str()));
                    }
                    unexpected => panic!("{what} cut at {n}: {unexpected:?}"),
                }
            }
        }
    }

    // ---- ClientHellos rebuilt from real ones ----

    /// A whole single-record hello split into its body before the extensions and its
    /// extensions.
    fn split_hello(hello: &[u8]) -> (Vec<u8>, Vec<(u16, Vec<u8>)>) {
        let body = &hello[9..];
        let mut at = 2 + 32;
        at += 1 + usize::from(body[at]);
        at += 2 + usize::from(u16::from_be_bytes([body[at], body[at + 1]]));
        at += 1 + usize::from(body[at]);
        let fixed = body[..at].to_vec();
        let mut extensions = Vec::new();
        let mut rest = &body[at + 2..];
        while !rest.is_empty() {
            let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
            extensions.push((
                u16::from_be_bytes([rest[0], rest[1]]),
                rest[4..4 + len].to_vec(),
            ));
            rest = &rest[4 + len..];
        }
        (fixed, extensions)
    }

    fn u16_len(bytes: &[u8]) -> [u8; 2] {
        u16::try_from(bytes.len()).unwrap().to_be_bytes()
    }

    /// The handshake message of a hello with these extensions.
    fn hello_message(fixed: &[u8], extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut block = Vec::new();
        for (ext_type, data) in extensions {
            block.extend(ext_type.to_be_bytes());
            block.extend(u16_len(data));
            block.extend(data);
        }
        let mut body = fixed.to_vec();
        body.extend(u16_len(&block));
        body.extend(block);
        let mut message = vec![1];
        message.extend(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
        message.extend(body);
        message
    }

    /// The message in handshake records, split at these offsets.
    fn records(message: &[u8], splits: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut start = 0;
        for end in splits.iter().copied().chain([message.len()]) {
            let fragment = &message[start..end];
            out.extend([0x16, 3, 1]);
            out.extend(u16_len(fragment));
            out.extend(fragment);
            start = end;
        }
        out
    }

    fn server_name_ext(names: &[&[u8]]) -> (u16, Vec<u8>) {
        let mut list = Vec::new();
        for name in names {
            list.push(0);
            list.extend(u16_len(name));
            list.extend(*name);
        }
        let mut data = u16_len(&list).to_vec();
        data.extend(list);
        (0, data)
    }

    /// The curl hello with its server_name replaced.
    fn curl_hello_with(names: &[&[u8]]) -> Vec<u8> {
        let (fixed, mut extensions) = split_hello(fixture!("client_curl_sni.bin"));
        extensions[0] = server_name_ext(names);
        records(&hello_message(&fixed, &extensions), &[])
    }

    #[test]
    fn the_rebuilt_hello_is_the_real_one() {
        let hello = fixture!("client_curl_sni.bin");
        let (fixed, extensions) = split_hello(hello);
        assert_eq!(records(&hello_message(&fixed, &extensions), &[]), hello);
    }

    #[test]
    fn a_hello_over_several_records_is_joined() {
        let hello = fixture!("client_openssl_ffdhe8192.bin");
        let message = &hello[5..];
        // The server_name extension ends 172 bytes into the payload, 167 into the message.
        let name_end = 172 - 5;
        for splits in [
            &[1][..],
            &[4],
            &[50, 100, 150, 160],
            &[166],
            &[167],
            &[200, 400],
        ] {
            let framed = records(message, splits);
            // Copied as the kernel copies (several record headers make it longer).
            assert_eq!(
                sent(&framed),
                sni("codeload.github.com", false),
                "{splits:?}"
            );
            // Only the first record arrived in the first payload: the name is in it or not.
            let first_record = &framed[..5 + splits[0]];
            let expected = if splits[0] < name_end {
                tls(None, false, true)
            } else {
                sni("codeload.github.com", false)
            };
            assert_eq!(
                parse_first_sent(first_record, false),
                expected,
                "{splits:?}"
            );
        }
        // Another record type after the first: the hello ends there.
        let mut framed = records(message, &[100]);
        framed[5 + 100] = 0x17;
        assert_eq!(parse_first_sent(&framed, false), tls(None, false, true));
    }

    #[test]
    fn a_name_after_a_long_key_share_is_not_known_when_cut() {
        let (fixed, mut extensions) = split_hello(fixture!("client_openssl_ffdhe8192.bin"));
        let name = extensions.remove(0);
        extensions.push(name);
        let hello = records(&hello_message(&fixed, &extensions), &[]);
        assert_eq!(sent(&hello), tls(None, false, true));
        assert_eq!(
            parse_first_sent(&hello, false),
            sni("codeload.github.com", false)
        );
    }

    #[test]
    fn hello_names_are_validated() {
        for (name, expected) in [
            (&b"API.GitHub.com."[..], Ok("api.github.com")),
            (b"xn--bcher-kva.example", Ok("xn--bcher-kva.example")),
            (b"my_host.example.com", Ok("my_host.example.com")),
            (b"exa mple.com", Err(())),
            (b"-github.com", Err(())),
            (b"github-.com", Err(())),
            (b"a..b", Err(())),
            (b".", Err(())),
            (b"*.github.com", Err(())),
            (b"github.com:443", Err(())),
            (b"b\xc3\xbccher.example", Err(())),
            (b"\xff\xfe", Err(())),
            (b"bad\x1b[2J.example", Err(())),
            (b"192.0.2.1", Err(())),
            (b"127.1", Err(())),
            (b"2001:db8::1", Err(())),
        ] {
            let hello = curl_hello_with(&[name]);
            let expected = match expected {
                Ok(name) => sni(name, false),
                Err(()) => other(note::TLS_INVALID_SNI),
            };
            assert_eq!(sent(&hello), expected, "{}", String::from_utf8_lossy(name));
        }
        let long_label = "a".repeat(64) + ".example";
        let long_name = ["a".repeat(63).as_str(); 4].join(".") + ".example";
        for name in [long_label, long_name] {
            assert_eq!(
                sent(&curl_hello_with(&[name.as_bytes()])),
                other(note::TLS_INVALID_SNI)
            );
        }
        let longest = [
            "a".repeat(63).as_str(),
            &"b".repeat(63),
            &"c".repeat(63),
            &"d".repeat(61),
        ]
        .join(".");
        assert_eq!(longest.len(), 253);
        assert_eq!(
            sent(&curl_hello_with(&[longest.as_bytes()])),
            sni(&longest, false)
        );
    }

    #[test]
    fn a_hello_with_two_names_or_none_in_its_server_name_is_malformed() {
        let two = curl_hello_with(&[b"github.com", b"evil.example"]);
        assert_eq!(sent(&two), other(note::TLS_MALFORMED_SNI));
        let none = curl_hello_with(&[]);
        assert_eq!(sent(&none), other(note::TLS_MALFORMED_SNI));
        // Two server_name extensions (a server would refuse it; the observer must not pick one).
        let (fixed, mut extensions) = split_hello(fixture!("client_curl_sni.bin"));
        extensions.push(server_name_ext(&[b"evil.example"]));
        let hello = records(&hello_message(&fixed, &extensions), &[]);
        assert_eq!(sent(&hello), other(note::TLS_MALFORMED_SNI));
    }

    #[test]
    fn a_server_name_the_copy_cut_counts_when_the_name_is_whole() {
        let (fixed, mut extensions) = split_hello(fixture!("client_curl_sni.bin"));
        // The name, then 100 bytes of a second (unused) name type in the same extension.
        let (_, mut data) = server_name_ext(&[b"api.github.com"]);
        data.extend([1, 0, 97]);
        data.extend([b'x'; 97]);
        let list_len = u16::try_from(data.len() - 2).unwrap();
        data[..2].copy_from_slice(&list_len.to_be_bytes());
        extensions[0] = (0, data);
        let hello = records(&hello_message(&fixed, &extensions), &[]);
        assert_eq!(sent(&hello), sni("api.github.com", false));
        // Cut after the name, inside the extension.
        assert_eq!(
            parse_first_sent(&hello[..144 + 4 + 2 + 3 + 14 + 5], true),
            sni("api.github.com", false)
        );
        // Cut inside the name.
        assert_eq!(
            parse_first_sent(&hello[..144 + 4 + 2 + 3 + 10], true),
            tls(None, false, true)
        );
    }

    #[test]
    fn broken_hellos_say_what_is_wrong() {
        let hello = fixture!("client_curl_sni.bin");
        // Lengths that run past a whole record.
        let mut long_extensions = hello.to_vec();
        long_extensions[144 - 2] = 0xff;
        assert_eq!(
            parse_first_sent(&long_extensions, false),
            other(note::TLS_MALFORMED_HELLO)
        );
        let mut long_ext = hello.to_vec();
        long_ext[144 + 2] = 0xff;
        assert_eq!(
            parse_first_sent(&long_ext, false),
            other(note::TLS_MALFORMED_HELLO)
        );
        // A session id longer than 32 bytes.
        let mut sid = hello.to_vec();
        sid[9 + 34] = 33;
        assert_eq!(
            parse_first_sent(&sid, false),
            other(note::TLS_MALFORMED_HELLO)
        );
        // Bytes after the extensions the message declares.
        let (fixed, extensions) = split_hello(hello);
        let mut message = hello_message(&fixed, &extensions);
        message.extend([0, 0]);
        message[3] += 2;
        assert_eq!(
            parse_first_sent(&records(&message, &[]), false),
            other(note::TLS_MALFORMED_HELLO)
        );
        // Records.
        assert_eq!(
            parse_first_sent(&[0x16, 3, 1, 0, 0], false),
            other(note::TLS_MALFORMED_RECORD)
        );
        assert_eq!(
            parse_first_sent(&[0x16, 3, 1, 0x40, 1, 1], false),
            other(note::TLS_MALFORMED_RECORD)
        );
        assert_eq!(
            parse_first_sent(&[0x16, 3, 1], true),
            other(note::TOO_SHORT)
        );
        assert_eq!(
            parse_first_sent(&[0x17, 3, 3, 0, 1, 0], false),
            other(note::TLS_NOT_HANDSHAKE)
        );
        assert_eq!(
            parse_first_sent(&[0x16, 3, 1, 2, 0, 1], true),
            tls(None, false, true)
        );
        assert_eq!(
            parse_first_sent(fixture!("server_tls13_hello.bin"), false),
            other(note::TLS_NOT_CLIENT_HELLO)
        );
        // A hello without extensions (an old client) has no name, and that is known.
        let mut message = hello_message(&fixed, &[]);
        message.truncate(message.len() - 2);
        message[3] -= 2;
        assert_eq!(
            parse_first_sent(&records(&message, &[]), false),
            tls(None, false, false)
        );
    }

    // ---- HTTP requests ----

    #[test]
    fn real_connects_from_curl() {
        assert_eq!(
            sent(fixture!("client_curl_connect.bin")),
            connect("github.com", 443, false)
        );
        let with_auth = sent(fixture!("client_curl_connect_auth.bin"));
        assert_eq!(with_auth, connect("ghcr.io", 443, true));
        let json = serde_json::to_string(&with_auth).unwrap();
        assert!(!json.contains("cnVubmVy"), "{json}");
        assert_eq!(
            sent(fixture!("client_curl_connect_v6.bin")),
            connect("2001:db8::1", 8443, false)
        );
    }

    #[test]
    fn real_plain_http_from_curl() {
        assert_eq!(
            sent(fixture!("client_curl_proxy_get.bin")),
            http(Some("archive.ubuntu.com"), Some(80), true, false)
        );
        assert_eq!(
            sent(fixture!("client_curl_proxy_get_auth.bin")),
            http(Some("deb.debian.org"), Some(8080), true, true)
        );
        assert_eq!(
            sent(fixture!("client_curl_origin_get.bin")),
            http(Some("example.org"), Some(3128), false, false)
        );
    }

    const REQUESTS: [&[u8]; 6] = [
        fixture!("client_curl_connect.bin"),
        fixture!("client_curl_connect_auth.bin"),
        fixture!("client_curl_connect_v6.bin"),
        fixture!("client_curl_proxy_get.bin"),
        fixture!("client_curl_proxy_get_auth.bin"),
        fixture!("client_curl_origin_get.bin"),
    ];

    /// Every prefix of every request: the whole request's host or none, never a piece of it.
    #[test]
    fn every_prefix_of_a_request_names_its_host_or_nothing() {
        for request in REQUESTS {
            let whole = parse_first_sent(request, false);
            let (whole_host, whole_port) = match &whole {
                FirstSent::Connect { host, port, .. } => (Some(host.clone()), Some(*port)),
                FirstSent::Http { host, port, .. } => (host.clone(), *port),
                other => panic!("{other:?}"),
            };
            for n in 0..request.len() {
                match parse_first_sent(&request[..n], true) {
                    FirstSent::Connect {
                        host,
                        port,
                        incomplete,
                        ..
                    } => {
                        assert_eq!((Some(host), Some(port)), (whole_host.clone(), whole_port));
                        assert!(incomplete, "cut at {n}");
                    }
                    FirstSent::Http {
                        host,
                        port,
                        incomplete,
                        ..
                    } => {
                        if host.is_some() {
                            assert_eq!(
                                (host, port),
                                (whole_host.clone(), whole_port),
                                "cut at {n}"
                            );
                        }
                        assert!(incomplete, "cut at {n}");
                    }
                    FirstSent::Other { note } => {
                        assert!(note::ALL.contains(&note.as_str()), "{note}")
                    }
                    unexpected => panic!("cut at {n}: {unexpected:?}"),
                }
            }
        }
    }

    #[test]
    fn a_cut_request_keeps_what_ended_before_the_cut() {
        let auth = fixture!("client_curl_connect_auth.bin");
        // Cut inside the Proxy-Authorization value: it was sent.
        let at = auth.windows(6).position(|w| w == b"Basic ").unwrap() + 3;
        let FirstSent::Connect {
            credentials,
            incomplete,
            ..
        } = parse_first_sent(&auth[..at], true)
        else {
            panic!()
        };
        assert!(credentials && incomplete);
        // Cut inside the Host header value: no host rather than a piece of one.
        let origin = fixture!("client_curl_origin_get.bin");
        let at = origin.windows(8).position(|w| w == b"example.").unwrap() + 3;
        assert_eq!(
            parse_first_sent(&origin[..at], true),
            FirstSent::Http {
                method: "GET".to_owned(),
                host: None,
                port: None,
                absolute: false,
                credentials: false,
                incomplete: true,
            }
        );
        // A long absolute URI cut at the copy: its authority ended before.
        let mut long = b"GET http://archive.ubuntu.com:8080/ubuntu/pool/".to_vec();
        long.extend([b'a'; 2000]);
        long.extend(b" HTTP/1.1\r\nHost: archive.ubuntu.com:8080\r\n\r\n");
        assert_eq!(
            sent(&long),
            FirstSent::Http {
                method: "GET".to_owned(),
                host: Some("archive.ubuntu.com".to_owned()),
                port: Some(8080),
                absolute: true,
                credentials: false,
                incomplete: true,
            }
        );
        // A CONNECT line that did not end: which note depends on why.
        assert_eq!(
            parse_first_sent(b"CONNECT github.com:4", true),
            other(note::HTTP_LINE_CUT)
        );
        assert_eq!(
            parse_first_sent(b"CONNECT github.com:4", false),
            other(note::HTTP_LINE_UNFINISHED)
        );
        assert_eq!(
            parse_first_sent(b"CONNECT github.com:443 HTTP/1.", true),
            FirstSent::Connect {
                host: "github.com".to_owned(),
                port: 443,
                credentials: false,
                incomplete: true,
            }
        );
    }

    #[test]
    fn hostile_requests_give_fixed_notes() {
        for (request, expected) in [
            (
                &b"CONNECT -x.example:443 HTTP/1.1\r\n\r\n"[..],
                note::CONNECT_INVALID_NAME,
            ),
            (
                b"CONNECT 127.1:443 HTTP/1.1\r\n\r\n",
                note::CONNECT_INVALID_NAME,
            ),
            (
                b"CONNECT exa%20mple.com:443 HTTP/1.1\r\n\r\n",
                note::CONNECT_INVALID_NAME,
            ),
            (
                b"CONNECT github.com HTTP/1.1\r\n\r\n",
                note::CONNECT_INVALID_TARGET,
            ),
            (
                b"CONNECT github.com:0 HTTP/1.1\r\n\r\n",
                note::CONNECT_INVALID_TARGET,
            ),
            (
                b"CONNECT github.com:+443 HTTP/1.1\r\n\r\n",
                note::CONNECT_INVALID_TARGET,
            ),
            (
                b"CONNECT github.com:65536 HTTP/1.1\r\n\r\n",
                note::CONNECT_INVALID_TARGET,
            ),
            (
                b"CONNECT [::1:443 HTTP/1.1\r\n\r\n",
                note::CONNECT_INVALID_TARGET,
            ),
            (
                b"CONNECT [fe80::1%eth0]:443 HTTP/1.1\r\n\r\n",
                note::CONNECT_INVALID_TARGET,
            ),
            (
                b"CONNECT ::1:443 HTTP/1.1\r\n\r\n",
                note::CONNECT_INVALID_TARGET,
            ),
            (
                b"CONNECT github.com:443 HTTP/1.1\r\nHost\r\n\r\n",
                note::HTTP_MALFORMED,
            ),
            (
                b"CONNECT git\x1bhub.com:443 HTTP/1.1\r\n\r\n",
                note::UNKNOWN,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
                note::HTTP_TWO_HOSTS,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: user@b.example\r\n\r\n",
                note::HTTP_INVALID_HOST,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: b.example:99999\r\n\r\n",
                note::HTTP_INVALID_HOST,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: \xff.example\r\n\r\n",
                note::HTTP_INVALID_HOST,
            ),
            (
                b"GET http://bad..example/ HTTP/1.1\r\n\r\n",
                note::HTTP_INVALID_TARGET,
            ),
            (
                b"GET http//x.example/ HTTP/1.1\r\n\r\n",
                note::HTTP_MALFORMED,
            ),
            (
                b"GET http://-bad.example/ HTTP/1.1\r\n\r\n",
                note::HTTP_INVALID_TARGET,
            ),
            (b"GET http:///x HTTP/1.1\r\n\r\n", note::HTTP_INVALID_TARGET),
            (b"GET relative HTTP/1.1\r\n\r\n", note::HTTP_MALFORMED),
            (
                b"GETTTTTTTTTTTTTTTTTTTTTT / HTTP/1.1\r\n\r\n",
                note::HTTP_METHOD_TOO_LONG,
            ),
            (b"GET / HTTP/3.0\r\n\r\n", note::UNKNOWN),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", note::HTTP2_PREFACE),
            (b"SSH-2.0-OpenSSH_9.2\r\n", note::UNKNOWN),
            (b"\x00\x01\x02", note::UNKNOWN),
            (b"", note::EMPTY),
            (b"GE", note::TOO_SHORT),
        ] {
            assert_eq!(
                parse_first_sent(request, false),
                other(expected),
                "{}",
                String::from_utf8_lossy(request)
            );
        }
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for _ in 0..=MAX_HEADERS {
            many.extend(b"a:b\r\n");
        }
        assert_eq!(
            parse_first_sent(&many, true),
            other(note::HTTP_TOO_MANY_HEADERS)
        );
        many.extend(b"\r\n");
        assert_eq!(
            parse_first_sent(&many, false),
            other(note::HTTP_TOO_MANY_HEADERS)
        );
    }

    #[test]
    fn request_forms_that_are_read() {
        for (request, expected) in [
            (
                &b"CONNECT GitHub.COM.:443 HTTP/1.1\r\n\r\n"[..],
                connect("github.com", 443, false),
            ),
            (
                b"CONNECT 198.18.0.1:3128 HTTP/1.0\r\n\r\n",
                connect("198.18.0.1", 3128, false),
            ),
            (
                b"CONNECT [FD00::0001]:443 HTTP/1.1\r\n\r\n",
                connect("fd00::1", 443, false),
            ),
            (
                b"CONNECT a_b.example:443 HTTP/1.1\r\nproxy-authorization: x\r\n\r\n",
                connect("a_b.example", 443, true),
            ),
            (
                b"\r\nCONNECT github.com:443 HTTP/1.1\n\n",
                connect("github.com", 443, false),
            ),
            (
                b"GET https://u:secret@GitHub.com/x HTTP/1.1\r\nHost: other.example\r\n\r\n",
                http(Some("github.com"), Some(443), true, false),
            ),
            (
                b"GET http://[fd00::1]:8080?q HTTP/1.1\r\n\r\n",
                http(Some("fd00::1"), Some(8080), true, false),
            ),
            (
                b"GET ftp://mirror.example/x HTTP/1.1\r\n\r\n",
                http(Some("mirror.example"), None, true, false),
            ),
            (b"GET / HTTP/1.0\r\n\r\n", http(None, None, false, false)),
            (
                b"GET / HTTP/1.1\r\nHost:  \r\n\r\n",
                http(None, None, false, false),
            ),
            (
                b"GET / HTTP/1.1\r\nHOST: 198.18.0.9\r\n\r\n",
                http(Some("198.18.0.9"), None, false, false),
            ),
        ] {
            let parsed = parse_first_sent(request, false);
            assert_eq!(parsed, expected, "{}", String::from_utf8_lossy(request));
            assert!(!serde_json::to_string(&parsed).unwrap().contains("secret"));
        }
    }

    // ---- what the server sent ----

    #[test]
    fn real_squid_status_lines() {
        assert_eq!(
            received(fixture!("server_squid_200.bin")),
            status(200, "Connection established")
        );
        // Squid's error pages are 3 kB: the copy holds the status line and the first headers.
        for (fixture, code, reason) in [
            (fixture!("server_squid_403.bin"), 403, "Forbidden"),
            (
                fixture!("server_squid_407.bin"),
                407,
                "Proxy Authentication Required",
            ),
            (fixture!("server_squid_503.bin"), 503, "Service Unavailable"),
        ] {
            assert_eq!(fixture.len(), COPY);
            assert_eq!(parse_first_received(fixture, true), status(code, reason));
        }
    }

    #[test]
    fn real_tls_servers() {
        let hello = FirstReceived::Tls { alert: None };
        assert_eq!(received(fixture!("server_tls13_hello.bin")), hello);
        assert_eq!(received(fixture!("server_tls12_hello.bin")), hello);
        // OpenSSL refusing every cipher suite the client offered: handshake_failure.
        assert_eq!(
            received(fixture!("server_tls_alert.bin")),
            FirstReceived::Tls { alert: Some(40) }
        );
    }

    #[test]
    fn every_prefix_of_an_answer_is_read_or_noted() {
        for answer in [
            fixture!("server_squid_200.bin"),
            fixture!("server_squid_407.bin"),
            fixture!("server_tls13_hello.bin"),
            fixture!("server_tls12_hello.bin"),
            fixture!("server_tls_alert.bin"),
        ] {
            let whole = parse_first_received(answer, false);
            for n in 0..answer.len() {
                match parse_first_received(&answer[..n], true) {
                    FirstReceived::Other { note } => assert!(note::ALL.contains(&note.as_str())),
                    found => assert_eq!(found, whole, "cut at {n}"),
                }
            }
        }
    }

    #[test]
    fn hostile_answers() {
        let mut line = b"HTTP/1.1 403 <b>Denied</b>\t".to_vec();
        line.extend([b'x'; 100]);
        line.extend(b"\r\n\r\n");
        let FirstReceived::HttpStatus { code, reason } = parse_first_received(&line, false) else {
            panic!()
        };
        assert_eq!(code, 403);
        assert_eq!(reason.len(), 64);
        assert!(reason.starts_with("<b>Denied</b>xx"), "{reason}");
        // A control character is not allowed in a reason phrase (RFC 9112 §4).
        assert_eq!(
            parse_first_received(b"HTTP/1.1 403 \x1b[2J\r\n", false),
            FirstReceived::Other {
                note: note::STATUS_MALFORMED.to_owned()
            }
        );
        assert_eq!(
            parse_first_received(b"HTTP/1.1 403 D\xe9nied\r\n", false),
            status(403, "")
        );
        for (answer, expected) in [
            (&b"HTTP/1.1 403 Forbidden"[..], note::STATUS_CUT),
            (b"HTTP/1.1 099 Low\r\n", note::STATUS_MALFORMED),
            (b"HTTP/1.1 2000 Big\r\n", note::STATUS_MALFORMED),
            (b"HTTP/2 200\r\n", note::STATUS_MALFORMED),
            (b"HTTP/1.1 200 OK\rX\n", note::STATUS_MALFORMED),
            (b"HTT", note::TOO_SHORT),
            (b"SSH-2.0-OpenSSH_9.2\r\n", note::UNKNOWN),
            (b"", note::EMPTY),
            (b"\x15\x03\x03\x00\x02\x02", note::TLS_MALFORMED_ALERT),
            (
                b"\x15\x03\x03\x00\x03\x02\x28\x00",
                note::TLS_MALFORMED_ALERT,
            ),
            (
                b"\x16\x03\x03\x00\x04\x01\x00\x00\x00",
                note::TLS_NOT_SERVER_HELLO,
            ),
            (
                b"\x16\x03\x03\x00\x04\x02\x00\x00\x00",
                note::TLS_MALFORMED_SERVER_HELLO,
            ),
            (b"\x17\x03\x03\x00\x01\x00", note::TLS_NOT_HANDSHAKE),
            (b"\x16\x03\x03\x00\x00", note::TLS_MALFORMED_RECORD),
            (b"\x16\x03", note::TOO_SHORT),
        ] {
            let expected = FirstReceived::Other {
                note: expected.to_owned(),
            };
            assert_eq!(
                parse_first_received(answer, true),
                expected,
                "{}",
                String::from_utf8_lossy(answer)
            );
        }
        assert_eq!(
            parse_first_received(b"HTTP/1.1 200 OK", false),
            FirstReceived::Other {
                note: note::STATUS_UNFINISHED.to_owned()
            }
        );
    }

    #[test]
    fn notes_are_short_and_printable() {
        for note in note::ALL {
            assert!(
                note.len() <= 64 && note.chars().all(|c| matches!(c, ' '..='~')),
                "{note}"
            );
        }
        let unique: std::collections::BTreeSet<_> = note::ALL.iter().collect();
        assert_eq!(unique.len(), note::ALL.len());
    }

    #[test]
    fn json_shapes() {
        let cases: [(FirstSent, &str); 4] = [
            (
                sni("api.github.com", true),
                r#"{"kind":"tls","sni":"api.github.com","ech":true}"#,
            ),
            (
                tls(None, false, true),
                r#"{"kind":"tls","incomplete":true}"#,
            ),
            (
                connect("ghcr.io", 443, true),
                r#"{"kind":"connect","host":"ghcr.io","port":443,"credentials":true}"#,
            ),
            (
                other(note::UNKNOWN),
                r#"{"kind":"other","note":"neither TLS nor HTTP/1.x"}"#,
            ),
        ];
        for (value, json) in cases {
            assert_eq!(serde_json::to_string(&value).unwrap(), json);
            assert_eq!(serde_json::from_str::<FirstSent>(json).unwrap(), value);
        }
        let http = http(Some("example.org"), Some(80), true, false);
        let json =
            r#"{"kind":"http","method":"GET","host":"example.org","port":80,"absolute":true}"#;
        assert_eq!(serde_json::to_string(&http).unwrap(), json);
        assert_eq!(serde_json::from_str::<FirstSent>(json).unwrap(), http);
        for (value, json) in [
            (
                status(407, "Proxy Authentication Required"),
                r#"{"kind":"http_status","code":407,"reason":"Proxy Authentication Required"}"#,
            ),
            (
                FirstReceived::Tls { alert: Some(40) },
                r#"{"kind":"tls","alert":40}"#,
            ),
            (FirstReceived::Tls { alert: None }, r#"{"kind":"tls"}"#),
        ] {
            assert_eq!(serde_json::to_string(&value).unwrap(), json);
            assert_eq!(serde_json::from_str::<FirstReceived>(json).unwrap(), value);
        }
    }
}
