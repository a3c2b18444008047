//! The binary bodies of replication and upstream messages, carried inside
//! the signed envelope (`PROTOCOL.md` Part 4 has the byte tables).
//!
//! Conventions as in the election bodies: unsigned big-endian integers, an
//! *id* (device) is a length byte 1..=64 plus that many bytes of the id
//! alphabet, byte 0 is the body type and must agree with the envelope kind:
//!
//! | type | body | envelope kind | topic |
//! |---|---|---|---|
//! | `0x10` | Replicate | REPLICATE_COMMAND (4) | `dev/{target}/rep` |
//! | `0x11` | SyncAck | SYNC_ACK (5) | `dev/{origin of the request}/ack` |
//! | `0x12` | CloudAck | CLOUD_ACK (6) | `cloud` |
//! | `0x13` | Upload | UPLOAD (12) | `up` |
//! | `0x14` | Tentative | REPLICATE_COMMAND (4) | `dev/{target}/rep` |
//! | `0x15` | Confirm | REPLICATE_COMMAND (4) | `dev/{holder}/rep` |
//!
//! Decoding is total (any bytes give a value or a [`WireError`]) and
//! allocates at most what the bytes hold.

use std::rc::Rc;

use crate::envelope::Kind;
use crate::wire::{put_id, Reader, WireError};
use crate::outbox::CommandId;

/// Body type of a replication batch.
pub const TYPE_REPLICATE: u8 = 0x10;
/// Body type of a durability acknowledgement.
pub const TYPE_SYNC_ACK: u8 = 0x11;
/// Body type of a cloud acknowledgement.
pub const TYPE_CLOUD_ACK: u8 = 0x12;
/// Body type of an upload batch (hub → ingest).
pub const TYPE_UPLOAD: u8 = 0x13;
/// Body type of a tentative copy: sent by its origin while its own commit
/// is still running (layout of [`TYPE_REPLICATE`]).
pub const TYPE_TENTATIVE: u8 = 0x14;
/// Body type of the origin's verdict on tentative copies (committed or
/// withdrawn).
pub const TYPE_CONFIRM: u8 = 0x15;

/// Longest command id on the wire (the outbox's `max_id_len` default).
pub const MAX_COMMAND_ID: usize = 128;
/// Longest topic on the wire (the outbox's `max_topic_len` default).
pub const MAX_TOPIC: usize = 256;

/// One command as it travels between devices and to the cloud.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cmd {
    /// Globally unique, the idempotency key everywhere (outbox, ingest).
    pub id: CommandId,
    /// Device that enqueued it.
    pub origin: String,
    /// Application topic.
    pub topic: String,
    /// HLC stamp given at enqueue (or 0).
    pub hlc: u64,
    /// Wall-clock ms at enqueue on the origin.
    pub created_at: u64,
    /// Application bytes.
    pub payload: Vec<u8>,
    /// Ed25519 signature of the origin device over the venue and the
    /// fields above (`crate::trust::command`); all zeros until the origin's
    /// node signs its own command ([`crate::mesh::MeshNode::handle_committed`]).
    pub origin_sig: [u8; 64],
}

impl Cmd {
    /// A command without its origin signature yet.
    pub fn unsigned(id: CommandId, origin: String, topic: String, hlc: u64, created_at: u64, payload: Vec<u8>) -> Cmd {
        Cmd { id, origin, topic, hlc, created_at, payload, origin_sig: [0; 64] }
    }

    /// Bytes this command takes in a body.
    pub fn wire_len(&self) -> usize {
        2 + self.id.as_str().len() + 1 + self.origin.len() + 2 + self.topic.len() + 8 + 8 + 4 + self.payload.len() + 64
    }

    /// The signed fields: the command's encoding without the signature.
    pub fn fields(&self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::with_capacity(self.wire_len());
        put_cmd_fields(&mut out, self)?;
        Ok(out)
    }

