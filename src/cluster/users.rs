//! `user_online` / `user_offline` once per cluster: which nodes hold a connection of each
//! user, in Redis (`scripts::USER_UP`, `USER_DOWN`, `USER_OFFLINE`), so that exactly one
//! node announces each change. The webhook dispatcher asks (`ClusterPresence::user_*`); the
//! presence writer re-states this node's users after Redis lost track, and hands the users of
//! a node that stopped beating to the webhooks as gone.

use std::sync::Arc;
use std::time::Duration;

use crate::hub::cluster_presence::OfflineCheck;
use crate::hub::{Hub, HubError};

use super::{scripts, Shared};

/// Users a dead node's cleanup takes per call (`SPOP` count).
const USERS_STEP: usize = 500;

fn users_key(node: &str) -> String {
    format!("crier:node:{node}:users")
}

impl Shared {
    pub(super) async fn user_up(&self, node: &str, user: &str) -> Result<bool, HubError> {
        let script = redis::Script::new(scripts::USER_UP);
        let mut invocation = script.prepare_invoke();
        invocation.arg(node).arg(user);
        let mut conn = self.commands.clone();
        let fresh: i64 = self
            .bounded(
                "announcing a user in Redis",
                invocation.invoke_async(&mut conn),
            )
            .await?;
        Ok(fresh == 1)
    }

    pub(super) async fn user_down(&self, node: &str, user: &str) -> Result<bool, HubError> {
        let script = redis::Script::new(scripts::USER_DOWN);
        let mut invocation = script.prepare_invoke();
        invocation.arg(node).arg(user);
        let mut conn = self.commands.clone();
        let last: i64 = self
            .bounded(
                "letting a user go in Redis",
                invocation.invoke_async(&mut conn),
            )
            .await?;
        Ok(last == 1)
    }

    pub(super) async fn user_offline(
        &self,
        user: &str,
        grace: Duration,
    ) -> Result<OfflineCheck, HubError> {
        let script = redis::Script::new(scripts::USER_OFFLINE);
        let mut invocation = script.prepare_invoke();
        invocation.arg(user).arg(grace.as_millis() as u64);
        let mut conn = self.commands.clone();
        let (code, value): (i64, i64) = self
            .bounded(
                "deciding user_offline in Redis",
                invocation.invoke_async(&mut conn),
            )
            .await?;
        let value = value.max(0) as u64;
        Ok(match code {
            0 => OfflineCheck::Offline { at_ms: value },
            1 => OfflineCheck::Wait(Duration::from_millis(value.max(1))),
            _ => OfflineCheck::Nothing,
        })
    }

    /// After Redis lost track of this node: its users are held here again; any the cluster
    /// had announced offline meanwhile are online anew (told to the webhooks).
    pub(super) async fn restate_users(&self, hub: &Hub) -> Result<(), HubError> {
        for user in hub.local_users() {
            if self.user_up(&self.node, &user).await? {
                hub.cluster_user(user, true);
            }
        }
        Ok(())
    }

    /// A node stopped beating: it holds none of its users' connections any more. Users left
    /// with no connection anywhere go to the webhooks, which decide `user_offline` after the
    /// grace. Bounded per call; returns how many users the dead node still has.
    pub(super) async fn bury_users(&self, hub: &Hub, dead: &str) -> Result<usize, HubError> {
        let mut conn = self.commands.clone();
        let mut pop = redis::cmd("SPOP");
        pop.arg(users_key(dead)).arg(USERS_STEP);
        let users: Vec<String> = self
            .bounded("taking a dead node's users", pop.query_async(&mut conn))
            .await?;
        for user in &users {
            if self.user_down(dead, user).await? {
                hub.cluster_user(Arc::from(user.as_str()), false);
            }
        }
        let mut left = redis::cmd("SCARD");
        left.arg(users_key(dead));
        self.bounded("counting a dead node's users", left.query_async(&mut conn))
            .await
    }
}
