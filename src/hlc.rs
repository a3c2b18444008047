//! Hybrid logical clock (Kulkarni, Demirbas et al., "Logical Physical Clocks", 2014).
//!
//! Every mesh message carries an [`Hlc`] so that receivers can order events
//! from different devices even when their wall clocks disagree a little, and
//! so that last-writer-wins ([`lww`]) has a timestamp that respects causality:
//! if event *a* happened before *b* (same device, or *b* saw a message sent
//! after *a*), then `hlc(a) < hlc(b)`, whatever the wall clocks say.
//!
//! The clock is sans-IO like the rest of the core: every call takes the
//! current wall-clock time in milliseconds. That time must be **Unix epoch
//! milliseconds** (`Date.now()` in the browser), not `performance.now()`:
//! HLCs are compared across devices, so they need a shared origin.
//!
//! Encoding: 48 bits of wall-clock milliseconds (good until the year 10889)
//! and a 16-bit logical counter, packed as `wall_ms << 16 | logical` into a
//! `u64` whose integer order is the clock order (see [`Hlc::to_packed`]).

pub mod lww;

use core::cmp::Ordering;
use core::fmt;

/// A hybrid logical timestamp: wall-clock milliseconds plus a logical counter
/// that orders events within the same millisecond (or while a faster remote
/// clock is being followed).
///
/// Field order makes the derived `Ord` identical to the order of the packed
/// `u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hlc {
    wall_ms: u64,
    logical: u16,
}

impl Hlc {
    /// The largest wall-clock value that fits the 48-bit field.
    pub const MAX_WALL_MS: u64 = (1 << 48) - 1;
    /// The smallest timestamp; orders before everything a clock produces.
    pub const ZERO: Hlc = Hlc { wall_ms: 0, logical: 0 };
    /// The largest timestamp. A clock that reaches it stays there.
    pub const MAX: Hlc = Hlc { wall_ms: Self::MAX_WALL_MS, logical: u16::MAX };

    /// A timestamp from its parts; `None` when `wall_ms` does not fit 48 bits.
    pub fn new(wall_ms: u64, logical: u16) -> Option<Hlc> {
        (wall_ms <= Self::MAX_WALL_MS).then_some(Hlc { wall_ms, logical })
    }

    /// Wall-clock part, Unix epoch milliseconds.
    pub fn wall_ms(self) -> u64 {
        self.wall_ms
    }

    /// Logical part: events ordered after `wall_ms` was last advanced.
    pub fn logical(self) -> u16 {
        self.logical
    }

    /// The wire form: `wall_ms << 16 | logical`. Integer order equals clock
    /// order, so stores and other languages can compare HLCs as plain `u64`s.
    pub fn to_packed(self) -> u64 {
        (self.wall_ms << 16) | u64::from(self.logical)
    }

    /// The inverse of [`to_packed`](Self::to_packed). Every `u64` is a valid
    /// HLC, so decoding a peer's timestamp cannot fail.
    pub fn from_packed(packed: u64) -> Hlc {
        Hlc { wall_ms: packed >> 16, logical: packed as u16 }
    }

    /// The next timestamp after `self`: logical + 1, carrying into the wall
    /// part when the logical counter is full. Saturates at [`Hlc::MAX`]
    /// instead of wrapping (wrapping would break monotonicity).
    fn successor(self) -> Hlc {
        match self.logical.checked_add(1) {
            Some(logical) => Hlc { wall_ms: self.wall_ms, logical },
            None if self.wall_ms < Self::MAX_WALL_MS => Hlc { wall_ms: self.wall_ms + 1, logical: 0 },
            None => Hlc::MAX,
        }
    }
}

impl fmt::Display for Hlc {
    /// `wall_ms.logical`, e.g. `1769508000000.3`: readable in logs and sorts
    /// like the clock within one wall-clock width.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.wall_ms, self.logical)
    }
}

/// Total order over `(hlc, device)`: the HLC first, then the device id's
/// bytes. Two different devices can produce the same HLC; the device id makes
/// every pair of writes comparable, so all replicas pick the same winner.
pub fn cmp_stamped(a: (Hlc, &str), b: (Hlc, &str)) -> Ordering {
    a.0.cmp(&b.0).then_with(|| a.1.as_bytes().cmp(b.1.as_bytes()))
}

/// Why a remote timestamp was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClockError {
    /// The remote wall clock is further ahead of ours than `max_drift_ms`.
    /// Following it would drag our clock (and every later write's LWW stamp)
    /// into the future, so the message's timestamp is not merged; the clock
    /// is left unchanged.
    RemoteAhead {
        /// The remote timestamp's wall part.
        remote_wall_ms: u64,
        /// Our wall clock when the message was observed.
        local_wall_ms: u64,
        /// The configured bound.
        max_drift_ms: u64,
    },
}

