//! The RFC 6455 side of an upgrade, shared by both handshake paths: the one validation of the
//! upgrade headers ([`validate_upgrade`]), the `Sec-WebSocket-Accept` key, and the `101` the
//! direct path writes itself.

use hyper::header::HeaderValue;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::TransportError;

/// The `101 Switching Protocols` of the direct path, as the hyper path words it.
pub(super) fn switching_protocols(accept_key: &HeaderValue) -> Vec<u8> {
    let mut response = b"HTTP/1.1 101 Switching Protocols\r\n\
        connection: upgrade\r\n\
        upgrade: websocket\r\n\
        sec-websocket-accept: "
        .to_vec();
    response.extend_from_slice(accept_key.as_bytes());
    response.extend_from_slice(b"\r\n\r\n");
    response
}

/// Most header fields a request head may have. hyper's own limit (its default, which it
/// keeps on the stack): a head with more gets hyper's `431` on either path, because the
/// sniffer hands it to hyper.
pub(super) const MAX_HEADERS: usize = 100;

/// A parsed head's header fields as the name/value pairs [`validate_upgrade`] reads.
pub(super) fn httparse_headers<'a>(
    headers: &'a [httparse::Header<'a>],
) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
    headers
        .iter()
        .map(|header| (header.name.as_bytes(), header.value))
}

/// Validates the upgrade headers (RFC 6455 §4.2.1) and returns `Sec-WebSocket-Key`. The one
/// set of rules for both paths: the hyper path refuses by it, and the sniffer sends a head
/// down the direct path only if it passes, so a bad upgrade gets the same `400 not_websocket`
/// either way. `http11`: whether the request is HTTP/1.1 (an HTTP/1.0 connection cannot be
/// upgraded: hyper would answer 101 and then close it). `headers` lists the head's name/value
/// pairs (each name as often as it was sent), afresh on every call.
pub(super) fn validate_upgrade<'a, I>(
    http11: bool,
    headers: impl Fn() -> I,
) -> Result<&'a [u8], TransportError>
where
    I: Iterator<Item = (&'a [u8], &'a [u8])>,
{
    let values = |name: &'static str| {
        headers()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, value)| value)
    };
    let has_token = |name: &'static str, token: &str| {
        values(name).any(|value| {
            value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    };
    if !has_token("upgrade", "websocket") {
        return Err(TransportError::NotWebSocket("missing `Upgrade: websocket`"));
    }
    if !http11 {
        return Err(TransportError::NotWebSocket(
            "a WebSocket upgrade needs HTTP/1.1",
        ));
    }
    if !has_token("connection", "upgrade") {
        return Err(TransportError::NotWebSocket(
            "missing `Connection: upgrade`",
        ));
    }
    if values("sec-websocket-version").next() != Some(b"13") {
        return Err(TransportError::NotWebSocket(
            "`Sec-WebSocket-Version` must be 13",
        ));
    }
    let key = values("sec-websocket-key")
        .next()
        .ok_or(TransportError::NotWebSocket("missing `Sec-WebSocket-Key`"))?;
    if !is_base64_of_16_bytes(key) {
        return Err(TransportError::NotWebSocket(
            "`Sec-WebSocket-Key` must be 16 bytes in base64",
        ));
    }
    Ok(key)
}

/// `Sec-WebSocket-Accept` for a validated key.
pub(super) fn accept_key(key: &[u8]) -> Result<HeaderValue, TransportError> {
    HeaderValue::from_str(&derive_accept_key(key))
        .map_err(|_| TransportError::NotWebSocket("bad `Sec-WebSocket-Key`"))
}

/// Whether `key` is 16 bytes in padded base64 (24 characters, the last two `=`), as RFC 6455
/// requires of `Sec-WebSocket-Key`.
fn is_base64_of_16_bytes(key: &[u8]) -> bool {
    fn sextet(c: u8) -> Option<u8> {
        match c {
            b'A'..=b'Z' => Some(c - b'A'),
            b'a'..=b'z' => Some(c - b'a' + 26),
            b'0'..=b'9' => Some(c - b'0' + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let [data @ .., last, b'=', b'='] = key else {
        return false;
    };
    // 16 bytes are 21 sextets and 4 bits: the last character's low 4 bits must be zero.
    data.len() == 21
        && data.iter().all(|&c| sextet(c).is_some())
        && sextet(*last).is_some_and(|s| s & 0x0f == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Head = Vec<(&'static str, &'static str)>;

    fn check(head: &[(&'static str, &'static str)]) -> Result<&'static [u8], TransportError> {
        validate_upgrade(true, || {
            head.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()))
        })
    }

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    #[test]
    fn accepts_a_valid_upgrade_and_derives_the_accept_key() {
        let key = check(&[
            ("Connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", KEY),
        ])
        .unwrap();
        assert_eq!(
            accept_key(key).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
            "RFC 6455 §1.3's example"
        );
    }

    #[test]
    fn refuses_what_rfc_6455_refuses() {
        let valid = [
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", KEY),
        ];
        let without =
            |name: &str| -> Head { valid.iter().copied().filter(|(n, _)| *n != name).collect() };
        let replaced = |name: &str, value: &'static str| -> Head {
            valid
                .iter()
                .map(|&(n, v)| (n, if n == name { value } else { v }))
                .collect()
        };
        for bad in [
            without("Upgrade"),
            without("Connection"),
            without("Sec-WebSocket-Version"),
            without("Sec-WebSocket-Key"),
            replaced("Connection", "keep-alive"),
            replaced("Upgrade", "h2c"),
            replaced("Sec-WebSocket-Version", "8"),
            replaced("Sec-WebSocket-Key", "k"),
            replaced("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZR=="),
            replaced("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ="),
            replaced("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25j!Q=="),
        ] {
            assert!(
                matches!(check(&bad), Err(TransportError::NotWebSocket(_))),
                "{bad:?}"
            );
        }
        let http10 = validate_upgrade(false, || {
            valid.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()))
        });
        assert!(matches!(http10, Err(TransportError::NotWebSocket(_))));
    }
}
