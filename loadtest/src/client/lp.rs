//! Long-poll subscriber sessions: `POST /lp/connect`, then `GET /lp/poll` with `ack` until the
//! hub or the run ends the session.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{bail, Result};
use reqwest::StatusCode;

use super::subscriber::{Subscriber, Wake};
use super::{Ending, SessionEnd};
use crate::ctx::{error_kind, Counters, Ctx, ErrorClass, HTTP_TIMEOUT};
use crate::frame::{lp_connect_body, LpSession, PollBatch};

/// A poll waits up to the hub's hold time (25 s by default); allow that plus slack.
const POLL_TIMEOUT: Duration = Duration::from_secs(40);
/// Consecutive failed polls (transport errors, 5xx) before the session counts as failed.
const MAX_POLL_FAILURES: u32 = 5;

fn client_for(ctx: &Ctx, source: IpAddr) -> &reqwest::Client {
    let idx = ctx
        .target
        .sources()
        .iter()
        .position(|&s| s == source)
        .unwrap_or(0);
    &ctx.lp_http[idx]
}

/// Opens a session, resuming from `since` when given.
pub async fn connect(
    ctx: &Ctx,
    source: IpAddr,
    channel: &str,
    since: Option<(&str, u64)>,
) -> Result<String> {
    let resp = client_for(ctx, source)
        .post(ctx.target.http_url("/lp/connect"))
        .header("content-type", "application/json")
        .body(lp_connect_body(channel, since))
        .timeout(HTTP_TIMEOUT)
        .send()
        .await?;
    let status = resp.status();
    let body = resp.bytes().await?;
    if !status.is_success() {
        bail!("lp connect: HTTP {}", status.as_u16());
    }
    Ok(serde_json::from_slice::<LpSession>(&body)?.session)
}

/// Ends a session without waiting for the answer (used when dropping on purpose).
pub fn close_detached(ctx: &Ctx, source: IpAddr, session: &str) {
    let req = client_for(ctx, source)
        .post(ctx.target.http_url(&format!("/lp/close?session={session}")))
        .timeout(HTTP_TIMEOUT)
        .send();
    tokio::spawn(async move {
        let _ = req.await;
    });
}

/// One long-poll session of a subscriber: connect (resuming when the tracker has a position),
/// then poll until something ends it.
pub async fn session(sub: &mut Subscriber<'_>) -> SessionEnd {
    let ctx = sub.ctx;
    let resume = sub.tracker.resume_point().map(|(e, o)| (e.to_owned(), o));
    let connecting = connect(
        ctx,
        sub.source,
        &sub.spec.channel,
        resume.as_ref().map(|(e, o)| (e.as_str(), *o)),
    );
    let session = match sub.open("lp connect", connecting).await {
        Ok(session) => session,
        Err(end) => return end,
    };
    let end = poll_loop(sub, &session).await;
    ctx.counters.closed();
    if !matches!(end, SessionEnd::HubClosed(_)) {
        close_detached(ctx, sub.source, &session);
    }
    end
}

async fn poll_loop(sub: &mut Subscriber<'_>, session: &str) -> SessionEnd {
    let ctx = sub.ctx;
    let client = client_for(ctx, sub.source);
    let mut ack = 0u64;
    let mut failures = 0u32;
    loop {
        let url = ctx
            .target
            .http_url(&format!("/lp/poll?session={session}&ack={ack}"));
        let poll = async {
            let resp = client.get(url).timeout(POLL_TIMEOUT).send().await?;
            let status = resp.status();
            let body = resp.bytes().await?;
            Ok::<_, reqwest::Error>((status, body))
        };
        let (status, body) = match sub.next(poll).await {
            Wake::Ready(Ok(reply)) => reply,
            Wake::Ready(Err(e)) => {
                failures += 1;
                ctx.counters.error(&error_kind("lp poll", &e));
                if failures >= MAX_POLL_FAILURES {
                    let kind = "lp poll failed repeatedly".to_owned();
                    return SessionEnd::Failed(ErrorClass::Client, kind);
                }
                continue;
            }
            Wake::End(end) => return end,
            Wake::DrainChanged => continue,
        };
        Counters::inc(&ctx.counters.lp_polls);
        match status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return SessionEnd::HubClosed(Ending::UnknownSession),
            other => {
                failures += 1;
                ctx.counters
                    .error(&format!("lp poll: HTTP {}", other.as_u16()));
                if failures >= MAX_POLL_FAILURES {
                    let kind = format!("lp poll: HTTP {}", other.as_u16());
                    return SessionEnd::Failed(ErrorClass::Client, kind);
                }
                continue;
            }
        }
        failures = 0;
        let now = ctx.clock.now_us();
        let batch: PollBatch = match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => {
                ctx.counters
                    .protocol_error(&error_kind("bad poll body", &e));
                continue;
            }
        };
        // Every response is acknowledged by the next poll, so a batch arrives once; a hub that
        // re-sent one anyway shows up as duplicates in the tracker.
        for frame in &batch.messages {
            if let Some(end) = sub.frame(frame, now) {
                return end;
            }
        }
        ack = batch.batch;
    }
}
