//! Long-poll transport: the same delivery promises as WebSocket, plus acked batches, one
//! poll at a time, the hold and idle sessions (these two on tokio's paused clock) and clients
//! that vanish during a hold.

use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use crate::common::*;

#[tokio::test]
async fn connect_poll_send_and_close() {
    let server = TestServer::start().await;
    let session = server.lp_connect("?channel=news", None).await;
    assert_eq!(session.len(), 32, "128-bit hex session id");
    let mut ack = 0;
    let frames = server.lp_collect(&session, &mut ack, 1).await;
    assert_eq!(frames[0]["type"], "subscribed");

    server.publish("news", &json!({"n": 1})).await;
    let frames = server.lp_collect(&session, &mut ack, 1).await;
    assert_eq!(frames[0]["type"], "message");
    assert_eq!(frames[0]["data"], json!({"n": 1}));

    // Client frames go through /lp/send; replies come back through the poll.
    let (status, reply) = server
        .post(
            &format!("/lp/send?session={session}"),
            "application/json",
            json!([{"type": "subscribe", "channel": "b", "id": 1}, {"type": "unsubscribe", "channel": "news", "id": 2}]).to_string(),
        )
        .await;
    assert_eq!((status, reply), (202, json!({"accepted": 2})));
    let frames = server.lp_collect(&session, &mut ack, 2).await;
    assert_eq!(frames[0]["type"], "subscribed");
    assert_eq!(frames[0]["id"], 1);
    assert_eq!(
        frames[1],
        json!({"type": "unsubscribed", "channel": "news", "id": 2})
    );

    let (status, reply) = server
        .post(&format!("/lp/close?session={session}"), "text/plain", "")
        .await;
    assert_eq!((status, reply), (200, json!({"closed": true})));
    let (status, reply) = server.lp_poll(&session, ack).await;
    assert_eq!(status, 404);
    assert_eq!(reply["error"]["code"], "unknown_session");
    server.assert_no_clients().await;
}

