//! A request's correlation id goes into every notification it publishes,
//! so one taken from a header must be 1 to 128 visible ASCII characters;
//! a header that is not is ignored (PROTOCOL.md section 7).

use crate::common;

use std::sync::Arc;

use axum::http::Method;
use common::subscribe;
use ori::{Controller, HttpError, Json, RequestContext, RouteBuilder};
use serde_json::{json, Value};

struct Notify;

impl Controller for Notify {
    fn configure(&self, r: &mut RouteBuilder<Self>) {
        r.post("/notify/:topic", Self::notify);
    }
}

impl Notify {
    async fn notify(self: Arc<Self>, ctx: RequestContext) -> Result<Json<Value>, HttpError> {
        let topic = ctx.param("topic").unwrap_or_default().to_owned();
        let payload = json!({ "type": "notification", "correlationId": ctx.correlation_id() });
        ctx.socket().publish(topic, payload.to_string()).await?;
        Ok(Json(json!({ "sent": true })))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_or_invisible_correlation_headers_are_ignored() {
    let server = ori::testing::spawn(common::command_app().controller("/api", Notify)).await;
    let mut ws = server.connect().await;
    subscribe(&mut ws, "room").await;
    let huge = "c".repeat(64 * 1024);
    let longest = "k".repeat(128);
    type Headers<'a> = &'a [(&'a str, &'a str)];
    let cases: [(Headers<'_>, Option<&str>); 5] = [
        (&[("x-correlation-id", &huge)], None),
        (
            &[("x-correlation-id", &huge), ("x-request-id", "req-7")],
            Some("req-7"),
        ),
        (&[("x-correlation-id", "two words")], None),
        (&[("x-correlation-id", &longest)], Some(&longest)),
        (&[("x-request-id", " ok-1 ")], Some("ok-1")),
    ];
    for (headers, expected) in cases {
        let res = server
            .request(Method::POST, "/api/notify/room", headers, "{}")
            .await;
        assert_eq!(res.status, 200, "{}", res.text());
        let note = ws.recv_json().await;
        let id = note["correlationId"].as_str().expect("a correlation id");
        match expected {
            Some(e) => assert_eq!(id, e),
            None => assert!(
                uuid::Uuid::parse_str(id).is_ok(),
                "a fresh UUID instead of the header, got {} characters",
                id.len()
            ),
        }
    }
    common::stop_server(&server, vec![ws]).await;
}
