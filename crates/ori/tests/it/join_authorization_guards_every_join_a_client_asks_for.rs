//! The join authorization (`WsOptions::authorize_join`) decides every join a
//! client asks for: the registry's `room.join` (with or without positions)
//! and a router's `ctx.subscribe`. A refusal is `Forbidden: <topic>` with
//! nothing joined; a panicking check refuses; the server's own
//! `ws.subscribe` is not asked.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ori::messages::{JoinRoom, MessageRegistry};
use ori::router::{SocketContext, SocketRouteBuilder, SocketRouter};
use ori::testing::{self, TestServer};
use ori::{Conn, Handlers, InProcProvider, Message, Ori, Topic, WsOptions};
use serde_json::{json, Value};

struct Rooms;

impl SocketRouter<String> for Rooms {
    type State = ();
    fn configure(&self, r: &mut SocketRouteBuilder<Self, String>) {
        r.on("enter", Self::enter);
        r.on("assign", Self::assign);
    }
}

impl Rooms {
    /// A client-initiated join through the router.
    async fn enter(self: Arc<Self>, ctx: SocketContext<(), String>) -> Result<Value, String> {
        let topic = ctx.data()["topic"].as_str().unwrap_or_default().to_owned();
        let joined = ctx.subscribe(topic).await.map_err(|e| e.to_string())?;
        Ok(json!({ "joined": joined }))
    }

    /// The server joining the socket itself: not asked.
    async fn assign(self: Arc<Self>, ctx: SocketContext<(), String>) -> Result<Value, String> {
        let joined = ctx
            .ws()
            .subscribe("private:ops")
            .map_err(|e| e.to_string())?;
        Ok(json!({ "joined": joined }))
    }
}

/// Users named by `?user=`; `user:<id>` only for that user, `private:*`
/// for nobody, `boom` panics; `asked` counts the checks.
async fn server(asked: Arc<AtomicUsize>) -> TestServer {
    let options = WsOptions::new()
        .upgrade(|req| async move { req.query_param("user") })
        .history(ori::core::HistoryConfig::new(10))
        .authorize_join(move |ws: Conn<String>, topic: Topic| {
            asked.fetch_add(1, Ordering::SeqCst);
            async move {
                match topic.as_str() {
                    "boom" => panic!("the check panicked"),
                    t if t.starts_with("private:") => false,
                    t => t
                        .strip_prefix("user:")
                        .is_none_or(|owner| owner == ws.data().as_str()),
                }
            }
        });
    let registry = Arc::new(MessageRegistry::new().on(
        JoinRoom,
        |ws: Conn<String>, data: ori::messages::JoinData| async move {
            match data.recovery() {
                Some(recovery) => ws.join(data.room.topic(), &recovery).await.map(|_| ()),
                None => ws.subscribe(data.room.topic()).map(|_| ()),
            }
        },
    ));
    testing::spawn(
        Ori::create()
            .websocket_with(InProcProvider::new(), options)
            .socket_router(Rooms)
            .on_websocket(
                Handlers::new().on_message(move |ws: Conn<String>, msg: Message| {
                    let registry = registry.clone();
                    async move {
                        if let Some(text) = msg.as_text() {
                            if let Err(e) = registry.handle_text(&ws, text).await {
                                ws.send(e.to_reply());
                            }
                        }
                    }
                }),
            ),
    )
    .await
}

fn subscribers(server: &TestServer, topic: &str) -> usize {
    server
        .app()
        .socket()
        .subscriber_count(&topic.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_joins_are_authorized_and_a_refusal_joins_nothing() {
    let asked = Arc::new(AtomicUsize::new(0));
    let server = server(asked.clone()).await;
    let mut bob = server.connect_to("/ws?user=bob", &[]).await.unwrap();
    for (frame, topic) in [
        (
            json!({"type": "room.join", "room": "user:alice"}),
            "user:alice",
        ),
        (
            json!({"type": "room.join", "room": "private:ops", "recover": true}),
            "private:ops",
        ),
        (
            json!({"type": "room.join", "room": "user:alice", "since": {"epoch": "e", "offset": 1}}),
            "user:alice",
        ),
        (json!({"type": "room.join", "room": "boom"}), "boom"),
    ] {
        bob.send_json(&frame).await;
        assert_eq!(
            bob.recv_json().await,
            json!({"type": "error", "message": format!("Forbidden: {topic}")}),
            "{frame}"
        );
        assert_eq!(subscribers(&server, topic), 0, "{topic} not joined");
    }
    // Allowed joins go through, with positions too.
    bob.send_json(&json!({"type": "room.join", "room": "user:bob", "recover": true}))
        .await;
    assert_eq!(bob.recv_json().await["type"], "room.joined");
    bob.send_json(&json!({"type": "room.join", "room": "lobby"}))
        .await;
    common::wait_until("bob is in the lobby", || subscribers(&server, "lobby") == 1).await;
    // An invalid room fails validation before anyone is asked.
    bob.send_json(&json!({"type": "room.join", "room": "__broadcast__"}))
        .await;
    assert_eq!(
        bob.recv_json().await["message"],
        "Validation failed: /room: reserved topic"
    );
    assert_eq!(asked.load(Ordering::SeqCst), 6);
    server
        .app()
        .socket()
        .publish("user:alice", "secret")
        .await
        .unwrap();
    server.app().socket().publish("lobby", "hi").await.unwrap();
    assert_eq!(
        bob.recv_text().await,
        "hi",
        "nothing of alice's reached bob"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_subscribes_are_authorized_and_server_joins_are_not() {
    let asked = Arc::new(AtomicUsize::new(0));
    let server = server(asked.clone()).await;
    let mut alice = server.connect_to("/ws?user=alice", &[]).await.unwrap();
    alice
        .send_json(&json!({"type": "enter", "data": {"topic": "user:bob"}, "correlationId": "c1"}))
        .await;
    assert_eq!(
        alice.recv_json().await,
        json!({"type": "enter", "data": null, "error": "Forbidden: user:bob", "correlationId": "c1"})
    );
    assert_eq!(subscribers(&server, "user:bob"), 0);
    alice
        .send_json(
            &json!({"type": "enter", "data": {"topic": "user:alice"}, "correlationId": "c2"}),
        )
        .await;
    assert_eq!(alice.recv_json().await["data"], json!({"joined": true}));
    assert_eq!(asked.load(Ordering::SeqCst), 2);
    // The server's own join of a topic no client may ask for.
    alice
        .send_json(&json!({"type": "assign", "correlationId": "c3"}))
        .await;
    assert_eq!(alice.recv_json().await["data"], json!({"joined": true}));
    assert_eq!(subscribers(&server, "private:ops"), 1);
    assert_eq!(asked.load(Ordering::SeqCst), 2, "not asked for it");
}
