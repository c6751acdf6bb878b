//! The node's one pub/sub connection to Redis, and the only writer of its channel copies:
//! joins (listen, then load history), live messages (checked for gaps by offset), leaves,
//! and — after the connection was lost — reconnection with backoff and jitter, re-listening
//! to every followed channel and catching each up from history.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use rand::Rng;
use redis::aio::PubSubSink;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::hub::{ChannelName, Hub, HubError, Live};

use super::control::{self, Received, CONTROL_CHANNEL};
use super::presence::PresenceWriter;
use super::{message_key, unavailable, Command, Shared, MESSAGE_PREFIX};

/// First and largest pause between reconnection attempts (doubled each time, with jitter so
/// that every node of a cluster does not reconnect in the same instant).
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How often an idle subscription connection is checked with a PING: a connection that
/// stalls without closing (a network partition) would otherwise look like a quiet one, and
/// the node would miss messages without noticing until the next one arrived.
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

pub struct Listener {
    client: redis::Client,
    shared: Arc<Shared>,
    commands: mpsc::Receiver<Command>,
    /// Channels this node listens to (and whose copies are mirrored).
    followed: HashSet<ChannelName>,
    /// Where the other nodes answer this node's questions.
    replies: String,
    /// Runs beside the listener (`run`).
    presence: Option<PresenceWriter>,
}

/// The subscription connection failed: reconnect.
struct Lost;

impl Listener {
    pub(super) fn new(
        client: redis::Client,
        shared: Arc<Shared>,
        commands: mpsc::Receiver<Command>,
        presence: PresenceWriter,
    ) -> Self {
        Self {
            presence: Some(presence),
            client,
            replies: control::reply_channel(&shared.node),
            shared,
            commands,
            followed: HashSet::new(),
        }
    }

    /// Runs until `shutdown`, with the presence writer beside it.
    pub async fn run(mut self, hub: Hub, shutdown: CancellationToken) {
        let writer = self.presence.take();
        let presence = async {
            if let Some(writer) = writer {
                writer.run(hub.clone(), shutdown.clone()).await;
            }
        };
        tokio::join!(self.listen(hub.clone(), shutdown.clone()), presence);
    }

