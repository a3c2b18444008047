//! The data model of one key: writes, their order, the causal context that
//! tells concurrent writes from sequential ones, and the *live set* — the
//! writes that still decide something — from which the document is derived.
//!
//! A key's state is a function of the set of writes it has incorporated,
//! whatever their arrival order or duplication: every *slot* (a field, the
//! document floor, the newest delete, one device's lane of a counter) is won
//! by the greatest write that touches it, and the live set is the union of
//! the winners. Merging two states is merging their live sets, so replicas
//! that incorporated the same writes hold the same live set, the same
//! document and the same digest. `docs/state.md` states the rules in prose.

use core::cmp::Ordering;
use std::rc::Rc;

use sha2::{Digest as _, Sha256};

use super::json;
use super::mutation::{self, Mutation};
use crate::hlc::Hlc;

/// A device id, shared between the many writes that name it.
pub type DeviceId = Rc<str>;

/// Identity of a write: the writer's HLC at the write and the writer.
/// Unique per key: a device stamps each write on a key above everything the
/// key held (see [`new_write`]). Sorted by HLC, then device.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WriteId {
    /// The writer's HLC.
    pub hlc: Hlc,
    /// The writer.
    pub writer: DeviceId,
}

/// One top-level member of a JSON object: name and raw JSON value text.
pub type Field = (Rc<str>, Rc<str>);

/// One write together with the key it is for.
pub type KeyedWrite = (Rc<str>, Rc<Write>);

/// What a write does to its key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Op {
    /// Replace the whole document: these fields, every other register field
    /// absent (counters are a separate kind and stay).
    Put(Vec<Field>),
    /// Set these fields (at least one), leave the others.
    Patch(Vec<Field>),
    /// Remove the document (a tombstone). Counters keep their sums (they
    /// show again when the key exists again).
    Delete,
    /// One increment of a counter field; carries the writer's lane total.
    Add(Counter),
}

/// An increment, state-based: the writer's running total of its lane makes
/// a lost or repeated message harmless (the newest total wins the lane), and
/// the counter is the sum of the lanes — the sum of every increment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Counter {
    /// The counter field.
    pub field: Rc<str>,
    /// This increment (for events and audit only).
    pub delta: i64,
    /// The writer's lane total after this increment: the sum of all its
    /// increments of this field on this key.
    pub total: i64,
}

/// The order key of `docs/state.md`: app timestamp present, its value,
/// HLC, then the device id's bytes (compared by the caller).
fn order_key(updated_at: Option<u64>, hlc: Hlc) -> (bool, u64, Hlc) {
    if mutation::active(Mutation::IgnoreUpdatedAt) {
        (false, 0, hlc)
    } else {
        (updated_at.is_some(), updated_at.unwrap_or(0), hlc)
    }
}


/// Per device, the newest HLC of that device's writes on a key that a
/// writer (or a replica) has incorporated, directly or through a write that
/// had. A device's writes on a key are totally ordered, so this vector is
/// the exact causal history: `ctx.covers(v)` ⇔ `v` happened before.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Context(Vec<(DeviceId, Hlc)>);

impl Context {
    /// From entries in any order (the greatest HLC per device is kept).
    pub fn from_entries(entries: impl IntoIterator<Item = (DeviceId, Hlc)>) -> Context {
        let mut c = Context::default();
        for (d, h) in entries {
            c.raise(&d, h);
        }
        c
    }

    /// Entries sorted by device.
    pub fn entries(&self) -> &[(DeviceId, Hlc)] {
        &self.0
    }

    /// The entry of `device`.
    pub fn get(&self, device: &str) -> Option<Hlc> {
        self.0.binary_search_by(|(d, _)| (**d).cmp(device)).ok().map(|i| self.0[i].1)
    }

    /// Whether the write `id` is in this history.
    pub fn covers(&self, id: &WriteId) -> bool {
        self.get(&id.writer).is_some_and(|h| h >= id.hlc)
    }

