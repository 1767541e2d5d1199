//! Publishing through the app context before the app listens fails with
//! "Provider not ready"; in an app built without `.websocket()` every
//! emitter call fails with "WebSocket not configured". An emitter taken
//! before `listen` works once the app runs.

use crate::common;

use common::{command_handlers, subscribe};
use ori::testing::{self, Received};
use ori::{Emitter, Ori, PublishError, SocketId};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_before_listen_is_provider_not_ready() {
    let ori = Ori::create().websocket();
    let err = ori.context().socket().publish("t", "x").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Cannot publish to topic "t": Provider not ready"#
    );
    assert!(matches!(err, PublishError::NotReady { ref topic } if topic == "t"));
    assert!(matches!(
        ori.context().socket().broadcast("x").await,
        Err(PublishError::NotReady { .. })
    ));
    assert!(matches!(
        ori.context().socket().send(SocketId::new(), "x").await,
        Err(PublishError::NotReady { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emitter_taken_before_listen_publishes_once_the_app_runs() {
    let ori = Ori::create().websocket().on_websocket(command_handlers());
    let early = ori.context().socket().clone();
    assert!(early.publish("t", "too early").await.is_err());

    let server = testing::spawn(ori).await;
    let mut ws = server.connect().await;
    subscribe(&mut ws, "t").await;
    early.publish("t", "now").await.unwrap();
    assert_eq!(ws.recv().await, Received::Text("now".into()));
    common::stop_server(&server, vec![ws]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_without_websocket_reports_not_configured() {
    const MESSAGE: &str =
        "WebSocket not configured. Call .websocket() when creating the application.";
    let ori = Ori::create();
    let err = ori.context().socket().publish("t", "x").await.unwrap_err();
    assert_eq!(err.to_string(), MESSAGE);

    // Still so once the app is running (HTTP only).
    let server = testing::spawn(Ori::create()).await;
    let socket = server.app().socket();
    let err = socket.publish("t", "x").await.unwrap_err();
    assert_eq!(err.to_string(), MESSAGE);
    assert!(matches!(err, PublishError::NotConfigured));
    assert_eq!(
        socket.broadcast("x").await.unwrap_err().to_string(),
        MESSAGE
    );
    assert_eq!(
        socket
            .send(SocketId::new(), "x")
            .await
            .unwrap_err()
            .to_string(),
        MESSAGE
    );
    assert_eq!(server.app().connection_count(), 0);
    // And there is no WebSocket endpoint.
    assert_eq!(server.get("/ws").await.status, 404);
    common::stop_server(&server, vec![]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_emitter_before_listen_is_not_ready_too() {
    #[derive(Clone)]
    struct Wrapped(ori::SocketEmitter);
    impl Emitter for Wrapped {
        fn from_socket_emitter(base: ori::SocketEmitter) -> Self {
            Self(base)
        }
        fn socket_emitter(&self) -> &ori::SocketEmitter {
            &self.0
        }
    }
    let ori = Ori::with_emitter::<Wrapped>().websocket();
    let err = ori.context().socket().publish("t", "x").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Cannot publish to topic "t": Provider not ready"#
    );
}
