//! Clients cannot lend the hub their back-pressure: queues nobody drains neither block
//! publishing for everyone nor hold connections open.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use crate::common::*;

/// A WebSocket and a long-poll client on `watch`, and what each has received so far.
pub struct Bystanders {
    ws: Ws,
    session: String,
    ack: u64,
    pub published: Vec<u64>,
}

impl Bystanders {
    pub async fn join(server: &TestServer) -> Self {
        let mut ws = server.ws("/ws?channel=watch").await;
        ws.recv_type("subscribed").await;
        let session = server.lp_connect("?channel=watch", None).await;
        let mut ack = 0;
        server.lp_collect(&session, &mut ack, 1).await;
        Self {
            ws,
            session,
            ack,
            published: Vec::new(),
        }
    }

    /// Publishes on `watch`; returns the HTTP status (200, or a refusal).
    pub async fn publish(&mut self, server: &TestServer, n: u64) -> u16 {
        let (status, reply) = server
            .post("/api/publish/watch", "application/json", n.to_string())
            .await;
        if status == 200 {
            self.published.push(reply["offset"].as_u64().unwrap());
        }
        status
    }

    /// Closes the WebSocket bystander cleanly (the long-poll session is left to the hub).
    pub async fn leave(self) {
        self.ws.close().await;
    }

    /// Both bystanders got every accepted publish exactly once, in order.
    pub async fn check(&mut self, server: &TestServer) {
        let mut got = Vec::new();
        while got.len() < self.published.len() {
            got.push(self.ws.recv_type("message").await);
        }
        assert_eq!(offsets(&got), self.published, "websocket bystander");
        let frames = server
            .lp_collect(&self.session, &mut self.ack, self.published.len())
            .await;
        assert_eq!(offsets(&frames), self.published, "long-poll bystander");
        self.published.clear();
    }
}

/// Attack 3 of the abuse issue: sessions on the attacker's own channel, filled past half
/// their queue and then only re-fetching their first batch, once made every publish on every
/// channel answer 503 `overloaded` for as long as the attacker kept at it.
#[tokio::test(start_paused = true)]
async fn undrained_queues_do_not_block_publishing_and_are_evicted() {
    let server = TestServer::with(&["--queue-capacity", "64"]).await;
    let mut bystanders = Bystanders::join(&server).await;
    let mut sessions = Vec::new();
    for _ in 0..20 {
        let session = server.lp_connect("?channel=evil", None).await;
        let (status, _) = server.lp_poll(&session, 0).await; // batch 1, never acknowledged
        assert_eq!(status, 200);
        sessions.push(session);
    }
    // 32 messages: half of each queue, the mark from which a client counts as lagging.
    for i in 0..32 {
        server.publish("evil", &json!(i)).await;
    }
    // 20 of 22 clients lag: the hub pushes back at once — the policy for a hub that cannot
    // keep up, which it cannot yet tell from this.
    assert_eq!(bystanders.publish(&server, 0).await, 503);
    let start = Instant::now();
    refetch_first_batch(&server, &sessions).await;
    // Nobody drains those queues: within two seconds they stop counting as lagging.
    let_time_pass_until("2 s", start + Duration::from_secs(2)).await;
    refetch_first_batch(&server, &sessions).await;
    for n in 1..=5 {
        assert_eq!(bystanders.publish(&server, n).await, 200, "publish {n}");
    }
    bystanders.check(&server).await;
    // And at the stuck timeout they are evicted as slow, re-fetching or not.
    let_time_pass_until("11 s", start + Duration::from_secs(11)).await;
    for session in &sessions {
        let (status, reply) = server.lp_poll(session, 1).await;
        assert_eq!(status, 200, "{reply}");
        let last = last_frame(&reply);
        assert_eq!(
            (last["type"].clone(), last["reason"].clone()),
            (json!("disconnect"), json!("slow"))
        );
    }
    assert_eq!(bystanders.publish(&server, 6).await, 200);
    bystanders.check(&server).await;
}

async fn refetch_first_batch(server: &TestServer, sessions: &[String]) {
    for session in sessions {
        let (status, reply) = server.lp_poll(session, 0).await;
        assert_eq!((status, reply["batch"].clone()), (200, json!(1)));
    }
}

/// Attack 4: sessions kept alive only by re-fetching an unacknowledged batch (or by polls
/// abandoned before they are answered) once held the whole connection limit.
#[tokio::test(start_paused = true)]
async fn sessions_that_make_no_progress_do_not_hold_the_connection_limit() {
    let server = TestServer::with(&["--max-connections", "12"]).await;
    let mut bystanders = Bystanders::join(&server).await;
    let mut sessions = Vec::new();
    for _ in 0..10 {
        let session = server.lp_connect("?channel=evil", None).await;
        assert_eq!(server.lp_poll(&session, 0).await.0, 200);
        sessions.push(session);
    }
    let (status, reply) = server.post("/lp/connect", "application/json", "").await;
    assert_eq!(
        (status, reply["error"]["code"].clone()),
        (503, json!("over_capacity"))
    );
    let start = Instant::now();
    for at in [20, 40] {
        let_time_pass_until("a re-fetch", start + Duration::from_secs(at)).await;
        for (i, session) in sessions.iter().enumerate() {
            if i % 2 == 0 {
                // Re-fetch the unacknowledged first batch.
                assert_eq!(server.lp_poll(session, 0).await.0, 200);
            } else {
                // Acknowledge it in a poll that is abandoned before it is answered.
                let poll = server.spawn_parked_poll(session, 1).await;
                poll.abort();
                let _ = poll.await;
                wait_until("the abandoned poll to end", || {
                    server.long_poll.polls_in_flight() == 0
                })
                .await;
            }
        }
        assert_eq!(bystanders.publish(&server, at).await, 200);
        bystanders.check(&server).await;
    }
    // Sixty seconds after their last answered poll, the sessions are gone.
    let_time_pass_until("61 s", start + Duration::from_secs(61)).await;
    assert_eq!(
        server.long_poll.session_count(),
        1,
        "only the bystander's session is left"
    );
    let fresh = server.lp_connect("?channel=watch", None).await;
    let mut ack = 0;
    let hello: Vec<Value> = server.lp_collect(&fresh, &mut ack, 1).await;
    assert_eq!(hello[0]["type"], "subscribed");
    bystanders.check(&server).await;
}
