//! The appending encoder: every function writes a whole packet or nothing.

use super::{EncodeError, MAX_REMAINING_LENGTH};
use crate::mqtt::packet::*;
use crate::mqtt::topic::MAX_STRING_LEN;

pub(super) fn varint_len(n: usize) -> usize {
    match n {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

pub(super) fn put_varint(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // Lengths were checked by `field` before anything was written.
    put_u16(out, b.len() as u16);
    out.extend_from_slice(b);
}

/// Length on the wire of a u16-prefixed field, or an error if it does not fit.
fn field(b: &[u8]) -> Result<usize, EncodeError> {
    if b.len() > MAX_STRING_LEN {
        return Err(EncodeError::FieldTooLong);
    }
    Ok(2 + b.len())
}

fn pid(id: u16) -> Result<u16, EncodeError> {
    if id == 0 {
        Err(EncodeError::ZeroPacketId)
    } else {
        Ok(id)
    }
}

fn header(out: &mut Vec<u8>, first: u8, remaining: usize) -> Result<usize, EncodeError> {
    if remaining > MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLarge);
    }
    out.reserve(1 + varint_len(remaining) + remaining);
    out.push(first);
    put_varint(out, remaining);
    Ok(1 + varint_len(remaining) + remaining)
}

/// Appends one PUBLISH built from its parts, without building a [`Publish`]
/// (the session's hot path: no copy of topic or payload). Returns the number
/// of bytes written; on error nothing is written.
pub fn encode_publish(
    out: &mut Vec<u8>,
    topic: &str,
    payload: &[u8],
    qos: QoS,
    packet_id: u16,
    dup: bool,
    retain: bool,
) -> Result<usize, EncodeError> {
    if qos == QoS::AtMostOnce && dup {
        return Err(EncodeError::Invalid("DUP on a QoS 0 PUBLISH"));
    }
    let mut remaining = field(topic.as_bytes())? + payload.len();
    if qos != QoS::AtMostOnce {
        pid(packet_id)?;
        remaining += 2;
    }
    let first = 0x30 | (u8::from(dup) << 3) | (qos.as_u8() << 1) | u8::from(retain);
    let n = header(out, first, remaining)?;
    put_bytes(out, topic.as_bytes());
    if qos != QoS::AtMostOnce {
        put_u16(out, packet_id);
    }
    out.extend_from_slice(payload);
    Ok(n)
}

/// The size of a PUBLISH on the wire (for checking limits before queueing).
pub fn publish_len(topic: &str, payload_len: usize, qos: QoS) -> usize {
    let remaining = 2 + topic.len() + payload_len + if qos == QoS::AtMostOnce { 0 } else { 2 };
    1 + varint_len(remaining) + remaining
}

fn encode_connect(out: &mut Vec<u8>, c: &Connect) -> Result<usize, EncodeError> {
    if c.password.is_some() && c.username.is_none() {
        return Err(EncodeError::Invalid("password without username"));
    }
    let mut remaining = 10 + field(c.client_id.as_bytes())?;
    let mut flags = 0u8;
    if c.clean_session {
        flags |= 0x02;
    }
    if let Some(w) = &c.will {
        remaining += field(w.topic.as_bytes())? + field(&w.payload)?;
        flags |= 0x04 | (w.qos.as_u8() << 3) | (u8::from(w.retain) << 5);
    }
    if let Some(u) = &c.username {
        remaining += field(u.as_bytes())?;
        flags |= 0x80;
    }
    if let Some(p) = &c.password {
        remaining += field(p)?;
        flags |= 0x40;
    }
    let n = header(out, 0x10, remaining)?;
    put_bytes(out, b"MQTT");
    out.push(4);
    out.push(flags);
    put_u16(out, c.keep_alive);
    put_bytes(out, c.client_id.as_bytes());
    if let Some(w) = &c.will {
        put_bytes(out, w.topic.as_bytes());
        put_bytes(out, &w.payload);
    }
    if let Some(u) = &c.username {
        put_bytes(out, u.as_bytes());
    }
    if let Some(p) = &c.password {
        put_bytes(out, p);
    }
    Ok(n)
}

fn encode_id_only(out: &mut Vec<u8>, first: u8, id: u16) -> Result<usize, EncodeError> {
    pid(id)?;
    out.extend_from_slice(&[first, 2]);
    put_u16(out, id);
    Ok(4)
}

/// Appends `packet` to `out`; returns the number of bytes written. On error
/// nothing is written.
pub fn encode(packet: &Packet, out: &mut Vec<u8>) -> Result<usize, EncodeError> {
    match packet {
        Packet::Connect(c) => encode_connect(out, c),
        Packet::ConnAck(a) => {
            out.extend_from_slice(&[0x20, 2, u8::from(a.session_present), a.code as u8]);
            Ok(4)
        }
        Packet::Publish(p) => {
            encode_publish(out, &p.topic, &p.payload, p.qos, p.packet_id, p.dup, p.retain)
        }
        Packet::PubAck(id) => encode_id_only(out, 0x40, *id),
        Packet::PubRec(id) => encode_id_only(out, 0x50, *id),
        Packet::PubRel(id) => encode_id_only(out, 0x62, *id),
        Packet::PubComp(id) => encode_id_only(out, 0x70, *id),
        Packet::UnsubAck(id) => encode_id_only(out, 0xB0, *id),
        Packet::Subscribe(s) => {
            pid(s.packet_id)?;
            if s.filters.is_empty() {
                return Err(EncodeError::Empty);
            }
            let mut remaining = 2;
            for (f, _) in &s.filters {
                remaining += field(f.as_bytes())? + 1;
            }
            let n = header(out, 0x82, remaining)?;
            put_u16(out, s.packet_id);
            for (f, q) in &s.filters {
                put_bytes(out, f.as_bytes());
                out.push(q.as_u8());
            }
            Ok(n)
        }
        Packet::SubAck(s) => {
            pid(s.packet_id)?;
            if s.return_codes.is_empty() {
                return Err(EncodeError::Empty);
            }
            let n = header(out, 0x90, 2 + s.return_codes.len())?;
            put_u16(out, s.packet_id);
            out.extend(s.return_codes.iter().map(|c| c.map_or(0x80, QoS::as_u8)));
            Ok(n)
        }
        Packet::Unsubscribe(u) => {
            pid(u.packet_id)?;
            if u.filters.is_empty() {
                return Err(EncodeError::Empty);
            }
            let mut remaining = 2;
            for f in &u.filters {
                remaining += field(f.as_bytes())?;
            }
            let n = header(out, 0xA2, remaining)?;
            put_u16(out, u.packet_id);
            for f in &u.filters {
                put_bytes(out, f.as_bytes());
            }
            Ok(n)
        }
        Packet::PingReq => {
            out.extend_from_slice(&[0xC0, 0]);
            Ok(2)
        }
        Packet::PingResp => {
            out.extend_from_slice(&[0xD0, 0]);
            Ok(2)
        }
        Packet::Disconnect => {
            out.extend_from_slice(&[0xE0, 0]);
            Ok(2)
        }
    }
}
