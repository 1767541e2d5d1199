//! `RequestContext<E>::socket()` is the app's emitter `E` bound to the
//! request's correlation id: a custom emitter's domain methods and the
//! correlation id are reachable together from one value, in a handler
//! written exactly as before.

use crate::common;

use std::sync::Arc;

use common::{subscribe, AccountEmitter as AppEmitter};
use ori::testing::{self, Method};
use ori::{
    Controller, HttpError, Json, Ori, PublishError, RequestContext, RequestEmitter, RouteBuilder,
};
use serde_json::{json, Value};

/// Tags every event with the request's correlation id.
async fn tagged(socket: &RequestEmitter<AppEmitter>, account: &str) -> Result<(), PublishError> {
    let data = json!({ "event": "incident.created", "correlationId": socket.correlation_id() });
    socket.emit_to_account(account, data).await
}

struct Incidents;

impl Controller<AppEmitter> for Incidents {
    fn configure(&self, r: &mut RouteBuilder<Self, AppEmitter>) {
        r.post("/accounts/:account/incidents", Self::create);
    }
}

impl Incidents {
    async fn create(
        self: Arc<Self>,
        ctx: RequestContext<AppEmitter>,
    ) -> Result<Json<Value>, HttpError> {
        let account = ctx.param("account").unwrap_or_default();
        tagged(&ctx.socket(), account).await?;
        Ok(Json(json!({ "created": true })))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_reaches_domain_methods_and_the_correlation_id_together() {
    let server = testing::spawn(
        Ori::with_emitter::<AppEmitter>()
            .websocket()
            .on_websocket(common::command_handlers())
            .controller("/api", Incidents),
    )
    .await;
    let mut ws = server.connect().await;
    subscribe(&mut ws, "account:42").await;
    let headers = [("x-correlation-id", "corr-42")];
    let path = "/api/accounts/42/incidents";
    let resp = server.request(Method::POST, path, &headers, "").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        ws.recv_json().await,
        json!({ "event": "incident.created", "correlationId": "corr-42" })
    );
    // A bad account makes a bad topic: the domain method's error is a 400.
    let resp = server
        .request(Method::POST, "/api/accounts/a%20b/incidents", &[], "")
        .await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    common::stop_server(&server, vec![ws]).await;
}
