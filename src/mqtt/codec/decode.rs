//! The decoder: bounds-checked parsing of one packet, and the streaming
//! [`Decoder`] that buffers partial packets.

use super::{DecodeError, DEFAULT_MAX_PACKET_SIZE};
use crate::mqtt::packet::*;
use crate::mqtt::topic::{validate_topic_filter, validate_topic_name};

/// A bounds-checked cursor over one packet's body.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        // `take(1)` returned exactly one byte.
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?; // exactly two bytes
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn packet_id(&mut self) -> Result<u16, DecodeError> {
        match self.u16()? {
            0 => Err(DecodeError::ZeroPacketId),
            id => Ok(id),
        }
    }
    fn binary(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u16()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Result<String, DecodeError> {
        let b = self.binary()?;
        if b.contains(&0) {
            return Err(DecodeError::InvalidUtf8);
        }
        core::str::from_utf8(b).map(str::to_owned).map_err(|_| DecodeError::InvalidUtf8)
    }
    fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos.min(self.buf.len())..];
        self.pos = self.buf.len();
        s
    }
    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }
    fn finish(&self) -> Result<(), DecodeError> {
        if self.at_end() {
            Ok(())
        } else {
            Err(DecodeError::MalformedPacket("bytes after the last field"))
        }
    }
}

/// Parses the fixed header at the start of `buf`: `Ok(None)` while it is
/// incomplete, else `(header length, remaining length)`.
pub(crate) fn parse_fixed_header(buf: &[u8]) -> Result<Option<(usize, usize)>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let ptype = first >> 4;
    if ptype == 0 || ptype == 15 {
        return Err(DecodeError::InvalidPacketType(ptype));
    }
    let mut value = 0usize;
    let mut shift = 0;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        value |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(Some((2 + i, value)));
        }
        shift += 7;
    }
    Err(DecodeError::MalformedRemainingLength)
}

fn expect_flags(ptype: u8, flags: u8, want: u8) -> Result<(), DecodeError> {
    if flags == want {
        Ok(())
    } else {
        Err(DecodeError::InvalidFlags { packet_type: ptype, flags })
    }
}

fn decode_connect(r: &mut Reader<'_>) -> Result<Packet, DecodeError> {
    if r.binary()? != b"MQTT" {
        return Err(DecodeError::UnsupportedProtocol);
    }
    if r.u8()? != 4 {
        return Err(DecodeError::UnsupportedProtocol);
    }
    let flags = r.u8()?;
    if flags & 0x01 != 0 {
        return Err(DecodeError::MalformedPacket("CONNECT reserved flag set"));
    }
    let has_will = flags & 0x04 != 0;
    let will_qos_bits = (flags >> 3) & 0x03;
    let will_retain = flags & 0x20 != 0;
    let has_password = flags & 0x40 != 0;
    let has_username = flags & 0x80 != 0;
    if !has_will && (will_qos_bits != 0 || will_retain) {
        return Err(DecodeError::MalformedPacket("Will QoS/retain without Will"));
    }
    if has_password && !has_username {
        return Err(DecodeError::MalformedPacket("password without username"));
    }
    let will_qos = QoS::from_u8(will_qos_bits).ok_or(DecodeError::InvalidQoS(will_qos_bits))?;
    let keep_alive = r.u16()?;
    let client_id = r.string()?;
    let will = if has_will {
        let topic = r.string()?;
        validate_topic_name(&topic).map_err(DecodeError::InvalidTopic)?;
        let payload = r.binary()?.to_vec();
        Some(Will { topic, payload, qos: will_qos, retain: will_retain })
    } else {
        None
    };
    let username = if has_username { Some(r.string()?) } else { None };
    let password = if has_password { Some(r.binary()?.to_vec()) } else { None };
    r.finish()?;
    Ok(Packet::Connect(Connect {
        clean_session: flags & 0x02 != 0,
        keep_alive,
        client_id,
        will,
        username,
        password,
    }))
}

fn decode_publish(flags: u8, r: &mut Reader<'_>) -> Result<Packet, DecodeError> {
    let dup = flags & 0x08 != 0;
    let qos_bits = (flags >> 1) & 0x03;
    let qos = QoS::from_u8(qos_bits).ok_or(DecodeError::InvalidQoS(qos_bits))?;
    if dup && qos == QoS::AtMostOnce {
        return Err(DecodeError::InvalidFlags { packet_type: 3, flags });
    }
    let topic = r.string()?;
    validate_topic_name(&topic).map_err(DecodeError::InvalidTopic)?;
    let packet_id = if qos == QoS::AtMostOnce { 0 } else { r.packet_id()? };
    let payload = r.rest().to_vec();
    Ok(Packet::Publish(Publish { dup, qos, retain: flags & 0x01 != 0, topic, packet_id, payload }))
}

