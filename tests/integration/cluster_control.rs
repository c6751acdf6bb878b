//! The backend control API on a cluster: whichever node the call hits, every node acts on
//! it; the reply counts this node's connections and the nodes the command reached; with
//! Redis down the call is refused, never answered "ok" without reaching the others.

use serde_json::{json, Value};

use crate::cluster::messages;
use crate::common::{pause, wait_until, within, TestServer, Ws};
use crate::control::{ws_of, SECRET};
use crate::redis_server::Redis;

/// Three nodes, each listening for control commands (so each one counts in a reply).
async fn three_nodes(redis: &Redis, extra: &[&str]) -> [TestServer; 3] {
    let mut args = vec!["--token-secret", SECRET];
    args.extend_from_slice(extra);
    let nodes = [
        TestServer::node(&redis.url(), &args).await,
        TestServer::node(&redis.url(), &args).await,
        TestServer::node(&redis.url(), &args).await,
    ];
    control_listeners_reach(redis, 3).await;
    nodes
}

/// Waits until `count` nodes follow the control channel (each then counts in a reply).
async fn control_listeners_reach(redis: &Redis, count: i64) {
    within("the nodes to follow the control channel", async {
        while control_listeners(redis).await < count {
            pause().await;
        }
    })
    .await;
}

async fn control_listeners(redis: &Redis) -> i64 {
    match redis.command(&["PUBSUB", "NUMSUB", "crier:control"]).await {
        redis::Value::Array(reply) => match reply.get(1) {
            Some(redis::Value::Int(n)) => *n,
            other => panic!("NUMSUB count: {other:?}"),
        },
        other => panic!("NUMSUB: {other:?}"),
    }
}

async fn post(node: &TestServer, path: &str, body: Value) -> (u16, Value) {
    let response = within(
        "a control call",
        node.http.post(node.url(path)).json(&body).send(),
    )
    .await
    .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Reads until an `unsubscribed` frame for `channel` without `id` (the backend's).
async fn taken_off(ws: &mut Ws, channel: &str) {
    let frame = ws.recv_type("unsubscribed").await;
    assert_eq!(frame["channel"], channel, "{frame}");
    assert!(frame.get("id").is_none(), "{frame}");
}

#[tokio::test]
async fn cluster_disconnect_user_on_any_node_closes_the_users_connections_everywhere() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let [a, b, c] = three_nodes(&redis, &[]).await;
    let mut eve_b = ws_of(&b, "eve", &["news"]).await;
    let mut eve_c = ws_of(&c, "eve", &["news"]).await;
    let mut bob_b = ws_of(&b, "bob", &["news"]).await;
    let (status, reply) = post(&a, "/api/users/eve/disconnect", json!({})).await;
    assert_eq!(status, 200, "{reply}");
    // None of eve's connections were on A; three nodes received the command.
    assert_eq!(
        reply,
        json!({"user": "eve", "disconnected": 0, "nodes": 3,
            "reason": "disconnected_by_backend"})
    );
    for ws in [&mut eve_b, &mut eve_c] {
        assert_eq!(ws.recv_close().await.0, 4005);
    }
    // `reconnect: true` closes with 4006; here the call hits a node that holds one of them.
    let mut eve_a = ws_of(&a, "eve", &[]).await;
    let mut eve_c = ws_of(&c, "eve", &[]).await;
    let (_, reply) = post(&a, "/api/users/eve/disconnect", json!({"reconnect": true})).await;
    assert_eq!(
        (reply["disconnected"].as_u64(), reply["nodes"].as_u64()),
        (Some(1), Some(3))
    );
    for ws in [&mut eve_a, &mut eve_c] {
        assert_eq!(ws.recv_close().await.0, 4006);
    }
    // A bystander on B lost nothing and stays connected.
    a.publish("news", &json!("still here")).await;
    let frames = messages(&mut bob_b, 1).await;
    assert_eq!(frames.last().unwrap()["data"], "still here");
    bob_b.close().await;
    for node in [&a, &b, &c] {
        node.assert_no_clients().await;
    }
}

#[tokio::test]
async fn cluster_unsubscribe_user_and_empty_channel_act_on_every_node() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let [a, b, c] = three_nodes(&redis, &[]).await;
    let mut eve_b = ws_of(&b, "eve", &["room", "other"]).await;
    let mut eve_c = ws_of(&c, "eve", &["room"]).await;
    let mut bob_c = ws_of(&c, "bob", &["room"]).await;
    let (status, reply) = post(&a, "/api/users/eve/unsubscribe", json!({"channel": "room"})).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply,
        json!({"user": "eve", "channel": "room", "unsubscribed": 0, "nodes": 3})
    );
    taken_off(&mut eve_b, "room").await;
    taken_off(&mut eve_c, "room").await;
    // bob is still on `room`, eve still on `other`.
    a.publish("room", &json!(1)).await;
    a.publish("other", &json!(2)).await;
    assert_eq!(messages(&mut bob_c, 1).await.last().unwrap()["data"], 1);
    let frames = messages(&mut eve_b, 1).await;
    let message = frames.last().unwrap();
    assert_eq!(
        (message["channel"].as_str(), message["data"].as_u64()),
        (Some("other"), Some(2))
    );

    // Emptying a channel from B takes its subscribers off on every node.
    let (status, reply) = post(&b, "/api/channels/other/disconnect", json!(null)).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply,
        json!({"channel": "other", "unsubscribed": 1, "nodes": 3})
    );
    taken_off(&mut eve_b, "other").await;
    let mut bob_a = ws_of(&a, "bob", &["room"]).await;
    let (_, reply) = post(&b, "/api/channels/room/disconnect", json!(null)).await;
    assert_eq!(
        (reply["unsubscribed"].as_u64(), reply["nodes"].as_u64()),
        (Some(0), Some(3))
    );
    taken_off(&mut bob_c, "room").await;
    taken_off(&mut bob_a, "room").await;
    // Connections stay open: a ping is answered.
    for ws in [&mut eve_b, &mut eve_c, &mut bob_c, &mut bob_a] {
        ws.send(json!({"type": "ping", "id": 5})).await;
        assert_eq!(ws.recv_type("pong").await["id"], 5);
    }
    for ws in [eve_b, eve_c, bob_c, bob_a] {
        ws.close().await;
    }
    for node in [&a, &b, &c] {
        node.assert_no_clients().await;
    }
}

