//! Bounds on what other devices can make this one hold (issue #16): data
//! channels (each an `RTCPeerConnection`, of which Chromium allows a few
//! hundred per page) and rows in the peer table.
//!
//! A signed RTC request or offer costs its sender one small message and us a
//! PeerConnection and an ICE negotiation; a message from a new sender costs
//! us a peer row. So:
//! * **Rate.** At most one request or offer per sender per
//!   `rtc_min_interval_ms`; the rest are shed (a real peer retries after
//!   `rtc_retry_ms`, which is longer).
//! * **Slots.** At most `max_rtc` peers hold a PeerConnection (channel open or
//!   being negotiated). A newcomer when all are taken gets the slot of the
//!   lowest-ranked holder if it ranks higher, else it is shed. Rank:
//!   pinned (the hub, replication partners: [`Router::pin`]), then active
//!   (our own traffic to it, pending copies, a small room), then announced
//!   (its Join reached us), then open before negotiating, then most
//!   recently heard. Fresh ids from a flood rank below every real peer the
//!   node talks to, so they never take its slot.
//! * **Rows.** At most `max_peers` rows. A message from a new sender when
//!   the table is full evicts the lowest-ranked row that holds nothing
//!   (no copies pending, no room, no direct route, not pinned); if every
//!   row holds something, the message is shed.
//!
//! Everything shed or evicted is counted in [`RouterCounters`].

use super::{Peer, RtcPhase, Router};
use crate::routing::{Output, Route, RtcCommand};

/// Orders peers for the bounds above: greater is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Rank {
    pinned: bool,
    active: bool,
    announced: bool,
    open: bool,
    last_heard: u64,
}

impl Router {
    /// Marks the peers the node must never lose a route to in a flood: the
    /// current hub and the replication partners. Replaces the previous set.
    pub fn pin(&mut self, peers: &[&str]) {
        self.pinned = peers.iter().filter(|p| **p != self.cfg.me).map(|p| p.to_string()).collect();
    }

    pub(super) fn rank(&self, name: &str, p: &Peer, now: u64) -> Rank {
        Rank {
            pinned: self.pinned.contains(name),
            active: self.is_active(name, p, now),
            announced: p.announced,
            open: p.rtc == RtcPhase::Open,
            last_heard: p.last_heard,
        }
    }

    /// Whether `from`'s RTC request or offer may proceed. Sheds (counted)
    /// by rate or for want of a slot; may close a lower-ranked peer's
    /// connection to make room.
    pub(super) fn admit_rtc(&mut self, from: &str, now: u64) -> bool {
        let min_gap = self.cfg.rtc_min_interval_ms;
        let p = self.peer_mut(from);
        if p.last_rtc_in.is_some_and(|t| now < t.saturating_add(min_gap)) {
            self.counters.rtc_shed += 1;
            return false;
        }
        p.last_rtc_in = Some(now);
        let holds = matches!(p.rtc, RtcPhase::Open | RtcPhase::Connecting { .. });
        if holds || self.take_rtc_slot(from, now) {
            return true;
        }
        self.counters.rtc_shed += 1;
        false
    }

    /// A PeerConnection slot for `name`: a free one, or the slot of the
    /// lowest-ranked holder if `name` ranks higher (closed, counted). Used
    /// for our own offers too, so a flood cannot keep us from offering to a
    /// real peer.
    pub(super) fn take_rtc_slot(&mut self, name: &str, now: u64) -> bool {
        if self.rtc_slots_used() < self.cfg.max_rtc {
            return true;
        }
        let Some(p) = self.peers.get(name) else { return false };
        let me = self.rank(name, p, now);
        let worst = self
            .peers
            .iter()
            .filter(|(n, p)| n.as_str() != name && matches!(p.rtc, RtcPhase::Open | RtcPhase::Connecting { .. }))
            .map(|(n, p)| (self.rank(n, p, now), n.clone()))
            .min();
        match worst {
            Some((rank, victim)) if rank < me => {
                self.drop_rtc(&victim, now);
                self.counters.rtc_evicted += 1;
                true
            }
            _ => false,
        }
    }

    /// Peers holding a PeerConnection (open or negotiating).
    pub(super) fn rtc_slots_used(&self) -> usize {
        self.peers.values().filter(|p| matches!(p.rtc, RtcPhase::Open | RtcPhase::Connecting { .. })).count()
    }

    /// Closes `peer`'s connection (it lost its slot); it may try again later.
    fn drop_rtc(&mut self, peer: &str, now: u64) {
        let retry = self.cfg.rtc_retry_max_ms;
        let Some(p) = self.peers.get_mut(peer) else { return };
        let was_open = p.rtc == RtcPhase::Open;
        p.rtc = RtcPhase::Idle { next_try: now.saturating_add(retry) };
        p.links[Route::Rtc as usize].up = false;
        self.out.push_back(Output::Rtc(RtcCommand::Close { peer: peer.to_string() }));
        if was_open {
            self.route_changed(peer, Route::Rtc, false, now);
        }
    }

    /// Room for a row for the new sender `from`: true when there is (after
    /// evicting the lowest-ranked row that holds nothing, counted), false
    /// when the message must be shed (counted).
    pub(super) fn make_room_for(&mut self, from: &str, now: u64) -> bool {
        if self.peers.contains_key(from) || self.peers.len() < self.cfg.max_peers {
            return true;
        }
        let victim = self
            .peers
            .iter()
            .filter(|(n, p)| self.evictable(n, p, now))
            .map(|(n, p)| (self.rank(n, p, now), n.clone()))
            .min()
            .map(|(_, n)| n);
        match victim {
            Some(v) => {
                self.peers.remove(&v);
                self.counters.peers_evicted += 1;
                true
            }
            None => {
                self.counters.peers_shed += 1;
                false
            }
        }
    }

    /// A row whose loss costs nothing but its route statistics.
    fn evictable(&self, name: &str, p: &Peer, now: u64) -> bool {
        !self.pinned.contains(name)
            && !self.is_active(name, p, now)
            && matches!(p.rtc, RtcPhase::Idle { .. } | RtcPhase::Requested { .. })
            && !p.links.iter().any(|l| l.up)
            && !self.acks.keys().any(|(peer, _, _)| peer == name)
    }
}
