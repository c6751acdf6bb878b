//! Presence frames: who is subscribed to a channel with presence (`presence`, paged), how many
//! (`presence_stats`), and who came and went (`presence_diff`, coalesced per channel).

use serde::Serialize;
use serde_json::value::RawValue;

use super::frame::Frame;
use super::names::ChannelName;

/// One member of a channel with presence: a connection, and its user and `info` with tokens on.
#[derive(Debug, Clone, Serialize)]
pub struct Member<'a> {
    pub client: String,
    /// On a scale-out node, the node holding the connection (client ids are per node).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<&'a RawValue>,
}

/// A page of a channel's members: the reply to `presence` and the body of
/// `GET /api/channels/{channel}/presence`.
#[derive(Serialize)]
pub struct PresencePage<'a> {
    pub channel: &'a ChannelName,
    pub members: Vec<Member<'a>>,
    /// The `cursor` of the next page; `None` on the last.
    pub next: Option<u64>,
}

/// How many clients and distinct users a channel has.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct PresenceStats {
    pub clients: usize,
    pub users: usize,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum PresenceFrame<'a> {
    Presence {
        #[serde(flatten)]
        page: &'a PresencePage<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
    },
    PresenceStats {
        channel: &'a ChannelName,
        #[serde(flatten)]
        stats: PresenceStats,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
    },
    PresenceDiff {
        channel: &'a ChannelName,
        joins: &'a [Member<'a>],
        leaves: &'a [Member<'a>],
    },
}

pub fn presence(page: &PresencePage<'_>, id: Option<&RawValue>) -> Frame {
    Frame::json(&PresenceFrame::Presence { page, id })
}

pub fn presence_stats(channel: &ChannelName, stats: PresenceStats, id: Option<&RawValue>) -> Frame {
    Frame::json(&PresenceFrame::PresenceStats { channel, stats, id })
}

/// Who joined and left a channel since the last such frame (coalesced per channel).
pub fn presence_diff(channel: &ChannelName, joins: &[Member<'_>], leaves: &[Member<'_>]) -> Frame {
    Frame::json(&PresenceFrame::PresenceDiff {
        channel,
        joins,
        leaves,
    })
}
