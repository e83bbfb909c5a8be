//! HTTP proxies as the runner configures them: one parser for `observer check` (which speaks
//! CONNECT through the proxy) and for the passive capture (which must know which proxies to
//! watch, [`discover`]).
//!
//! Why one parser: a proxy URL or a `no_proxy` list read two ways would make the check and the
//! capture disagree about the same runner. The rules follow the runner's own
//! (`src/Runner.Sdk/RunnerWebProxy.cs` in actions/runner):
//!
//! - HTTPS traffic takes `https_proxy`, or `HTTPS_PROXY` when the lower-case one is unset or
//!   empty; plain HTTP takes `http_proxy`, else `HTTP_PROXY` ([`first_set`]);
//! - `no_proxy` (else `NO_PROXY`) is a comma-separated list of names that go direct:
//!   `example.com` exempts `example.com` and every name under it; `.example.com` only the names
//!   under it; `*` every name; `host:port` applies only to that port. IP addresses are ignored,
//!   as the runner ignores them; loopback names always go direct.
//!
//! Only `http://` proxies are understood (the client speaks plain HTTP to them, so a CONNECT can
//! be sent by the check and read by the capture); a URL without a scheme is taken as `http://`,
//! as the runner takes it. Credentials in the URL (`http://user:pass@proxy:3128`,
//! percent-encoded) are kept for the check's `Proxy-Authorization` and never shown: messages use
//! [`redact`] and [`ProxyConfig::url`]. A proxy without a port is on port 80.
//!
//! Everything parsed here may come from another user's process (its environment, its files): it
//! is bounded ([`MAX_URL`]), validated (a host is a host name or an IP address), and never
//! panics.

pub mod discover;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

pub use self::discover::{
    discover, parse_explicit, DiscoverOptions, Discovery, ProxyEndpoint, WatchedProxy,
};

/// The longest proxy URL parsed; longer values are refused (a real one is well under 200 bytes).
pub const MAX_URL: usize = 2048;

/// Why a proxy setting cannot be used. The texts say what is wrong without repeating the value
/// (the caller says where it came from: `--proxy 10.0.0.1: needs a port, e.g. 10.0.0.1:3128`),
/// except for the URL forms, which show the URL without its credentials.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("empty: give ADDR:PORT, [IPv6]:PORT or a proxy URL such as http://proxy.example:3128")]
    Empty,
    #[error("longer than {MAX_URL} bytes ({len}): not a proxy URL")]
    TooLong { len: usize },
    #[error("proxy scheme {scheme:?} is not supported (only http:// proxies, with CONNECT)")]
    Scheme { scheme: String },
    #[error("no host in the proxy URL {url:?}")]
    NoHost { url: String },
    #[error("bad port in the proxy URL {url:?}")]
    BadPort { url: String },
    #[error("bad port {port:?}: a number from 1 to 65535")]
    BadPortNumber { port: String },
    #[error("the proxy host {host:?} is not a host name or an IP address")]
    BadHost { host: String },
    #[error("an IPv6 proxy address needs brackets, e.g. [{host}]:3128")]
    Ipv6NeedsBrackets { host: String },
    #[error("needs a port, e.g. {example}")]
    NeedsPort { example: String },
}

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
            || lower.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        loopback || self.no_proxy.iter().any(|rule| rule.matches(&lower, port))
    }

    /// The proxy as a URL, without credentials: `http://proxy.example:3128`.
    pub fn url(&self) -> String {
        http_url(&self.host, self.port)
    }
}

/// `http://host:port`, with brackets around an IPv6 address.
fn http_url(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("http://[{host}]:{port}")
    } else {
        format!("http://{host}:{port}")
    }
}

/// The first of two variables (lower case first, as the runner reads them) that is set and not
/// empty after trimming, with its name: `first_set(vars, ["https_proxy", "HTTPS_PROXY"])`.
pub fn first_set(
    vars: impl Fn(&str) -> Option<String>,
    names: [&'static str; 2],
) -> Option<(&'static str, String)> {
    names.into_iter().find_map(|name| {
        vars(name)
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
            .map(|value| (name, value))
    })
}

/// The proxy the runner would use for HTTPS, from environment variables (`vars` returns a
/// variable's value). `None` when no proxy is set.
pub fn proxy_from_env(vars: impl Fn(&str) -> Option<String>) -> Option<ProxyConfig> {
    let (source, url) = first_set(&vars, ["https_proxy", "HTTPS_PROXY"])?;
    let no_proxy = first_set(&vars, ["no_proxy", "NO_PROXY"])
        .map(|(_, list)| parse_no_proxy(&list))
        .unwrap_or_default();
    let mut config = parse_proxy_url(&url);
    config.source = source.to_owned();
    config.no_proxy = no_proxy;
    Some(config)
}

/// A proxy URL taken apart; `problem` is the first thing wrong with it.
struct ParsedUrl {
    host: String,
    port: Option<u16>,
    username: Option<String>,
    password: Option<String>,
    problem: Option<ProxyError>,
}

/// Parses `[scheme://][user[:password]@]host[:port][/...]` (a missing scheme is `http`).
fn parse_url(url: &str) -> ParsedUrl {
    let mut parsed = ParsedUrl {
        host: String::new(),
        port: None,
        username: None,
        password: None,
        problem: None,
    };
    if url.len() > MAX_URL {
        parsed.problem = Some(ProxyError::TooLong { len: url.len() });
        return parsed;
    }
    let rest = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some((scheme, _)) => {
            parsed.problem = Some(ProxyError::Scheme {
                scheme: scheme.chars().take(20).collect(),
            });
            return parsed;
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
            parsed.username = Some(percent_decode(user)).filter(|u| !u.is_empty());
            parsed.password = password.map(percent_decode).filter(|p| !p.is_empty());
            host_port
        }
        None => authority,
    };
    let (host, port, bracketed) = if let Some(inside) = host_port.strip_prefix('[') {
        match inside.split_once(']') {
            Some((host, after)) => (host, after.strip_prefix(':'), true),
            None => (inside, None, true),
        }
    } else if host_port.parse::<Ipv6Addr>().is_ok() {
        // `fd00::1` is all address: refused below with a hint about brackets.
        (host_port, None, false)
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port), false),
            None => (host_port, None, false),
        }
    };
    parsed.host = host.to_ascii_lowercase();
    if parsed.host.is_empty() {
        parsed.problem = Some(ProxyError::NoHost { url: redact(url) });
    } else if let Err(problem) = check_host(&parsed.host, bracketed) {
        parsed.problem = Some(problem);
    }
    match port.filter(|p| !p.is_empty()).map(str::parse::<u16>) {
        None => {}
        Some(Ok(port)) if port > 0 => parsed.port = Some(port),
        Some(_) => {
            parsed
                .problem
                .get_or_insert(ProxyError::BadPort { url: redact(url) });
        }
    }
    parsed
}

