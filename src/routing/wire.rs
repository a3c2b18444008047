//! The binary bodies of the routing layer, carried inside the signed envelope,
//! and where they travel (`PROTOCOL.md` Part 5 has the byte tables).
//!
//! Conventions as in Parts 2 and 3: unsigned big-endian integers; byte 0 of
//! every body is its **type**, which must agree with the envelope kind:
//!
//! | kind | type | body |
//! |---|---|---|
//! | APP_MESSAGE (8) | `0x20` | [`Data`] |
//! | APP_MESSAGE (8) | `0x21` | [`Ack`] |
//! | PROBE (10) | `0x22` | nonce |
//! | PROBE_REPLY (11) | `0x23` | nonce |
//! | RTC_SIGNAL (7) | `0x24`–`0x27` | [`Signal`] |
//!
//! Type bytes are distinct across all kinds (Part 3 uses `0x01`–`0x04`,
//! replication `0x10`–`0x13`), so a body names what it is on its own.
//!
//! Decoding is total (a value or a [`WireError`], never a panic); bytes after
//! the fields a type defines are ignored so a later version may append some.

use crate::envelope::{is_valid_id, Kind, MAX_ID_LEN};
use crate::topics::{self, MAX_APP_LEVELS};
use crate::wire::WireError;

/// Data body type byte (APP_MESSAGE).
pub const TYPE_DATA: u8 = 0x20;
/// Ack body type byte (APP_MESSAGE).
pub const TYPE_ACK: u8 = 0x21;
/// Probe body type byte (PROBE).
pub const TYPE_PROBE: u8 = 0x22;
/// Probe reply body type byte (PROBE_REPLY).
pub const TYPE_PROBE_REPLY: u8 = 0x23;
/// RTC_SIGNAL types.
pub const SIGNAL_OFFER: u8 = 0x24;
/// See [`SIGNAL_OFFER`].
pub const SIGNAL_ANSWER: u8 = 0x25;
/// See [`SIGNAL_OFFER`].
pub const SIGNAL_CANDIDATE: u8 = 0x26;
/// See [`SIGNAL_OFFER`].
pub const SIGNAL_REQUEST: u8 = 0x27;

/// Data flag: the sender wants an [`Ack`] (direct and meshed-room copies).
pub const FLAG_ACK: u8 = 0x01;
/// Data flag: a room name follows (a room message, not a direct one).
pub const FLAG_ROOM: u8 = 0x02;
/// Longest room name, bytes.
pub const MAX_ROOM_LEN: usize = 255;
/// Most entries in one ack body.
pub const MAX_ACK_ENTRIES: usize = 255;
/// Bytes of one ACK entry on the wire: message id (u64) and attempt (u8).
const ACK_ENTRY_LEN: usize = 9;
/// Fixed bytes of a data body without room and payload.
pub const DATA_OVERHEAD: usize = 1 + 1 + 8 + 8 + 8 + 8 + 1 + 4;

/// An application message (or one copy of it, for one recipient).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Data {
    /// The recipient should ack (meshed copies); broker-room copies do not.
    pub ack: bool,
    /// `Some` for a room message.
    pub room: Option<String>,
    /// The sender's router life; grows across restarts.
    pub epoch: u64,
    /// Per-sender, per-conversation sequence number, from 1.
    pub seq: u64,
    /// Lowest seq the receiver still has to wait for: everything below was
    /// acked by it or given up by the sender (`base <= seq`).
    pub base: u64,
    /// Message id, unique per sender within an epoch.
    pub id: u64,
    /// Transmission number of this copy (1, 2, …), echoed in the ack.
    pub attempt: u8,
    /// The application's bytes.
    pub payload: Vec<u8>,
}

/// One acked transmission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AckEntry {
    /// The data's message id.
    pub id: u64,
    /// The data's attempt (tells the sender which route delivered it).
    pub attempt: u8,
}

/// Acks for data of one epoch of the recipient of the ack.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ack {
    /// The acked data's epoch (an ack for another life is ignored).
    pub epoch: u64,
    /// 1..=255 entries.
    pub entries: Vec<AckEntry>,
}

