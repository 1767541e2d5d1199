//! With `--token`, the demo's publishing routes need it too (PROTOCOL.md
//! section 7, rev. 2): anyone who reaches the port could otherwise forge
//! server messages to every socket. `--allowed-origin` limits the origins
//! that may open a WebSocket.

use ori::testing::Method;
use ori::testing::{self, ConnectError, TestServer};
use ori::StatusCode;
use serde_json::json;

const TOKEN: &str = "s3cret-token";
const JSON: (&str, &str) = ("content-type", "application/json");

async fn demo() -> TestServer {
    testing::spawn(ori_demo::build(ori_demo::Config {
        token: Some(TOKEN.into()),
        allowed_origins: vec!["https://app.example".into()],
        ..Default::default()
    }))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_routes_answer_401_without_the_token_and_publish_with_it() {
    let server = demo().await;
    let mut ws = server
        .connect_to(&format!("/ws?token={TOKEN}"), &[])
        .await
        .expect("upgrade with the token");
    ws.send_json(&json!({"type": "room.join", "room": "room-1"}))
        .await;
    ws.send_text("2").await;
    assert_eq!(ws.recv_text().await, "3");
    let id = {
        ws.send_json(&json!({"type": "whoami"})).await;
        ws.recv_json().await
    };
    let socket_id = id["data"]["socketId"].as_str().expect("whoami").to_owned();
    let bearer = format!("Bearer {TOKEN}");
    let wrong = "Bearer s3cret-tokeN".to_owned();
    let routes = [
        "/api/notify/room-1".to_owned(),
        "/api/broadcast".to_owned(),
        format!("/api/send/{socket_id}"),
    ];
    for route in &routes {
        for auth in [
            None,
            Some(wrong.as_str()),
            Some("Basic czNjcmV0LXRva2Vu"),
            Some(TOKEN),
        ] {
            let mut headers = vec![JSON];
            if let Some(a) = auth {
                headers.push(("authorization", a));
            }
            let resp = server
                .request(Method::POST, route, &headers, r#"{"message":"forged"}"#)
                .await;
            assert_eq!(
                resp.status,
                StatusCode::UNAUTHORIZED,
                "{route} with {auth:?}"
            );
            assert_eq!(resp.json(), json!({"error": "Unauthorized"}));
        }
        // 401 answers before 415.
        let resp = server
            .request(Method::POST, route, &[("content-type", "text/plain")], "{}")
            .await;
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{route}");
    }
    ws.expect_silence(std::time::Duration::from_millis(100))
        .await;
    let resp = server
        .request(
            Method::POST,
            "/api/notify/room-1",
            &[JSON, ("authorization", &bearer)],
            r#"{"message":"real"}"#,
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(ws.recv_json().await["message"], "real");
    // The GET routes stay open.
    assert_eq!(server.get("/api/stats").await.status, StatusCode::OK);
    assert_eq!(
        server.get("/api/topics/room-1").await.status,
        StatusCode::OK
    );
    drop(ws);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_from_other_origins_are_refused() {
    let server = demo().await;
    let path = format!("/ws?token={TOKEN}");
    match server
        .connect_to(&path, &[("origin", "https://evil.example")])
        .await
    {
        Err(ConnectError::Status(s)) => assert_eq!(s, StatusCode::FORBIDDEN),
        other => panic!("expected 403, got {:?}", other.map(|_| "a socket")),
    }
    for origin in [Some("https://app.example"), None] {
        let headers: Vec<(&str, &str)> = origin.map(|o| ("origin", o)).into_iter().collect();
        let mut ws = server
            .connect_to(&path, &headers)
            .await
            .unwrap_or_else(|e| panic!("{origin:?}: {e:?}"));
        ws.send_text("2").await;
        assert_eq!(ws.recv_text().await, "3");
    }
    // The token is still required, whatever the origin.
    assert!(matches!(
        server
            .connect_to("/ws", &[("origin", "https://app.example")])
            .await,
        Err(ConnectError::Status(StatusCode::UNAUTHORIZED))
    ));
    server.stop().await;
}
