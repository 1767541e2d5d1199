//! The upgrade handler runs before the upgrade: `None` (or taking longer
//! than the upgrade timeout) answers HTTP 401 and no connection is created;
//! `Some(data)` makes `data` the connection's `ws.data()`. Tokens can come
//! from `Authorization: Bearer` or the `?token=` query.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{ask, command_handlers};
use ori::testing::{self, ConnectError, TestServer};
use ori::{Conn, InProcProvider, Ori, StatusCode, WsOptions};

#[derive(Debug, Clone, PartialEq, Eq)]
struct User {
    name: String,
}

fn user_for(token: &str) -> Option<User> {
    match token {
        "alice-token" => Some(User {
            name: "alice".into(),
        }),
        "bob-token" => Some(User { name: "bob".into() }),
        _ => None,
    }
}

/// An app authenticating by bearer token or `?token=`, counting opened
/// connections.
async fn auth_server(opened: Arc<AtomicUsize>) -> TestServer {
    let options = WsOptions::new().upgrade(|req| async move {
        let token = req
            .bearer_token()
            .map(str::to_owned)
            .or_else(|| req.query_param("token"))?;
        user_for(&token)
    });
    testing::spawn(
        Ori::create()
            .websocket_with(InProcProvider::new(), options)
            .on_websocket(
                command_handlers::<User, _>().on_open(move |_ws: Conn<User>| {
                    let opened = opened.clone();
                    async move {
                        opened.fetch_add(1, Ordering::SeqCst);
                    }
                }),
            ),
    )
    .await
}

fn assert_401(result: Result<testing::TestSocket, ConnectError>) {
    match result {
        Err(ConnectError::Status(status)) => assert_eq!(status, StatusCode::UNAUTHORIZED),
        Err(other) => panic!("expected HTTP 401, got {other:?}"),
        Ok(_) => panic!("expected HTTP 401, but the upgrade succeeded"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_wrong_credentials_get_401_before_upgrading() {
    let opened = Arc::new(AtomicUsize::new(0));
    let server = auth_server(opened.clone()).await;
    assert_401(server.connect_to("/ws", &[]).await);
    assert_401(
        server
            .connect_to("/ws", &[("authorization", "Bearer wrong")])
            .await,
    );
    assert_401(server.connect_to("/ws?token=wrong", &[]).await);
    assert_401(
        server
            .connect_to("/ws", &[("authorization", "Basic alice-token")])
            .await,
    );
    assert_eq!(server.app().connection_count(), 0);
    assert_eq!(
        opened.load(Ordering::SeqCst),
        0,
        "no connection may open after a 401"
    );
    common::stop_server(&server, vec![]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_gives_its_user_to_ws_data() {
    let opened = Arc::new(AtomicUsize::new(0));
    let server = auth_server(opened.clone()).await;
    let mut ws = server
        .connect_to("/ws", &[("authorization", "Bearer alice-token")])
        .await
        .expect("authorized upgrade");
    assert_eq!(
        ask(&mut ws, "data").await,
        format!(
            "{:?}",
            User {
                name: "alice".into()
            }
        )
    );
    assert_eq!(opened.load(Ordering::SeqCst), 1);
    common::stop_server(&server, vec![ws]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_token_gives_its_user_to_ws_data() {
    let server = auth_server(Arc::new(AtomicUsize::new(0))).await;
    let mut bob = server
        .connect_to("/ws?token=bob-token", &[])
        .await
        .expect("authorized upgrade");
    let mut alice = server
        .connect_to("/ws?x=1&token=alice%2Dtoken", &[])
        .await
        .expect("authorized upgrade (percent-encoded token)");
    assert_eq!(
        ask(&mut bob, "data").await,
        format!("{:?}", User { name: "bob".into() })
    );
    assert_eq!(
        ask(&mut alice, "data").await,
        format!(
            "{:?}",
            User {
                name: "alice".into()
            }
        )
    );
    assert_eq!(server.app().connection_count(), 2);
    common::stop_server(&server, vec![bob, alice]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_handler_slower_than_the_timeout_gets_401() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let options = WsOptions::new()
        .upgrade(move |req| {
            let seen = seen.clone();
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                if req.query_param("slow").is_some() {
                    // The server's own handler being slow, not a test wait.
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Some(())
            }
        })
        .upgrade_timeout(Duration::from_millis(200));
    let server = testing::spawn(
        Ori::create()
            .websocket_with(InProcProvider::new(), options)
            .on_websocket(command_handlers()),
    )
    .await;

    let started = tokio::time::Instant::now();
    assert_401(server.connect_to("/ws?slow=1", &[]).await);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(150),
        "rejected too early ({took:?})"
    );
    assert!(
        took < Duration::from_millis(1500),
        "the timeout did not apply ({took:?})"
    );
    assert_eq!(server.app().connection_count(), 0);

    // A fast handler on the same server is accepted.
    let mut ws = server.connect_to("/ws", &[]).await.expect("fast upgrade");
    assert_eq!(ask(&mut ws, "hello").await, "hello");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    common::stop_server(&server, vec![ws]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_handler_sees_the_peer_address_and_headers() {
    let options = WsOptions::new().upgrade(|req| async move {
        let ip = req.remote_addr?.ip();
        let agent = req.header("x-client")?.to_owned();
        Some(format!("{ip} {agent} {}", req.uri.path()))
    });
    let server = testing::spawn(
        Ori::create()
            .websocket_with(InProcProvider::new(), options)
            .on_websocket(command_handlers::<String, _>()),
    )
    .await;
    assert_401(server.connect_to("/ws", &[]).await);
    let mut ws = server
        .connect_to("/ws", &[("x-client", "tester")])
        .await
        .unwrap();
    assert_eq!(
        ask(&mut ws, "data").await,
        format!("{:?}", "127.0.0.1 tester /ws")
    );
    common::stop_server(&server, vec![ws]).await;
}