    /// SHA-256(fields ‖ origin_sig): what a cloud receipt names.
    pub fn digest(&self) -> [u8; 32] {
        crate::trust::command::digest(&self.fields().unwrap_or_default(), &self.origin_sig)
    }

    /// A stored outbox record as the replicator carries it: `origin` is
    /// `me` for own commands; a replica keeps the origin signature it was
    /// stored with (zeros if the record predates it: peers and the ingest
    /// refuse such a copy, as they must).
    pub fn from_record(r: crate::outbox::CommandRecord, me: &str) -> Cmd {
        Cmd {
            origin: r.origin.unwrap_or_else(|| me.to_owned()),
            id: r.id,
            topic: r.topic,
            hlc: r.hlc,
            created_at: r.created_at,
            payload: r.payload,
            origin_sig: r.origin_sig.unwrap_or([0; 64]),
        }
    }

    /// The outbox record of a replica of another device's command
    /// (`peer_ack`), with its origin signature and `chain`, the origin's
    /// certificate chain, so it can be forwarded and uploaded after a reload
    /// even when the origin is gone.
    pub fn replica_record(&self, chain: Option<Vec<u8>>, now_wall: u64) -> crate::outbox::CommandRecord {
        crate::outbox::CommandRecord {
            id: self.id.clone(),
            topic: self.topic.clone(),
            payload: self.payload.clone(),
            status: crate::outbox::Status::PeerAck,
            retry_count: 0,
            created_at: self.created_at,
            updated_at: now_wall,
            hlc: self.hlc,
            last_error: None,
            origin: Some(self.origin.clone()),
            origin_sig: Some(self.origin_sig),
            origin_chain: chain,
        }
    }
}

/// How durable a command is on the device that sends a [`RepMsg::SyncAck`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckState {
    /// `1`: in the sender's IndexedDB.
    Durable,
    /// `2`: the sender knows the cloud has it (the requester may mark it `cloud_ack`).
    CloudAcked,
    /// `3`: in the sender's IndexedDB as a *tentative* copy (it came as
    /// [`RepMsg::Tentative`]); only its origin reads this state, counts it
    /// as durable and answers with [`RepMsg::Confirm`].
    Tentative,
}

impl AckState {
    fn code(self) -> u8 {
        match self {
            AckState::Durable => 1,
            AckState::CloudAcked => 2,
            AckState::Tentative => 3,
        }
    }
}

/// A replication or upstream message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RepMsg {
    /// Keep a durable replica of these commands, then acknowledge them.
    Replicate(Vec<Rc<Cmd>>),
    /// These commands are durable (or cloud-acked) on the sender.
    SyncAck(Vec<(CommandId, AckState)>),
    /// The cloud stored these commands (from the ingest, or from a hub whose
    /// upload hook succeeded).
    CloudAck(Vec<CommandId>),
    /// Keep a durable copy of these commands, which their origin (the
    /// sender) is still committing: hold it *tentatively* (never uploaded,
    /// forwarded or counted) until the origin's [`RepMsg::Confirm`], and
    /// acknowledge with [`AckState::Tentative`].
    Tentative(Vec<Rc<Cmd>>),
    /// The origin's verdict on tentative copies: `true` committed (the copy
    /// becomes a replica like any other), `false` withdrawn (its commit
    /// failed or never happened: drop the copy).
    Confirm(Vec<(CommandId, bool)>),
    /// A batch for the cloud; `batch` is the hub's sequence number (for logs;
    /// the ingest deduplicates by command id).
    Upload {
        /// Sequence number of the batch on the sending hub.
        batch: u64,
        /// The commands.
        cmds: Vec<Rc<Cmd>>,
    },
}

impl RepMsg {
    /// The envelope kind this body travels in.
    pub fn kind(&self) -> Kind {
        match self {
            RepMsg::Replicate(_) | RepMsg::Tentative(_) | RepMsg::Confirm(_) => Kind::ReplicateCommand,
            RepMsg::SyncAck(_) => Kind::SyncAck,
            RepMsg::CloudAck(_) => Kind::CloudAck,
            RepMsg::Upload { .. } => Kind::Upload,
        }
    }

