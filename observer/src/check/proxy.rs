//! The HTTP proxy the runner would use, read from the environment as the runner reads it, and
//! the CONNECT request through it.
//!
//! The runner takes `https_proxy` (or `HTTPS_PROXY` when the lower-case one is unset or empty)
//! for its HTTPS traffic, and `no_proxy` (or `NO_PROXY`) as a comma-separated list of names that
//! go direct:
//!
//! - `example.com` exempts `example.com` and every name under it;
//! - `.example.com` exempts only the names under it;
//! - `*` exempts every name (the runner itself ignores `*`, but the tools jobs run honour it);
//! - `host:port` applies only to that port;
//! - IP addresses are ignored, as the runner ignores them; loopback names always go direct.
//!
//! Only `http://` proxies are used (with CONNECT); a URL without a scheme is taken as
//! `http://`. Credentials in the URL (`http://user:pass@proxy:3128`, percent-encoded) are sent
//! as `Proxy-Authorization: Basic`. A proxy without a port is on port 80.

use std::{net::SocketAddr, time::Duration};

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use super::{code, seconds};

/// The largest CONNECT answer head read before giving up.
const MAX_HEAD: usize = 16 * 1024;

/// An HTTP proxy and the names that bypass it.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct ProxyConfig {
    /// The variable it came from (`https_proxy` or `HTTPS_PROXY`).
    pub source: String,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    #[serde(skip)]
    pub username: Option<String>,
    #[serde(skip)]
    pub password: Option<String>,
    /// Why this proxy cannot be used (an unsupported scheme, no host): every name it would
    /// carry fails with `proxy_error` and this text.
    pub unsupported: Option<String>,
    /// From `no_proxy`, in order.
    pub no_proxy: Vec<NoProxyRule>,
}

impl std::fmt::Debug for ProxyConfig {
    // Without the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("source", &self.source)
            .field("url", &self.url())
            .field("username", &self.username)
            .field("unsupported", &self.unsupported)
            .field("no_proxy", &self.no_proxy)
            .finish_non_exhaustive()
    }
}

/// One `no_proxy` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NoProxyRule {
    /// `*`: every name.
    All,
    /// `example.com`: the name and every name under it.
    Domain { domain: String, port: Option<u16> },
    /// `.example.com`: only the names under it.
    Subdomains { domain: String, port: Option<u16> },
}

impl NoProxyRule {
    fn matches(&self, name: &str, port: u16) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let port_ok = |rule_port: &Option<u16>| rule_port.is_none_or(|p| p == port);
        match self {
            Self::All => true,
            Self::Domain { domain, port } => {
                port_ok(port)
                    && (name == *domain
                        || name
                            .strip_suffix(domain.as_str())
                            .is_some_and(|head| head.ends_with('.')))
            }
            Self::Subdomains { domain, port } => {
                port_ok(port)
                    && name
                        .strip_suffix(domain.as_str())
                        .is_some_and(|head| head.len() > 1 && head.ends_with('.'))
            }
        }
    }
}

impl ProxyConfig {
    /// Whether `name` on `port` goes direct: a `no_proxy` rule matches, or it is a loopback name.
    pub fn bypasses(&self, name: &str, port: u16) -> bool {
        let lower = name.trim_end_matches('.').to_ascii_lowercase();
        let loopback = lower == "localhost"
            || lower.ends_with(".localhost")
            || lower
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        loopback || self.no_proxy.iter().any(|rule| rule.matches(&lower, port))
    }

    /// The proxy as a URL, without credentials: `http://proxy.example:3128`.
    pub fn url(&self) -> String {
        if self.host.contains(':') {
            format!("http://[{}]:{}", self.host, self.port)
        } else {
            format!("http://{}:{}", self.host, self.port)
        }
    }

