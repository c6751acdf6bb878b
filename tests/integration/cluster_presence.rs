//! Presence across nodes: `presence` and `presence_stats` (frames and API) list every node's
//! members; a node killed with -9 has its members removed by a survivor; Redis restarted
//! empty gets every node's members back; Redis down is `broker_unavailable`.

use serde_json::{json, Value};

use crate::common::{pause, spawn_binary, within, TestServer, Ws};
use crate::control::{ws_of, SECRET};
use crate::redis_server::Redis;

const ROOM: &str = "chat:room";

async fn nodes(redis: &Redis, count: usize) -> Vec<TestServer> {
    let mut nodes = Vec::new();
    for _ in 0..count {
        nodes.push(TestServer::node(&redis.url(), &["--token-secret", SECRET]).await);
    }
    nodes
}

/// Polls `/presence/stats` on `node` until it shows `clients` and `users` (the writer is
/// asynchronous: a join reaches Redis shortly after its `subscribed`).
async fn stats_reach(node: &TestServer, clients: u64, users: u64) {
    let path = format!("/api/channels/{ROOM}/presence/stats");
    within("presence stats to reach the expected figures", async {
        loop {
            let (status, stats) = node.get_json(&path).await;
            // Right after Redis restarted, the node's command connection may be reconnecting.
            let reconnecting = status == 503 && stats["error"]["code"] == "broker_unavailable";
            assert!(status == 200 || reconnecting, "{stats}");
            if stats == json!({"clients": clients, "users": users}) {
                return;
            }
            pause().await;
        }
    })
    .await;
}

/// A connection of `user` on `node` subscribed to ROOM with `join_leave`, its own join read.
async fn listener(node: &TestServer, user: &str) -> Ws {
    let mut ws = node
        .ws(&format!("/ws?token={}", crate::control::token(user)))
        .await;
    ws.send(json!({"type": "subscribe", "channel": ROOM, "join_leave": true}))
        .await;
    ws.recv_type("subscribed").await;
    let own = ws.recv_type("presence_diff").await;
    assert_eq!(users_of(&own["joins"]), [user]);
    ws
}

/// Reads `presence_diff` frames until one whose `field` lists `user`.
async fn diff_naming(ws: &mut Ws, field: &str, user: &str) -> Value {
    loop {
        let diff = ws.recv_type("presence_diff").await;
        if users_of(&diff[field]).iter().any(|u| u == user) {
            return diff;
        }
    }
}

fn users_of(members: &Value) -> Vec<String> {
    let mut users: Vec<String> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user"].as_str().unwrap().to_owned())
        .collect();
    users.sort();
    users
}

