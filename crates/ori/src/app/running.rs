//! The running application ([`App`]): its address, context and emitter,
//! and the graceful stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ori_core::codec::close_code;
use ori_core::Broker;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::context::AppContext;
use crate::emitter::{Emitter, SocketEmitter};

pub(super) struct Shared<E: Emitter> {
    pub(super) ctx: AppContext<E>,
    pub(super) broker: Option<Broker>,
    /// WebSocket connection tasks.
    pub(super) ws_tasks: TaskTracker,
    /// HTTP connection tasks.
    pub(super) http_conns: TaskTracker,
    /// The accept loop (it owns the listening socket).
    pub(super) listener: TaskTracker,
    /// Cancelled when the app stops.
    pub(super) shutdown: CancellationToken,
    pub(super) timeout: Duration,
    pub(super) stopped: tokio::sync::Mutex<bool>,
}

/// A running application.
pub struct App<E: Emitter = SocketEmitter> {
    pub(super) shared: Arc<Shared<E>>,
    pub(super) local_addr: Option<SocketAddr>,
}

impl<E: Emitter> Clone for App<E> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            local_addr: self.local_addr,
        }
    }
}

impl<E: Emitter> App<E> {
    /// The bound address (`None` when mounted with [`Ori::into_router`](crate::Ori::into_router)).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// The bound port (0 when mounted with [`Ori::into_router`](crate::Ori::into_router)).
    pub fn port(&self) -> u16 {
        self.local_addr.map_or(0, |a| a.port())
    }

    /// The app context.
    pub fn context(&self) -> &AppContext<E> {
        &self.shared.ctx
    }

    /// The app's emitter.
    pub fn socket(&self) -> &E {
        self.shared.ctx.socket()
    }

    /// Open WebSocket connections (and connections still closing).
    pub fn connection_count(&self) -> usize {
        self.shared
            .broker
            .as_ref()
            .map_or(0, |p| p.connection_count())
    }

    /// Stops gracefully: stops accepting (the listening port is free again
    /// once this returns), lets in-flight HTTP requests finish, closes
    /// every socket with 1001 "Server shutting down", waits up to the
    /// shutdown timeout, then stops the provider. Idempotent.
    pub async fn stop(&self) {
        let mut stopped = self.shared.stopped.lock().await;
        if *stopped {
            return;
        }
        let s = &self.shared;
        s.shutdown.cancel();
        // The accept loop ends at once on the cancel and drops the
        // listening socket: once `stop` returns, the port is free again.
        s.listener.close();
        s.listener.wait().await;
        if let Some(p) = &s.broker {
            p.hub()
                .close_all(close_code::GOING_AWAY, "Server shutting down");
        }
        // Closed trackers still take tasks; closing lets `wait` end once
        // they are empty.
        s.ws_tasks.close();
        s.http_conns.close();
        let drained = async {
            s.ws_tasks.wait().await;
            s.http_conns.wait().await;
        };
        if tokio::time::timeout(s.timeout, drained).await.is_err() {
            tracing::warn!(
                websockets = s.ws_tasks.len(),
                http = s.http_conns.len(),
                "shutdown timeout reached with connections still open"
            );
        }
        if let Some(p) = &s.broker {
            p.stop().await;
        }
        *stopped = true;
    }
}