#[tokio::test]
async fn cluster_control_with_redis_down_is_refused_and_changes_nothing() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let [a, b, _c] = three_nodes(&redis, &["--redis-timeout", "500ms"]).await;
    let mut eve_a = ws_of(&a, "eve", &["room"]).await;
    redis.stop();
    for (path, body) in [
        ("/api/users/eve/disconnect", json!({})),
        ("/api/users/eve/unsubscribe", json!({"channel": "room"})),
        ("/api/channels/room/disconnect", json!(null)),
    ] {
        let (status, reply) = post(&a, path, body).await;
        assert_eq!(
            (status, reply["error"]["code"].as_str()),
            (503, Some("broker_unavailable")),
            "{path}: {reply}"
        );
    }
    let (status, reply) = a.get_json("/api/users/eve").await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (503, Some("broker_unavailable")),
        "{reply}"
    );
    // Nothing happened to eve's connection on the node the calls hit.
    eve_a.send(json!({"type": "ping", "id": 1})).await;
    let pong = eve_a.recv().await;
    assert_eq!(
        (pong["type"].as_str(), pong["id"].as_u64()),
        (Some("pong"), Some(1)),
        "{pong}"
    );
    wait_until("a refusal to be counted", || {
        a.hub.stats().broker.unavailable.get() >= 4
    })
    .await;
    eve_a.close().await;
    a.assert_no_clients().await;
    b.assert_no_clients().await;
}

#[tokio::test]
async fn cluster_node_follows_control_commands_again_after_its_subscription_is_cut() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let [a, b, c] = three_nodes(&redis, &[]).await;
    let mut eve_b = ws_of(&b, "eve", &[]).await;
    let reconnects = |node: &TestServer| node.hub.stats().broker.reconnects.get();
    let before: Vec<u64> = [&a, &b, &c].iter().map(|n| reconnects(n)).collect();
    redis.command(&["CLIENT", "KILL", "TYPE", "pubsub"]).await;
    wait_until("every node to reconnect its subscription", || {
        [&a, &b, &c]
            .iter()
            .zip(&before)
            .all(|(node, before)| reconnects(node) > *before)
    })
    .await;
    control_listeners_reach(&redis, 3).await;
    let (status, reply) = post(&c, "/api/users/eve/disconnect", json!({})).await;
    assert_eq!((status, reply["nodes"].as_u64()), (200, Some(3)), "{reply}");
    assert_eq!(eve_b.recv_close().await.0, 4005);
    b.assert_no_clients().await;
}

#[tokio::test]
async fn cluster_user_lookup_lists_the_users_connections_on_every_node() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let [a, b, c] = three_nodes(&redis, &[]).await;
    let eve_b = ws_of(&b, "eve", &["room"]).await;
    let eve_c1 = ws_of(&c, "eve", &[]).await;
    let eve_c2 = ws_of(&c, "eve", &["room", "other"]).await;
    let bob_a = ws_of(&a, "bob", &["room"]).await;
    let (status, reply) = a.get_json("/api/users/eve").await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        (reply["nodes"].as_u64(), reply["answered"].as_u64()),
        (Some(3), Some(3))
    );
    let connections = reply["connections"].as_array().unwrap();
    let seen: Vec<(String, Value)> = connections
        .iter()
        .map(|c| {
            let mut channels: Vec<String> = serde_json::from_value(c["channels"].clone()).unwrap();
            channels.sort();
            (c["node"].as_str().unwrap().to_owned(), json!(channels))
        })
        .collect();
    assert_eq!(seen.len(), 3, "{reply}");
    // Two nodes hold eve's connections: B's one (on `room`), C's two.
    let node_of = |channels: Value| {
        seen.iter()
            .find(|(_, c)| *c == channels)
            .map(|(n, _)| n.clone())
            .unwrap()
    };
    let (on_b, on_c) = (node_of(json!(["room"])), node_of(json!([])));
    assert_ne!(on_b, on_c);
    assert_eq!(node_of(json!(["other", "room"])), on_c);
    assert!(connections.iter().all(|c| c["transport"] == "websocket"));
    // Asked on B, the same three; a user nowhere has none.
    let (_, from_b) = b.get_json("/api/users/eve").await;
    assert_eq!(from_b["connections"].as_array().unwrap().len(), 3);
    let (_, nobody) = c.get_json("/api/users/nobody").await;
    assert_eq!(nobody["connections"], json!([]));
    assert_eq!(nobody["answered"], 3);
    for ws in [eve_b, eve_c1, eve_c2, bob_a] {
        ws.close().await;
    }
    for node in [&a, &b, &c] {
        node.assert_no_clients().await;
    }
}
