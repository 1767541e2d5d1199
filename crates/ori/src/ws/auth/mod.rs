//! Who a connection is: what an upgrade handler decides, the in-band
//! authenticator a pending socket answers to (PROTOCOL.md section 9), the
//! expiry of its credential, and the join authorization consulted for
//! every join a client asks for.
//!
//! The connection task drives the pending phase and the expiry clock
//! (`clock`); the wire forms of the replies are in `wire`.

mod clock;
mod wire;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use ori_core::Topic;
use serde_json::{Map, Value};

use super::{Conn, UpgradeRequest};
use crate::BoxFuture;

pub(crate) use clock::{AuthClock, Fire, Fired};
pub(crate) use wire::{
    authenticate_credentials, authenticated_reply, expiring_reply, NOT_AUTHENTICATED_REPLY,
};

pub(crate) type AuthFn<D> =
    Arc<dyn Fn(AuthRequest<D>) -> BoxFuture<'static, Option<Authenticated<D>>> + Send + Sync>;
pub(crate) type JoinFn<D> = Arc<dyn Fn(Conn<D>, Topic) -> BoxFuture<'static, bool> + Send + Sync>;

/// A successful authentication: the connection's user data and, optionally,
/// how long the credential stays valid.
///
/// With an expiry the server warns the client (`auth.expiring`) shortly
/// before it, accepts a refresh (`auth.authenticate` again) and closes the
/// connection with 1008 "Token expired" when none came (PROTOCOL.md
/// section 9).
///
/// ```
/// use std::time::Duration;
/// use ori::Authenticated;
///
/// let auth = Authenticated::new("user-1").expires_in(Duration::from_secs(900));
/// assert_eq!(auth.expiry(), Some(Duration::from_secs(900)));
/// ```
#[derive(Debug, Clone)]
pub struct Authenticated<D> {
    pub(crate) data: D,
    pub(crate) expires_in: Option<Duration>,
}

impl<D> Authenticated<D> {
    /// Authenticated as `data`, with no expiry.
    pub fn new(data: D) -> Self {
        Self {
            data,
            expires_in: None,
        }
    }

    /// The credential lapses `ttl` from now (at least 1 ms).
    pub fn expires_in(mut self, ttl: Duration) -> Self {
        self.expires_in = Some(ttl.max(Duration::from_millis(1)));
        self
    }

    /// The user data.
    pub fn data(&self) -> &D {
        &self.data
    }

    /// How long the credential stays valid, if it expires.
    pub fn expiry(&self) -> Option<Duration> {
        self.expires_in
    }
}

/// What an upgrade handler decides about an upgrade request.
///
/// An upgrade handler returns `Option<D>` (accept with this user data, or
/// refuse), or this, for the two other outcomes: an accepted credential
/// that expires, and an upgrade accepted *pending* in-band authentication
/// (a browser cannot set headers on a WebSocket upgrade).
///
/// ```
/// use ori::{Upgrade, WsOptions};
///
/// let options = WsOptions::new()
///     .upgrade(|req| async move {
///         match req.bearer_token() {
///             Some("secret") => Upgrade::accept("user-1".to_string()),
///             Some(_) => Upgrade::Reject,
///             // No credentials: the socket must send `auth.authenticate`.
///             None => Upgrade::Pending,
///         }
///     })
///     .authenticate(|req| async move {
///         (req.token()? == "secret").then(|| ori::Authenticated::new("user-1".to_string()))
///     });
/// ```
#[derive(Debug, Clone)]
pub enum Upgrade<D> {
    /// Accept: the connection is authenticated.
    Accept(Authenticated<D>),
    /// Accept the upgrade; the socket must authenticate in band
    /// ([`WsOptions::authenticate`](crate::WsOptions::authenticate)) within
    /// the authentication timeout. Without an authenticator it is refused
    /// like [`Reject`](Self::Reject) (and logged).
    Pending,
    /// Refuse with HTTP 401.
    Reject,
}

impl<D> Upgrade<D> {
    /// Accept with `data`, no expiry.
    pub fn accept(data: D) -> Self {
        Self::Accept(Authenticated::new(data))
    }
}

