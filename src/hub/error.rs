//! `HubError`: what a client request can meet in the hub, each with its documented
//! [`ErrorCode`] (which also fixes its HTTP status).

use crate::protocol::{ChannelName, ErrorCode, InvalidChannelName};

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    InvalidChannel(#[from] InvalidChannelName),
    #[error("already subscribed to {0}")]
    AlreadySubscribed(ChannelName),
    #[error("not subscribed to {0}")]
    NotSubscribed(ChannelName),
    #[error("at most {0} subscriptions per client")]
    TooManySubscriptions(usize),
    #[error("clients may not publish to {0}")]
    PublishForbidden(ChannelName),
    #[error("the hub is at its connection limit ({0})")]
    OverCapacity(usize),
    #[error("the hub is overloaded ({lagging} of {clients} clients are lagging); retry shortly")]
    Overloaded { lagging: usize, clients: usize },
    #[error("the client has disconnected")]
    ClientGone,
    #[error("the hub holds its maximum of {0} channels; retry shortly")]
    TooManyChannels(usize),
    #[error("`data` is nested deeper than {0} levels")]
    TooDeep(usize),
    #[error("{0} keeps no presence (see the namespace's `presence` setting or --presence)")]
    PresenceDisabled(ChannelName),
    #[error("the message broker is unavailable ({0}); retry shortly")]
    BrokerUnavailable(String),
    /// Internal: this node's copy of a channel stopped following the broker between a join
    /// and the subscribe (retried by `Hub::subscribe_joined`).
    #[error("the channel is not followed on this node; retry")]
    NotMirrored,
}

impl HubError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidChannel(_) => ErrorCode::InvalidChannel,
            Self::AlreadySubscribed(_) => ErrorCode::AlreadySubscribed,
            Self::NotSubscribed(_) => ErrorCode::NotSubscribed,
            Self::TooManySubscriptions(_) => ErrorCode::TooManySubscriptions,
            Self::PublishForbidden(_) => ErrorCode::PublishForbidden,
            Self::OverCapacity(_) => ErrorCode::OverCapacity,
            Self::Overloaded { .. } => ErrorCode::Overloaded,
            Self::ClientGone => ErrorCode::ClientGone,
            Self::TooManyChannels(_) => ErrorCode::TooManyChannels,
            Self::TooDeep(_) => ErrorCode::TooDeep,
            Self::PresenceDisabled(_) => ErrorCode::PresenceDisabled,
            Self::BrokerUnavailable(_) | Self::NotMirrored => ErrorCode::BrokerUnavailable,
        }
    }
}
