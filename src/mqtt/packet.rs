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
    /// The topic name the broker publishes the Will to.
    pub topic: String,
    /// The Will message's bytes.
    pub payload: Vec<u8>,
    /// The QoS the broker publishes it with.
    pub qos: QoS,
    /// The broker publishes it as a retained message.
    pub retain: bool,
}

/// CONNECT (§3.1). Always protocol name `MQTT`, level 4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Clean Session flag: `true` discards any earlier session state on the
    /// broker, and this session ends with the connection.
    pub clean_session: bool,
    /// Seconds; 0 turns keepalive off.
    pub keep_alive: u16,
    /// May be empty only with `clean_session` (the broker then assigns one).
    pub client_id: String,
    /// The Last Will, if any (sets the Will flag, QoS and retain bits).
    pub will: Option<Will>,
    /// User Name; `None` leaves the flag clear.
    pub username: Option<String>,
    /// Only allowed together with a username in 3.1.1.
    pub password: Option<Vec<u8>>,
}

/// The CONNACK return code (§3.2.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectReturnCode {
    /// 0x00: connection accepted.
    Accepted = 0,
    /// 0x01: the broker does not support protocol level 4.
    UnacceptableProtocolVersion = 1,
    /// 0x02: the client identifier is valid UTF-8 but the broker does not allow it.
    IdentifierRejected = 2,
    /// 0x03: the network connection is up but the MQTT service is not.
    ServerUnavailable = 3,
    /// 0x04: the user name or password is malformed or wrong.
    BadUsernameOrPassword = 4,
    /// 0x05: the client is not authorised to connect.
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

    /// The code's name, as `{:?}` writes it (without the formatting
    /// machinery, for the MQTT-only wasm entry's disconnect reasons).
    pub fn name(self) -> &'static str {
        use ConnectReturnCode::*;
        match self {
            Accepted => "Accepted",
            UnacceptableProtocolVersion => "UnacceptableProtocolVersion",
            IdentifierRejected => "IdentifierRejected",
            ServerUnavailable => "ServerUnavailable",
            BadUsernameOrPassword => "BadUsernameOrPassword",
            NotAuthorized => "NotAuthorized",
        }
    }
}

/// CONNACK (§3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnAck {
    /// The broker still had state for this client id (only with `clean_session = false`).
    pub session_present: bool,
    /// Whether the broker accepted the connection, and if not, why.
    pub code: ConnectReturnCode,
}

/// PUBLISH (§3.3). `packet_id` is 0 (and not on the wire) for QoS 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// DUP flag: this may be a resend of an earlier attempt (QoS 1/2 only).
    pub dup: bool,
    /// Delivery guarantee for this message.
    pub qos: QoS,
    /// RETAIN flag: to the broker, keep it as the topic's last message; from
    /// the broker, a retained message sent because of a new subscription.
    pub retain: bool,
    /// Topic name (no wildcards).
    pub topic: String,
    /// Packet identifier (1–65535) of a QoS 1/2 PUBLISH; 0 for QoS 0.
    pub packet_id: u16,
    /// Application bytes (may be empty).
    pub payload: Vec<u8>,
}

/// SUBSCRIBE (§3.8): one or more filters, each with its maximum QoS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet identifier (1–65535); the SUBACK carries the same one.
    pub packet_id: u16,
    /// Topic filters, each with the maximum QoS requested.
    pub filters: Vec<(String, QoS)>,
}

/// SUBACK (§3.9): one entry per requested filter; `None` is the 0x80 failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// Packet identifier of the SUBSCRIBE it answers.
    pub packet_id: u16,
    /// Granted maximum QoS per filter, in request order; `None` = refused.
    pub return_codes: Vec<Option<QoS>>,
}

/// UNSUBSCRIBE (§3.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet identifier (1–65535); the UNSUBACK carries the same one.
    pub packet_id: u16,
    /// Topic filters to remove.
    pub filters: Vec<String>,
}

/// Every MQTT 3.1.1 control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Client → broker: open a session (§3.1).
    Connect(Connect),
    /// Broker → client: the answer to CONNECT (§3.2).
    ConnAck(ConnAck),
    /// Either way: an application message (§3.3).
    Publish(Publish),
    /// QoS 1 acknowledgement, with the PUBLISH's packet identifier (§3.4).
    PubAck(u16),
    /// QoS 2, step 2: publish received, with the packet identifier (§3.5).
    PubRec(u16),
    /// QoS 2, step 3: publish release, with the packet identifier (§3.6).
    PubRel(u16),
    /// QoS 2, step 4: publish complete, with the packet identifier (§3.7).
    PubComp(u16),
    /// Client → broker: add subscriptions (§3.8).
    Subscribe(Subscribe),
    /// Broker → client: the answer to SUBSCRIBE (§3.9).
    SubAck(SubAck),
    /// Client → broker: remove subscriptions (§3.10).
    Unsubscribe(Unsubscribe),
    /// Broker → client: the answer to UNSUBSCRIBE, with its packet identifier (§3.11).
    UnsubAck(u16),
    /// Client → broker: keepalive, asks for a PINGRESP (§3.12).
    PingReq,
    /// Broker → client: the answer to PINGREQ (§3.13).
    PingResp,
    /// Client → broker: clean close; the broker discards the Will (§3.14).
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
