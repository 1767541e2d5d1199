//! Test helpers (feature `testing`): a throw-away `redis-server` on a free
//! loopback port, killed when dropped.
//!
//! Tests that need Redis should fail, not skip, when it cannot be started:
//! [`RedisServer::start`] panics with the reason. `scripts/test.sh`
//! installs `redis-server` when it is missing. Set `REDIS_SERVER` to use a
//! binary other than the `redis-server` on `PATH`.
//!
//! ```no_run
//! let mut redis = ori_redis::testing::RedisServer::start();
//! println!("{}", redis.url());
//! redis.kill();    // Redis goes away...
//! redis.restart(); // ...and comes back on the same port, empty
//! ```

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a start waits for Redis to answer `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` child process on `127.0.0.1:<port>`, with persistence
/// off. Dropping it kills the process (by its PID) and reaps it.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts one on a free port and waits until it answers `PING`.
    /// Panics, with the reason, if that fails.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Like [`start`](Self::start), with extra `redis-server` arguments
    /// (for example `["--cluster-enabled", "yes"]`).
    pub fn start_with(extra: &[&str]) -> Self {
        let mut last = String::new();
        // A free port can be taken by someone else before Redis binds it:
        // try a few.
        for _ in 0..5 {
            let port = free_port();
            let mut server = Self {
                port,
                child: None,
                extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last = e,
            }
        }
        panic!("cannot start redis-server: {last}");
    }

    /// The port it listens on (the same across [`restart`](Self::restart)s).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the process (SIGKILL: no goodbye to clients) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (killing it first if running) and
    /// waits for `PING`. It comes back empty: no channels, no clients.
    /// Panics if it does not come back.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn() {
                Ok(()) => return,
                // The old socket can linger for a moment.
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("cannot restart redis-server on port {}: {e}", self.port),
            }
        }
    }

    /// Sends one command in RESP (arguments as given) on a fresh
    /// connection and returns the raw reply, for tests that need no client.
    pub fn command(&self, args: &[&[u8]]) -> std::io::Result<Vec<u8>> {
        let mut s = TcpStream::connect_timeout(&self.addr(), Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a);
            req.extend_from_slice(b"\r\n");
        }
        s.write_all(&req)?;
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let bin = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned());
        let port = self.port.to_string();
        let dir = std::env::temp_dir();
        let mut child = Command::new(&bin)
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .args([
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ])
            .arg("--dir")
            .arg(&dir)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot run {bin:?} ({e}); install Redis (Debian: apt-get install \
                     redis-server; scripts/test.sh does it) or set REDIS_SERVER"
                )
            })?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "{bin} exited with {status} before answering PING on port {port}"
                ));
            }
            if ping(self.port) {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{bin} did not answer PING on port {port} within {START_TIMEOUT:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

fn ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// A local Redis Cluster of `masters` primaries (no replicas), each a
/// [`RedisServer`] on a free loopback port, with the 16384 slots split
/// evenly. For the sharded pub/sub mode (`RedisConfig::cluster`, feature
/// `cluster`). Needs Redis 7.0 or later; dropping it kills every node.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    config_files: Vec<std::path::PathBuf>,
}

impl RedisCluster {
    /// Starts the nodes, assigns the slots, joins them and waits until
    /// every node reports `cluster_state:ok`. Panics, with the reason, if
    /// that fails.
    pub fn start(masters: usize) -> Self {
        assert!(masters >= 1, "a cluster needs a node");
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut cluster = Self {
            nodes: Vec::new(),
            config_files: Vec::new(),
        };
        for i in 0..masters {
            let file = std::env::temp_dir().join(format!(
                "ori-redis-cluster-{}-{stamp}-{i}.conf",
                std::process::id()
            ));
            let path = file.to_string_lossy().into_owned();
            cluster.config_files.push(file);
            cluster.nodes.push(RedisServer::start_with(&[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &path,
                "--cluster-node-timeout",
                "2000",
            ]));
        }
        let per = 16384 / masters;
        for (i, node) in cluster.nodes.iter().enumerate() {
            let first = i * per;
            let last = if i + 1 == masters {
                16383
            } else {
                first + per - 1
            };
            let reply = node
                .command(&[
                    b"CLUSTER",
                    b"ADDSLOTSRANGE",
                    first.to_string().as_bytes(),
                    last.to_string().as_bytes(),
                ])
                .unwrap_or_else(|e| panic!("CLUSTER ADDSLOTSRANGE: {e}"));
            assert!(
                reply.starts_with(b"+OK"),
                "CLUSTER ADDSLOTSRANGE: {reply:?}"
            );
        }
        for node in &cluster.nodes[1..] {
            let port = node.port().to_string();
            let reply = cluster.nodes[0]
                .command(&[b"CLUSTER", b"MEET", b"127.0.0.1", port.as_bytes()])
                .unwrap_or_else(|e| panic!("CLUSTER MEET: {e}"));
            assert!(reply.starts_with(b"+OK"), "CLUSTER MEET: {reply:?}");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let known = format!("cluster_known_nodes:{masters}");
        loop {
            let ready = cluster.nodes.iter().all(|n| {
                n.command(&[b"CLUSTER", b"INFO"]).is_ok_and(|info| {
                    let info = String::from_utf8_lossy(&info);
                    info.contains("cluster_state:ok")
                        && info.contains("cluster_slots_ok:16384")
                        && info.contains(&known)
                })
            });
            if ready {
                return cluster;
            }
            assert!(
                Instant::now() < deadline,
                "the local Redis Cluster did not reach cluster_state:ok"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The nodes (slot ranges in order: node `i` owns the `i`-th range).
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// `redis://127.0.0.1:<port>` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        for file in &self.config_files {
            let _ = std::fs::remove_file(file);
        }
    }
}
