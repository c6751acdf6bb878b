//! A request body must arrive within `--body-timeout` of its head, and nobody waits for one at
//! shutdown. [`DeadlineBody`] wraps every request body before any handler sees it; a body
//! cut short this way fails to read with [`BodyInterrupted`], which [`super::error`] turns
//! into `408 request_timeout` or `503 shutting_down` (connection closed either way).
//!
//! Why a deadline for the whole body and not an idle timeout between its pieces: a client
//! sending one byte every few seconds never idles, and held a handler, its buffer and a file
//! descriptor for as long as it liked. Why shutdown too: a graceful shutdown waits for every
//! request in flight, and a request waiting only on its client's body held it to the grace
//! period.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use tokio_util::sync::CancellationToken;

/// Why a request body stopped being read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyInterrupted {
    #[error("the request body did not arrive within the body timeout")]
    TimedOut,
    #[error("the hub is shutting down")]
    ShuttingDown,
}

pub struct DeadlineBody {
    inner: Incoming,
    /// Resolves when the body may no longer be waited for, saying why.
    expired: Pin<Box<dyn Future<Output = BodyInterrupted> + Send>>,
}

impl DeadlineBody {
    /// `body` with its deadline `timeout` from now. A body that has already ended (no body, as
    /// in most GETs) is passed through without a timer.
    pub fn wrap(body: Incoming, timeout: Duration, shutdown: &CancellationToken) -> Body {
        if body.is_end_stream() {
            return Body::new(body);
        }
        let shutdown = shutdown.clone();
        Body::new(Self {
            inner: body,
            expired: Box::pin(async move {
                tokio::select! {
                    () = tokio::time::sleep(timeout) => BodyInterrupted::TimedOut,
                    () = shutdown.cancelled_owned() => BodyInterrupted::ShuttingDown,
                }
            }),
        })
    }
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        match this.expired.as_mut().poll(cx) {
            Poll::Ready(why) => Poll::Ready(Some(Err(why.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether `error` (or what caused it) is a body cut short by its deadline or by shutdown.
pub fn interruption(error: &(dyn std::error::Error + 'static)) -> Option<BodyInterrupted> {
    let mut cause = Some(error);
    // Bounded: error chains are a handful of wrappers deep.
    for _ in 0..16 {
        let error = cause?;
        if let Some(why) = error.downcast_ref::<BodyInterrupted>() {
            return Some(*why);
        }
        cause = error.source();
    }
    None
}
