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

/// A service that tags what it publishes with the correlation id of
/// whatever it is handling, without being handed one.
struct Audit {
    emitter: AppEmitter,
}

impl Audit {
    async fn record(&self, what: &str) -> Result<(), PublishError> {
        let data = json!({ "what": what, "correlationId": ori::correlation_id() });
        self.emitter.emit_to_account("audit", data).await
    }
}

struct Audited;

impl Controller<AppEmitter> for Audited {
    fn configure(&self, r: &mut RouteBuilder<Self, AppEmitter>) {
        r.post(
            "/audit",
            |_: Arc<Self>, ctx: RequestContext<AppEmitter>| async move {
                let audit = ctx
                    .app()
                    .require::<Audit>()
                    .map_err(|e| HttpError::internal(e.to_string()))?;
                audit.record("http").await?;
                Ok::<_, HttpError>("ok")
            },
        );
    }
}

struct AuditRouter;

impl ori::router::SocketRouter<(), AppEmitter> for AuditRouter {
    type State = ();
    fn configure(&self, r: &mut ori::router::SocketRouteBuilder<Self, (), AppEmitter>) {
        r.on(
            "audit",
            |_: Arc<Self>, ctx: ori::router::SocketContext<(), (), AppEmitter>| async move {
                let audit = ctx.app().require::<Audit>().map_err(|e| e.to_string())?;
                audit.record("socket").await.map_err(|e| e.to_string())
            },
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_read_the_correlation_id_of_what_they_handle() {
    let server = testing::spawn(
        Ori::with_emitter::<AppEmitter>()
            .service_with(|ctx| {
                Ok(Audit {
                    emitter: ctx.socket().clone(),
                })
            })
            .websocket()
            .socket_router(AuditRouter)
            .on_websocket(common::command_handlers())
            .controller("/api", Audited),
    )
    .await;
    let mut ws = server.connect().await;
    subscribe(&mut ws, "account:audit").await;
    let resp = server
        .request(Method::POST, "/api/audit", &[("x-request-id", "req-7")], "")
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        ws.recv_json().await,
        json!({ "what": "http", "correlationId": "req-7" })
    );
    ws.send_json(&json!({ "type": "audit", "correlationId": "msg-9" }))
        .await;
    assert_eq!(
        ws.recv_json().await,
        json!({ "what": "socket", "correlationId": "msg-9" })
    );
    assert_eq!(
        ws.recv_json().await,
        json!({ "type": "audit", "data": null, "correlationId": "msg-9" })
    );
    // A unit test of the service sets the id itself.
    let (emitter, recorder) = testing::recording_emitter::<AppEmitter>();
    let audit = Audit { emitter };
    ori::with_correlation_id("unit-1", audit.record("unit"))
        .await
        .unwrap();
    assert_eq!(
        recorder.published(),
        [(
            "account:audit".to_owned(),
            json!({ "what": "unit", "correlationId": "unit-1" }).to_string()
        )]
    );
    common::stop_server(&server, vec![ws]).await;
}
