//! What a backend may do to users and channels (`/api/users/…`, `/api/channels/…/disconnect`):
//! end every connection of a user, take a user off a channel on each of its connections, take
//! every subscriber off a channel, and list a user's connections.
//!
//! A user's clients come from the user index (`events::UserIndex`), not a scan of every
//! client: a call costs what that user has, however many clients the hub holds. Clients are
//! cloned out of the maps first and acted on after every guard is dropped.

use std::sync::Arc;

use crate::protocol::{server, ChannelName, DisconnectReason};

use super::client::{Client, ClientId, TransportKind};
use super::Hub;

/// One connection of a user, for `GET /api/users/{user}`.
#[derive(Debug, Clone)]
pub struct Connection {
    pub client: ClientId,
    pub transport: TransportKind,
    pub channels: Vec<ChannelName>,
    /// Unix ms when it was admitted.
    pub connected_at_ms: u64,
}

impl Hub {
    /// Every connected client of `user` (clients with a token whose `sub` is `user`).
    pub fn user_clients(&self, user: &str) -> Vec<(Arc<Client>, u64)> {
        self.inner
            .users
            .clients(user)
            .into_iter()
            .filter_map(|(id, since)| Some((self.client(id)?, since)))
            .collect()
    }

    /// The connections of `user`, oldest first.
    pub fn user_connections(&self, user: &str) -> Vec<Connection> {
        let mut connections: Vec<Connection> = self
            .user_clients(user)
            .into_iter()
            .map(|(client, since)| Connection {
                client: client.id,
                transport: client.transport,
                channels: client.channels(),
                connected_at_ms: since,
            })
            .collect();
        connections.sort_by_key(|c| (c.connected_at_ms, c.client));
        connections
    }

    /// Users with at least one connection now.
    pub fn user_count(&self) -> usize {
        self.inner.users.user_count()
    }

    /// Ends every connection of `user` with `reason`; returns how many.
    pub fn disconnect_user(&self, user: &str, reason: DisconnectReason) -> usize {
        self.user_clients(user)
            .into_iter()
            .filter(|(client, _)| self.disconnect(client.id, reason))
            .count()
    }

    /// Takes every connection of `user` off `channel`, each told with an `unsubscribed`
    /// frame; returns how many were subscribed.
    pub fn unsubscribe_user(&self, user: &str, channel: &ChannelName) -> usize {
        self.user_clients(user)
            .into_iter()
            .filter(|(client, _)| self.unsubscribe_by_backend(client, channel))
            .count()
    }

    /// Takes every subscriber off `channel` (their connections stay), each told with an
    /// `unsubscribed` frame; returns how many.
    pub fn unsubscribe_all(&self, channel: &ChannelName) -> usize {
        let Some(ch) = self.inner.registry.channel(channel) else {
            return 0;
        };
        let subscribers = ch.lock().subscribers();
        subscribers
            .iter()
            .filter(|client| self.unsubscribe_by_backend(client, channel))
            .count()
    }

    /// `unsubscribe` on the backend's behalf: the `unsubscribed` frame (no `id`: the client
    /// did not ask) follows the channel's last message to this client, and nothing after it.
    fn unsubscribe_by_backend(&self, client: &Arc<Client>, channel: &ChannelName) -> bool {
        if self.unsubscribe(client, channel).is_err() {
            return false;
        }
        self.send(client, server::unsubscribed(channel, None));
        true
    }
}
