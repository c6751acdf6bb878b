//! A channel's presence: its distinct users (so `presence_stats` is O(1)), the members who
//! want join/leave frames, and the joins and leaves not yet sent, coalesced until the next
//! flush (`Hub::flush_presence`). Only channels whose namespace has presence keep one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::protocol::Member;

use super::super::client::{Client, ClientId};
use super::ChannelState;

/// Other nodes' joins plus leaves one channel keeps between two flushes; past it they are
/// dropped (counted by the caller): a listener then misses some, and can ask `presence`.
pub const REMOTE_PENDING_MAX: usize = 4096;

/// What a flush sends on one channel, and to whom.
#[derive(Default)]
pub(crate) struct PresenceDiff {
    pub joins: Vec<Arc<Client>>,
    pub leaves: Vec<Arc<Client>>,
    /// Other nodes' (on a cluster node).
    pub remote_joins: Vec<StoredMember>,
    pub remote_leaves: Vec<StoredMember>,
    pub listeners: Vec<Arc<Client>>,
}

#[derive(Default)]
pub(crate) struct Presence {
    /// Connections per user (tokens on): a user with two devices counts once.
    users: HashMap<Arc<str>, u32>,
    /// Members that asked for `presence_diff` frames.
    listeners: HashSet<ClientId>,
    /// Joined and left since the last flush. A member that joins and leaves within one
    /// window appears in neither: a reconnect storm costs each listener one frame per window.
    /// Keyed by client, so a leave that cancels a join in the same window costs O(1), not a
    /// scan: a reconnect storm of N members stays O(N) under the channel lock.
    joins: HashMap<ClientId, Arc<Client>>,
    leaves: Vec<Arc<Client>>,
    /// The same for other nodes' members, keyed by `node:client`.
    remote_joins: HashMap<String, StoredMember>,
    remote_leaves: Vec<StoredMember>,
    /// Queued for the next flush already.
    pub dirty: bool,
}

fn user_of(client: &Client) -> Option<Arc<str>> {
    client.identity().map(|i| i.principal().user.clone())
}

impl ChannelState {
    /// Records a new member of a channel with presence; `true` when the channel now has
    /// joins or leaves to send and was not queued for the flush yet.
    pub fn presence_join(&mut self, client: &Arc<Client>, listens: bool) -> bool {
        let presence = self.presence.get_or_insert_with(Box::default);
        if let Some(user) = user_of(client) {
            *presence.users.entry(user).or_insert(0) += 1;
        }
        if listens {
            presence.listeners.insert(client.id);
        }
        presence.joins.insert(client.id, client.clone());
        presence.mark_dirty()
    }

    /// Records a member leaving; like [`Self::presence_join`] for the return value.
    pub fn presence_leave(&mut self, client: &Arc<Client>) -> bool {
        let Some(presence) = self.presence.as_mut() else {
            return false;
        };
        if let Some(user) = user_of(client) {
            if let Some(count) = presence.users.get_mut(&user) {
                *count -= 1;
                if *count == 0 {
                    presence.users.remove(&user);
                }
            }
        }
        presence.listeners.remove(&client.id);
        if presence.joins.remove(&client.id).is_none() {
            presence.leaves.push(client.clone());
        }
        presence.mark_dirty()
    }

    /// Other nodes' joins and leaves, kept for the next flush only while a member here
    /// listens. Returns (newly dirty, how many were dropped past [`REMOTE_PENDING_MAX`]).
    pub fn remote_presence(
        &mut self,
        joins: Vec<StoredMember>,
        leaves: Vec<StoredMember>,
    ) -> (bool, usize) {
        let Some(presence) = self.presence.as_mut() else {
            return (false, 0);
        };
        if presence.listeners.is_empty() {
            return (false, 0);
        }
        let mut dropped = 0;
        for member in joins {
            if presence.remote_pending() >= REMOTE_PENDING_MAX {
                dropped += 1;
                continue;
            }
            presence.remote_joins.insert(member.key(), member);
        }
        for member in leaves {
            // A leave that cancels a join of the same window costs nothing.
            if presence.remote_joins.remove(&member.key()).is_some() {
                continue;
            }
            if presence.remote_pending() >= REMOTE_PENDING_MAX {
                dropped += 1;
                continue;
            }
            presence.remote_leaves.push(member);
        }
        (presence.mark_dirty(), dropped)
    }

    /// Distinct users (with tokens on) among the members.
    pub fn presence_users(&self) -> usize {
        self.presence.as_ref().map_or(0, |p| p.users.len())
    }

    /// Takes the joins and leaves to send and the members to send them to.
    pub fn take_presence_diff(&mut self) -> PresenceDiff {
        let Some(presence) = self.presence.as_mut() else {
            return PresenceDiff::default();
        };
        presence.dirty = false;
        PresenceDiff {
            joins: std::mem::take(&mut presence.joins).into_values().collect(),
            leaves: std::mem::take(&mut presence.leaves),
            remote_joins: std::mem::take(&mut presence.remote_joins)
                .into_values()
                .collect(),
            remote_leaves: std::mem::take(&mut presence.remote_leaves),
            listeners: presence
                .listeners
                .iter()
                .filter_map(|id| self.subscribers.get(id).cloned())
                .collect(),
        }
    }

    /// The members after `cursor` (a client id), in client-id order, at most `limit`; and the
    /// cursor of the next page, if there is one.
    pub fn members_after(&self, cursor: u64, limit: usize) -> (Vec<Arc<Client>>, Option<u64>) {
        let mut members: Vec<&Arc<Client>> = self
            .subscribers
            .values()
            .filter(|c| c.id.0 > cursor)
            .collect();
        members.sort_unstable_by_key(|c| c.id);
        let next = (members.len() > limit).then(|| members[limit - 1].id.0);
        members.truncate(limit);
        (members.into_iter().cloned().collect(), next)
    }
}

impl Presence {
    fn remote_pending(&self) -> usize {
        self.remote_joins.len() + self.remote_leaves.len()
    }

    fn mark_dirty(&mut self) -> bool {
        let has_news = !self.joins.is_empty()
            || !self.leaves.is_empty()
            || !self.remote_joins.is_empty()
            || !self.remote_leaves.is_empty();
        if has_news && !self.dirty && !self.listeners.is_empty() {
            self.dirty = true;
            return true;
        }
        if self.listeners.is_empty() {
            // Nobody listens: nothing to keep for a flush.
            self.joins.clear();
            self.leaves.clear();
            self.remote_joins.clear();
            self.remote_leaves.clear();
        }
        false
    }
}

/// A member as the broker stores it: the `presence` member plus the node holding it.
#[derive(Debug, Serialize, Deserialize)]
pub struct StoredMember {
    client: String,
    node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    info: Option<Box<RawValue>>,
}

impl StoredMember {
    /// `node:client`: unique across the cluster.
    pub(in crate::hub) fn key(&self) -> String {
        format!("{}:{}", self.node, self.client)
    }

    pub(in crate::hub) fn member(&self) -> Member<'_> {
        Member {
            client: self.client.clone(),
            node: Some(&self.node),
            user: self.user.as_deref(),
            info: self.info.as_deref(),
        }
    }

    pub(in crate::hub) fn json_of(client: &Client, node: &str) -> String {
        let principal = client.identity().map(|i| i.principal());
        let member = Member {
            client: client.id.to_string(),
            node: Some(node),
            user: principal.as_ref().map(|p| &*p.user),
            info: principal.as_ref().and_then(|p| p.info.as_deref()),
        };
        serde_json::to_string(&member).unwrap_or_default()
    }
}
