//! The backend API: publish (body and JSON forms), history, stats, metrics, health.

use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn publish_body_as_json_or_as_text() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws?channel=n").await;
    ws.recv_type("subscribed").await;
    let (status, reply) = server
        .post("/api/publish/n", "application/json", r#"{"k":[1,2]}"#)
        .await;
    assert_eq!(status, 200);
    assert_eq!(reply["channel"], "n");
    assert_eq!(reply["offset"], 1);
    assert_eq!(reply["enqueued"], 1);
    assert!(reply["epoch"].is_string());
    assert_eq!(ws.recv().await["data"], json!({"k": [1, 2]}));

    let (status, _) = server
        .post("/api/publish/n", "text/plain", "plain \"text\"")
        .await;
    assert_eq!(status, 200);
    assert_eq!(ws.recv().await["data"], "plain \"text\"");
    ws.close().await;
    server.assert_no_clients().await;
}

#[tokio::test]
async fn publish_json_envelope_to_one_or_many_channels() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws?channel=a&channel=b").await;
    ws.recv_type("subscribed").await;
    ws.recv_type("subscribed").await;
    let (status, reply) = server
        .post(
            "/api/publish",
            "application/json",
            json!({"channel": "a", "data": 1}).to_string(),
        )
        .await;
    assert_eq!((status, &reply["offset"]), (200, &json!(1)));
    let (status, reply) = server
        .post(
            "/api/publish",
            "application/json",
            json!({"channels": ["a", "b"], "data": null}).to_string(),
        )
        .await;
    assert_eq!(status, 200);
    let results = reply["results"].as_array().unwrap();
    assert_eq!(
        (results[0]["offset"].as_u64(), results[1]["offset"].as_u64()),
        (Some(2), Some(1))
    );
    let frames = [ws.recv().await, ws.recv().await, ws.recv().await];
    assert_eq!(frames[0]["data"], 1);
    assert!(frames[1]["data"].is_null() && frames[2]["data"].is_null());

    for bad in [
        json!({"data": 1}),
        json!({"channel": "a"}),
        json!({"channel": "a", "channels": ["b"], "data": 1}),
        json!({"channels": [], "data": 1}),
    ] {
        let (status, error) = server
            .post("/api/publish", "application/json", bad.to_string())
            .await;
        assert_eq!(
            (status, error["error"]["code"].as_str()),
            (400, Some("bad_request")),
            "{bad}"
        );
    }
    let (status, error) = server
        .post(
            "/api/publish",
            "application/json",
            json!({"channels": ["ok", "not ok"], "data": 1}).to_string(),
        )
        .await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (400, Some("invalid_channel"))
    );
    assert!(
        server
            .hub
            .history(
                &crier::hub::ChannelName::parse("ok").unwrap(),
                0,
                10,
                usize::MAX
            )
            .is_none(),
        "nothing published"
    );
    ws.close().await;
    server.assert_no_clients().await;
}

#[tokio::test]
async fn history_returns_what_the_channel_remembers() {
    let server = TestServer::with(&["--history-size", "5"]).await;
    let (status, empty) = server.get_json("/api/channels/h/history").await;
    assert_eq!(status, 200);
    assert_eq!(
        empty,
        json!({"channel": "h", "epoch": null, "offset": 0, "next": null, "messages": []})
    );
    for i in 1..=8 {
        server.publish("h", &json!(i)).await;
    }
    let (_, page) = server.get_json("/api/channels/h/history").await;
    assert_eq!(page["offset"], 8);
    assert_eq!(
        offsets(page["messages"].as_array().unwrap()),
        vec![4, 5, 6, 7, 8]
    );
    let (_, page) = server
        .get_json("/api/channels/h/history?since=5&limit=2")
        .await;
    assert_eq!(offsets(page["messages"].as_array().unwrap()), vec![6, 7]);
    let (status, error) = server.get_json("/api/channels/h/history?since=minus").await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
}

#[tokio::test]
async fn stats_metrics_and_health() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws?channel=s").await;
    ws.recv_type("subscribed").await;
    server.publish("s", &json!(1)).await;
    ws.recv().await;
    let (status, stats) = server.get_json("/api/stats").await;
    assert_eq!(status, 200);
    assert_eq!(stats["connections"], 1);
    assert_eq!(stats["websocket"], 1);
    assert_eq!(stats["published"], 1);
    assert_eq!(stats["deliveries"], 1);
    let metrics = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("crier_published_total 1"), "{metrics}");
    assert!(
        metrics.contains(r#"crier_connections{transport="websocket"} 1"#),
        "{metrics}"
    );
    assert_eq!(
        server.get_json("/healthz").await,
        (200, json!({"status": "ok"}))
    );
    ws.close().await;
    server.assert_no_clients().await;
}

#[tokio::test]
async fn the_demo_page_is_served_at_the_root() {
    let server = TestServer::start().await;
    let response = server.http.get(server.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response
        .text()
        .await
        .unwrap()
        .to_lowercase()
        .contains("<html"));
}

#[tokio::test]
async fn an_overloaded_hub_pushes_back_with_503_and_retry_after() {
    let server = TestServer::with(&[
        "--queue-capacity",
        "4",
        "--overload-min-lagging",
        "1",
        "--overload-fraction",
        "0.5",
    ])
    .await;
    let session = server.lp_connect("?channel=o", None).await;
    // `subscribed` + one message fill half the queue of the only client: it lags.
    server.publish("o", &json!(1)).await;
    let response = server
        .http
        .post(server.url("/api/publish/o"))
        .json(&json!(2))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded");
    // Once the client catches up, publishing works again and nothing was half-published.
    let mut ack = 0;
    let frames = server.lp_collect(&session, &mut ack, 2).await;
    assert_eq!(offsets(&frames), vec![1]);
    let reply = server.publish("o", &json!(3)).await;
    assert_eq!(reply["offset"], 2);
    let (_, stats) = server.get_json("/api/stats").await;
    assert_eq!(stats["rejected_overloaded"], 1);
    server
        .post(&format!("/lp/close?session={session}"), "text/plain", "")
        .await;
    server.assert_no_clients().await;
}
