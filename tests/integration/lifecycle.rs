//! Lifecycle: graceful shutdown, and a registry that is empty once clients leave.

use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn shutdown_closes_websockets_with_going_away_and_answers_polls() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws?channel=a").await;
    ws.recv_type("subscribed").await;
    let session = server.lp_connect("?channel=a", None).await;
    let mut ack = 0;
    server.lp_collect(&session, &mut ack, 1).await;
    let parked = server.spawn_parked_poll(&session, ack).await;

    let hub = server.hub.clone();
    let stopping = tokio::spawn(server.shutdown());
    assert_eq!(ws.recv_close().await, (1001, "shutdown".to_owned()));
    let batch = within("parked poll answer", parked).await.unwrap();
    let last = last_frame(&batch);
    assert_eq!(
        (
            last["type"].as_str(),
            last["reason"].as_str(),
            last["code"].as_u64()
        ),
        (Some("disconnect"), Some("shutdown"), Some(1001))
    );
    within("run() to return", stopping)
        .await
        .unwrap()
        .expect("run returns Ok");
    assert_eq!(hub.client_count(), 0);
}

#[tokio::test]
async fn registry_is_empty_after_clients_leave() {
    let server = TestServer::with(&["--history-size", "0"]).await;
    let mut a = server.ws("/ws?channel=r1&channel=r2").await;
    a.recv_type("subscribed").await;
    a.recv_type("subscribed").await;
    let session = server.lp_connect("?channel=r2&channel=r3", None).await;
    server.publish("r2", &json!(1)).await;
    assert_eq!(server.hub.channel_count(), 3);
    a.close().await;
    server
        .post(&format!("/lp/close?session={session}"), "text/plain", "")
        .await;
    server.assert_no_clients().await;
    wait_until("channels to be forgotten", || {
        server.hub.channel_count() == 0
    })
    .await;
    let (_, stats) = server.get_json("/api/stats").await;
    assert_eq!(
        (stats["connections"].as_u64(), stats["channels"].as_u64()),
        (Some(0), Some(0))
    );
}

#[tokio::test]
async fn a_dropped_socket_leaves_the_registry() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws?channel=a").await;
    ws.recv_type("subscribed").await;
    assert_eq!(server.hub.client_count(), 1);
    drop(ws);
    server.assert_no_clients().await;
    assert_eq!(
        server
            .hub
            .subscriber_count(&crier::hub::ChannelName::parse("a").unwrap()),
        0
    );
}

/// The real binary: SIGTERM closes WebSockets with 1001 and exits 0.
#[tokio::test]
async fn the_binary_exits_cleanly_on_sigterm() {
    let (mut child, addr) = spawn_binary(&[]).await;
    let (stream, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?channel=a"))
        .await
        .unwrap();
    let mut ws = Ws { stream };
    ws.recv_type("subscribed").await;
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(ws.recv_close().await, (1001, "shutdown".to_owned()));
    let status = within("crier to exit", child.wait()).await.unwrap();
    assert!(status.success(), "exit status {status:?}");
}
