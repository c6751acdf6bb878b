//! Rate limits: a client flooding frames is refused and then closed; resubscribing with
//! history in a loop pulls only what the resubscribe limit allows; client publishes are
//! limited; one address cannot hold or churn more than its share. All on a paused clock, so a
//! limit is checked by counting (the limiters read tokio's clock), and the bystanders lose
//! nothing meanwhile.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::backpressure::Bystanders;
use crate::common::*;

/// Attack 2: one client sending frames as fast as it can. The first 200 (the burst) are
/// handled, the next 100 are refused `rate_limited`, and then it is closed 4004 — on both
/// transports, where a long-poll `/lp/send` array counts each frame.
#[tokio::test(start_paused = true)]
async fn a_frame_flood_is_refused_then_closed() {
    let server = TestServer::start().await;
    let mut bystanders = Bystanders::join(&server).await;

    let mut ws = server.ws("/ws").await;
    for id in 0..400 {
        ws.send(json!({"type": "ping", "id": id})).await;
    }
    for id in 0..200 {
        assert_eq!(ws.recv().await, json!({"type": "pong", "id": id}));
    }
    for id in 200..300 {
        let error = ws.recv().await;
        assert_eq!(
            (error["code"].clone(), error["id"].clone()),
            (json!("rate_limited"), json!(id)),
            "{error}"
        );
    }
    assert_eq!(ws.recv_close().await, (4004, "rate_limited".to_owned()));
    // 100 answered `rate_limited`, and the one that closed the client.
    assert_eq!(
        server.hub.stats().rejected_rate_limited(),
        101,
        "every refusal counted"
    );
    assert_eq!(bystanders.publish(&server, 1).await, 200);

    let session = server.lp_connect("", None).await;
    let pings = |ids: std::ops::Range<u64>| {
        Value::Array(ids.map(|id| json!({"type": "ping", "id": id})).collect())
    };
    let (status, reply) = server.lp_send(&session, &pings(0..250)).await;
    assert_eq!((status, reply), (202, json!({"accepted": 250})));
    let mut ack = 0;
    let frames = server.lp_collect(&session, &mut ack, 250).await;
    assert!(frames[..200].iter().all(|f| f["type"] == "pong"));
    assert!(frames[200..].iter().all(|f| f["code"] == "rate_limited"));
    // 50 more refusals are allowed; the 51st frame ends the session, and the rest of the
    // array is not handled.
    let (status, reply) = server.lp_send(&session, &pings(250..350)).await;
    assert_eq!((status, reply), (202, json!({"accepted": 51})));
    let (_, batch) = server.lp_poll(&session, ack).await;
    let last = last_frame(&batch);
    assert_eq!(
        (
            last["type"].clone(),
            last["reason"].clone(),
            last["code"].clone()
        ),
        (json!("disconnect"), json!("rate_limited"), json!(4004))
    );

    assert_eq!(bystanders.publish(&server, 2).await, 200);
    bystanders.check(&server).await;
    let (_, stats) = server.get_json("/api/stats").await;
    assert_eq!(stats["disconnects"]["rate_limited"], 2, "{stats}");
}

/// What a resubscribe loop got for what it sent.
#[derive(Debug)]
struct Pulled {
    catch_ups: u64,
    refused: u64,
    sent: usize,
    received: usize,
}