/// An APP_MESSAGE body.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AppBody {
    /// A message.
    Data(Data),
    /// Acks.
    Ack(Ack),
}

/// WebRTC signalling (RTC_SIGNAL bodies). `session` is chosen by the offerer
/// per connection attempt; answers and candidates echo it, so signals of an
/// abandoned attempt are recognised and ignored.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Signal {
    /// SDP offer (UTF-8).
    Offer {
        /// Attempt id.
        session: u32,
        /// The SDP.
        sdp: String,
    },
    /// SDP answer (UTF-8).
    Answer {
        /// The offer's attempt id.
        session: u32,
        /// The SDP.
        sdp: String,
    },
    /// A trickled ICE candidate (an empty `candidate` ends the list).
    Candidate {
        /// Attempt id.
        session: u32,
        /// `candidate` attribute.
        candidate: String,
        /// `sdpMid`, `None` when absent.
        mid: Option<String>,
        /// `sdpMLineIndex`, `None` when absent.
        mline: Option<u16>,
    },
    /// "Please send me an offer": the device with the greater id asks the
    /// one with the smaller id, which always makes the offers (no glare).
    Request,
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.b.len() < n {
            return Err(WireError::Truncated);
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
    fn string(&mut self, len: usize) -> Result<String, WireError> {
        let b = self.take(len)?;
        String::from_utf8(b.to_vec()).map_err(|_| WireError::BadField)
    }
}

/// True for a room name: 1..=255 bytes, 1..=8 `/`-separated levels, each an
/// envelope id (so `vm/{venue}/topic/{room}` is a valid app topic).
pub fn is_valid_room(room: &str) -> bool {
    !room.is_empty()
        && room.len() <= MAX_ROOM_LEN
        && room.split('/').count() <= MAX_APP_LEVELS
        && room.split('/').all(is_valid_id)
}

impl AppBody {
    /// Encodes; `Err(BadField)` for an invalid room, an empty or oversized
    /// ack, or a payload over 4 GiB.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        match self {
            AppBody::Data(d) => {
                let room = d.room.as_deref().unwrap_or("");
                let len = u32::try_from(d.payload.len()).map_err(|_| WireError::BadField)?;
                if d.room.is_some() && !is_valid_room(room) {
                    return Err(WireError::BadField);
                }
                let mut out = Vec::with_capacity(DATA_OVERHEAD + 1 + room.len() + d.payload.len());
                out.push(TYPE_DATA);
                let flags = if d.ack { FLAG_ACK } else { 0 } | if d.room.is_some() { FLAG_ROOM } else { 0 };
                out.push(flags);
                if d.room.is_some() {
                    out.push(room.len() as u8);
                    out.extend_from_slice(room.as_bytes());
                }
                for v in [d.epoch, d.seq, d.base, d.id] {
                    out.extend_from_slice(&v.to_be_bytes());
                }
                out.push(d.attempt);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&d.payload);
                Ok(out)
            }
            AppBody::Ack(a) => {
                if a.entries.is_empty() || a.entries.len() > MAX_ACK_ENTRIES {
                    return Err(WireError::BadField);
                }
                let mut out = Vec::with_capacity(10 + 9 * a.entries.len());
                out.push(TYPE_ACK);
                out.extend_from_slice(&a.epoch.to_be_bytes());
                out.push(a.entries.len() as u8);
                for e in &a.entries {
                    out.extend_from_slice(&e.id.to_be_bytes());
                    out.push(e.attempt);
                }
                Ok(out)
            }
        }
    }

    /// Decodes an APP_MESSAGE body.
    pub fn decode(b: &[u8]) -> Result<AppBody, WireError> {
        let mut r = Reader { b };
        match r.u8().map_err(|_| WireError::Empty)? {
            TYPE_DATA => {
                let flags = r.u8()?;
                let room = if flags & FLAG_ROOM != 0 {
                    let n = usize::from(r.u8()?);
                    let room = r.string(n)?;
                    if !is_valid_room(&room) {
                        return Err(WireError::BadField);
                    }
                    Some(room)
                } else {
                    None
                };
                let (epoch, seq, base, id) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
                let attempt = r.u8()?;
                let len = r.u32()? as usize;
                let payload = r.take(len)?.to_vec();
                if base > seq || seq == 0 {
                    return Err(WireError::BadField);
                }
                Ok(AppBody::Data(Data { ack: flags & FLAG_ACK != 0, room, epoch, seq, base, id, attempt, payload }))
            }
            TYPE_ACK => {
                let epoch = r.u64()?;
                let n = usize::from(r.u8()?);
                if n == 0 {
                    return Err(WireError::BadField);
                }
                // Refuse a count the input cannot hold before reserving room for it:
                // a 10-byte ACK must not make us allocate 255 entries.
                if r.b.len() < n * ACK_ENTRY_LEN {
                    return Err(WireError::Truncated);
                }
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    entries.push(AckEntry { id: r.u64()?, attempt: r.u8()? });
                }
                Ok(AppBody::Ack(Ack { epoch, entries }))
            }
            t => Err(WireError::UnknownType(t)),
        }
    }
}

