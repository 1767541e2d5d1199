//! The `pong` handler sees every pong's payload, and the `drain` handler
//! runs once a socket that pushed back has been written out.

use crate::common;

use std::time::Duration;

use common::RawWs;
use ori::testing;
use ori::{Conn, Ori, WsOptions};
use tokio::sync::mpsc;

#[derive(Debug, PartialEq)]
enum Event {
    Pong(Vec<u8>),
    Drain,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pong_payloads_reach_the_handler_and_drain_follows_backpressure() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (on_pong, on_drain) = (tx.clone(), tx);
    let handlers = common::command_handlers()
        .on_pong(move |_ws: Conn, payload| {
            let tx = on_pong.clone();
            async move {
                let _ = tx.send(Event::Pong(payload.to_vec()));
            }
        })
        .on_drain(move |_ws: Conn| {
            let tx = on_drain.clone();
            async move {
                let _ = tx.send(Event::Drain);
            }
        });
    // One reader that does not read for a while, with room for all of it:
    // neither its queue limit nor the instance's budget closes it.
    let options = WsOptions::new()
        .outbound_queue_limit(256 << 20)
        .outbound_budget(256 << 20);
    let server = testing::spawn(
        Ori::create()
            .websocket_with(ori::InProcProvider::new(), options)
            .on_websocket(handlers),
    )
    .await;
    let mut raw = RawWs::connect(server.addr(), "/ws", Some(4096)).await;

    raw.send_frame(true, 0xA, b"beat").await;
    let event = tokio::time::timeout(common::WAIT, rx.recv())
        .await
        .expect("pong event");
    assert_eq!(event, Some(Event::Pong(b"beat".to_vec())));

    raw.send_text("sub:flood").await;
    let reply = raw
        .read_frame(common::WAIT)
        .await
        .expect("subscribed reply");
    assert_eq!(reply.payload, b"subscribed:flood");

    // Far more than the kernel buffers hold, while the client is not reading.
    let chunk = "x".repeat(16 * 1024);
    let frames = 1024;
    for _ in 0..frames {
        server
            .app()
            .socket()
            .publish("flood", chunk.as_str())
            .await
            .unwrap();
    }
    assert!(
        rx.try_recv().is_err(),
        "no drain while the queue is still full"
    );
    for i in 0..frames {
        let frame = raw
            .read_frame(Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("frame {i}: {e}"));
        assert_eq!(frame.payload.len(), chunk.len());
    }
    let event = tokio::time::timeout(common::WAIT, rx.recv())
        .await
        .expect("drain event");
    assert_eq!(event, Some(Event::Drain));
    drop(raw);
    common::stop_server(&server, vec![]).await;
}
