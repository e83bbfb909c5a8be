//! DNS for the check: A and AAAA queries over UDP to one resolver, the CNAME chain of the
//! answers, sinkhole answers, and what the two answers mean together.

use std::{
    hash::{BuildHasher as _, Hasher as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::Path,
    str::FromStr as _,
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, MessageType, OpCode, Query},
    rr::{Name, RecordType},
};
use tokio::net::UdpSocket;

use super::{code, seconds, CheckError, Context, DnsCheck};
use crate::pipeline::dns::{decode_message, normalize_name, DnsMessage};

/// Where the system's resolver is configured.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The longest CNAME chain followed (loops end there too).
const MAX_CHAIN: usize = 16;
/// Room for any UDP answer.
const MAX_UDP: usize = 4096;

/// The first usable `nameserver` of a resolv.conf text, on port 53. An IPv6 address with a
/// numeric zone (`fe80::1%2`) keeps it; one with a named zone is skipped.
pub fn nameserver_from_resolv_conf(text: &str) -> Option<SocketAddr> {
    text.lines().find_map(|line| {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            return None;
        }
        let word = words.next()?;
        let (address, zone) = match word.split_once('%') {
            Some((address, zone)) => (address, Some(zone)),
            None => (word, None),
        };
        match (address.parse::<IpAddr>().ok()?, zone) {
            (ip, None) => Some(SocketAddr::new(ip, 53)),
            (IpAddr::V6(v6), Some(zone)) => {
                let scope = zone.parse::<u32>().ok()?;
                Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                    v6, 53, 0, scope,
                )))
            }
            (IpAddr::V4(_), Some(_)) => None,
        }
    })
}

/// The system's resolver, from `path` (normally [`RESOLV_CONF`]).
pub(super) fn system_resolver(path: &Path) -> Result<SocketAddr, CheckError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| CheckError::ResolvConf {
        file: file.clone(),
        source,
    })?;
    nameserver_from_resolv_conf(&text).ok_or(CheckError::NoResolver { file })
}

/// Whether a DNS answer means "blocked": `0.0.0.0`, `::`, loopback (unless the context says
/// otherwise), or a configured sinkhole.
pub(super) fn is_sinkhole(ip: IpAddr, context: &Context) -> bool {
    sinkhole(ip, &context.sinkholes, context.loopback_is_sinkhole)
}

fn sinkhole(ip: IpAddr, extra: &[IpAddr], loopback: bool) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    ip.is_unspecified() || (loopback && ip.is_loopback()) || extra.contains(&ip)
}

/// What one query got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    Answer {
        rcode: String,
        cname_chain: Vec<String>,
        addresses: Vec<IpAddr>,
        truncated: bool,
    },
    /// No answer within the timeout, after every attempt.
    Timeout { attempts: u32, each: Duration },
    /// The query could not be made (bad name, local socket error).
    Failed(String),
}

impl Outcome {
    /// The reason code this outcome alone stands for; `None` when it is a usable answer, and
    /// `dns_no_address` for NOERROR without addresses.
    fn code(&self) -> Option<&'static str> {
        match self {
            Self::Answer {
                rcode, addresses, ..
            } => match rcode.as_str() {
                "NOERROR" if addresses.is_empty() => Some(code::DNS_NO_ADDRESS),
                "NOERROR" => None,
                "NXDOMAIN" => Some(code::DNS_NXDOMAIN),
                "SERVFAIL" => Some(code::DNS_SERVFAIL),
                "REFUSED" => Some(code::DNS_REFUSED),
                _ => Some(code::DNS_ERROR),
            },
            Self::Timeout { .. } => Some(code::DNS_TIMEOUT),
            Self::Failed(_) => Some(code::DNS_ERROR),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Answer {
                rcode,
                addresses,
                truncated,
                ..
            } => {
                let cut = if *truncated { ", truncated" } else { "" };
                match addresses.len() {
                    0 => format!("{rcode}, no address{cut}"),
                    1 => format!("{rcode}, 1 address{cut}"),
                    n => format!("{rcode}, {n} addresses{cut}"),
                }
            }
            Self::Timeout { attempts, each } => format!(
                "no answer ({attempts} attempt{} of {})",
                if *attempts == 1 { "" } else { "s" },
                seconds(*each)
            ),
            Self::Failed(problem) => problem.clone(),
        }
    }
}

/// Asks for A and AAAA at once and combines the answers.
pub(super) async fn resolve(name: &str, context: &Context) -> DnsCheck {
    let (a, aaaa) = tokio::join!(
        query(name, RecordType::A, context),
        query(name, RecordType::AAAA, context)
    );
    let mut check = combine(&a, &aaaa, |ip| is_sinkhole(ip, context));
    check.resolver = Some(context.resolver);
    check
}

