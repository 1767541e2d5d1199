//! `ori-demo`: the demo server of PROTOCOL.md section 7.
//!
//! Prints exactly one line, `listening on http://<host>:<port>`, to stdout
//! once it accepts connections; logs go to stderr. SIGTERM or SIGINT shut it
//! down gracefully (sockets get 1001) and it exits 0.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

/// The Ori demo server.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Port to listen on (0 picks a free port).
    #[arg(long, default_value_t = 3000)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Use the Redis provider at this URL (several demo processes on one
    /// Redis form one cluster).
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// Require `Authorization: Bearer <T>` or `?token=<T>` on the upgrade
    /// (and the bearer token on the publishing routes).
    #[arg(long, value_name = "T")]
    token: Option<String>,
    /// How sockets authenticate: `upgrade` (the token on the upgrade) or
    /// `in-band` (upgrades without credentials are accepted and must send
    /// `auth.authenticate`; a token on the upgrade is still checked).
    /// Needs --token.
    #[arg(long, value_enum, default_value_t = AuthMode::Upgrade, requires = "token")]
    auth: AuthMode,
    /// Seconds an authentication holds: sockets must authenticate again in
    /// band within this (a refresh), else they are closed with 1008.
    /// Needs --token.
    #[arg(long, value_name = "S", requires = "token", value_parser = positive_seconds)]
    token_ttl: Option<f64>,
    /// Seconds a socket has to send `auth.authenticate` (with --auth in-band).
    #[arg(long, value_name = "S", default_value_t = 5.0, value_parser = positive_seconds)]
    auth_timeout: f64,
    /// Accept WebSocket upgrades only from this `Origin` (repeat the flag
    /// for several; others get 403; requests without an `Origin` header are
    /// accepted).
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    allowed_origins: Vec<String>,
    /// Seconds a graceful shutdown waits for connections to close.
    #[arg(long, default_value_t = 10)]
    shutdown_timeout: u64,
    /// Bytes that may wait in the outbound queues of all connections
    /// together before publishes wait for delivery (default 8 MiB).
    #[arg(long, value_name = "BYTES", default_value_t = ori::core::DEFAULT_BUDGET)]
    outbound_budget: usize,
    /// Keep the last N publications of every room, so that clients can
    /// resume after a reconnect (PROTOCOL.md section 8). Off without it.
    #[arg(long, value_name = "N")]
    history: Option<usize>,
    /// Drop history entries older than this many seconds.
    #[arg(long, value_name = "S", default_value_t = 300)]
    history_ttl: u64,
    /// Offer permessage-deflate (RFC 7692) to clients that ask for it.
    #[arg(long)]
    compression: bool,
    /// Runtime worker threads (0: one per core this process may run on; 1:
    /// a single-threaded runtime).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Writer tasks that put queued frames on the sockets (default: one per
    /// worker thread, at most one per core; fewer batch more when the
    /// cores are shared with other busy processes).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    writers: Option<u16>,
}

/// How sockets authenticate (`--auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AuthMode {
    /// The token on the upgrade request.
    Upgrade,
    /// An `auth.authenticate` message after the upgrade (PROTOCOL.md section 9).
    InBand,
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v < 1e9 => Ok(v),
        _ => Err(format!("expected a positive number of seconds, got {s:?}")),
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // On one core (for example pinned with `taskset -c 0`) a current-thread
    // runtime does the same work without the cross-thread machinery of the
    // multi-thread scheduler; with more cores, one worker per core.
    let threads = match args.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    runtime.enable_all().build()?.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = ori_demo::Config {
        token: args.token,
        in_band_auth: args.auth == AuthMode::InBand,
        token_ttl: args.token_ttl.map(Duration::from_secs_f64),
        auth_timeout: Duration::from_secs_f64(args.auth_timeout),
        allowed_origins: args.allowed_origins,
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
        outbound_budget: args.outbound_budget,
        history: args
            .history
            .map(|n| (n, Duration::from_secs(args.history_ttl))),
        compression: args.compression,
        writers: args.writers.map(usize::from),
        ..Default::default()
    };
    let ori = match &args.redis {
        // Fails at `listen` with the address and the cause when Redis is
        // unreachable (the provider's default fail-fast start-up).
        Some(url) => ori_demo::build_with_provider(
            config,
            ori_redis::RedisProvider::new(ori_redis::RedisConfig::url(url)),
        ),
        None => ori_demo::build(config),
    };
    // Signal handlers go in before the listening line: a SIGTERM sent as
    // soon as the line appears must shut down gracefully, not kill.
    let shutdown = shutdown_signal()?;
    let app = ori
        .listen(SocketAddr::new(args.host, args.port))
        .await
        .context("cannot start the demo server")?;
    let addr = app.local_addr().context("no local address")?;
    println!("listening on http://{addr}");

    shutdown.await;
    tracing::info!("shutting down");
    app.stop().await;
    Ok(())
}

/// Installs the SIGTERM and SIGINT handlers now; the future resolves on
/// the first of them.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
