//! Places where the hub, tried from outside, once differed from `docs/PROTOCOL.md`: each now
//! does what the document says, on a real server.

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

const CHANNELS: [&str; 3] = ["full-a", "full-b", "full-c"];

/// Fills the history of each of `CHANNELS` with `per_channel` messages (offsets 1..=n).
async fn fill_histories(server: &TestServer, per_channel: u64) -> Vec<Value> {
    let mut last = Vec::new();
    for i in 1..=per_channel {
        let (status, reply) = server
            .post(
                "/api/publish",
                "application/json",
                json!({"channels": CHANNELS, "data": i}).to_string(),
            )
            .await;
        assert_eq!(status, 200, "{reply}");
        last = reply["results"].as_array().unwrap().clone();
    }
    last
}

/// Checks that `frames` hold offsets 1..=n of every channel exactly once, in order, and
/// that nothing was reported missed.
fn assert_complete(frames: &[Value], per_channel: u64) {
    for channel in CHANNELS {
        let offsets: Vec<u64> = frames
            .iter()
            .filter(|f| f["type"] == "message" && f["channel"] == channel)
            .map(|f| f["offset"].as_u64().unwrap())
            .collect();
        assert_eq!(offsets, (1..=per_channel).collect::<Vec<_>>(), "{channel}");
    }
    assert!(
        frames.iter().all(|f| f["type"] != "missed"),
        "nothing was missed"
    );
}

fn resume_list(results: &[Value]) -> Value {
    results
        .iter()
        .map(|r| json!({"channel": r["channel"], "since": {"epoch": r["epoch"], "offset": 0}}))
        .collect()
}

/// A resume larger than the client's queue (3 × 500 history messages against 1,024 slots)
/// is read from history at the client's pace, not an eviction.
#[tokio::test]
async fn long_poll_resume_of_more_than_a_queue_arrives_whole() {
    let server = TestServer::start().await;
    let results = fill_histories(&server, 500).await;
    let session = server
        .lp_connect("", Some(json!({"channels": resume_list(&results)})))
        .await;
    let mut ack = 0;
    let frames = server.lp_collect(&session, &mut ack, 3 + 1500).await;
    assert_complete(&frames, 500);
    // Live messages follow the catch-up.
    server.publish("full-b", &json!("live")).await;
    let live = server.lp_collect(&session, &mut ack, 1).await;
    assert_eq!(
        (live[0]["channel"].clone(), live[0]["offset"].clone()),
        (json!("full-b"), json!(501))
    );
    assert_eq!(
        server
            .hub
            .stats()
            .disconnects(crier::hub::DisconnectReason::Slow),
        0
    );
}

#[tokio::test]
async fn long_poll_resume_through_send_arrives_whole() {
    let server = TestServer::start().await;
    let results = fill_histories(&server, 500).await;
    let session = server.lp_connect("", None).await;
    let subscribes: Vec<Value> = results
        .iter()
        .map(|r| json!({"type": "subscribe", "channel": r["channel"], "since": {"epoch": r["epoch"], "offset": 0}}))
        .collect();
    let (status, reply) = server.lp_send(&session, &json!(subscribes)).await;
    assert_eq!((status, reply), (202, json!({"accepted": 3})));
    let mut ack = 0;
    let frames = server.lp_collect(&session, &mut ack, 3 + 1500).await;
    assert_complete(&frames, 500);
}

#[tokio::test]
async fn websocket_resume_of_more_than_a_queue_arrives_whole() {
    // A small queue makes the point sharper: 3 × 500 catch-up frames through 64 slots.
    let server = TestServer::with(&["--queue-capacity", "64"]).await;
    let results = fill_histories(&server, 500).await;
    let mut ws = server.ws("/ws").await;
    for r in &results {
        ws.send(json!({"type": "subscribe", "channel": r["channel"], "since": {"epoch": r["epoch"], "offset": 0}}))
            .await;
    }
    let mut frames = Vec::new();
    while frames.len() < 3 + 1500 {
        frames.push(ws.recv().await);
    }
    assert_complete(&frames, 500);
    ws.close().await;
    server.assert_no_clients().await;
}

/// A second holder of a session id who acknowledges batches makes the owner's older ack
/// stale: the owner is told (400 `bad_ack`), never handed the batch after a gap.
#[tokio::test]
async fn an_ack_older_than_the_batches_another_poller_acknowledged_is_refused() {
    let server = TestServer::with(&["--lp-hold", "50ms"]).await;
    let session = server.lp_connect("?channel=news", None).await;
    let mut owner_ack = 0;
    server.lp_collect(&session, &mut owner_ack, 1).await; // `subscribed`, batch 1
    server.publish("news", &json!(1)).await;
    let (_, second) = server.lp_poll(&session, owner_ack).await; // the owner's batch 2...
    assert_eq!(second["batch"], 2);
    // ...which the owner lost; meanwhile another holder acknowledges it and takes batch 3.
    server.publish("news", &json!(2)).await;
    let (_, third) = server.lp_poll(&session, 2).await;
    assert_eq!(third["batch"], 3);
    let (status, reply) = server.lp_poll(&session, 3).await;
    assert_eq!(status, 200, "{reply}");
    // The owner asks again for batch 2 (ack 1): 2 and 3 went to the other poller.
    let (status, reply) = server.lp_poll(&session, owner_ack).await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["error"]["code"], "bad_ack");
    // The ack of the last batch still works, and so does resending the last batch.
    server.publish("news", &json!(3)).await;
    let (_, fourth) = server.lp_poll(&session, 3).await;
    assert_eq!(fourth["batch"], 4);
    let (_, again) = server.lp_poll(&session, 3).await;
    assert_eq!(again, fourth, "an ack one behind gets the last batch again");
}