/// Attack 8: subscribe with `since`, take the catch-up, unsubscribe, again — a few bytes sent
/// for a channel's whole history each time. `loops` rounds, on a channel whose history holds
/// `history` messages.
async fn resubscribe_loop(server: &TestServer, loops: u64, history: usize) -> Pulled {
    let mut ws = server.ws("/ws").await;
    let mut pulled = Pulled {
        catch_ups: 0,
        refused: 0,
        sent: 0,
        received: 0,
    };
    for id in 0..loops {
        let subscribe =
            json!({"type": "subscribe", "channel": "big", "since": {"offset": 0}, "id": id})
                .to_string();
        pulled.sent += subscribe.len();
        ws.send_text(&subscribe).await;
        // One bounded wait for the whole exchange: the reply, and the catch-up after it.
        let (reply, catch_up) = within("a resubscribe", async {
            let reply = raw_text(&mut ws).await;
            let mut catch_up = 0;
            if reply.contains(r#""type":"subscribed""#) {
                for _ in 0..history {
                    catch_up += raw_text(&mut ws).await.len();
                }
            }
            (reply, catch_up)
        })
        .await;
        pulled.received += reply.len() + catch_up;
        let reply: Value = serde_json::from_str(&reply).unwrap();
        if reply["type"] == "error" {
            assert_eq!(reply["code"], "rate_limited", "{reply}");
            pulled.refused += 1;
            continue;
        }
        assert_eq!(reply["type"], "subscribed", "{reply}");
        pulled.catch_ups += 1;
        let unsubscribe = json!({"type": "unsubscribe", "channel": "big"}).to_string();
        pulled.sent += unsubscribe.len();
        ws.send_text(&unsubscribe).await;
        assert_eq!(ws.recv().await["type"], "unsubscribed");
    }
    ws.close().await;
    pulled
}