/// PROBE body: `22` + nonce (9 bytes).
pub fn encode_probe(nonce: u64) -> Vec<u8> {
    nonce_body(TYPE_PROBE, nonce)
}

/// PROBE_REPLY body: `23` + the probe's nonce (9 bytes).
pub fn encode_probe_reply(nonce: u64) -> Vec<u8> {
    nonce_body(TYPE_PROBE_REPLY, nonce)
}

fn nonce_body(t: u8, nonce: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    out.push(t);
    out.extend_from_slice(&nonce.to_be_bytes());
    out
}

/// Decodes a PROBE body to its nonce.
pub fn decode_probe(b: &[u8]) -> Result<u64, WireError> {
    decode_nonce(TYPE_PROBE, b)
}

/// Decodes a PROBE_REPLY body to its nonce.
pub fn decode_probe_reply(b: &[u8]) -> Result<u64, WireError> {
    decode_nonce(TYPE_PROBE_REPLY, b)
}

fn decode_nonce(want: u8, b: &[u8]) -> Result<u64, WireError> {
    let mut r = Reader { b };
    match r.u8().map_err(|_| WireError::Empty)? {
        t if t == want => r.u64(),
        t => Err(WireError::UnknownType(t)),
    }
}

impl Signal {
    /// Encodes; `Err(BadField)` when a string is too long for its length field.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::new();
        let long = |s: &str, out: &mut Vec<u8>| -> Result<(), WireError> {
            let n = u32::try_from(s.len()).map_err(|_| WireError::BadField)?;
            out.extend_from_slice(&n.to_be_bytes());
            out.extend_from_slice(s.as_bytes());
            Ok(())
        };
        let short = |s: &str, out: &mut Vec<u8>| -> Result<(), WireError> {
            let n = u16::try_from(s.len()).map_err(|_| WireError::BadField)?;
            out.extend_from_slice(&n.to_be_bytes());
            out.extend_from_slice(s.as_bytes());
            Ok(())
        };
        match self {
            Signal::Offer { session, sdp } | Signal::Answer { session, sdp } => {
                out.push(if matches!(self, Signal::Offer { .. }) { SIGNAL_OFFER } else { SIGNAL_ANSWER });
                out.extend_from_slice(&session.to_be_bytes());
                long(sdp, &mut out)?;
            }
            Signal::Candidate { session, candidate, mid, mline } => {
                out.push(SIGNAL_CANDIDATE);
                out.extend_from_slice(&session.to_be_bytes());
                short(candidate, &mut out)?;
                out.push(u8::from(mid.is_some()));
                short(mid.as_deref().unwrap_or(""), &mut out)?;
                out.extend_from_slice(&mline.unwrap_or(u16::MAX).to_be_bytes());
            }
            Signal::Request => out.push(SIGNAL_REQUEST),
        }
        Ok(out)
    }

    /// Decodes an RTC_SIGNAL body.
    pub fn decode(b: &[u8]) -> Result<Signal, WireError> {
        let mut r = Reader { b };
        match r.u8().map_err(|_| WireError::Empty)? {
            t @ (SIGNAL_OFFER | SIGNAL_ANSWER) => {
                let session = r.u32()?;
                let n = r.u32()? as usize;
                let sdp = r.string(n)?;
                Ok(if t == SIGNAL_OFFER { Signal::Offer { session, sdp } } else { Signal::Answer { session, sdp } })
            }
            SIGNAL_CANDIDATE => {
                let session = r.u32()?;
                let n = usize::from(r.u16()?);
                let candidate = r.string(n)?;
                let has_mid = r.u8()? != 0;
                let n = usize::from(r.u16()?);
                let mid = r.string(n)?;
                let mline = r.u16()?;
                Ok(Signal::Candidate {
                    session,
                    candidate,
                    mid: has_mid.then_some(mid),
                    mline: (mline != u16::MAX).then_some(mline),
                })
            }
            SIGNAL_REQUEST => Ok(Signal::Request),
            t => Err(WireError::UnknownType(t)),
        }
    }
}

