//! The one sort of the crate's core: a heapsort. `slice::sort_unstable`
//! brings a large pattern-defeating quicksort (with insertion sort, heapsort fallback and pivot
//! selection), and `slice::sort` a driftsort, per element type into the wasm build; this is a few
//! hundred bytes per type and still `O(n log n)` without allocating.

use core::cmp::Ordering;

/// Sorts `v` ascending. Not stable: every caller sorts distinct elements, so the result is the
/// one any other sort gives.
pub(crate) fn sort<T: Ord>(v: &mut [T]) {
    sort_by(v, T::cmp);
}

/// Sorts `v` by `cmp`. Not stable: callers give a total order over their elements (ties broken
/// by a unique id), so the result is the one a stable sort gives.
///
/// The heap walk itself is [`heapsort`], not generic: only this small adapter (one compare and
/// one swap by index) is instantiated per element type and comparator, where a generic walk
/// put a copy of `sift_down` into the wasm build for each of the crate's ~13 sorts (issue #20).
pub(crate) fn sort_by<T>(v: &mut [T], mut cmp: impl FnMut(&T, &T) -> Ordering) {
    heapsort(v.len(), &mut |i, j, swap| {
        if swap {
            v.swap(i, j);
            false
        } else {
            cmp(&v[i], &v[j]) == Ordering::Less
        }
    });
}

/// Heapsorts `n` elements through `op`: `op(i, j, false)` is "element `i` < element `j`",
/// `op(i, j, true)` swaps them (its result unused).
fn heapsort(n: usize, op: &mut dyn FnMut(usize, usize, bool) -> bool) {
    let mut i = n / 2;
    while i > 0 {
        i -= 1;
        sift_down(op, i, n);
    }
    let mut end = n;
    while end > 1 {
        end -= 1;
        op(0, end, true);
        sift_down(op, 0, end);
    }
}

/// Restores the max-heap property below `root` within the first `end` elements.
fn sift_down(op: &mut dyn FnMut(usize, usize, bool) -> bool, mut root: usize, end: usize) {
    loop {
        let mut child = 2 * root + 1;
        if child >= end {
            return;
        }
        if child + 1 < end && op(child, child + 1, false) {
            child += 1;
        }
        if !op(root, child, false) {
            return;
        }
        op(root, child, true);
        root = child;
    }
}

#[cfg(test)]
mod tests {
    use super::sort;

    #[test]
    fn sorts_like_the_standard_library() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for n in 0..200 {
            let mut v: Vec<(u64, u32)> = (0..n)
                .map(|i| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed % 7, i)
                })
                .collect();
            let mut want = v.clone();
            want.sort_unstable();
            sort(&mut v);
            assert_eq!(v, want);
            let mut by = want.clone();
            super::sort_by(&mut by, |a, b| b.cmp(a));
            want.reverse();
            assert_eq!(by, want);
        }
    }
}
