//! A minimal RFC 6455 client on a raw tokio `TcpStream`.
//!
//! Only what a load generator needs: the HTTP upgrade, a parser for the
//! server's (unmasked) frames that works in place on one reusable read
//! buffer, and masked client frames built in one reusable write buffer. No
//! allocation per frame, no clock reads: callers decide when to read the
//! clock (once per `fill`).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{bail, Context};
use ori_core::codec::deflate::{Agreed, Inflater};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::target::Target;

/// Continuation frame opcode.
pub const OP_CONT: u8 = 0x0;
/// Text frame opcode.
pub const OP_TEXT: u8 = 0x1;
/// Binary frame opcode.
pub const OP_BINARY: u8 = 0x2;
/// Close frame opcode.
pub const OP_CLOSE: u8 = 0x8;
/// Ping frame opcode.
pub const OP_PING: u8 = 0x9;
/// Pong frame opcode.
pub const OP_PONG: u8 = 0xA;

/// Largest frame or reassembled message accepted from the server.
const MAX_MESSAGE: usize = 64 << 20;
/// Largest HTTP response head accepted for the upgrade.
const MAX_HEAD: usize = 8192;

/// A cheap pseudo-random `u64` (splitmix64 over a global counter): masking
/// keys and handshake keys need no cryptographic quality here.
pub fn rand_u64() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        nanos ^ (u64::from(std::process::id()) << 32)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut z = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn base64_16(input: &[u8; 16]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(24);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Appends one masked client frame (FIN set) to `out`.
pub fn encode_client_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    let mask = (rand_u64() as u32).to_ne_bytes();
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
}

/// A complete frame (or reassembled message) found in the read buffer.
#[derive(Debug, Clone, Copy)]
pub struct FrameRef {
    /// The opcode (for a reassembled message, the first fragment's).
    pub op: u8,
    start: usize,
    end: usize,
    /// The payload lives in the fragment buffer rather than the read buffer.
    reassembled: bool,
}

/// One client WebSocket connection.
pub struct WsConn {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Bytes the next frame needs in the buffer (header + payload).
    need: usize,
    frag: Vec<u8>,
    frag_op: Option<u8>,
    /// The message being reassembled is compressed.
    frag_compressed: bool,
    /// permessage-deflate was agreed: compressed messages (RSV1) are
    /// inflated into the fragment buffer.
    inflater: Option<Box<Inflater>>,
    /// Bytes of data frames read (headers included): what the wire carried.
    pub wire_bytes: u64,
    out: Vec<u8>,
}

impl WsConn {
    /// Connects and upgrades, within `timeout`. `buf_size` is the initial
    /// read buffer (it grows when a frame needs more).
    pub async fn connect(
        target: &Target,
        buf_size: usize,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        tokio::time::timeout(timeout, Self::connect_inner(target, buf_size))
            .await
            .map_err(|_| anyhow::anyhow!("upgrade timed out after {timeout:?}"))?
    }

