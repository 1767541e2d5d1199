//! Controller handlers written the axum way (`Path`, `Query`, `State`,
//! `Service<T>`, the request's `RequestEmitter<E>`, `Json<T>`) sit beside
//! `RequestContext` handlers in one controller and keep every guarantee of
//! the latter: the correlation id from the same headers, 415 / 413 / 408 /
//! 400 answered as JSON (axum's own rejections included), a missing service
//! and a panic answered 500.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{metric, subscribe, AccountEmitter as AppEmitter, WAIT};
use ori::extract::{Path, Query, Service, State};
use ori::testing::{self, Method, TestServer};
use ori::{
    AppContext, Controller, Emitter, HttpError, Json, Ori, RequestContext, RequestEmitter,
    RouteBuilder,
};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A service: counts the notifications sent.
#[derive(Default)]
struct Sent(AtomicUsize);

/// Never registered.
struct Unregistered;

#[derive(Deserialize)]
struct Notify {
    message: String,
}

#[derive(Deserialize)]
struct Page {
    limit: Option<u32>,
}

struct Api;

impl Controller<AppEmitter> for Api {
    fn configure(&self, r: &mut RouteBuilder<Self, AppEmitter>) {
        r.post("/accounts/:account/notify", Self::notify)
            .post("/classic/:account", Self::classic)
            .get("/items/:id", Self::item)
            .get("/sent", Self::sent)
            .get("/unregistered", Self::unregistered)
            .post("/raw", Self::raw)
            .get("/panic", Self::panics);
    }
}

impl Api {
    async fn notify(
        self: Arc<Self>,
        Path(account): Path<String>,
        socket: RequestEmitter<AppEmitter>,
        Service(sent): Service<Sent>,
        Json(body): Json<Notify>,
    ) -> Result<Json<Value>, HttpError> {
        let id = socket.correlation_id();
        let data = json!({ "message": body.message, "correlationId": id });
        socket.emit_to_account(&account, data).await?;
        sent.0.fetch_add(1, Ordering::Relaxed);
        Ok(Json(json!({ "sent": true, "correlationId": id })))
    }

    /// The same, the `RequestContext` way.
    async fn classic(
        self: Arc<Self>,
        mut ctx: RequestContext<AppEmitter>,
    ) -> Result<Json<Value>, HttpError> {
        let account = ctx.param("account").unwrap_or_default().to_owned();
        let body: Value = ctx.json().await?;
        let socket = ctx.socket();
        let id = socket.correlation_id();
        let data = json!({ "message": body["message"], "correlationId": id });
        socket.emit_to_account(&account, data).await?;
        Ok(Json(json!({ "sent": true, "correlationId": id })))
    }

    async fn item(self: Arc<Self>, Path(id): Path<u32>, Query(page): Query<Page>) -> Json<Value> {
        Json(json!({ "id": id, "limit": page.limit }))
    }

    async fn sent(self: Arc<Self>, State(app): State<AppContext<AppEmitter>>) -> String {
        let sent = app.service::<Sent>().expect("registered");
        sent.0.load(Ordering::Relaxed).to_string()
    }

    async fn unregistered(self: Arc<Self>, _: Service<Unregistered>) -> &'static str {
        "unreachable"
    }

    async fn raw(self: Arc<Self>, body: bytes::Bytes) -> String {
        body.len().to_string()
    }

    async fn panics(self: Arc<Self>, _socket: RequestEmitter<AppEmitter>) -> &'static str {
        panic!("handler panicked on purpose")
    }
}

fn app() -> Ori<AppEmitter> {
    Ori::with_emitter::<AppEmitter>()
        .websocket()
        .on_websocket(common::command_handlers())
        .service(Sent::default())
        .controller("/api", Api)
        .body_limit(64)
        .request_timeout(Duration::from_millis(300))
}

