//! WebSocket options enforced at the edge: `max_connections` answers 503
//! beyond the limit (and admits again once a connection leaves),
//! `allowed_origins` answers 403 to other browser origins,
//! `max_topics_per_connection` refuses one topic too many, and `path` moves
//! the endpoint.

use crate::common;

use common::{ask, command_handlers, subscribe, unsubscribe, wait_for_connections, whoami};
use ori::testing::{self, ConnectError, TestServer, TestSocket};
use ori::{InProcProvider, Ori, StatusCode, WsOptions};

async fn server(options: WsOptions) -> TestServer {
    testing::spawn(
        Ori::create()
            .websocket_with(InProcProvider::new(), options)
            .on_websocket(command_handlers()),
    )
    .await
}

fn status_of(result: Result<TestSocket, ConnectError>) -> StatusCode {
    match result {
        Err(ConnectError::Status(status)) => status,
        Err(other) => panic!("expected an HTTP refusal, got {other:?}"),
        Ok(_) => panic!("expected an HTTP refusal, but the upgrade succeeded"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_connections_get_503() {
    let server = server(WsOptions::new().max_connections(2)).await;
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    whoami(&mut a).await;
    whoami(&mut b).await;
    assert_eq!(
        status_of(server.connect_to("/ws", &[]).await),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(server.app().connection_count(), 2);

    drop(a);
    wait_for_connections(server.app(), 1).await;
    let mut c = server.connect().await;
    assert_eq!(ask(&mut c, "admitted").await, "admitted");
    common::stop_server(&server, vec![b, c]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_upgrades_never_exceed_max_connections() {
    const LIMIT: usize = 5;
    let server = server(WsOptions::new().max_connections(LIMIT)).await;
    let url = server.ws_url("/ws");
    let attempts: Vec<_> = (0..60)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { TestSocket::connect(&url, &[]).await })
        })
        .collect();
    let mut admitted = Vec::new();
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(ws) => admitted.push(ws),
            Err(ConnectError::Status(s)) => assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE),
            Err(other) => panic!("unexpected failure {other:?}"),
        }
    }
    assert!(!admitted.is_empty());
    assert!(
        admitted.len() <= LIMIT,
        "{} connections admitted with max_connections({LIMIT})",
        admitted.len()
    );
    for ws in &mut admitted {
        whoami(ws).await;
    }
    assert!(server.app().connection_count() <= LIMIT);
    common::stop_server(&server, admitted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_origins_get_403() {
    let server = server(WsOptions::new().allowed_origins(["https://good.example"])).await;
    assert_eq!(
        status_of(
            server
                .connect_to("/ws", &[("origin", "https://evil.example")])
                .await
        ),
        StatusCode::FORBIDDEN
    );
    let mut good = server
        .connect_to("/ws", &[("origin", "https://GOOD.example")])
        .await
        .expect("allowed origin (case-insensitive)");
    // Non-browser clients send no Origin.
    let mut plain = server.connect().await;
    assert_eq!(ask(&mut good, "g").await, "g");
    assert_eq!(ask(&mut plain, "p").await, "p");
    common::stop_server(&server, vec![good, plain]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_topic_beyond_max_topics_per_connection_is_refused() {
    let server = server(WsOptions::new().max_topics_per_connection(2)).await;
    let mut ws = server.connect().await;
    subscribe(&mut ws, "one").await;
    subscribe(&mut ws, "two").await;
    let reply = ask(&mut ws, "sub:three").await;
    assert!(reply.starts_with("error:too many topics"), "{reply}");
    // Re-joining a topic already joined does not count.
    subscribe(&mut ws, "two").await;
    // Leaving one makes room.
    unsubscribe(&mut ws, "one").await;
    subscribe(&mut ws, "three").await;
    // The limit is per connection.
    let mut other = server.connect().await;
    subscribe(&mut other, "one").await;
    subscribe(&mut other, "four").await;
    common::stop_server(&server, vec![ws, other]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_moves_the_endpoint() {
    let server = server(WsOptions::new().path("/socket")).await;
    let mut ws = server
        .connect_to("/socket", &[])
        .await
        .expect("upgrade on /socket");
    assert_eq!(ask(&mut ws, "here").await, "here");
    assert_eq!(
        status_of(server.connect_to("/ws", &[]).await),
        StatusCode::NOT_FOUND
    );
    common::stop_server(&server, vec![ws]).await;
}
