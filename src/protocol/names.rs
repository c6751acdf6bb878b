//! The names and positions the contract is written in: `ChannelName`, `Epoch`, `Since`.
//!
//! They live apart from the hub's channel code so that everything which speaks of a channel —
//! the hub, the frames, the HTTP bodies — can name one without importing the others.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Longest channel name, in bytes. Names travel in every message frame and are map keys, so
/// they are kept short; 128 leaves room for namespaced names like `tenant:42:room:lobby`.
pub const MAX_CHANNEL_NAME_LEN: usize = 128;

#[derive(Debug, thiserror::Error)]
#[error(
    "channel name must be 1-{MAX_CHANNEL_NAME_LEN} bytes of A-Z a-z 0-9 _ - . : @ #, not only dots, not ending in `#` (in a URL path write `#` as %23)"
)]
pub struct InvalidChannelName;

/// A validated channel name: 1–128 bytes of `A–Z a–z 0–9 _ - . : @ #`, not made only of
/// dots and not ending in `#`. A name with `#` is a user's private channel: the text after the
/// last `#` is its user ([`ChannelName::owner`]).
/// The alphabet never needs escaping in JSON or in a URL path segment; names like `.` and
/// `..` are refused because URL normalisers (in proxies, in HTTP clients) remove such path
/// segments, so `/api/publish/..` would not reach the channel it names.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(Arc<str>);

impl ChannelName {
    pub fn parse(name: &str) -> Result<Self, InvalidChannelName> {
        let valid = !name.is_empty()
            && name.len() <= MAX_CHANNEL_NAME_LEN
            && name.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'@' | b'#')
            })
            && !name.bytes().all(|b| b == b'.')
            && !name.ends_with('#');
        if valid {
            Ok(Self(Arc::from(name)))
        } else {
            Err(InvalidChannelName)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The user whose private channel this is (`notify:#42` → `42`), if the name has a `#`.
    pub fn owner(&self) -> Option<&str> {
        self.0.rsplit_once('#').map(|(_, user)| user)
    }
}

impl fmt::Debug for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for ChannelName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Read back only where crier itself wrote the name (between nodes); checked all the same.
impl<'de> Deserialize<'de> for ChannelName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Self::parse(&name).map_err(|_| serde::de::Error::custom("invalid channel name"))
    }
}

/// A channel's numbering generation: 48 random bits as 12 hex digits. A new channel (after a
/// restart, or after an idle channel was forgotten) always gets a new epoch.
#[derive(Clone, PartialEq, Eq)]
pub struct Epoch(Arc<str>);

impl Epoch {
    pub fn random() -> Self {
        let bits: u64 = rand::random::<u64>() & 0xffff_ffff_ffff;
        Self(Arc::from(format!("{bits:012x}")))
    }

    pub fn from_string(s: String) -> Self {
        Self(Arc::from(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for Epoch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// A client's resume position: `epoch` omitted means "the channel's current epoch".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Since {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    pub offset: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_follow_the_documented_alphabet() {
        for ok in [
            "news",
            "chat:lobby",
            "a",
            "user@example.com",
            "x_y-z.1",
            ".a",
            "...b",
            "notify:#42",
            "a#b#c",
            &"a".repeat(128),
        ] {
            assert!(ChannelName::parse(ok).is_ok(), "{ok} should be valid");
        }
        for bad in [
            "",
            "a/b",
            "a b",
            "é",
            "a\"b",
            "a?b",
            ".",
            "..",
            "...",
            "notify:#",
            &"a".repeat(129),
        ] {
            assert!(
                ChannelName::parse(bad).is_err(),
                "{bad:?} should be invalid"
            );
        }
    }

    #[test]
    fn random_epochs_differ() {
        assert_ne!(Epoch::random(), Epoch::random());
    }
}
