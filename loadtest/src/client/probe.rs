//! Reads a channel's presence as a client does: one WebSocket connection (not a member: it
//! subscribes to nothing) sends `presence_stats`, then `presence` page after page, following
//! `next` until it is null. Bounded in pages and in time.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::ws::{self, Ws};
use crate::ctx::Ctx;
use crate::frame::{presence_frame, presence_stats_frame, ServerFrame};
use crate::presence::{member_key, Listing};

/// A whole listing, however many pages, within this.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// One reply within this.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// `presence_stats` and the full member list of `channel`; `expected` (members the caller
/// thinks there are) bounds the pages followed.
pub async fn read_presence(ctx: &Ctx, channel: &str, expected: usize) -> Result<Listing> {
    let source = ctx.target.source_for(ctx.spread.next());
    let url = ctx.target.ws_url("/ws");
    let read = async {
        let mut ws = ws::connect(ctx, &url, source, None).await?;
        let listing = listing(&mut ws, channel, expected).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
        listing
    };
    tokio::time::timeout(PROBE_TIMEOUT, read)
        .await
        .context("reading the presence listing timed out")?
}

async fn listing(ws: &mut Ws, channel: &str, expected: usize) -> Result<Listing> {
    let mut out = Listing::default();
    let stats = request(
        ws,
        presence_stats_frame(channel, 0),
        "presence_stats",
        |f| f.clients,
    )
    .await?;
    out.stats_clients = stats.context("presence_stats without `clients`")?;
    // Pages of at most 200; a few more than that allows for members that came meanwhile.
    let max_pages = expected.max(out.stats_clients as usize) / 200 + 10;
    let mut cursor = None;
    loop {
        if out.pages >= max_pages {
            bail!("more than {max_pages} pages: `next` never ended");
        }
        out.pages += 1;
        let frame = presence_frame(channel, cursor, out.pages as u64);
        let (members, next) = request(ws, frame, "presence", |f| {
            let members: Vec<u64> = f
                .members
                .iter()
                .flatten()
                .map(|m| member_key(&m.client))
                .collect();
            (members, f.next)
        })
        .await?;
        out.members.extend(members);
        match next {
            Some(n) => cursor = Some(n),
            None => return Ok(out),
        }
    }
}

/// Sends `frame` and reads until the reply of type `kind` (an `error` frame fails), taking
/// what `take` wants from it.
async fn request<T>(
    ws: &mut Ws,
    frame: String,
    kind: &str,
    take: impl Fn(&ServerFrame<'_>) -> T,
) -> Result<T> {
    ws.send(Message::text(frame)).await?;
    loop {
        let msg = tokio::time::timeout(REPLY_TIMEOUT, ws.next())
            .await
            .with_context(|| format!("no `{kind}` reply within {REPLY_TIMEOUT:?}"))?;
        let text = match msg {
            None => bail!("the hub closed the connection"),
            Some(Err(e)) => bail!("reading: {e}"),
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) => bail!("the hub closed the connection"),
            Some(Ok(_)) => continue,
        };
        let f: ServerFrame = serde_json::from_str(&text)?;
        if f.kind == kind {
            return Ok(take(&f));
        }
        if f.kind == "error" {
            bail!("`{kind}` answered with an error: {text}");
        }
    }
}
