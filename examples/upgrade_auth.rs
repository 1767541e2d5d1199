//! Authenticating the upgrade: the upgrade handler reads the bearer token
//! (or `?token=`), returns the user's data or `None` (HTTP 401), and the
//! open handler subscribes the user to their own topics.
//!
//! ```sh
//! cargo run --example upgrade_auth
//! # tokens: "alice-token" (admin), "bob-token" (user); anything else is 401
//! ```

use std::time::Duration;

use ori::{Conn, Handlers, Ori, UpgradeRequest, WsOptions};

#[derive(Debug, Clone, PartialEq)]
enum Role {
    Admin,
    User,
}

#[derive(Debug, Clone)]
struct UserData {
    user_id: String,
    role: Role,
}

/// Stands in for a JWT check or a session lookup.
async fn verify_token(token: &str) -> Option<UserData> {
    let (user_id, role) = match token {
        "alice-token" => ("alice", Role::Admin),
        "bob-token" => ("bob", Role::User),
        _ => return None,
    };
    Some(UserData {
        user_id: user_id.into(),
        role,
    })
}

async fn authenticate(req: UpgradeRequest) -> Option<UserData> {
    let token = req
        .bearer_token()
        .map(str::to_owned)
        .or_else(|| req.query_param("token"))?; // no token: reject
    verify_token(&token).await
}

#[tokio::main]
async fn main() -> Result<(), ori::Error> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let port = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);

    let options = WsOptions::new()
        .path("/ws")
        .upgrade(authenticate)
        .upgrade_timeout(Duration::from_secs(2));

    let app = Ori::create()
        .websocket_options(options)
        .on_websocket(Handlers::new().on_open(|ws: Conn<UserData>| async move {
            let user = ws.data();
            tracing::info!("user connected: {}", user.user_id);
            ws.subscribe(format!("user:{}", user.user_id))?;
            if user.role == Role::Admin {
                ws.subscribe("admin-alerts")?;
            }
            Ok::<_, ori::SubscribeError>(())
        }))
        .listen(port)
        .await?;

    println!("listening on http://localhost:{}", app.port());
    tokio::signal::ctrl_c().await?;
    app.stop().await;
    Ok(())
}
