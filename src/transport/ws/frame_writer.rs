//! `FrameWriter`: writes queued text frames straight to the socket — a 2–10 byte header built
//! here, the payload borrowed from the shared frame — in one vectored write per batch.
//!
//! Why not tungstenite's sink: it copies every payload into a per-connection buffer whose
//! capacity it keeps, so a connection that once received a burst pins that much memory for
//! life, and a stuck client pins a copy of everything fed to it. Here nothing is copied and
//! nothing is kept: a stuck client holds only references to frames the history holds anyway.
//! Headers and the iovec array live on the stack during the poll, so a write allocates
//! nothing and an idle connection's task does not carry them.
//!
//! Progress is recorded after every write call, so a write abandoned part-way (the client was
//! evicted while its socket was full) can be resumed later, keeping the stream a valid
//! sequence of frames for the close frame that follows.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;

use crate::protocol::Frame;

/// Frames per `writev` call: two iovecs each, far below Linux's limit of 1024, and plenty to
/// amortise the syscall.
const FRAMES_PER_WRITE: usize = 32;

/// A lone frame up to this size is copied behind its header and sent as one buffer.
const SMALL_FRAME: usize = 1024;

/// Server frames are unmasked; FIN + opcode 1 (text).
const FIN_TEXT: u8 = 0x81;

/// FIN + opcode 8 (close).
const FIN_CLOSE: u8 = 0x88;

#[derive(Default)]
pub(super) struct FrameWriter {
    frames: Vec<Frame>,
    /// The first frame not completely written, and how many of its bytes (header included)
    /// already are.
    next: usize,
    next_written: usize,
}

impl FrameWriter {
    /// Whether part of a batch is still unwritten.
    pub fn has_pending(&self) -> bool {
        self.next < self.frames.len()
    }

    /// Takes `batch` as the next thing to write.
    pub fn load(&mut self, batch: Vec<Frame>) {
        self.load_from(batch, 0);
    }

    /// Takes `batch` as the next thing to write, the first `skip` wire bytes of its first
    /// frame already written (by a flusher, `hub::direct`).
    pub fn load_from(&mut self, batch: Vec<Frame>, skip: usize) {
        debug_assert!(!self.has_pending());
        *self = Self {
            frames: batch,
            next: 0,
            next_written: skip,
        };
    }

    /// Writes the rest of the loaded batch. Cancel-safe: dropping the future loses nothing,
    /// and a later call resumes where the last write stopped.
    pub async fn write<S: AsyncWrite + Unpin>(&mut self, io: &mut S) -> io::Result<()> {
        while self.has_pending() {
            // The iovecs are built inside the poll, on the stack: held across the await they
            // would become part of every connection's task (1.4 KiB each, idle or not).
            let n = std::future::poll_fn(|cx| self.poll_write_chunk(cx, io)).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.advance(n);
        }
        // Give the memory back: an idle connection should hold no buffers.
        *self = Self::default();
        Ok(())
    }

    /// One `writev` of up to `FRAMES_PER_WRITE` frames, starting where the last one stopped.
    fn poll_write_chunk<S: AsyncWrite + Unpin>(
        &self,
        cx: &mut Context<'_>,
        io: &mut S,
    ) -> Poll<io::Result<usize>> {
        let chunk = &self.frames[self.next..(self.next + FRAMES_PER_WRITE).min(self.frames.len())];
        let mut headers = [([0u8; 10], 0u8); FRAMES_PER_WRITE];
        let mut slices = [IoSlice::new(&[]); 2 * FRAMES_PER_WRITE];
        let used = iovecs(chunk.iter(), self.next_written, &mut headers, &mut slices);
        Pin::new(io).poll_write_vectored(cx, &slices[..used])
    }

    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let frame_len = self.frames[self.next].len();
            let total = header(frame_len).1 as usize + frame_len;
            let rest = total - self.next_written;
            if n >= rest {
                n -= rest;
                self.next += 1;
                self.next_written = 0;
            } else {
                self.next_written += n;
                n = 0;
            }
        }
    }
}

/// Fills `slices` with `chunk`'s frames (header, payload, …) past the first `skip` bytes;
/// returns how many slices it used. Headers are built into `headers`.
fn iovecs<'a>(
    chunk: impl Iterator<Item = &'a Frame> + Clone,
    skip: usize,
    headers: &'a mut [([u8; 10], u8); FRAMES_PER_WRITE],
    slices: &mut [IoSlice<'a>; 2 * FRAMES_PER_WRITE],
) -> usize {
    for (slot, frame) in headers.iter_mut().zip(chunk.clone()) {
        *slot = header(frame.len());
    }
    let mut used = 0;
    let mut skip = skip;
    for ((header, len), frame) in headers.iter().zip(chunk) {
        for part in [&header[..*len as usize], frame.as_bytes()] {
            if skip >= part.len() {
                skip -= part.len();
            } else {
                slices[used] = IoSlice::new(&part[skip..]);
                used += 1;
                skip = 0;
            }
        }
    }
    used
}

