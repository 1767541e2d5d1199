//! The demo's rev. 2 authentication (PROTOCOL.md sections 7 and 9) and
//! `POST /api/emit/:topic`: `--auth in-band` accepts upgrades without
//! credentials pending an `auth.authenticate`, still refuses a wrong token
//! on the upgrade, and does not count pending sockets; `--token-ttl` makes
//! every authentication expire unless refreshed; the emit route publishes
//! the typed envelope that the original OriJS client's `on(name)` receives.

use crate::common;

use std::time::Duration;

use ori::testing::{self, ConnectError, Method, TestServer, TestSocket};
use ori::StatusCode;
use serde_json::{json, Value};

const TOKEN: &str = "in-band-s3cret";
const JSON: (&str, &str) = ("content-type", "application/json");

async fn demo(in_band: bool, ttl: Option<Duration>) -> TestServer {
    testing::spawn(ori_demo::build(ori_demo::Config {
        token: Some(TOKEN.into()),
        in_band_auth: in_band,
        token_ttl: ttl,
        auth_timeout: Duration::from_millis(500),
        ..Default::default()
    }))
    .await
}

async fn authenticate(ws: &mut TestSocket, token: &str) -> Value {
    ws.send_json(&json!({"type": "auth.authenticate", "token": token}))
        .await;
    ws.recv_json().await
}

async fn connections(server: &TestServer) -> u64 {
    server.get("/api/stats").await.json()["connections"]
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_band_sockets_are_pending_until_the_token_arrives() {
    let server = demo(true, None).await;
    let mut ws = server.connect().await;
    ws.send_json(&json!({"type": "room.join", "room": "news"}))
        .await;
    assert_eq!(
        ws.recv_json().await,
        json!({"type": "error", "message": "Not authenticated"})
    );
    ws.send_text("2").await;
    assert_eq!(ws.recv_text().await, "3");
    assert_eq!(
        connections(&server).await,
        0,
        "a pending socket is not counted"
    );
    let reply = authenticate(&mut ws, TOKEN).await;
    assert_eq!(reply["name"], "auth.authenticated");
    assert_eq!(reply["data"]["expiresIn"], Value::Null);
    ws.send_json(&json!({"type": "whoami"})).await;
    assert_eq!(
        ws.recv_json().await["data"]["socketId"],
        reply["data"]["socketId"]
    );
    assert_eq!(connections(&server).await, 1);

    // A token on the upgrade is still checked at once.
    let mut direct = server
        .connect_to(&format!("/ws?token={TOKEN}"), &[])
        .await
        .unwrap();
    direct.send_text("2").await;
    assert_eq!(direct.recv_text().await, "3");
    match server.connect_to("/ws?token=wrong", &[]).await {
        Err(ConnectError::Status(s)) => assert_eq!(s, StatusCode::UNAUTHORIZED),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    // A wrong token in band, or none in time: 1008.
    let mut wrong = server.connect().await;
    wrong
        .send_json(&json!({"type": "auth.authenticate", "token": "nope"}))
        .await;
    assert_eq!(
        wrong.expect_close().await,
        Some((1008, "Authentication failed".into()))
    );
    let mut silent = server.connect().await;
    assert_eq!(
        silent.expect_close().await,
        Some((1008, "Authentication timeout".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_ttl_expires_every_authentication_unless_refreshed() {
    let server = demo(false, Some(Duration::from_millis(1500))).await;
    // A token on the upgrade counts as the first authentication.
    let mut ws = server
        .connect_to("/ws", &[("authorization", &format!("Bearer {TOKEN}"))])
        .await
        .unwrap();
    let warning = ws.recv_json().await;
    assert_eq!(warning["name"], "auth.expiring");
    assert_eq!(warning["data"]["expiresIn"], 1);
    let reply = authenticate(&mut ws, TOKEN).await;
    assert_eq!(reply["data"]["expiresIn"], 2);
    assert_eq!(ws.recv_json().await["name"], "auth.expiring");
    assert_eq!(
        ws.expect_close().await,
        Some((1008, "Token expired".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_in_band_auth_the_message_is_an_unknown_type() {
    let server = demo(false, None).await;
    let mut ws = server
        .connect_to(&format!("/ws?token={TOKEN}"), &[])
        .await
        .unwrap();
    ws.send_json(&json!({"type": "auth.authenticate", "token": TOKEN}))
        .await;
    assert_eq!(
        ws.recv_json().await["message"],
        "Unknown message type: auth.authenticate"
    );
    // And no credentials on the upgrade is a 401, as in revision 1.
    assert!(matches!(
        server.connect_to("/ws", &[]).await,
        Err(ConnectError::Status(StatusCode::UNAUTHORIZED))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_publishes_the_typed_envelope_to_a_room() {
    let server = demo(true, None).await;
    let mut ws = server.connect().await;
    authenticate(&mut ws, TOKEN).await;
    ws.send_json(&json!({"type": "room.join", "room": "orders"}))
        .await;
    for _ in 0..500 {
        if server.get("/api/topics/orders").await.json()["subscribers"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let bearer = format!("Bearer {TOKEN}");
    let post = |path: &'static str, body: String, auth: bool| {
        let bearer = bearer.clone();
        let server = &server;
        async move {
            let mut headers = vec![JSON];
            if auth {
                headers.push(("authorization", bearer.as_str()));
            }
            server.request(Method::POST, path, &headers, body).await
        }
    };
    let resp = post(
        "/api/emit/orders",
        json!({"name": "order.created", "data": {"id": 7}}).to_string(),
        true,
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.json(), json!({"sent": true}));
    let envelope = ws.recv_json().await;
    assert_eq!(envelope["name"], "order.created");
    assert_eq!(envelope["data"], json!({"id": 7}));
    assert!(envelope["timestamp"].is_u64());
    assert_eq!(envelope.as_object().unwrap().len(), 3);

    let long = "n".repeat(129);
    for (path, body) in [
        ("/api/emit/orders", json!({"data": 1})),
        ("/api/emit/orders", json!({"name": 5})),
        ("/api/emit/orders", json!({"name": ""})),
        ("/api/emit/orders", json!({"name": long})),
        ("/api/emit/__broadcast__", json!({"name": "x"})),
        ("/api/emit/bad%20topic", json!({"name": "x"})),
    ] {
        let resp = post(path, body.to_string(), true).await;
        assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{path} {body}");
        assert!(resp.json()["error"].is_string());
    }
    let resp = post("/api/emit/orders", json!({"name": "x"}).to_string(), false).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    // 128 characters (not bytes) is the longest name.
    let widest = "é".repeat(128);
    let resp = post(
        "/api/emit/orders",
        json!({"name": widest}).to_string(),
        true,
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(ws.recv_json().await["name"], widest.as_str());
}

#[tokio::test]
async fn the_binary_takes_the_flags_and_refuses_in_band_without_a_token() {
    let demo = common::DemoProcess::start(&[
        "--token",
        TOKEN,
        "--auth",
        "in-band",
        "--token-ttl",
        "30",
        "--auth-timeout",
        "2",
    ])
    .await;
    let url = format!("ws://{}/ws", demo.addr);
    let mut ws = TestSocket::connect(&url, &[]).await.unwrap();
    let reply = authenticate(&mut ws, TOKEN).await;
    assert_eq!(reply["data"]["expiresIn"], 30);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ori-demo"))
        .args(["--port", "0", "--auth", "in-band"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--token"));
}
