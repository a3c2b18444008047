//! An ordered map whose B-tree holds only `key → slot number`: one copy of
//! the B-tree code per key type instead of one per key/value pair.
//!
//! Why: in the wasm build every `BTreeMap<K, V>` pair is its own copy of the
//! B-tree code (insert, split, merge, steal, search, drop): 3-6 KB per pair
//! before gzip. The maps keyed by [`CommandId`](crate::outbox::CommandId)
//! (digests, receipts, held commands, replicas being stored, …) and the
//! state store's `key → entry` map grow with traffic, so they cannot be a
//! sorted `Vec` ([`crate::vecmap`], O(n) per change). Here the B-tree is
//! `BTreeMap<K, u64>`, the same instantiation as the plain `K → u64` maps
//! (`Replicator::done`, the state frontier and pending counts), and the
//! values live in a `Vec` of slots reused through a free list. Every
//! operation keeps the B-tree's complexity: O(log n) lookup, insert and
//! remove; iteration in key order.

use core::borrow::Borrow;
use core::ops::RangeBounds;
use std::collections::{btree_map, BTreeMap};

/// An ordered map `K → V` over `BTreeMap<K, u64>` plus value slots (module doc).
pub struct SlabMap<K, V> {
    index: BTreeMap<K, u64>,
    slots: Vec<Option<V>>,
    free: Vec<u64>,
}

impl<K, V> Default for SlabMap<K, V> {
    fn default() -> Self {
        SlabMap { index: BTreeMap::new(), slots: Vec::new(), free: Vec::new() }
    }
}

impl<K: Ord + core::fmt::Debug, V: core::fmt::Debug> core::fmt::Debug for SlabMap<K, V> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Ord + Clone, V: Clone> Clone for SlabMap<K, V> {
    fn clone(&self) -> Self {
        SlabMap { index: self.index.clone(), slots: self.slots.clone(), free: self.free.clone() }
    }
}

impl<K: Ord, V> SlabMap<K, V> {
    /// An empty map.
    pub const fn new() -> Self {
        SlabMap { index: BTreeMap::new(), slots: Vec::new(), free: Vec::new() }
    }

    fn slot(&self, i: u64) -> Option<&V> {
        self.slots.get(i as usize).and_then(Option::as_ref)
    }

    fn take(&mut self, i: u64) -> Option<V> {
        let v = self.slots.get_mut(i as usize).and_then(Option::take);
        if v.is_some() {
            self.free.push(i);
        }
        v
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn get<Q: ?Sized + Ord>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.slot(*self.index.get(key)?)
    }

    pub fn get_mut<Q: ?Sized + Ord>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        let i = *self.index.get(key)?;
        self.slots.get_mut(i as usize).and_then(Option::as_mut)
    }

    pub fn contains_key<Q: ?Sized + Ord>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.index.contains_key(key)
    }

    /// Inserts `value` under `key`; the value it replaces, if any.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        if let Some(&i) = self.index.get(&key) {
            if let Some(slot) = self.slots.get_mut(i as usize) {
                return slot.replace(value);
            }
        }
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(value);
                i
            }
            None => {
                self.slots.push(Some(value));
                (self.slots.len() - 1) as u64
            }
        };
        self.index.insert(key, i);
        None
    }

    pub fn remove<Q: ?Sized + Ord>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let i = self.index.remove(key)?;
        self.take(i)
    }

    /// The entry with the smallest key, taken out.
    pub fn pop_first(&mut self) -> Option<(K, V)> {
        let (k, i) = self.index.pop_first()?;
        self.take(i).map(|v| (k, v))
    }

    pub fn iter(&self) -> Iter<'_, V, btree_map::Iter<'_, K, u64>> {
        Iter { keys: self.index.iter(), slots: &self.slots }
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.index.keys()
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.index.values().filter_map(|&i| self.slot(i))
    }

    /// The values in key order, mutably.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        // Each live slot is named by exactly one key: walking the slots in
        // the keys' order hands out each `&mut V` once. Collecting the
        // order first keeps this free of `unsafe`.
        let order: Vec<u64> = self.index.values().copied().collect();
        let mut slots: Vec<Option<&mut V>> = self.slots.iter_mut().map(Option::as_mut).collect();
        order.into_iter().filter_map(move |i| slots.get_mut(i as usize).and_then(Option::take))
    }

    /// Entries in `range` of keys, in key order.
    pub fn range<Q: ?Sized + Ord, R: RangeBounds<Q>>(&self, range: R) -> Iter<'_, V, btree_map::Range<'_, K, u64>>
    where
        K: Borrow<Q>,
    {
        Iter { keys: self.index.range(range), slots: &self.slots }
    }
}

