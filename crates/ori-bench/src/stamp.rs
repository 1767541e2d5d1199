//! The stamp a publisher writes into each message text, `<seq>:<send_ns>:`,
//! and the subscribers' parser for it: the publish request is built in
//! reused buffers, and the parser looks at the offset where it found the
//! stamp last time before it scans the frame.

/// What precedes the stamp in a notification frame.
const NEEDLE: &[u8] = b"\"message\":\"";

/// Appends the decimal digits of `v` (no allocation).
pub fn write_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// Builds one complete `POST` request in `req` (`body` is scratch space):
/// `prefix` is the request line and headers up to `Content-Length: `, the
/// body is `{"message":"<seq>:<sent>:xxx..."}` with the text padded with
/// `x` to `payload` bytes. The request goes out in one write.
pub fn encode_publish(
    req: &mut Vec<u8>,
    body: &mut Vec<u8>,
    prefix: &[u8],
    seq: u64,
    sent: u64,
    payload: usize,
) {
    body.clear();
    body.extend_from_slice(b"{\"message\":\"");
    write_u64(body, seq);
    body.push(b':');
    write_u64(body, sent);
    body.push(b':');
    let text_len = body.len() - 12;
    if text_len < payload {
        body.resize(body.len() + payload - text_len, b'x');
    }
    body.extend_from_slice(b"\"}");
    req.clear();
    req.extend_from_slice(prefix);
    write_u64(req, body.len() as u64);
    req.extend_from_slice(b"\r\n\r\n");
    req.extend_from_slice(body);
}

/// The `(seq, send_ns)` stamped into a notification's text, `None` for any
/// other frame.
pub fn parse_seq_stamp(payload: &[u8]) -> Option<(u64, u64)> {
    StampParser::default().parse(payload)
}

/// A stamp parser that remembers where the stamp was: a server writes its
/// notifications with the same field order every time, so the next frame
/// usually has it at the same offset, and the scan is skipped.
#[derive(Default)]
pub struct StampParser {
    hint: usize,
}

impl StampParser {
    /// The `(seq, send_ns)` of a notification, `None` for any other frame.
    #[inline]
    pub fn parse(&mut self, payload: &[u8]) -> Option<(u64, u64)> {
        let at = if payload
            .get(self.hint..)
            .is_some_and(|p| p.starts_with(NEEDLE))
        {
            self.hint
        } else {
            let at = crate::ws::find(payload, NEEDLE)?;
            self.hint = at;
            at
        };
        parse_numbers(&payload[at + NEEDLE.len()..])
    }
}

/// `<seq>:<sent>:` at the start of `text`.
#[inline]
fn parse_numbers(text: &[u8]) -> Option<(u64, u64)> {
    let (seq, used) = parse_number(text)?;
    let (sent, _) = parse_number(&text[used..])?;
    Some((seq, sent))
}

/// A decimal number of 1 to 19 digits (so it cannot overflow) followed by
/// `:`, at the start of `text`; the number and the bytes used.
#[inline]
fn parse_number(text: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &c) in text.iter().enumerate().take(20) {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return (c == b':' && i > 0).then_some((v, i + 1));
        }
        if i == 19 {
            return None; // a 20th digit
        }
        v = v * 10 + u64::from(d);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_parsing() {
        let frame = br#"{"type":"notification","message":"12:345678:xxxx","timestamp":1,"correlationId":"a"}"#;
        assert_eq!(parse_seq_stamp(frame), Some((12, 345_678)));
        assert_eq!(
            parse_seq_stamp(br#"{"type":"error","message":"Invalid JSON"}"#),
            None
        );
        assert_eq!(parse_seq_stamp(br#"{"message":"1:2"}"#), None);
        assert_eq!(parse_seq_stamp(br#"{"message":":2:"}"#), None);
        assert_eq!(parse_seq_stamp(b"3"), None);
        let max = format!(r#"{{"message":"9999999999999999999:{}:x"}}"#, u64::MAX / 2);
        assert_eq!(
            parse_seq_stamp(max.as_bytes()),
            Some((9_999_999_999_999_999_999, u64::MAX / 2))
        );
        assert_eq!(
            parse_seq_stamp(br#"{"message":"10000000000000000000:1:x"}"#),
            None
        );
        assert_eq!(parse_seq_stamp(br#"{"message":"1:2x:"}"#), None);
    }

    #[test]
    fn hint_follows_the_stamp() {
        let mut p = StampParser::default();
        let a = br#"{"type":"notification","message":"1:2:x"}"#;
        let b = br#"{"message":"3:4:x","type":"notification"}"#;
        assert_eq!(p.parse(a), Some((1, 2)));
        assert_eq!(p.parse(a), Some((1, 2)));
        assert_eq!(p.parse(b), Some((3, 4)));
        assert_eq!(p.parse(b"3"), None);
        assert_eq!(p.parse(a), Some((1, 2)));
    }

    #[test]
    fn digits_and_request() {
        let mut v = Vec::new();
        write_u64(&mut v, 0);
        v.push(b' ');
        write_u64(&mut v, u64::MAX);
        assert_eq!(v, format!("0 {}", u64::MAX).into_bytes());

        let (mut req, mut body) = (Vec::new(), Vec::new());
        encode_publish(
            &mut req,
            &mut body,
            b"POST /x HTTP/1.1\r\nContent-Length: ",
            7,
            99,
            10,
        );
        assert_eq!(
            req,
            b"POST /x HTTP/1.1\r\nContent-Length: 24\r\n\r\n{\"message\":\"7:99:xxxxx\"}"
        );
    }
}
