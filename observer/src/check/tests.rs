//! Tests of the whole check, and the local servers the socket tests use: a UDP DNS responder, a
//! rustls server with a certificate made on the spot, and an HTTP CONNECT proxy. Every server
//! listens on 127.0.0.1; no test reaches any other address.

use std::{
    net::{IpAddr, SocketAddr},
    str::FromStr as _,
    sync::{Arc, Mutex},
    time::Duration,
};

use hickory_proto::{
    op::{Message, MessageType, ResponseCode},
    rr::{rdata, Name, RData, Record, RecordType},
};
use rustls::{
    pki_types::{pem::PemObject as _, CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
    ClientConfig, RootCertStore, ServerConfig,
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream, UdpSocket},
    sync::Semaphore,
    task::JoinHandle,
};

use super::*;
use crate::{catalog::Catalog, exit};

// ---------------------------------------------------------------------------------------------
// Local servers and contexts.

/// A context for tests: no system trust store (only `ca_pem`), loopback answers allowed (the
/// test servers live there), every timeout `wait`.
pub(super) fn context_with_ca(
    resolver: Option<SocketAddr>,
    wait: Duration,
    ca_pem: Option<&str>,
) -> Context {
    let mut roots = RootCertStore::empty();
    if let Some(pem) = ca_pem {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.expect("PEM")).expect("CA");
        }
    }
    let tls =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    Context {
        // Port 9 (discard) on loopback: never asked unless a test gives a resolver.
        resolver: resolver.unwrap_or_else(|| ([127, 0, 0, 1], 9).into()),
        dns_timeout: wait,
        dns_attempts: 2,
        connect_timeout: wait,
        tls_timeout: wait,
        port: 443,
        tls: Arc::new(tls),
        proxy: None,
        proxy_addrs: Ok(Vec::new()),
        sinkholes: Vec::new(),
        loopback_is_sinkhole: false,
        limit: Semaphore::new(8),
    }
}

pub(super) fn context(resolver: Option<SocketAddr>, wait: Duration) -> Context {
    context_with_ca(resolver, wait, None)
}

/// What the test DNS server answers.
pub(super) enum Reply {
    /// A response with this code and no records.
    Rcode(u8),
    /// NOERROR with these (name, type, data) records.
    Records(Vec<(&'static str, &'static str, &'static str)>),
    /// No response at all.
    Silence,
}

type Handler = dyn Fn(&str, RecordType) -> Reply + Send + Sync;

/// A UDP DNS server on 127.0.0.1 answering from a function of (name, type).
pub(super) struct DnsServer {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl DnsServer {
    pub(super) async fn start(
        handler: impl Fn(&str, RecordType) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = socket.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let handler: Arc<Handler> = Arc::new(handler);
        let task = tokio::spawn(async move {
            let mut buffer = [0u8; 1500];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buffer).await else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buffer[..n]) else {
                    continue;
                };
                let Some(question) = query.queries().first().cloned() else {
                    continue;
                };
                let name = crate::pipeline::dns::normalize_name(&question.name().to_ascii());
                log.lock().expect("log").push(name.clone());
                let mut response = Message::new();
                response
                    .set_id(query.id())
                    .set_message_type(MessageType::Response)
                    .set_recursion_desired(true)
                    .set_recursion_available(true)
                    .add_query(question.clone());
                match handler(&name, question.query_type()) {
                    Reply::Silence => continue,
                    Reply::Rcode(rcode) => {
                        response.set_response_code(ResponseCode::from(0, rcode));
                    }
                    Reply::Records(records) => {
                        for (owner, rtype, data) in records {
                            response.add_answer(record(owner, rtype, data));
                        }
                    }
                }
                let bytes = response.to_vec().expect("encode");
                let _ = socket.send_to(&bytes, peer).await;
            }
        });
        Self { addr, seen, task }
    }

