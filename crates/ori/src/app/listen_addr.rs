//! Where an app listens: a port, an address, or `"host:port"`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Where to listen: a port, an address, or `"host:port"`.
#[derive(Debug, Clone)]
pub enum ListenAddr {
    /// A resolved address.
    Addr(SocketAddr),
    /// A `host:port` to resolve.
    Text(String),
}

impl From<u16> for ListenAddr {
    fn from(port: u16) -> Self {
        Self::Addr(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port))
    }
}

impl From<SocketAddr> for ListenAddr {
    fn from(a: SocketAddr) -> Self {
        Self::Addr(a)
    }
}

impl From<(IpAddr, u16)> for ListenAddr {
    fn from((ip, port): (IpAddr, u16)) -> Self {
        Self::Addr(SocketAddr::new(ip, port))
    }
}

impl From<&str> for ListenAddr {
    fn from(s: &str) -> Self {
        match s.parse() {
            Ok(a) => Self::Addr(a),
            Err(_) => Self::Text(s.to_owned()),
        }
    }
}

impl From<String> for ListenAddr {
    fn from(s: String) -> Self {
        s.as_str().into()
    }
}
