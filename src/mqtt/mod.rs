//! MQTT 3.1.1 over WebSocket: our own small codec, a sans-IO session, and
//! the [`Client`] the browser shell drives.
//!
//! - [`codec`] / [`packet`]: the wire format (appending encoder, streaming
//!   decoder, typed errors, never a panic on network input);
//! - [`topic`]: topic name/filter validation and wildcard matching;
//! - [`session`]: one MQTT session over a sequence of transports (QoS 0/1/2,
//!   in-flight window, resend on reconnect, keepalive and zombie detection,
//!   RTT);
//! - [`client`]: session + [`crate::endpoints`] behind one
//!   `handle_input`/`poll_output` door.
//!
//! `PROTOCOL.md` (Part 1) describes exactly what goes on the wire.

pub mod client;
pub mod codec;
pub mod error;
pub mod packet;
pub mod session;
pub mod timing;
pub(crate) mod text;
pub mod topic;

#[cfg(test)]
mod tests;

pub use crate::endpoints::{BackoffConfig, EndpointConfig};
pub use client::{Client, ClientConfig, ClientStats, DisconnectReason, Event, Input, Output, SocketId, COALESCE_LIMIT};
pub use codec::{DecodeError, Decoder, EncodeError};
pub use error::{ConfigError, ProtocolError, PublishError, UsageError};
pub use packet::{ConnectReturnCode, Packet, QoS, Will};
pub use session::{PublishId, Session, SessionConfig, SessionEvent};
pub use timing::RttStats;
pub use topic::{topic_matches, validate_topic_filter, validate_topic_name, TopicError};
