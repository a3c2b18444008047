//! Anti-replay: accept each `(sender, counter)` once (RFC 4303 §3.4.3 style).
//!
//! Per sender the window keeps the highest counter accepted and a 1024-bit
//! map of which of the 1024 counters at and below it were seen:
//!
//! * above the highest → accepted; the window slides up. A jump of any size
//!   is accepted (the message is authenticated and counters only grow, so a
//!   jump is a restart that resumed from a persisted ceiling or a burst we
//!   missed). Everything more than 1023 below the new highest becomes
//!   [`Verdict::TooOld`], including late messages from before the jump.
//! * within the window → accepted once, then [`Verdict::Duplicate`];
//! * below the window → [`Verdict::TooOld`]: it cannot be told apart from a
//!   replay, so it is dropped.
//!
//! Memory is bounded: at most `max_senders` windows (≈ 200 bytes each). When
//! a new sender arrives at the cap, the sender heard from least recently is
//! forgotten (LRU). A forgotten sender starts a fresh window at its next
//! message, so its old messages could be accepted again: receivers combine
//! the window with [`Envelope::is_fresh`](super::Envelope::is_fresh) for
//! event kinds, and the cap (256 by default) is far above a venue's devices.

use super::{codec, Envelope, EnvelopeError, Limits, MessageId, VenueKey};

/// Width of each sender's window, in counters.
pub const WINDOW_BITS: u64 = 1024;
const WORDS: usize = (WINDOW_BITS / 64) as usize;

/// The window's decision about one `(sender, counter)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// First time seen: process it.
    Accept,
    /// Seen before (e.g. the same envelope over another route): drop.
    Duplicate,
    /// Older than the window: may be a replay, drop.
    TooOld,
}

/// Counters for `getDetailedStats()`. Every rejected envelope is counted in
/// exactly one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EnvelopeStats {
    /// Envelopes verified and accepted.
    pub accepted: u64,
    /// Tag did not verify (tampering, corruption or a foreign key).
    pub bad_signature: u64,
    /// Truncated, bad version, oversized or malformed.
    pub malformed: u64,
    /// Signed with a key id we do not hold.
    pub unknown_key: u64,
    /// Valid signature but another venue's id.
    pub wrong_venue: u64,
    /// Seen before: the same envelope arrived twice.
    pub duplicates: u64,
    /// Below the window: dropped as possible replays.
    pub replays: u64,
    /// State messages below the window, still delivered (see
    /// [`Kind::is_state`](super::Kind::is_state)); included in `accepted`.
    pub late_state: u64,
    /// Counter jumps of a whole window or more (usually a sender restart).
    pub counter_jumps: u64,
    /// Sender windows dropped to respect the cap.
    pub senders_evicted: u64,
}

#[derive(Debug, Clone)]
struct SenderWindow {
    highest: u64,
    /// Bit `i` (word `i / 64`, bit `i % 64`) = counter `highest - i` seen.
    seen: [u64; WORDS],
    last_used: u64,
}

impl SenderWindow {
    fn first(counter: u64, tick: u64) -> SenderWindow {
        let mut seen = [0; WORDS];
        seen[0] = 1;
        SenderWindow { highest: counter, seen, last_used: tick }
    }

    fn classify(&self, counter: u64) -> Verdict {
        if counter > self.highest {
            return Verdict::Accept;
        }
        let offset = self.highest - counter;
        if offset >= WINDOW_BITS {
            Verdict::TooOld
        } else if self.seen[(offset / 64) as usize] >> (offset % 64) & 1 == 1 {
            Verdict::Duplicate
        } else {
            Verdict::Accept
        }
    }

    /// Record an accepted counter; true when the window jumped by ≥ its width.
    fn record(&mut self, counter: u64) -> bool {
        if counter > self.highest {
            let shift = counter - self.highest;
            self.slide(shift);
            self.highest = counter;
            self.seen[0] |= 1;
            shift >= WINDOW_BITS
        } else {
            let offset = self.highest - counter;
            self.seen[(offset / 64) as usize] |= 1 << (offset % 64);
            false
        }
    }

    /// Move every bit `shift` places towards the old end.
    fn slide(&mut self, shift: u64) {
        if shift >= WINDOW_BITS {
            self.seen = [0; WORDS];
            return;
        }
        let words = (shift / 64) as usize;
        let bits = (shift % 64) as u32;
        for w in (0..WORDS).rev() {
            let hi = if w >= words { self.seen[w - words] << bits } else { 0 };
            let lo = if bits > 0 && w > words { self.seen[w - words - 1] >> (64 - bits) } else { 0 };
            self.seen[w] = hi | lo;
        }
    }
}