/// Writes up to `FRAMES_PER_WRITE` of `frames` with one non-blocking `send`/`sendmsg`:
/// how a flusher (`hub::direct`) writes to a parked connection. Straight to the socket, past
/// tokio's readiness bookkeeping (the flusher never waits, and a `WouldBlock` here leaves
/// tokio's readiness stale, which only costs the session one extra try when it takes over):
/// one cold cache line fewer per delivery.
pub(super) fn try_write_frames(
    stream: &tokio::net::TcpStream,
    frames: &mut dyn Iterator<Item = &Frame>,
) -> io::Result<usize> {
    let empty = Frame::empty();
    let mut chunk = [&empty; FRAMES_PER_WRITE];
    let mut count = 0;
    for (slot, frame) in chunk.iter_mut().zip(frames) {
        *slot = frame;
        count += 1;
    }
    if count == 1 && chunk[0].len() <= SMALL_FRAME {
        // The usual case below saturation: one small frame. One contiguous buffer makes it a
        // plain `send`, which costs the kernel less than a two-part `writev`.
        let (header, len) = header(chunk[0].len());
        let len = usize::from(len);
        let mut buf = [0u8; 10 + SMALL_FRAME];
        buf[..len].copy_from_slice(&header[..len]);
        buf[len..len + chunk[0].len()].copy_from_slice(chunk[0].as_bytes());
        return socket2::SockRef::from(stream).send(&buf[..len + chunk[0].len()]);
    }
    let mut headers = [([0u8; 10], 0u8); FRAMES_PER_WRITE];
    let mut slices = [IoSlice::new(&[]); 2 * FRAMES_PER_WRITE];
    let used = iovecs(chunk[..count].iter().copied(), 0, &mut headers, &mut slices);
    socket2::SockRef::from(stream).send_vectored(&slices[..used])
}

/// The bytes `frame` takes on the wire: header and payload.
pub(super) fn wire_len(frame: &Frame) -> usize {
    header(frame.len()).1 as usize + frame.len()
}

/// A close frame with `code` and `reason`, for the session to write when tungstenite would not
/// (see `session.rs`).
pub(super) fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    // A control frame's payload is at most 125 bytes; crier's reason texts are far shorter.
    let reason = &reason.as_bytes()[..reason.len().min(123)];
    let mut frame = vec![FIN_CLOSE, 2 + reason.len() as u8];
    frame.extend_from_slice(&code.to_be_bytes());
    frame.extend_from_slice(reason);
    frame
}

/// The RFC 6455 header of an unmasked, final text frame of `len` payload bytes.
fn header(len: usize) -> ([u8; 10], u8) {
    let mut h = [0u8; 10];
    h[0] = FIN_TEXT;
    if len < 126 {
        h[1] = len as u8;
        (h, 2)
    } else if len <= u16::MAX as usize {
        h[1] = 126;
        h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        (h, 4)
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (h, 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

    fn frames(sizes: &[usize]) -> Vec<Frame> {
        sizes
            .iter()
            .map(|&n| Frame::from_string("x".repeat(n)))
            .collect()
    }

    /// The bytes written parse as the same frames with tungstenite's own parser.
    fn parse_all(mut bytes: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let mut cursor = std::io::Cursor::new(bytes);
            let (header, len) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
            assert!(header.is_final);
            assert!(header.mask.is_none());
            let start = cursor.position() as usize;
            out.push(len as usize);
            bytes = &bytes[start + len as usize..];
        }
        out
    }

    #[tokio::test]
    async fn writes_valid_frames_of_every_header_size() {
        let sizes = [0, 1, 125, 126, 65_535, 65_536, 70_000];
        let mut writer = FrameWriter::default();
        writer.load(frames(&sizes));
        let mut out = Vec::new();
        writer.write(&mut out).await.unwrap();
        assert_eq!(parse_all(&out), sizes);
        assert!(!writer.has_pending());
    }

    #[tokio::test]
    async fn batches_longer_than_one_write_are_split_on_frame_boundaries() {
        let sizes: Vec<usize> = (0..100).map(|i| i * 3).collect();
        let mut writer = FrameWriter::default();
        writer.load(frames(&sizes));
        let mut out = Vec::new();
        writer.write(&mut out).await.unwrap();
        assert_eq!(parse_all(&out), sizes);
    }

    #[test]
    fn close_frames_parse_as_close_frames() {
        use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, OpCode};
        let bytes = close_frame(1002, "protocol_error");
        let mut cursor = std::io::Cursor::new(&bytes[..]);
        let (header, len) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
        assert!(header.is_final && header.mask.is_none());
        assert_eq!(header.opcode, OpCode::Control(Control::Close));
        let payload = &bytes[cursor.position() as usize..];
        assert_eq!(payload.len() as u64, len);
        assert_eq!(payload[..2], 1002u16.to_be_bytes());
        assert_eq!(&payload[2..], b"protocol_error");
    }

    /// A sink that takes at most `chunk` bytes per call, to exercise partial writes.
    struct Trickle {
        out: Vec<u8>,
        chunk: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.chunk);
            self.out.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// The flushers' write: a lone small frame goes out as one buffer, anything else as
    /// iovecs; both are the same frames on the wire.
    #[tokio::test]
    async fn flusher_writes_are_valid_frames() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut reader = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (writer, _) = listener.accept().await.unwrap();
        let batches: [&[usize]; 4] = [&[3], &[SMALL_FRAME], &[SMALL_FRAME + 1], &[0, 130, 7]];
        let mut expected = Vec::new();
        let mut total = 0;
        for sizes in batches {
            let frames = frames(sizes);
            writer.writable().await.unwrap();
            let written = try_write_frames(&writer, &mut frames.iter()).unwrap();
            assert_eq!(written, frames.iter().map(wire_len).sum::<usize>());
            expected.extend_from_slice(sizes);
            total += written;
        }
        let mut out = vec![0u8; total];
        reader.read_exact(&mut out).await.unwrap();
        assert_eq!(parse_all(&out), expected);
    }

    #[tokio::test]
    async fn partial_writes_resume_exactly() {
        let sizes = [3, 200, 7, 300, 0, 126];
        let mut writer = FrameWriter::default();
        writer.load(frames(&sizes));
        let mut sink = Trickle {
            out: Vec::new(),
            chunk: 5,
        };
        writer.write(&mut sink).await.unwrap();
        assert_eq!(parse_all(&sink.out), sizes);
    }
}