/// A host is an IPv6 address (in brackets), an IPv4 address, or a host name of letters,
/// digits, `-` and `_` in dot-separated labels (at most 253 bytes, labels of at most 63).
fn check_host(host: &str, bracketed: bool) -> Result<(), ProxyError> {
    let bad = || ProxyError::BadHost {
        host: host.chars().take(80).collect(),
    };
    if bracketed {
        return host.parse::<Ipv6Addr>().map(|_| ()).map_err(|_| bad());
    }
    if host.parse::<Ipv4Addr>().is_ok() {
        return Ok(());
    }
    if host.parse::<Ipv6Addr>().is_ok() {
        return Err(ProxyError::Ipv6NeedsBrackets {
            host: host.to_owned(),
        });
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.len() <= 253 && name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(bad())
    }
}

/// Parses a proxy URL the way the runner reads `https_proxy`. What is wrong with it is in
/// `unsupported`; the port is 80 when the URL has none.
pub fn parse_proxy_url(url: &str) -> ProxyConfig {
    let parsed = parse_url(url);
    ProxyConfig {
        source: String::new(),
        host: parsed.host,
        port: parsed.port.unwrap_or(80),
        username: parsed.username,
        password: parsed.password,
        unsupported: parsed.problem.map(|p| p.to_string()),
        no_proxy: Vec::new(),
    }
}

/// The URL with its credentials replaced by `***`, for messages.
pub fn redact(url: &str) -> String {
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
pub fn parse_no_proxy(list: &str) -> Vec<NoProxyRule> {
    let mut rules: Vec<NoProxyRule> = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let rule = if entry == "*" {
            NoProxyRule::All
        } else {
            let (host, port) = split_port(entry);
            let host = host.trim_end_matches('.').to_ascii_lowercase();
            if host.is_empty() || host.parse::<IpAddr>().is_ok() || host.contains('/') {
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
pub fn percent_decode(text: &str) -> String {
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
            ("proxy_1.local.:3128", "proxy_1.local.", 3128, None, None),
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
        let long = format!("http://{}.example:3128", "a".repeat(MAX_URL));
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
            ("http://proxy:65536", "bad port in the proxy URL"),
            (
                "http://pro xy:3128",
                "the proxy host \"pro xy\" is not a host name or an IP address",
            ),
            (
                "\"http://proxy:3128\"",
                "proxy scheme \"\\\"http\" is not supported",
            ),
            ("http://a..b:3128", "the proxy host \"a..b\" is not a host"),
            (
                "http://[proxy]:3128",
                "the proxy host \"proxy\" is not a host",
            ),
            (
                "http://fd00::1",
                "an IPv6 proxy address needs brackets, e.g. [fd00::1]:3128",
            ),
            (long.as_str(), "longer than 2048 bytes"),
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
        assert_eq!(redact("http://u:secret@proxy/x?y"), "http://***@proxy/x?y");
        assert_eq!(redact("u:secret@proxy:1"), "***@proxy:1");
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
    fn percent_decoding_keeps_bad_escapes() {
        assert_eq!(percent_decode("a%20b%2"), "a b%2");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
        assert_eq!(percent_decode("%"), "%");
    }

    #[test]
    fn parsers_never_panic() {
        let samples = [
            "http://user:p%4@[::1:3128/x?y#z",
            "%%%41%4",
            "[]:,.*:,[::1]:x,a:99999,\u{e9}.example:443",
            "\u{0}\u{7f}\u{e9}@:@:[[]]",
            "http://\u{e9}\u{e9}\u{e9}:\u{e9}@[\u{e9}]:\u{e9}",
        ];
        for sample in samples {
            for end in (0..=sample.len()).filter(|&i| sample.is_char_boundary(i)) {
                let cut = &sample[..end];
                let _ = parse_proxy_url(cut);
                let _ = parse_no_proxy(cut);
                let _ = percent_decode(cut);
                let _ = redact(cut);
                let _ = parse_explicit(cut);
            }
        }
    }
}
