//! The demo's WebSocket contract (PROTOCOL.md sections 2 to 4), in-process.

use ori::testing::{self, Received, TestServer, TestSocket};
use serde_json::{json, Value};

async fn demo() -> TestServer {
    testing::spawn(ori_demo::build(ori_demo::Config::default())).await
}

/// Joins `room` and proves it took effect with a `2`/`3` round trip.
async fn join(ws: &mut TestSocket, room: &str) {
    ws.send_json(&json!({"type": "room.join", "room": room}))
        .await;
    ws.send_text("2").await;
    assert_eq!(ws.recv_text().await, "3");
}

/// The content type of the JSON bodies.
const JSON: (&str, &str) = ("content-type", "application/json");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minimal_ping_gets_minimal_pong() {
    let server = demo().await;
    let mut ws = server.connect().await;
    ws.send_text("2").await;
    assert_eq!(ws.recv_text().await, "3");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_is_answered_with_a_timestamp() {
    let server = demo().await;
    let mut ws = server.connect().await;
    let before = ori::now_ms();
    ws.send_json(&json!({"type": "heartbeat"})).await;
    let reply = ws.recv_json().await;
    assert_eq!(reply["type"], "heartbeat");
    let ts = reply["timestamp"].as_u64().unwrap();
    assert!(ts >= before && ts <= ori::now_ms());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_errors_are_sent_verbatim() {
    let server = demo().await;
    let mut ws = server.connect().await;
    let cases = [
        ("not json", "Invalid JSON"),
        (
            "[1,2]",
            "Invalid message: expected an object with a string \"type\"",
        ),
        (
            r#"{"type":42}"#,
            "Invalid message: expected an object with a string \"type\"",
        ),
        (r#"{"type":"dance"}"#, "Unknown message type: dance"),
        (
            r#"{"type":"room.join","room":"no spaces"}"#,
            "Validation failed: /room: must contain only A-Z a-z 0-9 _ : . -",
        ),
        (
            r#"{"type":"room.join","room":"__broadcast__"}"#,
            "Validation failed: /room: reserved topic",
        ),
        (
            r#"{"type":"room.leave","room":"__socket__:x"}"#,
            "Validation failed: /room: reserved topic",
        ),
        (
            r#"{"type":"room.join"}"#,
            "Validation failed: /room: is required",
        ),
    ];
    for (frame, message) in cases {
        ws.send_text(frame).await;
        assert_eq!(
            ws.recv_json().await,
            json!({"type": "error", "message": message}),
            "{frame}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_reaches_room_members_with_the_correlation_id() {
    let server = demo().await;
    let (mut member, mut other) = (server.connect().await, server.connect().await);
    join(&mut member, "room-1").await;
    join(&mut other, "room-2").await;

    let resp = server
        .request(
            axum_post(),
            "/api/notify/room-1",
            &[
                ("x-correlation-id", "corr-7"),
                ("content-type", "application/json"),
            ],
            r#"{"message":"hello"}"#,
        )
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json(), json!({"sent": true}));
    let got = member.recv_json().await;
    assert_eq!(got["type"], "notification");
    assert_eq!(got["message"], "hello");
    assert_eq!(got["correlationId"], "corr-7");
    assert!(got["timestamp"].as_u64().is_some());

    // X-Request-Id is the fallback, then a fresh UUID v4.
    server
        .request(
            axum_post(),
            "/api/notify/room-1",
            &[("x-request-id", "req-9"), JSON],
            r#"{"message":"b"}"#,
        )
        .await;
    assert_eq!(member.recv_json().await["correlationId"], "req-9");
    server
        .post_json("/api/notify/room-1", &json!({"message": "c"}))
        .await;
    let id = member.recv_json().await["correlationId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);

    other
        .expect_silence(std::time::Duration::from_millis(100))
        .await;
    server.stop().await;
}

fn axum_post() -> ori::testing::Method {
    ori::testing::Method::POST
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_a_room_stops_delivery() {
    let server = demo().await;
    let mut ws = server.connect().await;
    join(&mut ws, "r").await;
    assert_eq!(
        server.get("/api/topics/r").await.json(),
        json!({"topic": "r", "subscribers": 1})
    );
    ws.send_json(&json!({"type": "room.leave", "room": "r"}))
        .await;
    ws.send_text("2").await;
    assert_eq!(ws.recv_text().await, "3");
    assert_eq!(server.get("/api/topics/r").await.json()["subscribers"], 0);
    server
        .post_json("/api/notify/r", &json!({"message": "gone"}))
        .await;
    ws.expect_silence(std::time::Duration::from_millis(100))
        .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_routes_reply_with_the_correlation_id() {
    let server = demo().await;
    let mut ws = server.connect().await;
    ws.send_json(&json!({"type": "echo", "data": {"a": [1, 2]}, "correlationId": "c1"}))
        .await;
    assert_eq!(
        ws.recv_json().await,
        json!({"type": "echo", "data": {"a": [1, 2]}, "correlationId": "c1"})
    );

    ws.send_json(&json!({"type": "echo"})).await;
    let reply = ws.recv_json().await;
    assert_eq!(reply["data"], Value::Null);
    assert!(reply.as_object().unwrap().contains_key("data"));
    let generated = reply["correlationId"].as_str().unwrap();
    assert_eq!(
        uuid::Uuid::parse_str(generated).unwrap().get_version_num(),
        4
    );

    ws.send_json(&json!({"type": "whoami", "correlationId": "w"}))
        .await;
    let me = ws.recv_json().await;
    let id = me["data"]["socketId"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 4);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_route_publishes_the_notification_or_explains_why_not() {
    let server = demo().await;
    let (mut publisher, mut member) = (server.connect().await, server.connect().await);
    join(&mut member, "news").await;
    publisher
        .send_json(&json!({"type": "publish", "data": {"topic": "news", "message": "hi"}, "correlationId": "p1"}))
        .await;
    assert_eq!(
        publisher.recv_json().await,
        json!({"type": "publish", "data": {"published": true}, "correlationId": "p1"})
    );
    let got = member.recv_json().await;
    assert_eq!(
        (got["type"].as_str(), got["message"].as_str()),
        (Some("notification"), Some("hi"))
    );
    assert_eq!(got["correlationId"], "p1");

    let failures = [
        (
            json!({"topic": "__broadcast__", "message": "x"}),
            "Validation failed: /topic: reserved topic",
        ),
        (
            json!({"topic": "a b", "message": "x"}),
            "Validation failed: /topic: must contain only A-Z a-z 0-9 _ : . -",
        ),
        (
            json!({"topic": "ok"}),
            "Validation failed: /message: is required",
        ),
        (json!("nope"), "Validation failed: expected an object"),
    ];
    for (data, error) in failures {
        publisher
            .send_json(&json!({"type": "publish", "data": data, "correlationId": "p2"}))
            .await;
        assert_eq!(
            publisher.recv_json().await,
            json!({"type": "publish", "data": null, "error": error, "correlationId": "p2"})
        );
    }
    member
        .expect_silence(std::time::Duration::from_millis(100))
        .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_reaches_everyone_and_send_reaches_one() {
    let server = demo().await;
    let (mut a, mut b) = (server.connect().await, server.connect().await);
    let resp = server
        .post_json("/api/broadcast", &json!({"message": "all"}))
        .await;
    assert_eq!(resp.json(), json!({"sent": true}));
    for ws in [&mut a, &mut b] {
        let got = ws.recv_json().await;
        assert_eq!(
            (got["type"].as_str(), got["message"].as_str()),
            (Some("broadcast"), Some("all"))
        );
    }

    a.send_json(&json!({"type": "whoami"})).await;
    let id = a.recv_json().await["data"]["socketId"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = server
        .post_json(&format!("/api/send/{id}"), &json!({"message": "psst"}))
        .await;
    assert_eq!(resp.json(), json!({"sent": true}));
    let got = a.recv_json().await;
    assert_eq!(
        (got["type"].as_str(), got["message"].as_str()),
        (Some("direct"), Some("psst"))
    );
    b.expect_silence(std::time::Duration::from_millis(100))
        .await;

    let unknown = uuid::Uuid::new_v4();
    let resp = server
        .post_json(&format!("/api/send/{unknown}"), &json!({"message": "x"}))
        .await;
    assert_eq!(resp.json(), json!({"sent": false}));
    let resp = server
        .post_json("/api/send/123", &json!({"message": "x"}))
        .await;
    assert_eq!(resp.status, 400);
    assert!(resp.json()["error"].is_string());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_errors_are_json() {
    let server = demo().await;
    let bad_topic = server
        .post_json("/api/notify/a%20b", &json!({"message": "x"}))
        .await;
    assert_eq!(bad_topic.status, 400);
    let reserved = server
        .post_json("/api/notify/__broadcast__", &json!({"message": "x"}))
        .await;
    assert_eq!(reserved.status, 400);
    let bad_json = server
        .request(axum_post(), "/api/broadcast", &[JSON], "{oops")
        .await;
    assert_eq!(bad_json.status, 400);
    assert!(bad_json.json()["error"]
        .as_str()
        .unwrap()
        .starts_with("Invalid JSON"));
    // JSON bodies need their content type, so a cross-site form or
    // text/plain post (sent by a browser without a preflight) is refused.
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let headers: Vec<(&str, &str)> = content_type
            .map(|c| ("content-type", c))
            .into_iter()
            .collect();
        let resp = server
            .request(
                axum_post(),
                "/api/notify/room-1",
                &headers,
                r#"{"message":"x"}"#,
            )
            .await;
        assert_eq!(resp.status, 415, "{content_type:?}");
        assert_eq!(
            resp.json(),
            json!({"error": "Expected Content-Type: application/json"})
        );
    }
    // With several faults the content type answers before the topic.
    let resp = server
        .request(
            axum_post(),
            "/api/notify/a%20b",
            &[("content-type", "text/plain")],
            "{}",
        )
        .await;
    assert_eq!(resp.status, 415);
    let missing = server.get("/nope").await;
    assert_eq!(
        (missing.status.as_u16(), missing.json()),
        (404, json!({"error": "Not Found"}))
    );
    let wrong_method = server.get("/api/broadcast").await;
    assert_eq!(wrong_method.status, 405);
    assert!(wrong_method.json()["error"].is_string());
    assert_eq!(server.get("/api/topics/a%20b").await.status, 400);

    // 1 MiB body is the limit: exactly the limit is accepted, one more byte is 413.
    let overhead = r#"{"message":""}"#.len();
    let exact = format!(r#"{{"message":"{}"}}"#, "x".repeat((1 << 20) - overhead));
    assert_eq!(exact.len(), 1 << 20);
    assert_eq!(
        server
            .request(axum_post(), "/api/broadcast", &[JSON], exact)
            .await
            .status,
        200
    );
    let over = format!(
        r#"{{"message":"{}"}}"#,
        "x".repeat((1 << 20) - overhead + 1)
    );
    let resp = server
        .request(axum_post(), "/api/broadcast", &[JSON], over)
        .await;
    assert_eq!(resp.status, 413);
    assert!(resp.json()["error"].is_string());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_over_one_mebibyte_close_with_1009() {
    let server = demo().await;
    let mut ws = server.connect().await;
    let mut bystander = server.connect().await;
    join(&mut bystander, "calm").await;
    // Exactly 1 MiB is allowed (the registry answers: it is not JSON).
    ws.send_text("x".repeat(1 << 20)).await;
    assert_eq!(ws.recv_json().await["message"], "Invalid JSON");
    ws.send_text("x".repeat((1 << 20) + 1)).await;
    let (code, _) = ws.expect_close().await.expect("a close frame");
    assert_eq!(code, 1009);
    server
        .post_json("/api/notify/calm", &json!({"message": "still here"}))
        .await;
    assert_eq!(bystander.recv_json().await["message"], "still here");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_metrics_count_connections() {
    let server = demo().await;
    let _a = server.connect().await;
    let mut b = server.connect().await;
    b.send_text("2").await;
    assert_eq!(b.recv_text().await, "3");
    assert_eq!(server.get("/api/stats").await.json()["connections"], 2);
    let metrics = server.get("/metrics").await;
    assert!(metrics.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = metrics.text();
    assert!(text.contains("ori_connections 2"), "{text}");
    assert!(text.contains("ori_messages_in_total 1"), "{text}");
    assert!(text.contains("ori_slow_consumer_closes_total 0"), "{text}");
    assert!(
        text.contains("ori_upgrade_duration_seconds_count 2"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE ori_delivery_lag_seconds histogram"),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_is_required_when_configured() {
    let config = ori_demo::Config {
        token: Some("s3cret".into()),
        ..Default::default()
    };
    let server = testing::spawn(ori_demo::build(config)).await;
    match server.connect_to("/ws", &[]).await {
        Err(testing::ConnectError::Status(s)) => assert_eq!(s, 401),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    match server.connect_to("/ws?token=wrong", &[]).await {
        Err(testing::ConnectError::Status(s)) => assert_eq!(s, 401),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    let mut bearer = server
        .connect_to("/ws", &[("authorization", "Bearer s3cret")])
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    bearer.send_text("2").await;
    assert_eq!(bearer.recv_text().await, "3");
    let mut query = server
        .connect_to("/ws?token=s3cret", &[])
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    query.send_text("2").await;
    assert_eq!(query.recv_text().await, "3");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_frames_are_ignored_by_the_demo() {
    let server = demo().await;
    let mut ws = server.connect().await;
    ws.send_binary(vec![1, 2, 3]).await;
    ws.send_text("2").await;
    assert_eq!(ws.recv().await, Received::Text("3".into()));
    server.stop().await;
}