    async fn connect_inner(target: &Target, buf_size: usize) -> anyhow::Result<Self> {
        let mut stream = TcpStream::connect(target.addr)
            .await
            .with_context(|| format!("connect {}", target.addr))?;
        stream.set_nodelay(true)?;
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&rand_u64().to_ne_bytes());
        key[8..].copy_from_slice(&rand_u64().to_ne_bytes());
        let mut req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n",
            target.ws_path,
            target.host_header,
            base64_16(&key)
        );
        if let Some(token) = &target.token {
            req.push_str("Authorization: Bearer ");
            req.push_str(token);
            req.push_str("\r\n");
        }
        if target.compression {
            req.push_str(
                "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n",
            );
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).await?;

        // A 101 head is a few hundred bytes: start small (the buffer is
        // zeroed) and grow only for a larger head.
        let mut buf = vec![0u8; buf_size.max(1024)];
        let mut end = 0;
        let head_end = loop {
            if let Some(pos) = find(&buf[..end], b"\r\n\r\n") {
                break pos + 4;
            }
            if end >= MAX_HEAD {
                bail!("upgrade response head larger than {MAX_HEAD} bytes");
            }
            if end == buf.len() {
                buf.resize(MAX_HEAD, 0);
            }
            let limit = buf.len().min(MAX_HEAD);
            let n = stream.read(&mut buf[end..limit]).await?;
            if n == 0 {
                bail!("connection closed during the upgrade");
            }
            end += n;
        };
        let head = &buf[..head_end];
        if !head.starts_with(b"HTTP/1.1 101") {
            let line = head.split(|&b| b == b'\r').next().unwrap_or(b"");
            bail!("upgrade refused: {}", String::from_utf8_lossy(line));
        }
        let deflate = String::from_utf8_lossy(head)
            .to_ascii_lowercase()
            .contains("sec-websocket-extensions: permessage-deflate");
        // Keep whatever frames followed the 101 in the same read.
        buf.copy_within(head_end..end, 0);
        let end = end - head_end;
        if buf.len() > buf_size.max(end).max(1024) {
            buf.truncate(buf_size.max(end).max(64));
            buf.shrink_to_fit();
        }
        Ok(Self {
            stream,
            buf,
            start: 0,
            end,
            need: 0,
            frag: Vec::new(),
            frag_op: None,
            frag_compressed: false,
            inflater: deflate.then(|| {
                Box::new(Inflater::new(Agreed {
                    server_window_bits: 15,
                    client_window_bits: 15,
                    client_no_context_takeover: false,
                }))
            }),
            wire_bytes: 0,
            out: Vec::with_capacity(64),
        })
    }

    /// Reads once from the socket into the buffer (making room first).
    /// Returns the byte count; 0 means the peer closed the stream.
    pub async fn fill(&mut self) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0
            && (self.buf.len() - self.end < self.buf.len() / 4
                || self.start + self.need > self.buf.len())
        {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.need > self.buf.len() {
            let new_len = self.need.max(self.buf.len() * 2);
            self.buf.resize(new_len, 0);
        } else if self.end == self.buf.len() {
            let new_len = self.buf.len() * 2;
            self.buf.resize(new_len, 0);
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// The next complete frame in the buffer, if any (no I/O). Fragmented
    /// data messages are reassembled (rare: only then is anything copied);
    /// control frames are returned as they come.
    pub fn next_frame(&mut self) -> anyhow::Result<Option<FrameRef>> {
        loop {
            let avail = &self.buf[self.start..self.end];
            if avail.len() < 2 {
                self.need = 2;
                return Ok(None);
            }
            let (b0, b1) = (avail[0], avail[1]);
            if b1 & 0x80 != 0 {
                bail!("masked frame from the server");
            }
            let compressed = b0 & 0x40 != 0;
            if b0 & 0x30 != 0 || (compressed && self.inflater.is_none()) {
                bail!("RSV bits set in a server frame");
            }
            let (hdr, len) = match b1 & 0x7f {
                126 => {
                    if avail.len() < 4 {
                        self.need = 4;
                        return Ok(None);
                    }
                    (4, usize::from(u16::from_be_bytes([avail[2], avail[3]])))
                }
                127 => {
                    if avail.len() < 10 {
                        self.need = 10;
                        return Ok(None);
                    }
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&avail[2..10]);
                    let len = u64::from_be_bytes(b);
                    if len > MAX_MESSAGE as u64 {
                        bail!("server frame of {len} bytes is over the limit");
                    }
                    (10, len as usize)
                }
                n => (2, usize::from(n)),
            };
            if len > MAX_MESSAGE {
                bail!("server frame of {len} bytes is over the limit");
            }
            if avail.len() < hdr + len {
                self.need = hdr + len;
                return Ok(None);
            }
            self.need = 0;
            let fin = b0 & 0x80 != 0;
            let op = b0 & 0x0f;
            let start = self.start + hdr;
            let end = start + len;
            self.start = end;
            if matches!(op, OP_TEXT | OP_BINARY | OP_CONT) {
                self.wire_bytes += (hdr + len) as u64;
            }
            match op {
                OP_TEXT | OP_BINARY if fin && self.frag_op.is_none() && compressed => {
                    let data = self.buf[start..end].to_vec();
                    self.inflate(&data)?;
                    let end = self.frag.len();
                    return Ok(Some(FrameRef {
                        op,
                        start: 0,
                        end,
                        reassembled: true,
                    }));
                }
                OP_TEXT | OP_BINARY if fin && self.frag_op.is_none() => {
                    return Ok(Some(FrameRef {
                        op,
                        start,
                        end,
                        reassembled: false,
                    }));
                }
                OP_TEXT | OP_BINARY if self.frag_op.is_none() => {
                    self.frag_op = Some(op);
                    self.frag_compressed = compressed;
                    self.frag.clear();
                    self.frag.extend_from_slice(&self.buf[start..end]);
                }
                OP_CONT if self.frag_op.is_some() => {
                    if self.frag.len() + len > MAX_MESSAGE {
                        bail!("server message over the limit");
                    }
                    self.frag.extend_from_slice(&self.buf[start..end]);
                    if fin {
                        let op = self.frag_op.take().unwrap_or(OP_TEXT);
                        if std::mem::take(&mut self.frag_compressed) {
                            let data = std::mem::take(&mut self.frag);
                            self.inflate(&data)?;
                        }
                        let end = self.frag.len();
                        return Ok(Some(FrameRef {
                            op,
                            start: 0,
                            end,
                            reassembled: true,
                        }));
                    }
                }
                OP_CLOSE | OP_PING | OP_PONG if fin && len <= 125 => {
                    return Ok(Some(FrameRef {
                        op,
                        start,
                        end,
                        reassembled: false,
                    }));
                }
                _ => bail!("unexpected server frame: opcode {op:#x}, fin {fin}"),
            }
        }
    }

    /// Inflates one compressed message into the fragment buffer, with the
    /// server's own inflater (the server keeps no context between messages).
    fn inflate(&mut self, data: &[u8]) -> anyhow::Result<()> {
        let Some(inflater) = self.inflater.as_deref_mut() else {
            bail!("a compressed frame without permessage-deflate");
        };
        let message = inflater
            .inflate(data, MAX_MESSAGE)
            .map_err(|e| anyhow::anyhow!("inflate: {e}"))?;
        self.frag.clear();
        self.frag.extend_from_slice(&message);
        Ok(())
    }

    /// The payload of a frame returned by [`next_frame`](Self::next_frame).
    /// Valid until the next call to `fill` or `next_frame`.
    pub fn payload(&self, frame: &FrameRef) -> &[u8] {
        if frame.reassembled {
            &self.frag[frame.start..frame.end]
        } else {
            &self.buf[frame.start..frame.end]
        }
    }

    /// The close code of a close frame (1005 when it has none).
    pub fn close_code(&self, frame: &FrameRef) -> u16 {
        let p = self.payload(frame);
        if p.len() >= 2 {
            u16::from_be_bytes([p[0], p[1]])
        } else {
            1005
        }
    }

    /// Sends one masked frame.
    pub async fn send(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        self.out.clear();
        encode_client_frame(&mut self.out, opcode, payload);
        self.stream.write_all(&self.out).await
    }

    /// Sends a text frame.
    pub async fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.send(OP_TEXT, text.as_bytes()).await
    }

    /// Answers a ping frame found in the buffer with a pong of the same
    /// payload.
    pub async fn pong(&mut self, ping: &FrameRef) -> io::Result<()> {
        self.out.clear();
        let (start, end) = (ping.start, ping.end);
        // Borrow dance: the payload lives in `buf`, the frame goes to `out`.
        let mut out = std::mem::take(&mut self.out);
        encode_client_frame(&mut out, OP_PONG, &self.buf[start..end]);
        let r = self.stream.write_all(&out).await;
        self.out = out;
        r
    }

    /// Sends `2` and waits (within `timeout`) for the `3` reply, answering
    /// pings and skipping other frames on the way. Because the server
    /// handles a connection's frames in order, the reply proves everything
    /// sent before it took effect.
    pub async fn ping_roundtrip(&mut self, timeout: Duration) -> anyhow::Result<()> {
        tokio::time::timeout(timeout, async {
            self.send_text("2").await?;
            loop {
                while let Some(f) = self.next_frame()? {
                    match f.op {
                        OP_TEXT if self.payload(&f) == b"3" => return Ok(()),
                        OP_PING => self.pong(&f).await?,
                        OP_CLOSE => bail!("server closed the connection ({})", self.close_code(&f)),
                        _ => {}
                    }
                }
                if self.fill().await? == 0 {
                    bail!("server closed the stream");
                }
            }
        })
        .await
        .map_err(|_| anyhow::anyhow!("no reply to the '2' ping within {timeout:?}"))?
    }

    /// Drops the connection with a TCP reset (`SO_LINGER` 0): no close
    /// frame, no FIN handshake, no TIME_WAIT on either side. The cheapest
    /// way out for both ends; the server sees a reset connection.
    pub fn reset(self) {
        let _ = self.stream.set_zero_linger();
    }

    /// Sends a close frame (code 1000) and waits, within `timeout`, for the
    /// server's close frame and the end of the stream, so that the server
    /// closes the TCP connection first (and keeps the TIME_WAIT).
    pub async fn close(mut self, timeout: Duration) -> anyhow::Result<()> {
        self.send(OP_CLOSE, &1000u16.to_be_bytes()).await?;
        let _ = tokio::time::timeout(timeout, async {
            loop {
                loop {
                    match self.next_frame() {
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(_) => return,
                    }
                }
                match self.fill().await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        Ok(())
    }
}

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let last_start = hay.len() - needle.len();
    let mut i = 0;
    while i <= last_start {
        if hay[i] == first && &hay[i..i + needle.len()] == needle {
            return Some(i);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_of_16_bytes() {
        assert_eq!(base64_16(b"the sample nonce"), "dGhlIHNhbXBsZSBub25jZQ==");
    }

    #[test]
    fn client_frame_is_masked() {
        let mut out = Vec::new();
        encode_client_frame(&mut out, OP_TEXT, b"2");
        assert_eq!(out.len(), 2 + 4 + 1);
        assert_eq!(out[0], 0x81);
        assert_eq!(out[1], 0x81);
        assert_eq!(out[6] ^ out[2], b'2');
        out.clear();
        encode_client_frame(&mut out, OP_TEXT, &[b'a'; 300]);
        assert_eq!(out[1], 0x80 | 126);
        assert_eq!(u16::from_be_bytes([out[2], out[3]]), 300);
        assert_eq!(out.len(), 4 + 4 + 300);
    }

    #[test]
    fn find_works() {
        assert_eq!(find(b"abc\r\n\r\nxyz", b"\r\n\r\n"), Some(3));
        assert_eq!(find(b"ab", b"abc"), None);
        assert_eq!(find(b"xxabc", b"abc"), Some(2));
    }
}
