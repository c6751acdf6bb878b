//! Every HTTP body and query of the contract: what backends and long-poll clients send, and
//! what they get back. Handlers in `crate::http` parse into and reply with these shapes only.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::codes::ErrorCode;
use super::frame::write_json_array;
use super::frame::Frame;
use super::json::present;
use super::names::{ChannelName, Epoch, Since};
use super::server::Published;

// ---- requests ----

/// `POST /api/publish`: `{"channel": …, "data": …}` or `{"channels": […], "data": …}`.
#[derive(Deserialize)]
pub struct PublishRequest<'a> {
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub channels: Option<Vec<String>>,
    // `Some` even for JSON `null`, which is a legitimate payload.
    #[serde(default, borrow, deserialize_with = "present")]
    pub data: Option<&'a RawValue>,
}

/// `POST /api/users/{user}/disconnect` (the body is optional): `{"reason": "…", "reconnect":
/// false}`. `reason` is free text for the hub's log; the client sees the close code.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserDisconnectRequest {
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub reconnect: bool,
}

/// `POST /api/users/{user}/unsubscribe`: `{"channel": "…"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserUnsubscribeRequest {
    pub channel: String,
}

/// `GET /api/channels/{channel}/history?since=OFFSET&limit=N`
#[derive(Deserialize)]
pub struct HistoryQuery {
    #[serde(default)]
    pub since: u64,
    #[serde(default)]
    pub limit: Option<usize>,
}

/// `GET /api/channels/{channel}/presence?cursor=N` (the `next` of the previous page).
#[derive(Deserialize)]
pub struct PresenceQuery {
    #[serde(default)]
    pub cursor: u64,
}

/// `POST /lp/connect` body: `{"channels": ["a", {"channel": "b", "since": {…}}], "token": …}`.
#[derive(Deserialize)]
pub struct ConnectRequest {
    #[serde(default)]
    pub channels: Vec<ConnectChannel>,
    /// The connection token (browsers; other clients may use `Authorization: Bearer`).
    #[serde(default)]
    pub token: Option<String>,
}

/// One channel to join at connect, with an optional resume position.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ConnectChannel {
    Name(String),
    Resume {
        channel: String,
        #[serde(default)]
        since: Option<Since>,
    },
}

/// `?session=ID&ack=N&token=T` of `/lp/poll`, `/lp/send` and `/lp/close` (`token` when the
/// hub runs with tokens and the client cannot send `Authorization: Bearer`).
#[derive(Deserialize)]
pub struct SessionQuery {
    pub session: String,
    #[serde(default)]
    pub ack: u64,
    #[serde(default)]
    pub token: Option<String>,
}

impl SessionQuery {
    /// The query read without the general form decoder when it is plain — `session`, `ack`
    /// and `token` each at most once, no `%` or `+` in any name or in their values, `ack`
    /// plain digits — as every poll a client library makes is. `None` for anything else:
    /// the decoder then reads it and words any error. Other fields are ignored, as the
    /// decoder ignores them.
    pub fn from_plain(query: &str) -> Option<Self> {
        let (mut session, mut ack, mut token) = (None, None, None);
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if name.contains(['%', '+']) {
                return None;
            }
            let slot = match name {
                "session" => &mut session,
                "ack" => &mut ack,
                "token" => &mut token,
                _ => continue,
            };
            if slot.is_some() || !pair.contains('=') || value.contains(['%', '+']) {
                return None;
            }
            *slot = Some(value);
        }
        let ack = match ack {
            None => 0,
            Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                digits.parse().ok()?
            }
            Some(_) => return None,
        };
        Some(Self {
            session: session?.to_owned(),
            ack,
            token: token.map(str::to_owned),
        })
    }
}

// ---- responses ----

/// `{"error": {"code", "message", "limit"?}}`, the body of every HTTP error.
#[derive(Serialize)]
pub struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: ErrorCode,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<usize>,
}

