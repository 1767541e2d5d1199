//! Leaving a topic stops delivery and lowers its subscriber count; a client
//! that goes away (with or without a close frame) is removed from its topics
//! and from the connection count.

use crate::common;

use common::{
    command_server, subscribe, unsubscribe, wait_for_connections, wait_for_subscribers, whoami,
};
use ori::testing::Received;
use ori::{Emitter, Topic};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_stops_delivery_and_lowers_the_count() {
    let server = command_server().await;
    let app = server.app();
    let topic = Topic::new("alerts").unwrap();
    let mut leaver = server.connect().await;
    let mut stayer = server.connect().await;
    subscribe(&mut leaver, "alerts").await;
    subscribe(&mut stayer, "alerts").await;
    assert_eq!(app.socket().subscriber_count(&topic), 2);

    app.socket().publish("alerts", "first").await.unwrap();
    assert_eq!(leaver.recv_text().await, "first");
    assert_eq!(stayer.recv_text().await, "first");

    unsubscribe(&mut leaver, "alerts").await;
    assert_eq!(app.socket().subscriber_count(&topic), 1);

    app.socket().publish("alerts", "second").await.unwrap();
    assert_eq!(stayer.recv_text().await, "second");
    // The marker is queued after "second": had "second" reached the leaver,
    // it would arrive first.
    let leaver_id = whoami(&mut leaver).await;
    assert!(app.socket().send(leaver_id, "marker").await.unwrap());
    assert_eq!(leaver.recv_text().await, "marker");

    unsubscribe(&mut stayer, "alerts").await;
    assert_eq!(app.socket().subscriber_count(&topic), 0);
    common::stop_server(&server, vec![leaver, stayer]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribing_twice_or_from_an_unjoined_topic_is_harmless() {
    let server = command_server().await;
    let mut ws = server.connect().await;
    unsubscribe(&mut ws, "never-joined").await;
    subscribe(&mut ws, "t").await;
    subscribe(&mut ws, "t").await; // already joined: still one subscription
    assert_eq!(
        server
            .app()
            .socket()
            .subscriber_count(&Topic::new("t").unwrap()),
        1
    );
    unsubscribe(&mut ws, "t").await;
    unsubscribe(&mut ws, "t").await;
    assert_eq!(
        server
            .app()
            .socket()
            .subscriber_count(&Topic::new("t").unwrap()),
        0
    );
    common::stop_server(&server, vec![ws]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_client_is_removed_from_topics_and_connection_count() {
    let server = command_server().await;
    let app = server.app();
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    subscribe(&mut a, "room").await;
    subscribe(&mut b, "room").await;
    assert_eq!(app.connection_count(), 2);
    let a_id = whoami(&mut a).await;

    a.close(1000, "done").await;
    assert_eq!(a.recv().await, Received::Close(Some((1000, String::new()))));
    wait_for_connections(app, 1).await;
    wait_for_subscribers(app, "room", 1).await;
    assert!(!app.socket().socket_emitter().is_connected(&a_id));
    assert!(!app.socket().send(a_id, "gone?").await.unwrap());

    b.close(1000, "").await;
    assert!(matches!(b.recv().await, Received::Close(_)));
    wait_for_connections(app, 0).await;
    wait_for_subscribers(app, "room", 0).await;
    common::stop_server(&server, vec![a, b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_tcp_connection_is_removed_too() {
    let server = command_server().await;
    let app = server.app();
    let mut a = server.connect().await;
    subscribe(&mut a, "room").await;
    assert_eq!(app.connection_count(), 1);
    drop(a); // no close frame, just the TCP connection going away
    wait_for_connections(app, 0).await;
    wait_for_subscribers(app, "room", 0).await;
    // Publishing to the now empty topic is fine.
    app.socket().publish("room", "anyone?").await.unwrap();
    common::stop_server(&server, vec![]).await;
}
