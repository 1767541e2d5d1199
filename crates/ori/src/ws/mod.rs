//! WebSocket support: options, lifecycle handlers, the connection handle,
//! the HTTP upgrade, and the per-connection task that does the frame I/O.
//!
//! Data flows one way each direction. In: upgrade -> [`Conn`] registered in
//! the hub -> frames decoded -> handlers run in arrival order. Out: outbox
//! (filled by publishes, sends and replies) -> one vectored write per batch.

mod conn;
mod driver;
mod handlers;
mod options;
pub(crate) mod upgrade;

pub use conn::{Conn, ReadyState};
pub use handlers::{HandlerResult, Handlers};
pub use options::{UpgradeRequest, WsOptions};

pub(crate) use driver::Tracker;
pub(crate) use upgrade::WsRuntime;
