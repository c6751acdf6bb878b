//! Long-poll subscriber sessions: `POST /lp/connect`, then `GET /lp/poll` with `ack` until the
//! hub or the run ends the session, each on the subscriber's own connection (`http1`), so a
//! long-poll client holds one socket at a time: a poll the run abandons takes its socket with
//! it before the next opens.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::http1::{Http1Conn, Request, Response};
use super::subscriber::{Subscriber, Wake};
use super::{Ending, SessionEnd};
use crate::ctx::{error_kind, Counters, Ctx, ErrorClass, HTTP_TIMEOUT};
use crate::frame::{
    lp_connect_body, subscribe_frame, LpSession, PollBatch, GENERIC_EPOCH, LP_CONNECT_NO_CHANNELS,
};

/// A poll waits up to the hub's hold time (25 s by default); allow that plus slack.
const POLL_TIMEOUT: Duration = Duration::from_secs(40);
/// Consecutive failed polls (transport errors, 5xx) before the session counts as failed.
const MAX_POLL_FAILURES: u32 = 5;

fn close_path(session: &str) -> String {
    format!("/lp/close?session={session}")
}

/// Opens a connection and a session on it, resuming from `since` when given. `abandoned`, a
/// session this subscriber dropped without closing, is closed first on the same connection,
/// pipelined ahead of the connect (the hub answers in order; a resume waits no extra round
/// trip, and the hub hears of the old session's end before the new one starts, as from
/// crier.js). With `join_leave` the session opens with no channel and subscribes by a frame
/// (`/lp/send`), the only way to ask for `presence_diff`: one more round trip.
pub async fn connect(
    ctx: &Ctx,
    source: IpAddr,
    channel: &str,
    since: Option<(&str, u64)>,
    join_leave: bool,
    abandoned: Option<&str>,
) -> Result<(Http1Conn, String)> {
    let mut conn = Http1Conn::open(ctx, source).await?;
    let body = if join_leave {
        LP_CONNECT_NO_CHANNELS.to_owned()
    } else {
        lp_connect_body(channel, since)
    };
    let close = abandoned.map(close_path);
    let mut requests = Vec::with_capacity(2);
    if let Some(path) = &close {
        requests.push(Request {
            method: "POST",
            path,
            body: b"",
            fields: &[],
        });
    }
    requests.push(Request {
        method: "POST",
        path: "/lp/connect",
        body: body.as_bytes(),
        fields: &[],
    });
    let exchange = async {
        conn.send(&requests).await?;
        if close.is_some() {
            // 200, or 404 when the hub already forgot it: either way it is gone.
            conn.response().await?;
        }
        conn.response().await
    };
    let resp = tokio::time::timeout(HTTP_TIMEOUT, exchange)
        .await
        .context("lp connect timed out")??;
    if !(200..300).contains(&resp.status) {
        bail!("lp connect: HTTP {}", resp.status);
    }
    let session = serde_json::from_slice::<LpSession>(&resp.body)?.session;
    if join_leave {
        let frame = subscribe_frame(channel, since, true, 1);
        let path = format!("/lp/send?session={session}");
        let send = conn.request(Request {
            method: "POST",
            path: &path,
            body: frame.as_bytes(),
            fields: &[],
        });
        let resp = tokio::time::timeout(HTTP_TIMEOUT, send)
            .await
            .context("lp send timed out")??;
        if !(200..300).contains(&resp.status) {
            bail!("lp send (subscribe): HTTP {}", resp.status);
        }
    }
    Ok((conn, session))
}

/// Closes a session: on `conn` when it is idle, else on a fresh connection (the old one was
/// dropped with its abandoned poll). Bounded; the outcome does not matter to the run.
async fn close(ctx: &Ctx, source: IpAddr, conn: Option<Http1Conn>, session: &str) {
    let closing = async {
        let mut conn = match conn {
            Some(c) => c,
            None => Http1Conn::open(ctx, source).await?,
        };
        conn.request(Request {
            method: "POST",
            path: &close_path(session),
            body: b"",
            fields: &[],
        })
        .await?;
        Ok::<_, anyhow::Error>(())
    };
    let _ = tokio::time::timeout(HTTP_TIMEOUT, closing).await;
}

