//! The direct handshake: a connection whose first bytes are a WebSocket upgrade of `/ws` is
//! handed to tungstenite's own handshake instead of hyper.
//!
//! Why: hyper gives every connection an 8 KiB read and an 8 KiB write buffer. For a socket
//! that upgrades at once they only exist during the handshake, but a reconnect storm has
//! thousands of handshakes in flight together, and that peak fragments the heap so every idle
//! connection costs more afterwards. tungstenite's handshake is lighter and leaves a plain
//! `TcpStream` (no boxed, rewindable upgrade wrapper) under the WebSocket.
//!
//! Anything that does not look like an upgrade of `/ws` within the first bytes goes to hyper
//! as usual, which also serves `/ws` requests this sniffing does not recognise.

use std::time::Duration;

use std::task::Poll;

use tokio::io::ReadBuf;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How much of the request head is inspected. Browsers' upgrade requests fit easily; one that
/// does not (huge cookies) takes the hyper path, which handles it as well.
const SNIFF_BYTES: usize = 2048;

/// Pause between peeks while a request head arrives in pieces.
const SNIFF_RETRY: Duration = Duration::from_millis(2);

/// What the first bytes of a connection are.
#[derive(Debug, PartialEq, Eq)]
pub enum Opening {
    /// `GET /ws` with `Upgrade: websocket`: take the direct path.
    WebSocket,
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
    let end = find(head, b"\r\n\r\n")?;
    let upgrade = head[..end]
        .split(|&b| b == b'\n')
        .skip(1)
        .filter_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let colon = line.iter().position(|&b| b == b':')?;
            Some((&line[..colon], &line[colon + 1..]))
        })
        .any(|(name, value)| {
            name.eq_ignore_ascii_case(b"upgrade")
                && value
                    .split(|&b| b == b',')
                    .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"websocket"))
        });
    Some(if upgrade {
        Opening::WebSocket
    } else {
        Opening::Http
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_websocket_upgrades_of_ws_only() {
        let ws = b"GET /ws?channel=a HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n";
        assert_eq!(classify(ws), Some(Opening::WebSocket));
        let ws_plain = b"GET /ws HTTP/1.1\r\nupgrade: WebSocket\r\n\r\n";
        assert_eq!(classify(ws_plain), Some(Opening::WebSocket));
        let not_upgrade = b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(classify(not_upgrade), Some(Opening::Http));
        let other_path = b"GET /wsx HTTP/1.1\r\nUpgrade: websocket\r\n\r\n";
        assert_eq!(classify(other_path), Some(Opening::Http));
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
}
