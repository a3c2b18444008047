//! Small ordered maps and sets as sorted vectors.
//!
//! Why: in the wasm build every `BTreeMap<K, V>` key/value pair is its own
//! copy of the B-tree code (node splitting, merging, navigation, drop): about
//! 2-6 KB per pair before `wasm-opt`, and the package had dozens of pairs.
//! The maps here hold a handful to a few hundred entries (peers of one
//! venue, rooms, conversations, outstanding copies), where a sorted `Vec`
//! with binary search is as fast or faster and its code is a few hundred
//! bytes per pair. Iteration is in key order, like the B-tree's, so callers
//! that relied on that order keep it.
//!
//! Inserting or removing in the middle moves the tail: O(n) per change. Do
//! not use these for collections that grow with traffic (tens of thousands
//! of entries); keep a B-tree or hash map there.

use core::borrow::Borrow;
use core::ops::{Bound, RangeBounds};

/// An ordered map over a sorted `Vec<(K, V)>` (see the module doc).
#[derive(Clone, PartialEq, Eq)]
pub struct VecMap<K, V> {
    items: Vec<(K, V)>,
}

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        VecMap { items: Vec::new() }
    }
}

impl<K: core::fmt::Debug, V: core::fmt::Debug> core::fmt::Debug for VecMap<K, V> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_map().entries(self.items.iter().map(|(k, v)| (k, v))).finish()
    }
}

impl<K: Ord, V> VecMap<K, V> {
    /// An empty map.
    pub const fn new() -> Self {
        VecMap { items: Vec::new() }
    }

    fn find<Q: ?Sized + Ord>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        self.items.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn clear(&mut self) {
        self.items.clear();
    }

    pub fn get<Q: ?Sized + Ord>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| &self.items[i].1)
    }

    pub fn get_mut<Q: ?Sized + Ord>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        match self.find(key) {
            Ok(i) => Some(&mut self.items[i].1),
            Err(_) => None,
        }
    }

    pub fn contains_key<Q: ?Sized + Ord>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.find(key).is_ok()
    }

    /// Inserts or replaces; returns the value replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(core::mem::replace(&mut self.items[i].1, value)),
            Err(i) => {
                self.items.insert(i, (key, value));
                None
            }
        }
    }

    pub fn remove<Q: ?Sized + Ord>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| self.items.remove(i).1)
    }

    /// Moves the entries with keys `>= key` into a new map (the B-tree's `split_off`).
    pub fn split_off<Q: ?Sized + Ord>(&mut self, key: &Q) -> Self
    where
        K: Borrow<Q>,
    {
        let i = self.items.partition_point(|(k, _)| k.borrow() < key);
        VecMap { items: self.items.split_off(i) }
    }

    /// The slot for `key`, to read or fill in place.
    pub fn entry(&mut self, key: K) -> Entry<'_, K, V> {
        let at = self.find(&key);
        Entry { map: self, at, key }
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> + ExactSizeIterator {
        self.items.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + ExactSizeIterator {
        self.items.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator {
        self.items.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut V> + ExactSizeIterator {
        self.items.iter_mut().map(|(_, v)| v)
    }

    pub fn iter_mut(&mut self) -> impl DoubleEndedIterator<Item = (&K, &mut V)> + ExactSizeIterator {
        self.items.iter_mut().map(|(k, v)| (&*k, v))
    }

    /// Keeps the entries for which `f` returns `true`, in order.
    pub fn retain(&mut self, mut f: impl FnMut(&K, &mut V) -> bool) {
        self.items.retain_mut(|(k, v)| f(k, v));
    }

    pub fn first_key_value(&self) -> Option<(&K, &V)> {
        self.items.first().map(|(k, v)| (k, v))
    }

    pub fn pop_first(&mut self) -> Option<(K, V)> {
        (!self.items.is_empty()).then(|| self.items.remove(0))
    }

    /// The entries with keys in `range`, in order.
    pub fn range<Q: ?Sized + Ord, R: RangeBounds<Q>>(&self, range: R) -> impl DoubleEndedIterator<Item = (&K, &V)>
    where
        K: Borrow<Q>,
    {
        let (a, b) = bounds(&self.items, |(k, _)| k.borrow(), &range);
        self.items[a..b].iter().map(|(k, v)| (k, v))
    }
}

/// `[start, end)` indices of the items whose key lies in `range`.
fn bounds<T, Q: ?Sized + Ord, R: RangeBounds<Q>>(items: &[T], key: impl Fn(&T) -> &Q, range: &R) -> (usize, usize) {
    let start = match range.start_bound() {
        Bound::Included(s) => items.partition_point(|t| key(t) < s),
        Bound::Excluded(s) => items.partition_point(|t| key(t) <= s),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => items.partition_point(|t| key(t) <= e),
        Bound::Excluded(e) => items.partition_point(|t| key(t) < e),
        Bound::Unbounded => items.len(),
    };
    (start, end.max(start))
}

/// A slot of a [`VecMap`], from [`VecMap::entry`].
pub struct Entry<'a, K, V> {
    map: &'a mut VecMap<K, V>,
    at: Result<usize, usize>,
    key: K,
}

impl<'a, K: Ord, V> Entry<'a, K, V> {
    pub fn or_insert_with(self, f: impl FnOnce() -> V) -> &'a mut V {
        let i = match self.at {
            Ok(i) => i,
            Err(i) => {
                self.map.items.insert(i, (self.key, f()));
                i
            }
        };
        &mut self.map.items[i].1
    }

    pub fn or_insert(self, value: V) -> &'a mut V {
        self.or_insert_with(|| value)
    }

    pub fn or_default(self) -> &'a mut V
    where
        V: Default,
    {
        self.or_insert_with(V::default)
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for VecMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut m = VecMap::new();
        for (k, v) in iter {
            m.insert(k, v);
        }
        m
    }
}

