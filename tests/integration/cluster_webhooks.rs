//! `user_online` / `user_offline` once per cluster (docs/WEBHOOKS.md): a user connected to
//! several nodes is announced online once and offline once, by one node — also when its last
//! connection was on a node killed with -9.

use serde_json::Value;

use crate::common::{spawn_binary, within, TestServer, Ws};
use crate::control::{token, ws_of, SECRET};
use crate::redis_server::Redis;
use crate::webhooks::{Receiver, API_KEY};

fn args<'a>(receiver: &'a Receiver, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--token-secret",
        SECRET,
        "--webhook-secret",
        API_KEY,
        "--webhook-url",
        &receiver.url,
        "--webhook-events",
        "user_online,user_offline",
        "--webhook-offline-grace",
        "300ms",
    ];
    args.extend_from_slice(extra);
    args
}

fn of_user(receiver: &Receiver, kind: &str, user: &str) -> Vec<Value> {
    receiver
        .of_kind(kind)
        .into_iter()
        .filter(|e| e["user"] == user)
        .collect()
}

async fn announced(receiver: &Receiver, kind: &str, user: &str, count: usize) {
    receiver
        .wait_for(&format!("{count} {kind} of {user}"), |events| {
            events
                .iter()
                .filter(|e| e["event"] == kind && e["user"] == user)
                .count()
                >= count
        })
        .await;
}

#[tokio::test]
async fn cluster_user_online_and_offline_are_announced_once_per_cluster() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let receiver = Receiver::start().await;
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(TestServer::node(&redis.url(), &args(&receiver, &[])).await);
    }
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let eve_a = ws_of(a, "eve", &[]).await;
    announced(&receiver, "user_online", "eve", 1).await;
    let eve_b = ws_of(b, "eve", &[]).await;
    let eve_c = ws_of(c, "eve", &[]).await;
    // Each node's dispatcher works in order: once a later user is announced from B and from
    // C, eve's connections there were decided (not online anew).
    let _yb = ws_of(b, "yb", &[]).await;
    let _yc = ws_of(c, "yc", &[]).await;
    announced(&receiver, "user_online", "yb", 1).await;
    announced(&receiver, "user_online", "yc", 1).await;
    assert_eq!(of_user(&receiver, "user_online", "eve").len(), 1);
    // Her connections end on three nodes, close together: one user_offline.
    for ws in [eve_a, eve_b, eve_c] {
        ws.close().await;
    }
    announced(&receiver, "user_offline", "eve", 1).await;
    // Back: online anew (the cluster decided offline, and forgot her).
    let eve_b = ws_of(b, "eve", &[]).await;
    announced(&receiver, "user_online", "eve", 2).await;
    assert_eq!(of_user(&receiver, "user_offline", "eve").len(), 1);
    // Nothing is left in Redis for an offline user.
    eve_b.close().await;
    announced(&receiver, "user_offline", "eve", 2).await;
    assert_eq!(
        redis.command(&["EXISTS", "crier:user:eve"]).await,
        redis::Value::Int(0)
    );
}

#[tokio::test]
async fn cluster_user_offline_comes_from_a_survivor_when_the_last_node_is_killed() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let receiver = Receiver::start().await;
    let url = redis.url();
    let a = TestServer::node(&url, &args(&receiver, &[])).await;
    let doomed_args = args(
        &receiver,
        &["--redis-url", &url, "--redis-timeout", "500ms"],
    );
    let (mut doomed, addr) = spawn_binary(&doomed_args).await;
    let (stream, _) = within(
        "a websocket to the doomed node",
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws?token={}", token("eve"))),
    )
    .await
    .unwrap();
    let eve = Ws { stream };
    announced(&receiver, "user_online", "eve", 1).await;
    doomed.kill().await.unwrap(); // SIGKILL: its dispatcher never hears eve leave
    drop(eve);
    // A sees the node's key expire, takes eve off it, and after the grace announces her
    // offline — once.
    announced(&receiver, "user_offline", "eve", 1).await;
    let offline = of_user(&receiver, "user_offline", "eve");
    assert_eq!(offline.len(), 1, "{offline:?}");
    a.assert_no_clients().await;
}
