//! Token lifetime: each connected client's identity, and one schedule for the whole hub of
//! when tokens need a `refresh_token` notice and when they expire.
//!
//! Why one schedule rather than a timer per connection: an idle connection's cost is what the
//! hub scales by (see `transport::ws::session`), and a timer per connection is a timer-wheel
//! entry plus a wake-up each. The schedule is an ordered set of `(when, client)` entries,
//! two per connected client, that the server's housekeeping tick (every 500 ms) pops as they
//! fall due — so notices and expiries are up to one tick late, which is documented.
//!
//! When: a token of lifetime `L` (from the moment it was verified to its `exp`) gets its
//! notice `min(30 s, max(1 s, L / 10))` before `exp` — at 90% of its life, but never less
//! than a second ahead (two housekeeping ticks, so a short token can still be refreshed); the connection ends at `exp` plus the leeway
//! (the leeway absorbs clock skew between backend and hub; a token accepted within it must
//! not be cut off at once). A client's entries leave the schedule when its identity is
//! dropped (the client is gone) or replaced (an accepted `refresh`).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use super::token::{unix_now_ms, TokenVerifier};
use super::{AuthError, Principal, Right};
use crate::protocol::ChannelName;

/// The notice comes this long before `exp` at most (later for shorter tokens: at 90% of
/// their lifetime)...
pub const NOTICE_BEFORE_MS: u64 = 30_000;

/// ...and this long before `exp` at least: two housekeeping ticks, so a client has time to
/// answer a notice that arrives a tick late.
pub const MIN_NOTICE_BEFORE_MS: u64 = 1_000;

/// A connection may refresh at most this often; more is a flood (each refresh costs a
/// signature check) and gets `rate_limited`.
pub const MIN_REFRESH_INTERVAL_MS: u64 = 1_000;

/// What falls due for a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Due {
    /// Send `refresh_token`.
    Notice,
    /// End the connection (`token_expired`).
    Expire,
}

/// One entry: Unix ms, client id, what.
type Entry = (u64, u64, Due);

/// The hub's token verifier and its schedule. One per server; shared by every identity.
#[derive(Debug)]
pub struct Tokens {
    verifier: TokenVerifier,
    schedule: Mutex<BTreeSet<Entry>>,
}

impl Tokens {
    pub fn new(verifier: TokenVerifier) -> Arc<Self> {
        Arc::new(Self {
            verifier,
            schedule: Mutex::new(BTreeSet::new()),
        })
    }

    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.verifier.verify(token)
    }

    /// The user of a genuine token, expired or not.
    pub fn user_of(&self, token: &str) -> Option<Arc<str>> {
        self.verifier.user_of(token)
    }

    /// The identity of a newly admitted client, scheduled.
    pub fn bind(self: &Arc<Self>, client_id: u64, principal: Principal) -> ClientIdentity {
        let timing = self.timing(&principal, unix_now_ms());
        self.insert(client_id, timing);
        ClientIdentity {
            client_id,
            tokens: self.clone(),
            state: Mutex::new(IdentityState {
                principal: Arc::new(principal),
                timing,
                last_refresh_ms: 0,
            }),
        }
    }

    /// Removes and returns every entry due at `now_ms`. The caller checks each against the
    /// client's identity ([`ClientIdentity::is_due`]) before acting.
    pub fn take_due(&self, now_ms: u64) -> Vec<(u64, u64, Due)> {
        let mut schedule = self.lock();
        let mut due = Vec::new();
        while let Some(&first) = schedule.first() {
            if first.0 > now_ms {
                break;
            }
            schedule.pop_first();
            due.push(first);
        }
        due
    }

    /// Entries scheduled (two per connected client with a token).
    pub fn scheduled(&self) -> usize {
        self.lock().len()
    }

    fn timing(&self, principal: &Principal, now_ms: u64) -> Timing {
        let exp_ms = principal.exp.saturating_mul(1000);
        let lifetime = exp_ms.saturating_sub(now_ms);
        Timing {
            notice_at: exp_ms
                .saturating_sub((lifetime / 10).clamp(MIN_NOTICE_BEFORE_MS, NOTICE_BEFORE_MS)),
            end_at: exp_ms + self.verifier.leeway().as_millis() as u64,
        }
    }

    fn insert(&self, client_id: u64, t: Timing) {
        let mut schedule = self.lock();
        schedule.insert((t.notice_at, client_id, Due::Notice));
        schedule.insert((t.end_at, client_id, Due::Expire));
    }

    fn remove(&self, client_id: u64, t: Timing) {
        let mut schedule = self.lock();
        schedule.remove(&(t.notice_at, client_id, Due::Notice));
        schedule.remove(&(t.end_at, client_id, Due::Expire));
    }

    fn lock(&self) -> MutexGuard<'_, BTreeSet<Entry>> {
        self.schedule.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Timing {
    notice_at: u64,
    end_at: u64,
}

