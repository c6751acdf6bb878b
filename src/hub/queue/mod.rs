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
    /// The consumer is parked (see [`crate::hub::direct`]): it waits with nothing of its own
    /// to write, and a flusher may write the queue's frames to its socket in its place. Only
    /// fan-out pushes ([`ClientQueue::push_fanout`]) leave it parked.
    parked: bool,
    /// Parked and already handed to a flusher: later pushes need not hand it again.
    dirty: bool,
    /// A frame a flusher wrote only part of (the socket took no more), and how many of its
    /// wire bytes are out: the consumer must finish it before it writes anything else.
    cut: Option<(Frame, usize)>,
}

/// A connection's socket, lent to the flushers (`hub::direct`) by its transport (which knows
/// the framing). Here, beside the queue that writes through it.
pub trait FrameSink: Send + Sync {
    /// Writes as many of `frames` as the socket takes now, without waiting. Returns the bytes
    /// written (as counted by [`Self::wire_len`]), or the socket's error (`WouldBlock` when
    /// it takes nothing).
    fn try_write(&self, frames: &mut dyn Iterator<Item = &Frame>) -> std::io::Result<usize>;

    /// The bytes `frame` takes on the wire, framing included.
    fn wire_len(&self, frame: &Frame) -> usize;
}

/// What one flusher turn did for one queue.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Flushed {
    pub writes: u64,
    /// Frames written whole.
    pub frames: u64,
    /// The consumer was unparked and woken to write the rest.
    pub handed_back: bool,
}

/// What a fan-out push asks of the caller.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued; the consumer was woken if it needed to be.
    Queued,
    /// Queued for a parked consumer: hand the client to its flusher.
    ToFlush,
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

    /// Queues `frame`, waking the consumer if it waits (a parked one is unparked: it writes
    /// this frame itself).
    pub fn try_push(&self, frame: Frame) -> Result<(), PushError> {
        let bytes = frame.len();
        self.push(Entry::Frame(frame), bytes, false).map(drop)
    }

    /// Queues a published frame. A parked consumer stays parked: the caller hands the client
    /// to its flusher when told [`Pushed::ToFlush`].
    pub(crate) fn push_fanout(&self, frame: Frame) -> Result<Pushed, PushError> {
        let bytes = frame.len();
        self.push(Entry::Frame(frame), bytes, true)
    }

    pub(crate) fn try_push_replay(&self, replay: Replay) -> Result<(), PushError> {
        self.push(Entry::Replay(Box::new(replay)), 0, false)
            .map(drop)
    }

    fn push(&self, entry: Entry, bytes: usize, fanout: bool) -> Result<Pushed, PushError> {
        let wake = {
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
            if state.parked && fanout {
                if state.dirty {
                    return Ok(Pushed::Queued);
                }
                state.dirty = true;
                return Ok(Pushed::ToFlush);
            }
            // Anything else for a parked consumer (a reply, a replay) is its own to write.
            let unparked = std::mem::take(&mut state.parked);
            len == 0 || unparked
        };
        // The consumer only waits on an empty queue, so only the first frame needs a wake-up;
        // `notify_one` keeps a permit if the consumer is between its check and its wait.
        if wake {
            self.notify.notify_one();
        }
        Ok(Pushed::Queued)
    }

    /// Parks the consumer if nothing is queued: from now on a flusher may write published
    /// frames to its socket. The consumer must have nothing of its own half-written.
    pub(crate) fn park(&self) -> bool {
        let mut state = lock(&self.state);
        if state.closed.is_some() || !state.entries.is_empty() || state.cut.is_some() {
            return false;
        }
        state.parked = true;
        true
    }

    /// Takes the socket back from the flushers (the consumer woke up); returns the frame a
    /// flusher wrote only part of, with the bytes already out, for the consumer to finish
    /// before anything else.
    pub(crate) fn unpark(&self) -> Option<(Frame, usize)> {
        let mut state = lock(&self.state);
        state.parked = false;
        state.cut.take()
    }

    /// Unparks and wakes the consumer: what is queued is its own to write.
    pub(crate) fn unpark_and_wake(&self) {
        lock(&self.state).parked = false;
        self.notify.notify_one();
    }

    /// A flusher's turn: writes what is queued for a parked consumer to its socket through
    /// `sink`, as far as the socket takes it without waiting. What the socket does not take
    /// (or a catch-up, which only the consumer reads) is handed back: the consumer is
    /// unparked and woken.
    pub(crate) fn flush(&self, sink: &dyn FrameSink) -> Flushed {
        let mut done = Flushed::default();
        let mut state = lock(&self.state);
        state.dirty = false;
        if !state.parked || state.closed.is_some() {
            return done;
        }
        let hand_back = loop {
            let mut frames = state.entries.iter().map_while(|entry| match entry {
                Entry::Frame(frame) => Some(frame),
                Entry::Replay(_) => None,
            });
            let mut rest = match sink.try_write(&mut frames) {
                Ok(0) => break true,
                Ok(n) => n,
                // Would block, or failed: the consumer meets it on its own write.
                Err(_) => break true,
            };
            done.writes += 1;
            while rest > 0 {
                let Some(Entry::Frame(frame)) = state.entries.pop_front() else {
                    debug_assert!(false, "a sink wrote more than the frames it was given");
                    break;
                };
                state.bytes -= frame.len();
                let wire = sink.wire_len(&frame);
                if rest < wire {
                    // Only the consumer may finish it, before anything else it writes.
                    state.cut = Some((frame, rest));
                    break;
                }
                rest -= wire;
                done.frames += 1;
            }
            match state.entries.front() {
                _ if state.cut.is_some() => break true,
                None => break false,
                Some(Entry::Replay(_)) => break true,
                Some(Entry::Frame(_)) => {}
            }
        };
        if done.writes > 0 {
            state.last_progress = Some(Instant::now());
            state.stuck = false;
            self.recount(&mut state);
            if state.entries.is_empty() {
                state.entries = VecDeque::new();
            }
        }
        if hand_back {
            state.parked = false;
            drop(state);
            self.notify.notify_one();
            done.handed_back = true;
        }
        done
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