/// `map[&key]`, like the B-tree's: panics when `key` is absent, so only for
/// keys the caller just checked or inserted.
impl<K: Ord + Borrow<Q>, Q: ?Sized + Ord, V> core::ops::Index<&Q> for VecMap<K, V> {
    type Output = V;
    fn index(&self, key: &Q) -> &V {
        self.get(key).expect("VecMap: no entry for the key")
    }
}

impl<'a, K: Ord, V> IntoIterator for &'a VecMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = core::iter::Map<core::slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> (&'a K, &'a V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter().map(|(k, v)| (k, v))
    }
}

impl<'a, K: Ord, V> IntoIterator for &'a mut VecMap<K, V> {
    type Item = (&'a K, &'a mut V);
    type IntoIter = core::iter::Map<core::slice::IterMut<'a, (K, V)>, fn(&'a mut (K, V)) -> (&'a K, &'a mut V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter_mut().map(|(k, v)| (&*k, v))
    }
}

impl<K, V> IntoIterator for VecMap<K, V> {
    type Item = (K, V);
    type IntoIter = std::vec::IntoIter<(K, V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

/// An ordered set over a sorted `Vec<T>` (see the module doc).
#[derive(Clone, PartialEq, Eq)]
pub struct VecSet<T> {
    items: Vec<T>,
}

impl<T> Default for VecSet<T> {
    fn default() -> Self {
        VecSet { items: Vec::new() }
    }
}

impl<T: core::fmt::Debug> core::fmt::Debug for VecSet<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_set().entries(self.items.iter()).finish()
    }
}

impl<T: Ord> VecSet<T> {
    /// An empty set.
    pub const fn new() -> Self {
        VecSet { items: Vec::new() }
    }

    fn find<Q: ?Sized + Ord>(&self, v: &Q) -> Result<usize, usize>
    where
        T: Borrow<Q>,
    {
        self.items.binary_search_by(|t| t.borrow().cmp(v))
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn clear(&mut self) {
        self.items.clear();
    }

    pub fn contains<Q: ?Sized + Ord>(&self, v: &Q) -> bool
    where
        T: Borrow<Q>,
    {
        self.find(v).is_ok()
    }

    /// `true` when `v` was not in the set.
    pub fn insert(&mut self, v: T) -> bool {
        match self.find(&v) {
            Ok(_) => false,
            Err(i) => {
                self.items.insert(i, v);
                true
            }
        }
    }

    /// `true` when `v` was in the set.
    pub fn remove<Q: ?Sized + Ord>(&mut self, v: &Q) -> bool
    where
        T: Borrow<Q>,
    {
        match self.find(v) {
            Ok(i) => {
                self.items.remove(i);
                true
            }
            Err(_) => false,
        }
    }

    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.items.iter()
    }

