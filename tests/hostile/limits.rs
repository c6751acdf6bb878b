//! Limits nobody can push past: channels, history bytes, JSON depth. Each refusal is the
//! documented one, and the bystanders lose nothing meanwhile.

use serde_json::json;

use crate::backpressure::Bystanders;
use crate::common::*;

/// Attack 1: a publish to each of many new channel names once grew the hub without bound.
#[tokio::test]
async fn new_channels_stop_at_the_cap_and_history_stays_in_its_budget() {
    let server = TestServer::with(&["--max-channels", "100", "--history-budget", "200000"]).await;
    let mut bystanders = Bystanders::join(&server).await;
    let data = json!("x".repeat(10_000)).to_string();
    let mut refused = 0;
    for i in 0..300 {
        let (status, reply) = server
            .post(
                &format!("/api/publish/flood{i}"),
                "application/json",
                data.clone(),
            )
            .await;
        match status {
            200 => {}
            503 => {
                assert_eq!(reply["error"]["code"], "too_many_channels");
                refused += 1;
            }
            other => panic!("{other}: {reply}"),
        }
        assert!(server.hub.channel_count() <= 100);
        assert!(
            server.hub.history_bytes() <= 200_000 + 10_100,
            "history within its budget"
        );
        if i % 50 == 0 {
            assert_eq!(bystanders.publish(&server, i).await, 200);
        }
    }
    // At least 300 - 99 are refused (the bystanders' channel is one of the hundred); the
    // housekeeping sweep may forget channels whose history was shed meanwhile, making room
    // for a few more — the bound that matters, 100 channels at most, is asserted above.
    assert!((1..=300 - 99).contains(&refused), "refused {refused}");
    // The sweep may have made room since the last refusal (a busy machine runs the loop for
    // seconds): fill the hub to its cap again, then ask for three more at once.
    let mut full = false;
    for i in 0..200 {
        let (status, _) = server
            .post(
                &format!("/api/publish/refill{i}"),
                "application/json",
                data.clone(),
            )
            .await;
        if status == 503 {
            full = true;
            break;
        }
    }
    assert!(full, "200 new channels never reached the cap of 100");
    let names: Vec<String> = (0..3).map(|i| format!("more{i}")).collect();
    let (status, reply) = server
        .post(
            "/api/publish",
            "application/json",
            json!({"channels": names, "data": 1}).to_string(),
        )
        .await;
    assert_eq!(
        (status, reply["error"]["code"].clone()),
        (503, json!("too_many_channels"))
    );
    let (_, stats) = server.get_json("/api/stats").await;
    assert!(stats["history_shed"].as_u64().unwrap() > 0, "{stats}");
    bystanders.check(&server).await;
}

/// Attack 7: `data` nested thousands deep was stored and delivered, and crashed readers.
#[tokio::test]
async fn deeply_nested_data_is_refused_on_every_path() {
    let server = TestServer::start().await;
    let mut bystanders = Bystanders::join(&server).await;
    let deep = format!("{}1{}", "[".repeat(32_000), "]".repeat(32_000));
    let (status, reply) = server
        .post("/api/publish/watch", "application/json", deep.clone())
        .await;
    assert_eq!(
        (status, reply["error"]["code"].clone()),
        (400, json!("too_deep"))
    );
    let (status, reply) = server
        .post(
            "/api/publish",
            "application/json",
            format!(r#"{{"channel":"watch","data":{deep}}}"#),
        )
        .await;
    assert_eq!(
        (status, reply["error"]["code"].clone()),
        (400, json!("too_deep"))
    );
    let mut ws = server.ws("/ws").await;
    ws.send_text(&format!(
        r#"{{"type":"publish","channel":"chat:x","data":{deep},"id":1}}"#
    ))
    .await;
    let reply = ws.recv().await;
    assert_eq!(
        (reply["code"].clone(), reply["id"].clone()),
        (json!("too_deep"), json!(1))
    );
    let at_limit = format!("{}1{}", "[".repeat(32), "]".repeat(32));
    let (status, _) = server
        .post("/api/publish/watch", "application/json", at_limit)
        .await;
    assert_eq!(status, 200);
    bystanders.published.push(1);
    assert_eq!(server.hub.stats().published(), 1);
    bystanders.check(&server).await;
}

/// Attack 2: readers that asked for a large history and never read pinned a fresh copy of
/// it each. A page now carries at most 256 KiB of frames (shared with history, not copied),
/// and a `next` cursor leads through the rest.
#[tokio::test]
async fn history_comes_in_bounded_pages_with_a_cursor() {
    let server = TestServer::start().await;
    let big = json!("y".repeat(60_000));
    for _ in 0..10 {
        server.publish("big", &big).await;
    }
    let mut since = 0;
    let mut seen = Vec::new();
    for _ in 0..10 {
        let (status, page) = server
            .get_json(&format!(
                "/api/channels/big/history?since={since}&limit=100"
            ))
            .await;
        assert_eq!(status, 200);
        let messages = page["messages"].as_array().unwrap();
        let bytes: usize = messages.iter().map(|m| m.to_string().len()).sum();
        assert!(bytes <= 256 << 10, "a page is at most 256 KiB: {bytes}");
        seen.extend(offsets(messages));
        match page["next"].as_u64() {
            Some(next) => {
                assert_eq!(
                    Some(next),
                    seen.last().copied(),
                    "next is the page's last offset"
                );
                since = next;
            }
            None => break,
        }
    }
    assert_eq!(seen, (1..=10).collect::<Vec<_>>());
}