/// Whether `me` makes the offer to `peer`: the smaller id (byte order) does,
/// so two devices never offer to each other at once.
pub fn offers_to(me: &str, peer: &str) -> bool {
    me.as_bytes() < peer.as_bytes()
}

// ----- topics and frames ---------------------------------------------------

/// `vm/{venue}/dev/{device}/msg`: direct data, acks, probes and probe
/// replies for `device` over the broker (`PROTOCOL.md` Part 5 §1).
pub fn direct_topic(venue: &str, device: &str) -> String {
    format!("{}/{venue}/dev/{device}/msg", topics::ROOT)
}

/// `vm/{venue}/topic/{room}`: room messages of rooms too big to mesh.
pub fn room_topic(venue: &str, room: &str) -> String {
    topics::app(venue, room)
}

/// The device a `vm/{venue}/dev/{device}/msg` topic names, if `topic` is
/// one for `venue` ([`crate::topics::parse`] reads it too, as `TopicKind::Msg`).
pub fn parse_direct_topic<'a>(venue: &str, topic: &'a str) -> Option<&'a str> {
    let rest = topic.strip_prefix(topics::ROOT)?.strip_prefix('/')?.strip_prefix(venue)?.strip_prefix("/dev/")?;
    let device = rest.strip_suffix("/msg")?;
    is_valid_id(device).then_some(device)
}

/// Where a [`crate::routing::Output::Transmit`] on the broker goes: topic and
/// QoS. Data and signals use QoS 1 (they survive a reconnect inside the MQTT
/// client); acks and probes QoS 0 (a lost one is repaired by a resend or
/// counts as loss, which is what a probe measures). Never retained. `None`
/// for [`crate::routing::Addr::AllTabs`], which is not a broker address.
pub fn broker_topic(venue: &str, to: &crate::routing::Addr, kind: Kind, body: &[u8]) -> Option<(String, u8)> {
    use crate::routing::Addr;
    let data = kind == Kind::AppMessage && body.first() == Some(&TYPE_DATA);
    match to {
        Addr::Peer(p) if kind == Kind::RtcSignal => Some((topics::rtc(venue, p), 1)),
        Addr::Peer(p) => Some((direct_topic(venue, p), u8::from(data))),
        Addr::Room(r) => Some((room_topic(venue, r), 1)),
        Addr::AllTabs => None,
    }
}

/// A BroadcastChannel message: `to_len`, `to` (empty = every tab), then one
/// envelope. Tabs see every post, so the frame names its recipient.
pub fn tab_frame(to: Option<&str>, envelope: &[u8]) -> Vec<u8> {
    let to = to.unwrap_or("");
    let mut out = Vec::with_capacity(1 + to.len() + envelope.len());
    out.push(to.len().min(MAX_ID_LEN) as u8);
    out.extend_from_slice(&to.as_bytes()[..to.len().min(MAX_ID_LEN)]);
    out.extend_from_slice(envelope);
    out
}

