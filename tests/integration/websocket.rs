//! WebSocket transport: subscribe, publish, order, resume, slow-client eviction, idle timeout
//! and pings (these two on tokio's paused clock).

use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

#[tokio::test]
async fn subscribe_at_connect_and_receive_what_is_published() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws?channel=news").await;
    let subscribed = ws.recv().await;
    assert_eq!(subscribed["type"], "subscribed");
    assert_eq!(subscribed["channel"], "news");
    assert_eq!(subscribed["offset"], 0);
    assert_eq!(subscribed["recovered"], true);

    let reply = server.publish("news", &json!({"title": "hello"})).await;
    assert_eq!(reply["offset"], 1);
    assert_eq!(reply["enqueued"], 1);
    assert_eq!(reply["epoch"], subscribed["epoch"]);

    let message = ws.recv().await;
    assert_eq!(
        message,
        json!({"type": "message", "channel": "news", "epoch": subscribed["epoch"], "offset": 1, "data": {"title": "hello"}})
    );
    ws.close().await;
    server.assert_no_clients().await;
}

#[tokio::test]
async fn subscribe_frame_echoes_id_and_unsubscribe_stops_delivery() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws").await;
    ws.send(json!({"type": "subscribe", "channel": "a", "id": 41}))
        .await;
    let subscribed = ws.recv().await;
    assert_eq!(
        (subscribed["type"].as_str(), &subscribed["id"]),
        (Some("subscribed"), &json!(41))
    );

    server.publish("a", &json!(1)).await;
    assert_eq!(ws.recv().await["data"], 1);

    ws.send(json!({"type": "unsubscribe", "channel": "a", "id": "u"}))
        .await;
    assert_eq!(
        ws.recv().await,
        json!({"type": "unsubscribed", "channel": "a", "id": "u"})
    );
    let reply = server.publish("a", &json!(2)).await;
    assert_eq!(reply["enqueued"], 0);
    // The pong is queued after anything the hub could have sent: nothing came in between.
    ws.send(json!({"type": "ping", "id": 9})).await;
    assert_eq!(ws.recv().await, json!({"type": "pong", "id": 9}));
    ws.close().await;
    server.assert_no_clients().await;
}

#[tokio::test]
async fn many_messages_arrive_exactly_once_in_order_on_every_channel() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws?channel=x&channel=y").await;
    ws.recv_type("subscribed").await;
    ws.recv_type("subscribed").await;
    const N: u64 = 300;
    let publisher = {
        let http = server.http.clone();
        let base = server.url("/api/publish");
        tokio::spawn(async move {
            for i in 0..N {
                for channel in ["x", "y"] {
                    let r = http
                        .post(format!("{base}/{channel}"))
                        .json(&json!(i))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                }
            }
        })
    };
    let mut seen = std::collections::HashMap::<String, Vec<u64>>::new();
    for _ in 0..2 * N {
        let frame = ws.recv().await;
        assert_eq!(frame["type"], "message");
        seen.entry(frame["channel"].as_str().unwrap().to_owned())
            .or_default()
            .push(frame["offset"].as_u64().unwrap());
        // The data published as i has offset i + 1 on each channel.
        assert_eq!(
            frame["data"].as_u64().unwrap() + 1,
            frame["offset"].as_u64().unwrap()
        );
    }
    within("publisher", publisher).await.unwrap();
    for channel in ["x", "y"] {
        assert_eq!(
            seen[channel],
            (1..=N).collect::<Vec<_>>(),
            "channel {channel}"
        );
    }
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(
        ws.recv().await["type"],
        "pong",
        "no duplicate or stray frame"
    );
    ws.close().await;
    server.assert_no_clients().await;
}

#[tokio::test]
async fn resume_after_reconnect_has_no_gap_and_no_duplicate() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws?channel=feed").await;
    let epoch = ws.recv().await["epoch"].clone();
    for i in 1..=3 {
        server.publish("feed", &json!(i)).await;
    }
    let mut last = 0;
    for _ in 0..3 {
        last = ws.recv().await["offset"].as_u64().unwrap();
    }
    assert_eq!(last, 3);
    ws.close().await;
    server.assert_no_clients().await;

    for i in 4..=7 {
        server.publish("feed", &json!(i)).await;
    }
    let mut ws = server.ws("/ws").await;
    ws.send(json!({"type": "subscribe", "channel": "feed", "since": {"epoch": epoch, "offset": last}, "id": 1}))
        .await;
    let subscribed = ws.recv().await;
    assert_eq!(subscribed["type"], "subscribed");
    assert_eq!(subscribed["recovered"], true);
    assert_eq!(subscribed["offset"], 7);
    server.publish("feed", &json!(8)).await;
    let frames: Vec<Value> = vec![
        ws.recv().await,
        ws.recv().await,
        ws.recv().await,
        ws.recv().await,
        ws.recv().await,
    ];
    assert_eq!(offsets(&frames), vec![4, 5, 6, 7, 8]);
    ws.close().await;
    server.assert_no_clients().await;
}