    /// How many queries (of any type) asked for `name`.
    pub(super) fn queries_for(&self, name: &str) -> usize {
        self.seen
            .lock()
            .expect("log")
            .iter()
            .filter(|n| *n == name)
            .count()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn record(owner: &str, rtype: &str, data: &str) -> Record {
    let owner = Name::from_str(&format!("{owner}.")).expect("name");
    let rdata = match rtype {
        "A" => RData::A(rdata::A(data.parse().expect("v4"))),
        "AAAA" => RData::AAAA(rdata::AAAA(data.parse().expect("v6"))),
        "CNAME" => RData::CNAME(rdata::CNAME(
            Name::from_str(&format!("{data}.")).expect("name"),
        )),
        other => panic!("no test records of type {other}"),
    };
    Record::from_rdata(owner, 60, rdata)
}

/// A TLS server on 127.0.0.1 with a self-signed certificate for some names.
pub(super) struct TlsServer {
    pub addr: SocketAddr,
    /// The certificate, which is its own CA.
    pub ca_pem: String,
    task: JoinHandle<()>,
}

impl TlsServer {
    pub(super) async fn start(names: &[&str]) -> Self {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let certified = rcgen::generate_simple_self_signed(names).expect("cert");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_no_client_auth()
                .with_single_cert(vec![certified.cert.der().clone()], key)
                .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(stream).await {
                        // Hold the connection until the client leaves.
                        let mut buffer = [0u8; 64];
                        let _ = tls.read(&mut buffer).await;
                    }
                });
            }
        });
        Self {
            addr,
            ca_pem: certified.cert.pem(),
            task,
        }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An HTTP proxy on 127.0.0.1: answers CONNECT with `status`, and on 200 tunnels to `upstream`
