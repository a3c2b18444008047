//! One collection on one replica: its keys, the position index that
//! reconciliation walks, the incremental checksum, the frontier, and which
//! records must be written next.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::rc::Rc;

use super::model::{key_position, DeviceId, KeyState};
use super::wire::{Checksum, Node};

/// A key's state with its cached position and digest.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) state: KeyState,
    pub(crate) pos: u64,
    pub(crate) digest: u64,
    /// Listed in `dirty`.
    dirty: bool,
}

/// Per device, the highest sequence number up to which this replica holds
/// the effect of *every* write of that device in this collection: advanced
/// one by one as writes arrive, and joined with a peer's frontier when a
/// reconciliation with that peer completed (then this replica holds
/// everything the peer held). It lets a write that was already incorporated
/// be skipped, and tells a key the peer deleted and purged from one it never
/// had (`docs/state.md`, "Tombstones").
#[derive(Debug, Clone, Default)]
pub(crate) struct Frontier {
    seen: BTreeMap<DeviceId, u64>,
    /// Sequence numbers received above a gap, by device, sorted (bounded).
    above: Vec<(DeviceId, Vec<u64>)>,
}

/// Most out-of-order sequence numbers remembered per device; beyond that a
/// gap is left for reconciliation to close.
const MAX_ABOVE: usize = 1024;

impl Frontier {
    pub(crate) fn from_map(seen: BTreeMap<DeviceId, u64>) -> Frontier {
        Frontier { seen, above: Vec::new() }
    }

    pub(crate) fn get(&self, device: &str) -> u64 {
        self.seen.get(device).copied().unwrap_or(0)
    }

    pub(crate) fn covers(&self, device: &str, seq: u64) -> bool {
        seq <= self.get(device)
    }

    pub(crate) fn map(&self) -> &BTreeMap<DeviceId, u64> {
        &self.seen
    }

    /// Notes that the write `seq` of `device` is incorporated.
    pub(crate) fn record(&mut self, device: &DeviceId, seq: u64) {
        let cur = self.get(device);
        if seq <= cur {
            return;
        }
        if seq == cur + 1 {
            self.seen.insert(device.clone(), seq);
            self.settle(device);
        } else {
            let i = match self.above.iter().position(|(d, _)| d == device) {
                Some(i) => i,
                None => {
                    self.above.push((device.clone(), Vec::new()));
                    self.above.len() - 1
                }
            };
            let set = &mut self.above[i].1;
            if let Err(at) = set.binary_search(&seq) {
                set.insert(at, seq);
            }
            if set.len() > MAX_ABOVE {
                set.pop();
            }
        }
    }

    /// Pointwise maximum with a peer's frontier.
    pub(crate) fn join(&mut self, other: &BTreeMap<DeviceId, u64>) -> bool {
        let mut changed = false;
        for (d, seq) in other {
            if *seq > self.get(d) {
                self.seen.insert(d.clone(), *seq);
                changed = true;
                self.settle(d);
            }
        }
        changed
    }

    /// Moves `device`'s frontier over the numbers that arrived early.
    fn settle(&mut self, device: &DeviceId) {
        let Some(i) = self.above.iter().position(|(d, _)| d == device) else { return };
        let set = &mut self.above[i].1;
        let mut cur = self.seen.get(device).copied().unwrap_or(0);
        let mut used = 0;
        for &n in set.iter() {
            if n <= cur || n == cur + 1 {
                cur = cur.max(n);
                used += 1;
            } else {
                break;
            }
        }
        set.drain(..used);
        self.seen.insert(device.clone(), cur);
        if set.is_empty() {
            self.above.swap_remove(i);
        }
    }
}

/// One collection of one replica.
#[derive(Debug, Default)]
pub(crate) struct Collection {
    /// Over `BTreeMap<Rc<str>, u64>` (`crate::slabmap`): the B-tree code
    /// the frontier and `pending` already bring, not a copy of its own.
    keys: crate::slabmap::SlabMap<Rc<str>, Entry>,
    /// `(position, key) → digest`, the order reconciliation ranges follow.
    index: BTreeMap<(u64, Rc<str>), u64>,
    sum: Checksum,
    pub(crate) frontier: Frontier,
    /// Keys whose record must be written (or deleted) by the next op; a key
    /// repeats only if it was removed and stored again meanwhile (writing
    /// its record twice is harmless).
    dirty: Vec<Rc<str>>,
    /// The frontier must be written by the next op.
    pub(crate) meta_dirty: bool,
    /// Local writes not yet durable, per key (how many): lets a read or an
    /// incoming write skip the walk over every pending write for keys that
    /// have none. Without it 10,000 writes made at once cost 10,000² steps
    /// (`tests/bulk.rs`). A `u64` count: the same map type as the
    /// frontier's, so no new copy of the B-tree code in the wasm.
    pending: BTreeMap<Rc<str>, u64>,
}

