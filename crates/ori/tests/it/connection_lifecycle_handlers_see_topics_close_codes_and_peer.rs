//! The lifecycle as handlers see it: `on_open` with the internal topics
//! already joined, a UUID v4 id and the peer's loopback address; `on_close`
//! with the client's close code and reason (or 1006 when the TCP connection
//! just ends); `ws.close(code, reason)` from a handler reaching the client;
//! pings answered with pongs.

use crate::common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bytes::Bytes;
use common::{command_handlers, finish_close, whoami};
use ori::testing::{self, Received, TestServer};
use ori::{Conn, Ori, ReadyState, SocketId};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite;

#[derive(Debug)]
enum Event {
    Open {
        id: SocketId,
        topics: Vec<String>,
        remote: Option<std::net::SocketAddr>,
        state: ReadyState,
    },
    Close {
        id: SocketId,
        code: u16,
        reason: String,
        topics_after: usize,
        state: ReadyState,
    },
    Ping(Bytes),
}

async fn server() -> (TestServer, mpsc::UnboundedReceiver<Event>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (on_open, on_close, on_ping) = (tx.clone(), tx.clone(), tx);
    let handlers = command_handlers()
        .on_open(move |ws: Conn| {
            let tx = on_open.clone();
            async move {
                let _ = tx.send(Event::Open {
                    id: ws.id(),
                    topics: ws.topics().iter().map(|t| t.to_string()).collect(),
                    remote: ws.remote_addr(),
                    state: ws.ready_state(),
                });
            }
        })
        .on_close(move |ws: Conn, code, reason| {
            let tx = on_close.clone();
            async move {
                let _ = tx.send(Event::Close {
                    id: ws.id(),
                    code: code.as_u16(),
                    reason,
                    topics_after: ws.topics().len(),
                    state: ws.ready_state(),
                });
            }
        })
        .on_ping(move |_ws: Conn, payload: Bytes| {
            let tx = on_ping.clone();
            async move {
                // Not the ping with which the test client waits for the open.
                if payload != testing::SYNC_PING {
                    let _ = tx.send(Event::Ping(payload));
                }
            }
        });
    let server = testing::spawn(Ori::create().websocket().on_websocket(handlers)).await;
    (server, rx)
}

