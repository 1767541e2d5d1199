//! HTTP controllers: path and query parameters, typed JSON bodies, the body
//! limit (exactly the limit passes, one byte more is 413), JSON errors for
//! malformed bodies, unknown paths (404) and wrong methods (405), and the
//! correlation id (`X-Correlation-Id`, else `X-Request-Id`, else a fresh
//! UUID v4).

use crate::common;

use std::sync::Arc;

use axum::http::Method;
use ori::testing::{self, TestServer};
use ori::{Controller, HttpError, Json, Ori, RequestContext, RouteBuilder, SocketId, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Deserialize, Serialize, PartialEq)]
struct NewItem {
    name: String,
    quantity: u32,
    tags: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Paging {
    page: u32,
    per_page: Option<u32>,
}

struct ItemsController;

impl Controller for ItemsController {
    fn configure(&self, r: &mut RouteBuilder<Self>) {
        r.get("/rooms/:room/members/:member", Self::member);
        r.get("/search", Self::search);
        r.get("/paged", Self::paged);
        r.post("/items", Self::create);
        r.put("/items/:id", Self::replace);
        r.delete("/items/:id", Self::remove);
        r.post("/raw", Self::raw);
        r.get("/correlation", Self::correlation);
        r.get("/teapot", Self::teapot);
    }
}

impl ItemsController {
    async fn member(self: Arc<Self>, ctx: RequestContext) -> Json<serde_json::Value> {
        Json(json!({
            "room": ctx.param("room"),
            "member": ctx.param("member"),
            "missing": ctx.param("nope"),
            "order": ctx.params().iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        }))
    }

    async fn search(self: Arc<Self>, ctx: RequestContext) -> Json<serde_json::Value> {
        Json(json!({ "q": ctx.query_param("q"), "absent": ctx.query_param("absent") }))
    }

    async fn paged(
        self: Arc<Self>,
        ctx: RequestContext,
    ) -> Result<Json<serde_json::Value>, HttpError> {
        let paging: Paging = ctx.query()?;
        Ok(Json(
            json!({ "page": paging.page, "per_page": paging.per_page }),
        ))
    }

    async fn create(
        self: Arc<Self>,
        mut ctx: RequestContext,
    ) -> Result<(StatusCode, Json<NewItem>), HttpError> {
        let item: NewItem = ctx.json().await?;
        Ok((StatusCode::CREATED, Json(item)))
    }

    async fn replace(
        self: Arc<Self>,
        mut ctx: RequestContext,
    ) -> Result<Json<serde_json::Value>, HttpError> {
        let id = ctx.param("id").unwrap_or_default().to_owned();
        let item: NewItem = ctx.json().await?;
        Ok(Json(
            json!({ "id": id, "name": item.name, "method": ctx.method().as_str() }),
        ))
    }

    async fn remove(self: Arc<Self>, ctx: RequestContext) -> StatusCode {
        if ctx.param("id") == Some("1") {
            StatusCode::NO_CONTENT
        } else {
            StatusCode::NOT_FOUND
        }
    }

    async fn raw(
        self: Arc<Self>,
        mut ctx: RequestContext,
    ) -> Result<Json<serde_json::Value>, HttpError> {
        let body = ctx.bytes().await?;
        let again = ctx.bytes().await.is_err();
        Ok(Json(
            json!({ "len": body.len(), "second_read_fails": again }),
        ))
    }

    async fn correlation(self: Arc<Self>, ctx: RequestContext) -> Json<serde_json::Value> {
        Json(json!({ "ctx": ctx.correlation_id(), "socket": ctx.socket().correlation_id() }))
    }