    /// Raise `device`'s entry to at least `hlc`.
    pub fn raise(&mut self, device: &DeviceId, hlc: Hlc) {
        match self.0.binary_search_by(|(d, _)| (**d).cmp(device)) {
            Ok(i) => self.0[i].1 = self.0[i].1.max(hlc),
            Err(i) => self.0.insert(i, (device.clone(), hlc)),
        }
    }

    /// Pointwise maximum.
    pub fn join(&mut self, other: &Context) {
        for (d, h) in &other.0 {
            self.raise(d, *h);
        }
    }

    /// The greatest HLC of any entry.
    pub fn max_hlc(&self) -> Hlc {
        self.0.iter().map(|e| e.1).max().unwrap_or(Hlc::ZERO)
    }
}

/// One write to one key of one collection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Write {
    /// Who and when.
    pub id: WriteId,
    /// The writer's sequence number in this collection (1, 2, 3, … without
    /// gaps): lets a replica say "I have everything of device d up to n".
    pub seq: u64,
    /// The app's timestamp (`updatedAt`, Unix ms) if it gave one, or the
    /// device's raised one (seed 001's rules; [`new_write`]).
    pub updated_at: Option<u64>,
    /// What the writer had seen of this key.
    pub ctx: Context,
    /// The change.
    pub op: Op,
    /// The writer's signature over [`signing_input`](super::codec::signing_input) (opaque here;
    /// empty when the composition does not sign writes).
    pub proof: Vec<u8>,
}

impl Write {
    /// The last-writer-wins order (seed 001's `updatedAt` rules mapped into
    /// one total order): a write with an app timestamp beats one without;
    /// between two with, the newer timestamp; then the HLC; then the device
    /// id's bytes. Equal only for the same write.
    pub fn cmp_lww(&self, other: &Write) -> Ordering {
        order_key(self.updated_at, self.id.hlc)
            .cmp(&order_key(other.updated_at, other.id.hlc))
            .then_with(|| self.id.writer.as_bytes().cmp(other.id.writer.as_bytes()))
    }

    /// Whether this write's writer had seen `id` (directly or through a
    /// write that had).
    pub fn saw(&self, id: &WriteId) -> bool {
        self.ctx.covers(id)
    }

    /// Neither write's writer had seen the other.
    pub fn concurrent_with(&self, other: &Write) -> bool {
        self.id != other.id && !self.saw(&other.id) && !other.saw(&self.id)
    }

    fn is_floor(&self) -> bool {
        matches!(self.op, Op::Put(_) | Op::Delete)
    }

    fn names(&self, field: &str) -> bool {
        match &self.op {
            Op::Put(f) | Op::Patch(f) => value_of(f, field).is_some(),
            _ => false,
        }
    }

    /// The content as JSON, for audit entries and events: the document of
    /// a put, the fields of a patch, `null` for a delete, `{field: delta}`
    /// for an increment.
    pub fn content_json(&self) -> String {
        match &self.op {
            Op::Put(f) | Op::Patch(f) => json::write_object(f.iter().map(|(k, v)| (&**k, &**v))),
            Op::Delete => "null".to_string(),
            Op::Add(c) => json::write_object([(&*c.field, c.delta.to_string().as_str())]),
        }
    }
}

fn value_of<'a>(fields: &'a [Field], name: &str) -> Option<&'a Rc<str>> {
    fields.binary_search_by(|(k, _)| (**k).cmp(name)).ok().map(|i| &fields[i].1)
}

fn max_lww<'a>(it: impl Iterator<Item = &'a Rc<Write>>) -> Option<&'a Rc<Write>> {
    it.max_by(|a, b| a.cmp_lww(b))
}

