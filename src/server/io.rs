//! `EdgeIo`: the socket of a connection hyper serves. It replays the bytes the sniffer already
//! read, then reads the socket; and it gives up on a write the client does not take.
//!
//! Why a write timeout here: hyper has none, so a response the client never reads (a large
//! history page, a static file) held the connection, its buffers and its file descriptor for
//! as long as the client liked. A write that makes no progress for `--write-timeout` fails
//! with `TimedOut`, which ends the connection — the rule WebSocket sessions already follow.
//! It times a *stall*, not the whole response: a slow reader that keeps taking bytes is
//! served.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

pub(super) struct EdgeIo {
    stream: TcpStream,
    /// Bytes the sniffer took off the socket; hyper reads them first. Freed once read.
    replay: Vec<u8>,
    replayed: usize,
    write_timeout: Duration,
    /// Allocated at the first write that has to wait, then reused.
    stall: Option<Pin<Box<Sleep>>>,
    /// Whether `stall` is timing the write now pending.
    stalled: bool,
}

impl EdgeIo {
    pub(super) fn new(stream: TcpStream, replay: Vec<u8>, write_timeout: Duration) -> Self {
        Self {
            stream,
            replay,
            replayed: 0,
            write_timeout,
            stall: None,
            stalled: false,
        }
    }

    /// Passes a write's outcome through; a write still pending after `write_timeout` without
    /// progress becomes a `TimedOut` error.
    fn timed<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = false;
            return poll;
        }
        let deadline = Instant::now() + self.write_timeout;
        let stall = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !self.stalled {
            stall.as_mut().reset(deadline);
            self.stalled = true;
        }
        match stall.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took nothing of the response within the write timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for EdgeIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.replayed < this.replay.len() {
            let rest = &this.replay[this.replayed..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.replayed += n;
            if this.replayed == this.replay.len() {
                this.replay = Vec::new();
                this.replayed = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for EdgeIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.timed(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.timed(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.stream).poll_flush(cx);
        self.timed(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.stream).poll_shutdown(cx);
        self.timed(cx, poll)
    }
}
