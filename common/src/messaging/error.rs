//! The errors of the messaging library, as types a caller can match on.

use std::time::Duration;

use super::failure::RemoteError;
use super::url::TransportUrlError;

/// Everything that can go wrong when sending, calling or serving.
#[derive(Debug, thiserror::Error)]
pub enum MessagingError {
    /// The transport URL is malformed.
    #[error(transparent)]
    Url(#[from] TransportUrlError),

    /// No reply came in time.
    #[error("timed out after {timeout:.1?} waiting for a reply to '{method}' from {target}")]
    Timeout {
        /// Where the call went.
        target: String,
        /// The method called.
        method: String,
        /// How long the caller waited.
        timeout: Duration,
    },

    /// No call-monitor heartbeat came in time: the server died or hangs,
    /// or no server has taken the request yet (heartbeats start when one
    /// runs it), which the caller cannot tell apart.
    #[error(
        "no reply nor call-monitor heartbeat for {timeout:.1?} from {target} while calling \
         '{method}': no server is running the request (it may still wait in a queue, or \
         the server that took it is gone or stuck)"
    )]
    HeartbeatTimeout {
        /// Where the call went.
        target: String,
        /// The method called.
        method: String,
        /// The call-monitor timeout.
        timeout: Duration,
    },

    /// The endpoint raised an exception.
    #[error("remote error from {target}: {error}")]
    Remote {
        /// Where the call went.
        target: String,
        /// The exception, as the server serialized it.
        error: Box<RemoteError>,
    },

    /// The server has no such method (oslo's `NoSuchMethod`).
    #[error("{target} does not support RPC method '{method}'")]
    NoSuchMethod {
        /// Where the call went.
        target: String,
        /// The unknown method.
        method: String,
    },

    /// No endpoint of the server serves the requested version.
    #[error("{target} does not support RPC version {version} (method '{method}')")]
    UnsupportedVersion {
        /// Where the call went.
        target: String,
        /// The version asked for.
        version: String,
        /// The method called.
        method: String,
    },

    /// Nobody listens: the broker found no queue for the message.
    #[error(
        "no server listens on {target}: no queue is bound to routing key '{routing_key}' on \
         exchange '{exchange}'"
    )]
    Undeliverable {
        /// Where the message went.
        target: String,
        /// Exchange it was published to.
        exchange: String,
        /// Routing key it was published with.
        routing_key: String,
    },

    /// The broker cannot be reached, or the connection was lost mid-call.
    #[error("not connected to the message broker: {0}")]
    Disconnected(String),

    /// The broker refused an operation (a channel error, a nack, a conflict
    /// between declarations).
    #[error("the message broker refused the operation: {0}")]
    Broker(String),

    /// The broker closed the publishing channel with a refusal before it
    /// confirmed the message: of this message (an exchange deleted since
    /// it was declared, a message larger than the broker takes) or of
    /// another one sent on the same channel. The senders of this library
    /// send such a message once more (the exchange declared again) before
    /// they report it.
    #[error("the message broker refused a message before it confirmed it: {0}")]
    Refused(String),

    /// A value could not be serialized.
    #[error("could not encode the message: {0}")]
    Encode(String),

    /// A message or reply could not be read.
    #[error("could not decode a message: {0}")]
    Decode(String),

    /// The transport or server was closed.
    #[error("the messaging transport is closed")]
    Closed,

    /// A setting or argument is not acceptable.
    #[error("invalid messaging setting or use: {0}")]
    Invalid(String),
}

impl MessagingError {
    /// Whether retrying later may succeed (connection trouble, timeouts).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Timeout { .. }
                | Self::HeartbeatTimeout { .. }
                | Self::Disconnected(_)
                | Self::Undeliverable { .. }
        )
    }
}

/// Shorthand for results of this library.
pub type Result<T, E = MessagingError> = std::result::Result<T, E>;
