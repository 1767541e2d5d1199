//! Tests of the frame codec.
use super::*;

fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
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
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

fn decode_all(bytes: &[u8], limits: Limits) -> Result<Vec<Frame>, ProtocolError> {
    let mut dec = Decoder::new(limits);
    let mut buf = BytesMut::from(bytes);
    let mut out = vec![];
    while let Some(f) = dec.decode(&mut buf)? {
        out.push(f);
    }
    Ok(out)
}

const M: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

#[test]
fn a_partial_frame_reserves_what_arrived_not_what_it_announces() {
    let mut dec = Decoder::new(Limits::default());
    let payload = vec![b'x'; 1 << 20];
    let frame = client_frame(true, 0x2, &payload, M);
    // The header and a few bytes of a 1 MiB frame.
    let mut buf = BytesMut::from(&frame[..20]);
    assert_eq!(dec.decode(&mut buf).unwrap(), None);
    assert!(buf.capacity() <= 2 * MIN_GROWTH, "{}", buf.capacity());
    // Fed in 100 KiB steps, the buffer stays proportional to what
    // arrived (growth at most doubles it, and the allocation may double
    // its capacity again), and the frame comes out whole.
    let mut fed = 20;
    while fed < frame.len() {
        let end = (fed + 100 * 1024).min(frame.len());
        buf.extend_from_slice(&frame[fed..end]);
        fed = end;
        if let Some(f) = dec.decode(&mut buf).unwrap() {
            assert_eq!(f, Frame::Message(Message::Binary(payload.clone().into())));
            assert_eq!(fed, frame.len());
            return;
        }
        assert!(buf.capacity() <= 4 * buf.len() + 2 * MIN_GROWTH);
    }
    panic!("the frame never completed");
}

#[test]
fn decodes_masked_text_binary_and_control_frames() {
    let mut bytes = client_frame(true, 1, b"hello world, long enough", M);
    bytes.extend(client_frame(true, 2, &[0, 1, 2], M));
    bytes.extend(client_frame(true, 9, b"p", M));
    bytes.extend(client_frame(true, 0xA, b"", M));
    bytes.extend(client_frame(true, 8, &[0x03, 0xE8, b'b', b'y', b'e'], M));
    let frames = decode_all(&bytes, Limits::default()).unwrap();
    assert_eq!(
        frames,
        vec![
            Frame::Message("hello world, long enough".into()),
            Frame::Message(vec![0u8, 1, 2].into()),
            Frame::Ping(Bytes::from_static(b"p")),
            Frame::Pong(Bytes::new()),
            Frame::Close(Some((1000, "bye".into()))),
        ]
    );
}

#[test]
fn waits_for_partial_frames_byte_by_byte() {
    let payload = vec![7u8; 300];
    let bytes = client_frame(true, 2, &payload, M);
    let mut dec = Decoder::new(Limits::default());
    let mut buf = BytesMut::new();
    for (i, b) in bytes.iter().enumerate() {
        buf.extend_from_slice(&[*b]);
        let got = dec.decode(&mut buf).unwrap();
        if i + 1 < bytes.len() {
            assert!(got.is_none());
        } else {
            assert_eq!(got, Some(Frame::Message(payload.clone().into())));
        }
    }
}

#[test]
fn joins_fragments_with_interleaved_control_frames() {
    let mut bytes = client_frame(false, 1, "héllo ".as_bytes(), M);
    bytes.extend(client_frame(true, 9, b"x", M));
    // split the two-byte 'ö' across fragments
    let w = "wörld".as_bytes();
    bytes.extend(client_frame(false, 0, &w[..2], M));
    bytes.extend(client_frame(true, 0, &w[2..], M));
    let frames = decode_all(&bytes, Limits::default()).unwrap();
    assert_eq!(
        frames,
        vec![
            Frame::Ping(Bytes::from_static(b"x")),
            Frame::Message("héllo wörld".into())
        ]
    );
}

