//! The upgrade's fast path. When the first bytes the accept loop reads of
//! a connection hold a whole `GET` on HTTP/1.1 for the WebSocket path, the
//! upgrade is answered here, without hyper's connection, axum's router and
//! the header map they build: the head is parsed by `httparse` (hyper's
//! own parser) into borrowed slices, checked by the same
//! [`check`](super::handshake::check) as a routed upgrade, admitted by the
//! same [`admit`](super::upgrade::admit) and answered with the same status,
//! headers and body (no `date` header). A refusal then closes the
//! connection (said with `connection: close`), where hyper would read a
//! next request.
//!
//! Anything else is given back and served by hyper with the bytes already
//! read: a head not complete in the first read, another method, path or
//! version, a body, more than [`MAX_HEADERS`] headers, a target or (for an
//! upgrade handler) a header the `http` types would not take. An upgrade
//! handler is given the same [`UpgradeRequest`] either way.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use super::handshake::{self, Refusal};
use super::options::UpgradeRequest;
use super::upgrade::{admit, start, Admitted, Decided, WsRuntime};
use crate::server::Stream;

/// Headers the fast path reads; a head with more goes to hyper.
pub(crate) const MAX_HEADERS: usize = 32;

/// A connection taken by the fast path (the rest of its upgrade), or given
/// back with its first bytes.
pub(crate) type Offered<S> = Result<Pin<Box<dyn Future<Output = ()> + Send>>, (S, BytesMut)>;

/// The fast path as the accept loop sees it, for each kind of stream.
pub(crate) trait FastUpgrade: Send + Sync {
    /// Offers a TCP connection and its first bytes.
    fn tcp(
        &self,
        stream: tokio::net::TcpStream,
        first: BytesMut,
        remote: SocketAddr,
    ) -> Offered<tokio::net::TcpStream>;

    /// Offers an in-memory connection (the fuzz harness's).
    #[cfg(feature = "fuzzing")]
    fn duplex(
        &self,
        stream: tokio::io::DuplexStream,
        first: BytesMut,
        remote: SocketAddr,
    ) -> Offered<tokio::io::DuplexStream>;
}

/// The fast path of one WebSocket endpoint.
pub(crate) struct FastPath<D> {
    rt: Arc<WsRuntime<D>>,
    path: Box<str>,
}

