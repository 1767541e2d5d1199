//! Building a [`Client`]: its settings, checked once, and the start of
//! its background task.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};

use crate::{actor, auth, Backoff, Cause, Client, ClientError, ConnectionState, Shared, State};

/// Builds a [`Client`]: `Client::builder(url)...build()`.
#[derive(Debug, Clone)]
#[must_use]
pub struct ClientBuilder {
    url: String,
    headers: Vec<(String, String)>,
    reconnect: Option<Backoff>,
    heartbeat: Option<(Duration, Duration)>,
    connect_timeout: Duration,
    buffer_size: usize,
    auth: Option<auth::TokenSource>,
}

impl ClientBuilder {
    pub(crate) fn new(url: String) -> Self {
        Self {
            url,
            headers: Vec::new(),
            reconnect: Some(Backoff::default()),
            heartbeat: Some((Duration::from_secs(25), Duration::from_secs(10))),
            connect_timeout: Duration::from_secs(10),
            buffer_size: 100,
            auth: None,
        }
    }

    /// Authenticates in band (PROTOCOL.md section 9): on every connection
    /// (the first and each reconnect) the client first sends
    /// `{"type":"auth.authenticate","token":<token()>}` and waits for the
    /// server's `auth.authenticated` ([`Event::Authenticated`](crate::Event::Authenticated)) before it
    /// rejoins rooms and flushes what was buffered; at every
    /// `auth.expiring` it asks `token()` again and refreshes the live
    /// socket. For servers that take credentials after the upgrade, which
    /// is what browsers must do. A server closing with 1008 "Token expired"
    /// (the refresh came too late) or "Authentication timeout" is
    /// reconnected with a fresh token; any other 1008 ("Authentication
    /// failed": the token is wrong) ends the client.
    ///
    /// A `token()` that fails drops the connection with the local code 4401
    /// "Token unavailable", a server that does not answer within the
    /// connection timeout with 4008 "Authentication timeout" (the codes of
    /// the TypeScript client); the usual back-off follows.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), ori_client::ClientError> {
    /// let client = ori_client::Client::builder("ws://127.0.0.1:3000/ws")
    ///     .auth_token(|| async { Ok::<_, std::io::Error>("secret".to_owned()) })
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn auth_token<F, Fut, E>(mut self, token: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<String, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.auth = Some(auth::TokenSource::new(token));
        self
    }

    /// Adds a header to the upgrade request (`authorization`, ...).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Reconnects after an unexpected close with this back-off (the default
    /// is [`Backoff::default`]).
    pub fn reconnect(mut self, backoff: Backoff) -> Self {
        self.reconnect = Some(backoff);
        self
    }

    /// Never reconnects: the first close (or failed connection) ends the client.
    pub fn no_reconnect(mut self) -> Self {
        self.reconnect = None;
        self
    }

    /// Sends the `2` ping every `interval`; without the `3` pong (or any
    /// message) within `pong_timeout` the connection is dropped and a
    /// reconnect follows. Default 25 s / 10 s.
    pub fn heartbeat(mut self, interval: Duration, pong_timeout: Duration) -> Self {
        self.heartbeat = Some((interval, pong_timeout));
        self
    }

    /// Disables the heartbeat.
    pub fn no_heartbeat(mut self) -> Self {
        self.heartbeat = None;
        self
    }

    /// How long one connection attempt (TCP + upgrade) may take (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The most messages buffered while disconnected; beyond it the oldest
    /// are dropped (default 100).
    pub fn buffer_size(mut self, size: usize) -> Self {
        self.buffer_size = size;
        self
    }

    /// Validates the URL and headers and starts the background task, which
    /// connects right away.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn build(self) -> Result<Client, ClientError> {
        let config = Config {
            url: self.url,
            headers: self
                .headers
                .into_iter()
                .map(|(k, v)| {
                    let name =
                        HeaderName::try_from(k.as_str()).map_err(|e| ClientError::Config {
                            what: format!("header {k:?}"),
                            cause: Cause::new(e),
                        })?;
                    let value =
                        HeaderValue::try_from(v.as_str()).map_err(|e| ClientError::Config {
                            what: format!("value of header {k:?}"),
                            cause: Cause::new(e),
                        })?;
                    Ok((name, value))
                })
                .collect::<Result<_, ClientError>>()?,
            reconnect: self.reconnect,
            heartbeat: self.heartbeat,
            connect_timeout: self.connect_timeout,
            buffer_size: self.buffer_size.max(1),
            auth: self.auth,
        };
        config.request()?;
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            config,
            state: Mutex::new(State {
                conn: ConnectionState::Connecting,
                rooms: BTreeSet::new(),
                positions: HashMap::new(),
                handlers: HashMap::new(),
                events: Vec::new(),
                first_events: Some(events_rx),
                prelude: Some((events_tx, 0)),
                pending: HashMap::new(),
                buffered: 0,
            }),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(actor::run(shared.clone(), rx));
        Ok(Client { tx, shared })
    }
}

pub(crate) struct Config {
    pub(crate) url: String,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) reconnect: Option<Backoff>,
    pub(crate) heartbeat: Option<(Duration, Duration)>,
    pub(crate) connect_timeout: Duration,
    pub(crate) buffer_size: usize,
    pub(crate) auth: Option<auth::TokenSource>,
}

impl Config {
    pub(crate) fn request(
        &self,
    ) -> Result<tokio_tungstenite::tungstenite::handshake::client::Request, ClientError> {
        let mut req = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| ClientError::Config {
                what: format!("url {:?}", self.url),
                cause: Cause::new(e),
            })?;
        for (k, v) in &self.headers {
            req.headers_mut().append(k.clone(), v.clone());
        }
        Ok(req)
    }
}
