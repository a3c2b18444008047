//! `getDetailedStats().security`: every reason a message from the network
//! is dropped or shed, in one place (issue #16).
//!
//! The counters live where the decisions are made (the envelope receiver,
//! the node's receive path, the router); this struct gathers them so the
//! shell reports one flat object. Add a field here for a new drop reason;
//! the trust model's refusals (issue #15) sit beside `envelope` in `trust`.

use crate::election::ElectionCounters;
use crate::envelope::EnvelopeStats;
use crate::routing::RouterCounters;
use crate::trust::SecurityStats as TrustStats;

use super::MeshCounters;

/// Drop and shed counters, gathered from the parts that count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SecurityStats {
    /// Messages acted on: verified, consistent with their topic and kind,
    /// fresh, decoded and handed to the election, replication, routing,
    /// state or trust (the node's `delivered`). What the envelope let
    /// through but a later check dropped is not in it (issue #16).
    pub acted: u64,
    /// The envelope's own verdicts (signature, venue, replay window…).
    pub envelope: EnvelopeStats,
    /// The trust model's refusals per reason (unknown sender, bad chain,
    /// revoked, bad body, wrong role, bad origin signature, bad receipt…).
    pub trust: TrustStats,
    /// The envelope's sender is not the device the topic names.
    pub sender_mismatch: u64,
    /// Envelope kind, body type and topic disagree.
    pub kind_mismatch: u64,
    /// Signed, but the body does not decode.
    pub bad_body: u64,
    /// Events older than `max_event_age_ms` (or delivered as retained).
    pub stale: u64,
    /// Events stamped further in the future than `max_event_age_ms`.
    pub future: u64,
    /// Delivered, but the stamp was too far ahead to merge into our clock.
    pub clock_ahead: u64,
    /// Sender state rows dropped to respect `max_senders`.
    pub senders_evicted: u64,
    /// RTC requests/offers shed (rate or no PeerConnection slot).
    pub rtc_shed: u64,
    /// Data channels closed to give their slot to a higher-ranked peer.
    pub rtc_evicted: u64,
    /// Router peer rows evicted for a new sender.
    pub peers_evicted: u64,
    /// Messages from new senders shed with the peer table full.
    pub peers_shed: u64,
    /// Empty presences whose device was heard from in time (forged, or a
    /// stale Will): not acted on.
    pub forged_presence: u64,
    /// The election's refusals: term jumps, capped scores, peer rows
    /// evicted or refused with its table full.
    pub election: ElectionCounters,
}

impl SecurityStats {
    pub(super) fn gather(
        envelope: EnvelopeStats,
        trust: TrustStats,
        node: &MeshCounters,
        router: &RouterCounters,
        election: ElectionCounters,
    ) -> SecurityStats {
        SecurityStats {
            acted: node.delivered,
            envelope,
            trust,
            sender_mismatch: node.sender_mismatch,
            kind_mismatch: node.kind_mismatch,
            bad_body: node.bad_body + router.bad_body,
            stale: node.stale_event,
            future: node.future_event,
            clock_ahead: node.clock_ahead,
            senders_evicted: node.senders_evicted,
            rtc_shed: router.rtc_shed,
            rtc_evicted: router.rtc_evicted,
            peers_evicted: router.peers_evicted,
            peers_shed: router.peers_shed,
            forged_presence: node.forged_presence,
            election,
        }
    }
}
