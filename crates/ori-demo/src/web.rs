//! The demo's web page (`GET /`) and the TypeScript client it uses
//! (`GET /ori-client.js`), both compiled into the binary: no build step and
//! no separate front-end server.

use std::sync::Arc;

use ori::{Controller, RequestContext, RouteBuilder};

/// The page: connection state, rooms, posting through `publish`, live notifications.
pub const INDEX_HTML: &str = include_str!("../static/index.html");

/// The `@ori/client` ES module bundle (`clients/ts/dist/ori-client.js`).
pub const CLIENT_JS: &str = include_str!("../../../clients/ts/dist/ori-client.js");

/// `GET /` and `GET /ori-client.js`.
pub(crate) struct Web;

impl Controller for Web {
    fn configure(&self, r: &mut RouteBuilder<Self>) {
        r.get("/", Self::index).get("/ori-client.js", Self::client);
    }
}

impl Web {
    async fn index(self: Arc<Self>, _ctx: RequestContext) -> impl ori::IntoResponse {
        (
            [
                ("content-type", "text/html; charset=utf-8"),
                ("cache-control", "no-cache"),
            ],
            INDEX_HTML,
        )
    }

    async fn client(self: Arc<Self>, _ctx: RequestContext) -> impl ori::IntoResponse {
        (
            [
                ("content-type", "text/javascript; charset=utf-8"),
                ("cache-control", "no-cache"),
            ],
            CLIENT_JS,
        )
    }
}
