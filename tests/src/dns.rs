//! A tiny DNS client (UDP, one question) used to check rcodes and answers
//! precisely, without depending on `dig` or on glibc's interpretation.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// A DNS record type, as used in a question or found in an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordType {
    /// IPv4 address (1).
    A,
    /// IPv6 address (28).
    Aaaa,
    /// Canonical name (5).
    Cname,
    /// Any other type, by number.
    Other(u16),
}

impl RecordType {
    /// The wire value of this type.
    pub fn code(self) -> u16 {
        match self {
            RecordType::A => 1,
            RecordType::Cname => 5,
            RecordType::Aaaa => 28,
            RecordType::Other(c) => c,
        }
    }

    /// The type for a wire value.
    pub fn from_code(code: u16) -> Self {
        match code {
            1 => RecordType::A,
            5 => RecordType::Cname,
            28 => RecordType::Aaaa,
            c => RecordType::Other(c),
        }
    }
}

/// A DNS response code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rcode {
    /// 0: no error (possibly with no answers: NODATA).
    NoError,
    /// 1: format error.
    FormErr,
    /// 2: server failure.
    ServFail,
    /// 3: the name does not exist.
    NxDomain,
    /// 4: not implemented.
    NotImp,
    /// 5: the server refuses to answer.
    Refused,
    /// Any other code.
    Other(u8),
}

impl Rcode {
    /// The rcode for the low 4 bits of the header flags.
    pub fn from_code(code: u8) -> Self {
        match code {
            0 => Rcode::NoError,
            1 => Rcode::FormErr,
            2 => Rcode::ServFail,
            3 => Rcode::NxDomain,
            4 => Rcode::NotImp,
            5 => Rcode::Refused,
            c => Rcode::Other(c),
        }
    }
}

/// One resource record of the answer section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsRecord {
    /// `name A addr`.
    A {
        /// Owner name (lower case, no trailing dot).
        name: String,
        /// The address.
        addr: Ipv4Addr,
    },
    /// `name AAAA addr`.
    Aaaa {
        /// Owner name (lower case, no trailing dot).
        name: String,
        /// The address.
        addr: Ipv6Addr,
    },
    /// `name CNAME target`.
    Cname {
        /// Owner name (lower case, no trailing dot).
        name: String,
        /// Canonical name it points to.
        target: String,
    },
    /// Any other record, by type number.
    Other {
        /// Owner name (lower case, no trailing dot).
        name: String,
        /// Record type.
        rtype: u16,
    },
}

/// A parsed DNS response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsResponse {
    /// Response code.
    pub rcode: Rcode,
    /// The AA (authoritative answer) flag.
    pub authoritative: bool,
    /// The TC (truncated) flag.
    pub truncated: bool,
    /// The answer section, in order.
    pub answers: Vec<DnsRecord>,
}

impl DnsResponse {
    /// All A/AAAA addresses in the answer section, in order.
    pub fn addrs(&self) -> Vec<IpAddr> {
        self.answers
            .iter()
            .filter_map(|r| match r {
                DnsRecord::A { addr, .. } => Some(IpAddr::V4(*addr)),
                DnsRecord::Aaaa { addr, .. } => Some(IpAddr::V6(*addr)),
                _ => None,
            })
            .collect()
    }

    /// The CNAME targets in the answer section, in order (the chain).
    pub fn cname_targets(&self) -> Vec<String> {
        self.answers
            .iter()
            .filter_map(|r| match r {
                DnsRecord::Cname { target, .. } => Some(target.clone()),
                _ => None,
            })
            .collect()
    }
}

impl fmt::Display for DnsResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}{}",
            self.rcode,
            if self.authoritative { " aa" } else { "" }
        )?;
        for r in &self.answers {
            match r {
                DnsRecord::A { name, addr } => write!(f, "; {name} A {addr}")?,
                DnsRecord::Aaaa { name, addr } => write!(f, "; {name} AAAA {addr}")?,
                DnsRecord::Cname { name, target } => write!(f, "; {name} CNAME {target}")?,
                DnsRecord::Other { name, rtype } => write!(f, "; {name} TYPE{rtype}")?,
            }
        }
        Ok(())
    }
}

static NEXT_ID: AtomicU16 = AtomicU16::new(0);

fn next_id() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos as u16) ^ NEXT_ID.fetch_add(0x9e37, Ordering::Relaxed)
}

/// Encodes a query for `name`/`qtype` (class IN, RD set).
pub fn build_query(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    q.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    q.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // AN, NS, AR
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        let label = &label.as_bytes()[..label.len().min(63)];
        q.push(label.len() as u8);
        q.extend_from_slice(label);
    }
    q.push(0);
    q.extend_from_slice(&qtype.code().to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes()); // IN
    q
}

fn read_u16(buf: &[u8], at: usize) -> Result<u16, String> {
    buf.get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| format!("truncated message at offset {at}"))
}

