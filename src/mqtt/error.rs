//! Error types of the MQTT layer, one per cause (rustls style): API misuse
//! ([`UsageError`], never caused by the network), bad configuration
//! ([`ConfigError`]), and a misbehaving broker ([`ProtocolError`], which
//! arrives as a disconnect reason, never as the return value of a call).

use core::fmt;

use super::codec::DecodeError;
use super::text::{num, pieces};
use super::topic::TopicError;

/// The application called the API in a way that cannot work. Never caused
/// by anything the network did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UsageError {
    /// The topic name of a publish is not valid (wildcards, empty, NUL...).
    InvalidTopic(TopicError),
    /// The topic filter of a subscribe/unsubscribe is not valid.
    InvalidFilter(TopicError),
    /// The encoded packet would exceed the configured `max_packet_size`.
    PacketTooLarge {
        /// Encoded size of the packet, in bytes.
        size: usize,
        /// The configured `max_packet_size`.
        max: usize,
    },
    /// `max_queued` messages are already waiting; nothing was queued.
    QueueFull {
        /// The configured `max_queued`.
        limit: usize,
    },
    /// Too many SUBSCRIBE/UNSUBSCRIBE requests are awaiting their ack.
    TooManyPendingRequests {
        /// Most requests that may await their ack at once.
        limit: usize,
    },
    /// A subscribe/unsubscribe call without any filter.
    NoFilters,
    /// `close()` was called; the client does nothing any more.
    Closed,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::InvalidTopic(e) => pieces(f, &["invalid topic name: "]).and_then(|_| fmt::Display::fmt(e, f)),
            UsageError::InvalidFilter(e) => pieces(f, &["invalid topic filter: "]).and_then(|_| fmt::Display::fmt(e, f)),
            UsageError::PacketTooLarge { size, max } => {
                pieces(f, &["packet of ", num(*size as u64, 10, 1).as_str(), " bytes exceeds max_packet_size ", num(*max as u64, 10, 1).as_str()])
            }
            UsageError::QueueFull { limit } => pieces(f, &["publish queue full (", num(*limit as u64, 10, 1).as_str(), " messages)"]),
            UsageError::TooManyPendingRequests { limit } => {
                pieces(f, &["more than ", num(*limit as u64, 10, 1).as_str(), " subscribe/unsubscribe requests pending"])
            }
            UsageError::NoFilters => f.write_str("no topic filter given"),
            UsageError::Closed => f.write_str("client is closed"),
        }
    }
}

impl std::error::Error for UsageError {}

/// The configuration cannot work; returned by the constructors.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The endpoint list is empty.
    NoEndpoints,
    /// Endpoint `index` has a URL that is not `ws://` or `wss://`.
    InvalidUrl {
        /// Position in the endpoint list.
        index: usize,
    },
    /// Endpoint `index` has a connect timeout of 0.
    ZeroConnectTimeout {
        /// Position in the endpoint list.
        index: usize,
    },
    /// The client id is unusable (why).
    InvalidClientId(&'static str),
    /// The Will topic is not a valid topic name.
    InvalidWill(TopicError),
    /// A username, password or Will payload is longer than 65,535 bytes,
    /// or a password is given without a username (3.1.1 forbids it).
    InvalidCredentials(&'static str),
    /// A numeric limit is out of range (which one).
    InvalidLimit(&'static str),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NoEndpoints => f.write_str("no broker endpoints configured"),
            ConfigError::InvalidUrl { index } => {
                pieces(f, &["endpoint ", num(*index as u64, 10, 1).as_str(), ": URL must start with ws:// or wss://"])
            }
            ConfigError::ZeroConnectTimeout { index } => {
                pieces(f, &["endpoint ", num(*index as u64, 10, 1).as_str(), ": connect timeout must be > 0"])
            }
            ConfigError::InvalidClientId(why) => pieces(f, &["invalid client id: ", why]),
            ConfigError::InvalidWill(e) => pieces(f, &["invalid Will topic: "]).and_then(|_| fmt::Display::fmt(e, f)),
            ConfigError::InvalidCredentials(why) => pieces(f, &["invalid credentials: ", why]),
            ConfigError::InvalidLimit(which) => pieces(f, &["invalid limit: ", which]),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The broker broke the protocol; the connection is dropped and retried.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The bytes are not a valid packet.
    Decode(DecodeError),
    /// A packet a broker must not send, or not in this state (its name).
    UnexpectedPacket(&'static str),
    /// A SUBACK with a different number of return codes than filters asked.
    SubAckMismatch {
        /// Filters in our SUBSCRIBE.
        requested: usize,
        /// Return codes in the broker's SUBACK.
        returned: usize,
    },
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Decode(e) => pieces(f, &["decode error: "]).and_then(|_| fmt::Display::fmt(e, f)),
            ProtocolError::UnexpectedPacket(p) => pieces(f, &["unexpected ", p, " from broker"]),
            ProtocolError::SubAckMismatch { requested, returned } => {
                pieces(f, &["SUBACK has ", num(*returned as u64, 10, 1).as_str(), " codes for ", num(*requested as u64, 10, 1).as_str(), " filters"])
            }
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Why a publish will never complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishError {
    /// The app called `close()` before the broker acknowledged it.
    Closed,
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::Closed => f.write_str("client closed before the publish completed"),
        }
    }
}

impl std::error::Error for PublishError {}
