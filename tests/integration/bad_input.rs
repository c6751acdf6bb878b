//! Every documented bad input gets its documented error and disturbs nobody else.

use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

/// A client subscribed to `watch` that must keep receiving through every bad input.
pub async fn bystander(server: &TestServer) -> Ws {
    let mut ws = server.ws("/ws?channel=watch").await;
    ws.recv_type("subscribed").await;
    ws
}

pub async fn still_served(server: &TestServer, bystander: &mut Ws, n: u64) {
    let reply = server.publish("watch", &json!(n)).await;
    let frame = bystander.recv().await;
    assert_eq!(
        (frame["offset"].clone(), frame["data"].clone()),
        (reply["offset"].clone(), json!(n))
    );
}

#[tokio::test]
async fn bad_frames_get_error_frames_and_the_connection_stays_up() {
    let server = TestServer::with(&["--max-subscriptions", "2"]).await;
    let mut other = bystander(&server).await;
    let mut ws = server.ws("/ws").await;
    let cases = [
        ("{not json", "bad_json", None),
        ("[1,2,3]", "bad_frame", None),
        (
            r#"{"type":"subscribe","channel":["x"],"id":1}"#,
            "bad_frame",
            Some(json!(1)),
        ),
        (r#"{"channel":"a","id":2}"#, "missing_field", Some(json!(2))),
        (
            r#"{"type":"subscribe","id":3}"#,
            "missing_field",
            Some(json!(3)),
        ),
        (
            r#"{"type":"publish","channel":"chat:x","id":4}"#,
            "missing_field",
            Some(json!(4)),
        ),
        (
            r#"{"type":"dance","id":"five"}"#,
            "unknown_type",
            Some(json!("five")),
        ),
        (
            r#"{"type":"subscribe","channel":"no spaces","id":6}"#,
            "invalid_channel",
            Some(json!(6)),
        ),
        (
            r#"{"type":"subscribe","channel":"a/b","id":7}"#,
            "invalid_channel",
            Some(json!(7)),
        ),
        (
            r#"{"type":"unsubscribe","channel":"never","id":8}"#,
            "not_subscribed",
            Some(json!(8)),
        ),
        (
            r#"{"type":"publish","channel":"news","data":1,"id":9}"#,
            "publish_forbidden",
            Some(json!(9)),
        ),
    ];
    for (i, (text, code, id)) in cases.iter().enumerate() {
        ws.send_text(text).await;
        let error = ws.recv().await;
        assert_eq!(error["type"], "error", "{text}");
        assert_eq!(error["code"], *code, "{text}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(error.get("id").cloned(), id.clone(), "{text}");
        still_served(&server, &mut other, i as u64).await;
    }
    ws.subscribe("one").await;
    ws.send(json!({"type": "subscribe", "channel": "one", "id": 10}))
        .await;
    assert_eq!(ws.recv().await["code"], "already_subscribed");
    ws.subscribe("two").await;
    ws.send(json!({"type": "subscribe", "channel": "three", "id": 11}))
        .await;
    assert_eq!(ws.recv().await["code"], "too_many_subscriptions");

    // Binary frames are answered with an error frame; the connection stays up.
    ws.stream
        .send(Message::binary(vec![1u8, 2, 3]))
        .await
        .unwrap();
    assert_eq!(ws.recv().await["code"], "binary_unsupported");
    ws.send(json!({"type": "ping", "id": "alive"})).await;
    assert_eq!(ws.recv().await, json!({"type": "pong", "id": "alive"}));
    ws.close().await;
    other.close().await;
    server.assert_no_clients().await;
}

#[tokio::test]
async fn an_oversized_frame_closes_with_1009() {
    let server = TestServer::with(&["--max-message-size", "1024"]).await;
    let mut other = bystander(&server).await;
    let mut ws = server.ws("/ws").await;
    ws.send_text(&format!(
        r#"{{"type":"publish","channel":"chat:x","data":"{}"}}"#,
        "x".repeat(2000)
    ))
    .await;
    assert_eq!(
        ws.recv_close().await,
        (1009, "message_too_large".to_owned())
    );
    still_served(&server, &mut other, 1).await;
    other.close().await;
    server.assert_no_clients().await;
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    let server = TestServer::start().await;
    let mut other = bystander(&server).await;
    let mut ws = server.ws("/ws").await;
    let frame = Frame::message(vec![0x7b, 0xff, 0xfe, 0x7d], OpCode::Data(Data::Text), true);
    ws.stream.send(Message::Frame(frame)).await.unwrap();
    assert_eq!(ws.recv_close().await, (1007, "invalid_utf8".to_owned()));
    still_served(&server, &mut other, 1).await;
    other.close().await;
    server.assert_no_clients().await;
}

#[tokio::test]
async fn bad_http_requests_get_json_errors() {
    let server = TestServer::with(&["--max-message-size", "1024"]).await;
    let mut other = bystander(&server).await;

    let (status, error) = server
        .post("/api/publish/n", "application/json", "x".repeat(2048))
        .await;
    assert_eq!(status, 413);
    assert_eq!(error["error"]["code"], "message_too_large");
    assert_eq!(error["error"]["limit"], 1024);
    let (status, error) = server
        .post("/api/publish/n", "application/json", "{broken")
        .await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (400, Some("bad_json"))
    );
    let (status, error) = server
        .post("/api/publish/bad%20name", "text/plain", "x")
        .await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (400, Some("invalid_channel"))
    );
    let (status, error) = server
        .post("/api/publish/n", "text/plain", vec![0xffu8, 0xfe])
        .await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (400, Some("invalid_utf8"))
    );
    let (status, error) = server.get_json("/ws").await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (400, Some("not_websocket"))
    );
    let (status, error) = server
        .get_json("/lp/poll?session=00000000000000000000000000000000")
        .await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (404, Some("unknown_session"))
    );
    let (status, error) = server.get_json("/lp/poll?session=nonsense").await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (404, Some("unknown_session"))
    );
    let (status, error) = server.get_json("/lp/poll").await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
    let (status, error) = server
        .post("/lp/connect?channel=a%2Fb", "text/plain", "")
        .await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (400, Some("invalid_channel"))
    );
    let (status, error) = server
        .post("/lp/connect", "application/json", "{oops")
        .await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (400, Some("bad_json"))
    );
    let (status, error) = server
        .post(
            "/lp/connect",
            "application/json",
            json!({"channels": [1]}).to_string(),
        )
        .await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );

    // An oversized long-poll send is refused over HTTP; a malformed one is an error frame.
    let session = server.lp_connect("", None).await;
    let (status, error) = server
        .post(
            &format!("/lp/send?session={session}"),
            "application/json",
            "x".repeat(2048),
        )
        .await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (413, Some("message_too_large"))
    );
    let (status, _) = server
        .post(
            &format!("/lp/send?session={session}"),
            "application/json",
            "{nope",
        )
        .await;
    assert_eq!(status, 202);
    let mut ack = 0;
    let frames = server.lp_collect(&session, &mut ack, 1).await;
    assert_eq!(
        (frames[0]["type"].as_str(), frames[0]["code"].as_str()),
        (Some("error"), Some("bad_json"))
    );

    let ws_bad_channel =
        tokio_tungstenite::connect_async(format!("ws://{}/ws?channel=a%20b", server.addr)).await;
    match ws_bad_channel {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 400)
        }
        other => panic!("expected HTTP 400, got {other:?}"),
    }
    still_served(&server, &mut other, 1).await;
    server
        .post(&format!("/lp/close?session={session}"), "text/plain", "")
        .await;
    other.close().await;
    server.assert_no_clients().await;
}

#[tokio::test]
async fn too_many_connections_get_503_on_both_transports() {
    let server = TestServer::with(&["--max-connections", "1"]).await;
    let mut first = bystander(&server).await;
    match tokio_tungstenite::connect_async(format!("ws://{}/ws", server.addr)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            assert!(body.contains("over_capacity"), "{body}");
        }
        other => panic!("expected HTTP 503, got {other:?}"),
    }
    let (status, error) = server.post("/lp/connect", "text/plain", "").await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (503, Some("over_capacity"))
    );
    still_served(&server, &mut first, 1).await;
    first.close().await;
    server.assert_no_clients().await;
    // Capacity is given back when clients leave.
    let mut again = bystander(&server).await;
    still_served(&server, &mut again, 2).await;
    again.close().await;
    server.assert_no_clients().await;
}
