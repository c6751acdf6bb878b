//! Identity (docs/SECURITY.md): API keys on the backend API, the loopback rule, connection
//! tokens on both transports and both WebSocket handshake paths, rights, long-poll sessions
//! bound to their user, and token lifetimes (refresh, expiry, resume after expiry). Every
//! hostile input gets its documented error while a bystander keeps receiving.

use std::net::IpAddr;

use crier::auth::token::{sign_hs256, unix_now, TokenClaims};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::common::*;

const SECRET: &str = "integration-test-secret-of-32-bytes!";
const API_KEY: &str = "backend-key-1";

fn token_for(sub: &str, ttl_secs: u64, subscribe: &[&str], publish: &[&str]) -> String {
    sign_hs256(
        SECRET.as_bytes(),
        &TokenClaims {
            sub: sub.into(),
            exp: unix_now() + ttl_secs,
            subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
            publish: publish.iter().map(|s| s.to_string()).collect(),
            info: None,
        },
    )
}

fn ada(ttl_secs: u64) -> String {
    token_for("ada", ttl_secs, &["watch", "chat:*", "news"], &["chat:*"])
}

async fn token_server(extra: &[&str]) -> TestServer {
    let mut args = vec!["--token-secret", SECRET, "--token-leeway", "0s"];
    args.extend_from_slice(extra);
    TestServer::with(&args).await
}

/// A token-holding client subscribed to `watch` that must keep receiving throughout.
async fn bystander(server: &TestServer) -> Ws {
    let mut ws = server
        .ws(&format!("/ws?channel=watch&token={}", ada(60)))
        .await;
    ws.recv_type("subscribed").await;
    ws
}

async fn still_served(server: &TestServer, bystander: &mut Ws, n: u64) {
    let reply = server.publish("watch", &json!(n)).await;
    let frame = bystander.recv_type("message").await;
    assert_eq!(
        (frame["offset"].clone(), frame["data"].clone()),
        (reply["offset"].clone(), json!(n))
    );
}

/// Opens `/ws` + `query`, expecting a refusal; returns its status and JSON body. `via_hyper`
/// pads the request head past what the direct path sniffs, so hyper handles it instead.
async fn ws_refused(server: &TestServer, query: &str, via_hyper: bool) -> (u16, Value) {
    let mut request = format!("ws://{}/ws{query}", server.addr)
        .into_client_request()
        .unwrap();
    if via_hyper {
        request
            .headers_mut()
            .insert("x-pad", HeaderValue::from_str(&"p".repeat(3000)).unwrap());
    }
    match within("refused upgrade", tokio_tungstenite::connect_async(request)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            (
                response.status().as_u16(),
                serde_json::from_slice(&body).unwrap_or(Value::Null),
            )
        }
        Err(other) => panic!("expected an HTTP refusal, got {other:?}"),
        Ok(_) => panic!("the upgrade of {query} was accepted"),
    }
}

async fn request(
    server: &TestServer,
    http: &reqwest::Client,
    method: &str,
    path: &str,
    bearer: Option<&str>,
) -> (u16, Value) {
    let mut builder = match method {
        "GET" => http.get(server.url(path)),
        _ => http
            .post(server.url(path))
            .header("content-type", "application/json")
            .body("1"),
    };
    if let Some(key) = bearer {
        builder = builder.bearer_auth(key);
    }
    let response = within("request", builder.send()).await.unwrap();
    let status = response.status().as_u16();
    let www = response.headers().get("www-authenticate").cloned();
    let body = response.json().await.unwrap_or(Value::Null);
    if status == 401 {
        assert_eq!(www.unwrap(), "Bearer", "401 names the scheme");
    }
    (status, body)
}

