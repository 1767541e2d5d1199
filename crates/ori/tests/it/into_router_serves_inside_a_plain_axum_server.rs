//! `Ori::into_router` gives an axum `Router` that works inside the user's
//! own `axum::serve` stack (with connect info), next to the user's routes:
//! WebSocket upgrades, handlers, publishes and `App::stop` all work.

use crate::common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::http::Method;
use axum::routing::get;
use common::{ask, command_handlers, finish_close, subscribe};
use ori::testing::{http_request, Received, TestSocket};
use ori::{Conn, Controller, Ori, RequestContext, RouteBuilder};

struct Hello;

impl Controller for Hello {
    fn configure(&self, r: &mut RouteBuilder<Self>) {
        r.get("/hello", Self::hello);
    }
}

impl Hello {
    async fn hello(self: Arc<Self>, ctx: RequestContext) -> String {
        format!("hello from ori, {:?}", ctx.remote_addr().map(|a| a.ip()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_and_user_routes_work_through_axum_serve() {
    let handlers = command_handlers().on_open(|ws: Conn| async move {
        ws.send(format!("peer {:?}", ws.remote_addr().map(|a| a.ip())));
    });
    let (router, app) = Ori::create()
        .websocket()
        .on_websocket(handlers)
        .controller("/api", Hello)
        .into_router()
        .await
        .expect("valid set-up");
    assert_eq!(app.local_addr(), None);
    assert_eq!(app.port(), 0);
    let router = router.route("/user", get(|| async { "user route" }));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });

    // The user's route and the Ori controller, side by side.
    let resp = http_request(addr, Method::GET, "/user", &[], Default::default()).await;
    assert_eq!(
        (resp.status.as_u16(), resp.text().as_str()),
        (200, "user route")
    );
    let resp = http_request(addr, Method::GET, "/api/hello", &[], Default::default()).await;
    assert_eq!(
        resp.text(),
        format!(
            "hello from ori, {:?}",
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
        )
    );
    let resp = http_request(addr, Method::GET, "/missing", &[], Default::default()).await;
    assert_eq!(resp.status, 404);

    // WebSocket: the open handler saw the peer, echo works, publishes arrive.
    let mut ws = TestSocket::connect(&format!("ws://{addr}/ws"), &[])
        .await
        .expect("upgrade through axum::serve");
    assert_eq!(
        ws.recv_text().await,
        format!("peer {:?}", Some(IpAddr::V4(Ipv4Addr::LOCALHOST)))
    );
    assert_eq!(ask(&mut ws, "echo me").await, "echo me");
    ws.send_binary(vec![1u8, 2, 3]).await;
    assert_eq!(ws.recv().await, Received::Binary(vec![1, 2, 3]));
    subscribe(&mut ws, "news").await;
    assert_eq!(app.connection_count(), 1);
    app.socket().publish("news", "through axum").await.unwrap();
    assert_eq!(ws.recv_text().await, "through axum");

    // The App handle still stops it all gracefully.
    let stopper = app.clone();
    let stopping = tokio::spawn(async move { stopper.stop().await });
    assert_eq!(
        ws.recv().await,
        Received::Close(Some((1001, "Server shutting down".into())))
    );
    finish_close(&mut ws).await;
    tokio::time::timeout(common::WAIT, stopping)
        .await
        .expect("stop finished")
        .unwrap();
    assert_eq!(app.connection_count(), 0);
    assert!(app.socket().publish("news", "late").await.is_err());
    serving.abort();
}