/// The next text frame, unparsed (catch-ups are large: only their size matters here).
async fn raw_text(ws: &mut Ws) -> String {
    loop {
        match ws.stream.next().await {
            Some(Ok(Message::Text(text))) => return text.as_str().to_owned(),
            Some(Ok(Message::Close(close))) => panic!("closed: {close:?}"),
            Some(Ok(_)) => continue,
            other => panic!("connection ended: {other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn resubscribing_with_history_pulls_only_what_the_limit_allows() {
    const HISTORY: usize = 50;
    const LOOPS: u64 = 150;
    let mut figures = Vec::new();
    // The frame limit is off here, to measure the resubscribe limit alone.
    for resubscribe_rate in ["0", "10"] {
        let server = TestServer::with(&[
            "--max-frames-per-second",
            "0",
            "--resubscribe-rate",
            resubscribe_rate,
        ])
        .await;
        let mut bystanders = Bystanders::join(&server).await;
        let data = json!("x".repeat(1000));
        for _ in 0..HISTORY {
            server.publish("big", &data).await;
        }
        let pulled = resubscribe_loop(&server, LOOPS, HISTORY).await;
        assert_eq!(bystanders.publish(&server, 1).await, 200);
        bystanders.check(&server).await;
        figures.push(pulled);
    }
    let [unlimited, limited] = &figures[..] else {
        unreachable!()
    };
    eprintln!(
        "unlimited: {unlimited:?}, ratio {}",
        unlimited.received / unlimited.sent
    );
    eprintln!(
        "limited:   {limited:?}, ratio {}",
        limited.received / limited.sent
    );
    assert_eq!((unlimited.catch_ups, unlimited.refused), (LOOPS, 0));
    // The burst (a reconnect resuming 64 channels) and nothing more: the clock did not move.
    assert_eq!((limited.catch_ups, limited.refused), (64, LOOPS - 64));
    let per_catch_up = unlimited.received / LOOPS as usize;
    assert!(
        limited.received < 64 * per_catch_up + LOOPS as usize * 200,
        "{limited:?}"
    );
}

/// Client `publish` frames: 20 a second with bursts of 40, per client, on both transports;
/// a refused publish is neither numbered nor delivered.
#[tokio::test(start_paused = true)]
async fn client_publishes_are_limited_per_client() {
    let server = TestServer::with(&["--client-publish", "*"]).await;
    let mut bystanders = Bystanders::join(&server).await;
    let publish = |id: u64| json!({"type": "publish", "channel": "watch", "data": id, "id": id});

    let mut ws = server.ws("/ws").await;
    for id in 0..60 {
        ws.send(publish(id)).await;
    }
    for id in 0..60 {
        let reply = ws.recv().await;
        assert_eq!(reply["id"], id);
        if id < 40 {
            assert_eq!(reply["type"], "published", "{reply}");
            bystanders.published.push(reply["offset"].as_u64().unwrap());
        } else {
            assert_eq!(reply["code"], "rate_limited", "{reply}");
        }
    }

    let session = server.lp_connect("", None).await;
    let frames = Value::Array((100..150).map(publish).collect());
    assert_eq!(server.lp_send(&session, &frames).await.0, 202);
    let mut ack = 0;
    let replies = server.lp_collect(&session, &mut ack, 50).await;
    for (i, reply) in replies.iter().enumerate() {
        if i < 40 {
            assert_eq!(reply["type"], "published", "{reply}");
            bystanders.published.push(reply["offset"].as_u64().unwrap());
        } else {
            assert_eq!(reply["code"], "rate_limited", "{reply}");
        }
    }
    assert_eq!(server.hub.stats().published(), 80);
    bystanders.check(&server).await;
    // A second later the client may publish again.
    let_time_pass_until("1 s", Instant::now() + Duration::from_secs(1)).await;
    ws.send(publish(1000)).await;
    assert_eq!(ws.recv().await["type"], "published");
    bystanders.published.push(81);
    bystanders.check(&server).await;
}

/// The attacker's address: loopback, but not the bystanders' 127.0.0.1.
const ATTACKER: &str = "127.0.0.2";

/// A request head (`GET /ws` upgrade, or `POST /lp/connect`) sent from `source`; padded past
/// the sniffer's 2 KiB, a `/ws` head takes the hyper path.
fn head(request_line: &str, pad: bool) -> String {
    let padding = if pad {
        format!("X-Padding: {}\r\n", "p".repeat(2100))
    } else {
        String::new()
    };
    let upgrade = if request_line.contains("/ws") {
        "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    } else {
        "Content-Length: 0\r\n"
    };
    format!("{request_line}\r\nHost: crier\r\n{padding}{upgrade}\r\n")
}

/// Sends `head` from `source`; returns the status, the response head and the body, and the
/// socket (a WebSocket after a 101).
async fn ask_from(
    server: &TestServer,
    source: &str,
    head: &str,
) -> (u16, String, Value, TcpStream) {
    let socket = TcpSocket::new_v4().unwrap();
    let source: IpAddr = source.parse().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    let mut stream = within("connect", socket.connect(server.addr))
        .await
        .unwrap();
    within("send head", stream.write_all(head.as_bytes()))
        .await
        .unwrap();
    // Byte by byte, so nothing after the head (a WebSocket's first frame) is taken.
    let mut received = Vec::new();
    within("response head", async {
        while !received.ends_with(b"\r\n\r\n") {
            received.push(stream.read_u8().await.unwrap());
        }
    })
    .await;
    let response = String::from_utf8(received).unwrap();
    let status = response[9..12].parse().unwrap();
    let length = content_length(&response);
    let mut body = vec![0; length];
    within("response body", stream.read_exact(&mut body))
        .await
        .unwrap();
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, response.to_ascii_lowercase(), body, stream)
}

/// A WebSocket from `source` (the direct path).
async fn ws_from(server: &TestServer, source: &str) -> Ws {
    let (status, response, body, stream) =
        ask_from(server, source, &head("GET /ws HTTP/1.1", false)).await;
    assert_eq!(status, 101, "{response}{body}");
    let stream =
        WebSocketStream::from_raw_socket(MaybeTlsStream::Plain(stream), Role::Client, None).await;
    Ws { stream }
}

/// `/ws` on both paths and `/lp/connect` from `source` are all refused
/// `503 too_many_connections` with `Retry-After: 1`.
async fn all_refused(server: &TestServer, source: &str) {
    for head in [
        head("GET /ws HTTP/1.1", false),
        head("GET /ws HTTP/1.1", true),
        head("POST /lp/connect HTTP/1.1", false),
    ] {
        let (status, response, body, _) = ask_from(server, source, &head).await;
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (503, json!("too_many_connections")),
            "{response}{body}"
        );
        assert!(response.contains("retry-after: 1\r\n"), "{response}");
    }
}

/// Attack 9: one address opening connections until the hub is full, or as fast as it can.
/// With `--limit-loopback` (loopback peers are exempt by default) the attacker on 127.0.0.2
/// gets at most 3 clients and 5 opened at once (then 1 a second), while the bystanders on
/// 127.0.0.1 connect as before.
#[tokio::test(start_paused = true)]
async fn one_address_cannot_hold_or_churn_more_than_its_share() {
    let server = TestServer::with(&[
        "--limit-loopback",
        "--max-connections-per-ip",
        "3",
        "--accepts-per-ip-per-second",
        "1",
        "--accept-burst-per-ip",
        "5",
    ])
    .await;
    let mut bystanders = Bystanders::join(&server).await;

    // Three open (three of the five in the burst): the fourth is refused on every path.
    let first = ws_from(&server, ATTACKER).await;
    let second = ws_from(&server, ATTACKER).await;
    let (status, _, body, _) =
        ask_from(&server, ATTACKER, &head("POST /lp/connect HTTP/1.1", false)).await;
    assert_eq!(status, 200, "{body}");
    let session = body["session"].as_str().unwrap().to_owned();
    all_refused(&server, ATTACKER).await;
    assert!(
        server.hub.stats().rejected_too_many_connections() >= 3,
        "counted"
    );
    assert_eq!(bystanders.publish(&server, 1).await, 200);

    // Closing one frees its place (four of five opened).
    first.close().await;
    let third = ws_from(&server, ATTACKER).await;
    // So does closing a session (five of five).
    let (status, _) = server
        .post(
            &format!("/lp/close?session={session}"),
            "application/json",
            "",
        )
        .await;
    assert_eq!(status, 200);
    let (status, _, body, _) =
        ask_from(&server, ATTACKER, &head("POST /lp/connect HTTP/1.1", false)).await;
    assert_eq!(status, 200, "{body}");
    // Now with a place free, the opening rate refuses: the burst is spent.
    second.close().await;
    all_refused(&server, ATTACKER).await;
    // Another address is on its own.
    let mut other = server.ws("/ws?channel=watch").await;
    other.recv_type("subscribed").await;
    assert_eq!(bystanders.publish(&server, 2).await, 200);
    bystanders.check(&server).await;

    // A second later, one more.
    let_time_pass_until("1 s", Instant::now() + Duration::from_secs(1)).await;
    let fourth = ws_from(&server, ATTACKER).await;
    all_refused(&server, ATTACKER).await;
    assert_eq!(bystanders.publish(&server, 3).await, 200);
    bystanders.check(&server).await;
    for ws in [third, fourth, other] {
        ws.close().await;
    }
}

/// Backends have their own publish limit when one is set (`--api-publish-rate`): per API
/// key, so one backend's burst does not spend another's allowance.
#[tokio::test(start_paused = true)]
async fn backend_publishes_are_limited_per_api_key() {
    let server = TestServer::with(&[
        "--api-key",
        "key-one",
        "--api-key",
        "key-two",
        "--api-publish-rate",
        "5",
        "--api-publish-burst",
        "5",
    ])
    .await;
    let publish = |key: &'static str, channels: usize| {
        let request = if channels == 1 {
            server.http.post(server.url("/api/publish/feed")).body("1")
        } else {
            let names: Vec<String> = (0..channels).map(|i| format!("feed{i}")).collect();
            server
                .http
                .post(server.url("/api/publish"))
                .header("content-type", "application/json")
                .body(json!({"channels": names, "data": 1}).to_string())
        };
        let request = request.header("authorization", format!("Bearer {key}"));
        async move {
            let response = within("a publish", request.send()).await.unwrap();
            let status = response.status().as_u16();
            let retry = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let body: Value = within("its body", response.json()).await.unwrap();
            (status, retry, body)
        }
    };
    for _ in 0..5 {
        assert_eq!(publish("key-one", 1).await.0, 200);
    }
    let (status, retry, body) = publish("key-one", 1).await;
    assert_eq!((status, retry.as_deref()), (429, Some("1")), "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
    // Another backend is on its own; a request for more channels than the burst is refused
    // whole (nothing of it published).
    assert_eq!(publish("key-two", 1).await.0, 200);
    assert_eq!(publish("key-two", 6).await.0, 429);
    assert_eq!(
        server.hub.channel_count(),
        1,
        "only `feed` was ever published to"
    );
    // A second later the first backend may publish again.
    let now = tokio::time::Instant::now();
    let_time_pass_until("a second", now + std::time::Duration::from_secs(1)).await;
    assert_eq!(publish("key-one", 1).await.0, 200);
}
