//! `broadcast` reaches every connection; `send(socket_id)` reaches exactly
//! that one and answers `Ok(true)`; an unknown id answers `Ok(false)`.

use crate::common;

use common::{command_server, subscribe, whoami};
use ori::testing::Received;
use ori::SocketId;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_reaches_every_connection_whatever_it_joined() {
    let server = command_server().await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(server.connect().await);
    }
    subscribe(&mut clients[0], "some-topic").await;
    // Make sure every connection is registered before broadcasting.
    for c in &mut clients {
        whoami(c).await;
    }
    server
        .app()
        .socket()
        .broadcast("to everyone")
        .await
        .unwrap();
    server
        .app()
        .socket()
        .broadcast(vec![0u8, 1, 2, 255])
        .await
        .unwrap();
    for c in &mut clients {
        assert_eq!(c.recv().await, Received::Text("to everyone".into()));
        assert_eq!(c.recv().await, Received::Binary(vec![0, 1, 2, 255]));
    }
    common::stop_server(&server, clients).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_reaches_exactly_one_connection() {
    let server = command_server().await;
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    let mut c = server.connect().await;
    let (a_id, b_id, c_id) = (
        whoami(&mut a).await,
        whoami(&mut b).await,
        whoami(&mut c).await,
    );
    assert!(a_id != b_id && b_id != c_id && a_id != c_id);

    let emitter = server.app().socket();
    assert!(emitter.send(b_id, "only for b").await.unwrap());
    assert!(emitter.send(b_id, vec![9u8, 8, 7]).await.unwrap());
    // Markers queued after the sends: a and c see them first.
    assert!(emitter.send(a_id, "marker-a").await.unwrap());
    assert!(emitter.send(c_id, "marker-c").await.unwrap());

    assert_eq!(b.recv().await, Received::Text("only for b".into()));
    assert_eq!(b.recv().await, Received::Binary(vec![9, 8, 7]));
    assert_eq!(a.recv().await, Received::Text("marker-a".into()));
    assert_eq!(c.recv().await, Received::Text("marker-c".into()));
    common::stop_server(&server, vec![a, b, c]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_to_an_unknown_socket_is_ok_false() {
    let server = command_server().await;
    let mut a = server.connect().await;
    whoami(&mut a).await;
    assert!(!server
        .app()
        .socket()
        .send(SocketId::new(), "nobody")
        .await
        .unwrap());
    // The existing connection got nothing from it.
    assert_eq!(common::ask(&mut a, "ping").await, "ping");
    common::stop_server(&server, vec![a]).await;
}