/// Reads a (possibly compressed) name at `at`; returns it and the offset
/// just past it in the original position.
fn read_name(buf: &[u8], mut at: usize) -> Result<(String, usize), String> {
    let mut labels: Vec<String> = Vec::new();
    let mut end = None;
    for _ in 0..128 {
        let len = *buf.get(at).ok_or("name runs past end of message")? as usize;
        if len & 0xc0 == 0xc0 {
            let ptr = (read_u16(buf, at)? & 0x3fff) as usize;
            end.get_or_insert(at + 2);
            at = ptr;
        } else if len == 0 {
            let name = labels.join(".").to_ascii_lowercase();
            return Ok((name, end.unwrap_or(at + 1)));
        } else {
            let label = buf
                .get(at + 1..at + 1 + len)
                .ok_or("label runs past end of message")?;
            labels.push(String::from_utf8_lossy(label).into_owned());
            at += 1 + len;
        }
    }
    Err("too many labels or compression pointers".into())
}

/// Parses a response message.
pub fn parse_response(buf: &[u8]) -> Result<DnsResponse, String> {
    let flags = read_u16(buf, 2)?;
    if flags & 0x8000 == 0 {
        return Err("message is not a response (QR=0)".into());
    }
    let qdcount = read_u16(buf, 4)?;
    let ancount = read_u16(buf, 6)?;
    let mut at = 12;
    for _ in 0..qdcount {
        at = read_name(buf, at)?.1 + 4;
    }
    let mut answers = Vec::new();
    for _ in 0..ancount {
        let (name, next) = read_name(buf, at)?;
        let rtype = read_u16(buf, next)?;
        let rdlen = read_u16(buf, next + 8)? as usize;
        let rdata_at = next + 10;
        let rdata = buf
            .get(rdata_at..rdata_at + rdlen)
            .ok_or("rdata runs past end of message")?;
        answers.push(match (RecordType::from_code(rtype), rdlen) {
            (RecordType::A, 4) => DnsRecord::A {
                name,
                addr: Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]),
            },
            (RecordType::Aaaa, 16) => {
                let mut o = [0u8; 16];
                o.copy_from_slice(rdata);
                DnsRecord::Aaaa {
                    name,
                    addr: Ipv6Addr::from(o),
                }
            }
            (RecordType::Cname, _) => DnsRecord::Cname {
                name,
                target: read_name(buf, rdata_at)?.0,
            },
            _ => DnsRecord::Other { name, rtype },
        });
        at = rdata_at + rdlen;
    }
    Ok(DnsResponse {
        rcode: Rcode::from_code((flags & 0x000f) as u8),
        authoritative: flags & 0x0400 != 0,
        truncated: flags & 0x0200 != 0,
        answers,
    })
}

/// Sends one UDP query to `server` and waits up to `timeout` for the
/// matching response. Runs in the caller's network namespace.
pub fn query(
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
    timeout: Duration,
) -> io::Result<DnsResponse> {
    let bind: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(bind)?;
    sock.connect(server)?;
    let id = next_id();
    sock.send(&build_query(id, name, qtype))?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no DNS answer from {server} for {name} {qtype:?} within {timeout:?}"),
            ));
        }
        sock.set_read_timeout(Some(left))?;
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        };
        if n < 12 || u16::from_be_bytes([buf[0], buf[1]]) != id {
            continue;
        }
        return parse_response(&buf[..n]).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad DNS answer from {server}: {e}"),
            )
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_encoding() {
        let q = build_query(0x1234, "a.bc.", RecordType::Aaaa);
        assert_eq!(
            q,
            [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 2, b'b', b'c', 0, 0, 28, 0, 1]
        );
    }

    #[test]
    fn parses_compressed_cname_chain() {
        // Response to "x.t A": x.t CNAME y.t; y.t A 198.18.1.1
        let mut m = vec![0x12, 0x34, 0x85, 0x80, 0, 1, 0, 2, 0, 0, 0, 0];
        m.extend_from_slice(&[1, b'x', 1, b't', 0, 0, 1, 0, 1]); // question @12
        m.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 0, 0, 4, 1, b'y', 0xc0, 14]);
        let y_at = (m.len() - 4) as u8;
        m.extend_from_slice(&[0xc0, y_at, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 198, 18, 1, 1]);
        let r = parse_response(&m).unwrap();
        assert_eq!(r.rcode, Rcode::NoError);
        assert!(r.authoritative);
        assert_eq!(r.cname_targets(), vec!["y.t".to_string()]);
        assert_eq!(r.addrs(), vec![IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1))]);
        assert_eq!(
            r.answers[0],
            DnsRecord::Cname {
                name: "x.t".into(),
                target: "y.t".into()
            }
        );
    }

    #[test]
    fn parses_rcode() {
        let m = [0, 1, 0x81, 0x85, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(parse_response(&m).unwrap().rcode, Rcode::Refused);
        let m = [0, 1, 0x01, 0x85, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(parse_response(&m).is_err());
    }
}
