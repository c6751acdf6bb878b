//! The flushers (`hub::direct`) write published frames to idle connections from outside their
//! tasks. A client whose socket takes only part of what is written must still get every
//! frame whole and in order (a frame cut short is finished by its own task before anything
//! else), and nobody else may notice.

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::backpressure::Bystanders;
use crate::common::*;

/// 8 KiB of payload per message, many times what the tiny socket buffers below hold.
fn big(n: u64) -> String {
    format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(8 * 1024))
}

#[tokio::test]
async fn frames_cut_short_by_a_full_socket_arrive_whole_and_in_order() {
    // The smallest send buffer the kernel allows, so the flusher's writes are cut short.
    let server = TestServer::with(&["--socket-send-buffer", "4096"]).await;
    let mut bystanders = Bystanders::join(&server).await;

    // A subscriber with a tiny receive buffer that does not read at first.
    let stream = server.connect_small_window().await;
    let url = format!("ws://{}/ws?channel=watch", server.addr);
    let (mut slow, _) = within("handshake", tokio_tungstenite::client_async(url, stream))
        .await
        .expect("websocket connects");
    let first = next_json(&mut slow).await;
    assert_eq!(first["type"], "subscribed");

    for round in 0..2u64 {
        // 160 KiB: far more than both socket buffers hold (but under the 256 KiB queue
        // budget): most of it waits in the queue, a frame is
        // cut short, and the connection's own task takes over.
        let mut offsets = Vec::new();
        for i in 0..20 {
            let n = round * 100 + i;
            let (status, reply) = server
                .post("/api/publish/watch", "application/json", big(n))
                .await;
            assert_eq!(status, 200, "{reply}");
            offsets.push(reply["offset"].as_u64().unwrap());
            bystanders.published.push(reply["offset"].as_u64().unwrap());
        }
        // Now read: every frame parses (a frame boundary lost would not), in order, whole.
        for (i, offset) in offsets.iter().enumerate() {
            let frame = next_json(&mut slow).await;
            assert_eq!(frame["type"], "message");
            assert_eq!(frame["offset"].as_u64(), Some(*offset));
            assert_eq!(frame["data"]["n"], json!(round * 100 + i as u64));
            assert_eq!(frame["data"]["pad"].as_str().map(str::len), Some(8 * 1024));
        }
        bystanders.check(&server).await;
        // Caught up, the connection parks again and the next round starts from there.
    }
    // The case this test is for happened: flushers wrote, and the socket refused part.
    let direct = &server.hub.stats().direct;
    assert!(direct.frames.get() > 0, "no flusher wrote");
    assert!(
        direct.handed_back.get() > 0,
        "the socket never refused a flusher's write"
    );
    // And a small message after all that comes through at once.
    let reply = server.publish("watch", &json!("last")).await;
    bystanders.published.push(reply["offset"].as_u64().unwrap());
    let frame = next_json(&mut slow).await;
    assert_eq!(frame["data"], "last");
    bystanders.check(&server).await;
}

async fn next_json<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match within("a frame", ws.next()).await {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(text.as_str()).unwrap(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// `--ws-flushers 0` is the path before the flushers: every frame written by the connection's
/// own task. Both paths deliver the same frames; only the default one counts flusher writes.
#[tokio::test]
async fn with_and_without_flushers_every_frame_arrives_in_order() {
    for (args, flushed) in [(&["--ws-flushers", "0"][..], false), (&[][..], true)] {
        let server = TestServer::with(args).await;
        let mut ws = server.ws("/ws?channel=watch").await;
        ws.recv_type("subscribed").await;
        let mut published = Vec::new();
        for n in 0..50 {
            let reply = server.publish("watch", &json!(n)).await;
            published.push(reply["offset"].as_u64().unwrap());
        }
        let mut got = Vec::new();
        while got.len() < published.len() {
            got.push(ws.recv_type("message").await);
        }
        assert_eq!(offsets(&got), published, "{args:?}");
        let frames = server.hub.stats().direct.frames.get();
        assert_eq!(frames > 0, flushed, "{args:?}: {frames} frames by flushers");
        ws.close().await;
    }
}
