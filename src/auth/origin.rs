//! Browser origins: which web pages may open a WebSocket or make long-poll requests.
//!
//! Why: a browser lets any page open a WebSocket to any host, and sends the page's `Origin`
//! with it. Without a check, a hostile site could connect to the hub as its visitor (cross-site
//! WebSocket hijacking) and read what that visitor's network position (or an open-mode hub)
//! gives access to. Only browsers send `Origin`; a request without one (a backend, a mobile
//! app, curl) is not a browser's and is not checked here.
//!
//! Allowed: the hub's own origin (the `Origin` names the request's `Host`), and then either the
//! `--allowed-origins` list (exact origins such as `https://app.example.com`, or host patterns
//! such as `*.example.com`, any scheme and port) or, without a list, `localhost`, `127.0.0.1`
//! and `[::1]` on any port, so the demo works from a dev server. Anything else — including the
//! `null` origin of sandboxed frames and `file:` pages — is `403 origin_forbidden`.

use super::AuthError;

#[derive(Clone, Debug, Default)]
pub struct OriginPolicy {
    /// Empty: the default (same origin plus local hosts).
    allowed: Vec<String>,
}

impl OriginPolicy {
    pub fn new(allowed: impl IntoIterator<Item = String>) -> Self {
        Self {
            allowed: allowed
                .into_iter()
                .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                .filter(|o| !o.is_empty())
                .collect(),
        }
    }

    /// Checks a request's `Origin` against its `Host` and the policy.
    pub fn check(&self, origin: Option<&[u8]>, host: Option<&[u8]>) -> Result<(), AuthError> {
        let Some(origin) = origin else {
            return Ok(());
        };
        let origin = std::str::from_utf8(origin)
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if self.allows(&origin, host) {
            Ok(())
        } else {
            Err(AuthError::OriginForbidden(format!(
                "origin {} may not connect to this hub (see --allowed-origins)",
                truncate(&origin)
            )))
        }
    }

    fn allows(&self, origin: &str, host: Option<&[u8]>) -> bool {
        let Some((_scheme, authority)) = origin.split_once("://") else {
            return false; // `null`, or not an origin at all
        };
        if authority.is_empty() || authority.contains('/') {
            return false;
        }
        let same = host
            .and_then(|h| std::str::from_utf8(h).ok())
            .is_some_and(|h| h.trim().eq_ignore_ascii_case(authority));
        if same {
            return true;
        }
        let hostname = strip_port(authority);
        if self.allowed.is_empty() {
            return matches!(hostname, "localhost" | "127.0.0.1" | "[::1]");
        }
        self.allowed
            .iter()
            .any(|pattern| match pattern.strip_prefix("*.") {
                Some(domain) => hostname
                    .strip_suffix(domain)
                    .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
                None => pattern == origin,
            })
    }
}

/// `host:port` → `host` (IPv6 literals keep their brackets).
fn strip_port(authority: &str) -> &str {
    if let Some(end) = authority.find(']') {
        return &authority[..=end];
    }
    authority.split(':').next().unwrap_or(authority)
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(100) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(policy: &OriginPolicy, origin: &str, host: &str) -> bool {
        policy
            .check(Some(origin.as_bytes()), Some(host.as_bytes()))
            .is_ok()
    }

    #[test]
    fn default_allows_same_origin_and_local_hosts_only() {
        let p = OriginPolicy::default();
        assert!(
            p.check(None, Some(b"hub:8080")).is_ok(),
            "no Origin: not a browser"
        );
        assert!(ok(&p, "https://hub.example.com", "hub.example.com"));
        assert!(ok(&p, "http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(ok(&p, "http://localhost:5173", "127.0.0.1:8080"));
        assert!(ok(&p, "http://[::1]:3000", "127.0.0.1:8080"));
        assert!(!ok(&p, "https://evil.example", "hub.example.com"));
        assert!(!ok(
            &p,
            "https://hub.example.com.evil.example",
            "hub.example.com"
        ));
        assert!(!ok(&p, "null", "hub.example.com"));
        assert!(!ok(&p, "http://localhost.evil.example", "hub:1"));
    }

    #[test]
    fn a_list_replaces_the_local_hosts() {
        let p = OriginPolicy::new([
            "https://app.example.com/".to_owned(),
            "*.example.org".to_owned(),
        ]);
        assert!(ok(&p, "https://app.example.com", "hub"));
        assert!(
            !ok(&p, "http://app.example.com", "hub"),
            "exact origins include the scheme"
        );
        assert!(ok(&p, "https://a.example.org", "hub"));
        assert!(ok(&p, "http://a.b.example.org:8443", "hub"));
        assert!(
            !ok(&p, "https://example.org", "hub"),
            "the pattern needs a subdomain"
        );
        assert!(!ok(&p, "https://badexample.org", "hub"));
        assert!(!ok(&p, "http://localhost:1", "hub"));
        assert!(ok(&p, "https://hub", "hub"), "same origin always");
    }
}