impl fmt::Display for ClockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClockError::RemoteAhead { remote_wall_ms, local_wall_ms, max_drift_ms } => write!(
                f,
                "remote clock {remote_wall_ms} ms is more than {max_drift_ms} ms ahead of local {local_wall_ms} ms"
            ),
        }
    }
}

impl std::error::Error for ClockError {}

/// One device's hybrid logical clock.
///
/// Every value it returns is strictly greater than every value it returned
/// before (until the 48-bit wall field is exhausted, where it saturates) and
/// strictly greater than every remote timestamp it accepted.
#[derive(Debug, Clone)]
pub struct Clock {
    last: Hlc,
    max_drift_ms: u64,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new(Clock::DEFAULT_MAX_DRIFT_MS)
    }
}

impl Clock {
    /// Default bound on how far ahead of us a peer's clock may be: one minute.
    /// Venue devices sync time by NTP; a minute covers a badly set tablet
    /// without letting one device pull everybody's LWW stamps far forward.
    pub const DEFAULT_MAX_DRIFT_MS: u64 = 60_000;

    /// A fresh clock that refuses remote timestamps more than `max_drift_ms`
    /// ahead of the local wall clock.
    pub fn new(max_drift_ms: u64) -> Clock {
        Clock { last: Hlc::ZERO, max_drift_ms }
    }

    /// A clock that continues after `last` (e.g. the greatest HLC the device
    /// persisted before a restart), so it never reissues a timestamp even if
    /// the wall clock went backwards across the restart.
    pub fn resume(last: Hlc, max_drift_ms: u64) -> Clock {
        Clock { last, max_drift_ms }
    }

    /// The most recent timestamp issued or merged.
    pub fn last(&self) -> Hlc {
        self.last
    }

    /// The configured drift bound.
    pub fn max_drift_ms(&self) -> u64 {
        self.max_drift_ms
    }

    /// Timestamp for a local event or a message about to be sent.
    pub fn now(&mut self, wall_ms: u64) -> Hlc {
        let pt = wall_ms.min(Hlc::MAX_WALL_MS);
        self.last = if pt > self.last.wall_ms {
            Hlc { wall_ms: pt, logical: 0 }
        } else {
            self.last.successor()
        };
        self.last
    }

