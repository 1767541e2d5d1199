//! Topics starting with `__` are the server's: a connection can neither join
//! nor leave them, and an application cannot publish to them (`broadcast`
//! and `send` reach them). Invalid names (characters outside
//! `A-Z a-z 0-9 _ : . -`, empty, over 256 characters) are refused too; the
//! connection carries on.

use crate::common;

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

/// The README's publishing pattern: the topic comes from the request.
struct Notify;

impl ori::Controller for Notify {
    fn configure(&self, r: &mut ori::RouteBuilder<Self>) {
        r.post("/notify/:topic", Self::notify);
    }
}

impl Notify {
    async fn notify(
        self: std::sync::Arc<Self>,
        mut ctx: ori::RequestContext,
    ) -> Result<ori::Json<serde_json::Value>, ori::HttpError> {
        let topic = ctx.param("topic").unwrap_or_default().to_owned();
        let body: serde_json::Value = ctx.json().await?;
        ctx.socket().publish(topic, body.to_string()).await?;
        Ok(ori::Json(serde_json::json!({ "sent": true })))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_to_a_reserved_topic_is_refused_and_reaches_nobody() {
    let server = ori::testing::spawn(common::command_app().controller("/api", Notify)).await;
    let mut ws = server.connect().await;
    let id = whoami(&mut ws).await;
    subscribe(&mut ws, "room").await;
    for topic in [
        "__broadcast__".to_owned(),
        format!("__socket__:{id}"),
        "__x".to_owned(),
    ] {
        let res = server
            .post_json(
                &format!("/api/notify/{topic}"),
                &serde_json::json!({"n": 1}),
            )
            .await;
        assert_eq!(res.status, 400, "{topic}: {}", res.text());
        assert!(res.text().contains("reserved topic"), "{}", res.text());
        let direct = server.app().socket().publish(topic.as_str(), "x").await;
        assert!(
            matches!(
                direct,
                Err(ori::PublishError::InvalidTopic {
                    reason: ori::TopicError::Reserved,
                    ..
                })
            ),
            "{direct:?}"
        );
    }
    ws.expect_silence(std::time::Duration::from_millis(100))
        .await;
    // An ordinary topic from the same route is delivered.
    let res = server
        .post_json("/api/notify/room", &serde_json::json!({"n": 2}))
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(ws.recv_text().await, r#"{"n":2}"#);
    common::stop_server(&server, vec![ws]).await;
}
