//! Presence: members and distinct users of a channel that keeps presence (the default
//! `--presence chat:*`), on both transports, and join/leave coalesced into `presence_diff`
//! frames. The flush runs from the test (`--presence-batch 1h` keeps the server's own
//! flusher out of the way), so each window is exact.

use crier::auth::token::{sign_hs256, unix_now, TokenClaims};
use serde_json::{json, Value};

use crate::common::*;

const SECRET: &str = "presence-test-secret-of-32-bytes!!";

async fn server(extra: &[&str]) -> TestServer {
    let mut args = vec!["--presence-batch", "1h"];
    args.extend_from_slice(extra);
    TestServer::with(&args).await
}

fn clients_of(page: &Value) -> Vec<String> {
    let mut ids: Vec<String> = page["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["client"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

async fn presence_of(server: &TestServer, channel: &str) -> Value {
    let (status, page) = server
        .get_json(&format!("/api/channels/{channel}/presence"))
        .await;
    assert_eq!(status, 200, "{page}");
    page
}

#[tokio::test]
async fn presence_lists_exactly_the_members_on_both_transports() {
    let server = server(&[]).await;
    let mut ws = server.ws("/ws?channel=chat:room").await;
    ws.recv_type("subscribed").await;
    let session = server.lp_connect("?channel=chat:room", None).await;
    let page = presence_of(&server, "chat:room").await;
    assert_eq!(page["members"].as_array().unwrap().len(), 2);
    assert_eq!(page["next"], Value::Null);
    // The WebSocket client asks too, and sees the same two.
    ws.send(json!({"type": "presence", "channel": "chat:room", "id": 1}))
        .await;
    let reply = ws.recv_type("presence").await;
    assert_eq!(
        (reply["id"].clone(), clients_of(&reply)),
        (json!(1), clients_of(&page))
    );
    ws.send(json!({"type": "presence_stats", "channel": "chat:room", "id": 2}))
        .await;
    let stats = ws.recv_type("presence_stats").await;
    assert_eq!(
        (stats["clients"].clone(), stats["users"].clone()),
        (json!(2), json!(0))
    );
    // Unsubscribe and disconnect take members off.
    ws.send(json!({"type": "unsubscribe", "channel": "chat:room"}))
        .await;
    ws.recv_type("unsubscribed").await;
    assert_eq!(
        presence_of(&server, "chat:room").await["members"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    server
        .post(&format!("/lp/close?session={session}"), "text/plain", "")
        .await;
    assert_eq!(
        presence_of(&server, "chat:room").await["members"],
        json!([])
    );
    let (status, stats) = server
        .get_json("/api/channels/chat:room/presence/stats")
        .await;
    assert_eq!((status, stats), (200, json!({"clients": 0, "users": 0})));
    ws.close().await;
    server.assert_no_clients().await;
}

#[tokio::test]
async fn presence_pages_past_two_hundred_members() {
    let server = server(&[]).await;
    let mut sessions = Vec::new();
    for _ in 0..250 {
        sessions.push(server.lp_connect("?channel=chat:big", None).await);
    }
    let first = presence_of(&server, "chat:big").await;
    assert_eq!(first["members"].as_array().unwrap().len(), 200);
    let cursor = first["next"].as_u64().expect("a next page");
    let (_, second) = server
        .get_json(&format!("/api/channels/chat:big/presence?cursor={cursor}"))
        .await;
    assert_eq!(second["members"].as_array().unwrap().len(), 50);
    assert_eq!(second["next"], Value::Null);
    let mut all = clients_of(&first);
    all.extend(clients_of(&second));
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 250, "every member once");
}

#[tokio::test]
async fn stats_count_a_user_with_two_devices_once() {
    let server = server(&["--token-secret", SECRET]).await;
    let token = |sub: &str| {
        sign_hs256(
            SECRET.as_bytes(),
            &TokenClaims {
                sub: sub.into(),
                exp: unix_now() + 300,
                subscribe: vec!["chat:*".into()],
                publish: vec![],
                info: Some(
                    serde_json::value::RawValue::from_string(format!(r#"{{"name":"{sub}"}}"#))
                        .unwrap(),
                ),
            },
        )
    };
    let mut phone = server
        .ws(&format!("/ws?channel=chat:r&token={}", token("ada")))
        .await;
    phone.recv_type("subscribed").await;
    let mut laptop = server
        .ws(&format!("/ws?channel=chat:r&token={}", token("ada")))
        .await;
    laptop.recv_type("subscribed").await;
    let mut bob = server
        .ws(&format!("/ws?channel=chat:r&token={}", token("bob")))
        .await;
    bob.recv_type("subscribed").await;
    bob.send(json!({"type": "presence_stats", "channel": "chat:r"}))
        .await;
    let stats = bob.recv_type("presence_stats").await;
    assert_eq!(
        (stats["clients"].clone(), stats["users"].clone()),
        (json!(3), json!(2))
    );
    bob.send(json!({"type": "presence", "channel": "chat:r"}))
        .await;
    let page = bob.recv_type("presence").await;
    let ada: Vec<&Value> = page["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["user"] == "ada")
        .collect();
    assert_eq!(ada.len(), 2, "two devices, told apart by client id");
    assert_ne!(ada[0]["client"], ada[1]["client"]);
    assert_eq!(ada[0]["info"], json!({"name": "ada"}));
    // Presence of a channel the token may not read is refused like a subscribe.
    bob.send(json!({"type": "presence", "channel": "secret", "id": 9}))
        .await;
    assert_eq!(bob.recv_type("error").await["code"], "forbidden");
}

#[tokio::test]
async fn joins_and_leaves_are_coalesced_per_window() {
    let server = server(&[]).await;
    let mut listener = server.ws("/ws").await;
    listener
        .send(json!({"type": "subscribe", "channel": "chat:room", "join_leave": true}))
        .await;
    listener.recv_type("subscribed").await;
    server.hub.flush_presence();
    let own = listener.recv_type("presence_diff").await;
    assert_eq!(
        own["joins"].as_array().unwrap().len(),
        1,
        "its own join, after its `subscribed`"
    );
    // A storm of 50 members joining: one frame with 50 joins, not 50 frames.
    let mut members = Vec::new();
    for _ in 0..50 {
        members.push(server.lp_connect("?channel=chat:room", None).await);
    }
    // One that comes and goes within the same window appears in neither list.
    let mut passing = server.ws("/ws?channel=chat:room").await;
    passing.recv_type("subscribed").await;
    passing.close().await;
    wait_until("the passer-by to leave", || {
        server
            .hub
            .subscriber_count(&crier::hub::ChannelName::parse("chat:room").unwrap())
            == 51
    })
    .await;
    assert_eq!(
        server.hub.flush_presence(),
        1,
        "one frame for the one listener"
    );
    let diff = listener.recv_type("presence_diff").await;
    assert_eq!(
        (
            diff["joins"].as_array().unwrap().len(),
            diff["leaves"].as_array().unwrap().len()
        ),
        (50, 0)
    );
    // They all leave: one frame again.
    for session in &members {
        server
            .post(&format!("/lp/close?session={session}"), "text/plain", "")
            .await;
    }
    assert_eq!(server.hub.flush_presence(), 1);
    let diff = listener.recv_type("presence_diff").await;
    assert_eq!(
        (
            diff["joins"].as_array().unwrap().len(),
            diff["leaves"].as_array().unwrap().len()
        ),
        (0, 50)
    );
    // Nothing changed: nothing sent.
    assert_eq!(server.hub.flush_presence(), 0);
}

#[tokio::test]
async fn channels_without_presence_say_so() {
    let server = server(&[]).await;
    let (status, reply) = server.get_json("/api/channels/news/presence").await;
    assert_eq!(
        (status, reply["error"]["code"].clone()),
        (404, json!("presence_disabled"))
    );
    let mut ws = server.ws("/ws").await;
    ws.send(json!({"type": "presence_stats", "channel": "news", "id": 3}))
        .await;
    let reply = ws.recv().await;
    assert_eq!(
        (reply["code"].clone(), reply["id"].clone()),
        (json!("presence_disabled"), json!(3))
    );
}
