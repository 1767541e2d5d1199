//! How a connection's pending frames go out: one non-blocking write of as
//! many as fit, small frames copied together into the thread's write buffer
//! and large ones written from where they are.
//!
//! A vectored write of many small frames costs the kernel a copy per
//! segment (measured: 16 % of the server's time at 1,000 subscribers, as
//! much as the whole of the user-space fan-out); one contiguous buffer of
//! the same bytes is a single copy, so runs of small frames are gathered
//! into a buffer first, at the cost of a `memcpy` of their bytes. A frame
//! larger than [`COPY_MAX`] is not copied: it is its own segment.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll};

use ori_core::Frame;
use tokio::io::AsyncWrite;

/// Segments of one write, at most.
const MAX_IOV: usize = 64;
/// Frames up to this many bytes are copied into the write buffer.
const COPY_MAX: usize = 4 * 1024;
/// Bytes gathered into one write buffer, at most (the buffer is one per
/// thread that writes, and never grows past this). Measured against 64 KiB:
/// the same fan-out within the spread of the runs; 16 KiB keeps one
/// connection's write close to its size before gathering (64 segments,
/// about 11 KB of 170-byte frames).
const GATHER_MAX: usize = 16 * 1024;

thread_local! {
    /// The write buffer of the thread (writer shards and connection tasks
    /// run on the runtime's threads: one buffer each, reused by every write).
    static GATHER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// One segment of a write: bytes gathered into the buffer, or (a part of)
/// a frame written from where it is.
enum Part {
    Gathered(Range<usize>),
    Frame { index: usize, start: usize },
}

/// One non-blocking write of (the start of) `pending`, the first
/// `offset` bytes of its front frame already written. The frames are
/// gathered again on every call (after a partial write, or a socket that
/// was full): at most [`GATHER_MAX`] bytes copied, none kept.
pub(super) fn poll_write_pending<W: AsyncWrite + Unpin>(
    io: &mut W,
    pending: &VecDeque<Frame>,
    offset: usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    // One frame (the common case below saturation) goes out with a plain
    // write of its own bytes: for a TCP stream that is `send(2)`, which
    // skips the file-layer work of `writev(2)`.
    if pending.len() == 1 {
        return Pin::new(io).poll_write(cx, &pending[0][offset..]);
    }
    GATHER.with(|buf| {
        let mut parts = [const { Part::Gathered(0..0) }; MAX_IOV];
        match buf.try_borrow_mut() {
            Ok(mut buf) => {
                buf.clear();
                // Reserved once per thread, by its first gathering write.
                buf.reserve_exact(GATHER_MAX);
                let count = plan(pending, offset, Some(&mut buf), &mut parts);
                write_parts(io, pending, &buf, &parts[..count], cx)
            }
            // Not reached (a write does not write again from inside itself);
            // if it were, the frames go out as segments of their own.
            Err(_) => {
                let count = plan(pending, offset, None, &mut parts);
                write_parts(io, pending, &[], &parts[..count], cx)
            }
        }
    })
}

/// Lays out one write of `pending` in `parts` and returns how many it
/// used: runs of small frames copied into `buf` (at most [`GATHER_MAX`]
/// bytes in all), other frames as segments of their own (all of them
/// without a `buf`). Frames that do not fit go with a later write.
fn plan(
    pending: &VecDeque<Frame>,
    offset: usize,
    mut buf: Option<&mut Vec<u8>>,
    parts: &mut [Part],
) -> usize {
    let mut count = 0;
    for (index, frame) in pending.iter().enumerate() {
        let start = if index == 0 { offset } else { 0 };
        let bytes = &frame[start..];
        match buf.as_deref_mut().filter(|_| bytes.len() <= COPY_MAX) {
            Some(buf) => {
                if buf.len() + bytes.len() > GATHER_MAX {
                    break;
                }
                let at = buf.len();
                let full = count == parts.len();
                match parts[..count].last_mut() {
                    // Gathered runs follow each other in `buf`: one that
                    // is last can grow.
                    Some(Part::Gathered(run)) => run.end = at + bytes.len(),
                    _ if full => break,
                    _ => {
                        parts[count] = Part::Gathered(at..at + bytes.len());
                        count += 1;
                    }
                }
                buf.extend_from_slice(bytes);
            }
            None if count == parts.len() => break,
            None => {
                parts[count] = Part::Frame { index, start };
                count += 1;
            }
        }
    }
    count
}

/// Writes `parts` (slices of `buf` and of `pending`) with one call.
fn write_parts<W: AsyncWrite + Unpin>(
    io: &mut W,
    pending: &VecDeque<Frame>,
    buf: &[u8],
    parts: &[Part],
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    let slice = |part: &Part| match part {
        Part::Gathered(run) => &buf[run.clone()],
        Part::Frame { index, start } => &pending[*index][*start..],
    };
    if let [only] = parts {
        return Pin::new(io).poll_write(cx, slice(only));
    }
    let mut slices = [IoSlice::new(&[]); MAX_IOV];
    for (slot, part) in slices.iter_mut().zip(parts) {
        *slot = IoSlice::new(slice(part));
    }
    Pin::new(io).poll_write_vectored(cx, &slices[..parts.len()])
}

/// Drops the `n` written bytes from the front of `pending`; returns the
/// frames completed.
pub(super) fn advance(pending: &mut VecDeque<Frame>, offset: &mut usize, mut n: usize) -> u64 {
    let mut frames = 0;
    while n > 0 {
        let Some(front) = pending.front() else {
            break;
        };
        let left = front.len() - *offset;
        if n >= left {
            n -= left;
            *offset = 0;
            pending.pop_front();
            frames += 1;
        } else {
            *offset += n;
            n = 0;
        }
    }
    frames
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use bytes::Bytes;

    use super::*;
    use crate::ws::test_socket::TestSocket;

    /// Frames of these sizes, each frame's bytes its own (its index in the
    /// first two bytes), so that a frame swapped, doubled or dropped shows.
    fn frames(sizes: &[usize]) -> VecDeque<Frame> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let tag = (i as u16).to_be_bytes();
                let bytes: Vec<u8> = (0..n)
                    .map(|j| tag.get(j).copied().unwrap_or(j as u8))
                    .collect();
                Frame::from(Bytes::from(bytes))
            })
            .collect()
    }

    fn concat(pending: &VecDeque<Frame>) -> Vec<u8> {
        pending.iter().flat_map(|f| f.to_vec()).collect()
    }

    /// Writes all of `pending` to memory, one `poll_write_pending` and
    /// `advance` at a time, as the link does; returns the bytes and the
    /// size of each write.
    fn drain(pending: VecDeque<Frame>) -> (Vec<u8>, Vec<usize>) {
        drain_by(pending, usize::MAX)
    }

    /// [`drain`] into a socket that takes at most `max` bytes per write.
    fn drain_by(mut pending: VecDeque<Frame>, max: usize) -> (Vec<u8>, Vec<usize>) {
        let mut out = TestSocket::trickling(max);
        let mut writes = Vec::new();
        let mut offset = 0;
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..10_000 {
            if pending.is_empty() {
                return (std::mem::take(&mut out.state().data), writes);
            }
            match poll_write_pending(&mut out, &pending, offset, &mut cx) {
                Poll::Ready(Ok(n)) => {
                    writes.push(n);
                    advance(&mut pending, &mut offset, n);
                }
                other => panic!("write to memory: {other:?}"),
            }
        }
        panic!("pending never drained");
    }

    fn layout(pending: &VecDeque<Frame>, offset: usize) -> (Vec<String>, usize) {
        let mut buf = Vec::with_capacity(GATHER_MAX);
        let mut parts = [const { Part::Gathered(0..0) }; MAX_IOV];
        let count = plan(pending, offset, Some(&mut buf), &mut parts);
        let names = parts[..count]
            .iter()
            .map(|p| match p {
                Part::Gathered(r) => format!("gathered {}..{}", r.start, r.end),
                Part::Frame { index, start } => format!("frame {index} from {start}"),
            })
            .collect();
        (names, buf.len())
    }

    #[test]
    fn small_frames_are_gathered_into_one_segment() {
        let pending = frames(&[100; 50]);
        assert_eq!(layout(&pending, 0), (vec!["gathered 0..5000".into()], 5000));
        let (out, writes) = drain(pending.clone());
        assert_eq!(writes, vec![5000], "one write");
        assert_eq!(out, concat(&pending));
    }

    #[test]
    fn a_large_frame_is_written_from_where_it_is() {
        let pending = frames(&[10, 20_000, 30, 40]);
        let (parts, gathered) = layout(&pending, 0);
        assert_eq!(
            parts,
            ["gathered 0..10", "frame 1 from 0", "gathered 10..80"],
            "not copied"
        );
        assert_eq!(gathered, 80);
        let (out, writes) = drain(pending.clone());
        assert_eq!(writes, vec![20_080]);
        assert_eq!(out, concat(&pending));
    }

    #[test]
    fn the_front_frame_resumes_at_its_offset() {
        let pending = frames(&[10, 20]);
        assert_eq!(layout(&pending, 4).0, ["gathered 0..26"]);
        let big = frames(&[20_000, 20]);
        assert_eq!(
            layout(&big, 19_990).0,
            ["gathered 0..30"],
            "its rest is small"
        );
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = Vec::new();
        let n = poll_write_pending(&mut out, &pending, 4, &mut cx);
        assert!(matches!(n, Poll::Ready(Ok(26))));
        assert_eq!(out, concat(&pending)[4..]);
    }

    #[test]
    fn a_write_gathers_at_most_its_buffer_and_the_rest_follows() {
        let pending = frames(&[1000; 100]);
        let (_, gathered) = layout(&pending, 0);
        assert_eq!(gathered, 16_000, "16 whole frames fit in 16 KiB");
        let (out, writes) = drain(pending.clone());
        assert_eq!(writes, [vec![16_000; 6], vec![4_000]].concat());
        assert_eq!(out, concat(&pending));
    }

    #[test]
    fn a_write_takes_at_most_its_segments() {
        // Alternating large and small frames: every frame is a segment.
        let sizes: Vec<usize> = (0..200)
            .map(|i| if i % 2 == 0 { 5000 } else { 1 })
            .collect();
        let pending = frames(&sizes);
        let (parts, _) = layout(&pending, 0);
        assert_eq!(parts.len(), MAX_IOV);
        assert_eq!(parts.last().map(String::as_str), Some("gathered 31..32"));
        let (out, writes) = drain(pending.clone());
        // 32 large and 32 small frames a write, then the 8 left.
        assert_eq!(writes, [160_032, 160_032, 160_032, 20_004]);
        assert_eq!(out, concat(&pending));
    }

    #[test]
    fn partial_writes_resume_inside_gathered_runs_and_large_frames() {
        let pending = frames(&[10, 5000, 30, 40, 6000, 1, 2, 3]);
        for max in [3, 7, 4097, 11_000] {
            let (out, writes) = drain_by(pending.clone(), max);
            assert_eq!(out, concat(&pending), "{max} bytes a write");
            assert!(writes.iter().all(|&n| n > 0 && n <= max));
        }
    }

    #[test]
    fn without_the_buffer_every_frame_is_a_segment() {
        let pending = frames(&[10, 20, 30]);
        let mut parts = [const { Part::Gathered(0..0) }; MAX_IOV];
        let count = plan(&pending, 5, None, &mut parts);
        assert_eq!(count, 3);
        assert!(matches!(parts[0], Part::Frame { index: 0, start: 5 }));
        assert!(matches!(parts[2], Part::Frame { index: 2, start: 0 }));
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = Vec::new();
        let n = write_parts(&mut out, &pending, &[], &parts[..count], &mut cx);
        assert!(matches!(n, Poll::Ready(Ok(55))));
        assert_eq!(out, concat(&pending)[5..]);
    }

    #[test]
    fn one_frame_is_written_without_a_copy() {
        // On a thread of its own: no other write reserved its buffer.
        std::thread::spawn(|| {
            let pending = frames(&[300]);
            let (out, writes) = drain(pending.clone());
            assert_eq!((out, writes), (concat(&pending), vec![300]));
            GATHER.with(|b| assert_eq!(b.borrow().capacity(), 0, "no buffer reserved"));
        })
        .join()
        .expect("the test's thread");
    }
}