async fn post(server: &TestServer<AppEmitter>, path: &str, headers: &[(&str, &str)]) -> Value {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    let body = json!({ "message": "hi" }).to_string();
    let resp = server.request(Method::POST, path, &all, body).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_styles_publish_through_the_custom_emitter_with_the_same_correlation_id() {
    let server = testing::spawn(app()).await;
    let mut ws = server.connect().await;
    subscribe(&mut ws, "account:42").await;
    for route in ["/api/accounts/42/notify", "/api/classic/42"] {
        let sent = post(&server, route, &[("x-correlation-id", "corr-7")]).await;
        assert_eq!(sent, json!({ "sent": true, "correlationId": "corr-7" }));
        assert_eq!(
            ws.recv_json().await,
            json!({ "message": "hi", "correlationId": "corr-7" }),
            "{route}"
        );
        // X-Request-Id when there is no X-Correlation-Id; an unusable
        // header is ignored for the next source.
        let headers = [("x-correlation-id", "a b"), ("x-request-id", "req-1")];
        let sent = post(&server, route, &headers).await;
        assert_eq!(sent["correlationId"], "req-1", "{route}");
        assert_eq!(ws.recv_json().await["correlationId"], "req-1");
        // Neither: a fresh UUID, the same in the reply and the publish.
        let sent = post(&server, route, &[]).await;
        let id = sent["correlationId"].as_str().unwrap().to_owned();
        assert_eq!(id.len(), 36, "{id}");
        assert_eq!(ws.recv_json().await["correlationId"], id.as_str());
    }
    // The service extractor and `State` see the same registered service.
    assert_eq!(server.get("/api/sent").await.text(), "3");
    common::stop_server(&server, vec![ws]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_query_and_body_rejections_answer_json() {
    let server = testing::spawn(app()).await;
    let ok = server.get("/api/items/7?limit=3").await;
    assert_eq!(
        (ok.status.as_u16(), ok.json()),
        (200, json!({ "id": 7, "limit": 3 }))
    );
    let error = |resp: testing::TestResponse| {
        let ctype = resp.headers["content-type"].to_str().unwrap().to_owned();
        assert_eq!(ctype, "application/json", "{}", resp.text());
        let error = resp.json()["error"].as_str().expect("an error").to_owned();
        (resp.status.as_u16(), error)
    };
    // axum's Path and Query rejections, in Ori's shape.
    let (status, reason) = error(server.get("/api/items/abc").await);
    assert_eq!(status, 400);
    assert!(reason.contains("Cannot parse"), "{reason}");
    let (status, reason) = error(server.get("/api/items/7?limit=x").await);
    assert_eq!(status, 400);
    assert!(reason.contains("limit"), "{reason}");

    let notify = "/api/accounts/42/notify";
    let body = r#"{"message":"hi"}"#;
    let resp = server.request(Method::POST, notify, &[], body).await;
    let expected = (415, "Expected Content-Type: application/json".to_owned());
    assert_eq!(error(resp), expected);
    let json = [("content-type", "application/json")];
    let resp = server.request(Method::POST, notify, &json, "{").await;
    let (status, reason) = error(resp);
    assert_eq!(status, 400);
    assert!(reason.starts_with("Invalid JSON"), "{reason}");
    let resp = server
        .request(Method::POST, notify, &json, r#"{"m":1}"#)
        .await;
    assert_eq!(error(resp).0, 400, "a shape that does not fit");
    let big = json!({ "message": "x".repeat(100) }).to_string();
    let resp = server
        .request(Method::POST, notify, &json, big.clone())
        .await;
    assert_eq!(error(resp), (413, "Request body too large".to_owned()));
    // axum's own body extractor: the app's body limit, answered as JSON.
    let resp = server
        .request(Method::POST, "/api/raw", &[], "x".repeat(64))
        .await;
    assert_eq!((resp.status.as_u16(), resp.text()), (200, "64".to_owned()));
    let resp = server.request(Method::POST, "/api/raw", &[], big).await;
    assert_eq!(error(resp).0, 413);

    let (status, reason) = error(server.get("/api/unregistered").await);
    assert_eq!(status, 500);
    assert!(reason.contains("Unregistered"), "{reason}");
    let resp = server.get("/api/panic").await;
    assert_eq!(error(resp), (500, "Internal Server Error".to_owned()));
    // The server carries on.
    assert_eq!(server.get("/api/sent").await.text(), "0");
    server.stop().await;
}

/// Sends a request head and the start of a body to `path`, then a byte every
/// 50 ms (the body would take 2.5 s); returns all the server sent before it
/// closed the connection.
async fn trickle(server: &TestServer<AppEmitter>, path: &str) -> String {
    let (mut reader, mut s) = TcpStream::connect(server.addr())
        .await
        .unwrap()
        .into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: 60\r\n\r\n{{\"message\":"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let trickle = async {
        for _ in 0..48 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if s.write_all(b" ").await.is_err() {
                break;
            }
        }
    };
    let read = async {
        let mut out = Vec::new();
        tokio::time::timeout(WAIT, reader.read_to_end(&mut out))
            .await
            .expect("the server closes the connection in time")
            .expect("read");
        String::from_utf8_lossy(&out).into_owned()
    };
    tokio::join!(read, trickle).0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_trickles_is_answered_408_and_closed_whoever_reads_it() {
    let server = testing::spawn(app()).await;
    // Ori's `Json`, then axum's own `Bytes`.
    for (n, path) in [(1, "/api/accounts/42/notify"), (2, "/api/raw")] {
        let response = trickle(&server, path).await;
        assert!(response.starts_with("HTTP/1.1 408"), "{path}: {response}");
        assert!(
            response.contains(r#"{"error":"Request body not received in time"}"#),
            "{path}: {response}"
        );
        let socket = server.app().socket().socket_emitter();
        assert_eq!(metric(socket, "ori_http_request_timeouts_total"), n);
    }
    server.stop().await;
}
