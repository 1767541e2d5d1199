//! The `ori-demo` binary as users run it: one `listening on` line on stdout,
//! graceful shutdown on SIGTERM (sockets get 1001), exit status 0.

use crate::common;

use std::time::Duration;

use common::DemoProcess;
use ori::testing::TestSocket;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_sockets_with_1001_and_exits_zero() {
    let mut demo = DemoProcess::start(&[]).await;
    let addr = demo.addr.clone();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let mut ws = TestSocket::connect(&format!("ws://{addr}/ws"), &[])
        .await
        .expect("connect");
    ws.send_text("2").await;
    assert_eq!(ws.recv_text().await, "3");

    demo.sigterm();
    assert_eq!(
        ws.expect_close().await,
        Some((1001, "Server shutting down".to_owned()))
    );
    let status = tokio::time::timeout(Duration::from_secs(10), demo.child.wait())
        .await
        .expect("exits in time")
        .expect("wait");
    assert!(status.success(), "{status:?}");
    assert_eq!(
        (&mut demo.rest).await.unwrap(),
        Vec::<String>::new(),
        "stdout has only the listening line"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listens_on_ipv6_with_brackets() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback on this machine; nothing to check");
        return;
    }
    let mut demo = DemoProcess::start(&["--host", "::1"]).await;
    let addr = demo.addr.clone();
    assert!(addr.starts_with("[::1]:"), "{addr}");
    let mut ws = TestSocket::connect(&format!("ws://{addr}/ws"), &[])
        .await
        .expect("connect");
    ws.send_text("2").await;
    assert_eq!(ws.recv_text().await, "3");
    demo.sigterm();
    let status = demo.child.wait().await.expect("wait");
    assert!(status.success());
}
