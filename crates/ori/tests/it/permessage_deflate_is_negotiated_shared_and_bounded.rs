//! permessage-deflate (RFC 7692) over real sockets: the offer is answered
//! as the RFC says (and a declined or absent offer is a plain connection),
//! a publication reaches every subscriber that negotiated it as the same
//! compressed bytes and the others plain, small messages stay plain,
//! compressed client messages are inflated (with or without the client's
//! context), and a deflate bomb is closed with 1009 at the size limit.

use crate::common;

use std::io::Write;
use std::time::Duration;

use common::{command_handlers, RawWs};
use flate2::{Compress, Compression as Level, Decompress, FlushCompress, FlushDecompress};
use ori::testing::{self, TestServer};
use ori::{Compression, InProcProvider, Ori, WsOptions};

const OFFER: (&str, &str) = (
    "sec-websocket-extensions",
    "permessage-deflate; client_max_window_bits",
);

async fn server(compression: Option<Compression>) -> TestServer {
    let mut options = WsOptions::new().max_message_size(1 << 20);
    if let Some(c) = compression {
        options = options.compression(c);
    }
    testing::spawn(
        Ori::create()
            .websocket_with(InProcProvider::new(), options)
            .on_websocket(command_handlers::<(), _>()),
    )
    .await
}

fn extensions(head: &str) -> Option<String> {
    head.lines()
        .find_map(|l| l.strip_prefix("sec-websocket-extensions: "))
        .map(str::to_owned)
}

/// Inflates one server message (no context kept by the server).
fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut d = Decompress::new(false);
    let mut out = Vec::with_capacity(1 << 20);
    d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .unwrap();
    out
}

/// A masked client frame with RSV1 set on it.
fn compressed_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = common::client_frame(fin, opcode, payload);
    frame[0] |= 0x40;
    frame
}

/// Compresses one message with `c`, stripping the flush tail.
fn deflate(c: &mut Compress, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 64);
    let mut consumed = 0;
    loop {
        let before = c.total_in();
        c.compress_vec(&data[consumed..], &mut out, FlushCompress::Sync)
            .unwrap();
        consumed += (c.total_in() - before) as usize;
        if consumed == data.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity());
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

