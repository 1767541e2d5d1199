//! WebSocket support: options, lifecycle handlers, the connection handle,
//! the HTTP upgrade, and the per-connection task that does the frame I/O.
//!
//! Data flows one way each direction. In: upgrade -> [`Conn`] registered in
//! the hub -> frames decoded -> handlers run in arrival order. Out: outbox
//! (filled by publishes, sends and replies) -> one write per batch.

mod auth;
mod close;
mod compression;
mod conn;
mod driver;
pub(crate) mod fast;
mod gather;
mod handlers;
pub(crate) mod handshake;
mod limits;
mod link;
mod options;
mod rate;
mod session;
mod state;
#[cfg(test)]
mod test_socket;
pub(crate) mod upgrade;
pub(crate) mod writer;

pub use auth::{AuthRequest, Authenticated, IntoUpgrade, Upgrade};
pub use compression::Compression;
pub use conn::{Conn, ReadyState};
pub use handlers::{HandlerError, HandlerResult, Handlers};
pub use options::{UpgradeRequest, WsOptions};

pub(crate) use conn::AppHandle;
pub(crate) use driver::tick_period;
pub(crate) use upgrade::WsRuntime;
pub(crate) use writer::Writers;

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
