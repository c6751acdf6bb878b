//! The memory budget held against the process's real RSS: the hub runs as its own binary
//! (in-process, its memory could not be told from the test's), the attack runs against it,
//! and `/proc/<pid>/status` must stay within what docs/SECURITY.md's formula gives for the
//! flags used.

use crate::common::*;

fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib / 1024
}

/// Attack 1 against the budget: 1,500 publishes of 60 KiB, each to a new channel (90 MB in
/// all), on a hub allowed 16 MiB of history. The formula: base (~8 MiB, plus a debug
/// build's extra) + history budget (16) + channels (1,500 × 0.5 KiB) + one request in flight
/// — with room for the allocator, 64 MiB; without the budget the hub holds the whole 90 MB
/// (checked: with `--history-budget 1073741824` this test fails on RSS).
#[tokio::test]
async fn a_channel_flood_stays_within_the_memory_budget() {
    let (child, addr) = spawn_binary(&["--history-budget", "16777216"]).await;
    let pid = child.id().unwrap();
    let http = reqwest::Client::new();
    let body = serde_json::to_string(&"x".repeat(60_000)).unwrap();
    let mut peak = 0;
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..1_500 {
        let response = within(
            "a publish",
            http.post(format!("http://{addr}/api/publish/flood{i}"))
                .header("content-type", "application/json")
                .body(body.clone())
                .send(),
        )
        .await
        .unwrap();
        *statuses.entry(response.status().as_u16()).or_insert(0) += 1;
        if i % 100 == 0 {
            peak = peak.max(rss_mib(pid));
        }
    }
    peak = peak.max(rss_mib(pid));
    assert_eq!(statuses.get(&200), Some(&1_500), "{statuses:?}");
    let stats: serde_json::Value =
        within("stats", http.get(format!("http://{addr}/api/stats")).send())
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert!(
        stats["history_bytes"].as_u64().unwrap() <= 16 << 20,
        "{stats}"
    );
    assert!(stats["history_shed"].as_u64().unwrap() > 0, "{stats}");
    assert!(
        peak <= 64,
        "RSS peaked at {peak} MiB against a budget of ~30 MiB"
    );
}
