//! The quick start: a WebSocket server at `/ws` that subscribes every
//! client to `global` and echoes every text and binary message back
//! unchanged. `PORT` picks the port (default 3000); `COMPRESSION=1`
//! offers permessage-deflate (the conformance suite runs it both ways).
//!
//! ```sh
//! cargo run --example quickstart
//! ```

use ori::{Compression, Conn, Handlers, Message, Ori, WsOptions};

#[tokio::main]
async fn main() -> Result<(), ori::Error> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let port = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);

    let mut options = WsOptions::new();
    if std::env::var("COMPRESSION").is_ok_and(|v| v == "1") {
        options = options.compression(Compression::new());
    }

    let app = Ori::create()
        .websocket_options(options)
        .on_websocket(
            Handlers::new()
                .on_open(|ws: Conn| async move {
                    tracing::info!("Client connected: {}", ws.id());
                    ws.subscribe("global") // subscribe to a topic
                })
                .on_message(|ws: Conn, msg: Message| async move {
                    ws.send(msg); // echo back to the sender
                })
                .on_close(|ws: Conn, code, _reason| async move {
                    tracing::info!("Client disconnected: {} ({code})", ws.id());
                }),
        )
        .listen(port)
        .await?;

    println!(
        "WebSocket server running at ws://localhost:{}/ws",
        app.port()
    );
    tokio::signal::ctrl_c().await?;
    app.stop().await;
    Ok(())
}
