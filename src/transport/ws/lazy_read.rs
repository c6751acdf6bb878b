//! `LazyRead`: the socket under tungstenite, holding a read buffer only while read bytes wait.
//!
//! Why: tungstenite's read buffer is allocated when the connection starts and kept for its
//! whole life (512 bytes here, an idle WebSocket's second-largest allocation after its task;
//! docs/BENCHMARKS.md, "Idle WebSocket: where the bytes go"). Given a read buffer size of 0 it
//! allocates only what the next frame needs (14 bytes for a header while idle), but then asks
//! the socket for 14 bytes at a time. So the socket sits under this adapter, which reads
//! whatever has arrived (up to `SCRATCH_BYTES`) into a buffer on the stack, hands tungstenite
//! what it asks for and keeps the rest on the heap only until tungstenite has taken it: an
//! idle connection holds no read buffer, and one syscall still takes a burst of frames.
//!
//! Writes pass straight through (vectored ones included: `FrameWriter` relies on them).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Most bytes taken off the socket by one read. Client frames are mostly small: this takes a
/// burst of them, or a large frame in few syscalls, and lives on the stack only for the read.
const SCRATCH_BYTES: usize = 4096;

pub(super) struct LazyRead<S> {
    io: S,
    /// Bytes read but not yet handed over; `None` whenever the reader has taken everything.
    /// One pointer inline: the connection's boxed stream sits just under a jemalloc size
    /// class, which a wider field would push into the next (320 → 384 bytes).
    pending: Option<Box<Pending>>,
}

struct Pending {
    bytes: Box<[u8]>,
    /// How many of `bytes` were handed over already.
    taken: usize,
}

impl<S> LazyRead<S> {
    /// `early`: bytes already taken off the socket, handed over first.
    pub fn new(io: S, early: Vec<u8>) -> Self {
        let pending = (!early.is_empty()).then(|| {
            Box::new(Pending {
                bytes: early.into_boxed_slice(),
                taken: 0,
            })
        });
        Self { io, pending }
    }
}

impl Pending {
    /// Hands over as much as fits in `buf`; true once everything is.
    fn take(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        let rest = &self.bytes[self.taken..];
        let n = rest.len().min(buf.remaining());
        buf.put_slice(&rest[..n]);
        self.taken += n;
        self.taken == self.bytes.len()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LazyRead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(pending) = &mut this.pending {
            if pending.take(buf) {
                this.pending = None;
            }
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() >= SCRATCH_BYTES {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let mut scratch = [0u8; SCRATCH_BYTES];
        let mut read = ReadBuf::new(&mut scratch);
        ready!(Pin::new(&mut this.io).poll_read(cx, &mut read))?;
        let read = read.filled();
        let n = read.len().min(buf.remaining());
        buf.put_slice(&read[..n]);
        if n < read.len() {
            this.pending = Some(Box::new(Pending {
                bytes: read[n..].into(),
                taken: 0,
            }));
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LazyRead<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Small reads get every byte in order, whatever the socket delivered at once; nothing
    /// stays pending once everything was read.
    #[tokio::test]
    async fn small_reads_see_every_byte_and_leave_nothing_held() {
        let (mut peer, io) = tokio::io::duplex(64 * 1024);
        let sent: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        peer.write_all(&sent).await.unwrap();
        drop(peer);
        let mut reader = LazyRead::new(io, b"early".to_vec());
        let mut got = Vec::new();
        let mut small = [0u8; 14];
        loop {
            let n = reader.read(&mut small).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&small[..n]);
        }
        assert_eq!(&got[..5], b"early");
        assert_eq!(&got[5..], &sent[..]);
        assert!(reader.pending.is_none());
    }

    /// A large read goes to the socket directly once nothing is pending.
    #[tokio::test]
    async fn large_reads_bypass_the_scratch() {
        let (mut peer, io) = tokio::io::duplex(64 * 1024);
        peer.write_all(&[7u8; 9000]).await.unwrap();
        let mut reader = LazyRead::new(io, Vec::new());
        let mut big = vec![0u8; 16 * 1024];
        let n = reader.read(&mut big).await.unwrap();
        assert_eq!(n, 9000);
        assert!(reader.pending.is_none());
    }
}