    async fn listen(mut self, hub: Hub, shutdown: CancellationToken) {
        let mut failures = 0u32;
        loop {
            if failures > 0 {
                self.shared.stats.reconnects.inc();
                let pause = backoff(failures);
                tracing::warn!(
                    ?pause,
                    failures,
                    "Redis subscription connection lost; reconnecting"
                );
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(pause) => {}
                }
            }
            let connected = tokio::select! {
                () = shutdown.cancelled() => return,
                connected = tokio::time::timeout(self.shared.config.timeout, self.client.get_async_pubsub()) => connected,
            };
            let (mut sink, mut stream) = match connected {
                Ok(Ok(pubsub)) => pubsub.split(),
                Ok(Err(error)) => {
                    tracing::debug!(%error, "cannot open the Redis subscription connection");
                    failures += 1;
                    continue;
                }
                Err(_) => {
                    failures += 1;
                    continue;
                }
            };
            if self.refollow(&mut sink, &hub).await.is_err() {
                failures += 1;
                continue;
            }
            if failures > 0 {
                tracing::info!(
                    channels = self.followed.len(),
                    "Redis subscription connection restored"
                );
            }
            let mut health = tokio::time::interval(HEALTH_INTERVAL);
            health.reset();
            loop {
                let step = tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return,
                    _ = health.tick() => self
                        .shared
                        .bounded("pinging Redis", sink.ping::<redis::Value>())
                        .await
                        .map(|_| ())
                        .map_err(|_| Lost),
                    message = stream.next() => match message {
                        Some(message) => self.on_message(&hub, &message).await,
                        None => Err(Lost),
                    },
                    command = self.commands.recv() => match command {
                        Some(command) => self.on_command(&hub, &mut sink, command).await,
                        None => return,
                    },
                };
                if step.is_err() {
                    failures = 1;
                    break;
                }
            }
        }
    }

    /// After (re)connecting: listen to every followed channel again, then catch each copy up
    /// from history (what was published while nobody listened), telling subscribers
    /// `missed` where history no longer reaches back.
    async fn refollow(&mut self, sink: &mut PubSubSink, hub: &Hub) -> Result<(), Lost> {
        // Control commands published while this node was not listening are not replayed
        // (pub/sub stores nothing): the API's `nodes` count told their caller.
        for control in [CONTROL_CHANNEL, self.replies.as_str()] {
            self.shared
                .bounded("subscribing in Redis", sink.subscribe(control))
                .await
                .map_err(|_| Lost)?;
        }
        let channels: Vec<ChannelName> = self.followed.iter().cloned().collect();
        for channel in &channels {
            self.shared
                .bounded("subscribing in Redis", sink.subscribe(message_key(channel)))
                .await
                .map_err(|_| Lost)?;
        }
        for channel in &channels {
            self.recover(hub, channel).await?;
        }
        Ok(())
    }

    async fn on_command(
        &mut self,
        hub: &Hub,
        sink: &mut PubSubSink,
        command: Command,
    ) -> Result<(), Lost> {
        match command {
            Command::Join(channel, done) => {
                if done.is_closed() {
                    return Ok(()); // its subscriber gave up waiting
                }
                if self.followed.contains(&channel) {
                    // Listening already; but the local copy may have been forgotten (the
                    // sweep removes a channel left with nothing) while a join kept the node
                    // listening: then load it again.
                    if hub.is_mirrored(&channel) {
                        let _ = done.send(Ok(()));
                        return Ok(());
                    }
                    let loaded = self.load(hub, &channel).await;
                    let lost = matches!(loaded, Err(HubError::BrokerUnavailable(_)));
                    let _ = done.send(loaded);
                    return if lost { Err(Lost) } else { Ok(()) };
                }
                // Listen first, then read history: a message published in between arrives
                // both ways, and the copy keeps it once (by offset).
                let subscribed = self
                    .shared
                    .bounded(
                        "subscribing in Redis",
                        sink.subscribe(message_key(&channel)),
                    )
                    .await;
                if let Err(error) = subscribed {
                    let _ = done.send(Err(error));
                    return Err(Lost);
                }
                let loaded = self.load(hub, &channel).await;
                let lost = matches!(loaded, Err(HubError::BrokerUnavailable(_)));
                match loaded {
                    Ok(()) => {
                        self.followed.insert(channel);
                        let _ = done.send(Ok(()));
                    }
                    Err(error) => {
                        let _ = tokio::time::timeout(
                            self.shared.config.timeout,
                            sink.unsubscribe(message_key(&channel)),
                        )
                        .await;
                        let _ = done.send(Err(error));
                    }
                }
                if lost {
                    return Err(Lost);
                }
                Ok(())
            }
            Command::Leave(channel) => {
                // Stop mirroring before unsubscribing: messages still in flight are dropped
                // rather than applied to a copy nobody keeps up to date.
                if !self.followed.contains(&channel)
                    || !hub.stop_mirroring(&channel, || !self.shared.is_pinned(&channel))
                {
                    return Ok(());
                }
                self.followed.remove(&channel);
                self.shared
                    .bounded(
                        "unsubscribing in Redis",
                        sink.unsubscribe(message_key(&channel)),
                    )
                    .await
                    .map(|_| ())
                    .map_err(|_| Lost)
            }
        }
    }

    /// Loads the channel from Redis into this node's copy, which then counts as mirrored.
    async fn load(&self, hub: &Hub, channel: &ChannelName) -> Result<(), HubError> {
        match self.shared.snapshot(channel, true).await? {
            Some(snapshot) => hub.catch_up_from_broker(channel, &snapshot).map(|_| ()),
            None => Err(unavailable("reading a channel from Redis", "no epoch")),
        }
    }

    async fn on_message(&mut self, hub: &Hub, message: &redis::Msg) -> Result<(), Lost> {
        let name = message.get_channel_name();
        if name == CONTROL_CHANNEL {
            self.on_control(hub, message.get_payload_bytes());
            return Ok(());
        }
        if name == self.replies {
            match serde_json::from_slice(message.get_payload_bytes()) {
                Ok(answer) => self.shared.pending.deliver(answer),
                Err(error) => tracing::warn!(%error, "ignored a malformed answer from Redis"),
            }
            return Ok(());
        }
        let Some(channel) = message
            .get_channel_name()
            .strip_prefix(MESSAGE_PREFIX)
            .and_then(|name| ChannelName::parse(name).ok())
        else {
            return Ok(());
        };
        if let Some(diff) = super::presence_read::parse_diff(message.get_payload_bytes()) {
            match diff {
                Some((node, _)) if node == self.shared.node => {}
                Some((_, diff)) => hub.remote_presence_diff(&channel, diff.joins, diff.leaves),
                None => tracing::warn!(%channel, "ignored a malformed presence diff from Redis"),
            }
            return Ok(());
        }
        let Some((epoch, offset, data)) = parse_payload(message.get_payload_bytes()) else {
            tracing::warn!(%channel, "ignored a malformed message from Redis");
            return Ok(());
        };
        match hub.deliver_from_broker(&channel, epoch, offset, data) {
            Live::Gap if self.followed.contains(&channel) => {
                tracing::info!(%channel, offset, "gap in the Redis stream; catching up from history");
                self.recover(hub, &channel).await
            }
            _ => Ok(()),
        }
    }

    /// A control command another node published: applied here, never awaited.
    fn on_control(&self, hub: &Hub, payload: &[u8]) {
        match control::decode(payload) {
            Some((node, _)) if node == self.shared.node => {}
            Some((node, Received::Command(command))) => {
                let acted = hub.apply_control(&command);
                tracing::info!(from_node = %node, ?command, acted, "applied a control command");
            }
            Some((node, Received::ListUser { user, request })) => {
                self.shared.answer(hub, &node, &user, request);
            }
            None => tracing::warn!("ignored a malformed control command from Redis"),
        }
    }

    /// Catches this node's copy of `channel` up from Redis history.
    async fn recover(&mut self, hub: &Hub, channel: &ChannelName) -> Result<(), Lost> {
        let snapshot = self
            .shared
            .snapshot(channel, true)
            .await
            .map_err(|_| Lost)?;
        if let Some(snapshot) = snapshot {
            match hub.catch_up_from_broker(channel, &snapshot) {
                Ok(recovered) => {
                    self.shared.stats.recoveries.inc();
                    tracing::debug!(%channel, recovered, "caught up from Redis history");
                }
                Err(error) => tracing::warn!(%channel, %error, "could not catch a channel up"),
            }
        }
        Ok(())
    }
}

/// `epoch \n offset \n data`, as the publish script sends it.
fn parse_payload(payload: &[u8]) -> Option<(&str, u64, &str)> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.splitn(3, '\n');
    let epoch = parts.next()?;
    let offset = parts.next()?.parse().ok()?;
    Some((epoch, offset, parts.next()?))
}

/// Exponential backoff with full jitter.
fn backoff(failures: u32) -> Duration {
    let ceiling = BACKOFF_FIRST
        .saturating_mul(1 << failures.min(16))
        .min(BACKOFF_MAX);
    ceiling.mul_f64(rand::rng().random_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_keeps_newlines_in_data() {
        assert_eq!(
            parse_payload(b"e1\n7\n{\n\"a\": 1}"),
            Some(("e1", 7, "{\n\"a\": 1}"))
        );
        assert_eq!(parse_payload(b"e1\nx\n1"), None);
    }

    #[test]
    fn backoff_grows_and_stays_bounded() {
        assert!(backoff(1) <= BACKOFF_FIRST * 2);
        assert!(backoff(30) <= BACKOFF_MAX);
    }
}