/// Packets only a client sends (CONNECT, SUBSCRIBE, UNSUBSCRIBE) decoded
/// from a broker's stream: the packet kind with empty fields, so the session
/// names it in `ProtocolError::UnexpectedPacket` as before, without this
/// parsing code (~0.5 KB gzip) in a client-only build ([`Decoder::next_from_broker`]).
fn client_only_kind(ptype: u8) -> Packet {
    match ptype {
        1 => Packet::Connect(Connect {
            clean_session: false,
            keep_alive: 0,
            client_id: String::new(),
            will: None,
            username: None,
            password: None,
        }),
        8 => Packet::Subscribe(Subscribe { packet_id: 0, filters: Vec::new() }),
        _ => Packet::Unsubscribe(Unsubscribe { packet_id: 0, filters: Vec::new() }),
    }
}

/// One packet's body. `ALL`: every packet type; otherwise (a client reading
/// its broker) the client-only types are not parsed, see [`client_only_kind`].
fn decode_body<const ALL: bool>(first: u8, body: &[u8]) -> Result<Packet, DecodeError> {
    let ptype = first >> 4;
    let flags = first & 0x0f;
    let mut r = Reader { buf: body, pos: 0 };
    let fixed = |want_flags: u8, len: usize| -> Result<(), DecodeError> {
        expect_flags(ptype, flags, want_flags)?;
        if body.len() != len {
            return Err(DecodeError::MalformedPacket("wrong remaining length"));
        }
        Ok(())
    };
    let packet = match ptype {
        1 | 8 | 10 if !ALL => return Ok(client_only_kind(ptype)),
        1 => {
            expect_flags(ptype, flags, 0)?;
            return decode_connect(&mut r);
        }
        2 => {
            fixed(0, 2)?;
            let ack_flags = r.u8()?;
            if ack_flags & 0xFE != 0 {
                return Err(DecodeError::MalformedPacket("CONNACK reserved flags set"));
            }
            let c = r.u8()?;
            let code = ConnectReturnCode::from_u8(c).ok_or(DecodeError::InvalidReturnCode(c))?;
            Packet::ConnAck(ConnAck { session_present: ack_flags & 1 != 0, code })
        }
        3 => return decode_publish(flags, &mut r),
        4 => {
            fixed(0, 2)?;
            Packet::PubAck(r.packet_id()?)
        }
        5 => {
            fixed(0, 2)?;
            Packet::PubRec(r.packet_id()?)
        }
        6 => {
            fixed(2, 2)?;
            Packet::PubRel(r.packet_id()?)
        }
        7 => {
            fixed(0, 2)?;
            Packet::PubComp(r.packet_id()?)
        }
        8 => {
            expect_flags(ptype, flags, 2)?;
            let packet_id = r.packet_id()?;
            let mut filters = Vec::new();
            while !r.at_end() {
                let f = r.string()?;
                validate_topic_filter(&f).map_err(DecodeError::InvalidTopic)?;
                let q = r.u8()?;
                let qos = QoS::from_u8(q).ok_or(DecodeError::InvalidQoS(q))?;
                filters.push((f, qos));
            }
            if filters.is_empty() {
                return Err(DecodeError::MalformedPacket("SUBSCRIBE without filters"));
            }
            Packet::Subscribe(Subscribe { packet_id, filters })
        }
        9 => {
            expect_flags(ptype, flags, 0)?;
            let packet_id = r.packet_id()?;
            let codes = r.rest();
            if codes.is_empty() {
                return Err(DecodeError::MalformedPacket("SUBACK without return codes"));
            }
            let mut return_codes = Vec::with_capacity(codes.len());
            for &c in codes {
                return_codes.push(match c {
                    0x80 => None,
                    _ => Some(QoS::from_u8(c).ok_or(DecodeError::InvalidReturnCode(c))?),
                });
            }
            Packet::SubAck(SubAck { packet_id, return_codes })
        }
        10 => {
            expect_flags(ptype, flags, 2)?;
            let packet_id = r.packet_id()?;
            let mut filters = Vec::new();
            while !r.at_end() {
                let f = r.string()?;
                validate_topic_filter(&f).map_err(DecodeError::InvalidTopic)?;
                filters.push(f);
            }
            if filters.is_empty() {
                return Err(DecodeError::MalformedPacket("UNSUBSCRIBE without filters"));
            }
            Packet::Unsubscribe(Unsubscribe { packet_id, filters })
        }
        11 => {
            fixed(0, 2)?;
            Packet::UnsubAck(r.packet_id()?)
        }
        12 => {
            fixed(0, 0)?;
            Packet::PingReq
        }
        13 => {
            fixed(0, 0)?;
            Packet::PingResp
        }
        14 => {
            fixed(0, 0)?;
            Packet::Disconnect
        }
        t => return Err(DecodeError::InvalidPacketType(t)),
    };
    r.finish()?;
    Ok(packet)
}

