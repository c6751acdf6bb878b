//! Identity: who may use the hub, and for what. No HTTP types beyond header values.
//!
//! - [`api_key`] — backends: `Authorization: Bearer <api key>` on `/api/*` and `/metrics`
//!   (compared in constant time), or, with no key configured, loopback peers only.
//! - [`token`] — clients: a JWT signed by the backend, verified into a [`Principal`] (user,
//!   rights, info). Bounded in size, one algorithm per hub (no `none`, no algorithm
//!   confusion), `exp` required.
//! - [`origin`] — which web pages (`Origin`) may open a WebSocket or long-poll session.
//! - [`lifetime`] — a connected client's identity ([`ClientIdentity`], kept on its hub
//!   `Client`): its rights checks, its `refresh`, and the one schedule ([`Tokens`]) that says
//!   when each token needs a `refresh_token` notice and when it expires — read by the
//!   server's housekeeping tick, so no connection has a timer of its own for this.
//!
//! With no token secret or public key the hub runs in open mode: no client carries an
//! identity and every check here is skipped.

pub mod api_key;
pub mod lifetime;
pub mod origin;
pub mod token;

use std::sync::Arc;

use serde_json::value::RawValue;

use crate::protocol::{ChannelName, ErrorCode};

pub use api_key::{Backend, BackendGuard};
pub use lifetime::{ClientIdentity, Due, Tokens};
pub use origin::OriginPolicy;
pub use token::{TokenClaims, TokenVerifier, MAX_TOKEN_LEN};

/// A refusal, with its documented code.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    /// No credentials, or credentials that prove nothing (bad signature, expired, too large).
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials that do not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// A `refresh` sooner than [`lifetime::MIN_REFRESH_INTERVAL_MS`] after the last one.
    #[error("at most one refresh per second; this one was ignored")]
    RefreshTooSoon,
    /// A browser request from a page the hub does not serve.
    #[error("{0}")]
    OriginForbidden(String),
}

impl AuthError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Unauthorized(_) => ErrorCode::Unauthorized,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::RefreshTooSoon => ErrorCode::RateLimited,
            Self::OriginForbidden(_) => ErrorCode::OriginForbidden,
        }
    }
}

/// Channel patterns, as `--client-publish` writes them: exact names, or prefixes ending in
/// `*` (`*` alone matches every channel; an empty list none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelPatterns(Vec<String>);

impl ChannelPatterns {
    pub fn new(patterns: impl IntoIterator<Item = String>) -> Self {
        Self(
            patterns
                .into_iter()
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect(),
        )
    }

    pub fn matches(&self, channel: &ChannelName) -> bool {
        let name = channel.as_str();
        self.0.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == p,
        })
    }
}

/// What a client may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Right {
    Subscribe,
    Publish,
}

impl Right {
    fn as_str(self) -> &'static str {
        match self {
            Self::Subscribe => "subscribe to",
            Self::Publish => "publish to",
        }
    }
}

/// A verified identity: the token's `sub`, its rights, its `info`, and when it expires.
#[derive(Debug)]
pub struct Principal {
    pub user: Arc<str>,
    pub subscribe: ChannelPatterns,
    pub publish: ChannelPatterns,
    /// The token's `info` object as written (display name, avatar…), if any.
    pub info: Option<Box<RawValue>>,
    /// Unix seconds.
    pub exp: u64,
}

impl Principal {
    pub fn check(&self, right: Right, channel: &ChannelName) -> Result<(), AuthError> {
        let patterns = match right {
            Right::Subscribe => &self.subscribe,
            Right::Publish => &self.publish,
        };
        if patterns.matches(channel) {
            Ok(())
        } else {
            Err(AuthError::Forbidden(format!(
                "the token of user {} may not {} {channel}",
                self.user,
                right.as_str()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_exact_names_or_prefixes() {
        let p = ChannelPatterns::new(["chat:*".to_owned(), "news".to_owned(), " ".to_owned()]);
        let name = |s| ChannelName::parse(s).unwrap();
        assert!(p.matches(&name("chat:lobby")));
        assert!(p.matches(&name("news")));
        assert!(!p.matches(&name("newsroom")));
        assert!(!p.matches(&name("chat")));
        assert!(ChannelPatterns::new(["*".to_owned()]).matches(&name("x")));
        assert!(!ChannelPatterns::default().matches(&name("x")));
    }
}
