//! Query strings of the contract shared by both transports: the repeated `channel` parameter
//! of `GET /ws` and `POST /lp/connect`, and the `token` parameter of `/ws` and `/lp/*`.

use super::codes::ErrorCode;
use super::names::{ChannelName, InvalidChannelName};

/// A query string the contract cannot read.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    InvalidChannel(#[from] InvalidChannelName),
    #[error("bad query string: {0}")]
    Malformed(String),
}

impl QueryError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidChannel(_) => ErrorCode::InvalidChannel,
            Self::Malformed(_) => ErrorCode::BadRequest,
        }
    }
}

/// The repeated `channel` parameter, validated; other parameters are ignored.
pub fn channels_from_query(query: &str) -> Result<Vec<ChannelName>, QueryError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query).map_err(|e| QueryError::Malformed(e.to_string()))?;
    pairs
        .iter()
        .filter(|(key, _)| key == "channel")
        .map(|(_, value)| Ok(ChannelName::parse(value)?))
        .collect()
}

/// The `token` parameter, if given (the first one; browsers cannot set headers on a WebSocket).
pub fn token_from_query(query: &str) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find(|(key, _)| key == "token")
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_channels_in_order_and_bad_names_refused() {
        let names = channels_from_query("channel=a&x=1&channel=b%3Ac").unwrap();
        let names: Vec<&str> = names.iter().map(ChannelName::as_str).collect();
        assert_eq!(names, ["a", "b:c"]);
        assert!(channels_from_query("").unwrap().is_empty());
        assert_eq!(
            channels_from_query("channel=a%20b").unwrap_err().code(),
            ErrorCode::InvalidChannel
        );
    }
}
