//! Dispatch order (PROTOCOL.md section 2): a text frame that is a JSON
//! object whose `type` a router routes goes to the router; everything else
//! (other types, non-JSON text, binary frames) reaches the raw `message`
//! handler byte for byte, and routed messages never do.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ori::router::{SocketContext, SocketRouteBuilder, SocketRouter};
use ori::testing::{self, Received, TestServer, TestSocket};
use ori::{Conn, Handlers, Message, Ori};
use serde_json::{json, Value};

struct Routed;

impl SocketRouter for Routed {
    type State = ();

    fn configure(&self, r: &mut SocketRouteBuilder<Self>) {
        r.on(
            "routed",
            |_: Arc<Self>, ctx: SocketContext<()>| async move {
                Ok::<_, String>(json!({ "router": ctx.data() }))
            },
        );
    }
}

/// A router app whose raw handler counts and echoes what it gets.
async fn server(raw: Arc<AtomicUsize>) -> TestServer {
    testing::spawn(
        Ori::create()
            .websocket()
            .on_websocket(Handlers::new().on_message(move |ws: Conn, msg: Message| {
                let raw = raw.clone();
                async move {
                    raw.fetch_add(1, Ordering::SeqCst);
                    ws.send(msg);
                }
            }))
            .socket_router(Routed),
    )
    .await
}

async fn routed_reply(ws: &mut TestSocket, frame: &str) -> Value {
    ws.send_text(frame).await;
    let reply = ws.recv_json().await;
    assert_eq!(reply["type"], json!("routed"), "{frame} -> {reply}");
    assert!(reply["correlationId"].is_string(), "{reply}");
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrouted_text_reaches_the_raw_handler_unchanged() {
    let raw = Arc::new(AtomicUsize::new(0));
    let server = server(raw.clone()).await;
    let mut ws = server.connect().await;
    let frames = [
        r#"{"type":"other","data":1,"correlationId":"x"}"#,
        r#"{"type":"ROUTED","data":1}"#,
        r#"{"type":"routed ","data":1}"#,
        r#"{"type":1}"#,
        r#"{"type":null}"#,
        r#"{"data":{"type":"routed"}}"#,
        "{}",
        r#"[{"type":"routed"}]"#,
        r#""routed""#,
        "routed",
        "not json",
        r#"{"type":"routed""#,
        r#"{"type":"routed",}"#,
        "",
        "22",
        "  {\"type\" :\n \"other\" }  ",
        "日本語 🙂",
    ];
    for frame in frames {
        ws.send_text(frame).await;
        assert_eq!(
            ws.recv().await,
            Received::Text(frame.to_owned()),
            "{frame:?} is echoed unchanged by the raw handler"
        );
    }
    assert_eq!(raw.load(Ordering::SeqCst), frames.len());
    common::stop_server(&server, vec![ws]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_frames_reach_the_raw_handler_even_with_a_routed_type() {
    let raw = Arc::new(AtomicUsize::new(0));
    let server = server(raw.clone()).await;
    let mut ws = server.connect().await;
    for payload in [
        br#"{"type":"routed","data":1}"#.to_vec(),
        vec![0, 159, 146, 150, 255],
        Vec::new(),
    ] {
        ws.send_binary(payload.clone()).await;
        assert_eq!(ws.recv().await, Received::Binary(payload));
    }
    assert_eq!(raw.load(Ordering::SeqCst), 3);
    common::stop_server(&server, vec![ws]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routed_messages_never_reach_the_raw_handler() {
    let raw = Arc::new(AtomicUsize::new(0));
    let server = server(raw.clone()).await;
    let mut ws = server.connect().await;
    for frame in [
        r#"{"type":"routed","data":{"a":1},"correlationId":"r"}"#,
        r#"{"type":"routed"}"#,
        r#"{"correlationId":"c","data":[1],"type":"routed","extra":true}"#,
        "   \n{\"type\":\"routed\",\"data\":2}",
    ] {
        let reply = routed_reply(&mut ws, frame).await;
        let sent: Value = serde_json::from_str(frame).unwrap();
        let data = sent.get("data").cloned().unwrap_or(Value::Null);
        assert_eq!(reply["data"], json!({ "router": data }), "{reply}");
    }
    // A raw frame right after: its echo is the next thing received, so no
    // routed frame was also echoed.
    ws.send_text("probe").await;
    assert_eq!(ws.recv().await, Received::Text("probe".into()));
    assert_eq!(raw.load(Ordering::SeqCst), 1);
    common::stop_server(&server, vec![ws]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_raw_handler_unrouted_frames_are_dropped_and_routes_still_answer() {
    let server = testing::spawn(Ori::create().websocket().socket_router(Routed)).await;
    let mut ws = server.connect().await;
    ws.send_text(r#"{"type":"other"}"#).await;
    ws.send_text("not json").await;
    ws.send_binary(vec![1, 2, 3]).await;
    // Frames are handled in order: the routed reply is the first thing back.
    let reply = routed_reply(&mut ws, r#"{"type":"routed","data":"x"}"#).await;
    assert_eq!(reply["data"], json!({ "router": "x" }));
    common::stop_server(&server, vec![ws]).await;
}
