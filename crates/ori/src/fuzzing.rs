//! Fuzzing entry points (feature `fuzzing`, not a stable API): one function
//! per fuzz target, each taking arbitrary bytes ([`DispatchRig`] for the
//! dispatch path of a given app), and [`replay_corpus`]. The fuzz targets in
//! `fuzz/` and the corpus replay tests both call these, so the harness is
//! written once. Every function panics only when an invariant breaks; a panic in
//! the code under test is a finding.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use ori_core::codec::{self, close_code, Decoder, Frame, Limits, OpCode};
use ori_core::{Message, SocketId, Topic, TopicError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::messages::{
    ClientTopic, Definition, DefinitionSchema as _, Heartbeat, HeartbeatData, JoinData, JoinRoom,
    LeaveRoom, RegistryError, RoomData, Schema, ServerMessage,
};
use crate::router::correlation_id;
use crate::{Emitter, Ori};

// ---------------------------------------------------------------- corpus

/// Runs `harness` on every file of the corpus in `dir` (sorted by name) and
/// panics naming the first file that panics, also when the panic was caught
/// inside the server (a panicking handler): the fuzzer reports those as
/// crashes too. Panics when the corpus is empty. This is how the ordinary
/// tests replay the committed seeds (`fuzz/corpus/<target>/`).
pub fn replay_corpus(dir: &Path, harness: impl Fn(&[u8])) {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus {} is empty", dir.display());
    let panics = Arc::new(AtomicUsize::new(0));
    let seen = panics.clone();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        seen.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    for path in files {
        let data = std::fs::read(&path).expect("corpus file");
        let before = panics.load(Ordering::SeqCst);
        // The run stops at the first panic, so no broken state is reused.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| harness(&data)));
        assert!(
            outcome.is_ok() && panics.load(Ordering::SeqCst) == before,
            "{} panicked",
            path.display()
        );
    }
}

// ---------------------------------------------------------------- frames

/// Masks `frame` (an unmasked frame as the server encodes it) as a client
/// would send it, with `mask`.
fn mask_server_frame(frame: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let header = match frame[1] & 0x7F {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    let mut out = Vec::with_capacity(frame.len() + 4);
    out.extend_from_slice(&frame[..header]);
    out[1] |= 0x80;
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(&frame[header..]);
    codec::unmask(&mut out[start..], mask);
    out
}

/// Decodes `bytes` fed in pieces of `step`: the frames and the close code of
/// the error that ended decoding, if any.
fn decode_stream(
    bytes: &[u8],
    step: usize,
    limits: Limits,
    deflate: Option<codec::deflate::Agreed>,
) -> (Vec<Frame>, Option<u16>) {
    let mut dec = Decoder::new(limits);
    if let Some(agreed) = deflate {
        dec.enable_deflate(agreed);
    }
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in bytes.chunks(step.max(1)) {
        buf.extend_from_slice(chunk);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => return (frames, Some(e.code)),
            }
        }
    }
    (frames, None)
}

