//! The accept loop: hyper's connection builder under the router, with the
//! bounds a public server needs that `axum::serve` does not offer. Every
//! connection is bounded in time whatever its client does, and in number:
//!
//! - a connection with no request under way and no byte moving for
//!   `idle_timeout` is closed (an idle keep-alive, a client that stopped
//!   reading an answer);
//! - a request head must be complete within `header_timeout` of its first
//!   byte (a head dripped in byte by byte);
//! - past `max_connections`, a new connection is closed at once and the
//!   others go on;
//! - a TLS handshake must be done within `header_timeout` too;
//! - what hyper refuses itself (malformed framing, a head past its
//!   buffers) never reaches the router: each is counted in
//!   `ferry_http_rejected_total{reason}` and logged with the client.
//!
//! Request bodies are bounded by the router's body timeout, and refused
//! bodies by the drain bounds of the handlers that drain them.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::telemetry::Metrics;

/// The most header lines hyper parses before refusing a head itself: above
/// ferry's own limit ([`super::limits::MAX_HEADERS`]), so that a head a
/// little over it gets ferry's envelope, and no higher, because hyper sets
/// up this many slots for every request (2,048 cost 5 to 8% of part-URL
/// requests per second).
const HYPER_MAX_HEADERS: usize = 128;
/// The most a connection's read buffer grows to (hyper's default is about
/// 400 KiB): part bodies stream through it, and with 64 PUTs in flight
/// the default buffers alone took 40 MiB. 128 KiB reads cost no more CPU.
/// It also bounds a request's head, far above ferry's own limits.
const HYPER_MAX_BUFFER: usize = 128 * 1024;

/// How long connections may wait and how many there may be.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// How long requests in flight get to finish once shutdown begins.
    pub shutdown_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops
/// accepting and gives the connections up to the shutdown timeout to finish
/// what they are doing. With `tls`, each connection's handshake runs in its
/// own task, bounded by the header timeout, so a slow one holds up no other.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The header timeout is ferry's own (it starts at a head's first byte,
    // not when the connection goes idle): hyper's is off.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_headers(HYPER_MAX_HEADERS)
        .max_buf_size(HYPER_MAX_BUFFER);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before
                    // it was accepted: wait a little rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics.record_rejected("max_connections");
            tracing::debug!(client_addr = %peer, "refused a connection: at --max-connections");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            peer,
            activity: Arc::new(Activity::new()),
            app: app.clone(),
            builder: builder.clone(),
            watcher: graceful.watcher(),
            metrics: metrics.clone(),
            limits,
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            let stream = Watched { stream, activity: connection.activity.clone() };
            match tls {
                None => connection.serve(stream).await,
                Some(acceptor) => match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => connection.serve(stream).await,
                    Ok(Err(e)) => connection.refused_handshake(&e.to_string()),
                    Err(_) => connection.refused_handshake("no handshake within the header timeout"),
                },
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_timeout, graceful.shutdown()).await.is_err() {
        tracing::warn!(timeout = ?limits.shutdown_timeout, "requests still in flight after the shutdown timeout; stopping anyway");
    }
}

/// One accepted connection, and what serving it needs.
struct Connection {
    peer: SocketAddr,
    activity: Arc<Activity>,
    app: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: Watcher,
    metrics: Arc<Metrics>,
    limits: ConnectionLimits,
}

impl Connection {
    /// Serves requests on `io` (the socket, or TLS over it) until the
    /// client closes it, a bound expires, or shutdown ends it.
    async fn serve<I: AsyncRead + AsyncWrite + Unpin + Send + 'static>(self, io: I) {
        let Self { peer, activity, app, builder, watcher, metrics, limits } = self;
        let service = hyper::service::service_fn({
            let activity = activity.clone();
            move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                let running = activity.request_started();
                // A router is always ready: no poll_ready is needed.
                let response = tower_service::Service::call(&mut app.clone(), request.map(Body::new));
                async move {
                    let response = response.await;
                    drop(running);
                    response
                }
            }
        });
        let connection = watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(io), service).into_owned());
        let outcome = tokio::select! {
            outcome = connection => outcome,
            reason = activity.expired(limits) => {
                if reason == "header_timeout" {
                    metrics.record_rejected(reason);
                }
                tracing::info!(target: "ferry::request", client_addr = %peer, reason, "closed a connection");
                Ok(())
            }
        };
        if let Err(e) = outcome {
            refused_by_hyper(&metrics, peer, e.as_ref());
        }
    }

    fn refused_handshake(&self, error: &str) {
        self.metrics.record_rejected("tls_handshake");
        tracing::info!(target: "ferry::request", client_addr = %self.peer, error, "a TLS handshake failed");
    }
}