/// An ordered set over `BTreeMap<K, u64>` (values unused): for sets of
/// keys that already have a `K → u64` map (command ids), no B-tree or hash
/// table code of its own. O(log n) per operation.
pub struct KeySet<K> {
    map: BTreeMap<K, u64>,
}

impl<K> Default for KeySet<K> {
    fn default() -> Self {
        KeySet { map: BTreeMap::new() }
    }
}

impl<K: core::fmt::Debug> core::fmt::Debug for KeySet<K> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_set().entries(self.map.keys()).finish()
    }
}

impl<K: Ord + Clone> Clone for KeySet<K> {
    fn clone(&self) -> Self {
        KeySet { map: self.map.clone() }
    }
}

impl<K: Ord> KeySet<K> {
    /// An empty set.
    pub const fn new() -> Self {
        KeySet { map: BTreeMap::new() }
    }

    /// Adds `key`; true when it was not there.
    pub fn insert(&mut self, key: K) -> bool {
        self.map.insert(key, 0).is_none()
    }

    pub fn contains<Q: ?Sized + Ord>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.map.contains_key(key)
    }

    /// Takes `key` out; true when it was there.
    pub fn remove<Q: ?Sized + Ord>(&mut self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.map.remove(key).is_some()
    }
}

impl<K: Ord> FromIterator<K> for KeySet<K> {
    fn from_iter<I: IntoIterator<Item = K>>(iter: I) -> Self {
        let mut s = KeySet::new();
        for k in iter {
            s.insert(k);
        }
        s
    }
}

/// Entries in key order: the index's `(key, slot)` pairs with the slots'
/// values (a named type, so that a range's bounds need not outlive it).
pub struct Iter<'a, V, I> {
    keys: I,
    slots: &'a [Option<V>],
}

impl<'a, K: 'a, V, I: Iterator<Item = (&'a K, &'a u64)>> Iterator for Iter<'a, V, I> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        let slots = self.slots;
        self.keys.by_ref().find_map(|(k, &i)| Some((k, slots.get(i as usize)?.as_ref()?)))
    }
}

#[cfg(test)]
mod tests {
    use super::SlabMap;
    use core::ops::Bound;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u32),
        Remove(u8),
        PopFirst,
        Bump(u8),
        BumpAll,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (any::<u8>(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            any::<u8>().prop_map(Op::Remove),
            Just(Op::PopFirst),
            any::<u8>().prop_map(Op::Bump),
            Just(Op::BumpAll),
        ]
    }

    proptest! {
        /// Every operation gives what a `BTreeMap<K, V>` gives, and slots
        /// are reused: the slot vector never outgrows the most entries held.
        #[test]
        fn behaves_like_a_btreemap(ops in proptest::collection::vec(op(), 0..300)) {
            let (mut s, mut b) = (SlabMap::new(), BTreeMap::new());
            let mut most = 0;
            for op in ops {
                match op {
                    Op::Insert(k, v) => prop_assert_eq!(s.insert(k.to_string(), v), b.insert(k.to_string(), v)),
                    Op::Remove(k) => prop_assert_eq!(s.remove(k.to_string().as_str()), b.remove(k.to_string().as_str())),
                    Op::PopFirst => prop_assert_eq!(s.pop_first(), b.pop_first()),
                    Op::Bump(k) => {
                        let (x, y) = (s.get_mut(k.to_string().as_str()), b.get_mut(k.to_string().as_str()));
                        prop_assert_eq!(x.is_some(), y.is_some());
                        if let (Some(x), Some(y)) = (x, y) {
                            *x = x.wrapping_add(1);
                            *y = y.wrapping_add(1);
                        }
                    }
                    Op::BumpAll => {
                        s.values_mut().for_each(|v| *v = v.wrapping_mul(3));
                        b.values_mut().for_each(|v| *v = v.wrapping_mul(3));
                    }
                }
                most = most.max(b.len());
                prop_assert_eq!(s.len(), b.len());
                prop_assert!(s.slots.len() <= most);
                prop_assert!(s.iter().eq(b.iter()));
                prop_assert!(s.values().eq(b.values()));
                prop_assert!(s.keys().eq(b.keys()));
                prop_assert!(s.range::<str, _>((Bound::Included("5"), Bound::Unbounded)).eq(b.range::<str, _>((Bound::Included("5"), Bound::Unbounded))));
            }
            for k in 0..=255u8 {
                let k = k.to_string();
                prop_assert_eq!(s.get(k.as_str()), b.get(k.as_str()));
                prop_assert_eq!(s.contains_key(k.as_str()), b.contains_key(k.as_str()));
            }
        }
    }
}
