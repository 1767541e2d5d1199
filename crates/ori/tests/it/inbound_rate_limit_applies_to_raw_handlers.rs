//! `WsOptions::inbound_rate_limit(rate, burst)` limits every inbound data
//! message of a connection before dispatch, raw handlers included: `burst`
//! messages go through, the next ones are dropped and answered
//! `{"type":"error","message":"Rate limit exceeded"}`, and `burst` refusals
//! in a row close the connection with 1008. Each connection has its own
//! bucket; control frames are not counted; a client that slows down gets
//! through again.

use crate::common;

use std::time::Duration;

use ori::testing::{self, Received};
use ori::{InProcProvider, Ori, WsOptions};

const REFUSED: &str = r#"{"type":"error","message":"Rate limit exceeded"}"#;

fn app(per_second: f64, burst: u32) -> Ori {
    Ori::create()
        .websocket_with(
            InProcProvider::new(),
            WsOptions::new().inbound_rate_limit(per_second, burst),
        )
        .on_websocket(common::command_handlers())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_is_refused_then_closed_with_1008_and_others_are_unaffected() {
    // One token per 100 s: no refill during the test.
    let server = testing::spawn(app(0.01, 3)).await;
    let mut flooder = server.connect().await;
    let mut other = server.connect().await;

    // The burst goes through (text and binary alike) and reaches the handler.
    flooder.send_text("m1").await;
    flooder.send_binary(b"m2".to_vec()).await;
    flooder.send_text("m3").await;
    assert_eq!(flooder.recv_text().await, "m1");
    assert_eq!(flooder.recv().await, Received::Binary(b"m2".to_vec()));
    assert_eq!(flooder.recv_text().await, "m3");

    // Over the limit: dropped (no echo), answered with the error reply.
    flooder.send_text("m4").await;
    flooder.send_text("kick").await; // would close with 4001 if it ran
    assert_eq!(flooder.recv_text().await, REFUSED);
    assert_eq!(flooder.recv_text().await, REFUSED);

    // The other connection has its own bucket.
    for i in 0..3 {
        other.send_text(format!("o{i}")).await;
        assert_eq!(other.recv_text().await, format!("o{i}"));
    }

    // The third refusal in a row closes the flooder with 1008.
    flooder.send_text("m6").await;
    assert_eq!(
        flooder.expect_close().await,
        Some((1008, "Rate limit exceeded".to_owned()))
    );

    // Still unaffected; over its own limit it is refused, not closed.
    other.send_text("o3").await;
    assert_eq!(other.recv_text().await, REFUSED);
    common::wait_for_connections(server.app(), 1).await;
    common::stop_server(&server, vec![other, flooder]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_frames_are_not_counted_and_a_slower_client_gets_through_again() {
    // Bursts of 2, one token a second.
    let server = testing::spawn(app(1.0, 2)).await;
    let mut ws = common::RawWs::connect(server.addr(), "/ws", None).await;
    ws.send_text("a").await;
    assert_eq!(ws.read_text().await, "a");
    for i in 0..5u8 {
        ws.send_frame(true, 9, &[i]).await;
        let pong = ws.read_frame(common::WAIT).await.expect("pong");
        assert_eq!((pong.opcode, pong.payload), (10, vec![i]));
    }
    ws.send_text("b").await;
    assert_eq!(ws.read_text().await, "b");
    ws.send_text("c").await;
    assert_eq!(ws.read_text().await, REFUSED);
    // After a pause longer than one token's refill, messages pass again.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    ws.send_text("d").await;
    assert_eq!(ws.read_text().await, "d");
    ws.send_close(1000).await;
    let close = ws.read_frame(common::WAIT).await.expect("close echo");
    assert_eq!(close.close(), Some((1000, String::new())));
    server.stop().await;
}
