//! What a backend may do to users and channels (`/api/users/…`, `/api/channels/…/disconnect`):
//! end every connection of a user, take a user off a channel on each of its connections, take
//! every subscriber off a channel, and list a user's connections.
//!
//! A user's clients come from the user index (`events::UserIndex`), not a scan of every
//! client: a call costs what that user has, however many clients the hub holds. Clients are
//! cloned out of the maps first and acted on after every guard is dropped.

use std::sync::Arc;

use crate::protocol::bodies::UserConnection;
use crate::protocol::{server, ChannelName, DisconnectReason};

use super::client::{Client, ClientId, TransportKind};
use super::{Hub, HubError};

/// A backend command that acts on users' connections or a channel's subscribers. On a
/// cluster node it acts on every node ([`Hub::control`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlCommand {
    /// End every connection of `user` (4006 `reconnect_by_backend` with `reconnect`, else
    /// 4005 `disconnected_by_backend`).
    DisconnectUser { user: String, reconnect: bool },
    /// Take every connection of `user` off `channel`.
    UnsubscribeUser { user: String, channel: ChannelName },
    /// Take every subscriber off `channel`.
    EmptyChannel { channel: ChannelName },
}

/// What other nodes answered about a user ([`super::broker::ClusterBroker::gather_user`]).
#[derive(Debug, Default)]
pub struct Gathered {
    /// Nodes the question reached (this one included while it listens).
    pub nodes: usize,
    /// One answer per node that answered in time: its connections of the user.
    pub answers: Vec<Vec<UserConnection>>,
}

/// A user's connections as `GET /api/users/{user}` lists them; `nodes` and `answered` on a
/// cluster node only.
#[derive(Debug)]
pub struct UserConnections {
    pub connections: Vec<UserConnection>,
    pub nodes: Option<usize>,
    pub answered: Option<usize>,
}

/// What a control command did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlOutcome {
    /// Connections this node acted on.
    pub local: usize,
    /// On a cluster node, how many nodes received the command from the broker (this one
    /// included while it listens); `None` on a single node.
    pub nodes: Option<usize>,
}

/// One connection of a user, for `GET /api/users/{user}`.
#[derive(Debug, Clone)]
pub struct Connection {
    pub client: ClientId,
    pub transport: TransportKind,
    pub channels: Vec<ChannelName>,
    /// Unix ms when it was admitted.
    pub connected_at_ms: u64,
}

impl Connection {
    /// As `GET /api/users/{user}` lists it; `node` on a cluster node.
    pub fn to_body(&self, node: Option<&str>) -> UserConnection {
        UserConnection {
            client: self.client.to_string(),
            transport: self.transport.as_str().to_owned(),
            channels: self.channels.clone(),
            connected_at_ms: self.connected_at_ms,
            node: node.map(str::to_owned),
        }
    }
}

impl Hub {
    /// Runs `command` here and, on a cluster node, on every other node: the broker carries it
    /// first, so a broker that cannot be reached refuses it (`broker_unavailable`) before this
    /// node acts — the caller retries the whole command (each one is idempotent).
    pub async fn control(&self, command: &ControlCommand) -> Result<ControlOutcome, HubError> {
        let nodes = match self.cluster() {
            None => None,
            Some(broker) => {
                let _permit = broker.admit()?;
                Some(broker.broadcast(command).await?)
            }
        };
        Ok(ControlOutcome {
            local: self.apply_control(command),
            nodes,
        })
    }

    /// Runs `command` on this node only (what a cluster node does with one it received);
    /// returns how many connections it acted on.
    pub fn apply_control(&self, command: &ControlCommand) -> usize {
        match command {
            ControlCommand::DisconnectUser { user, reconnect } => {
                let reason = if *reconnect {
                    DisconnectReason::ReconnectByBackend
                } else {
                    DisconnectReason::DisconnectedByBackend
                };
                self.disconnect_user(user, reason)
            }
            ControlCommand::UnsubscribeUser { user, channel } => {
                self.unsubscribe_user(user, channel)
            }
            ControlCommand::EmptyChannel { channel } => self.unsubscribe_all(channel),
        }
    }

    /// The connections of `user` on every node that answers: this node's at once, the
    /// others' within the broker's timeout (oldest first, then by node and client).
    pub async fn user_connections_everywhere(
        &self,
        user: &str,
    ) -> Result<UserConnections, HubError> {
        let here = |node: Option<&str>| -> Vec<UserConnection> {
            self.user_connections(user)
                .iter()
                .map(|c| c.to_body(node))
                .collect()
        };
        let Some(broker) = self.cluster() else {
            return Ok(UserConnections {
                connections: here(None),
                nodes: None,
                answered: None,
            });
        };
        let _permit = broker.admit()?;
        let gathered = broker.gather_user(user).await?;
        let answered = gathered.answers.len() + 1;
        let mut connections = here(Some(broker.node()));
        connections.extend(gathered.answers.into_iter().flatten());
        connections.sort_by(|a, b| {
            (a.connected_at_ms, &a.node, &a.client).cmp(&(b.connected_at_ms, &b.node, &b.client))
        });
        Ok(UserConnections {
            connections,
            nodes: Some(gathered.nodes.max(answered)),
            answered: Some(answered),
        })
    }

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
