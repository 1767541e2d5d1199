//! The server under test: its address, taken from `--url`, loopback only.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::{bail, Context};

/// Where the server listens and how to address it.
#[derive(Debug, Clone)]
pub struct Target {
    /// The socket address to connect to (always a loopback address).
    pub addr: SocketAddr,
    /// The value of the `Host` header.
    pub host_header: String,
    /// The WebSocket endpoint path (default `/ws`).
    pub ws_path: String,
    /// Sent as `Authorization: Bearer <token>` on upgrades, when set.
    pub token: Option<String>,
    /// Offer permessage-deflate on upgrades (and inflate what comes
    /// compressed).
    pub compression: bool,
}

impl Target {
    /// Parses `http://HOST[:PORT][/...]` (or `ws://`). The host must be
    /// `127.0.0.1`, `localhost` (taken as 127.0.0.1, no name lookup) or
    /// `[::1]`: this tool never sends load anywhere but this machine.
    pub fn parse(url: &str, ws_path: &str, token: Option<String>) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("ws://"))
            .with_context(|| {
                format!("--url {url:?}: expected http://HOST:PORT (plain HTTP only)")
            })?;
        let authority = rest.split('/').next().unwrap_or("");
        let (host, port) = if let Some(after) = authority.strip_prefix('[') {
            let (host, tail) = after
                .split_once(']')
                .with_context(|| format!("--url {url:?}: unclosed '['"))?;
            let port = match tail.strip_prefix(':') {
                Some(p) => Some(p),
                None if tail.is_empty() => None,
                None => bail!("--url {url:?}: junk after ']'"),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port: u16 = match port {
            Some(p) => p
                .parse()
                .with_context(|| format!("--url {url:?}: bad port {p:?}"))?,
            None => 80,
        };
        let ip = match host.to_ascii_lowercase().as_str() {
            "127.0.0.1" | "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            "::1" => IpAddr::V6(Ipv6Addr::LOCALHOST),
            _ => bail!(
                "--url {url:?}: refusing host {host:?}; only 127.0.0.1, localhost and [::1] are allowed targets"
            ),
        };
        let host_header = match ip {
            IpAddr::V4(_) => format!("127.0.0.1:{port}"),
            IpAddr::V6(_) => format!("[::1]:{port}"),
        };
        if !ws_path.starts_with('/') || ws_path.bytes().any(|b| b <= b' ') {
            bail!("--ws-path {ws_path:?}: expected an absolute path without spaces");
        }
        if let Some(t) = &token {
            if t.bytes().any(|b| b < b' ' || b == 0x7f) {
                bail!("--token: control characters are not allowed");
            }
        }
        Ok(Self {
            addr: SocketAddr::new(ip, port),
            host_header,
            ws_path: ws_path.to_owned(),
            token,
            compression: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only() {
        let t = Target::parse("http://127.0.0.1:3000", "/ws", None).unwrap();
        assert_eq!(t.addr, "127.0.0.1:3000".parse().unwrap());
        let t = Target::parse("http://localhost:8080/", "/ws", None).unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        let t = Target::parse("http://[::1]:9/x", "/ws", None).unwrap();
        assert_eq!(t.addr, "[::1]:9".parse().unwrap());
        assert_eq!(t.host_header, "[::1]:9");
        let t = Target::parse("ws://127.0.0.1", "/ws", None).unwrap();
        assert_eq!(t.addr.port(), 80);
        for bad in [
            "http://10.0.0.1:3000",
            "http://example.com:80",
            "http://127.0.0.2:3000",
            "https://127.0.0.1:3000",
            "127.0.0.1:3000",
            "http://[::2]:3000",
            "http://127.0.0.1:99999",
        ] {
            assert!(Target::parse(bad, "/ws", None).is_err(), "{bad}");
        }
    }
}
