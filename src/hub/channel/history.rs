//! A channel's history ring: bounded by count, bytes and age (and, hub-wide, by the history
//! budget), read in pages by the history API and by catch-ups at the client's pace.
//!
//! History holds consecutive offsets from `first_available`: a message is only ever removed
//! from the front, so a position maps to an index without a search.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::protocol::{server, Epoch, Frame, Missed, MissedReason, Since};

use super::super::queue::Replay;

/// Memory a stored message costs beyond its frame's bytes: the `StoredMessage` slot in the
/// ring (offset, time, frame handle: 56 B) and the shared buffer's bookkeeping and allocator
/// header (~40 B). Counted in every history byte limit, so a budget of small messages is a
/// budget of memory, not only of payload.
pub(super) const STORED_MESSAGE_OVERHEAD: usize = 96;

/// What one stored message counts against history byte limits.
pub(super) fn cost(frame: &Frame) -> usize {
    frame.len() + STORED_MESSAGE_OVERHEAD
}
use super::{Channel, ChannelState, StoredMessage};

#[derive(Clone, Copy, Debug)]
pub struct HistoryLimits {
    /// Most messages a channel remembers; 0 disables history (and resume).
    pub size: usize,
    /// Most bytes of frames a channel remembers (the oldest go first).
    pub max_bytes: usize,
    /// Messages older than this are forgotten.
    pub ttl: Duration,
}

/// A page of history.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    pub epoch: Epoch,
    pub last_offset: u64,
    pub frames: Vec<Frame>,
    /// When history holds messages after this page: the offset to ask for them after (the
    /// last offset in the page).
    pub next: Option<u64>,
}

impl Channel {
    /// Moves the next page of `replay` (at most `room` frames) from history into `out`, and
    /// advances it. History may have aged past the cursor while the client was reading: then
    /// a `missed` notice comes first and the replay goes on from what history still holds.
    /// Returns how many messages were replayed; the replay is finished when
    /// `replay.after == replay.through`.
    pub fn replay(
        &self,
        state: &mut ChannelState,
        replay: &mut Replay,
        out: &mut Vec<Frame>,
        room: usize,
        limits: HistoryLimits,
        now: Instant,
    ) -> usize {
        state.trim_history(limits, now);
        let first_available = state.first_available();
        if replay.after + 1 < first_available {
            let since = Since {
                epoch: Some(state.epoch.as_str().to_owned()),
                offset: replay.after,
            };
            out.push(server::missed(&Missed {
                channel: &self.name,
                epoch: &state.epoch,
                since: &since,
                first_available,
                reason: MissedReason::HistoryExhausted,
            }));
            replay.after = (first_available - 1).min(replay.through);
        }
        let wanted = (replay.through - replay.after) as usize;
        let before = out.len();
        out.extend(
            state
                .stored_after(replay.after)
                .take(wanted.min(room))
                .map(|m| m.frame.clone()),
        );
        let replayed = out.len() - before;
        replay.after += replayed as u64;
        if replayed < wanted.min(room) {
            // History ends before `through` (only if it was trimmed to nothing): done.
            replay.after = replay.through;
        }
        replayed
    }

    /// The messages after `since`, oldest first: at most `limit` of them and `max_bytes` of
    /// frames (but always one, however large).
    #[allow(clippy::too_many_arguments)]
    pub fn history(
        &self,
        state: &mut ChannelState,
        since: u64,
        limit: usize,
        max_bytes: usize,
        limits: HistoryLimits,
        now: Instant,
    ) -> HistoryPage {
        state.trim_history(limits, now);
        let mut frames = Vec::new();
        let mut bytes = 0;
        let mut shown = None;
        let mut next = None;
        for stored in state.stored_after(since) {
            if frames.len() == limit
                || (!frames.is_empty() && bytes + stored.frame.len() > max_bytes)
            {
                next = shown;
                break;
            }
            bytes += stored.frame.len();
            frames.push(stored.frame.clone());
            shown = Some(stored.offset);
        }
        HistoryPage {
            epoch: state.epoch.clone(),
            last_offset: state.last_offset,
            frames,
            next,
        }
    }
}

impl ChannelState {
    /// The oldest offset history still holds (one past the last when it holds none).
    pub(super) fn first_available(&self) -> u64 {
        self.history
            .front()
            .map_or(self.last_offset + 1, |m| m.offset)
    }

    pub(super) fn pop_oldest(&mut self) -> bool {
        let Some(oldest) = self.history.pop_front() else {
            return false;
        };
        self.history_bytes -= cost(&oldest.frame);
        self.all_history_bytes
            .fetch_sub(cost(&oldest.frame), Ordering::Relaxed);
        true
    }

    /// When the oldest message history still holds was published.
    pub fn oldest_published_at(&self) -> Option<Instant> {
        self.history.front().map(|m| m.published_at)
    }

    /// Forgets the oldest message (to keep the hub's history within its budget).
    pub fn shed_oldest(&mut self) -> bool {
        self.pop_oldest()
    }

    pub fn trim_history(&mut self, limits: HistoryLimits, now: Instant) {
        while let Some(oldest) = self.history.front() {
            if now.saturating_duration_since(oldest.published_at) > limits.ttl {
                self.pop_oldest();
            } else {
                break;
            }
        }
        if self.history.is_empty() && self.history.capacity() > 0 && self.subscribers.is_empty() {
            self.history = VecDeque::new();
        }
    }

    /// The stored messages after `offset`, oldest first.
    fn stored_after(&self, offset: u64) -> std::collections::vec_deque::Iter<'_, StoredMessage> {
        let start = offset
            .saturating_add(1)
            .saturating_sub(self.first_available()) as usize;
        self.history.range(start.min(self.history.len())..)
    }
}
