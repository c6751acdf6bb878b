//! The value types and parsers of flags: durations, fractions, credentials kept out of logs,
//! key files read and checked when the flags are parsed.

use std::time::Duration;

use crate::auth::TokenVerifier;

/// A credential from the command line or environment, kept out of `Debug` output and logs.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The keys of `--api-key-file`, read when the flags are parsed.
#[derive(Clone, Debug)]
pub struct ApiKeyFile(pub Vec<Secret>);

pub(super) fn api_key_file(path: &str) -> Result<ApiKeyFile, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    Ok(ApiKeyFile(
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| Secret(l.to_owned()))
            .collect(),
    ))
}

/// The PEM of `--token-public-key`, read and checked when the flags are parsed.
#[derive(Clone, Debug)]
pub struct PublicKeyPem(pub Vec<u8>);

pub(super) fn public_key_file(path: &str) -> Result<PublicKeyPem, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    TokenVerifier::from_public_key_pem(&pem, Duration::ZERO)?;
    Ok(PublicKeyPem(pem))
}

pub(super) fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err("must be a number from 0 to 1".into()),
    }
}

pub(super) fn positive_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        Err("must be greater than zero".into())
    } else {
        Ok(d)
    }
}
