//! The opening handshake per RFC 6455 section 4.2.1 (PROTOCOL.md section
//! 1): a `GET` on HTTP/1.1 with `Host`, exactly one `Sec-WebSocket-Key`
//! that is the base64 of 16 bytes, and version 13. Anything else is an HTTP
//! 400 JSON error (a wrong version 426), and no WebSocket is opened.

use crate::common;

use common::{command_server, http_exchange as exchange};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn upgrade(method: &str, version: &str, headers: &[&str]) -> String {
    let mut r = format!("{method} /ws {version}\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_well_formed_get_on_http_1_1_is_upgraded() {
    let server = command_server().await;
    let addr = server.addr();
    let host = format!("Host: {addr}");
    let key = format!("Sec-WebSocket-Key: {KEY}");
    let base = [
        host.as_str(),
        "Upgrade: websocket",
        "Connection: Upgrade",
        key.as_str(),
        "Sec-WebSocket-Version: 13",
    ];
    let (status, head, _) = exchange(addr, upgrade("GET", "HTTP/1.1", &base)).await;
    assert_eq!(status, 101, "{head}");

    let without = |name: &str| -> Vec<&str> {
        base.iter()
            .copied()
            .filter(|h| !h.starts_with(name))
            .collect()
    };
    let with = |extra: &'static str, drop: &str| -> Vec<&str> {
        let mut h = without(drop);
        h.push(extra);
        h
    };
    let refused: Vec<(&str, String, u16)> = vec![
        ("HEAD", upgrade("HEAD", "HTTP/1.1", &base), 400),
        ("HTTP/1.0", upgrade("GET", "HTTP/1.0", &base), 400),
        ("no Host", upgrade("GET", "HTTP/1.1", &without("Host")), 400),
        (
            "two keys",
            upgrade(
                "GET",
                "HTTP/1.1",
                &with("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==", ""),
            ),
            400,
        ),
        (
            "24 characters that are not base64",
            upgrade(
                "GET",
                "HTTP/1.1",
                &with(
                    "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!!!",
                    "Sec-WebSocket-Key",
                ),
            ),
            400,
        ),
        (
            "the base64 of 18 bytes",
            upgrade(
                "GET",
                "HTTP/1.1",
                &with(
                    "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAAA",
                    "Sec-WebSocket-Key",
                ),
            ),
            400,
        ),
        (
            "no key",
            upgrade("GET", "HTTP/1.1", &without("Sec-WebSocket-Key")),
            400,
        ),
        (
            "version 8",
            upgrade(
                "GET",
                "HTTP/1.1",
                &with("Sec-WebSocket-Version: 8", "Sec-WebSocket-Version"),
            ),
            426,
        ),
    ];
    for (what, request, expected) in refused {
        let (status, head, body) = exchange(addr, request).await;
        assert_eq!(status, expected, "{what}: {head}{body}");
        if what == "HEAD" {
            continue;
        }
        let error: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{what}: a JSON error body, got {body:?}: {e}"));
        assert!(error["error"].is_string(), "{what}: {body}");
        if expected == 426 {
            assert!(
                head.to_ascii_lowercase()
                    .contains("sec-websocket-version: 13"),
                "{head}"
            );
        }
    }
    assert_eq!(
        server.app().connection_count(),
        0,
        "no refused request became a socket"
    );
    common::stop_server(&server, vec![]).await;
}
