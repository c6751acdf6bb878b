//! Backends' credentials: `--api-key` guards `/api/*` and `/metrics`.
//!
//! With keys configured, a request must carry `Authorization: Bearer <key>` (401
//! `unauthorized` without one, 403 `forbidden` with a wrong one), compared in constant time so
//! response timing does not leak how much of a guess was right. With none configured, only
//! peers on a loopback address are answered (403 otherwise): a hub exposed on a public address
//! without keys must never be an open relay for anyone to publish through.

use std::net::IpAddr;

use subtle::ConstantTimeEq;

use super::AuthError;

#[derive(Clone, Default)]
pub struct BackendGuard {
    keys: Vec<Vec<u8>>,
    /// Test knob (`--treat-as-remote`): loopback addresses to treat as remote peers, so the
    /// loopback rule can be tested from one machine (e.g. a client bound to 127.0.0.2).
    remote: Vec<IpAddr>,
}

impl std::fmt::Debug for BackendGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendGuard")
            .field("keys", &self.keys.len())
            .field("remote", &self.remote)
            .finish()
    }
}

impl BackendGuard {
    pub fn new(keys: impl IntoIterator<Item = String>, remote: Vec<IpAddr>) -> Self {
        Self {
            keys: keys
                .into_iter()
                .map(|k| k.trim().as_bytes().to_vec())
                .filter(|k| !k.is_empty())
                .collect(),
            remote,
        }
    }

    pub fn has_keys(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Whether a request with this `Authorization` header value from this peer may use the
    /// backend API. An unknown peer counts as remote.
    pub fn check(
        &self,
        authorization: Option<&[u8]>,
        peer: Option<IpAddr>,
    ) -> Result<Backend, AuthError> {
        if self.keys.is_empty() {
            return if peer.is_some_and(|ip| self.is_loopback(ip)) {
                Ok(Backend(0))
            } else {
                Err(AuthError::Forbidden(
                    "no --api-key is configured: the backend API answers loopback peers only"
                        .into(),
                ))
            };
        }
        let presented = authorization.and_then(bearer).ok_or_else(|| {
            AuthError::Unauthorized("missing `Authorization: Bearer <api key>`".into())
        })?;
        // Every key is compared (no early exit), each in constant time for its length; which
        // one matched is only learnt by someone who holds it.
        let mut matched = None;
        for (i, key) in self.keys.iter().enumerate() {
            if bool::from(key.ct_eq(presented)) {
                matched = Some(Backend(i as u32 + 1));
            }
        }
        matched.ok_or_else(|| AuthError::Forbidden("wrong API key".into()))
    }

    fn is_loopback(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_loopback() && !self.remote.contains(&ip)
    }
}

/// Which backend a request of the backend API came from: the number of its API key (from 1),
/// or 0 for a loopback peer of a hub without keys. Per-backend limits are keyed by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Backend(pub u32);

/// The credentials of `Bearer <credentials>` (scheme case-insensitive).
pub fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let rest = rest.trim_ascii();
    (!rest.is_empty()).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn without_keys_only_loopback_peers_are_answered() {
        let guard = BackendGuard::new(Vec::new(), vec!["127.0.0.2".parse().unwrap()]);
        assert!(guard.check(None, ip("127.0.0.1")).is_ok());
        assert!(guard.check(None, ip("::1")).is_ok());
        assert!(guard.check(None, ip("::ffff:127.0.0.1")).is_ok());
        for remote in [
            "10.0.0.1",
            "192.168.1.2",
            "2001:db8::1",
            "127.0.0.2",
            "0.0.0.0",
        ] {
            let e = guard.check(Some(b"Bearer x"), ip(remote)).unwrap_err();
            assert_eq!(e.code(), crate::protocol::ErrorCode::Forbidden, "{remote}");
        }
        assert!(
            guard.check(None, None).is_err(),
            "an unknown peer is remote"
        );
    }

    #[test]
    fn with_keys_every_peer_needs_one() {
        let guard = BackendGuard::new(["k1".to_owned(), "k2-long".to_owned()], Vec::new());
        use crate::protocol::ErrorCode::{Forbidden, Unauthorized};
        let code = |h: Option<&[u8]>| guard.check(h, ip("127.0.0.1")).err().map(|e| e.code());
        assert_eq!(code(None), Some(Unauthorized));
        assert_eq!(code(Some(b"Basic azE=")), Some(Unauthorized));
        assert_eq!(code(Some(b"Bearer ")), Some(Unauthorized));
        assert_eq!(code(Some(b"Bearer k3")), Some(Forbidden));
        assert_eq!(code(Some(b"Bearer k")), Some(Forbidden));
        assert_eq!(code(Some(b"Bearer k1")), None);
        assert_eq!(code(Some(b"bearer k2-long")), None);
        assert!(guard.check(Some(b"Bearer k1"), ip("203.0.113.9")).is_ok());
    }
}