/// What the A and AAAA outcomes mean together.
///
/// Without any address the most telling failure wins: NXDOMAIN, REFUSED, SERVFAIL, timeout,
/// another error, then "no address". With addresses, a sinkhole answer or a failed query (not a
/// plain "no address") is still reported, and makes the host degraded at most.
pub(super) fn combine(
    a: &Outcome,
    aaaa: &Outcome,
    is_sinkhole: impl Fn(IpAddr) -> bool,
) -> DnsCheck {
    let mut check = DnsCheck::default();
    for outcome in [a, aaaa] {
        if let Outcome::Answer {
            rcode,
            cname_chain,
            addresses,
            ..
        } = outcome
        {
            if check.rcode.is_none() {
                check.rcode = Some(rcode.clone());
            }
            if check.cname_chain.is_empty() {
                check.cname_chain.clone_from(cname_chain);
            }
            for ip in addresses {
                if !check.addresses.contains(ip) {
                    check.addresses.push(*ip);
                }
            }
        }
    }
    let codes = [a.code(), aaaa.code()];
    let reason = if check.addresses.is_empty() {
        const PRECEDENCE: [&str; 6] = [
            code::DNS_NXDOMAIN,
            code::DNS_REFUSED,
            code::DNS_SERVFAIL,
            code::DNS_TIMEOUT,
            code::DNS_ERROR,
            code::DNS_NO_ADDRESS,
        ];
        PRECEDENCE
            .into_iter()
            .find(|c| codes.contains(&Some(c)))
            .or(Some(code::DNS_NO_ADDRESS))
    } else if check.addresses.iter().any(|&ip| is_sinkhole(ip)) {
        Some(code::DNS_SINKHOLE)
    } else {
        codes
            .into_iter()
            .flatten()
            .find(|&c| c != code::DNS_NO_ADDRESS)
    };
    if let Some(reason) = reason {
        check.reason = Some(reason.to_owned());
        check.detail = Some(format!("A: {}; AAAA: {}", a.describe(), aaaa.describe()));
    }
    check
}

/// One query, sent again after each timeout, up to the context's attempts. Queries do not wait
/// for a parallelism slot: two small datagrams per name load nobody, and waiting would only
/// stretch a check whose resolver does not answer.
async fn query(name: &str, rtype: RecordType, context: &Context) -> Outcome {
    let id = random_id();
    let packet = match build_query(id, name, rtype) {
        Ok(packet) => packet,
        Err(problem) => return Outcome::Failed(problem),
    };
    let local: SocketAddr = if context.resolver.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = match UdpSocket::bind(local).await {
        Ok(socket) => socket,
        Err(e) => return Outcome::Failed(format!("cannot open a UDP socket: {e}")),
    };
    if let Err(e) = socket.connect(context.resolver).await {
        return Outcome::Failed(format!(
            "cannot reach the resolver {}: {e}",
            context.resolver
        ));
    }
    let qname = normalize_name(name);
    let mut buffer = vec![0u8; MAX_UDP];
    for _ in 0..context.dns_attempts {
        if let Err(e) = socket.send(&packet).await {
            return Outcome::Failed(format!(
                "cannot send to the resolver {}: {e}",
                context.resolver
            ));
        }
        let deadline = Instant::now() + context.dns_timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let received = match tokio::time::timeout(left, socket.recv(&mut buffer)).await {
                Err(_) => break,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    // ICMP port unreachable: nothing listens there.
                    return Outcome::Failed(format!(
                        "the resolver {} refused the query (ICMP port unreachable)",
                        context.resolver
                    ));
                }
                Ok(Err(e)) => {
                    return Outcome::Failed(format!(
                        "cannot read from the resolver {}: {e}",
                        context.resolver
                    ))
                }
                Ok(Ok(n)) => n,
            };
            // Anything else (a late answer to someone else, garbage) is ignored.
            let Ok(message) = decode_message(&buffer[..received]) else {
                continue;
            };
            if answers(&message, id, &qname, rtype) {
                return interpret(&message, &qname, rtype);
            }
        }
    }
    Outcome::Timeout {
        attempts: context.dns_attempts,
        each: context.dns_timeout,
    }
}

/// A recursive query for `name` (made absolute) of type `rtype`.
pub(super) fn build_query(id: u16, name: &str, rtype: RecordType) -> Result<Vec<u8>, String> {
    let mut qname = Name::from_str(name).map_err(|e| format!("{name:?} is not a DNS name: {e}"))?;
    qname.set_fqdn(true);
    let mut message = Message::new();
    message
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(qname, rtype));
    message
        .to_vec()
        .map_err(|e| format!("cannot encode the query for {name:?}: {e}"))
}

