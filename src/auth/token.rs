//! Connection tokens: JWTs the backend signs, verified here into a [`Principal`].
//!
//! One algorithm per hub: HS256 with `--token-secret`, or RS256 / ES256 / EdDSA with the
//! public key of `--token-public-key` (the algorithm follows the key). A token whose header
//! names another algorithm is refused — this is what stops algorithm confusion (an HS256
//! token "signed" with the public key) and `alg: none` (which the parser does not even know).
//!
//! Claims: `sub` (the user, required), `exp` (Unix seconds, required: a token that never
//! expires is refused), `subscribe` and `publish` (lists of channel patterns; absent = none)
//! and `info` (any JSON object, kept as written). A token is at most [`MAX_TOKEN_LEN`] bytes,
//! checked before anything is decoded.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{AuthError, ChannelPatterns, Principal};

/// Longest token accepted, in bytes. Generous for a JWT with a few dozen patterns and a
/// display name; small enough that a hostile one costs nothing to refuse.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Longest `sub`, in bytes (it names a user in logs and, later, in channel names).
pub const MAX_SUB_LEN: usize = 128;

/// The claims crier reads (and `crier token` writes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenClaims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscribe: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<Box<RawValue>>,
}

/// Verifies tokens with the hub's one key and algorithm.
#[derive(Clone)]
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
    /// The same, except that an expired token passes: for proving who owns a long-poll
    /// session (the session itself ends when its token expires, see `lifetime`).
    validation_any_exp: Validation,
    leeway: Duration,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("algorithms", &self.validation.algorithms)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// HS256 with a shared secret.
    pub fn hs256(secret: &[u8], leeway: Duration) -> Self {
        Self::new(DecodingKey::from_secret(secret), Algorithm::HS256, leeway)
    }

    /// RS256, ES256 or EdDSA, chosen by the PEM public key's type.
    pub fn from_public_key_pem(pem: &[u8], leeway: Duration) -> Result<Self, String> {
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(Self::new(key, Algorithm::RS256, leeway));
        }
        if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            return Ok(Self::new(key, Algorithm::ES256, leeway));
        }
        if let Ok(key) = DecodingKey::from_ed_pem(pem) {
            return Ok(Self::new(key, Algorithm::EdDSA, leeway));
        }
        Err("not a PEM public key (RSA, EC P-256 or Ed25519)".into())
    }

    fn new(key: DecodingKey, algorithm: Algorithm, leeway: Duration) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.algorithms = vec![algorithm];
        validation.leeway = leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let mut validation_any_exp = validation.clone();
        validation_any_exp.validate_exp = false;
        Self {
            key,
            validation,
            validation_any_exp,
            leeway,
        }
    }

    pub fn leeway(&self) -> Duration {
        self.leeway
    }

    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.verify_with(token, &self.validation)
    }

    /// The user of a token that is genuine but may have expired.
    pub fn user_of(&self, token: &str) -> Option<std::sync::Arc<str>> {
        self.verify_with(token, &self.validation_any_exp)
            .ok()
            .map(|p| p.user)
    }

    fn verify_with(&self, token: &str, validation: &Validation) -> Result<Principal, AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Unauthorized(format!(
                "token is longer than {MAX_TOKEN_LEN} bytes"
            )));
        }
        let data = jsonwebtoken::decode::<TokenClaims>(token, &self.key, validation)
            .map_err(|e| AuthError::Unauthorized(format!("invalid token: {}", describe(&e))))?;
        let claims = data.claims;
        if claims.sub.is_empty() || claims.sub.len() > MAX_SUB_LEN {
            return Err(AuthError::Unauthorized(format!(
                "invalid token: `sub` must be 1-{MAX_SUB_LEN} bytes"
            )));
        }
        if claims
            .info
            .as_ref()
            .is_some_and(|i| !i.get().starts_with('{'))
        {
            return Err(AuthError::Unauthorized(
                "invalid token: `info` must be a JSON object".into(),
            ));
        }
        Ok(Principal {
            user: claims.sub.into(),
            subscribe: ChannelPatterns::new(claims.subscribe),
            publish: ChannelPatterns::new(claims.publish),
            info: claims.info,
            exp: claims.exp,
        })
    }
}

/// What went wrong, in words that help a backend developer and tell an attacker nothing new.
fn describe(e: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => "expired",
        K::ImmatureSignature => "not valid yet (nbf)",
        K::InvalidSignature => "bad signature",
        K::InvalidAlgorithm => "wrong algorithm for this hub",
        K::MissingRequiredClaim(_) => "missing `sub` or `exp`",
        K::InvalidToken | K::Base64(_) | K::Json(_) | K::Utf8(_) => "malformed",
        _ => "rejected",
    }
}