async fn subscribe(ws: &mut RawWs, topic: &str) {
    ws.send_text(&format!("sub:{topic}")).await;
    assert_eq!(ws.read_text().await, format!("subscribed:{topic}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_are_answered_and_anything_else_is_a_plain_connection() {
    let on = server(Some(Compression::new())).await;
    let (_, head) = RawWs::connect_with_headers(on.addr(), "/ws", &[OFFER]).await;
    assert_eq!(
        extensions(&head).as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_max_window_bits=15")
    );
    let (_, head) = RawWs::connect_with_headers(
        on.addr(),
        "/ws",
        &[(
            "sec-websocket-extensions",
            "permessage-deflate; server_max_window_bits=8, permessage-deflate; client_no_context_takeover; server_max_window_bits=10",
        )],
    )
    .await;
    assert_eq!(
        extensions(&head).as_deref(),
        Some("permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_no_context_takeover"),
        "the first offer it cannot honour is declined, the second taken"
    );
    for declined in ["permessage-deflate; bogus", "x-webkit-deflate-frame"] {
        let (mut ws, head) = RawWs::connect_with_headers(
            on.addr(),
            "/ws",
            &[("sec-websocket-extensions", declined)],
        )
        .await;
        assert_eq!(extensions(&head), None, "{declined}");
        // A plain connection: RSV1 from the client is a protocol error.
        ws.send_bytes(&compressed_frame(true, 1, b"x")).await;
        let close = ws.read_frame(Duration::from_secs(5)).await.unwrap();
        assert_eq!(close.close().map(|(c, _)| c), Some(1002));
    }
    // Off by default: never answered.
    let off = server(None).await;
    let (_, head) = RawWs::connect_with_headers(off.addr(), "/ws", &[OFFER]).await;
    assert_eq!(extensions(&head), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publication_is_compressed_once_and_shared_the_rest_get_it_plain() {
    let server = server(Some(Compression::new().threshold(64))).await;
    let (mut a, _) = RawWs::connect_with_headers(server.addr(), "/ws", &[OFFER]).await;
    let (mut b, _) = RawWs::connect_with_headers(server.addr(), "/ws", &[OFFER]).await;
    let mut plain = RawWs::connect(server.addr(), "/ws", None).await;
    for ws in [&mut a, &mut b, &mut plain] {
        subscribe(ws, "news").await;
    }
    let note = format!(
        r#"{{"type":"notification","message":"{}","timestamp":1}}"#,
        "the same words again and again ".repeat(30)
    );
    server
        .app()
        .socket()
        .publish("news", note.clone())
        .await
        .unwrap();
    let fa = a.read_frame(Duration::from_secs(5)).await.unwrap();
    let fb = b.read_frame(Duration::from_secs(5)).await.unwrap();
    assert!(fa.rsv1 && fa.opcode == 1, "{fa:?}");
    assert_eq!(fa, fb, "the same compressed bytes for both");
    assert!(
        fa.payload.len() * 4 < note.len(),
        "{} -> {}",
        note.len(),
        fa.payload.len()
    );
    assert_eq!(inflate(&fa.payload), note.as_bytes());
    let fp = plain.read_frame(Duration::from_secs(5)).await.unwrap();
    assert!(!fp.rsv1);
    assert_eq!(fp.payload, note.as_bytes());
    // Below the threshold: plain for everyone.
    server
        .app()
        .socket()
        .publish("news", "short")
        .await
        .unwrap();
    for ws in [&mut a, &mut b, &mut plain] {
        let f = ws.read_frame(Duration::from_secs(5)).await.unwrap();
        assert!(!f.rsv1);
        assert_eq!(f.payload, b"short");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_client_messages_are_inflated_with_the_clients_context() {
    let server = server(Some(Compression::new())).await;
    let (mut ws, _) = RawWs::connect_with_headers(server.addr(), "/ws", &[OFFER]).await;
    // One stream for the connection: the client keeps its context, so its
    // second message refers back to the first.
    let mut c = Compress::new(Level::new(6), false);
    let first = "echo me, echo me, echo me please".repeat(4);
    ws.send_bytes(&compressed_frame(
        true,
        1,
        &deflate(&mut c, first.as_bytes()),
    ))
    .await;
    let echoed = ws.read_frame(Duration::from_secs(5)).await.unwrap();
    assert_eq!(inflate(&echoed.payload), first.as_bytes());
    let second = "echo me please".to_owned();
    let body = deflate(&mut c, second.as_bytes());
    assert!(body.len() < 10, "a back reference, {} bytes", body.len());
    // Fragmented: RSV1 on the first frame only.
    let (head, tail) = body.split_at(body.len() / 2);
    let mut frames = compressed_frame(false, 1, head);
    frames.extend(common::client_frame(true, 0, tail));
    ws.send_bytes(&frames).await;
    let echoed = ws.read_frame(Duration::from_secs(5)).await.unwrap();
    assert!(!echoed.rsv1, "below the threshold: plain");
    assert_eq!(echoed.payload, second.as_bytes());
    // RSV1 on a continuation frame is a protocol error.
    let mut bad = common::client_frame(false, 1, b"a");
    bad.extend(compressed_frame(true, 0, b"b"));
    ws.send_bytes(&bad).await;
    let close = ws.read_frame(Duration::from_secs(5)).await.unwrap();
    assert_eq!(close.close().map(|(c, _)| c), Some(1002));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deflate_bomb_is_closed_with_1009_at_the_limit() {
    let server = server(Some(Compression::new())).await;
    let (mut ws, _) = RawWs::connect_with_headers(server.addr(), "/ws", &[OFFER]).await;
    // 16 MiB of zeros in a few KB: the limit is 1 MiB inflated.
    let mut bomb = Vec::new();
    {
        let mut c = Compress::new(Level::new(1), false);
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..16 {
            let mut out = Vec::with_capacity(4096);
            c.compress_vec(&zeros, &mut out, FlushCompress::None)
                .unwrap();
            bomb.write_all(&out).unwrap();
        }
        bomb.extend(deflate(&mut c, b""));
    }
    assert!(bomb.len() < 128 << 10, "{} bytes", bomb.len());
    ws.send_bytes(&compressed_frame(true, 2, &bomb)).await;
    let close = ws.read_frame(Duration::from_secs(5)).await.unwrap();
    assert_eq!(close.close().map(|(c, _)| c), Some(1009));
    // Corrupt data: 1007.
    let (mut ws, _) = RawWs::connect_with_headers(server.addr(), "/ws", &[OFFER]).await;
    ws.send_bytes(&compressed_frame(true, 2, &[0xff, 0xff, 0xff, 0xff]))
        .await;
    let close = ws.read_frame(Duration::from_secs(5)).await.unwrap();
    assert_eq!(close.close().map(|(c, _)| c), Some(1007));
}
