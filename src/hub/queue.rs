//! `ClientQueue`: the bounded, single-consumer queue of encoded frames each client owns.
//!
//! Publishers push with `try_push`, which never waits: a full queue is reported to the caller,
//! who evicts the client as `Slow`. The consumer (a WebSocket writer or a long-poll session)
//! takes everything queued at once, so one socket write can carry many frames. Closing the
//! queue records why the client left; the consumer learns it from [`Pop::Closed`].
//!
//! Why not a tokio mpsc: an idle connection should cost almost nothing, and an empty mpsc
//! allocates its first block (~1.3 KiB) up front. A `VecDeque` allocates on first push and is
//! released again when a burst has drained.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::protocol::{DisconnectReason, Frame};

/// Frames beyond this many slots of spare capacity are given back once the queue is empty,
/// so a burst does not pin memory on an idle client.
const RETAINED_CAPACITY: usize = 16;

/// What [`ClientQueue::try_pop_batch`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pop {
    /// Frames were moved out.
    Frames,
    /// Nothing is queued: wait on [`ClientQueue::ready`].
    Empty,
    /// The client was disconnected, for this reason; frames still queued then were dropped (a
    /// closed client resumes from its last offset).
    Closed(DisconnectReason),
}

#[derive(Debug, PartialEq, Eq)]
pub enum PushError {
    /// The queue holds `capacity` frames: the client is not keeping up.
    Full,
    /// The client is disconnecting; the frame is not needed.
    Closed,
}

/// How many clients are lagging (queue at least half full), shared by all queues of a hub.
/// One lagging client is a slow client; many at once mean the hub itself cannot keep up.
pub type LagCounter = Arc<AtomicUsize>;

#[derive(Debug)]
pub struct ClientQueue {
    state: Mutex<QueueState>,
    notify: Notify,
    capacity: usize,
    max_bytes: usize,
    lagging: LagCounter,
}

#[derive(Debug, Default)]
struct QueueState {
    frames: VecDeque<Frame>,
    /// Payload bytes queued (mostly shared with other queues and history, but a stuck
    /// client's queue is what keeps old frames alive, so it is bounded in bytes too).
    bytes: usize,
    /// Set once, by `close`: why the client left.
    closed: Option<DisconnectReason>,
}

impl ClientQueue {
    /// A queue of at most `capacity` frames and `max_bytes` bytes (but always room for one
    /// frame, however large).
    pub fn new(capacity: usize, max_bytes: usize, lagging: LagCounter) -> Self {
        Self {
            state: Mutex::new(QueueState::default()),
            notify: Notify::new(),
            capacity: capacity.max(1),
            max_bytes,
            lagging,
        }
    }

    /// The queue length from which the client counts as lagging.
    fn lag_mark(&self) -> usize {
        self.capacity.div_ceil(2)
    }

    pub fn try_push(&self, frame: Frame) -> Result<(), PushError> {
        let was_empty = {
            let mut state = lock(&self.state);
            if state.closed.is_some() {
                return Err(PushError::Closed);
            }
            let over_bytes = state.bytes + frame.len() > self.max_bytes && !state.frames.is_empty();
            if state.frames.len() >= self.capacity || over_bytes {
                return Err(PushError::Full);
            }
            state.bytes += frame.len();
            state.frames.push_back(frame);
            if state.frames.len() == self.lag_mark() {
                self.lagging.fetch_add(1, Ordering::Relaxed);
            }
            state.frames.len() == 1
        };
        // The consumer only waits on an empty queue, so only the first frame needs a wake-up;
        // `notify_one` keeps a permit if the consumer is between its check and its wait.
        if was_empty {
            self.notify.notify_one();
        }
        Ok(())
    }

    /// Waits until a frame is queued or the queue is closed. Cancel-safe: it takes nothing.
    pub async fn ready(&self) {
        loop {
            {
                let state = lock(&self.state);
                if state.closed.is_some() || !state.frames.is_empty() {
                    return;
                }
            }
            self.notify.notified().await;
        }
    }

    /// Waits until the queue is closed (the client was disconnected) and says why. Only for
    /// a consumer that is not waiting in `ready` at the same time.
    pub async fn closed(&self) -> DisconnectReason {
        loop {
            if let Some(reason) = self.reason() {
                return reason;
            }
            self.notify.notified().await;
        }
    }

    /// Moves up to `max` queued frames into `out`.
    pub fn try_pop_batch(&self, out: &mut Vec<Frame>, max: usize) -> Pop {
        let mut state = lock(&self.state);
        if let Some(reason) = state.closed {
            return Pop::Closed(reason);
        }
        if state.frames.is_empty() {
            return Pop::Empty;
        }
        let before = state.frames.len();
        let n = before.min(max);
        let taken = state.frames.drain(..n);
        let start = out.len();
        out.extend(taken);
        state.bytes -= out[start..].iter().map(Frame::len).sum::<usize>();
        if before >= self.lag_mark() && before - n < self.lag_mark() {
            self.lagging.fetch_sub(1, Ordering::Relaxed);
        }
        if state.frames.is_empty() && state.frames.capacity() > RETAINED_CAPACITY {
            state.frames = VecDeque::new();
        }
        Pop::Frames
    }

    /// Closes the queue for `reason`; the first reason is kept.
    pub fn close(&self, reason: DisconnectReason) {
        let mut state = lock(&self.state);
        if state.closed.is_some() {
            return;
        }
        if state.frames.len() >= self.lag_mark() {
            self.lagging.fetch_sub(1, Ordering::Relaxed);
        }
        state.closed = Some(reason);
        state.frames = VecDeque::new();
        state.bytes = 0;
        drop(state);
        self.notify.notify_one();
    }