/// Splits a tab frame into `(to, envelope)`; `to` is `None` for a broadcast.
/// `None` for a malformed frame.
pub fn parse_tab_frame(frame: &[u8]) -> Option<(Option<&str>, &[u8])> {
    let n = usize::from(*frame.first()?);
    if n > MAX_ID_LEN || frame.len() < 1 + n {
        return None;
    }
    let to = core::str::from_utf8(&frame[1..1 + n]).ok()?;
    let to = if n == 0 {
        None
    } else {
        Some(to).filter(|t| is_valid_id(t))?.into()
    };
    Some((to, &frame[1 + n..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::Addr;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// The byte examples of PROTOCOL.md Part 5 §1 and §3.
    #[test]
    fn documented_examples() {
        let d = AppBody::Data(Data {
            ack: true,
            room: Some("chat".into()),
            epoch: 7,
            seq: 3,
            base: 2,
            id: 42,
            attempt: 1,
            payload: b"hi".to_vec(),
        });
        assert_eq!(
            hex(&d.encode().unwrap()),
            "2003046368617400000000000000070000000000000003000000000000000200000000000000\
             2a01000000026869"
        );
        let a = AppBody::Ack(Ack { epoch: 7, entries: vec![AckEntry { id: 42, attempt: 2 }] });
        assert_eq!(hex(&a.encode().unwrap()), "21000000000000000701000000000000002a02");
        assert_eq!(hex(&encode_probe(0x0102)), "220000000000000102");
        assert_eq!(hex(&encode_probe_reply(0x0102)), "230000000000000102");
        let o = Signal::Offer { session: 5, sdp: "v=0".into() };
        assert_eq!(hex(&o.encode().unwrap()), "240000000500000003763d30");
        let c = Signal::Candidate { session: 5, candidate: "c".into(), mid: Some("0".into()), mline: Some(0) };
        assert_eq!(hex(&c.encode().unwrap()), "2600000005000163010001300000");
        assert_eq!(hex(&Signal::Request.encode().unwrap()), "27");
        assert_eq!(hex(&tab_frame(Some("b"), &[0xee])), "0162ee");
    }

    #[test]
    fn round_trips() {
        let bodies = [
            AppBody::Data(Data { ack: false, room: None, epoch: 1, seq: 1, base: 1, id: u64::MAX, attempt: 255, payload: vec![] }),
            AppBody::Data(Data { ack: true, room: Some("a/b-c".into()), epoch: 9, seq: 10, base: 4, id: 0, attempt: 1, payload: vec![0; 1000] }),
            AppBody::Ack(Ack { epoch: 3, entries: (0..255).map(|i| AckEntry { id: i, attempt: 1 }).collect() }),
        ];
        for b in bodies {
            assert_eq!(AppBody::decode(&b.encode().unwrap()).unwrap(), b);
        }
        let signals = [
            Signal::Offer { session: 1, sdp: "v=0\r\nö".into() },
            Signal::Answer { session: u32::MAX, sdp: String::new() },
            Signal::Candidate { session: 2, candidate: String::new(), mid: None, mline: None },
            Signal::Request,
        ];
        for s in signals {
            assert_eq!(Signal::decode(&s.encode().unwrap()).unwrap(), s);
        }
        assert_eq!(decode_probe(&encode_probe(99)), Ok(99));
        assert_eq!(decode_probe_reply(&encode_probe_reply(99)), Ok(99));
        assert_eq!(decode_probe(&encode_probe_reply(99)), Err(WireError::UnknownType(TYPE_PROBE_REPLY)));
    }

    #[test]
    fn rejects_bad_input_without_panicking() {
        assert_eq!(AppBody::decode(&[]), Err(WireError::Empty));
        assert_eq!(AppBody::decode(&[9]), Err(WireError::UnknownType(9)));
        assert_eq!(AppBody::decode(&[TYPE_ACK, 0, 0, 0, 0, 0, 0, 0, 1, 0]), Err(WireError::BadField));
        let bad_room = AppBody::Data(Data { ack: false, room: Some("a b".into()), epoch: 1, seq: 1, base: 1, id: 1, attempt: 1, payload: vec![] });
        assert_eq!(bad_room.encode(), Err(WireError::BadField));
        // base above seq is a sender bug
        let mut ok = AppBody::Data(Data { ack: false, room: None, epoch: 1, seq: 2, base: 2, id: 1, attempt: 1, payload: vec![1] }).encode().unwrap();
        ok[25] = 3; // low byte of base
        assert_eq!(AppBody::decode(&ok), Err(WireError::BadField));
        // every truncation of valid bodies is an error, never a panic
        let full = AppBody::Data(Data { ack: true, room: Some("r".into()), epoch: 1, seq: 1, base: 1, id: 1, attempt: 1, payload: vec![1, 2] }).encode().unwrap();
        for n in 0..full.len() {
            assert!(AppBody::decode(&full[..n]).is_err(), "{n}");
        }
        let sig = Signal::Candidate { session: 1, candidate: "x".into(), mid: Some("m".into()), mline: Some(1) }.encode().unwrap();
        for n in 0..sig.len() {
            assert!(Signal::decode(&sig[..n]).is_err(), "{n}");
        }
        // arbitrary bytes
        let mut rng = crate::rng::Rng::new(5);
        for _ in 0..20_000 {
            let n = rng.below(40) as usize;
            let b: Vec<u8> = (0..n).map(|_| rng.below(256) as u8).collect();
            let _ = AppBody::decode(&b);
            let _ = Signal::decode(&b);
            let _ = decode_probe(&b);
            let _ = decode_probe_reply(&b);
            let _ = parse_tab_frame(&b);
        }
    }

    #[test]
    fn topics_and_frames() {
        assert_eq!(direct_topic("v", "d"), "vm/v/dev/d/msg");
        assert_eq!(parse_direct_topic("v", "vm/v/dev/d-1/msg"), Some("d-1"));
        assert_eq!(parse_direct_topic("v", "vm/w/dev/d/msg"), None);
        assert_eq!(parse_direct_topic("v", "vm/v/dev/d/rtc"), None);
        assert_eq!(parse_direct_topic("v", "vm/v/dev/a/b/msg"), None);
        let data = AppBody::Data(Data { ack: true, room: None, epoch: 1, seq: 1, base: 1, id: 1, attempt: 1, payload: vec![] }).encode().unwrap();
        assert_eq!(broker_topic("v", &Addr::Peer("d".into()), Kind::AppMessage, &data), Some(("vm/v/dev/d/msg".into(), 1)));
        assert_eq!(broker_topic("v", &Addr::Peer("d".into()), Kind::Probe, &[1]), Some(("vm/v/dev/d/msg".into(), 0)));
        assert_eq!(broker_topic("v", &Addr::Peer("d".into()), Kind::RtcSignal, &[SIGNAL_REQUEST]), Some(("vm/v/dev/d/rtc".into(), 1)));
        assert_eq!(broker_topic("v", &Addr::Room("chat/r1".into()), Kind::AppMessage, &data), Some(("vm/v/topic/chat/r1".into(), 1)));
        assert_eq!(broker_topic("v", &Addr::AllTabs, Kind::Probe, &[1]), None);
        assert!(is_valid_room("chat/r1") && !is_valid_room("") && !is_valid_room("a//b") && !is_valid_room(&("a/".repeat(8) + "a")));
        let f = tab_frame(None, b"env");
        assert_eq!(parse_tab_frame(&f), Some((None, &b"env"[..])));
        let f = tab_frame(Some("tab-2"), b"env");
        assert_eq!(parse_tab_frame(&f), Some((Some("tab-2"), &b"env"[..])));
        assert_eq!(parse_tab_frame(&[3, b'a']), None);
        assert_eq!(parse_tab_frame(&[1, b'/']), None);
        assert!(offers_to("a", "b") && !offers_to("b", "a"));
    }

}
