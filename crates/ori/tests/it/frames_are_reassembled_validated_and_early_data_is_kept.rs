//! The frame layer as a client sees it: large and fragmented messages are
//! reassembled intact (text split inside a UTF-8 character included),
//! control frames may interleave with fragments, frames sent together with
//! the handshake are not lost, and protocol violations close the connection
//! with the RFC 6455 code (1002, 1007).

use crate::common;

use common::{ask, client_frame, command_server, RawWs, WAIT};
use ori::testing::Received;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_megabyte_messages_are_echoed_byte_exact() {
    let server = command_server().await;
    let mut ws = server.connect().await;
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    ws.send_binary(big.clone()).await;
    assert!(
        ws.recv().await == Received::Binary(big),
        "3 MB binary echo differs"
    );
    let text: String = "ünïcödé ✓ ".repeat(100_000);
    assert_eq!(ask(&mut ws, &text).await, text);
    common::stop_server(&server, vec![ws]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragments_with_a_split_character_and_an_interleaved_ping_make_one_message() {
    let server = command_server().await;
    let mut raw = RawWs::connect(server.addr(), "/ws", None).await;
    let text = "héllo wörld ✓".as_bytes();
    // Split inside the two-byte "é" and inside the three-byte "✓".
    let (a, rest) = text.split_at(2);
    let (b, c) = rest.split_at(rest.len() - 1);
    raw.send_frame(false, 1, a).await;
    raw.send_frame(false, 0, b).await;
    raw.send_frame(true, 9, b"mid").await; // a ping between fragments
    raw.send_frame(true, 0, c).await;
    let pong = raw.read_frame(WAIT).await.unwrap();
    assert_eq!((pong.opcode, pong.payload.as_slice()), (10, &b"mid"[..]));
    assert_eq!(raw.read_text().await, "héllo wörld ✓");
    drop(raw);
    common::stop_server(&server, vec![]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_sent_with_the_handshake_are_handled() {
    let server = command_server().await;
    let mut early = client_frame(true, 1, b"sent early");
    early.extend(client_frame(true, 2, &[1, 2, 3]));
    let mut raw = RawWs::connect_with_early_data(server.addr(), "/ws", None, &early).await;
    assert_eq!(raw.read_text().await, "sent early");
    let frame = raw.read_frame(WAIT).await.unwrap();
    assert_eq!((frame.opcode, frame.payload), (2, vec![1, 2, 3]));
    raw.send_text("and later").await;
    assert_eq!(raw.read_text().await, "and later");
    drop(raw);
    common::stop_server(&server, vec![]).await;
}

/// Sends `bytes` on a fresh connection and returns the close code received.
async fn close_code_after(server: &ori::testing::TestServer, bytes: &[u8]) -> u16 {
    let mut raw = RawWs::connect(server.addr(), "/ws", None).await;
    raw.send_bytes(bytes).await;
    let frame = raw.read_frame(WAIT).await.expect("a close frame");
    frame
        .close()
        .unwrap_or_else(|| panic!("expected a close frame, got {frame:?}"))
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_violations_close_with_the_rfc_code() {
    let server = command_server().await;
    // Invalid UTF-8 in a text message: 1007.
    assert_eq!(
        close_code_after(&server, &client_frame(true, 1, &[0x66, 0xff, 0x67])).await,
        1007
    );
    // Invalid UTF-8 split over fragments: 1007.
    let mut split = client_frame(false, 1, &[0x68, 0xc3]);
    split.extend(client_frame(true, 0, &[0x28]));
    assert_eq!(close_code_after(&server, &split).await, 1007);
    // An unmasked frame: 1002.
    assert_eq!(
        close_code_after(&server, &[0x81, 0x02, b'h', b'i']).await,
        1002
    );
    // A continuation without a message: 1002.
    assert_eq!(
        close_code_after(&server, &client_frame(true, 0, b"x")).await,
        1002
    );
    // A reserved opcode: 1002.
    assert_eq!(
        close_code_after(&server, &client_frame(true, 3, b"x")).await,
        1002
    );
    // A fragmented ping: 1002.
    assert_eq!(
        close_code_after(&server, &client_frame(false, 9, b"x")).await,
        1002
    );
    // The server is still fine.
    let mut ws = server.connect().await;
    assert_eq!(ask(&mut ws, "ok").await, "ok");
    common::wait_for_connections(server.app(), 1).await;
    common::stop_server(&server, vec![ws]).await;
}
