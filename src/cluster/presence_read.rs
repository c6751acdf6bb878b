//! Presence reads for `presence` / `presence_stats` on a cluster node, and the queueing of
//! this node's changes for the writer (`super::presence`). A page is one `HSCAN` of the
//! channel's member hash (`COUNT` [`PRESENCE_PAGE`]: a hint — a hash still in Redis's small
//! encoding, up to `hash-max-listpack-entries`, comes whole — and a member may appear on two
//! pages while Redis resizes the hash); stats are two `HLEN`s, O(1).

use futures_util::future::BoxFuture;

use crate::hub::cluster_presence::{
    ClusterPresence, MemberChange, OfflineCheck, StoredMember, StoredPage, PRESENCE_PAGE,
};
use crate::hub::{ChannelName, ClientId, HubError};
use crate::protocol::PresenceStats;

use super::RedisBroker;

fn presence_key(channel: &ChannelName) -> String {
    format!("crier:pres:{channel}")
}

/// The joins and leaves of one batch of another node, as the presence scripts publish them.
#[derive(serde::Deserialize)]
pub struct Diff {
    pub joins: Vec<StoredMember>,
    pub leaves: Vec<StoredMember>,
}

/// A presence diff on a channel's message channel: `P \n node \n {"joins", "leaves"}`;
/// `None` for a message (`epoch \n offset \n entry`: an epoch is never `P`).
pub fn parse_diff(payload: &[u8]) -> Option<Option<(&str, Diff)>> {
    let rest = payload.strip_prefix(b"P\n")?;
    let parsed = (|| {
        let cut = rest.iter().position(|b| *b == b'\n')?;
        let node = std::str::from_utf8(&rest[..cut]).ok()?;
        let diff = serde_json::from_slice(&rest[cut + 1..]).ok()?;
        Some((node, diff))
    })();
    Some(parsed)
}

impl ClusterPresence for RedisBroker {
    fn user_up<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<bool, HubError>> {
        Box::pin(self.shared.user_up(&self.shared.node, user))
    }

    fn user_down<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<bool, HubError>> {
        Box::pin(self.shared.user_down(&self.shared.node, user))
    }

    fn user_offline<'a>(
        &'a self,
        user: &'a str,
        grace: std::time::Duration,
    ) -> BoxFuture<'a, Result<OfflineCheck, HubError>> {
        Box::pin(self.shared.user_offline(user, grace))
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffs_are_told_apart_from_messages() {
        let diff = br#"P
n1
{"joins":[{"client":"c1","node":"n1","user":"ada"}],"leaves":[]}"#;
        let (node, parsed) = parse_diff(diff).unwrap().unwrap();
        assert_eq!(
            (node, parsed.joins.len(), parsed.leaves.len()),
            ("n1", 1, 0)
        );
        assert!(parse_diff(b"P\nn1\nnot json").unwrap().is_none());
        assert!(parse_diff(b"0123456789ab\n7\n\"P\"").is_none(), "a message");
    }
}
