//! One address, step by step: TCP connect, CONNECT through the proxy when there is one, and the
//! TLS handshake, each failure named by its reason code.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    path::Path,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    task::{Context as TaskContext, Poll},
    time::{Duration, Instant},
};

use rustls::{
    pki_types::{pem::PemObject as _, CertificateDer, ServerName},
    ClientConfig, RootCertStore,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tokio_rustls::TlsConnector;

use super::{code, millis, proxy::Failure, seconds, AddrCheck, CheckError, Context, Step};

/// The TLS client: the system's trust store plus `extra_ca`, with the ring provider.
pub(super) fn tls_config(extra_ca: Option<&Path>) -> Result<Arc<ClientConfig>, CheckError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = extra_ca {
        add_pem_file(&mut roots, path)?;
    }
    if roots.is_empty() {
        let problem = if native.errors.is_empty() {
            "no certificate found".to_owned()
        } else {
            native
                .errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        };
        return Err(CheckError::NoTrustAnchors { problem });
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CheckError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Adds every certificate of a PEM file to the trust store.
fn add_pem_file(roots: &mut RootCertStore, path: &Path) -> Result<(), CheckError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| CheckError::ReadCa {
        file: file.clone(),
        source,
    })?;
    let bad = |problem: String| CheckError::BadCa {
        file: file.clone(),
        problem,
    };
    let mut added = 0;
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|e| bad(format!("not PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("not a CA certificate: {e}")))?;
        added += 1;
    }
    if added == 0 {
        return Err(bad("no CERTIFICATE block".to_owned()));
    }
    Ok(())
}

/// Connects to the name's address and shakes hands.
pub(super) async fn direct(name: &str, addr: SocketAddr, context: &Context) -> AddrCheck {
    let _permit = context.permit().await;
    let mut check = AddrCheck::new(addr, false);
    let Some(stream) = connect(&mut check, addr, context.connect_timeout).await else {
        return check;
    };
    handshake(&mut check, stream, name, context).await;
    check
}

/// Connects to the proxy at `addr`, asks for a tunnel to the name, and shakes hands through it.
pub(super) async fn through_proxy(name: &str, addr: SocketAddr, context: &Context) -> AddrCheck {
    let _permit = context.permit().await;
    let mut check = AddrCheck::new(addr, true);
    let Some(proxy) = &context.proxy else {
        return check;
    };
    let Some(mut stream) = connect(&mut check, addr, context.connect_timeout).await else {
        return check;
    };
    let tunnel = super::proxy::open_tunnel(
        &mut stream,
        proxy,
        name,
        context.port,
        context.connect_timeout,
    )
    .await;
    if let Err(failure) = tunnel {
        fail(&mut check, Which::Proxy, failure);
        return check;
    }
    check.proxy = Step::Ok;
    handshake(&mut check, stream, name, context).await;
    check
}

#[derive(Clone, Copy)]
enum Which {
    Tcp,
    Proxy,
    Tls,
}

fn fail(check: &mut AddrCheck, which: Which, failure: Failure) {
    let step = Step::failed(failure.code);
    match which {
        Which::Tcp => check.tcp = step,
        Which::Proxy => check.proxy = step,
        Which::Tls => check.tls = step,
    }
    check.detail = Some(failure.detail);
}

/// The TCP connection, or `None` with the failure recorded in `check`.
async fn connect(check: &mut AddrCheck, addr: SocketAddr, wait: Duration) -> Option<TcpStream> {
    let started = Instant::now();
    match tokio::time::timeout(wait, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => {
            check.tcp = Step::Ok;
            check.connect_ms = Some(millis(started.elapsed()));
            Some(stream)
        }
        Ok(Err(e)) => {
            let failure = Failure {
                code: connect_error_code(&e, addr.ip()),
                detail: e.to_string(),
            };
            fail(check, Which::Tcp, failure);
            None
        }
        Err(_) => {
            let failure = Failure {
                code: code::TCP_TIMEOUT,
                detail: format!(
                    "no answer to the connection request within {}",
                    seconds(wait)
                ),
            };
            fail(check, Which::Tcp, failure);
            None
        }
    }
}

/// The reason code of a failed `connect`.
fn connect_error_code(error: &io::Error, ip: IpAddr) -> &'static str {
    match error.raw_os_error() {
        Some(libc::ECONNREFUSED) => code::TCP_RESET,
        Some(libc::ENETUNREACH | libc::EADDRNOTAVAIL) if ip.is_ipv6() => code::IPV6_UNAVAILABLE,
        Some(libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EACCES | libc::EPERM) => {
            code::TCP_UNREACHABLE
        }
        Some(libc::ETIMEDOUT) => code::TCP_TIMEOUT,
        _ => code::TCP_ERROR,
    }
}