/// Counts and logs a connection that ended in an error hyper saw itself: a
/// request it refused before the router (answered with its own bare status),
/// or a client that went away (not worth a line).
fn refused_by_hyper(metrics: &Metrics, peer: SocketAddr, error: &(dyn std::error::Error + 'static)) {
    let Some(error) = error.downcast_ref::<hyper::Error>() else { return };
    if !error.is_parse() && !error.is_parse_too_large() {
        tracing::debug!(client_addr = %peer, error = %error, "connection ended");
        return;
    }
    let text = error.to_string();
    let reason = if text.contains("URI too long") {
        "uri_too_long"
    } else if error.is_parse_too_large() {
        "head_too_large"
    } else if text.contains("content-length") || text.contains("transfer-encoding") {
        "bad_framing"
    } else {
        "bad_request"
    };
    metrics.record_rejected(reason);
    tracing::info!(target: "ferry::request", client_addr = %peer, reason, error = %text, "the HTTP parser refused a request");
}

/// What one connection is doing, for its deadlines. Times are milliseconds
/// since the connection was accepted.
struct Activity {
    accepted: Instant,
    /// Requests being handled (more than one only with HTTP/2).
    requests: AtomicUsize,
    /// When a byte last moved either way.
    last_io: AtomicU64,
    /// When the first byte of the next request's head arrived, while no
    /// request was being handled; `NONE` otherwise.
    head_started: AtomicU64,
    /// Told when a request starts or ends, so the deadline is recomputed.
    changed: Notify,
}

const NONE: u64 = u64::MAX;

impl Activity {
    fn new() -> Self {
        Self {
            accepted: Instant::now(),
            requests: AtomicUsize::new(0),
            last_io: AtomicU64::new(0),
            head_started: AtomicU64::new(NONE),
            changed: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        self.accepted.elapsed().as_millis() as u64
    }

    fn moved(&self, read: bool) {
        let now = self.now();
        self.last_io.store(now, Ordering::Relaxed);
        if read && self.requests.load(Ordering::Relaxed) == 0 {
            let _ = self.head_started.compare_exchange(NONE, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    fn request_started(self: &Arc<Self>) -> Running {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(NONE, Ordering::Relaxed);
        self.changed.notify_one();
        Running(self.clone())
    }

    /// Resolves, with the reason, once the connection has outlived a bound.
    async fn expired(&self, limits: ConnectionLimits) -> &'static str {
        loop {
            if self.requests.load(Ordering::Relaxed) > 0 {
                self.changed.notified().await;
                continue;
            }
            let head_started = self.head_started.load(Ordering::Relaxed);
            let (deadline, reason) = if head_started != NONE {
                (head_started + limits.header_timeout.as_millis() as u64, "header_timeout")
            } else {
                (self.last_io.load(Ordering::Relaxed) + limits.idle_timeout.as_millis() as u64, "idle_timeout")
            };
            let now = self.now();
            if now >= deadline {
                return reason;
            }
            let wake = tokio::time::Instant::now() + Duration::from_millis(deadline - now);
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                () = self.changed.notified() => {}
            }
        }
    }
}

/// A request being handled; dropping it ends it.
struct Running(Arc<Activity>);

impl Drop for Running {
    fn drop(&mut self) {
        let activity = &self.0;
        activity.last_io.store(activity.now(), Ordering::Relaxed);
        activity.requests.fetch_sub(1, Ordering::Relaxed);
        activity.changed.notify_one();
    }
}

/// The connection's socket, noting when bytes move.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.moved(true);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.moved(false);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.moved(false);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