    /// The value of the `Proxy-Authorization` header, when the URL carries credentials.
    fn authorization(&self) -> Option<String> {
        if self.username.is_none() && self.password.is_none() {
            return None;
        }
        let pair = format!(
            "{}:{}",
            self.username.as_deref().unwrap_or(""),
            self.password.as_deref().unwrap_or("")
        );
        Some(format!("Basic {}", base64(pair.as_bytes())))
    }

    /// The proxy's addresses (from the system resolver, which knows `/etc/hosts`), or why it
    /// cannot be used.
    pub(super) async fn addresses(&self) -> Result<Vec<SocketAddr>, String> {
        if let Some(problem) = &self.unsupported {
            return Err(problem.clone());
        }
        match tokio::net::lookup_host((self.host.as_str(), self.port)).await {
            Ok(addrs) => {
                let mut list: Vec<SocketAddr> = Vec::new();
                for addr in addrs {
                    if !list.contains(&addr) {
                        list.push(addr);
                    }
                }
                if list.is_empty() {
                    Err(format!("the proxy {} has no address", self.host))
                } else {
                    Ok(list)
                }
            }
            Err(e) => Err(format!("cannot resolve the proxy {}: {e}", self.host)),
        }
    }
}

/// The proxy the runner would use for HTTPS, from environment variables (`vars` returns a
/// variable's value). `None` when no proxy is set.
pub fn proxy_from_env(vars: impl Fn(&str) -> Option<String>) -> Option<ProxyConfig> {
    let first_set = |names: [&'static str; 2]| {
        names.into_iter().find_map(|name| {
            vars(name)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
                .map(|value| (name, value))
        })
    };
    let (source, url) = first_set(["https_proxy", "HTTPS_PROXY"])?;
    let no_proxy = first_set(["no_proxy", "NO_PROXY"])
        .map(|(_, list)| parse_no_proxy(&list))
        .unwrap_or_default();
    let mut config = parse_proxy_url(&url);
    config.source = source.to_owned();
    config.no_proxy = no_proxy;
    Some(config)
}

/// Parses `[scheme://][user[:password]@]host[:port][/...]`.
fn parse_proxy_url(url: &str) -> ProxyConfig {
    let mut config = ProxyConfig {
        source: String::new(),
        host: String::new(),
        port: 80,
        username: None,
        password: None,
        unsupported: None,
        no_proxy: Vec::new(),
    };
    let rest = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some((scheme, _)) => {
            config.unsupported = Some(format!(
                "proxy scheme {scheme:?} is not supported (only http:// proxies, with CONNECT)"
            ));
            return config;
        }
        None => url,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = match authority.rsplit_once('@') {
        Some((userinfo, host_port)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (userinfo, None),
            };
            config.username = Some(percent_decode(user)).filter(|u| !u.is_empty());
            config.password = password.map(percent_decode).filter(|p| !p.is_empty());
            host_port
        }
        None => authority,
    };
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        match bracketed.split_once(']') {
            Some((host, after)) => (host, after.strip_prefix(':')),
            None => (bracketed, None),
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    config.host = host.to_ascii_lowercase();
    if config.host.is_empty() {
        config.unsupported = Some(format!("no host in the proxy URL {:?}", redact(url)));
    }
    match port.filter(|p| !p.is_empty()).map(str::parse::<u16>) {
        None => {}
        Some(Ok(port)) if port > 0 => config.port = port,
        Some(_) => {
            config.unsupported = Some(format!("bad port in the proxy URL {:?}", redact(url)));
        }
    }
    config
}

/// The URL with its credentials replaced by `***`, for messages.
fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => authority.to_owned(),
    };
    if scheme.is_empty() {
        format!("{authority}{path}")
    } else {
        format!("{scheme}://{authority}{path}")
    }
}

