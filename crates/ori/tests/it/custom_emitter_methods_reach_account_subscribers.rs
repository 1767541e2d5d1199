//! A custom emitter (`Ori::with_emitter`) adds domain methods on top of the
//! base emitter; a service built with `service_with` keeps the app context
//! and calls them; subscribers of the account topic receive the event. The
//! same service is unit-tested against a recording emitter, no server.

use crate::common;

use std::sync::Arc;

use common::{command_handlers, subscribe, whoami};
use ori::messages::ValidationError;
use ori::testing::{self, Received, Recorded};
use ori::{
    AppContext, Controller, Emitter, HttpError, Json, Ori, PublishError, RequestContext,
    RouteBuilder, SocketEmitter, StatusCode, Topic,
};
use serde_json::json;

#[derive(Clone)]
struct AppEmitter(SocketEmitter);

impl Emitter for AppEmitter {
    fn from_socket_emitter(base: SocketEmitter) -> Self {
        Self(base)
    }
    fn socket_emitter(&self) -> &SocketEmitter {
        &self.0
    }
}

impl AppEmitter {
    async fn emit_to_account(
        &self,
        account: &str,
        event: &str,
        data: serde_json::Value,
    ) -> Result<(), PublishError> {
        let body = json!({ "event": event, "data": data }).to_string();
        self.publish(format!("account:{account}"), body).await
    }
}

struct IncidentService {
    ctx: AppContext<AppEmitter>,
}

impl IncidentService {
    async fn create(&self, account: &str, title: &str) -> Result<(), PublishError> {
        if title.is_empty() {
            return Err(PublishError::Validation(ValidationError::new(
                "",
                "title is required",
            )));
        }
        self.ctx
            .socket()
            .emit_to_account(account, "incident.created", json!({ "title": title }))
            .await
    }
}

/// `POST /api/accounts/:account/incidents` with `{"title": ...}`.
struct IncidentController {
    incidents: Arc<IncidentService>,
}

impl Controller<AppEmitter> for IncidentController {
    fn configure(&self, r: &mut RouteBuilder<Self, AppEmitter>) {
        r.post("/accounts/:account/incidents", Self::create);
    }
}

impl IncidentController {
    async fn create(
        self: Arc<Self>,
        mut ctx: RequestContext<AppEmitter>,
    ) -> Result<(StatusCode, Json<serde_json::Value>), HttpError> {
        let account = ctx.param("account").unwrap_or_default().to_owned();
        let body: serde_json::Value = ctx.json().await?;
        let title = body["title"].as_str().unwrap_or_default();
        self.incidents.create(&account, title).await?;
        Ok((StatusCode::CREATED, Json(json!({ "created": true }))))
    }
}

async fn server() -> testing::TestServer<AppEmitter> {
    testing::spawn(
        Ori::with_emitter::<AppEmitter>()
            .websocket()
            .on_websocket(command_handlers())
            .service_with(|ctx| Ok(IncidentService { ctx: ctx.clone() }))
            .controller_with("/api", |ctx| {
                Ok(IncidentController {
                    incidents: ctx.require::<IncidentService>()?,
                })
            }),
    )
    .await
}

fn event(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_calls_the_custom_emitter_and_account_subscribers_receive_it() {
    let server = server().await;
    let mut acct_42 = server.connect().await;
    let mut acct_7 = server.connect().await;
    subscribe(&mut acct_42, "account:42").await;
    subscribe(&mut acct_7, "account:7").await;
    let acct_7_id = whoami(&mut acct_7).await;

    // Through the registered service, from outside any request.
    let svc = server
        .app()
        .context()
        .service::<IncidentService>()
        .expect("service registered");
    svc.create("42", "disk full").await.unwrap();
    let got = acct_42.recv_text().await;
    assert_eq!(
        event(&got),
        json!({ "event": "incident.created", "data": { "title": "disk full" } })
    );

    // Through an HTTP controller that received the service at construction.
    let resp = server
        .post_json("/api/accounts/42/incidents", &json!({ "title": "cpu hot" }))
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    let got = acct_42.recv_text().await;
    assert_eq!(
        event(&got),
        json!({ "event": "incident.created", "data": { "title": "cpu hot" } })
    );

    // Directly on the app's emitter type.
    server
        .app()
        .socket()
        .emit_to_account("42", "ping", json!(null))
        .await
        .unwrap();
    assert_eq!(event(&acct_42.recv_text().await)["event"], "ping");

    // Account 7 got none of it.
    assert!(server
        .app()
        .socket()
        .send(acct_7_id, "marker")
        .await
        .unwrap());
    assert_eq!(acct_7.recv().await, Received::Text("marker".into()));
    common::stop_server(&server, vec![acct_42, acct_7]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_errors_map_to_http_statuses() {
    let server = server().await;
    let resp = server
        .post_json("/api/accounts/42/incidents", &json!({ "title": "" }))
        .await;
    assert_eq!(resp.status, 400);
    assert_eq!(
        resp.json(),
        json!({ "error": "Validation failed: title is required" })
    );
    // An account id that makes an invalid topic.
    let resp = server
        .post_json("/api/accounts/a%20b/incidents", &json!({ "title": "x" }))
        .await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    common::stop_server(&server, vec![]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_unit_test_with_a_recording_emitter() {
    let (emitter, recorder) = testing::recording_emitter::<AppEmitter>();
    let svc = IncidentService {
        ctx: AppContext::new(emitter),
    };
    svc.create("42", "disk full").await.unwrap();
    svc.create("9", "fan").await.unwrap();
    assert!(svc.create("9", "").await.is_err());

    let published = recorder.published();
    assert_eq!(published.len(), 2, "{published:?}");
    assert_eq!(published[0].0, "account:42");
    assert_eq!(
        event(&published[0].1),
        json!({ "event": "incident.created", "data": { "title": "disk full" } })
    );
    assert_eq!(published[1].0, "account:9");
    match &recorder.calls()[0] {
        Recorded::Publish(topic, message) => {
            assert_eq!(topic, &Topic::new("account:42").unwrap());
            assert!(message.is_text(), "published as text");
        }
        other => panic!("expected a publish, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_context_records_sends_and_broadcasts_in_order() {
    let (ctx, recorder) = testing::recording_context::<AppEmitter>();
    let id = ori::SocketId::new();
    ctx.socket()
        .emit_to_account("1", "a", json!(1))
        .await
        .unwrap();
    assert!(ctx.socket().send(id, "direct").await.unwrap());
    ctx.socket().broadcast(vec![1u8, 2]).await.unwrap();
    let calls = recorder.calls();
    assert_eq!(calls.len(), 3);
    assert!(matches!(&calls[0], Recorded::Publish(t, _) if t.as_str() == "account:1"));
    assert_eq!(calls[1], Recorded::Send(id, "direct".into()));
    assert_eq!(calls[2], Recorded::Broadcast(vec![1u8, 2].into()));
}
