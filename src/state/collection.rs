//! One collection on one replica: its keys, the position index that
//! reconciliation walks, the incremental checksum, the frontier, and which
//! records must be written next.

use std::collections::{BTreeMap, BTreeSet};
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
    /// Sequence numbers received above a gap, by device (bounded).
    above: BTreeMap<DeviceId, BTreeSet<u64>>,
}

/// Most out-of-order sequence numbers remembered per device; beyond that a
/// gap is left for reconciliation to close.
const MAX_ABOVE: usize = 1024;

impl Frontier {
    pub(crate) fn from_map(seen: BTreeMap<DeviceId, u64>) -> Frontier {
        Frontier { seen, above: BTreeMap::new() }
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
            let set = self.above.entry(device.clone()).or_default();
            set.insert(seq);
            if set.len() > MAX_ABOVE {
                set.pop_last();
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
        let Some(set) = self.above.get_mut(device) else { return };
        let mut cur = self.seen.get(device).copied().unwrap_or(0);
        while let Some(&first) = set.first() {
            if first <= cur {
                set.pop_first();
            } else if first == cur + 1 {
                cur = first;
                set.pop_first();
            } else {
                break;
            }
        }
        self.seen.insert(device.clone(), cur);
        if set.is_empty() {
            self.above.remove(device);
        }
    }
}

/// One collection of one replica.
#[derive(Debug, Default)]
pub(crate) struct Collection {
    keys: BTreeMap<Rc<str>, Entry>,
    /// `(position, key) → digest`, the order reconciliation ranges follow.
    index: BTreeMap<(u64, Rc<str>), u64>,
    sum: Checksum,
    pub(crate) frontier: Frontier,
    /// Keys whose record must be written (or deleted) by the next op.
    pub(crate) dirty: BTreeSet<Rc<str>>,
    /// The frontier must be written by the next op.
    pub(crate) meta_dirty: bool,
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

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn checksum(&self) -> Checksum {
        self.sum
    }

    /// Stores `state` for `key` (removing the key when it holds nothing),
    /// keeping index and checksum in step: O(log n).
    pub(crate) fn set(&mut self, key: &Rc<str>, state: KeyState, mark_dirty: bool) {
        self.unindex(key);
        if !state.live().is_empty() {
            let pos = key_position(key);
            let digest = state.digest(key);
            self.index.insert((pos, key.clone()), digest);
            self.sum.count += 1;
            self.sum.sum = self.sum.sum.wrapping_add(digest);
            self.keys.insert(key.clone(), Entry { state, pos, digest });
        }
        if mark_dirty {
            self.dirty.insert(key.clone());
        }
    }

    /// Forgets `key` entirely (a purged tombstone, or a key the peer deleted).
    pub(crate) fn remove(&mut self, key: &Rc<str>) {
        self.unindex(key);
        self.dirty.insert(key.clone());
    }

    fn unindex(&mut self, key: &Rc<str>) {
        if let Some(old) = self.keys.remove(key) {
            self.index.remove(&(old.pos, key.clone()));
            self.sum.count -= 1;
            self.sum.sum = self.sum.sum.wrapping_sub(old.digest);
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
