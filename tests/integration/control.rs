//! The backend control API (docs/WEBHOOKS.md, "Control API"): a user's connections, ending
//! them, taking a user or a whole channel off a channel — on both transports, and never
//! touching anyone else.

use crier::auth::token::{sign_hs256, unix_now, TokenClaims};
use serde_json::{json, Value};

use crate::common::*;

pub const SECRET: &str = "integration-test-secret-of-32-bytes!";

pub fn token(sub: &str) -> String {
    sign_hs256(
        SECRET.as_bytes(),
        &TokenClaims {
            sub: sub.into(),
            exp: unix_now() + 600,
            subscribe: vec!["*".into()],
            publish: vec![],
            info: None,
        },
    )
}

async fn token_server(extra: &[&str]) -> TestServer {
    let mut args = vec!["--token-secret", SECRET];
    args.extend_from_slice(extra);
    TestServer::with(&args).await
}

/// A WebSocket of `user` subscribed to `channels`.
pub async fn ws_of(server: &TestServer, user: &str, channels: &[&str]) -> Ws {
    let query: String = channels.iter().map(|c| format!("&channel={c}")).collect();
    let mut ws = server
        .ws(&format!("/ws?token={}{query}", token(user)))
        .await;
    for _ in channels {
        ws.recv_type("subscribed").await;
    }
    ws
}

/// A long-poll session of `user` subscribed to `channels`, its `subscribed` frames read.
async fn lp_of(server: &TestServer, user: &str, channels: &[&str]) -> (String, u64) {
    let session = server
        .lp_connect(
            "",
            Some(json!({"channels": channels, "token": token(user)})),
        )
        .await;
    let mut ack = 0;
    let frames = lp_collect(server, user, &session, &mut ack, channels.len()).await;
    assert!(
        frames.iter().all(|f| f["type"] == "subscribed"),
        "{frames:?}"
    );
    (session, ack)
}

async fn lp_collect(
    server: &TestServer,
    user: &str,
    session: &str,
    ack: &mut u64,
    count: usize,
) -> Vec<Value> {
    let mut frames = Vec::new();
    while frames.len() < count {
        let (status, reply) = server
            .get_json(&format!(
                "/lp/poll?session={session}&ack={ack}&token={}",
                token(user)
            ))
            .await;
        assert_eq!(status, 200, "poll: {reply}");
        *ack = reply["batch"].as_u64().unwrap();
        frames.extend(reply["messages"].as_array().unwrap().iter().cloned());
    }
    frames
}

async fn post_json(server: &TestServer, path: &str, body: Value) -> (u16, Value) {
    server
        .post(path, "application/json", body.to_string())
        .await
}

fn clients_of(user_body: &Value) -> Vec<String> {
    user_body["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn disconnecting_a_user_ends_every_connection_of_that_user_and_no_other() {
    let server = token_server(&[]).await;
    let mut ada_ws = ws_of(&server, "ada", &["room"]).await;
    let (ada_lp, mut ada_ack) = lp_of(&server, "ada", &["room", "news"]).await;
    let mut bob = ws_of(&server, "bob", &["room"]).await;

    let (status, user) = server.get_json("/api/users/ada").await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["user"], "ada");
    let connections = user["connections"].as_array().unwrap();
    assert_eq!(connections.len(), 2, "{user}");
    let transports: Vec<&str> = connections
        .iter()
        .map(|c| c["transport"].as_str().unwrap())
        .collect();
    assert_eq!(transports, ["websocket", "long_poll"]);
    assert_eq!(connections[0]["channels"], json!(["room"]));
    assert_eq!(connections[1]["channels"], json!(["room", "news"]));
    assert!(connections[0]["connected_at_ms"].as_u64().unwrap() > 1_600_000_000_000);
    assert_eq!(server.get_json("/api/stats").await.1["users"], 2);

    let (status, reply) = post_json(
        &server,
        "/api/users/ada/disconnect",
        json!({"reason": "banned for spam"}),
    )
    .await;
    assert_eq!(
        (status, reply),
        (
            200,
            json!({"user": "ada", "disconnected": 2, "reason": "disconnected_by_backend"})
        )
    );
    assert_eq!(
        ada_ws.recv_close().await,
        (4005, "disconnected_by_backend".to_owned())
    );
    let frames = lp_collect(&server, "ada", &ada_lp, &mut ada_ack, 1).await;
    let last = frames.last().unwrap();
    assert_eq!(
        (
            &last["type"],
            &last["reason"],
            &last["code"],
            &last["reconnect"]
        ),
        (
            &json!("disconnect"),
            &json!("disconnected_by_backend"),
            &json!(4005),
            &json!(false)
        )
    );
    let (status, user) = server.get_json("/api/users/ada").await;
    assert_eq!((status, user["connections"].clone()), (200, json!([])));

    // Bob was not touched.
    let published = server.publish("room", &json!("still here")).await;
    assert_eq!(published["enqueued"], 1);
    assert_eq!(bob.recv_type("message").await["data"], "still here");

    // With `reconnect`, another reason (and an empty body is fine too).
    let (status, reply) = post_json(
        &server,
        "/api/users/bob/disconnect",
        json!({"reconnect": true}),
    )
    .await;
    assert_eq!((status, reply["disconnected"].clone()), (200, json!(1)));
    assert_eq!(
        bob.recv_close().await,
        (4006, "reconnect_by_backend".to_owned())
    );
    let (status, reply) = server
        .post("/api/users/nobody/disconnect", "application/json", "")
        .await;
    assert_eq!((status, reply["disconnected"].clone()), (200, json!(0)));
    let (status, reply) =
        post_json(&server, "/api/users/ada/disconnect", json!({"recon": 1})).await;
    assert_eq!(
        (status, reply["error"]["code"].clone()),
        (400, json!("bad_request"))
    );

    let stats = server.get_json("/api/stats").await.1;
    assert_eq!(stats["disconnects"]["disconnected_by_backend"], 2);
    assert_eq!(stats["disconnects"]["reconnect_by_backend"], 1);
    assert_eq!(stats["users"], 0);
    server.assert_no_clients().await;
}

