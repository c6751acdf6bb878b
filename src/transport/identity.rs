//! Identity at the transports: authenticating a connecting client from its token, binding
//! the identity to its hub client, long-poll requests proven by the same user, and the
//! housekeeping step that sends `refresh_token` notices and ends expired connections.
//!
//! In open mode (no token secret or key) every client is admitted without an identity and
//! every check passes.

use std::sync::Arc;

use hyper::header::{self, HeaderMap};

use crate::auth::{api_key, AuthError, Due, OriginPolicy, Principal, Right, Tokens};
use crate::hub::{ChannelName, Client, ClientId, DisconnectReason, Hub, HubConfig, SubscribeRule};
use crate::protocol::{query, server};

use super::TransportError;

/// Who may connect: the hub's token mode (`None` inside is open mode) and the browser
/// origins it serves. Cheap to clone.
#[derive(Clone, Default)]
pub struct Identity {
    tokens: Option<Arc<Tokens>>,
    origins: Arc<OriginPolicy>,
}

impl Identity {
    pub fn new(tokens: Option<Arc<Tokens>>, origins: OriginPolicy) -> Self {
        Self {
            tokens,
            origins: Arc::new(origins),
        }
    }

    /// A browser request (one with `Origin`) must come from a page the hub serves.
    pub fn check_origin(&self, headers: &HeaderMap) -> Result<(), TransportError> {
        let value = |name| {
            headers
                .get(name)
                .map(|v: &header::HeaderValue| v.as_bytes())
        };
        Ok(self
            .origins
            .check(value(header::ORIGIN), value(header::HOST))?)
    }

    pub fn is_open(&self) -> bool {
        self.tokens.is_none()
    }

    /// A connecting client's principal: `None` in open mode (a token given anyway is
    /// ignored); in token mode the token is required and must verify.
    pub fn authenticate(&self, token: Option<&str>) -> Result<Option<Principal>, TransportError> {
        let Some(tokens) = &self.tokens else {
            return Ok(None);
        };
        let token = token.ok_or_else(|| {
            AuthError::Unauthorized(
                "a token is required: `?token=`, `\"token\"` in the connect body, or `Authorization: Bearer`"
                    .into(),
            )
        })?;
        Ok(Some(tokens.verify(token)?))
    }

    /// Binds an admitted client to its principal (and so to the lifetime schedule), then
    /// announces it to the hub (`Connected`, the user index): the user must be attached
    /// before anyone is told who connected.
    pub fn attach(&self, hub: &Hub, client: &Client, principal: Option<Principal>) {
        if let (Some(tokens), Some(principal)) = (&self.tokens, principal) {
            client.set_identity(tokens.bind(client.id.0, principal));
        }
        hub.admitted(client);
    }

    /// Whether the bearer of `token` is the user `client` belongs to (always, in open mode).
    /// A missing, forged or other user's token is not. An expired one still proves the
    /// user: the session itself ends when its token expires, and its last poll must be able
    /// to collect the `token_expired` frame.
    pub fn owns(&self, client: &Client, token: Option<&str>) -> bool {
        let (Some(tokens), Some(identity)) = (&self.tokens, client.identity()) else {
            return self.tokens.is_none();
        };
        token
            .and_then(|t| tokens.user_of(t))
            .is_some_and(|user| user == identity.principal().user)
    }

    /// Sends due `refresh_token` notices and ends connections whose token expired. Run by the
    /// server's housekeeping tick; returns how many connections it ended.
    pub fn tick(&self, hub: &Hub) -> usize {
        let Some(tokens) = &self.tokens else {
            return 0;
        };
        let now = crate::auth::token::unix_now_ms();
        let mut ended = 0;
        for (at, id, due) in tokens.take_due(now) {
            let Some(client) = hub.client(ClientId(id)) else {
                continue;
            };
            let Some(expires_in_ms) = client.identity().and_then(|i| i.is_due(at, due, now)) else {
                continue;
            };
            match due {
                Due::Notice => hub.send(&client, server::refresh_token(expires_in_ms)),
                Due::Expire => {
                    if hub.disconnect(client.id, DisconnectReason::TokenExpired) {
                        ended += 1;
                    }
                }
            }
        }
        ended
    }
}

/// Whether a client (with its principal; `None` in open mode) may subscribe to or publish on
/// `channel`: a user's private channel (`…#<user>`) is readable by that user's tokens alone,
/// in any mode; a namespace may let anyone subscribe; otherwise, with tokens on, the token's
/// rights decide. (Whether clients may publish at all is the hub's `--client-publish` and
/// backend-only namespaces, checked by `Hub::client_publish`.)
pub fn authorize(
    config: &HubConfig,
    principal: Option<&Principal>,
    right: Right,
    channel: &ChannelName,
) -> Result<(), AuthError> {
    if right == Right::Subscribe {
        if let Some(owner) = channel.owner() {
            return match principal {
                Some(p) if &*p.user == owner => Ok(()),
                _ => Err(AuthError::Forbidden(format!(
                    "{channel} is the private channel of user {owner}: only a token with `sub` {owner} may read it"
                ))),
            };
        }
        let open = config
            .namespace(channel)
            .is_some_and(|ns| ns.subscribe == SubscribeRule::Anyone);
        if open {
            return Ok(());
        }
    }
    match principal {
        Some(principal) => principal.check(right, channel),
        None => Ok(()),
    }
}

/// Channels asked for at connect must all be readable by the client.
pub fn check_channels(
    config: &HubConfig,
    principal: Option<&Principal>,
    channels: &[ChannelName],
) -> Result<(), TransportError> {
    for channel in channels {
        authorize(config, principal, Right::Subscribe, channel)?;
    }
    Ok(())
}

/// The token of a request: `Authorization: Bearer …`, else `?token=`.
pub fn token_of(query: Option<&str>, headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| api_key::bearer(v.as_bytes()))
        .and_then(|t| std::str::from_utf8(t).ok())
        .map(str::to_owned)
        .or_else(|| query.and_then(query::token_from_query))
}
