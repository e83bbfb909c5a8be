//! The CONNECT request through the HTTP proxy the runner would use.
//!
//! The proxy and its `no_proxy` list are read by [`crate::proxy`] (the one parser, shared with
//! the passive capture). Here: the proxy's addresses, the `CONNECT name:port` request (with
//! `Proxy-Authorization: Basic` when the URL carries credentials), and the proxy's answer read
//! up to the end of its head, so the tunnel's first bytes are left for the TLS handshake.

use std::{net::SocketAddr, time::Duration};

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use super::{code, seconds};
use crate::proxy::ProxyConfig;

/// The largest CONNECT answer head read before giving up.
const MAX_HEAD: usize = 16 * 1024;

impl ProxyConfig {
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
    // The same reading of the status as the passive capture's (report::vocab).
    match crate::report::vocab::Reason::of_proxy_status(status) {
        None => Ok(()),
        Some(reason) => Err(Failure {
            code: reason.as_str(),
            detail: match reason {
                crate::report::vocab::Reason::ProxyRefused => {
                    format!("the proxy refused CONNECT {name}:{port}: {line}")
                }
                crate::report::vocab::Reason::ProxyAuthRequired => {
                    format!("the proxy wants credentials for CONNECT {name}:{port}: {line}")
                }
                crate::report::vocab::Reason::ProxyUpstreamFailed => {
                    format!("the proxy could not reach {name}:{port}: {line}")
                }
                _ => format!("the proxy answered CONNECT {name}:{port} with {line}"),
            },
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
    use crate::proxy::parse_proxy_url;

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
    fn status_line_parser_never_panics() {
        let samples = ["HTTP/1.1 200 OK\r\n\r\n", "\u{0}\u{7f}\u{e9}@:@:[[]]"];
        for sample in samples {
            for end in 0..=sample.len() {
                let _ = parse_status_line(&sample.as_bytes()[..end]);
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
                Some(code::PROXY_AUTH_REQUIRED),
            ),
            (
                b"HTTP/1.1 502 Bad Gateway\r\n\r\n",
                Some(code::PROXY_UPSTREAM_FAILED),
            ),
            (b"HTTP/1.1 302 Found\r\n\r\n", Some(code::PROXY_ERROR)),
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
