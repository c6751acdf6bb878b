//! WebSocket subscriber sessions over tokio-tungstenite, each from a chosen 127.0.0.x source
//! address.

use std::net::IpAddr;

use anyhow::{Context, Result};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::subscriber::{Subscriber, Wake};
use super::{Ending, SessionEnd};
use crate::ctx::{error_kind, Ctx, ErrorClass, CONNECT_TIMEOUT};
use crate::frame::{subscribe_frame, Payload, GENERIC_EPOCH};

pub type Ws = WebSocketStream<TcpStream>;

/// Small buffers: tens of thousands of these live in one process. tungstenite's defaults
/// (128 KiB each way) would cost gigabytes at 10k clients.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(1024 * 1024)
}

/// Connects to the hub and upgrades to `url` (a full `ws://` URL) from `source`.
pub async fn connect(ctx: &Ctx, url: &str, source: IpAddr, recv_buffer: Option<u32>) -> Result<Ws> {
    let stream = ctx
        .target
        .connect_tcp(source, recv_buffer, CONNECT_TIMEOUT)
        .await?;
    let (ws, _response) = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config())),
    )
    .await
    .context("WebSocket handshake timed out")?
    .map_err(|e| anyhow::anyhow!(handshake_error(&e)))?;
    Ok(ws)
}

fn handshake_error(e: &tokio_tungstenite::tungstenite::Error) -> String {
    match e {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            format!("handshake refused: HTTP {}", resp.status())
        }
        other => format!("handshake: {other}"),
    }
}

/// One WebSocket connection of a subscriber: subscribe (resuming when the tracker has a
/// position), then read until something ends it.
pub async fn session(sub: &mut Subscriber<'_>) -> SessionEnd {
    let ctx = sub.ctx;
    let generic = ctx.target.is_generic();
    // Generic mode has no resume: a reconnect simply subscribes again.
    let resume = sub
        .tracker
        .resume_point()
        .filter(|_| !generic)
        .map(|(e, o)| (e.to_owned(), o));
    // A fresh subscriber uses the documented query form; a resume needs `since` and a
    // presence listener `join_leave`, which only the subscribe frame carries.
    let by_frame = resume.is_some() || sub.spec.join_leave;
    let url = if by_frame {
        ctx.target.ws_url("/ws")
    } else {
        ctx.target.subscribe_url(&sub.spec.channel)
    };
    let mut ws = match sub
        .open("ws connect", connect(ctx, &url, sub.source, None))
        .await
    {
        Ok(ws) => ws,
        Err(end) => return end,
    };
    if generic {
        // Subscribed once the upgrade is done. Owed: every sequence number accepted from now
        // on (a reconnect keeps the first start, so what it missed counts as lost).
        let start = ctx.ledger.last_offset(&sub.spec.channel);
        sub.subscribed(Some((GENERIC_EPOCH, start)));
    }
    let end = read_loop(sub, &mut ws, by_frame.then_some(resume)).await;
    sub.disconnected();
    match end {
        SessionEnd::Stopped | SessionEnd::Drained => {
            // Polite close, bounded: the hub may be busy.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), ws.close(None)).await;
        }
        // Storm and churn drop the socket without a close frame, like a lost network.
        _ => drop(ws),
    }
    end
}

/// `subscribe`: the subscribe frame to send first (with the resume position, if any); `None`
/// when the URL subscribed.
async fn read_loop(
    sub: &mut Subscriber<'_>,
    ws: &mut Ws,
    subscribe: Option<Option<(String, u64)>>,
) -> SessionEnd {
    let ctx = sub.ctx;
    if let Some(since) = &subscribe {
        let since = since.as_ref().map(|(e, o)| (e.as_str(), *o));
        let frame = subscribe_frame(&sub.spec.channel, since, sub.spec.join_leave, 1);
        if let Err(e) = ws.send(Message::text(frame)).await {
            return SessionEnd::Failed(ErrorClass::Client, error_kind("ws send", &e));
        }
    }
    loop {
        let msg = match sub.next(ws.next()).await {
            Wake::Ready(msg) => msg,
            Wake::End(end) => return end,
            Wake::DrainChanged => continue,
        };
        match msg {
            None => return SessionEnd::HubClosed(Ending::Eof),
            Some(Err(e)) => {
                return SessionEnd::HubClosed(Ending::Broken(error_kind("ws error", &e)))
            }
            Some(Ok(Message::Text(text))) if ctx.target.is_generic() => {
                body(sub, text.as_bytes(), ctx.clock.now_us());
            }
            Some(Ok(Message::Binary(bytes))) if ctx.target.is_generic() => {
                body(sub, &bytes, ctx.clock.now_us());
            }
            Some(Ok(Message::Text(text))) => {
                if let Some(end) = sub.text(&text, ctx.clock.now_us()) {
                    return end;
                }
            }
            Some(Ok(Message::Close(frame))) => {
                return SessionEnd::HubClosed(Ending::from_close_frame(frame.as_ref()))
            }
            // Pings are answered by tungstenite on the next read.
            Some(Ok(_)) => {}
        }
    }
}

/// Generic mode: a frame is one published body, `{"t": µs, "s": sequence, "p": "…"}`.
pub(super) fn body(sub: &mut Subscriber<'_>, body: &[u8], now_us: u64) {
    match serde_json::from_slice::<Payload>(body) {
        Ok(p) => sub.delivered(p.s, p.t, now_us),
        Err(e) => sub.ctx.counters.protocol_error(&error_kind("bad body", &e)),
    }
}