#[tokio::test]
async fn resume_past_history_is_told_explicitly() {
    let server = TestServer::with(&["--history-size", "2"]).await;
    let first = server.publish("feed", &json!(0)).await;
    for i in 1..6 {
        server.publish("feed", &json!(i)).await;
    }
    let mut ws = server.ws("/ws").await;
    ws.send(json!({"type": "subscribe", "channel": "feed", "since": {"epoch": first["epoch"], "offset": 1}})).await;
    let subscribed = ws.recv().await;
    assert_eq!(subscribed["recovered"], false);
    let missed = ws.recv().await;
    assert_eq!(missed["type"], "missed");
    assert_eq!(missed["reason"], "history_exhausted");
    assert_eq!(missed["first_available"], 5);
    assert_eq!(
        missed["since"],
        json!({"epoch": first["epoch"], "offset": 1})
    );
    assert_eq!(offsets(&[ws.recv().await, ws.recv().await]), vec![5, 6]);

    // A position from another epoch (e.g. before a restart) is reported as such.
    ws.send(json!({"type": "subscribe", "channel": "other", "since": {"epoch": "0123456789ab", "offset": 3}})).await;
    assert_eq!(ws.recv().await["recovered"], false);
    assert_eq!(ws.recv().await["reason"], "epoch_changed");
    ws.close().await;
    server.assert_no_clients().await;
}