impl<'a> ErrorBody<'a> {
    pub fn new(code: ErrorCode, message: &'a str, limit: Option<usize>) -> Self {
        Self {
            error: ErrorDetail {
                code,
                message,
                limit,
            },
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// `POST /api/publish` with `channels`: one result per channel, in order.
#[derive(Serialize)]
pub struct PublishResults {
    pub results: Vec<Published>,
}

/// `GET /api/channels/{channel}/history`: `{"channel", "epoch" (or null for a channel the hub
/// does not hold), "offset" (the last assigned), "next" (the `since` of the next page, or null
/// when this page reaches the end of history), "messages": [message frames]}`, as chunks to
/// write in order. The frames are the shared bytes history holds: a response waiting on a
/// slow reader pins no copy of them.
pub fn history_body(
    channel: &ChannelName,
    epoch: Option<&Epoch>,
    last_offset: u64,
    next: Option<u64>,
    frames: &[Frame],
) -> Vec<Bytes> {
    #[derive(Serialize)]
    struct Head<'a> {
        channel: &'a ChannelName,
        epoch: Option<&'a Epoch>,
        offset: u64,
        next: Option<u64>,
    }
    let head = Head {
        channel,
        epoch,
        offset: last_offset,
        next,
    };
    let mut open = serde_json::to_vec(&head).unwrap_or_default();
    // Reopen the object to append the raw frames.
    open.pop();
    open.extend_from_slice(br#","messages":["#);
    let mut chunks = Vec::with_capacity(2 * frames.len() + 2);
    chunks.push(Bytes::from(open));
    for (i, frame) in frames.iter().enumerate() {
        if i > 0 {
            chunks.push(Bytes::from_static(b","));
        }
        chunks.push(frame.bytes());
    }
    chunks.push(Bytes::from_static(b"]}"));
    chunks
}

/// `POST /lp/connect`: the new session.
#[derive(Serialize)]
pub struct SessionOpened {
    pub session: String,
    pub hold_ms: u64,
    pub session_timeout_ms: u64,
}

/// `GET /lp/poll`: `{"batch": N, "messages": [frames]}`.
pub fn poll_batch_body(batch: u64, frames: &[Frame]) -> Bytes {
    let mut body = format!("{{\"batch\":{batch},\"messages\":").into_bytes();
    write_json_array(&mut body, frames);
    body.push(b'}');
    Bytes::from(body)
}

/// `POST /lp/send`: how many frames the body held (replies come through the poll).
#[derive(Serialize)]
pub struct Accepted {
    pub accepted: usize,
}

/// `POST /lp/close`.
#[derive(Serialize)]
pub struct Closed {
    pub closed: bool,
}

/// `GET /healthz` while serving.
#[derive(Serialize)]
pub struct Health {
    pub status: &'static str,
}

/// `GET /api/stats`: live figures as flat JSON numbers, plus disconnects by reason.
#[derive(Serialize)]
pub struct StatsBody {
    pub connections: usize,
    pub websocket: i64,
    pub long_poll: i64,
    pub long_poll_sessions: usize,
    pub channels: usize,
    pub published: u64,
    pub deliveries: u64,
    pub replayed: u64,
    pub evicted_slow: u64,
    pub rejected_over_capacity: u64,
    pub rejected_overloaded: u64,
    pub rejected_too_many_channels: u64,
    pub rejected_rate_limited: u64,
    pub rejected_too_many_connections: u64,
    pub history_bytes: usize,
    pub history_shed: u64,
    pub lagging_clients: usize,
    pub max_connections: usize,
    pub uptime_seconds: u64,
    pub disconnects: BTreeMap<&'static str, u64>,
    /// Users with at least one connection (tokens on).
    pub users: usize,
    /// Webhook deliveries (one per event and URL) answered with 2xx.
    pub webhook_sent: u64,
    /// Webhook deliveries given up: every attempt failed, or the receiver refused with 4xx.
    pub webhook_failed: u64,
    /// Webhook deliveries never attempted (queue full) or abandoned at shutdown.
    pub webhook_dropped: u64,
    /// Writes the flushers made straight to idle WebSockets, the frames they carried, and
    /// connections handed back to their own task.
    pub direct_writes: u64,
    pub direct_frames: u64,
    pub direct_handed_back: u64,
}

/// `POST /api/users/{user}/disconnect`: how many connections ended, and with which reason.
/// On a scale-out node, `disconnected` counts the connections on the node that answered and
/// `nodes` how many nodes received the command (absent on a single node).
#[derive(Debug, Serialize)]
pub struct UserDisconnected<'a> {
    pub user: &'a str,
    pub disconnected: usize,
    pub reason: super::DisconnectReason,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<usize>,
}

/// `POST /api/users/{user}/unsubscribe` and `POST /api/channels/{channel}/disconnect`: how
/// many connections were taken off the channel.
#[derive(Debug, Serialize)]
pub struct Unsubscribed<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a str>,
    pub channel: &'a ChannelName,
    /// On a scale-out node, on the node that answered (see [`UserDisconnected`]).
    pub unsubscribed: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<usize>,
}

/// `GET /api/users/{user}`: the user's connections now (none when offline). On a scale-out
/// node: of every node that answered, each connection naming its `node`; `nodes` is how many
/// nodes were asked (this one included), `answered` how many answered in time.
#[derive(Debug, Serialize)]
pub struct UserBody<'a> {
    pub user: &'a str,
    pub connections: Vec<UserConnection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered: Option<usize>,
}

