//! The HTTP client of the test helpers: one request over a fresh
//! connection, the whole response read.

use std::future::Future;
use std::net::SocketAddr;

use axum::http::{HeaderMap, Request, StatusCode};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{checked, WAIT};

pub use axum::http::Method;

/// A response read by [`TestServer::request`](super::TestServer::request).
#[derive(Debug, Clone)]
pub struct TestResponse {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl TestResponse {
    /// The body as JSON. Panics if it is not JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        match serde_json::from_slice(&self.body) {
            Ok(value) => value,
            Err(e) => panic!(
                "response body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            ),
        }
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one HTTP/1.1 request over a fresh connection to `addr` and reads
/// the whole response. Panics if the connection fails or there is no
/// response within [`WAIT`].
pub fn http_request<'a>(
    addr: SocketAddr,
    method: Method,
    path: &'a str,
    headers: &'a [(&'a str, &'a str)],
    body: Bytes,
) -> impl Future<Output = TestResponse> + Send + 'a {
    checked(exchange(addr, method, path, headers, body))
}

/// [`http_request`], its failure as a message.
pub(super) async fn exchange(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<TestResponse, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("HTTP connect to {addr} failed: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(body))
        .map_err(|e| format!("invalid request: {e}"))?;
    let resp = tokio::time::timeout(WAIT, sender.send_request(req))
        .await
        .map_err(|_| format!("no HTTP response within {WAIT:?}"))?
        .map_err(|e| format!("HTTP request failed: {e}"))?;
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("reading the response body failed: {e}"))?
        .to_bytes();
    Ok(TestResponse {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}
