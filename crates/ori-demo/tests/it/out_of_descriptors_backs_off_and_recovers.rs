//! When the process runs out of file descriptors, the accept loop backs off
//! and logs once per interval instead of once per attempt, and service
//! resumes by itself once descriptors are free again.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

const WAIT: Duration = Duration::from_secs(10);

/// `GET path`, answered on a fresh connection; the status and body.
async fn get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((status, body))
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_failures_back_off_log_once_and_service_resumes() {
    // The demo with 64 descriptors in all.
    let mut child = Command::new("sh")
        .args([
            "-c",
            "ulimit -n 64 && exec \"$0\" --port 0",
            env!("CARGO_BIN_EXE_ori-demo"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ori-demo");
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(WAIT, stdout.next_line())
        .await
        .expect("listening line in time")
        .unwrap()
        .expect("a line");
    let addr = line
        .strip_prefix("listening on http://")
        .expect("listening line")
        .to_owned();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let logs = tokio::spawn(async move {
        let mut lines = Vec::new();
        while let Ok(Some(l)) = stderr.next_line().await {
            lines.push(l);
        }
        lines
    });

    // 100 silent connections: more than the server has descriptors for.
    let mut silent = Vec::new();
    for _ in 0..100 {
        silent.push(
            TcpStream::connect(&addr)
                .await
                .expect("connect (queued by the kernel)"),
        );
    }
    // Long enough for many accept attempts (the back-off starts at 10 ms).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(silent);

    // Service resumes by itself: a request is answered again.
    let mut metrics = None;
    for _ in 0..100 {
        if let Ok((200, body)) = get(&addr, "/metrics").await {
            metrics = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = metrics.expect("the demo answers again once descriptors are free");
    let errors: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ori_accept_errors_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("ori_accept_errors_total");
    assert!(errors >= 1, "the accepts failed: {errors}\n{metrics}");

    child.start_kill().unwrap();
    let _ = child.wait().await;
    let logs = logs.await.unwrap();
    let warned = logs.iter().filter(|l| l.contains("accept failed")).count();
    // One line per 5 s at most: the 1.5 s above fit in one or two.
    assert!(
        (1..=2).contains(&warned),
        "{warned} accept warnings for {errors} failures:\n{}",
        logs.join("\n")
    );
}
