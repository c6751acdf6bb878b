//! Messages in and out: publish (a channel assigns the next offset, the frame is encoded
//! once and fanned out to every subscriber's queue), and take (how a transport reads its
//! client's queue, catch-ups expanded from history at the client's pace), and history pages.

use std::time::Instant;

use super::queue::{Replay, Taken};
use super::registry::TooManyChannels;
use super::{
    ChannelName, Client, Frame, HistoryPage, Hub, HubError, Payload, Pop, PublishRule, Published,
};

impl Hub {
    /// Publishes `data` (valid JSON text) on `channel`. Never waits for a client: subscribers
    /// whose queue is full are evicted as slow after the channel lock is released. Callers
    /// that can push back on their publisher call [`Hub::check_load`] first.
    pub fn publish(&self, channel: &ChannelName, data: &str) -> Result<Published, HubError> {
        self.publish_payload(channel, &Payload::data(data))
    }

    pub(super) fn publish_payload(
        &self,
        channel: &ChannelName,
        payload: &Payload<'_>,
    ) -> Result<Published, HubError> {
        // A cluster node's offsets come from its broker: `publish_stored`.
        debug_assert!(self.cluster().is_none(), "Hub::publish on a cluster node");
        self.check_data(payload.data)?;
        let config = &self.inner.config;
        let mut overflowed = Vec::new();
        let limits = config.history_for(channel);
        let published = self
            .inner
            .registry
            .with_live_channel(channel, config.max_channels, |ch, state| {
                ch.publish(state, payload, limits, Instant::now(), &mut overflowed)
            })
            .map_err(|TooManyChannels| {
                self.inner.stats.rejected_too_many_channels.inc();
                HubError::TooManyChannels(config.max_channels)
            })?;
        let stats = &self.inner.stats;
        stats.published.inc();
        stats.deliveries.inc_by(published.enqueued as u64);
        for client in overflowed {
            self.evict_slow(&client);
        }
        if self.inner.registry.history_bytes() > config.history_budget {
            self.shed_history();
        }
        Ok(published)
    }

    /// Whether clients may publish on `channel` at all: `--client-publish`, and not a
    /// backend-only namespace.
    pub(crate) fn client_may_publish(&self, channel: &ChannelName) -> Result<(), HubError> {
        let config = &self.inner.config;
        let backend_only = config
            .namespace(channel)
            .is_some_and(|ns| ns.publish == PublishRule::Backend);
        if backend_only || !config.client_publish.allows(channel) {
            return Err(HubError::PublishForbidden(channel.clone()));
        }
        Ok(())
    }

    /// Publishes a client's `publish` frame, if the policy allows clients to publish on that
    /// channel (`--client-publish`, and not a backend-only namespace). `from` is the publisher
    /// the hub stamps on the message, where the channel's namespace asks for it.
    pub fn client_publish(
        &self,
        channel: &ChannelName,
        data: &str,
        from: Option<&str>,
    ) -> Result<Published, HubError> {
        let config = &self.inner.config;
        self.client_may_publish(channel)?;
        self.check_load()?;
        let from = from.filter(|_| config.stamps(channel));
        self.publish_payload(channel, &Payload { data, from })
    }

    /// Moves up to `max` frames queued for `client` into `out`, reading catch-ups from history
    /// as it meets them: this is how transports consume a client's queue.
    pub fn take(&self, client: &Client, out: &mut Vec<Frame>, max: usize) -> Pop {
        let start = out.len();
        loop {
            let room = max - (out.len() - start);
            let taken = client.queue.try_take(out, room);
            let moved_any = out.len() > start;
            let mut replay = match taken {
                Taken::Replay(replay) => replay,
                Taken::Closed(reason) => return Pop::Closed(reason),
                Taken::Empty if !moved_any => return Pop::Empty,
                Taken::Frames | Taken::Empty => return Pop::Frames,
            };
            let room = max - (out.len() - start);
            if !self.replay(&mut replay, out, room) {
                client.queue.put_back(replay);
                return Pop::Frames;
            }
            if out.len() - start >= max {
                return Pop::Frames;
            }
        }
    }

    /// Moves the next page of a catch-up into `out`; `true` once it is finished (or its
    /// channel generation is gone, so there is nothing left to read).
    fn replay(&self, replay: &mut Replay, out: &mut Vec<Frame>, room: usize) -> bool {
        let Some(ch) = self.inner.registry.channel(&replay.channel) else {
            return true;
        };
        let mut state = ch.lock();
        if state.removed || state.epoch != replay.epoch {
            return true;
        }
        let limits = self.inner.config.history_for(&replay.channel);
        let replayed = ch.replay(&mut state, replay, out, room, limits, Instant::now());
        self.inner.stats.replayed.inc_by(replayed as u64);
        replay.after >= replay.through
    }

    /// What `channel` still remembers after `since`, oldest first; `None` for a channel the
    /// hub does not hold.
    /// At most `limit` messages and `max_bytes` of frames (but always one).
    pub fn history(
        &self,
        channel: &ChannelName,
        since: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Option<HistoryPage> {
        let ch = self.inner.registry.channel(channel)?;
        let mut state = ch.lock();
        if state.removed {
            return None;
        }
        let limits = self.inner.config.history_for(channel);
        Some(ch.history(&mut state, since, limit, max_bytes, limits, Instant::now()))
    }
}
