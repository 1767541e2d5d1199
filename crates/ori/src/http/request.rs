//! One request as a controller handler sees it: path parameters, query,
//! headers, the body (size-limited, time-limited, JSON by content type),
//! the app and a request-bound emitter carrying the correlation id.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{request::Parts, HeaderMap, HeaderValue, Method, Uri};
use serde::de::DeserializeOwned;

use super::extract::{read_body, read_json, RequestConfig};
use super::HttpError;
use crate::context::AppContext;
use crate::emitter::{Emitter, RequestEmitter};

/// A percent-decoded query parameter from a raw query string.
pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded_pairs(query);
    pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn serde_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(
        &format!("/?{query}").parse::<Uri>().unwrap_or_default(),
    )
    .map(|q| q.0)
    .unwrap_or_default()
}

/// Where the correlation id of a request comes from: `X-Correlation-Id`,
/// else `X-Request-Id`, each when it is 1 to [`MAX_CORRELATION_ID`] visible
/// ASCII characters (surrounding whitespace aside), else a fresh UUID v4.
/// A header that is not is ignored: the id goes into every notification
/// the request publishes, so its size must not be the caller's choice.
pub(super) fn correlation_id(headers: &HeaderMap) -> std::sync::Arc<str> {
    ["x-correlation-id", "x-request-id"]
        .iter()
        .filter_map(|h| headers.get(*h)?.to_str().ok())
        .map(str::trim)
        .find(|v| {
            (1..=MAX_CORRELATION_ID).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic())
        })
        .map(std::sync::Arc::from)
        .unwrap_or_else(fresh_correlation_id)
}

/// Whether a `Content-Type` names JSON: `application/json` or
/// `application/<anything>+json`, with any parameters.
pub(super) fn is_json_content_type(value: Option<&HeaderValue>) -> bool {
    let Some(mime) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = mime.split(';').next().unwrap_or("").trim();
    let Some((kind, sub)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (sub.eq_ignore_ascii_case("json")
            || sub.len() > 5 && sub[sub.len() - 5..].eq_ignore_ascii_case("+json"))
}

/// The longest correlation id taken from a request header.
const MAX_CORRELATION_ID: usize = 128;

/// A fresh random UUID v4 for a request without a correlation id.
///
/// Correlation ids tie log lines and replies together; they are not
/// secrets. So they come from a per-thread generator (SplitMix64) seeded
/// once from the system's random source, rather than one `getrandom`
/// system call per request, and are formatted without `fmt`.
fn fresh_correlation_id() -> std::sync::Arc<str> {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let seed = uuid::Uuid::new_v4().as_u64_pair();
            seed.0 ^ seed.1.rotate_left(32)
        });
    }
    fn next(state: &Cell<u64>) -> u64 {
        let s = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        state.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    let (hi, lo) = STATE.with(|s| (next(s), next(s)));
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&hi.to_le_bytes());
    bytes[8..].copy_from_slice(&lo.to_le_bytes());
    let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    std::sync::Arc::from(&*id.hyphenated().encode_lower(&mut buf))
}

/// Everything a controller handler gets about its request.
///
/// The classic handler takes it whole, `fn(Arc<Self>, RequestContext<E>)`;
/// it is also an extractor like any other, so it may come last after
/// extractors that read only the head (`Path`, `Query`, headers).
pub struct RequestContext<E: Emitter = crate::SocketEmitter> {
    app: AppContext<E>,
    parts: Parts,
    params: Vec<(String, String)>,
    body: Option<Body>,
    config: RequestConfig,
}

impl<E: Emitter> RequestContext<E> {
    pub(super) fn new(
        app: AppContext<E>,
        parts: Parts,
        params: Vec<(String, String)>,
        body: Body,
        config: RequestConfig,
    ) -> Self {
        Self {
            app,
            parts,
            params,
            body: Some(body),
            config,
        }
    }

