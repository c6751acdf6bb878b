//! `FrameWriter`: writes queued text frames straight to the socket — a 2–10 byte header built
//! here, the payload borrowed from the shared frame — in one vectored write per batch.
//!
//! Why not tungstenite's sink: it copies every payload into a per-connection buffer whose
//! capacity it keeps, so a connection that once received a burst pins that much memory for
//! life, and a stuck client pins a copy of everything fed to it. Here nothing is copied and
//! nothing is kept: a stuck client holds only references to frames the history holds anyway.
//!
//! Progress is recorded after every write call, so a write abandoned part-way (the client was
//! evicted while its socket was full) can be resumed later, keeping the stream a valid
//! sequence of frames for the close frame that follows.

use std::io::{self, IoSlice};

use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::hub::Frame;

/// Linux accepts at most 1024 buffers per `writev`.
const MAX_IOVECS: usize = 1024;

/// Server frames are unmasked; FIN + opcode 1 (text).
const FIN_TEXT: u8 = 0x81;

#[derive(Default)]
pub(super) struct FrameWriter {
    frames: Vec<Frame>,
    /// Each frame's header: the bytes, padded to the largest size, and how many are used.
    headers: Vec<([u8; 10], u8)>,
    /// Bytes of the current batch already written, and the batch's total.
    written: usize,
    total: usize,
}

impl FrameWriter {
    /// Whether part of a batch is still unwritten.
    pub fn has_pending(&self) -> bool {
        self.written < self.total
    }

    /// Takes `batch` as the next thing to write.
    pub fn load(&mut self, batch: Vec<Frame>) {
        debug_assert!(!self.has_pending());
        self.headers = batch.iter().map(|f| header(f.len())).collect();
        self.total = batch.iter().map(Frame::len).sum::<usize>()
            + self
                .headers
                .iter()
                .map(|(_, len)| *len as usize)
                .sum::<usize>();
        self.written = 0;
        self.frames = batch;
    }

    /// Writes the rest of the loaded batch. Cancel-safe: dropping the future loses nothing,
    /// and a later call resumes where the last write stopped.
    pub async fn write<S: AsyncWrite + Unpin>(&mut self, io: &mut S) -> io::Result<()> {
        while self.has_pending() {
            let n = {
                let slices = self.unwritten_slices();
                io.write_vectored(&slices).await?
            };
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.written += n;
        }
        // Give the memory back: an idle connection should hold no buffers.
        *self = Self::default();
        Ok(())
    }

    fn unwritten_slices(&self) -> Vec<IoSlice<'_>> {
        let mut slices = Vec::with_capacity((self.frames.len() * 2).min(MAX_IOVECS));
        let mut skip = self.written;
        let parts = self
            .frames
            .iter()
            .zip(&self.headers)
            .flat_map(|(frame, (header, len))| [&header[..*len as usize], frame.as_bytes()]);
        for part in parts {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            slices.push(IoSlice::new(&part[skip..]));
            skip = 0;
            if slices.len() == MAX_IOVECS {
                break;
            }
        }
        slices
    }
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

    /// A sink that takes at most `chunk` bytes per call, to exercise partial writes.
    struct Trickle {
        out: Vec<u8>,
        chunk: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            let n = buf.len().min(self.chunk);
            self.out.extend_from_slice(&buf[..n]);
            std::task::Poll::Ready(Ok(n))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn partial_writes_resume_exactly() {
        let sizes = [3, 200, 7, 300];
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
