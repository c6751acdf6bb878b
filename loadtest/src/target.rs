//! Where the load goes: the hub's loopback address (anything else is refused), the pool of
//! 127.0.0.x source addresses client sockets are spread over, and the file-descriptor budget.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use reqwest::Url;
use tokio::net::{TcpSocket, TcpStream};

/// Descriptors kept back from the budget for the runtime, HTTP clients, stdout, /proc reads.
pub const FD_RESERVE: u64 = 200;

/// The hub under test.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://host:port` without a trailing slash.
    pub base: String,
    /// The `Host` (`host:port`) used in WebSocket URLs.
    pub authority: String,
    pub addr: SocketAddr,
    sources: Vec<IpAddr>,
    /// Generic mode: another hub, driven through URL templates (see `Templates`).
    pub generic: Option<Templates>,
    /// Scale-out: the base URL of another node of the cluster that publishes go to.
    publish_node: Option<String>,
}

/// Generic mode: the subscribe and publish URLs of a hub that is not crier, each with a
/// `{channel}` placeholder. Frames are the published bodies as-is (no crier protocol).
#[derive(Debug, Clone)]
pub struct Templates {
    /// `ws://HOST:PORT/…{channel}…`, for WebSocket subscribers.
    pub ws: Option<String>,
    /// `http://HOST:PORT/…{channel}…`, for long-poll subscribers (`GET` again and again).
    pub lp: Option<String>,
    /// `http://HOST:PORT/…{channel}…`
    pub publish: String,
    /// Where the publish URL points (checked to be loopback).
    pub publish_addr: SocketAddr,
}

const PLACEHOLDER: &str = "{channel}";