    /// Why the client was disconnected; `None` while it is connected.
    pub fn reason(&self) -> Option<DisconnectReason> {
        lock(&self.state).closed
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.state).frames.len()
    }
}

/// Queue state stays consistent even if a holder panicked (every critical section is a
/// single push or drain), so a poisoned lock is simply taken over.
fn lock(m: &Mutex<QueueState>) -> std::sync::MutexGuard<'_, QueueState> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How the transports consume: wait for `ready`, then take what is there. `false` once
    /// the queue is closed.
    async fn pop_batch(q: &ClientQueue, out: &mut Vec<Frame>, max: usize) -> bool {
        q.ready().await;
        !matches!(q.try_pop_batch(out, max), Pop::Closed(_))
    }

    fn frame(s: &str) -> Frame {
        Frame::from_string(s.to_owned())
    }

    #[test]
    fn full_queue_refuses_without_waiting() {
        let q = ClientQueue::new(2, usize::MAX, LagCounter::default());
        assert_eq!(q.try_push(frame("a")), Ok(()));
        assert_eq!(q.try_push(frame("b")), Ok(()));
        assert_eq!(q.try_push(frame("c")), Err(PushError::Full));
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn closed_queue_refuses_and_reports_closed() {
        let q = ClientQueue::new(2, usize::MAX, LagCounter::default());
        q.try_push(frame("a")).unwrap();
        q.close(DisconnectReason::Slow);
        q.close(DisconnectReason::Shutdown);
        assert_eq!(q.try_push(frame("b")), Err(PushError::Closed));
        let mut out = Vec::new();
        assert_eq!(
            q.try_pop_batch(&mut out, 10),
            Pop::Closed(DisconnectReason::Slow),
            "the first reason is kept"
        );
        assert!(out.is_empty());
    }

    #[tokio::test]
    async fn pop_batch_takes_everything_in_order_then_waits() {
        let q = std::sync::Arc::new(ClientQueue::new(8, usize::MAX, LagCounter::default()));
        for s in ["1", "2", "3"] {
            q.try_push(frame(s)).unwrap();
        }
        let mut out = Vec::new();
        assert!(pop_batch(&q, &mut out, 10).await);
        let got: Vec<&str> = out
            .iter()
            .map(|f| std::str::from_utf8(f.as_bytes()).unwrap())
            .collect();
        assert_eq!(got, ["1", "2", "3"]);

        let q2 = q.clone();
        let waiter = tokio::spawn(async move {
            let mut out = Vec::new();
            let open = pop_batch(&q2, &mut out, 10).await;
            (open, out.len())
        });
        tokio::task::yield_now().await;
        q.try_push(frame("4")).unwrap();
        assert_eq!(waiter.await.unwrap(), (true, 1));
    }

    #[tokio::test]
    async fn close_wakes_a_waiting_consumer() {
        let q = std::sync::Arc::new(ClientQueue::new(8, usize::MAX, LagCounter::default()));
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { pop_batch(&q2, &mut Vec::new(), 10).await });
        tokio::task::yield_now().await;
        q.close(DisconnectReason::Shutdown);
        assert!(!waiter.await.unwrap());
    }

    #[test]
    fn lagging_is_counted_across_the_half_full_mark() {
        let lagging = LagCounter::default();
        let q = ClientQueue::new(4, usize::MAX, lagging.clone());
        q.try_push(frame("1")).unwrap();
        assert_eq!(lagging.load(Ordering::Relaxed), 0);
        q.try_push(frame("2")).unwrap();
        q.try_push(frame("3")).unwrap();
        assert_eq!(lagging.load(Ordering::Relaxed), 1);
        q.try_pop_batch(&mut Vec::new(), 2);
        assert_eq!(lagging.load(Ordering::Relaxed), 0);
        q.try_push(frame("4")).unwrap();
        assert_eq!(lagging.load(Ordering::Relaxed), 1);
        q.close(DisconnectReason::Slow);
        assert_eq!(lagging.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn queue_is_bounded_in_bytes_but_always_takes_one_frame() {
        let q = ClientQueue::new(100, 10, LagCounter::default());
        assert_eq!(
            q.try_push(frame(&"x".repeat(25))),
            Ok(()),
            "one frame always fits"
        );
        assert_eq!(q.try_push(frame("y")), Err(PushError::Full));
        q.try_pop_batch(&mut Vec::new(), 10);
        assert_eq!(q.try_push(frame("123456")), Ok(()));
        assert_eq!(q.try_push(frame("1234")), Ok(()));
        assert_eq!(q.try_push(frame("1")), Err(PushError::Full));
    }

    #[test]
    fn batch_respects_max() {
        let q = ClientQueue::new(8, usize::MAX, LagCounter::default());
        for s in ["1", "2", "3"] {
            q.try_push(frame(s)).unwrap();
        }
        let mut out = Vec::new();
        assert_eq!(q.try_pop_batch(&mut out, 2), Pop::Frames);
        assert_eq!(out.len(), 2);
        assert_eq!(q.len(), 1);
        assert_eq!(q.try_pop_batch(&mut out, 2), Pop::Frames);
        assert_eq!(q.try_pop_batch(&mut out, 2), Pop::Empty);
        assert_eq!(out.len(), 3);
    }
}
