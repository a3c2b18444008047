//! A small size-class heap: the global allocator of the MQTT-only wasm entry.
//!
//! Why: Rust's default wasm allocator (dlmalloc) is ~8 KB of code before
//! gzip, ~4 KB after: 8 % of the `venuemesh/mqtt` entry, which issue #20 wants
//! at 50 KB. This heap is a few hundred bytes. Every block is a power of two
//! from 16 bytes up; each size has its own free list (a freed block is pushed,
//! an allocation pops), and an empty list is refilled by carving a slab of
//! `max(size, 4 KiB)` from memory taken with `memory.grow`.
//!
//! What it trades: a block is up to twice the size asked for, and a freed
//! block is only reused by requests of its own size class (no coalescing), so
//! the heap is the sum of each class's peak. The MQTT client's allocations
//! are steady (frames, packets, topics of similar sizes), where this is close
//! to a coalescing allocator's footprint and faster (no searching, no
//! splitting). The whole-mesh entry keeps dlmalloc: shared state and
//! replication build large transient buffers of every size, where
//! coalescing matters more than 4 KB. Measured (`scripts/bench state`,
//! bulk, wasm memory): with this heap for the whole package, 38.8 MB after
//! 10,000 `put()`s at once and 21.6 MB after a fresh page's 10,000-document
//! catch-up, against 29.8 MB and 13.2 MB with dlmalloc, for -3,028 B gzip.
//!
//! Alignment: a slab starts on a 4 KiB boundary and a class of size `s`
//! carves it in steps of `s`, so a block is aligned to `min(s, 4096)`; a
//! request is put in a class at least as large as its alignment, and an
//! alignment over 4 KiB is refused (null), as is a size over 1 GiB.
//!
//! The heap logic is plain Rust over a [`Grow`] source, so it is tested
//! natively against an arena; the wasm global allocator (built only for
//! `wasm32` without the `mesh` feature and without threads) wraps it around
//! `memory.grow`.

/// Smallest block: 16 bytes (2^4), enough for the free-list link and for any
/// alignment Rust types on wasm32 ask for by default.
const MIN_SHIFT: u32 = 4;
/// Largest block: 1 GiB (2^30). wasm32's 4 GiB address space has no room for
/// a 2 GiB block next to anything else.
const MAX_SHIFT: u32 = 30;
const CLASSES: usize = (MAX_SHIFT - MIN_SHIFT + 1) as usize;
/// Slabs are carved in multiples of this and start on its boundary.
const SLAB: usize = 4096;
/// `memory.grow` hands out 64 KiB pages.
pub const PAGE: usize = 65536;

/// Where the heap gets memory from: `pages` new 64 KiB pages, contiguous and
/// page-aligned, or `None` when there is no more.
pub trait Grow {
    /// The address of the first new page, or `None`.
    fn grow(&mut self, pages: usize) -> Option<usize>;
}

/// Free lists per power-of-two class plus the unused tail of the last grow.
pub struct Pow2Heap {
    /// Head of each class's free list (0: empty); each free block's first
    /// word is the address of the next.
    free: [usize; CLASSES],
    /// The unused memory `[bump, end)`, always on a [`SLAB`] boundary.
    bump: usize,
    end: usize,
}

impl Default for Pow2Heap {
    fn default() -> Self {
        Self::new()
    }
}

/// The class of a request, or `None` when it cannot be served.
fn class_of(size: usize, align: usize) -> Option<usize> {
    if align > SLAB {
        return None;
    }
    let need = size.max(align).max(1 << MIN_SHIFT);
    if need > 1 << MAX_SHIFT {
        return None;
    }
    Some((need.next_power_of_two().trailing_zeros() - MIN_SHIFT) as usize)
}

impl Pow2Heap {
    /// An empty heap; it grows on the first allocation.
    pub const fn new() -> Self {
        Pow2Heap { free: [0; CLASSES], bump: 0, end: 0 }
    }