/// Target `frame_decoder`: the RFC 6455 decoder on arbitrary client bytes.
///
/// The first byte picks the read size the bytes arrive in (its low 5 bits)
/// and whether permessage-deflate was agreed (bit 7; bit 6: the client
/// keeps no context), the second the limits. Checks: no panic; the same frames and error arrive whether the
/// bytes come at once or in pieces; limits and the control-frame size hold;
/// error codes are those the RFC names; every message, close and ping
/// re-encodes to a frame that decodes to the same value.
pub fn frame_decoder(data: &[u8]) {
    let [step, limit, rest @ ..] = data else {
        return;
    };
    let limits = if limit & 1 == 0 {
        Limits::default()
    } else {
        Limits {
            max_frame_size: usize::from(limit >> 1) * 4,
            max_message_size: usize::from(limit >> 1) * 6,
            max_fragments: usize::from(limit & 0x0F) + 1,
        }
    };
    let deflate = (step & 0x80 != 0).then_some(codec::deflate::Agreed {
        server_window_bits: 15,
        client_window_bits: 15,
        client_no_context_takeover: step & 0x40 != 0,
    });
    let whole = decode_stream(rest, rest.len(), limits, deflate);
    let pieces = decode_stream(rest, usize::from(*step % 32) + 1, limits, deflate);
    assert_eq!(whole, pieces, "decoding depends on how the bytes arrive");
    let (frames, error) = whole;
    if let Some(code) = error {
        assert!(
            matches!(
                code,
                close_code::PROTOCOL_ERROR
                    | close_code::INVALID_PAYLOAD
                    | close_code::MESSAGE_TOO_BIG
            ),
            "unexpected close code {code}"
        );
    }
    let mask = [0x5A, 0x01, 0xC3, 0x7E];
    for frame in frames {
        let reencoded = match &frame {
            Frame::Message(m) => {
                assert!(m.len() <= limits.max_message_size, "message over the limit");
                if let Message::Text(t) = m {
                    assert!(std::str::from_utf8(t.as_bytes()).is_ok());
                }
                codec::encode_message(m)
            }
            Frame::Ping(p) | Frame::Pong(p) => {
                assert!(p.len() <= 125, "control payload over 125 bytes");
                let op = if matches!(frame, Frame::Ping(_)) {
                    OpCode::Ping
                } else {
                    OpCode::Pong
                };
                codec::encode_frame(op, p)
            }
            Frame::Close(None) => codec::encode_frame(OpCode::Close, b""),
            Frame::Close(Some((code, reason))) => {
                assert!(close_code::is_valid_on_wire(*code));
                assert!(reason.len() <= 123);
                codec::encode_close(*code, reason)
            }
        };
        let client = mask_server_frame(&reencoded, mask);
        let (again, err) = decode_stream(&client, client.len(), Limits::default(), None);
        assert_eq!(err, None, "a re-encoded frame does not decode");
        assert_eq!(again, vec![frame], "a re-encoded frame decodes differently");
    }
}

// ----------------------------------------------------- topics and socket ids

const TOPIC_MAX: usize = 256;

fn topic_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'.' | b'-')
}

/// Target `topic_and_socket_id`: `Topic` and `SocketId` parsing.
///
/// Checks: a topic is accepted exactly when it has 1 to 256 characters of
/// `A-Z a-z 0-9 _ : . -`, keeps its text, and the error names the right
/// reason; `Topic::client` refuses exactly the reserved (`__`) ones; a
/// socket id parses only from a hyphenated v4 UUID and prints back as the
/// same text in lower case; a socket topic yields its id.
pub fn topic_and_socket_id(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let s = text.as_ref();
    let chars = s.chars().count();
    let charset_ok = s.bytes().all(topic_char);
    let expected = if s.is_empty() {
        Err(TopicError::Empty)
    } else if chars > TOPIC_MAX {
        Err(TopicError::TooLong)
    } else if !charset_ok {
        Err(TopicError::InvalidCharacter)
    } else {
        Ok(())
    };
    assert_eq!(Topic::validate(s), expected, "validate({s:?})");
    match Topic::new(s) {
        Ok(t) => {
            assert!(expected.is_ok());
            assert_eq!(t.as_str(), s);
            assert_eq!(t.to_string(), s);
            assert_eq!(s.parse::<Topic>().as_ref(), Ok(&t));
            assert_eq!(t.is_reserved(), s.starts_with("__"));
            match Topic::client(s) {
                Ok(c) => assert!(!c.is_reserved() && c == t),
                Err(e) => assert!(t.is_reserved() && e == TopicError::Reserved),
            }
            if let Some(id) = t.socket_target() {
                assert_eq!(
                    Topic::for_socket(&id).as_str().to_ascii_lowercase(),
                    s.to_ascii_lowercase()
                );
            }
        }
        Err(e) => assert_eq!(Err(e), expected),
    }
    // Socket ids, alone and inside a socket topic.
    for candidate in [
        s,
        s.strip_prefix(ori_core::SOCKET_TOPIC_PREFIX).unwrap_or(""),
    ] {
        if let Ok(id) = candidate.parse::<SocketId>() {
            let printed = id.to_string();
            assert_eq!(
                printed,
                candidate.to_ascii_lowercase(),
                "socket id does not round-trip"
            );
            assert_eq!(printed.len(), 36);
            assert_eq!(id.as_uuid().get_version_num(), 4);
            assert_eq!(printed.parse::<SocketId>(), Ok(id));
            let topic = Topic::for_socket(&id);
            assert!(topic.is_reserved());
            assert_eq!(topic.socket_target(), Some(id));
        }
    }
}