#[test]
fn protocol_violations_map_to_rfc_close_codes() {
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (vec![0x81, 0x02, b'h', b'i'], 1002),             // unmasked
        (vec![0xC1, 0x80, 0, 0, 0, 0], 1002),             // RSV1
        (vec![0x83, 0x80, 0, 0, 0, 0], 1002),             // reserved opcode
        (vec![0x8B, 0x80, 0, 0, 0, 0], 1002),             // reserved control opcode
        (client_frame(false, 9, b"", M), 1002),           // fragmented ping
        (client_frame(true, 9, &[0; 126], M), 1002),      // big ping
        (client_frame(true, 0, b"x", M), 1002),           // lone continuation
        (client_frame(true, 1, &[0xFF, 0xFE], M), 1007),  // bad UTF-8
        (client_frame(false, 1, &[0xC0, 0x80], M), 1007), // bad UTF-8 fails fast
        (client_frame(true, 8, &[0x03], M), 1002),        // 1-byte close
        (client_frame(true, 8, &[0x03, 0xED], M), 1002),  // close 1005
        (client_frame(true, 8, &[0x03, 0xE8, 0xFF], M), 1007), // bad reason
        (client_frame(true, 8, &[0x0B, 0xB7], M), 1002),  // 2999
        (
            [
                client_frame(false, 1, b"a", M),
                client_frame(true, 1, b"b", M),
            ]
            .concat(),
            1002,
        ), // new message inside a fragmented one
    ];
    for (bytes, code) in cases {
        let err = decode_all(&bytes, Limits::default()).unwrap_err();
        assert_eq!(err.code, code, "{bytes:02x?}: {err}");
    }
}

/// Feeds `bytes` in pieces of `step` and returns the first result that
/// is not `Ok(None)`, with how many bytes had been fed by then.
fn feed_in_steps(bytes: &[u8], step: usize) -> (usize, Result<Vec<Frame>, ProtocolError>) {
    let mut dec = Decoder::new(Limits::default());
    let mut buf = BytesMut::new();
    let mut out = vec![];
    for (i, chunk) in bytes.chunks(step).enumerate() {
        buf.extend_from_slice(chunk);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(f)) => out.push(f),
                Ok(None) => break,
                Err(e) => return ((i * step + chunk.len()).min(bytes.len()), Err(e)),
            }
        }
    }
    (bytes.len(), Ok(out))
}

#[test]
fn invalid_utf8_in_one_large_text_frame_fails_before_the_frame_ends() {
    // valid text, an invalid byte, then much more that has not arrived
    let mut payload = "κόσμε".repeat(10).into_bytes();
    let bad_at = payload.len();
    payload.push(0xF5);
    payload.extend(std::iter::repeat_n(b'a', 1000));
    let bytes = client_frame(true, 1, &payload, M);
    let header = bytes.len() - payload.len();
    let (fed, got) = feed_in_steps(&bytes, 7);
    assert_eq!(got.unwrap_err().code, 1007);
    assert!(fed <= header + bad_at + 7, "failed only after {fed} bytes");
    // the same inside a continuation frame of a fragmented message
    let mut bytes = client_frame(false, 1, b"ok ", M);
    let start = bytes.len();
    bytes.extend(client_frame(true, 0, &payload, M));
    let (fed, got) = feed_in_steps(&bytes, 5);
    assert_eq!(got.unwrap_err().code, 1007);
    assert!(
        fed < start + 14 + bad_at + 5,
        "failed only after {fed} bytes"
    );
}

#[test]
fn code_points_split_by_reads_or_fragments_are_accepted() {
    let text = "a€𝄞ö€𝄞".repeat(20);
    let single = client_frame(true, 1, text.as_bytes(), M);
    // split at every position the text's bytes allow, read by read
    for step in 1..=9 {
        let (_, got) = feed_in_steps(&single, step);
        assert_eq!(got.unwrap(), vec![Frame::Message(text.as_str().into())]);
    }
    // fragments cut inside code points, each arriving in small reads
    let b = text.as_bytes();
    let bytes = [
        client_frame(false, 1, &b[..2], M),
        client_frame(false, 0, &b[2..5], M),
        client_frame(false, 0, &b[5..7], M),
        client_frame(true, 0, &b[7..], M),
    ]
    .concat();
    for step in [1, 2, 3, 5, 64] {
        let (_, got) = feed_in_steps(&bytes, step);
        assert_eq!(got.unwrap(), vec![Frame::Message(text.as_str().into())]);
    }
    // a code point cut by a fragment and then invalidated fails fast
    let bytes = [
        client_frame(false, 1, &[b'x', 0xF0, 0x9D], M),
        client_frame(true, 0, &[0x84, 0x41, b'y', b'y', b'y', b'y'], M),
    ]
    .concat();
    let (_, got) = feed_in_steps(&bytes, 1);
    assert_eq!(got.unwrap_err().code, 1007);
}