    /// A block for `size` bytes aligned to `align` (a power of two), or null
    /// when the request is too large or `grow` has no more memory (the heap
    /// stays usable).
    ///
    /// # Safety
    /// The addresses `grow` returns must be memory this heap may own.
    pub unsafe fn alloc(&mut self, size: usize, align: usize, grow: &mut impl Grow) -> *mut u8 {
        let Some(k) = class_of(size, align) else { return core::ptr::null_mut() };
        let head = self.free[k];
        if head != 0 {
            // SAFETY: `head` is a free block of this class: its first word
            // holds the next free block (written by `push`).
            self.free[k] = unsafe { *(head as *const usize) };
            return head as *mut u8;
        }
        let block = 1usize << (k as u32 + MIN_SHIFT);
        let slab = block.max(SLAB);
        if self.end - self.bump < slab {
            let pages = slab.div_ceil(PAGE);
            let Some(start) = grow.grow(pages) else { return core::ptr::null_mut() };
            // Contiguous with the last grow: the tail is kept; otherwise it
            // is abandoned (never happens with `memory.grow`, which only
            // this heap calls).
            if start != self.end {
                self.bump = start;
            }
            self.end = start + pages * PAGE;
        }
        let first = self.bump;
        self.bump += slab;
        // Blocks after the first go onto the free list, highest first, so
        // the list hands them out in address order.
        let mut at = first + slab;
        while at - block > first {
            at -= block;
            // SAFETY: `at` lies inside the fresh slab, which this heap owns.
            unsafe { self.push(k, at) };
        }
        first as *mut u8
    }

    /// Returns a block from [`Pow2Heap::alloc`] with the same `size` and
    /// `align` it was asked for.
    ///
    /// # Safety
    /// `ptr` came from this heap's `alloc` (or `realloc`) with this layout
    /// and was not freed since.
    pub unsafe fn dealloc(&mut self, ptr: *mut u8, size: usize, align: usize) {
        if let Some(k) = class_of(size, align) {
            // SAFETY: the caller hands back a block of class `k`.
            unsafe { self.push(k, ptr as usize) };
        }
    }

    /// Resizes: the same block when the new size falls in the same class,
    /// else a new block with the contents copied (the old one is freed).
    /// Null (the old block untouched) when no new block can be had.
    ///
    /// # Safety
    /// As [`Pow2Heap::dealloc`] for `ptr`, `size`, `align`.
    pub unsafe fn realloc(
        &mut self,
        ptr: *mut u8,
        size: usize,
        align: usize,
        new_size: usize,
        grow: &mut impl Grow,
    ) -> *mut u8 {
        if class_of(size, align) == class_of(new_size, align) {
            return ptr;
        }
        // SAFETY: forwarded from the caller.
        let new = unsafe { self.alloc(new_size, align, grow) };
        if !new.is_null() {
            // SAFETY: both blocks are live, distinct, and at least this long.
            unsafe {
                core::ptr::copy_nonoverlapping(ptr, new, size.min(new_size));
                self.dealloc(ptr, size, align);
            }
        }
        new
    }

    /// # Safety
    /// `at` is a block of class `k` that nobody uses.
    unsafe fn push(&mut self, k: usize, at: usize) {
        // SAFETY: the block is at least 16 bytes and 16-aligned (see the
        // module doc), so it holds the link.
        unsafe { *(at as *mut usize) = self.free[k] };
        self.free[k] = at;
    }
}

/// The MQTT-only entry's global allocator (see the module doc). Only without
/// threads: the heap has no lock.
#[cfg(all(target_arch = "wasm32", not(feature = "mesh"), not(target_feature = "atomics")))]
mod global {
    use super::{Grow, Pow2Heap, PAGE};
    use core::alloc::{GlobalAlloc, Layout};
    use core::cell::UnsafeCell;

    struct Memory;

