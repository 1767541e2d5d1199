//! The Rust client against the real demo app, in process: rooms, HTTP
//! notifications, typed messages, requests with correlation, reconnect after
//! a restart on the same port, no reconnect after 1008, buffered sends.

use crate::client_common;

use std::time::Duration;

use client_common::*;
use ori::router::{BoxError, GuardContext, SocketRouteBuilder, SocketRouter};
use ori::testing::{self, Method};
use ori::Ori;
use ori_client::{Client, CloseCode, ConnectionState, Event, RequestError};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_notifications_and_requests() {
    let server = testing::spawn(ori_demo::build(ori_demo::Config::default())).await;
    let client = Client::builder(server.ws_url("/ws"))
        .reconnect(fast())
        .build()
        .unwrap();
    let mut events = client.events();
    assert_eq!(
        wait_for(&mut events, "connected", |e| matches!(
            e,
            Event::Connected { .. }
        ))
        .await,
        Event::Connected { reconnected: false }
    );
    assert_eq!(client.state(), ConnectionState::Connected);

    let mut notes = client.on(&NOTIFICATION);
    client.join_room("lobby").unwrap();
    assert_eq!(client.rooms(), vec!["lobby".to_owned()]);
    // A reply proves the join (sent before it) took effect.
    let echoed = client
        .request("echo", &json!({"a": [1, 2]}), WAIT)
        .await
        .unwrap();
    assert_eq!(echoed, json!({"a": [1, 2]}));

    let res = server
        .post_json("/api/notify/lobby", &json!({"message": "over http"}))
        .await;
    assert_eq!(res.json(), json!({"sent": true}));
    assert_eq!(next(&mut notes).await.message, "over http");

    let who = client.request("whoami", &(), WAIT).await.unwrap();
    assert!(
        who["socketId"].as_str().is_some_and(|s| s.len() == 36),
        "{who}"
    );

    // Concurrent requests are matched by correlation id.
    let (a, b) = tokio::join!(
        client.request("echo", &"first", WAIT),
        client.request("echo", &"second", WAIT)
    );
    assert_eq!((a.unwrap(), b.unwrap()), (json!("first"), json!("second")));

    let published = client
        .request(
            "publish",
            &json!({"topic": "lobby", "message": "via router"}),
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(published, json!({"published": true}));
    let n = next(&mut notes).await;
    assert_eq!(n.message, "via router");
    assert_eq!(n.correlation_id.len(), 36);

    let err = client
        .request(
            "publish",
            &json!({"topic": "__broadcast__", "message": "x"}),
            WAIT,
        )
        .await
        .unwrap_err();
    match &err {
        RequestError::Server { ty, message } => {
            assert_eq!(ty, "publish");
            assert!(
                message.starts_with("Validation failed: /topic"),
                "{message}"
            );
        }
        other => panic!("expected a server error, got {other:?}"),
    }

    // Leaving: the next notification is not delivered (a reply to a later
    // request proves the leave took effect first).
    client.leave_room("lobby").unwrap();
    client.request("echo", &1, WAIT).await.unwrap();
    let topic = server.get("/api/topics/lobby").await.json();
    assert_eq!(topic["subscribers"], 0);

    // Invalid rooms are refused locally.
    assert!(client.join_room("__broadcast__").is_err());
    assert!(client.join_room("bad room").is_err());

    client.close();
    wait_for(&mut events, "disconnected", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await;
    assert!(
        tokio::time::timeout(WAIT, async { while events.recv().await.is_some() {} })
            .await
            .is_ok()
    );
    assert!(client.send_raw("x").is_err());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_times_out_when_nobody_replies() {
    let server = testing::spawn(ori_demo::build(ori_demo::Config::default())).await;
    let client = Client::builder(server.ws_url("/ws")).build().unwrap();
    // Not a route: the registry answers with an `error` carrying no correlation id.
    let err = client
        .request("no.such.route", &(), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(err, RequestError::Timeout { .. }), "{err:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_emit_uses_the_server_definitions() {
    let server = testing::spawn(ori_demo::build(ori_demo::Config::default())).await;
    let client = Client::builder(server.ws_url("/ws")).build().unwrap();
    let mut heartbeats = client.on_name("heartbeat");
    client
        .emit(&ori_client::Heartbeat, &ori_client::HeartbeatData {})
        .unwrap();
    let reply = tokio::time::timeout(WAIT, heartbeats.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(reply["timestamp"].is_u64(), "{reply}");

    let mut notes = client.on(&NOTIFICATION);
    client
        .emit(
            &ori_client::JoinRoom,
            &ori_client::JoinData::new(ori_client::ClientTopic::new("typed").unwrap()),
        )
        .unwrap();
    client.request("echo", &0, WAIT).await.unwrap();
    server
        .post_json("/api/notify/typed", &json!({"message": "t"}))
        .await;
    assert_eq!(next(&mut notes).await.message, "t");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_a_restart_on_the_same_port_and_rejoins() {
    let server = testing::spawn(ori_demo::build(ori_demo::Config::default())).await;
    let addr = server.addr();
    let client = Client::builder(server.ws_url("/ws"))
        .reconnect(fast())
        .build()
        .unwrap();
    let mut events = client.events();
    let mut notes = client.on(&NOTIFICATION);
    client.join_room("r1").unwrap();
    client.request("echo", &0, WAIT).await.unwrap();

    server.stop().await;
    let e = wait_for(&mut events, "disconnected", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await;
    assert_eq!(
        e,
        Event::Disconnected {
            code: CloseCode::GOING_AWAY,
            reason: "Server shutting down".into()
        }
    );
    let e = wait_for(&mut events, "reconnect attempt", |e| {
        matches!(e, Event::ReconnectAttempt { .. })
    })
    .await;
    match e {
        Event::ReconnectAttempt { attempt, delay } => {
            assert_eq!(attempt, 1);
            assert!(delay <= Duration::from_millis(20), "{delay:?}");
        }
        _ => unreachable!(),
    }

    let app = ori_demo::build(ori_demo::Config::default())
        .listen(addr)
        .await
        .expect("restart on the same port");
    assert_eq!(
        wait_for(&mut events, "reconnected", |e| matches!(
            e,
            Event::Connected { .. }
        ))
        .await,
        Event::Connected { reconnected: true }
    );
    // Re-joined before anything else went out on the new connection.
    client.request("echo", &1, WAIT).await.unwrap();
    let res = testing::http_request(
        addr,
        Method::POST,
        "/api/notify/r1",
        &[("content-type", "application/json")],
        json!({"message": "after restart"}).to_string().into(),
    )
    .await;
    assert_eq!(res.json(), json!({"sent": true}));
    assert_eq!(next(&mut notes).await.message, "after restart");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffers_while_disconnected_and_flushes_on_connect() {
    // A free port: start and stop an app on it.
    let server = testing::spawn(ori_demo::build(ori_demo::Config::default())).await;
    let addr = server.addr();
    server.stop().await;

    let client = Client::builder(format!("ws://{addr}/ws"))
        .reconnect(fast())
        .build()
        .unwrap();
    let mut events = client.events();
    let mut notes = client.on(&NOTIFICATION);
    client.join_room("buffered").unwrap();
    client
        .send_json(&json!({"type": "room.join", "room": "raw-join"}))
        .unwrap();
    let request = {
        let client = client.clone();
        tokio::spawn(async move { client.request("echo", &"queued", WAIT).await })
    };
    wait_for(&mut events, "a failed attempt", |e| {
        matches!(e, Event::ReconnectAttempt { .. })
    })
    .await;
    assert_ne!(client.state(), ConnectionState::Connected);

    let app = ori_demo::build(ori_demo::Config::default())
        .listen(addr)
        .await
        .unwrap();
    assert_eq!(
        wait_for(&mut events, "connected", |e| matches!(
            e,
            Event::Connected { .. }
        ))
        .await,
        Event::Connected { reconnected: false }
    );
    assert_eq!(request.await.unwrap().unwrap(), json!("queued"));
    assert_eq!(client.buffered(), 0);
    for room in ["buffered", "raw-join"] {
        testing::http_request(
            addr,
            Method::POST,
            &format!("/api/notify/{room}"),
            &[("content-type", "application/json")],
            json!({"message": room}).to_string().into(),
        )
        .await;
        assert_eq!(next(&mut notes).await.message, room);
    }
    app.stop().await;
}

struct Refuse;

impl SocketRouter for Refuse {
    type State = ();
    fn configure(&self, r: &mut SocketRouteBuilder<Self>) {
        r.connection_guard(|_ctx: GuardContext<()>| async move { Ok::<_, BoxError>(false) });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reconnect_after_a_1008_close() {
    let server = testing::spawn(Ori::create().websocket().socket_router(Refuse)).await;
    let client = Client::builder(server.ws_url("/ws"))
        .reconnect(fast())
        .build()
        .unwrap();
    let mut events = client.events();
    let mut seen = Vec::new();
    // The task ends after the refusal: the stream ends.
    tokio::time::timeout(WAIT, async {
        while let Some(e) = events.recv().await {
            seen.push(e);
        }
    })
    .await
    .expect("the client should stop after 1008");
    assert!(
        seen.contains(&Event::Disconnected {
            code: CloseCode::POLICY_VIOLATION,
            reason: "Connection rejected by guard".into()
        }),
        "{seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, Event::ReconnectAttempt { .. })),
        "{seen:?}"
    );
    assert_eq!(client.state(), ConnectionState::Disconnected);
    assert!(client.is_closed());
    let err = client.request("echo", &1, WAIT).await.unwrap_err();
    assert!(matches!(err, RequestError::Closed { .. }));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_headers_carry_the_token() {
    let config = ori_demo::Config {
        token: Some("s3cret".into()),
        ..ori_demo::Config::default()
    };
    let server = testing::spawn(ori_demo::build(config)).await;
    let client = Client::builder(server.ws_url("/ws"))
        .header("authorization", "Bearer s3cret")
        .build()
        .unwrap();
    assert_eq!(
        client.request("echo", &"ok", WAIT).await.unwrap(),
        json!("ok")
    );

    // Without it: 401, a failed attempt, and (no reconnect) the end.
    let refused = Client::builder(server.ws_url("/ws"))
        .no_reconnect()
        .build()
        .unwrap();
    let mut events = refused.events();
    let e = wait_for(&mut events, "an error", |e| matches!(e, Event::Error(_))).await;
    assert!(format!("{e:?}").contains("401"), "{e:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_pong_forces_a_reconnect() {
    // A TCP server that completes the upgrade and then never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
                held.push(ws);
            }
        }
    });
    let client = Client::builder(format!("ws://{addr}/ws"))
        .reconnect(fast())
        .heartbeat(Duration::from_millis(50), Duration::from_millis(100))
        .build()
        .unwrap();
    let mut events = client.events();
    wait_for(&mut events, "connected", |e| {
        matches!(e, Event::Connected { .. })
    })
    .await;
    assert_eq!(
        wait_for(&mut events, "heartbeat timeout", |e| matches!(
            e,
            Event::Disconnected { .. }
        ))
        .await,
        Event::Disconnected {
            code: CloseCode::new(4000),
            reason: "Heartbeat timeout".into()
        }
    );
    assert_eq!(
        wait_for(&mut events, "reconnected", |e| matches!(
            e,
            Event::Connected { .. }
        ))
        .await,
        Event::Connected { reconnected: true }
    );
    client.close();
    silent.abort();
}
