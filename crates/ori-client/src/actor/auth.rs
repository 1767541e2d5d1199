//! The actor's side of in-band authentication: a token from the
//! application, `auth.authenticate` first on every connection, and the
//! refresh at `auth.expiring`.

use futures_util::{SinkExt, StreamExt};
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::{close_locally, Actor, Ws};
use crate::auth::{auth_envelope, authenticate_message, AuthEnvelope};
use crate::{Cause, ClientError};

/// The local close code when the token source fails (as the TypeScript
/// client's).
const TOKEN_UNAVAILABLE: u16 = 4401;
/// The local close code when the server does not answer
/// `auth.authenticate` within the connection timeout.
const AUTH_TIMEOUT: u16 = 4008;

impl Actor {
    /// A token from the application's source; `Err` drops the connection.
    async fn token(&self, ws: &mut Ws) -> Result<String, (u16, String)> {
        let Some(source) = &self.shared.config.auth else {
            return Err((TOKEN_UNAVAILABLE, "Token unavailable".into()));
        };
        let timeout = self.shared.config.connect_timeout;
        let failed = match tokio::time::timeout(timeout, source.token()).await {
            Ok(Ok(token)) => return Ok(token),
            Ok(Err(e)) => e,
            Err(elapsed) => Cause::new(elapsed),
        };
        self.error(ClientError::TokenUnavailable(failed));
        Err(close_locally(ws, TOKEN_UNAVAILABLE, "Token unavailable").await)
    }

    /// The first thing on a connection: `auth.authenticate`, then the
    /// server's verdict (a close, or `auth.authenticated`) within the
    /// connection timeout.
    pub(super) async fn authenticate(&mut self, ws: &mut Ws) -> Result<(), (u16, String)> {
        let token = self.token(ws).await?;
        if ws
            .send(WsMessage::text(authenticate_message(&token)))
            .await
            .is_err()
        {
            return Err((1006, "send failed".into()));
        }
        let deadline = Instant::now() + self.shared.config.connect_timeout;
        loop {
            let msg = tokio::select! {
                msg = ws.next() => msg,
                () = sleep_until(deadline) => {
                    self.error(ClientError::AuthTimeout(self.shared.config.connect_timeout));
                    return Err(close_locally(ws, AUTH_TIMEOUT, "Authentication timeout").await);
                }
            };
            match msg {
                Some(Ok(WsMessage::Text(text))) => {
                    if let Some(AuthEnvelope::Authenticated { .. }) = auth_envelope(text.as_str()) {
                        self.text(text.as_str());
                        return Ok(());
                    }
                    self.text(text.as_str());
                }
                Some(Ok(WsMessage::Close(frame))) => {
                    return Err(frame.map_or((1005, String::new()), |f| {
                        (u16::from(f.code), f.reason.as_str().to_owned())
                    }));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err((1006, e.to_string())),
                None => return Err((1006, "connection dropped".into())),
            }
        }
    }

    /// A refreshed token for the live socket: sent, or (when the source
    /// failed) reported; the server then closes with "Token expired" and
    /// the reconnect asks for a token again.
    pub(super) async fn refreshed(
        &mut self,
        ws: &mut Ws,
        token: Result<String, Cause>,
    ) -> Result<(), (u16, String)> {
        match token {
            Ok(token) => {
                if ws
                    .send(WsMessage::text(authenticate_message(&token)))
                    .await
                    .is_err()
                {
                    return Err((1006, "send failed".into()));
                }
            }
            Err(e) => self.error(ClientError::TokenUnavailable(e)),
        }
        Ok(())
    }
}