/// One long-poll session of a subscriber: connect (resuming when the tracker has a position),
/// then poll until something ends it.
pub async fn session(sub: &mut Subscriber<'_>) -> SessionEnd {
    let ctx = sub.ctx;
    if ctx.target.is_generic() {
        return generic_session(sub).await;
    }
    let resume = sub.tracker.resume_point().map(|(e, o)| (e.to_owned(), o));
    let abandoned = sub.lp_abandoned.take();
    let connecting = connect(
        ctx,
        sub.source,
        &sub.spec.channel,
        resume.as_ref().map(|(e, o)| (e.as_str(), *o)),
        sub.spec.join_leave,
        abandoned.as_deref(),
    );
    let (conn, session) = match sub.open("lp connect", connecting).await {
        Ok(opened) => opened,
        Err(end) => {
            // Not closed yet: the next attempt tries again (the hub reaps it otherwise).
            sub.lp_abandoned = abandoned;
            return end;
        }
    };
    let (end, conn) = poll_loop(sub, conn, &session).await;
    sub.disconnected();
    match end {
        SessionEnd::HubClosed(_) => {}
        // The run is over for this subscriber: close now.
        SessionEnd::Stopped | SessionEnd::Drained => close(ctx, sub.source, conn, &session).await,
        // It comes back: the close rides ahead of its resume (see `connect`).
        SessionEnd::Reconnect | SessionEnd::Failed(..) => sub.lp_abandoned = Some(session),
    }
    end
}