#[tokio::test]
async fn responses_carry_no_store_and_no_buffering_headers() {
    let server = TestServer::start().await;
    let session = server.lp_connect("?channel=a", None).await;
    let response = server
        .http
        .get(server.url(&format!("/lp/poll?session={session}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    server
        .post(&format!("/lp/close?session={session}"), "text/plain", "")
        .await;
    server.assert_no_clients().await;
}

/// A backlog arrives exactly once, in order, in as few responses as 256 KiB of frames each
/// allows (every response but the last is full; at most 16 frames past the mark).
#[tokio::test]
async fn many_messages_arrive_exactly_once_in_order_in_full_batches() {
    let server =
        TestServer::with(&["--queue-capacity", "4096", "--queue-max-bytes", "4194304"]).await;
    let session = server.lp_connect("?channel=x", None).await;
    let mut ack = 0;
    server.lp_collect(&session, &mut ack, 1).await;
    const N: u64 = 600;
    let padding = "p".repeat(1000);
    for i in 0..N {
        server.publish("x", &json!({"i": i, "p": padding})).await;
    }
    let mut frames = Vec::new();
    let mut batches = Vec::new();
    within("the backlog", async {
        while frames.len() < N as usize {
            let (status, reply) = server.lp_poll(&session, ack).await;
            assert_eq!(status, 200, "poll: {reply}");
            ack = reply["batch"].as_u64().unwrap();
            let batch = reply["messages"].as_array().unwrap().clone();
            let bytes: usize = batch.iter().map(|f| f.to_string().len()).sum();
            batches.push((batch.len(), bytes));
            frames.extend(batch);
        }
    })
    .await;
    assert_eq!(offsets(&frames), (1..=N).collect::<Vec<_>>());
    const CAP: usize = 256 * 1024;
    let (last, full) = batches.split_last().unwrap();
    assert!(full.len() >= 2, "600 KiB of frames took {batches:?}");
    for &(count, bytes) in full {
        assert!((CAP..CAP + 16 * 1100).contains(&bytes), "{batches:?}");
        assert!(count > 200, "{batches:?}");
    }
    assert!(last.1 <= CAP + 16 * 1100, "{batches:?}");
    server
        .post(&format!("/lp/close?session={session}"), "text/plain", "")
        .await;
    server.assert_no_clients().await;
}

#[tokio::test]
async fn a_lost_response_is_sent_again_until_acknowledged() {
    let server = TestServer::start().await;
    let session = server.lp_connect("?channel=a", None).await;
    server.publish("a", &json!("m")).await;
    let (_, first) = server.lp_poll(&session, 0).await;
    assert_eq!(first["batch"], 1);
    assert_eq!(first["messages"].as_array().unwrap().len(), 2);
    // Pretend the response never arrived: poll again without acknowledging it.
    let (_, again) = server.lp_poll(&session, 0).await;
    assert_eq!(again, first);
    // Acknowledge, and the next batch is new.
    server.publish("a", &json!("n")).await;
    let (_, next) = server.lp_poll(&session, 1).await;
    assert_eq!(next["batch"], 2);
    assert_eq!(next["messages"][0]["data"], "n");
    // An ack from the future is refused.
    let (status, error) = server.lp_poll(&session, 9).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (400, Some("bad_ack"))
    );
    server
        .post(&format!("/lp/close?session={session}"), "text/plain", "")
        .await;
    server.assert_no_clients().await;
}

#[tokio::test]
async fn a_second_concurrent_poll_is_rejected() {
    let server = TestServer::start().await;
    let session = server.lp_connect("", None).await;
    let parked = server.spawn_parked_poll(&session, 0).await;
    let (status, error) = server.lp_poll(&session, 0).await;
    assert_eq!(status, 409);
    assert_eq!(error["error"]["code"], "poll_in_progress");
    // The parked poll is answered as soon as something arrives for the session.
    server
        .lp_send(&session, &json!({"type": "ping", "id": "p"}))
        .await;
    let batch = within("parked poll", parked).await.unwrap();
    assert_eq!(batch["messages"][0], json!({"type": "pong", "id": "p"}));
    server
        .post(&format!("/lp/close?session={session}"), "text/plain", "")
        .await;
    server.assert_no_clients().await;
}

/// On tokio's paused clock (see `common.rs`), with the default hold.
#[tokio::test(start_paused = true)]
async fn a_poll_with_nothing_to_deliver_is_answered_empty_at_the_hold_time() {
    let server = TestServer::with(&["--lp-hold", "25s"]).await;
    let session = server.lp_connect("?channel=a", None).await;
    let mut ack = 0;
    server.lp_collect(&session, &mut ack, 1).await;
    let parked = server.spawn_parked_poll(&session, ack).await;
    let parked_at = Instant::now();
    let_time_pass_until("24 s", parked_at + Duration::from_secs(24)).await;
    assert_eq!(
        server.long_poll.polls_in_flight(),
        1,
        "still held a second before the hold time"
    );
    let_time_pass_until("26 s", parked_at + Duration::from_secs(26)).await;
    let batch = within("the held poll", parked).await.unwrap();
    assert_eq!(batch, json!({"batch": ack, "messages": []}));
    // The session lives on: what is published now reaches the next poll.
    server.publish("a", &json!("after")).await;
    let frames = server.lp_collect(&session, &mut ack, 1).await;
    assert_eq!(frames[0]["data"], "after");
    server
        .post(&format!("/lp/close?session={session}"), "text/plain", "")
        .await;
    server.assert_no_clients().await;
}

#[tokio::test]
async fn a_client_that_vanishes_during_the_hold_frees_the_session() {
    let server = TestServer::start().await;
    let session = server.lp_connect("?channel=a", None).await;
    let mut ack = 0;
    server.lp_collect(&session, &mut ack, 1).await;
    let mut raw = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    raw.write_all(
        format!("GET /lp/poll?session={session}&ack={ack} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    wait_until("the raw poll to park", || {
        server.long_poll.polls_in_flight() == 1
    })
    .await;
    drop(raw);
    wait_until("the hub to notice the vanished poller", || {
        server.long_poll.polls_in_flight() == 0
    })
    .await;
    // Nothing was lost: a message published now reaches the next poll.
    server.publish("a", &json!("after")).await;
    let frames = server.lp_collect(&session, &mut ack, 1).await;
    assert_eq!(frames[0]["data"], "after");
    server
        .post(&format!("/lp/close?session={session}"), "text/plain", "")
        .await;
    server.assert_no_clients().await;
}

/// On tokio's paused clock (see `common.rs`), with the default session timeout.
#[tokio::test(start_paused = true)]
async fn a_session_nobody_polls_ends() {
    let server = TestServer::with(&["--lp-session-timeout", "60s"]).await;
    let session = server.lp_connect("?channel=a", None).await;
    let connected = Instant::now();
    let state = || {
        (
            server.long_poll.session_count(),
            server.hub.client_count(),
            server
                .hub
                .stats()
                .disconnects(crier::hub::DisconnectReason::IdleTimeout),
        )
    };
    // The reaper runs every half second: the session is there a second before its timeout
    // and gone a second after it.
    let_time_pass_until("59 s", connected + Duration::from_secs(59)).await;
    assert_eq!(
        state(),
        (1, 1, 0),
        "still there a second before the timeout"
    );
    let_time_pass_until("61 s", connected + Duration::from_secs(61)).await;
    assert_eq!(state(), (0, 0, 1), "reaped a second after the timeout");
    let (status, error) = server.lp_poll(&session, 0).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (404, Some("unknown_session"))
    );
    server.assert_no_clients().await;
}

#[tokio::test]
async fn resume_at_connect_replays_missed_messages() {
    let server = TestServer::with(&["--history-size", "3"]).await;
    let first = server.publish("feed", &json!(1)).await;
    server.publish("feed", &json!(2)).await;
    server.publish("feed", &json!(3)).await;
    let body = json!({"channels": [{"channel": "feed", "since": {"epoch": first["epoch"], "offset": 1}}, "plain"]});
    let session = server.lp_connect("", Some(body)).await;
    let mut ack = 0;
    let frames = server.lp_collect(&session, &mut ack, 4).await;
    assert_eq!(frames[0]["type"], "subscribed");
    assert_eq!(frames[0]["recovered"], true);
    assert_eq!(offsets(&frames[..3]), vec![2, 3]);
    assert_eq!(frames[3]["channel"], "plain");

    // Past history: explicit notice.
    for i in 4..10 {
        server.publish("feed", &json!(i)).await;
    }
    let body =
        json!({"channels": [{"channel": "feed", "since": {"epoch": first["epoch"], "offset": 2}}]});
    let late = server.lp_connect("", Some(body)).await;
    let mut late_ack = 0;
    let frames = server.lp_collect(&late, &mut late_ack, 5).await;
    assert_eq!(frames[0]["recovered"], false);
    assert_eq!(frames[1]["type"], "missed");
    assert_eq!(frames[1]["reason"], "history_exhausted");
    assert_eq!(offsets(&frames), vec![7, 8, 9]);
    for s in [&session, &late] {
        server
            .post(&format!("/lp/close?session={s}"), "text/plain", "")
            .await;
    }
    server.assert_no_clients().await;
}

#[tokio::test]
async fn slow_session_is_ended_with_the_reason() {
    let server = TestServer::with(&["--queue-capacity", "4"]).await;
    let session = server.lp_connect("?channel=a", None).await;
    let mut other = server.ws("/ws?channel=a").await;
    other.recv_type("subscribed").await;
    for i in 0..8 {
        server.publish("a", &json!(i)).await;
        assert_eq!(
            other.recv().await["data"],
            i,
            "the WebSocket client keeps receiving"
        );
    }
    let (status, batch) = server.lp_poll(&session, 0).await;
    assert_eq!(status, 200);
    let last = last_frame(&batch);
    assert_eq!(last["type"], "disconnect");
    assert_eq!(last["reason"], "slow");
    assert_eq!(last["code"], 4000);
    assert_eq!(last["reconnect"], true);
    let (status, _) = server.lp_poll(&session, 1).await;
    assert_eq!(status, 404);
    other.close().await;
    server.assert_no_clients().await;
}