/// The TLS handshake with SNI `name`, its outcome recorded in `check`.
async fn handshake<S>(check: &mut AddrCheck, stream: S, name: &str, context: &Context)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let server_name = match ServerName::try_from(name.to_owned()) {
        Ok(server_name) => server_name,
        Err(e) => {
            let detail = format!("{name:?} cannot be sent as a TLS server name: {e}");
            fail(
                check,
                Which::Tls,
                Failure {
                    code: code::TLS_ERROR,
                    detail,
                },
            );
            return;
        }
    };
    let received = Arc::new(AtomicU64::new(0));
    let stream = Counting {
        inner: stream,
        received: Arc::clone(&received),
    };
    let connector = TlsConnector::from(Arc::clone(&context.tls));
    let started = Instant::now();
    let outcome =
        tokio::time::timeout(context.tls_timeout, connector.connect(server_name, stream)).await;
    let received = received.load(Ordering::Relaxed);
    match outcome {
        Ok(Ok(_tls)) => {
            check.tls = Step::Ok;
            check.tls_ms = Some(millis(started.elapsed()));
        }
        Ok(Err(e)) => {
            let failure = classify_tls_error(&e, received);
            if failure.code == code::TLS_CERT_INVALID {
                check.tls_ms = Some(millis(started.elapsed()));
            }
            fail(check, Which::Tls, failure);
        }
        Err(_) => {
            let detail = if received == 0 {
                format!(
                    "no answer to the ClientHello within {}",
                    seconds(context.tls_timeout)
                )
            } else {
                format!(
                    "the server answered ({received} bytes) but did not finish the handshake within {}",
                    seconds(context.tls_timeout)
                )
            };
            fail(
                check,
                Which::Tls,
                Failure {
                    code: code::TLS_TIMEOUT,
                    detail,
                },
            );
        }
    }
}

/// The reason code of a failed handshake, given how many bytes the server had sent.
fn classify_tls_error(error: &io::Error, received: u64) -> Failure {
    if let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        let code = match tls {
            rustls::Error::InvalidCertificate(_) => code::TLS_CERT_INVALID,
            _ => code::TLS_ERROR,
        };
        return Failure {
            code,
            detail: tls.to_string(),
        };
    }
    let cut = matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::BrokenPipe
    );
    let how = match error.kind() {
        io::ErrorKind::UnexpectedEof => "closed".to_owned(),
        io::ErrorKind::ConnectionReset => "reset".to_owned(),
        _ => format!("cut ({error})"),
    };
    if cut && received == 0 {
        Failure {
            code: code::TLS_RESET,
            detail: format!(
                "the connection was {how} after the ClientHello, before any answer from the server"
            ),
        }
    } else if cut {
        Failure {
            code: code::TLS_ERROR,
            detail: format!(
                "the connection was {how} during the handshake, after {received} bytes from the server"
            ),
        }
    } else {
        Failure {
            code: code::TLS_ERROR,
            detail: error.to_string(),
        }
    }
}

/// A stream that counts the bytes read from it, to tell "cut before any server data" from
/// "cut during the handshake".
struct Counting<S> {
    inner: S,
    received: Arc<AtomicU64>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counting<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len().saturating_sub(before);
        self.received.fetch_add(read as u64, Ordering::Relaxed);
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counting<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::tests::{context, context_with_ca, TlsServer};
    use tokio::{io::AsyncReadExt as _, net::TcpListener};

    const LOCAL: &str = "127.0.0.1:0";

    #[test]
    fn connect_errors() {
        let v4: IpAddr = "192.0.2.1".parse().expect("ip");
        let v6: IpAddr = "2001:db8::1".parse().expect("ip");
        let os = io::Error::from_raw_os_error;
        assert_eq!(
            connect_error_code(&os(libc::ECONNREFUSED), v4),
            code::TCP_RESET
        );
        assert_eq!(
            connect_error_code(&os(libc::EHOSTUNREACH), v4),
            code::TCP_UNREACHABLE
        );
        assert_eq!(
            connect_error_code(&os(libc::ENETUNREACH), v4),
            code::TCP_UNREACHABLE
        );
        assert_eq!(
            connect_error_code(&os(libc::EACCES), v4),
            code::TCP_UNREACHABLE
        );
        assert_eq!(
            connect_error_code(&os(libc::EPERM), v4),
            code::TCP_UNREACHABLE
        );
        assert_eq!(
            connect_error_code(&os(libc::ENETUNREACH), v6),
            code::IPV6_UNAVAILABLE
        );
        assert_eq!(
            connect_error_code(&os(libc::EHOSTUNREACH), v6),
            code::TCP_UNREACHABLE
        );
        assert_eq!(
            connect_error_code(&os(libc::ETIMEDOUT), v4),
            code::TCP_TIMEOUT
        );
        assert_eq!(connect_error_code(&os(libc::EINVAL), v4), code::TCP_ERROR);
    }

