//! The event seam: what changes who is connected and who is in which channel, told to one
//! [`EventSink`] installed once (webhooks, presence). The hub calls the sink synchronously,
//! at the moment of the change, so the sink sees each channel's events in the order they
//! happened (a channel's events are emitted under its lock) — and so the sink must never
//! block, await or call back into the hub: push into a bounded queue and return.
//!
//! Cost: with no sink installed, each connect, disconnect, subscribe and unsubscribe pays one
//! atomic load (`OnceLock::get`); the publish path emits nothing. A cluster node also tells
//! its broker of joins and leaves in channels with presence (`cluster_presence`).
//!
//! Also here: the user → clients index ([`UserIndex`]) the backend control API reads, kept
//! in step with the same two moments as `Connected`/`Disconnected` (see [`Hub::admitted`]).

use std::sync::Arc;

use dashmap::DashMap;

use crate::protocol::{ChannelName, DisconnectReason};

use super::client::{Client, ClientId, TransportKind};
use super::Hub;

/// One change in membership, as the hub saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HubEvent {
    /// A client was admitted (its identity, if any, attached). `first_of_user`: the user had
    /// no other connection.
    Connected {
        client: ClientId,
        transport: TransportKind,
        user: Option<Arc<str>>,
        first_of_user: bool,
    },
    /// An admitted client left. `last_of_user`: the user has no connection left.
    Disconnected {
        client: ClientId,
        transport: TransportKind,
        user: Option<Arc<str>>,
        reason: DisconnectReason,
        last_of_user: bool,
    },
    /// A channel got its first subscriber (emitted before that subscriber's `MemberAdded`).
    ChannelOccupied { channel: ChannelName },
    /// A channel lost its last subscriber (emitted after that subscriber's `MemberRemoved`).
    ChannelVacated { channel: ChannelName },
    MemberAdded {
        channel: ChannelName,
        client: ClientId,
        user: Option<Arc<str>>,
    },
    MemberRemoved {
        channel: ChannelName,
        client: ClientId,
        user: Option<Arc<str>>,
    },
    /// Cluster only, from the broker rather than a client: `online`, the user is online anew
    /// (this node re-stated it after Redis lost track); else a node that stopped beating held
    /// the user's last connection in the cluster (check `user_offline` after the grace).
    ClusterUser { user: Arc<str>, online: bool },
}

/// Receives the hub's events. Called synchronously, possibly under a channel lock: must
/// return at once without blocking, and must not call into the hub.
pub trait EventSink: Send + Sync + 'static {
    fn emit(&self, event: HubEvent);
}

/// The user of a client (its token's `sub`), `None` in open mode.
pub(super) fn user_of(client: &Client) -> Option<Arc<str>> {
    client.identity().map(|i| i.principal().user.clone())
}

/// Every connected client of each user with a token, with when it connected (Unix ms).
/// Kept by the hub at admission and disconnect; an entry goes with its user's last client.
#[derive(Default)]
pub(super) struct UserIndex {
    users: DashMap<Arc<str>, Vec<(ClientId, u64)>>,
}

impl UserIndex {
    /// Adds a client; `true` when it is the user's first.
    fn add(&self, user: &Arc<str>, id: ClientId, since_ms: u64) -> bool {
        let mut entry = self.users.entry(user.clone()).or_default();
        entry.push((id, since_ms));
        entry.len() == 1
    }

    /// Removes a client; `true` when it was the user's last.
    fn remove(&self, user: &str, id: ClientId) -> bool {
        let mut last = false;
        if let Some(mut entry) = self.users.get_mut(user) {
            entry.retain(|(c, _)| *c != id);
            last = entry.is_empty();
        }
        if last {
            // Re-checked under the shard lock: a connection may have come in between.
            self.users.remove_if(user, |_, clients| clients.is_empty());
        }
        last
    }

    pub fn clients(&self, user: &str) -> Vec<(ClientId, u64)> {
        self.users
            .get(user)
            .map(|e| e.value().clone())
            .unwrap_or_default()
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Every user with a connection here.
    pub fn users(&self) -> Vec<Arc<str>> {
        self.users.iter().map(|e| e.key().clone()).collect()
    }
}

impl Hub {
    /// Installs the one event sink; `false` if one was installed already.
    pub fn set_event_sink(&self, sink: Arc<dyn EventSink>) -> bool {
        self.inner.events.set(sink).is_ok()
    }

    #[inline]
    pub(super) fn sink(&self) -> Option<&Arc<dyn EventSink>> {
        self.inner.events.get()
    }

    /// Announces a client once its identity is attached (transports call this right after
    /// `register`, through `transport::identity::Identity::attach`): indexes it under its
    /// user and emits `Connected`. A client disconnected before this is never announced, and
    /// `disconnect` emits `Disconnected` only for announced clients — both decided under the
    /// client's subscription lock, so the two events can never come in the wrong order.
    pub fn admitted(&self, client: &Client) {
        let user = user_of(client);
        client.announce(|| {
            let first_of_user = user.as_ref().is_some_and(|u| {
                self.inner
                    .users
                    .add(u, client.id, crate::auth::token::unix_now_ms())
            });
            if let Some(sink) = self.sink() {
                sink.emit(HubEvent::Connected {
                    client: client.id,
                    transport: client.transport,
                    user: user.clone(),
                    first_of_user,
                });
            }
        });
    }

