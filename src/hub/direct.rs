//! Direct writes: published frames written to idle connections' sockets by a few flusher
//! tasks, instead of waking one task per connection per message.
//!
//! Why: at moderate load every message finds most of its subscribers idle, and each delivery
//! used to be a wake-up, a poll of the connection's task (queue, socket, timer) and one write.
//! The write is the floor; the rest was about a third of the hub's CPU per delivery. Now a
//! connection whose task has nothing to do *parks* its queue ([`ClientQueue::park`]); a
//! publish that finds a parked queue hands the client to a flusher, once, and moves on. The
//! flusher drains every handed client's queue straight into its socket with one vectored
//! `try_write` each — one wake-up per publish instead of one per subscriber. Under load
//! frames pile up between two flusher turns and share a write, so batching is kept.
//!
//! Order and exclusion: the queue stays the only order. A flusher writes only while the queue
//! is parked and holds the queue's lock while it writes; the connection's task takes the
//! socket back ([`ClientQueue::unpark`]) under that lock before any write of its own. What
//! the socket does not take at once (it would block, or took part of a frame) is handed
//! back: the queue is unparked and the task woken, and it finishes a frame cut short (the
//! queue hands it over with how many bytes are already out) before it writes anything else,
//! under its own write timeout and eviction rules.
//! Catch-ups (replay cursors) are always the task's.
//!
//! One flusher or several: every client is handed to the first flusher, which batches best
//! alone (at saturation its turns are long, and frames pile up between two visits to a
//! client). The others help only while nothing batches — its last turn wrote about one frame
//! per write, as far below saturation — and a turn has many clients: it gives each idle
//! helper an equal share, so one publish's deliveries go out on every core at once instead of
//! one after another (lower latency at moderate load). Under load, when writes carry several
//! frames each, nothing is shared, and batching is as with one flusher.
//!
//! [`ClientQueue::park`]: super::queue::ClientQueue
//! [`ClientQueue::unpark`]: super::queue::ClientQueue

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use super::queue::FrameSink;
use super::stats::DirectStats;
use super::{Client, Frame, Hub};

/// Clients a flusher writes to before it lets other tasks run (a few hundred microseconds).
const YIELD_EVERY: usize = 128;

/// The fewest clients in a turn worth sharing with idle helpers (below it, one flusher is
/// done about as soon as a helper would have woken).
const SHARE_FROM: usize = 64;

/// Frames per write in the last turn at or below which a turn is shared: writes are not
/// batching, so halving the time between two visits to a client costs nothing.
const SHARE_BELOW_FRAMES_PER_WRITE: u64 = 2;

/// How a client's queue reaches a flusher: set once, by the transport, for connections whose
/// socket can be written from outside their task.
pub(crate) struct Direct {
    sink: Arc<dyn FrameSink>,
    flusher: Arc<Flusher>,
}

impl fmt::Debug for Direct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Direct")
    }
}

/// One flusher: the clients handed to it since its last turn.
pub(crate) struct Flusher {
    handed: Mutex<Vec<Arc<Client>>>,
    wake: Notify,
    /// Set while the flusher waits for work: a waiting helper may be given a share, claimed
    /// by clearing this.
    idle: AtomicBool,
    stats: DirectStats,
}

impl Flusher {
    /// Hands a client with a parked queue to this flusher. Each client is handed at most once
    /// per turn (the queue remembers it), so the list holds at most one entry per client.
    pub(crate) fn hand(&self, client: Arc<Client>) {
        let first = {
            let mut handed = self.handed.lock().unwrap_or_else(|p| p.into_inner());
            handed.push(client);
            handed.len() == 1
        };
        if first {
            self.wake.notify_one();
        }
    }