async fn next_event(rx: &mut mpsc::UnboundedReceiver<Event>) -> Event {
    tokio::time::timeout(common::WAIT, rx.recv())
        .await
        .expect("a lifecycle event in time")
        .expect("event channel open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_handler_sees_internal_topics_a_v4_id_and_the_loopback_peer() {
    let (server, mut events) = server().await;
    let mut ws = server.connect().await;
    let Event::Open {
        id,
        topics,
        remote,
        state,
    } = next_event(&mut events).await
    else {
        panic!("expected the open event first");
    };
    assert_eq!(
        topics,
        vec!["__broadcast__".to_owned(), format!("__socket__:{id}")]
    );
    assert_eq!(state, ReadyState::Open);
    let remote = remote.expect("peer address known");
    assert_eq!(remote.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(remote, ws.local_addr(), "the client's own address");
    // The id is a UUID v4 (SocketId parsing accepts nothing else) and is the
    // one the connection reports.
    let text = id.to_string();
    assert_eq!(text.len(), 36);
    assert_eq!(text.parse::<SocketId>().unwrap(), id);
    assert_eq!(id.as_uuid().get_version_num(), 4);
    assert_eq!(whoami(&mut ws).await, id);

    let other = server.connect().await;
    let Event::Open { id: other_id, .. } = next_event(&mut events).await else {
        panic!("expected an open event");
    };
    assert_ne!(other_id, id, "ids are unique");
    common::stop_server(&server, vec![ws, other]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_handler_receives_the_clients_code_and_reason() {
    let (server, mut events) = server().await;
    let mut ws = server.connect().await;
    let Event::Open { id, .. } = next_event(&mut events).await else {
        panic!()
    };

    ws.close(4000, "bye").await;
    // The server echoes the code.
    assert_eq!(
        ws.recv().await,
        Received::Close(Some((4000, String::new())))
    );
    match next_event(&mut events).await {
        Event::Close {
            id: closed,
            code,
            reason,
            topics_after,
            state,
        } => {
            assert_eq!((closed, code, reason.as_str()), (id, 4000, "bye"));
            // What it was in when it closed: `__broadcast__` and its own
            // `__socket__:<id>` (the hub has let go of it by then).
            assert_eq!(topics_after, 2, "the topics it was in");
            assert_eq!(state, ReadyState::Closed);
        }
        other => panic!("expected the close event, got {other:?}"),
    }
    common::wait_for_connections(server.app(), 0).await;
    common::stop_server(&server, vec![]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_without_a_code_is_1005_and_a_vanished_client_is_1006() {
    let (server, mut events) = server().await;
    let mut polite = server.connect().await;
    let _ = next_event(&mut events).await;
    polite
        .send_message(tungstenite::Message::Close(None))
        .await
        .unwrap();
    match next_event(&mut events).await {
        Event::Close { code, reason, .. } => assert_eq!((code, reason.as_str()), (1005, "")),
        other => panic!("expected the close event, got {other:?}"),
    }

    let rude = server.connect().await;
    let _ = next_event(&mut events).await;
    drop(rude);
    match next_event(&mut events).await {
        Event::Close { code, .. } => assert_eq!(code, 1006),
        other => panic!("expected the close event, got {other:?}"),
    }
    common::stop_server(&server, vec![polite]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_close_reaches_the_client_with_its_code_and_reason() {
    let (server, mut events) = server().await;
    let mut ws = server.connect().await;
    let _ = next_event(&mut events).await;
    ws.send_text("hello").await;
    ws.send_text("kick").await;
    ws.send_text("never handled").await;
    // What was queued before the close still arrives, then the close.
    assert_eq!(ws.recv().await, Received::Text("hello".into()));
    assert_eq!(
        ws.recv().await,
        Received::Close(Some((4001, "kicked".into())))
    );
    finish_close(&mut ws).await;
    match next_event(&mut events).await {
        Event::Close { code, reason, .. } => assert_eq!((code, reason.as_str()), (4001, "kicked")),
        other => panic!("expected the close event, got {other:?}"),
    }
    common::wait_for_connections(server.app(), 0).await;
    common::stop_server(&server, vec![]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ping_gets_a_pong_with_the_same_payload() {
    let (server, mut events) = server().await;
    let mut ws = server.connect().await;
    let _ = next_event(&mut events).await;
    for payload in [&b"are you there"[..], b"", &[0u8, 255, 7][..]] {
        ws.send_message(tungstenite::Message::Ping(Bytes::copy_from_slice(payload)))
            .await
            .unwrap();
        let pong = match tokio::time::timeout(Duration::from_secs(5), ws.next_message())
            .await
            .expect("pong in time")
        {
            Some(Ok(tungstenite::Message::Pong(p))) => p,
            other => panic!("expected a pong, got {other:?}"),
        };
        assert_eq!(&pong[..], payload);
        match next_event(&mut events).await {
            Event::Ping(p) => assert_eq!(&p[..], payload),
            other => panic!("expected the ping event, got {other:?}"),
        }
    }
    // Still a working connection.
    assert_eq!(common::ask(&mut ws, "after pings").await, "after pings");
    common::stop_server(&server, vec![ws]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_close_with_a_code_not_allowed_on_the_wire_becomes_1000() {
    let (server, mut events) = server().await;
    for code in [1005u16, 1006, 999, 5000] {
        let mut ws = server.connect().await;
        let _ = next_event(&mut events).await;
        ws.send_text(format!("close:{code}:why")).await;
        assert_eq!(
            ws.recv().await,
            Received::Close(Some((1000, "why".into()))),
            "code {code}"
        );
        finish_close(&mut ws).await;
        let _ = next_event(&mut events).await;
    }
    common::stop_server(&server, vec![]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_close_reason_is_cut_to_fit_a_control_frame() {
    let (server, mut events) = server().await;
    let mut ws = server.connect().await;
    let _ = next_event(&mut events).await;
    // 70 two-byte characters (140 bytes) do not fit in a close frame beside
    // the code (123 bytes at most); the cut falls on a character boundary.
    let long = "é".repeat(70);
    ws.send_text(format!("close:4002:{long}")).await;
    match ws.recv().await {
        Received::Close(Some((4002, reason))) => assert_eq!(reason, "é".repeat(61)),
        other => panic!("expected a 4002 close, got {other:?}"),
    }
    finish_close(&mut ws).await;
    common::stop_server(&server, vec![]).await;
}