// ------------------------------------------------------- message validation

/// The data of a `publish` route shaped like the demo's (the demo's own
/// definition lives in ori-demo, which depends on this crate).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct PublishData {
    topic: ClientTopic,
    message: String,
}

static PUBLISH: ServerMessage<PublishData> = ServerMessage::define("publish");

/// Validates `data` against `schema` and checks that the verdict agrees
/// with deserializing into the definition's Rust type.
fn check_schema<T: serde::de::DeserializeOwned>(schema: &Schema, data: &Value) {
    match schema.validate(data) {
        Ok(()) => {
            if let Err(e) = serde_json::from_value::<T>(data.clone()) {
                panic!("valid by the schema, yet the data type refuses {data}: {e}");
            }
            schema.parse_ref::<T>(data).expect("parse of valid data");
        }
        Err(e) => {
            assert!(
                !e.violations().is_empty(),
                "a rejection without a violation"
            );
            assert!(!e.to_string().is_empty());
            assert!(schema.parse_ref::<T>(data).is_err());
        }
    }
}

/// Validates `data` as the data of message `kind`, if the demo knows it.
fn check_kind(kind: &str, data: &Value) {
    if kind == JoinRoom.name() {
        check_schema::<JoinData>(&JoinRoom.schema().expect("built-in schemas compile"), data);
    } else if kind == LeaveRoom.name() {
        check_schema::<RoomData>(&LeaveRoom.schema().expect("built-in schemas compile"), data);
    } else if kind == Heartbeat.name() {
        check_schema::<HeartbeatData>(&Heartbeat.schema().expect("built-in schemas compile"), data);
    } else if kind == PUBLISH.name() {
        check_schema::<PublishData>(&PUBLISH.schema().expect("built-in schemas compile"), data);
    }
}

/// Target `message_validation`: the JSON envelope and schema validation of
/// PROTOCOL.md sections 2 to 4, with the demo's schemas (`room.join`,
/// `room.leave`, `heartbeat`, `publish`).
///
/// Checks: no panic; whenever a schema accepts data, the Rust type of the
/// definition deserializes it (and a rejection names at least one
/// violation); error replies are JSON; correlation ids are the client's
/// when 1 to 128 characters, else a fresh UUID.
pub fn message_validation(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        let reply: Value = serde_json::from_str(&RegistryError::InvalidJson.to_reply())
            .expect("error reply is JSON");
        assert_eq!(reply["type"], "error");
        return;
    };
    // Every schema against the whole value: the validator on any JSON.
    check_kind(JoinRoom.name(), &value);
    check_kind(Heartbeat.name(), &value);
    check_kind(PUBLISH.name(), &value);
    let Value::Object(mut fields) = value else {
        return;
    };
    // Router format (section 4): `data` and `correlationId` beside `type`.
    let id = correlation_id(fields.get("correlationId"));
    match fields.get("correlationId") {
        Some(Value::String(s)) if (1..=128).contains(&s.chars().count()) => {
            assert_eq!(&*id, s.as_str())
        }
        _ => assert!(uuid::Uuid::try_parse(&id).is_ok(), "fresh id {id:?}"),
    }
    let Some(Value::String(kind)) = fields.remove("type") else {
        return;
    };
    if let Some(data) = fields.get("data") {
        check_kind(&kind, data);
    }
    // Registry format (section 2): every field beside `type` is the data.
    check_kind(&kind, &Value::Object(fields));
    let unknown = RegistryError::UnknownType(kind);
    let reply: Value = serde_json::from_str(&unknown.to_reply()).expect("error reply is JSON");
    assert_eq!(reply["type"], "error");
}

// ------------------------------------------------------------------ dispatch

/// The `dispatch` harness around one application: a runtime and the
/// app's router, built once and reused for every input (the fuzzer runs
/// millions). The fuzz target and the corpus replay test build it from the
/// demo application, so the fuzzer drives the real dispatch path.
pub struct DispatchRig {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    fast: Option<std::sync::Arc<dyn crate::ws::fast::FastUpgrade>>,
    _app: Box<dyn std::any::Any + Send + Sync>,
}