/// Per-sender anti-replay windows with a bounded number of senders.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    /// In no particular order. A venue has tens of devices (256 at most), so
    /// a scan is as fast as a map here, and a `Vec` is ~3 KB less wasm than
    /// a `BTreeMap<String, _>`.
    senders: Vec<(String, SenderWindow)>,
    max_senders: usize,
    tick: u64,
    stats: EnvelopeStats,
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow::new(ReplayWindow::DEFAULT_MAX_SENDERS)
    }
}

impl ReplayWindow {
    /// Default cap on tracked senders.
    pub const DEFAULT_MAX_SENDERS: usize = 256;

    /// Windows for at most `max_senders` senders (at least 1).
    pub fn new(max_senders: usize) -> ReplayWindow {
        ReplayWindow { senders: Vec::new(), max_senders: max_senders.max(1), tick: 0, stats: EnvelopeStats::default() }
    }

    /// Decide about `(sender, counter)` and record it if accepted. Counts the
    /// outcome in [`stats`](Self::stats).
    pub fn check(&mut self, sender: &str, counter: u64) -> Verdict {
        let verdict = self.check_uncounted(sender, counter);
        match verdict {
            Verdict::Accept => self.stats.accepted += 1,
            Verdict::Duplicate => self.stats.duplicates += 1,
            Verdict::TooOld => self.stats.replays += 1,
        }
        verdict
    }

    /// [`check`](Self::check) by message id.
    pub fn check_id(&mut self, id: &MessageId) -> Verdict {
        self.check(&id.sender, id.counter)
    }

    /// What [`check`](Self::check) would say, without recording anything.
    pub fn classify(&self, sender: &str, counter: u64) -> Verdict {
        self.get(sender).map_or(Verdict::Accept, |w| w.classify(counter))
    }

    /// The highest counter accepted from `sender`, if it is tracked.
    pub fn highest(&self, sender: &str) -> Option<u64> {
        self.get(sender).map(|w| w.highest)
    }

    fn pos(&self, sender: &str) -> Option<usize> {
        self.senders.iter().position(|(s, _)| s == sender)
    }

    fn get(&self, sender: &str) -> Option<&SenderWindow> {
        self.senders.iter().find(|(s, _)| s == sender).map(|(_, w)| w)
    }

    /// Number of senders tracked.
    pub fn senders(&self) -> usize {
        self.senders.len()
    }

    /// Stop tracking `sender` (e.g. the device was unpaired).
    pub fn forget(&mut self, sender: &str) {
        if let Some(i) = self.pos(sender) {
            self.senders.swap_remove(i);
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &EnvelopeStats {
        &self.stats
    }

    fn check_uncounted(&mut self, sender: &str, counter: u64) -> Verdict {
        self.tick += 1;
        let tick = self.tick;
        if let Some((_, w)) = self.senders.iter_mut().find(|(s, _)| s == sender) {
            let verdict = w.classify(counter);
            if verdict == Verdict::Accept {
                w.last_used = tick;
                if w.record(counter) {
                    self.stats.counter_jumps += 1;
                }
            }
            return verdict;
        }
        if self.senders.len() >= self.max_senders {
            // Ticks are unique, so the least recently used sender is unique
            // and the choice does not depend on the order of `senders`.
            let oldest = self.senders.iter().enumerate().min_by_key(|(_, (_, w))| w.last_used).map(|(i, _)| i);
            if let Some(i) = oldest {
                self.senders.swap_remove(i);
                self.stats.senders_evicted += 1;
            }
        }
        self.senders.push((sender.to_string(), SenderWindow::first(counter, tick)));
        Verdict::Accept
    }
}

/// Why [`Receiver::receive`] dropped an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejected {
    /// Did not verify or decode.
    Invalid(EnvelopeError),
    /// Already accepted once.
    Duplicate(MessageId),
    /// Below the sender's window (possible replay).
    TooOld(MessageId),
}

/// The inbound path in one place: verify with the venue key, then the
/// replay window, counting every outcome in [`EnvelopeStats`].
#[derive(Debug, Clone)]
pub struct Receiver {
    key: VenueKey,
    limits: Limits,
    window: ReplayWindow,
}

impl Receiver {
    /// A receiver for envelopes signed with `key`.
    pub fn new(key: VenueKey, limits: Limits, max_senders: usize) -> Receiver {
        Receiver { key, limits, window: ReplayWindow::new(max_senders) }
    }

