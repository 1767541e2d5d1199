//! Keep-alive: the server pings a quiet connection every `ping_interval`;
//! a client that answers (tungstenite answers pings while it reads) stays
//! connected, one that sends nothing at all for `idle_timeout` is closed
//! with 1001 "Idle timeout".

use crate::common;

use std::time::Duration;

use common::{command_handlers, RawWs, WAIT};
use ori::testing::{self, TestServer};
use ori::{InProcProvider, Ori, WsOptions};
use tokio_tungstenite::tungstenite;

async fn server() -> TestServer {
    testing::spawn(
        Ori::create()
            .websocket_with(
                InProcProvider::new(),
                WsOptions::new()
                    .ping_interval(Some(Duration::from_millis(50)))
                    .idle_timeout(Duration::from_millis(300)),
            )
            .on_websocket(command_handlers()),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answering_client_is_pinged_repeatedly_and_stays_connected() {
    let server = server().await;
    let mut ws = server.connect().await;
    // Twelve pings span several idle timeouts; each is answered by tungstenite.
    let mut pings = 0;
    while pings < 12 {
        let next = tokio::time::timeout(WAIT, ws.next_message())
            .await
            .expect("a ping in time");
        match next {
            Some(Ok(tungstenite::Message::Ping(_))) => pings += 1,
            other => panic!("expected only pings, got {other:?} after {pings}"),
        }
    }
    assert_eq!(common::ask(&mut ws, "alive").await, "alive");
    assert_eq!(server.app().connection_count(), 1);
    common::stop_server(&server, vec![ws]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_is_closed_with_1001_idle_timeout() {
    let server = server().await;
    let mut raw = RawWs::connect(server.addr(), "/ws", None).await;
    // Read (but never answer) until the close frame.
    let close = loop {
        let frame = raw.read_frame(WAIT).await.expect("frames until the close");
        match frame.opcode {
            9 => continue,
            8 => break frame.close(),
            other => panic!("unexpected opcode {other}"),
        }
    };
    assert_eq!(close, Some((1001, "Idle timeout".to_owned())));
    raw.send_close(1001).await;
    common::wait_for_connections(server.app(), 0).await;
    common::stop_server(&server, vec![]).await;
}
