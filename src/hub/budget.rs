//! What the hub may hold, whatever its clients do: at most `--max-channels` channels, at most
//! `--history-budget` bytes of history across them (the oldest messages hub-wide go first),
//! no published `data` deeper than `--max-json-depth`; and the sweep that forgets what aged.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use super::{ChannelName, Hub, HubError};

impl Hub {
    /// Keeps all channels' history within `--history-budget`: forgets the oldest messages
    /// hub-wide (not only the publishing channel's) until a sixteenth of the budget is free,
    /// so a burst of publishes pays for one pass over the channels, not one per publish.
    /// Resumes that needed those messages get `missed` (`history_exhausted`), never a gap.
    pub(super) fn shed_history(&self) {
        let Ok(_only_one) = self.inner.shedding.try_lock() else {
            return; // another publisher is shedding right now
        };
        let budget = self.inner.config.history_budget;
        let target = budget - budget / 16;
        let registry = &self.inner.registry;
        let channels = registry.oldest_histories();
        let mut oldest_first: BinaryHeap<_> = channels
            .iter()
            .enumerate()
            .map(|(i, (published_at, _))| Reverse((*published_at, i)))
            .collect();
        let mut shed = 0u64;
        while registry.history_bytes() > target {
            let Some(Reverse((_, i))) = oldest_first.pop() else {
                break;
            };
            let mut state = channels[i].1.lock();
            if state.shed_oldest() {
                shed += 1;
            }
            if let Some(next) = state.oldest_published_at() {
                oldest_first.push(Reverse((next, i)));
            }
        }
        self.inner.stats.history_shed.inc_by(shed);
        tracing::debug!(
            shed,
            budget,
            "history over its budget: forgot the oldest messages"
        );
    }

    /// Bytes of history held across all channels.
    pub fn history_bytes(&self) -> usize {
        self.inner.registry.history_bytes()
    }

    /// Refuses a publish to `names` that would create more channels than the hub may hold.
    /// (Advisory under concurrency: each publish checks again.)
    pub fn check_room(&self, names: &[ChannelName]) -> Result<(), HubError> {
        let registry = &self.inner.registry;
        let max = self.inner.config.max_channels;
        let new = names
            .iter()
            .filter(|n| registry.channel(n).is_none())
            .count();
        if new > 0 && registry.channel_count() + new > max {
            self.inner.stats.rejected_too_many_channels.inc();
            return Err(HubError::TooManyChannels(max));
        }
        Ok(())
    }

    /// Refuses `data` (valid JSON text) nested deeper than `--max-json-depth`: it would be
    /// stored and fanned out to readers whose parsers recurse per level.
    pub fn check_data(&self, data: &str) -> Result<(), HubError> {
        let max = self.inner.config.max_json_depth;
        if crate::protocol::json::deeper_than(data, max) {
            return Err(HubError::TooDeep(max));
        }
        Ok(())
    }

    /// Trims aged history everywhere and forgets channels left with nothing to keep. Run
    /// periodically by the server; cheap when nothing changed.
    pub fn sweep(&self) -> usize {
        let registry = &self.inner.registry;
        let now = Instant::now();
        let config = &self.inner.config;
        // Collect first: removing while iterating a dashmap would deadlock on its shard.
        let mut removed = 0;
        for name in registry.channel_names() {
            let Some(ch) = registry.channel(&name) else {
                continue;
            };
            let idle = {
                let mut state = ch.lock();
                state.trim_history(config.history_for(&name), now);
                state.is_idle()
            };
            if idle && registry.remove_channel_if_idle(&name) {
                removed += 1;
            }
        }
        self.inner
            .stats
            .channels
            .set(registry.channel_count() as i64);
        removed
    }
}