    pub fn first(&self) -> Option<&T> {
        self.items.first()
    }

    pub fn last(&self) -> Option<&T> {
        self.items.last()
    }

    pub fn pop_first(&mut self) -> Option<T> {
        (!self.items.is_empty()).then(|| self.items.remove(0))
    }

    pub fn retain(&mut self, f: impl FnMut(&T) -> bool) {
        self.items.retain(f);
    }

    /// The elements in `range`, in order.
    pub fn range<Q: ?Sized + Ord, R: RangeBounds<Q>>(&self, range: R) -> std::slice::Iter<'_, T>
    where
        T: Borrow<Q>,
    {
        let (a, b) = bounds(&self.items, |t| t.borrow(), &range);
        self.items[a..b].iter()
    }
}

impl<T: Ord> FromIterator<T> for VecSet<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut s = VecSet::new();
        s.extend(iter);
        s
    }
}

impl<T: Ord> Extend<T> for VecSet<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        for v in iter {
            self.insert(v);
        }
    }
}

impl<T> IntoIterator for VecSet<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

impl<'a, T> IntoIterator for &'a VecSet<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::{VecMap, VecSet};
    use std::collections::{BTreeMap, BTreeSet};

    /// Random operations on both, compared after each step: the same
    /// contents, order, return values and range results as the B-tree.
    #[test]
    fn behaves_like_the_btree() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (mut m, mut b) = (VecMap::new(), BTreeMap::new());
        let (mut s, mut bs) = (VecSet::new(), BTreeSet::new());
        for step in 0..20_000u32 {
            let k = (next() % 64) as u32;
            let v = next();
            match next() % 10 {
                0 | 1 => assert_eq!(m.insert(k, v), b.insert(k, v)),
                2 => assert_eq!(m.remove(&k), b.remove(&k)),
                3 => {
                    *m.entry(k).or_insert(0) += 1;
                    *b.entry(k).or_insert(0) += 1;
                }
                4 => {
                    m.entry(k).or_default();
                    b.entry(k).or_default();
                }
                5 => {
                    m.retain(|k, _| k % 7 != step % 7);
                    b.retain(|k, _| k % 7 != step % 7);
                }
                6 => assert_eq!(m.pop_first(), b.pop_first()),
                9 => assert!(m.split_off(&k).into_iter().eq(b.split_off(&k))),
                7 => assert_eq!(s.insert(k), bs.insert(k)),
                _ => assert_eq!(s.remove(&k), bs.remove(&k)),
            }
            let lo = (next() % 70) as u32;
            let hi = lo + (next() % 20) as u32;
            assert!(m.range(lo..hi).eq(b.range(lo..hi)));
            assert!(m.range(lo..=hi).eq(b.range(lo..=hi)));
            assert!(s.range(lo..).eq(bs.range(lo..)));
            assert!(m.iter().eq(b.iter()));
            assert!(s.iter().eq(bs.iter()));
            assert_eq!(m.get(&k), b.get(&k));
            assert_eq!(m.len(), b.len());
            assert_eq!(s.contains(&k), bs.contains(&k));
            assert_eq!(m.first_key_value(), b.first_key_value());
        }
    }

    #[test]
    fn borrowed_lookups() {
        let mut m: VecMap<String, u32> = VecMap::new();
        m.insert("b".into(), 2);
        m.insert("a".into(), 1);
        assert_eq!(m.get("a"), Some(&1));
        assert!(m.contains_key("b"));
        assert_eq!(m.remove("b"), Some(2));
        let s: VecSet<String> = ["z", "x", "z"].iter().map(|s| s.to_string()).collect();
        assert_eq!(s.len(), 2);
        assert!(s.contains("x"));
        assert_eq!(s.first().map(String::as_str), Some("x"));
    }
}