/// The writes among `cands` that win at least one slot (sorted by id): the
/// floor (greatest put or delete), the winner of every field named by a put
/// or patch, and the greatest increment of every counter lane (field,
/// writer). The greatest write of all (the existence slot) is among them.
fn live_set(cands: &[Rc<Write>]) -> Vec<Rc<Write>> {
    let floor = max_lww(cands.iter().filter(|w| w.is_floor()));
    let mut live: Vec<Rc<Write>> = floor.into_iter().cloned().collect();
    // Small sorted vectors rather than maps: these sets hold a handful of
    // entries, and every map type costs wasm size.
    let mut names: Vec<&str> = Vec::new();
    for w in cands {
        if let Op::Put(f) | Op::Patch(f) = &w.op {
            for (k, _) in f {
                if !names.contains(&&**k) {
                    names.push(k);
                }
            }
        }
    }
    for name in names {
        let patches = cands.iter().filter(|w| matches!(w.op, Op::Patch(_)) && w.names(name));
        if let Some(w) = max_lww(patches.chain(floor)) {
            live.push(w.clone());
        }
    }
    let mut lanes: Vec<&Rc<Write>> = Vec::new();
    for w in cands {
        if let Op::Add(c) = &w.op {
            let same = |l: &&Rc<Write>| l.id.writer == w.id.writer && matches!(&l.op, Op::Add(x) if x.field == c.field);
            match lanes.iter_mut().find(|l| same(l)) {
                Some(slot) if w.cmp_lww(slot) == Ordering::Greater => *slot = w,
                Some(_) => {}
                None => lanes.push(w),
            }
        }
    }
    live.extend(lanes.into_iter().cloned());
    sort_by_id(&mut live);
    live
}

/// Sorts writes by id and drops repeats (one sort for every such list).
fn sort_by_id(v: &mut Vec<Rc<Write>>) {
    crate::outbox::sort::sort_by(v, |a, b| a.id.cmp(&b.id));
    v.dedup_by(|a, b| a.id == b.id);
}

/// Everything a replica keeps for one key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyState {
    live: Vec<Rc<Write>>,
    ctx: Context,
}

impl KeyState {
    /// A state from stored parts; the live set is recomputed, so a stored
    /// record can never hold a write that should not be live.
    pub fn from_parts(writes: Vec<Rc<Write>>, mut ctx: Context) -> KeyState {
        for w in &writes {
            ctx.join(&w.ctx);
            ctx.raise(&w.id.writer, w.id.hlc);
        }
        KeyState { live: live_set(&writes), ctx }
    }

    /// The writes that decide the document, sorted by id.
    pub fn live(&self) -> &[Rc<Write>] {
        &self.live
    }

    /// Everything this replica incorporated on the key.
    pub fn ctx(&self) -> &Context {
        &self.ctx
    }

    /// The greatest put or delete.
    pub fn floor(&self) -> Option<&Rc<Write>> {
        max_lww(self.live.iter().filter(|w| w.is_floor()))
    }

    /// The winner of a register field (the floor when no newer patch names it).
    fn field_winner(&self, name: &str) -> Option<&Rc<Write>> {
        let patches = self.live.iter().filter(|w| matches!(w.op, Op::Patch(_)) && w.names(name));
        max_lww(patches.chain(self.floor()))
    }

    /// Whether the key holds a document (it may hold only a tombstone): the
    /// greatest write of all is not a delete.
    pub fn exists(&self) -> bool {
        max_lww(self.live.iter()).is_some_and(|w| !matches!(w.op, Op::Delete))
    }

    /// The HLC of the delete when the key is a tombstone.
    pub fn tombstone_hlc(&self) -> Option<Hlc> {
        match max_lww(self.live.iter()) {
            Some(w) if matches!(w.op, Op::Delete) => Some(w.id.hlc),
            _ => None,
        }
    }

    fn lanes(&self) -> impl Iterator<Item = (&Rc<Write>, &Counter)> {
        self.live.iter().filter_map(|w| match &w.op {
            Op::Add(c) => Some((w, c)),
            _ => None,
        })
    }

