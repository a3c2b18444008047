//! Exactly-once and in-order delivery for ephemeral (chat) messages.
//!
//! * [`SeenWindow`]: the ids delivered recently, bounded by count and by age
//!   (memory only: chat is ephemeral; durable commands use the outbox's
//!   persistent inbox instead). A copy arriving after its id left the window
//!   would be delivered again, so the window must outlive the senders' resend
//!   horizon (`give_up_ms` < `dedup_age_ms`, checked by the router config).
//! * [`Reorder`]: per sender and conversation, messages are released in the
//!   sender's sequence. An early message is held back until the gap before
//!   it fills, for at most `hold_ms`; a gap that never fills is then skipped
//!   and counted, and a message that arrives after its gap was skipped is
//!   still delivered (once), flagged `late`.
//!
//! Each message carries `base`: the lowest sequence number the receiver
//! still has to wait for (the sender knows everything below was acked or
//! given up). A receiver that starts mid-conversation therefore waits for
//! exactly the messages still in flight, and never for ones it will not get.

use std::collections::VecDeque;
use std::rc::Rc;

use crate::slabmap::KeySet;
use crate::vecmap::{VecMap, VecSet};

/// The key of a delivered message.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeenKey {
    /// Sender.
    pub from: String,
    /// Sender's router life.
    pub epoch: u64,
    /// Message id.
    pub id: u64,
}

impl SeenKey {
    /// The key as one string: epoch and id as 16 hex digits each, then the
    /// sender (fixed widths, so distinct keys give distinct strings). Why:
    /// the window's set is then a `KeySet<Rc<str>>`, the B-tree copy the
    /// state store's `Rc<str>` maps already bring, instead of a B-tree of
    /// `SeenKey`s of its own (~3 KB gzip of wasm).
    fn packed(&self) -> Rc<str> {
        format!("{:016x}{:016x}{}", self.epoch, self.id, self.from).into()
    }
}

/// A bounded set of recently delivered message ids.
#[derive(Debug, Clone)]
pub struct SeenWindow {
    /// The ids held, as `SeenKey::packed` strings.
    set: KeySet<Rc<str>>,
    order: VecDeque<(u64, Rc<str>)>,
    max_count: usize,
    max_age_ms: u64,
    evicted: u64,
}

impl SeenWindow {
    /// At most `max_count` ids, each for at most `max_age_ms`.
    pub fn new(max_count: usize, max_age_ms: u64) -> SeenWindow {
        SeenWindow { set: KeySet::new(), order: VecDeque::new(), max_count: max_count.max(1), max_age_ms, evicted: 0 }
    }

    /// Records `key` and says whether it is new (false = a duplicate).
    pub fn first_time(&mut self, key: SeenKey, now: u64) -> bool {
        self.expire(now);
        let key = key.packed();
        if self.set.contains(&key) {
            return false;
        }
        self.set.insert(key.clone());
        self.order.push_back((now, key));
        if self.order.len() > self.max_count {
            if let Some((_, old)) = self.order.pop_front() {
                self.set.remove(&old);
                self.evicted += 1;
            }
        }
        true
    }

    /// Whether `key` is in the window.
    pub fn contains(&self, key: &SeenKey) -> bool {
        self.set.contains(&key.packed())
    }

    /// Forgets ids older than the age bound.
    pub fn expire(&mut self, now: u64) {
        while let Some((at, _)) = self.order.front() {
            if at.saturating_add(self.max_age_ms) > now {
                break;
            }
            if let Some((_, k)) = self.order.pop_front() {
                self.set.remove(&k);
            }
        }
    }

    /// Ids held.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Ids pushed out by the count bound before their age.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

/// One ordered stream: a sender's direct messages to us, or its messages
/// in one room.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConvKey {
    /// Sender.
    pub from: String,
    /// `None` for direct messages.
    pub room: Option<String>,
}

/// Where a message sits in its stream (the fields of a Data body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The sender's router life.
    pub epoch: u64,
    /// Sequence number in the stream.
    pub seq: u64,
    /// Lowest seq still to wait for.
    pub base: u64,
}