impl<D: Send + Sync + 'static> FastPath<D> {
    /// The fast path of the endpoint at `path`; none when the path is a
    /// pattern (captures or a wildcard), which only axum's router matches.
    pub(crate) fn new(rt: Arc<WsRuntime<D>>, path: &str) -> Option<Self> {
        let plain = path.starts_with('/') && !path.contains(['{', '}', '*', '?', '#', '%']);
        plain.then(|| Self {
            rt,
            path: path.into(),
        })
    }

    /// Whether a request target is the endpoint's path, with or without a
    /// query, as the router matches it.
    fn on_path(&self, target: &str) -> bool {
        target
            .strip_prefix(&*self.path)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('?'))
    }

    fn take<S: Stream>(&self, stream: S, first: BytesMut, remote: SocketAddr) -> Offered<S> {
        let started = std::time::Instant::now();
        let rt = &self.rt;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut head = httparse::Request::new(&mut headers);
        let Ok(httparse::Status::Complete(head_len)) = head.parse(&first) else {
            return Err((stream, first));
        };
        let ours = head.method == Some("GET")
            && head.version == Some(1)
            && head.path.is_some_and(|p| self.on_path(p))
            && !head.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("content-length")
                    || h.name.eq_ignore_ascii_case("transfer-encoding")
            });
        if !ours {
            return Err((stream, first));
        }
        // A target the `http` types refuse is hyper's to answer (400).
        let Some(Ok(uri)) = head.path.map(Uri::try_from) else {
            return Err((stream, first));
        };
        let remote_addr = Some(remote);
        // What an upgrade handler or an authenticator is given, built only
        // for them.
        let mut request = None;
        if rt.upgrade.is_some() || rt.authenticator.is_some() {
            match owned_request(&head, uri, remote_addr) {
                Some(r) => request = Some(r),
                None => return Err((stream, first)),
            }
        }
        let asked = handshake::check(&head, &rt.limits, rt.shutting_down());
        // Copied (usually nothing): the first read's buffer must not live
        // as long as the connection.
        let inbuf = BytesMut::from(&first[head_len..]);
        drop(first);
        let rt = rt.clone();
        Ok(Box::pin(async move {
            let mut stream = stream;
            let asked = match asked {
                Ok(asked) => asked,
                Err(refusal) => return refuse(stream, refusal).await,
            };
            // With an authenticator the request may be kept for it; the
            // handler then gets a copy.
            let keep = rt.authenticator.is_some();
            let given = || {
                let taken = if keep {
                    request.clone()
                } else {
                    request.take()
                };
                taken.unwrap_or_else(|| unreachable_request(remote_addr))
            };
            let (decided, slot) = match admit(&rt, remote_addr, given).await {
                Ok(admitted) => admitted,
                Err(refusal) => return refuse(stream, refusal).await,
            };
            let admitted = match decided {
                Decided::Ready(accepted) => Admitted::Ready(accepted),
                Decided::Pending => Admitted::Pending(Box::new(
                    request.unwrap_or_else(|| unreachable_request(remote_addr)),
                )),
            };
            rt.emitter.metrics().observe_upgrade(started.elapsed());
            if stream.write_all(&asked.raw()).await.is_err() {
                return;
            }
            let deflate = asked.deflate.map(|(agreed, _)| agreed);
            let task_guard = rt.tasks.token();
            tokio::spawn(start(
                slot,
                admitted,
                deflate,
                remote_addr,
                stream,
                inbuf,
                task_guard,
            ));
        }))
    }
}

impl<D: Send + Sync + 'static> FastUpgrade for FastPath<D> {
    fn tcp(
        &self,
        stream: tokio::net::TcpStream,
        first: BytesMut,
        remote: SocketAddr,
    ) -> Offered<tokio::net::TcpStream> {
        self.take(stream, first, remote)
    }

    #[cfg(feature = "fuzzing")]
    fn duplex(
        &self,
        stream: tokio::io::DuplexStream,
        first: BytesMut,
        remote: SocketAddr,
    ) -> Offered<tokio::io::DuplexStream> {
        self.take(stream, first, remote)
    }
}

/// The request an upgrade handler or authenticator is given, owning its
/// bytes; `None` when a part is not valid for the `http` types (hyper then
/// answers the request).
fn owned_request(
    head: &httparse::Request<'_, '_>,
    uri: Uri,
    remote_addr: Option<SocketAddr>,
) -> Option<UpgradeRequest> {
    let mut headers = HeaderMap::with_capacity(head.headers.len());
    for h in head.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        headers.append(name, HeaderValue::from_bytes(h.value).ok()?);
    }
    Some(UpgradeRequest {
        method: Method::GET,
        uri,
        headers,
        remote_addr,
    })
}

/// Stands in for the request where it was built (`take` builds it whenever
/// a handler or an authenticator may ask for it), so that no input can
/// make the server panic.
fn unreachable_request(remote_addr: Option<SocketAddr>) -> UpgradeRequest {
    debug_assert!(false, "the fast path's request is built for its users");
    UpgradeRequest {
        method: Method::GET,
        uri: Uri::default(),
        headers: HeaderMap::new(),
        remote_addr,
    }
}

/// Answers a refused upgrade and closes the connection.
async fn refuse<S: Stream>(mut stream: S, refusal: Refusal) {
    if stream.write_all(&refusal.raw()).await.is_ok() {
        let _ = stream.shutdown().await;
    }
}
