//! The MQTT 3.1.1 control packets as plain Rust values.
//!
//! These types carry only what goes on the wire; the codec
//! ([`super::codec`]) turns them into bytes and back. Packet identifiers are
//! `u16` and never 0 for the packets that carry one (§2.3.1).

/// Quality of service of a PUBLISH (§4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QoS {
    /// Fire and forget: may be lost, never duplicated by the protocol.
    AtMostOnce = 0,
    /// Acknowledged by PUBACK: never lost while the session lives, may be duplicated.
    AtLeastOnce = 1,
    /// Four-way handshake: delivered exactly once within one broker session.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for the two-bit wire value, `None` for the reserved value 3.
    pub fn from_u8(v: u8) -> Option<QoS> {
        match v {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }

    /// The wire value.
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

/// The Last Will: published by the broker when the connection dies without
/// a DISCONNECT (this is how peers learn a device vanished).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: QoS,
    pub retain: bool,
}

/// CONNECT (§3.1). Always protocol name `MQTT`, level 4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub clean_session: bool,
    /// Seconds; 0 turns keepalive off.
    pub keep_alive: u16,
    /// May be empty only with `clean_session` (the broker then assigns one).
    pub client_id: String,
    pub will: Option<Will>,
    pub username: Option<String>,
    /// Only allowed together with a username in 3.1.1.
    pub password: Option<Vec<u8>>,
}

/// The CONNACK return code (§3.2.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectReturnCode {
    Accepted = 0,
    UnacceptableProtocolVersion = 1,
    IdentifierRejected = 2,
    ServerUnavailable = 3,
    BadUsernameOrPassword = 4,
    NotAuthorized = 5,
}

impl ConnectReturnCode {
    /// The code for a wire byte, `None` for the reserved values 6..=255.
    pub fn from_u8(v: u8) -> Option<Self> {
        use ConnectReturnCode::*;
        Some(match v {
            0 => Accepted,
            1 => UnacceptableProtocolVersion,
            2 => IdentifierRejected,
            3 => ServerUnavailable,
            4 => BadUsernameOrPassword,
            5 => NotAuthorized,
            _ => return None,
        })
    }
}

/// CONNACK (§3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnAck {
    /// The broker still had state for this client id (only with `clean_session = false`).
    pub session_present: bool,
    pub code: ConnectReturnCode,
}

/// PUBLISH (§3.3). `packet_id` is 0 (and not on the wire) for QoS 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    pub topic: String,
    pub packet_id: u16,
    pub payload: Vec<u8>,
}

/// SUBSCRIBE (§3.8): one or more filters, each with its maximum QoS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub packet_id: u16,
    pub filters: Vec<(String, QoS)>,
}

/// SUBACK (§3.9): one entry per requested filter; `None` is the 0x80 failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    pub packet_id: u16,
    pub return_codes: Vec<Option<QoS>>,
}

/// UNSUBSCRIBE (§3.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub packet_id: u16,
    pub filters: Vec<String>,
}

/// Every MQTT 3.1.1 control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Connect),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(u16),
    PubRec(u16),
    PubRel(u16),
    PubComp(u16),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(u16),
    PingReq,
    PingResp,
    Disconnect,
}

impl Packet {
    /// The packet's name, for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Packet::Connect(_) => "CONNECT",
            Packet::ConnAck(_) => "CONNACK",
            Packet::Publish(_) => "PUBLISH",
            Packet::PubAck(_) => "PUBACK",
            Packet::PubRec(_) => "PUBREC",
            Packet::PubRel(_) => "PUBREL",
            Packet::PubComp(_) => "PUBCOMP",
            Packet::Subscribe(_) => "SUBSCRIBE",
            Packet::SubAck(_) => "SUBACK",
            Packet::Unsubscribe(_) => "UNSUBSCRIBE",
            Packet::UnsubAck(_) => "UNSUBACK",
            Packet::PingReq => "PINGREQ",
            Packet::PingResp => "PINGRESP",
            Packet::Disconnect => "DISCONNECT",
        }
    }
}