/// One connection in [`UserBody`]; also what one node tells another (so it deserializes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserConnection {
    pub client: String,
    pub transport: String,
    pub channels: Vec<ChannelName>,
    pub connected_at_ms: u64,
    /// The node holding it, on a scale-out node (client ids are per node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn history_body_embeds_frames_as_they_are() {
        let channel = ChannelName::parse("news").unwrap();
        let epoch = Epoch::from_string("e1".into());
        let frames = [Frame::from_string(
            r#"{"type":"message","offset":1}"#.into(),
        )];
        let joined = |chunks: Vec<Bytes>| chunks.concat();
        let body = joined(history_body(&channel, Some(&epoch), 1, Some(1), &frames));
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({"channel":"news","epoch":"e1","offset":1,"next":1,"messages":[{"type":"message","offset":1}]})
        );
        let body = joined(history_body(&channel, None, 0, None, &[]));
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({"channel":"news","epoch":null,"offset":0,"next":null,"messages":[]})
        );
    }

    #[test]
    fn plain_session_queries_read_as_the_form_decoder_reads_them() {
        let id = "0123456789abcdef0123456789abcdef";
        let plain = [
            format!("session={id}&ack=3"),
            format!("ack=0&session={id}"),
            format!("session={id}"),
            format!("session={id}&ack=12&token=a.b-c_d"),
            format!("session={id}&&x=%41&y&ack=007"),
            "session=&ack=1".to_owned(),
        ];
        for query in &plain {
            let fast = SessionQuery::from_plain(query).expect(query);
            let full: SessionQuery = serde_urlencoded::from_str(query).unwrap();
            assert_eq!(
                (fast.session, fast.ack, fast.token),
                (full.session, full.ack, full.token),
                "{query}"
            );
        }
        // Escapes, repeats, odd numbers and missing fields are the decoder's (and its errors').
        let not_plain = [
            format!("session={id}&session={id}"),
            format!("session={id}&ack=1&ack=2"),
            format!("session={id}&ack="),
            format!("session={id}&ack=-1"),
            format!("session={id}&ack=99999999999999999999999"),
            format!("session={id}&ack"),
            format!("s%65ssion={id}"),
            format!("session={id}&token=a%2Bb"),
            format!("session={id}&token=a+b"),
            "ack=1".to_owned(),
            String::new(),
        ];
        for query in &not_plain {
            assert!(SessionQuery::from_plain(query).is_none(), "{query}");
        }
    }

    #[test]
    fn poll_batch_and_error_bodies() {
        let frames = [
            Frame::from_string("1".into()),
            Frame::from_string("2".into()),
        ];
        let v: Value = serde_json::from_slice(&poll_batch_body(4, &frames)).unwrap();
        assert_eq!(v, json!({"batch":4,"messages":[1,2]}));
        let v: Value = serde_json::from_str(
            &ErrorBody::new(ErrorCode::MessageTooLarge, "too big", Some(10)).to_json(),
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"error":{"code":"message_too_large","message":"too big","limit":10}})
        );
    }
}
