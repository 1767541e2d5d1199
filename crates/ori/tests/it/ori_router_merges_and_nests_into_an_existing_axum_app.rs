//! Mounting Ori into an existing axum app: the router of `into_router` has
//! no fallback of its own, so `existing.merge(ori)` and `existing.nest(..,
//! ori)` work and keep the existing app's fallback; `Ori::merge` keeps a
//! merged router's fallback too; with none anywhere (Ori's router alone, or
//! merged either way) an unknown path answers Ori's JSON 404. WebSocket
//! upgrades, controllers and publishes work in each shape.

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::get;
use common::{ask, command_handlers, subscribe};
use ori::testing::{self, http_request, Method, TestResponse, TestSocket};
use ori::{App, Controller, Ori, RequestEmitter, RouteBuilder};
use serde_json::json;

struct Hello;

impl Controller for Hello {
    fn configure(&self, r: &mut RouteBuilder<Self>) {
        r.get("/hello", Self::hello);
    }
}

impl Hello {
    async fn hello(self: Arc<Self>, socket: RequestEmitter) -> String {
        socket.publish("news", "hello was asked").await.unwrap();
        "hello from ori".into()
    }
}

fn ori() -> Ori {
    Ori::create()
        .websocket()
        .on_websocket(command_handlers())
        .controller("/api", Hello)
}

/// The existing app: a page and its own 404 page.
fn existing() -> axum::Router {
    axum::Router::new()
        .route("/", get(|| async { "home" }))
        .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "the app's 404 page") })
}

async fn serve(router: axum::Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = tokio::spawn(async move {
        let make = router.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, make).await.unwrap();
    });
    (addr, serving)
}

async fn get_path(addr: SocketAddr, path: &str) -> TestResponse {
    http_request(addr, Method::GET, path, &[], Default::default()).await
}

/// Upgrades at `ws`, then a controller call at `hello` publishes to the
/// socket's topic.
async fn realtime_works(app: &App, addr: SocketAddr, ws: &str, hello: &str) {
    let mut socket = TestSocket::connect(&format!("ws://{addr}{ws}"), &[])
        .await
        .expect("upgrade");
    assert_eq!(ask(&mut socket, "echo me").await, "echo me");
    subscribe(&mut socket, "news").await;
    let resp = get_path(addr, hello).await;
    assert_eq!(
        (resp.status.as_u16(), resp.text()),
        (200, "hello from ori".into())
    );
    assert_eq!(socket.recv_text().await, "hello was asked");
    app.socket().publish("news", "direct").await.unwrap();
    assert_eq!(socket.recv_text().await, "direct");
    socket.close(1000, "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_into_an_app_with_a_fallback_keeps_that_fallback() {
    let (realtime, app) = ori().into_router().await.expect("valid set-up");
    let (addr, serving) = serve(existing().merge(realtime)).await;
    assert_eq!(get_path(addr, "/").await.text(), "home");
    let missing = get_path(addr, "/missing").await;
    assert_eq!(
        (missing.status.as_u16(), missing.text()),
        (404, "the app's 404 page".into())
    );
    realtime_works(&app, addr, "/ws", "/api/hello").await;
    // Ori's routes keep their JSON 405.
    let resp = http_request(addr, Method::POST, "/api/hello", &[], Default::default()).await;
    assert_eq!(
        (resp.status.as_u16(), resp.json()),
        (405, json!({ "error": "Method Not Allowed" }))
    );
    app.stop().await;
    serving.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_under_a_prefix_serves_websocket_and_controllers_there() {
    let (realtime, app) = ori().into_router().await.expect("valid set-up");
    let (addr, serving) = serve(existing().nest("/realtime", realtime)).await;
    assert_eq!(get_path(addr, "/").await.text(), "home");
    realtime_works(&app, addr, "/realtime/ws", "/realtime/api/hello").await;
    for path in ["/missing", "/realtime/missing", "/api/hello"] {
        let resp = get_path(addr, path).await;
        assert_eq!(
            (resp.status.as_u16(), resp.text()),
            (404, "the app's 404 page".into()),
            "{path}"
        );
    }
    app.stop().await;
    serving.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ori_merge_keeps_the_merged_fallback_and_without_one_answers_json_404() {
    let server = testing::spawn(ori().merge(existing())).await;
    assert_eq!(server.get("/").await.text(), "home");
    let missing = server.get("/missing").await;
    assert_eq!(
        (missing.status.as_u16(), missing.text()),
        (404, "the app's 404 page".into())
    );
    assert_eq!(server.get("/api/hello").await.text(), "hello from ori");
    server.stop().await;

    let plain = axum::Router::new().route("/", get(|| async { "home" }));
    let server = testing::spawn(ori().merge(plain)).await;
    assert_eq!(server.get("/").await.text(), "home");
    let missing = server.get("/missing").await;
    assert_eq!(
        (missing.status.as_u16(), missing.json()),
        (404, json!({ "error": "Not Found" }))
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_into_an_app_without_a_fallback_unknown_paths_answer_json_404() {
    let (realtime, app) = ori().into_router().await.expect("valid set-up");
    let plain = axum::Router::new().route("/", get(|| async { "home" }));
    let (addr, serving) = serve(plain.merge(realtime)).await;
    assert_eq!(get_path(addr, "/").await.text(), "home");
    let missing = get_path(addr, "/missing").await;
    assert_eq!(
        (missing.status.as_u16(), missing.json()),
        (404, json!({ "error": "Not Found" }))
    );
    realtime_works(&app, addr, "/ws", "/api/hello").await;
    app.stop().await;
    serving.abort();
}
