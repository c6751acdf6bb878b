//! The direct handshake: a connection whose first bytes are a valid WebSocket upgrade of
//! `/ws` is answered on the bare socket ([`super::WebSockets::accept_direct`]) instead of by
//! hyper.
//!
//! Why: hyper gives every connection an 8 KiB read and an 8 KiB write buffer. For a socket
//! that upgrades at once they only exist during the handshake, but a reconnect storm has
//! thousands of handshakes in flight together, and that peak fragments the heap so every idle
//! connection costs more afterwards. The direct handshake holds only the head, for a moment,
//! and leaves a plain `TcpStream` (no boxed, rewindable upgrade wrapper) under the WebSocket.
//!
//! Only a complete head that is a *valid* upgrade of `/ws` takes the direct path: at most
//! [`MAX_HEADERS`] header fields, and a request line and upgrade headers that pass
//! [`upgrade::validate_upgrade`], the very function the hyper path refuses by. Everything
//! else goes to hyper as usual — a bad upgrade included, which axum's `/ws` route refuses with
//! `400 not_websocket`, and a head hyper cannot take, which hyper answers itself (`431` for
//! too many header fields). So a request gets the same answer whichever path its size sends
//! it down, and the direct path only ever sees heads it will accept or refuse in words.

use std::time::Duration;

use bytes::BufMut as _;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::upgrade::{self, MAX_HEADERS};

/// How much of the request head is read before choosing. Browsers' upgrade requests fit
/// easily; one that does not (huge cookies) takes the hyper path, which handles it as well.
const SNIFF_BYTES: usize = 2048;

/// First allocation for the bytes read: a typical upgrade head fits.
const SNIFF_FIRST_ALLOCATION: usize = 512;

/// What the first bytes of a connection are.
#[derive(Debug, PartialEq, Eq)]
pub enum Opening {
    /// A valid WebSocket upgrade of `/ws`: take the direct path. `read` holds the bytes taken
    /// off the socket, of which the first `head_len` are the head (anything after it is the
    /// client's first WebSocket bytes).
    WebSocket { read: Vec<u8>, head_len: usize },
    /// Anything else: serve it with hyper, replaying `read` (the bytes taken off the socket)
    /// first.
    Http { read: Vec<u8> },
    /// Nothing (or only part of a head) arrived before the deadline, or before shutdown.
    Silent,
}

/// What a head (as far as it has arrived) is.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// A complete, valid WebSocket upgrade of `/ws`, `len` bytes long.
    Upgrade {
        len: usize,
    },
    Http,
}

/// Reads the start of a new connection, for at most `timeout` and not past shutdown, until its
/// bytes decide which path serves it.
///
/// The bytes are read, not peeked, and handed on to the path that serves the connection: a
/// peek leaves them in the socket, which stays readable, so waiting for "more" after a partial
/// head could only be a timer (it was a 2 ms re-peek: 2,000 connections stalled after `GET /w`
/// kept 1.4 of 2 cores busy). A read drains the socket, so the task sleeps until new bytes
/// arrive; each byte is read once, and the head is parsed only when a blank line (its end)
/// has arrived: O(bytes) for a head however it is split.
pub async fn sniff(stream: &TcpStream, timeout: Duration, shutdown: &CancellationToken) -> Opening {
    let mut read = Vec::new();
    // Boxed: the timer and the readiness wait are needed only until the path is chosen, and
    // would otherwise stay in every connection's task (the size guard in `session`).
    let opening = Box::pin(async {
        tokio::select! {
            head = tokio::time::timeout(timeout, read_opening(stream, &mut read)) => head.ok(),
            // Nobody waits at shutdown for a head that has not arrived.
            () = shutdown.cancelled() => None,
        }
    })
    .await;
    match opening {
        Some(Head::Upgrade { len }) => Opening::WebSocket {
            read,
            head_len: len,
        },
        Some(Head::Http) => Opening::Http { read },
        None => Opening::Silent,
    }
}

async fn read_opening(stream: &TcpStream, read: &mut Vec<u8>) -> Head {
    loop {
        if stream.readable().await.is_err() {
            return Head::Http;
        }
        let before = read.len();
        if read.capacity() == before {
            read.reserve(SNIFF_FIRST_ALLOCATION.max(before).min(SNIFF_BYTES - before));
        }
        match stream.try_read_buf(&mut (&mut *read).limit(SNIFF_BYTES - before)) {
            // Closed: hyper reports it as it would any broken connection.
            Ok(0) => return Head::Http,
            Ok(_) => {}
            // Readiness was stale: it is cleared now, so the next wait is for new bytes.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return Head::Http,
        }
        match decide(read, before) {
            Some(head) => return head,
            None if read.len() >= SNIFF_BYTES => return Head::Http,
            None => {}
        }
    }
}

/// `classify`, but only where the bytes read since `before` can have changed the answer: the
/// prefix decides at once, and a head can only be complete once a blank line has arrived.
fn decide(read: &[u8], before: usize) -> Option<Head> {
    let new = &read[before.saturating_sub(3)..];
    let blank_line = new.windows(2).any(|w| w == b"\n\n") || new.windows(3).any(|w| w == b"\n\r\n");
    if blank_line || before < PREFIX_LEN {
        classify(read)
    } else {
        None
    }
}

