//! On a cluster node, `user_online` and `user_offline` are decided in Redis, once per cluster
//! (`ClusterPresence::user_up` / `user_down` / `user_offline`): the dispatcher asks before it
//! announces. Every other event goes through [`Context::translate`] unchanged.
//!
//! The questions are asked in order, one at a time, on the dispatcher (so one user's online
//! and offline never cross), each bounded by `--redis-timeout`. When Redis cannot answer, the
//! node falls back to deciding alone, as a single node does — an event may then be announced
//! by more than one node (at least once rather than never), and it is logged.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::auth::token::unix_now_ms;
use crate::hub::cluster_presence::OfflineCheck;
use crate::hub::HubEvent;

use super::super::payload::{outgoing, EventKind, Fields, Outgoing};
use super::{Context, Going};

impl Context {
    /// The webhook events one hub event makes, asking the cluster where it decides.
    pub(super) async fn translate_any(&self, event: HubEvent, going: &mut Going) -> Vec<Outgoing> {
        let Some(cluster) = self.cluster.clone() else {
            return self.translate(event, going);
        };
        match event {
            HubEvent::Connected {
                user: Some(user),
                first_of_user: true,
                client,
                ..
            } => {
                going.cancel(&user);
                let fresh = cluster.user_up(&user).await.unwrap_or_else(|error| {
                    tracing::warn!(%user, %error, "cannot ask Redis about a user; announcing user_online from this node");
                    true
                });
                self.online(&user, fresh.then(|| client.to_string()), fresh)
            }
            HubEvent::Disconnected {
                user: Some(user),
                last_of_user: true,
                ..
            } => {
                let last = cluster.user_down(&user).await.unwrap_or_else(|error| {
                    tracing::warn!(%user, %error, "cannot tell Redis a user left; deciding user_offline on this node");
                    true
                });
                if last {
                    let grace = self.config.offline_grace;
                    going.add(user, Instant::now() + grace, unix_now_ms());
                }
                Vec::new()
            }
            HubEvent::ClusterUser { user, online: true } => self.online(&user, None, true),
            HubEvent::ClusterUser {
                user,
                online: false,
            } => {
                let grace = self.config.offline_grace;
                going.add(user, Instant::now() + grace, unix_now_ms());
                Vec::new()
            }
            other => self.translate(other, going),
        }
    }

    fn online(&self, user: &str, client: Option<String>, announce: bool) -> Vec<Outgoing> {
        if !announce || !self.config.kinds.has(EventKind::UserOnline) {
            return Vec::new();
        }
        let fields = Fields::User { user, client };
        vec![outgoing(
            EventKind::UserOnline,
            unix_now_ms(),
            fields,
            &self.config.secret,
        )]
    }

    /// `user_offline` for the users whose grace is over here, if the cluster agrees (exactly
    /// one node is told so). At shutdown, `drain` = (grace 0, deadline): users not asked by
    /// the deadline are dropped and counted.
    pub(super) async fn offline_any(
        &self,
        due: Vec<(Arc<str>, u64)>,
        going: &mut Going,
        drain: Option<(Duration, Instant)>,
    ) -> Vec<Outgoing> {
        let Some(cluster) = self.cluster.clone() else {
            return self.offline(due);
        };
        let grace = drain.map_or(self.config.offline_grace, |(grace, _)| grace);
        let mut offline = Vec::new();
        for (user, at_ms) in due {
            if drain.is_some_and(|(_, deadline)| Instant::now() >= deadline) {
                let urls = self.config.urls.len() as u64;
                self.counters.dropped.inc_by(urls);
                continue;
            }
            match cluster.user_offline(&user, grace).await {
                Ok(OfflineCheck::Offline { at_ms }) => offline.push((user, at_ms)),
                Ok(OfflineCheck::Wait(wait)) => going.add(user, Instant::now() + wait, at_ms),
                Ok(OfflineCheck::Nothing) => {}
                Err(error) => {
                    tracing::warn!(%user, %error, "cannot ask Redis about a user; announcing user_offline from this node");
                    offline.push((user, at_ms));
                }
            }
        }
        self.offline(offline)
    }
}