#[test]
fn out_of_sequence_and_oversized_fragments_fail_on_their_header() {
    let limits = Limits {
        max_frame_size: 100,
        max_message_size: 150,
        max_fragments: 2,
    };
    let header_only = |open: &[u8], next: Vec<u8>| {
        let mut dec = Decoder::new(limits);
        let mut buf = BytesMut::from(open);
        assert_eq!(dec.decode(&mut buf), Ok(None));
        // the header and mask of `next`, none of its payload
        buf.extend_from_slice(&next[..6]);
        dec.decode(&mut buf).unwrap_err().code
    };
    let open = client_frame(false, 1, &[b'a'; 100], M);
    assert_eq!(
        header_only(&[], client_frame(true, 0, &[b'x'; 50], M)),
        1002
    );
    assert_eq!(
        header_only(&open, client_frame(true, 1, &[b'x'; 50], M)),
        1002
    );
    assert_eq!(
        header_only(&open, client_frame(true, 0, &[b'x'; 51], M)),
        1009
    );
    let two = [open.clone(), client_frame(false, 0, b"b", M)].concat();
    assert_eq!(
        header_only(&two, client_frame(true, 0, &[b'x'; 10], M)),
        1009
    );
}

#[test]
fn size_limits_allow_exactly_the_maximum() {
    let limits = Limits {
        max_frame_size: 100,
        max_message_size: 150,
        max_fragments: 3,
    };
    assert!(decode_all(&client_frame(true, 2, &[0; 100], M), limits).is_ok());
    let err = decode_all(&client_frame(true, 2, &[0; 101], M), limits).unwrap_err();
    assert_eq!(err.code, 1009);
    let ok = [
        client_frame(false, 2, &[0; 100], M),
        client_frame(true, 0, &[0; 50], M),
    ]
    .concat();
    assert!(decode_all(&ok, limits).is_ok());
    let big = [
        client_frame(false, 2, &[0; 100], M),
        client_frame(true, 0, &[0; 51], M),
    ]
    .concat();
    assert_eq!(decode_all(&big, limits).unwrap_err().code, 1009);
    let many = [
        client_frame(false, 2, b"a", M),
        client_frame(false, 0, b"a", M),
        client_frame(false, 0, b"a", M),
        client_frame(true, 0, b"a", M),
    ]
    .concat();
    assert_eq!(decode_all(&many, limits).unwrap_err().code, 1009);
    // the length is judged from the header, before the payload arrives
    let mut dec = Decoder::new(limits);
    let mut head = BytesMut::from(&[0x82, 0xFF, 0, 0, 0, 0, 0, 0x10, 0, 0][..]);
    assert_eq!(dec.decode(&mut head).unwrap_err().code, 1009);
}

#[test]
fn encodes_all_length_forms() {
    for len in [0usize, 125, 126, 0xFFFF, 0x10000] {
        let frame = encode_frame(OpCode::Binary, &vec![1u8; len]);
        assert_eq!(frame[0], 0x82);
        assert_eq!(frame.len(), header_len(len) + len);
    }
    let close = encode_close(1001, &"é".repeat(100));
    assert!(close.len() <= 127);
    assert_eq!(&close[2..4], &1001u16.to_be_bytes());
    assert!(std::str::from_utf8(&close[4..]).is_ok());
}

#[test]
fn unmask_matches_bytewise_xor() {
    let data: Vec<u8> = (0..=255u8).collect();
    for len in 0..40 {
        let mut fast = data[..len].to_vec();
        unmask(&mut fast, M);
        let slow: Vec<u8> = data[..len]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ M[i % 4])
            .collect();
        assert_eq!(fast, slow);
    }
}
