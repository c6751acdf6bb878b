//! A channel: its validated name, its epoch and offset counter, its subscribers and its
//! bounded history ring.
//!
//! Everything that must be atomic for the delivery promise happens under the channel's one
//! lock: assigning an offset, appending to history and enqueueing to every subscriber (so
//! every subscriber sees offsets in order), and a subscribe's catch-up from history followed
//! by joining the live set (so a resuming client sees no gap and no duplicate). Nothing under
//! that lock waits: queues are `try_push`, and clients that overflow are returned to the
//! caller, who evicts them after the lock is released.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::protocol::{
    server, ChannelName, Epoch, Frame, Missed, MissedReason, Payload, Published, Since, Subscribed,
};

use super::client::{Client, ClientId};
use super::queue::{PushError, Replay};

pub(crate) struct Channel {
    pub name: ChannelName,
    state: Mutex<ChannelState>,
}

pub(crate) struct ChannelState {
    /// The channel generation its offsets belong to. Fixed for the channel's life in memory;
    /// a broker-mirrored channel takes the broker's (which changes only if the broker forgot
    /// the channel, and then subscribers are told `epoch_changed`).
    pub(super) epoch: Epoch,
    last_offset: u64,
    history: VecDeque<StoredMessage>,
    history_bytes: usize,
    /// The bytes of history held by every channel of the hub, kept with this one's.
    all_history_bytes: Arc<AtomicUsize>,
    subscribers: HashMap<ClientId, Arc<Client>>,
    /// Users, listeners and pending joins/leaves, for channels with presence.
    presence: Option<Box<presence::Presence>>,
    /// Set (under this lock) when the registry removed the channel: whoever still holds the
    /// `Arc` must look the name up again instead of publishing into a forgotten channel.
    pub removed: bool,
    /// With a cluster broker: this copy follows the broker's (its history and offsets were
    /// loaded from it and the node listens to it). Cleared when the node stops listening, so
    /// a later subscriber waits for a fresh copy instead of reading a stale one.
    pub mirrored: bool,
}

struct StoredMessage {
    offset: u64,
    published_at: Instant,
    frame: Frame,
}

/// What a subscribe did, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Joined {
    pub offset: u64,
    pub recovered: bool,
    /// Messages left to replay from history, read as the client reads.
    pub catch_up: u64,
}

