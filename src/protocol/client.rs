//! Client → server frames: parsing the text of a WebSocket frame (or one element of a
//! long-poll `send` body) into a [`ClientFrame`], or a [`FrameError`] with its documented code.

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::Value;

use super::codes::ErrorCode;
use super::frame::Frame;
use super::names::{ChannelName, Since};
use super::server;

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
    pub code: ErrorCode,
    pub message: String,
    pub id: Option<Value>,
}

impl FrameError {
    pub fn new(code: ErrorCode, message: impl Into<String>, id: Option<Value>) -> Self {
        Self {
            code,
            message: message.into(),
            id,
        }
    }

    pub fn to_frame(&self) -> Frame {
        server::error(self.code, &self.message, self.id.as_ref())
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
            FrameError::new(
                ErrorCode::BadJson,
                format!("frame is not valid JSON: {e}"),
                None,
            )
        } else {
            // Valid JSON of the wrong shape: still echo the id if there is one.
            let id = serde_json::from_str::<Value>(text)
                .ok()
                .and_then(|v| v.get("id").cloned());
            FrameError::new(
                ErrorCode::BadFrame,
                format!("frame has the wrong shape: {e}"),
                id,
            )
        }
    })?;
    let id = raw.id;
    let Some(kind) = raw.kind else {
        return Err(FrameError::new(
            ErrorCode::MissingField,
            "missing field `type`",
            id,
        ));
    };
    let channel = |name: Option<String>, id: &Option<Value>| -> Result<ChannelName, FrameError> {
        let name = name.ok_or_else(|| {
            FrameError::new(
                ErrorCode::MissingField,
                "missing field `channel`",
                id.clone(),
            )
        })?;
        ChannelName::parse(&name)
            .map_err(|e| FrameError::new(ErrorCode::InvalidChannel, e.to_string(), id.clone()))
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
                FrameError::new(ErrorCode::MissingField, "missing field `data`", id.clone())
            })?;
            Ok(ClientFrame::Publish { channel, data, id })
        }
        "ping" => Ok(ClientFrame::Ping { id }),
        other => Err(FrameError::new(
            ErrorCode::UnknownType,
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
        assert_eq!(err("{nope").code, ErrorCode::BadJson);
        assert_eq!(err("").code, ErrorCode::BadJson);
        assert_eq!(err("[1,2]").code, ErrorCode::BadFrame);
        let e = err(r#"{"type":"subscribe","channel":5,"id":"q"}"#);
        assert_eq!(
            (e.code, e.id),
            (ErrorCode::BadFrame, Some(Value::from("q")))
        );
        assert_eq!(err(r#"{"channel":"a"}"#).code, ErrorCode::MissingField);
        assert_eq!(err(r#"{"type":"subscribe"}"#).code, ErrorCode::MissingField);
        assert_eq!(
            err(r#"{"type":"publish","channel":"a"}"#).code,
            ErrorCode::MissingField
        );
        let e = err(r#"{"type":"jump","id":7}"#);
        assert_eq!(
            (e.code, e.id),
            (ErrorCode::UnknownType, Some(Value::from(7)))
        );
        assert_eq!(
            err(r#"{"type":"subscribe","channel":"a b"}"#).code,
            ErrorCode::InvalidChannel
        );
    }

    #[test]
    fn error_frame_shape() {
        let f = FrameError::new(ErrorCode::BadJson, "x", Some(Value::from(2))).to_frame();
        let v: Value = serde_json::from_slice(f.as_bytes()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"error","code":"bad_json","message":"x","id":2})
        );
    }
}
