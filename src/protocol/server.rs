//! Every server → client frame, in one place: `message`, `subscribed`, `missed`,
//! `unsubscribed`, `published`, `pong`, `error`, `disconnect`, and the token lifetime's
//! `refresh_token` and `refreshed`.
//!
//! The hub encodes the frames it must order under a channel lock (`message`, `subscribed`,
//! `missed`); the transports encode the replies. Both call these functions, so the shape of
//! each frame is written once.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::value::RawValue;

use super::codes::ErrorCode;
use super::disconnect::DisconnectReason;
use super::frame::Frame;
use super::names::{ChannelName, Epoch, Since};

/// What one publish carries: its `data` (valid JSON text, validated by the caller) and, for a
/// client publish the hub stamps, `from` (a JSON object the hub wrote: never the client's).
#[derive(Clone, Copy, Debug)]
pub struct Payload<'a> {
    pub data: &'a str,
    pub from: Option<&'a str>,
}

impl<'a> Payload<'a> {
    /// A backend's publish: data only.
    pub fn data(data: &'a str) -> Self {
        Self { data, from: None }
    }
}

/// The publisher a stamped `message` names: `{"user", "client", "info"}` (`user` and `info`
/// only with tokens on), as the JSON text that goes in `from`.
pub fn publisher(user: Option<&str>, client: &str, info: Option<&RawValue>) -> String {
    #[derive(Serialize)]
    struct From<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        user: Option<&'a str>,
        client: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        info: Option<&'a RawValue>,
    }
    serde_json::to_string(&From { user, client, info }).unwrap_or_default()
}

