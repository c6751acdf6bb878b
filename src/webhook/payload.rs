//! What a webhook says: the event kinds (`--webhook-events`), the JSON body
//! `{"id", "event", "at_ms", …fields}`, and its signature, `X-Crier-Signature:
//! sha256=<hex of HMAC-SHA256(secret, body)>`.

use std::sync::Arc;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::hub::{ChannelName, ClientId};

macro_rules! event_kinds {
    ($($variant:ident => $wire:literal,)+) => {
        /// One kind of webhook event.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum EventKind {
            $($variant,)+
        }

        impl EventKind {
            pub const ALL: &'static [EventKind] = &[$(Self::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $wire,)+
                }
            }
        }
    };
}

event_kinds! {
    UserOnline => "user_online",
    UserOffline => "user_offline",
    ChannelOccupied => "channel_occupied",
    ChannelVacated => "channel_vacated",
    MemberAdded => "member_added",
    MemberRemoved => "member_removed",
}

impl std::str::FromStr for EventKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s.trim())
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|k| k.as_str()).collect();
                format!("unknown webhook event `{s}` (known: {})", names.join(", "))
            })
    }
}

/// A set of kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventKinds(u8);

impl EventKinds {
    pub fn all() -> Self {
        Self::from_iter(EventKind::ALL.iter().copied())
    }

    pub fn has(self, kind: EventKind) -> bool {
        self.0 & (1 << kind as u8) != 0
    }
}

impl FromIterator<EventKind> for EventKinds {
    fn from_iter<I: IntoIterator<Item = EventKind>>(kinds: I) -> Self {
        Self(kinds.into_iter().fold(0, |bits, k| bits | 1 << k as u8))
    }
}

/// One webhook event, ready to send to every URL (the same `id` to each, and on every
/// retry: receivers deduplicate by it).
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub kind: EventKind,
    pub id: String,
    pub body: Bytes,
    pub signature: String,
}

/// The fields after `id`, `event` and `at_ms`.
#[derive(Serialize)]
#[serde(untagged)]
pub enum Fields<'a> {
    User {
        user: &'a str,
        /// The connection that brought the user online (`user_online` only).
        #[serde(skip_serializing_if = "Option::is_none")]
        client: Option<String>,
    },
    Channel {
        channel: &'a ChannelName,
    },
    Member {
        channel: &'a ChannelName,
        client: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        user: Option<&'a str>,
    },
}

impl Fields<'_> {
    pub fn member<'a>(
        channel: &'a ChannelName,
        client: ClientId,
        user: Option<&'a Arc<str>>,
    ) -> Fields<'a> {
        Fields::Member {
            channel,
            client: client.to_string(),
            user: user.map(|u| &**u),
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    id: &'a str,
    event: &'static str,
    at_ms: u64,
    #[serde(flatten)]
    fields: Fields<'a>,
}

/// A new event: a fresh id, the body, its signature with `secret`.
pub fn outgoing(kind: EventKind, at_ms: u64, fields: Fields<'_>, secret: &[u8]) -> Outgoing {
    let id = hex::encode(rand::random::<[u8; 16]>());
    let body = serde_json::to_vec(&Body {
        id: &id,
        event: kind.as_str(),
        at_ms,
        fields,
    })
    .unwrap_or_default();
    let signature = sign(secret, &body);
    Outgoing {
        kind,
        id,
        body: body.into(),
        signature,
    }
}

/// `sha256=<hex>` of HMAC-SHA256(secret, body): the value of `X-Crier-Signature`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body_in_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn bodies_carry_id_event_time_and_fields() {
        let channel = ChannelName::parse("room").unwrap();
        let ada: Arc<str> = "ada".into();
        let out = outgoing(
            EventKind::MemberAdded,
            7,
            Fields::member(&channel, ClientId(3), Some(&ada)),
            b"k",
        );
        let v: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(v["id"].as_str().unwrap(), out.id);
        assert_eq!(out.id.len(), 32);
        assert_eq!(
            v,
            serde_json::json!({"id": out.id, "event": "member_added", "at_ms": 7, "channel": "room", "client": "c3", "user": "ada"})
        );
        assert_eq!(out.signature, sign(b"k", &out.body));
        let kinds: EventKinds = ["user_online", "member_removed"]
            .iter()
            .map(|s| s.parse::<EventKind>().unwrap())
            .collect();
        assert!(kinds.has(EventKind::UserOnline) && kinds.has(EventKind::MemberRemoved));
        assert!(!kinds.has(EventKind::UserOffline));
        assert!("user_away".parse::<EventKind>().is_err());
    }
}