    impl Grow for Memory {
        fn grow(&mut self, pages: usize) -> Option<usize> {
            let old = core::arch::wasm32::memory_grow(0, pages);
            (old != usize::MAX).then_some(old * PAGE)
        }
    }

    struct Heap(UnsafeCell<Pow2Heap>);

    // SAFETY: wasm32 without the `atomics` target feature has one thread.
    unsafe impl Sync for Heap {}

    // SAFETY: `Pow2Heap` hands out distinct blocks aligned as asked from
    // memory it owns (memory.grow pages nobody else uses); the calls cannot
    // re-enter (one thread, and the heap calls nothing that allocates).
    unsafe impl GlobalAlloc for Heap {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            unsafe { (*self.0.get()).alloc(l.size(), l.align(), &mut Memory) }
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            unsafe { (*self.0.get()).dealloc(p, l.size(), l.align()) }
        }
        unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
            unsafe { (*self.0.get()).realloc(p, l.size(), l.align(), new_size, &mut Memory) }
        }
    }

    #[global_allocator]
    static HEAP: Heap = Heap(UnsafeCell::new(Pow2Heap::new()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::alloc::{alloc, dealloc, Layout};

    /// An arena of `cap` pages standing in for wasm memory.
    struct Arena {
        base: *mut u8,
        cap: usize,
        used: usize,
        grows: usize,
    }

    impl Arena {
        fn new(cap: usize) -> Self {
            let base = unsafe { alloc(Layout::from_size_align(cap * PAGE, PAGE).unwrap()) };
            assert!(!base.is_null());
            Arena { base, cap, used: 0, grows: 0 }
        }
        fn contains(&self, p: *mut u8, len: usize) -> bool {
            let (p, b) = (p as usize, self.base as usize);
            p >= b && p + len <= b + self.used * PAGE
        }
    }

    impl Drop for Arena {
        fn drop(&mut self) {
            unsafe { dealloc(self.base, Layout::from_size_align(self.cap * PAGE, PAGE).unwrap()) }
        }
    }

    impl Grow for Arena {
        fn grow(&mut self, pages: usize) -> Option<usize> {
            if self.used + pages > self.cap {
                return None;
            }
            let at = self.base as usize + self.used * PAGE;
            self.used += pages;
            self.grows += 1;
            Some(at)
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Alloc(usize, u32),
        Free(usize),
        Realloc(usize, usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (prop_oneof![1usize..64, 1usize..5000, 1usize..200_000], 0u32..7).prop_map(|(s, a)| Op::Alloc(s, a)),
            3 => any::<usize>().prop_map(Op::Free),
            2 => (any::<usize>(), 1usize..70_000).prop_map(|(i, s)| Op::Realloc(i, s)),
        ]
    }

    /// A live block and the byte it was filled with.
    struct Live {
        p: *mut u8,
        size: usize,
        align: usize,
        fill: u8,
    }

    fn check(l: &Live) {
        let s = unsafe { std::slice::from_raw_parts(l.p, l.size) };
        assert!(s.iter().all(|&b| b == l.fill), "block {:p} ({} B) was overwritten", l.p, l.size);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Random alloc/free/realloc: every block is aligned, inside the
        /// arena, and keeps its contents while others are written (so no two
        /// live blocks overlap); realloc keeps the common prefix.
        #[test]
        fn blocks_are_aligned_disjoint_and_keep_their_contents(ops in proptest::collection::vec(op(), 1..120)) {
            let mut arena = Arena::new(512);
            let mut heap = Pow2Heap::new();
            let mut live: Vec<Live> = Vec::new();
            let mut fill = 0u8;
            for op in ops {
                match op {
                    Op::Alloc(size, a) => {
                        let align = 1usize << a;
                        let p = unsafe { heap.alloc(size, align, &mut arena) };
                        prop_assert!(!p.is_null());
                        prop_assert_eq!(p as usize % align, 0);
                        prop_assert!(arena.contains(p, size));
                        fill = fill.wrapping_add(1);
                        unsafe { p.write_bytes(fill, size) };
                        live.push(Live { p, size, align, fill });
                    }
                    Op::Free(i) if !live.is_empty() => {
                        let l = live.swap_remove(i % live.len());
                        check(&l);
                        unsafe { heap.dealloc(l.p, l.size, l.align) };
                    }
                    Op::Realloc(i, new_size) if !live.is_empty() => {
                        let i = i % live.len();
                        check(&live[i]);
                        let l = &mut live[i];
                        let p = unsafe { heap.realloc(l.p, l.size, l.align, new_size, &mut arena) };
                        prop_assert!(!p.is_null());
                        prop_assert_eq!(p as usize % l.align, 0);
                        prop_assert!(arena.contains(p, new_size));
                        let kept = l.size.min(new_size);
                        let s = unsafe { std::slice::from_raw_parts(p, kept) };
                        prop_assert!(s.iter().all(|&b| b == l.fill), "realloc lost the contents");
                        unsafe { p.add(kept).write_bytes(l.fill, new_size - kept) };
                        l.p = p;
                        l.size = new_size;
                    }
                    _ => {}
                }
                for l in &live {
                    check(l);
                }
            }
        }
    }

    /// Freed blocks are reused: a steady alloc/free cycle (a message
    /// buffer per frame) does not grow the heap after the first round.
    #[test]
    fn a_steady_cycle_reuses_its_blocks() {
        let mut arena = Arena::new(64);
        let mut heap = Pow2Heap::new();
        let sizes = [10, 100, 1000, 5000, 70_000, 24];
        for round in 0..1000 {
            let ps: Vec<_> = sizes.iter().map(|&s| unsafe { heap.alloc(s, 8, &mut arena) }).collect();
            assert!(ps.iter().all(|p| !p.is_null()));
            for (&p, &s) in ps.iter().zip(&sizes) {
                unsafe { heap.dealloc(p, s, 8) };
            }
            if round == 0 {
                arena.grows = 0;
            }
        }
        assert_eq!(arena.grows, 0, "the heap grew after the first round");
    }

    /// Out of memory is a null pointer, not a panic or a broken heap: what
    /// was allocated stays intact and smaller requests still succeed.
    #[test]
    fn out_of_memory_is_null_and_the_heap_stays_usable() {
        let mut arena = Arena::new(4);
        let mut heap = Pow2Heap::new();
        let small = unsafe { heap.alloc(100, 8, &mut arena) };
        assert!(!small.is_null());
        unsafe { small.write_bytes(7, 100) };
        assert!(unsafe { heap.alloc(5 * PAGE, 8, &mut arena) }.is_null(), "5 pages from a 4-page arena");
        let grown = unsafe { heap.realloc(small, 100, 8, 5 * PAGE, &mut arena) };
        assert!(grown.is_null());
        assert!(unsafe { std::slice::from_raw_parts(small, 100) }.iter().all(|&b| b == 7), "failed realloc touched the block");
        assert!(!unsafe { heap.alloc(2 * PAGE, 8, &mut arena) }.is_null());
        assert!(unsafe { heap.alloc(1 << 31, 8, &mut arena) }.is_null(), "over 1 GiB");
        assert!(unsafe { heap.alloc(8, 8192, &mut arena) }.is_null(), "alignment over 4 KiB");
    }

    #[test]
    fn classes() {
        assert_eq!(class_of(1, 1), Some(0));
        assert_eq!(class_of(16, 16), Some(0));
        assert_eq!(class_of(17, 1), Some(1));
        assert_eq!(class_of(8, 64), Some(2), "alignment raises the class");
        assert_eq!(class_of(1 << 30, 8), Some(CLASSES - 1));
        assert_eq!(class_of((1 << 30) + 1, 8), None);
    }
}
