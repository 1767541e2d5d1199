//! Serving HTTP/1.1 with upgrades: the listener, the accept loop and the
//! bounds on connections that have not (or not yet) become WebSockets.
//!
//! - At most `max_connections` HTTP connections are open at once; one over
//!   it is closed as soon as it is accepted, and counted.
//! - An app with a WebSocket endpoint on a plain path reads a connection's
//!   first bytes itself: a whole upgrade request for the endpoint is
//!   answered by the upgrade's fast path (`ws/fast.rs`), anything else is
//!   served by hyper with the bytes already read.
//! - A request head must arrive within `header_read_timeout` (the first one
//!   of the connection's start, also when its first bytes were read ahead);
//!   a body within the request timeout (enforced where the body is read,
//!   see `RequestContext::bytes`).
//! - A failing `accept` (out of descriptors, say) backs off, doubling from
//!   10 ms to 1 s while it keeps failing, and is logged once per
//!   [`LOG_EVERY`] with the number of failures since, instead of once per
//!   attempt. Service resumes by itself when descriptors are free again.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use bytes::{Bytes, BytesMut};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

mod stream;

pub(crate) use stream::{Prefixed, Stream};

use crate::ws::fast::FastUpgrade;

/// Pending connections the kernel may queue before `accept`.
const LISTEN_BACKLOG: u32 = 4096;

/// The first pause after a failed `accept`; doubled while it keeps failing.
const BACKOFF_START: Duration = Duration::from_millis(10);
/// The longest pause after a failed `accept`.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one log line per this long about failing accepts.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(5);

/// The most a connection's first read takes (a browser's upgrade request
/// with its cookies fits; a longer head goes on to hyper).
const FIRST_READ: usize = 4096;

/// Bounds on HTTP connections (see [`Ori`](crate::Ori)'s setters).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HttpLimits {
    pub(crate) max_connections: usize,
    pub(crate) header_read_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(30),
        }
    }
}

/// Counters of the HTTP server, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct HttpCounters {
    /// HTTP connections open now (not WebSockets).
    pub(crate) open: AtomicU64,
    /// Connections closed at once because `max_connections` were open.
    pub(crate) refused: AtomicU64,
    /// Failed `accept` calls.
    pub(crate) accept_errors: AtomicU64,
    /// Requests answered 408 because their body did not arrive in time.
    pub(crate) request_timeouts: AtomicU64,
}

/// Binds a listener like `TcpListener::bind`, with a larger backlog.
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Everything the accept loop needs.
pub(crate) struct Serving {
    pub(crate) router: Router,
    /// HTTP connection tasks (their number is the open HTTP connections).
    pub(crate) conns: TaskTracker,
    /// Cancelled when the app stops accepting.
    pub(crate) shutdown: CancellationToken,
    pub(crate) limits: HttpLimits,
    /// The app's emitter, whose shared state holds the counters.
    pub(crate) emitter: crate::SocketEmitter,
    /// The WebSocket upgrade's fast path, when the app has an endpoint.
    pub(crate) fast: Option<Arc<dyn FastUpgrade>>,
}

/// Failed accepts: the back-off and the rate-limited log line.
struct AcceptFailures {
    backoff: Duration,
    unlogged: u64,
    last_log: Option<Instant>,
}

impl AcceptFailures {
    fn new() -> Self {
        Self {
            backoff: BACKOFF_START,
            unlogged: 0,
            last_log: None,
        }
    }

    /// Records one failure; returns how long to pause.
    fn failed(&mut self, error: &std::io::Error) -> Duration {
        self.unlogged += 1;
        let now = Instant::now();
        if self.last_log.is_none_or(|t| now - t >= LOG_EVERY) {
            tracing::warn!(
                error = %error,
                failures = self.unlogged,
                retry_in = ?self.backoff,
                "accept failed; backing off (logged at most every {LOG_EVERY:?})"
            );
            self.unlogged = 0;
            self.last_log = Some(now);
        }
        let pause = self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        pause
    }

    fn succeeded(&mut self) {
        self.backoff = BACKOFF_START;
    }
}