    /// The body bytes. Errors on an invalid origin id, an empty or too long
    /// command id or topic, or more than 65 535 entries.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::new();
        match self {
            RepMsg::Replicate(_) | RepMsg::Tentative(_) | RepMsg::Upload { .. } => return encode_with_certs(self, &[]),
            RepMsg::SyncAck(acks) => {
                out.push(TYPE_SYNC_ACK);
                put_count(&mut out, acks.len())?;
                for (id, state) in acks {
                    out.push(state.code());
                    put_text(&mut out, id.as_str(), MAX_COMMAND_ID)?;
                }
            }
            RepMsg::Confirm(verdicts) => {
                out.push(TYPE_CONFIRM);
                put_count(&mut out, verdicts.len())?;
                for (id, committed) in verdicts {
                    out.push(u8::from(*committed));
                    put_text(&mut out, id.as_str(), MAX_COMMAND_ID)?;
                }
            }
            RepMsg::CloudAck(ids) => {
                // Only inside the node: on the wire a CLOUD_ACK body is
                // `0x12 · receipt` ([`encode_cloud_ack`]).
                out.push(TYPE_CLOUD_ACK);
                put_count(&mut out, ids.len())?;
                for id in ids {
                    put_text(&mut out, id.as_str(), MAX_COMMAND_ID)?;
                }
            }
        }
        Ok(out)
    }
}

fn put_count(out: &mut Vec<u8>, n: usize) -> Result<(), WireError> {
    let n = u16::try_from(n).map_err(|_| WireError::BadField)?;
    if n == 0 {
        return Err(WireError::BadField);
    }
    out.extend_from_slice(&n.to_be_bytes());
    Ok(())
}

fn put_text(out: &mut Vec<u8>, s: &str, max: usize) -> Result<(), WireError> {
    if s.is_empty() || s.len() > max {
        return Err(WireError::BadField);
    }
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn put_cmd_fields(out: &mut Vec<u8>, c: &Cmd) -> Result<(), WireError> {
    put_text(out, c.id.as_str(), MAX_COMMAND_ID)?;
    put_id(out, &c.origin)?;
    put_text(out, &c.topic, MAX_TOPIC)?;
    out.extend_from_slice(&c.hlc.to_be_bytes());
    out.extend_from_slice(&c.created_at.to_be_bytes());
    let len = u32::try_from(c.payload.len()).map_err(|_| WireError::BadField)?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&c.payload);
    Ok(())
}

fn put_cmds(out: &mut Vec<u8>, certs: &[Vec<u8>], cmds: &[Rc<Cmd>]) -> Result<(), WireError> {
    // The cert table: the chain of every origin in the batch (each chain is
    // self-delimiting: count u8 · (u16 len · cert) × count).
    let n = u8::try_from(certs.len()).map_err(|_| WireError::BadField)?;
    out.push(n);
    for c in certs {
        out.extend_from_slice(c);
    }
    put_count(out, cmds.len())?;
    for c in cmds {
        put_cmd_fields(out, c)?;
        out.extend_from_slice(&c.origin_sig);
    }
    Ok(())
}

