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

use super::{codec, Envelope, EnvelopeError, Limits, MessageId};
use crate::trust::TrustStore;

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
    /// Signature did not verify with the sender's certified key.
    pub bad_signature: u64,
    /// No usable certificate chain for the sender (unknown, invalid,
    /// revoked, another device's): the reason is in the
    /// [`SecurityStats`](crate::trust::SecurityStats).
    pub untrusted: u64,
    /// Signed, but the body did not decrypt.
    pub bad_body: u64,
    /// Truncated, bad version, oversized or malformed.
    pub malformed: u64,
    /// Encrypted under a content key epoch we do not hold.
    pub unknown_key: u64,
    /// Another venue's id.
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

/// The inbound path in one place: verify the sender's chain and
/// signature, then the replay window, then decrypt, counting every outcome
/// in [`EnvelopeStats`] (trust refusals in detail in the store's
/// [`SecurityStats`](crate::trust::SecurityStats)).
#[derive(Debug, Clone)]
pub struct Receiver {
    trust: TrustStore,
    limits: Limits,
    window: ReplayWindow,
}

impl Receiver {
    /// A receiver checking envelopes against `trust`.
    pub fn new(trust: TrustStore, limits: Limits, max_senders: usize) -> Receiver {
        Receiver { trust, limits, window: ReplayWindow::new(max_senders) }
    }

    /// Verify, deduplicate, decrypt and decode. State kinds below the window
    /// are still delivered (they are applied only if newer, by HLC); event
    /// kinds below it are dropped as [`Rejected::TooOld`]. Only an envelope
    /// whose sender signature verified reaches the window, so nobody can
    /// move another device's window (the v1 "counter 2^64-2 in another's
    /// name" attack).
    pub fn receive(&mut self, bytes: &[u8], now_wall: u64) -> Result<Envelope, Rejected> {
        let v = codec::verify(bytes, &mut self.trust, self.limits, now_wall).map_err(|e| {
            let s = &mut self.window.stats;
            match e {
                EnvelopeError::BadSignature => s.bad_signature += 1,
                EnvelopeError::UnknownSender | EnvelopeError::Trust(_) => s.untrusted += 1,
                EnvelopeError::WrongVenue => s.wrong_venue += 1,
                _ => s.malformed += 1,
            }
            Rejected::Invalid(e)
        })?;
        let verdict = self.window.check_uncounted(&v.header.sender, v.header.counter);
        let s = &mut self.window.stats;
        let late = match verdict {
            Verdict::Accept => false,
            Verdict::TooOld if v.header.kind.is_state() => true,
            Verdict::Duplicate => {
                s.duplicates += 1;
                return Err(Rejected::Duplicate(v.header.id()));
            }
            Verdict::TooOld => {
                s.replays += 1;
                return Err(Rejected::TooOld(v.header.id()));
            }
        };
        match codec::decrypt(v, &mut self.trust) {
            Ok(env) => {
                let s = &mut self.window.stats;
                s.accepted += 1;
                s.late_state += u64::from(late);
                Ok(env)
            }
            Err(e) => {
                let s = &mut self.window.stats;
                match e {
                    EnvelopeError::UnknownKeyId(_) => s.unknown_key += 1,
                    _ => s.bad_body += 1,
                }
                Err(Rejected::Invalid(e))
            }
        }
    }

    /// The trust state (own key, chains, CRLs, content keys).
    pub fn trust(&self) -> &TrustStore {
        &self.trust
    }