/// Polls until something ends the session; hands back the connection when it is idle (no
/// poll in flight), to close the session on.
async fn poll_loop(
    sub: &mut Subscriber<'_>,
    conn: Http1Conn,
    session: &str,
) -> (SessionEnd, Option<Http1Conn>) {
    let ctx = sub.ctx;
    // The idle connection. A poll takes it; a poll that fails or is abandoned drops it (the
    // socket closes at once), and the next poll opens a new one.
    let mut idle = Some(conn);
    let mut ack = 0u64;
    let mut failures = 0u32;
    loop {
        let path = format!("/lp/poll?session={session}&ack={ack}");
        // A poll in flight is never abandoned for the drain (a second poll would find the
        // hub still holding it: 409): it goes on, and `next` ends the session once drained.
        let resp = match poll_once(sub, &mut idle, &path, &[], &mut failures).await {
            Polled::Response(resp) => resp,
            Polled::Failed(None) => continue,
            Polled::Failed(Some(end)) => return (end, None),
            Polled::End(end) => return (end, idle),
        };
        Counters::inc(&ctx.counters.lp_polls);
        match resp.status {
            200 => {}
            404 => return (SessionEnd::HubClosed(Ending::UnknownSession), idle),
            other => {
                failures += 1;
                ctx.counters.error(&format!("lp poll: HTTP {other}"));
                if failures >= MAX_POLL_FAILURES {
                    let kind = format!("lp poll: HTTP {other}");
                    return (SessionEnd::Failed(ErrorClass::Client, kind), idle);
                }
                continue;
            }
        }
        failures = 0;
        let now = ctx.clock.now_us();
        let batch: PollBatch = match serde_json::from_slice(&resp.body) {
            Ok(b) => b,
            Err(e) => {
                ctx.counters
                    .protocol_error(&error_kind("bad poll body", &e));
                continue;
            }
        };
        // Every response is acknowledged by the next poll, so a batch arrives once; a hub that
        // re-sent one anyway shows up as duplicates in the tracker.
        ctx.counters.lp_frames.fetch_add(
            batch.messages.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        for frame in &batch.messages {
            if let Some(end) = sub.frame(frame, now) {
                return (end, idle);
            }
        }
        ack = batch.batch;
    }
}

/// What one poll came to.
enum Polled {
    Response(Response),
    /// The poll failed (counted); `Some` once too many failed in a row.
    Failed(Option<SessionEnd>),
    /// The run ended the session meanwhile.
    End(SessionEnd),
}

/// One `GET path` on the idle connection (or a new one, if the last poll took it), within
/// `POLL_TIMEOUT`, while the run may end the session; an answered poll leaves its connection
/// idle again, a failed one drops it.
async fn poll_once(
    sub: &mut Subscriber<'_>,
    idle: &mut Option<Http1Conn>,
    path: &str,
    fields: &[(&str, &str)],
    failures: &mut u32,
) -> Polled {
    let (ctx, source) = (sub.ctx, sub.source);
    let taken = idle.take();
    let poll = async {
        let mut conn = match taken {
            Some(c) => c,
            None => Http1Conn::open(ctx, source).await?,
        };
        let request = Request {
            method: "GET",
            path,
            body: b"",
            fields,
        };
        let resp = tokio::time::timeout(POLL_TIMEOUT, conn.request(request))
            .await
            .context("lp poll timed out")??;
        Ok::<_, anyhow::Error>((conn, resp))
    };
    tokio::pin!(poll);
    loop {
        match sub.next(poll.as_mut()).await {
            Wake::DrainChanged => continue,
            Wake::Ready(Ok((conn, resp))) => {
                *idle = Some(conn);
                return Polled::Response(resp);
            }
            Wake::Ready(Err(e)) => {
                *failures += 1;
                ctx.counters.error(&error_kind("lp poll", &e));
                let too_many = (*failures >= MAX_POLL_FAILURES).then(|| {
                    let kind = "lp poll failed repeatedly".to_owned();
                    SessionEnd::Failed(ErrorClass::Client, kind)
                });
                return Polled::Failed(too_many);
            }
            Wake::End(end) => return Polled::End(end),
        }
    }
}

/// Generic mode (`--lp-template`, e.g. nchan's long-poll): `GET` the channel's URL again and
/// again; a `200` body is one published message, `304` and `408` mean nothing arrived within
/// the hub's hold. Each request carries the last response's `Last-Modified` and `Etag` as
/// `If-Modified-Since` and `If-None-Match`, which is how such a hub knows where its
/// subscriber stands (nchan's message id). Subscribed once the connection is open and the
/// first request goes out; owed every sequence number accepted from then on, as a generic
/// WebSocket subscriber is.
async fn generic_session(sub: &mut Subscriber<'_>) -> SessionEnd {
    let ctx = sub.ctx;
    let source = sub.source;
    let path = ctx.target.lp_path(&sub.spec.channel);
    let conn = match sub.open("lp connect", Http1Conn::open(ctx, source)).await {
        Ok(conn) => conn,
        Err(end) => return end,
    };
    let start = ctx.ledger.last_offset(&sub.spec.channel);
    sub.subscribed(Some((GENERIC_EPOCH, start)));
    let mut idle = Some(conn);
    let (mut last_modified, mut etag): (Option<String>, Option<String>) = (None, None);
    let mut failures = 0u32;
    let end = loop {
        let mut fields = Vec::with_capacity(2);
        if let Some(v) = &last_modified {
            fields.push(("if-modified-since", v.as_str()));
        }
        if let Some(v) = &etag {
            fields.push(("if-none-match", v.as_str()));
        }
        let resp = match poll_once(sub, &mut idle, &path, &fields, &mut failures).await {
            Polled::Response(resp) => resp,
            Polled::Failed(None) => continue,
            Polled::Failed(Some(end)) | Polled::End(end) => break end,
        };
        Counters::inc(&ctx.counters.lp_polls);
        match resp.status {
            200 => {
                failures = 0;
                ctx.counters
                    .lp_frames
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                super::ws::body(sub, &resp.body, ctx.clock.now_us());
                last_modified = resp.last_modified.or(last_modified);
                etag = resp.etag.or(etag);
            }
            304 | 408 => failures = 0,
            other => {
                failures += 1;
                ctx.counters.error(&format!("lp poll: HTTP {other}"));
                if failures >= MAX_POLL_FAILURES {
                    break SessionEnd::Failed(ErrorClass::Client, format!("lp poll: HTTP {other}"));
                }
            }
        }
    };
    sub.disconnected();
    end
}
