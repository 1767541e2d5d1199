//! A minimal HTTP/1.1 keep-alive client on a raw `TcpStream`: write one
//! request, read the response head and its `Content-Length` body. No
//! pipelining, no chunked bodies (the demo sends `Content-Length`).

use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::target::Target;
use crate::ws::find;

/// Largest response (head + body) accepted.
const MAX_RESPONSE: usize = 1 << 20;

/// One keep-alive connection.
pub struct HttpConn {
    stream: TcpStream,
    buf: Vec<u8>,
    len: usize,
    /// The server asked to close after the last response.
    pub closed: bool,
}

impl HttpConn {
    /// Connects within `timeout`.
    pub async fn connect(target: &Target, timeout: Duration) -> anyhow::Result<Self> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(target.addr))
            .await
            .map_err(|_| anyhow::anyhow!("connect timed out"))?
            .with_context(|| format!("connect {}", target.addr))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: vec![0u8; 4096],
            len: 0,
            closed: false,
        })
    }

    /// Writes `request` (complete bytes) and reads the response, within
    /// `timeout`. Returns the status code; the body is discarded.
    pub async fn request(&mut self, request: &[u8], timeout: Duration) -> anyhow::Result<u16> {
        tokio::time::timeout(timeout, async {
            self.stream.write_all(request).await?;
            self.read_response().await
        })
        .await
        .map_err(|_| anyhow::anyhow!("no HTTP response within {timeout:?}"))?
    }

    async fn read_response(&mut self) -> anyhow::Result<u16> {
        let head_end = loop {
            if let Some(pos) = find(&self.buf[..self.len], b"\r\n\r\n") {
                break pos + 4;
            }
            self.read_more().await?;
        };
        let head = &self.buf[..head_end];
        let status = parse_status(head).context("bad HTTP status line")?;
        let mut content_length = 0usize;
        for line in head.split(|&b| b == b'\n').skip(1) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
            if name.eq_ignore_ascii_case(b"content-length") {
                content_length = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .context("bad Content-Length")?;
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                bail!("chunked responses are not supported");
            } else if name.eq_ignore_ascii_case(b"connection")
                && value.eq_ignore_ascii_case(b"close")
            {
                self.closed = true;
            }
        }
        let total = head_end + content_length;
        if total > MAX_RESPONSE {
            bail!("response of {total} bytes is too large");
        }
        while self.len < total {
            self.read_more().await?;
        }
        self.buf.copy_within(total..self.len, 0);
        self.len -= total;
        Ok(status)
    }

    async fn read_more(&mut self) -> anyhow::Result<()> {
        if self.len == self.buf.len() {
            if self.buf.len() >= MAX_RESPONSE {
                bail!("response too large");
            }
            let n = self.buf.len() * 2;
            self.buf.resize(n, 0);
        }
        let n = self.stream.read(&mut self.buf[self.len..]).await?;
        if n == 0 {
            bail!("server closed the connection");
        }
        self.len += n;
        Ok(())
    }
}

fn parse_status(head: &[u8]) -> Option<u16> {
    if !head.starts_with(b"HTTP/1.") || head.len() < 12 {
        return None;
    }
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_trim() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status(b"HTTP/1.0 404 x"), Some(404));
        assert_eq!(parse_status(b"HTTX/1.1 200 OK"), None);
        assert_eq!(trim(b"  12 \t"), b"12");
    }
}