/// A message released to the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready<T> {
    /// What was pushed.
    pub item: T,
    /// Released after later messages of its stream (its gap had been
    /// skipped, or it belongs to an older life of the sender).
    pub late: bool,
}

/// Counters of [`Reorder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReorderStats {
    /// Released at once, in order.
    pub in_order: u64,
    /// Held back, then released in order.
    pub reordered: u64,
    /// Released late (see [`Ready::late`]).
    pub late: u64,
    /// Sequence numbers given up on (gap timeouts, `base` jumps, evictions).
    pub skipped: u64,
    /// Gaps skipped because `hold_ms` passed (or too many were held).
    pub gaps_released: u64,
}

#[derive(Debug, Clone)]
struct Conv<T> {
    epoch: u64,
    next: u64,
    /// seq → (item, arrival).
    held: VecMap<u64, (T, u64)>,
    last_used: u64,
}

/// Per-stream hold-back queues.
#[derive(Debug, Clone)]
pub struct Reorder<T> {
    convs: VecMap<ConvKey, Conv<T>>,
    /// Streams with held messages.
    gapped: VecSet<ConvKey>,
    hold_ms: u64,
    max_convs: usize,
    max_held: usize,
    stats: ReorderStats,
}

/// What [`Reorder`] releases: messages in order, and skipped gaps
/// `(stream, how many sequence numbers)`.
#[derive(Debug, Clone)]
pub struct Released<T> {
    /// In release order.
    pub ready: Vec<Ready<T>>,
    /// Gaps given up on.
    pub skipped: Vec<(ConvKey, u64)>,
}

impl<T> Default for Released<T> {
    fn default() -> Self {
        Released { ready: Vec::new(), skipped: Vec::new() }
    }
}