#[tokio::test]
async fn unsubscribing_a_user_takes_each_of_its_connections_off_the_channel() {
    let server = token_server(&[]).await;
    let mut ada_ws = ws_of(&server, "ada", &["room", "news"]).await;
    let (ada_lp, mut ada_ack) = lp_of(&server, "ada", &["room"]).await;
    let mut bob = ws_of(&server, "bob", &["room"]).await;

    let (status, reply) = post_json(
        &server,
        "/api/users/ada/unsubscribe",
        json!({"channel": "room"}),
    )
    .await;
    assert_eq!(
        (status, reply),
        (
            200,
            json!({"user": "ada", "channel": "room", "unsubscribed": 2})
        )
    );
    assert_eq!(
        ada_ws.recv().await,
        json!({"type": "unsubscribed", "channel": "room"})
    );
    let frames = lp_collect(&server, "ada", &ada_lp, &mut ada_ack, 1).await;
    assert_eq!(frames, [json!({"type": "unsubscribed", "channel": "room"})]);

    // Only bob still reads `room`; ada's connections stay, on their other channels.
    assert_eq!(server.publish("room", &json!(1)).await["enqueued"], 1);
    assert_eq!(bob.recv_type("message").await["data"], 1);
    server.publish("news", &json!(2)).await;
    let message = ada_ws.recv().await;
    assert_eq!(
        (&message["channel"], &message["data"]),
        (&json!("news"), &json!(2))
    );
    let (_, user) = server.get_json("/api/users/ada").await;
    assert_eq!(clients_of(&user).len(), 2);

    // Again: nobody is subscribed any more. A bad channel name or body is refused.
    let (status, reply) = post_json(
        &server,
        "/api/users/ada/unsubscribe",
        json!({"channel": "room"}),
    )
    .await;
    assert_eq!((status, reply["unsubscribed"].clone()), (200, json!(0)));
    let (status, reply) = post_json(
        &server,
        "/api/users/ada/unsubscribe",
        json!({"channel": "a b"}),
    )
    .await;
    assert_eq!(
        (status, reply["error"]["code"].clone()),
        (400, json!("invalid_channel"))
    );
    let (status, reply) = server
        .post("/api/users/ada/unsubscribe", "application/json", "")
        .await;
    assert_eq!(
        (status, reply["error"]["code"].clone()),
        (400, json!("bad_request"))
    );

    ada_ws.close().await;
    bob.close().await;
    let (status, _) = server
        .post(
            &format!("/lp/close?session={ada_lp}&token={}", token("ada")),
            "application/json",
            "",
        )
        .await;
    assert_eq!(status, 200);
    server.assert_no_clients().await;
}

#[tokio::test]
async fn disconnecting_a_channel_unsubscribes_everyone_and_keeps_their_connections() {
    // Open mode: the channel API works without users too.
    let server = TestServer::start().await;
    let mut a = server.ws("/ws?channel=room&channel=news").await;
    a.recv_type("subscribed").await;
    a.recv_type("subscribed").await;
    let mut b = server.ws("/ws?channel=room").await;
    b.recv_type("subscribed").await;

    let (status, reply) = server
        .post("/api/channels/room/disconnect", "text/plain", "")
        .await;
    assert_eq!(
        (status, reply),
        (200, json!({"channel": "room", "unsubscribed": 2}))
    );
    for ws in [&mut a, &mut b] {
        assert_eq!(
            ws.recv().await,
            json!({"type": "unsubscribed", "channel": "room"})
        );
    }
    assert_eq!(server.publish("room", &json!(1)).await["enqueued"], 0);
    // The connections stay: a still reads news, b can subscribe again.
    server.publish("news", &json!(2)).await;
    assert_eq!(a.recv_type("message").await["data"], 2);
    b.subscribe("room").await;
    assert_eq!(server.publish("room", &json!(3)).await["enqueued"], 1);
    assert_eq!(b.recv_type("message").await["data"], 3);
    let (status, reply) = server
        .post("/api/channels/empty/disconnect", "text/plain", "")
        .await;
    assert_eq!((status, reply["unsubscribed"].clone()), (200, json!(0)));
    // Open mode has no users.
    assert_eq!(
        server.get_json("/api/users/c1").await.1["connections"],
        json!([])
    );
    a.close().await;
    b.close().await;
    server.assert_no_clients().await;
}

#[tokio::test]
async fn the_control_api_needs_the_api_key() {
    let server = token_server(&["--api-key", "k1"]).await;
    for (method, path) in [
        ("GET", "/api/users/ada"),
        ("POST", "/api/users/ada/disconnect"),
        ("POST", "/api/users/ada/unsubscribe"),
        ("POST", "/api/channels/room/disconnect"),
    ] {
        let request = match method {
            "GET" => server.http.get(server.url(path)),
            _ => server.http.post(server.url(path)),
        };
        let response = within("request", request.bearer_auth("k2").send())
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 403, "{path}");
        let response = within(
            "request",
            server.http.get(server.url("/api/users/ada")).send(),
        )
        .await
        .unwrap();
        assert_eq!(response.status().as_u16(), 401, "{path}");
    }
    let response = within(
        "request",
        server
            .http
            .get(server.url("/api/users/ada"))
            .bearer_auth("k1")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status().as_u16(), 200);
}
