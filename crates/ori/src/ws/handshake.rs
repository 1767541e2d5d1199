//! The checks of an opening handshake, on any request head: the one hyper
//! parsed (an upgrade routed by axum) or the one the accept loop's fast
//! path parsed itself. Both paths ask the same questions through [`Head`],
//! so they refuse the same requests with the same answers.

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};
use base64::Engine as _;
use ori_core::codec::deflate;
use sha1::{Digest, Sha1};

use super::limits::Limits;
use crate::http::{error_body, error_response};

const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a client key (RFC 6455 section 4.2.2).
pub(crate) fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// What the handshake reads of a request head.
pub(crate) trait Head {
    /// Whether it is a `GET` on HTTP/1.1.
    fn is_get_on_http11(&self) -> bool;
    /// The values of header `name`, in order.
    fn values<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a [u8]> + 'a;
}

impl<B> Head for Request<B> {
    fn is_get_on_http11(&self) -> bool {
        self.method() == Method::GET && self.version() == Version::HTTP_11
    }

    fn values<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers()
            .get_all(name)
            .into_iter()
            .map(HeaderValue::as_bytes)
    }
}

impl Head for httparse::Request<'_, '_> {
    fn is_get_on_http11(&self) -> bool {
        self.method == Some("GET") && self.version == Some(1)
    }

    fn values<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name.as_str()))
            .map(|h| h.value)
    }
}

/// An upgrade refused: the status and the reason of its JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) reason: &'static str,
}

impl Refusal {
    pub(crate) const fn new(status: StatusCode, reason: &'static str) -> Self {
        Self { status, reason }
    }

    /// The response, as a routed upgrade answers it.
    pub(crate) fn response(self) -> Response<Body> {
        let mut resp = error_response(self.status, self.reason);
        if self.status == StatusCode::UPGRADE_REQUIRED {
            resp.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
        }
        resp
    }

    /// The same response as raw bytes, for the fast path, which then
    /// closes the connection (said in the response).
    pub(crate) fn raw(self) -> Vec<u8> {
        let body = error_body(self.reason);
        let mut out = Vec::with_capacity(160 + body.len());
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(self.status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\ncontent-type: application/json\r\n");
        if self.status == StatusCode::UPGRADE_REQUIRED {
            out.extend_from_slice(b"sec-websocket-version: 13\r\n");
        }
        out.extend_from_slice(b"connection: close\r\ncontent-length: ");
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(body.as_bytes());
        out
    }
}

/// What a checked upgrade request asks for.
pub(crate) struct Asked {
    /// The `Sec-WebSocket-Accept` value answering its key.
    pub(crate) accept: String,
    /// permessage-deflate, when offered and enabled: the agreed parameters
    /// and the `Sec-WebSocket-Extensions` answer.
    pub(crate) deflate: Option<(deflate::Agreed, String)>,
}

impl Asked {
    /// The 101, as a routed upgrade answers it.
    pub(crate) fn response(&self) -> Response<Body> {
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(v) = HeaderValue::from_str(&self.accept) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        if let Some(Ok(v)) = self
            .deflate
            .as_ref()
            .map(|(_, answer)| HeaderValue::from_str(answer))
        {
            h.insert(header::SEC_WEBSOCKET_EXTENSIONS, v);
        }
        resp
    }

    /// The same 101 as raw bytes, for the fast path.
    pub(crate) fn raw(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(192);
        out.extend_from_slice(
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\
              connection: Upgrade\r\nsec-websocket-accept: ",
        );
        out.extend_from_slice(self.accept.as_bytes());
        if let Some((_, answer)) = &self.deflate {
            out.extend_from_slice(b"\r\nsec-websocket-extensions: ");
            out.extend_from_slice(answer.as_bytes());
        }
        out.extend_from_slice(b"\r\n\r\n");
        out
    }
}

/// Checks an upgrade request per RFC 6455 section 4.2.1 (a `GET` on
/// HTTP/1.1 with `Host`, `Upgrade: websocket`, `Connection: Upgrade`,
/// version 13 and exactly one `Sec-WebSocket-Key` that is the base64 of 16
/// bytes), then the server's state and the allowed origins; negotiates
/// compression.
pub(crate) fn check(
    head: &impl Head,
    limits: &Limits,
    shutting_down: bool,
) -> Result<Asked, Refusal> {
    if !head.is_get_on_http11() {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "A WebSocket upgrade is a GET on HTTP/1.1",
        ));
    }
    if !has_token(head, &header::UPGRADE, b"websocket")
        || !has_token(head, &header::CONNECTION, b"upgrade")
    {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "Expected a WebSocket upgrade request",
        ));
    }
    if first(head, &header::SEC_WEBSOCKET_VERSION) != Some(b"13") {
        return Err(Refusal::new(
            StatusCode::UPGRADE_REQUIRED,
            "Unsupported WebSocket version (need 13)",
        ));
    }
    if first(head, &header::HOST).is_none_or(<[u8]>::is_empty) {
        return Err(Refusal::new(StatusCode::BAD_REQUEST, "Missing Host header"));
    }
    let mut keys = head.values(&header::SEC_WEBSOCKET_KEY);
    let key = match (keys.next(), keys.next()) {
        (Some(key), None) if is_base64_of_16_bytes(key) => key,
        _ => {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "Missing or invalid Sec-WebSocket-Key",
            ))
        }
    };
    if shutting_down {
        return Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Server shutting down",
        ));
    }
    if !origin_allowed(head, limits) {
        return Err(Refusal::new(StatusCode::FORBIDDEN, "Origin not allowed"));
    }
    let deflate = limits.compression.and_then(|c| {
        let offers = head
            .values(&header::SEC_WEBSOCKET_EXTENSIONS)
            .filter_map(visible_ascii);
        deflate::negotiate(offers, &c.deflate_config())
    });
    Ok(Asked {
        accept: accept_key(key),
        deflate,
    })
}