/// Decodes a replication body. Total; trailing bytes are ignored like in
/// the election bodies (a later version may append fields).
pub fn decode(bytes: &[u8]) -> Result<RepMsg, WireError> {
    let (&ty, rest) = bytes.split_first().ok_or(WireError::Empty)?;
    let mut r = Reader { rest };
    Ok(match ty {
        TYPE_REPLICATE => RepMsg::Replicate(read_cmds(&mut r)?.1),
        TYPE_TENTATIVE => RepMsg::Tentative(read_cmds(&mut r)?.1),
        TYPE_CONFIRM => {
            let n = read_count(&mut r)?;
            let mut verdicts = Vec::new();
            for _ in 0..n {
                let committed = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(WireError::BadField),
                };
                verdicts.push((CommandId::new(read_text(&mut r, MAX_COMMAND_ID)?), committed));
            }
            RepMsg::Confirm(verdicts)
        }
        TYPE_UPLOAD => {
            let batch = r.u64()?;
            RepMsg::Upload { batch, cmds: read_cmds(&mut r)?.1 }
        }
        TYPE_SYNC_ACK => {
            let n = read_count(&mut r)?;
            let mut acks = Vec::new();
            for _ in 0..n {
                let state = match r.u8()? {
                    1 => AckState::Durable,
                    2 => AckState::CloudAcked,
                    3 => AckState::Tentative,
                    _ => return Err(WireError::BadField),
                };
                acks.push((CommandId::new(read_text(&mut r, MAX_COMMAND_ID)?), state));
            }
            RepMsg::SyncAck(acks)
        }
        TYPE_CLOUD_ACK => {
            let n = read_count(&mut r)?;
            let mut ids = Vec::new();
            for _ in 0..n {
                ids.push(CommandId::new(read_text(&mut r, MAX_COMMAND_ID)?));
            }
            RepMsg::CloudAck(ids)
        }
        other => return Err(WireError::UnknownType(other)),
    })
}

fn read_count(r: &mut Reader<'_>) -> Result<u16, WireError> {
    match r.u16()? {
        0 => Err(WireError::BadField),
        n => Ok(n),
    }
}

fn read_text(r: &mut Reader<'_>, max: usize) -> Result<String, WireError> {
    let len = usize::from(r.u16()?);
    if len == 0 || len > max {
        return Err(WireError::BadField);
    }
    let raw = r.take(len)?;
    core::str::from_utf8(raw).map(str::to_owned).map_err(|_| WireError::BadField)
}

fn read_cmds(r: &mut Reader<'_>) -> Result<(Vec<Vec<u8>>, Vec<Rc<Cmd>>), WireError> {
    let n_certs = r.u8()?;
    // A chain (PROTOCOL.md Part 6 §1) holds 1..=MAX_CHAIN non-empty
    // certificates, so each entry takes at least 4 bytes: the count is
    // trusted for the allocation only as far as the input can back it.
    let mut certs = Vec::with_capacity(usize::from(n_certs).min(r.rest.len() / 4));
    for _ in 0..n_certs {
        let start = r.rest;
        let count = r.u8()?;
        if count == 0 || usize::from(count) > crate::trust::cert::MAX_CHAIN {
            return Err(WireError::BadField);
        }
        for _ in 0..count {
            let len = usize::from(r.u16()?);
            if len == 0 {
                return Err(WireError::BadField);
            }
            r.take(len)?;
        }
        certs.push(start[..start.len() - r.rest.len()].to_vec());
    }
    let n = read_count(r)?;
    let mut cmds = Vec::new();
    for _ in 0..n {
        let id = CommandId::new(read_text(r, MAX_COMMAND_ID)?);
        let origin = r.id()?;
        let topic = read_text(r, MAX_TOPIC)?;
        let hlc = r.u64()?;
        let created_at = r.u64()?;
        let len = r.u32()? as usize;
        let payload = r.take(len)?.to_vec();
        let origin_sig = r.array()?;
        cmds.push(Rc::new(Cmd { id, origin, topic, hlc, created_at, payload, origin_sig }));
    }
    Ok((certs, cmds))
}

/// A Replicate or Upload body with its cert table (`certs`: the raw chain
/// of every origin in the batch).
pub fn encode_with_certs(msg: &RepMsg, certs: &[Vec<u8>]) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::new();
    match msg {
        RepMsg::Replicate(cmds) => {
            out.push(TYPE_REPLICATE);
            put_cmds(&mut out, certs, cmds)?;
        }
        RepMsg::Tentative(cmds) => {
            out.push(TYPE_TENTATIVE);
            put_cmds(&mut out, certs, cmds)?;
        }
        RepMsg::Upload { batch, cmds } => {
            out.push(TYPE_UPLOAD);
            out.extend_from_slice(&batch.to_be_bytes());
            put_cmds(&mut out, certs, cmds)?;
        }
        other => return other.encode(),
    }
    Ok(out)
}

