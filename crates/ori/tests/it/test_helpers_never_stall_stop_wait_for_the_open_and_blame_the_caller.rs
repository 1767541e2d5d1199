//! `ori::testing` as a user's test relies on it: a socket nobody reads
//! still answers the server's close, so `stop` finishes every connection
//! (its `on_close` included) instead of waiting out the close timeout,
//! yet one left unread under a flood is a slow consumer;
//! `connect` returns once the connection is open (`on_open` ran, its topics
//! joined, what it sent kept) or refused (the guard's close kept); a
//! pending in-band socket opens by the time `sync` returns after its
//! authentication; and a failing helper reports the test's line.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use futures_util::FutureExt;
use ori::router::{BoxError, GuardContext, SocketRouteBuilder, SocketRouter};
use ori::testing::{self, Received, TestResponse, WAIT};
use ori::{Authenticated, Conn, Handlers, Ori, StatusCode, WsOptions};
use serde_json::json;

type Log = Arc<Mutex<Vec<String>>>;

/// `on_open` takes its time (so that a client that does not wait for it
/// would publish too early), sends a welcome and joins `news`; `on_close`
/// logs the code.
fn handlers<D: Send + Sync + 'static>(log: &Log) -> Handlers<D> {
    let (open_log, close_log) = (log.clone(), log.clone());
    Handlers::new()
        .on_open(move |ws: Conn<D>| {
            let log = open_log.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                ws.send("welcome");
                ws.subscribe("news").unwrap();
                log.lock().unwrap().push("open".into());
            }
        })
        .on_close(move |_ws: Conn<D>, code, _| {
            let log = close_log.clone();
            async move { log.lock().unwrap().push(format!("close {code}")) }
        })
}