    /// A path parameter (`/notify/:topic` -> `param("topic")`).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// All path parameters, in path order.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// One query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        query_param(self.parts.uri.query()?, name)
    }

    /// The query string deserialized into `T` (400 when it does not fit).
    pub fn query<T: DeserializeOwned>(&self) -> Result<T, HttpError> {
        axum::extract::Query::<T>::try_from_uri(&self.parts.uri)
            .map(|q| q.0)
            .map_err(|e| HttpError::bad_request(format!("Invalid query: {}", e.body_text())))
    }

    /// The request headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.parts.headers
    }

    /// A header's value, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.parts.headers.get(name)?.to_str().ok()
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.parts.method
    }

    /// The URI.
    pub fn uri(&self) -> &Uri {
        &self.parts.uri
    }

    /// The peer's address, when known.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
    }

    /// The body, read once, at most the configured body limit (413 beyond),
    /// arrived within the request timeout (408 beyond, and the connection
    /// is closed; see [`Ori::request_timeout`](crate::Ori::request_timeout)).
    pub async fn bytes(&mut self) -> Result<bytes::Bytes, HttpError> {
        let body = self
            .body
            .take()
            .ok_or_else(|| HttpError::internal("request body already read"))?;
        read_body(&self.config, &self.parts.headers, body).await
    }

    /// The body parsed as JSON into `T`: 415 unless the request says
    /// `Content-Type: application/json` (or `application/*+json`; parameters
    /// such as `charset` allowed), 413 over the body limit, 400 on malformed
    /// JSON or a shape that does not fit, in that order. Like axum's `Json`,
    /// the content type is required so that a cross-site form or `text/plain`
    /// post (which a browser sends without asking) is not taken as JSON;
    /// read [`bytes`](Self::bytes) to accept any.
    pub async fn json<T: DeserializeOwned>(&mut self) -> Result<T, HttpError> {
        let body = self
            .body
            .take()
            .ok_or_else(|| HttpError::internal("request body already read"))?;
        read_json(&self.config, &self.parts.headers, body).await
    }

    /// The app context: services and the app's emitter.
    pub fn app(&self) -> &AppContext<E> {
        &self.app
    }

    /// The app's emitter `E` (its domain methods included), bound to the
    /// request's correlation id.
    pub fn socket(&self) -> RequestEmitter<E> {
        RequestEmitter::new(
            self.app.socket().clone(),
            self.config.correlation_id.clone(),
        )
    }

    /// The request's correlation id (`X-Correlation-Id`, else `X-Request-Id`,
    /// each only when 1 to 128 visible ASCII characters, else a fresh UUID
    /// v4).
    pub fn correlation_id(&self) -> &str {
        &self.config.correlation_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_correlation_ids_are_distinct_uuid_v4() {
        let ids: std::collections::HashSet<String> = (0..1000)
            .map(|_| fresh_correlation_id().to_string())
            .collect();
        assert_eq!(ids.len(), 1000);
        for id in ids.iter().take(10) {
            let uuid = uuid::Uuid::try_parse(id).expect("a UUID");
            assert_eq!(uuid.get_version_num(), 4, "{id}");
            assert_eq!(id.len(), 36);
            assert_eq!(id, &id.to_lowercase());
        }
    }

    #[test]
    fn json_content_types() {
        let ok = |v: &str| is_json_content_type(Some(&HeaderValue::from_str(v).unwrap()));
        assert!(ok("application/json"));
        assert!(ok("Application/JSON; charset=utf-8"));
        assert!(ok("application/problem+json"));
        assert!(!ok("text/plain"));
        assert!(!ok("application/x-www-form-urlencoded"));
        assert!(!ok("multipart/form-data; boundary=x"));
        assert!(!ok("application/jsonp"));
        assert!(!ok("application/+json"));
        assert!(!ok("json"));
        assert!(!is_json_content_type(None));
    }

    #[test]
    fn correlation_id_prefers_headers_in_order() {
        let mut h = HeaderMap::new();
        assert_eq!(correlation_id(&h).len(), 36);
        h.insert("x-request-id", "req-1".parse().unwrap());
        assert_eq!(&*correlation_id(&h), "req-1");
        h.insert("x-correlation-id", "".parse().unwrap());
        assert_eq!(&*correlation_id(&h), "req-1");
        h.insert("x-correlation-id", "corr-1".parse().unwrap());
        assert_eq!(&*correlation_id(&h), "corr-1");
        // Too long, or with invisible characters: the next source applies.
        h.insert("x-correlation-id", "x".repeat(129).parse().unwrap());
        assert_eq!(&*correlation_id(&h), "req-1");
        h.insert("x-correlation-id", "a b".parse().unwrap());
        assert_eq!(&*correlation_id(&h), "req-1");
        h.insert("x-correlation-id", "x".repeat(128).parse().unwrap());
        assert_eq!(correlation_id(&h).len(), 128);
        h.remove("x-correlation-id");
        h.insert("x-request-id", "x".repeat(64 * 1024).parse().unwrap());
        assert_eq!(correlation_id(&h).len(), 36, "a fresh UUID");
    }

    #[test]
    fn query_params_are_decoded() {
        assert_eq!(
            query_param("a=1&token=x%20y", "token").as_deref(),
            Some("x y")
        );
        assert_eq!(query_param("a=1", "token"), None);
    }
}
