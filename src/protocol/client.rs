//! Client → server frames: parsing the text of a WebSocket frame (or one element of a
//! long-poll `send` body) into a [`ClientFrame`], or a [`FrameError`] with its documented code.
//!
//! A frame's `id` is kept as its raw JSON text and echoed byte for byte: parsing it into a
//! number would turn `18446744073709551617` into `1.8446744073709552e19`.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::codes::ErrorCode;
use super::frame::Frame;
use super::json::{deeper_than, present};
use super::names::{ChannelName, Since};
use super::server;

/// A request's `id`: any JSON value, borrowed from the frame's text as written.
pub type Id<'a> = &'a RawValue;

/// Deepest nesting of arrays and objects an `id` may have. An id is a correlation token; the
/// bound keeps a hostile one from costing its echo's reader a deep recursion.
pub const MAX_ID_DEPTH: usize = 32;

/// A parsed client → server frame.
#[derive(Debug)]
pub enum ClientFrame<'a> {
    Subscribe {
        channel: ChannelName,
        since: Option<Since>,
        /// The client wants `presence_diff` frames (joins and leaves) on this channel.
        join_leave: bool,
        id: Option<Id<'a>>,
    },
    /// Who is subscribed to a channel with presence (a page of members).
    Presence {
        channel: ChannelName,
        /// Where the previous page ended (its `next`).
        cursor: Option<u64>,
        id: Option<Id<'a>>,
    },
    /// How many clients and distinct users a channel with presence has.
    PresenceStats {
        channel: ChannelName,
        id: Option<Id<'a>>,
    },
    Unsubscribe {
        channel: ChannelName,
        id: Option<Id<'a>>,
    },
    Publish {
        channel: ChannelName,
        data: &'a RawValue,
        id: Option<Id<'a>>,
    },
    Ping {
        id: Option<Id<'a>>,
    },
    /// A new connection token for the same user (the answer to `refresh_token`).
    Refresh {
        token: &'a str,
        id: Option<Id<'a>>,
    },
}

impl<'a> ClientFrame<'a> {
    /// The request's `id`, echoed in its reply.
    pub fn id(&self) -> Option<Id<'a>> {
        match self {
            Self::Subscribe { id, .. }
            | Self::Unsubscribe { id, .. }
            | Self::Publish { id, .. }
            | Self::Presence { id, .. }
            | Self::PresenceStats { id, .. }
            | Self::Refresh { id, .. }
            | Self::Ping { id } => *id,
        }
    }
}

/// A frame the client got wrong: answered with an `error` frame, the connection stays up.
#[derive(Debug, Clone)]
pub struct FrameError<'a> {
    pub code: ErrorCode,
    pub message: String,
    pub id: Option<Id<'a>>,
}

impl<'a> FrameError<'a> {
    pub fn new(code: ErrorCode, message: impl Into<String>, id: Option<Id<'a>>) -> Self {
        Self {
            code,
            message: message.into(),
            id,
        }
    }

    pub fn to_frame(&self) -> Frame {
        server::error(self.code, &self.message, self.id)
    }
}

#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    id: Option<Id<'a>>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    since: Option<Since>,
    // `Some` even for JSON `null`, which is a legitimate payload.
    #[serde(default, borrow, deserialize_with = "present")]
    data: Option<&'a RawValue>,
    // Borrowed: a token has no escapes (it is base64url and dots); one with escapes is
    // refused as `bad_frame`, which no honest client meets.
    #[serde(default, borrow)]
    token: Option<&'a str>,
    #[serde(default)]
    join_leave: bool,
    #[serde(default)]
    cursor: Option<u64>,
}

/// Just the `id` of a frame whose other fields have the wrong shape.
#[derive(Deserialize)]
struct IdOnly<'a> {
    #[serde(default, borrow)]
    id: Option<Id<'a>>,
}

