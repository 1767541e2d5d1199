//! The Rust client with a token source against the demo with
//! `--auth in-band --token-ttl`: it authenticates before anything else on
//! every connection, refreshes at every `auth.expiring` with a fresh token
//! and so outlives its credentials, authenticates again after a restart,
//! and stops after a refused token instead of retrying it for ever; the
//! demo's typed emits reach it by name.

use crate::client_common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use client_common::*;
use ori::testing::{self, Method};
use ori_client::{Client, ClientError, CloseCode, ConnectionState, Event};
use serde_json::json;

const TOKEN: &str = "client-s3cret";

fn config() -> ori_demo::Config {
    ori_demo::Config {
        token: Some(TOKEN.into()),
        in_band_auth: true,
        token_ttl: Some(Duration::from_millis(1500)),
        ..Default::default()
    }
}

async fn notify(addr: std::net::SocketAddr, room: &str, message: &str) {
    let res = testing::http_request(
        addr,
        Method::POST,
        &format!("/api/notify/{room}"),
        &[
            ("content-type", "application/json"),
            ("authorization", &format!("Bearer {TOKEN}")),
        ],
        json!({ "message": message }).to_string().into(),
    )
    .await;
    assert_eq!(res.json(), json!({"sent": true}));
}

fn is_authenticated(e: &Event) -> bool {
    matches!(e, Event::Authenticated { .. })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_keep_the_connection_and_a_restart_authenticates_again() {
    let server = testing::spawn(ori_demo::build(config())).await;
    let addr = server.addr();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let client = Client::builder(server.ws_url("/ws"))
        .reconnect(fast())
        .auth_token(move || {
            c.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, std::convert::Infallible>(TOKEN.to_owned()) }
        })
        .build()
        .unwrap();
    let mut events = client.events();
    let mut notes = client.on(&NOTIFICATION);
    // Joined before connecting: sent only once authenticated (a pending
    // socket's join would be answered "Not authenticated").
    client.join_room("secure").unwrap();
    match wait_for(&mut events, "authenticated", is_authenticated).await {
        Event::Authenticated {
            expires_in,
            refreshed,
            ..
        } => {
            assert_eq!(expires_in, Some(2));
            assert!(!refreshed);
        }
        _ => unreachable!(),
    }
    // Connected comes after the authentication.
    assert_eq!(
        wait_for(&mut events, "connected", |e| matches!(
            e,
            Event::Connected { .. } | Event::Authenticated { .. }
        ))
        .await,
        Event::Connected { reconnected: false }
    );
    // Three refreshes: the connection outlives its first credential (1.5 s)
    // by far, and stays the same connection.
    for _ in 0..3 {
        let e = wait_for(&mut events, "a refresh", is_authenticated).await;
        assert!(matches!(
            e,
            Event::Authenticated {
                refreshed: true,
                ..
            }
        ));
    }
    assert_eq!(client.state(), ConnectionState::Connected);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    client.request("echo", &0, WAIT).await.unwrap();
    notify(addr, "secure", "after refreshes").await;
    assert_eq!(next(&mut notes).await.message, "after refreshes");
    // The typed envelope of POST /api/emit reaches a listener by name.
    let mut orders = client.on_name("order.created");
    let res = testing::http_request(
        addr,
        Method::POST,
        "/api/emit/secure",
        &[
            ("content-type", "application/json"),
            ("authorization", &format!("Bearer {TOKEN}")),
        ],
        json!({"name": "order.created", "data": {"id": 7}})
            .to_string()
            .into(),
    )
    .await;
    assert_eq!(res.json(), json!({"sent": true}));
    let order = tokio::time::timeout(WAIT, orders.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(order, json!({"id": 7}));

    // A restart: the new connection authenticates again, then rejoins.
    server.stop().await;
    let app = ori_demo::build(config())
        .listen(addr)
        .await
        .expect("restart on the same port");
    let e = wait_for(&mut events, "authenticated again", is_authenticated).await;
    assert!(matches!(
        e,
        Event::Authenticated {
            refreshed: false,
            ..
        }
    ));
    assert_eq!(
        wait_for(&mut events, "reconnected", |e| matches!(
            e,
            Event::Connected { .. }
        ))
        .await,
        Event::Connected { reconnected: true }
    );
    client.request("echo", &1, WAIT).await.unwrap();
    notify(addr, "secure", "after restart").await;
    assert_eq!(next(&mut notes).await.message, "after restart");
    assert!(calls.load(Ordering::SeqCst) >= 5);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_ends_the_client_and_a_failing_source_retries() {
    let server = testing::spawn(ori_demo::build(config())).await;
    let client = Client::builder(server.ws_url("/ws"))
        .reconnect(fast())
        .auth_token(|| async { Ok::<_, std::convert::Infallible>("wrong".to_owned()) })
        .build()
        .unwrap();
    let mut events = client.events();
    assert_eq!(
        wait_for(&mut events, "refused", |e| matches!(
            e,
            Event::Disconnected { .. }
        ))
        .await,
        Event::Disconnected {
            code: CloseCode::POLICY_VIOLATION,
            reason: "Authentication failed".into()
        }
    );
    wait_for(&mut events, "the refusal", |e| {
        matches!(
            e,
            Event::Error(ClientError::Refused {
                code: CloseCode::POLICY_VIOLATION,
                ..
            })
        )
    })
    .await;
    for _ in 0..100 {
        if client.is_closed() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(client.is_closed(), "no reconnect after a refused token");

    // A source that fails now and then works: the back-off retries.
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let client = Client::builder(server.ws_url("/ws"))
        .reconnect(fast())
        .auth_token(move || {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Err("token service unavailable")
                } else {
                    Ok(TOKEN.to_owned())
                }
            }
        })
        .build()
        .unwrap();
    let mut events = client.events();
    wait_for(
        &mut events,
        "the source's failure",
        |e| matches!(e, Event::Error(ClientError::TokenUnavailable(c)) if c.to_string().contains("unavailable")),
    )
    .await;
    wait_for(&mut events, "connected after the retry", |e| {
        matches!(e, Event::Connected { .. })
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_keeps_failing_uses_up_the_attempts() {
    let server = testing::spawn(ori_demo::build(config())).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let client = Client::builder(server.ws_url("/ws"))
        .reconnect(ori_client::Backoff {
            max_attempts: Some(3),
            ..fast()
        })
        .auth_token(move || {
            c.fetch_add(1, Ordering::SeqCst);
            async { Err::<String, _>("down") }
        })
        .build()
        .unwrap();
    let mut events = client.events();
    // A connection refused in band is a failed attempt: the back-off
    // counts it, and the client gives up after the third.
    wait_for(&mut events, "giving up", |e| {
        matches!(e, Event::Error(ClientError::GaveUp(3)))
    })
    .await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        4,
        "the first try and three attempts"
    );
    assert_eq!(client.state(), ConnectionState::Disconnected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_is_connected_only_once_authenticated() {
    let server = testing::spawn(ori_demo::build(config())).await;
    let client = Client::builder(server.ws_url("/ws"))
        .auth_token(|| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok::<_, std::convert::Infallible>(TOKEN.to_owned())
        })
        .build()
        .unwrap();
    let mut events = client.events();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_ne!(
        client.state(),
        ConnectionState::Connected,
        "the token is still coming"
    );
    wait_for(&mut events, "connected", |e| {
        matches!(e, Event::Connected { .. })
    })
    .await;
    assert_eq!(client.state(), ConnectionState::Connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_source_an_expiring_upgrade_token_is_left_to_the_server() {
    // A token on the upgrade and a TTL, and no source: the client does not
    // try to refresh (it has nothing to refresh with); the server closes
    // with "Token expired", which is final for a client without a source.
    let server = testing::spawn(ori_demo::build(ori_demo::Config {
        in_band_auth: false,
        ..config()
    }))
    .await;
    let client = Client::builder(server.ws_url(&format!("/ws?token={TOKEN}")))
        .reconnect(fast())
        .build()
        .unwrap();
    let mut events = client.events();
    let e = wait_for(&mut events, "the expiry", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await;
    assert_eq!(
        e,
        Event::Disconnected {
            code: CloseCode::POLICY_VIOLATION,
            reason: "Token expired".into()
        }
    );
}