#[tokio::test]
async fn api_keys_guard_the_backend_api_and_metrics() {
    let server = TestServer::with(&["--api-key", API_KEY, "--api-key", "backend-key-2"]).await;
    let mut watcher = server.ws("/ws?channel=watch").await;
    watcher.recv_type("subscribed").await;
    let http = reqwest::Client::new();
    for (method, path) in [
        ("POST", "/api/publish/watch"),
        ("GET", "/api/stats"),
        ("GET", "/api/channels/watch/history"),
        ("GET", "/metrics"),
    ] {
        let (status, body) = request(&server, &http, method, path, None).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("unauthorized")),
            "{path}"
        );
        let (status, body) = request(&server, &http, method, path, Some("backend-key-")).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{path}"
        );
        let (status, _) = request(&server, &http, method, path, Some("backend-key-2")).await;
        assert_eq!(status, 200, "{path}");
    }
    // Nothing refused was published: the watcher's first message is the authorised one.
    let frame = watcher.recv_type("message").await;
    assert_eq!(frame["offset"], 1);
    let (status, _) = server.get_json("/healthz").await;
    assert_eq!(status, 200, "health stays open for load balancers");
    watcher.close().await;
    server.assert_no_clients().await;
}

#[tokio::test]
async fn without_keys_only_loopback_peers_reach_the_backend_api() {
    // 127.0.0.2 is a loopback address too; the test knob makes the hub treat it as remote.
    let server = TestServer::with(&["--treat-as-remote", "127.0.0.2"]).await;
    let remote = reqwest::Client::builder()
        .local_address(Some("127.0.0.2".parse::<IpAddr>().unwrap()))
        .build()
        .unwrap();
    for (method, path) in [("POST", "/api/publish/watch"), ("GET", "/metrics")] {
        let (status, body) = request(&server, &remote, method, path, Some("anything")).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{path}"
        );
        let (status, _) = request(&server, &server.http, method, path, None).await;
        assert_eq!(status, 200, "{path} from 127.0.0.1");
    }
    // Clients and the demo are not affected.
    let (status, _) = within("demo page", remote.get(server.url("/")).send())
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn bad_tokens_are_refused_on_both_handshake_paths_and_long_poll() {
    let server = token_server(&[]).await;
    let mut other = bystander(&server).await;
    let expired = sign_hs256(
        SECRET.as_bytes(),
        &serde_json::from_value(
            json!({"sub": "ada", "exp": unix_now() - 60, "subscribe": ["watch"]}),
        )
        .unwrap(),
    );
    let wrong_key = sign_hs256(
        b"another-secret",
        &serde_json::from_value(json!({"sub": "ada", "exp": unix_now() + 60})).unwrap(),
    );
    // {"alg":"none"} with {"sub":"ada","exp":4102444800}, unsigned.
    let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhZGEiLCJleHAiOjQxMDI0NDQ4MDB9.";
    let huge = "a".repeat(9 * 1024);
    let cases: [(&str, Option<&str>); 6] = [
        ("no token", None),
        ("expired", Some(&expired)),
        ("wrong key", Some(&wrong_key)),
        ("alg none", Some(none)),
        ("9 KiB", Some(&huge)),
        ("garbage", Some("not-a-jwt")),
    ];
    for (i, (what, token)) in cases.iter().enumerate() {
        let query = token.map_or(String::new(), |t| format!("?token={t}"));
        for via_hyper in [false, true] {
            let (status, body) = ws_refused(&server, &query, via_hyper).await;
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (401, Some("unauthorized")),
                "{what}, via hyper: {via_hyper}"
            );
        }
        let connect = json!({"channels": ["watch"], "token": token});
        let (status, body) = server
            .post("/lp/connect", "application/json", connect.to_string())
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("unauthorized")),
            "{what}"
        );
        still_served(&server, &mut other, i as u64).await;
    }
    // A 1 MB token cannot even be sent: the connect body is bounded first.
    let connect = json!({"token": "a".repeat(1 << 20)});
    let (status, body) = server
        .post("/lp/connect", "application/json", connect.to_string())
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("message_too_large"))
    );
    // Authorization: Bearer works for non-browser clients.
    let mut request = format!("ws://{}/ws?channel=watch", server.addr)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {}", ada(60))).unwrap(),
    );
    let (stream, _) = within("bearer upgrade", tokio_tungstenite::connect_async(request))
        .await
        .unwrap();
    let mut bearer = Ws { stream };
    bearer.recv_type("subscribed").await;
    still_served(&server, &mut other, 100).await;
    bearer.close().await;
    other.close().await;
    assert_eq!(server.hub.client_count(), 0);
    server.assert_no_clients().await;
}