/// Resolves `host:port` of a URL and refuses anything that is not loopback only; prefers IPv4.
fn loopback_addr(what: &str, parsed: &Url) -> Result<SocketAddr> {
    let host = parsed
        .host_str()
        .with_context(|| format!("{what} has no host"))?;
    let port = parsed.port_or_known_default().unwrap_or(80);
    let host_for_lookup = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = (host_for_lookup, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {host}"))?
        .collect();
    if addrs.is_empty() {
        bail!("{host} resolves to no address");
    }
    if let Some(bad) = addrs.iter().find(|a| !a.ip().is_loopback()) {
        bail!(
            "refusing to load {bad}: crier-loadtest only targets loopback addresses \
             (127.0.0.0/8 or ::1)"
        );
    }
    // Prefer IPv4: the source-address spread works within 127.0.0.0/8.
    Ok(addrs
        .iter()
        .find(|a| a.is_ipv4())
        .copied()
        .unwrap_or(addrs[0]))
}

impl Target {
    /// Parses `--url` and refuses anything that does not resolve to loopback only.
    pub fn parse(url: &str, source_addrs: usize) -> Result<Self> {
        let parsed = Url::parse(url).with_context(|| format!("--url {url:?} is not a URL"))?;
        if parsed.scheme() != "http" {
            bail!(
                "--url must be http://HOST:PORT (got scheme {:?})",
                parsed.scheme()
            );
        }
        let addr = loopback_addr("--url", &parsed)?;
        let sources = if addr.is_ipv4() {
            source_pool(source_addrs)
        } else {
            vec![IpAddr::from(std::net::Ipv6Addr::LOCALHOST)]
        };
        Ok(Self {
            base: format!("http://{}", addr),
            authority: addr.to_string(),
            addr,
            sources,
            generic: None,
            publish_node: None,
        })
    }

    /// Scale-out: publishes go to `url`, another node of the same cluster (loopback only).
    pub fn with_publish_node(mut self, url: &str) -> Result<Self> {
        let parsed =
            Url::parse(url).with_context(|| format!("--publish-node {url:?} is not a URL"))?;
        let addr = loopback_addr("--publish-node", &parsed)?;
        self.publish_node = Some(format!("http://{addr}"));
        Ok(self)
    }

    /// Generic mode: WebSocket subscribers connect to `ws_template`, long-poll subscribers
    /// `GET` `lp_template`, publishers POST to `publish_template` (`{channel}` replaced in
    /// each); at least one subscriber template, the two on one address, all loopback.
    pub fn parse_generic(
        ws_template: Option<&str>,
        lp_template: Option<&str>,
        publish_template: &str,
        source_addrs: usize,
    ) -> Result<Self> {
        let templates = [
            ("--ws-template", ws_template, "ws"),
            ("--lp-template", lp_template, "http"),
            ("--publish-template", Some(publish_template), "http"),
        ];
        let mut addrs = Vec::new();
        for (flag, template, scheme) in templates {
            let Some(t) = template else { continue };
            if !t.contains(PLACEHOLDER) {
                bail!("{flag} {t:?} has no {PLACEHOLDER} placeholder");
            }
            let url = Url::parse(t).with_context(|| format!("{flag} {t:?} is not a URL"))?;
            if url.scheme() != scheme {
                bail!(
                    "{flag} must be {scheme}://HOST:PORT/… (got scheme {:?})",
                    url.scheme()
                );
            }
            addrs.push(loopback_addr(flag, &url)?);
        }
        let publish_addr = addrs.pop().context("a publish template")?;
        let addr = match addrs.as_slice() {
            [] => bail!("generic mode needs --ws-template or --lp-template"),
            [one] => *one,
            [ws, lp] if ws == lp => *ws,
            _ => bail!("--ws-template and --lp-template must name the same address"),
        };
        let mut target = Self::parse(&format!("http://{addr}"), source_addrs)?;
        target.generic = Some(Templates {
            ws: ws_template.map(str::to_owned),
            lp: lp_template.map(str::to_owned),
            publish: publish_template.to_owned(),
            publish_addr,
        });
        Ok(target)
    }

    /// Which transports generic mode can drive: the ones with a template.
    pub fn generic_transports(&self) -> Option<(bool, bool)> {
        self.generic
            .as_ref()
            .map(|t| (t.ws.is_some(), t.lp.is_some()))
    }

    /// Generic mode: the path and query a long-poll subscriber of `channel` requests.
    pub fn lp_path(&self, channel: &str) -> String {
        let url = self
            .generic
            .as_ref()
            .and_then(|t| t.lp.as_deref())
            .map(|t| t.replace(PLACEHOLDER, channel))
            .and_then(|u| Url::parse(&u).ok());
        match url {
            Some(url) => match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_owned(),
            },
            None => format!("/lp/poll?channel={channel}"),
        }
    }

    pub fn is_generic(&self) -> bool {
        self.generic.is_some()
    }

    /// The WebSocket URL a fresh subscriber of `channel` connects to.
    pub fn subscribe_url(&self, channel: &str) -> String {
        match &self.generic {
            Some(t) => {
                t.ws.as_deref()
                    .unwrap_or_default()
                    .replace(PLACEHOLDER, channel)
            }
            None => self.ws_url(&format!("/ws?channel={channel}")),
        }
    }

    /// Where a message for `channel` is POSTed.
    pub fn publish_url(&self, channel: &str) -> String {
        match &self.generic {
            Some(t) => t.publish.replace(PLACEHOLDER, channel),
            None => format!(
                "{}/api/publish/{channel}",
                self.publish_node.as_deref().unwrap_or(&self.base)
            ),
        }
    }

    #[cfg(test)]
    pub fn sources(&self) -> &[IpAddr] {
        &self.sources
    }

    /// The source address for the `n`th client.
    pub fn source_for(&self, n: usize) -> IpAddr {
        self.sources[n % self.sources.len()]
    }

    pub fn ws_url(&self, path_and_query: &str) -> String {
        format!("ws://{}{}", self.authority, path_and_query)
    }

    pub fn http_url(&self, path_and_query: &str) -> String {
        format!("{}{}", self.base, path_and_query)
    }

    /// A TCP connection to the hub from a chosen source address. `recv_buffer` shrinks the
    /// socket's receive buffer (slow clients: the hub's queue fills sooner).
    pub async fn connect_tcp(
        &self,
        source: IpAddr,
        recv_buffer: Option<u32>,
        timeout: Duration,
    ) -> Result<TcpStream> {
        let socket = if self.addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // Bind first so the kernel picks the ephemeral port per source address: one source
        // address has only ~28k ports, several multiply that.
        socket.bind(SocketAddr::new(source, 0))?;
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size)?;
        }
        let stream = tokio::time::timeout(timeout, socket.connect(self.addr))
            .await
            .context("TCP connect timed out")??;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// 127.0.0.1 .. 127.0.0.n: every Linux loopback interface answers for all of 127/8.
fn source_pool(n: usize) -> Vec<IpAddr> {
    (1..=n.clamp(1, 250) as u8)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
        .collect()
}

/// Raises the soft open-file limit to the hard one; returns the limit now in force.
pub fn raise_nofile_limit() -> Result<u64> {
    let (soft, hard) = rlimit::Resource::NOFILE.get()?;
    if soft < hard {
        rlimit::Resource::NOFILE.set(hard, hard)?;
    }
    Ok(rlimit::Resource::NOFILE.get()?.0)
}