/// Signs HS256 claims (for `crier token`, tests and examples).
pub fn sign_hs256(secret: &[u8], claims: &TokenClaims) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap_or_default()
}

/// Now, in Unix seconds.
pub fn unix_now() -> u64 {
    unix_now_ms() / 1000
}

/// Now, in Unix milliseconds.
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test-secret";

    fn claims(exp: u64) -> TokenClaims {
        TokenClaims {
            sub: "ada".into(),
            exp,
            subscribe: vec!["chat:*".into()],
            publish: vec![],
            info: Some(RawValue::from_string(r#"{"name":"Ada"}"#.into()).unwrap()),
        }
    }

    fn verifier() -> TokenVerifier {
        TokenVerifier::hs256(SECRET, Duration::from_secs(5))
    }

    #[test]
    fn a_good_token_becomes_a_principal() {
        let token = sign_hs256(SECRET, &claims(unix_now() + 60));
        let p = verifier().verify(&token).unwrap();
        assert_eq!(&*p.user, "ada");
        assert_eq!(p.info.unwrap().get(), r#"{"name":"Ada"}"#);
    }

    #[test]
    fn hostile_tokens_are_refused() {
        let v = verifier();
        let refused = |t: &str| v.verify(t).unwrap_err().code();
        use crate::protocol::ErrorCode::Unauthorized;
        // Expired beyond the leeway; within it still fine.
        assert_eq!(
            refused(&sign_hs256(SECRET, &claims(unix_now() - 60))),
            Unauthorized
        );
        assert!(v
            .verify(&sign_hs256(SECRET, &claims(unix_now() - 2)))
            .is_ok());
        // Wrong key.
        assert_eq!(
            refused(&sign_hs256(b"other", &claims(unix_now() + 60))),
            Unauthorized
        );
        // Too long: refused before decoding.
        assert_eq!(refused(&"a".repeat(MAX_TOKEN_LEN + 1)), Unauthorized);
        assert_eq!(refused("not.a.jwt"), Unauthorized);
        // alg: none, unsigned: {"alg":"none","typ":"JWT"}.{"sub":"ada","exp":4102444800}.
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhZGEiLCJleHAiOjQxMDI0NDQ4MDB9.";
        assert_eq!(refused(none), Unauthorized);
        // No exp.
        let no_exp = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "ada"}),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(refused(&no_exp), Unauthorized);
        // HS384 with the right secret: not this hub's algorithm.
        let hs384 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS384),
            &claims(unix_now() + 60),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(refused(&hs384), Unauthorized);
        // `info` that is not an object.
        let mut c = claims(unix_now() + 60);
        c.info = Some(RawValue::from_string("[1]".into()).unwrap());
        assert_eq!(refused(&sign_hs256(SECRET, &c)), Unauthorized);
    }

    const RSA_PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/test-rsa-public.pem");
    const RSA_PRIVATE: &[u8] = include_bytes!("../../tests/fixtures/test-rsa-private.pem");
    const EC_PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/test-ec-public.pem");
    const EC_PRIVATE: &[u8] = include_bytes!("../../tests/fixtures/test-ec-private.pem");

    #[test]
    fn public_keys_pick_their_algorithm_and_refuse_confusion() {
        let leeway = Duration::from_secs(5);
        let rsa = TokenVerifier::from_public_key_pem(RSA_PUBLIC, leeway).unwrap();
        let good = jsonwebtoken::encode(
            &Header::new(Algorithm::RS256),
            &claims(unix_now() + 60),
            &EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
        )
        .unwrap();
        assert!(rsa.verify(&good).is_ok());
        // Algorithm confusion: HS256 "signed" with the public key as the shared secret.
        let confused = sign_hs256(RSA_PUBLIC, &claims(unix_now() + 60));
        assert!(rsa.verify(&confused).is_err());
        let ec = TokenVerifier::from_public_key_pem(EC_PUBLIC, leeway).unwrap();
        let good = jsonwebtoken::encode(
            &Header::new(Algorithm::ES256),
            &claims(unix_now() + 60),
            &EncodingKey::from_ec_pem(EC_PRIVATE).unwrap(),
        )
        .unwrap();
        assert!(ec.verify(&good).is_ok());
        assert!(rsa.verify(&good).is_err(), "ES256 token on an RS256 hub");
        assert!(TokenVerifier::from_public_key_pem(b"nonsense", leeway).is_err());
    }
}