    /// The document as JSON, `None` when the key does not exist. Fields are
    /// sorted by name; a counter field shows the sum of its lanes and hides
    /// a register field of the same name.
    pub fn document(&self) -> Option<String> {
        if !self.exists() {
            return None;
        }
        let mut counters: Vec<(&str, i64)> = Vec::new();
        for (_, c) in self.lanes() {
            match counters.iter_mut().find(|(f, _)| *f == &*c.field) {
                Some((_, sum)) if mutation::active(Mutation::CounterMax) => *sum = (*sum).max(c.total),
                Some((_, sum)) => *sum = sum.saturating_add(c.total),
                None => counters.push((&c.field, c.total)),
            }
        }
        let mut fields: Vec<(&str, String)> = counters.iter().map(|(f, n)| (*f, n.to_string())).collect();
        for w in &self.live {
            if let Op::Put(f) | Op::Patch(f) = &w.op {
                for (name, _) in f {
                    if fields.iter().any(|(n, _)| *n == &**name) {
                        continue; // already there, or hidden by a counter
                    }
                    let winner = self.field_winner(name);
                    if let Some(Op::Put(f) | Op::Patch(f)) = winner.map(|w| &w.op) {
                        if let Some(v) = value_of(f, name) {
                            fields.push((name, v.to_string())); // sorted below
                        }
                    }
                }
            }
        }
        // Sorted by name without a sort of its own: pick names in order.
        let mut out: Vec<(&str, &str)> = Vec::with_capacity(fields.len());
        for (k, v) in &fields {
            let at = out.binary_search_by(|(n, _)| n.cmp(k)).unwrap_or_else(|i| i);
            out.insert(at, (k, v));
        }
        Some(json::write_object(out))
    }

    /// The greatest app timestamp among the register writes.
    pub fn max_updated_at(&self) -> Option<u64> {
        self.live.iter().filter(|w| !matches!(w.op, Op::Add(_))).filter_map(|w| w.updated_at).max()
    }

    /// `device`'s current total in the counter lane of `field`.
    pub fn lane_total(&self, field: &str, device: &str) -> i64 {
        self.lanes().find(|(w, c)| &*w.id.writer == device && &*c.field == field).map_or(0, |(_, c)| c.total)
    }

    /// Whether this exact write is live here.
    pub fn holds(&self, id: &WriteId) -> bool {
        self.live.binary_search_by(|w| w.id.cmp(id)).is_ok()
    }

    /// The live writes that `w` would meet without its writer having seen
    /// them: the current winners of the register slots `w` touches (all of
    /// them for a put or delete, its fields for a patch). Increments merge
    /// and never conflict.
    pub fn concurrent_with(&self, w: &Write) -> Vec<Rc<Write>> {
        let blind = |v: &Rc<Write>| -> bool {
            if mutation::active(Mutation::AuditNothing) {
                false
            } else if mutation::active(Mutation::AuditWithoutContext) {
                v.id != w.id
            } else {
                w.concurrent_with(v)
            }
        };
        let mut found: Vec<Rc<Write>> = match &w.op {
            Op::Put(_) | Op::Delete => self.live.iter().filter(|v| !matches!(v.op, Op::Add(_))).filter(|v| blind(v)).cloned().collect(),
            Op::Patch(f) => f.iter().filter_map(|(name, _)| self.field_winner(name)).filter(|v| blind(v)).cloned().collect(),
            Op::Add(_) => Vec::new(),
        };
        sort_by_id(&mut found);
        found
    }

    /// Incorporates `w`; true when the live set changed. Idempotent and
    /// commutative: any order of any repetition of the same writes gives
    /// the same state.
    pub fn apply(&mut self, w: Rc<Write>) -> bool {
        self.ctx.join(&w.ctx);
        self.ctx.raise(&w.id.writer, w.id.hlc);
        if self.holds(&w.id) {
            return false;
        }
        let mut cands = self.live.clone();
        cands.push(w);
        let live = live_set(&cands);
        let changed = live != self.live;
        self.live = live;
        changed
    }

    /// Notes that `w` arrived without applying it (its effect is already
    /// here): the context grows, the live set does not. True when the
    /// context changed.
    pub fn witness(&mut self, w: &Write) -> bool {
        let before = self.ctx.clone();
        self.ctx.join(&w.ctx);
        self.ctx.raise(&w.id.writer, w.id.hlc);
        self.ctx != before
    }

