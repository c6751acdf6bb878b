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
//! [`handshake::validate_upgrade`], the very function the hyper path refuses by. Everything
//! else goes to hyper as usual — a bad upgrade included, which axum's `/ws` route refuses with
//! `400 not_websocket`, and a head hyper cannot take, which hyper answers itself (`431` for
//! too many header fields). So a request gets the same answer whichever path its size sends
//! it down, and the direct path only ever sees heads it will accept or refuse in words.

use std::time::Duration;

use std::task::Poll;

use tokio::io::ReadBuf;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::handshake::{self, MAX_HEADERS};

/// How much of the request head is inspected. Browsers' upgrade requests fit easily; one that
/// does not (huge cookies) takes the hyper path, which handles it as well.
const SNIFF_BYTES: usize = 2048;

/// Pause between peeks while a request head arrives in pieces.
const SNIFF_RETRY: Duration = Duration::from_millis(2);

/// What the first bytes of a connection are.
#[derive(Debug, PartialEq, Eq)]
pub enum Opening {
    /// A valid WebSocket upgrade of `/ws`, its head `head_len` bytes long: take the direct
    /// path.
    WebSocket { head_len: usize },
    /// Anything else: serve it with hyper.
    Http,
    /// Nothing (or only part of a head) arrived before the deadline.
    Silent,
}

/// Peeks (without consuming) at the start of a new connection, for at most `timeout`.
pub async fn sniff(stream: &TcpStream, timeout: Duration) -> Opening {
    let deadline = Instant::now() + timeout;
    loop {
        // The peek buffer lives on the stack only while polled, so it does not make the
        // connection's task (kept for its whole life) any larger.
        let peeked = std::future::poll_fn(|cx| {
            let mut buf = [0u8; SNIFF_BYTES];
            let mut read = ReadBuf::new(&mut buf);
            match stream.poll_peek(cx, &mut read) {
                Poll::Ready(Ok(0)) => Poll::Ready(Ok(Some(Opening::Http))),
                Poll::Ready(Ok(n)) => Poll::Ready(Ok(match classify(read.filled()) {
                    None if n == SNIFF_BYTES => Some(Opening::Http),
                    decided => decided,
                })),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        });
        match tokio::time::timeout_at(deadline, peeked).await {
            Ok(Ok(Some(opening))) => return opening,
            // Closed or failed: hyper reports it as it would any broken connection.
            Ok(Err(_)) => return Opening::Http,
            Err(_) => return Opening::Silent,
            Ok(Ok(None)) if Instant::now() >= deadline => return Opening::Silent,
            // Part of a head: wait for the rest (peeking again at once would spin).
            Ok(Ok(None)) => tokio::time::sleep(SNIFF_RETRY).await,
        }
    }
}

/// `Some` once the bytes decide it, `None` while the head is incomplete.
fn classify(head: &[u8]) -> Option<Opening> {
    const PREFIXES: [&[u8]; 2] = [b"GET /ws?", b"GET /ws "];
    let prefix_len = PREFIXES[0].len();
    if head.len() < prefix_len {
        // Still undecided only while it could become one of the prefixes.
        return if PREFIXES.iter().any(|p| p.starts_with(head)) {
            None
        } else {
            Some(Opening::Http)
        };
    }
    if !PREFIXES.iter().any(|p| head.starts_with(p)) {
        return Some(Opening::Http);
    }
    // On the stack only for this call, like the peek buffer.
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Partial) => None,
        Ok(httparse::Status::Complete(head_len)) => Some(
            if handshake::validate_upgrade(request.version == Some(1), || {
                handshake::httparse_headers(request.headers)
            })
            .is_ok()
            {
                Opening::WebSocket { head_len }
            } else {
                Opening::Http
            },
        ),
        // Malformed, or more header fields than hyper takes: hyper answers it.
        Err(_) => Some(Opening::Http),
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
        assert_eq!(
            classify(&ws),
            Some(Opening::WebSocket { head_len: ws.len() })
        );
        let ws_plain = b"GET /ws HTTP/1.1\r\nupgrade: WebSocket\r\nconnection: keep-alive, upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        assert_eq!(
            classify(ws_plain),
            Some(Opening::WebSocket {
                head_len: ws_plain.len()
            })
        );
        let not_upgrade = head("GET /ws HTTP/1.1", "");
        assert_eq!(classify(&not_upgrade), Some(Opening::Http));
        let other_path = head("GET /wsx HTTP/1.1", UPGRADE);
        assert_eq!(classify(&other_path), Some(Opening::Http));
        assert_eq!(
            classify(b"POST /api/publish/a HTTP/1.1\r\n"),
            Some(Opening::Http)
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
                Some(Opening::Http),
                "{headers}"
            );
        }
        assert_eq!(
            classify(&head("GET /ws HTTP/1.0", UPGRADE)),
            Some(Opening::Http)
        );
        let many = format!("{UPGRADE}{}", "X-A: b\r\n".repeat(MAX_HEADERS));
        assert_eq!(
            classify(&head("GET /ws HTTP/1.1", &many)),
            Some(Opening::Http),
            "more header fields than hyper takes"
        );
        let most = format!("{UPGRADE}{}", "X-A: b\r\n".repeat(MAX_HEADERS - 5));
        let most = head("GET /ws HTTP/1.1", &most);
        assert_eq!(
            classify(&most),
            Some(Opening::WebSocket {
                head_len: most.len()
            }),
            "exactly as many header fields as hyper takes"
        );
    }
}
