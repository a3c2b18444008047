//! The sender side of replay protection: counters that are never reused.
//!
//! Receivers accept each `(sender, counter)` once, so a device that reused a
//! counter after a restart would have those messages dropped as duplicates
//! or replays. Writing the counter to storage after every message would cost
//! a write per send; instead the device reserves blocks ("hi/lo"):
//!
//! * storage holds a **ceiling**: no counter at or above it was ever used;
//! * counters below the durable ceiling may be used; when fewer than half a
//!   block remain, [`SendCounter::to_persist`] asks for a higher ceiling to
//!   be written, and [`SendCounter::persisted`] reports the write done;
//! * after a restart the device resumes **at** the stored ceiling, skipping
//!   whatever it had reserved but not used.
//!
//! [`SendCounter::issue`] returns `None` only when the reservation is used up
//! and the write is still pending: sending must then wait, because a counter
//! above a ceiling that is not yet durable could be reissued after a crash.
//!
//! Storage lost (first start, or the browser evicted the database): with no
//! ceiling the counter starts at `wall_ms × 1024`. That is above every
//! counter the device used before, unless it averaged more than 1024
//! messages per millisecond since its previous such start or its clock went
//! backwards, so receivers still holding a window for it keep accepting it.

use crate::hlc::Hlc;

/// Hands out counters for envelopes and says which ceiling to persist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendCounter {
    next: u64,
    ceiling: u64,
    pending: Option<u64>,
    block: u64,
}

impl SendCounter {
    /// Counters reserved per storage write. A write every 4096 messages is
    /// negligible, and half a block (2048 messages) covers a burst while the
    /// next write is in flight.
    pub const DEFAULT_BLOCK: u64 = 4096;
    /// Counters per millisecond of wall clock for the storage-lost start.
    pub const TIME_FLOOR_PER_MS: u64 = 1024;

    /// Resume from the ceiling read from storage (`None` if there was none)
    /// at wall-clock time `wall_ms` (Unix ms). Nothing is usable until the
    /// first [`to_persist`](Self::to_persist) write completes.
    pub fn resume(persisted_ceiling: Option<u64>, wall_ms: u64) -> SendCounter {
        let start = persisted_ceiling
            .unwrap_or_else(|| wall_ms.min(Hlc::MAX_WALL_MS).saturating_mul(Self::TIME_FLOOR_PER_MS))
            .max(1);
        SendCounter { next: start, ceiling: start, pending: None, block: Self::DEFAULT_BLOCK }
    }

    /// Use another block size (at least 2).
    pub fn with_block(mut self, block: u64) -> SendCounter {
        self.block = block.max(2);
        self
    }

    /// The counter for the next envelope, or `None` while the reservation
    /// is exhausted and the next ceiling is not yet durable.
    pub fn issue(&mut self) -> Option<u64> {
        if self.next < self.ceiling {
            let c = self.next;
            self.next += 1;
            Some(c)
        } else {
            None
        }
    }

    /// The counter [`issue`](Self::issue) would return.
    pub fn peek(&self) -> u64 {
        self.next
    }

    /// Counters usable before the next write must complete.
    pub fn available(&self) -> u64 {
        self.ceiling - self.next
    }

    /// The durable ceiling.
    pub fn ceiling(&self) -> u64 {
        self.ceiling
    }

    /// A ceiling the shell should write to storage now, if one is due (fewer
    /// than half a block left) and none is in flight. Call it after `issue`,
    /// e.g. from the node's `poll_output`.
    pub fn to_persist(&mut self) -> Option<u64> {
        if self.pending.is_some() || self.available() >= self.block / 2 {
            return None;
        }
        let target = self.next.saturating_add(self.block);
        if target <= self.ceiling {
            return None; // counter space exhausted at u64::MAX; nothing to reserve
        }
        self.pending = Some(target);
        Some(target)
    }

    /// The write of `ceiling` is durable.
    pub fn persisted(&mut self, ceiling: u64) {
        self.ceiling = self.ceiling.max(ceiling);
        if self.pending.is_some_and(|p| p <= ceiling) {
            self.pending = None;
        }
    }

    /// The write failed; [`to_persist`](Self::to_persist) will ask again.
    pub fn persist_failed(&mut self) {
        self.pending = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nothing_before_the_first_reservation_is_durable() {
        let mut c = SendCounter::resume(Some(500), 0).with_block(8);
        assert_eq!(c.issue(), None);
        assert_eq!(c.to_persist(), Some(508));
        assert_eq!(c.to_persist(), None, "one write in flight at a time");
        assert_eq!(c.issue(), None, "still not durable");
        c.persisted(508);
        assert_eq!((500..508).map(|_| c.issue().unwrap()).collect::<Vec<_>>(), (500..508).collect::<Vec<_>>());
        assert_eq!(c.issue(), None);
    }

    #[test]
    fn reserves_again_at_half_a_block() {
        let mut c = SendCounter::resume(Some(1), 0).with_block(8);
        let first = c.to_persist().unwrap();
        c.persisted(first);
        for _ in 0..4 {
            c.issue().unwrap();
            assert_eq!(c.to_persist(), None);
        }
        c.issue().unwrap(); // 3 left < 4
        assert_eq!(c.to_persist(), Some(c.peek() + 8));
        c.persist_failed();
        let again = c.to_persist().unwrap();
        c.persisted(again);
        assert_eq!(c.available(), 8);
    }

    #[test]
    fn storage_lost_starts_from_the_wall_clock() {
        let c = SendCounter::resume(None, 1_769_508_000_000);
        assert_eq!(c.peek(), 1_769_508_000_000 * 1024);
        assert_eq!(SendCounter::resume(None, 0).peek(), 1, "counter 0 is never issued");
        assert_eq!(SendCounter::resume(None, u64::MAX).peek(), Hlc::MAX_WALL_MS * 1024);
    }

    #[test]
    fn exhaustion_at_the_top_is_none_not_a_panic() {
        let mut c = SendCounter::resume(Some(u64::MAX - 3), 0).with_block(8);
        let t = c.to_persist().unwrap();
        assert_eq!(t, u64::MAX);
        c.persisted(t);
        assert_eq!(c.issue(), Some(u64::MAX - 3));
        assert_eq!(c.issue(), Some(u64::MAX - 2));
        assert_eq!(c.issue(), Some(u64::MAX - 1));
        assert_eq!(c.issue(), None);
        assert_eq!(c.to_persist(), None);
    }

    proptest! {
        /// Across crashes at arbitrary points (only completed writes survive)
        /// no counter is ever issued twice and they only grow.
        #[test]
        fn never_reissued_across_crashes(ops in proptest::collection::vec(0u8..4, 1..300), block in 2u64..50) {
            let mut stored: Option<u64> = None;
            let mut c = SendCounter::resume(stored, 1000).with_block(block);
            let mut in_flight: Option<u64> = None;
            let mut last_issued: Option<u64> = None;
            for op in ops {
                match op {
                    0 | 1 => if let Some(n) = c.issue() {
                        prop_assert!(last_issued.is_none_or(|l| n > l));
                        prop_assert!(stored.is_some_and(|s| n < s), "issued {} above durable {:?}", n, stored);
                        last_issued = Some(n);
                    },
                    2 => {
                        if let Some(t) = in_flight.take() { stored = Some(t); c.persisted(t); }
                        in_flight = c.to_persist();
                    }
                    _ => { in_flight = None; c = SendCounter::resume(stored, 1000).with_block(block); }
                }
            }
        }
    }
}