/// Whether `message` is the answer to our query.
fn answers(message: &DnsMessage, id: u16, qname: &str, rtype: RecordType) -> bool {
    message.response
        && message.id == id
        && message
            .questions
            .first()
            .is_some_and(|q| q.name == qname && q.rtype == rtype.to_string())
}

/// The rcode, CNAME chain and addresses of an answer. The chain is followed from the name asked
/// for; the addresses are those of the chain's last name (or, when the server put them under
/// another name, every address of the type asked for).
pub(super) fn interpret(message: &DnsMessage, qname: &str, rtype: RecordType) -> Outcome {
    let wanted = rtype.to_string();
    let mut chain: Vec<String> = Vec::new();
    let mut current = qname.to_owned();
    while chain.len() < MAX_CHAIN {
        let next = message
            .answers
            .iter()
            .find(|a| a.rtype == "CNAME" && a.name == current)
            .map(|a| a.data.clone());
        match next {
            Some(target) if target != qname && !chain.contains(&target) => {
                chain.push(target.clone());
                current = target;
            }
            _ => break,
        }
    }
    let of_type = |name: Option<&str>| -> Vec<IpAddr> {
        message
            .answers
            .iter()
            .filter(|a| a.rtype == wanted && name.is_none_or(|n| a.name == n))
            .filter_map(|a| a.data.parse::<IpAddr>().ok())
            .collect()
    };
    let mut addresses = of_type(Some(&current));
    if addresses.is_empty() {
        addresses = of_type(None);
    }
    addresses.dedup();
    Outcome::Answer {
        rcode: message.rcode.to_string(),
        cname_chain: chain,
        addresses,
        truncated: message.tc,
    }
}

