//! An empty retained presence is a hint, not a verdict (issue #16).
//!
//! Anyone who may publish on the venue's presence topics — no key needed —
//! can clear a device's retained presence, and the broker's Last Will looks
//! exactly the same. Handed straight to the election, 8 such clears of the
//! hub's presence gave 90 hub changes on broker-only pages. So an empty
//! presence only makes the device a *suspect*:
//!
//! * the recognized hub is probed at once: we announce our presence again
//!   (a `Join`), which a live hub answers with a heartbeat within a round
//!   trip (`PROTOCOL.md` Part 3 §9.3); unheard for [`HINT_PROBE_MS`], the
//!   clear counts as its Will — a killed hub tab is replaced
//!   ≈ Will + 0.3 s + `W` later;
//! * any other peer has `I` + [`HINT_PROBE_MS`] to be heard (it heartbeats
//!   every `I`);
//! * anything signed by the suspect that is accepted in time proves the
//!   hint false: counted `forged_presence` (forged, or a stale Will of an
//!   earlier connection), and nothing is removed.
//!
//! A closed tab is not slowed down: it sends its signed `Leave` first, which
//! the election acts on at once. Peers with a direct route keep the probed
//! path of `direct.rs`.

use super::MeshNode;
use crate::election::ElectionMsg;

/// How long the recognized hub has to answer the probe an empty presence
/// of it triggers (a broker round trip and a heartbeat), before the clear
/// counts as its Will.
pub(crate) const HINT_PROBE_MS: u64 = 300;

impl MeshNode {
    /// The broker delivered an empty presence for `device` (not us), and no
    /// direct route to it is up.
    pub(super) fn presence_hint(&mut self, device: &str, now: u64) {
        if self.hinted.contains_key(device) {
            return; // one probe per suspect at a time
        }
        let is_hub = !self.election.is_hub() && self.election.hub().is_some_and(|t| t.hub == device);
        let wait = if is_hub {
            if self.reach_up {
                self.queue_send(ElectionMsg::Join { score: self.score });
            }
            HINT_PROBE_MS
        } else {
            self.cfg.election.heartbeat_interval.saturating_add(HINT_PROBE_MS)
        };
        self.hinted.insert(device.to_string(), (now, now.saturating_add(wait)));
    }

    /// Something signed by `sender` was accepted: a hint about it was false.
    pub(super) fn heard_hinted(&mut self, sender: &str) {
        if self.hinted.remove(sender).is_some() {
            self.counters.forged_presence += 1;
        }
    }

    /// Suspects not heard by their deadline are gone, as the hint said.
    pub(super) fn confirm_hints(&mut self, now: u64) {
        let gone: Vec<(String, u64)> = self.hinted.iter().filter(|(_, (_, at))| *at <= now).map(|(d, (since, _))| (d.clone(), *since)).collect();
        for (d, since) in gone {
            self.hinted.remove(&d);
            // The loss counts from the hint: the probe's wait is not added
            // to the claim wait of the devices ranked below the best.
            self.election.handle_peer_gone_since(&d, since, now);
        }
    }

    /// When the earliest suspect's deadline runs out.
    pub(super) fn hint_until(&self) -> Option<u64> {
        self.hinted.values().map(|(_, at)| *at).min()
    }
}
