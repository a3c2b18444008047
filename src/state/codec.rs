//! The byte encoding of writes, shared by the wire bodies (`wire.rs`) and the
//! stored records (`KeyRecord`, `CollectionMeta`): varints, device tables,
//! one write, a key with its writes. `PROTOCOL.md` Part 7 §2 has the tables.
//!
//! Devices are written once per message in a *device table* and referred to
//! by their index (one byte): a write names its writer and the devices of
//! its context, and a 36-byte UUID repeated in each would be most of a
//! small write. Decoding is total and allocates no more than the bytes hold.

use std::collections::BTreeMap;
use std::rc::Rc;

use super::json;
use super::model::{Context, Counter, DeviceId, Field, Op, Write, WriteId};
use crate::hlc::Hlc;
use crate::wire::{put_id, Reader, WireError};

/// Longest key, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 256;
/// Longest JSON value of one field on the wire, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Most devices one message can name.
pub const MAX_DEVICES: usize = 255;
/// Longest write proof (an Ed25519 signature is 64 bytes).
pub const MAX_PROOF: usize = 255;

const OP_PUT: u8 = 0;
const OP_PATCH: u8 = 1;
const OP_DELETE: u8 = 2;
const OP_ADD: u8 = 3;
const F_UPDATED_AT: u8 = 0x04;
const F_PROOF: u8 = 0x08;

/// Appends `v` as an unsigned LEB128 varint (1–10 bytes).
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads an unsigned LEB128 varint; more than 10 bytes or more than 64 bits
/// is [`WireError::BadField`].
pub(crate) fn read_varint(r: &mut Reader<'_>) -> Result<u64, WireError> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let b = r.u8()?;
        let bits = u64::from(b & 0x7f);
        if i == 9 && b > 1 {
            return Err(WireError::BadField);
        }
        v |= bits << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(WireError::BadField)
}