/// whatever the name asked for.
struct ConnectProxy {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl ConnectProxy {
    async fn start(status: u16, upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if client.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let text = String::from_utf8_lossy(&head).into_owned();
                    log.lock().expect("log").push(text);
                    if status != 200 {
                        let answer = format!("HTTP/1.1 {status} Nope\r\nContent-Length: 0\r\n\r\n");
                        let _ = client.write_all(answer.as_bytes()).await;
                        return;
                    }
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await;
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        Self {
            addr,
            requests,
            task,
        }
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-built results.

fn ip(text: &str) -> IpAddr {
    text.parse().expect("ip")
}

fn addr_ok(address: &str) -> AddrCheck {
    AddrCheck {
        tcp: Step::Ok,
        tls: Step::Ok,
        connect_ms: Some(10.0),
        tls_ms: Some(20.0),
        ..AddrCheck::new(SocketAddr::new(ip(address), 443), false)
    }
}

fn addr_failed(address: &str, tcp: Step, tls: Step, detail: &str) -> AddrCheck {
    AddrCheck {
        tcp,
        tls,
        detail: Some(detail.to_owned()),
        ..AddrCheck::new(SocketAddr::new(ip(address), 443), false)
    }
}

fn tcp_failed(address: &str, code: &str, detail: &str) -> AddrCheck {
    addr_failed(address, Step::failed(code), Step::Skipped, detail)
}

fn tls_failed(address: &str, code: &str, detail: &str) -> AddrCheck {
    addr_failed(address, Step::Ok, Step::failed(code), detail)
}

fn dns_ok(addresses: &[AddrCheck]) -> DnsCheck {
    DnsCheck {
        resolver: Some(([127, 0, 0, 53], 53).into()),
        rcode: Some("NOERROR".to_owned()),
        addresses: addresses.iter().map(|a| a.addr).collect(),
        ..DnsCheck::default()
    }
}

fn host(name: &str, groups: &[&str], dns: DnsCheck, addresses: Vec<AddrCheck>) -> HostCheck {
    let (status, reasons) = aggregate(&dns, false, &addresses);
    HostCheck {
        name: name.to_owned(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        representative_of: None,
        status,
        reasons,
        addresses,
        dns,
        proxy: None,
        elapsed_ms: 42.0,
    }
}

fn reachable(name: &str, groups: &[&str]) -> HostCheck {
    let addresses = vec![addr_ok("192.0.2.1")];
    host(name, groups, dns_ok(&addresses), addresses)
}

fn blocked(name: &str, groups: &[&str]) -> HostCheck {
    let addresses = vec![tls_failed("192.0.2.2", code::TLS_RESET, "reset")];
    host(name, groups, dns_ok(&addresses), addresses)
}

fn untrusted(name: &str, groups: &[&str]) -> HostCheck {
    let addresses = vec![tls_failed(
        "192.0.2.3",
        code::TLS_CERT_INVALID,
        "invalid peer certificate: UnknownIssuer",
    )];
    host(name, groups, dns_ok(&addresses), addresses)
}

fn small_catalog() -> Catalog {
    let mut catalog = Catalog::default();
    catalog
        .apply_toml(
            "t.toml",
            r#"
[[group]]
id = "essential"
title = "Essential operations"
required = true
hosts = ["github.com", "*.actions.githubusercontent.com"]

[[group]]
id = "runner-updates"
title = "Runner version updates"
hosts = ["objects.githubusercontent.com"]

[[group]]
id = "lfs"
title = "Git Large File Storage"
hosts = ["github-cloud.s3.amazonaws.com"]

[[group]]
id = "dependabot"
title = "Dependabot updates"
hosts = ["dependabot-actions.githubapp.com"]

[[group]]
id = "wildcard-summary"
title = "Wildcard summary"
summary = true
hosts = ["*.githubusercontent.com"]
"#,
        )
        .expect("valid");
    catalog
}

// ---------------------------------------------------------------------------------------------
// Status aggregation.

#[test]
fn status_aggregation() {
    let ok = addr_ok("192.0.2.1");
    let reset = tls_failed("192.0.2.2", code::TLS_RESET, "reset");
    let timeout = tcp_failed("2001:db8::1", code::TCP_TIMEOUT, "timeout");
    let no_v6 = tcp_failed(
        "2001:db8::2",
        code::IPV6_UNAVAILABLE,
        "Network is unreachable",
    );
    let cert = tls_failed("192.0.2.3", code::TLS_CERT_INVALID, "bad cert");
    let nxdomain = DnsCheck {
        reason: Some(code::DNS_NXDOMAIN.to_owned()),
        ..DnsCheck::default()
    };
    let partial_dns = DnsCheck {
        reason: Some(code::DNS_SERVFAIL.to_owned()),
        ..dns_ok(std::slice::from_ref(&ok))
    };
    let plain = DnsCheck::default();
    // (what, DNS answer, addresses, status, reasons)
    type Case<'a> = (&'a str, &'a DnsCheck, Vec<AddrCheck>, Status, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        ("all ok", &plain, vec![ok.clone()], Status::Ok, vec![]),
        (
            "one of two",
            &plain,
            vec![ok.clone(), timeout.clone()],
            Status::Degraded,
            vec![code::TCP_TIMEOUT],
        ),
        (
            "none",
            &plain,
            vec![reset.clone(), timeout.clone()],
            Status::Blocked,
            vec![code::TLS_RESET, code::TCP_TIMEOUT],
        ),
        ("no addresses", &plain, vec![], Status::Blocked, vec![]),
        (
            "dns failure",
            &nxdomain,
            vec![],
            Status::Blocked,
            vec![code::DNS_NXDOMAIN],
        ),
        (
            "partial dns",
            &partial_dns,
            vec![ok.clone()],
            Status::Degraded,
            vec![code::DNS_SERVFAIL],
        ),
        (
            "no ipv6 route is not counted",
            &plain,
            vec![ok.clone(), no_v6.clone()],
            Status::Ok,
            vec![],
        ),
        (
            "only ipv6 without a route",
            &plain,
            vec![no_v6.clone()],
            Status::Blocked,
            vec![code::IPV6_UNAVAILABLE],
        ),
        (
            "bad certificate is reached",
            &plain,
            vec![cert.clone()],
            Status::Degraded,
            vec![code::TLS_CERT_INVALID],
        ),
        (
            "repeated codes once",
            &plain,
            vec![reset.clone(), reset.clone()],
            Status::Blocked,
            vec![code::TLS_RESET],
        ),
    ];
    for (what, dns, addresses, status, reasons) in cases {
        assert_eq!(
            aggregate(dns, false, &addresses),
            (status, reasons.iter().map(|r| (*r).to_owned()).collect()),
            "{what}"
        );
    }
    assert_eq!(
        aggregate(&plain, true, &[]),
        (Status::Blocked, vec![code::PROXY_ERROR.to_owned()])
    );
}

#[test]
fn reached_and_untrusted() {
    let proxied = AddrCheck {
        tcp: Step::Ok,
        proxy: Step::failed(code::PROXY_REFUSED),
        ..AddrCheck::new(([127, 0, 0, 1], 3128).into(), true)
    };
    assert!(!proxied.reached());
    assert_eq!(proxied.failure(), Some(code::PROXY_REFUSED));
    assert!(untrusted("a.example", &[]).untrusted());
    assert!(!untrusted("a.example", &[]).usable());
    assert!(!reachable("a.example", &[]).untrusted());
    assert!(!blocked("a.example", &[]).untrusted());
    assert!(!blocked("a.example", &[]).usable());
    // One good address and one intercepted: usable.
    let addresses = vec![
        addr_ok("192.0.2.1"),
        tls_failed("192.0.2.3", code::TLS_CERT_INVALID, "bad"),
    ];
    let mixed = host("m.example", &[], dns_ok(&addresses), addresses);
    assert_eq!(mixed.status, Status::Degraded);
    assert!(mixed.usable());
}

// ---------------------------------------------------------------------------------------------
// Exit codes and verdict.

#[test]
fn exit_code_rules() {
    let catalog = small_catalog();
    let all_ok = vec![
        reachable("github.com", &["essential"]),
        reachable(
            "objects.githubusercontent.com",
            &["runner-updates", "wildcard-summary"],
        ),
    ];
    assert_eq!(exit_code(&all_ok, &catalog), exit::OK);

    // Optional groups never change the exit code.
    let optional_blocked = vec![
        reachable("github.com", &["essential"]),
        blocked(
            "objects.githubusercontent.com",
            &["runner-updates", "wildcard-summary"],
        ),
        untrusted("github-cloud.s3.amazonaws.com", &["lfs"]),
    ];
    assert_eq!(exit_code(&optional_blocked, &catalog), exit::OK);
    let v = build_report(&optional_blocked, &catalog).verdict;
    assert!(v.runner_can_work);
    // The wildcard summary is not a feature of its own.
    assert_eq!(v.failing_features, ["runner-updates", "lfs"]);

    // Degraded essential hosts still work: exit 0, with a warning.
    let addresses = vec![
        addr_ok("192.0.2.1"),
        tcp_failed("192.0.2.9", code::TCP_TIMEOUT, "t"),
    ];
    let degraded = vec![host(
        "github.com",
        &["essential"],
        dns_ok(&addresses),
        addresses,
    )];
    assert_eq!(exit_code(&degraded, &catalog), exit::OK);
    assert_eq!(
        build_report(&degraded, &catalog).verdict.warnings,
        ["github.com"]
    );

    let essential_blocked = vec![
        blocked("github.com", &["essential"]),
        untrusted("broker.actions.githubusercontent.com", &["essential"]),
    ];
    assert_eq!(
        exit_code(&essential_blocked, &catalog),
        exit::ESSENTIAL_BLOCKED
    );
    let v = build_report(&essential_blocked, &catalog).verdict;
    assert_eq!(
        v.summary,
        "runner CANNOT work: essential hosts blocked: github.com"
    );
    assert_eq!(
        v.untrusted_essential,
        ["broker.actions.githubusercontent.com"]
    );

    let essential_untrusted = vec![untrusted("github.com", &["essential"])];
    assert_eq!(
        exit_code(&essential_untrusted, &catalog),
        exit::ESSENTIAL_UNTRUSTED
    );
    assert!(
        !build_report(&essential_untrusted, &catalog)
            .verdict
            .runner_can_work
    );

    // Nothing checked: nothing is known to be blocked.
    assert_eq!(exit_code(&[], &catalog), exit::OK);
}

// ---------------------------------------------------------------------------------------------
// Rendering.

fn table_results() -> Vec<HostCheck> {
    let github = reachable("github.com", &["essential"]);
    let addresses = vec![
        addr_ok("13.107.42.16"),
        tcp_failed(
            "2603:1030::10",
            code::TCP_TIMEOUT,
            "no answer to the connection request within 5 s",
        ),
    ];
    let mut broker = host(
        "broker.actions.githubusercontent.com",
        &["essential", "wildcard-summary"],
        dns_ok(&addresses),
        addresses,
    );
    broker.representative_of = Some("*.actions.githubusercontent.com".to_owned());
    let objects = host(
        "objects.githubusercontent.com",
        &["runner-updates", "wildcard-summary"],
        dns_ok(&[]),
        vec![tls_failed(
            "185.199.108.133",
            code::TLS_RESET,
            "the connection was reset after the ClientHello, before any answer from the server",
        )],
    );
    let lfs = host(
        "github-cloud.s3.amazonaws.com",
        &["lfs"],
        DnsCheck {
            rcode: Some("NXDOMAIN".to_owned()),
            reason: Some(code::DNS_NXDOMAIN.to_owned()),
            detail: Some("A: NXDOMAIN, no address; AAAA: NXDOMAIN, no address".to_owned()),
            ..DnsCheck::default()
        },
        vec![],
    );
    vec![github, broker, objects, lfs]
}

#[test]
fn table_snapshot() {
    let table = render_table(&table_results(), &small_catalog());
    assert_eq!(
        table,
        "\
STATUS    HOST                                  GROUPS                           REASONS       ADDRESSES
ok        github.com                            essential                        -             192.0.2.1
DEGRADED  broker.actions.githubusercontent.com  essential,wildcard-summary       tcp_timeout   13.107.42.16, 2603:1030::10 (tcp_timeout)
BLOCKED   objects.githubusercontent.com         runner-updates,wildcard-summary  tls_reset     185.199.108.133 (tls_reset)
BLOCKED   github-cloud.s3.amazonaws.com         lfs                              dns_nxdomain  -

DETAILS
broker.actions.githubusercontent.com [2603:1030::10]:443: tcp_timeout: no answer to the connection request within 5 s
objects.githubusercontent.com 185.199.108.133:443: tls_reset: the connection was reset after the ClientHello, before any answer from the server
github-cloud.s3.amazonaws.com dns: dns_nxdomain: A: NXDOMAIN, no address; AAAA: NXDOMAIN, no address

WILDCARD                         CHECKED AS
*.actions.githubusercontent.com  broker.actions.githubusercontent.com
*.githubusercontent.com          - (no representative name; only the documented names under it)

GROUP             REQUIRED  STATUS     FAILING HOSTS
essential         yes       DEGRADED   broker.actions.githubusercontent.com
runner-updates    no        BLOCKED    objects.githubusercontent.com
lfs               no        BLOCKED    github-cloud.s3.amazonaws.com
dependabot        no        unchecked  -
wildcard-summary  no        BLOCKED    broker.actions.githubusercontent.com, objects.githubusercontent.com

VERDICT: runner can work
Features that will fail: runner-updates, lfs
Warnings (degraded, still usable): broker.actions.githubusercontent.com
"
    );
    assert!(table.lines().all(|l| l == l.trim_end()));
}

#[test]
fn table_verdict_when_essential_blocked() {
    let results = vec![blocked("github.com", &["essential"])];
    let table = render_table(&results, &small_catalog());
    assert!(
        table.ends_with("\nVERDICT: runner CANNOT work: essential hosts blocked: github.com\n"),
        "{table}"
    );
    let results = vec![
        blocked("github.com", &["essential"]),
        untrusted("broker.actions.githubusercontent.com", &["essential"]),
    ];
    let table = render_table(&results, &small_catalog());
    assert!(
        table.ends_with(
            "\nVERDICT: runner CANNOT work: essential hosts blocked: github.com\n\
             Essential hosts whose certificates do not verify: broker.actions.githubusercontent.com\n"
        ),
        "{table}"
    );
    let results = vec![untrusted("github.com", &["essential"])];
    let table = render_table(&results, &small_catalog());
    assert!(
        table.ends_with(
            "\nVERDICT: runner CANNOT work: essential hosts answer with certificates that do not \
             verify (a TLS-intercepting proxy whose CA is not trusted?): github.com\n"
        ),
        "{table}"
    );
}

#[test]
fn json_document() {
    let mut results = table_results();
    results[0].proxy = None;
    let report = build_report(&results, &small_catalog());
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["verdict"]["runner_can_work"], true);
    assert_eq!(json["verdict"]["exit_code"], 0);
    assert_eq!(json["verdict"]["summary"], "runner can work");
    let broker = &json["hosts"][1];
    assert_eq!(broker["name"], "broker.actions.githubusercontent.com");
    assert_eq!(broker["status"], "degraded");
    assert_eq!(broker["reasons"], serde_json::json!(["tcp_timeout"]));
    assert_eq!(
        broker["representative_of"],
        "*.actions.githubusercontent.com"
    );
    let failed = &broker["addresses"][1];
    assert_eq!(failed["addr"], "2603:1030::10");
    assert_eq!(failed["port"], 443);
    assert_eq!(failed["tcp"], "tcp_timeout");
    assert_eq!(failed["proxy"], "skipped");
    assert_eq!(failed["tls"], "skipped");
    assert_eq!(failed["connect_ms"], serde_json::Value::Null);
    assert_eq!(broker["addresses"][0]["tls"], "ok");
    assert_eq!(broker["addresses"][0]["tls_ms"], 20.0);
    assert_eq!(broker["dns"]["resolver"], "127.0.0.53:53");
    assert_eq!(broker["elapsed_ms"], 42.0);
    assert_eq!(json["groups"][0]["id"], "essential");
    assert_eq!(json["groups"][0]["status"], "degraded");
    assert_eq!(json["groups"][3]["status"], "unseen");
    let keys: Vec<&str> = json
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["groups", "hosts", "schema_version", "verdict"]);
}

// ---------------------------------------------------------------------------------------------
// The whole check against local servers.

fn test_target(name: &str) -> Target {
    Target {
        name: name.to_owned(),
        groups: vec!["essential".to_owned()],
        representative_of: None,
    }
}

#[tokio::test]
async fn whole_check_against_local_servers() {
    let tls = TlsServer::start(&["good.test", "mixed.test"]).await;
    let dns = DnsServer::start(|name, rtype| match (name, rtype) {
        ("good.test" | "wrong.test", RecordType::A) => {
            Reply::Records(vec![("good.test", "A", "127.0.0.1")])
        }
        ("mixed.test", RecordType::A) => Reply::Records(vec![("mixed.test", "A", "127.0.0.1")]),
        // Nothing listens on [::1] at the server's port.
        ("mixed.test", RecordType::AAAA) => Reply::Records(vec![("mixed.test", "AAAA", "::1")]),
        ("sinkholed.test", RecordType::A) => {
            Reply::Records(vec![("sinkholed.test", "A", "0.0.0.0")])
        }
        ("missing.test", _) => Reply::Rcode(3),
        _ => Reply::Records(vec![]),
    })
    .await;
    let mut ctx = context_with_ca(Some(dns.addr), Duration::from_secs(2), Some(&tls.ca_pem));
    ctx.port = tls.addr.port();
    let targets: Vec<Target> = [
        "good.test",
        "wrong.test",
        "mixed.test",
        "sinkholed.test",
        "missing.test",
    ]
    .into_iter()
    .map(test_target)
    .collect();
    let results = run(&targets, Arc::new(ctx)).await;
    let names: Vec<&str> = results.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "good.test",
            "wrong.test",
            "mixed.test",
            "sinkholed.test",
            "missing.test"
        ]
    );

    let good = &results[0];
    assert_eq!(good.status, Status::Ok, "{good:?}");
    assert!(good.reasons.is_empty());
    assert_eq!(good.addresses.len(), 1);
    assert_eq!(good.dns.addresses, [ip("127.0.0.1")]);

    let wrong = &results[1];
    assert_eq!(wrong.status, Status::Degraded, "{wrong:?}");
    assert_eq!(wrong.reasons, [code::TLS_CERT_INVALID]);
    assert!(wrong.untrusted());

    let mixed = &results[2];
    assert_eq!(mixed.addresses.len(), 2, "{mixed:?}");
    match mixed.addresses[1].failure() {
        // Without IPv6 on this machine, the ::1 address does not count.
        Some(code::IPV6_UNAVAILABLE) => assert_eq!(mixed.status, Status::Ok),
        Some(code::TCP_RESET) => {
            assert_eq!(mixed.status, Status::Degraded);
            assert_eq!(mixed.reasons, [code::TCP_RESET]);
        }
        other => panic!("unexpected ::1 outcome {other:?}: {mixed:?}"),
    }

    let sinkholed = &results[3];
    assert_eq!(sinkholed.status, Status::Blocked);
    assert_eq!(sinkholed.reasons, [code::DNS_SINKHOLE]);
    assert!(
        sinkholed.addresses.is_empty(),
        "a sinkhole is never connected to"
    );

    let missing = &results[4];
    assert_eq!(missing.status, Status::Blocked);
    assert_eq!(missing.reasons, [code::DNS_NXDOMAIN]);

    let catalog = small_catalog();
    // wrong.test is essential and untrusted.
    assert_eq!(exit_code(&results, &catalog), exit::ESSENTIAL_BLOCKED);
}