/// The `message` frame for one publish — the hot path, so written by hand rather than by
/// serde. Channel names and epochs come from restricted alphabets that never need escaping.
pub fn message(channel: &ChannelName, epoch: &Epoch, offset: u64, payload: &Payload<'_>) -> Frame {
    let from_len = payload.from.map_or(0, |f| f.len() + 8);
    let mut text =
        String::with_capacity(64 + channel.as_str().len() + payload.data.len() + from_len);
    text.push_str(r#"{"type":"message","channel":""#);
    text.push_str(channel.as_str());
    text.push_str(r#"","epoch":""#);
    text.push_str(epoch.as_str());
    text.push_str(r#"","offset":"#);
    let _ = write!(text, "{offset}");
    if let Some(from) = payload.from {
        text.push_str(r#","from":"#);
        text.push_str(from);
    }
    text.push_str(r#","data":"#);
    text.push_str(payload.data);
    text.push('}');
    Frame::from_string(text)
}

/// What one publish did: the reply to a client's `publish` frame and the body of
/// `POST /api/publish`.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    pub channel: ChannelName,
    pub epoch: Epoch,
    pub offset: u64,
    /// Subscribers whose queue took the frame.
    pub enqueued: usize,
}

/// A subscription just made: the channel's position at that moment.
#[derive(Debug, Clone, Copy)]
pub struct Subscribed<'a> {
    pub channel: &'a ChannelName,
    pub epoch: &'a Epoch,
    /// The last offset assigned (0 if none yet); live messages follow above it.
    pub offset: u64,
    /// `true` when no resume position was given or history covered it entirely.
    pub recovered: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MissedReason {
    /// Messages after the requested offset are partly gone from history.
    HistoryExhausted,
    /// The channel's numbering restarted; the requested offsets mean nothing now.
    EpochChanged,
    /// The requested offset is beyond the channel's last one: the cursor is not from this
    /// channel's history.
    OffsetAhead,
}

/// A resume position history could not honour.
#[derive(Debug, Clone, Copy)]
pub struct Missed<'a> {
    pub channel: &'a ChannelName,
    pub epoch: &'a Epoch,
    pub since: &'a Since,
    pub first_available: u64,
    pub reason: MissedReason,
}

/// Every frame but `message`, as serde shapes. `id` echoes the client frame's `id`.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ServerFrame<'a> {
    Subscribed {
        channel: &'a ChannelName,
        epoch: &'a Epoch,
        offset: u64,
        recovered: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
    },
    Missed {
        channel: &'a ChannelName,
        epoch: &'a Epoch,
        since: &'a Since,
        first_available: u64,
        reason: MissedReason,
    },
    Unsubscribed {
        channel: &'a ChannelName,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
    },
    Published {
        #[serde(flatten)]
        published: &'a Published,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
    },
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
    },
    Error {
        code: ErrorCode,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
    },
    RefreshToken {
        expires_in_ms: u64,
    },
    Refreshed {
        exp: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
    },
    Disconnect {
        reason: DisconnectReason,
        code: u16,
        reconnect: bool,
        message: &'static str,
    },
}

pub fn subscribed(s: &Subscribed<'_>, id: Option<&RawValue>) -> Frame {
    Frame::json(&ServerFrame::Subscribed {
        channel: s.channel,
        epoch: s.epoch,
        offset: s.offset,
        recovered: s.recovered,
        id,
    })
}

pub fn missed(m: &Missed<'_>) -> Frame {
    Frame::json(&ServerFrame::Missed {
        channel: m.channel,
        epoch: m.epoch,
        since: m.since,
        first_available: m.first_available,
        reason: m.reason,
    })
}

pub fn unsubscribed(channel: &ChannelName, id: Option<&RawValue>) -> Frame {
    Frame::json(&ServerFrame::Unsubscribed { channel, id })
}

pub fn published(published: &Published, id: Option<&RawValue>) -> Frame {
    Frame::json(&ServerFrame::Published { published, id })
}

pub fn pong(id: Option<&RawValue>) -> Frame {
    Frame::json(&ServerFrame::Pong { id })
}

pub fn error(code: ErrorCode, message: &str, id: Option<&RawValue>) -> Frame {
    Frame::json(&ServerFrame::Error { code, message, id })
}

/// Asks the client for a fresh token: its current one expires in `expires_in_ms`.
pub fn refresh_token(expires_in_ms: u64) -> Frame {
    Frame::json(&ServerFrame::RefreshToken { expires_in_ms })
}

/// The reply to an accepted `refresh`: the new token's `exp` (Unix seconds).
pub fn refreshed(exp: u64, id: Option<&RawValue>) -> Frame {
    Frame::json(&ServerFrame::Refreshed { exp, id })
}

/// The last frame of a long-poll session the hub ended; WebSocket clients get the same as a
/// close code and reason.
pub fn disconnect(reason: DisconnectReason) -> Frame {
    Frame::json(&ServerFrame::Disconnect {
        reason,
        code: reason.close_code(),
        reconnect: reason.should_reconnect(),
        message: reason.description(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::Value;

    fn json(frame: &Frame) -> Value {
        serde_json::from_slice(frame.as_bytes()).unwrap()
    }

    #[test]
    fn message_frame_is_valid_json_with_raw_data() {
        let channel = ChannelName::parse("news").unwrap();
        let epoch = Epoch::from_string("abc123".into());
        let v = json(&message(
            &channel,
            &epoch,
            7,
            &Payload::data(r#"{"a":[1,2]}"#),
        ));
        assert_eq!(v["type"], "message");
        assert_eq!(v["channel"], "news");
        assert_eq!(v["epoch"], "abc123");
        assert_eq!(v["offset"], 7);
        assert_eq!(v["data"]["a"][1], 2);
        assert!(v.get("from").is_none());
        let info = RawValue::from_string(r#"{"name":"Ada"}"#.into()).unwrap();
        let from = publisher(Some("ada"), "c7", Some(&info));
        let stamped = Payload {
            data: "1",
            from: Some(&from),
        };
        let v = json(&message(&channel, &epoch, 8, &stamped));
        assert_eq!(
            v["from"],
            serde_json::json!({"user":"ada","client":"c7","info":{"name":"Ada"}})
        );
        assert_eq!(v["data"], 1);
    }

    #[test]
    fn disconnect_frame_carries_code_and_hint() {
        let v = json(&disconnect(DisconnectReason::Slow));
        assert_eq!(v["type"], "disconnect");
        assert_eq!(v["reason"], "slow");
        assert_eq!(v["code"], 4000);
        assert_eq!(v["reconnect"], true);
    }

    #[test]
    fn reply_frames_have_the_documented_shapes() {
        let channel = ChannelName::parse("chat:lobby").unwrap();
        let epoch = Epoch::from_string("e1".into());
        let id = RawValue::from_string("3".into()).unwrap();
        let p = Published {
            channel: channel.clone(),
            epoch: epoch.clone(),
            offset: 43,
            enqueued: 12,
        };
        assert_eq!(
            json(&published(&p, Some(&id))),
            serde_json::json!({"type":"published","channel":"chat:lobby","epoch":"e1","offset":43,"enqueued":12,"id":3})
        );
        let s = Subscribed {
            channel: &channel,
            epoch: &epoch,
            offset: 41,
            recovered: true,
        };
        assert_eq!(
            json(&subscribed(&s, None)),
            serde_json::json!({"type":"subscribed","channel":"chat:lobby","epoch":"e1","offset":41,"recovered":true})
        );
        let since = Since {
            epoch: Some("e0".into()),
            offset: 3,
        };
        let m = Missed {
            channel: &channel,
            epoch: &epoch,
            since: &since,
            first_available: 120,
            reason: MissedReason::HistoryExhausted,
        };
        assert_eq!(
            json(&missed(&m)),
            serde_json::json!({"type":"missed","channel":"chat:lobby","epoch":"e1","since":{"epoch":"e0","offset":3},"first_available":120,"reason":"history_exhausted"})
        );
        assert_eq!(
            json(&unsubscribed(&channel, Some(&id))),
            serde_json::json!({"type":"unsubscribed","channel":"chat:lobby","id":3})
        );
        assert_eq!(json(&pong(None)), serde_json::json!({"type":"pong"}));
        assert_eq!(
            json(&error(ErrorCode::BadJson, "x", Some(&id))),
            serde_json::json!({"type":"error","code":"bad_json","message":"x","id":3})
        );
    }
}
