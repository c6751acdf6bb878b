//! Presence: who is subscribed to a channel that keeps it (`presence`, in pages), how many
//! clients and distinct users (`presence_stats`, O(1)), and the flush that sends coalesced
//! joins and leaves (`presence_diff`) at most once per `--presence-batch` per channel — a
//! reconnect storm of N members costs each listener one frame per window, not N.

use std::sync::Arc;

use crate::auth::Principal;
use crate::protocol::{presence, ChannelName, Frame, Member, PresenceStats};

use super::channel::StoredMember;
use super::{Client, Hub, HubError};

/// Most members one `presence` page lists.
pub const PRESENCE_PAGE: usize = 200;

/// A page of members, holding what their frame borrows: this node's clients, or on a
/// cluster node the members every node stored in the broker.
pub struct Members {
    pub channel: ChannelName,
    clients: Vec<(String, Option<Arc<Principal>>)>,
    stored: Vec<StoredMember>,
    pub next: Option<u64>,
}

impl Members {
    fn of(channel: &ChannelName, clients: &[Arc<Client>], next: Option<u64>) -> Self {
        Self {
            channel: channel.clone(),
            clients: clients.iter().map(member_of).collect(),
            stored: Vec::new(),
            next,
        }
    }

    pub(super) fn stored(
        channel: &ChannelName,
        stored: Vec<StoredMember>,
        next: Option<u64>,
    ) -> Self {
        Self {
            channel: channel.clone(),
            clients: Vec::new(),
            stored,
            next,
        }
    }

    /// The page as the contract's shape (borrowing from `self`).
    pub fn page(&self) -> crate::protocol::PresencePage<'_> {
        crate::protocol::PresencePage {
            channel: &self.channel,
            members: members(&self.clients)
                .into_iter()
                .chain(self.stored.iter().map(StoredMember::member))
                .collect(),
            next: self.next,
        }
    }
}

fn member_of(client: &Arc<Client>) -> (String, Option<Arc<Principal>>) {
    (
        client.id.to_string(),
        client.identity().map(|i| i.principal()),
    )
}

fn members(clients: &[(String, Option<Arc<Principal>>)]) -> Vec<Member<'_>> {
    members_at(clients, None)
}

fn members_at<'a>(
    clients: &'a [(String, Option<Arc<Principal>>)],
    node: Option<&'a str>,
) -> Vec<Member<'a>> {
    clients
        .iter()
        .map(|(client, principal)| Member {
            client: client.clone(),
            node,
            user: principal.as_ref().map(|p| &*p.user),
            info: principal.as_ref().and_then(|p| p.info.as_deref()),
        })
        .collect()
}

impl Hub {
    fn presence_channel(
        &self,
        channel: &ChannelName,
    ) -> Result<Option<Arc<super::channel::Channel>>, HubError> {
        if !self.inner.config.presence(channel) {
            return Err(HubError::PresenceDisabled(channel.clone()));
        }
        Ok(self.inner.registry.channel(channel))
    }

    /// The members after `cursor` (a client id; 0 for the first page), at most
    /// `PRESENCE_PAGE`, in a stable order.
    pub fn presence(&self, channel: &ChannelName, cursor: u64) -> Result<Members, HubError> {
        let Some(ch) = self.presence_channel(channel)? else {
            return Ok(Members::of(channel, &[], None));
        };
        let (clients, next) = ch.lock().members_after(cursor, PRESENCE_PAGE);
        Ok(Members::of(channel, &clients, next))
    }

    pub fn presence_stats(&self, channel: &ChannelName) -> Result<PresenceStats, HubError> {
        let Some(ch) = self.presence_channel(channel)? else {
            return Ok(PresenceStats {
                clients: 0,
                users: 0,
            });
        };
        let state = ch.lock();
        Ok(PresenceStats {
            clients: state.subscriber_count(),
            users: state.presence_users(),
        })
    }

    /// Queues `channel` for the next flush (its presence changed and someone listens).
    pub(super) fn presence_changed(&self, channel: &ChannelName) {
        let mut dirty = self
            .inner
            .presence_dirty
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        dirty.push(channel.clone());
    }

    /// Sends each listening member one `presence_diff` per channel whose members changed
    /// since the last flush. Run every `--presence-batch` by the server; returns how many
    /// frames it queued.
    pub fn flush_presence(&self) -> usize {
        let names = std::mem::take(
            &mut *self
                .inner
                .presence_dirty
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        let mut sent = 0;
        for name in names {
            let Some(ch) = self.inner.registry.channel(&name) else {
                continue;
            };
            let diff = ch.lock().take_presence_diff();
            let news = diff.joins.len()
                + diff.leaves.len()
                + diff.remote_joins.len()
                + diff.remote_leaves.len();
            if diff.listeners.is_empty() || news == 0 {
                continue;
            }
            // On a cluster node every member names its node (client ids are per node).
            let node = self.cluster().map(|broker| broker.node());
            let joins: Vec<_> = diff.joins.iter().map(member_of).collect();
            let leaves: Vec<_> = diff.leaves.iter().map(member_of).collect();
            let joins: Vec<Member<'_>> = members_at(&joins, node)
                .into_iter()
                .chain(diff.remote_joins.iter().map(StoredMember::member))
                .collect();
            let leaves: Vec<Member<'_>> = members_at(&leaves, node)
                .into_iter()
                .chain(diff.remote_leaves.iter().map(StoredMember::member))
                .collect();
            let frame: Frame = presence::presence_diff(&name, &joins, &leaves);
            for client in &diff.listeners {
                self.send(client, frame.clone());
                sent += 1;
            }
        }
        sent
    }
}