/// `GET /ws?` or `GET /ws `: the only openings the direct path takes.
const PREFIXES: [&[u8]; 2] = [b"GET /ws?", b"GET /ws "];
const PREFIX_LEN: usize = 8;

/// `Some` once the bytes decide it, `None` while the head is incomplete.
fn classify(head: &[u8]) -> Option<Head> {
    if head.len() < PREFIX_LEN {
        // Still undecided only while it could become one of the prefixes.
        return if PREFIXES.iter().any(|p| p.starts_with(head)) {
            None
        } else {
            Some(Head::Http)
        };
    }
    if !PREFIXES.iter().any(|p| head.starts_with(p)) {
        return Some(Head::Http);
    }
    // On the stack only for this call, like the peek buffer.
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Partial) => None,
        Ok(httparse::Status::Complete(head_len)) => Some(
            if upgrade::validate_upgrade(request.version == Some(1), || {
                upgrade::httparse_headers(request.headers)
            })
            .is_ok()
            {
                Head::Upgrade { len: head_len }
            } else {
                Head::Http
            },
        ),
        // Malformed, or more header fields than hyper takes: hyper answers it.
        Err(_) => Some(Head::Http),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &str = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

    fn head(request_line: &str, headers: &str) -> Vec<u8> {
        format!("{request_line}\r\nHost: x\r\n{headers}\r\n").into_bytes()
    }

    #[test]
    fn recognises_valid_websocket_upgrades_of_ws_only() {
        let ws = head("GET /ws?channel=a HTTP/1.1", UPGRADE);
        assert_eq!(classify(&ws), Some(Head::Upgrade { len: ws.len() }));
        let ws_plain = b"GET /ws HTTP/1.1\r\nupgrade: WebSocket\r\nconnection: keep-alive, upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        assert_eq!(
            classify(ws_plain),
            Some(Head::Upgrade {
                len: ws_plain.len()
            })
        );
        let not_upgrade = head("GET /ws HTTP/1.1", "");
        assert_eq!(classify(&not_upgrade), Some(Head::Http));
        let other_path = head("GET /wsx HTTP/1.1", UPGRADE);
        assert_eq!(classify(&other_path), Some(Head::Http));
        assert_eq!(
            classify(b"POST /api/publish/a HTTP/1.1\r\n"),
            Some(Head::Http)
        );
        assert_eq!(classify(b"GE"), None, "could still become GET /ws");
        assert_eq!(
            classify(b"GET /ws?channel=a HTTP/1.1\r\nUpgr"),
            None,
            "head incomplete"
        );
    }

    /// A bad upgrade goes to hyper, whose `/ws` route refuses it in words.
    #[test]
    fn sends_bad_upgrades_to_hyper() {
        let bad = [
            UPGRADE.replace("Version: 13", "Version: 8"),
            UPGRADE.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
            UPGRADE.replace("Connection: Upgrade", "Connection: keep-alive"),
            UPGRADE.replace("dGhlIHNhbXBsZSBub25jZQ==", "short"),
        ];
        for headers in &bad {
            assert_eq!(
                classify(&head("GET /ws HTTP/1.1", headers)),
                Some(Head::Http),
                "{headers}"
            );
        }
        assert_eq!(
            classify(&head("GET /ws HTTP/1.0", UPGRADE)),
            Some(Head::Http)
        );
        let many = format!("{UPGRADE}{}", "X-A: b\r\n".repeat(MAX_HEADERS));
        assert_eq!(
            classify(&head("GET /ws HTTP/1.1", &many)),
            Some(Head::Http),
            "more header fields than hyper takes"
        );
        let most = format!("{UPGRADE}{}", "X-A: b\r\n".repeat(MAX_HEADERS - 5));
        let most = head("GET /ws HTTP/1.1", &most);
        assert_eq!(
            classify(&most),
            Some(Head::Upgrade { len: most.len() }),
            "exactly as many header fields as hyper takes"
        );
    }

    /// Fed a byte at a time, `decide` gives the answer `classify` gives the whole head, and
    /// parses only at the blank line.
    #[test]
    fn deciding_byte_by_byte_agrees_with_the_whole_head() {
        let heads = [
            head("GET /ws?channel=a HTTP/1.1", UPGRADE),
            head("GET /ws HTTP/1.1", ""),
            head("GET /w HTTP/1.1", UPGRADE),
            b"GET /ws HTTP/1.1\nupgrade: websocket\nconnection: upgrade\nsec-websocket-version: 13\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\n\n".to_vec(),
        ];
        for whole in &heads {
            let mut answer = None;
            for end in 1..=whole.len() {
                if let Some(head) = decide(&whole[..end], end - 1) {
                    answer = Some(head);
                    break;
                }
            }
            assert_eq!(
                answer,
                classify(whole),
                "{}",
                String::from_utf8_lossy(whole)
            );
        }
        assert_eq!(decide(b"GET /ws HTTP/1.1\r\nHost: x\r\n", 20), None);
    }
}