pub fn parse(text: &str) -> Result<ClientFrame<'_>, FrameError<'_>> {
    let raw: RawFrame = serde_json::from_str(text).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            FrameError::new(
                ErrorCode::BadJson,
                format!("frame is not valid JSON: {e}"),
                None,
            )
        } else {
            // Valid JSON of the wrong shape: still echo the id if there is one.
            let id = serde_json::from_str::<IdOnly>(text)
                .ok()
                .and_then(|only| only.id);
            FrameError::new(
                ErrorCode::BadFrame,
                format!("frame has the wrong shape: {e}"),
                id,
            )
        }
    })?;
    let id = raw.id;
    if id.is_some_and(|id| deeper_than(id.get(), MAX_ID_DEPTH)) {
        return Err(FrameError::new(
            ErrorCode::BadFrame,
            format!("`id` is nested deeper than {MAX_ID_DEPTH} levels"),
            None,
        ));
    }
    let Some(kind) = raw.kind else {
        return Err(FrameError::new(
            ErrorCode::MissingField,
            "missing field `type`",
            id,
        ));
    };
    let channel = |name: Option<String>| -> Result<ChannelName, FrameError<'_>> {
        let name = name.ok_or_else(|| {
            FrameError::new(ErrorCode::MissingField, "missing field `channel`", id)
        })?;
        ChannelName::parse(&name)
            .map_err(|e| FrameError::new(ErrorCode::InvalidChannel, e.to_string(), id))
    };
    match kind.as_str() {
        "subscribe" => Ok(ClientFrame::Subscribe {
            channel: channel(raw.channel)?,
            since: raw.since,
            join_leave: raw.join_leave,
            id,
        }),
        "presence" => Ok(ClientFrame::Presence {
            channel: channel(raw.channel)?,
            cursor: raw.cursor,
            id,
        }),
        "presence_stats" => Ok(ClientFrame::PresenceStats {
            channel: channel(raw.channel)?,
            id,
        }),
        "unsubscribe" => Ok(ClientFrame::Unsubscribe {
            channel: channel(raw.channel)?,
            id,
        }),
        "publish" => {
            let channel = channel(raw.channel)?;
            let data = raw.data.ok_or_else(|| {
                FrameError::new(ErrorCode::MissingField, "missing field `data`", id)
            })?;
            Ok(ClientFrame::Publish { channel, data, id })
        }
        "ping" => Ok(ClientFrame::Ping { id }),
        "refresh" => {
            let token = raw.token.ok_or_else(|| {
                FrameError::new(ErrorCode::MissingField, "missing field `token`", id)
            })?;
            Ok(ClientFrame::Refresh { token, id })
        }
        other => Err(FrameError::new(
            ErrorCode::UnknownType,
            format!(
                "unknown frame type `{}`; expected subscribe, unsubscribe, publish, ping, refresh, presence or presence_stats",
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

    fn err(text: &str) -> FrameError<'_> {
        parse(text).unwrap_err()
    }

    fn id<'a>(e: &FrameError<'a>) -> Option<&'a str> {
        e.id.map(RawValue::get)
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
        assert_eq!((e.code, id(&e)), (ErrorCode::BadFrame, Some(r#""q""#)));
        assert_eq!(err(r#"{"channel":"a"}"#).code, ErrorCode::MissingField);
        assert_eq!(err(r#"{"type":"subscribe"}"#).code, ErrorCode::MissingField);
        assert_eq!(
            err(r#"{"type":"publish","channel":"a"}"#).code,
            ErrorCode::MissingField
        );
        let e = err(r#"{"type":"jump","id":7}"#);
        assert_eq!((e.code, id(&e)), (ErrorCode::UnknownType, Some("7")));
        assert_eq!(
            err(r#"{"type":"subscribe","channel":"a b"}"#).code,
            ErrorCode::InvalidChannel
        );
    }

    #[test]
    fn ids_are_kept_as_written() {
        for raw in [
            "18446744073709551617",
            "1e400",
            r#"{"b":[1, 2.50]}"#,
            r#""é\u00e9""#,
        ] {
            let text = format!(r#"{{"type":"ping","id":{raw}}}"#);
            match parse(&text) {
                Ok(ClientFrame::Ping { id: Some(id) }) => assert_eq!(id.get(), raw),
                other => panic!("{raw}: {other:?}"),
            }
        }
    }

    #[test]
    fn deeply_nested_ids_are_refused() {
        let nested = |n| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        let text = |id: &str| format!(r#"{{"type":"ping","id":{id}}}"#);
        let very_deep = text(&nested(10_000));
        let e = err(&very_deep);
        assert_eq!((e.code, id(&e)), (ErrorCode::BadFrame, None));
        let just_too_deep = text(&nested(MAX_ID_DEPTH + 1));
        assert_eq!(err(&just_too_deep).code, ErrorCode::BadFrame);
        assert!(parse(&text(&nested(MAX_ID_DEPTH))).is_ok());
    }

    #[test]
    fn error_frame_shape() {
        let two = RawValue::from_string("2".into()).unwrap();
        let f = FrameError::new(ErrorCode::BadJson, "x", Some(&two)).to_frame();
        let v: serde_json::Value = serde_json::from_slice(f.as_bytes()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"error","code":"bad_json","message":"x","id":2})
        );
    }
}
