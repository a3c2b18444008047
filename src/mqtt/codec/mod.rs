//! The MQTT 3.1.1 wire codec: an appending encoder and a streaming decoder.
//!
//! *Encoding* appends to a caller's `Vec<u8>`, so many packets can be packed
//! back to back into one WebSocket frame (several small frames in a row stall
//! Mosquitto 2.0 for ~100 ms each; one frame does not). An encode either
//! writes the whole packet or nothing.
//!
//! *Decoding* is streaming: [`Decoder`] takes byte chunks of any size and
//! split (several packets per chunk, one packet over many chunks, even split
//! inside the remaining-length varint) and yields complete packets. It keeps
//! at most one incomplete packet of at most `max_packet_size` bytes, and
//! every malformed input is a typed [`DecodeError`], never a panic.

use core::fmt;

use super::text::{num, pieces};
use super::topic::TopicError;

mod decode;
mod encode;
#[cfg(test)]
mod tests;

pub use decode::{decode_one, Decoder};
pub(crate) use decode::parse_fixed_header as fixed_header;
pub use encode::{encode, encode_publish, publish_len};

/// The default bound on one incoming packet (fixed header included): 1 MiB.
pub const DEFAULT_MAX_PACKET_SIZE: usize = 1 << 20;

/// The largest remaining length the 4-byte varint can express (§2.2.3).
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// Why bytes from the network are not a valid MQTT 3.1.1 packet. The stream
/// cannot be resynchronised after one: close the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The remaining-length varint runs past 4 bytes.
    MalformedRemainingLength,
    /// The packet (fixed header included) is bigger than the configured bound.
    PacketTooLarge {
        /// Whole size the fixed header declares, in bytes.
        size: usize,
        /// The bound it was checked against (`max_packet_size`).
        max: usize,
    },
    /// Packet type 0 or 15 (reserved).
    InvalidPacketType(u8),
    /// The fixed-header flags are not the ones this packet type requires.
    InvalidFlags {
        /// The packet type (high nibble of the first byte).
        packet_type: u8,
        /// The flags found (low nibble of the first byte).
        flags: u8,
    },
    /// A QoS of 3.
    InvalidQoS(u8),
    /// A string is not UTF-8 or contains U+0000.
    InvalidUtf8,
    /// A topic name or filter breaks the rules of §4.7.
    InvalidTopic(TopicError),
    /// A field runs past the end of the packet.
    Truncated,
    /// Lengths, reserved bits or the field layout do not add up.
    MalformedPacket(&'static str),
    /// A packet identifier of 0 where one is required.
    ZeroPacketId,
    /// CONNECT with a protocol name other than `MQTT` or a level other than 4.
    UnsupportedProtocol,
    /// A CONNACK or SUBACK return code outside the defined set.
    InvalidReturnCode(u8),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::MalformedRemainingLength => f.write_str("malformed remaining length"),
            DecodeError::PacketTooLarge { size, max } => {
                pieces(f, &["packet of ", num(*size as u64, 10, 1).as_str(), " bytes exceeds the limit of ", num(*max as u64, 10, 1).as_str()])
            }
            DecodeError::InvalidPacketType(t) => pieces(f, &["invalid packet type ", num(u64::from(*t), 10, 1).as_str()]),
            DecodeError::InvalidFlags { packet_type, flags } => {
                pieces(f, &["invalid flags 0b", num(u64::from(*flags), 2, 4).as_str(), " for packet type ", num(u64::from(*packet_type), 10, 1).as_str()])
            }
            DecodeError::InvalidQoS(q) => pieces(f, &["invalid QoS ", num(u64::from(*q), 10, 1).as_str()]),
            DecodeError::InvalidUtf8 => f.write_str("invalid UTF-8 string"),
            DecodeError::InvalidTopic(e) => pieces(f, &["invalid topic: "]).and_then(|_| fmt::Display::fmt(e, f)),
            DecodeError::Truncated => f.write_str("field runs past the end of the packet"),
            DecodeError::MalformedPacket(why) => pieces(f, &["malformed packet: ", why]),
            DecodeError::ZeroPacketId => f.write_str("packet identifier 0"),
            DecodeError::UnsupportedProtocol => f.write_str("not MQTT 3.1.1 (name MQTT, level 4)"),
            DecodeError::InvalidReturnCode(c) => pieces(f, &["invalid return code 0x", num(u64::from(*c), 16, 2).as_str()]),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why a packet cannot be encoded (only possible with values the session
/// validates before they get here).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// A string or binary field is longer than 65,535 bytes.
    FieldTooLong,
    /// The remaining length exceeds 268,435,455 bytes.
    PacketTooLarge,
    /// A packet identifier of 0 where one is required.
    ZeroPacketId,
    /// SUBSCRIBE/UNSUBSCRIBE without filters, or SUBACK without codes.
    Empty,
    /// A field breaks a protocol rule (DUP on QoS 0, password without username).
    Invalid(&'static str),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::FieldTooLong => f.write_str("string or binary field over 65535 bytes"),
            EncodeError::PacketTooLarge => f.write_str("packet over 268435455 bytes"),
            EncodeError::ZeroPacketId => f.write_str("packet identifier 0"),
            EncodeError::Empty => f.write_str("packet needs at least one entry"),
            EncodeError::Invalid(why) => pieces(f, &["invalid packet: ", why]),
        }
    }
}

impl std::error::Error for EncodeError {}