/// Refuses a run that needs more sockets than this process can hold.
/// `breakdown` says where the sockets go.
pub fn check_fd_budget(
    sockets_needed: u64,
    breakdown: &dyn std::fmt::Display,
    limit: u64,
) -> Result<()> {
    let cap = limit.saturating_sub(FD_RESERVE);
    if sockets_needed > cap {
        bail!(
            "this run needs {sockets_needed} sockets at its peak ({breakdown}) but one \
             crier-loadtest process can hold at most {cap} (open-file limit {limit} minus \
             {FD_RESERVE} reserved); lower the client count by {} or run several \
             crier-loadtest processes side by side",
            sockets_needed - cap
        );
    }
    Ok(())
}

/// Round-robin counter for picking source addresses.
#[derive(Debug, Default)]
pub struct Spread(AtomicUsize);

impl Spread {
    pub fn next(&self) -> usize {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_loopback() {
        let t = Target::parse("http://127.0.0.1:8080", 4).unwrap();
        assert_eq!(t.base, "http://127.0.0.1:8080");
        assert_eq!(
            t.ws_url("/ws?channel=a"),
            "ws://127.0.0.1:8080/ws?channel=a"
        );
        assert_eq!(t.sources().len(), 4);
        assert_eq!(t.source_for(5), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        assert!(Target::parse("http://localhost:9000/", 1).is_ok());
        assert!(Target::parse("http://127.1.2.3:80", 1).is_ok());
    }

    #[test]
    fn refuses_non_loopback() {
        for url in [
            "http://10.0.0.1:8080",
            "http://192.168.1.1",
            "http://8.8.8.8:80",
            "https://127.0.0.1:8080",
            "not a url",
        ] {
            assert!(Target::parse(url, 1).is_err(), "{url} accepted");
        }
        let err = Target::parse("http://10.0.0.1:8080", 1).unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
    }

    #[test]
    fn generic_templates() {
        let t = Target::parse_generic(
            Some("ws://127.0.0.1:8081/sub/{channel}"),
            Some("http://127.0.0.1:8081/lp/{channel}?x=1"),
            "http://127.0.0.1:8082/pub?id={channel}",
            2,
        )
        .unwrap();
        assert_eq!(t.lp_path("c1"), "/lp/c1?x=1");
        assert!(t.is_generic());
        assert_eq!(t.addr, "127.0.0.1:8081".parse().unwrap());
        assert_eq!(t.subscribe_url("c1"), "ws://127.0.0.1:8081/sub/c1");
        assert_eq!(t.publish_url("c1"), "http://127.0.0.1:8082/pub?id=c1");
        let crier = Target::parse("http://127.0.0.1:8080", 1).unwrap();
        assert_eq!(crier.subscribe_url("a"), "ws://127.0.0.1:8080/ws?channel=a");
        assert_eq!(
            crier.publish_url("a"),
            "http://127.0.0.1:8080/api/publish/a"
        );
        for (ws, publish) in [
            ("ws://127.0.0.1:1/sub", "http://127.0.0.1:1/pub/{channel}"),
            ("ws://10.0.0.1:1/{channel}", "http://127.0.0.1:1/{channel}"),
            ("ws://127.0.0.1:1/{channel}", "http://10.0.0.1:1/{channel}"),
            (
                "http://127.0.0.1:1/{channel}",
                "http://127.0.0.1:1/{channel}",
            ),
            (
                "ws://127.0.0.1:1/{channel}",
                "https://127.0.0.1:1/{channel}",
            ),
        ] {
            assert!(
                Target::parse_generic(Some(ws), None, publish, 1).is_err(),
                "{ws} {publish}"
            );
        }
        let publish = "http://127.0.0.1:1/pub/{channel}";
        let lp_only = Target::parse_generic(None, Some("http://127.0.0.1:2/{channel}"), publish, 1);
        assert_eq!(lp_only.unwrap().addr, "127.0.0.1:2".parse().unwrap());
        for (ws, lp) in [
            (None, None),
            (None, Some("ws://127.0.0.1:2/{channel}")),
            (None, Some("http://127.0.0.1:2/sub")),
            (None, Some("http://10.0.0.1:2/{channel}")),
            (
                Some("ws://127.0.0.1:2/{channel}"),
                Some("http://127.0.0.1:3/{channel}"),
            ),
        ] {
            assert!(
                Target::parse_generic(ws, lp, publish, 1).is_err(),
                "{ws:?} {lp:?}"
            );
        }
    }

    #[test]
    fn fd_budget_states_the_cap() {
        assert!(check_fd_budget(19_800, &"", 20_000).is_ok());
        let err = check_fd_budget(25_000, &"25,000 of them", 20_000)
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs 25000 sockets"), "{err}");
        assert!(err.contains("(25,000 of them)"), "{err}");
        assert!(err.contains("at most 19800"), "{err}");
        assert!(err.contains("by 5200"), "{err}");
    }
}
