//! A channel mirrored from a cluster broker: its offsets are assigned by the broker, so a
//! message arrives with its position, and a copy that fell behind (a lost subscription
//! connection, a message out of sequence) is caught up from the broker's history — or its
//! subscribers are told `missed` — before anything after the gap is delivered.

use std::sync::Arc;
use std::time::Instant;

use crate::protocol::{server, Missed, MissedReason, Since};

use super::super::broker::Snapshot;
use super::super::client::Client;
use super::super::queue::PushError;
use super::super::stored;
use super::{Channel, ChannelState, HistoryLimits};

/// What became of one message the broker delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Live {
    /// Appended and enqueued to this many subscribers.
    Applied(usize),
    /// Already held (it came with a catch-up from history).
    Duplicate,
    /// Not the next offset of this generation: the copy must be caught up first.
    Gap,
    /// This node does not follow the channel (any more): nothing to do.
    NotMirrored,
}

impl Channel {
    /// Applies the message at `offset` of generation `epoch` if it is the next one.
    #[allow(clippy::too_many_arguments)]
    pub fn apply_live(
        &self,
        state: &mut ChannelState,
        epoch: &str,
        offset: u64,
        data: &str,
        limits: HistoryLimits,
        now: Instant,
        overflowed: &mut Vec<Arc<Client>>,
    ) -> Live {
        if !state.mirrored {
            return Live::NotMirrored;
        }
        if epoch != state.epoch.as_str() {
            return Live::Gap;
        }
        if offset <= state.last_offset {
            return Live::Duplicate;
        }
        if offset != state.last_offset + 1 {
            return Live::Gap;
        }
        state.last_offset = offset;
        let frame = server::message(&self.name, &state.epoch, offset, &stored::decode(data));
        Live::Applied(self.append(state, frame, limits, now, overflowed))
    }

    /// Brings this copy up to the broker's `snapshot`: the messages it lacks are appended
    /// and enqueued in order. Where the snapshot cannot fill the gap (its history no longer
    /// reaches back, or the broker forgot the channel and started a new generation), the
    /// subscribers get `missed` first. Returns how many messages were appended.
    pub fn catch_up(
        &self,
        state: &mut ChannelState,
        snapshot: &Snapshot,
        limits: HistoryLimits,
        now: Instant,
        overflowed: &mut Vec<Arc<Client>>,
    ) -> u64 {
        let first_available = snapshot.first_available();
        let since = Since {
            epoch: Some(state.epoch.as_str().to_owned()),
            offset: state.last_offset,
        };
        let missed = if snapshot.epoch != state.epoch {
            Some(MissedReason::EpochChanged)
        } else if first_available > state.last_offset + 1 {
            Some(MissedReason::HistoryExhausted)
        } else {
            None
        };
        if let Some(reason) = missed {
            while state.pop_oldest() {}
            state.epoch = snapshot.epoch.clone();
            state.last_offset = first_available - 1;
            if !state.subscribers.is_empty() {
                self.tell_missed(state, &since, first_available, reason, overflowed);
            }
        }
        let mut appended = 0;
        for (offset, data) in (first_available..).zip(&snapshot.data) {
            if offset <= state.last_offset {
                continue;
            }
            state.last_offset = offset;
            let frame = server::message(&self.name, &state.epoch, offset, &stored::decode(data));
            self.append(state, frame, limits, now, overflowed);
            appended += 1;
        }
        state.mirrored = true;
        appended
    }

    fn tell_missed(
        &self,
        state: &ChannelState,
        since: &Since,
        first_available: u64,
        reason: MissedReason,
        overflowed: &mut Vec<Arc<Client>>,
    ) {
        let frame = server::missed(&Missed {
            channel: &self.name,
            epoch: &state.epoch,
            since,
            first_available,
            reason,
        });
        for client in state.subscribers.values() {
            if client.push_published(frame.clone()) == Err(PushError::Full) {
                overflowed.push(client.clone());
            }
        }
    }
}

impl Snapshot {
    /// The offset of the oldest message the snapshot holds (one past the last if none).
    pub fn first_available(&self) -> u64 {
        self.last_offset + 1 - self.data.len() as u64
    }
}
