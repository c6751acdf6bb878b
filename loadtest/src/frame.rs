//! The few parts of crier's wire protocol (docs/PROTOCOL.md) the tool reads and writes.
//! Server frames are parsed into borrowed structs that skip everything the tool does not need,
//! so a subscriber spends little CPU per frame (the hub and the tool share the machine).

use std::borrow::Cow;

use serde::Deserialize;

/// One server → client frame; only the fields the tool looks at.
#[derive(Debug, Deserialize)]
pub struct ServerFrame<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(default, borrow)]
    pub epoch: Option<Cow<'a, str>>,
    #[serde(default)]
    pub offset: Option<u64>,
    #[serde(default)]
    pub data: Option<Payload>,
    /// `missed`: where history resumes.
    #[serde(default)]
    pub first_available: Option<u64>,
    #[serde(default)]
    pub since: Option<Since>,
    /// `disconnect` (long-poll): the close code.
    #[serde(default)]
    pub code: Option<serde_json::Value>,
    #[serde(default, borrow)]
    pub reason: Option<Cow<'a, str>>,
    /// `presence_diff`: who joined and left since the previous one.
    #[serde(default, borrow)]
    pub joins: Option<Vec<Member<'a>>>,
    #[serde(default, borrow)]
    pub leaves: Option<Vec<Member<'a>>>,
    /// `presence`: one page of members, and the cursor of the next (null on the last).
    #[serde(default, borrow)]
    pub members: Option<Vec<Member<'a>>>,
    #[serde(default)]
    pub next: Option<u64>,
    /// `presence_stats`: members of the channel.
    #[serde(default)]
    pub clients: Option<u64>,
}

/// A member in `presence_diff` and `presence` frames; `user` and `info` are skipped.
#[derive(Debug, Deserialize)]
pub struct Member<'a> {
    #[serde(borrow)]
    pub client: Cow<'a, str>,
}

/// `since` inside a `missed` frame.
#[derive(Debug, Deserialize)]
pub struct Since {
    #[serde(default)]
    pub offset: Option<u64>,
}

/// The message body the tool publishes: `t` is the intended send time (µs, see
/// `latency::Clock`); padding is skipped without being copied.
#[derive(Debug, Deserialize)]
pub struct Payload {
    #[serde(default)]
    pub t: Option<u64>,
    /// Generic mode: the per-channel sequence number (crier's offsets do this job otherwise).
    #[serde(default)]
    pub s: Option<u64>,
}

/// The epoch the trackers and the ledger use in generic mode (sequence numbers have none).
pub const GENERIC_EPOCH: &str = "generic";

/// `GET /lp/poll` reply.
#[derive(Debug, Deserialize)]
pub struct PollBatch<'a> {
    pub batch: u64,
    #[serde(borrow)]
    pub messages: Vec<ServerFrame<'a>>,
}

/// `POST /lp/connect` reply.
#[derive(Debug, Deserialize)]
pub struct LpSession {
    pub session: String,
}

/// `POST /api/publish/{channel}` reply.
#[derive(Debug, Deserialize)]
pub struct PublishReply<'a> {
    #[serde(borrow)]
    pub epoch: Cow<'a, str>,
    pub offset: u64,
    #[serde(default)]
    pub enqueued: u64,
}

/// The JSON body of a published message: `{"t":…,"p":"xxx…"}` padded so the whole body is
/// `size` bytes (or as short as it can be when `size` is smaller).
pub fn payload(intended_us: u64, size: usize) -> String {
    padded(format!("{{\"t\":{intended_us},\"p\":\""), size)
}

/// Generic mode's body: `{"t":…,"s":SEQ,"p":"xxx…"}`, `size` bytes like `payload`.
pub fn payload_with_sequence(intended_us: u64, seq: u64, size: usize) -> String {
    padded(format!("{{\"t\":{intended_us},\"s\":{seq},\"p\":\""), size)
}

fn padded(mut body: String, size: usize) -> String {
    let fill = size.saturating_sub(body.len() + 2);
    body.extend(std::iter::repeat_n('x', fill));
    body.push_str("\"}");
    body
}

/// A `subscribe` frame, with a resume position when there is one; `join_leave` asks for
/// `presence_diff` frames.
pub fn subscribe_frame(
    channel: &str,
    since: Option<(&str, u64)>,
    join_leave: bool,
    id: u64,
) -> String {
    let mut frame = serde_json::json!({"type": "subscribe", "channel": channel, "id": id});
    if let Some((epoch, offset)) = since {
        frame["since"] = serde_json::json!({"epoch": epoch, "offset": offset});
    }
    if join_leave {
        frame["join_leave"] = serde_json::Value::Bool(true);
    }
    frame.to_string()
}