    /// Order-independent digest of the live set (8 bytes of SHA-256 over
    /// the key and the sorted write ids): equal digests mean equal states.
    pub fn digest(&self, key: &str) -> u64 {
        let mut h = Sha256::new();
        h.update(b"vm-state/item\0");
        h.update((key.len() as u32).to_be_bytes());
        h.update(key.as_bytes());
        for w in &self.live {
            h.update([w.id.writer.len() as u8]);
            h.update(w.id.writer.as_bytes());
            h.update(w.id.hlc.to_packed().to_be_bytes());
        }
        first_u64(&h.finalize())
    }
}

/// Where a key sits in the reconciliation key space: 8 bytes of SHA-256 of
/// the key, so ranges split evenly whatever the keys look like.
pub fn key_position(key: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(b"vm-state/key\0");
    h.update(key.as_bytes());
    first_u64(&h.finalize())
}

pub(crate) fn first_u64(bytes: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(a)
}

/// A local change before it is stamped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Replace the document.
    Put(Vec<Field>),
    /// Set some fields.
    Patch(Vec<Field>),
    /// Delete the document.
    Delete,
    /// Add `delta` to a counter field.
    Add {
        /// The counter field.
        field: Rc<str>,
        /// The amount.
        delta: i64,
    },
}

/// Stamps a local change on top of `state` (the key as this device sees
/// it, its own unfinished writes included), so that it is ordered after
/// everything it replaces:
///
/// * HLC: the clock's `now`, raised above every HLC the key incorporated
///   (a write always beats what its writer saw, even when a peer's clock
///   ran ahead);
/// * `updatedAt`: the app's if given (seed 001: it may lose to a newer one
///   it saw); otherwise, when the key already carries app timestamps, the
///   device's wall clock raised above them — without one the edit would
///   lose to any imported timestamp (a version *with* `updatedAt` beats one
///   without);
/// * context: everything the key incorporated; an increment's total is the
///   device's lane plus `delta`, and it gets a raised `updatedAt` like an
///   edit, so an increment made after a delete revives the key.
///
/// `seq` and `proof` are filled in when the write is persisted.
pub fn new_write(state: &KeyState, me: &DeviceId, now_hlc: Hlc, wall_ms: u64, updated_at: Option<u64>, change: Edit) -> Write {
    let floor = state.ctx.max_hlc();
    let hlc = if now_hlc > floor { now_hlc } else { Hlc::from_packed(floor.to_packed().saturating_add(1)) };
    let raised = || state.max_updated_at().map(|m| wall_ms.max(m.saturating_add(1)));
    let (op, updated_at) = match change {
        Edit::Put(f) => (Op::Put(f), updated_at.or_else(raised)),
        Edit::Patch(f) => (Op::Patch(f), updated_at.or_else(raised)),
        Edit::Delete => (Op::Delete, updated_at.or_else(raised)),
        Edit::Add { field, delta } => {
            let total = state.lane_total(&field, me).saturating_add(delta);
            (Op::Add(Counter { field, delta, total }), raised())
        }
    };
    Write { id: WriteId { hlc, writer: me.clone() }, seq: 0, updated_at, ctx: state.ctx.clone(), op, proof: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(s: &str) -> DeviceId {
        Rc::from(s)
    }

    fn fields(pairs: &[(&str, &str)]) -> Vec<Field> {
        let mut v: Vec<Field> = pairs.iter().map(|(k, v)| (Rc::from(*k), Rc::from(*v))).collect();
        v.sort();
        v
    }

    fn local(state: &mut KeyState, me: &str, t: u64, change: Edit) -> Rc<Write> {
        let w = Rc::new(new_write(state, &dev(me), Hlc::new(t, 0).unwrap(), t, None, change));
        state.apply(w.clone());
        w
    }

    #[test]
    fn per_field_last_writer_wins_whatever_the_order() {
        let base = {
            let mut s = KeyState::default();
            local(&mut s, "a", 100, Edit::Put(fields(&[("name", "\"Tea\""), ("price", "3")])));
            s
        };
        // Two devices patch different fields and the same field while apart.
        let (mut a, mut b) = (base.clone(), base.clone());
        let pa = local(&mut a, "a", 200, Edit::Patch(fields(&[("price", "4")])));
        let pb = local(&mut b, "b", 300, Edit::Patch(fields(&[("price", "5"), ("size", "\"L\"")])));
        let pa2 = local(&mut a, "a", 250, Edit::Patch(fields(&[("name", "\"Green tea\"")])));
        assert!(pa.concurrent_with(&pb) && !pa2.concurrent_with(&pa));
        assert_eq!(a.concurrent_with(&pb).len(), 1, "b's price meets a's price");
        a.apply(pb.clone());
        for w in [pa2.clone(), pa.clone()] {
            b.apply(w);
        }
        assert_eq!(a, b);
        assert_eq!(a.document().unwrap(), r#"{"name":"Green tea","price":5,"size":"L"}"#);
        // Duplicates change nothing.
        assert!(!a.apply(pb.clone()) && !a.apply(pa.clone()));
        assert_eq!(a, b);
    }

    #[test]
    fn put_replaces_the_document_and_delete_is_not_undone_by_an_older_write() {
        let mut s = KeyState::default();
        local(&mut s, "a", 100, Edit::Put(fields(&[("x", "1"), ("y", "2")])));
        let old_patch = Rc::new(new_write(&s, &dev("b"), Hlc::new(150, 0).unwrap(), 150, None, Edit::Patch(fields(&[("y", "9")]))));
        local(&mut s, "a", 200, Edit::Put(fields(&[("x", "3")])));
        assert_eq!(s.document().unwrap(), r#"{"x":3}"#);
        let del = local(&mut s, "a", 300, Edit::Delete);
        assert_eq!(s.document(), None);
        assert_eq!(s.concurrent_with(&old_patch).len(), 1, "the patch had not seen the delete");
        assert!(!s.apply(old_patch));
        assert_eq!(s.document(), None, "an older write does not undo a delete");
        assert_eq!(s.live().len(), 1);
        assert_eq!(s.tombstone_hlc(), Some(del.id.hlc));
        // A newer patch revives the key with only what it writes.
        local(&mut s, "b", 400, Edit::Patch(fields(&[("z", "true")])));
        assert_eq!(s.document().unwrap(), r#"{"z":true}"#);
    }

    #[test]
    fn counters_sum_every_increment_and_survive_a_delete() {
        let stock = || Rc::from("stock");
        let mut base = KeyState::default();
        local(&mut base, "a", 100, Edit::Put(fields(&[("name", "\"Tea\"")])));
        local(&mut base, "a", 110, Edit::Add { field: stock(), delta: 100 });
        let (mut a, mut b) = (base.clone(), base.clone());
        let mut sent = Vec::new();
        for t in 0..5 {
            sent.push(local(&mut a, "a", 200 + t, Edit::Add { field: stock(), delta: -1 }));
            sent.push(local(&mut b, "b", 200 + t, Edit::Add { field: stock(), delta: -1 }));
        }
        for w in &sent {
            a.apply(w.clone());
            b.apply(w.clone());
        }
        assert_eq!(a.document(), b.document());
        assert_eq!(a.document().unwrap(), r#"{"name":"Tea","stock":90}"#, "two lanes that each sold 5 of 100");
        assert!(sent.iter().all(|w| a.concurrent_with(w).is_empty()), "increments never conflict");
        // A put does not touch counters; a register of the same name is hidden.
        local(&mut a, "a", 300, Edit::Put(fields(&[("name", "\"Tea\""), ("stock", "\"n/a\"")])));
        assert_eq!(a.document().unwrap(), r#"{"name":"Tea","stock":90}"#);
        // A sale made while another device deletes the product is not lost:
        // the delete hides the document, the counter keeps its sum.
        let (mut x, mut y) = (a.clone(), a.clone());
        let del = local(&mut x, "a", 400, Edit::Delete);
        let sale = local(&mut y, "b", 350, Edit::Add { field: stock(), delta: -1 });
        x.apply(sale);
        y.apply(del);
        assert_eq!(x, y);
        assert_eq!(x.document(), None);
        local(&mut x, "a", 500, Edit::Patch(fields(&[("name", "\"Tea\"")])));
        assert_eq!(x.document().unwrap(), r#"{"name":"Tea","stock":89}"#);
        // An increment made after a delete brings the key back by itself.
        local(&mut y, "b", 600, Edit::Add { field: stock(), delta: 1 });
        assert_eq!(y.document().unwrap(), r#"{"stock":90}"#);
    }

    #[test]
    fn updated_at_rules_of_seed_001() {
        let t = |w: u64, ua: Option<u64>, d: &str| Write {
            id: WriteId { hlc: Hlc::new(w, 0).unwrap(), writer: dev(d) },
            seq: 1,
            updated_at: ua,
            ctx: Context::default(),
            op: Op::Delete,
            proof: vec![],
        };
        // With beats without, whatever the HLC.
        assert_eq!(t(1, Some(5), "a").cmp_lww(&t(9, None, "b")), Ordering::Greater);
        assert_eq!(t(9, None, "a").cmp_lww(&t(1, Some(5), "b")), Ordering::Less);
        // Both: the newer app timestamp.
        assert_eq!(t(9, Some(4), "a").cmp_lww(&t(1, Some(5), "b")), Ordering::Less);
        // Neither, or equal: the HLC, then the device.
        assert_eq!(t(2, None, "a").cmp_lww(&t(1, None, "b")), Ordering::Greater);
        assert_eq!(t(1, Some(5), "a").cmp_lww(&t(1, Some(5), "b")), Ordering::Less);
        // A local edit on a key with app timestamps is raised above them.
        let mut s = KeyState::default();
        let import = Rc::new(new_write(&s, &dev("a"), Hlc::new(100, 0).unwrap(), 100, Some(5_000), Edit::Put(fields(&[("p", "1")]))));
        s.apply(import);
        let edit = local(&mut s, "b", 200, Edit::Patch(fields(&[("p", "2")])));
        assert_eq!(edit.updated_at, Some(5_001));
        assert_eq!(s.document().unwrap(), r#"{"p":2}"#);
        // An explicit older import loses to what it saw, without a conflict.
        let stale = Rc::new(new_write(&s, &dev("c"), Hlc::new(300, 0).unwrap(), 300, Some(10), Edit::Patch(fields(&[("p", "3")]))));
        assert!(s.concurrent_with(&stale).is_empty());
        s.apply(stale);
        assert_eq!(s.document().unwrap(), r#"{"p":2}"#);
    }

    #[test]
    fn a_write_is_stamped_after_everything_its_key_holds() {
        let mut s = KeyState::default();
        // A peer whose clock runs an hour ahead.
        let ahead = Rc::new(new_write(&s, &dev("z"), Hlc::new(3_600_000, 0).unwrap(), 0, None, Edit::Put(fields(&[("a", "1")]))));
        s.apply(ahead.clone());
        let mine = local(&mut s, "a", 1_000, Edit::Patch(fields(&[("a", "2")])));
        assert!(mine.id.hlc > ahead.id.hlc && mine.saw(&ahead.id));
        assert_eq!(s.document().unwrap(), r#"{"a":2}"#);
    }

    #[test]
    fn digest_depends_on_the_live_set_only() {
        let mut a = KeyState::default();
        let w1 = local(&mut a, "a", 100, Edit::Put(fields(&[("x", "1")])));
        let w2 = local(&mut a, "a", 200, Edit::Put(fields(&[("x", "2")])));
        let mut b = KeyState::default();
        b.apply(w2.clone());
        assert_ne!(a.ctx(), &Context::default());
        assert_eq!(a.live(), b.live());
        assert_eq!(a.digest("k"), b.digest("k"));
        assert_ne!(a.digest("k"), a.digest("k2"));
        b.apply(w1);
        assert_eq!(a.digest("k"), b.digest("k"));
        let c = KeyState::from_parts(vec![w2.clone(), w2], Context::default());
        assert_eq!(c.digest("k"), a.digest("k"));
        assert_ne!(key_position("k"), key_position("k2"));
    }
}
