//! Topics starting with `__` are the server's: a connection can neither join
//! nor leave them. Invalid names (characters outside `A-Z a-z 0-9 _ : . -`,
//! empty, over 256 characters) are refused too; the connection carries on.

mod common;

use common::{ask, command_server, subscribe, whoami};
use ori::testing::Received;
use ori::{PublishError, Topic};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_topics_cannot_be_joined_or_left() {
    let server = command_server().await;
    let mut ws = server.connect().await;
    let id = whoami(&mut ws).await;
    for topic in ["__broadcast__", "__x", &format!("__socket__:{id}"), "__"] {
        let reply = ask(&mut ws, &format!("sub:{topic}")).await;
        assert!(
            reply.starts_with("error:"),
            "joining {topic:?} must fail, got {reply:?}"
        );
        assert!(reply.contains("reserved"), "{reply}");
        let reply = ask(&mut ws, &format!("unsub:{topic}")).await;
        assert!(
            reply.starts_with("error:"),
            "leaving {topic:?} must fail, got {reply:?}"
        );
    }
    // Leaving __broadcast__ failed, so broadcasts still arrive.
    server.app().socket().broadcast("still here").await.unwrap();
    assert_eq!(ws.recv().await, Received::Text("still here".into()));
    // A single leading underscore is an ordinary topic.
    subscribe(&mut ws, "_private").await;
    assert_eq!(
        server
            .app()
            .socket()
            .subscriber_count(&Topic::new("__x").unwrap()),
        0
    );
    common::stop_server(&server, vec![ws]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_topic_names_are_refused() {
    let server = command_server().await;
    let mut ws = server.connect().await;
    let too_long = "x".repeat(257);
    for topic in [
        "bad topic",
        "",
        "a/b",
        "emoji-🙂",
        "tab\there",
        too_long.as_str(),
    ] {
        let reply = ask(&mut ws, &format!("sub:{topic}")).await;
        assert!(
            reply.starts_with("error:invalid topic"),
            "joining {topic:?} must fail, got {reply:?}"
        );
    }
    let reply = ask(&mut ws, &format!("sub:{too_long}")).await;
    assert!(reply.contains("at most 256"), "{reply}");
    // The longest valid name and the full alphabet are accepted.
    subscribe(&mut ws, &"y".repeat(256)).await;
    subscribe(&mut ws, "Az09_:.-").await;
    server
        .app()
        .socket()
        .publish("y".repeat(256), "long")
        .await
        .unwrap();
    assert_eq!(ws.recv().await, Received::Text("long".into()));
    common::stop_server(&server, vec![ws]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_to_an_invalid_topic_is_an_error() {
    let server = command_server().await;
    let emitter = server.app().socket();
    for topic in ["bad topic", "", &"z".repeat(257)] {
        let err = emitter.publish(topic, "x").await.unwrap_err();
        assert!(
            matches!(err, PublishError::InvalidTopic { .. }),
            "{topic:?}: {err:?}"
        );
    }
    common::stop_server(&server, vec![]).await;
}
