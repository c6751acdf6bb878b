//! `Registry`: every connected client and every live channel, in two dashmaps.
//!
//! Guards never outlive a lookup: callers get an `Arc` clone and act on it after the map
//! guard is dropped, because calling back into a dashmap while holding one of its guards can
//! deadlock. A channel exists while it has subscribers or history; removal is atomic with
//! that check (`remove_if` with the channel locked) and marks the value `removed`, so a
//! publisher or subscriber that raced the removal looks the name up again.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use dashmap::DashMap;

use crate::protocol::ChannelName;

use super::channel::{Channel, ChannelState};
use super::client::{Client, ClientId};

/// The registry holds `--max-channels` channels already.
#[derive(Debug)]
pub(crate) struct TooManyChannels;

#[derive(Default)]
pub(crate) struct Registry {
    pub clients: DashMap<ClientId, Arc<Client>>,
    channels: DashMap<ChannelName, Arc<Channel>>,
    /// Bytes of history held across all channels (each channel keeps it up to date).
    history_bytes: Arc<AtomicUsize>,
}

impl Registry {
    pub fn channel(&self, name: &ChannelName) -> Option<Arc<Channel>> {
        self.channels.get(name).map(|c| c.value().clone())
    }

    /// The channel `name`, created if there is room for one more (`max` channels at most);
    /// `None` when there is not.
    fn channel_or_create(&self, name: &ChannelName, max: usize) -> Option<Arc<Channel>> {
        if let Some(channel) = self.channel(name) {
            return Some(channel);
        }
        // Checked before the entry is taken: two creators racing past it can exceed `max` by
        // one each, a bound of (max + concurrent creators), never growth without end.
        if self.channels.len() >= max {
            return None;
        }
        Some(
            self.channels
                .entry(name.clone())
                .or_insert_with(|| Arc::new(Channel::new(name.clone(), self.history_bytes.clone())))
                .value()
                .clone(),
        )
    }

    /// Runs `f` on the live channel `name` (created if need be and there is room: at most
    /// `max_channels`) under its lock. A channel the registry removed between the lookup and
    /// the lock is looked up again, so `f` never acts on a forgotten channel.
    pub fn with_live_channel<R>(
        &self,
        name: &ChannelName,
        max_channels: usize,
        f: impl FnOnce(&Channel, &mut ChannelState) -> R,
    ) -> Result<R, TooManyChannels> {
        loop {
            let channel = self
                .channel_or_create(name, max_channels)
                .ok_or(TooManyChannels)?;
            let mut state = channel.lock();
            if !state.removed {
                return Ok(f(&channel, &mut state));
            }
        }
    }

    /// Forgets the channel if nothing would be lost by doing so.
    pub fn remove_channel_if_idle(&self, name: &ChannelName) -> bool {
        self.channels
            .remove_if(name, |_, channel| {
                let mut state = channel.lock();
                if state.is_idle() {
                    state.removed = true;
                    true
                } else {
                    false
                }
            })
            .is_some()
    }

    pub fn history_bytes(&self) -> usize {
        self.history_bytes.load(Ordering::Relaxed)
    }

    /// Every channel that holds history, with when its oldest message was published.
    pub fn oldest_histories(&self) -> Vec<(Instant, Arc<Channel>)> {
        let channels: Vec<Arc<Channel>> = self.channels.iter().map(|e| e.value().clone()).collect();
        // Locked after the map guards are gone: never a channel lock under a shard lock.
        channels
            .into_iter()
            .filter_map(|ch| {
                let oldest = ch.lock().oldest_published_at()?;
                Some((oldest, ch))
            })
            .collect()
    }

    pub fn channel_names(&self) -> Vec<ChannelName> {
        self.channels.iter().map(|e| e.key().clone()).collect()
    }

    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }
}
