//! One long-poll subscriber's own HTTP/1.1 connection: requests go one after another on it,
//! so a long-poll client holds exactly one socket, like a WebSocket client.
//!
//! Why not reqwest here: its shared pools cannot say how many sockets a client holds. A poll
//! dropped mid-flight (storm, churn, end of run) keeps its connection open until the hub
//! answers it, while `/lp/close` and the resuming `/lp/connect` each open another, and every
//! finished request parks its connection in the pool. Measured with 2,000 long-poll clients:
//! 2,012 descriptors while polling, 6,274 in a storm (3.1 per client), 2,580 at the end of a
//! run; so `storm -n 18500 --transport mix` ran out of descriptors. Here a dropped poll drops
//! its socket at once (the descriptor is closed before the next one opens) and the close of
//! the abandoned session is pipelined ahead of the resuming connect on the new connection, so
//! the hub sees the same requests in the same order and a resume waits no extra round trip.
//!
//! Just enough HTTP/1.1 for crier's long-poll endpoints: `Content-Length` bodies both ways
//! (crier sends no chunked replies there; one is refused, not misread), keep-alive, bounded
//! head and body sizes.

use std::net::IpAddr;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::ctx::{Ctx, CONNECT_TIMEOUT};

/// Largest response head accepted (crier's are a few hundred bytes).
const MAX_HEAD: usize = 16 * 1024;
/// Largest response body accepted: a poll batch is bounded by the hub's queue (1,024 frames
/// by default) times the message size; this leaves room for 64 KiB messages.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// A request to write: method, path with query, JSON body (empty for none), and any other
/// header fields (generic mode's `If-Modified-Since`, `If-None-Match`).
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub body: &'a [u8],
    pub fields: &'a [(&'a str, &'a str)],
}

/// A response read in full.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    /// `Last-Modified` and `Etag`: where a generic long-poll subscriber resumes (nchan).
    pub last_modified: Option<String>,
    pub etag: Option<String>,
}

pub struct Http1Conn {
    stream: TcpStream,
    host: String,
    /// Bytes read and not yet consumed (a response may arrive in pieces).
    buf: Vec<u8>,
}

impl Http1Conn {
    /// Connects from `source` (bound first, like every client socket of the run).
    pub async fn open(ctx: &Ctx, source: IpAddr) -> Result<Self> {
        let stream = ctx
            .target
            .connect_tcp(source, None, CONNECT_TIMEOUT)
            .await?;
        Ok(Self {
            stream,
            host: ctx.target.authority.clone(),
            buf: Vec::with_capacity(4096),
        })
    }

    /// Writes `requests` back to back (pipelined); read their responses in the same order.
    pub async fn send(&mut self, requests: &[Request<'_>]) -> Result<()> {
        let mut out = Vec::new();
        for r in requests {
            encode_request(&mut out, &self.host, r);
        }
        self.stream.write_all(&out).await?;
        Ok(())
    }

    /// Reads the next response in full.
    pub async fn response(&mut self) -> Result<Response> {
        loop {
            if let Some(head) = parse_head(&self.buf)? {
                let total = head.head_len + head.body_len;
                while self.buf.len() < total {
                    self.read_more().await?;
                }
                let body = self.buf[head.head_len..total].to_vec();
                self.buf.drain(..total);
                return Ok(Response {
                    status: head.status,
                    body,
                    last_modified: head.last_modified,
                    etag: head.etag,
                });
            }
            if self.buf.len() > MAX_HEAD {
                bail!("response head over {MAX_HEAD} bytes");
            }
            self.read_more().await?;
        }
    }

    /// One request, then its response.
    pub async fn request(&mut self, request: Request<'_>) -> Result<Response> {
        self.send(&[request]).await?;
        self.response().await
    }

    async fn read_more(&mut self) -> Result<()> {
        let n = self.stream.read_buf(&mut self.buf).await?;
        if n == 0 {
            bail!("connection closed by the hub");
        }
        Ok(())
    }
}

fn encode_request(out: &mut Vec<u8>, host: &str, r: &Request<'_>) {
    let content = if r.body.is_empty() {
        String::new()
    } else {
        "content-type: application/json\r\n".to_owned()
    };
    let mut fields = String::new();
    for (name, value) in r.fields {
        fields.push_str(&format!("{name}: {value}\r\n"));
    }
    out.extend_from_slice(
        format!(
            "{} {} HTTP/1.1\r\nhost: {host}\r\n{content}{fields}content-length: {}\r\n\r\n",
            r.method,
            r.path,
            r.body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(r.body);
}

/// A response head.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    head_len: usize,
    status: u16,
    body_len: usize,
    last_modified: Option<String>,
    etag: Option<String>,
}

/// A complete response head in `buf`; `None` while incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf).context("bad response head")? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let status = resp.code.context("response without status")?;
    let mut body_len = None;
    let (mut last_modified, mut etag) = (None, None);
    let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("last-modified") {
            last_modified = Some(text(h.value));
        }
        if h.name.eq_ignore_ascii_case("etag") {
            etag = Some(text(h.value));
        }
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("chunked response (not used by crier's long-poll endpoints)");
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(h.value).context("bad content-length")?;
            body_len = Some(text.trim().parse::<usize>().context("bad content-length")?);
        }
    }
    let body_len = body_len.context("response without content-length")?;
    if body_len > MAX_BODY {
        bail!("response body of {body_len} bytes (over {MAX_BODY})");
    }
    Ok(Some(Head {
        head_len,
        status,
        body_len,
        last_modified,
        etag,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_requests_with_and_without_body() {
        let mut out = Vec::new();
        let body = br#"{"channels":["c"]}"#;
        encode_request(
            &mut out,
            "127.0.0.1:8080",
            &Request {
                method: "POST",
                path: "/lp/connect",
                body,
                fields: &[],
            },
        );
        encode_request(
            &mut out,
            "127.0.0.1:8080",
            &Request {
                method: "GET",
                path: "/lp/poll?session=ab&ack=0",
                body: b"",
                fields: &[("if-none-match", "0")],
            },
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "POST /lp/connect HTTP/1.1\r\nhost: 127.0.0.1:8080\r\ncontent-type: application/json\r\n\
             content-length: 18\r\n\r\n{\"channels\":[\"c\"]}\
             GET /lp/poll?session=ab&ack=0 HTTP/1.1\r\nhost: 127.0.0.1:8080\r\nif-none-match: 0\r\n\
             content-length: 0\r\n\r\n"
        );
    }

    #[test]
    fn parses_heads_once_complete() {
        let full =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_head(&full[..20]).unwrap(), None);
        let head = parse_head(full).unwrap().unwrap();
        assert_eq!(
            (head.head_len, head.status, head.body_len),
            (full.len() - 2, 200, 2)
        );
        let nchan = b"HTTP/1.1 200 OK\r\nLast-Modified: Wed, 02 Dec 2026 15:00:00 GMT\r\nEtag: 3\r\ncontent-length: 0\r\n\r\n";
        let head = parse_head(nchan).unwrap().unwrap();
        assert_eq!(
            (head.last_modified.as_deref(), head.etag.as_deref()),
            (Some("Wed, 02 Dec 2026 15:00:00 GMT"), Some("3"))
        );
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
    }
}
