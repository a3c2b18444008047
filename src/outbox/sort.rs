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
pub(crate) fn sort_by<T>(v: &mut [T], mut cmp: impl FnMut(&T, &T) -> Ordering) {
    let n = v.len();
    let mut i = n / 2;
    while i > 0 {
        i -= 1;
        sift_down(v, i, n, &mut cmp);
    }
    let mut end = n;
    while end > 1 {
        end -= 1;
        v.swap(0, end);
        sift_down(v, 0, end, &mut cmp);
    }
}

/// Restores the max-heap property below `root` within `v[..end]`.
fn sift_down<T>(v: &mut [T], mut root: usize, end: usize, cmp: &mut impl FnMut(&T, &T) -> Ordering) {
    loop {
        let mut child = 2 * root + 1;
        if child >= end {
            return;
        }
        if child + 1 < end && cmp(&v[child], &v[child + 1]) == Ordering::Less {
            child += 1;
        }
        if cmp(&v[root], &v[child]) != Ordering::Less {
            return;
        }
        v.swap(root, child);
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