/// Parses a `no_proxy` list. IP addresses are dropped, as the runner drops them.
fn parse_no_proxy(list: &str) -> Vec<NoProxyRule> {
    let mut rules: Vec<NoProxyRule> = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let rule = if entry == "*" {
            NoProxyRule::All
        } else {
            let (host, port) = split_port(entry);
            let host = host.trim_end_matches('.').to_ascii_lowercase();
            if host.is_empty() || host.parse::<std::net::IpAddr>().is_ok() || host.contains('/') {
                // Addresses and CIDR ranges: not names, and the runner ignores them.
                continue;
            }
            match host.strip_prefix('.') {
                Some(domain) if !domain.is_empty() => NoProxyRule::Subdomains {
                    domain: domain.to_owned(),
                    port,
                },
                Some(_) => continue,
                None => NoProxyRule::Domain { domain: host, port },
            }
        };
        if !rules.contains(&rule) {
            rules.push(rule);
        }
    }
    rules
}

/// `host:port` into its parts; the port only when it is a number. `[v6]:port` too.
fn split_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(bracketed) = entry.strip_prefix('[') {
        return match bracketed.split_once(']') {
            Some((host, after)) => (host, after.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (entry, None),
        };
    }
    match entry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse::<u16>() {
            Ok(port) => (host, Some(port)),
            Err(_) => (host, None),
        },
        _ => (entry, None),
    }
}

/// Decodes `%XX` escapes (invalid ones are kept as written).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes
            .get(i + 1..i + 3)
            .filter(|_| bytes[i] == b'%')
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escape {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Standard base64 with padding (for `Proxy-Authorization: Basic`).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A failed step: its reason code and what happened, in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Failure {
    pub code: &'static str,
    pub detail: String,
}

/// The CONNECT request for `name:port`.
fn connect_request(proxy: &ProxyConfig, name: &str, port: u16) -> String {
    let mut request = format!("CONNECT {name}:{port} HTTP/1.1\r\nHost: {name}:{port}\r\n");
    if let Some(authorization) = proxy.authorization() {
        request.push_str(&format!("Proxy-Authorization: {authorization}\r\n"));
    }
    request.push_str(concat!(
        "User-Agent: observer-check/",
        env!("CARGO_PKG_VERSION"),
        "\r\n\r\n"
    ));
    request
}

/// Asks the proxy for a tunnel to `name:port` on an open connection to it.
pub(super) async fn open_tunnel<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    proxy: &ProxyConfig,
    name: &str,
    port: u16,
    wait: Duration,
) -> Result<(), Failure> {
    let request = connect_request(proxy, name, port);
    let exchange = async {
        stream.write_all(request.as_bytes()).await?;
        read_head(stream).await
    };
    let head = match tokio::time::timeout(wait, exchange).await {
        Err(_) => {
            return Err(Failure {
                code: code::PROXY_ERROR,
                detail: format!("the proxy did not answer CONNECT within {}", seconds(wait)),
            })
        }
        Ok(Err(e)) => {
            return Err(Failure {
                code: code::PROXY_ERROR,
                detail: format!("the proxy connection failed during CONNECT: {e}"),
            })
        }
        Ok(Ok(head)) => head,
    };
    let (status, line) = parse_status_line(&head).map_err(|problem| Failure {
        code: code::PROXY_ERROR,
        detail: problem,
    })?;
    match status {
        200..=299 => Ok(()),
        403 | 407 => Err(Failure {
            code: code::PROXY_REFUSED,
            detail: format!("the proxy refused CONNECT {name}:{port}: {line}"),
        }),
        _ => Err(Failure {
            code: code::PROXY_ERROR,
            detail: format!("the proxy answered CONNECT {name}:{port} with {line}"),
        }),
    }
}

