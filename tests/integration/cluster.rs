//! Scale-out over Redis: several nodes in this process, each on port 0, sharing a real
//! `redis-server` started on a free loopback port. Skipped (with a message) only where
//! redis-server is not installed; CI installs it.

use serde_json::{json, Value};

use crate::common::{offsets, wait_until, within, TestServer, Ws};
use crate::redis_server::Redis;

/// Reads frames until `count` messages of `channel` arrived; returns all frames read.
pub async fn messages(ws: &mut Ws, count: usize) -> Vec<Value> {
    let mut frames = Vec::new();
    while offsets(&frames).len() < count {
        frames.push(ws.recv().await);
    }
    frames
}

pub async fn subscribed(node: &TestServer, channel: &str) -> (Ws, Value) {
    let mut ws = node.ws("/ws").await;
    let reply = ws.subscribe(channel).await;
    (ws, reply)
}

#[tokio::test]
async fn cluster_publish_on_one_node_reaches_every_node_once_in_order() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let a = TestServer::node(&redis.url(), &[]).await;
    let b = TestServer::node(&redis.url(), &[]).await;
    let c = TestServer::node(&redis.url(), &[]).await;
    let (mut on_b, first) = subscribed(&b, "news").await;
    let (mut on_c, _) = subscribed(&c, "news").await;
    assert_eq!(first["offset"], 0);
    for i in 1..=50 {
        let reply = a.publish("news", &json!({ "n": i })).await;
        assert_eq!(reply["offset"], i);
    }
    for ws in [&mut on_b, &mut on_c] {
        let frames = messages(ws, 50).await;
        assert_eq!(offsets(&frames), (1..=50).collect::<Vec<u64>>());
        let data: Vec<u64> = frames
            .iter()
            .filter(|f| f["type"] == "message")
            .map(|f| f["data"]["n"].as_u64().unwrap())
            .collect();
        assert_eq!(data, (1..=50).collect::<Vec<u64>>());
        assert_eq!(
            frames[0]["epoch"], first["epoch"],
            "one epoch on every node"
        );
    }
    // A publish from a client on C reaches B too, positioned by Redis.
    on_c.send(json!({"type": "publish", "channel": "chat:x", "data": "hi", "id": 1}))
        .await;
    let reply = on_c.recv_type("published").await;
    assert_eq!(reply["offset"], 1);
    // Nothing more, not even a duplicate, before a ping's answer.
    on_b.send(json!({"type": "ping", "id": 9})).await;
    assert_eq!(on_b.recv().await["type"], "pong");
    on_b.close().await;
    on_c.close().await;
    b.assert_no_clients().await;
    c.assert_no_clients().await;
}

#[tokio::test]
async fn cluster_client_moves_to_another_node_and_misses_nothing() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let a = TestServer::node(&redis.url(), &[]).await;
    let b = TestServer::node(&redis.url(), &[]).await;
    let c = TestServer::node(&redis.url(), &[]).await;
    let (mut on_b, _) = subscribed(&b, "feed").await;
    for i in 1..=10 {
        a.publish("feed", &json!(i)).await;
    }
    let frames = messages(&mut on_b, 10).await;
    let last = frames.last().unwrap().clone();
    assert_eq!(last["offset"], 10);
    on_b.close().await;
    // Published while the client is between nodes.
    for i in 11..=20 {
        a.publish("feed", &json!(i)).await;
    }
    let mut on_c = c.ws("/ws").await;
    on_c.send(json!({"type": "subscribe", "channel": "feed",
        "since": {"epoch": last["epoch"], "offset": 10}}))
        .await;
    let reply = on_c.recv_type("subscribed").await;
    assert_eq!(reply["recovered"], true, "{reply}");
    let mut frames = messages(&mut on_c, 10).await;
    for i in 21..=25 {
        a.publish("feed", &json!(i)).await;
    }
    frames.extend(messages(&mut on_c, 5).await);
    assert_eq!(offsets(&frames), (11..=25).collect::<Vec<u64>>());
    assert!(frames.iter().all(|f| f["type"] != "missed"));
    // Long-poll sessions stay on the node that made them.
    let session = b.lp_connect("?channel=feed", None).await;
    let (status, reply) = c.lp_poll(&session, 0).await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (404, Some("unknown_session"))
    );
    on_c.close().await;
    c.assert_no_clients().await;
}