/// Decodes exactly one complete packet from the start of `buf`: `Ok(None)`
/// if `buf` holds less than a whole packet, else the packet and its length.
pub fn decode_one(buf: &[u8], max_packet_size: usize) -> Result<Option<(Packet, usize)>, DecodeError> {
    decode_one_of::<true>(buf, max_packet_size)
}

fn decode_one_of<const ALL: bool>(buf: &[u8], max_packet_size: usize) -> Result<Option<(Packet, usize)>, DecodeError> {
    let Some((header_len, remaining)) = parse_fixed_header(buf)? else {
        return Ok(None);
    };
    let size = header_len + remaining;
    if size > max_packet_size {
        return Err(DecodeError::PacketTooLarge { size, max: max_packet_size });
    }
    let Some(body) = buf.get(header_len..size) else {
        return Ok(None);
    };
    // `buf` is non-empty: the fixed header was parsed from it.
    Ok(Some((decode_body::<ALL>(buf[0], body)?, size)))
}

/// Streaming decoder: feed chunks, take packets.
///
/// Keeps a buffer with a read offset; consumed bytes are dropped when the
/// buffer empties, and compacted when they outweigh the unread tail, so a
/// long stream costs amortised O(1) per byte. After an error the decoder
/// stays failed (the stream cannot be resynchronised); [`Decoder::reset`] it
/// for a new connection.
#[derive(Debug, Clone)]
pub struct Decoder {
    buf: Vec<u8>,
    pos: usize,
    max_packet_size: usize,
    error: Option<DecodeError>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DEFAULT_MAX_PACKET_SIZE)
    }
}

impl Decoder {
    /// A decoder that refuses packets bigger than `max_packet_size` bytes
    /// (fixed header included) as soon as their header arrives.
    pub fn new(max_packet_size: usize) -> Self {
        Decoder { buf: Vec::new(), pos: 0, max_packet_size, error: None }
    }

    /// Drops all buffered bytes and any error (a new connection).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.pos = 0;
        self.error = None;
    }

    /// Bytes received but not yet returned as packets.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn make_room(&mut self) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 0 && self.pos >= self.buf.len() - self.pos {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }

    /// Appends a chunk.
    pub fn feed(&mut self, data: &[u8]) {
        if self.error.is_some() {
            return;
        }
        self.make_room();
        self.buf.extend_from_slice(data);
    }

    /// Appends a chunk the caller owns; when nothing is buffered the chunk
    /// itself becomes the buffer (no copy — the common case of a WebSocket
    /// frame that holds whole packets).
    pub fn feed_owned(&mut self, data: Vec<u8>) {
        if self.error.is_some() {
            return;
        }
        self.make_room();
        if self.buf.is_empty() {
            self.buf = data;
        } else {
            self.buf.extend_from_slice(&data);
        }
    }

    /// The next complete packet, `Ok(None)` when more bytes are needed.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, DecodeError> {
        self.next::<true>()
    }

    /// [`Decoder::next_packet`] for a client reading its broker: CONNECT,
    /// SUBSCRIBE and UNSUBSCRIBE (which no broker sends) come out as their
    /// kind with empty fields and their bodies unchecked; the session refuses
    /// them by kind all the same. Every other packet decodes exactly as with
    /// `next_packet`. Keeps the client-bound parsers out of the wasm.
    pub fn next_from_broker(&mut self) -> Result<Option<Packet>, DecodeError> {
        self.next::<false>()
    }

    fn next<const ALL: bool>(&mut self) -> Result<Option<Packet>, DecodeError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        match decode_one_of::<ALL>(&self.buf[self.pos..], self.max_packet_size) {
            Ok(Some((packet, size))) => {
                self.pos += size;
                Ok(Some(packet))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                self.error = Some(e.clone());
                self.buf = Vec::new();
                self.pos = 0;
                Err(e)
            }
        }
    }
}
