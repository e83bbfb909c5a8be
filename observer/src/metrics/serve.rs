//! The metrics endpoint: `GET /metrics` over HTTP/1.1 (hyper), and nothing else.
//!
//! The capture must never wait for a scraper. The page is rendered by a callback the daemon
//! gives (lock, render, unlock: a few milliseconds), on tokio's blocking pool so that waiting for
//! the lock never stalls the runtime the capture may share; the text is written to the client
//! after the lock is released, however slowly the client reads. Each connection is bounded:
//! [`ServeLimits`] caps the request head's size (larger heads get `431`), the time to send it,
//! the connection's whole life, and how many connections are served at once (more are closed at
//! once). Only `/metrics` exists (`404` otherwise); only `GET` and `HEAD` are allowed (`405`).
//!
//! The format follows the request's `Accept` header: OpenMetrics when it asks for
//! `application/openmetrics-text` (Prometheus does), Prometheus's classic text format 0.0.4
//! otherwise (curl, `promtool check metrics`).

use std::{convert::Infallible, io, net::SocketAddr, sync::Arc, time::Duration};

use http_body_util::Full;
use hyper::{
    body::{Bytes, Incoming},
    header, Method, Request, Response, StatusCode,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
    sync::Semaphore,
    task::JoinSet,
};

use super::expose::{classic_text, CLASSIC_CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE};

/// Why the endpoint could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "cannot listen for metrics on {addr}: {source} (choose another address or port for \
         --metrics, or stop what uses it)"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot use the metrics listener: {0}")]
    Listener(#[source] io::Error),
}

/// What one client may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeLimits {
    /// Bytes of a request's head (hyper's smallest buffer is 8 KiB).
    pub max_head_bytes: usize,
    /// Time to send a request's head, and to send the next one on a kept-alive connection.
    pub head_timeout: Duration,
    /// A connection's whole life.
    pub connection_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            max_head_bytes: 8192,
            head_timeout: Duration::from_secs(10),
            connection_timeout: Duration::from_secs(60),
            max_connections: 16,
        }
    }
}

/// Renders the page, in the OpenMetrics text format (what [`super::Metrics::render`] returns).
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// A bound metrics endpoint, not serving yet (so that a bad address fails before the capture
/// starts, and a test can learn the port it got).
pub struct MetricsServer {
    listener: TcpListener,
    limits: ServeLimits,
}

impl MetricsServer {
    /// Listens on `addr`.
    pub async fn bind(addr: SocketAddr) -> Result<Self, ServeError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        Ok(Self {
            listener,
            limits: ServeLimits::default(),
        })
    }

    /// Serves on a listener bound elsewhere (in another network namespace, say); it is made
    /// non-blocking here. Must be called within a tokio runtime.
    pub fn from_std(listener: std::net::TcpListener) -> Result<Self, ServeError> {
        listener
            .set_nonblocking(true)
            .map_err(ServeError::Listener)?;
        let listener = TcpListener::from_std(listener).map_err(ServeError::Listener)?;
        Ok(Self {
            listener,
            limits: ServeLimits::default(),
        })
    }

    pub fn with_limits(mut self, limits: ServeLimits) -> Self {
        self.limits = limits;
        self
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the future is dropped (the daemon stops it by dropping it; connections in
    /// flight are dropped with it).
    pub async fn run(self, render: Render) -> Result<(), ServeError> {
        let slots = Arc::new(Semaphore::new(self.limits.max_connections.max(1)));
        let mut connections = JoinSet::new();
        loop {
            while connections.try_join_next().is_some() {}
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, or a connection reset before it was accepted: wait a
                    // little rather than spin, and go on.
                    log::warn!("metrics: cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                // Too many at once: closed unanswered.
                continue;
            };
            let render = Arc::clone(&render);
            let limits = self.limits;
            connections.spawn(async move {
                let _permit = permit;
                connection(stream, render, limits).await;
            });
        }
    }
}

/// Listens on `addr` and serves `render`'s page until the future is dropped.
pub async fn serve(addr: SocketAddr, render: Render) -> Result<(), ServeError> {
    MetricsServer::bind(addr).await?.run(render).await
}

/// Serves one connection (any byte stream) within `limits`.
pub async fn connection<S>(stream: S, render: Render, limits: ServeLimits)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let render = Arc::clone(&render);
        async move { Ok::<_, Infallible>(respond(&request, render).await) }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.head_timeout)
        .max_buf_size(limits.max_head_bytes.max(8192));
    let serving = http.serve_connection(TokioIo::new(stream), service);
    // Whatever the client does, the connection ends within its time.
    let _ = tokio::time::timeout(limits.connection_timeout, serving).await;
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn respond(request: &Request<Incoming>, render: Render) -> Response<Full<Bytes>> {
    if request.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: the metrics are at /metrics\n",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are allowed on /metrics\n",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let openmetrics = request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let Ok(text) = tokio::task::spawn_blocking(move || render()).await else {
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "rendering the metrics failed: see the observer's log\n",
        );
    };
    let (body, content_type) = if openmetrics {
        (text, OPENMETRICS_CONTENT_TYPE)
    } else {
        (classic_text(&text), CLASSIC_CONTENT_TYPE)
    };
    let body = if request.method() == Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from(body)
    };
    let mut response = Response::new(Full::new(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}