    /// Hands `clients` to this helper if it is idle (claiming it); gives them back if not.
    fn help(&self, clients: &mut Vec<Arc<Client>>) -> bool {
        if self
            .idle
            .compare_exchange(true, false, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        self.handed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .append(clients);
        self.wake.notify_one();
        true
    }

    async fn run(&self, helpers: &[Arc<Flusher>], shutdown: CancellationToken) {
        let mut turn = Vec::new();
        let mut share = Vec::new();
        loop {
            self.idle.store(true, Ordering::Release);
            tokio::select! {
                () = self.wake.notified() => {}
                () = shutdown.cancelled() => return,
            }
            self.idle.store(false, Ordering::Release);
            // Coming from idle, the last turn's batching says nothing: count it as none.
            let (mut last_writes, mut last_frames) = (1, 1);
            loop {
                std::mem::swap(
                    &mut turn,
                    &mut *self.handed.lock().unwrap_or_else(|p| p.into_inner()),
                );
                if turn.is_empty() {
                    break;
                }
                let batching = last_frames > SHARE_BELOW_FRAMES_PER_WRITE * last_writes;
                if !helpers.is_empty() && !batching && turn.len() >= SHARE_FROM {
                    // Equal shares for this flusher and each helper; a helper that turns
                    // out busy leaves its share here.
                    let each = turn.len().div_ceil(helpers.len() + 1);
                    for helper in helpers {
                        if turn.len() <= each {
                            break;
                        }
                        share.extend(turn.drain(turn.len() - each..));
                        if !helper.help(&mut share) {
                            turn.append(&mut share);
                            break;
                        }
                    }
                }
                let (mut writes, mut frames, mut handed_back) = (0, 0, 0);
                for (i, client) in turn.drain(..).enumerate() {
                    if let Some(direct) = client.direct.get() {
                        let flushed = client.queue.flush(&*direct.sink);
                        writes += flushed.writes;
                        frames += flushed.frames;
                        handed_back += u64::from(flushed.handed_back);
                    }
                    // A turn can hold thousands of clients (a write each): let the
                    // connections' own tasks and the publishers run in between.
                    if i % YIELD_EVERY == YIELD_EVERY - 1 {
                        tokio::task::yield_now().await;
                    }
                }
                (last_writes, last_frames) = (writes.max(1), frames);
                self.stats.writes.inc_by(writes);
                self.stats.frames.inc_by(frames);
                self.stats.handed_back.inc_by(handed_back);
                tokio::task::yield_now().await;
            }
        }
    }
}

impl Hub {
    /// Starts `count` flusher tasks (see [`self`]); 0 leaves every write to the connections'
    /// own tasks. Call once, before connections attach sinks.
    pub fn start_flushers(&self, count: usize, tracker: &TaskTracker) {
        let flushers: Vec<Arc<Flusher>> = (0..count)
            .map(|_| {
                Arc::new(Flusher {
                    handed: Mutex::default(),
                    wake: Notify::new(),
                    idle: AtomicBool::new(false),
                    stats: self.inner.stats.direct.clone(),
                })
            })
            .collect();
        for (i, flusher) in flushers.iter().enumerate() {
            let flusher = flusher.clone();
            // The first flusher gets every client and shares with the others; they help.
            let helpers: Vec<Arc<Flusher>> = if i == 0 {
                flushers[1..].to_vec()
            } else {
                Vec::new()
            };
            let shutdown = self.inner.shutdown.clone();
            tracker.spawn(async move { flusher.run(&helpers, shutdown).await });
        }
        let _ = self.inner.flushers.set(flushers);
    }

    /// Whether every flusher waits for work with nothing handed to it (for tests: no write
    /// is in flight or pending).
    #[cfg(test)]
    pub(crate) fn flushers_idle(&self) -> bool {
        self.inner.flushers.get().is_some_and(|all| {
            all.iter().all(|f| {
                f.idle.load(Ordering::Acquire)
                    && f.handed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .is_empty()
            })
        })
    }

    /// Lends `client`'s socket to a flusher. `false` when the hub runs none: the transport
    /// then writes everything itself (and must not park the queue).
    pub fn attach_sink(&self, client: &Client, sink: Arc<dyn FrameSink>) -> bool {
        let Some(first) = self.inner.flushers.get().and_then(|all| all.first()) else {
            return false;
        };
        // Every client to the first flusher, which shares with the others (see above).
        let flusher = first.clone();
        client.direct.set(Direct { sink, flusher }).is_ok()
    }
}

impl Client {
    /// Queues a published frame; a parked queue is handed to the client's flusher.
    pub(crate) fn push_published(
        self: &Arc<Self>,
        frame: Frame,
    ) -> Result<(), super::queue::PushError> {
        if self.queue.push_fanout(frame)? == super::queue::Pushed::ToFlush {
            match self.direct.get() {
                Some(direct) => direct.flusher.hand(self.clone()),
                // Parked without a sink cannot happen (only a sink's owner parks); if it
                // did, the consumer must still hear of the frame.
                None => self.queue.unpark_and_wake(),
            }
        }
        Ok(())
    }

    /// Parks the client's queue if it has a sink and nothing queued: published frames then
    /// go straight to its socket through a flusher. `false`: the consumer waits as usual.
    pub fn park(&self) -> bool {
        self.direct.get().is_some() && self.queue.park()
    }

    /// The consumer takes the socket back (it woke up, or is closing); returns the frame a
    /// flusher wrote only part of, with the wire bytes already out: the consumer writes the
    /// rest before anything else.
    pub fn unpark(&self) -> Option<(Frame, usize)> {
        self.direct.get()?;
        self.queue.unpark()
    }
}