#[tokio::test]
async fn cluster_killed_subscription_is_recovered_from_history() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let a = TestServer::node(&redis.url(), &[]).await;
    let b = TestServer::node(&redis.url(), &[]).await;
    let (mut on_b, _) = subscribed(&b, "ticks").await;
    for i in 1..=5 {
        a.publish("ticks", &json!(i)).await;
    }
    let mut frames = messages(&mut on_b, 5).await;
    let reconnects = || b.hub.stats().broker.reconnects.get();
    let before = reconnects();
    redis.command(&["CLIENT", "KILL", "TYPE", "pubsub"]).await;
    // Published while B may not be listening: it must get them from history, once each.
    for i in 6..=15 {
        a.publish("ticks", &json!(i)).await;
    }
    wait_until("B to reconnect its subscription", || reconnects() > before).await;
    for i in 16..=20 {
        a.publish("ticks", &json!(i)).await;
    }
    frames.extend(messages(&mut on_b, 15).await);
    assert_eq!(offsets(&frames), (1..=20).collect::<Vec<u64>>());
    assert!(frames.iter().all(|f| f["type"] != "missed"), "{frames:?}");
    assert!(
        b.hub.stats().broker.recoveries.get() >= 1,
        "caught up from history"
    );
    on_b.close().await;
    b.assert_no_clients().await;
}

#[tokio::test]
async fn cluster_redis_restart_tells_subscribers_what_they_missed() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let a = TestServer::node(&redis.url(), &[]).await;
    let b = TestServer::node(&redis.url(), &[]).await;
    let (mut on_b, _) = subscribed(&b, "room").await;
    for i in 1..=3 {
        a.publish("room", &json!(i)).await;
    }
    let frames = messages(&mut on_b, 3).await;
    let old_epoch = frames.last().unwrap()["epoch"].clone();
    // Redis comes back empty (no persistence): the channel starts a new generation.
    redis.restart().await;
    let reply = within("a publish after the restart", async {
        loop {
            let response = a
                .http
                .post(a.url("/api/publish/room"))
                .json(&json!("after"))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            if status == 200 {
                return body;
            }
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (503, Some("broker_unavailable"))
            );
        }
    })
    .await;
    assert_ne!(reply["epoch"], old_epoch);
    // The subscriber stayed connected and is told, then gets the new generation.
    let missed = on_b.recv_type("missed").await;
    assert_eq!(missed["reason"], "epoch_changed", "{missed}");
    assert_eq!(missed["since"]["offset"], 3);
    let next = on_b.recv_type("message").await;
    assert_eq!(
        (next["epoch"].clone(), next["data"].clone()),
        (reply["epoch"].clone(), json!("after"))
    );
    on_b.close().await;
    b.assert_no_clients().await;
}

#[tokio::test]
async fn cluster_redis_down_refuses_publishes_with_broker_unavailable() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let a = TestServer::node(&redis.url(), &["--redis-timeout", "500ms"]).await;
    let (mut ws, _) = subscribed(&a, "news").await;
    redis.stop();
    let response = within(
        "a publish with Redis down",
        a.http
            .post(a.url("/api/publish/news"))
            .json(&json!(1))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "broker_unavailable");
    // A client publish gets the error frame; the connection stays up.
    ws.send(json!({"type": "publish", "channel": "chat:x", "data": 1, "id": 7}))
        .await;
    let error = ws.recv_type("error").await;
    assert_eq!(
        (error["code"].as_str(), error["id"].as_u64()),
        (Some("broker_unavailable"), Some(7))
    );
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.recv_type("pong").await["type"], "pong");
    assert!(a.hub.stats().broker.unavailable.get() >= 2);
    ws.close().await;
    a.assert_no_clients().await;
}

#[tokio::test]
async fn cluster_node_without_redis_does_not_start() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let url = redis.url();
    redis.stop();
    let config = TestServer::config(&["--redis-url", &url, "--redis-timeout", "500ms"]);
    let error = within(
        "the node to give up",
        crier::server::Server::connect(config),
    )
    .await
    .err()
    .expect("no node without Redis");
    assert_eq!(error.code(), crier::protocol::ErrorCode::BrokerUnavailable);
}

#[tokio::test]
async fn cluster_node_follows_a_channel_again_after_its_last_subscriber_left() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let a = TestServer::node(&redis.url(), &[]).await;
    let b = TestServer::node(&redis.url(), &["--history-size", "0"]).await;
    let mut ws = b.ws("/ws").await;
    for round in 1..=3u64 {
        ws.subscribe("x").await;
        a.publish("x", &json!(round)).await;
        let message = ws.recv_type("message").await;
        assert_eq!(
            (message["offset"].as_u64(), message["data"].as_u64()),
            (Some(round), Some(round))
        );
        ws.send(json!({"type": "unsubscribe", "channel": "x"}))
            .await;
        ws.recv_type("unsubscribed").await;
        // The copy, left with nothing, is forgotten; the node must load it again.
        b.hub.sweep();
    }
    ws.close().await;
    b.assert_no_clients().await;
}
