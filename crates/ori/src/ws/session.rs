//! A connection's session, apart from the frame loop that feeds it: who the
//! socket is (pending, or authenticated and its credential's clock), its
//! admission (connection guards, registration in the hub, `open`), and
//! what each of its messages is for (authentication, the "Not
//! authenticated" reply, or the routers and the raw handler).

use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use ori_core::codec::close_code;
use ori_core::Message;

use super::auth::{self, AuthClock, Authenticated};
use super::conn::ReadyState;
use super::driver::text_frame;
use super::handlers::{guarded, log_panic};
use super::upgrade::WsRuntime;
use super::Conn;
use crate::messages::RegistryError;
use crate::router::Admission;

/// What the connection task knows of its socket besides the frames. Kept
/// as small as the connection's state before in-band authentication: an
/// idle connection is mostly this task.
pub(super) struct Session {
    /// The pending deadline (and the socket's place in the upgrading count)
    /// or the credential's expiry, when there is one.
    pub(super) clock: Option<Box<AuthClock>>,
    /// Whether the connection is open: authenticated, admitted (what its
    /// connection guards stored is in the connection), registered, `open`
    /// run. Until then nothing the peer sends reaches the application.
    open: bool,
}

/// A refusal: the close code and reason.
pub(super) type Refusal = (u16, &'static str);

impl Session {
    /// A socket accepted at the upgrade (its credential's clock, if it
    /// expires) or pending (its deadline, which keeps its place in the
    /// upgrading count).
    pub(super) fn new(clock: Option<Box<AuthClock>>) -> Self {
        Self { clock, open: false }
    }

    /// Whether the socket has yet to authenticate in band.
    pub(super) fn is_pending(&self) -> bool {
        self.clock.as_ref().is_some_and(|c| c.is_pending())
    }

    /// Whether the connection is open.
    pub(super) fn is_open(&self) -> bool {
        self.open
    }

    /// Opens an authenticated connection: its connection guards, then its
    /// registration in the hub (where `slot`, the place in the upgrading
    /// count, is given back), then `open`.
    pub(super) async fn open<D: Send + Sync + 'static, S>(
        &mut self,
        rt: &WsRuntime<D>,
        conn: &Conn<D>,
        slot: Option<S>,
    ) -> Result<(), Refusal> {
        admit(rt, conn, slot).await?;
        self.open = true;
        Ok(())
    }
}

/// A data message of the socket: an `auth.authenticate` (while an
/// authenticator is set) is handled here; anything else of a pending
/// socket is answered "Not authenticated" (the `2` ping `3`); the rest is
/// dispatched.
pub(super) async fn receive<D: Send + Sync + 'static>(
    rt: &WsRuntime<D>,
    conn: &Conn<D>,
    session: &mut Session,
    message: Message,
) -> Result<(), Refusal> {
    let credentials = rt
        .authenticator
        .as_ref()
        .and_then(|_| auth::authenticate_credentials(&message));
    if let Some(credentials) = credentials {
        // A first authentication takes the socket's place in the upgrading
        // count from its deadline, until it is registered.
        let slot = session.clock.as_deref_mut().and_then(AuthClock::take_slot);
        match authenticate(rt, conn, &mut session.clock, credentials).await {
            Verdict::Accepted if !session.is_open() => session.open(rt, conn, slot).await?,
            Verdict::Accepted => {}
            Verdict::Refused(reason) => return Err((close_code::POLICY_VIOLATION, reason)),
        }
    } else if !session.is_open() {
        let reply = match &message {
            Message::Text(t) if t.as_str() == "2" => "3",
            _ => auth::NOT_AUTHENTICATED_REPLY,
        };
        conn.push_frame(text_frame(reply));
    } else {
        dispatch(rt, conn, message).await;
    }
    Ok(())
}