/// Reads an HTTP response head, up to and including the empty line. Reads one byte at a time so
/// nothing after the head (the tunnel's first bytes) is consumed.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<Vec<u8>> {
    let mut head: Vec<u8> = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && !head.ends_with(b"\n\n") {
        if head.len() >= MAX_HEAD {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the answer head is longer than {MAX_HEAD} bytes"),
            ));
        }
        if stream.read(&mut byte).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                if head.is_empty() {
                    "the proxy closed the connection without answering".to_owned()
                } else {
                    format!(
                        "the proxy closed the connection in the middle of its answer ({} bytes)",
                        head.len()
                    )
                },
            ));
        }
        head.push(byte[0]);
    }
    Ok(head)
}

/// The status code and the status line (`HTTP/1.1 403 Forbidden`) of a response head.
fn parse_status_line(head: &[u8]) -> Result<(u16, String), String> {
    let end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = String::from_utf8_lossy(&head[..end]).trim_end().to_owned();
    let mut words = line.split_whitespace();
    let version = words.next().unwrap_or("");
    let status = words.next().and_then(|s| s.parse::<u16>().ok());
    match status {
        Some(status) if version.starts_with("HTTP/") && (100..=599).contains(&status) => {
            Ok((status, line))
        }
        _ => Err(format!(
            "the proxy's answer to CONNECT is not HTTP: {:?}",
            line.chars().take(80).collect::<String>()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |key| map.get(key).cloned()
    }

    #[test]
    fn no_proxy_variable_means_no_proxy() {
        assert_eq!(proxy_from_env(env(&[])), None);
        assert_eq!(proxy_from_env(env(&[("https_proxy", "  ")])), None);
        // http_proxy is for plain HTTP; the runner's traffic is HTTPS.
        assert_eq!(
            proxy_from_env(env(&[("http_proxy", "http://p:3128")])),
            None
        );
    }

    #[test]
    fn lower_case_wins_and_empty_falls_through() {
        let p = proxy_from_env(env(&[
            ("https_proxy", "http://lower:1"),
            ("HTTPS_PROXY", "http://upper:2"),
        ]))
        .expect("proxy");
        assert_eq!(
            (p.source.as_str(), p.host.as_str(), p.port),
            ("https_proxy", "lower", 1)
        );
        let p = proxy_from_env(env(&[
            ("https_proxy", ""),
            ("HTTPS_PROXY", " http://upper:2 "),
        ]))
        .expect("proxy");
        assert_eq!(
            (p.source.as_str(), p.host.as_str(), p.port),
            ("HTTPS_PROXY", "upper", 2)
        );
    }

    #[test]
    fn proxy_urls() {
        // (URL, host, port, user, password)
        type Case<'a> = (&'a str, &'a str, u16, Option<&'a str>, Option<&'a str>);
        let cases: &[Case] = &[
            ("http://proxy.local", "proxy.local", 80, None, None),
            ("http://192.168.1.1:8080", "192.168.1.1", 8080, None, None),
            ("HTTP://Proxy.Local:3128/", "proxy.local", 3128, None, None),
            ("proxy.local:3128", "proxy.local", 3128, None, None),
            (
                "http://user:p%40ss@proxy.local:3128",
                "proxy.local",
                3128,
                Some("user"),
                Some("p@ss"),
            ),
            (
                "http://user@proxy.local",
                "proxy.local",
                80,
                Some("user"),
                None,
            ),
            ("http://[::1]:3128", "::1", 3128, None, None),
            ("http://[fd00::1]", "fd00::1", 80, None, None),
        ];
        for &(url, host, port, user, password) in cases {
            let p = parse_proxy_url(url);
            assert_eq!(p.unsupported, None, "{url}");
            assert_eq!(p.host, host, "{url}");
            assert_eq!(p.port, port, "{url}");
            assert_eq!(p.username.as_deref(), user, "{url}");
            assert_eq!(p.password.as_deref(), password, "{url}");
        }
        for (url, problem) in [
            (
                "https://proxy.local:443",
                "proxy scheme \"https\" is not supported",
            ),
            (
                "socks5://proxy.local:1080",
                "proxy scheme \"socks5\" is not supported",
            ),
            ("http://", "no host in the proxy URL \"http://\""),
            (
                "http://user:secret@:3128",
                "no host in the proxy URL \"http://***@:3128\"",
            ),
            ("http://proxy:http", "bad port in the proxy URL"),
            ("http://proxy:0", "bad port in the proxy URL"),
        ] {
            let p = parse_proxy_url(url);
            let got = p.unsupported.unwrap_or_default();
            assert!(got.starts_with(problem), "{url}: {got}");
            assert!(!got.contains("secret"), "{url}: {got}");
        }
    }

    #[test]
    fn url_and_debug_hide_credentials() {
        let p = proxy_from_env(env(&[("https_proxy", "http://u:secret@proxy.local:3128")]))
            .expect("proxy");
        assert_eq!(p.url(), "http://proxy.local:3128");
        assert!(!format!("{p:?}").contains("secret"));
        assert!(!serde_json::to_string(&p).expect("json").contains("secret"));
        assert_eq!(
            parse_proxy_url("http://[::1]:3128").url(),
            "http://[::1]:3128"
        );
    }

    #[test]
    fn no_proxy_rules() {
        let p = proxy_from_env(env(&[
            ("https_proxy", "http://proxy:3128"),
            (
                "NO_PROXY",
                "github.com, .blob.core.windows.net,ghcr.io:8443,10.0.0.1,10.0.0.0/8,[::1]:443,,.,Example.ORG.",
            ),
        ]))
        .expect("proxy");
        assert_eq!(
            p.no_proxy,
            [
                NoProxyRule::Domain {
                    domain: "github.com".to_owned(),
                    port: None
                },
                NoProxyRule::Subdomains {
                    domain: "blob.core.windows.net".to_owned(),
                    port: None
                },
                NoProxyRule::Domain {
                    domain: "ghcr.io".to_owned(),
                    port: Some(8443)
                },
                NoProxyRule::Domain {
                    domain: "example.org".to_owned(),
                    port: None
                },
            ]
        );
        let cases = [
            ("github.com", true),
            ("GitHub.com.", true),
            ("api.github.com", true),
            ("notgithub.com", false),
            ("github.com.evil.example", false),
            ("x.blob.core.windows.net", true),
            ("blob.core.windows.net", false),
            ("ghcr.io", false), // only on port 8443
            ("www.example.org", true),
            ("localhost", true),
            ("127.0.0.1", true),
            ("objects.githubusercontent.com", false),
        ];
        for (name, bypass) in cases {
            assert_eq!(p.bypasses(name, 443), bypass, "{name}");
        }
        assert!(p.bypasses("ghcr.io", 8443));
    }

    #[test]
    fn star_exempts_everything() {
        let p = proxy_from_env(env(&[
            ("https_proxy", "http://proxy:3128"),
            ("no_proxy", "example.com,*"),
            ("NO_PROXY", "ignored.example"),
        ]))
        .expect("proxy");
        assert_eq!(p.no_proxy.last(), Some(&NoProxyRule::All));
        assert!(p.bypasses("github.com", 443));
    }

    #[test]
    fn base64_and_authorization() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("Aladdin:open sesame", "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
        ] {
            assert_eq!(base64(input.as_bytes()), want, "{input}");
        }
        let p = parse_proxy_url("http://Aladdin:open%20sesame@proxy:3128");
        let request = connect_request(&p, "github.com", 443);
        assert!(request.starts_with(
            "CONNECT github.com:443 HTTP/1.1\r\nHost: github.com:443\r\nProxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n"
        ));
        assert!(request.ends_with("\r\n\r\n"));
        assert!(!connect_request(&parse_proxy_url("proxy:1"), "a", 443).contains("Authorization"));
    }

    #[test]
    fn percent_decoding_keeps_bad_escapes() {
        assert_eq!(percent_decode("a%20b%2"), "a b%2");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
        assert_eq!(percent_decode("%"), "%");
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            parse_status_line(b"HTTP/1.1 200 Connection established\r\n\r\n"),
            Ok((200, "HTTP/1.1 200 Connection established".to_owned()))
        );
        assert_eq!(
            parse_status_line(b"HTTP/1.0 403 Forbidden\r\nX: y\r\n\r\n").map(|s| s.0),
            Ok(403)
        );
        assert!(parse_status_line(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_status_line(b"HTTP/1.1 abc\r\n\r\n").is_err());
        assert!(parse_status_line(b"").is_err());
    }

    #[test]
    fn parsers_never_panic() {
        let samples = [
            "http://user:p%4@[::1:3128/x?y#z",
            "HTTP/1.1 200 OK\r\n\r\n",
            "%%%41%4",
            "[]:,.*:,[::1]:x,a:99999,\u{e9}.example:443",
            "\u{0}\u{7f}\u{e9}@:@:[[]]",
        ];
        for sample in samples {
            for end in (0..=sample.len()).filter(|&i| sample.is_char_boundary(i)) {
                let cut = &sample[..end];
                let _ = parse_proxy_url(cut);
                let _ = parse_no_proxy(cut);
                let _ = percent_decode(cut);
                let _ = parse_status_line(cut.as_bytes());
                let _ = redact(cut);
            }
        }
        for byte in 0..=255u8 {
            let _ = parse_status_line(&[b'H', byte, b'\n']);
            let _ = base64(&[byte, byte.wrapping_mul(7)]);
        }
    }

    #[tokio::test]
    async fn tunnel_answers_map_to_codes() {
        let proxy = parse_proxy_url("http://proxy:3128");
        let cases: &[(&[u8], Option<&str>)] = &[
            (b"HTTP/1.1 200 OK\r\n\r\n", None),
            (b"HTTP/1.1 403 Forbidden\r\n\r\n", Some(code::PROXY_REFUSED)),
            (
                b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n",
                Some(code::PROXY_REFUSED),
            ),
            (b"HTTP/1.1 502 Bad Gateway\r\n\r\n", Some(code::PROXY_ERROR)),
            (b"HTTP/1.1 200 OK\r\n", Some(code::PROXY_ERROR)),
            (b"", Some(code::PROXY_ERROR)),
        ];
        for &(answer, want) in cases {
            let (mut client, mut server) = tokio::io::duplex(4096);
            server.write_all(answer).await.expect("write");
            // A whole answer leaves the connection open; a cut one ends it.
            let _open = answer.ends_with(b"\r\n\r\n").then_some(server);
            let got = open_tunnel(
                &mut client,
                &proxy,
                "github.com",
                443,
                Duration::from_secs(1),
            )
            .await
            .err();
            assert_eq!(got.as_ref().map(|f| f.code), want, "{answer:?}: {got:?}");
        }
        let (mut client, mut server) = tokio::io::duplex(4096);
        server
            .write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n")
            .await
            .expect("write");
        let refused = open_tunnel(
            &mut client,
            &proxy,
            "github.com",
            443,
            Duration::from_secs(1),
        )
        .await
        .expect_err("refused");
        assert_eq!(
            refused.detail,
            "the proxy refused CONNECT github.com:443: HTTP/1.1 403 Forbidden"
        );
        let mut sent = vec![0u8; 24];
        server.read_exact(&mut sent).await.expect("request");
        assert_eq!(&sent, b"CONNECT github.com:443 H");
        // A proxy that never answers.
        let (mut client, _server) = tokio::io::duplex(4096);
        let silent = open_tunnel(
            &mut client,
            &proxy,
            "github.com",
            443,
            Duration::from_millis(50),
        )
        .await
        .expect_err("timeout");
        assert_eq!(silent.code, code::PROXY_ERROR);
        assert_eq!(
            silent.detail,
            "the proxy did not answer CONNECT within 50 ms"
        );
    }
}
