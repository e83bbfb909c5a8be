//! DNS messages copied by the kernel, decoded with hickory-proto.
//!
//! The decoder is incremental: the header, the questions and then the answers one by one, so a
//! payload cut at the kernel's copy limit still yields every answer that fits, and the result
//! says it is incomplete instead of losing the whole message.

use hickory_proto::{
    op::{Header, MessageType, Query, ResponseCode},
    rr::{DNSClass, Name, RData, Record, RecordType},
    serialize::binary::{BinDecodable, BinDecoder},
};
use serde::{Deserialize, Serialize};

/// What a DNS message says, in the terms the observer needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DnsMessage {
    pub id: u16,
    pub response: bool,
    /// Response code as text: `NOERROR`, `NXDOMAIN`, `SERVFAIL`, `REFUSED`, ... (not copied
    /// for each message of a flood).
    pub rcode: std::borrow::Cow<'static, str>,
    /// The TC bit: the server truncated its UDP answer (the client retries over TCP).
    pub tc: bool,
    pub questions: Vec<Question>,
    pub answers: Vec<Answer>,
    /// Set when some answers could not be decoded (the payload was cut or malformed);
    /// `answers` then holds those before the problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Question {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    /// The question's class when it is not `IN` (absent for `IN`, the only class in use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
}

/// One answer record. `data` is an address for A/AAAA, a name for CNAME, text otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub ttl: u32,
    pub data: String,
}

/// Why a DNS payload could not be decoded at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed DNS message: {0}")]
pub struct MalformedDns(pub String);

/// A name as users write it: lower case, no trailing dot.
pub fn normalize_name(name: &str) -> String {
    normalized(name).into_owned()
}

/// A record type's name in upper case; the usual ones are not allocated (a flood keeps one per
/// query).
pub fn rtype_upper(rtype: &str) -> std::borrow::Cow<'static, str> {
    const USUAL: [&str; 12] = [
        "A", "AAAA", "CNAME", "HTTPS", "SVCB", "TXT", "MX", "NS", "PTR", "SRV", "SOA", "ANY",
    ];
    match USUAL.iter().find(|t| t.eq_ignore_ascii_case(rtype)) {
        Some(t) => std::borrow::Cow::Borrowed(t),
        None => std::borrow::Cow::Owned(rtype.to_ascii_uppercase()),
    }
}

/// [`normalize_name`], borrowed when the name already is (names decoded from the wire are:
/// comparing them costs no allocation).
pub fn normalized(name: &str) -> std::borrow::Cow<'_, str> {
    let trimmed = name.trim_end_matches('.');
    if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(trimmed)
    }
}

/// Decodes a DNS message (header and questions must be whole; answers may be cut).
pub fn decode_message(payload: &[u8]) -> Result<DnsMessage, MalformedDns> {
    let mut decoder = BinDecoder::new(payload);
    let header = Header::read(&mut decoder).map_err(|e| MalformedDns(e.to_string()))?;
    let mut questions = Vec::with_capacity(usize::from(header.query_count()));
    for _ in 0..header.query_count() {
        let query = Query::read(&mut decoder).map_err(|e| MalformedDns(e.to_string()))?;
        questions.push(Question {
            name: name_text(query.name()),
            // As hickory prints it ("Unknown" for a type it does not know, where answers say
            // `TYPEn`): the per-name outcome tallies count all such questions as one type.
            rtype: <&'static str>::from(query.query_type()).to_owned(),
            class: (query.query_class() != DNSClass::IN).then(|| query.query_class().to_string()),
        });
    }
    let mut answers = Vec::with_capacity(usize::from(header.answer_count()).min(64));
    let mut incomplete = None;
    for i in 0..header.answer_count() {
        match Record::<RData>::read(&mut decoder) {
            Ok(record) => answers.push(answer(&record)),
            Err(e) => {
                incomplete = Some(format!(
                    "answer {} of {} could not be decoded: {e}",
                    i + 1,
                    header.answer_count()
                ));
                break;
            }
        }
    }
    Ok(DnsMessage {
        id: header.id(),
        response: header.message_type() == MessageType::Response,
        rcode: rcode_name(header.response_code()),
        tc: header.truncated(),
        questions,
        answers,
        incomplete,
    })
}