impl DispatchRig {
    /// Builds `app` (its router, as [`Ori::into_router`] gives it, and its
    /// upgrade's fast path) on a runtime of its own.
    pub fn new<E: Emitter, W: crate::WebSocketState>(app: Ori<E, W>) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let (router, fast, app) = rt.block_on(app.into_parts()).expect("the app builds");
        Self {
            rt,
            router,
            fast,
            _app: Box::new(app),
        }
    }
}

const HANDSHAKE: &[u8] = b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

/// One server frame: (opcode, payload).
fn server_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while bytes.len() >= 2 {
        let (op, len7) = (bytes[0] & 0x0F, usize::from(bytes[1] & 0x7F));
        assert_eq!(bytes[0] & 0xF0, 0x80, "server frames are whole, RSV clear");
        assert_eq!(bytes[1] & 0x80, 0, "server frames are unmasked");
        let (len, head) = match len7 {
            126 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            127 => {
                let mut raw = [0u8; 8];
                raw.copy_from_slice(&bytes[2..10]);
                (u64::from_be_bytes(raw) as usize, 10)
            }
            n => (n, 2),
        };
        assert!(bytes.len() >= head + len, "truncated server frame");
        out.push((op, bytes[head..head + len].to_vec()));
        bytes = &bytes[head + len..];
    }
    assert!(bytes.is_empty(), "trailing bytes after the server's frames");
    out
}

impl DispatchRig {
    /// Target `dispatch`: inbound text through the connection task's
    /// dispatch (the `2` ping, the socket routers, the raw handler, for the
    /// demo its message registry) over an in-memory connection.
    ///
    /// The input is split at newlines into up to 8 text messages, sent
    /// after the upgrade and followed by a close. Checks: no panic anywhere
    /// (a panicking handler is caught by the server, but the fuzzer's panic
    /// hook still sees it); the server answers `2` with `3` and everything
    /// else it sends with JSON; it echoes the close with 1000, then ends the
    /// connection.
    pub fn run(&self, data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        let messages: Vec<&str> = text.split('\n').take(8).collect();
        let mut input = HANDSHAKE.to_vec();
        for m in &messages {
            let frame = codec::encode_frame(OpCode::Text, m.as_bytes());
            input.extend(mask_server_frame(&frame, [1, 2, 3, 4]));
        }
        input.extend(mask_server_frame(
            &codec::encode_close(close_code::NORMAL, ""),
            [9, 8, 7, 6],
        ));
        let (router, fast) = (self.router.clone(), self.fast.clone());
        let output = self.rt.block_on(async move {
            let (mut client, server) = tokio::io::duplex(1 << 16);
            tokio::spawn(serve(router, fast, server));
            let exchange = async {
                client.write_all(&input).await.expect("write");
                let mut out = Vec::new();
                client.read_to_end(&mut out).await.expect("read");
                out
            };
            tokio::time::timeout(Duration::from_secs(20), exchange)
                .await
                .expect("the server did not end the connection after the close handshake")
        });
        let end = output
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP response");
        assert!(output.starts_with(b"HTTP/1.1 101"), "upgrade refused");
        let frames = server_frames(&output[end + 4..]);
        let (last, replies) = frames.split_last().expect("the server's close frame");
        assert_eq!(last.0, 0x8, "the last frame is the close");
        assert_eq!(
            last.1,
            close_code::NORMAL.to_be_bytes(),
            "close echoed with 1000"
        );
        let mut pongs = 0;
        for (op, payload) in replies {
            assert_eq!(*op, 0x1, "replies are text");
            let reply = std::str::from_utf8(payload).expect("UTF-8 reply");
            if reply == "3" {
                pongs += 1;
            } else {
                let v: Value = serde_json::from_str(reply).expect("replies are JSON");
                assert!(v.get("type").is_some(), "reply without a type: {reply}");
            }
        }
        let pings = messages.iter().filter(|m| **m == "2").count();
        assert_eq!(pongs, pings, "every `2` is answered by `3`");
    }
}

