//! Presence across a cluster: each node tells its broker who joins and leaves its channels
//! with presence (never waiting: `ClusterPresence::member_changed` only queues), and the
//! `presence` and `presence_stats` reads ask the broker, which holds every node's members;
//! other nodes' joins and leaves come back as diffs for the next `presence_diff` flush.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::protocol::{ChannelName, PresenceStats};

pub use super::channel::StoredMember;
use super::client::{Client, ClientId};
use super::presence::Members;
pub use super::presence::PRESENCE_PAGE;
use super::{Hub, HubError};

/// A member joining (with its stored form) or leaving a channel with presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    Joined {
        user: Option<Arc<str>>,
        member: String,
    },
    Left {
        user: Option<Arc<str>>,
    },
}

/// A page of members as stored (their JSON), and the cursor of the next page.
pub type StoredPage = (Vec<String>, Option<u64>);

/// What a cluster broker does for presence. `member_changed` never waits: it queues (a full
/// queue is counted, and repaired by the broker re-stating this node's members).
pub trait ClusterPresence {
    fn member_changed(&self, channel: &ChannelName, client: ClientId, change: MemberChange);

    /// A page of the channel's members as stored (their JSON), from `cursor` (0: the first
    /// page), and the cursor of the next page.
    fn presence_page<'a>(
        &'a self,
        channel: &'a ChannelName,
        cursor: u64,
    ) -> BoxFuture<'a, Result<StoredPage, HubError>>;

    fn presence_stats<'a>(
        &'a self,
        channel: &'a ChannelName,
    ) -> BoxFuture<'a, Result<PresenceStats, HubError>>;

    /// This node holds a connection of `user` again (its first here): `true` when the user
    /// is online anew across the cluster (this node announces it, and no other).
    fn user_up<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<bool, HubError>>;

    /// This node let go of `user`'s last connection here: `true` when no node holds one (ask
    /// [`ClusterPresence::user_offline`] after the grace).
    fn user_down<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<bool, HubError>>;

    /// Decides `user_offline` for `user` after `grace`, for exactly one caller.
    fn user_offline<'a>(
        &'a self,
        user: &'a str,
        grace: std::time::Duration,
    ) -> BoxFuture<'a, Result<OfflineCheck, HubError>>;
}

/// What [`ClusterPresence::user_offline`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfflineCheck {
    /// Offline: announce it (Unix ms when the last connection ended). Only one caller gets it.
    Offline { at_ms: u64 },
    /// Not yet: ask again after this long.
    Wait(std::time::Duration),
    /// Nothing to announce (back online, or decided elsewhere).
    Nothing,
}

/// One member of this node, as a resync states it: channel, client, user, stored JSON.
pub type LocalMember = (ChannelName, ClientId, Option<Arc<str>>, String);

impl Hub {
    /// Under `channel`'s lock, after `client` joined (`joined`) or left it: tells a cluster
    /// broker, for channels with presence.
    pub(super) fn tell_cluster(&self, channel: &ChannelName, client: &Client, joined: bool) {
        let Some(broker) = self.cluster() else { return };
        if !self.inner.config.presence(channel) {
            return;
        }
        let user = super::events::user_of(client);
        let change = if joined {
            MemberChange::Joined {
                user,
                member: StoredMember::json_of(client, broker.node()),
            }
        } else {
            MemberChange::Left { user }
        };
        broker.member_changed(channel, client.id, change);
    }

    /// Every member of this node's channels with presence (what a broker re-states after it
    /// lost track).
    pub fn local_members(&self) -> Vec<LocalMember> {
        let Some(broker) = self.cluster() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for name in self.inner.registry.channel_names() {
            if !self.inner.config.presence(&name) {
                continue;
            }
            let Some(ch) = self.inner.registry.channel(&name) else {
                continue;
            };
            for client in ch.lock().subscribers() {
                let json = StoredMember::json_of(&client, broker.node());
                out.push((
                    name.clone(),
                    client.id,
                    super::events::user_of(&client),
                    json,
                ));
            }
        }
        out
    }

    /// Another node's joins and leaves on `channel` (a diff its broker fanned out): kept for
    /// this node's next presence flush, for the members here that listen.
    pub fn remote_presence_diff(
        &self,
        channel: &ChannelName,
        joins: Vec<StoredMember>,
        leaves: Vec<StoredMember>,
    ) {
        let Some(ch) = self.inner.registry.channel(channel) else {
            return;
        };
        let (dirty, dropped) = ch.lock().remote_presence(joins, leaves);
        if dropped > 0 {
            self.inner.stats.broker.dropped.inc_by(dropped as u64);
            tracing::warn!(%channel, dropped, "too many remote joins and leaves for one presence flush");
        }
        if dirty {
            self.presence_changed(channel);
        }
    }

    /// [`Hub::presence`], across every node on a cluster node.
    pub async fn presence_stored(
        &self,
        channel: &ChannelName,
        cursor: u64,
    ) -> Result<Members, HubError> {
        let Some(broker) = self.cluster() else {
            return self.presence(channel, cursor);
        };
        if !self.inner.config.presence(channel) {
            return Err(HubError::PresenceDisabled(channel.clone()));
        }
        let _permit = broker.admit()?;
        let (page, next) = broker.presence_page(channel, cursor).await?;
        let members = page
            .iter()
            .filter_map(|json| serde_json::from_str(json).ok())
            .collect();
        Ok(Members::stored(channel, members, next))
    }

    /// [`Hub::presence_stats`], across every node on a cluster node.
    pub async fn presence_stats_stored(
        &self,
        channel: &ChannelName,
    ) -> Result<PresenceStats, HubError> {
        let Some(broker) = self.cluster() else {
            return self.presence_stats(channel);
        };
        if !self.inner.config.presence(channel) {
            return Err(HubError::PresenceDisabled(channel.clone()));
        }
        let _permit = broker.admit()?;
        broker.presence_stats(channel).await
    }
}
