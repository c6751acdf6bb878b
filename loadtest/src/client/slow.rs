//! Slow clients: subscribe over WebSocket, then never read (the socket stays open, its small
//! receive buffer fills, the hub's queue for it overflows). At the end each reads what is
//! waiting, for a bounded time, to learn how the hub ended it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

use super::{ws, Ending};
use crate::ctx::{error_kind, Counters, Ctx};

/// How long a slow client reads at the end looking for its close frame.
const INSPECT_TIME: Duration = Duration::from_secs(3);
/// Frames read at most while looking for it.
const INSPECT_FRAMES: usize = 1_000_000;

#[derive(Debug, Clone)]
pub struct SlowOutcome {
    /// How the connection ended as seen at the end.
    pub ending: Ending,
    pub frames_buffered: usize,
}

impl SlowOutcome {
    pub fn connected(&self) -> bool {
        self.ending != Ending::ConnectFailed
    }
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
                ending: Ending::ConnectFailed,
                frames_buffered: 0,
            };
        }
    };
    ctx.counters.opened();
    // Never read while the run lasts: that is the whole point.
    let _ = done.await;
    let mut frames = 0usize;
    let deadline = tokio::time::Instant::now() + INSPECT_TIME;
    let ending = loop {
        if frames >= INSPECT_FRAMES {
            break Ending::StillOpen;
        }
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => break Ending::StillOpen,
            Ok(None) => break Ending::Eof,
            Ok(Some(Err(e))) => break Ending::Broken(error_kind("error", &e)),
            Ok(Some(Ok(Message::Close(f)))) => break Ending::from_close_frame(f.as_ref()),
            Ok(Some(Ok(_))) => frames += 1,
        }
    };
    ctx.counters.closed();
    SlowOutcome {
        ending,
        frames_buffered: frames,
    }
}