/// An `/lp/send` body stops being handled once its session has ended.
#[tokio::test]
async fn a_send_body_stops_at_the_eviction_of_its_session() {
    let server = TestServer::with(&["--queue-capacity", "8"]).await;
    let session = server.lp_connect("", None).await;
    let publishes: Vec<Value> = (0..50)
        .map(|i| json!({"type": "publish", "channel": "chat:flood", "data": i}))
        .collect();
    let (status, reply) = server.lp_send(&session, &json!(publishes)).await;
    assert_eq!(status, 202, "{reply}");
    let accepted = reply["accepted"].as_u64().unwrap();
    // Eight replies fill the queue; the ninth publish's reply overflows it.
    assert_eq!(accepted, 9, "{reply}");
    assert_eq!(server.hub.stats().published(), accepted);
    let (_, batch) = server.lp_poll(&session, 0).await;
    let last = last_frame(&batch);
    assert_eq!(
        (last["type"].clone(), last["reason"].clone()),
        (json!("disconnect"), json!("slow"))
    );
    server.assert_no_clients().await;
}

/// Sends `request` as written on a fresh connection and returns everything the server
/// answered until it closed.
async fn raw_request(server: &TestServer, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    within("the raw response", stream.read_to_end(&mut response))
        .await
        .unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

/// The next text frame, as the server wrote it.
async fn raw_text(ws: &mut Ws) -> String {
    within("a text frame", async {
        loop {
            match ws.stream.next().await {
                Some(Ok(Message::Text(text))) => return text.to_string(),
                Some(Ok(_)) => continue,
                other => panic!("connection ended: {other:?}"),
            }
        }
    })
    .await
}

#[tokio::test]
async fn ids_are_echoed_exactly_as_written() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws").await;
    for id in [
        "18446744073709551617",
        "1e400",
        "-0.0",
        r#"{"k":[1,2.50,"é"]}"#,
    ] {
        ws.send_text(&format!(r#"{{"type":"ping","id":{id}}}"#))
            .await;
        assert_eq!(
            raw_text(&mut ws).await,
            format!(r#"{{"type":"pong","id":{id}}}"#)
        );
    }
    let deep = format!("{}1{}", "[".repeat(33), "]".repeat(33));
    ws.send_text(&format!(r#"{{"type":"ping","id":{deep}}}"#))
        .await;
    let reply: Value = serde_json::from_str(&raw_text(&mut ws).await).unwrap();
    assert_eq!(
        (reply["type"].clone(), reply["code"].clone()),
        (json!("error"), json!("bad_frame"))
    );
}

#[tokio::test]
async fn a_resume_position_beyond_the_last_offset_is_not_caught_up() {
    let server = TestServer::start().await;
    let mut last = Value::Null;
    for i in 1..=3 {
        last = server.publish("ahead", &json!(i)).await;
    }
    let mut ws = server.ws("/ws").await;
    ws.send(json!({"type": "subscribe", "channel": "ahead", "since": {"epoch": last["epoch"], "offset": 10}}))
        .await;
    let subscribed = ws.recv().await;
    assert_eq!(
        (subscribed["type"].clone(), subscribed["recovered"].clone()),
        (json!("subscribed"), json!(false))
    );
    let missed = ws.recv().await;
    assert_eq!(missed["type"], "missed");
    assert_eq!(missed["reason"], "offset_ahead");
    assert_eq!(missed["first_available"], 1);
    assert_eq!(missed["since"]["offset"], 10);
    // What history holds follows, as after an epoch change.
    let mut replayed = Vec::new();
    for _ in 0..3 {
        replayed.push(ws.recv().await);
    }
    assert_eq!(offsets(&replayed), [1, 2, 3]);
}

#[tokio::test]
async fn channel_names_of_dots_only_are_refused() {
    let server = TestServer::start().await;
    // Raw requests: an HTTP client library would normalise these dot segments away.
    for path in ["/api/publish/%2e%2e", "/api/publish/.", "/api/publish/..."] {
        let response = raw_request(
            &server,
            &format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1\r\nConnection: close\r\n\r\n1"),
        )
        .await;
        assert!(response.starts_with("HTTP/1.1 400"), "{path}: {response}");
        assert!(
            response.contains(r#""code":"invalid_channel""#),
            "{path}: {response}"
        );
    }
    let mut ws = server.ws("/ws").await;
    ws.send(json!({"type": "subscribe", "channel": "..", "id": 1}))
        .await;
    let reply = ws.recv().await;
    assert_eq!(
        (reply["code"].clone(), reply["id"].clone()),
        (json!("invalid_channel"), json!(1))
    );
    assert_eq!(server.hub.channel_count(), 0);
}