#[tokio::test]
async fn checks_through_a_proxy() {
    let tls = TlsServer::start(&["good.test"]).await;
    let tunnel = ConnectProxy::start(200, tls.addr).await;
    let refusing = ConnectProxy::start(403, tls.addr).await;
    let failing = ConnectProxy::start(502, tls.addr).await;
    // The resolver knows nothing: names through the proxy must not need it.
    let dns = DnsServer::start(|_, _| Reply::Rcode(3)).await;

    let with_proxy = |proxy_addr: SocketAddr, no_proxy: &str| {
        let no_proxy = no_proxy.to_owned();
        let mut ctx = context_with_ca(Some(dns.addr), Duration::from_secs(2), Some(&tls.ca_pem));
        ctx.port = tls.addr.port();
        ctx.proxy = proxy_from_env(move |key| match key {
            "https_proxy" => Some(format!("http://u:p@{proxy_addr}")),
            "no_proxy" => Some(no_proxy.clone()),
            _ => None,
        });
        ctx.proxy_addrs = Ok(vec![proxy_addr]);
        Arc::new(ctx)
    };

    let targets = [test_target("good.test"), test_target("direct.test")];
    let results = run(&targets, with_proxy(tunnel.addr, "direct.test")).await;
    let good = &results[0];
    assert_eq!(good.status, Status::Ok, "{good:?}");
    assert!(good.dns.by_proxy);
    assert_eq!(good.dns.resolver, None);
    assert_eq!(
        good.proxy.as_ref().map(|p| p.url.clone()),
        Some(format!("http://{}", tunnel.addr))
    );
    let via = &good.addresses[0];
    assert!(via.through_proxy);
    assert_eq!(via.addr, tunnel.addr.ip());
    assert_eq!(
        (&via.tcp, &via.proxy, &via.tls),
        (&Step::Ok, &Step::Ok, &Step::Ok)
    );
    let request = tunnel.requests.lock().expect("log")[0].clone();
    assert!(
        request.starts_with(&format!(
            "CONNECT good.test:{} HTTP/1.1\r\n",
            tls.addr.port()
        )),
        "{request}"
    );
    assert!(request.contains("\r\nProxy-Authorization: Basic dTpw\r\n"));
    // no_proxy: asked the resolver directly, which says NXDOMAIN.
    let direct = &results[1];
    assert!(!direct.dns.by_proxy);
    assert_eq!(direct.reasons, [code::DNS_NXDOMAIN]);
    assert_eq!(dns.queries_for("direct.test"), 2);
    assert_eq!(dns.queries_for("good.test"), 0);

    let refused = run(&targets[..1], with_proxy(refusing.addr, "")).await;
    assert_eq!(refused[0].status, Status::Blocked);
    assert_eq!(refused[0].reasons, [code::PROXY_REFUSED]);
    assert_eq!(
        refused[0].addresses[0].detail.as_deref(),
        Some(
            format!(
                "the proxy refused CONNECT good.test:{}: HTTP/1.1 403 Nope",
                tls.addr.port()
            )
            .as_str()
        )
    );
    let failed = run(&targets[..1], with_proxy(failing.addr, "")).await;
    assert_eq!(failed[0].reasons, [code::PROXY_UPSTREAM_FAILED]);

    // A proxy that cannot be used at all.
    let mut ctx = context(Some(dns.addr), Duration::from_secs(1));
    ctx.proxy =
        proxy_from_env(|key| (key == "HTTPS_PROXY").then(|| "socks5://proxy:1080".to_owned()));
    ctx.proxy_addrs = Err("proxy scheme \"socks5\" is not supported".to_owned());
    let unusable = run(&targets[..1], Arc::new(ctx)).await;
    assert_eq!(unusable[0].status, Status::Blocked);
    assert_eq!(unusable[0].reasons, [code::PROXY_ERROR]);
    assert!(unusable[0].addresses.is_empty());
}