    #[test]
    fn tls_errors() {
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof");
        assert_eq!(classify_tls_error(&eof, 0).code, code::TLS_RESET);
        assert_eq!(classify_tls_error(&eof, 90).code, code::TLS_ERROR);
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(classify_tls_error(&reset, 0).code, code::TLS_RESET);
        let cert = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let failure = classify_tls_error(&cert, 900);
        assert_eq!(failure.code, code::TLS_CERT_INVALID);
        assert_eq!(failure.detail, "invalid peer certificate: UnknownIssuer");
        let alert = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure),
        );
        assert_eq!(classify_tls_error(&alert, 7).code, code::TLS_ERROR);
    }

    #[test]
    fn extra_ca_files() {
        let dir = std::env::temp_dir().join(format!("observer-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut roots = RootCertStore::empty();
        let missing = dir.join("missing.pem");
        assert!(matches!(
            add_pem_file(&mut roots, &missing),
            Err(CheckError::ReadCa { .. })
        ));
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not pem\n").expect("write");
        assert_eq!(
            add_pem_file(&mut roots, &empty)
                .expect_err("empty")
                .to_string(),
            format!(
                "the CA file {} is not usable: no CERTIFICATE block",
                empty.display()
            )
        );
        let good = dir.join("ca.pem");
        let cert = rcgen::generate_simple_self_signed(vec!["ca.test".to_owned()]).expect("cert");
        std::fs::write(&good, cert.cert.pem()).expect("write");
        add_pem_file(&mut roots, &good).expect("added");
        assert_eq!(roots.len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn refused_port_is_tcp_reset() {
        // Bind, note the port, close: nothing listens there any more.
        let port = TcpListener::bind(LOCAL)
            .await
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let ctx = context(None, Duration::from_secs(1));
        let check = direct("closed.test", ([127, 0, 0, 1], port).into(), &ctx).await;
        assert_eq!(check.tcp, Step::failed(code::TCP_RESET), "{check:?}");
        assert_eq!(check.tls, Step::Skipped);
        assert!(!check.reached());
    }

    #[tokio::test]
    async fn reset_after_client_hello_is_tls_reset() {
        let listener = TcpListener::bind(LOCAL).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut hello = [0u8; 5];
            stream.read_exact(&mut hello).await.expect("record header");
            stream.set_zero_linger().expect("linger");
            drop(stream); // RST, as an SNI-filtering firewall does.
            hello
        });
        let ctx = context(None, Duration::from_secs(2));
        let check = direct("filtered.test", addr, &ctx).await;
        assert_eq!(check.tcp, Step::Ok);
        assert_eq!(check.tls, Step::failed(code::TLS_RESET), "{check:?}");
        assert!(check.connect_ms.is_some());
        assert_eq!(check.tls_ms, None);
        // It was a TLS handshake record.
        assert_eq!(server.await.expect("server")[0], 0x16);
    }

    #[tokio::test]
    async fn close_after_client_hello_is_tls_reset() {
        let listener = TcpListener::bind(LOCAL).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut hello = [0u8; 5];
            let _ = stream.read_exact(&mut hello).await;
            // FIN instead of RST.
        });
        let ctx = context(None, Duration::from_secs(2));
        let check = direct("filtered.test", addr, &ctx).await;
        assert_eq!(check.tls, Step::failed(code::TLS_RESET), "{check:?}");
    }

    #[tokio::test]
    async fn silent_server_is_tls_timeout() {
        let listener = TcpListener::bind(LOCAL).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            // Keep the connection open and say nothing.
            tokio::time::sleep(Duration::from_secs(2)).await;
            drop(stream);
        });
        let ctx = context(None, Duration::from_millis(200));
        let started = Instant::now();
        let check = direct("silent.test", addr, &ctx).await;
        assert_eq!(check.tls, Step::failed(code::TLS_TIMEOUT), "{check:?}");
        assert_eq!(
            check.detail.as_deref(),
            Some("no answer to the ClientHello within 200 ms")
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        server.abort();
    }

    #[tokio::test]
    async fn self_signed_server_needs_the_extra_ca() {
        let server = TlsServer::start(&["good.test"]).await;
        let trusted = context_with_ca(None, Duration::from_secs(2), Some(&server.ca_pem));
        let check = direct("good.test", server.addr, &trusted).await;
        assert_eq!(
            (&check.tcp, &check.tls),
            (&Step::Ok, &Step::Ok),
            "{check:?}"
        );
        assert!(check.tls_ms.is_some());
        assert_eq!(check.failure(), None);

        // The same server under another name: the certificate does not match.
        let wrong = direct("other.test", server.addr, &trusted).await;
        assert_eq!(wrong.tls, Step::failed(code::TLS_CERT_INVALID), "{wrong:?}");
        assert!(wrong
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("certificate"));

        // Without the CA: reached, but not trusted.
        let untrusted = context(None, Duration::from_secs(2));
        let check = direct("good.test", server.addr, &untrusted).await;
        assert_eq!(check.tls, Step::failed(code::TLS_CERT_INVALID), "{check:?}");
        assert_eq!(
            check.detail.as_deref(),
            Some("invalid peer certificate: UnknownIssuer")
        );
        assert!(check.reached());
    }
}
