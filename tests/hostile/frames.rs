//! Malformed WebSocket frames, written byte by byte: each gets its documented close code and
//! reason, and nobody else notices.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::backpressure::Bystanders;
use crate::common::*;

/// A WebSocket client that writes raw bytes after a real handshake.
struct RawWs {
    stream: TcpStream,
}

impl RawWs {
    async fn connect(server: &TestServer) -> Self {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let head = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                    Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        within("the 101", async {
            while !response.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                stream.read_exact(&mut byte).await.unwrap();
                response.push(byte[0]);
            }
        })
        .await;
        assert!(
            response.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&response)
        );
        Self { stream }
    }

    /// One client frame: masked with a zero key unless `masked` is false.
    async fn frame(&mut self, first: u8, payload: &[u8], masked: bool) {
        let mut bytes = vec![first];
        let mask_bit = if masked { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => bytes.push(mask_bit | n as u8),
            n if n < 65_536 => {
                bytes.push(mask_bit | 126);
                bytes.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                bytes.push(mask_bit | 127);
                bytes.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if masked {
            bytes.extend_from_slice(&[0, 0, 0, 0]); // a zero mask leaves the payload as is
        }
        bytes.extend_from_slice(payload);
        self.send(&bytes).await;
    }

    async fn send(&mut self, bytes: &[u8]) {
        // The server may already have closed on an earlier frame: that is for `close` to see.
        let _ = self.stream.write_all(bytes).await;
    }

    /// Reads server frames until the close frame; returns its code and reason.
    async fn close(&mut self) -> Close {
        within("the close frame", async {
            loop {
                let mut head = [0u8; 2];
                self.stream
                    .read_exact(&mut head)
                    .await
                    .expect("a close frame before the end");
                let len = match head[1] & 0x7f {
                    126 => u64::from(self.stream.read_u16().await.unwrap()),
                    127 => self.stream.read_u64().await.unwrap(),
                    n => u64::from(n),
                };
                let mut payload = vec![0u8; len as usize];
                self.stream.read_exact(&mut payload).await.unwrap();
                if head[0] & 0x0f == 0x8 {
                    let code = u16::from_be_bytes([payload[0], payload[1]]);
                    return (code, String::from_utf8_lossy(&payload[2..]).into_owned());
                }
            }
        })
        .await
    }
}

/// One raw frame: first byte (FIN, RSV, opcode), payload, masked.
type RawFrame = (u8, Vec<u8>, bool);

/// What the server closes with: code and reason.
type Close = (u16, String);

const FIN: u8 = 0x80;
const TEXT: u8 = 0x1;
const CONTINUATION: u8 = 0x0;
const PING: u8 = 0x9;

#[tokio::test]
async fn malformed_frames_get_their_close_codes() {
    let server = TestServer::with(&["--max-message-size", "4096"]).await;
    let mut bystanders = Bystanders::join(&server).await;
    let protocol_error = (1002, "protocol_error".to_owned());
    let cases: Vec<(&str, Vec<RawFrame>, Close)> = vec![
        (
            "unmasked",
            vec![(FIN | TEXT, b"{}".to_vec(), false)],
            protocol_error.clone(),
        ),
        (
            "reserved bit",
            vec![(FIN | 0x40 | TEXT, b"{}".to_vec(), true)],
            protocol_error.clone(),
        ),
        (
            "unknown opcode",
            vec![(FIN | 0x3, b"x".to_vec(), true)],
            protocol_error.clone(),
        ),
        (
            "fragmented ping",
            vec![(PING, b"x".to_vec(), true)],
            protocol_error.clone(),
        ),
        (
            "long ping",
            vec![(FIN | PING, vec![b'p'; 126], true)],
            protocol_error.clone(),
        ),
        (
            "continuation without a start",
            vec![(FIN | CONTINUATION, b"x".to_vec(), true)],
            protocol_error.clone(),
        ),
        (
            "a message that never ends",
            (0..8)
                .map(|i| {
                    (
                        if i == 0 { TEXT } else { CONTINUATION },
                        vec![b'a'; 1024],
                        true,
                    )
                })
                .collect(),
            (1009, "message_too_large".to_owned()),
        ),
        (
            "invalid UTF-8 across fragments",
            vec![
                (TEXT, vec![b'"', 0xc3], true),
                (FIN | CONTINUATION, vec![0x28, b'"'], true),
            ],
            (1007, "invalid_utf8".to_owned()),
        ),
    ];
    for (i, (what, frames, expected)) in cases.into_iter().enumerate() {
        let mut ws = RawWs::connect(&server).await;
        for (first, payload, masked) in frames {
            ws.frame(first, &payload, masked).await;
        }
        assert_eq!(ws.close().await, expected, "{what}");
        assert_eq!(bystanders.publish(&server, i as u64).await, 200);
    }
    // A header announcing 2^63 bytes: refused from the header, nothing allocated.
    let mut ws = RawWs::connect(&server).await;
    let mut huge = vec![FIN | TEXT, 0x80 | 127];
    huge.extend_from_slice(&(1u64 << 63).to_be_bytes());
    huge.extend_from_slice(&[0, 0, 0, 0]);
    ws.send(&huge).await;
    assert_eq!(ws.close().await, (1009, "message_too_large".to_owned()));
    bystanders.check(&server).await;
    wait_until("the raw clients to leave", || {
        server.hub.client_count() == 2
    })
    .await;
}
