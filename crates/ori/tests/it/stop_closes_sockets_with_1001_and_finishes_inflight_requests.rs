//! `App::stop` closes every open socket with 1001 "Server shutting down",
//! lets an HTTP request already in flight finish with its normal response,
//! stops the provider (publishing then fails with "Provider not ready") and
//! refuses new connections.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use common::{command_handlers, finish_close, subscribe, whoami};
use ori::testing::{self, http_request, Received};
use ori::{Controller, Ori, RequestContext, RouteBuilder};
use tokio::sync::Notify;

/// `GET /api/slow` signals that it started, then takes 300 ms.
struct SlowController {
    started: Arc<Notify>,
}

impl Controller for SlowController {
    fn configure(&self, r: &mut RouteBuilder<Self>) {
        r.get("/slow", Self::slow);
    }
}

impl SlowController {
    async fn slow(self: Arc<Self>, _ctx: RequestContext) -> &'static str {
        self.started.notify_one();
        tokio::time::sleep(Duration::from_millis(300)).await;
        "done"
    }
}

async fn server(started: Arc<Notify>) -> testing::TestServer {
    testing::spawn(
        Ori::create()
            .websocket()
            .on_websocket(command_handlers())
            .controller("/api", SlowController { started })
            .shutdown_timeout(Duration::from_secs(5)),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_closes_open_sockets_with_1001() {
    let server = server(Arc::new(Notify::new())).await;
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    subscribe(&mut a, "t").await;
    whoami(&mut b).await;
    assert_eq!(server.app().connection_count(), 2);

    let app = server.app().clone();
    let stopping = tokio::spawn(async move { app.stop().await });
    for ws in [&mut a, &mut b] {
        assert_eq!(
            ws.recv().await,
            Received::Close(Some((1001, "Server shutting down".into())))
        );
        finish_close(ws).await;
    }
    tokio::time::timeout(Duration::from_secs(3), stopping)
        .await
        .expect("stop finished once the sockets closed")
        .unwrap();
    assert_eq!(server.app().connection_count(), 0);
    // Idempotent.
    tokio::time::timeout(Duration::from_secs(1), server.stop())
        .await
        .expect("a second stop returns at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_is_stopped_after_stop() {
    let server = server(Arc::new(Notify::new())).await;
    server.app().socket().publish("x", "before").await.unwrap();
    server.stop().await;
    let err = server
        .app()
        .socket()
        .publish("x", "after")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Cannot publish to topic "x": Provider not ready"#
    );
    assert!(matches!(err, ori::PublishError::NotReady { .. }));
    assert!(server.app().socket().broadcast("after").await.is_err());
    assert!(server
        .app()
        .socket()
        .send(ori::SocketId::new(), "after")
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_request_completes_with_200_during_stop() {
    let started = Arc::new(Notify::new());
    let server = server(started.clone()).await;
    let mut ws = server.connect().await;
    whoami(&mut ws).await;

    let addr = server.addr();
    let request = tokio::spawn(async move {
        http_request(addr, Method::GET, "/api/slow", &[], Default::default()).await
    });
    tokio::time::timeout(Duration::from_secs(5), started.notified())
        .await
        .expect("the slow handler started");

    let app = server.app().clone();
    let stopping = tokio::spawn(async move { app.stop().await });
    assert_eq!(
        ws.recv().await,
        Received::Close(Some((1001, "Server shutting down".into())))
    );
    finish_close(&mut ws).await;

    let resp = tokio::time::timeout(Duration::from_secs(5), request)
        .await
        .expect("the in-flight request finished")
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "done");
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .expect("stop finished")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_app_refuses_new_connections() {
    let server = server(Arc::new(Notify::new())).await;
    server.stop().await;
    // The listener closes as the accept loop sees the shutdown; poll (bounded)
    // until connecting is refused.
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while tokio::net::TcpStream::connect(server.addr()).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still accepting after stop"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(server.connect_to("/ws", &[]).await.is_err());
}