/// A connected client's identity: kept on its hub `Client` for its whole life.
#[derive(Debug)]
pub struct ClientIdentity {
    client_id: u64,
    tokens: Arc<Tokens>,
    state: Mutex<IdentityState>,
}

#[derive(Debug)]
struct IdentityState {
    principal: Arc<Principal>,
    timing: Timing,
    last_refresh_ms: u64,
}

impl ClientIdentity {
    pub fn principal(&self) -> Arc<Principal> {
        self.lock().principal.clone()
    }

    pub fn check(&self, right: Right, channel: &ChannelName) -> Result<(), AuthError> {
        self.lock().principal.check(right, channel)
    }

    /// Replaces the token with a new one for the same user; returns its `exp`.
    pub fn refresh(&self, token: &str) -> Result<u64, AuthError> {
        let now = unix_now_ms();
        {
            // Counted before the signature check, so a flood of bad tokens costs nothing.
            let mut state = self.lock();
            if now.saturating_sub(state.last_refresh_ms) < MIN_REFRESH_INTERVAL_MS {
                return Err(AuthError::RefreshTooSoon);
            }
            state.last_refresh_ms = now;
        }
        let principal = self.tokens.verify(token)?;
        let mut state = self.lock();
        if principal.user != state.principal.user {
            return Err(AuthError::Forbidden(format!(
                "a refresh must be for the same user ({}), not {}",
                state.principal.user, principal.user
            )));
        }
        let exp = principal.exp;
        let timing = self.tokens.timing(&principal, now);
        self.tokens.remove(self.client_id, state.timing);
        self.tokens.insert(self.client_id, timing);
        state.timing = timing;
        state.principal = Arc::new(principal);
        Ok(exp)
    }

    /// Whether a popped schedule entry still stands (not replaced by a refresh since). For a
    /// notice, the milliseconds left until `exp`.
    pub fn is_due(&self, at: u64, due: Due, now_ms: u64) -> Option<u64> {
        let state = self.lock();
        let current = match due {
            Due::Notice => state.timing.notice_at,
            Due::Expire => state.timing.end_at,
        };
        (current == at).then(|| {
            state
                .principal
                .exp
                .saturating_mul(1000)
                .saturating_sub(now_ms)
        })
    }

    fn lock(&self) -> MutexGuard<'_, IdentityState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for ClientIdentity {
    fn drop(&mut self) {
        let timing = self.lock().timing;
        self.tokens.remove(self.client_id, timing);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::token::{sign_hs256, unix_now, TokenClaims};
    use super::*;

    fn token(sub: &str, exp: u64) -> String {
        let claims = TokenClaims {
            sub: sub.into(),
            exp,
            subscribe: vec!["a".into()],
            publish: vec![],
            info: None,
        };
        sign_hs256(b"s", &claims)
    }

    #[test]
    fn schedule_follows_identities_and_refreshes() {
        let tokens = Tokens::new(TokenVerifier::hs256(b"s", Duration::from_secs(2)));
        let exp = unix_now() + 100;
        let principal = tokens.verify(&token("ada", exp)).unwrap();
        let identity = tokens.bind(7, principal);
        assert_eq!(tokens.scheduled(), 2);
        // Notice 10 s (a tenth of 100 s) before exp; the end at exp + leeway.
        let t = identity.lock().timing;
        assert!(t.notice_at <= exp * 1000 - 9_000 && t.notice_at >= exp * 1000 - 10_000);
        assert_eq!(t.end_at, exp * 1000 + 2_000);
        assert!(tokens.take_due(t.notice_at - 1).is_empty());
        assert_eq!(
            tokens.take_due(t.notice_at),
            vec![(t.notice_at, 7, Due::Notice)]
        );
        assert!(identity
            .is_due(t.notice_at, Due::Notice, t.notice_at)
            .is_some());

        let other = identity.refresh(&token("bob", exp + 100)).unwrap_err();
        assert_eq!(other.code(), crate::protocol::ErrorCode::Forbidden);
        let flood = identity.refresh(&token("ada", exp + 100)).unwrap_err();
        assert_eq!(flood.code(), crate::protocol::ErrorCode::RateLimited);
        identity.lock().last_refresh_ms = 0;
        assert_eq!(
            identity.refresh(&token("ada", exp + 100)).unwrap(),
            exp + 100
        );
        assert!(
            identity.is_due(t.end_at, Due::Expire, t.end_at).is_none(),
            "replaced"
        );
        assert_eq!(tokens.scheduled(), 2);
        drop(identity);
        assert_eq!(tokens.scheduled(), 0);
    }
}