    /// The trust state, mutable (CRLs, learned chains, stats).
    pub fn trust_mut(&mut self) -> &mut TrustStore {
        &mut self.trust
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

    const NOW: u64 = crate::trust::testca::NOT_BEFORE + 1000;

    fn store(ca: &crate::trust::testca::TestCa, device: &str) -> TrustStore {
        TrustStore::new(&ca.credentials(device), NOW, 60_000, 16).unwrap()
    }

    fn sealed_as(tx: &TrustStore, sender: &str, kind: Kind, counter: u64) -> Vec<u8> {
        let h = Header { kind, sender: sender.into(), counter, term: 1, hlc: Hlc::new(1000, 0).unwrap() };
        Envelope::seal(&h, b"b", tx).unwrap()
    }

    #[test]
    fn receiver_counts_every_outcome() {
        use crate::trust::testca::TestCa;
        let ca = TestCa::new("v");
        let tx = store(&ca, "pos-1");
        let sealed = |kind, counter| sealed_as(&tx, "pos-1", kind, counter);
        let mut rx = Receiver::new(store(&ca, "pos-2"), Limits::default(), 16);
        assert!(rx.receive(&sealed(Kind::Heartbeat, 1), NOW).is_ok());
        let presence = sealed(Kind::Presence, 2);
        assert!(rx.receive(&sealed(Kind::Heartbeat, 5000), NOW).is_ok());
        assert_eq!(
            rx.receive(&sealed(Kind::Heartbeat, 5000), NOW),
            Err(Rejected::Duplicate(MessageId { sender: "pos-1".into(), counter: 5000 }))
        );
        assert!(matches!(rx.receive(&sealed(Kind::AppMessage, 3), NOW), Err(Rejected::TooOld(_))));
        assert!(rx.receive(&presence, NOW).is_ok(), "retained state below the window is delivered");
        let mut tampered = sealed(Kind::Heartbeat, 6000);
        tampered[20] ^= 1;
        assert_eq!(rx.receive(&tampered, NOW), Err(Rejected::Invalid(EnvelopeError::BadSignature)));
        assert_eq!(rx.receive(&[], NOW), Err(Rejected::Invalid(EnvelopeError::Truncated)));
        let mut rotated_ca = TestCa::new("v");
        rotated_ca.epoch = 2;
        rotated_ca.content_key = [1u8; 32];
        let rotated = store(&rotated_ca, "pos-1");
        assert_eq!(rx.receive(&sealed_as(&rotated, "pos-1", Kind::Heartbeat, 7000), NOW), Err(Rejected::Invalid(EnvelopeError::UnknownKeyId(2))));
        let other_venue = store(&TestCa::new("w"), "pos-1");
        assert_eq!(rx.receive(&sealed_as(&other_venue, "pos-1", Kind::Heartbeat, 7000), NOW), Err(Rejected::Invalid(EnvelopeError::WrongVenue)));
        // A device with a valid certificate speaking as another one: its
        // chain names itself, and without a chain the cached key of pos-1
        // does not verify its signature. Neither moves pos-1's window.
        let rogue = store(&ca, "pos-3");
        let forged = sealed_as(&rogue, "pos-1", Kind::Heartbeat, u64::MAX - 1);
        assert!(matches!(rx.receive(&forged, NOW), Err(Rejected::Invalid(EnvelopeError::Trust(crate::trust::TrustError::WrongSubject)))));
        let forged = sealed_as(&rogue, "pos-1", Kind::AppMessage, u64::MAX - 1);
        assert_eq!(rx.receive(&forged, NOW), Err(Rejected::Invalid(EnvelopeError::BadSignature)));
        let from_stranger = sealed_as(&rogue, "pos-3", Kind::AppMessage, 1);
        assert_eq!(rx.receive(&from_stranger, NOW), Err(Rejected::Invalid(EnvelopeError::UnknownSender)));
        let s = *rx.stats();
        assert_eq!(
            s,
            EnvelopeStats {
                accepted: 3,
                bad_signature: 2,
                untrusted: 2,
                bad_body: 0,
                malformed: 1,
                unknown_key: 1,
                wrong_venue: 1,
                duplicates: 1,
                replays: 1,
                late_state: 1,
                // 5000 after 1, and 7000 (signed by pos-1, so recorded,
                // though under an epoch we lacked) after 5000.
                counter_jumps: 2,
                senders_evicted: 0,
            }
        );
        assert_eq!(rx.window.highest("pos-1"), Some(7000), "the forged counter did not move the window");
        let sec = *rx.trust().stats();
        assert_eq!((sec.bad_signature, sec.bad_chain, sec.unknown_sender), (2, 1, 1));
        // The envelope under an epoch we lack is `unknown_key` and nothing
        // else: `getDetailedStats().security.badBody` adds the trust count.
        assert_eq!(sec.bad_body, 0, "an unknown epoch also counted as a bad body");
        // Once the receiver holds epoch 2 as well, the rotated sender is read.
        rx.trust_mut().add_content_key(2, [1u8; 32]);
        assert!(rx.receive(&sealed_as(&rotated, "pos-1", Kind::Heartbeat, 7001), NOW).is_ok());
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