/// A `presence` request for the page after `cursor` (the first page without one).
pub fn presence_frame(channel: &str, cursor: Option<u64>, id: u64) -> String {
    let mut frame = serde_json::json!({"type": "presence", "channel": channel, "id": id});
    if let Some(cursor) = cursor {
        frame["cursor"] = serde_json::json!(cursor);
    }
    frame.to_string()
}

/// A `presence_stats` request.
pub fn presence_stats_frame(channel: &str, id: u64) -> String {
    serde_json::json!({"type": "presence_stats", "channel": channel, "id": id}).to_string()
}

/// The `/lp/connect` body of a session that subscribes afterwards, by a `subscribe` frame
/// (`/lp/send`): only the frame can ask for `join_leave`.
pub const LP_CONNECT_NO_CHANNELS: &str = r#"{"channels":[]}"#;

/// The `/lp/connect` body for one channel, resuming when there is a position.
pub fn lp_connect_body(channel: &str, since: Option<(&str, u64)>) -> String {
    let entry = match since {
        Some((epoch, offset)) => serde_json::json!({
            "channel": channel,
            "since": {"epoch": epoch, "offset": offset}
        }),
        None => serde_json::json!(channel),
    };
    serde_json::json!({ "channels": [entry] }).to_string()
}

/// Close code of a long-poll `disconnect` frame (a number, possibly sent as a string).
pub fn code_of(value: &serde_json::Value) -> Option<u16> {
    match value {
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Looks through `/api/stats` JSON for eviction and disconnect counters (any numeric field
/// whose path mentions "evict", "slow", "disconnect", "timeout", "overload" or "lagging"), since the exact shape is
/// the hub's to choose.
pub fn eviction_figures(stats: &serde_json::Value) -> Vec<(String, u64)> {
    fn walk(v: &serde_json::Value, path: &str, out: &mut Vec<(String, u64)>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(v, &p, out);
                }
            }
            serde_json::Value::Number(n) => {
                let lower = path.to_ascii_lowercase();
                if [
                    "evict",
                    "slow",
                    "disconnect",
                    "timeout",
                    "overload",
                    "lagging",
                ]
                .iter()
                .any(|w| lower.contains(w))
                {
                    if let Some(n) = n.as_u64() {
                        out.push((path.to_owned(), n));
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(stats, "", &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_message_frame_and_skips_padding() {
        let body = payload(1234, 200);
        assert_eq!(body.len(), 200);
        let text = format!(
            r#"{{"type":"message","channel":"c1","epoch":"abc","offset":42,"data":{body}}}"#
        );
        let f: ServerFrame = serde_json::from_str(&text).unwrap();
        assert_eq!(f.kind, "message");
        assert!(matches!(f.kind, Cow::Borrowed(_)));
        assert_eq!(f.offset, Some(42));
        assert_eq!(f.data.and_then(|d| d.t), Some(1234));
    }

    #[test]
    fn sequence_payload() {
        let body = payload_with_sequence(1234, 77, 256);
        assert_eq!(body.len(), 256);
        let p: Payload = serde_json::from_str(&body).unwrap();
        assert_eq!((p.t, p.s), (Some(1234), Some(77)));
        let p: Payload = serde_json::from_str(&payload(5, 100)).unwrap();
        assert_eq!((p.t, p.s), (Some(5), None));
    }

    #[test]
    fn small_size_still_valid_json() {
        let body = payload(99, 1);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["t"], 99);
    }

    #[test]
    fn parses_subscribed_missed_and_disconnect() {
        let f: ServerFrame = serde_json::from_str(
            r#"{"type":"subscribed","channel":"news","epoch":"e","offset":41,"recovered":true,"id":1}"#,
        )
        .unwrap();
        assert_eq!((f.kind.as_ref(), f.offset), ("subscribed", Some(41)));
        let f: ServerFrame = serde_json::from_str(
            r#"{"type":"missed","channel":"news","epoch":"e","since":{"epoch":"e","offset":3},"first_available":120,"reason":"history_exhausted"}"#,
        )
        .unwrap();
        assert_eq!(f.since.and_then(|s| s.offset), Some(3));
        assert_eq!(f.first_available, Some(120));
        let f: ServerFrame = serde_json::from_str(
            r#"{"type":"disconnect","reason":"slow","code":4000,"reconnect":true,"message":"x"}"#,
        )
        .unwrap();
        assert_eq!(f.code.as_ref().and_then(code_of), Some(4000));
    }

    #[test]
    fn parses_presence_frames() {
        let f: ServerFrame = serde_json::from_str(
            r#"{"type":"presence_diff","channel":"chat:a","joins":[{"client":"c9","user":"bob","info":{"x":[1]}}],"leaves":[{"client":"c3"},{"client":"c4"}]}"#,
        )
        .unwrap();
        let ids = |m: &Option<Vec<Member>>| -> Vec<String> {
            m.iter().flatten().map(|m| m.client.to_string()).collect()
        };
        assert_eq!(ids(&f.joins), ["c9"]);
        assert_eq!(ids(&f.leaves), ["c3", "c4"]);
        let f: ServerFrame = serde_json::from_str(
            r#"{"type":"presence","channel":"chat:a","members":[{"client":"c3","user":null}],"next":3,"id":1}"#,
        )
        .unwrap();
        assert_eq!((ids(&f.members), f.next), (vec!["c3".to_owned()], Some(3)));
        let f: ServerFrame = serde_json::from_str(
            r#"{"type":"presence","channel":"chat:a","members":[],"next":null,"id":1}"#,
        )
        .unwrap();
        assert_eq!(f.next, None);
        let f: ServerFrame = serde_json::from_str(
            r#"{"type":"presence_stats","channel":"chat:a","clients":3,"users":0,"id":2}"#,
        )
        .unwrap();
        assert_eq!(f.clients, Some(3));
    }

    #[test]
    fn parses_poll_batch_and_publish_reply() {
        let b: PollBatch = serde_json::from_str(
            r#"{"batch":3,"messages":[{"type":"message","channel":"a","epoch":"e","offset":1,"data":{"t":5,"p":"xx"}}]}"#,
        )
        .unwrap();
        assert_eq!(b.batch, 3);
        assert_eq!(b.messages.len(), 1);
        let r: PublishReply =
            serde_json::from_str(r#"{"channel":"news","epoch":"e1","offset":42,"enqueued":17}"#)
                .unwrap();
        assert_eq!((r.epoch.as_ref(), r.offset, r.enqueued), ("e1", 42, 17));
    }

    #[test]
    fn builds_client_frames() {
        let f: serde_json::Value =
            serde_json::from_str(&subscribe_frame("c", Some(("e", 7)), false, 1)).unwrap();
        assert_eq!(f["since"]["offset"], 7);
        assert_eq!(f["type"], "subscribe");
        assert!(f.get("join_leave").is_none());
        let f: serde_json::Value =
            serde_json::from_str(&subscribe_frame("c", None, true, 1)).unwrap();
        assert!(f.get("since").is_none());
        assert_eq!(f["join_leave"], true);
        let f: serde_json::Value =
            serde_json::from_str(&presence_frame("chat:x", Some(200), 3)).unwrap();
        assert_eq!(
            (f["type"].as_str(), f["cursor"].as_u64()),
            (Some("presence"), Some(200))
        );
        assert!(
            serde_json::from_str::<serde_json::Value>(&presence_frame("c", None, 1))
                .unwrap()
                .get("cursor")
                .is_none()
        );
        let f: serde_json::Value =
            serde_json::from_str(&presence_stats_frame("chat:x", 4)).unwrap();
        assert_eq!(f["type"], "presence_stats");
        let b: serde_json::Value =
            serde_json::from_str(&lp_connect_body("c", Some(("e", 3)))).unwrap();
        assert_eq!(b["channels"][0]["since"]["epoch"], "e");
        let b: serde_json::Value = serde_json::from_str(&lp_connect_body("c", None)).unwrap();
        assert_eq!(b["channels"][0], "c");
    }

    #[test]
    fn finds_eviction_counters() {
        let stats = serde_json::json!({
            "connections": {"ws": 3},
            "evictions": {"slow": 2, "idle": 1},
            "slow_evictions": 5,
            "disconnects": {"write_timeout": 4},
            "published": 9
        });
        let figs = eviction_figures(&stats);
        assert!(figs.contains(&("evictions.slow".to_owned(), 2)));
        assert!(figs.contains(&("slow_evictions".to_owned(), 5)));
        assert!(figs.contains(&("disconnects.write_timeout".to_owned(), 4)));
        assert_eq!(figs.len(), 4);
    }
}
