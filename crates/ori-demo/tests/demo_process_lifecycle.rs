//! The `ori-demo` binary as users run it: one `listening on` line on stdout,
//! graceful shutdown on SIGTERM (sockets get 1001), exit status 0.

use std::process::Stdio;
use std::time::Duration;

use ori::testing::TestSocket;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A started demo: the process, its address, and whatever else it prints
/// on stdout until it exits (must be nothing).
async fn start(args: &[&str]) -> (Child, String, tokio::task::JoinHandle<Vec<String>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ori-demo"))
        .args(["--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ori-demo");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("listening line in time")
        .expect("read stdout")
        .expect("a line");
    let addr = line
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    let rest = tokio::spawn(async move {
        let mut extra = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            extra.push(line);
        }
        extra
    });
    (child, addr, rest)
}

fn sigterm(child: &Child) {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_sockets_with_1001_and_exits_zero() {
    let (mut child, addr, rest) = start(&[]).await;
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let mut ws = TestSocket::connect(&format!("ws://{addr}/ws"), &[])
        .await
        .expect("connect");
    ws.send_text("2").await;
    assert_eq!(ws.recv_text().await, "3");

    sigterm(&child);
    assert_eq!(
        ws.expect_close().await,
        Some((1001, "Server shutting down".to_owned()))
    );
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits in time")
        .expect("wait");
    assert!(status.success(), "{status:?}");
    assert_eq!(
        rest.await.unwrap(),
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
    let (mut child, addr, _) = start(&["--host", "::1"]).await;
    assert!(addr.starts_with("[::1]:"), "{addr}");
    let mut ws = TestSocket::connect(&format!("ws://{addr}/ws"), &[])
        .await
        .expect("connect");
    ws.send_text("2").await;
    assert_eq!(ws.recv_text().await, "3");
    sigterm(&child);
    let status = child.wait().await.expect("wait");
    assert!(status.success());
}
