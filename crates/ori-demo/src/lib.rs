//! The Ori demo server as a library: [`build`] assembles the application
//! that `ori-demo` serves, so tests can run it in-process too.
//!
//! The wire contract is PROTOCOL.md section 7: rooms over WebSocket
//! (`room.join`, `room.leave`, `heartbeat`, the `2`/`3` ping), three
//! request/response routes (`echo`, `whoami`, `publish`), and an HTTP API
//! that publishes notifications, broadcasts and direct sends. `GET /` serves
//! a web page using the TypeScript client (`GET /ori-client.js`).

mod api;
mod socket;
mod web;

use std::sync::Arc;
use std::time::Duration;

use ori::{Authenticated, Ori, Provider, Upgrade, WsOptions};

pub use socket::{PublishData, PUBLISH};

/// The JSON Schema of the data of every client-to-server message the demo
/// validates, by message name: the registry's (`room.join`, `room.leave`,
/// `heartbeat`) and the typed socket-router routes (`publish`).
///
/// Built from the same definitions the server validates with, so it cannot
/// drift from them. `ori-schemas` prints it, `GET /api/schemas` serves it,
/// and the TypeScript client generates its types from it.
pub fn message_schemas() -> serde_json::Map<String, serde_json::Value> {
    let mut schemas = socket::registry().schemas();
    schemas.extend(socket::route_schemas());
    // Sorted by name, so the output is stable.
    let mut sorted: Vec<_> = schemas.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted.into_iter().collect()
}
pub use web::{CLIENT_JS, INDEX_HTML};

/// The demo's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Require this token on the upgrade (`Authorization: Bearer` or
    /// `?token=`) and on the publishing routes (`Authorization: Bearer`).
    pub token: Option<String>,
    /// With a token: upgrades without credentials are accepted pending and
    /// must send `auth.authenticate` (PROTOCOL.md section 9).
    pub in_band_auth: bool,
    /// How long a socket's authentication holds before it must be
    /// refreshed (`None`: for ever).
    pub token_ttl: Option<Duration>,
    /// How long a pending socket has to authenticate.
    pub auth_timeout: Duration,
    /// Accept upgrades only from these `Origin`s (empty: any).
    pub allowed_origins: Vec<String>,
    /// Largest WebSocket message and frame (close 1009 beyond).
    pub max_message_size: usize,
    /// Largest outbound queue per connection (close 1013 beyond).
    pub outbound_queue_limit: usize,
    /// Bytes queued to all connections together before publishes wait
    /// (`WsOptions::outbound_budget`).
    pub outbound_budget: usize,
    /// Largest HTTP body (413 beyond).
    pub body_limit: usize,
    /// How long a request body may take to arrive (408 beyond).
    pub request_timeout: Duration,
    /// How long a graceful shutdown waits.
    pub shutdown_timeout: Duration,
    /// Keep this many publications of every room, for this long (`None`:
    /// no history; PROTOCOL.md section 8).
    pub history: Option<(usize, Duration)>,
    /// Offer permessage-deflate (RFC 7692).
    pub compression: bool,
    /// Writer tasks (`None`: the default, `WsOptions::writers`).
    pub writers: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            token: None,
            in_band_auth: false,
            token_ttl: None,
            auth_timeout: Duration::from_secs(5),
            allowed_origins: Vec::new(),
            max_message_size: 1 << 20,
            outbound_queue_limit: 4 << 20,
            outbound_budget: ori::core::DEFAULT_BUDGET,
            body_limit: 1 << 20,
            request_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(10),
            history: None,
            compression: false,
            writers: None,
        }
    }
}

/// The demo application on the in-process provider, ready to `listen`.
pub fn build(config: Config) -> Ori {
    build_with_provider(config, ori::InProcProvider::new())
}

/// The demo application on `provider` (for example an
/// `ori_redis::RedisProvider`, so that several demo processes on one Redis
/// form one pub/sub space), ready to `listen`.
pub fn build_with_provider(config: Config, provider: impl Provider) -> Ori {
    let mut options = WsOptions::new();
    if let Some((entries, ttl)) = config.history {
        options = options.history(ori::core::HistoryConfig::new(entries).ttl(ttl));
    }
    if !config.allowed_origins.is_empty() {
        options = options.allowed_origins(config.allowed_origins.iter().cloned());
    }
    if config.compression {
        options = options.compression(ori::Compression::new());
    }
    if let Some(n) = config.writers {
        options = options.writers(n);
    }
    let options = auth(
        options
            .max_message_size(config.max_message_size)
            .max_frame_size(config.max_message_size)
            .outbound_queue_limit(config.outbound_queue_limit)
            .outbound_budget(config.outbound_budget)
            .auth_timeout(config.auth_timeout),
        &config,
    );
    Ori::create()
        .websocket_with(provider, options)
        .socket_router(socket::DemoRouter)
        .message_registry(socket::registry())
        .controller(
            "/api",
            api::Api {
                token: config.token.as_deref().map(Arc::from),
            },
        )
        .controller("/", web::Web)
        .metrics_route("/metrics")
        .body_limit(config.body_limit)
        .request_timeout(config.request_timeout)
        .shutdown_timeout(config.shutdown_timeout)
}

/// The demo's authentication (PROTOCOL.md sections 7 and 9): the token on
/// the upgrade, or with `in_band_auth` in an `auth.authenticate` message;
/// with a TTL either one holds that long and is refreshed in band.
fn auth(options: WsOptions, config: &Config) -> WsOptions {
    let Some(expected) = config.token.as_deref().map(Arc::<str>::from) else {
        return options;
    };
    let ttl = config.token_ttl;
    let granted = move || {
        let auth = Authenticated::new(());
        match ttl {
            Some(ttl) => auth.expires_in(ttl),
            None => auth,
        }
    };
    let in_band = config.in_band_auth;
    let (token, grant) = (expected.clone(), granted);
    let options = options.upgrade(move |req| {
        let given = req
            .bearer_token()
            .map(str::to_owned)
            .or_else(|| req.query_param("token"));
        let decision = match given {
            Some(given) if token_matches(&given, &token) => Upgrade::Accept(grant()),
            Some(_) => Upgrade::Reject,
            None if in_band => Upgrade::Pending,
            None => Upgrade::Reject,
        };
        std::future::ready(decision)
    });
    if !in_band && ttl.is_none() {
        return options;
    }
    // In band: the first authentication of a pending socket, and the
    // refresh of any socket whose authentication expires.
    options.authenticate(move |req| {
        let accepted = req
            .token()
            .is_some_and(|given| token_matches(given, &expected));
        std::future::ready(accepted.then(&granted))
    })
}

/// Compares a given token with the expected one in time that does not
/// depend on where they differ (only on their lengths).
pub(crate) fn token_matches(given: &str, expected: &str) -> bool {
    use subtle::ConstantTimeEq;
    given.as_bytes().ct_eq(expected.as_bytes()).into()
}