/// Remembers recently decoded messages by their bytes after the id, so a message seen again
/// (the same question asked over and over, and its same answer) is cloned instead of parsed:
/// in a repeated-name flood decoding was the largest part of the observer's time. Decoding is a
/// pure function of the bytes, and a hit compares them whole, so the cache changes no result.
///
/// Direct-mapped by a keyed hash (a flood of names made to collide only costs speed), with
/// `DECODE_CACHE_SLOTS` slots of messages up to `DECODE_CACHE_MAX_PAYLOAD` bytes whose decoded
/// text is at most `DECODE_CACHE_MAX_TEXT` bytes (compression pointers and escaping can make a
/// 512-byte message decode to tens of kilobytes): about 1.3 MB at most. A message is kept when
/// it misses its slot twice in a row (each slot remembers the hash of the last message that
/// missed it): a flood of messages seen once (unique names, answers that differ in every
/// response) neither pays for copies into the cache nor evicts the messages that repeat. Two
/// repeated messages that alternate in one slot are decoded every time: only speed is lost.
#[derive(Default)]
pub struct DecodeCache {
    slots: Vec<Option<CachedMessage>>,
    /// Per slot, the hash of the last message that missed it.
    seen: Vec<u64>,
    hasher: std::hash::RandomState,
    hits: u64,
}

struct CachedMessage {
    hash: u64,
    /// The payload after its 2-byte id.
    rest: Box<[u8]>,
    message: DnsMessage,
}

const DECODE_CACHE_SLOTS: usize = 512;
/// Longer messages are decoded every time (and not kept): the cache stays small.
const DECODE_CACHE_MAX_PAYLOAD: usize = 512;
/// Messages whose decoded text is longer than this are not kept either.
const DECODE_CACHE_MAX_TEXT: usize = 2048;

impl DecodeCache {
    /// [`decode_message`], from the cache when the same bytes (but for the id) were decoded
    /// lately.
    pub fn decode(&mut self, payload: &[u8]) -> Result<DnsMessage, MalformedDns> {
        if payload.len() < 12 || payload.len() > DECODE_CACHE_MAX_PAYLOAD {
            return decode_message(payload);
        }
        let id = u16::from_be_bytes([payload[0], payload[1]]);
        let rest = &payload[2..];
        let hash = std::hash::BuildHasher::hash_one(&self.hasher, rest);
        if self.slots.is_empty() {
            self.slots.resize_with(DECODE_CACHE_SLOTS, || None);
            self.seen.resize(DECODE_CACHE_SLOTS, 0);
        }
        let i = (hash as usize) % DECODE_CACHE_SLOTS;
        if let Some(cached) = &self.slots[i] {
            if cached.hash == hash && *cached.rest == *rest {
                self.hits += 1;
                let mut message = cached.message.clone();
                message.id = id;
                return Ok(message);
            }
        }
        let message = decode_message(payload)?;
        // Kept when its hash missed this slot last time too (a hash seen twice in a row).
        let again = std::mem::replace(&mut self.seen[i], hash) == hash;
        if again && message.text_len() <= DECODE_CACHE_MAX_TEXT {
            self.slots[i] = Some(CachedMessage {
                hash,
                rest: rest.into(),
                message: message.clone(),
            });
        }
        Ok(message)
    }

    /// Messages cloned from the cache so far.
    #[cfg(test)]
    pub fn hits(&self) -> u64 {
        self.hits
    }
}

impl DnsMessage {
    /// The bytes of its text (names, types, data, codes), with a fixed cost per record.
    fn text_len(&self) -> usize {
        const PER_RECORD: usize = 64;
        let questions: usize = self
            .questions
            .iter()
            .map(|q| {
                PER_RECORD + q.name.len() + q.rtype.len() + q.class.as_ref().map_or(0, String::len)
            })
            .sum();
        let answers: usize = self
            .answers
            .iter()
            .map(|a| PER_RECORD + a.name.len() + a.rtype.len() + a.data.len())
            .sum();
        self.rcode.len() + self.incomplete.as_ref().map_or(0, String::len) + questions + answers
    }
}

/// Response codes as DNS tools print them (`NOERROR`, `NXDOMAIN`, ...).
fn rcode_name(code: ResponseCode) -> std::borrow::Cow<'static, str> {
    match u16::from(code) {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        n => format!("RCODE{n}").into(),
    }
}

fn answer(record: &Record) -> Answer {
    let data = match record.data() {
        RData::A(a) => ipv4_text(a.0),
        RData::AAAA(aaaa) => aaaa.0.to_string(),
        RData::CNAME(cname) => name_text(&cname.0),
        other => display(other),
    };
    Answer {
        name: name_text(record.name()),
        rtype: type_name(record.record_type()),
        ttl: record.ttl(),
        data,
    }
}

/// A record type as DNS tools print it: its mnemonic, or `TYPEn` (RFC 3597) for one hickory
/// does not know.
fn type_name(rtype: RecordType) -> String {
    match rtype {
        RecordType::Unknown(n) => format!("TYPE{n}"),
        t => <&'static str>::from(t).to_owned(),
    }
}

