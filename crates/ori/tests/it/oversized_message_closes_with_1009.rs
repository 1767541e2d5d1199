//! With `max_message_size(1024)`, a message of exactly 1024 bytes is
//! accepted and one byte more closes the connection with 1009, whether it
//! comes in one frame or in fragments; other connections are unaffected.

use crate::common;

use common::{ask, command_handlers, finish_close, RawWs, WAIT};
use ori::testing::{self, Received, TestServer};
use ori::{InProcProvider, Ori, WsOptions};

async fn server() -> TestServer {
    testing::spawn(
        Ori::create()
            .websocket_with(
                InProcProvider::new(),
                WsOptions::new().max_message_size(1024),
            )
            .on_websocket(command_handlers()),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_the_limit_is_echoed_and_one_byte_more_closes_with_1009() {
    let server = server().await;
    let mut ws = server.connect().await;
    let mut bystander = server.connect().await;

    let at_limit = "a".repeat(1024);
    assert_eq!(ask(&mut ws, &at_limit).await, at_limit);
    let binary: Vec<u8> = (0..1024u32).map(|i| i as u8).collect();
    ws.send_binary(binary.clone()).await;
    assert_eq!(ws.recv().await, Received::Binary(binary));

    ws.send_text("b".repeat(1025)).await;
    match ws.recv().await {
        Received::Close(Some((code, _))) => assert_eq!(code, 1009),
        other => panic!("expected a 1009 close, got {other:?}"),
    }
    finish_close(&mut ws).await;
    common::wait_for_connections(server.app(), 1).await;

    assert_eq!(ask(&mut bystander, &at_limit).await, at_limit);
    let mut fresh = server.connect().await;
    assert_eq!(ask(&mut fresh, "small").await, "small");
    common::stop_server(&server, vec![bystander, fresh]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_over_the_limit_closes_with_1009() {
    let server = server().await;
    let mut ws = server.connect().await;
    ws.send_binary(vec![0u8; 1025]).await;
    assert!(matches!(ws.recv().await, Received::Close(Some((1009, _)))));
    common::stop_server(&server, vec![ws]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_message_is_limited_after_joining() {
    let server = server().await;
    // 512 + 512 bytes in two fragments: exactly the limit.
    let mut ok = RawWs::connect(server.addr(), "/ws", None).await;
    ok.send_frame(false, 1, &[b'f'; 512]).await;
    ok.send_frame(true, 0, &[b'g'; 512]).await;
    let echoed = ok.read_text().await;
    assert_eq!(echoed.len(), 1024);
    assert!(echoed.starts_with(&"f".repeat(512)) && echoed.ends_with(&"g".repeat(512)));

    // 512 + 513 bytes: over it, though each fragment is small.
    let mut over = RawWs::connect(server.addr(), "/ws", None).await;
    over.send_frame(false, 2, &[1; 512]).await;
    over.send_frame(true, 0, &[2; 513]).await;
    let frame = over.read_frame(WAIT).await.expect("a close frame");
    assert_eq!(frame.close().map(|(code, _)| code), Some(1009), "{frame:?}");

    // The first connection still works.
    ok.send_text("still fine").await;
    assert_eq!(ok.read_text().await, "still fine");
    drop((ok, over));
    common::stop_server(&server, vec![]).await;
}