    /// Verify, decode and deduplicate. State kinds below the window are
    /// still delivered (they are applied only if newer, by HLC); event kinds
    /// below it are dropped as [`Rejected::TooOld`].
    pub fn receive(&mut self, bytes: &[u8]) -> Result<Envelope, Rejected> {
        let env = codec::open(bytes, &self.key, self.limits).map_err(|e| {
            let s = &mut self.window.stats;
            match e {
                EnvelopeError::BadSignature => s.bad_signature += 1,
                EnvelopeError::UnknownKeyId(_) => s.unknown_key += 1,
                EnvelopeError::WrongVenue => s.wrong_venue += 1,
                _ => s.malformed += 1,
            }
            Rejected::Invalid(e)
        })?;
        let verdict = self.window.check_uncounted(&env.header.sender, env.header.counter);
        let s = &mut self.window.stats;
        match verdict {
            Verdict::Accept => {
                s.accepted += 1;
                Ok(env)
            }
            Verdict::TooOld if env.header.kind.is_state() => {
                s.accepted += 1;
                s.late_state += 1;
                Ok(env)
            }
            Verdict::Duplicate => {
                s.duplicates += 1;
                Err(Rejected::Duplicate(env.id()))
            }
            Verdict::TooOld => {
                s.replays += 1;
                Err(Rejected::TooOld(env.id()))
            }
        }
    }

    /// Replace the key (rotation); the windows are kept.
    pub fn set_key(&mut self, key: VenueKey) {
        self.key = key;
    }

    /// The key in use.
    pub fn key(&self) -> &VenueKey {
        &self.key
    }

    /// The replay windows (e.g. to [`forget`](ReplayWindow::forget) a sender).
    pub fn window_mut(&mut self) -> &mut ReplayWindow {
        &mut self.window
    }

    /// Counters so far.
    pub fn stats(&self) -> &EnvelopeStats {
        &self.window.stats
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Header, Kind};
    use super::*;
    use crate::hlc::Hlc;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn accepts_once_in_any_order_within_the_window() {
        let mut w = ReplayWindow::default();
        assert_eq!(w.check("a", 10), Verdict::Accept);
        assert_eq!(w.check("a", 10), Verdict::Duplicate);
        assert_eq!(w.check("a", 8), Verdict::Accept, "late but inside the window");
        assert_eq!(w.check("a", 8), Verdict::Duplicate);
        assert_eq!(w.check("a", 11), Verdict::Accept);
        assert_eq!(w.check("a", 9), Verdict::Accept);
        assert_eq!(w.check("b", 10), Verdict::Accept, "senders are independent");
        let s = w.stats();
        assert_eq!((s.accepted, s.duplicates, s.replays), (5, 2, 0));
    }

    #[test]
    fn window_edges() {
        let mut w = ReplayWindow::default();
        assert_eq!(w.check("a", 5000), Verdict::Accept);
        assert_eq!(w.check("a", 5000 - 1023), Verdict::Accept, "oldest slot inside");
        assert_eq!(w.check("a", 5000 - 1024), Verdict::TooOld, "first slot outside");
        assert_eq!(w.check("a", 0), Verdict::TooOld);
        assert_eq!(w.stats().replays, 2);
        // A slide by exactly one word keeps 5000's bit and pushes 5000 - 1023 out.
        assert_eq!(w.check("a", 5064), Verdict::Accept);
        assert_eq!(w.check("a", 5000), Verdict::Duplicate, "survives a one-word slide");
        assert_eq!(w.check("a", 5000 - 1023), Verdict::TooOld);
        assert_eq!(w.classify("a", 5063), Verdict::Accept);
        assert_eq!(w.highest("a"), Some(5064));
    }

    #[test]
    fn a_jump_accepts_and_drops_everything_behind_it() {
        let mut w = ReplayWindow::default();
        for c in 1..=100 {
            assert_eq!(w.check("a", c), Verdict::Accept);
        }
        assert_eq!(w.check("a", 1_000_000), Verdict::Accept);
        assert_eq!(w.stats().counter_jumps, 1);
        assert_eq!(w.check("a", 101), Verdict::TooOld, "pre-restart message arriving late");
        assert_eq!(w.check("a", 999_999), Verdict::Accept);
        assert_eq!(w.check("a", u64::MAX), Verdict::Accept);
        assert_eq!(w.check("a", u64::MAX), Verdict::Duplicate);
    }

    #[test]
    fn counter_zero_and_first_message_low() {
        let mut w = ReplayWindow::default();
        assert_eq!(w.check("a", 0), Verdict::Accept);
        assert_eq!(w.check("a", 0), Verdict::Duplicate);
        assert_eq!(w.check("a", 1), Verdict::Accept);
    }