#[tokio::test]
async fn cluster_presence_lists_every_nodes_members() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let nodes = nodes(&redis, 3).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let ada = ws_of(a, "ada", &[ROOM]).await;
    let bob_b = ws_of(b, "bob", &[ROOM]).await;
    let mut bob_c = ws_of(c, "bob", &[ROOM]).await;
    stats_reach(a, 3, 2).await;
    // The API on any node, and the frame on another, list the same three members.
    let (status, page) = b.get_json(&format!("/api/channels/{ROOM}/presence")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(users_of(&page["members"]), ["ada", "bob", "bob"]);
    assert_eq!(page["next"], Value::Null);
    let bobs: Vec<&Value> = page["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["user"] == "bob")
        .collect();
    assert_ne!(bobs[0]["node"], bobs[1]["node"], "{page}");
    bob_c
        .send(json!({"type": "presence", "channel": ROOM, "id": 1}))
        .await;
    let frame = bob_c.recv_type("presence").await;
    assert_eq!(frame["id"], 1);
    assert_eq!(users_of(&frame["members"]), ["ada", "bob", "bob"]);
    bob_c
        .send(json!({"type": "presence_stats", "channel": ROOM, "id": 2}))
        .await;
    let stats = bob_c.recv_type("presence_stats").await;
    assert_eq!(
        (stats["clients"].as_u64(), stats["users"].as_u64()),
        (Some(3), Some(2))
    );
    // Leaves count too: bob keeps one connection, so two users still.
    bob_c.close().await;
    stats_reach(a, 2, 2).await;
    bob_b.close().await;
    stats_reach(c, 1, 1).await;
    ada.close().await;
    stats_reach(b, 0, 0).await;
    // Nothing is left behind in Redis for the channel.
    for key in ["crier:pres:chat:room", "crier:pusers:chat:room"] {
        assert_eq!(
            redis.command(&["EXISTS", key]).await,
            redis::Value::Int(0),
            "{key}"
        );
    }
    for node in &nodes {
        node.assert_no_clients().await;
    }
}

#[tokio::test]
async fn cluster_presence_of_a_node_killed_with_sigkill_is_removed_by_a_survivor() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let url = redis.url();
    let nodes = nodes(&redis, 1).await;
    let a = &nodes[0];
    let mut ada = listener(a, "ada").await;
    // A real process, beating every 500 ms (its --redis-timeout).
    let args = [
        "--redis-url",
        &url,
        "--redis-timeout",
        "500ms",
        "--token-secret",
        SECRET,
    ];
    let (mut doomed, addr) = spawn_binary(&args).await;
    let token = crate::control::token("eve");
    let (stream, _) = within(
        "a websocket to the doomed node",
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws?token={token}&channel={ROOM}")),
    )
    .await
    .unwrap();
    let mut eve = Ws { stream };
    eve.recv_type("subscribed").await;
    stats_reach(a, 2, 2).await;
    doomed.kill().await.unwrap(); // SIGKILL: no goodbye
                                  // A survives, sees the node's key expire, and removes its member.
    stats_reach(a, 1, 1).await;
    let (_, page) = a.get_json(&format!("/api/channels/{ROOM}/presence")).await;
    assert_eq!(users_of(&page["members"]), ["ada"]);
    // A join_leave listener was told of eve's join, then of her leave when she was removed.
    diff_naming(&mut ada, "leaves", "eve").await;
    ada.close().await;
    a.assert_no_clients().await;
}

#[tokio::test]
async fn cluster_presence_comes_back_after_redis_restarts_empty() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let nodes = nodes(&redis, 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let ada = ws_of(a, "ada", &[ROOM]).await;
    let bob = ws_of(b, "bob", &[ROOM]).await;
    stats_reach(b, 2, 2).await;
    redis.restart().await;
    // Each node finds its key gone at its next heartbeat and states its members again.
    stats_reach(a, 2, 2).await;
    for ws in [ada, bob] {
        ws.close().await;
    }
    for node in &nodes {
        node.assert_no_clients().await;
    }
}

#[tokio::test]
async fn cluster_presence_with_redis_down_is_broker_unavailable() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let a = TestServer::node(
        &redis.url(),
        &["--token-secret", SECRET, "--redis-timeout", "500ms"],
    )
    .await;
    let mut ada = ws_of(&a, "ada", &[ROOM]).await;
    redis.stop();
    let (status, body) = a
        .get_json(&format!("/api/channels/{ROOM}/presence/stats"))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("broker_unavailable"))
    );
    ada.send(json!({"type": "presence", "channel": ROOM, "id": 3}))
        .await;
    let error = ada.recv_type("error").await;
    assert_eq!(
        (error["code"].as_str(), error["id"].as_u64()),
        (Some("broker_unavailable"), Some(3))
    );
    // A channel without presence still says so, Redis or not.
    ada.send(json!({"type": "presence_stats", "channel": "news", "id": 4}))
        .await;
    assert_eq!(ada.recv_type("error").await["code"], "presence_disabled");
    ada.close().await;
    a.assert_no_clients().await;
}

