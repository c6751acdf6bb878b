//! Many cheap clients: sessions nobody polls, connections that come and go. The registry
//! returns to what the bystanders hold, and they lose nothing.

use std::time::Duration;

use tokio::time::Instant;

use crate::backpressure::Bystanders;
use crate::common::*;

/// Sessions opened and never polled (the 10k, scaled to 2,000) are reaped at the
/// session timeout and leave nothing behind.
#[tokio::test(start_paused = true)]
async fn unpolled_sessions_are_reaped_and_leave_nothing() {
    let server = TestServer::start().await;
    let mut bystanders = Bystanders::join(&server).await;
    let start = Instant::now();
    for i in 0..2_000 {
        server
            .lp_connect(&format!("?channel=idle{}", i % 100), None)
            .await;
    }
    assert_eq!(server.long_poll.session_count(), 2_001);
    assert_eq!(bystanders.publish(&server, 1).await, 200);
    bystanders.check(&server).await;
    // The bystander polls on (an answered poll keeps its session); the others never do.
    let_time_pass_until("30 s", start + Duration::from_secs(30)).await;
    assert_eq!(bystanders.publish(&server, 2).await, 200);
    bystanders.check(&server).await;
    let_time_pass_until("61 s", start + Duration::from_secs(61)).await;
    assert_eq!(
        server.long_poll.session_count(),
        1,
        "only the bystander's session"
    );
    assert_eq!(server.hub.client_count(), 2);
    wait_until("the idle channels to be forgotten", || {
        server.hub.channel_count() == 1
    })
    .await;
    assert_eq!(bystanders.publish(&server, 3).await, 200);
    bystanders.check(&server).await;
}

/// WebSocket clients that connect, subscribe and leave in a loop leave the registry as they
/// found it.
#[tokio::test]
async fn connect_and_disconnect_churn_leaves_the_registry_as_it_was() {
    let server = TestServer::start().await;
    let mut bystanders = Bystanders::join(&server).await;
    for i in 0..300u64 {
        let mut ws = server.ws(&format!("/ws?channel=churn{}", i % 7)).await;
        ws.recv_type("subscribed").await;
        if i % 2 == 0 {
            ws.close().await;
        } else {
            drop(ws); // gone without a close frame
        }
        if i % 50 == 0 {
            assert_eq!(bystanders.publish(&server, i).await, 200);
        }
    }
    bystanders.check(&server).await;
    wait_until("the churned clients to leave", || {
        server.hub.client_count() == 2 && server.hub.channel_count() == 1
    })
    .await;
}