#[tokio::test]
async fn rights_limit_subscribe_and_publish_and_the_connection_stays_up() {
    let server = token_server(&["--client-publish", "*"]).await;
    let mut other = bystander(&server).await;
    let token = token_for("bob", 60, &["chat:*"], &["chat:lobby"]);
    for via_hyper in [false, true] {
        let (status, body) = ws_refused(
            &server,
            &format!("?channel=secret&token={token}"),
            via_hyper,
        )
        .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("forbidden"))
        );
    }
    let connect = json!({"channels": ["chat:a", "secret"], "token": token});
    let (status, body) = server
        .post("/lp/connect", "application/json", connect.to_string())
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );

    let mut ws = server
        .ws(&format!("/ws?channel=chat:lobby&token={token}"))
        .await;
    ws.recv_type("subscribed").await;
    let cases = [
        (
            json!({"type": "subscribe", "channel": "watch", "id": 1}),
            "forbidden",
        ),
        (
            json!({"type": "publish", "channel": "chat:other", "data": 1, "id": 2}),
            "forbidden",
        ),
        (
            json!({"type": "publish", "channel": "watch", "data": 1, "id": 3}),
            "forbidden",
        ),
        (
            json!({"type": "refresh", "token": ada(60), "id": 4}),
            "forbidden",
        ),
    ];
    for (i, (frame, code)) in cases.into_iter().enumerate() {
        let id = frame["id"].clone();
        ws.send(frame).await;
        let error = ws.recv_type("error").await;
        assert_eq!((error["code"].as_str(), &error["id"]), (Some(code), &id));
        still_served(&server, &mut other, i as u64).await;
    }
    // Within rights all works, and the connection is still up.
    ws.send(json!({"type": "publish", "channel": "chat:lobby", "data": "hi", "id": 9}))
        .await;
    let message = ws.recv_type("message").await;
    assert_eq!(message["data"], "hi");
    let published = ws.recv_type("published").await;
    assert_eq!(published["id"], 9);
    ws.close().await;
    other.close().await;
    server.assert_no_clients().await;
}

/// A long-poll session of ada's on `watch`: its id, ada's token, and a token of bob's.
async fn ada_session(server: &TestServer) -> (String, String, String) {
    let ada_token = ada(60);
    let session = server
        .lp_connect("", Some(json!({"channels": ["watch"], "token": ada_token})))
        .await;
    (session, ada_token, token_for("bob", 60, &["watch"], &[]))
}