#[tokio::test]
async fn cluster_presence_pages_follow_the_cursor_through_a_large_channel() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let nodes = nodes(&redis, 1).await;
    let a = &nodes[0];
    // 1,200 members of another node, written as a node writes them (past Redis's small-hash
    // encoding, so the scan takes several pages).
    // One HSET per field, as the batch script writes them (one HSET of many fields may
    // leave the hash in Redis's small encoding, which a scan returns whole).
    let mut args = vec![
        "EVAL".to_owned(),
        "for i = 1, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end".to_owned(),
        "1".to_owned(),
        "crier:pres:chat:big".to_owned(),
    ];
    for i in 0..1200 {
        args.push(format!("n1:c{i}"));
        args.push(
            json!({"client": format!("c{i}"), "node": "n1", "user": format!("u{i}")}).to_string(),
        );
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    redis.command(&args).await;
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor = 0;
    let mut pages = 0;
    loop {
        let (status, page) = a
            .get_json(&format!("/api/channels/chat:big/presence?cursor={cursor}"))
            .await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        for member in page["members"].as_array().unwrap() {
            assert_eq!(member["node"], "n1");
            seen.insert(member["client"].as_str().unwrap().to_owned());
        }
        match page["next"].as_u64() {
            Some(next) => cursor = next,
            None => break,
        }
        assert!(pages < 100, "the cursor must end");
    }
    assert_eq!(seen.len(), 1200);
    assert!(pages > 1, "a channel this large takes several pages");
}

#[tokio::test]
async fn cluster_presence_diff_tells_joins_and_leaves_of_every_node() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let nodes = nodes(&redis, 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut ada = listener(a, "ada").await;
    let bob = ws_of(b, "bob", &[ROOM]).await;
    let joined = diff_naming(&mut ada, "joins", "bob").await;
    let bob_node = joined["joins"][0]["node"].clone();
    assert!(bob_node.is_string(), "{joined}");
    // A listener that joins later asks `presence` for who is there; from then on it hears
    // the joins and leaves of either node.
    let mut cy = listener(b, "cy").await;
    let dan = ws_of(a, "dan", &[ROOM]).await;
    for ws in [&mut ada, &mut cy] {
        diff_naming(ws, "joins", "dan").await;
    }
    bob.close().await;
    let left = diff_naming(&mut ada, "leaves", "bob").await;
    assert_eq!(left["leaves"][0]["node"], bob_node);
    dan.close().await;
    diff_naming(&mut cy, "leaves", "dan").await;
    for ws in [ada, cy] {
        ws.close().await;
    }
    for node in &nodes {
        node.assert_no_clients().await;
    }
}

#[tokio::test]
async fn cluster_presence_churn_converges_and_a_bystander_loses_nothing() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let nodes = nodes(&redis, 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut bystander = ws_of(b, "bystander", &["news"]).await;
    let mut listener = listener(b, "watcher").await;
    // 100 connections join and leave the room on A, two at a time, while news is published.
    for round in 0..50u64 {
        let one = ws_of(a, &format!("churn{round}"), &[ROOM]).await;
        let two = ws_of(a, &format!("churn{round}b"), &[ROOM]).await;
        a.publish("news", &json!(round)).await;
        one.close().await;
        two.close().await;
    }
    let frames = crate::cluster::messages(&mut bystander, 50).await;
    let data: Vec<u64> = frames
        .iter()
        .filter(|f| f["type"] == "message")
        .map(|f| f["data"].as_u64().unwrap())
        .collect();
    assert_eq!(data, (0..50).collect::<Vec<u64>>());
    // Redis ends with the one member left: the watcher on B.
    stats_reach(a, 1, 1).await;
    let (_, page) = a.get_json(&format!("/api/channels/{ROOM}/presence")).await;
    assert_eq!(users_of(&page["members"]), ["watcher"]);
    // The watcher heard the churn in coalesced diffs (a join and leave within one window
    // cancel out); applied in order, up to a last member who stays, they leave exactly her.
    let last = ws_of(a, "last", &[ROOM]).await;
    let mut view = std::collections::BTreeSet::new();
    loop {
        let diff = listener.recv_type("presence_diff").await;
        for user in users_of(&diff["joins"]) {
            assert!(view.insert(user.clone()), "joined twice: {user}");
        }
        for user in users_of(&diff["leaves"]) {
            assert!(view.remove(&user), "left without joining: {user}");
        }
        if users_of(&diff["joins"]).iter().any(|u| u == "last") {
            break;
        }
    }
    assert_eq!(view.into_iter().collect::<Vec<_>>(), ["last"]);
    for ws in [bystander, listener, last] {
        ws.close().await;
    }
    for node in &nodes {
        node.assert_no_clients().await;
    }
}
