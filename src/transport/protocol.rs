//! The JSON frames both transports speak: parsing client frames, encoding the replies.
//! The contract is `docs/PROTOCOL.md`; the error codes here are part of it.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::hub::{ChannelName, Frame, Published, Since};

/// A parsed client → server frame.
#[derive(Debug)]
pub enum ClientFrame<'a> {
    Subscribe {
        channel: ChannelName,
        since: Option<Since>,
        id: Option<Value>,
    },
    Unsubscribe {
        channel: ChannelName,
        id: Option<Value>,
    },
    Publish {
        channel: ChannelName,
        data: &'a RawValue,
        id: Option<Value>,
    },
    Ping {
        id: Option<Value>,
    },
}

/// A frame the client got wrong: answered with an `error` frame, the connection stays up.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameError {
    pub code: &'static str,
    pub message: String,
    pub id: Option<Value>,
}

impl FrameError {
    pub fn new(code: &'static str, message: impl Into<String>, id: Option<Value>) -> Self {
        Self {
            code,
            message: message.into(),
            id,
        }
    }

    pub fn to_frame(&self) -> Frame {
        encode(&ServerReply::Error {
            code: self.code,
            message: &self.message,
            id: self.id.as_ref(),
        })
    }
}

#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    since: Option<Since>,
    // `Some` even for JSON `null`, which is a legitimate payload.
    #[serde(default, borrow, deserialize_with = "present")]
    data: Option<&'a RawValue>,
}

/// Deserialises a field that may hold any JSON, `null` included, as `Some`.
pub fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

pub fn parse(text: &str) -> Result<ClientFrame<'_>, FrameError> {
    let raw: RawFrame = serde_json::from_str(text).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            FrameError::new("bad_json", format!("frame is not valid JSON: {e}"), None)
        } else {
            // Valid JSON of the wrong shape: still echo the id if there is one.
            let id = serde_json::from_str::<Value>(text)
                .ok()
                .and_then(|v| v.get("id").cloned());
            FrameError::new("bad_frame", format!("frame has the wrong shape: {e}"), id)
        }
    })?;
    let id = raw.id;
    let Some(kind) = raw.kind else {
        return Err(FrameError::new("missing_field", "missing field `type`", id));
    };
    let channel = |name: Option<String>, id: &Option<Value>| -> Result<ChannelName, FrameError> {
        let name = name.ok_or_else(|| {
            FrameError::new("missing_field", "missing field `channel`", id.clone())
        })?;
        ChannelName::parse(&name)
            .map_err(|e| FrameError::new("invalid_channel", e.to_string(), id.clone()))
    };
    match kind.as_str() {
        "subscribe" => Ok(ClientFrame::Subscribe {
            channel: channel(raw.channel, &id)?,
            since: raw.since,
            id,
        }),
        "unsubscribe" => Ok(ClientFrame::Unsubscribe {
            channel: channel(raw.channel, &id)?,
            id,
        }),
        "publish" => {
            let channel = channel(raw.channel, &id)?;
            let data = raw.data.ok_or_else(|| {
                FrameError::new("missing_field", "missing field `data`", id.clone())
            })?;
            Ok(ClientFrame::Publish { channel, data, id })
        }
        "ping" => Ok(ClientFrame::Ping { id }),
        other => Err(FrameError::new(
            "unknown_type",
            format!(
                "unknown frame type `{}`; expected subscribe, unsubscribe, publish or ping",
                truncate(other)
            ),
            id,
        )),
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ServerReply<'a> {
    Unsubscribed {
        channel: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a Value>,
    },
    Published {
        channel: &'a str,
        epoch: &'a str,
        offset: u64,
        enqueued: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a Value>,
    },
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a Value>,
    },
    Error {
        code: &'a str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a Value>,
    },
}

fn encode(reply: &ServerReply<'_>) -> Frame {
    // Plain strings and numbers: serialisation cannot fail.
    Frame::from_string(serde_json::to_string(reply).unwrap_or_default())
}

pub fn unsubscribed(channel: &ChannelName, id: Option<&Value>) -> Frame {
    encode(&ServerReply::Unsubscribed {
        channel: channel.as_str(),
        id,
    })
}

pub fn published(p: &Published, id: Option<&Value>) -> Frame {
    encode(&ServerReply::Published {
        channel: p.channel.as_str(),
        epoch: p.epoch.as_str(),
        offset: p.offset,
        enqueued: p.enqueued,
        id,
    })
}

pub fn pong(id: Option<&Value>) -> Frame {
    encode(&ServerReply::Pong { id })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> FrameError {
        parse(text).unwrap_err()
    }

    #[test]
    fn parses_each_client_frame() {
        assert!(matches!(
            parse(r#"{"type":"subscribe","channel":"a","since":{"epoch":"e","offset":3},"id":1}"#),
            Ok(ClientFrame::Subscribe {
                since: Some(Since { offset: 3, .. }),
                id: Some(_),
                ..
            })
        ));
        assert!(matches!(
            parse(r#"{"type":"unsubscribe","channel":"a"}"#),
            Ok(ClientFrame::Unsubscribe { .. })
        ));
        match parse(r#"{"type":"publish","channel":"a","data":null}"#) {
            Ok(ClientFrame::Publish { data, .. }) => assert_eq!(data.get(), "null"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(r#"{"type":"ping"}"#),
            Ok(ClientFrame::Ping { id: None })
        ));
    }

    #[test]
    fn bad_frames_get_stable_codes_and_echo_the_id() {
        assert_eq!(err("{nope").code, "bad_json");
        assert_eq!(err("").code, "bad_json");
        assert_eq!(err("[1,2]").code, "bad_frame");
        let e = err(r#"{"type":"subscribe","channel":5,"id":"q"}"#);
        assert_eq!((e.code, e.id), ("bad_frame", Some(Value::from("q"))));
        assert_eq!(err(r#"{"channel":"a"}"#).code, "missing_field");
        assert_eq!(err(r#"{"type":"subscribe"}"#).code, "missing_field");
        assert_eq!(
            err(r#"{"type":"publish","channel":"a"}"#).code,
            "missing_field"
        );
        let e = err(r#"{"type":"jump","id":7}"#);
        assert_eq!((e.code, e.id), ("unknown_type", Some(Value::from(7))));
        assert_eq!(
            err(r#"{"type":"subscribe","channel":"a b"}"#).code,
            "invalid_channel"
        );
    }

    #[test]
    fn error_frame_shape() {
        let f = FrameError::new("bad_json", "x", Some(Value::from(2))).to_frame();
        let v: Value = serde_json::from_slice(f.as_bytes()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"error","code":"bad_json","message":"x","id":2})
        );
    }
}
