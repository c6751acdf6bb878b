//! `Frame`: one server → client frame, encoded once into shared bytes; and the encoders for
//! the frames the hub itself emits (`message`, `subscribed`, `missed`, `disconnect`).
//!
//! A publish is serialised exactly once; every subscriber's queue and the history ring hold a
//! reference-counted clone of the same bytes, which transports write out without copying.

use std::fmt::Write as _;

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use super::channel::{ChannelName, Epoch};
use super::disconnect::DisconnectReason;

/// Always UTF-8 JSON text: frames are only made from `String`s.
#[derive(Clone, Debug)]
pub struct Frame(Bytes);

impl Frame {
    pub fn from_string(text: String) -> Self {
        Self(Bytes::from(text))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn serialize<T: Serialize>(value: &T) -> Self {
        // Serialising these plain structs of strings and numbers cannot fail.
        Self::from_string(serde_json::to_string(value).unwrap_or_default())
    }
}

/// Appends `frames` to `out` as a JSON array, without re-encoding them.
pub fn write_json_array(out: &mut Vec<u8>, frames: &[Frame]) {
    out.reserve(2 + frames.iter().map(|f| f.len() + 1).sum::<usize>());
    out.push(b'[');
    for (i, frame) in frames.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(frame.as_bytes());
    }
    out.push(b']');
}

/// The `message` frame for one publish. `data` must be valid JSON text (callers validate it);
/// channel names and epochs come from restricted alphabets that never need escaping.
pub fn encode_message(channel: &ChannelName, epoch: &Epoch, offset: u64, data: &str) -> Frame {
    let mut text = String::with_capacity(64 + channel.as_str().len() + data.len());
    text.push_str(r#"{"type":"message","channel":""#);
    text.push_str(channel.as_str());
    text.push_str(r#"","epoch":""#);
    text.push_str(epoch.as_str());
    text.push_str(r#"","offset":"#);
    let _ = write!(text, "{offset}");
    text.push_str(r#","data":"#);
    text.push_str(data);
    text.push('}');
    Frame::from_string(text)
}

/// A client's resume position: `epoch` omitted means "the channel's current epoch".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Since {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    pub offset: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MissedReason {
    /// Messages after the requested offset are partly gone from history.
    HistoryExhausted,
    /// The channel's numbering restarted; the requested offsets mean nothing now.
    EpochChanged,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum HubFrame<'a> {
    Subscribed {
        channel: &'a str,
        epoch: &'a str,
        offset: u64,
        recovered: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a Value>,
    },
    Missed {
        channel: &'a str,
        epoch: &'a str,
        since: &'a Since,
        first_available: u64,
        reason: MissedReason,
    },
    Disconnect {
        reason: &'static str,
        code: u16,
        reconnect: bool,
        message: &'static str,
    },
}

pub fn encode_subscribed(
    channel: &ChannelName,
    epoch: &Epoch,
    offset: u64,
    recovered: bool,
    id: Option<&Value>,
) -> Frame {
    Frame::serialize(&HubFrame::Subscribed {
        channel: channel.as_str(),
        epoch: epoch.as_str(),
        offset,
        recovered,
        id,
    })
}

pub fn encode_missed(
    channel: &ChannelName,
    epoch: &Epoch,
    since: &Since,
    first_available: u64,
    reason: MissedReason,
) -> Frame {
    Frame::serialize(&HubFrame::Missed {
        channel: channel.as_str(),
        epoch: epoch.as_str(),
        since,
        first_available,
        reason,
    })
}

pub fn encode_disconnect(reason: DisconnectReason) -> Frame {
    Frame::serialize(&HubFrame::Disconnect {
        reason: reason.as_str(),
        code: reason.close_code(),
        reconnect: reason.should_reconnect(),
        message: reason.description(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_frame_is_valid_json_with_raw_data() {
        let channel = ChannelName::parse("news").unwrap();
        let epoch = Epoch::from_string("abc123".into());
        let f = encode_message(&channel, &epoch, 7, r#"{"a":[1,2]}"#);
        let v: Value = serde_json::from_slice(f.as_bytes()).unwrap();
        assert_eq!(v["type"], "message");
        assert_eq!(v["channel"], "news");
        assert_eq!(v["epoch"], "abc123");
        assert_eq!(v["offset"], 7);
        assert_eq!(v["data"]["a"][1], 2);
    }

    #[test]
    fn disconnect_frame_carries_code_and_hint() {
        let v: Value =
            serde_json::from_slice(encode_disconnect(DisconnectReason::Slow).as_bytes()).unwrap();
        assert_eq!(v["type"], "disconnect");
        assert_eq!(v["reason"], "slow");
        assert_eq!(v["code"], 4000);
        assert_eq!(v["reconnect"], true);
    }
}