impl Collection {
    pub(crate) fn get(&self, key: &str) -> Option<&KeyState> {
        self.keys.get(key).map(|e| &e.state)
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = (&Rc<str>, &KeyState)> {
        self.keys.iter().map(|(k, e)| (k, &e.state))
    }

    /// Keys from `start` on, in key order.
    pub(crate) fn keys_from<'a>(&'a self, start: &str) -> impl Iterator<Item = (&'a Rc<str>, &'a KeyState)> + 'a {
        self.keys.range::<str, _>((Bound::Included(start), Bound::Unbounded)).map(|(k, e)| (k, &e.state))
    }

    /// Whether `key` has local writes not yet durable.
    pub(crate) fn has_pending(&self, key: &str) -> bool {
        self.pending.contains_key(key)
    }

    /// A local write on `key` waits for storage.
    pub(crate) fn pending_add(&mut self, key: &Rc<str>) {
        *self.pending.entry(key.clone()).or_insert(0) += 1;
    }

    /// A local write on `key` left storage (durable or failed).
    pub(crate) fn pending_done(&mut self, key: &str) {
        if let Some(n) = self.pending.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                self.pending.remove(key);
            }
        }
    }

    /// Keys with pending local writes from `start` on, in key order.
    pub(crate) fn pending_from<'a>(&'a self, start: &str) -> impl Iterator<Item = &'a Rc<str>> + 'a {
        self.pending.range::<str, _>((Bound::Included(start), Bound::Unbounded)).map(|(k, _)| k)
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn checksum(&self) -> Checksum {
        self.sum
    }

    /// Stores `state` for `key` (removing the key when it holds nothing),
    /// keeping index and checksum in step: O(log n).
    pub(crate) fn set(&mut self, key: &Rc<str>, state: KeyState, mark_dirty: bool) {
        let listed = self.unindex(key);
        if mark_dirty && !listed {
            self.dirty.push(key.clone());
        }
        if !state.live().is_empty() {
            let pos = key_position(key);
            let digest = state.digest(key);
            self.index.insert((pos, key.clone()), digest);
            self.sum.count += 1;
            self.sum.sum = self.sum.sum.wrapping_add(digest);
            self.keys.insert(key.clone(), Entry { state, pos, digest, dirty: listed || mark_dirty });
        }
    }

    /// Marks `key`'s record to be written by the next op.
    pub(crate) fn mark_dirty(&mut self, key: &Rc<str>) {
        match self.keys.get_mut(key) {
            Some(e) if e.dirty => {}
            Some(e) => {
                e.dirty = true;
                self.dirty.push(key.clone());
            }
            None => self.dirty.push(key.clone()),
        }
    }

    /// The keys to write, which are then no longer dirty.
    pub(crate) fn take_dirty(&mut self) -> Vec<Rc<str>> {
        let keys = std::mem::take(&mut self.dirty);
        for k in &keys {
            if let Some(e) = self.keys.get_mut(k) {
                e.dirty = false;
            }
        }
        keys
    }

    pub(crate) fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Forgets `key` entirely (a purged tombstone, or a key the peer deleted).
    pub(crate) fn remove(&mut self, key: &Rc<str>) {
        if !self.unindex(key) {
            self.dirty.push(key.clone());
        }
    }

    /// Takes `key` out of the maps; true when it was listed as dirty.
    fn unindex(&mut self, key: &Rc<str>) -> bool {
        match self.keys.remove(key) {
            Some(old) => {
                self.index.remove(&(old.pos, key.clone()));
                self.sum.count -= 1;
                self.sum.sum = self.sum.sum.wrapping_sub(old.digest);
                old.dirty
            }
            None => false,
        }
    }

    fn in_node(&self, node: Node) -> impl Iterator<Item = (u64, &Rc<str>, u64)> {
        let (lo, hi) = node.bounds();
        let start: Rc<str> = Rc::from("");
        self.index
            .range((Bound::Included((lo, start)), Bound::Unbounded))
            .take_while(move |((pos, _), _)| *pos <= hi)
            .map(|((pos, key), digest)| (*pos, key, *digest))
    }

    /// Count and fingerprint of each of `node`'s 16 children (one pass).
    pub(crate) fn children(&self, node: Node) -> [Checksum; 16] {
        let mut out = [Checksum::default(); 16];
        let shift = 60 - 4 * u32::from(node.depth);
        for (pos, _, digest) in self.in_node(node) {
            let c = &mut out[((pos >> shift) & 0xf) as usize];
            c.count += 1;
            c.sum = c.sum.wrapping_add(digest);
        }
        out
    }

    /// Count and fingerprint of `node`.
    pub(crate) fn fingerprint(&self, node: Node) -> Checksum {
        let mut c = Checksum::default();
        for (_, _, digest) in self.in_node(node) {
            c.count += 1;
            c.sum = c.sum.wrapping_add(digest);
        }
        c
    }

    /// `(position, digest, key)` of every key in `node`, sorted.
    pub(crate) fn items(&self, node: Node) -> Vec<(u64, u64, Rc<str>)> {
        self.in_node(node).map(|(p, k, d)| (p, d, k.clone())).collect()
    }

    /// The keys at `pos` (almost always one).
    pub(crate) fn keys_at(&self, pos: u64) -> Vec<Rc<str>> {
        self.in_node(Node { depth: 16, prefix: pos }).map(|(_, k, _)| k.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frontier_advances_over_gaps_and_joins() {
        let d: DeviceId = Rc::from("d");
        let mut f = Frontier::default();
        f.record(&d, 1);
        f.record(&d, 3);
        f.record(&d, 4);
        assert_eq!(f.get("d"), 1);
        assert!(!f.covers("d", 3));
        f.record(&d, 2);
        assert_eq!(f.get("d"), 4);
        f.record(&d, 7);
        assert!(f.join(&BTreeMap::from([(d.clone(), 6)])));
        assert_eq!(f.get("d"), 7, "the early 7 joins once 6 is covered");
        assert!(!f.join(&BTreeMap::from([(d.clone(), 5)])));
        assert!(f.covers("d", 7) && !f.covers("e", 1));
    }
}
