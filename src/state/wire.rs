//! The bodies of shared-state messages (`PROTOCOL.md` Part 7 has the byte
//! tables and `tests/vectors/state.json` the vectors):
//!
//! | type | body | sent to |
//! |---|---|---|
//! | `0x30` | [`WriteBatch`]: new writes, all by the sender | every live device |
//! | `0x31` | [`Checksums`]: per collection, count and checksum | every live device, or one peer |
//! | `0x32` | [`Reconcile`]: one step of a range-based set reconciliation | one peer |
//!
//! Byte 0 is the type. Decoding is total (any bytes give a value or a
//! [`WireError`]), allocates no more than the bytes hold, and refuses
//! trailing bytes (unlike the older bodies: a later version appends a new
//! body type instead, so a truncated or padded body is always an error).

use std::collections::BTreeMap;

use super::codec::{
    put_frontier, put_keys, put_varint, read_count, read_frontier, read_keys, read_varint, with_table, DeviceTable,
    KeyWrites,
};
use super::model::DeviceId;
use crate::wire::{put_id, Reader, WireError};

/// Body type of a write batch.
pub const TYPE_WRITES: u8 = 0x30;
/// Body type of a checksum announcement.
pub const TYPE_CHECKSUMS: u8 = 0x31;
/// Body type of a reconciliation step.
pub const TYPE_RECONCILE: u8 = 0x32;

/// Deepest node of the reconciliation tree: 16 hex digits of a 64-bit position.
pub const MAX_DEPTH: u8 = 16;

/// New writes of one collection, every one written by the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteBatch {
    /// The collection.
    pub collection: String,
    /// Keys with their new writes (at least one key).
    pub keys: Vec<KeyWrites>,
}

/// A collection's summary: how many keys, and the wrapping sum of their
/// digests (`KeyState::digest`), order-independent and updated in O(1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Checksum {
    /// Keys held (tombstones included).
    pub count: u64,
    /// Sum of the key digests, mod 2^64.
    pub sum: u64,
}

/// The sender's checksum of every collection it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksums {
    /// Asks the receiver to answer with its own (after a heartbeat showed a
    /// mismatch, or when a peer came up).
    pub reply: bool,
    /// Per collection, sorted by name; empty collections are left out.
    pub collections: Vec<(String, Checksum)>,
}

/// A node of the reconciliation tree: the positions whose first `depth` hex
/// digits are `prefix` (depth 0 is the whole key space).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Node {
    /// Hex digits fixed (0..=16).
    pub depth: u8,
    /// Their value (`< 16^depth`).
    pub prefix: u64,
}

impl Node {
    /// The whole key space.
    pub const ROOT: Node = Node { depth: 0, prefix: 0 };

    /// First and last position inside.
    pub fn bounds(self) -> (u64, u64) {
        if self.depth == 0 {
            return (0, u64::MAX);
        }
        let free = 64 - 4 * u32::from(self.depth);
        let lo = if free == 0 { self.prefix } else { self.prefix << free };
        let hi = if free == 0 { lo } else { lo | ((1u64 << free) - 1) };
        (lo, hi)
    }

    /// Whether `pos` lies inside.
    pub fn contains(self, pos: u64) -> bool {
        let (lo, hi) = self.bounds();
        (lo..=hi).contains(&pos)
    }

    /// Child `i` (0..16); `None` at the deepest level.
    pub fn child(self, i: u8) -> Option<Node> {
        (self.depth < MAX_DEPTH && i < 16).then(|| Node { depth: self.depth + 1, prefix: (self.prefix << 4) | u64::from(i) })
    }
}

/// What one side says about one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeBody {
    /// The node's 16 children as `(child index, count, fingerprint)`, the
    /// empty ones left out; the receiver compares each with its own.
    Children(Vec<(u8, Checksum)>),
    /// Every item the sender holds in the node, as `(position, digest)`
    /// sorted; the receiver answers with the differences.
    Items(Vec<(u64, u64)>),
}

/// One node and what the sender says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// The node.
    pub node: Node,
    /// Its children's fingerprints or its items.
    pub body: RangeBody,
}

/// One step of a reconciliation session (`recon.rs` has the rules).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reconcile {
    /// Chosen by the initiator.
    pub session: u32,
    /// The sender's message number in this session (0, 1, …).
    pub msg: u16,
    /// The peer's message this one answers.
    pub reply_to: Option<u16>,
    /// First message of a session (from the initiator).
    pub open: bool,
    /// Last message of the answer to `reply_to`.
    pub last: bool,
    /// The receiver of an `open` refuses the session (too many at once).
    pub busy: bool,
    /// The sender opened the session (two devices may each open one with
    /// the other under the same number).
    pub from_initiator: bool,
    /// The collection reconciled.
    pub collection: String,
    /// The sender's frontier (in `open` and in the first answer).
    pub frontier: Option<BTreeMap<DeviceId, u64>>,
    /// Nodes to compare.
    pub ranges: Vec<Range>,
    /// Positions of keys the sender lacks: send them.
    pub missing: Vec<u64>,
    /// Positions of keys both hold in different versions: send yours.
    pub differing: Vec<u64>,
    /// Keys with their live writes (answers to `missing` / `differing`, or
    /// the differences found in an `Items` range).
    pub keys: Vec<KeyWrites>,
}

