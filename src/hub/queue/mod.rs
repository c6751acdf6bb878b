//! `ClientQueue`: the bounded, single-consumer queue of encoded frames each client owns.
//!
//! Publishers push with `try_push`, which never waits: a full queue is reported to the caller,
//! who evicts the client as `Slow`. The consumer (a WebSocket writer or a long-poll session)
//! takes everything queued at once, so one socket write can carry many frames. Closing the
//! queue records why the client left; the consumer learns it from [`Pop::Closed`].
//!
//! Why not a tokio mpsc: an idle connection should cost almost nothing, and an empty mpsc
//! allocates its first block (~1.3 KiB) up front. A `VecDeque` allocates on first push and is
//! released again whenever the consumer has taken everything.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::protocol::{ChannelName, DisconnectReason, Epoch, Frame};

/// What [`crate::hub::Hub::take`] found.
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

/// A catch-up still to be read from a channel's history: offsets `after + 1 ..= through`.
/// It holds one slot of the queue however long it is, and no frames: history holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    pub channel: ChannelName,
    /// The channel generation the offsets belong to; a replay outliving it is dropped.
    pub epoch: Epoch,
    pub after: u64,
    pub through: u64,
}

#[derive(Debug)]
enum Entry {
    Frame(Frame),
    Replay(Box<Replay>),
}

/// What [`ClientQueue::try_take`] found: frames, or a replay to expand before going on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    Frames,
    Empty,
    Closed(DisconnectReason),
    /// Frames before it (if any) were moved; the replay was taken out and must be expanded,
    /// and what is left of it put back with [`ClientQueue::put_back`].
    Replay(Box<Replay>),
}

#[derive(Debug, PartialEq, Eq)]
pub enum PushError {
    /// The queue holds `capacity` frames: the client is not keeping up.
    Full,
    /// The client is disconnecting; the frame is not needed.
    Closed,
}

/// How many clients are lagging — queue at least half full while it is being drained —
/// shared by all queues of a hub. One lagging client is a slow client; many at once mean the
/// hub itself cannot keep up. A queue nobody drains is stuck, not lagging: it does not count
/// (see [`ClientQueue::stalled_for`]), so clients cannot lend the hub their back-pressure.
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
    entries: VecDeque<Entry>,
    /// Payload bytes queued (mostly shared with other queues and history, but a stuck
    /// client's queue is what keeps old frames alive, so it is bounded in bytes too).
    bytes: usize,
    /// Set once, by `close`: why the client left.
    closed: Option<DisconnectReason>,
    /// When the consumer last took frames (or, for a queue that was empty, when the first
    /// of the frames now queued arrived): the queue's progress clock.
    last_progress: Option<Instant>,
    /// Marked by the hub when the queue made no progress for a while: not drained.
    stuck: bool,
    /// Whether this queue is counted in the hub's `LagCounter` now.
    counted: bool,
}

impl ClientQueue {
    /// A queue of at most `capacity` entries and `max_bytes` bytes (but always room for one
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

    /// Keeps the hub's count of lagging clients true after a change to `state`: a queue
    /// counts while it is at least half full and not stuck.
    fn recount(&self, state: &mut QueueState) {
        let lagging = state.closed.is_none()
            && !state.stuck
            && state.entries.len() >= self.capacity.div_ceil(2);
        if lagging != state.counted {
            state.counted = lagging;
            if lagging {
                self.lagging.fetch_add(1, Ordering::Relaxed);
            } else {
                self.lagging.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// How long a backlog (the queue at least half full) has waited with no progress
    /// (nothing taken): `None` for a queue with less than that, or closed. A few frames
    /// waiting between two polls are no backlog.
    pub fn stalled_for(&self, now: Instant) -> Option<std::time::Duration> {
        let state = lock(&self.state);
        if state.closed.is_some() || state.entries.len() < self.capacity.div_ceil(2) {
            return None;
        }
        state
            .last_progress
            .map(|since| now.saturating_duration_since(since))
    }

    /// Marks the queue stuck (a backlog nobody drains): it stops counting as lagging until
    /// its consumer takes frames again.
    pub fn mark_stuck(&self) {
        let mut state = lock(&self.state);
        state.stuck = true;
        self.recount(&mut state);
    }

    pub fn try_push(&self, frame: Frame) -> Result<(), PushError> {
        let bytes = frame.len();
        self.push(Entry::Frame(frame), bytes)
    }

    pub(crate) fn try_push_replay(&self, replay: Replay) -> Result<(), PushError> {
        self.push(Entry::Replay(Box::new(replay)), 0)
    }

    fn push(&self, entry: Entry, bytes: usize) -> Result<(), PushError> {
        let was_empty = {
            let mut state = lock(&self.state);
            if state.closed.is_some() {
                return Err(PushError::Closed);
            }
            let len = state.entries.len();
            let over_bytes = state.bytes + bytes > self.max_bytes && len > 0;
            if len >= self.capacity || over_bytes {
                return Err(PushError::Full);
            }
            state.bytes += bytes;
            state.entries.push_back(entry);
            if len == 0 {
                state.last_progress = Some(Instant::now());
            }
            self.recount(&mut state);
            len == 0
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
                if state.closed.is_some() || !state.entries.is_empty() {
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

    /// Moves up to `max` queued frames into `out`, stopping at a replay (taken out for the
    /// caller to expand). Consumers call [`crate::hub::Hub::take`], which does that.
    pub(crate) fn try_take(&self, out: &mut Vec<Frame>, max: usize) -> Taken {
        let mut state = lock(&self.state);
        if let Some(reason) = state.closed {
            return Taken::Closed(reason);
        }
        if state.entries.is_empty() {
            return Taken::Empty;
        }
        let mut moved = 0;
        let mut bytes = 0;
        let mut replay = None;
        while moved < max {
            match state.entries.pop_front() {
                Some(Entry::Frame(frame)) => {
                    bytes += frame.len();
                    out.push(frame);
                    moved += 1;
                }
                Some(Entry::Replay(r)) => {
                    replay = Some(r);
                    break;
                }
                None => break,
            }
        }
        state.bytes -= bytes;
        state.last_progress = Some(Instant::now());
        state.stuck = false;
        self.recount(&mut state);
        // Empty: give the memory back. Even the smallest allocation kept (4 slots, 128 bytes,
        // what one `subscribed` frame leaves) was an idle connection's fourth-largest; a
        // busy queue pays one allocation per batch taken, not per frame.
        if state.entries.is_empty() {
            state.entries = VecDeque::new();
        }
        match replay {
            Some(replay) => Taken::Replay(replay),
            None => Taken::Frames,
        }
    }

    /// Puts what is left of a replay back at the front, where [`Self::try_take`] found it.
    /// Only the consumer calls this, so nothing can have been taken in between.
    pub(crate) fn put_back(&self, replay: Box<Replay>) {
        let mut state = lock(&self.state);
        if state.closed.is_some() {
            return;
        }
        state.entries.push_front(Entry::Replay(replay));
        self.recount(&mut state);
    }

    /// Closes the queue for `reason`; the first reason is kept.
    pub fn close(&self, reason: DisconnectReason) {
        let mut state = lock(&self.state);
        if state.closed.is_some() {
            return;
        }
        state.closed = Some(reason);
        self.recount(&mut state);
        state.entries = VecDeque::new();
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
        lock(&self.state).entries.len()
    }
}

/// Queue state stays consistent even if a holder panicked (every critical section is a
/// single push or drain), so a poisoned lock is simply taken over.
fn lock(m: &Mutex<QueueState>) -> std::sync::MutexGuard<'_, QueueState> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests;
