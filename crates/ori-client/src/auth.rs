//! In-band authentication from the client side (PROTOCOL.md section 9):
//! the application's token source, the `auth.authenticate` message, and
//! telling the server's `auth.*` envelopes apart.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ori_protocol::wire::{self, Envelope};

use crate::Cause;
use serde_json::Value;

pub(crate) type TokenFuture = Pin<Box<dyn Future<Output = Result<String, Cause>> + Send>>;

/// Where the client gets a token: called before every connection's
/// authentication and at every `auth.expiring` (a refresh).
#[derive(Clone)]
pub(crate) struct TokenSource(Arc<dyn Fn() -> TokenFuture + Send + Sync>);

impl TokenSource {
    pub(crate) fn new<F, Fut, E>(f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        Self(Arc::new(move || {
            let fut = f();
            Box::pin(async move { fut.await.map_err(Cause::new) })
        }))
    }

    /// A token, or why there is none.
    pub(crate) async fn token(&self) -> Result<String, Cause> {
        (self.0)().await
    }

    /// A token within `timeout`, as a future of its own (a refresh is
    /// fetched while the connection goes on).
    pub(crate) fn fetch(&self, timeout: std::time::Duration) -> TokenFuture {
        let fut = (self.0)();
        Box::pin(async move {
            tokio::time::timeout(timeout, fut)
                .await
                .unwrap_or_else(|elapsed| Err(Cause::new(elapsed)))
        })
    }
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSource")
    }
}

/// `{"type":"auth.authenticate","token":"<token>"}`.
pub(crate) fn authenticate_message(token: &str) -> String {
    serde_json::to_string(&wire::Authenticate::token(token)).unwrap_or_default()
}

/// A server envelope of in-band authentication.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AuthEnvelope {
    /// `auth.authenticated`: the socket id and the credential's lifetime.
    Authenticated {
        socket_id: String,
        expires_in: Option<u64>,
    },
    /// `auth.expiring`: refresh now.
    Expiring,
}

/// Reads an `auth.authenticated` or `auth.expiring` envelope; `None` for
/// any other frame (most are told apart without parsing).
pub(crate) fn auth_envelope(text: &str) -> Option<AuthEnvelope> {
    if !text.contains("\"auth.") {
        return None;
    }
    let env = serde_json::from_str::<Envelope<Value>>(text).ok()?;
    match env.name.as_str() {
        wire::AUTHENTICATED => {
            let data = serde_json::from_value::<wire::Authenticated>(env.data).ok()?;
            Some(AuthEnvelope::Authenticated {
                socket_id: data.socket_id,
                expires_in: data.expires_in,
            })
        }
        wire::EXPIRING => Some(AuthEnvelope::Expiring),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_are_told_apart() {
        assert_eq!(
            auth_envelope(
                r#"{"name":"auth.authenticated","data":{"socketId":"s","expiresIn":30},"timestamp":1}"#
            ),
            Some(AuthEnvelope::Authenticated {
                socket_id: "s".into(),
                expires_in: Some(30)
            })
        );
        assert_eq!(
            auth_envelope(
                r#"{"name":"auth.authenticated","data":{"socketId":"s","expiresIn":null}}"#
            ),
            Some(AuthEnvelope::Authenticated {
                socket_id: "s".into(),
                expires_in: None
            })
        );
        assert_eq!(
            auth_envelope(r#"{"name":"auth.expiring","data":{"expiresIn":3},"timestamp":1}"#),
            Some(AuthEnvelope::Expiring)
        );
        for other in [
            r#"{"type":"notification","message":"\"auth.expiring\""}"#,
            r#"{"name":"auth.other","data":{}}"#,
            "3",
        ] {
            assert_eq!(auth_envelope(other), None, "{other}");
        }
        let m: Value = serde_json::from_str(&authenticate_message("t\"x")).unwrap();
        assert_eq!(
            m,
            serde_json::json!({"type": "auth.authenticate", "token": "t\"x"})
        );
    }
}
