//! DNS messages copied by the kernel, decoded with hickory-proto.
//!
//! The decoder is incremental: the header, the questions and then the answers one by one, so a
//! payload cut at the kernel's copy limit still yields every answer that fits, and the result
//! says it is incomplete instead of losing the whole message.

use hickory_proto::{
    op::{Header, MessageType, Query, ResponseCode},
    rr::{DNSClass, RData, Record, RecordType},
    serialize::binary::{BinDecodable, BinDecoder},
};
use serde::{Deserialize, Serialize};

/// What a DNS message says, in the terms the observer needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DnsMessage {
    pub id: u16,
    pub response: bool,
    /// Response code as text: `NOERROR`, `NXDOMAIN`, `SERVFAIL`, `REFUSED`, ...
    pub rcode: String,
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
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Decodes a DNS message (header and questions must be whole; answers may be cut).
pub fn decode_message(payload: &[u8]) -> Result<DnsMessage, MalformedDns> {
    let mut decoder = BinDecoder::new(payload);
    let header = Header::read(&mut decoder).map_err(|e| MalformedDns(e.to_string()))?;
    let mut questions = Vec::with_capacity(usize::from(header.query_count()));
    for _ in 0..header.query_count() {
        let query = Query::read(&mut decoder).map_err(|e| MalformedDns(e.to_string()))?;
        questions.push(Question {
            name: normalize_name(&query.name().to_ascii()),
            rtype: query.query_type().to_string(),
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

/// Response codes as DNS tools print them (`NOERROR`, `NXDOMAIN`, ...).
fn rcode_name(code: ResponseCode) -> String {
    match u16::from(code) {
        0 => "NOERROR".to_owned(),
        1 => "FORMERR".to_owned(),
        2 => "SERVFAIL".to_owned(),
        3 => "NXDOMAIN".to_owned(),
        4 => "NOTIMP".to_owned(),
        5 => "REFUSED".to_owned(),
        n => format!("RCODE{n}"),
    }
}

fn answer(record: &Record) -> Answer {
    let data = match record.data() {
        RData::A(a) => a.0.to_string(),
        RData::AAAA(aaaa) => aaaa.0.to_string(),
        RData::CNAME(cname) => normalize_name(&cname.0.to_ascii()),
        other => display(other),
    };
    let rtype = match record.record_type() {
        RecordType::Unknown(n) => format!("TYPE{n}"),
        t => t.to_string(),
    };
    Answer {
        name: normalize_name(&record.name().to_ascii()),
        rtype,
        ttl: record.ttl(),
        data,
    }
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
}