    /// The end of `disconnect` for an announced client: out of the index, `Disconnected`.
    pub(super) fn departed(&self, client: &Client, reason: DisconnectReason) {
        let user = user_of(client);
        let last_of_user = user
            .as_deref()
            .is_some_and(|u| self.inner.users.remove(u, client.id));
        if let Some(sink) = self.sink() {
            sink.emit(HubEvent::Disconnected {
                client: client.id,
                transport: client.transport,
                user,
                reason,
                last_of_user,
            });
        }
    }

    /// A cluster broker's news about a user ([`HubEvent::ClusterUser`]).
    pub fn cluster_user(&self, user: Arc<str>, online: bool) {
        if let Some(sink) = self.sink() {
            sink.emit(HubEvent::ClusterUser { user, online });
        }
    }

    /// Users with a connection on this node (what a cluster broker re-states).
    pub fn local_users(&self) -> Vec<Arc<str>> {
        self.inner.users.users()
    }

    /// Under `channel`'s lock, after `client` joined it: `ChannelOccupied` if it was the
    /// first, then `MemberAdded`.
    pub(super) fn joined(&self, channel: &ChannelName, client: &Client, first: bool) {
        self.tell_cluster(channel, client, true);
        let Some(sink) = self.sink() else { return };
        if first {
            sink.emit(HubEvent::ChannelOccupied {
                channel: channel.clone(),
            });
        }
        sink.emit(HubEvent::MemberAdded {
            channel: channel.clone(),
            client: client.id,
            user: user_of(client),
        });
    }

    /// Under `channel`'s lock, after `client` left it: `MemberRemoved`, then
    /// `ChannelVacated` if it was the last.
    pub(super) fn left(&self, channel: &ChannelName, client: &Client, last: bool) {
        self.tell_cluster(channel, client, false);
        let Some(sink) = self.sink() else { return };
        sink.emit(HubEvent::MemberRemoved {
            channel: channel.clone(),
            client: client.id,
            user: user_of(client),
        });
        if last {
            sink.emit(HubEvent::ChannelVacated {
                channel: channel.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::hub::HubConfig;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<HubEvent>>);

    impl EventSink for Recorder {
        fn emit(&self, event: HubEvent) {
            self.0.lock().unwrap().push(event);
        }
    }

    #[test]
    fn membership_changes_are_emitted_in_order() {
        let hub = Hub::new(HubConfig::default(), CancellationToken::new());
        let recorder = Arc::new(Recorder::default());
        assert!(hub.set_event_sink(recorder.clone()));
        assert!(!hub.set_event_sink(recorder.clone()), "installed once");
        let a = hub.register(TransportKind::WebSocket).unwrap();
        let b = hub.register(TransportKind::LongPoll).unwrap();
        hub.admitted(&a);
        hub.admitted(&b);
        let room = ChannelName::parse("room").unwrap();
        let reply =
            &|s: &crate::protocol::Subscribed<'_>| crate::protocol::server::subscribed(s, None);
        hub.subscribe(&a, &room, None, reply).unwrap();
        hub.subscribe(&b, &room, None, reply).unwrap();
        hub.unsubscribe(&a, &room).unwrap();
        hub.disconnect(b.id, DisconnectReason::ClientClosed);
        hub.disconnect(a.id, DisconnectReason::Slow);
        let events = recorder.0.lock().unwrap().clone();
        use HubEvent::*;
        let expected = vec![
            Connected {
                client: a.id,
                transport: TransportKind::WebSocket,
                user: None,
                first_of_user: false,
            },
            Connected {
                client: b.id,
                transport: TransportKind::LongPoll,
                user: None,
                first_of_user: false,
            },
            ChannelOccupied {
                channel: room.clone(),
            },
            MemberAdded {
                channel: room.clone(),
                client: a.id,
                user: None,
            },
            MemberAdded {
                channel: room.clone(),
                client: b.id,
                user: None,
            },
            MemberRemoved {
                channel: room.clone(),
                client: a.id,
                user: None,
            },
            MemberRemoved {
                channel: room.clone(),
                client: b.id,
                user: None,
            },
            ChannelVacated { channel: room },
            Disconnected {
                client: b.id,
                transport: TransportKind::LongPoll,
                user: None,
                reason: DisconnectReason::ClientClosed,
                last_of_user: false,
            },
            Disconnected {
                client: a.id,
                transport: TransportKind::WebSocket,
                user: None,
                reason: DisconnectReason::Slow,
                last_of_user: false,
            },
        ];
        assert_eq!(events, expected);
    }

    #[test]
    fn a_client_gone_before_admission_is_never_announced() {
        let hub = Hub::new(HubConfig::default(), CancellationToken::new());
        let recorder = Arc::new(Recorder::default());
        hub.set_event_sink(recorder.clone());
        let a = hub.register(TransportKind::WebSocket).unwrap();
        hub.disconnect(a.id, DisconnectReason::ClientClosed);
        hub.admitted(&a);
        assert!(recorder.0.lock().unwrap().is_empty());
    }
}