impl Reconcile {
    /// Whether the receiver must answer (it has ranges or requests).
    pub fn expects_reply(&self) -> bool {
        !self.ranges.is_empty() || !self.missing.is_empty() || !self.differing.is_empty()
    }
}

/// A shared-state message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateMsg {
    /// New writes.
    Writes(WriteBatch),
    /// Checksum announcement.
    Checksums(Checksums),
    /// Reconciliation step.
    Reconcile(Reconcile),
}

const F_OPEN: u8 = 0x01;
const F_LAST: u8 = 0x02;
const F_BUSY: u8 = 0x04;
const F_FRONTIER: u8 = 0x08;
const F_INITIATOR: u8 = 0x10;
const TAG_CHILDREN: u8 = 1;
const TAG_ITEMS: u8 = 2;
const NO_REPLY: u16 = 0xffff;

fn put_node(out: &mut Vec<u8>, n: Node) -> Result<(), WireError> {
    if n.depth > MAX_DEPTH || (n.depth < MAX_DEPTH && n.prefix >> (4 * u32::from(n.depth)) != 0) {
        return Err(WireError::BadField);
    }
    out.push(n.depth);
    let d = usize::from(n.depth);
    let mut byte = 0u8;
    for i in 0..d {
        let nibble = ((n.prefix >> (4 * (d - 1 - i))) & 0xf) as u8;
        if i % 2 == 0 {
            byte = nibble << 4;
        } else {
            out.push(byte | nibble);
        }
    }
    if d % 2 == 1 {
        out.push(byte);
    }
    Ok(())
}

fn read_node(r: &mut Reader<'_>) -> Result<Node, WireError> {
    let depth = r.u8()?;
    if depth > MAX_DEPTH {
        return Err(WireError::BadField);
    }
    let d = usize::from(depth);
    let bytes = r.take(d.div_ceil(2))?;
    let mut prefix = 0u64;
    for i in 0..d {
        let b = bytes[i / 2];
        prefix = (prefix << 4) | u64::from(if i % 2 == 0 { b >> 4 } else { b & 0xf });
    }
    if d % 2 == 1 && bytes[d / 2] & 0xf != 0 {
        return Err(WireError::BadField);
    }
    Ok(Node { depth, prefix })
}

fn put_range(out: &mut Vec<u8>, range: &Range) -> Result<(), WireError> {
    put_node(out, range.node)?;
    match &range.body {
        RangeBody::Children(children) => {
            if range.node.depth >= MAX_DEPTH {
                return Err(WireError::BadField);
            }
            out.push(TAG_CHILDREN);
            let mut bitmap = 0u16;
            for (i, _) in children {
                if *i >= 16 || bitmap >> i != 0 {
                    return Err(WireError::BadField); // out of range or not ascending
                }
                bitmap |= 1 << i;
            }
            out.extend_from_slice(&bitmap.to_be_bytes());
            for (_, c) in children {
                put_varint(out, c.count);
                out.extend_from_slice(&c.sum.to_be_bytes());
            }
        }
        RangeBody::Items(items) => {
            out.push(TAG_ITEMS);
            put_varint(out, items.len() as u64);
            for (pos, digest) in items {
                out.extend_from_slice(&pos.to_be_bytes());
                out.extend_from_slice(&digest.to_be_bytes());
            }
        }
    }
    Ok(())
}

fn read_range(r: &mut Reader<'_>) -> Result<Range, WireError> {
    let node = read_node(r)?;
    let body = match r.u8()? {
        TAG_CHILDREN if node.depth < MAX_DEPTH => {
            let bitmap = r.u16()?;
            let mut children = Vec::new();
            for i in 0..16u8 {
                if bitmap & (1 << i) != 0 {
                    let count = read_varint(r)?;
                    let sum = r.u64()?;
                    children.push((i, Checksum { count, sum }));
                }
            }
            RangeBody::Children(children)
        }
        TAG_ITEMS => {
            let n = read_count(r, usize::MAX)?;
            let mut items: Vec<(u64, u64)> = Vec::new();
            for _ in 0..n {
                let item = (r.u64()?, r.u64()?);
                if !node.contains(item.0) || items.last().is_some_and(|last| *last >= item) {
                    return Err(WireError::BadField);
                }
                items.push(item);
            }
            RangeBody::Items(items)
        }
        _ => return Err(WireError::BadField),
    };
    Ok(Range { node, body })
}

fn put_positions(out: &mut Vec<u8>, positions: &[u64]) {
    put_varint(out, positions.len() as u64);
    for p in positions {
        out.extend_from_slice(&p.to_be_bytes());
    }
}

fn read_positions(r: &mut Reader<'_>) -> Result<Vec<u64>, WireError> {
    let n = read_count(r, usize::MAX)?;
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(r.u64()?);
    }
    Ok(v)
}

