//! Starting and stopping the `ori-demo` binary as users run it, for the
//! process tests. Each test binary compiles this module on its own and uses
//! a subset of it.
#![allow(dead_code)]

pub mod positions;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// A started demo process.
pub struct DemoProcess {
    /// The process (killed when dropped).
    pub child: Child,
    /// `host:port` from its `listening on http://host:port` line.
    pub addr: String,
    /// Whatever else it prints on stdout until it exits.
    pub rest: JoinHandle<Vec<String>>,
}

impl DemoProcess {
    /// Runs `ori-demo --port 0 ARGS` and waits for its `listening on` line.
    pub async fn start(args: &[&str]) -> Self {
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
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
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
        Self { child, addr, rest }
    }

    /// The address as a `SocketAddr`.
    pub fn socket_addr(&self) -> SocketAddr {
        self.addr.parse().expect("an address")
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(status.success());
    }
}
