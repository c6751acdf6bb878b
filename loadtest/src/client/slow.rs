//! Slow clients: subscribe over WebSocket, then never read (the socket stays open, its small
//! receive buffer fills, the hub's queue for it overflows). At the end each reads what is
//! waiting, for a bounded time, to learn how the hub ended it.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

use super::ws;
use crate::ctx::{error_kind, Counters, Ctx};

/// How long a slow client reads at the end looking for its close frame.
const INSPECT_TIME: Duration = Duration::from_secs(3);
/// Frames read at most while looking for it.
const INSPECT_FRAMES: usize = 1_000_000;

#[derive(Debug, Clone)]
pub struct SlowOutcome {
    pub connected: bool,
    /// How the connection ended as seen at the end: `4000 slow`, `eof`, `still open`, …
    pub ending: String,
    pub frames_buffered: usize,
}

/// Connects one slow client; the returned sender ends it (then it inspects and returns).
pub async fn run_slow(
    ctx: Arc<Ctx>,
    channel: String,
    source: IpAddr,
    recv_buffer: u32,
    done: oneshot::Receiver<()>,
) -> SlowOutcome {
    let url = ctx.target.subscribe_url(&channel);
    let mut stream = match ws::connect(&ctx, &url, source, Some(recv_buffer)).await {
        Ok(s) => s,
        Err(e) => {
            Counters::inc(&ctx.counters.connect_failures);
            ctx.counters.error(&error_kind("slow connect", &e));
            return SlowOutcome {
                connected: false,
                ending: "connect failed".to_owned(),
                frames_buffered: 0,
            };
        }
    };
    Counters::inc(&ctx.counters.connects);
    ctx.counters.active.fetch_add(1, Ordering::Relaxed);
    // Never read while the run lasts: that is the whole point.
    let _ = done.await;
    let mut frames = 0usize;
    let deadline = tokio::time::Instant::now() + INSPECT_TIME;
    let ending = loop {
        if frames >= INSPECT_FRAMES {
            break "still open".to_owned();
        }
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => break "still open".to_owned(),
            Ok(None) => break "eof".to_owned(),
            Ok(Some(Err(e))) => break error_kind("error", &e),
            Ok(Some(Ok(Message::Close(f)))) => {
                break f
                    .map(|f| ws::close_label(f.code, &f.reason))
                    .unwrap_or_else(|| "close (no code)".to_owned())
            }
            Ok(Some(Ok(_))) => frames += 1,
        }
    };
    ctx.counters.active.fetch_sub(1, Ordering::Relaxed);
    SlowOutcome {
        connected: true,
        ending,
        frames_buffered: frames,
    }
}
