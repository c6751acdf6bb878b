//! The publisher the hub stamps on client publishes (`from`), through Redis: live on other
//! nodes, in Redis history for a client resuming on yet another node, and in the history API.

use crier::auth::token::{sign_hs256, unix_now, TokenClaims};
use serde_json::{json, Value};

use crate::cluster::messages;
use crate::common::TestServer;
use crate::redis_server::Redis;

const SECRET: &str = "cluster-stamp-test-secret-32-bytes";

fn token(sub: &str, info: &str) -> String {
    sign_hs256(
        SECRET.as_bytes(),
        &TokenClaims {
            sub: sub.into(),
            exp: unix_now() + 300,
            subscribe: vec!["chat:*".into(), "quiet:*".into()],
            publish: vec!["chat:*".into(), "quiet:*".into()],
            info: Some(serde_json::value::RawValue::from_string(info.into()).unwrap()),
        },
    )
}

/// A namespace that does not stamp, beside the default (stamping) rules.
const CONFIG: &str = r#"
client-publish = "*"

[[namespace]]
prefix = "quiet:"
stamp = false
"#;

#[tokio::test]
async fn cluster_stamped_publish_carries_from_live_and_in_history_on_every_node() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let config = std::env::temp_dir().join(format!("crier-cluster-stamp-{}.toml", redis.port));
    std::fs::write(&config, CONFIG).unwrap();
    let config_path = config.to_str().unwrap();
    let args = ["--token-secret", SECRET, "--config", config_path];
    let a = TestServer::node(&redis.url(), &args).await;
    let b = TestServer::node(&redis.url(), &args).await;
    let c = TestServer::node(&redis.url(), &args).await;
    let bob = token("bob", "{}");
    let mut on_b = b.ws(&format!("/ws?token={bob}")).await;
    on_b.subscribe("chat:room").await;
    // `info` with a newline and a colon: kept verbatim through Redis.
    let ada = token("ada", "{\"name\":\n\"Ada: the first\"}");
    let mut on_a = a.ws(&format!("/ws?token={ada}")).await;
    on_a.send(json!({"type": "publish", "channel": "chat:room",
        "data": {"text": "hi", "from": "mallory"}, "id": 1}))
        .await;
    let published = on_a.recv_type("published").await;
    assert_eq!(published["offset"], 1);
    on_a.send(json!({"type": "publish", "channel": "quiet:room", "data": "hush", "id": 2}))
        .await;
    on_a.recv_type("published").await;

    // Live, on another node: the `from` node A wrote, never the client's own.
    let live = messages(&mut on_b, 1).await.pop().unwrap();
    let from = live["from"].clone();
    assert_eq!(from["user"], "ada", "{live}");
    assert_eq!(from["info"], json!({"name": "Ada: the first"}));
    assert!(from["client"].as_str().unwrap().starts_with('c'), "{live}");
    assert_eq!(live["data"], json!({"text": "hi", "from": "mallory"}));

    // A client resuming on a third node reads it from Redis history, with the same `from`.
    let mut on_c = c.ws(&format!("/ws?token={bob}")).await;
    on_c.send(json!({"type": "subscribe", "channel": "chat:room",
        "since": {"epoch": live["epoch"], "offset": 0}}))
        .await;
    assert_eq!(on_c.recv_type("subscribed").await["recovered"], true);
    let resumed = messages(&mut on_c, 1).await.pop().unwrap();
    assert_eq!(resumed, live);
    // So does the history API on any node.
    let (status, page) = c.get_json("/api/channels/chat:room/history").await;
    assert_eq!(status, 200);
    assert_eq!(page["messages"], json!([live]));

    // An unstamped namespace stays unstamped through Redis.
    let (_, quiet) = b.get_json("/api/channels/quiet:room/history").await;
    let quiet: &Value = &quiet["messages"][0];
    assert_eq!(quiet["data"], "hush");
    assert!(quiet.get("from").is_none(), "{quiet}");
    // And a backend publish carries none either.
    a.publish("chat:room", &json!("from the backend")).await;
    let backend = messages(&mut on_b, 1).await.pop().unwrap();
    assert!(backend.get("from").is_none(), "{backend}");

    std::fs::remove_file(&config).unwrap();
    for ws in [on_a, on_b, on_c] {
        ws.close().await;
    }
    for node in [&a, &b, &c] {
        node.assert_no_clients().await;
    }
}