#[tokio::test]
async fn slow_client_is_evicted_while_a_fast_one_gets_everything() {
    let server = TestServer::with(&[
        "--queue-capacity",
        "16",
        "--socket-send-buffer",
        "8192",
        "--write-timeout",
        "30s",
    ])
    .await;
    // The slow client reads nothing, with a tiny receive window so the kernel holds little.
    let stream = server.connect_small_window().await;
    let (mut slow, _) =
        tokio_tungstenite::client_async(format!("ws://{}/ws?channel=hot", server.addr), stream)
            .await
            .unwrap();
    let mut fast = server.ws("/ws?channel=hot").await;
    fast.recv_type("subscribed").await;

    let payload = json!({"pad": "x".repeat(16 * 1024)});
    let mut published = 0u64;
    within("slow client eviction", async {
        while server
            .hub
            .stats()
            .disconnects(crier::hub::DisconnectReason::Slow)
            == 0
        {
            let reply = server.publish("hot", &payload).await;
            published += 1;
            assert_eq!(reply["offset"], published);
            // The fast client keeps up, so the publisher is never held back by the slow one.
            let frame = fast.recv().await;
            assert_eq!(frame["offset"], published);
        }
    })
    .await;
    // After the eviction, publishing goes on for the fast client alone.
    for _ in 0..20 {
        published += 1;
        let reply = server.publish("hot", &payload).await;
        assert_eq!(reply["enqueued"], 1);
        assert_eq!(fast.recv().await["offset"], published);
    }
    assert_eq!(
        server
            .hub
            .subscriber_count(&crier::hub::ChannelName::parse("hot").unwrap()),
        1
    );

    // The slow client, once it reads, finds the documented close code after its backlog.
    let close = within("slow client close", async {
        loop {
            use futures_util::StreamExt;
            match slow.next().await {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return (u16::from(frame.code), frame.reason.to_string())
                }
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(close, (4000, "slow".to_owned()));
    let (_, stats) = server.get_json("/api/stats").await;
    assert_eq!(stats["evicted_slow"], 1);
    fast.close().await;
    server.assert_no_clients().await;
}

/// On tokio's paused clock (see `common.rs`): the default minute of idleness passes at once.
#[tokio::test(start_paused = true)]
async fn silent_client_is_closed_at_the_idle_timeout() {
    // No pings within the test, so the client sends nothing at all, not even a pong.
    let server = TestServer::with(&["--idle-timeout", "60s", "--ping-interval", "1h"]).await;
    let mut ws = server.ws("/ws?channel=a").await;
    ws.recv_type("subscribed").await;
    let connected = Instant::now();
    let idle_closes = || {
        server
            .hub
            .stats()
            .disconnects(crier::hub::DisconnectReason::IdleTimeout)
    };
    let_time_pass_until("59 s", connected + Duration::from_secs(59)).await;
    assert_eq!(
        (server.hub.client_count(), idle_closes()),
        (1, 0),
        "still connected a second before the idle timeout"
    );
    let_time_pass_until("61 s", connected + Duration::from_secs(61)).await;
    assert_eq!(ws.recv_close().await, (4001, "idle_timeout".to_owned()));
    assert_eq!(idle_closes(), 1);
    server.assert_no_clients().await;
}

/// On tokio's paused clock (see `common.rs`), with the default ping interval and idle timeout.
#[tokio::test(start_paused = true)]
async fn client_that_answers_pings_stays_connected() {
    use futures_util::{SinkExt, StreamExt};
    const PING_INTERVAL: Duration = Duration::from_secs(25);
    let server = TestServer::with(&["--ping-interval", "25s", "--idle-timeout", "60s"]).await;
    let mut ws = server.ws("/ws?channel=a").await;
    ws.recv_type("subscribed").await;
    let connected = Instant::now();
    let idle_closes_before = server
        .hub
        .stats()
        .disconnects(crier::hub::DisconnectReason::IdleTimeout);
    // The client sends nothing but tungstenite's answers to the server's pings. Five pings
    // span 125 s, twice the idle timeout, so staying connected through them is the behaviour
    // under test.
    for n in 1..=5 {
        // A second after the n-th ping is due: it has been sent, the next one has not.
        let_time_pass_until(
            "a second past a ping",
            connected + PING_INTERVAL * n + Duration::from_secs(1),
        )
        .await;
        match within("a server ping", ws.stream.next()).await {
            Some(Ok(Message::Ping(_))) => {}
            other => panic!("expected only pings while idle, got {other:?}"),
        }
        // tungstenite queued the pong; send it, and let the server read it before the clock
        // moves on.
        within("the pong", ws.stream.flush()).await.unwrap();
        server.round_trip().await;
    }
    assert_eq!(server.hub.client_count(), 1);
    server.publish("a", &json!("still here")).await;
    let frame = ws.recv().await;
    assert_eq!(frame["data"], "still here");
    assert_eq!(
        server
            .hub
            .stats()
            .disconnects(crier::hub::DisconnectReason::IdleTimeout),
        idle_closes_before
    );
    ws.close().await;
    server.assert_no_clients().await;
}

#[tokio::test]
async fn client_publish_is_allowed_only_where_configured() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws?channel=chat:lobby").await;
    ws.recv_type("subscribed").await;
    ws.send(json!({"type": "publish", "channel": "chat:lobby", "data": {"text": "hi"}, "id": 5}))
        .await;
    // Our own message comes back through the channel, and the reply says where it went.
    let mut frames = [ws.recv().await, ws.recv().await];
    frames.sort_by_key(|f| f["type"].as_str().unwrap().to_owned());
    assert_eq!(frames[0]["type"], "message");
    assert_eq!(frames[0]["data"], json!({"text": "hi"}));
    assert_eq!(frames[1]["type"], "published");
    assert_eq!(
        (frames[1]["offset"].as_u64(), &frames[1]["id"]),
        (Some(1), &json!(5))
    );

    ws.send(json!({"type": "publish", "channel": "news", "data": 1, "id": 6}))
        .await;
    let error = ws.recv().await;
    assert_eq!(
        (error["type"].as_str(), error["code"].as_str(), &error["id"]),
        (Some("error"), Some("publish_forbidden"), &json!(6))
    );
    ws.close().await;
    server.assert_no_clients().await;
}

#[tokio::test]
async fn protocol_pings_from_the_client_are_answered_between_messages() {
    use futures_util::{SinkExt, StreamExt};
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws?channel=p").await;
    ws.recv_type("subscribed").await;
    for i in 0..20u8 {
        ws.stream.send(Message::Ping(vec![i].into())).await.unwrap();
        server.publish("p", &json!(i)).await;
    }
    let (mut pongs, mut messages) = (Vec::new(), Vec::new());
    within("pongs and messages", async {
        while pongs.len() < 20 || messages.len() < 20 {
            match ws.stream.next().await {
                Some(Ok(Message::Pong(payload))) => pongs.push(payload[0]),
                Some(Ok(Message::Text(text))) => {
                    let v: Value = serde_json::from_str(text.as_str()).unwrap();
                    messages.push(v["data"].as_u64().unwrap() as u8);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(pongs, (0..20).collect::<Vec<u8>>());
    assert_eq!(
        messages,
        (0..20).collect::<Vec<u8>>(),
        "frames stay whole and in order"
    );
    ws.close().await;
    server.assert_no_clients().await;
}

/// Upgrades whose head is too large for the direct path's sniffing go through hyper, and
/// behave the same.
#[tokio::test]
async fn an_upgrade_with_a_huge_header_takes_the_hyper_path_and_works() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let server = TestServer::start().await;
    let mut request = format!("ws://{}/ws?channel=big", server.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-padding", "p".repeat(4096).parse().unwrap());
    let (stream, _) = within("connect", tokio_tungstenite::connect_async(request))
        .await
        .unwrap();
    let mut ws = Ws { stream };
    assert_eq!(ws.recv().await["type"], "subscribed");
    server.publish("big", &json!("hello")).await;
    assert_eq!(ws.recv().await["data"], "hello");
    ws.close().await;
    server.assert_no_clients().await;
}

/// A request head that arrives in pieces is still recognised.
#[tokio::test]
async fn an_upgrade_arriving_in_pieces_is_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start().await;
    let mut raw = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    raw.set_nodelay(true).unwrap();
    let head = "GET /ws?channel=p HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    for piece in [&head[..5], &head[5..40], &head[40..]] {
        raw.write_all(piece.as_bytes()).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let mut response = vec![0u8; 1024];
    let n = within("handshake response", raw.read(&mut response))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&response[..n]);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    assert!(text.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{text}");
}
