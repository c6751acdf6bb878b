//! Presence reads for `presence` / `presence_stats` on a cluster node, and the queueing of
//! this node's changes for the writer (`super::presence`). A page is one `HSCAN` of the
//! channel's member hash (`COUNT` [`PRESENCE_PAGE`]: a hint — a hash still in Redis's small
//! encoding, up to `hash-max-listpack-entries`, comes whole — and a member may appear on two
//! pages while Redis resizes the hash); stats are two `HLEN`s, O(1).

use futures_util::future::BoxFuture;

use crate::hub::cluster_presence::{ClusterPresence, MemberChange, StoredPage, PRESENCE_PAGE};
use crate::hub::{ChannelName, ClientId, HubError};
use crate::protocol::PresenceStats;

use super::RedisBroker;

fn presence_key(channel: &ChannelName) -> String {
    format!("crier:pres:{channel}")
}

impl ClusterPresence for RedisBroker {
    fn member_changed(&self, channel: &ChannelName, client: ClientId, change: MemberChange) {
        let shared = &self.shared;
        shared.presence.push(&shared.stats, channel, client, change);
    }

    fn presence_page<'a>(
        &'a self,
        channel: &'a ChannelName,
        cursor: u64,
    ) -> BoxFuture<'a, Result<StoredPage, HubError>> {
        Box::pin(async move {
            let shared = &self.shared;
            let mut conn = shared.commands.clone();
            let mut scan = redis::cmd("HSCAN");
            scan.arg(presence_key(channel))
                .arg(cursor)
                .arg("COUNT")
                .arg(PRESENCE_PAGE);
            let (next, pairs): (u64, Vec<String>) = shared
                .bounded("reading presence from Redis", scan.query_async(&mut conn))
                .await?;
            let members = pairs.into_iter().skip(1).step_by(2).collect();
            Ok((members, (next != 0).then_some(next)))
        })
    }

    fn presence_stats<'a>(
        &'a self,
        channel: &'a ChannelName,
    ) -> BoxFuture<'a, Result<PresenceStats, HubError>> {
        Box::pin(async move {
            let shared = &self.shared;
            let mut conn = shared.commands.clone();
            let mut pipe = redis::pipe();
            pipe.cmd("HLEN")
                .arg(presence_key(channel))
                .cmd("HLEN")
                .arg(format!("crier:pusers:{channel}"));
            let (clients, users): (usize, usize) = shared
                .bounded("reading presence from Redis", pipe.query_async(&mut conn))
                .await?;
            Ok(PresenceStats { clients, users })
        })
    }
}