/// Admits an authenticated connection: its connection guards (what they
/// stored kept in the connection), then its registration in the hub, then
/// `open`.
async fn admit<D: Send + Sync + 'static, S>(
    rt: &WsRuntime<D>,
    conn: &Conn<D>,
    mut slot: Option<S>,
) -> Result<(), Refusal> {
    let states = match rt.routers.admit(conn).await {
        Admission::Accepted(states) => states,
        Admission::Failed(e) => {
            tracing::warn!(socket = %conn.id(), error = %e, "connection guard failed");
            slot.take();
            return Err((close_code::INTERNAL_ERROR, "Connection guard failed"));
        }
        Admission::Refused => {
            slot.take();
            return Err((close_code::POLICY_VIOLATION, "Connection rejected by guard"));
        }
    };
    conn.inner.set_guards(states);
    conn.broker().register(
        conn.inner.outbox.clone(),
        rt.limits.max_topics_per_connection,
    );
    slot.take();
    conn.set_state(ReadyState::Open);
    if rt.shutting_down() {
        conn.close(close_code::GOING_AWAY, "Server shutting down");
    }
    tracing::debug!(socket = %conn.id(), remote = ?conn.remote_addr(), "connection opened");
    if let Some(open) = &rt.handlers.open {
        guarded("open", conn.id(), open(conn.clone())).await;
    }
    Ok(())
}

/// What an `auth.authenticate` came to.
enum Verdict {
    Accepted,
    /// Close with 1008 and this reason.
    Refused(&'static str),
}

/// Handles one `auth.authenticate` of a pending socket (its first
/// authentication, before its deadline) or of a live one (a refresh,
/// within the authentication timeout): on acceptance the user data is set
/// (the first time), the `auth.authenticated` reply queued and the clock
/// set to the new expiry.
async fn authenticate<D: Send + Sync + 'static>(
    rt: &WsRuntime<D>,
    conn: &Conn<D>,
    clock: &mut Option<Box<AuthClock>>,
    credentials: serde_json::Map<String, serde_json::Value>,
) -> Verdict {
    let Some(authenticator) = &rt.authenticator else {
        return Verdict::Refused("Authentication failed");
    };
    let pending = clock.as_ref().filter(|c| c.is_pending());
    // A pending socket has its deadline; a refresh the authentication
    // timeout, and never past the credential's own expiry (the clock is
    // not looked at while the authenticator runs).
    let expiry = clock.as_ref().and_then(|c| c.expires_at());
    let deadline = pending.map_or_else(
        || {
            let limit = tokio::time::Instant::now() + rt.limits.auth_timeout;
            expiry.map_or(limit, |at| limit.min(at))
        },
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
        Err(_) if expiry.is_some_and(|at| at <= tokio::time::Instant::now()) => {
            return Verdict::Refused("Token expired")
        }
        Err(_) => {
            // A slow backend is not a wrong token: the credential holds
            // until its expiry, and the client may refresh again.
            tracing::warn!(socket = %conn.id(), timeout = ?rt.limits.auth_timeout, "authenticator timed out on a refresh; the credential is unchanged");
            return Verdict::Accepted;
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

/// The dispatch order of PROTOCOL.md section 2: the `2` ping (answered
/// `3` unless the app turned that off), the socket routers, the message
/// registry; what none of them takes goes to the raw handler. Without a
/// raw handler, a text frame the registry refuses gets its error reply,
/// and other frames (binary, or text without a registry) are dropped.
async fn dispatch<D: Send + Sync + 'static>(rt: &WsRuntime<D>, conn: &Conn<D>, message: Message) {
    if let Message::Text(text) = &message {
        if rt.limits.answer_text_ping && text.as_str() == "2" {
            conn.push_frame(text_frame("3"));
            return;
        }
        let states = conn.inner.guards();
        if let Some(reply) = rt.routers.dispatch(conn, states, text).await {
            conn.send(reply);
            return;
        }
        if let Some(registry) = &rt.registry {
            // A panicking handler is logged, like a raw one, and answers
            // nothing; the connection carries on.
            let handled = AssertUnwindSafe(registry.handle_text(conn, text))
                .catch_unwind()
                .await;
            match handled {
                Err(panic) => return log_panic("registry", conn.id(), &*panic),
                Ok(Ok(())) => return,
                Ok(Err(
                    RegistryError::UnknownType(_)
                    | RegistryError::InvalidMessage
                    | RegistryError::InvalidJson,
                )) if rt.handlers.message.is_some() => {}
                Ok(Err(e)) => {
                    conn.send(e.to_reply());
                    return;
                }
            }
        }
    }
    if let Some(h) = &rt.handlers.message {
        guarded("message", conn.id(), h(conn.clone(), message)).await;
    }
}