pub(crate) async fn accept_loop(listener: TcpListener, serving: Serving) {
    let Serving {
        router,
        conns,
        shutdown,
        limits,
        emitter,
        fast,
    } = serving;
    let counters = emitter.http_counters();
    let mut failures = AcceptFailures::new();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = shutdown.cancelled() => break,
        };
        let (tcp, remote) = match accepted {
            Ok(x) => x,
            Err(e) => {
                counters.accept_errors.fetch_add(1, Ordering::Relaxed);
                let pause = failures.failed(&e);
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = shutdown.cancelled() => break,
                }
                continue;
            }
        };
        failures.succeeded();
        if conns.len() >= limits.max_connections {
            // Dropped at once: the descriptor is free again before the
            // next accept.
            counters.refused.fetch_add(1, Ordering::Relaxed);
            drop(tcp);
            continue;
        }
        let _ = tcp.set_nodelay(true);
        let open = OpenConnection::new(emitter.clone());
        let one = serve_one(
            tcp,
            remote,
            router.clone(),
            fast.clone(),
            limits,
            shutdown.clone(),
        );
        conns.spawn(async move {
            let _open = open;
            one.await;
        });
    }
}

/// Serves one connection: offers its first bytes to the upgrade's fast
/// path, then (unless taken) serves it with hyper and the app's router
/// until it closes or the app stops.
pub(crate) async fn serve_one<S: Stream>(
    stream: S,
    remote: SocketAddr,
    router: Router,
    fast: Option<Arc<dyn FastUpgrade>>,
    limits: HttpLimits,
    shutdown: CancellationToken,
) {
    let accepted = tokio::time::Instant::now();
    let (stream, ahead) = match fast {
        None => (stream, Bytes::new()),
        Some(fast) => {
            let mut stream = stream;
            let mut first = BytesMut::with_capacity(FIRST_READ);
            let read = tokio::select! {
                r = tokio::time::timeout(limits.header_read_timeout, stream.read_buf(&mut first)) => r,
                () = shutdown.cancelled() => return,
            };
            if !matches!(read, Ok(Ok(n)) if n > 0) {
                // Timed out, failed, or closed before sending anything.
                return;
            }
            match stream.offer(&*fast, first, remote) {
                Ok(upgrade) => return upgrade.await,
                Err((stream, first)) => (stream, first.freeze()),
            }
        }
    };
    // hyper's head timer starts when it first reads, after the bytes read
    // ahead; while the first head is still incomplete in them, its deadline
    // from the connection's start is kept here.
    let first_head = (!ahead.is_empty() && !ahead.windows(4).any(|w| w == b"\r\n\r\n"))
        .then(|| Arc::new(AtomicBool::new(false)));
    let seen = first_head.clone();
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        if let Some(seen) = &seen {
            seen.store(true, Ordering::Relaxed);
        }
        req.extensions_mut().insert(ConnectInfo(remote));
        let mut router = router.clone();
        async move {
            Ok::<_, Infallible>(
                router
                    .call(req.map(Body::new))
                    .await
                    .unwrap_or_else(|e| match e {}),
            )
        }
    });
    let first_head_late = async {
        match &first_head {
            Some(seen) => {
                tokio::time::sleep_until(accepted + limits.header_read_timeout).await;
                if seen.load(Ordering::Relaxed) {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(Prefixed::new(ahead, stream)), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        // The first head is late: the connection is closed (dropped), as
        // hyper closes one whose head times out.
        () = first_head_late => {}
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Counts one open HTTP connection for as long as it lives.
struct OpenConnection(crate::SocketEmitter);

impl OpenConnection {
    fn new(emitter: crate::SocketEmitter) -> Self {
        emitter.http_counters().open.fetch_add(1, Ordering::Relaxed);
        Self(emitter)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.http_counters().open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn failing_accepts_back_off_and_log_once_per_interval() {
        let mut f = AcceptFailures::new();
        let e = std::io::Error::other("too many open files");
        let pauses: Vec<Duration> = (0..9).map(|_| f.failed(&e)).collect();
        assert_eq!(pauses[0], BACKOFF_START);
        assert_eq!(pauses[1], BACKOFF_START * 2);
        assert_eq!(*pauses.last().unwrap(), BACKOFF_MAX);
        // Logged once (the first), the other eight wait for the interval.
        assert_eq!(f.unlogged, 8);
        tokio::time::advance(LOG_EVERY).await;
        f.failed(&e);
        assert_eq!(
            f.unlogged, 0,
            "logged with the count once the interval passed"
        );
        f.succeeded();
        assert_eq!(f.failed(&e), BACKOFF_START);
    }
}