impl<T> Reorder<T> {
    /// Holds early messages up to `hold_ms`, at most `max_held` per stream,
    /// and tracks at most `max_convs` streams (the least recently used one
    /// is released and forgotten beyond that).
    pub fn new(hold_ms: u64, max_convs: usize, max_held: usize) -> Reorder<T> {
        Reorder {
            convs: VecMap::new(),
            gapped: VecSet::new(),
            hold_ms,
            max_convs: max_convs.max(1),
            max_held: max_held.max(1),
            stats: ReorderStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> ReorderStats {
        self.stats
    }

    /// Messages held back now.
    pub fn held(&self) -> usize {
        self.gapped.iter().filter_map(|k| self.convs.get(k)).map(|c| c.held.len()).sum()
    }

    /// One new (not duplicate) message of stream `key`.
    pub fn push(&mut self, key: &ConvKey, pos: Position, item: T, now: u64, out: &mut Released<T>) {
        let Position { epoch, seq, base } = pos;
        let base = base.min(seq);
        if !self.convs.contains_key(key) {
            if self.convs.len() >= self.max_convs {
                self.evict_lru(out);
            }
            self.convs.insert(key.clone(), Conv { epoch, next: base, held: VecMap::new(), last_used: now });
        }
        let Some(conv) = self.convs.get_mut(key) else { return };
        conv.last_used = now;
        if epoch < conv.epoch {
            self.stats.late += 1;
            out.ready.push(Ready { item, late: true });
            return;
        }
        if epoch > conv.epoch {
            // the sender restarted: what its old life left is not coming
            let old_next = conv.next;
            conv.next = u64::MAX;
            Self::advance(conv, key, old_next, &mut self.stats, out);
            *conv = Conv { epoch, next: base, held: VecMap::new(), last_used: now };
        }
        if base > conv.next {
            let from = conv.next;
            conv.next = base;
            Self::advance(conv, key, from, &mut self.stats, out);
        }
        if seq < conv.next {
            self.stats.late += 1;
            out.ready.push(Ready { item, late: true });
        } else if seq == conv.next {
            self.stats.in_order += 1;
            out.ready.push(Ready { item, late: false });
            conv.next = seq + 1;
            Self::drain(conv, &mut self.stats, out);
        } else if !conv.held.contains_key(&seq) {
            conv.held.insert(seq, (item, now));
            if conv.held.len() > self.max_held {
                Self::release_gap(conv, key, &mut self.stats, out);
            }
        } else {
            // a different id with a held seq: a sender bug; never lose it
            self.stats.late += 1;
            out.ready.push(Ready { item, late: true });
        }
        self.mark(key);
    }

    /// Releases the gaps whose hold time is over.
    pub fn handle_timeout(&mut self, now: u64, out: &mut Released<T>) {
        let due: Vec<ConvKey> = self
            .gapped
            .iter()
            .filter(|k| self.convs.get(*k).and_then(Self::deadline_of(self.hold_ms)).is_some_and(|d| d <= now))
            .cloned()
            .collect();
        for key in due {
            let hold = self.hold_ms;
            if let Some(conv) = self.convs.get_mut(&key) {
                while Self::deadline_of(hold)(conv).is_some_and(|d| d <= now) {
                    Self::release_gap(conv, &key, &mut self.stats, out);
                }
            }
            self.mark(&key);
        }
    }

    /// Restarts the hold of every gap in `from`'s streams: a route to it
    /// just came up, so what was missing can arrive now (a gap should not be
    /// given up while the sender could not reach us).
    pub fn restart_holds(&mut self, from: &str, now: u64) {
        let keys: Vec<ConvKey> = self.gapped.iter().filter(|k| k.from == from).cloned().collect();
        for k in keys {
            if let Some(c) = self.convs.get_mut(&k) {
                for (_, since) in c.held.values_mut() {
                    *since = (*since).max(now);
                }
            }
        }
    }

    /// Whether messages of `from` are held back (a gap is open).
    pub fn holding(&self, from: &str) -> bool {
        self.gapped.iter().any(|k| k.from == from)
    }

    /// Releases and forgets every stream of `from` (it left for good).
    pub fn flush_sender(&mut self, from: &str, out: &mut Released<T>) {
        let keys: Vec<ConvKey> = self.convs.keys().filter(|k| k.from == from).cloned().collect();
        for key in keys {
            if let Some(mut conv) = self.convs.remove(&key) {
                while !conv.held.is_empty() {
                    Self::release_gap(&mut conv, &key, &mut self.stats, out);
                }
            }
            self.gapped.remove(&key);
        }
    }

    /// The next gap deadline.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.gapped.iter().filter_map(|k| self.convs.get(k)).filter_map(Self::deadline_of(self.hold_ms)).min()
    }

    fn deadline_of(hold: u64) -> impl Fn(&Conv<T>) -> Option<u64> {
        move |c| c.held.values().map(|(_, since)| *since).min().map(|s| s.saturating_add(hold))
    }

    fn mark(&mut self, key: &ConvKey) {
        if self.convs.get(key).is_some_and(|c| !c.held.is_empty()) {
            self.gapped.insert(key.clone());
        } else {
            self.gapped.remove(key);
        }
    }

    /// Skips to the first held message and releases the run from there.
    fn release_gap(conv: &mut Conv<T>, key: &ConvKey, stats: &mut ReorderStats, out: &mut Released<T>) {
        let Some(&first) = conv.held.keys().next() else { return };
        let missing = first - conv.next;
        stats.skipped += missing;
        stats.gaps_released += 1;
        out.skipped.push((key.clone(), missing));
        conv.next = first;
        Self::drain(conv, stats, out);
    }

    /// Releases held messages below `conv.next` (the stream moved past
    /// them), counting the sequence numbers from `from` that never came.
    fn advance(conv: &mut Conv<T>, key: &ConvKey, from: u64, stats: &mut ReorderStats, out: &mut Released<T>) {
        let keep = conv.held.split_off(&conv.next);
        let below = std::mem::replace(&mut conv.held, keep);
        let mut expected = from;
        let mut missing = 0;
        for (seq, (item, _)) in below {
            missing += seq.saturating_sub(expected);
            expected = seq + 1;
            stats.reordered += 1;
            out.ready.push(Ready { item, late: false });
        }
        if conv.next != u64::MAX {
            missing += conv.next.saturating_sub(expected);
        }
        if missing > 0 {
            stats.skipped += missing;
            out.skipped.push((key.clone(), missing));
        }
        Self::drain(conv, stats, out);
    }

    fn drain(conv: &mut Conv<T>, stats: &mut ReorderStats, out: &mut Released<T>) {
        while conv.held.first_key_value().is_some_and(|(seq, _)| *seq == conv.next) {
            let Some((_, (item, _))) = conv.held.pop_first() else { break };
            stats.reordered += 1;
            out.ready.push(Ready { item, late: false });
            conv.next += 1;
        }
    }

    fn evict_lru(&mut self, out: &mut Released<T>) {
        let Some(key) = self.convs.iter().min_by_key(|(_, c)| c.last_used).map(|(k, _)| k.clone()) else { return };
        if let Some(mut conv) = self.convs.remove(&key) {
            while !conv.held.is_empty() {
                Self::release_gap(&mut conv, &key, &mut self.stats, out);
            }
        }
        self.gapped.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(from: &str) -> ConvKey {
        ConvKey { from: from.into(), room: None }
    }

    fn push(r: &mut Reorder<u64>, k: &ConvKey, epoch: u64, seq: u64, base: u64, now: u64) -> (Vec<(u64, bool)>, u64) {
        let mut out = Released::default();
        r.push(k, Position { epoch, seq, base }, seq, now, &mut out);
        (out.ready.iter().map(|x| (x.item, x.late)).collect(), out.skipped.iter().map(|s| s.1).sum())
    }

    #[test]
    fn seen_window_bounded_by_count_and_age() {
        let mut w = SeenWindow::new(3, 100);
        let k = |id| SeenKey { from: "a".into(), epoch: 1, id };
        assert!(w.first_time(k(1), 0));
        assert!(!w.first_time(k(1), 10));
        assert!(w.first_time(k(2), 10));
        assert!(w.first_time(k(3), 20));
        assert!(w.first_time(k(4), 30)); // evicts 1
        assert_eq!((w.len(), w.evicted()), (3, 1));
        assert!(!w.contains(&k(1)) && w.contains(&k(2)));
        w.expire(110); // 2 was seen at 10: gone at 110
        assert!(!w.contains(&k(2)) && w.contains(&k(3)));
        assert!(w.first_time(SeenKey { from: "a".into(), epoch: 2, id: 3 }, 111), "another epoch is another id");
    }

    /// The window holds keys packed into one string: keys whose fields
    /// would run together under a naive joining (`"1" + "23"` = `"12" + "3"`)
    /// stay distinct, and so do the extremes of each field.
    #[test]
    fn seen_window_keys_do_not_collide_when_packed() {
        let mut w = SeenWindow::new(100, 1000);
        let keys = [
            SeenKey { from: "3".into(), epoch: 1, id: 2 },
            SeenKey { from: "".into(), epoch: 1, id: 23 },
            SeenKey { from: "23".into(), epoch: 1, id: 0 },
            SeenKey { from: "".into(), epoch: 0x12, id: 3 },
            SeenKey { from: "0000000000000001".into(), epoch: 0, id: 0 },
            SeenKey { from: "".into(), epoch: 0, id: 1 },
            SeenKey { from: "".into(), epoch: u64::MAX, id: u64::MAX },
            SeenKey { from: "f".into(), epoch: u64::MAX, id: u64::MAX },
        ];
        for k in &keys {
            assert!(w.first_time(k.clone(), 0), "{k:?} taken for another key");
        }
        for k in &keys {
            assert!(w.contains(k) && !w.first_time(k.clone(), 1), "{k:?} not recognised");
        }
        assert_eq!(w.len(), keys.len());
    }

    #[test]
    fn in_order_reordered_and_gap_release() {
        let mut r = Reorder::new(1_000, 16, 64);
        let k = key("a");
        assert_eq!(push(&mut r, &k, 1, 1, 1, 0), (vec![(1, false)], 0));
        assert_eq!(push(&mut r, &k, 1, 3, 2, 10), (vec![], 0));
        assert_eq!(push(&mut r, &k, 1, 4, 2, 20), (vec![], 0));
        assert_eq!(r.held(), 2);
        assert!(r.holding("a") && !r.holding("b"));
        assert_eq!(r.poll_timeout(), Some(1_010));
        assert_eq!(push(&mut r, &k, 1, 2, 2, 30), (vec![(2, false), (3, false), (4, false)], 0));
        assert_eq!(r.poll_timeout(), None);
        // 6 early, 5 never comes
        assert_eq!(push(&mut r, &k, 1, 6, 5, 100), (vec![], 0));
        r.restart_holds("b", 500); // another sender: no effect
        r.restart_holds("a", 100);
        let mut out = Released::default();
        r.handle_timeout(1_099, &mut out);
        assert!(out.ready.is_empty());
        r.handle_timeout(1_100, &mut out);
        assert_eq!(out.ready.iter().map(|x| x.item).collect::<Vec<_>>(), [6]);
        assert_eq!(out.skipped, [(k.clone(), 1)]);
        // 5 arrives after all: delivered late, once
        assert_eq!(push(&mut r, &k, 1, 5, 5, 1_200), (vec![(5, true)], 0));
        let s = r.stats();
        assert_eq!((s.in_order, s.reordered, s.late, s.skipped, s.gaps_released), (2, 3, 1, 1, 1));
    }

    #[test]
    fn base_says_what_to_wait_for() {
        let mut r = Reorder::new(1_000, 16, 64);
        let k = key("a");
        // a receiver joining mid-stream: 57 with base 57 is deliverable at once
        assert_eq!(push(&mut r, &k, 1, 57, 57, 0), (vec![(57, false)], 0));
        // 60 with base 58: wait for 58 and 59
        assert_eq!(push(&mut r, &k, 1, 60, 58, 1), (vec![], 0));
        // the sender gave 58 up: 61 arrives with base 59
        assert_eq!(push(&mut r, &k, 1, 61, 59, 2), (vec![], 1));
        assert_eq!(push(&mut r, &k, 1, 59, 59, 3), (vec![(59, false), (60, false), (61, false)], 0));
        // base jumping past held messages releases them in order
        assert_eq!(push(&mut r, &k, 1, 64, 63, 4), (vec![], 1)); // 62
        assert_eq!(push(&mut r, &k, 1, 66, 66, 5), (vec![(64, false), (66, false)], 2)); // 63, 65
    }

    #[test]
    fn epochs_and_bounds() {
        let mut r = Reorder::new(1_000, 2, 2);
        let k = key("a");
        push(&mut r, &k, 5, 1, 1, 0);
        assert_eq!(push(&mut r, &k, 5, 3, 2, 0), (vec![], 0));
        // a new life: the held message of the old one is released, then 1 again
        assert_eq!(push(&mut r, &k, 6, 1, 1, 1), (vec![(3, false), (1, false)], 1));
        // the old life's 2 arrives: late, delivered
        assert_eq!(push(&mut r, &k, 5, 2, 2, 2), (vec![(2, true)], 0));
        // too many held: the first gap is released
        push(&mut r, &k, 6, 3, 2, 3);
        push(&mut r, &k, 6, 5, 2, 3);
        assert_eq!(push(&mut r, &k, 6, 7, 2, 3), (vec![(3, false)], 1));
        // a third stream evicts the least recently used one, releasing it
        push(&mut r, &key("b"), 1, 1, 1, 4);
        let (ready, _) = push(&mut r, &key("c"), 1, 1, 1, 5);
        assert_eq!(ready, [(5, false), (7, false), (1, false)]);
        assert_eq!(r.held(), 0);
        // a sender that left: its held messages are released
        push(&mut r, &key("c"), 1, 3, 2, 6);
        let mut out = Released::default();
        r.flush_sender("c", &mut out);
        assert_eq!(out.ready.iter().map(|x| x.item).collect::<Vec<_>>(), [3]);
        assert_eq!((r.held(), r.poll_timeout()), (0, None));
    }
}