fn logged(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_finishes_the_close_handshake_of_a_socket_nobody_reads() {
    let log = Log::default();
    // A close timeout far beyond the shutdown timeout: had the client not
    // answered, `stop` would give up on the connection, its `on_close`
    // still to come.
    let server = testing::spawn(
        Ori::create()
            .websocket_options(WsOptions::new().close_timeout(Duration::from_secs(600)))
            .shutdown_timeout(WAIT)
            .on_websocket(handlers(&log)),
    )
    .await;
    let mut ws = server.connect().await;
    server
        .app()
        .socket()
        .publish("news", "unread")
        .await
        .unwrap();

    server.stop().await;
    assert_eq!(logged(&log), ["open", "close 1001"], "on_close ran in stop");
    assert_eq!(server.app().connection_count(), 0);
    // Everything is still there for the test, in order, then the end.
    assert_eq!(ws.recv_text().await, "welcome");
    assert_eq!(ws.recv_text().await, "unread");
    assert_eq!(
        ws.recv().await,
        Received::Close(Some((1001, "Server shutting down".into())))
    );
    assert_eq!(ws.recv().await, Received::Close(None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_returns_once_on_open_ran_so_a_publish_right_after_arrives() {
    let log = Log::default();
    let server = testing::spawn(Ori::create().websocket().on_websocket(handlers(&log))).await;
    for round in 0..3 {
        let mut ws = server.connect().await;
        assert_eq!(
            logged(&log).iter().filter(|l| *l == "open").count(),
            round + 1
        );
        server
            .app()
            .socket()
            .publish("news", "hello")
            .await
            .unwrap();
        assert_eq!(ws.recv_text().await, "welcome", "kept while connecting");
        assert_eq!(ws.recv_text().await, "hello");
        ws.close(1000, "").await;
        assert_eq!(ws.expect_close().await, Some((1000, String::new())));
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_left_unread_under_a_flood_is_a_slow_consumer() {
    let log = Log::default();
    let server = testing::spawn(
        Ori::create()
            .websocket_options(WsOptions::new().outbound_queue_limit(256 << 10))
            .on_websocket(handlers(&log)),
    )
    .await;
    let mut unread = server.connect().await;
    let mut read = server.connect().await;
    assert_eq!(read.recv_text().await, "welcome");
    // Published at the pace of the socket the test reads: the other one
    // reads ahead of the test (READ_AHEAD), then no more, and the server's
    // queue for it fills up.
    let emitter = server.app().socket();
    let hub = emitter.hub_metrics().expect("websocket configured");
    let chunk = "x".repeat(16 << 10);
    let mut published = 0;
    while hub.slow_consumer_closes() == 0 {
        assert!(published < 4_000, "never a slow consumer");
        emitter.publish("news", chunk.as_str()).await.unwrap();
        assert_eq!(read.recv_text().await.len(), chunk.len());
        published += 1;
    }
    assert_eq!(
        unread.expect_close().await.map(|(code, _)| code),
        Some(1013)
    );
    assert_eq!(hub.slow_consumer_closes(), 1, "the read one kept up");
    server.stop().await;
}

/// Refuses every connection.
struct Doorman;

impl SocketRouter for Doorman {
    type State = ();
    fn configure(&self, r: &mut SocketRouteBuilder<Self>) {
        r.connection_guard(|_: GuardContext<()>| async { Ok::<_, BoxError>(false) });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guards_refusal_is_what_recv_and_expect_close_return() {
    let log = Log::default();
    let server = testing::spawn(
        Ori::create()
            .websocket()
            .socket_router(Doorman)
            .on_websocket(handlers(&log)),
    )
    .await;
    let refused = Some((1008, "Connection rejected by guard".to_owned()));
    let mut ws = server.connect().await;
    assert_eq!(ws.recv().await, Received::Close(refused.clone()));
    let mut ws = server.connect().await;
    assert_eq!(ws.expect_close().await, refused);
    assert!(logged(&log).is_empty(), "never opened: {log:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_socket_connects_and_sync_after_authenticating_waits_for_the_open() {
    let log = Log::default();
    let options = WsOptions::new().authenticate(|req| async move {
        (req.token()? == "t-alice").then(|| Authenticated::new("alice".to_owned()))
    });
    let server = testing::spawn(
        Ori::create()
            .websocket_options(options)
            .on_websocket(handlers::<String>(&log)),
    )
    .await;
    let mut ws = server.connect().await;
    assert!(logged(&log).is_empty(), "pending: not open");
    ws.send_json(&json!({"type": "auth.authenticate", "token": "t-alice"}))
        .await;
    ws.sync().await;
    assert_eq!(logged(&log), ["open"]);
    server
        .app()
        .socket()
        .publish("news", "hello")
        .await
        .unwrap();
    let mut texts = Vec::new();
    while texts.len() < 3 {
        texts.push(ws.recv_text().await);
    }
    assert!(texts[0].contains("auth.authenticated"), "{texts:?}");
    assert_eq!(texts[1..], ["welcome", "hello"]);
    server.stop().await;
}

thread_local! {
    /// Whether this thread's panics are being caught by `panic_site`.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    /// Where the caught panic happened.
    static SITE: RefCell<Option<(String, u32)>> = const { RefCell::new(None) };
}

/// Runs `fut`, which must panic, and returns where the panic happened.
/// Other threads' panics (other tests) still go to the usual hook.
async fn panic_site(fut: impl Future<Output = ()>) -> (String, u32) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let usual = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CATCHING.get() {
                let site = info.location().map(|l| (l.file().to_owned(), l.line()));
                SITE.set(site);
            } else {
                usual(info);
            }
        }));
    });
    CATCHING.set(true);
    let outcome = AssertUnwindSafe(fut).catch_unwind().await;
    CATCHING.set(false);
    assert!(outcome.is_err(), "expected a panic");
    SITE.take().expect("the panic's location")
}

/// Current-thread runtime: the helpers panic on this test's thread.
#[tokio::test]
async fn a_failing_helper_points_at_the_tests_await() {
    let log = Log::default();
    let server = testing::spawn(
        Ori::create()
            .websocket()
            .on_websocket(handlers::<()>(&log))
            .socket_router(Doorman),
    )
    .await;
    let here = |line| (file!().to_owned(), line);

    // A refused connection: its close, not the text the test expected.
    let mut ws = server.connect().await;
    let line = line!() + 1;
    let site = panic_site(async { drop(ws.recv_text().await) }).await;
    assert_eq!(site, here(line));

    let mut ws = server.connect().await;
    let line = line!() + 1;
    let site = panic_site(async { ws.expect_silence(WAIT).await }).await;
    assert_eq!(site, here(line));

    // No WebSocket at all: the upgrade is refused.
    let plain = testing::spawn(Ori::create()).await;
    let line = line!() + 1;
    let site = panic_site(async { drop(plain.connect().await) }).await;
    assert_eq!(site, here(line));

    let response = TestResponse {
        status: StatusCode::OK,
        headers: Default::default(),
        body: "not JSON".into(),
    };
    let line = line!() + 1;
    let site = panic_site(async { drop(response.json()) }).await;
    assert_eq!(site, here(line));
    server.stop().await;
    plain.stop().await;
}