impl Channel {
    pub fn new(name: ChannelName, all_history_bytes: Arc<AtomicUsize>) -> Self {
        Self {
            name,
            state: Mutex::new(ChannelState {
                epoch: Epoch::random(),
                last_offset: 0,
                history: VecDeque::new(),
                history_bytes: 0,
                all_history_bytes,
                subscribers: HashMap::new(),
                presence: None,
                removed: false,
                mirrored: false,
            }),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, ChannelState> {
        // Each critical section leaves the state consistent before anything that could panic
        // (the enqueues), so a poisoned lock is taken over rather than spreading the panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Assigns the next offset, remembers the frame and enqueues it to every subscriber.
    /// Clients whose queue is full are pushed to `overflowed` for the caller to evict.
    pub fn publish(
        &self,
        state: &mut ChannelState,
        payload: &Payload<'_>,
        limits: HistoryLimits,
        now: Instant,
        overflowed: &mut Vec<Arc<Client>>,
    ) -> Published {
        state.last_offset += 1;
        let offset = state.last_offset;
        let frame = server::message(&self.name, &state.epoch, offset, payload);
        let enqueued = self.append(state, frame, limits, now, overflowed);
        Published {
            channel: self.name.clone(),
            epoch: state.epoch.clone(),
            offset,
            enqueued,
        }
    }

    /// Remembers `frame` (the message at `state.last_offset`, already assigned) and enqueues
    /// it to every subscriber; returns how many took it. Shared by the in-memory publish and
    /// by messages a cluster broker delivers with their offset.
    #[inline]
    pub(super) fn append(
        &self,
        state: &mut ChannelState,
        frame: Frame,
        limits: HistoryLimits,
        now: Instant,
        overflowed: &mut Vec<Arc<Client>>,
    ) -> usize {
        let offset = state.last_offset;
        state.trim_history(limits, now);
        let mut enqueued = 0;
        for client in state.subscribers.values() {
            match client.push_published(frame.clone()) {
                Ok(()) => enqueued += 1,
                Err(PushError::Full) => overflowed.push(client.clone()),
                // Disconnecting already; it resumes from its own last offset.
                Err(PushError::Closed) => {}
            }
        }
        if limits.size > 0 {
            while state.history.len() >= limits.size
                || (!state.history.is_empty()
                    && state.history_bytes + history::cost(&frame) > limits.max_bytes)
            {
                state.pop_oldest();
            }
            state.history_bytes += history::cost(&frame);
            state
                .all_history_bytes
                .fetch_add(history::cost(&frame), Ordering::Relaxed);
            state.history.push_back(StoredMessage {
                offset,
                published_at: now,
                frame,
            });
        }
        enqueued
    }

    /// Enqueues `subscribed` (encoded by `reply`, which adds the transport's request id),
    /// then (for a resume) `missed` if history falls short, then a [`Replay`] of the messages
    /// after `since`, then adds the client to the live set. Fails when the client's queue is
    /// full (the caller evicts it as slow).
    ///
    /// The catch-up is a cursor, not frames: a resume of many full channels must not overflow
    /// the queue that bounds live messages. The consumer reads it page by page from history
    /// ([`Channel::replay`]); live messages queued behind it keep their order.
    pub fn subscribe(
        &self,
        state: &mut ChannelState,
        client: &Arc<Client>,
        since: Option<&Since>,
        reply: &dyn Fn(&Subscribed<'_>) -> Frame,
        limits: HistoryLimits,
        now: Instant,
    ) -> Result<Joined, PushError> {
        state.trim_history(limits, now);
        let last = state.last_offset;
        let first_available = state.first_available();

        // Which stored messages to replay, and whether that covers everything missed.
        let (replay_after, missed) = match since {
            None => (last, None),
            Some(since) => {
                let same_epoch = since
                    .epoch
                    .as_deref()
                    .is_none_or(|e| e == state.epoch.as_str());
                if !same_epoch {
                    (0, Some(MissedReason::EpochChanged))
                } else if since.offset > last {
                    // A cursor from the future is not "caught up": the client's state is
                    // not this channel's.
                    (0, Some(MissedReason::OffsetAhead))
                } else if since.offset + 1 >= first_available {
                    (since.offset, None)
                } else {
                    (0, Some(MissedReason::HistoryExhausted))
                }
            }
        };

        let queue = &client.queue;
        let epoch = state.epoch.clone();
        queue.try_push(reply(&Subscribed {
            channel: &self.name,
            epoch: &epoch,
            offset: last,
            recovered: missed.is_none(),
        }))?;
        if let (Some(reason), Some(since)) = (missed, since) {
            queue.try_push(server::missed(&Missed {
                channel: &self.name,
                epoch: &epoch,
                since,
                first_available,
                reason,
            }))?;
        }
        let after = replay_after.max(first_available - 1);
        if after < last {
            queue.try_push_replay(Replay {
                channel: self.name.clone(),
                epoch,
                after,
                through: last,
            })?;
        }
        state.subscribers.insert(client.id, client.clone());
        Ok(Joined {
            offset: last,
            recovered: missed.is_none(),
            catch_up: last - after,
        })
    }
}

impl ChannelState {
    /// Takes the client off the live set: `None` when it was not on it, else whether the
    /// channel now has presence news to flush (see `presence_leave`).
    pub fn remove_subscriber(&mut self, id: ClientId) -> Option<bool> {
        let client = self.subscribers.remove(&id)?;
        Some(self.presence_leave(&client))
    }

    /// Every subscriber, cloned out (to act on after the lock is released).
    pub fn subscribers(&self) -> Vec<Arc<Client>> {
        self.subscribers.values().cloned().collect()
    }

    pub fn subscriber_count(&self) -> usize {
        self.subscribers.len()
    }

    /// Nothing would be lost by forgetting this channel.
    pub fn is_idle(&self) -> bool {
        self.subscribers.is_empty() && self.history.is_empty()
    }
}

mod history;
mod mirror;
mod presence;

pub use presence::StoredMember;

pub use history::{HistoryLimits, HistoryPage};
pub use mirror::Live;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_differ_between_channel_instances() {
        let name = ChannelName::parse("c").unwrap();
        let bytes = Arc::<AtomicUsize>::default();
        assert_ne!(
            Channel::new(name.clone(), bytes.clone()).lock().epoch,
            Channel::new(name, bytes).lock().epoch
        );
    }
}