#[tokio::test]
async fn public_entry_point() {
    // Through `check`, loopback answers are sinkholes, and the extra CA file is read.
    let tls = TlsServer::start(&["good.test"]).await;
    let dns = DnsServer::start(|name, rtype| match (name, rtype) {
        ("good.test", RecordType::A) => Reply::Records(vec![("good.test", "A", "127.0.0.1")]),
        _ => Reply::Records(vec![]),
    })
    .await;
    let dir = std::env::temp_dir().join(format!("observer-check-entry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &tls.ca_pem).expect("write");
    let options = CheckOptions {
        resolver: Some(dns.addr),
        dns_timeout: Duration::from_millis(500),
        port: tls.addr.port(),
        extra_ca: Some(ca.clone()),
        parallelism: 2,
        ..CheckOptions::default()
    };
    let results = check(&[test_target("good.test")], &options)
        .await
        .expect("check runs");
    assert_eq!(results[0].status, Status::Blocked);
    assert_eq!(results[0].reasons, [code::DNS_SINKHOLE]);

    let missing = CheckOptions {
        extra_ca: Some(dir.join("missing.pem")),
        ..options
    };
    let err = check(&[], &missing).await.expect_err("missing CA");
    assert!(
        err.to_string().starts_with("cannot read the CA file "),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn default_options() {
    let options = CheckOptions::default();
    assert_eq!(options.resolver, None);
    assert_eq!(options.dns_timeout, Duration::from_secs(2));
    assert_eq!(options.dns_attempts, 2);
    assert_eq!(options.connect_timeout, Duration::from_secs(5));
    assert_eq!(options.tls_timeout, Duration::from_secs(5));
    assert_eq!(options.port, 443);
    assert_eq!(options.parallelism, 16);
    assert!(options.proxy.is_none() && options.extra_ca.is_none() && options.sinkholes.is_empty());
}

#[test]
fn durations_in_words() {
    assert_eq!(seconds(Duration::from_secs(5)), "5 s");
    assert_eq!(seconds(Duration::from_millis(200)), "200 ms");
    assert_eq!(seconds(Duration::from_millis(1500)), "1.5 s");
    assert_eq!(millis(Duration::from_micros(12_345)), 12.3);
}

#[test]
fn what_a_server_says_cannot_act_on_the_terminal() {
    // A TLS error quoting the server, and a host name, with escape sequences and a line break.
    let addresses = vec![tls_failed(
        "192.0.2.2",
        code::TLS_RESET,
        "alert from \u{1b}[2Jserver\nVERDICT: runner can work",
    )];
    let results = vec![host(
        "evil\u{9b}2J.example",
        &["essential"],
        dns_ok(&addresses),
        addresses,
    )];
    let table = render_table(&results, &small_catalog());
    assert!(
        !table.chars().any(|c| observer_unsafe(c) && c != '\n'),
        "{table:?}"
    );
    assert!(
        table.contains("\\x1b[2Jserver\\nVERDICT: runner can work"),
        "{table}"
    );
    assert!(table.contains("evil\\x9b2J.example"), "{table}");
    assert_eq!(
        table.lines().filter(|l| l.starts_with("VERDICT")).count(),
        1,
        "{table}"
    );
}

fn observer_unsafe(c: char) -> bool {
    crate::sanitize::is_unsafe(c)
}