impl StateMsg {
    /// The body bytes. Errors on an invalid collection or device id, an
    /// empty or too long key, field or value, a patch without fields, an
    /// empty batch, more than 255 devices in one message, or a bad node.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::new();
        match self {
            StateMsg::Writes(b) => {
                out.push(TYPE_WRITES);
                put_id(&mut out, &b.collection)?;
                if b.keys.is_empty() {
                    return Err(WireError::BadField);
                }
                with_table(&mut out, |o, t| put_keys(o, &b.keys, t))?;
            }
            StateMsg::Checksums(c) => {
                out.push(TYPE_CHECKSUMS);
                out.push(u8::from(c.reply));
                put_varint(&mut out, c.collections.len() as u64);
                for (name, sum) in &c.collections {
                    put_id(&mut out, name)?;
                    put_varint(&mut out, sum.count);
                    out.extend_from_slice(&sum.sum.to_be_bytes());
                }
            }
            StateMsg::Reconcile(m) => {
                out.push(TYPE_RECONCILE);
                out.extend_from_slice(&m.session.to_be_bytes());
                out.extend_from_slice(&m.msg.to_be_bytes());
                let reply_to = match m.reply_to {
                    Some(NO_REPLY) => return Err(WireError::BadField),
                    Some(n) => n,
                    None => NO_REPLY,
                };
                out.extend_from_slice(&reply_to.to_be_bytes());
                let mut flags = 0;
                for (on, f) in [(m.open, F_OPEN), (m.last, F_LAST), (m.busy, F_BUSY), (m.frontier.is_some(), F_FRONTIER), (m.from_initiator, F_INITIATOR)] {
                    if on {
                        flags |= f;
                    }
                }
                out.push(flags);
                put_id(&mut out, &m.collection)?;
                with_table(&mut out, |o, t: &mut DeviceTable| {
                    if let Some(f) = &m.frontier {
                        put_frontier(o, f, t)?;
                    }
                    put_varint(o, m.ranges.len() as u64);
                    for range in &m.ranges {
                        put_range(o, range)?;
                    }
                    put_positions(o, &m.missing);
                    put_positions(o, &m.differing);
                    put_keys(o, &m.keys, t)
                })?;
            }
        }
        Ok(out)
    }
}

/// Decodes a shared-state body (total; trailing bytes are an error).
pub fn decode(bytes: &[u8]) -> Result<StateMsg, WireError> {
    let (&ty, rest) = bytes.split_first().ok_or(WireError::Empty)?;
    let mut r = Reader { rest };
    let msg = match ty {
        TYPE_WRITES => {
            let collection = r.id()?;
            let table = DeviceTable::read(&mut r)?;
            let keys = read_keys(&mut r, &table)?;
            if keys.is_empty() {
                return Err(WireError::BadField);
            }
            StateMsg::Writes(WriteBatch { collection, keys })
        }
        TYPE_CHECKSUMS => {
            let reply = match r.u8()? {
                0 => false,
                1 => true,
                f => return Err(WireError::BadFlags(f)),
            };
            let n = read_count(&mut r, usize::MAX)?;
            let mut collections: Vec<(String, Checksum)> = Vec::new();
            for _ in 0..n {
                let name = r.id()?;
                let count = read_varint(&mut r)?;
                let sum = r.u64()?;
                if collections.last().is_some_and(|(last, _)| *last >= name) {
                    return Err(WireError::BadField);
                }
                collections.push((name, Checksum { count, sum }));
            }
            StateMsg::Checksums(Checksums { reply, collections })
        }
        TYPE_RECONCILE => {
            let session = r.u32()?;
            let msg = r.u16()?;
            let reply_to = match r.u16()? {
                NO_REPLY => None,
                n => Some(n),
            };
            let flags = r.u8()?;
            if flags & !(F_OPEN | F_LAST | F_BUSY | F_FRONTIER | F_INITIATOR) != 0 {
                return Err(WireError::BadFlags(flags));
            }
            let collection = r.id()?;
            let table = DeviceTable::read(&mut r)?;
            let frontier = if flags & F_FRONTIER != 0 { Some(read_frontier(&mut r, &table)?) } else { None };
            let n = read_count(&mut r, usize::MAX)?;
            let mut ranges = Vec::new();
            for _ in 0..n {
                ranges.push(read_range(&mut r)?);
            }
            let missing = read_positions(&mut r)?;
            let differing = read_positions(&mut r)?;
            let keys = read_keys(&mut r, &table)?;
            StateMsg::Reconcile(Reconcile {
                session,
                msg,
                reply_to,
                open: flags & F_OPEN != 0,
                last: flags & F_LAST != 0,
                busy: flags & F_BUSY != 0,
                from_initiator: flags & F_INITIATOR != 0,
                collection,
                frontier,
                ranges,
                missing,
                differing,
                keys,
            })
        }
        other => return Err(WireError::UnknownType(other)),
    };
    if r.rest.is_empty() {
        Ok(msg)
    } else {
        Err(WireError::BadField)
    }
}
