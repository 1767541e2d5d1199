//! The steps that open a connection, apart from the frame loop that calls
//! them: a socket's in-band authentication (first or refresh), then its
//! admission (connection guards, registration in the hub, `open`).

use ori_core::codec::close_code;

use super::auth::{self, AuthClock, Authenticated};
use super::conn::ReadyState;
use super::driver::text_frame;
use super::handlers::guarded;
use super::upgrade::{Upgrading, WsRuntime};
use super::Conn;
use crate::router::{Admission, ConnectionGuards};

/// Opens an authenticated connection: its connection guards, then its
/// registration in the hub, then `open`. `Err` is the close code and
/// reason of a refusal.
pub(super) async fn open<D: Send + Sync + 'static>(
    rt: &WsRuntime<D>,
    conn: &Conn<D>,
    upgrading: &mut Option<Upgrading<'_>>,
) -> Result<ConnectionGuards, (u16, &'static str)> {
    let states = match rt.routers.admit(conn).await {
        Admission::Accepted(states) => states,
        Admission::Failed(e) => {
            tracing::warn!(socket = %conn.id(), error = %e, "connection guard failed");
            upgrading.take();
            return Err((close_code::INTERNAL_ERROR, "Connection guard failed"));
        }
        Admission::Refused => {
            upgrading.take();
            return Err((close_code::POLICY_VIOLATION, "Connection rejected by guard"));
        }
    };
    conn.broker().register(
        conn.inner.outbox.clone(),
        rt.limits.max_topics_per_connection,
    );
    upgrading.take();
    conn.set_state(ReadyState::Open);
    if rt.shutting_down() {
        conn.close(close_code::GOING_AWAY, "Server shutting down");
    }
    tracing::debug!(socket = %conn.id(), remote = ?conn.remote_addr(), "connection opened");
    if let Some(open) = &rt.handlers.open {
        guarded("open", conn.id(), open(conn.clone())).await;
    }
    Ok(states)
}

/// What an `auth.authenticate` came to.
pub(super) enum Verdict {
    Accepted,
    /// Close with 1008 and this reason.
    Refused(&'static str),
}

/// Handles one `auth.authenticate` of a pending socket (its first
/// authentication, before its deadline) or of a live one (a refresh,
/// within the authentication timeout): on acceptance the user data is set
/// (the first time), the `auth.authenticated` reply queued and the clock
/// set to the new expiry.
pub(super) async fn authenticate<D: Send + Sync + 'static>(
    rt: &WsRuntime<D>,
    conn: &Conn<D>,
    clock: &mut Option<Box<AuthClock>>,
    credentials: serde_json::Map<String, serde_json::Value>,
) -> Verdict {
    let Some(authenticator) = &rt.authenticator else {
        return Verdict::Refused("Authentication failed");
    };
    let pending = clock.as_ref().filter(|c| c.is_pending());
    let deadline = pending.map_or_else(
        || tokio::time::Instant::now() + rt.limits.auth_timeout,
        |c| c.deadline(),
    );
    let first = pending.is_some();
    let req = auth::AuthRequest {
        credentials,
        upgrade: pending.and_then(|c| c.upgrade()),
        conn: (!first).then(|| conn.clone()),
    };
    let verdict = tokio::time::timeout_at(deadline, auth::run_authenticator(authenticator, req));
    let accepted = match verdict.await {
        Ok(Some(accepted)) => accepted,
        Ok(None) => return Verdict::Refused("Authentication failed"),
        Err(_) if first => return Verdict::Refused("Authentication timeout"),
        Err(_) => {
            tracing::warn!(socket = %conn.id(), timeout = ?rt.limits.auth_timeout, "authenticator timed out on a refresh");
            return Verdict::Refused("Authentication failed");
        }
    };
    let Authenticated { data, expires_in } = accepted;
    if first {
        // A refresh keeps the data of the first authentication.
        let _ = conn.inner.data.set(data);
    }
    match (expires_in, clock.as_deref_mut()) {
        (Some(ttl), Some(c)) => c.renew(ttl),
        (Some(ttl), None) => *clock = Some(Box::new(AuthClock::expiring(ttl))),
        (None, _) => *clock = None,
    }
    conn.push_frame(text_frame(&auth::authenticated_reply(
        conn.id(),
        expires_in,
    )));
    Verdict::Accepted
}