/// A name as [`normalize_name`] gives it from hickory's escaped ASCII form (lower case, no
/// trailing dot), built in one pass when every byte is one a host name uses (the names of a
/// flood); any other byte takes hickory's escaping, so both ways give the same text.
fn name_text(name: &Name) -> String {
    let mut text = String::with_capacity(name.len());
    for (i, label) in name.iter().enumerate() {
        let plain = label.iter().enumerate().all(|(j, &b)| {
            b.is_ascii_alphanumeric() || b == b'_' || (b == b'-' && j > 0) || (b == b'*' && j == 0)
        });
        if !plain {
            return normalize_name(&name.to_ascii());
        }
        if i > 0 {
            text.push('.');
        }
        text.extend(label.iter().map(|b| char::from(b.to_ascii_lowercase())));
    }
    text
}

/// An IPv4 address in dotted-quad form, without the formatting machinery of `Display` (a DNS
/// flood formats one per answer).
fn ipv4_text(addr: std::net::Ipv4Addr) -> String {
    let mut text = String::with_capacity(15);
    for (i, octet) in addr.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

/// Record data as hickory prints it. Its `Display` of some malformed data returns an error
/// (found by the dns fuzz target: `to_string()` then panics); such data reads as unprintable.
fn display(data: &RData) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    match write!(text, "{data}") {
        Ok(()) => text,
        Err(_) => format!("(unprintable {} data)", data.record_type()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use hickory_proto::{
        op::Message,
        rr::{rdata, Name},
    };
    use std::str::FromStr;

    /// A response for `qname` with the given records, as a server would send it.
    pub(crate) fn response(qname: &str, rcode: ResponseCode, records: Vec<Record>) -> Vec<u8> {
        let mut msg = Message::new();
        msg.set_id(0x1234)
            .set_message_type(MessageType::Response)
            .set_response_code(rcode);
        msg.add_query(Query::query(Name::from_str(qname).unwrap(), RecordType::A));
        for r in records {
            msg.add_answer(r);
        }
        msg.to_vec().unwrap()
    }

    pub(crate) fn cname(name: &str, target: &str, ttl: u32) -> Record {
        Record::from_rdata(
            Name::from_str(name).unwrap(),
            ttl,
            RData::CNAME(rdata::CNAME(Name::from_str(target).unwrap())),
        )
    }

    pub(crate) fn a(name: &str, addr: &str, ttl: u32) -> Record {
        Record::from_rdata(
            Name::from_str(name).unwrap(),
            ttl,
            RData::A(rdata::A(addr.parse().unwrap())),
        )
    }

    #[test]
    fn decodes_a_cname_chain() {
        let bytes = response(
            "Pipelines.Actions.GitHubUserContent.com.",
            ResponseCode::NoError,
            vec![
                cname(
                    "pipelines.actions.githubusercontent.com.",
                    "star.l-msedge.net.",
                    30,
                ),
                cname("star.l-msedge.net.", "x.l-msedge.net.", 30),
                a("x.l-msedge.net.", "198.18.1.12", 60),
            ],
        );
        let msg = decode_message(&bytes).unwrap();
        assert!(msg.response);
        assert_eq!(msg.rcode, "NOERROR");
        assert_eq!(
            msg.questions[0].name,
            "pipelines.actions.githubusercontent.com"
        );
        assert_eq!(msg.questions[0].rtype, "A");
        let got: Vec<_> = msg
            .answers
            .iter()
            .map(|a| (a.rtype.as_str(), a.data.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("CNAME", "star.l-msedge.net"),
                ("CNAME", "x.l-msedge.net"),
                ("A", "198.18.1.12")
            ]
        );
        assert_eq!(msg.answers[2].ttl, 60);
        assert_eq!(msg.incomplete, None);
    }

    #[test]
    fn rcodes_read_like_dig() {
        for (code, name) in [
            (ResponseCode::ServFail, "SERVFAIL"),
            (ResponseCode::Refused, "REFUSED"),
            (ResponseCode::NoError, "NOERROR"),
        ] {
            assert_eq!(
                decode_message(&response("a.example.", code, vec![]))
                    .unwrap()
                    .rcode,
                name
            );
        }
    }

    #[test]
    fn nxdomain_has_no_answers() {
        let msg =
            decode_message(&response("nope.example.", ResponseCode::NXDomain, vec![])).unwrap();
        assert_eq!(msg.rcode, "NXDOMAIN");
        assert!(msg.answers.is_empty());
    }

    #[test]
    fn a_cut_payload_keeps_the_answers_that_fit() {
        let bytes = response(
            "a.example.",
            ResponseCode::NoError,
            vec![
                a("a.example.", "198.18.1.1", 5),
                a("a.example.", "198.18.1.2", 5),
            ],
        );
        let msg = decode_message(&bytes[..bytes.len() - 3]).unwrap();
        assert_eq!(msg.answers.len(), 1);
        assert!(msg.incomplete.unwrap().contains("answer 2 of 2"));
    }

    #[test]
    fn record_data_hickory_cannot_print_is_unprintable_not_a_panic() {
        // Found by the dns fuzz target (tests/fuzz/corpus/dns/hickory-display-error).
        let payload = include_bytes!("../../../tests/fuzz/corpus/dns/hickory-display-error");
        if let Ok(message) = decode_message(payload) {
            assert!(message.answers.iter().all(|a| !a.data.contains('\n')));
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_message(&[]).is_err());
        assert!(decode_message(&[0xff; 5]).is_err());
        // Every prefix and a few corruptions of a valid message: never a panic.
        let bytes = response(
            "a.example.",
            ResponseCode::NoError,
            vec![a("a.example.", "198.18.1.1", 5)],
        );
        for n in 0..bytes.len() {
            let _ = decode_message(&bytes[..n]);
            let mut corrupt = bytes.clone();
            corrupt[n] ^= 0xa5;
            let _ = decode_message(&corrupt);
        }
    }

    #[test]
    fn names_built_in_one_pass_read_as_hickory_escapes_them() {
        let labels: [&[u8]; 12] = [
            b"Api",
            b"GITHUB",
            b"com",
            b"_dmarc",
            b"*",
            b"-lead",
            b"a-b",
            b"x*y",
            b"dot.ted",
            b"sp ace",
            b"\xff\x00",
            b"xn--bcher-kva",
        ];
        for a in labels {
            for b in labels {
                for fqdn in [true, false] {
                    let mut name = Name::from_labels([a, b, b"com".as_slice()]).unwrap();
                    name.set_fqdn(fqdn);
                    assert_eq!(
                        name_text(&name),
                        normalize_name(&name.to_ascii()),
                        "{:?}",
                        name.to_ascii()
                    );
                }
            }
        }
        assert_eq!(name_text(&Name::root()), "");
    }

    #[test]
    fn ipv4_text_matches_display() {
        for a in [0u8, 1, 9, 10, 42, 99, 100, 109, 110, 199, 200, 250, 255] {
            for b in [0u8, 7, 10, 100, 255] {
                let addr = std::net::Ipv4Addr::new(a, b, 255 - a, b.wrapping_mul(3));
                assert_eq!(ipv4_text(addr), addr.to_string());
            }
        }
    }

    #[test]
    fn the_decode_cache_gives_what_decoding_gives_with_each_message_s_own_id() {
        let mut cache = DecodeCache::default();
        let first = response(
            "api.github.com.",
            ResponseCode::NoError,
            vec![a("api.github.com.", "198.18.1.10", 60)],
        );
        let mut again = first.clone();
        again[0] = 0xbe;
        again[1] = 0xef;
        let mut other = first.clone();
        // The same header and question, another address: not the cached message.
        let last = other.len() - 1;
        other[last] = 11;
        for bytes in [&first, &again, &other, &first] {
            assert_eq!(cache.decode(bytes), decode_message(bytes));
        }
        assert_eq!(cache.decode(&again).unwrap().id, 0xbeef);
        // Hits: the repeat with another id, the first message again (unless the other one took
        // its slot), and the repeat once more.
        assert!(cache.hits() >= 2, "{} hits", cache.hits());
        // A message whose text is long is decoded every time, not kept.
        let many: Vec<Record> = (0..20)
            .map(|i| {
                cname(
                    &format!("n{i}.example."),
                    &format!("{}.example.", "x".repeat(50)),
                    60,
                )
            })
            .collect();
        let big = response("n0.example.", ResponseCode::NoError, many);
        assert!(big.len() <= DECODE_CACHE_MAX_PAYLOAD, "{}", big.len());
        let hits = cache.hits();
        for _ in 0..2 {
            assert_eq!(cache.decode(&big), decode_message(&big));
        }
        assert_eq!(cache.hits(), hits);
        // Messages seen once are not kept, and do not evict one that repeats: a flood of
        // unique answers costs no copies and leaves the repeated answer cached.
        let hits = cache.hits();
        for i in 0..4 * DECODE_CACHE_SLOTS {
            let mut unique = first.clone();
            let n = unique.len();
            unique[n - 2..].copy_from_slice(&(0x8000 | i as u16).to_be_bytes());
            assert_eq!(cache.decode(&unique), decode_message(&unique));
        }
        assert!(cache.slots.iter().flatten().count() <= 2);
        assert_eq!(cache.hits(), hits);
        assert_eq!(cache.decode(&again), decode_message(&again));
        assert_eq!(cache.hits(), hits + 1);
        // Short, long and malformed payloads decode as without the cache.
        for bytes in [&first[..5], &[0u8; 600][..], &first[..first.len() - 3]] {
            assert_eq!(cache.decode(bytes), decode_message(bytes));
        }
    }
}