    /// Merge the timestamp of a received message and return the timestamp of
    /// the receive event (greater than both `remote` and anything issued
    /// before). A remote clock more than `max_drift_ms` ahead is refused
    /// with [`ClockError::RemoteAhead`] and leaves the clock unchanged.
    pub fn observe(&mut self, remote: Hlc, wall_ms: u64) -> Result<Hlc, ClockError> {
        let pt = wall_ms.min(Hlc::MAX_WALL_MS);
        if remote.wall_ms > pt.saturating_add(self.max_drift_ms) {
            return Err(ClockError::RemoteAhead {
                remote_wall_ms: remote.wall_ms,
                local_wall_ms: pt,
                max_drift_ms: self.max_drift_ms,
            });
        }
        let top = self.last.max(remote);
        self.last = if pt > top.wall_ms { Hlc { wall_ms: pt, logical: 0 } } else { top.successor() };
        Ok(self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hlc(wall_ms: u64, logical: u16) -> Hlc {
        Hlc::new(wall_ms, logical).unwrap()
    }

    #[test]
    fn packing_round_trips_and_sorts() {
        let a = hlc(1_769_508_000_000, 7);
        assert_eq!(a.to_packed(), (1_769_508_000_000u64 << 16) | 7);
        assert_eq!(Hlc::from_packed(a.to_packed()), a);
        assert!(hlc(5, u16::MAX).to_packed() < hlc(6, 0).to_packed());
        assert_eq!(Hlc::MAX.to_packed(), u64::MAX);
        assert_eq!(Hlc::new(Hlc::MAX_WALL_MS + 1, 0), None);
        assert_eq!(a.to_string(), "1769508000000.7");
    }

    #[test]
    fn now_follows_wall_clock_and_counts_within_a_millisecond() {
        let mut c = Clock::default();
        assert_eq!(c.now(1000), hlc(1000, 0));
        assert_eq!(c.now(1000), hlc(1000, 1));
        assert_eq!(c.now(999), hlc(1000, 2), "wall clock went back: logical counts on");
        assert_eq!(c.now(1001), hlc(1001, 0));
    }

    #[test]
    fn observe_jumps_past_a_remote_that_is_ahead_within_drift() {
        let mut c = Clock::new(60_000);
        c.now(1000);
        assert_eq!(c.observe(hlc(5000, 3), 1000), Ok(hlc(5000, 4)));
        assert_eq!(c.now(1001), hlc(5000, 5));
        // Equal walls: the larger logical wins, then + 1.
        assert_eq!(c.observe(hlc(5000, 9), 1002), Ok(hlc(5000, 10)));
        // Remote behind us: our own counter advances.
        assert_eq!(c.observe(hlc(10, 0), 1003), Ok(hlc(5000, 11)));
        // Wall clock overtakes everything: logical resets.
        assert_eq!(c.observe(hlc(5000, 11), 6000), Ok(hlc(6000, 0)));
    }

    #[test]
    fn observe_rejects_drift_beyond_the_bound_without_moving() {
        let mut c = Clock::new(60_000);
        c.now(1_000_000);
        let before = c.last();
        assert_eq!(c.observe(hlc(1_060_000, 0), 1_000_000), Ok(hlc(1_060_000, 1)), "exactly at the bound is fine");
        let mut c = Clock::new(60_000);
        c.now(1_000_000);
        let err = c.observe(hlc(1_060_001, 0), 1_000_000).unwrap_err();
        assert_eq!(
            err,
            ClockError::RemoteAhead { remote_wall_ms: 1_060_001, local_wall_ms: 1_000_000, max_drift_ms: 60_000 }
        );
        assert_eq!(c.last(), before);
        assert!(err.to_string().contains("60000"));
    }

    #[test]
    fn logical_overflow_carries_into_wall_and_saturates_at_max() {
        let mut c = Clock::resume(hlc(1000, u16::MAX - 1), 60_000);
        assert_eq!(c.now(1000), hlc(1000, u16::MAX));
        assert_eq!(c.now(1000), hlc(1001, 0));
        let mut c = Clock::resume(Hlc::MAX, u64::MAX);
        assert_eq!(c.now(u64::MAX), Hlc::MAX);
        assert_eq!(c.observe(Hlc::MAX, u64::MAX), Ok(Hlc::MAX));
    }

    #[test]
    fn resume_never_reissues_after_a_backwards_restart() {
        let mut c = Clock::resume(hlc(9000, 4), 60_000);
        assert_eq!(c.now(100), hlc(9000, 5));
    }

    #[test]
    fn stamped_order_breaks_ties_by_device() {
        let t = hlc(10, 0);
        assert_eq!(cmp_stamped((t, "a"), (t, "b")), Ordering::Less);
        assert_eq!(cmp_stamped((t, "b"), (t, "b")), Ordering::Equal);
        assert_eq!(cmp_stamped((hlc(11, 0), "a"), (t, "z")), Ordering::Greater);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Now(u64),
        Observe(u64, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Wall times near each other (so merges happen) and anywhere at all.
        let wall = prop_oneof![3 => 1_000_000u64..1_200_000, 1 => any::<u64>()];
        prop_oneof![
            wall.clone().prop_map(Op::Now),
            (any::<u64>(), wall.clone()).prop_map(|(r, w)| Op::Observe(r, w)),
            (1_000_000u64..1_300_000, 0u16..4, wall).prop_map(|(r, l, w)| Op::Observe(hlc(r, l).to_packed(), w)),
        ]
    }

    proptest! {
        #[test]
        fn strictly_monotonic_and_causal(ops in proptest::collection::vec(op(), 1..200), drift in 0u64..120_000) {
            let mut c = Clock::new(drift);
            let mut prev = c.last();
            for op in ops {
                let next = match op {
                    Op::Now(w) => Some(c.now(w)),
                    Op::Observe(r, w) => {
                        let remote = Hlc::from_packed(r);
                        match c.observe(remote, w) {
                            Ok(t) => {
                                prop_assert!(t > remote || t == Hlc::MAX, "receive must follow send");
                                Some(t)
                            }
                            Err(ClockError::RemoteAhead { .. }) => {
                                prop_assert_eq!(c.last(), prev);
                                None
                            }
                        }
                    }
                };
                if let Some(t) = next {
                    prop_assert!(t > prev || t == Hlc::MAX, "{t} after {prev}");
                    prop_assert_eq!(c.last(), t);
                    prev = t;
                }
            }
        }

        #[test]
        fn never_panics_near_the_top(last in any::<u64>(), r in any::<u64>(), w in any::<u64>(), d in any::<u64>()) {
            let mut c = Clock::resume(Hlc::from_packed(last), d);
            let a = c.now(w);
            prop_assert!(a >= Hlc::from_packed(last));
            let _ = c.observe(Hlc::from_packed(r), w);
            prop_assert!(c.last() >= a);
        }

        #[test]
        fn two_devices_exchanging_messages_respect_happened_before(
            skew in 0u64..50_000, steps in proptest::collection::vec((any::<bool>(), 0u64..50), 1..100)
        ) {
            let (mut a, mut b) = (Clock::default(), Clock::default());
            let mut t = 1_700_000_000_000u64;
            let mut last_sent_by_a = Hlc::ZERO;
            for (a_sends, dt) in steps {
                t += dt;
                if a_sends {
                    last_sent_by_a = a.now(t);
                    let got = b.observe(last_sent_by_a, t + skew).unwrap();
                    prop_assert!(got > last_sent_by_a);
                } else {
                    let sent = b.now(t + skew);
                    let got = a.observe(sent, t).unwrap();
                    prop_assert!(got > sent && got > last_sent_by_a);
                }
            }
        }
    }
}
