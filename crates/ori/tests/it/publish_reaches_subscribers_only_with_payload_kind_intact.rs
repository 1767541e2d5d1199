//! A publish reaches the subscribers of its topic and nobody else, whether
//! it comes from the app's emitter or from an HTTP controller; text arrives
//! as text and binary as binary, byte for byte.

use crate::common;

use std::sync::Arc;

use common::{command_handlers, subscribe, whoami};
use ori::testing::{self, Received};
use ori::{Controller, HttpError, Json, Ori, RequestContext, RouteBuilder};

/// `POST /api/notify/:topic` publishes the body as text,
/// `POST /api/notify-binary/:topic` publishes it as binary.
struct NotifyController;

impl Controller for NotifyController {
    fn configure(&self, r: &mut RouteBuilder<Self>) {
        r.post("/notify/:topic", Self::notify);
        r.post("/notify-binary/:topic", Self::notify_binary);
    }
}

impl NotifyController {
    async fn notify(
        self: Arc<Self>,
        mut ctx: RequestContext,
    ) -> Result<Json<serde_json::Value>, HttpError> {
        let topic = ctx.param("topic").unwrap_or_default().to_owned();
        let body: serde_json::Value = ctx.json().await?;
        ctx.socket().publish(topic, body.to_string()).await?;
        Ok(Json(serde_json::json!({ "sent": true })))
    }

    async fn notify_binary(
        self: Arc<Self>,
        mut ctx: RequestContext,
    ) -> Result<Json<serde_json::Value>, HttpError> {
        let topic = ctx.param("topic").unwrap_or_default().to_owned();
        let body = ctx.bytes().await?;
        ctx.socket().publish(topic, body).await?;
        Ok(Json(serde_json::json!({ "sent": true })))
    }
}

async fn server() -> testing::TestServer {
    testing::spawn(
        Ori::create()
            .websocket()
            .on_websocket(command_handlers())
            .controller("/api", NotifyController),
    )
    .await
}

/// Every byte value, so any re-encoding or text conversion would show.
fn all_bytes() -> Vec<u8> {
    (0..=255u8).chain((0..=255u8).rev()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_publish_reaches_subscribers_and_not_others() {
    let server = server().await;
    let mut sub_a = server.connect().await;
    let mut sub_b = server.connect().await;
    let mut other = server.connect().await;
    subscribe(&mut sub_a, "news").await;
    subscribe(&mut sub_b, "news").await;
    subscribe(&mut other, "sports").await;
    let other_id = whoami(&mut other).await;

    let text = "héllo ✓ wörld — {\"n\":1}";
    server.app().socket().publish("news", text).await.unwrap();
    server
        .app()
        .socket()
        .publish("news", all_bytes())
        .await
        .unwrap();

    for sub in [&mut sub_a, &mut sub_b] {
        assert_eq!(sub.recv().await, Received::Text(text.to_owned()));
        assert_eq!(sub.recv().await, Received::Binary(all_bytes()));
    }
    // A direct send queued after the publishes: if the publishes had reached
    // the non-subscriber, they would arrive before this marker.
    assert!(server
        .app()
        .socket()
        .send(other_id, "marker")
        .await
        .unwrap());
    assert_eq!(other.recv().await, Received::Text("marker".into()));
    common::stop_server(&server, vec![sub_a, sub_b, other]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_and_large_payloads_keep_their_kind_and_bytes() {
    let server = server().await;
    let mut sub = server.connect().await;
    subscribe(&mut sub, "blobs").await;

    let large: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let emitter = server.app().socket();
    emitter.publish("blobs", "").await.unwrap();
    emitter.publish("blobs", Vec::<u8>::new()).await.unwrap();
    emitter.publish("blobs", large.clone()).await.unwrap();
    emitter.publish("blobs", "x".repeat(70_000)).await.unwrap();

    assert_eq!(sub.recv().await, Received::Text(String::new()));
    assert_eq!(sub.recv().await, Received::Binary(Vec::new()));
    assert_eq!(sub.recv().await, Received::Binary(large));
    assert_eq!(sub.recv().await, Received::Text("x".repeat(70_000)));
    common::stop_server(&server, vec![sub]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_publish_reaches_subscribers_and_not_others() {
    let server = server().await;
    let mut sub = server.connect().await;
    let mut other = server.connect().await;
    subscribe(&mut sub, "room:7").await;
    subscribe(&mut other, "room:8").await;
    let other_id = whoami(&mut other).await;

    let body = serde_json::json!({ "event": "update", "text": "ünïcode" });
    let resp = server.post_json("/api/notify/room:7", &body).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json(), serde_json::json!({ "sent": true }));
    let resp = server
        .request(
            axum::http::Method::POST,
            "/api/notify-binary/room:7",
            &[],
            all_bytes(),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());

    match sub.recv().await {
        Received::Text(t) => {
            assert_eq!(serde_json::from_str::<serde_json::Value>(&t).unwrap(), body)
        }
        other => panic!("expected text, got {other:?}"),
    }
    assert_eq!(sub.recv().await, Received::Binary(all_bytes()));

    assert!(server
        .app()
        .socket()
        .send(other_id, "marker")
        .await
        .unwrap());
    assert_eq!(other.recv().await, Received::Text("marker".into()));
    common::stop_server(&server, vec![sub, other]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_publish_to_an_invalid_topic_is_400() {
    let server = server().await;
    let resp = server
        .post_json("/api/notify/bad%20topic", &serde_json::json!({ "x": 1 }))
        .await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    let error = resp.json()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("bad topic"), "{error}");
    common::stop_server(&server, vec![]).await;
}