/// Closes `session` with its owner's token (`Authorization: Bearer`); nobody is left.
async fn close_as_owner(server: &TestServer, session: &str, token: &str) {
    let response = server
        .http
        .post(server.url(&format!("/lp/close?session={session}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    server.assert_no_clients().await;
}

#[tokio::test]
async fn long_poll_sessions_belong_to_their_user() {
    let server = token_server(&[]).await;
    let (session, ada_token, bob) = ada_session(&server).await;
    let paths = [
        format!("/lp/poll?session={session}&ack=0"),
        format!("/lp/send?session={session}"),
        format!("/lp/close?session={session}"),
    ];
    for path in &paths {
        for token in [None, Some(bob.as_str()), Some("garbage")] {
            let path = match token {
                Some(t) => format!("{path}&token={t}"),
                None => path.clone(),
            };
            let (status, body) = if path.starts_with("/lp/poll") {
                server.get_json(&path).await
            } else {
                server
                    .post(&path, "application/json", r#"{"type":"ping"}"#)
                    .await
            };
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (404, Some("unknown_session")),
                "{path}"
            );
        }
    }
    // The owner, by query and by header.
    let (status, batch) = server
        .get_json(&format!(
            "/lp/poll?session={session}&ack=0&token={ada_token}"
        ))
        .await;
    assert_eq!(
        (status, last_frame(&batch)["type"].as_str()),
        (200, Some("subscribed"))
    );
    close_as_owner(&server, &session, &ada_token).await;
}

/// A poll read on the bare socket (a connection that opens with it) takes its token from
/// `Authorization: Bearer` as hyper's path does: the owner's is served, another user's and
/// none are as unknown as a wrong id.
#[tokio::test]
async fn bare_socket_polls_read_the_bearer_token() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = token_server(&[]).await;
    let (session, ada_token, bob) = ada_session(&server).await;
    for (bearer, expected) in [
        (Some(bob.as_str()), "404 Not Found"),
        (None, "404 Not Found"),
        (Some(ada_token.as_str()), "200 OK"),
    ] {
        let mut stream = within("connect", tokio::net::TcpStream::connect(server.addr))
            .await
            .unwrap();
        let authorization = bearer
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET /lp/poll?session={session}&ack=0 HTTP/1.1\r\nHost: x\r\n{authorization}\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        while !String::from_utf8_lossy(&response).contains("\r\n\r\n") {
            let mut chunk = [0u8; 4096];
            let n = within("the answer", stream.read(&mut chunk)).await.unwrap();
            assert!(n > 0, "closed before the answer");
            response.extend_from_slice(&chunk[..n]);
        }
        let response = String::from_utf8_lossy(&response);
        assert!(
            response.starts_with(&format!("HTTP/1.1 {expected}\r\n")),
            "{bearer:?}: {response}"
        );
    }
    close_as_owner(&server, &session, &ada_token).await;
}

/// Publishes `count` messages on `channel`, one at a time (each acknowledged by the hub).
async fn publish_n(server: &TestServer, channel: &str, from: u64, count: u64) {
    for n in from..from + count {
        server.publish(channel, &json!(n)).await;
    }
}

#[tokio::test]
async fn a_token_refreshed_in_time_keeps_the_connection_and_every_message() {
    let server = token_server(&[]).await;
    let short = token_for("ada", 3, &["feed"], &[]);
    let mut ws = server.ws(&format!("/ws?channel=feed&token={short}")).await;
    ws.recv_type("subscribed").await;
    let mut next = 1u64;
    let mut refreshed = false;
    // Messages flow until well past the first token's exp; the refresh happens mid-stream.
    let deadline = unix_now() + 5;
    while unix_now() <= deadline {
        publish_n(&server, "feed", next, 1).await;
        loop {
            let frame = ws.recv().await;
            match frame["type"].as_str() {
                Some("message") => {
                    assert_eq!(frame["offset"], next, "no message lost or repeated");
                    break;
                }
                Some("refresh_token") => {
                    assert!(frame["expires_in_ms"].as_u64().unwrap() <= 3000);
                    let fresh = token_for("ada", 60, &["feed"], &[]);
                    ws.send(json!({"type": "refresh", "token": fresh, "id": "r"}))
                        .await;
                }
                Some("refreshed") => {
                    assert_eq!(frame["id"], "r");
                    assert!(frame["exp"].as_u64().unwrap() >= unix_now() + 50);
                    refreshed = true;
                }
                other => panic!("unexpected {other:?}: {frame}"),
            }
        }
        next += 1;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await; // pacing, not sync
    }
    assert!(refreshed, "a refresh_token notice arrived before exp");
    ws.send(json!({"type": "ping", "id": 1})).await;
    assert_eq!(ws.recv_type("pong").await["id"], 1);
    ws.close().await;
    server.assert_no_clients().await;
}

#[tokio::test]
async fn an_expired_token_closes_4003_and_a_new_one_resumes_without_loss() {
    let server = token_server(&[]).await;
    let mut other = bystander(&server).await;
    let short = token_for("ada", 2, &["feed"], &[]);
    let mut ws = server.ws(&format!("/ws?channel=feed&token={short}")).await;
    let subscribed = ws.recv_type("subscribed").await;
    let epoch = subscribed["epoch"].clone();
    let mut last = 0u64;
    let mut next = 1u64;
    // Publish while the token runs out; the client ignores the notice.
    let close = loop {
        publish_n(&server, "feed", next, 1).await;
        next += 1;
        match ws.next().await {
            Incoming::Json(f) if f["type"] == "message" => last = f["offset"].as_u64().unwrap(),
            Incoming::Json(f) => assert_eq!(f["type"], "refresh_token"),
            Incoming::Closed(close) => break close,
            Incoming::Ended(why) => panic!("ended without a close frame: {why}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await; // pacing, not sync
    };
    assert_eq!(close, Some((4003, "token_expired".to_owned())));
    publish_n(&server, "feed", next, 3).await;
    let total = next + 2;
    still_served(&server, &mut other, 1).await;
    // Reconnect with a new token and resume from the last offset seen.
    let mut ws = server
        .ws(&format!(
            "/ws?token={}",
            token_for("ada", 60, &["feed"], &[])
        ))
        .await;
    ws.send(
        json!({"type": "subscribe", "channel": "feed", "since": {"epoch": epoch, "offset": last}}),
    )
    .await;
    let resumed = ws.recv_type("subscribed").await;
    assert_eq!(resumed["recovered"], true);
    for offset in last + 1..=total {
        assert_eq!(ws.recv_type("message").await["offset"], offset);
    }
    assert_eq!(
        server
            .hub
            .stats()
            .disconnects(crier::hub::DisconnectReason::TokenExpired),
        1
    );
    ws.close().await;
    other.close().await;
    server.assert_no_clients().await;
}

#[tokio::test]
async fn long_poll_gets_the_refresh_notice_and_the_token_expired_frame() {
    let server = token_server(&[]).await;
    let token = token_for("ada", 2, &["feed"], &[]);
    let session = server
        .lp_connect("", Some(json!({"channels": ["feed"], "token": token})))
        .await;
    let mut ack = 0;
    let mut kinds = Vec::new();
    within("token expiry on long-poll", async {
        loop {
            let (status, batch) = server
                .get_json(&format!(
                    "/lp/poll?session={session}&ack={ack}&token={token}"
                ))
                .await;
            assert_eq!(status, 200, "{batch}");
            ack = batch["batch"].as_u64().unwrap();
            for frame in batch["messages"].as_array().unwrap() {
                kinds.push(frame["type"].as_str().unwrap().to_owned());
                if frame["type"] == "disconnect" {
                    assert_eq!(
                        (
                            frame["reason"].as_str(),
                            frame["code"].as_u64(),
                            frame["reconnect"].as_bool()
                        ),
                        (Some("token_expired"), Some(4003), Some(true))
                    );
                    return;
                }
            }
        }
    })
    .await;
    assert_eq!(kinds, ["subscribed", "refresh_token", "disconnect"]);
    server.assert_no_clients().await;
}

#[tokio::test]
async fn refreshes_for_another_user_and_refresh_floods_are_refused() {
    let server = token_server(&[]).await;
    let mut other = bystander(&server).await;
    let mut ws = server.ws(&format!("/ws?token={}", ada(60))).await;
    // Another user's token: forbidden; the identity stays ada's.
    ws.send(json!({"type": "refresh", "token": token_for("eve", 60, &["*"], &["*"]), "id": 1}))
        .await;
    let e = ws.recv_type("error").await;
    assert_eq!(
        (e["code"].as_str(), &e["id"]),
        (Some("forbidden"), &json!(1))
    );
    // A flood within the second: rate_limited, each answered, nothing else disturbed.
    for id in 2..20 {
        ws.send(json!({"type": "refresh", "token": ada(60), "id": id}))
            .await;
    }
    for id in 2..20 {
        let e = ws.recv_type("error").await;
        assert_eq!(
            (e["code"].as_str(), &e["id"]),
            (Some("rate_limited"), &json!(id))
        );
    }
    still_served(&server, &mut other, 1).await;
    // A token that does not verify: unauthorized, and the connection keeps its own.
    let mut second = server.ws(&format!("/ws?token={}", ada(60))).await;
    second
        .send(json!({"type": "refresh", "token": "not-a-jwt", "id": "x"}))
        .await;
    let e = second.recv_type("error").await;
    assert_eq!(
        (e["code"].as_str(), &e["id"]),
        (Some("unauthorized"), &json!("x"))
    );
    second.subscribe("news").await;
    second.close().await;
    // eve's rights were not taken: ada still may not subscribe outside her own.
    ws.send(json!({"type": "subscribe", "channel": "secret", "id": 30}))
        .await;
    assert_eq!(ws.recv_type("error").await["code"], "forbidden");
    ws.close().await;
    other.close().await;
    server.assert_no_clients().await;
}

/// Opens `/ws?channel=watch` with an `Origin` header; `Ok` if upgraded, else status and body.
async fn ws_with_origin(
    server: &TestServer,
    origin: &str,
    via_hyper: bool,
) -> Result<Ws, (u16, Value)> {
    let mut request = format!("ws://{}/ws?channel=watch", server.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("origin", HeaderValue::from_str(origin).unwrap());
    if via_hyper {
        request
            .headers_mut()
            .insert("x-pad", HeaderValue::from_str(&"p".repeat(3000)).unwrap());
    }
    match within("upgrade", tokio_tungstenite::connect_async(request)).await {
        Ok((stream, _)) => Ok(Ws { stream }),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            Err((
                response.status().as_u16(),
                serde_json::from_slice(&body).unwrap_or(Value::Null),
            ))
        }
        Err(other) => panic!("{other:?}"),
    }
}

async fn lp_with_origin(server: &TestServer, origin: &str) -> (u16, Value) {
    let response = within(
        "lp connect",
        server
            .http
            .post(server.url("/lp/connect?channel=watch"))
            .header("origin", origin)
            .send(),
    )
    .await
    .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status == 200 {
        let session = body["session"].as_str().unwrap();
        server
            .post(&format!("/lp/close?session={session}"), "text/plain", "")
            .await;
    }
    (status, body)
}

#[tokio::test]
async fn browser_origins_are_checked_on_both_transports() {
    let server = TestServer::start().await;
    let mut other = server.ws("/ws?channel=watch").await;
    other.recv_type("subscribed").await;
    let own = format!("http://{}", server.addr);
    for (i, (origin, allowed)) in [
        (own.as_str(), true),
        ("http://localhost:5173", true),
        ("http://127.0.0.1:3000", true),
        ("https://evil.example", false),
        ("null", false),
    ]
    .into_iter()
    .enumerate()
    {
        for via_hyper in [false, true] {
            match ws_with_origin(&server, origin, via_hyper).await {
                Ok(ws) => {
                    assert!(allowed, "{origin} was let in");
                    ws.close().await;
                }
                Err((status, body)) => {
                    assert!(!allowed, "{origin} refused: {status} {body}");
                    assert_eq!(
                        (status, body["error"]["code"].as_str()),
                        (403, Some("origin_forbidden"))
                    );
                }
            }
        }
        let (status, body) = lp_with_origin(&server, origin).await;
        if allowed {
            assert_eq!(status, 200, "{origin}: {body}");
        } else {
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (403, Some("origin_forbidden"))
            );
        }
        still_served(&server, &mut other, i as u64).await;
    }
    other.close().await;
    server.assert_no_clients().await;

    let listed =
        TestServer::with(&["--allowed-origins", "https://app.example.com,*.example.org"]).await;
    assert!(ws_with_origin(&listed, "https://app.example.com", false)
        .await
        .is_ok());
    assert!(ws_with_origin(&listed, "https://a.example.org", true)
        .await
        .is_ok());
    let (status, _) = lp_with_origin(&listed, "http://localhost:5173").await;
    assert_eq!(status, 403, "a list replaces the local hosts");
    assert_eq!(
        ws_with_origin(&listed, "https://example.org", false)
            .await
            .err()
            .map(|e| e.0),
        Some(403)
    );
}