/// A header value as text when it is visible ASCII (as
/// `HeaderValue::to_str` reads it).
fn visible_ascii(value: &[u8]) -> Option<&str> {
    value
        .iter()
        .all(|&b| (32..127).contains(&b) || b == b'\t')
        .then(|| std::str::from_utf8(value).ok())
        .flatten()
}

fn first<'a>(head: &'a impl Head, name: &'a HeaderName) -> Option<&'a [u8]> {
    head.values(name).next()
}

/// Whether a comma-separated header lists `token` (case-insensitive).
fn has_token(head: &impl Head, name: &HeaderName, token: &[u8]) -> bool {
    head.values(name)
        .filter_map(visible_ascii)
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Whether `key` is the base64 encoding of 16 bytes: 22 characters of the
/// base64 alphabet, then `==`.
fn is_base64_of_16_bytes(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

fn origin_allowed(head: &impl Head, limits: &Limits) -> bool {
    let (Some(allowed), Some(origin)) = (&limits.allowed_origins, first(head, &header::ORIGIN))
    else {
        return true;
    };
    let origin = visible_ascii(origin).unwrap_or("");
    allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn a_key_is_the_base64_of_16_bytes() {
        assert!(is_base64_of_16_bytes(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(is_base64_of_16_bytes(
            base64::engine::general_purpose::STANDARD
                .encode([0xff; 16])
                .as_bytes()
        ));
        for bad in [
            &b"!!!!!!!!!!!!!!!!!!!!!!!!"[..],
            b"AAAAAAAAAAAAAAAAAAAAAAAA",
            b"dGhlIHNhbXBsZSBub25jZQ=",
            b"dGhlIHNhbXBsZSBub25jZ===",
            b"dGhlIHNhbX Bsbub25jZQ==",
            b"",
        ] {
            assert!(
                !is_base64_of_16_bytes(bad),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// Both heads give the same verdicts, for every check.
    #[test]
    fn parsed_and_routed_heads_are_checked_alike() {
        let limits = Limits {
            allowed_origins: Some(vec!["https://ok.example".into()]),
            ..Limits::default()
        };
        let valid = "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\n\
                     Connection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
        let cases = [
            (format!("{valid}\r\n"), None),
            (format!("{valid}Origin: https://OK.example\r\n\r\n"), None),
            (
                format!("{valid}Origin: https://evil.example\r\n\r\n"),
                Some(StatusCode::FORBIDDEN),
            ),
            (
                format!("{valid}Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n\r\n"),
                Some(StatusCode::BAD_REQUEST),
            ),
            (
                valid.replace("Version: 13", "Version: 8") + "\r\n",
                Some(StatusCode::UPGRADE_REQUIRED),
            ),
            (
                valid.replace("Host: h", "Host:") + "\r\n",
                Some(StatusCode::BAD_REQUEST),
            ),
            (
                valid.replace("Upgrade: WebSocket", "Upgrade: h2c") + "\r\n",
                Some(StatusCode::BAD_REQUEST),
            ),
            (
                valid.replace("HTTP/1.1", "HTTP/1.0") + "\r\n",
                Some(StatusCode::BAD_REQUEST),
            ),
        ];
        for (text, expected) in cases {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut parsed = httparse::Request::new(&mut headers);
            assert!(parsed.parse(text.as_bytes()).unwrap().is_complete());
            let mut routed = Request::builder()
                .method(parsed.method.unwrap())
                .uri(parsed.path.unwrap())
                .version(if parsed.version == Some(1) {
                    Version::HTTP_11
                } else {
                    Version::HTTP_10
                });
            for h in parsed.headers.iter() {
                routed = routed.header(h.name, h.value);
            }
            let routed = routed.body(()).unwrap();
            let a = check(&parsed, &limits, false).map(|a| a.accept);
            let b = check(&routed, &limits, false).map(|a| a.accept);
            assert_eq!(a, b, "{text}");
            assert_eq!(a.err().map(|r| r.status), expected, "{text}");
        }
    }

    #[test]
    fn a_raw_refusal_is_the_routed_one_closed() {
        let raw = Refusal::new(StatusCode::UPGRADE_REQUIRED, "Unsupported").raw();
        let text = String::from_utf8(raw).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nsec-websocket-version: 13\r\n"));
        assert!(text.contains("\r\nconnection: close\r\n"));
        assert!(text.ends_with("\r\ncontent-length: 23\r\n\r\n{\"error\":\"Unsupported\"}"));
    }
}