/// What an upgrade handler may return: `Option<D>`, [`Authenticated<D>`]
/// or [`Upgrade<D>`].
pub trait IntoUpgrade: Send + 'static {
    /// The connection's user data type.
    type Data: Send + Sync + 'static;
    /// The decision.
    fn into_upgrade(self) -> Upgrade<Self::Data>;
}

impl<D: Send + Sync + 'static> IntoUpgrade for Option<D> {
    type Data = D;
    fn into_upgrade(self) -> Upgrade<D> {
        self.map_or(Upgrade::Reject, Upgrade::accept)
    }
}

impl<D: Send + Sync + 'static> IntoUpgrade for Authenticated<D> {
    type Data = D;
    fn into_upgrade(self) -> Upgrade<D> {
        Upgrade::Accept(self)
    }
}

impl<D: Send + Sync + 'static> IntoUpgrade for Upgrade<D> {
    type Data = D;
    fn into_upgrade(self) -> Upgrade<D> {
        self
    }
}

/// What the authenticator sees of an `auth.authenticate` message.
///
/// The credentials are the message's fields beside `type` (the original
/// OriJS client sends `{"type":"auth.authenticate", ...credentials}`);
/// their meaning is the application's. On the first authentication the
/// upgrade request is there too; on a refresh (a live socket
/// authenticating again) the connection is, with the user data of its
/// first authentication, which a refresh does not replace.
pub struct AuthRequest<D> {
    pub(crate) credentials: Map<String, Value>,
    pub(crate) upgrade: Option<Arc<UpgradeRequest>>,
    pub(crate) conn: Option<Conn<D>>,
}

impl<D: Send + Sync + 'static> AuthRequest<D> {
    /// The credential fields.
    pub fn credentials(&self) -> &Map<String, Value> {
        &self.credentials
    }

    /// The `token` field, when it is a string.
    pub fn token(&self) -> Option<&str> {
        self.credentials.get("token")?.as_str()
    }

    /// The upgrade request of the socket (first authentication only).
    pub fn upgrade(&self) -> Option<&UpgradeRequest> {
        self.upgrade.as_deref()
    }

    /// The live connection, on a refresh. Compare its
    /// [`data`](Conn::data) with what the new credential names to refuse a
    /// token of another user.
    pub fn conn(&self) -> Option<&Conn<D>> {
        self.conn.as_ref()
    }

    /// Whether this is a refresh of a live connection.
    pub fn is_refresh(&self) -> bool {
        self.conn.is_some()
    }
}

impl<D> std::fmt::Debug for AuthRequest<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Credentials are secrets: their names only.
        f.debug_struct("AuthRequest")
            .field("fields", &self.credentials.keys().collect::<Vec<_>>())
            .field("refresh", &self.conn.is_some())
            .finish_non_exhaustive()
    }
}

pub(crate) fn auth_fn<D, F, Fut>(f: F) -> AuthFn<D>
where
    D: Send + Sync + 'static,
    F: Fn(AuthRequest<D>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Option<Authenticated<D>>> + Send + 'static,
{
    Arc::new(move |req| Box::pin(f(req)))
}

pub(crate) fn join_fn<D, F, Fut>(f: F) -> JoinFn<D>
where
    D: Send + Sync + 'static,
    F: Fn(Conn<D>, Topic) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    Arc::new(move |conn, topic| Box::pin(f(conn, topic)))
}

/// Runs the authenticator; a panic is a refusal (logged).
pub(crate) async fn run_authenticator<D: Send + Sync + 'static>(
    authenticator: &AuthFn<D>,
    req: AuthRequest<D>,
) -> Option<Authenticated<D>> {
    match AssertUnwindSafe(authenticator(req)).catch_unwind().await {
        Ok(verdict) => verdict,
        Err(_) => {
            tracing::error!("authenticator panicked; refusing");
            None
        }
    }
}

/// Asks the join authorization; a panic is a refusal (logged).
pub(crate) async fn run_join_check<D: Send + Sync + 'static>(
    check: &JoinFn<D>,
    conn: Conn<D>,
    topic: Topic,
) -> bool {
    let id = conn.id();
    match AssertUnwindSafe(check(conn, topic)).catch_unwind().await {
        Ok(allowed) => allowed,
        Err(_) => {
            tracing::error!(socket = %id, "join authorization panicked; refusing");
            false
        }
    }
}
