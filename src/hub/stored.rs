//! How a cluster broker carries one message, live and in history: its `data`, or — for a
//! client publish the hub stamped — its publisher and its `data`, so every node (and every
//! client resuming from the broker's history on any node) sees the `from` the publishing node
//! wrote.
//!
//! An unstamped message is its `data` as is (what nodes stored before stamps went through the
//! broker). A stamped one is `@<from length>:<from><data>`: `data` is valid JSON text, which
//! never begins with `@`, so the two cannot be confused; the length (rather than a separator)
//! because `from` holds the token's `info` verbatim and may contain any character.
//!
//! Also here: a history page read from a broker snapshot (the history API on a cluster node).

use std::borrow::Cow;

use crate::protocol::{server, ChannelName, Epoch, Payload};

use super::HistoryPage;

const STAMPED: char = '@';

/// The entry the broker stores and fans out for `payload`.
pub fn encode<'a>(payload: &Payload<'a>) -> Cow<'a, str> {
    match payload.from {
        None => Cow::Borrowed(payload.data),
        Some(from) => Cow::Owned(format!("{STAMPED}{}:{from}{}", from.len(), payload.data)),
    }
}

/// The payload of a stored entry. An entry that starts like a stamped one but does not parse
/// (never written by crier) is delivered whole as `data` rather than dropped.
pub fn decode(entry: &str) -> Payload<'_> {
    split_stamped(entry).unwrap_or(Payload::data(entry))
}

fn split_stamped(entry: &str) -> Option<Payload<'_>> {
    let rest = entry.strip_prefix(STAMPED)?;
    let (length, rest) = rest.split_once(':')?;
    let length: usize = length.parse().ok()?;
    if !rest.is_char_boundary(length) {
        return None;
    }
    let (from, data) = rest.split_at(length);
    if data.is_empty() {
        return None;
    }
    Some(Payload {
        data,
        from: Some(from),
    })
}

/// A history page read from a broker snapshot, shaped like the local one.
pub(super) fn page_of(
    channel: &ChannelName,
    snapshot: &Snapshot,
    since: u64,
    limit: usize,
    max_bytes: usize,
) -> HistoryPage {
    let first = snapshot.first_available();
    let mut frames = Vec::new();
    let mut bytes = 0;
    let mut next = None;
    for (offset, data) in (first..).zip(&snapshot.data) {
        if offset <= since {
            continue;
        }
        let frame = server::message(channel, &snapshot.epoch, offset, &decode(data));
        if frames.len() == limit || (!frames.is_empty() && bytes + frame.len() > max_bytes) {
            next = Some(offset - 1);
            break;
        }
        bytes += frame.len();
        frames.push(frame);
    }
    HistoryPage {
        epoch: snapshot.epoch.clone(),
        last_offset: snapshot.last_offset,
        frames,
        next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(data: &str, from: Option<&str>) {
        let entry = encode(&Payload { data, from });
        let back = decode(&entry);
        assert_eq!((back.data, back.from), (data, from));
    }

    #[test]
    fn entries_round_trip() {
        round_trip(r#"{"a":1}"#, None);
        round_trip("\"@x\"", None);
        round_trip("[1,\n2]", Some(r#"{"user":"ada","client":"c1"}"#));
        // `info` kept verbatim: colons, newlines and multi-byte characters inside `from`.
        round_trip(
            "\"héllo\"",
            Some("{\"client\":\"c2\",\"info\":{\"a:b\":\n\"é@\"}}"),
        );
    }

    #[test]
    fn plain_data_is_never_read_as_stamped() {
        assert_eq!(encode(&Payload::data("12")), "12");
        assert!(decode("12").from.is_none());
    }

    #[test]
    fn malformed_stamps_are_delivered_whole() {
        for entry in ["@", "@x:1", "@99:{}", "@1:é", "@2:{}"] {
            let payload = decode(entry);
            assert_eq!((payload.data, payload.from), (entry, None));
        }
    }
}

/// A channel as the broker holds it: its generation, its last offset, and the entries
/// (see [`encode`]) of the messages its history still holds, oldest first (consecutive
/// offsets ending at `last_offset`). Re-exported by [`super::broker`], the seam it crosses.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub epoch: Epoch,
    pub last_offset: u64,
    pub data: Vec<String>,
}