/// A query id nobody can guess from outside (the standard library's per-process random keys).
fn random_id() -> u16 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    // Truncation keeps the low bits, which are as random as the others.
    (hasher.finish() & 0xffff) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::tests::{context, DnsServer, Reply};

    #[test]
    fn resolv_conf() {
        let cases: &[(&str, Option<&str>)] = &[
            ("nameserver 10.0.0.2\nnameserver 10.0.0.3\n", Some("10.0.0.2:53")),
            (
                "# generated\nsearch corp.example\noptions edns0\n  nameserver\t127.0.0.53 # stub\n",
                Some("127.0.0.53:53"),
            ),
            ("nameserver 2001:db8::53\n", Some("[2001:db8::53]:53")),
            ("nameserver fe80::1%2\n", Some("[fe80::1%2]:53")),
            ("nameserver fe80::1%eth0\nnameserver 9.9.9.9\n", Some("9.9.9.9:53")),
            ("nameserver not-an-address\nnameserver\n", None),
            ("; nameserver 1.1.1.1\n#nameserver 8.8.8.8\n", None),
            ("", None),
        ];
        for &(text, want) in cases {
            assert_eq!(
                nameserver_from_resolv_conf(text)
                    .map(|a| a.to_string())
                    .as_deref(),
                want,
                "{text:?}"
            );
        }
    }

    #[test]
    fn system_resolver_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("observer-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let empty = dir.join("resolv.conf");
        std::fs::write(&empty, "search example\n").expect("write");
        let err = system_resolver(&empty).expect_err("no nameserver");
        assert_eq!(
            err.to_string(),
            format!(
                "no DNS server to ask: {} lists no usable `nameserver` (give one with --resolver)",
                empty.display()
            )
        );
        let missing = dir.join("missing.conf");
        assert!(system_resolver(&missing)
            .expect_err("missing")
            .to_string()
            .starts_with("cannot read "));
        std::fs::write(&empty, "nameserver 192.0.2.53\n").expect("write");
        assert_eq!(
            system_resolver(&empty).expect("resolver").to_string(),
            "192.0.2.53:53"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sinkholes() {
        let extra: Vec<IpAddr> = vec!["192.0.2.66".parse().expect("ip")];
        for (ip, want) in [
            ("0.0.0.0", true),
            ("::", true),
            ("127.0.0.1", true),
            ("127.1.2.3", true),
            ("::1", true),
            ("::ffff:0.0.0.0", true),
            ("::ffff:127.0.0.1", true),
            ("192.0.2.66", true),
            ("::ffff:192.0.2.66", true),
            ("192.0.2.67", false),
            ("10.0.0.1", false),
            ("140.82.121.4", false),
            ("2606:50c0:8000::154", false),
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!(sinkhole(ip, &extra, true), want, "{ip}");
        }
        assert!(!sinkhole("127.0.0.1".parse().expect("ip"), &[], false));
        assert!(sinkhole("0.0.0.0".parse().expect("ip"), &[], false));
    }

    fn answer(rcode: &str, addresses: &[&str]) -> Outcome {
        Outcome::Answer {
            rcode: rcode.to_owned(),
            cname_chain: Vec::new(),
            addresses: addresses.iter().map(|a| a.parse().expect("ip")).collect(),
            truncated: false,
        }
    }

    fn timeout() -> Outcome {
        Outcome::Timeout {
            attempts: 2,
            each: Duration::from_secs(2),
        }
    }

    #[test]
    fn combining_answers() {
        let no_sinkhole = |ip: IpAddr| sinkhole(ip, &[], true);
        let cases: Vec<(Outcome, Outcome, Option<&str>, usize)> = vec![
            (
                answer("NOERROR", &["140.82.121.4"]),
                answer("NOERROR", &[]),
                None,
                1,
            ),
            (
                answer("NOERROR", &["140.82.121.4"]),
                answer("NOERROR", &["2606:50c0::1"]),
                None,
                2,
            ),
            (
                answer("NXDOMAIN", &[]),
                answer("NXDOMAIN", &[]),
                Some(code::DNS_NXDOMAIN),
                0,
            ),
            (
                answer("SERVFAIL", &[]),
                timeout(),
                Some(code::DNS_SERVFAIL),
                0,
            ),
            (
                answer("NOERROR", &[]),
                timeout(),
                Some(code::DNS_TIMEOUT),
                0,
            ),
            (timeout(), timeout(), Some(code::DNS_TIMEOUT), 0),
            (
                answer("REFUSED", &[]),
                answer("REFUSED", &[]),
                Some(code::DNS_REFUSED),
                0,
            ),
            (
                answer("NOERROR", &[]),
                answer("NOERROR", &[]),
                Some(code::DNS_NO_ADDRESS),
                0,
            ),
            (
                answer("FORMERR", &[]),
                answer("NOERROR", &[]),
                Some(code::DNS_ERROR),
                0,
            ),
            (
                Outcome::Failed("cannot send".to_owned()),
                answer("NOERROR", &[]),
                Some(code::DNS_ERROR),
                0,
            ),
            (
                answer("NOERROR", &["0.0.0.0"]),
                answer("NOERROR", &["::"]),
                Some(code::DNS_SINKHOLE),
                2,
            ),
            (
                answer("NOERROR", &["140.82.121.4"]),
                answer("NOERROR", &["::"]),
                Some(code::DNS_SINKHOLE),
                2,
            ),
            // One query failing while the other gave addresses is still worth saying.
            (
                answer("NOERROR", &["140.82.121.4"]),
                timeout(),
                Some(code::DNS_TIMEOUT),
                1,
            ),
            (
                answer("NOERROR", &["140.82.121.4"]),
                answer("SERVFAIL", &[]),
                Some(code::DNS_SERVFAIL),
                1,
            ),
        ];
        for (a, aaaa, want, addresses) in cases {
            let check = combine(&a, &aaaa, no_sinkhole);
            assert_eq!(check.reason.as_deref(), want, "{a:?} {aaaa:?}");
            assert_eq!(check.addresses.len(), addresses, "{a:?} {aaaa:?}");
            assert_eq!(check.detail.is_some(), want.is_some(), "{a:?} {aaaa:?}");
        }
        let check = combine(&answer("NOERROR", &[]), &timeout(), no_sinkhole);
        assert_eq!(check.rcode.as_deref(), Some("NOERROR"));
        assert_eq!(
            check.detail.as_deref(),
            Some("A: NOERROR, no address; AAAA: no answer (2 attempts of 2 s)")
        );
        assert_eq!(combine(&timeout(), &timeout(), no_sinkhole).rcode, None);
    }

    fn message(answers: &[(&str, &str, &str)]) -> DnsMessage {
        DnsMessage {
            id: 1,
            response: true,
            rcode: "NOERROR".into(),
            tc: false,
            questions: Vec::new(),
            answers: answers
                .iter()
                .map(|&(name, rtype, data)| crate::pipeline::dns::Answer {
                    name: name.to_owned(),
                    rtype: rtype.to_owned(),
                    ttl: 60,
                    data: data.to_owned(),
                })
                .collect(),
            incomplete: None,
        }
    }

    #[test]
    fn cname_chains_are_followed() {
        let msg = message(&[
            (
                "pipelines.actions.githubusercontent.com",
                "CNAME",
                "star.l-msedge.net",
            ),
            ("star.l-msedge.net", "CNAME", "x.l-msedge.net"),
            ("x.l-msedge.net", "A", "13.107.42.16"),
            ("other.example", "A", "192.0.2.1"),
        ]);
        let got = interpret(
            &msg,
            "pipelines.actions.githubusercontent.com",
            RecordType::A,
        );
        assert_eq!(
            got,
            Outcome::Answer {
                rcode: "NOERROR".to_owned(),
                cname_chain: vec!["star.l-msedge.net".to_owned(), "x.l-msedge.net".to_owned()],
                addresses: vec!["13.107.42.16".parse().expect("ip")],
                truncated: false,
            }
        );
        // A loop ends; addresses under another name are still used.
        let looped = message(&[
            ("a.example", "CNAME", "b.example"),
            ("b.example", "CNAME", "a.example"),
            ("c.example", "AAAA", "2001:db8::1"),
            ("c.example", "A", "192.0.2.1"),
        ]);
        let Outcome::Answer {
            cname_chain,
            addresses,
            ..
        } = interpret(&looped, "a.example", RecordType::AAAA)
        else {
            panic!("an answer");
        };
        assert_eq!(cname_chain, ["b.example"]);
        assert_eq!(addresses, ["2001:db8::1".parse::<IpAddr>().expect("ip")]);
    }

    #[test]
    fn queries_are_well_formed() {
        let bytes = build_query(0x4242, "GitHub.com", RecordType::AAAA).expect("query");
        let msg = decode_message(&bytes).expect("decodes");
        assert_eq!(msg.id, 0x4242);
        assert!(!msg.response);
        assert_eq!(msg.questions[0].name, "github.com");
        assert_eq!(msg.questions[0].rtype, "AAAA");
        assert!(build_query(1, "a..b", RecordType::A).is_err());
    }

    #[tokio::test]
    async fn real_queries_over_udp() {
        let server = DnsServer::start(|name, rtype| match (name, rtype) {
            ("missing.test", _) => Reply::Rcode(3),
            ("sinkholed.test", RecordType::A) => {
                Reply::Records(vec![("sinkholed.test", "A", "0.0.0.0")])
            }
            ("sinkholed.test", _) => Reply::Records(vec![("sinkholed.test", "AAAA", "::")]),
            ("alias.test", RecordType::A) => Reply::Records(vec![
                ("alias.test", "CNAME", "edge.cdn.test"),
                ("edge.cdn.test", "CNAME", "node.cdn.test"),
                ("node.cdn.test", "A", "192.0.2.10"),
            ]),
            ("alias.test", _) => Reply::Records(vec![("alias.test", "CNAME", "edge.cdn.test")]),
            ("broken.test", _) => Reply::Rcode(2),
            ("quiet.test", _) => Reply::Silence,
            _ => Reply::Rcode(5),
        })
        .await;
        let ctx = context(Some(server.addr), Duration::from_millis(150));

        let missing = resolve("missing.test", &ctx).await;
        assert_eq!(missing.reason.as_deref(), Some(code::DNS_NXDOMAIN));
        assert_eq!(missing.rcode.as_deref(), Some("NXDOMAIN"));
        assert_eq!(missing.resolver, Some(server.addr));

        let sinkholed = resolve("sinkholed.test", &ctx).await;
        assert_eq!(sinkholed.reason.as_deref(), Some(code::DNS_SINKHOLE));
        assert_eq!(sinkholed.addresses.len(), 2);

        let alias = resolve("Alias.Test.", &ctx).await;
        assert_eq!(alias.reason, None, "{alias:?}");
        assert_eq!(alias.cname_chain, ["edge.cdn.test", "node.cdn.test"]);
        assert_eq!(
            alias.addresses,
            ["192.0.2.10".parse::<IpAddr>().expect("ip")]
        );

        assert_eq!(
            resolve("broken.test", &ctx).await.reason.as_deref(),
            Some(code::DNS_SERVFAIL)
        );
        assert_eq!(
            resolve("other.test", &ctx).await.reason.as_deref(),
            Some(code::DNS_REFUSED)
        );

        let started = Instant::now();
        let quiet = resolve("quiet.test", &ctx).await;
        assert_eq!(quiet.reason.as_deref(), Some(code::DNS_TIMEOUT));
        assert_eq!(
            quiet.detail.as_deref(),
            Some("A: no answer (2 attempts of 150 ms); AAAA: no answer (2 attempts of 150 ms)")
        );
        // Both queries at once, two attempts each.
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(started.elapsed() < Duration::from_secs(3));
        // The server saw the retry.
        assert!(server.queries_for("quiet.test") >= 4);
    }
}
