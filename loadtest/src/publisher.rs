//! Publishers: `POST /api/publish/{channel}` on a fixed schedule (`rate` msg/s) or as fast as
//! the hub answers (`rate` 0). Each accepted reply goes into the ledger.
//!
//! On a fixed schedule the message carries the time it *should* have been sent; when every
//! publisher is busy the next ones go late but keep their intended time, so the hub's slowness
//! shows in the latency instead of silently lowering the rate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ctx::{error_kind, Counters, Ctx, ErrorClass};
use crate::frame::{payload, payload_with_sequence, PublishReply, GENERIC_EPOCH};

#[derive(Debug, Clone)]
pub struct PublishPlan {
    pub channels: Arc<Vec<String>>,
    /// Messages per second over all channels; 0 = as fast as the hub accepts.
    pub rate: f64,
    /// Concurrent publishers (HTTP requests in flight at most).
    pub publishers: usize,
    /// Body size in bytes.
    pub size: usize,
    pub duration: Duration,
}

/// Publishes until `plan.duration` has passed or `stop` fires; returns when every publisher
/// has its last reply.
pub async fn run(ctx: Arc<Ctx>, plan: PublishPlan, stop: CancellationToken) {
    if plan.channels.is_empty() {
        return;
    }
    let start = Instant::now();
    let end = start + plan.duration;
    let next = Arc::new(AtomicU64::new(0));
    // Generic mode: the next sequence number per channel, locked across the publish so a
    // channel's sequence numbers reach the hub in order (crier numbers messages itself).
    let sequences: Arc<Vec<tokio::sync::Mutex<u64>>> = Arc::new(
        (0..plan.channels.len())
            .map(|_| tokio::sync::Mutex::new(0))
            .collect(),
    );
    let mut tasks = Vec::with_capacity(plan.publishers.max(1));
    for _ in 0..plan.publishers.max(1) {
        let ctx = ctx.clone();
        let plan = plan.clone();
        let next = next.clone();
        let stop = stop.clone();
        let sequences = sequences.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let intended = if plan.rate > 0.0 {
                    let at = start + Duration::from_secs_f64(i as f64 / plan.rate);
                    if at >= end {
                        break;
                    }
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep_until(at) => {}
                    }
                    at
                } else {
                    let now = Instant::now();
                    if now >= end || stop.is_cancelled() {
                        break;
                    }
                    now
                };
                let index = (i % plan.channels.len() as u64) as usize;
                let channel = &plan.channels[index];
                let t = ctx.clock.at(intended.into_std());
                let sent = std::time::Instant::now();
                let pushed_back = if ctx.target.is_generic() {
                    // Waiting for this channel's previous publish counts in the latency.
                    let mut seq = sequences[index].lock().await;
                    *seq += 1;
                    let body = payload_with_sequence(t, *seq, plan.size);
                    publish_generic(&ctx, channel, *seq, body).await;
                    false
                } else {
                    publish_one(&ctx, channel, payload(t, plan.size)).await
                };
                ctx.publish_rtt
                    .record(i as usize, sent.elapsed().as_micros() as u64);
                if pushed_back {
                    // Honour `Retry-After: 1` (bounded, cancellable) instead of hammering an
                    // overloaded hub; on a fixed schedule the later messages go late and keep
                    // their intended time, so the pause shows in the latency.
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// One publish; the reply's offset goes into the ledger. Returns whether the hub pushed back
/// (`503 overloaded`).
pub async fn publish_one(ctx: &Ctx, channel: &str, body: String) -> bool {
    match post(ctx, channel, body).await {
        Ok((status, bytes)) if status.is_success() => {
            match serde_json::from_slice::<PublishReply>(bytes.as_ref()) {
                Ok(reply) => {
                    ctx.ledger
                        .accept(channel, &reply.epoch, reply.offset, reply.enqueued);
                    Counters::inc(&ctx.counters.publishes);
                }
                Err(e) => {
                    Counters::inc(&ctx.counters.publish_errors);
                    let kind = error_kind("publish reply", &e);
                    ctx.counters.error_of(ErrorClass::Publish, &kind);
                }
            }
        }
        Ok((status, bytes)) => {
            let overloaded = status.as_u16() == 503
                && serde_json::from_slice::<serde_json::Value>(bytes.as_ref())
                    .ok()
                    .is_some_and(|v| v["error"]["code"] == "overloaded");
            if overloaded {
                Counters::inc(&ctx.counters.publish_pushback);
                return true;
            }
            rejected(ctx, status);
        }
        Err(e) => failed(ctx, &e),
    }
    false
}

/// Generic mode: one publish of sequence number `seq`; any 2xx reply accepts it.
async fn publish_generic(ctx: &Ctx, channel: &str, seq: u64, body: String) {
    match post(ctx, channel, body).await.map(|(status, _)| status) {
        Ok(status) if status.is_success() => {
            ctx.ledger.accept(channel, GENERIC_EPOCH, seq, 0);
            Counters::inc(&ctx.counters.publishes);
        }
        Ok(status) => rejected(ctx, status),
        Err(e) => failed(ctx, &e),
    }
}

/// The hub refused a publish (a non-2xx reply other than back-pressure).
fn rejected(ctx: &Ctx, status: reqwest::StatusCode) {
    Counters::inc(&ctx.counters.publish_rejected);
    let kind = format!("publish: HTTP {}", status.as_u16());
    ctx.counters.error_of(ErrorClass::Publish, &kind);
}

/// A publish got no usable reply.
fn failed(ctx: &Ctx, e: &reqwest::Error) {
    Counters::inc(&ctx.counters.publish_errors);
    let kind = error_kind("publish", e);
    ctx.counters.error_of(ErrorClass::Publish, &kind);
}

/// POSTs `body` to the channel's publish URL and reads the reply to the end (so the
/// connection can be reused).
async fn post(
    ctx: &Ctx,
    channel: &str,
    body: String,
) -> Result<(reqwest::StatusCode, impl AsRef<[u8]>), reqwest::Error> {
    let resp = ctx
        .http
        .post(ctx.target.publish_url(channel))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    let status = resp.status();
    let bytes = resp.bytes().await?;
    Ok((status, bytes))
}