/// The cert table of a Replicate or Upload body (empty for other types or
/// bytes that do not decode).
pub fn cert_table(bytes: &[u8]) -> Vec<Vec<u8>> {
    let Some((&ty, rest)) = bytes.split_first() else { return Vec::new() };
    let mut r = Reader { rest };
    if ty == TYPE_UPLOAD && r.u64().is_err() {
        return Vec::new();
    }
    match ty {
        TYPE_REPLICATE | TYPE_TENTATIVE | TYPE_UPLOAD => read_cmds(&mut r).map(|(c, _)| c).unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// A CLOUD_ACK body on the wire: `0x12 · receipt` (the cloud's signed
/// receipt, [`crate::trust::Receipt`]).
pub fn encode_cloud_ack(receipt: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + receipt.len());
    out.push(TYPE_CLOUD_ACK);
    out.extend_from_slice(receipt);
    out
}

/// A SYNC_ACK body with receipts: the entries, then `count u8 · (u32 len ·
/// receipt) × count` covering every state-2 entry.
pub fn encode_sync_ack(acks: &[(CommandId, AckState)], receipts: &[Rc<Vec<u8>>]) -> Result<Vec<u8>, WireError> {
    let mut out = RepMsg::SyncAck(acks.to_vec()).encode()?;
    let n = u8::try_from(receipts.len()).map_err(|_| WireError::BadField)?;
    out.push(n);
    for r in receipts {
        let len = u32::try_from(r.len()).map_err(|_| WireError::BadField)?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(r);
    }
    Ok(out)
}

/// The receipts after a SYNC_ACK's entries (none if absent or malformed).
pub fn sync_ack_receipts(bytes: &[u8]) -> Vec<Vec<u8>> {
    let Some((&TYPE_SYNC_ACK, rest)) = bytes.split_first() else { return Vec::new() };
    let mut r = Reader { rest };
    let Ok(n) = read_count(&mut r) else { return Vec::new() };
    for _ in 0..n {
        if r.u8().is_err() || read_text(&mut r, MAX_COMMAND_ID).is_err() {
            return Vec::new();
        }
    }
    let Ok(count) = r.u8() else { return Vec::new() };
    let mut out = Vec::new();
    for _ in 0..count {
        let Ok(len) = r.u32() else { return out };
        let Ok(b) = r.take(len as usize) else { return out };
        out.push(b.to_vec());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cmd(id: &str, payload: &[u8]) -> Rc<Cmd> {
        Rc::new(Cmd {
            id: CommandId::new(id),
            origin: "pos-1".into(),
            topic: "sale".into(),
            hlc: 0x019b_fee5_5100_0003,
            created_at: 1_769_508_000_000,
            payload: payload.to_vec(),
            origin_sig: [0; 64],
        })
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// The examples in PROTOCOL.md Part 4, byte for byte.
    #[test]
    fn documented_examples() {
        let rep = RepMsg::Replicate(vec![cmd("c1", b"hi")]).encode().unwrap();
        assert_eq!(
            hex(&rep),
            format!("10{}{}{}", "00", "00010002633105706f732d31000473616c65019bfee5510000030000019bfee55100000000026869", "00".repeat(64))
        );
        let ack = RepMsg::SyncAck(vec![(CommandId::new("c1"), AckState::Durable)]).encode().unwrap();
        assert_eq!(hex(&ack), "1100010100026331");
        let cloud = RepMsg::CloudAck(vec![CommandId::new("c1"), CommandId::new("c2")]).encode().unwrap();
        assert_eq!(hex(&cloud), "1200020002633100026332");
        let tentative = RepMsg::Tentative(vec![cmd("c1", b"hi")]).encode().unwrap();
        assert_eq!(tentative[0], 0x14);
        assert_eq!(&tentative[1..], &rep[1..]);
        let ack3 = RepMsg::SyncAck(vec![(CommandId::new("c1"), AckState::Tentative)]).encode().unwrap();
        assert_eq!(hex(&ack3), "1100010300026331");
        let verdicts = RepMsg::Confirm(vec![(CommandId::new("c1"), true), (CommandId::new("c2"), false)]).encode().unwrap();
        assert_eq!(hex(&verdicts), "150002010002633100000263 32".replace(' ', ""));
        let up = RepMsg::Upload { batch: 7, cmds: vec![cmd("c1", b"hi")] }.encode().unwrap();
        assert_eq!(&up[..9], &[0x13, 0, 0, 0, 0, 0, 0, 0, 7]);
        assert_eq!(&up[9..], &rep[1..]);
    }

    #[test]
    fn refuses_bad_fields() {
        assert_eq!(RepMsg::CloudAck(vec![]).encode(), Err(WireError::BadField));
        assert_eq!(RepMsg::CloudAck(vec![CommandId::new("")]).encode(), Err(WireError::BadField));
        let mut bad = (*cmd("c1", b"")).clone();
        bad.origin = "no spaces".into();
        assert_eq!(RepMsg::Replicate(vec![Rc::new(bad)]).encode(), Err(WireError::BadId));
        assert_eq!(decode(&[]), Err(WireError::Empty));
        assert_eq!(decode(&[0x12, 0, 0]), Err(WireError::BadField));
        assert_eq!(decode(&[0x11, 0, 1, 0, 0, 1, b'x']), Err(WireError::BadField));
        assert_eq!(decode(&[0x12, 0, 1, 0, 2, 0xff, 0xfe]), Err(WireError::BadField));
        assert_eq!(decode(&[0x16]), Err(WireError::UnknownType(0x16)));
        assert_eq!(decode(&[0x15, 0, 1, 2, 0, 1, b'x']), Err(WireError::BadField));
        assert_eq!(decode(&[0x11, 0, 1, 4, 0, 1, b'x']), Err(WireError::BadField));
        assert_eq!(decode(&[0x10, 0, 0, 1, 0, 2, b'c']), Err(WireError::Truncated));
    }

    fn arb_cmd() -> impl Strategy<Value = Rc<Cmd>> {
        ("[a-z0-9-]{1,40}", "[a-z]{1,20}", "[a-z/.]{1,30}", any::<u64>(), any::<u64>(), proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(id, origin, topic, hlc, created_at, payload)| {
                Rc::new(Cmd { id: CommandId::new(id), origin, topic, hlc, created_at, payload, origin_sig: [7; 64] })
            })
    }

    proptest! {
        #[test]
        fn round_trip(cmds in proptest::collection::vec(arb_cmd(), 1..5), batch in any::<u64>()) {
            for m in [RepMsg::Replicate(cmds.clone()), RepMsg::Upload { batch, cmds: cmds.clone() }, RepMsg::Tentative(cmds.clone()),
                      RepMsg::Confirm(cmds.iter().enumerate().map(|(i, c)| (c.id.clone(), i % 2 == 0)).collect()),
                      RepMsg::SyncAck(cmds.iter().map(|c| (c.id.clone(), AckState::Tentative)).collect()),
                      RepMsg::CloudAck(cmds.iter().map(|c| c.id.clone()).collect()),
                      RepMsg::SyncAck(cmds.iter().map(|c| (c.id.clone(), AckState::CloudAcked)).collect())] {
                let bytes = m.encode().unwrap();
                prop_assert_eq!(m.kind(), Kind::from_code(m.kind().code()));
                prop_assert_eq!(decode(&bytes).unwrap(), m);
            }
        }

        #[test]
        fn random_bytes_never_panic(ty in 0x10u8..0x16, rest in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut b = vec![ty];
            b.extend(rest);
            let _ = decode(&b);
        }
    }
}