/// A varint count, at most `max`.
pub(crate) fn read_count(r: &mut Reader<'_>, max: usize) -> Result<usize, WireError> {
    match usize::try_from(read_varint(r)?) {
        Ok(n) if n <= max => Ok(n),
        _ => Err(WireError::BadField),
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Appends a short name (field): one length byte (1..=255) and UTF-8.
fn put_name(out: &mut Vec<u8>, s: &str) -> Result<(), WireError> {
    if s.is_empty() || s.len() > 255 {
        return Err(WireError::BadField);
    }
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn read_name(r: &mut Reader<'_>) -> Result<Rc<str>, WireError> {
    let len = usize::from(r.u8()?);
    if len == 0 {
        return Err(WireError::BadField);
    }
    core::str::from_utf8(r.take(len)?).map(Rc::from).map_err(|_| WireError::BadField)
}

/// Appends a text with a varint length (1..=max bytes).
pub(crate) fn put_text(out: &mut Vec<u8>, s: &str, max: usize) -> Result<(), WireError> {
    if s.is_empty() || s.len() > max {
        return Err(WireError::BadField);
    }
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

pub(crate) fn read_text<'a>(r: &mut Reader<'a>, max: usize) -> Result<&'a str, WireError> {
    let len = read_count(r, max)?;
    if len == 0 {
        return Err(WireError::BadField);
    }
    core::str::from_utf8(r.take(len)?).map_err(|_| WireError::BadField)
}

/// The devices of one message, in order of first use (a venue has tens of
/// devices: a linear search is enough, and cheaper in wasm than a map).
#[derive(Debug, Default)]
pub(crate) struct DeviceTable {
    ids: Vec<DeviceId>,
}

impl DeviceTable {
    /// The index of `d`, adding it when new.
    pub(crate) fn intern(&mut self, d: &DeviceId) -> Result<u8, WireError> {
        if let Some(i) = self.ids.iter().position(|x| x == d) {
            return Ok(i as u8);
        }
        if self.ids.len() >= MAX_DEVICES {
            return Err(WireError::BadField);
        }
        self.ids.push(d.clone());
        Ok((self.ids.len() - 1) as u8)
    }

    /// Appends the table: a varint count and the ids.
    pub(crate) fn put(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        put_varint(out, self.ids.len() as u64);
        for d in &self.ids {
            put_id(out, d)?;
        }
        Ok(())
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Vec<DeviceId>, WireError> {
        let n = read_count(r, MAX_DEVICES)?;
        let mut ids: Vec<DeviceId> = Vec::new();
        for _ in 0..n {
            let id: DeviceId = Rc::from(r.id()?);
            if ids.contains(&id) {
                return Err(WireError::BadField);
            }
            ids.push(id);
        }
        Ok(ids)
    }
}

pub(crate) fn read_ref(r: &mut Reader<'_>, table: &[DeviceId]) -> Result<DeviceId, WireError> {
    table.get(usize::from(r.u8()?)).cloned().ok_or(WireError::BadField)
}

fn put_ctx(out: &mut Vec<u8>, ctx: &Context, t: &mut DeviceTable) -> Result<(), WireError> {
    put_varint(out, ctx.entries().len() as u64);
    for (d, h) in ctx.entries() {
        out.push(t.intern(d)?);
        out.extend_from_slice(&h.to_packed().to_be_bytes());
    }
    Ok(())
}

fn read_ctx(r: &mut Reader<'_>, table: &[DeviceId]) -> Result<Context, WireError> {
    let n = read_count(r, MAX_DEVICES)?;
    let mut entries = Vec::new();
    for _ in 0..n {
        let d = read_ref(r, table)?;
        entries.push((d, Hlc::from_packed(r.u64()?)));
    }
    Ok(Context::from_entries(entries))
}

fn put_fields(out: &mut Vec<u8>, fields: &[Field]) -> Result<(), WireError> {
    put_varint(out, fields.len() as u64);
    for (name, value) in fields {
        put_name(out, name)?;
        put_text(out, value, MAX_VALUE_BYTES)?;
    }
    Ok(())
}

/// Fields: names strictly ascending (one canonical form), values valid JSON.
fn read_fields(r: &mut Reader<'_>, at_least: usize) -> Result<Vec<Field>, WireError> {
    let n = read_count(r, usize::from(u16::MAX))?;
    if n < at_least {
        return Err(WireError::BadField);
    }
    let mut fields: Vec<Field> = Vec::new();
    for _ in 0..n {
        let name = read_name(r)?;
        let value = read_text(r, MAX_VALUE_BYTES)?;
        json::validate(value).map_err(|_| WireError::BadField)?;
        if fields.last().is_some_and(|(last, _)| *last >= name) {
            return Err(WireError::BadField);
        }
        fields.push((name, Rc::from(value)));
    }
    Ok(fields)
}

/// Appends one write, its devices interned in `t`. `with_proof: false`
/// gives the bytes a writer signs.
pub(crate) fn put_write(out: &mut Vec<u8>, w: &Write, t: &mut DeviceTable, with_proof: bool) -> Result<(), WireError> {
    out.push(t.intern(&w.id.writer)?);
    out.extend_from_slice(&w.id.hlc.to_packed().to_be_bytes());
    put_varint(out, w.seq);
    let op = match &w.op {
        Op::Put(_) => OP_PUT,
        Op::Patch(_) => OP_PATCH,
        Op::Delete => OP_DELETE,
        Op::Add(_) => OP_ADD,
    };
    let proof = with_proof && !w.proof.is_empty();
    if w.proof.len() > MAX_PROOF {
        return Err(WireError::BadField);
    }
    let mut flags = op;
    if w.updated_at.is_some() {
        flags |= F_UPDATED_AT;
    }
    if proof {
        flags |= F_PROOF;
    }
    out.push(flags);
    if let Some(u) = w.updated_at {
        out.extend_from_slice(&u.to_be_bytes());
    }
    put_ctx(out, &w.ctx, t)?;
    match &w.op {
        Op::Put(f) => put_fields(out, f)?,
        Op::Patch(f) if f.is_empty() => return Err(WireError::BadField),
        Op::Patch(f) => put_fields(out, f)?,
        Op::Delete => {}
        Op::Add(c) => {
            put_name(out, &c.field)?;
            put_varint(out, zigzag(c.delta));
            put_varint(out, zigzag(c.total));
        }
    }
    if proof {
        out.push(w.proof.len() as u8);
        out.extend_from_slice(&w.proof);
    }
    Ok(())
}

pub(crate) fn read_write(r: &mut Reader<'_>, table: &[DeviceId]) -> Result<Write, WireError> {
    let writer = read_ref(r, table)?;
    let hlc = Hlc::from_packed(r.u64()?);
    let seq = read_varint(r)?;
    let flags = r.u8()?;
    if flags & !(0x03 | F_UPDATED_AT | F_PROOF) != 0 {
        return Err(WireError::BadFlags(flags));
    }
    let op_code = flags & 0x03;
    let updated_at = if flags & F_UPDATED_AT != 0 { Some(r.u64()?) } else { None };
    let ctx = read_ctx(r, table)?;
    let op = match op_code {
        OP_PUT => Op::Put(read_fields(r, 0)?),
        OP_PATCH => Op::Patch(read_fields(r, 1)?),
        OP_DELETE => Op::Delete,
        _ => {
            let field = read_name(r)?;
            let delta = unzigzag(read_varint(r)?);
            let total = unzigzag(read_varint(r)?);
            Op::Add(Counter { field, delta, total })
        }
    };
    let proof = if flags & F_PROOF != 0 {
        let n = usize::from(r.u8()?);
        r.take(n)?.to_vec()
    } else {
        Vec::new()
    };
    Ok(Write { id: WriteId { hlc, writer }, seq, updated_at, ctx, op, proof })
}

/// The writes of one key, as they travel.
pub type KeyWrites = (Rc<str>, Vec<Rc<Write>>);

/// Appends key groups: a varint count, then per key its text, a varint
/// count of writes (≥ 1) and the writes.
pub(crate) fn put_keys(out: &mut Vec<u8>, keys: &[KeyWrites], t: &mut DeviceTable) -> Result<(), WireError> {
    put_varint(out, keys.len() as u64);
    for (key, writes) in keys {
        put_text(out, key, MAX_KEY_BYTES)?;
        if writes.is_empty() {
            return Err(WireError::BadField);
        }
        put_varint(out, writes.len() as u64);
        for w in writes {
            put_write(out, w, t, true)?;
        }
    }
    Ok(())
}

pub(crate) fn read_keys(r: &mut Reader<'_>, table: &[DeviceId]) -> Result<Vec<KeyWrites>, WireError> {
    let n = read_count(r, usize::MAX)?;
    let mut keys = Vec::new();
    for _ in 0..n {
        let key: Rc<str> = Rc::from(read_text(r, MAX_KEY_BYTES)?);
        let m = read_count(r, usize::MAX)?;
        if m == 0 {
            return Err(WireError::BadField);
        }
        let mut writes = Vec::new();
        for _ in 0..m {
            writes.push(Rc::new(read_write(r, table)?));
        }
        keys.push((key, writes));
    }
    Ok(keys)
}

/// Runs `body` against a fresh device table and returns `table ‖ body`:
/// the table must come first but is known only once everything is written.
pub(crate) fn with_table(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>, &mut DeviceTable) -> Result<(), WireError>) -> Result<(), WireError> {
    let mut t = DeviceTable::default();
    let mut rest = Vec::new();
    body(&mut rest, &mut t)?;
    t.put(out)?;
    out.extend_from_slice(&rest);
    Ok(())
}

/// The bytes a writer signs for a write (its proof excluded): a domain
/// tag, the collection, the key and the write with its own device table —
/// one canonical form, so the verifier rebuilds exactly these bytes.
pub fn signing_input(collection: &str, key: &str, w: &Write) -> Result<Vec<u8>, WireError> {
    let mut out = b"vm-state/write/v1\0".to_vec();
    put_id(&mut out, collection)?;
    put_text(&mut out, key, MAX_KEY_BYTES)?;
    with_table(&mut out, |o, t| put_write(o, w, t, false))?;
    Ok(out)
}

/// Version byte of the stored records.
const RECORD_VERSION: u8 = 1;

/// A reader past the version byte of a stored record.
fn record_reader(bytes: &[u8]) -> Result<Reader<'_>, WireError> {
    let mut r = Reader { rest: bytes };
    match r.u8() {
        Ok(RECORD_VERSION) => Ok(r),
        Ok(v) => Err(WireError::UnknownType(v)),
        Err(_) => Err(WireError::Empty),
    }
}

/// A key's stored form (one IndexedDB record per key): its live writes and
/// its context. Layout: version `1` · device table · context · varint n ·
/// writes.
pub fn encode_key_record(live: &[Rc<Write>], ctx: &Context) -> Result<Vec<u8>, WireError> {
    let mut out = vec![RECORD_VERSION];
    with_table(&mut out, |b, t| {
        put_ctx(b, ctx, t)?;
        put_varint(b, live.len() as u64);
        for w in live {
            put_write(b, w, t, true)?;
        }
        Ok(())
    })?;
    Ok(out)
}

/// The inverse of [`encode_key_record`] (total).
pub fn decode_key_record(bytes: &[u8]) -> Result<(Vec<Rc<Write>>, Context), WireError> {
    let mut r = record_reader(bytes)?;
    let table = DeviceTable::read(&mut r)?;
    let ctx = read_ctx(&mut r, &table)?;
    let n = read_count(&mut r, usize::MAX)?;
    let mut live = Vec::new();
    for _ in 0..n {
        live.push(Rc::new(read_write(&mut r, &table)?));
    }
    Ok((live, ctx))
}

/// A collection's stored metadata: per device, the highest sequence number
/// up to which this replica has incorporated all of that device's writes
/// (its *frontier*; the own entry is the own write counter). Layout:
/// version `1` · device table · varint n · (device ref · varint seq) × n.
pub fn encode_frontier(frontier: &BTreeMap<DeviceId, u64>) -> Result<Vec<u8>, WireError> {
    let mut out = vec![RECORD_VERSION];
    with_table(&mut out, |b, t| put_frontier(b, frontier, t))?;
    Ok(out)
}

/// The inverse of [`encode_frontier`] (total).
pub fn decode_frontier(bytes: &[u8]) -> Result<BTreeMap<DeviceId, u64>, WireError> {
    let mut r = record_reader(bytes)?;
    let table = DeviceTable::read(&mut r)?;
    read_frontier(&mut r, &table)
}

pub(crate) fn put_frontier(out: &mut Vec<u8>, f: &BTreeMap<DeviceId, u64>, t: &mut DeviceTable) -> Result<(), WireError> {
    put_varint(out, f.len() as u64);
    for (d, seq) in f {
        out.push(t.intern(d)?);
        put_varint(out, *seq);
    }
    Ok(())
}

pub(crate) fn read_frontier(r: &mut Reader<'_>, table: &[DeviceId]) -> Result<BTreeMap<DeviceId, u64>, WireError> {
    let n = read_count(r, MAX_DEVICES)?;
    let mut f = BTreeMap::new();
    for _ in 0..n {
        let d = read_ref(r, table)?;
        let seq = read_varint(r)?;
        let e = f.entry(d).or_insert(0);
        *e = seq.max(*e);
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_refuse_overlong() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(read_varint(&mut Reader { rest: &b }), Ok(v));
        }
        let mut b = Vec::new();
        put_varint(&mut b, 300);
        assert_eq!(b, [0xac, 0x02]);
        assert_eq!(read_varint(&mut Reader { rest: &[0xff; 11] }), Err(WireError::BadField));
        assert_eq!(read_varint(&mut Reader { rest: &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02] }), Err(WireError::BadField));
        assert_eq!(read_varint(&mut Reader { rest: &[0x80] }), Err(WireError::Truncated));
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!(zigzag(-1), 1);
    }
}
