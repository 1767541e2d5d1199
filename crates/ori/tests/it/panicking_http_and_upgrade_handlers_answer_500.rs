//! A panic in a controller or in the upgrade handler answers HTTP 500 with a
//! JSON error; the server keeps serving.

use std::sync::Arc;

use ori::testing::{self, ConnectError};
use ori::{Controller, Json, Ori, RequestContext, RouteBuilder, WsOptions};
use serde_json::{json, Value};

struct Boom;

impl Controller for Boom {
    fn configure(&self, r: &mut RouteBuilder<Self>) {
        r.get("/boom", Self::boom).get("/ok", Self::ok);
    }
}

impl Boom {
    async fn boom(self: Arc<Self>, _ctx: RequestContext) -> Json<Value> {
        panic!("controller panicked on purpose")
    }

    async fn ok(self: Arc<Self>, _ctx: RequestContext) -> Json<Value> {
        Json(json!({ "ok": true }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_controller_answers_500_and_the_server_carries_on() {
    let server = testing::spawn(Ori::create().controller("/api", Boom)).await;
    let resp = server.get("/api/boom").await;
    assert_eq!(resp.status, 500);
    assert_eq!(resp.json(), json!({ "error": "Internal Server Error" }));
    let ok = server.get("/api/ok").await;
    assert_eq!(
        (ok.status.as_u16(), ok.json()),
        (200, json!({ "ok": true }))
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_upgrade_handler_answers_500_and_others_still_connect() {
    let options = WsOptions::new().upgrade(|req| async move {
        if req.query_param("boom").is_some() {
            panic!("upgrade handler panicked on purpose");
        }
        Some(())
    });
    let server =
        testing::spawn(Ori::create().websocket_with(ori::InProcProvider::new(), options)).await;
    match server.connect_to("/ws?boom=1", &[]).await {
        Err(ConnectError::Status(s)) => assert_eq!(s, 500),
        other => panic!("expected 500, got {:?}", other.map(|_| ())),
    }
    let mut ws = server.connect().await;
    ws.close(1000, "").await;
    server.stop().await;
}
