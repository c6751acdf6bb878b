//! `Frame`: one server → client frame, encoded once into shared bytes.
//!
//! A publish is serialised exactly once; every subscriber's queue and the history ring hold a
//! reference-counted clone of the same bytes, which transports write out without copying.

use bytes::Bytes;
use serde::Serialize;

/// Always UTF-8 JSON text: frames are only made from `String`s.
#[derive(Clone, Debug)]
pub struct Frame(Bytes);

impl Frame {
    /// A frame of no bytes (allocates nothing).
    pub const fn empty() -> Self {
        Self(Bytes::new())
    }

    pub fn from_string(text: String) -> Self {
        Self(Bytes::from(text))
    }

    /// Serialises one of the contract's frame shapes. They hold only strings, numbers and
    /// already-parsed JSON, so serialisation cannot fail.
    pub(crate) fn json<T: Serialize>(value: &T) -> Self {
        Self::from_string(serde_json::to_string(value).unwrap_or_default())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The shared bytes (a reference-count increment, no copy).
    pub fn bytes(&self) -> Bytes {
        self.0.clone()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
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
