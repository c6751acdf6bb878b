//! Helpers for the raw JSON the contract carries through untouched (`data`, `id`): it is kept
//! as written and never parsed into a tree, so its nesting is measured here instead.

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// Deserialises a field that may hold any JSON, `null` included, as `Some`.
pub fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Whether `raw` (valid JSON text) nests arrays and objects deeper than `max` levels. One
/// pass, no recursion, stops at the first level too deep: a hostile value costs at most its
/// length.
pub fn deeper_than(raw: &str, max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in raw.as_bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_containers_not_brackets_in_strings() {
        assert!(!deeper_than("1", 0));
        assert!(deeper_than("[]", 0));
        assert!(!deeper_than("[[1]]", 2));
        assert!(deeper_than("[[1]]", 1));
        assert!(!deeper_than(r#"{"a":"[[[[\"]]]]"}"#, 1));
        assert!(deeper_than(r#"{"a":{"b":[1]}}"#, 2));
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(deeper_than(&deep, 32));
    }
}
