//! A direct WebSocket's socket, shared by its session task and a flusher (`hub::direct`).
//!
//! [`SharedTcp`] is what tungstenite reads from and the session writes to; [`SocketSink`] is
//! what the hub's flushers write published frames through while the session is parked. Both
//! hold the same `Arc<TcpStream>`; the queue's park/unpark protocol (under its lock) makes
//! sure only one of them writes at a time, and only on frame boundaries.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::hub::direct::FrameSink;
use crate::hub::Frame;

use super::frame_writer;

/// The session's side of a shared socket: `AsyncRead + AsyncWrite` over `&TcpStream`'s
/// readiness and `try_*` calls. The same allocation is the flushers' [`SocketSink`].
pub(super) struct SharedTcp(pub(super) Arc<SocketSink>);

impl AsyncRead for SharedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0 .0.poll_read_ready(cx))?;
            // `try_read` clears the readiness it consumed when it would block.
            match self.0 .0.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SharedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0 .0.poll_write_ready(cx))?;
            match self.0 .0.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                written => return Poll::Ready(written),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0 .0.poll_write_ready(cx))?;
            match self.0 .0.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                written => return Poll::Ready(written),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Writes go straight to the socket.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(&self.0 .0).shutdown(std::net::Shutdown::Write))
    }
}

/// The flushers' side of a shared socket.
pub(super) struct SocketSink(pub(super) TcpStream);

impl FrameSink for SocketSink {
    fn try_write(&self, frames: &mut dyn Iterator<Item = &Frame>) -> io::Result<usize> {
        frame_writer::try_write_frames(&self.0, frames)
    }

    fn wire_len(&self, frame: &Frame) -> usize {
        frame_writer::wire_len(frame)
    }
}