    #[test]
    fn least_recently_heard_sender_is_evicted_at_the_cap() {
        let mut w = ReplayWindow::new(2);
        w.check("a", 1);
        w.check("b", 1);
        w.check("a", 2); // a is now more recent than b
        w.check("c", 1); // evicts b
        assert_eq!(w.senders(), 2);
        assert_eq!(w.stats().senders_evicted, 1);
        assert_eq!(w.highest("b"), None);
        assert_eq!(w.check("a", 2), Verdict::Duplicate, "a kept its window");
        assert_eq!(w.check("b", 1), Verdict::Accept, "a forgotten sender starts afresh");
        w.forget("b");
        assert_eq!(w.senders(), 1);
        assert_eq!(ReplayWindow::new(0).check("x", 1), Verdict::Accept);
    }

    fn sealed(key: &VenueKey, kind: Kind, counter: u64) -> Vec<u8> {
        let h = Header { kind, sender: "pos-1".into(), counter, term: 1, hlc: Hlc::new(1000, 0).unwrap() };
        Envelope::seal(&h, b"b", key).unwrap()
    }

    #[test]
    fn receiver_counts_every_outcome() {
        let key = VenueKey::new("v", 0, &[9u8; 32]).unwrap();
        let mut rx = Receiver::new(key.clone(), Limits::default(), 16);
        assert!(rx.receive(&sealed(&key, Kind::Heartbeat, 1)).is_ok());
        let presence = sealed(&key, Kind::Presence, 2);
        assert!(rx.receive(&sealed(&key, Kind::Heartbeat, 5000)).is_ok());
        assert_eq!(
            rx.receive(&sealed(&key, Kind::Heartbeat, 5000)),
            Err(Rejected::Duplicate(MessageId { sender: "pos-1".into(), counter: 5000 }))
        );
        assert!(matches!(rx.receive(&sealed(&key, Kind::AppMessage, 3)), Err(Rejected::TooOld(_))));
        assert!(rx.receive(&presence).is_ok(), "retained state below the window is delivered");
        let mut tampered = sealed(&key, Kind::Heartbeat, 6000);
        tampered[20] ^= 1;
        assert_eq!(rx.receive(&tampered), Err(Rejected::Invalid(EnvelopeError::BadSignature)));
        assert_eq!(rx.receive(&[]), Err(Rejected::Invalid(EnvelopeError::Truncated)));
        let rotated = VenueKey::new("v", 1, &[9u8; 32]).unwrap();
        assert!(rx.receive(&sealed(&rotated, Kind::Heartbeat, 7000)).is_err());
        let other_venue = VenueKey::new("w", 0, &[9u8; 32]).unwrap();
        assert!(rx.receive(&sealed(&other_venue, Kind::Heartbeat, 7000)).is_err());
        let s = *rx.stats();
        assert_eq!(
            s,
            EnvelopeStats {
                accepted: 3,
                bad_signature: 1,
                malformed: 1,
                unknown_key: 1,
                wrong_venue: 1,
                duplicates: 1,
                replays: 1,
                late_state: 1,
                counter_jumps: 1,
                senders_evicted: 0,
            }
        );
        rx.set_key(rotated.clone());
        assert!(rx.receive(&sealed(&rotated, Kind::Heartbeat, 7000)).is_ok());
    }

    proptest! {
        /// Against a model that remembers everything: accepted exactly once,
        /// never accepted below highest - 1023, always accepted when new and
        /// inside the window.
        #[test]
        fn matches_a_set_model(counters in proptest::collection::vec(
            prop_oneof![0u64..3000, 1_000_000u64..1_003_000, Just(u64::MAX - 1), Just(u64::MAX)], 1..400)
        ) {
            check_against_model(counters)?;
        }

        /// Same, with counters near the top of the window: small slides
        /// (across word boundaries), late arrivals and repeats.
        #[test]
        fn matches_a_set_model_near_the_edge(steps in proptest::collection::vec((any::<bool>(), 0u64..1100), 1..600)) {
            let mut top = 5000u64;
            let counters = steps.into_iter().map(|(forward, d)| {
                if forward { top += d % 130; top } else { top.saturating_sub(d) }
            }).collect();
            check_against_model(counters)?;
        }
    }

    fn check_against_model(counters: Vec<u64>) -> Result<(), TestCaseError> {
        let mut w = ReplayWindow::default();
        let mut seen = BTreeSet::new();
        let mut highest: Option<u64> = None;
        for c in counters {
            let got = w.check("s", c);
            let expected = match highest {
                Some(h) if c <= h && h - c >= WINDOW_BITS => Verdict::TooOld,
                _ if seen.contains(&c) => Verdict::Duplicate,
                _ => Verdict::Accept,
            };
            prop_assert_eq!(got, expected, "counter {} highest {:?}", c, highest);
            if got == Verdict::Accept {
                seen.insert(c);
                highest = Some(highest.map_or(c, |h| h.max(c)));
            }
        }
        Ok(())
    }
}
