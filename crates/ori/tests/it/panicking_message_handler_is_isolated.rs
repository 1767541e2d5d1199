//! A panic inside a message handler is contained: the connection it
//! happened on keeps working, other connections are unaffected, and the
//! server keeps serving WebSocket and HTTP.

use crate::common;

use common::{ask, command_server, subscribe, whoami};
use ori::testing::Received;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_in_a_handler_leaves_the_connection_and_server_working() {
    let server = command_server().await;
    let mut victim = server.connect().await;
    let mut bystander = server.connect().await;
    subscribe(&mut victim, "room").await;
    subscribe(&mut bystander, "room").await;
    let victim_id = whoami(&mut victim).await;

    for round in 0..3 {
        victim.send_text("panic").await;
        // The next message on the same connection is still handled, in order.
        assert_eq!(
            ask(&mut victim, &format!("after-panic-{round}")).await,
            format!("after-panic-{round}")
        );
    }
    assert_eq!(ask(&mut bystander, "still here").await, "still here");

    // Subscriptions and direct sends survived the panics.
    assert_eq!(server.app().connection_count(), 2);
    assert!(server.app().socket().is_connected(&victim_id));
    server.app().socket().publish("room", "news").await.unwrap();
    assert_eq!(victim.recv().await, Received::Text("news".into()));
    assert_eq!(bystander.recv().await, Received::Text("news".into()));

    // New connections and HTTP still work.
    let mut late = server.connect().await;
    assert_eq!(ask(&mut late, "hi").await, "hi");
    let resp = server.get("/nothing-here").await;
    assert_eq!(resp.status, 404);
    common::stop_server(&server, vec![victim, bystander, late]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_on_many_connections_at_once_are_contained() {
    let server = command_server().await;
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(server.connect().await);
    }
    for c in &mut clients {
        c.send_text("panic").await;
    }
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(ask(c, &format!("ok-{i}")).await, format!("ok-{i}"));
    }
    assert_eq!(server.app().connection_count(), 20);
    common::stop_server(&server, clients).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_in_a_registry_handler_is_contained_too() {
    use ori::messages::{Heartbeat, JoinRoom, MessageRegistry};
    use ori::{Conn, Ori};
    use serde_json::json;

    let server = ori::testing::spawn(
        Ori::create().websocket().message_registry(
            MessageRegistry::new()
                .on(JoinRoom, |ws: Conn, data| async move {
                    ws.subscribe(data.room.topic())
                })
                .on(Heartbeat, |_ws: Conn, _| async move {
                    if true {
                        panic!("registry handler panicked on purpose");
                    }
                }),
        ),
    )
    .await;
    let mut victim = server.connect().await;
    for _ in 0..3 {
        victim.send_json(&json!({ "type": "heartbeat" })).await;
    }
    // The connection is still open and handled in order: the join after
    // the panics takes effect, and the socket is still registered.
    victim
        .send_json(&json!({ "type": "room.join", "room": "room" }))
        .await;
    common::wait_for_subscribers(server.app(), "room", 1).await;
    assert_eq!(server.app().connection_count(), 1);
    server.app().socket().publish("room", "news").await.unwrap();
    assert_eq!(victim.recv().await, Received::Text("news".into()));
    common::stop_server(&server, vec![victim]).await;
}
