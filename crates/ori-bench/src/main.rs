//! `ori-bench`: a load generator for Ori servers (the demo's contract of
//! PROTOCOL.md sections 2 and 7).
//!
//! Subcommands `fanout`, `idle`, `connect`, `storm`, `slow` and `soak` each
//! print one JSON line of results to stdout; progress and warnings go to stderr. The WebSocket and
//! HTTP clients are written by hand on raw tokio sockets so that the
//! generator spends less per delivery than the server it measures. Targets
//! are restricted to loopback addresses. See README.md.

mod common;
mod connect;
mod fanout;
mod hist;
mod http;
mod idle;
mod micro;
mod sampler;
mod sequenced;
mod slow;
mod soak;
mod stamp;
mod storm;
mod sys;
mod target;
mod ws;

use clap::{Parser, Subcommand};

/// Load generator for Ori servers (loopback targets only).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Runtime worker threads (1 by default, so the tool can be pinned to
    /// one core with taskset).
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Subscribers over topics, HTTP publishers: deliveries/s, losses,
    /// publish-to-delivery latency.
    Fanout(fanout::FanoutArgs),
    /// Idle connections: the server's RSS per connection.
    Idle(idle::IdleArgs),
    /// Upgrade rate and handshake latency (each connection closed at once).
    Connect(connect::ConnectArgs),
    /// In-process micro-benchmarks of the hot paths (no server needed).
    Micro(micro::MicroArgs),
    /// Reconnect storm: every subscriber disconnects and rejoins within a
    /// window while a publisher publishes; delivery after each rejoin.
    Storm(storm::StormArgs),
    /// Slow consumers: clients that never read next to clients that do;
    /// losses and latency of the fast ones, how the slow ones were closed.
    Slow(slow::SlowArgs),
    /// Long run with steady churn: server RSS and threads over time, loss
    /// of the stable subscribers.
    Soak(soak::SoakArgs),
}

/// Rounds to three decimals (for the JSON output).
pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.threads == 0 || cli.threads > 256 {
        anyhow::bail!("--threads must be 1..=256");
    }
    sys::now_ns(); // start the clock
    sys::set_threads(cli.threads);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads)
        .enable_all()
        .build()?;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Fanout(a) => fanout::run(a).await,
            Command::Idle(a) => idle::run(a).await,
            Command::Connect(a) => connect::run(a).await,
            Command::Micro(a) => micro::run(a),
            Command::Storm(a) => storm::run(a).await,
            Command::Slow(a) => slow::run(a).await,
            Command::Soak(a) => soak::run(a).await,
        }
    });
    // Leftover tasks (aborted subscribers) must not hold up the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    let value = result?;
    println!("{value}");
    Ok(())
}