    async fn teapot(self: Arc<Self>, _ctx: RequestContext) -> HttpError {
        HttpError::new(StatusCode::IM_A_TEAPOT, "short and stout")
    }
}

async fn server() -> TestServer {
    testing::spawn(
        Ori::create()
            .websocket()
            .controller("/api", ItemsController)
            .body_limit(1024),
    )
    .await
}

fn assert_json_error(resp: &testing::TestResponse, status: u16, contains: &str) {
    assert_eq!(resp.status, status, "{}", resp.text());
    assert_eq!(
        resp.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "error responses are JSON"
    );
    let body = resp.json();
    let error = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no \"error\" string in {body}"));
    assert!(
        error.contains(contains),
        "error {error:?} should contain {contains:?}"
    );
    assert_eq!(
        body.as_object().unwrap().len(),
        1,
        "only the error field: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_params_are_extracted_and_decoded() {
    let server = server().await;
    let resp = server.get("/api/rooms/lobby/members/j%C3%BCrgen%20k").await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.json(),
        json!({ "room": "lobby", "member": "jürgen k", "missing": null, "order": ["room", "member"] })
    );
    common::stop_server(&server, vec![]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_params_are_decoded_and_typed() {
    let server = server().await;
    let resp = server
        .get("/api/search?x=1&q=hello%20w%C3%B6rld&q=second")
        .await;
    assert_eq!(resp.json(), json!({ "q": "hello wörld", "absent": null }));

    let resp = server.get("/api/paged?page=3&per_page=20").await;
    assert_eq!(resp.json(), json!({ "page": 3, "per_page": 20 }));
    let resp = server.get("/api/paged?page=7").await;
    assert_eq!(resp.json(), json!({ "page": 7, "per_page": null }));
    assert_json_error(
        &server.get("/api/paged?page=many").await,
        400,
        "Invalid query",
    );
    assert_json_error(&server.get("/api/paged").await, 400, "Invalid query");
    common::stop_server(&server, vec![]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_json_body_round_trips() {
    let server = server().await;
    let item = json!({ "name": "widget", "quantity": 3, "tags": ["a", "b"] });
    let resp = server.post_json("/api/items", &item).await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    assert_eq!(resp.json(), item);

    let resp = server
        .request(
            Method::PUT,
            "/api/items/42",
            &[("content-type", "application/json")],
            item.to_string(),
        )
        .await;
    assert_eq!(
        resp.json(),
        json!({ "id": "42", "name": "widget", "method": "PUT" })
    );

    assert_eq!(
        server
            .request(Method::DELETE, "/api/items/1", &[], "")
            .await
            .status,
        204
    );
    assert_eq!(
        server
            .request(Method::DELETE, "/api/items/2", &[], "")
            .await
            .status,
        404
    );
    common::stop_server(&server, vec![]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_or_misshapen_json_is_400_with_a_json_error() {
    let server = server().await;
    let post = |body: &'static str| {
        server.request(
            Method::POST,
            "/api/items",
            &[("content-type", "application/json")],
            body,
        )
    };
    assert_json_error(&post("{\"name\": \"widget\",").await, 400, "Invalid JSON");
    assert_json_error(&post("not json at all").await, 400, "Invalid JSON");
    assert_json_error(&post("").await, 400, "Invalid JSON");
    // Well-formed JSON of the wrong shape.
    assert_json_error(&post("{\"name\": \"widget\"}").await, 400, "quantity");
    assert_json_error(
        &post("{\"name\": 1, \"quantity\": 1, \"tags\": []}").await,
        400,
        "Invalid JSON",
    );
    assert_json_error(
        &post("{\"name\": \"w\", \"quantity\": -1, \"tags\": []}").await,
        400,
        "Invalid JSON",
    );
    common::stop_server(&server, vec![]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_limit_allows_exactly_the_limit_and_refuses_more_with_413() {
    let server = server().await;
    let resp = server
        .request(Method::POST, "/api/raw", &[], vec![b'a'; 1024])
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.json(),
        json!({ "len": 1024, "second_read_fails": true })
    );

    let resp = server
        .request(Method::POST, "/api/raw", &[], vec![b'a'; 1025])
        .await;
    assert_json_error(&resp, 413, "too large");
    let resp = server
        .request(Method::POST, "/api/raw", &[], vec![b'a'; 100_000])
        .await;
    assert_json_error(&resp, 413, "too large");

    // A typed JSON body is under the same limit.
    let big = json!({ "name": "x".repeat(1100), "quantity": 1, "tags": [] });
    assert_json_error(
        &server.post_json("/api/items", &big).await,
        413,
        "too large",
    );
    common::stop_server(&server, vec![]).await;
}

/// Sends a chunked request (no Content-Length) by hand and returns the
/// status code of the response.
async fn chunked_post_status(server: &TestServer, path: &str, body_len: usize) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        server.addr()
    )
    .into_bytes();
    let body = vec![b'c'; body_len];
    for chunk in body.chunks(300) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    stream.write_all(&request).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(common::WAIT, stream.read_to_end(&mut response))
        .await
        .expect("response in time")
        .unwrap();
    let head = String::from_utf8_lossy(&response);
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad response {head}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_limit_applies_to_chunked_bodies_without_content_length() {
    let server = server().await;
    assert_eq!(chunked_post_status(&server, "/api/raw", 1024).await, 200);
    assert_eq!(chunked_post_status(&server, "/api/raw", 1025).await, 413);
    assert_eq!(chunked_post_status(&server, "/api/raw", 5000).await, 413);
    common::stop_server(&server, vec![]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_path_is_404_and_wrong_method_is_405_as_json() {
    let server = server().await;
    assert_json_error(&server.get("/api/nope").await, 404, "Not Found");
    assert_json_error(&server.get("/").await, 404, "Not Found");
    assert_json_error(
        &server.post_json("/elsewhere/items", &json!({})).await,
        404,
        "Not Found",
    );
    assert_json_error(&server.get("/api/items").await, 405, "Method Not Allowed");
    assert_json_error(
        &server.request(Method::PATCH, "/api/items/1", &[], "").await,
        405,
        "Method Not Allowed",
    );
    assert_json_error(
        &server.post_json("/api/search", &json!({})).await,
        405,
        "Method Not Allowed",
    );
    // The WebSocket path only answers GET.
    assert_json_error(
        &server.post_json("/ws", &json!({})).await,
        405,
        "Method Not Allowed",
    );
    // A plain GET of the WebSocket path is not an upgrade.
    assert_json_error(&server.get("/ws").await, 400, "WebSocket");
    // A handler's own HttpError keeps its status and message.
    assert_json_error(&server.get("/api/teapot").await, 418, "short and stout");
    common::stop_server(&server, vec![]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correlation_id_comes_from_headers_in_order_or_is_a_fresh_uuid_v4() {
    let server = server().await;
    let ids = |resp: testing::TestResponse| {
        let body = resp.json();
        let (ctx, socket) = (
            body["ctx"].as_str().unwrap().to_owned(),
            body["socket"].as_str().unwrap().to_owned(),
        );
        assert_eq!(
            ctx, socket,
            "ctx.correlation_id() and ctx.socket().correlation_id() agree"
        );
        ctx
    };
    let get = |headers: &'static [(&'static str, &'static str)]| {
        server.request(Method::GET, "/api/correlation", headers, "")
    };

    assert_eq!(ids(get(&[("x-correlation-id", "corr-1")]).await), "corr-1");
    assert_eq!(ids(get(&[("x-request-id", "req-1")]).await), "req-1");
    assert_eq!(
        ids(get(&[("x-request-id", "req-2"), ("x-correlation-id", "corr-2")]).await),
        "corr-2"
    );
    // An empty correlation header falls through to the request id.
    assert_eq!(
        ids(get(&[("x-correlation-id", ""), ("x-request-id", "req-3")]).await),
        "req-3"
    );

    let fresh_a = ids(get(&[]).await);
    let fresh_b = ids(get(&[]).await);
    for fresh in [&fresh_a, &fresh_b] {
        // SocketId parses only hyphenated UUID v4.
        assert!(
            fresh.parse::<SocketId>().is_ok(),
            "{fresh:?} is not a UUID v4"
        );
    }
    assert_ne!(fresh_a, fresh_b, "each request gets its own id");
    common::stop_server(&server, vec![]).await;
}