/// Serves one in-memory connection as the app's accept loop does (the
/// upgrade's fast path, then hyper and `router`).
async fn serve(
    router: axum::Router,
    fast: Option<std::sync::Arc<dyn crate::ws::fast::FastUpgrade>>,
    io: tokio::io::DuplexStream,
) {
    let remote = std::net::SocketAddr::from(([127, 0, 0, 1], 9));
    crate::server::serve_one(
        io,
        remote,
        router,
        fast,
        crate::server::HttpLimits::default(),
        tokio_util::sync::CancellationToken::new(),
    )
    .await;
}

// ----------------------------------------------------------- upgrade_request

/// The values of header `name` in a raw request head (case-insensitive).
fn header_values<'a>(head: &'a [u8], name: &str) -> Vec<&'a [u8]> {
    head.split(|&b| b == b'\n')
        .skip(1)
        .filter_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let colon = line.iter().position(|&b| b == b':')?;
            let (n, v) = line.split_at(colon);
            n.eq_ignore_ascii_case(name.as_bytes())
                .then(|| v[1..].trim_ascii())
        })
        .collect()
}

impl DispatchRig {
    /// Target `upgrade_request`: arbitrary bytes as the request head of a
    /// connection to the WebSocket path (the request line and headers as
    /// the HTTP server and the upgrade's checks read them). An input that
    /// does not start with an upper-case letter (a method) gets
    /// `GET /ws HTTP/1.1` as its request line, so most runs reach the header
    /// checks.
    ///
    /// Checks: no panic; the server answers with an HTTP response (or
    /// closes) and ends the connection once the client has; a `101` follows
    /// only a `GET` on HTTP/1.1 with exactly one `Sec-WebSocket-Key`, and
    /// carries that key's accept value.
    pub fn upgrade_request(&self, data: &[u8]) {
        let mut input = Vec::with_capacity(data.len() + 24);
        if !data.first().is_some_and(u8::is_ascii_uppercase) {
            input.extend_from_slice(b"GET /ws HTTP/1.1\r\n");
        }
        input.extend_from_slice(data);
        if !input.ends_with(b"\r\n\r\n") {
            input.extend_from_slice(b"\r\n\r\n");
        }
        let (router, fast) = (self.router.clone(), self.fast.clone());
        let request = input.clone();
        let output = self.rt.block_on(async move {
            let (mut client, server) = tokio::io::duplex(1 << 16);
            tokio::spawn(serve(router, fast, server));
            let exchange = async {
                // The server may answer and close before it has read it all.
                let _ = client.write_all(&request).await;
                let _ = client.shutdown().await;
                let mut out = Vec::new();
                let _ = client.read_to_end(&mut out).await;
                out
            };
            tokio::time::timeout(Duration::from_secs(20), exchange)
                .await
                .expect("the server ends the connection once the client has")
        });
        if output.is_empty() {
            return;
        }
        // (An HTTP/1.0 request is answered in HTTP/1.0.)
        assert!(
            output.starts_with(b"HTTP/1.1 ") || output.starts_with(b"HTTP/1.0 "),
            "not an HTTP response: {:?}",
            String::from_utf8_lossy(&output[..output.len().min(64)])
        );
        if !output.starts_with(b"HTTP/1.1 101") {
            return;
        }
        let head_end = input
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(input.len());
        let head = &input[..head_end];
        // The checks below read the head the simple way: only when its lines
        // all end in CRLF is that how the server read it too.
        let bare_lf = head
            .iter()
            .enumerate()
            .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'));
        if bare_lf
            || head.contains(&b'\r') && head.windows(2).any(|w| w[0] == b'\r' && w[1] != b'\n')
        {
            return;
        }
        let line_end = head.iter().position(|&b| b == b'\r').unwrap_or(head.len());
        let line = &head[..line_end];
        assert!(
            line.starts_with(b"GET ") && line.ends_with(b" HTTP/1.1"),
            "101 for {:?}",
            String::from_utf8_lossy(line)
        );
        let keys = header_values(head, "sec-websocket-key");
        assert_eq!(keys.len(), 1, "101 with {} keys", keys.len());
        let accept = crate::ws::handshake::accept_key(keys[0]);
        let response = String::from_utf8_lossy(&output).to_ascii_lowercase();
        assert!(
            response.contains(&format!(
                "sec-websocket-accept: {}",
                accept.to_ascii_lowercase()
            )),
            "101 without the key's accept value"
        );
    }
}
